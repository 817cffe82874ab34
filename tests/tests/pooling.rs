//! Pooled connections (DESIGN.md §5: "`DISCARD ALL` and pooled connections start clean"):
//! nothing a transaction leaves in its backend may reach the next user of that server
//! connection. Each test runs a real PgBouncer ([`tviews_tests::pgbouncer`]) in front of the
//! shared cluster, mostly in transaction pooling with a pool of one server connection, so
//! that consecutive transactions of different clients provably run in one backend (each test
//! checks `pg_backend_pid()`). Through PgBouncer only the simple protocol is used (see the
//! harness's module documentation); exactness is checked over a direct connection.
//!
//! What "starts clean" means, checked at the start of the next client's transaction:
//! `pg_tviews_pending()` is (0, 0); its own commit refreshes exactly what the same transaction
//! refreshes on a clean backend (`pg_tviews_session_stats()`, reset inside it); rows locked by
//! the abandoned transaction are free; and every TVIEW equals its definition.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio_postgres::Client;
use tviews_tests::oracle::Report;
use tviews_tests::oracle_pooled::run_pooled;
use tviews_tests::pgbouncer::{Pgbouncer, PoolMode, simple_one, simple_rows};
use tviews_tests::support::{Db, assert_exact, run, sqlstate};

const SCHEMA: &str = "
CREATE TABLE tb_user (pk_user bigint PRIMARY KEY, name text);
CREATE TABLE tb_post (pk_post bigint PRIMARY KEY, fk_user bigint REFERENCES tb_user, title text,
                      n int NOT NULL DEFAULT 1);
INSERT INTO tb_user SELECT i, 'user' || i FROM generate_series(1, 5) i;
INSERT INTO tb_post SELECT i, 1 + i % 5, 'seed ' || i, 1 FROM generate_series(1, 20) i;
CREATE TABLE tv_post AS
SELECT p.pk_post, p.fk_user, jsonb_build_object('title', p.title, 'author', u.name) AS data
FROM tb_post p JOIN tb_user u ON u.pk_user = p.fk_user;
CREATE TABLE tv_user_stats WITH (tviews.key = 'pk_user') AS
SELECT u.pk_user, u.name, count(p.pk_post) AS posts
FROM tb_user u LEFT JOIN tb_post p ON p.fk_user = u.pk_user GROUP BY u.pk_user, u.name;
-- Its refresh fails (division by zero) at commit when a post gets n = 0.
CREATE TABLE tv_ratio AS SELECT p.pk_post AS pk_ratio, 100 / p.n AS r FROM tb_post p;
";

/// Writes of the transactions that fail or are abandoned: new posts (ids from 100), a
/// renamed user (a join value: its posts are derived at flush), a deleted post, a changed
/// post. None of it may survive, be refreshed by someone else, or stay queued.
const ABANDONED_WRITES: &str = "
INSERT INTO tb_post (pk_post, fk_user, title) SELECT i, 2, 'abandoned' FROM generate_series(100, 104) i;
UPDATE tb_user SET name = 'abandoned' WHERE pk_user = 3;
DELETE FROM tb_post WHERE pk_post = 5;
UPDATE tb_post SET title = 'abandoned' WHERE pk_post = 7;
";

/// How long any wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// A database with [`SCHEMA`] and a PgBouncer in front of the cluster; runs `body`, and on
/// failure adds PgBouncer's log tail to the error (support::run adds the server's).
async fn with_bouncer(
    prefix: &str,
    mode: PoolMode,
    pool_size: u32,
    body: impl AsyncFnOnce(&Db, &Pgbouncer) -> Result<()>,
) {
    run(|| async {
        let db = Db::fresh(prefix).await?;
        db.client.batch_execute(SCHEMA).await.context("schema")?;
        let bouncer = Pgbouncer::start(db.cluster, mode, pool_size, 20)?;
        body(&db, &bouncer).await.map_err(|e| {
            e.context(format!(
                "---- PgBouncer log (last lines) ----\n{}\n---- end of PgBouncer log ----",
                bouncer.log_tail(40)
            ))
        })
    })
    .await
}

async fn int(client: &Client, sql: &str) -> Result<i64> {
    let text = simple_one(client, sql).await?;
    text.parse()
        .with_context(|| format!("not an integer: {text:?} from {sql}"))
}

async fn backend_pid(client: &Client) -> Result<i64> {
    int(client, "SELECT pg_backend_pid()").await
}

/// `pg_tviews_pending()`: (keys, start values) queued in the current transaction.
async fn pending(client: &Client) -> Result<(i64, i64)> {
    let rows = simple_rows(client, "SELECT keys, start_values FROM pg_tviews_pending()").await?;
    let parse = |v: Option<&Option<String>>| -> Result<i64> {
        v.cloned()
            .flatten()
            .context("NULL in pg_tviews_pending()")?
            .parse()
            .context("pg_tviews_pending()")
    };
    match rows.as_slice() {
        [row] => Ok((parse(row.first())?, parse(row.get(1))?)),
        _ => bail!("pg_tviews_pending() returned {} rows", rows.len()),
    }
}

/// This backend's refresh counters: (TVIEW, refreshes, keys, recomputed, inserted, updated,
/// deleted), TVIEWs with no refresh left out.
async fn refreshed(client: &Client) -> Result<Vec<Vec<Option<String>>>> {
    simple_rows(
        client,
        "SELECT tview, refreshes, keys, recomputed, inserted, updated, deleted
         FROM pg_tviews_session_stats() WHERE refreshes > 0 ORDER BY tview",
    )
    .await
}

/// The abandoned writes left no trace in the sources (checked directly).
async fn abandoned_writes_gone(db: &Db) -> Result<()> {
    let n: i64 = db
        .client
        .query_one(
            "SELECT (SELECT count(*) FROM tb_post WHERE pk_post >= 100 OR title = 'abandoned')
                  + (SELECT count(*) FROM tb_user WHERE name = 'abandoned')",
            &[],
        )
        .await?
        .get(0);
    ensure!(n == 0, "{n} abandoned writes are visible");
    let post5: i64 = db
        .client
        .query_one("SELECT count(*) FROM tb_post WHERE pk_post = 5", &[])
        .await?
        .get(0);
    ensure!(post5 == 1, "post 5 was deleted by an abandoned transaction");
    Ok(())
}

/// The next client's transaction on a server connection: it must find no pending work, run
/// in backend `expect_pid` when given, and refresh exactly what `baseline` says (the counters
/// of the same transaction on a clean backend), with a lock wait of at most [`PATIENCE`] on
/// rows the previous transaction touched. Returns its counters and its backend.
async fn next_client_transaction(
    client: &Client,
    expect_pid: Option<i64>,
    title: &str,
    baseline: Option<&Vec<Vec<Option<String>>>>,
) -> Result<(Vec<Vec<Option<String>>>, i64)> {
    client.batch_execute("BEGIN").await?;
    let pid = backend_pid(client).await?;
    if let Some(expected) = expect_pid {
        ensure!(
            pid == expected,
            "the next transaction ran in backend {pid}, not {expected}: the pool did not hand over the server connection"
        );
    }
    let queued = pending(client).await?;
    ensure!(
        queued == (0, 0),
        "backend {pid}: a new transaction starts with pending work {queued:?}"
    );
    client
        .batch_execute("SELECT pg_tviews_session_stats_reset()")
        .await?;
    // Post 7 was updated by the abandoned transaction: its row lock must be gone.
    tokio::time::timeout(
        PATIENCE,
        client.batch_execute(&format!(
            "UPDATE tb_post SET title = '{title}' WHERE pk_post = 7; UPDATE tb_post SET title = '{title}' WHERE pk_post = 1"
        )),
    )
    .await
    .context("the next client waited for a row lock of the abandoned transaction")??;
    client.batch_execute("COMMIT").await?;
    // With a pool of one, the next transaction runs in the same backend: its counters.
    client.batch_execute("BEGIN").await?;
    let pid_after = backend_pid(client).await?;
    let stats = refreshed(client).await?;
    client.batch_execute("COMMIT").await?;
    if expect_pid.is_some() {
        ensure!(
            pid_after == pid,
            "counters read in backend {pid_after}, not {pid}"
        );
    }
    if let Some(baseline) = baseline {
        ensure!(
            &stats == baseline,
            "backend {pid}: the next client's commit refreshed {stats:?}, the same transaction on a clean backend {baseline:?}"
        );
    }
    Ok((stats, pid))
}

/// The baseline for [`next_client_transaction`]: its counters on a clean backend, which
/// touch the two posts and nothing else.
async fn clean_baseline(client: &Client) -> Result<Vec<Vec<Option<String>>>> {
    let (stats, _) = next_client_transaction(client, None, "baseline", None).await?;
    ensure!(
        !stats.is_empty(),
        "a committed update refreshed nothing: is the extension maintaining TVIEWs?"
    );
    Ok(stats)
}

/// Waits until backend `pid` shows `wait_event_type` `Lock` (checked directly).
async fn wait_for_lock_wait(db: &Db, pid: i64) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let waiting: bool = db
            .client
            .query_one(
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1::int AND wait_event_type = 'Lock'",
                &[&(pid as i32)],
            )
            .await?
            .get(0);
        if waiting {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "backend {pid} never waited for a lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until backend `pid` has exited (checked directly); fails after [`PATIENCE`].
async fn wait_until_gone(db: &Db, pid: i64) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let alive: bool = db
            .client
            .query_one(
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1::int",
                &[&(pid as i32)],
            )
            .await?
            .get(0);
        if !alive {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "backend {pid} is still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How client A's transaction fails.
#[derive(Debug, Clone, Copy)]
enum Failure {
    /// A failing statement after the writes; the client rolls back.
    StatementError,
    /// A write statement that fails half-way (its first row is captured, its second violates a
    /// foreign key at the end of the statement); the client rolls back.
    WriteError,
    /// The refresh itself fails at commit (tv_ratio divides by a post's n = 0).
    RefreshErrorAtCommit,
    /// The commit is cancelled in the middle of its refresh (blocked on a lock of tv_post).
    CancelledDuringRefresh,
}

/// Client A (through the pool) writes, fails as `failure` says, and is left in backend
/// `pid`. Returns after A's transaction is over.
async fn fail_a_transaction(db: &Db, a: &Client, pid: i64, failure: Failure) -> Result<()> {
    a.batch_execute("BEGIN").await?;
    ensure!(
        backend_pid(a).await? == pid,
        "client A moved to another backend"
    );
    a.batch_execute(ABANDONED_WRITES).await?;
    let queued = pending(a).await?;
    ensure!(
        queued.0 + queued.1 > 0,
        "the abandoned writes queued nothing ({queued:?}): the test would prove nothing"
    );
    let (result, expected) = match failure {
        Failure::StatementError => (a.batch_execute("SELECT 1 / 0").await, "22012"),
        Failure::WriteError => (
            a.batch_execute(
                "INSERT INTO tb_post (pk_post, fk_user, title) VALUES (110, 1, 'abandoned'), (111, 999, 'abandoned')",
            )
            .await,
            "23503",
        ),
        Failure::RefreshErrorAtCommit => {
            a.batch_execute("UPDATE tb_post SET n = 0 WHERE pk_post = 9")
                .await?;
            (a.batch_execute("COMMIT").await, "22012")
        }
        Failure::CancelledDuringRefresh => {
            // A direct session holds tv_post, so A's refresh blocks in COMMIT; then A's
            // backend is cancelled there, in the middle of its flush.
            let blocker = db.session().await?;
            blocker
                .batch_execute("BEGIN; LOCK TABLE tv_post IN ACCESS EXCLUSIVE MODE")
                .await?;
            let (commit_result, waited) = tokio::join!(a.batch_execute("COMMIT"), async {
                let waited = wait_for_lock_wait(db, pid).await;
                // Cancel even if the wait was not seen, so that a COMMIT blocked anyway ends.
                let cancelled = db
                    .client
                    .execute("SELECT pg_cancel_backend($1::int)", &[&(pid as i32)])
                    .await;
                waited.and(cancelled.map(drop).context("pg_cancel_backend"))
            });
            blocker.batch_execute("ROLLBACK").await?;
            waited?;
            (commit_result, "57014")
        }
    };
    let err = match result {
        Ok(()) => bail!("{failure:?}: client A's transaction did not fail"),
        Err(e) => e,
    };
    ensure!(
        sqlstate(&err).as_deref() == Some(expected),
        "{failure:?}: expected SQLSTATE {expected}, got {err:?}"
    );
    // After a failed statement the transaction is aborted, not over: end it. After a failed
    // COMMIT it is over, and this ROLLBACK only draws a warning.
    a.batch_execute("ROLLBACK").await?;
    Ok(())
}

/// Client A's transaction fails in four ways, each followed by client B's transaction on the
/// same server connection (pool of one): B finds nothing pending, refreshes exactly what it
/// refreshes on a clean backend, and every TVIEW stays exact.
#[tokio::test(flavor = "multi_thread")]
async fn failed_transaction_leaves_nothing_for_the_next_client() {
    with_bouncer(
        "pool_fail",
        PoolMode::Transaction,
        1,
        async |db, bouncer| {
            let a = bouncer.connect(&db.name).await?;
            let b = bouncer.connect(&db.name).await?;
            let baseline = clean_baseline(&b).await?;
            let pid = backend_pid(&a).await?;
            for failure in [
                Failure::StatementError,
                Failure::WriteError,
                Failure::RefreshErrorAtCommit,
                Failure::CancelledDuringRefresh,
            ] {
                fail_a_transaction(db, &a, pid, failure)
                    .await
                    .with_context(|| format!("{failure:?}"))?;
                next_client_transaction(&b, Some(pid), &format!("{failure:?}"), Some(&baseline))
                    .await
                    .with_context(|| format!("after {failure:?}"))?;
                assert_exact(&db.client)
                    .await
                    .with_context(|| format!("after {failure:?}"))?;
                abandoned_writes_gone(db)
                    .await
                    .with_context(|| format!("after {failure:?}"))?;
            }
            Ok(())
        },
    )
    .await
}

/// Writes that queue work and are then committed or rolled back, distinct per `round`.
fn round_writes(round: usize) -> String {
    format!(
        "INSERT INTO tb_post (pk_post, fk_user, title) VALUES ({}, {}, 'round {round}');
         UPDATE tb_user SET name = 'round {round}' WHERE pk_user = 2;",
        300 + round,
        1 + round % 5
    )
}

/// `DISCARD ALL`, `RESET ALL` and `DEALLOCATE ALL` after a transaction that queued work and
/// committed or rolled back: the next transaction on that server connection starts clean, and
/// maintenance goes on, also of a TVIEW another session created in between (the backend's
/// cached registry must notice it after the DISCARD). Then `DISCARD ALL` inside an implicit
/// transaction block (a multi-statement query), which fails and takes the queued write with it.
#[tokio::test(flavor = "multi_thread")]
async fn discard_reset_deallocate_start_clean() {
    with_bouncer("pool_discard", PoolMode::Transaction, 1, async |db, bouncer| {
        let a = bouncer.connect(&db.name).await?;
        let b = bouncer.connect(&db.name).await?;
        let pid = backend_pid(&a).await?;
        let mut round = 0;
        for command in ["DISCARD ALL", "RESET ALL", "DEALLOCATE ALL"] {
            for commit in [false, true] {
                let what = format!("{command} after a {}", if commit { "commit" } else { "rollback" });
                a.batch_execute("BEGIN").await?;
                a.batch_execute(&round_writes(round)).await?;
                let queued = pending(&a).await?;
                ensure!(queued.0 + queued.1 > 0, "{what}: the writes queued nothing");
                a.batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
                    .await?;
                a.batch_execute(command).await.with_context(|| what.clone())?;
                // Another session adds a TVIEW over the table the next client writes.
                db.client
                    .batch_execute(&format!(
                        "CREATE TABLE tv_extra{round} AS SELECT p.pk_post AS pk_extra{round}, upper(p.title) AS t, u.name
                         FROM tb_post p LEFT JOIN tb_user u ON u.pk_user = p.fk_user"
                    ))
                    .await?;
                let (stats, _) = next_client_transaction(&b, Some(pid), &format!("b{round}"), None)
                    .await
                    .with_context(|| what.clone())?;
                let extra = format!("tv_extra{round}");
                ensure!(
                    stats.iter().any(|r| r.first().cloned().flatten().is_some_and(|t| t.contains(&extra))),
                    "{what}: the next client's commit did not refresh {extra}, created meanwhile: {stats:?}"
                );
                assert_exact(&db.client).await.with_context(|| what.clone())?;
                let rows: i64 = db
                    .client
                    .query_one(
                        &format!("SELECT count(*) FROM tb_post WHERE pk_post = {}", 300 + round),
                        &[],
                    )
                    .await?
                    .get(0);
                ensure!(rows == i64::from(commit), "{what}: post {} count {rows}", 300 + round);
                round += 1;
            }
        }
        // In a multi-statement query the statements share one implicit transaction, where
        // DISCARD ALL is refused: the INSERT before it is rolled back with its queued work.
        let err = a
            .batch_execute(&format!("{} DISCARD ALL", round_writes(round)))
            .await
            .err()
            .context("DISCARD ALL in an implicit transaction block succeeded")?;
        ensure!(sqlstate(&err).as_deref() == Some("25001"), "{err:?}");
        next_client_transaction(&b, Some(pid), "implicit", None).await?;
        assert_exact(&db.client).await?;
        ensure!(
            int(&b, &format!("SELECT count(*) FROM tb_post WHERE pk_post = {}", 300 + round)).await? == 0,
            "the INSERT before a failed DISCARD ALL survived"
        );
        Ok(())
    })
    .await
}

/// Session pooling: PgBouncer itself runs `DISCARD ALL` (server_reset_query) when a client
/// leaves, and the next client gets that server connection. It starts clean and its writes
/// are maintained, also for a TVIEW created while the connection sat in the pool.
#[tokio::test(flavor = "multi_thread")]
async fn session_pool_reset_query_starts_clean() {
    with_bouncer("pool_session", PoolMode::Session, 1, async |db, bouncer| {
        let a = bouncer.connect(&db.name).await?;
        let pid = backend_pid(&a).await?;
        a.batch_execute(&format!("BEGIN; {} COMMIT", round_writes(0)))
            .await?;
        a.batch_execute(&format!("BEGIN; {} ROLLBACK", round_writes(1)))
            .await?;
        // Left behind on purpose: DISCARD ALL removes it, which shows the reset query ran.
        a.batch_execute("PREPARE leftover AS SELECT 1").await?;
        drop(a);
        db.client
            .batch_execute(
                "CREATE TABLE tv_late AS SELECT p.pk_post AS pk_late, lower(p.title) AS t FROM tb_post p",
            )
            .await?;
        // PgBouncer may still be resetting the connection: the new client waits for it.
        let b = bouncer.connect(&db.name).await?;
        ensure!(
            int(&b, "SELECT count(*) FROM pg_prepared_statements").await? == 0,
            "the next client of the server connection sees the previous one's prepared statement"
        );
        let (stats, _) = next_client_transaction(&b, Some(pid), "session", None).await?;
        ensure!(
            stats.iter().any(|r| r.first().cloned().flatten().is_some_and(|t| t.contains("tv_late"))),
            "the next client's commit did not refresh tv_late: {stats:?}"
        );
        assert_exact(&db.client).await?;
        Ok(())
    })
    .await
}

async fn refresh_mode(client: &Client) -> Result<String> {
    simple_one(client, "SHOW pg_tviews.refresh_mode").await
}

async fn post2_title_in_tview(client: &Client) -> Result<String> {
    simple_one(
        client,
        "SELECT data->>'title' FROM tv_post WHERE pk_post = 2",
    )
    .await
}

/// The next client of the server connection runs in commit mode, by what it says and what
/// it does: its write is not in the TVIEW before its commit, and is after.
async fn next_client_in_commit_mode(b: &Client, pid: i64, title: &str, what: &str) -> Result<()> {
    b.batch_execute("BEGIN").await?;
    ensure!(
        backend_pid(b).await? == pid,
        "{what}: the next client got another backend"
    );
    let mode = refresh_mode(b).await?;
    ensure!(
        mode == "commit",
        "{what}: the next client's refresh_mode is {mode:?}"
    );
    let before = post2_title_in_tview(b).await?;
    b.batch_execute(&format!(
        "UPDATE tb_post SET title = '{title}' WHERE pk_post = 2"
    ))
    .await?;
    let inside = post2_title_in_tview(b).await?;
    ensure!(
        inside == before,
        "{what}: the next client's write was refreshed before its commit (statement mode leaked): {inside:?}"
    );
    b.batch_execute("COMMIT").await?;
    let after = post2_title_in_tview(b).await?;
    ensure!(after == title, "{what}: after commit tv_post has {after:?}");
    Ok(())
}

/// `SET LOCAL pg_tviews.refresh_mode = statement` by one client of a server connection ends
/// with its transaction; a session-level SET ends with `RESET ALL` or `DISCARD ALL`. Each
/// time the setting is shown to work first (read-your-writes inside the transaction).
#[tokio::test(flavor = "multi_thread")]
async fn refresh_mode_does_not_leak_to_the_next_client() {
    with_bouncer("pool_mode", PoolMode::Transaction, 1, async |db, bouncer| {
        let a = bouncer.connect(&db.name).await?;
        let b = bouncer.connect(&db.name).await?;
        let pid = backend_pid(&a).await?;
        // Load the library in the backend (it defines the setting) before anything else.
        a.batch_execute("SELECT pg_tviews_version()").await?;
        for (i, how) in ["SET LOCAL", "SET, then RESET ALL", "SET, then DISCARD ALL"]
            .into_iter()
            .enumerate()
        {
            let set = if i == 0 { "SET LOCAL" } else { "SET" };
            a.batch_execute(&format!("BEGIN; {set} pg_tviews.refresh_mode = statement"))
                .await
                .with_context(|| format!("{how}: is pg_tviews.refresh_mode defined by the installed extension?"))?;
            ensure!(refresh_mode(&a).await? == "statement", "{how}: SET did not take");
            let title = format!("a{i}");
            a.batch_execute(&format!("UPDATE tb_post SET title = '{title}' WHERE pk_post = 2"))
                .await?;
            let inside = post2_title_in_tview(&a).await?;
            ensure!(
                inside == title,
                "{how}: refresh_mode = statement did not refresh inside the transaction (tv_post has {inside:?}); the installed extension may predate the setting"
            );
            a.batch_execute("COMMIT").await?;
            match i {
                1 => a.batch_execute("RESET ALL").await?,
                2 => a.batch_execute("DISCARD ALL").await?,
                _ => {}
            }
            next_client_in_commit_mode(&b, pid, &format!("b{i}"), how).await?;
            assert_exact(&db.client).await.with_context(|| how.to_owned())?;
        }
        Ok(())
    })
    .await
}

/// A client that goes away in the middle of a transaction after writing: politely (its
/// Terminate message) or not (its TCP connection shut down). PgBouncer cannot hand a server
/// connection in a transaction to anyone, so it closes it ("unclean server") and the backend's
/// exit rolls the transaction back; the next client gets a fresh server connection, finds
/// nothing pending, is not blocked by the abandoned row locks, and every TVIEW is exact.
#[tokio::test(flavor = "multi_thread")]
async fn client_gone_mid_transaction() {
    with_bouncer(
        "pool_gone",
        PoolMode::Transaction,
        1,
        async |db, bouncer| {
            let b = bouncer.connect(&db.name).await?;
            let baseline = clean_baseline(&b).await?;
            for polite in [true, false] {
                let what = if polite {
                    "client dropped"
                } else {
                    "TCP connection shut down"
                };
                let (a, kill) = bouncer.connect_tcp(&db.name).await?;
                a.batch_execute("BEGIN").await?;
                let pid = backend_pid(&a).await?;
                a.batch_execute(ABANDONED_WRITES).await?;
                let queued = pending(&a).await?;
                ensure!(queued.0 + queued.1 > 0, "{what}: the writes queued nothing");
                if polite {
                    drop(a);
                } else {
                    kill.kill()?;
                    // The client notices too: its next request fails.
                    ensure!(
                        a.batch_execute("SELECT 1").await.is_err(),
                        "{what}: the client still works"
                    );
                }
                wait_until_gone(db, pid).await.with_context(|| {
                    format!(
                        "{what}: PgBouncer kept the server connection of an abandoned transaction"
                    )
                })?;
                let (_, next) =
                    next_client_transaction(&b, None, &format!("gone{polite}"), Some(&baseline))
                        .await
                        .with_context(|| what.to_owned())?;
                ensure!(next != pid, "{what}: backend {pid} is still in use");
                assert_exact(&db.client)
                    .await
                    .with_context(|| what.to_owned())?;
                abandoned_writes_gone(db)
                    .await
                    .with_context(|| what.to_owned())?;
            }
            Ok(())
        },
    )
    .await
}

/// The server backend of a pooled client's open transaction is terminated
/// (`pg_terminate_backend`), first while the client is idle in the transaction, then while its
/// COMMIT is in the middle of the refresh. That client gets an error; another client of the
/// pool carries on (PgBouncer opens a new server connection), a reconnected client works, and
/// nothing of the terminated transactions survives.
#[tokio::test(flavor = "multi_thread")]
async fn backend_terminated_mid_transaction() {
    with_bouncer(
        "pool_term",
        PoolMode::Transaction,
        2,
        async |db, bouncer| {
            let c = bouncer.connect(&db.name).await?;
            let baseline = clean_baseline(&c).await?;
            for during_commit in [false, true] {
                let what = if during_commit {
                    "terminated during COMMIT's refresh"
                } else {
                    "terminated while idle in transaction"
                };
                let a = bouncer.connect(&db.name).await?;
                a.batch_execute("BEGIN").await?;
                let pid = backend_pid(&a).await?;
                a.batch_execute(ABANDONED_WRITES).await?;
                let terminate = async {
                    db.client
                        .execute("SELECT pg_terminate_backend($1::int)", &[&(pid as i32)])
                        .await
                        .context("pg_terminate_backend")
                };
                let result = if during_commit {
                    let blocker = db.session().await?;
                    blocker
                        .batch_execute("BEGIN; LOCK TABLE tv_post IN ACCESS EXCLUSIVE MODE")
                        .await?;
                    let (commit, killed) = tokio::join!(a.batch_execute("COMMIT"), async {
                        let waited = wait_for_lock_wait(db, pid).await;
                        waited.and(terminate.await)
                    });
                    blocker.batch_execute("ROLLBACK").await?;
                    killed?;
                    commit
                } else {
                    terminate.await?;
                    wait_until_gone(db, pid).await?;
                    a.batch_execute("SELECT 1").await
                };
                ensure!(
                    result.is_err(),
                    "{what}: the client's next request succeeded"
                );
                wait_until_gone(db, pid)
                    .await
                    .with_context(|| what.to_owned())?;
                next_client_transaction(&c, None, &format!("c{during_commit}"), Some(&baseline))
                    .await
                    .with_context(|| what.to_owned())?;
                let again = bouncer.connect(&db.name).await?;
                again
                    .batch_execute(
                        "BEGIN; UPDATE tb_user SET name = 'again' WHERE pk_user = 4; COMMIT",
                    )
                    .await
                    .with_context(|| format!("{what}: reconnecting"))?;
                assert_exact(&db.client)
                    .await
                    .with_context(|| what.to_owned())?;
                abandoned_writes_gone(db)
                    .await
                    .with_context(|| what.to_owned())?;
            }
            Ok(())
        },
    )
    .await
}

/// `PREPARE TRANSACTION` ends a transaction too: the server connection goes back to the pool
/// while the prepared transaction keeps its locks and its TVIEW changes (the refresh ran before
/// the prepare). The next client of that connection finds nothing pending and is maintained;
/// `COMMIT PREPARED` / `ROLLBACK PREPARED`, sent through the pool by yet another client, apply
/// or drop the prepared TVIEW changes with the writes.
#[tokio::test(flavor = "multi_thread")]
async fn prepared_transaction_hands_over_a_clean_connection() {
    with_bouncer("pool_2pc", PoolMode::Transaction, 1, async |db, bouncer| {
        let a = bouncer.connect(&db.name).await?;
        let b = bouncer.connect(&db.name).await?;
        let c = bouncer.connect(&db.name).await?;
        let pid = backend_pid(&a).await?;
        for commit in [true, false] {
            let gid = format!("{}_{commit}", db.name);
            let post = if commit { 400 } else { 401 };
            a.batch_execute(&format!(
                "BEGIN;
                 INSERT INTO tb_post (pk_post, fk_user, title) VALUES ({post}, 4, 'prepared');
                 UPDATE tb_post SET title = 'prepared' WHERE pk_post = 11;
                 UPDATE tb_user SET name = 'prepared' WHERE pk_user = 5;"
            ))
            .await?;
            let queued = pending(&a).await?;
            ensure!(queued.0 + queued.1 > 0, "the writes queued nothing");
            a.batch_execute(&format!("PREPARE TRANSACTION '{gid}'"))
                .await?;
            // The next client, on the same backend, with writes apart from the prepared ones.
            b.batch_execute("BEGIN").await?;
            ensure!(
                backend_pid(&b).await? == pid,
                "the next client got another backend"
            );
            let queued = pending(&b).await?;
            ensure!(
                queued == (0, 0),
                "after PREPARE TRANSACTION the next transaction starts with {queued:?}"
            );
            // A wait for the prepared transaction's locks would last until it is finished, which
            // needs this very server connection: bounded, so it fails instead of hanging.
            tokio::time::timeout(
                PATIENCE,
                b.batch_execute("UPDATE tb_post SET title = 'next' WHERE pk_post = 12; COMMIT"),
            )
            .await
            .context("the next client waited for the prepared transaction")??;
            assert_exact(&db.client).await?;
            let how = if commit { "COMMIT" } else { "ROLLBACK" };
            c.batch_execute(&format!("{how} PREPARED '{gid}'")).await?;
            assert_exact(&db.client)
                .await
                .with_context(|| format!("after {how} PREPARED"))?;
            let rows = int(
                &c,
                &format!("SELECT count(*) FROM tv_post WHERE pk_post = {post}"),
            )
            .await?;
            ensure!(
                rows == i64::from(commit),
                "after {how} PREPARED tv_post has {rows} rows for post {post}"
            );
            if commit {
                // Undo the rename for the next round's baseline of names.
                c.batch_execute("UPDATE tb_user SET name = 'user5' WHERE pk_user = 5")
                    .await?;
            }
        }
        Ok(())
    })
    .await
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The concurrent oracle with its writers multiplexed through PgBouncer (transaction pooling,
/// 12 clients on 3 server connections by default); a direct session checks exactness after
/// every commit. `TVIEWS_ORACLE_SEED` (first seed; `random`), `TVIEWS_ORACLE_TXNS` (total
/// transactions, default 360: three seeds of 120), `TVIEWS_ORACLE_SECONDS` (keep going with new
/// seeds this long), `TVIEWS_ORACLE_CLIENTS` and `TVIEWS_ORACLE_POOL` scale it.
#[tokio::test(flavor = "multi_thread")]
async fn oracle_through_pgbouncer() {
    const TXNS_PER_SCHEMA: usize = 120;
    run(|| async {
        let first = match std::env::var("TVIEWS_ORACLE_SEED").as_deref() {
            Ok("random") => {
                let s = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1);
                eprintln!("oracle pooled: TVIEWS_ORACLE_SEED=random chose {s}");
                s
            }
            _ => env_u64("TVIEWS_ORACLE_SEED").unwrap_or(9000),
        };
        let txns = env_u64("TVIEWS_ORACLE_TXNS").unwrap_or(360) as usize;
        let clients = env_u64("TVIEWS_ORACLE_CLIENTS").unwrap_or(12) as usize;
        let pool = env_u64("TVIEWS_ORACLE_POOL").unwrap_or(3) as u32;
        let deadline = env_u64("TVIEWS_ORACLE_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
        let started = Instant::now();
        let mut total = Report::default();
        let mut seed = first;
        loop {
            total.add(run_pooled("oracle_pool", seed, TXNS_PER_SCHEMA, clients, pool).await?);
            seed += 1;
            let done_txns = (seed - first) as usize * TXNS_PER_SCHEMA >= txns;
            match deadline {
                Some(d) if Instant::now() < d => continue,
                Some(_) => break,
                None if done_txns => break,
                None => continue,
            }
        }
        ensure!(total.committed > 0, "nothing committed");
        eprintln!(
            "oracle pooled ({clients} clients, pool of {pool}, transaction pooling): seeds {first}..{} ({} schemas, {} TVIEWs, refused by SQLSTATE {:?}), {} committed, {} rolled back, failed by SQLSTATE {:?}, {} exactness checks, 0 mismatches, {:.1} s",
            seed,
            seed - first,
            total.tviews,
            total.refused,
            total.committed,
            total.rolled_back,
            total.failed,
            total.checks,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })
    .await
}
