//! The harness itself, tested against real PostgreSQL servers.

use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_postgres::NoTls;
use tviews_tests::{Cluster, ClusterOptions, StopMode, extension_installed};

/// Set for the child processes that run the `#[ignore]`d helper tests below; without it those
/// helpers do nothing, so `cargo test -- --include-ignored` stays green.
const CHILD_ENV: &str = "TVIEWS_HARNESS_CHILD";

/// Whether process `pid` is gone. A zombie counts as gone: an orphaned postmaster is reparented
/// to PID 1, which on some machines never reaps it.
fn pid_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(e) => e.kind() == ErrorKind::NotFound,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The pids of the live children of `pid` (a postmaster's backends and auxiliary processes).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid && !pid_gone(child)).then_some(child)
        })
        .collect()
}

fn keeping_clusters() -> bool {
    std::env::var("TVIEWS_KEEP_CLUSTER").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn named(name: &str) -> ClusterOptions {
    ClusterOptions {
        name: name.to_owned(),
        ..ClusterOptions::default()
    }
}

async fn query_string(client: &tokio_postgres::Client, sql: &str) -> Result<String> {
    let row = client
        .query_one(sql, &[])
        .await
        .with_context(|| sql.to_owned())?;
    Ok(row.get(0))
}

/// Runs one `#[ignore]`d helper test of this binary in a child process.
fn run_child(test: &str) -> Result<Output> {
    let exe = std::env::current_exe()?;
    Command::new(&exe)
        .args([
            "--ignored",
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env_remove("TVIEWS_KEEP_CLUSTER")
        .output()
        .with_context(|| format!("running {} {test}", exe.display()))
}

/// In a child run by `run_child`, a started cluster named `name`; elsewhere `None`.
fn child_cluster(name: &str) -> Option<Cluster> {
    std::env::var_os(CHILD_ENV)?;
    Some(Cluster::start(named(name)).expect("cluster"))
}

/// The data directory and postmaster pid that a child printed on the first line of `stderr`
/// starting with `prefix`, as `... data dir <path>, postmaster pid <pid>)`.
fn printed_cluster(stderr: &str, prefix: &str) -> Result<(PathBuf, u32)> {
    let line = stderr
        .lines()
        .find(|line| line.starts_with(prefix))
        .with_context(|| format!("no line starting with {prefix:?}:\n{stderr}"))?;
    let value_after = |key: &str| -> Result<&str> {
        let start = line
            .find(key)
            .with_context(|| format!("no {key:?} in {line:?}"))?
            + key.len();
        Ok(line[start..].split([',', ')']).next().unwrap_or_default())
    };
    Ok((
        PathBuf::from(value_after("data dir ")?),
        value_after("postmaster pid ")?.parse()?,
    ))
}

#[tokio::test]
async fn starts_connects_and_runs_psql() -> Result<()> {
    let cluster = Cluster::start(named("basics"))?;
    assert_eq!(cluster.superuser(), "postgres");
    let client = cluster.connect("postgres").await?;
    let version = query_string(&client, "SELECT version()").await?;
    assert!(version.contains("PostgreSQL 15"), "{version}");
    assert_eq!(query_string(&client, "SHOW fsync").await?, "off");
    assert_eq!(
        query_string(&client, "SHOW max_prepared_transactions").await?,
        "20"
    );
    assert_eq!(query_string(&client, "SHOW listen_addresses").await?, "");
    assert_eq!(query_string(&client, "SHOW server_encoding").await?, "UTF8");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", cluster.port())).is_err(),
        "a unix-socket-only cluster accepted a TCP connection"
    );

    // Private socket directory; when we are root, the server runs as someone else.
    let socket_meta = std::fs::metadata(cluster.socket_dir())?;
    assert_eq!(socket_meta.permissions().mode() & 0o777, 0o700);
    let data_owner = std::fs::metadata(cluster.data_dir())?.uid();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_ne!(data_owner, 0, "the data directory belongs to root");
    }

    cluster.create_database("harness one")?;
    let out = cluster.psql(
        "harness one",
        "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 3);\n\
         SELECT current_database(), count(*) FROM t;",
    )?;
    assert_eq!(out, "harness one|3");

    // Both connection strings reach the same database, through libpq's rules as
    // tokio-postgres implements them.
    for target in [cluster.conninfo("harness one"), cluster.url("harness one")] {
        let (other, connection) = tokio_postgres::connect(&target, NoTls)
            .await
            .with_context(|| format!("connecting with {target}"))?;
        tokio::spawn(connection);
        let count: i64 = other.query_one("SELECT count(*) FROM t", &[]).await?.get(0);
        assert_eq!(count, 3, "{target}");
    }

    let sql_file = tempfile::NamedTempFile::new()?;
    std::fs::write(sql_file.path(), "SELECT 'from a file';\n")?;
    assert_eq!(
        cluster.psql_file("postgres", sql_file.path())?,
        "from a file"
    );

    let err = cluster
        .psql(
            "postgres",
            "SELECT 1;\nSELECT * FROM no_such_table;\nSELECT 2;",
        )
        .expect_err("psql must stop at the first error");
    let message = format!("{err:#}");
    assert!(
        message.contains(r#"relation "no_such_table" does not exist"#),
        "{message}"
    );
    assert!(
        message.contains("SELECT * FROM no_such_table"),
        "the SQL is missing: {message}"
    );
    Ok(())
}

// multi_thread: the harness's calls block, and a smart stop waits for the dropped client's
// connection task to close its session, which a current-thread runtime would never run meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn immediate_restart_keeps_committed_data() -> Result<()> {
    let mut cluster = Cluster::start(named("restart"))?;
    let port = cluster.port();
    cluster.psql(
        "postgres",
        "CREATE TABLE kept (id int); INSERT INTO kept SELECT generate_series(1, 100);",
    )?;
    let before = cluster
        .postmaster_pid()
        .context("no postmaster after start")?;

    cluster.restart(StopMode::Immediate)?;
    let after = cluster
        .postmaster_pid()
        .context("no postmaster after restart")?;
    assert_ne!(before, after);
    assert!(pid_gone(before), "old postmaster {before} still running");
    assert_eq!(cluster.port(), port);
    assert!(
        cluster
            .log_tail(100)
            .contains("automatic recovery in progress"),
        "no crash recovery after an immediate stop:\n{}",
        cluster.log_tail(30)
    );
    let client = cluster.connect("postgres").await?;
    let count: i64 = client
        .query_one("SELECT count(*) FROM kept", &[])
        .await?
        .get(0);
    assert_eq!(count, 100);
    drop(client);

    cluster.stop(StopMode::Smart)?;
    assert!(!cluster.is_running());
    assert_eq!(cluster.postmaster_pid(), None);
    cluster.stop(StopMode::Fast)?; // stopping a stopped cluster is a no-op
    cluster.start_again()?;
    assert!(cluster.is_running());
    assert!(
        cluster.start_again().is_err(),
        "started a running cluster twice"
    );
    assert_eq!(
        cluster.psql("postgres", "SELECT count(*) FROM kept")?,
        "100"
    );
    Ok(())
}

#[test]
fn drop_stops_every_server_process_and_removes_the_directory() -> Result<()> {
    let cluster = Cluster::start(named("dropped"))?;
    cluster.psql("postgres", "SELECT 1")?;
    let pid = cluster.postmaster_pid().context("no postmaster")?;
    let children = children_of(pid);
    assert!(
        !children.is_empty(),
        "postmaster {pid} has no auxiliary processes?"
    );
    let dir: PathBuf = cluster
        .data_dir()
        .parent()
        .context("data dir has no parent")?
        .into();
    assert!(dir.join("owner.pid").is_file());

    drop(cluster);
    assert!(pid_gone(pid), "postmaster {pid} outlived its Cluster");
    for child in children {
        assert!(
            pid_gone(child),
            "server process {child} outlived its Cluster"
        );
    }
    assert_eq!(dir.exists(), keeping_clusters(), "{}", dir.display());
    Ok(())
}

#[test]
#[ignore = "helper: fails on purpose when run by panic_prints_the_server_log_tail"]
fn deliberately_failing() {
    let Some(cluster) = child_cluster("deliberately_failing") else {
        return;
    };
    cluster
        .psql(
            "postgres",
            "SELECT pg_sleep(0);\nDO $$ BEGIN RAISE WARNING 'harness % marker', 'log-tail'; END $$;",
        )
        .expect("psql");
    panic!("deliberate failure, to show the server log");
}

#[test]
fn panic_prints_the_server_log_tail() -> Result<()> {
    let out = run_child("deliberately_failing")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child test passed:\n{stderr}");
    assert!(stderr.contains("deliberate failure"), "{stderr}");
    assert!(
        stderr.contains("---- PostgreSQL log (last "),
        "no log header:\n{stderr}"
    );
    // A line only the server writes, with the harness's log_line_prefix.
    assert!(
        stderr.contains("postgres@postgres WARNING:  harness log-tail marker"),
        "no server log line:\n{stderr}"
    );

    let (data_dir, pid) = printed_cluster(&stderr, "---- end of PostgreSQL log")?;
    assert!(
        pid_gone(pid),
        "postmaster {pid} of the failed test is still running"
    );
    assert!(!data_dir.exists(), "{} was left behind", data_dir.display());
    Ok(())
}

#[test]
#[ignore = "helper: run by a_cluster_never_dropped_is_stopped_and_swept"]
fn exits_without_dropping() {
    let Some(cluster) = child_cluster("never_dropped") else {
        return;
    };
    let pid = cluster.postmaster_pid().expect("postmaster pid");
    eprintln!(
        "child cluster (data dir {}, postmaster pid {pid})",
        cluster.data_dir().display()
    );
    // Exits without running destructors, as a test process killed or calling exit would.
    std::process::exit(0);
}

#[test]
fn a_cluster_never_dropped_is_stopped_and_swept() -> Result<()> {
    let out = run_child("exits_without_dropping")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (data_dir, pid) = printed_cluster(&stderr, "child cluster")?;

    // The watchdog stops the server once its owner is gone...
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pid_gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(pid_gone(pid), "postmaster {pid} outlived its test process");
    // ...and the next start sweeps its directory away.
    let _cluster = Cluster::start(named("sweeper"))?;
    let dir = data_dir.parent().context("data dir has no parent")?;
    assert!(!dir.exists(), "{} was not swept", dir.display());
    Ok(())
}

#[test]
fn create_database_with_extension_works_or_says_how_to_install() -> Result<()> {
    let cluster = Cluster::start(named("extension"))?;
    if extension_installed() {
        cluster.create_database_with_extension("with_ext")?;
        let names = cluster.psql("with_ext", "SELECT extname FROM pg_extension ORDER BY 1")?;
        assert!(names.lines().any(|name| name == "pg_tviews"), "{names}");
    } else {
        let expected = "pg_tviews is not installed into the system PostgreSQL: run scripts/test.sh, \
                        or `cargo pgrx install -p pg_tviews --pg-config /usr/bin/pg_config`";
        let err = cluster
            .create_database_with_extension("with_ext")
            .expect_err("no extension");
        assert_eq!(format!("{err:#}"), expected);
        let exists = cluster.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'with_ext'",
        )?;
        assert_eq!(exists, "0", "the database was created anyway");
        let preload = Cluster::start(ClusterOptions {
            preload: true,
            ..named("preload")
        })
        .expect_err("preloading a missing extension");
        assert!(format!("{preload:#}").contains(expected), "{preload:#}");
    }
    Ok(())
}

#[tokio::test]
async fn options_are_applied() -> Result<()> {
    let cluster = Cluster::start(ClusterOptions {
        tcp: true,
        name: "options test".to_owned(),
        settings: vec![
            ("work_mem".to_owned(), "12MB".to_owned()),
            ("application_name".to_owned(), r"it's a\b".to_owned()),
            // Settings come last, so they override the harness's own.
            ("max_prepared_transactions".to_owned(), "7".to_owned()),
        ],
        ..ClusterOptions::default()
    })?;
    let dir_name = cluster
        .data_dir()
        .parent()
        .and_then(|d| d.file_name())
        .context("no dir name")?;
    assert!(
        dir_name
            .to_string_lossy()
            .starts_with("harness-options_test-"),
        "{dir_name:?}"
    );

    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        cluster.port()
    );
    let (client, connection) = tokio_postgres::connect(&conninfo, NoTls)
        .await
        .context("TCP connection")?;
    tokio::spawn(connection);
    assert_eq!(
        query_string(&client, "SHOW listen_addresses").await?,
        "127.0.0.1"
    );
    assert_eq!(query_string(&client, "SHOW work_mem").await?, "12MB");
    assert_eq!(
        query_string(&client, "SHOW max_prepared_transactions").await?,
        "7"
    );
    assert_eq!(
        query_string(
            &client,
            "SELECT setting FROM pg_settings WHERE name = 'application_name' AND source = 'configuration file'"
        )
        .await?,
        r"it's a\b"
    );
    assert_eq!(
        query_string(&client, "SHOW log_line_prefix").await?,
        "%m [%p] %q%u@%d "
    );
    Ok(())
}
