//! `tviews top`'s live source against a real server: the snapshot it fetches parses in the
//! console, Enter's explain works, and a server restart is a disconnection followed by a
//! reconnection with new statistics — never a crash.
//!
//! The `#[ignore]`d tests record the console's replay fixtures (`tui/tests/fixtures/`) from
//! scratch clusters running a workload:
//!
//! ```sh
//! cargo test -p tviews-cli --test top_live -- --ignored --nocapture
//! ```

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tviews_cli::commands::top::LiveSource;
use tviews_cli::conn::ConnArgs;
use tviews_tests::{Cluster, ClusterOptions, StopMode};
use tviews_tui::snapshot::{self, Snapshot};
use tviews_tui::{FetchError, Recorder, SnapshotSource};

const DEMO: &str = include_str!("../../demo/schema.sql");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tui/tests/fixtures")
}

fn conn_args(cluster: &Cluster, db: &str) -> ConnArgs {
    ConnArgs {
        host: Some(cluster.socket_dir().display().to_string()),
        port: Some(cluster.port().to_string()),
        username: Some("postgres".into()),
        dbname: Some(db.into()),
        no_password: true,
        ..ConnArgs::default()
    }
}

fn start(name: &str, db: &str, schema: &str) -> Cluster {
    let cluster = match Cluster::start(ClusterOptions {
        preload: true,
        name: name.into(),
        ..ClusterOptions::default()
    }) {
        Ok(c) => c,
        Err(e) => panic!("{e:?}"),
    };
    if let Err(e) = cluster.create_database_with_extension(db) {
        panic!("{e:#}");
    }
    if let Err(e) = cluster.psql(db, schema) {
        panic!("loading the schema: {e:#}");
    }
    cluster
}

async fn snapshot_of(source: &mut impl SnapshotSource) -> Snapshot {
    let text = match source.fetch().await {
        Ok(text) => text,
        Err(e) => panic!("fetch: {e}"),
    };
    match snapshot::parse(&text) {
        Ok(s) => s,
        Err(e) => panic!("parse: {e}\n{text}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn live_source_fetches_explains_and_survives_a_restart() {
    if !tviews_tests::extension_installed() {
        eprintln!("skipping: {}", tviews_tests::EXTENSION_NOT_INSTALLED);
        return;
    }
    let mut cluster = start("top-live", "shop", DEMO);
    let mut source = match LiveSource::open(&conn_args(&cluster, "shop"), None).await {
        Ok(s) => s,
        Err(e) => panic!("{}", e.render()),
    };
    assert!(
        source.label.starts_with("postgres@") && source.label.ends_with("/shop"),
        "{}",
        source.label
    );
    let first = snapshot_of(&mut source).await;
    assert!(first.preloaded);
    let names: Vec<&str> = first.tviews.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["tv_category", "tv_product", "tv_review"]);
    assert!(
        first
            .edges
            .iter()
            .any(|e| e.from == "tv_product" && e.to == "tv_category")
    );

    let explain = source.explain("tv_product".into(), false).await;
    let explain = explain.unwrap_or_else(|e| panic!("explain: {e}"));
    assert!(
        explain.contains("tb_category.pk_category → tb_product.fk_category"),
        "{explain}"
    );
    let verbose = source.explain("tv_product".into(), true).await;
    assert!(
        verbose.as_ref().is_ok_and(|v| v.len() > explain.len()),
        "{verbose:?}"
    );
    let not_a_tview = source.explain("tb_product".into(), false).await;
    assert!(
        not_a_tview
            .as_ref()
            .is_err_and(|e| e.contains("is not a TVIEW") && e.contains("42809")),
        "{not_a_tview:?}"
    );

    // The server goes away: a disconnection, as often as we ask, never a panic.
    if let Err(e) = cluster.stop(StopMode::Fast) {
        panic!("{e:#}");
    }
    for _ in 0..2 {
        match source.fetch().await {
            Err(FetchError::Disconnected(message)) => assert!(!message.is_empty()),
            other => panic!("expected a disconnection, got {other:?}"),
        }
    }
    // It comes back: the next fetch reconnects, and the statistics started again.
    if let Err(e) = cluster.start_again() {
        panic!("{e:#}");
    }
    let after = snapshot_of(&mut source).await;
    assert!(
        after.stats_since > first.stats_since,
        "a restart recreates the shared memory"
    );
    assert!(after.server_time > first.server_time);
}

/// `tviews workload` in the background (the demo's own workload).
struct Workload(Child);

impl Workload {
    fn start(cluster: &Cluster, db: &str, extra: &[&str]) -> Workload {
        let socket = cluster.socket_dir().display().to_string();
        let port = cluster.port().to_string();
        let child = Command::new(common::BIN)
            .args([
                "-h", &socket, "-p", &port, "-U", "postgres", "-d", db, "workload",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting tviews workload");
        Workload(child)
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Fetches `count` snapshots into `recorder`, one per `every`; failures are printed and
/// leave a gap, as in the console. Returns how many were recorded.
async fn record(recorder: &mut Recorder<LiveSource, File>, count: usize, every: Duration) -> usize {
    let mut recorded = 0;
    for _ in 0..count {
        match recorder.fetch().await {
            Ok(_) => recorded += 1,
            Err(e) => eprintln!("no snapshot: {e}"),
        }
        tokio::time::sleep(every).await;
    }
    recorded
}

fn recorder(source: LiveSource, file: &str) -> Recorder<LiveSource, File> {
    match Recorder::create(source, &fixtures().join(file)) {
        Ok(r) => r,
        Err(e) => panic!("{e:#}"),
    }
}

async fn open(cluster: &Cluster, db: &str) -> LiveSource {
    match LiveSource::open(&conn_args(cluster, db), None).await {
        Ok(s) => s,
        Err(e) => panic!("{}", e.render()),
    }
}

fn summary(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let snaps: Vec<Snapshot> = text
        .lines()
        .filter_map(|l| snapshot::parse(l).ok())
        .collect();
    format!(
        "{}: {} snapshots, {} with queues, {} with lock waits, {} with prepared, {} bytes",
        path.display(),
        snaps.len(),
        snaps.iter().filter(|s| !s.queues.is_empty()).count(),
        snaps.iter().filter(|s| !s.lock_waits.is_empty()).count(),
        snaps.iter().filter(|s| !s.prepared.is_empty()).count(),
        text.len()
    )
}

/// `demo.jsonl`: the demo read model under `tviews workload` (three clients, a prepared
/// transaction every few seconds with a writer waiting on it), 30 snapshots a second apart;
/// and the explain of `tv_product`, with and without its statements.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "records the console's fixtures; run by hand"]
async fn record_demo_fixture() {
    let cluster = start("top-rec-demo", "shop", DEMO);
    let _workload = Workload::start(
        &cluster,
        "shop",
        &[
            "--clients",
            "3",
            "--rate",
            "30",
            "--prepared-every",
            "4",
            "--seconds",
            "120",
        ],
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut source = open(&cluster, "shop").await;
    for (verbose, file) in [
        (false, "explain_tv_product.txt"),
        (true, "explain_tv_product_verbose.txt"),
    ] {
        let text = source
            .explain("tv_product".into(), verbose)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(fixtures().join(file), text).expect("writing the explain fixture");
    }
    let mut recorder = recorder(source, "demo.jsonl");
    let recorded = record(&mut recorder, 30, Duration::from_secs(1)).await;
    assert_eq!(recorded, 30);
    eprintln!("{}", summary(&fixtures().join("demo.jsonl")));
}

/// `many.jsonl`: 32 TVIEWs in five layers (`many_schema.sql`) under writers of every table,
/// with a prepared transaction and a writer waiting on it, `pg_tviews_stats_reset()` after
/// the eighth snapshot and a server restart (fast shutdown, a few seconds down) after the
/// fourteenth.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "records the console's fixtures; run by hand"]
async fn record_many_fixture() {
    let schema = std::fs::read_to_string(fixtures().join("many_schema.sql")).expect("schema");
    let mut cluster = start("top-rec-many", "app", &schema);
    let conninfo = cluster.conninfo("app");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut writers = Vec::new();
    for (seed, pace_ms) in [(1u64, 60u64), (2, 90), (3, 150)] {
        writers.push(tokio::spawn(writer(
            conninfo.clone(),
            seed,
            Duration::from_millis(pace_ms),
            stop_rx.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let source = open(&cluster, "app").await;
    let mut recorder = recorder(source, "many.jsonl");
    let every = Duration::from_secs(1);
    let mut recorded = record(&mut recorder, 5, every).await;

    // A prepared transaction renaming team 3 (its projects, boards and dashboards cascade),
    // and a writer of one of team 3's projects (2, 22, 42) waiting for its value locks.
    let admin = cluster.connect("app").await.expect("admin session");
    admin
        .batch_execute(
            "BEGIN; UPDATE tb_team SET name = 'Team 3 (renamed)' WHERE pk_team = 3;
             PREPARE TRANSACTION 'billing-sync-17'",
        )
        .await
        .expect("prepare");
    let blocked = cluster.connect("app").await.expect("blocked session");
    let blocked = tokio::spawn(async move {
        let _ = blocked
            .batch_execute("UPDATE tb_project SET name = 'waits' WHERE pk_project = 2")
            .await;
    });
    recorded += record(&mut recorder, 3, every).await;
    admin
        .batch_execute("SELECT pg_tviews_stats_reset()")
        .await
        .expect("reset");
    recorded += record(&mut recorder, 6, every).await;

    if let Err(e) = cluster.stop(StopMode::Fast) {
        panic!("{e:#}");
    }
    recorded += record(&mut recorder, 3, every).await;
    if let Err(e) = cluster.start_again() {
        panic!("{e:#}");
    }
    recorded += record(&mut recorder, 6, every).await;
    let _ = stop_tx.send(true);
    for w in writers {
        let _ = w.await;
    }
    blocked.abort();
    let admin = cluster.connect("app").await.expect("admin session");
    let _ = admin
        .batch_execute("ROLLBACK PREPARED 'billing-sync-17'")
        .await;
    eprintln!(
        "{recorded} recorded; {}",
        summary(&fixtures().join("many.jsonl"))
    );
}

/// A small deterministic generator (xorshift), enough to vary the statements.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// Writes to every table of `many_schema.sql`, some statements far more often than others,
/// with a little think time inside each transaction; reconnects after a restart. A second of
/// `lock_timeout`: a writer that meets the prepared transaction's value locks gives up (a
/// refresh error in the statistics) instead of waiting for the whole recording.
async fn writer(
    conninfo: String,
    seed: u64,
    pace: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
    let mut client: Option<tokio_postgres::Client> = None;
    let mut next_comment = 100_000 + seed * 100_000;
    while !*stop.borrow() {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
                Ok((c, connection)) => {
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    let _ = c.batch_execute("SET lock_timeout = '1s'").await;
                    Some(c)
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
        }
        let Some(c) = &client else { continue };
        let issue = 1 + rng.next(3000);
        let sql = match rng.next(100) {
            0..30 => format!(
                "UPDATE tb_issue SET state = (ARRAY['open','doing','done'])[1 + {}] WHERE pk_issue = {issue}",
                rng.next(3)
            ),
            30..45 => {
                format!("UPDATE tb_issue SET points = points % 8 + 1 WHERE pk_issue = {issue}")
            }
            45..65 => {
                next_comment += 1;
                format!(
                    "INSERT INTO tb_comment VALUES ({next_comment}, {issue}, {}, 'busy day')",
                    1 + rng.next(200)
                )
            }
            65..75 => format!(
                "INSERT INTO tb_issue_label VALUES ({issue}, {}) ON CONFLICT DO NOTHING",
                1 + rng.next(40)
            ),
            75..83 => format!(
                "UPDATE tb_user SET email = 'u{}@example.org' WHERE pk_user = {}",
                rng.next(1000),
                1 + rng.next(200)
            ),
            83..89 => format!(
                "UPDATE tb_user SET name = 'User {}' WHERE pk_user = {}",
                rng.next(1000),
                1 + rng.next(200)
            ),
            89..95 => format!(
                "UPDATE tb_membership SET role = (ARRAY['member','lead'])[1 + {}] WHERE pk_membership = {}",
                rng.next(2),
                1 + rng.next(400)
            ),
            95..99 => format!(
                "UPDATE tb_project SET name = 'Project {}' WHERE pk_project = {}",
                rng.next(1000),
                // Team 3's projects are left to the prepared transaction's waiter.
                [1, 4, 5, 6, 7][rng.next(5) as usize]
            ),
            _ => format!(
                "UPDATE tb_settings SET value = '{}' WHERE key = 'theme'",
                ["dark", "light"][rng.next(2) as usize]
            ),
        };
        let think = Duration::from_millis(5 + rng.next(40));
        let result = async {
            c.batch_execute("BEGIN").await?;
            c.batch_execute(&sql).await?;
            tokio::time::sleep(think).await;
            c.batch_execute("COMMIT").await
        }
        .await;
        if result.is_err() {
            let _ = c.batch_execute("ROLLBACK").await;
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(pace) => {}
        }
    }
}
