//! End to end: the built `tviews` binary against a throwaway PostgreSQL cluster,
//! connected every way a psql user would.
//!
//! One cluster serves the whole file (starting one takes seconds); each scenario is a
//! function called from the single test, so a failure names the scenario.

mod common;

use std::process::Output;

use common::{expect_code, fails_with, json, stdout, tviews};
use serde_json::Value;
use tviews_tests::{Cluster, ClusterOptions};

/// A port nothing listens on (bound, then released).
fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

struct Ctx {
    cluster: Cluster,
    home: tempfile::TempDir,
    socket: String,
    port: String,
}

impl Ctx {
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        tviews(self.home.path(), args, env)
    }

    /// `-h <socket dir> -p <port> -U postgres -d <db>` followed by `args`.
    fn flags<'a>(&'a self, db: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![
            "-h",
            &self.socket,
            "-p",
            &self.port,
            "-U",
            "postgres",
            "-d",
            db,
        ];
        v.extend_from_slice(args);
        v
    }
}

#[test]
fn cli_against_a_real_server() {
    let cluster = match Cluster::start(ClusterOptions {
        tcp: true,
        name: "cli".into(),
        ..ClusterOptions::default()
    }) {
        Ok(c) => c,
        Err(e) => panic!("{e:?}"),
    };
    let ctx = Ctx {
        socket: cluster.socket_dir().display().to_string(),
        port: cluster.port().to_string(),
        cluster,
        home: tempfile::tempdir().expect("temporary HOME"),
    };

    version_with_psql_flags(&ctx);
    version_table_says_not_installed(&ctx);
    status_with_uri_and_conninfo(&ctx);
    database_url_and_flag_precedence(&ctx);
    pg_environment_variables(&ctx);
    tcp_and_sslmode(&ctx);
    status_reads_catalog_and_health_check(&ctx);
    server_error_exits_1_with_sqlstate(&ctx);
    extension_versions_when_installed(&ctx);
}

fn version_with_psql_flags(ctx: &Ctx) {
    let out = ctx.run(
        &ctx.flags("postgres", &["version", "--format", "json"]),
        &[],
    );
    let v = json(&out, "version -h -p -U -d");
    assert_eq!(v["client"]["version"], env!("CARGO_PKG_VERSION"));
    let num = v["server"]["version_num"].as_i64().unwrap_or_default();
    assert!((150000..160000).contains(&num), "server_version_num {num}");
    assert!(
        v["server"]["version"]
            .as_str()
            .unwrap_or_default()
            .starts_with("15.")
    );
    assert_eq!(v["database"], "postgres");
    assert_eq!(v["extension"]["name"], "pg_tviews");
    assert_eq!(v["extension"]["installed"], false);
    assert_eq!(v["extension"]["installed_version"], Value::Null);
    assert_eq!(v["extension"]["library_version"], Value::Null);
}

fn version_table_says_not_installed(ctx: &Ctx) {
    let out = ctx.run(&ctx.flags("postgres", &["version"]), &[]);
    expect_code(&out, 0, "version (table) without the extension");
    let text = stdout(&out);
    assert!(text.contains("not installed"), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    // stdout is a pipe here: no colour codes.
    assert!(!text.contains('\u{1b}'), "{text}");
}

fn status_with_uri_and_conninfo(ctx: &Ctx) {
    let url = ctx.cluster.url("postgres");
    let v = json(
        &ctx.run(&["status", &url, "--format", "json"], &[]),
        "status <URI>",
    );
    assert_eq!(v["server"]["database"], "postgres");
    assert_eq!(v["server"]["user"], "postgres");
    assert_eq!(v["connection"]["socket"], true);
    assert_eq!(v["connection"]["host"], ctx.socket.as_str());
    assert_eq!(v["connection"]["port"].as_u64(), ctx.port.parse().ok());
    assert_eq!(v["extension"]["installed"], false);
    assert_eq!(v["tviews"]["count"], Value::Null);
    assert_eq!(v["health"]["available"], false);

    let conninfo = ctx.cluster.conninfo("postgres");
    let v = json(
        &ctx.run(&["--format", "json", "-d", &conninfo, "status"], &[]),
        "status -d <conninfo>",
    );
    assert_eq!(v["server"]["database"], "postgres");

    let out = ctx.run(&["status", &url], &[]);
    expect_code(&out, 0, "status (table)");
    let text = stdout(&out);
    assert!(text.contains("not installed"), "{text}");
    assert!(text.contains("statistics"), "{text}");
}

fn database_url_and_flag_precedence(ctx: &Ctx) {
    let url = ctx.cluster.url("postgres");
    let v = json(
        &ctx.run(&["status", "--format", "json"], &[("DATABASE_URL", &url)]),
        "status with DATABASE_URL",
    );
    assert_eq!(v["server"]["database"], "postgres");

    // The URL points at a dead port; -p wins over it.
    let dead = unused_port().to_string();
    let wrong_port = url.replace(&format!(":{}/", ctx.port), &format!(":{dead}/"));
    assert_ne!(wrong_port, url);
    let out = ctx.run(&["status"], &[("DATABASE_URL", &wrong_port)]);
    expect_code(&out, 2, "DATABASE_URL with a dead port");
    let v = json(
        &ctx.run(
            &["status", "-p", &ctx.port, "--format", "json"],
            &[("DATABASE_URL", &wrong_port)],
        ),
        "-p overrides DATABASE_URL",
    );
    assert_eq!(v["connection"]["port"].as_u64(), ctx.port.parse().ok());

    // DATABASE_URL beats PG* variables.
    let v = json(
        &ctx.run(
            &["version", "--format", "json"],
            &[
                ("DATABASE_URL", &url),
                ("PGPORT", &dead),
                ("PGHOST", "/nonexistent"),
            ],
        ),
        "DATABASE_URL over PG*",
    );
    assert_eq!(v["database"], "postgres");
}

fn pg_environment_variables(ctx: &Ctx) {
    ctx.cluster
        .create_database("from_env")
        .expect("create database from_env");
    let env = [
        ("PGHOST", ctx.socket.as_str()),
        ("PGPORT", ctx.port.as_str()),
        ("PGUSER", "postgres"),
        ("PGDATABASE", "from_env"),
        ("PGAPPNAME", "tviews-e2e"),
    ];
    let v = json(
        &ctx.run(&["status", "--format", "json"], &env),
        "status with PG* variables",
    );
    assert_eq!(v["server"]["database"], "from_env");
    assert_eq!(v["server"]["user"], "postgres");

    // A plain positional name overrides PGDATABASE only.
    let v = json(
        &ctx.run(&["status", "postgres", "--format", "json"], &env),
        "positional dbname with PG* variables",
    );
    assert_eq!(v["server"]["database"], "postgres");
}

fn tcp_and_sslmode(ctx: &Ctx) {
    let base = [
        "-h",
        "127.0.0.1",
        "-p",
        &ctx.port,
        "-U",
        "postgres",
        "-d",
        "postgres",
    ];
    // The harness's server has no TLS: prefer falls back to plain, like libpq.
    let mut args = base.to_vec();
    args.extend(["status", "--format", "json"]);
    let v = json(&ctx.run(&args, &[]), "status over TCP, sslmode prefer");
    assert_eq!(v["connection"]["socket"], false);
    assert_eq!(v["connection"]["ssl"], false);

    for mode in ["disable", "allow"] {
        let mut args = base.to_vec();
        args.extend(["--sslmode", mode, "version"]);
        expect_code(&ctx.run(&args, &[]), 0, mode);
    }

    let mut args = base.to_vec();
    args.extend(["--sslmode", "require", "version"]);
    let out = ctx.run(&args, &[]);
    fails_with(&out, 2, "server does not support TLS");

    // verify-full without a root certificate: libpq's message, before any network.
    let mut args = base.to_vec();
    args.extend(["--sslmode", "verify-full", "version"]);
    let out = ctx.run(&args, &[]);
    fails_with(&out, 2, "root certificate file");

    // Unreachable: exit 2, and the message says what was tried.
    let dead = unused_port().to_string();
    let out = ctx.run(
        &["-h", "127.0.0.1", "-p", &dead, "-U", "someone", "version"],
        &[],
    );
    fails_with(&out, 2, &format!("server at \"127.0.0.1\", port {dead}"));
    fails_with(&out, 2, "user \"someone\"");

    let out = ctx.run(&["-h", &ctx.socket, "-p", &dead, "status"], &[]);
    fails_with(&out, 2, &format!("/.s.PGSQL.{dead}\""));

    // A database that does not exist is a connection failure too (psql: 2).
    let out = ctx.run(&ctx.flags("no_such_db", &["version"]), &[]);
    fails_with(&out, 2, "FATAL:  database \"no_such_db\" does not exist");
}

/// A stand-in for the extension's catalog and health check: status reads whatever
/// `tviews.tview` and `pg_tviews_health_check()` are there.
fn status_reads_catalog_and_health_check(ctx: &Ctx) {
    ctx.cluster
        .create_database("fake_ext")
        .expect("create database fake_ext");
    ctx.cluster
        .psql(
            "fake_ext",
            "CREATE SCHEMA tviews;
             CREATE TABLE tviews.tview (id int);
             INSERT INTO tviews.tview VALUES (1), (2);
             CREATE FUNCTION pg_tviews_health_check()
               RETURNS TABLE (check_name text, severity text, detail text, hint text)
               LANGUAGE sql AS $$
                 VALUES ('preload', 'warning', 'not in shared_preload_libraries', 'add it'),
                        ('catalog', 'ok', NULL, NULL)
               $$;",
        )
        .expect("fake catalog");
    let v = json(
        &ctx.run(&ctx.flags("fake_ext", &["status", "--format", "json"]), &[]),
        "status with catalog and health check",
    );
    assert_eq!(v["tviews"]["count"], 2);
    assert_eq!(v["extension"]["statistics"], false);
    assert_eq!(v["health"]["available"], true);
    assert_eq!(v["health"]["summary"]["warning"], 1);
    assert_eq!(v["health"]["summary"]["ok"], 1);
    assert_eq!(v["health"]["checks"][0]["check_name"], "preload");
    assert_eq!(v["health"]["checks"][1]["detail"], Value::Null);

    let out = ctx.run(&ctx.flags("fake_ext", &["status"]), &[]);
    expect_code(&out, 0, "status table with health");
    let text = stdout(&out);
    assert!(text.contains("1 warning, 1 ok"), "{text}");
    assert!(
        text.contains("off (add pg_tviews to shared_preload_libraries)"),
        "{text}"
    );
}

fn server_error_exits_1_with_sqlstate(ctx: &Ctx) {
    ctx.cluster
        .psql(
            "fake_ext",
            "CREATE ROLE outsider LOGIN;
             GRANT USAGE ON SCHEMA tviews TO outsider;
             REVOKE ALL ON tviews.tview FROM PUBLIC;",
        )
        .expect("role without access to the catalog");
    let args = [
        "-h",
        &ctx.socket,
        "-p",
        &ctx.port,
        "-U",
        "outsider",
        "-d",
        "fake_ext",
        "status",
    ];
    let out = ctx.run(&args, &[]);
    fails_with(&out, 1, "ERROR:  permission denied for table tview");
    fails_with(&out, 1, "SQLSTATE: 42501");
}

fn extension_versions_when_installed(ctx: &Ctx) {
    if !tviews_tests::extension_installed() {
        eprintln!(
            "skipping the installed-extension checks: {}",
            tviews_tests::EXTENSION_NOT_INSTALLED
        );
        return;
    }
    ctx.cluster
        .create_database_with_extension("with_ext")
        .expect("CREATE EXTENSION pg_tviews");
    let v = json(
        &ctx.run(
            &ctx.flags("with_ext", &["version", "--format", "json"]),
            &[],
        ),
        "version with the extension",
    );
    let ext = &v["extension"];
    assert_eq!(ext["installed"], true, "{v}");
    assert!(ext["installed_version"].is_string(), "{v}");
    assert_eq!(ext["installed_version"], ext["default_version"], "{v}");
    assert_eq!(ext["library_version"], ext["installed_version"], "{v}");
    assert_eq!(ext["library_error"], Value::Null, "{v}");

    let v = json(
        &ctx.run(&ctx.flags("with_ext", &["status", "--format", "json"]), &[]),
        "status with the extension",
    );
    assert_eq!(v["extension"]["installed"], true, "{v}");
    assert_eq!(v["tviews"]["count"], 0, "{v}");
}

#[test]
fn usage_and_help_exit_codes() {
    let home = tempfile::tempdir().expect("temporary HOME");
    let out = tviews(home.path(), &["--help"], &[]);
    expect_code(&out, 0, "--help");
    assert!(stdout(&out).contains("Exit status:"));
    let out = tviews(home.path(), &["status", "--no-such-flag"], &[]);
    expect_code(&out, 1, "unknown flag");
    let out = tviews(home.path(), &["status", "-w", "-W"], &[]);
    expect_code(&out, 1, "-w with -W");
    // Resolution errors are connection failures, as in psql.
    let out = tviews(home.path(), &["status", "host=x bogus=1"], &[]);
    fails_with(&out, 2, "invalid connection option \"bogus\"");
}
