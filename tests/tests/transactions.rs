//! Transactions in the real world: two-phase commit (also across a
//! restart), read-your-writes with `pg_tviews.refresh_mode = statement`,
//! and crashes (a backend killed in the middle of a refresh, an immediate
//! shutdown under load). Crash tests run on clusters of their own.
//!
//! `TVIEWS_CRASH_CYCLES` sets how many crash cycles to run (default 3).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio_postgres::Client;
use tviews_tests::support::{Db, assert_exact, run, sqlstate};
use tviews_tests::{Cluster, ClusterOptions, StopMode};

const SCHEMA: &str = "
CREATE TABLE tb_user (pk_user bigint PRIMARY KEY, name text);
CREATE TABLE tb_post (pk_post bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, fk_user bigint REFERENCES tb_user, title text);
CREATE INDEX ON tb_post (fk_user);
INSERT INTO tb_user SELECT i, 'user ' || i FROM generate_series(1, 50) i;
INSERT INTO tb_post (fk_user, title) SELECT 1 + i % 50, 'post ' || i FROM generate_series(1, 500) i;
CREATE TABLE tv_post AS
SELECT p.pk_post, p.fk_user, jsonb_build_object('title', p.title, 'author', u.name) AS data
FROM tb_post p JOIN tb_user u ON u.pk_user = p.fk_user;
CREATE TABLE tv_user AS
SELECT u.pk_user, u.name, count(p.pk_post) AS posts FROM tb_user u LEFT JOIN tb_post p ON p.fk_user = u.pk_user
GROUP BY u.pk_user, u.name;
CREATE TABLE tv_digest WITH (tviews.key = 'pk_user') AS
SELECT tu.pk_user, tu.posts, (SELECT count(*) FROM tv_post tp WHERE tp.fk_user = tu.pk_user) AS documents FROM tv_user tu;
";

async fn author(c: &Client, post: i64) -> Result<String> {
    Ok(c.query_one(
        "SELECT data->>'author' FROM tv_post WHERE pk_post = $1",
        &[&post],
    )
    .await?
    .get(0))
}

/// PREPARE TRANSACTION runs the refresh: the prepared transaction carries
/// its TVIEW changes, COMMIT PREPARED or ROLLBACK PREPARED from another
/// session needs nothing more; while it is prepared it shows in
/// pg_tviews_prepared and holds only its own values.
#[tokio::test(flavor = "multi_thread")]
async fn two_phase_commit_from_another_session() {
    run(|| async {
        let db = Db::fresh("twopc").await?;
        db.client.batch_execute(SCHEMA).await?;
        let a = db.session().await?;
        let other = db.session().await?;
        a.batch_execute("BEGIN; UPDATE tb_user SET name = 'prepared' WHERE pk_user = 1; PREPARE TRANSACTION 'tx_user1'")
            .await?;
        // Listed, with the TVIEWs it wrote.
        let row = db
            .client
            .query_one("SELECT tviews, value_locks FROM pg_tviews_prepared WHERE gid = 'tx_user1'", &[])
            .await
            .context("pg_tviews_prepared lists the prepared transaction")?;
        let tviews: Vec<String> = row.get(0);
        ensure!(tviews.contains(&"tv_post".to_string()), "tviews: {tviews:?}");
        ensure!(row.get::<_, i64>(1) > 0, "value locks");
        // A writer of another user goes on without waiting.
        other.batch_execute("SET lock_timeout = '2s'").await?;
        other
            .batch_execute("UPDATE tb_user SET name = 'two' WHERE pk_user = 2; INSERT INTO tb_post (fk_user, title) VALUES (2, 'x')")
            .await
            .context("a writer of user 2 beside the prepared transaction")?;
        // A writer of user 1 waits (here: hits its lock_timeout).
        let err = other
            .batch_execute("INSERT INTO tb_post (fk_user, title) VALUES (1, 'blocked')")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("55P03"), "{err:?}");
        // Nothing of the prepared transaction is visible yet.
        ensure!(author(&db.client, 50).await? == "user 1");
        other.batch_execute("RESET lock_timeout").await?;
        db.client.batch_execute("COMMIT PREPARED 'tx_user1'").await?;
        ensure!(author(&db.client, 50).await? == "prepared");
        db.assert_exact().await?;
        // ROLLBACK PREPARED undoes the refresh with the writes.
        a.batch_execute("BEGIN; DELETE FROM tb_post WHERE fk_user = 3; PREPARE TRANSACTION 'tx_undo'")
            .await?;
        db.client.batch_execute("ROLLBACK PREPARED 'tx_undo'").await?;
        db.assert_exact().await?;
        let left: i64 = db
            .client
            .query_one("SELECT count(*) FROM pg_tviews_prepared", &[])
            .await?
            .get(0);
        ensure!(left == 0);
        // The design card's function fails loudly, with the way to do it.
        let err = db
            .client
            .batch_execute("SELECT pg_tviews_commit_prepared('x')")
            .await
            .unwrap_err();
        let d = err.as_db_error().context("a server error")?;
        assert_eq!(d.code().code(), "0A000");
        assert!(d.hint().unwrap_or_default().contains("COMMIT PREPARED"));
        Ok(())
    })
    .await
}

/// `pg_tviews.refresh_mode = statement`: the transaction reads its own
/// writes in the TVIEWs after every statement; `commit` (the default) only
/// at commit. Settable with SET, SET LOCAL, per role and per database.
#[tokio::test(flavor = "multi_thread")]
async fn read_your_writes_in_statement_mode() {
    run(|| async {
        let db = Db::fresh("ryw").await?;
        let c = &db.client;
        c.batch_execute(SCHEMA).await?;
        let mode: String = c.query_one("SHOW pg_tviews.refresh_mode", &[]).await?.get(0);
        assert_eq!(mode, "commit");
        // Commit mode: inside the transaction the TVIEW still shows the old row.
        c.batch_execute("BEGIN; UPDATE tb_user SET name = 'in-txn' WHERE pk_user = 1").await?;
        ensure!(author(c, 50).await? == "user 1", "commit mode refreshed early");
        c.batch_execute("COMMIT").await?;
        ensure!(author(c, 50).await? == "in-txn");
        // Statement mode with SET LOCAL: seen after each statement, exact
        // inside the transaction, gone with ROLLBACK.
        c.batch_execute("BEGIN; SET LOCAL pg_tviews.refresh_mode = statement; UPDATE tb_user SET name = 'ryw' WHERE pk_user = 1")
            .await?;
        ensure!(author(c, 50).await? == "ryw", "statement mode did not refresh after the statement");
        assert_exact(c).await.context("exact inside the transaction")?;
        c.batch_execute("INSERT INTO tb_post (fk_user, title) VALUES (1, 'ryw post'); DELETE FROM tb_post WHERE pk_post = 100")
            .await?;
        assert_exact(c).await.context("exact after more statements")?;
        c.batch_execute("ROLLBACK").await?;
        let mode: String = c.query_one("SHOW pg_tviews.refresh_mode", &[]).await?.get(0);
        assert_eq!(mode, "commit", "SET LOCAL outlived its transaction");
        db.assert_exact().await?;
        // Per role and per database.
        c.batch_execute(&format!(
            "CREATE ROLE ryw_role LOGIN SUPERUSER; ALTER ROLE ryw_role SET pg_tviews.refresh_mode = statement;
             ALTER DATABASE {} SET pg_tviews.refresh_mode = statement",
            db.name
        ))
        .await?;
        let fresh = db.session().await?;
        let mode: String = fresh.query_one("SHOW pg_tviews.refresh_mode", &[]).await?.get(0);
        assert_eq!(mode, "statement", "ALTER DATABASE ... SET");
        fresh
            .batch_execute("BEGIN; UPDATE tb_user SET name = 'db-level' WHERE pk_user = 2")
            .await?;
        ensure!(author(&fresh, 1).await? == "db-level");
        fresh.batch_execute("COMMIT").await?;
        c.batch_execute(&format!("ALTER DATABASE {} RESET pg_tviews.refresh_mode", db.name))
            .await?;
        let role: String = c
            .query_one(
                "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting WHERE setrole = 'ryw_role'::regrole",
                &[],
            )
            .await?
            .get(0);
        assert_eq!(role, "pg_tviews.refresh_mode=statement");
        // An invalid value is refused.
        let err = c.batch_execute("SET pg_tviews.refresh_mode = sometimes").await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("22023"));
        db.assert_exact().await?;
        c.batch_execute("DROP ROLE ryw_role").await?;
        Ok(())
    })
    .await
}

fn crash_cycles() -> usize {
    std::env::var("TVIEWS_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

async fn own_cluster(name: &str) -> Result<(Cluster, Client)> {
    let cluster = Cluster::start(ClusterOptions {
        name: name.into(),
        // Crash recovery only means something with durable writes.
        settings: vec![("fsync".into(), "on".into())],
        ..ClusterOptions::default()
    })?;
    cluster.create_database_with_extension("crash")?;
    let client = cluster.connect("crash").await?;
    client.batch_execute(SCHEMA).await?;
    Ok((cluster, client))
}

/// Waits until the server accepts connections again after a crash. A
/// connection made just after the kill can still be reset by the
/// postmaster's crash handling, so a connection counts only once it has
/// answered twice, a moment apart.
async fn reconnect(cluster: &Cluster) -> Result<Client> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(c) = cluster.connect("crash").await
            && c.simple_query("SELECT 1").await.is_ok()
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if c.simple_query("SELECT 1").await.is_ok() {
                return Ok(c);
            }
        }
        ensure!(
            Instant::now() < deadline,
            "the server did not come back after the crash"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A backend killed with SIGKILL while its COMMIT refreshes a large key
/// set: the postmaster resets every backend and recovers; afterwards every
/// TVIEW equals its definition and new writes are maintained.
#[tokio::test(flavor = "multi_thread")]
async fn backend_killed_in_the_middle_of_a_refresh() {
    run(|| async {
        let (cluster, client) = own_cluster("kill9").await?;
        client
            .batch_execute("INSERT INTO tb_post (fk_user, title) SELECT 1 + i % 50, 'bulk ' || i FROM generate_series(1, 30000) i")
            .await?;
        let mut client = client;
        for cycle in 0..crash_cycles() {
            let victim = cluster.connect("crash").await?;
            let pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
            victim
                .batch_execute(&format!("BEGIN; UPDATE tb_user SET name = name || '!{cycle}'"))
                .await?;
            let commit = tokio::spawn(async move { victim.batch_execute("COMMIT").await });
            // Kill it once the COMMIT is running (refreshing all posts).
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let active: bool = client
                    .query_one(
                        "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query = 'COMMIT')",
                        &[&pid],
                    )
                    .await?
                    .get(0);
                if active || commit.is_finished() {
                    break;
                }
                ensure!(Instant::now() < deadline, "the COMMIT never started");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // SAFETY: kill(2) of a server process we started.
            let rc = unsafe { libc_kill(pid, 9) };
            ensure!(rc == 0, "kill -9 {pid} failed");
            let _ = commit.await;
            client = reconnect(&cluster).await?;
            assert_exact(&client).await.with_context(|| format!("cycle {cycle}: after recovery"))?;
            client
                .batch_execute(&format!("UPDATE tb_user SET name = 'after crash {cycle}' WHERE pk_user = 7"))
                .await?;
            assert_exact(&client).await.with_context(|| format!("cycle {cycle}: maintained after recovery"))?;
        }
        let log = cluster.log_tail(400);
        ensure!(log.contains("terminated by signal 9"), "no backend was killed:\n{log}");
        Ok(())
    })
    .await
}

unsafe fn libc_kill(pid: i32, sig: i32) -> i32 {
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    unsafe { kill(pid, sig) }
}

/// Immediate shutdowns under concurrent load, with prepared transactions
/// left open across the restart: after recovery every TVIEW is exact, the
/// prepared transactions are still listed in pg_tviews_prepared, and
/// COMMIT PREPARED / ROLLBACK PREPARED after the restart leave everything
/// exact.
#[tokio::test(flavor = "multi_thread")]
async fn immediate_shutdown_under_load_with_prepared_transactions() {
    run(|| async {
        let (mut cluster, _client) = own_cluster("immediate").await?;
        for cycle in 0..crash_cycles() {
            // Two prepared transactions: one to commit, one to roll back.
            let p = cluster.connect("crash").await?;
            p.batch_execute(&format!(
                "BEGIN; UPDATE tb_user SET name = 'prepared {cycle}' WHERE pk_user = 11;
                 INSERT INTO tb_post (fk_user, title) VALUES (11, 'prepared post {cycle}');
                 PREPARE TRANSACTION 'keep_{cycle}';
                 BEGIN; DELETE FROM tb_post WHERE fk_user = 12; UPDATE tb_user SET name = 'undone' WHERE pk_user = 12;
                 PREPARE TRANSACTION 'undo_{cycle}';"
            ))
            .await?;
            // Writers on other users, running when the server goes down.
            let mut writers = Vec::new();
            for w in 0..4i64 {
                let c = cluster.connect("crash").await?;
                writers.push(tokio::spawn(async move {
                    for i in 0..1_000i64 {
                        let user = 20 + w * 5 + i % 5;
                        let sql = format!(
                            "BEGIN; UPDATE tb_user SET name = 'w{w} {i}' WHERE pk_user = {user};
                             INSERT INTO tb_post (fk_user, title) VALUES ({user}, 'w{w} {i}');
                             DELETE FROM tb_post WHERE pk_post = (SELECT min(pk_post) FROM tb_post WHERE fk_user = {user});
                             COMMIT"
                        );
                        if c.batch_execute(&sql).await.is_err() {
                            return;
                        }
                    }
                }));
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
            cluster.stop(StopMode::Immediate)?;
            for w in writers {
                let _ = w.await;
            }
            cluster.start_again()?;
            let c = reconnect(&cluster).await?;
            assert_exact(&c).await.with_context(|| format!("cycle {cycle}: after recovery"))?;
            let listed: Vec<String> = c
                .query("SELECT gid FROM pg_tviews_prepared ORDER BY gid", &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            ensure!(
                listed == vec![format!("keep_{cycle}"), format!("undo_{cycle}")],
                "cycle {cycle}: pg_tviews_prepared after the restart: {listed:?}"
            );
            // Still holding their values: a writer of user 11 waits.
            c.batch_execute("SET lock_timeout = '500ms'").await?;
            let err = c
                .batch_execute("UPDATE tb_user SET name = 'x' WHERE pk_user = 11")
                .await
                .err()
                .context("a writer of user 11 beside its prepared transaction, after the restart")?;
            ensure!(
                matches!(sqlstate(&err).as_deref(), Some("55P03")),
                "cycle {cycle}: {err:?}"
            );
            c.batch_execute("RESET lock_timeout").await?;
            c.batch_execute(&format!("COMMIT PREPARED 'keep_{cycle}'")).await?;
            c.batch_execute(&format!("ROLLBACK PREPARED 'undo_{cycle}'")).await?;
            assert_exact(&c).await.with_context(|| format!("cycle {cycle}: after COMMIT/ROLLBACK PREPARED"))?;
            let name: String = c
                .query_one("SELECT name FROM tv_user WHERE pk_user = 11", &[])
                .await?
                .get(0);
            ensure!(name == format!("prepared {cycle}"));
        }
        Ok(())
    })
    .await
}

/// Statistics and queues are backend-local or in shared memory: after a
/// crash the queue of the next transaction starts empty.
#[tokio::test(flavor = "multi_thread")]
async fn queues_start_clean_after_a_restart() {
    run(|| async {
        let (mut cluster, c) = own_cluster("clean").await?;
        c.batch_execute("BEGIN; UPDATE tb_user SET name = 'never' WHERE pk_user = 3")
            .await?;
        cluster.restart(StopMode::Immediate)?;
        let c = reconnect(&cluster).await?;
        let pending: (i64, i64) = {
            let r = c
                .query_one("SELECT keys, start_values FROM pg_tviews_pending()", &[])
                .await?;
            (r.get(0), r.get(1))
        };
        ensure!(
            pending == (0, 0),
            "pending work after a restart: {pending:?}"
        );
        assert_exact(&c).await?;
        let name: String = c
            .query_one("SELECT name FROM tv_user WHERE pk_user = 3", &[])
            .await?
            .get(0);
        if name == "never" {
            bail!("an uncommitted change reached the TVIEW");
        }
        Ok(())
    })
    .await
}
