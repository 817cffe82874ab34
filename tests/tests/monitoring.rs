//! The monitoring API against a cluster with `shared_preload_libraries =
//! 'pg_tviews'` (and one without): counters move by exactly the work done,
//! the live queue and lock waits show a waiting writer and its holder, the
//! health check finds what is broken, the snapshot parses in the console.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tokio_postgres::Client;
use tviews_tests::support::{assert_exact, run};
use tviews_tests::{Cluster, ClusterOptions};

static PRELOADED: OnceLock<Cluster> = OnceLock::new();

fn preloaded() -> &'static Cluster {
    PRELOADED.get_or_init(|| {
        Cluster::start(ClusterOptions {
            name: "monitor".into(),
            preload: true,
            ..ClusterOptions::default()
        })
        .unwrap_or_else(|e| panic!("could not start the preloaded cluster: {e:#}"))
    })
}

const SCHEMA: &str = "
CREATE TABLE tb_user (pk_user bigint PRIMARY KEY, name text, email text);
CREATE TABLE tb_post (pk_post bigint PRIMARY KEY, fk_user bigint REFERENCES tb_user, title text);
INSERT INTO tb_user VALUES (1, 'alice', 'a@x'), (2, 'bob', 'b@x');
INSERT INTO tb_post VALUES (1, 1, 'p1'), (2, 2, 'p2');
CREATE TABLE tv_user AS SELECT u.pk_user, u.name FROM tb_user u;
CREATE TABLE tv_post AS SELECT p.pk_post, p.title, u.name FROM tb_post p JOIN tb_user u ON u.pk_user = p.fk_user;
";

async fn db(name: &str) -> Result<Client> {
    let cluster = preloaded();
    cluster.create_database_with_extension(name)?;
    let c = cluster.connect(name).await?;
    c.batch_execute(SCHEMA).await?;
    Ok(c)
}

async fn stat(c: &Client, tview: &str, column: &str) -> Result<i64> {
    Ok(c.query_one(
        &format!("SELECT {column} FROM pg_tviews_stats WHERE tview = $1"),
        &[&tview],
    )
    .await
    .with_context(|| format!("{column} of {tview}"))?
    .get(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_move_by_exactly_the_work_done() {
    run(|| async {
        let c = db("counters").await?;
        c.batch_execute("SELECT pg_tviews_stats_reset()").await?;
        let since: std::time::SystemTime = c
            .query_one("SELECT stats_since FROM pg_tviews_stats WHERE tview = 'tv_user'", &[])
            .await?
            .get(0);
        // One refresh, one row updated.
        c.batch_execute("UPDATE tb_user SET name = 'ALICE' WHERE pk_user = 1").await?;
        // No refresh at all: no TVIEW reads email, so the update is not captured.
        c.batch_execute("UPDATE tb_user SET email = 'new' WHERE pk_user = 2").await?;
        assert_eq!(stat(&c, "tv_user", "refreshes").await?, 1);
        assert_eq!(stat(&c, "tv_user", "keys").await?, 1);
        assert_eq!(stat(&c, "tv_user", "updated").await?, 1);
        assert_eq!(stat(&c, "tv_user", "skipped").await?, 0);
        assert_eq!(stat(&c, "tv_user", "inserted").await?, 0);
        assert_eq!(stat(&c, "tv_user", "errors").await?, 0);
        // One refresh, one row skipped: post 2 deleted and put back as it was.
        c.batch_execute("BEGIN; DELETE FROM tb_post WHERE pk_post = 2; INSERT INTO tb_post VALUES (2, 2, 'p2'); COMMIT")
            .await?;
        // tv_post: user 1's post rewritten, post 2 recomputed and skipped.
        assert_eq!(stat(&c, "tv_post", "refreshes").await?, 2);
        assert_eq!(stat(&c, "tv_post", "updated").await?, 1);
        assert_eq!(stat(&c, "tv_post", "skipped").await?, 1);
        // A delete and an insert.
        c.batch_execute("DELETE FROM tb_post WHERE pk_post = 2; INSERT INTO tb_post VALUES (3, 1, 'p3')").await?;
        assert_eq!(stat(&c, "tv_post", "deleted").await?, 1);
        assert_eq!(stat(&c, "tv_post", "inserted").await?, 1);
        // Per source: the writers of tb_user captured two statements.
        let captures: i64 = c
            .query_one("SELECT captures FROM pg_tviews_source_stats WHERE source = 'tb_user'", &[])
            .await?
            .get(0);
        assert_eq!(captures, 2);
        // The ring has this hour.
        let hour: i64 = c
            .query_one(
                "SELECT refreshes FROM pg_tviews_performance_summary WHERE hour = date_trunc('hour', now())",
                &[],
            )
            .await?
            .get(0);
        ensure!(hour >= 4, "performance summary: {hour} refreshes this hour");
        // Cache: hits once a registry is loaded.
        let r = c
            .query_one("SELECT hits, hit_ratio::float8 FROM pg_tviews_cache_stats", &[])
            .await?;
        let (hits, ratio): (i64, Option<f64>) = (r.get(0), r.get(1));
        ensure!(hits > 0 && ratio.is_some_and(|r| r > 0.0), "cache: {hits} hits, ratio {ratio:?}");
        // Reset: stats_since moves, counters go to zero.
        tokio::time::sleep(Duration::from_millis(5)).await;
        c.batch_execute("SELECT pg_tviews_stats_reset()").await?;
        let after: std::time::SystemTime = c
            .query_one("SELECT stats_since FROM pg_tviews_stats WHERE tview = 'tv_user'", &[])
            .await?
            .get(0);
        ensure!(after > since, "stats_since did not move on reset");
        assert_eq!(stat(&c, "tv_user", "refreshes").await?, 0);
        Ok(())
    })
    .await
}

type Check = (String, String, String, Option<String>);

async fn check(c: &Client) -> Result<Vec<Check>> {
    let rows = c
        .query(
            "SELECT check_name, severity, detail, hint FROM pg_tviews_health_check('0 seconds')",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// A refresh that fails (here: the definition starts returning a
/// duplicate key) rolls the writer back and counts as an error.
#[tokio::test(flavor = "multi_thread")]
async fn refresh_errors_are_counted() {
    run(|| async {
        let c = db("errors").await?;
        c.batch_execute(
            "CREATE TABLE tv_author_post WITH (tviews.key = 'pk_user') AS
               SELECT u.pk_user, p.title FROM tb_user u JOIN tb_post p ON p.fk_user = u.pk_user;
             SELECT pg_tviews_stats_reset();",
        )
        .await?;
        let err = c
            .batch_execute("INSERT INTO tb_post VALUES (7, 1, 'second post of user 1')")
            .await
            .unwrap_err();
        assert_eq!(
            tviews_tests::support::sqlstate(&err).as_deref(),
            Some("21000"),
            "{err:?}"
        );
        assert_eq!(stat(&c, "tv_author_post", "errors").await?, 1);
        assert_exact(&c).await?;
        Ok(())
    })
    .await
}

/// A writer waiting for a value lock shows in pg_tviews_queue_realtime
/// (phase, what it waits for) and pg_tviews_lock_waits (the holder's pid,
/// or the gid of a prepared transaction).
#[tokio::test(flavor = "multi_thread")]
async fn live_queue_and_lock_waits() {
    run(|| async {
        let c = db("waits").await?;
        let cluster = preloaded();
        let a = cluster.connect("waits").await?;
        let b = cluster.connect("waits").await?;
        a.batch_execute("BEGIN; UPDATE tb_user SET name = 'held' WHERE pk_user = 1; PREPARE TRANSACTION 'holder'")
            .await?;
        let b_pid: i32 = b.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
        let waiter = tokio::spawn(async move { b.batch_execute("INSERT INTO tb_post VALUES (10, 1, 'waits')").await });
        let deadline = Instant::now() + Duration::from_secs(20);
        let row = loop {
            let rows = c
                .query(
                    "SELECT w.relation, w.waiting_for, w.holder_gid, q.phase, q.tview
                     FROM pg_tviews_lock_waits w JOIN pg_tviews_queue_realtime q ON q.pid = w.waiting_pid
                     WHERE w.waiting_pid = $1",
                    &[&b_pid],
                )
                .await?;
            if let Some(r) = rows.into_iter().next() {
                break r;
            }
            ensure!(Instant::now() < deadline, "the waiting writer never showed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (relation, waiting_for, gid, phase): (String, Option<String>, Option<String>, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(relation, "tb_user");
        assert_eq!(gid.as_deref(), Some("holder"));
        assert_eq!(phase, "locking");
        let w = waiting_for.unwrap_or_default();
        ensure!(w.contains("pk_user = 1"), "waiting_for: {w}");
        // The snapshot carries the same, and the console can read it.
        let snap: serde_json::Value = c.query_one("SELECT pg_tviews_snapshot()", &[]).await?.get(0);
        let text = snap.to_string();
        let parsed = tviews_tui::snapshot::parse(&text).context("the console reads the snapshot")?;
        ensure!(parsed.prepared.iter().any(|p| p.gid == "holder"), "snapshot.prepared");
        ensure!(parsed.queues.iter().any(|q| q.pid == b_pid), "snapshot.queues");
        ensure!(snap["lock_waits"].as_array().is_some_and(|l| !l.is_empty()), "snapshot.lock_waits");
        ensure!(parsed.edges.iter().any(|e| e.from == "tb_user" && e.to == "tv_post"), "snapshot.edges");
        c.batch_execute("COMMIT PREPARED 'holder'").await?;
        waiter.await.context("waiter task")?.context("the waiting insert")?;
        assert_exact(&c).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn health_check_finds_what_is_broken() {
    run(|| async {
        let c = db("health").await?;
        let all = check(&c).await?;
        for (name, severity, detail, _) in &all {
            ensure!(severity == "ok", "{name}: {severity}: {detail}");
        }
        ensure!(all.len() >= 7, "checks: {all:?}");
        // A capture trigger disabled by hand, a trigger left on a table no
        // TVIEW reads, a prepared transaction holding TVIEW work.
        c.batch_execute(
            "ALTER TABLE tb_user DISABLE TRIGGER tviews_capture_upd;
             CREATE TABLE tb_other (id int);
             CREATE TRIGGER tviews_capture_ins AFTER INSERT ON tb_other REFERENCING NEW TABLE AS tviews_new
               FOR EACH STATEMENT EXECUTE FUNCTION tviews.capture();",
        )
        .await?;
        let other = preloaded().connect("health").await?;
        other
            .batch_execute("BEGIN; UPDATE tb_post SET title = 'x' WHERE pk_post = 1; PREPARE TRANSACTION 'old_one'")
            .await?;
        let all = check(&c).await?;
        let find = |n: &str| all.iter().find(|r| r.0 == n).cloned();
        let t = find("capture triggers").context("capture triggers check")?;
        ensure!(t.1 == "error" && t.2.contains("tb_user") && t.3.is_some(), "{t:?}");
        let t = find("orphaned capture triggers").context("orphan check")?;
        ensure!(t.1 == "warning" && t.2.contains("tb_other"), "{t:?}");
        let t = find("prepared transactions").context("prepared check")?;
        ensure!(t.1 == "warning" && t.2.contains("old_one"), "{t:?}");
        let t = find("statistics").context("statistics check")?;
        ensure!(t.1 == "ok", "{t:?}");
        c.batch_execute("ROLLBACK PREPARED 'old_one'").await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_in_three_formats() {
    run(|| async {
        let c = db("explain").await?;
        let text: String = c
            .query_one("SELECT pg_tviews_explain('tv_post')", &[])
            .await?
            .get(0);
        ensure!(text.contains("tb_user.pk_user → tb_post.fk_user"), "{text}");
        let verbose: String = c
            .query_one("SELECT pg_tviews_explain('tv_post', 'text', true)", &[])
            .await?
            .get(0);
        ensure!(
            verbose.contains("apply: WITH src AS MATERIALIZED"),
            "{verbose}"
        );
        let json: String = c
            .query_one("SELECT pg_tviews_explain('tv_post', 'json')", &[])
            .await?
            .get(0);
        let v: serde_json::Value = serde_json::from_str(&json)?;
        assert_eq!(v["key"], "pk_post");
        let dot: String = c
            .query_one("SELECT pg_tviews_explain('tv_post', 'dot')", &[])
            .await?
            .get(0);
        ensure!(dot.starts_with("digraph"), "{dot}");
        let err = c
            .query_one("SELECT pg_tviews_explain('tv_post', 'yaml')", &[])
            .await
            .unwrap_err();
        assert_eq!(
            tviews_tests::support::sqlstate(&err).as_deref(),
            Some("22023")
        );
        Ok(())
    })
    .await
}

/// Without shared_preload_libraries everything works and says statistics
/// are off.
#[tokio::test(flavor = "multi_thread")]
async fn without_preload_statistics_are_off() {
    run(|| async {
        let db = tviews_tests::support::Db::fresh("nopreload").await?;
        db.client.batch_execute(SCHEMA).await?;
        db.client.batch_execute("UPDATE tb_user SET name = 'x' WHERE pk_user = 1").await?;
        let row = db
            .client
            .query_one("SELECT severity, hint FROM pg_tviews_health_check() WHERE check_name = 'statistics'", &[])
            .await?;
        assert_eq!(row.get::<_, String>(0), "info");
        ensure!(row.get::<_, Option<String>>(1).unwrap_or_default().contains("shared_preload_libraries"));
        let refreshes: i64 = db
            .client
            .query_one("SELECT refreshes FROM pg_tviews_stats WHERE tview = 'tv_user'", &[])
            .await?
            .get(0);
        assert_eq!(refreshes, 0);
        let snap: serde_json::Value = db.client.query_one("SELECT pg_tviews_snapshot()", &[]).await?.get(0);
        assert_eq!(snap["preloaded"], false);
        tviews_tui::snapshot::parse(&snap.to_string()).context("snapshot without preload")?;
        db.assert_exact().await?;
        Ok(())
    })
    .await
}

/// Reading is free: monitoring and checks assign no transaction id (no
/// commit record, and they work in READ ONLY transactions and on standbys).
#[tokio::test(flavor = "multi_thread")]
async fn reading_assigns_no_transaction_id() {
    run(|| async {
        let c = db("mon_no_xid").await?;
        // A new session: its registry is loaded by the first call below.
        let fresh = preloaded().connect("mon_no_xid").await?;
        for sql in [
            "SELECT count(*) FROM pg_tviews_verify('tv_post')",
            "SELECT pg_tviews_diff('tv_post')",
            "SELECT count(*) FROM pg_tviews_health_check()",
            "SELECT pg_tviews_snapshot() IS NOT NULL",
            "SELECT length(pg_tviews_explain('tv_post')) > 0",
            "SELECT count(*) FROM pg_tviews_statements('tv_user')",
        ] {
            fresh.batch_execute("BEGIN READ ONLY").await?;
            fresh
                .query(sql, &[])
                .await
                .with_context(|| format!("{sql} in a READ ONLY transaction"))?;
            let xid: Option<String> = fresh
                .query_one("SELECT pg_current_xact_id_if_assigned()::text", &[])
                .await?
                .get(0);
            fresh.batch_execute("COMMIT").await?;
            ensure!(xid.is_none(), "{sql} assigned transaction id {xid:?}");
        }
        assert_exact(&c).await
    })
    .await;
}
