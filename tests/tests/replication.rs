//! TVIEWs and replication.
//!
//! Physical: a streaming hot standby (a base backup taken by the harness) serves TVIEW reads
//! equal to the primary's after replay, at every level of a cascade; TVIEWs created after the
//! backup arrive with the WAL; the monitoring views work in hot standby, with and without
//! `shared_preload_libraries`; writes fail with PostgreSQL's read-only error (25006); a promoted
//! standby maintains its TVIEWs like any primary. The functions that load the extension's
//! registry (diff, verify, explain, health check, snapshot) work on a standby too
//! (`extension_functions_work_on_a_hot_standby`).
//!
//! Logical: a TVIEW is an ordinary table to publish (it has a primary key, so updates and
//! deletes replicate). A TVIEW on a *subscriber*, over replicated source tables, is not
//! maintained by replicated row changes: the apply worker fires no statement-level triggers for
//! INSERT, UPDATE and DELETE, whatever `ENABLE ALWAYS TRIGGER` says. With the capture triggers
//! `ENABLE ALWAYS`, the initial table copy and replicated TRUNCATEs are captured; otherwise
//! nothing is. The tests pin down exactly that, and that `pg_tviews_refresh` repairs it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio_postgres::Client;
use tviews_tests::standby::{Standby, StandbyOptions};
use tviews_tests::support::{assert_exact, sqlstate};
use tviews_tests::{Cluster, ClusterOptions};

/// The source tables of a three-level cascade, without data.
const SOURCES: &str = "
CREATE TABLE tb_category (pk_category bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE tb_product (
    pk_product bigint PRIMARY KEY,
    fk_category bigint NOT NULL REFERENCES tb_category,
    name text NOT NULL,
    price numeric(10,2) NOT NULL);
CREATE INDEX ON tb_product (fk_category);
CREATE TABLE tb_review (
    pk_review bigint PRIMARY KEY,
    fk_product bigint NOT NULL REFERENCES tb_product ON DELETE CASCADE,
    rating int NOT NULL,
    body text);
CREATE INDEX ON tb_review (fk_product);
";

/// Deterministic data: 20 categories, 200 products, 600 reviews (three per product; review
/// 286 is one of product 3's).
const DATA: &str = "
INSERT INTO tb_category SELECT i, 'Category ' || i FROM generate_series(1, 20) i;
INSERT INTO tb_product SELECT i, 1 + i % 20, 'Product ' || i, (i % 97) + 0.99 FROM generate_series(1, 200) i;
INSERT INTO tb_review SELECT i, 1 + (i * 7) % 200, 1 + i % 5, 'Review ' || i FROM generate_series(1, 600) i;
";

/// tv_review ← tb_review, tb_product; tv_product ← tb_product, tb_category and tv_review
/// (aggregates); tv_category ← tb_category and tv_product (documents): three levels.
const TVIEWS: &str = "
CREATE TABLE tv_review AS
SELECT r.pk_review, r.fk_product, r.rating,
       jsonb_build_object('id', r.pk_review, 'rating', r.rating, 'body', r.body,
                          'product', jsonb_build_object('id', p.pk_product, 'name', p.name)) AS data
FROM tb_review r JOIN tb_product p ON p.pk_product = r.fk_product;
CREATE TABLE tv_product AS
SELECT p.pk_product, p.fk_category,
       jsonb_build_object(
         'id', p.pk_product, 'name', p.name, 'price', p.price,
         'category', jsonb_build_object('id', c.pk_category, 'name', c.name),
         'reviews', (SELECT count(*) FROM tv_review tr WHERE tr.fk_product = p.pk_product),
         'rating', (SELECT round(avg(tr.rating), 2) FROM tv_review tr WHERE tr.fk_product = p.pk_product)) AS data
FROM tb_product p JOIN tb_category c ON c.pk_category = p.fk_category;
CREATE TABLE tv_category AS
SELECT c.pk_category,
       jsonb_build_object(
         'id', c.pk_category, 'name', c.name,
         'products', coalesce((SELECT jsonb_agg(tp.data ORDER BY tp.pk_product)
                               FROM tv_product tp WHERE tp.fk_category = c.pk_category), '[]')) AS data
FROM tb_category c;
";

/// Writes touching every level: inserts, updates (also of a join column), deletes (also
/// cascading ones), in single statements and in one multi-statement transaction.
const WRITES: &str = "
INSERT INTO tb_review VALUES (10001, 7, 5, 'a new review');
UPDATE tb_product SET name = 'Renamed 3' WHERE pk_product = 3;
UPDATE tb_category SET name = 'Category One' WHERE pk_category = 1;
UPDATE tb_product SET fk_category = 2 WHERE pk_product = 21;
DELETE FROM tb_review WHERE fk_product = 5;
DELETE FROM tb_product WHERE pk_product = 9;
BEGIN;
INSERT INTO tb_category VALUES (21, 'Category 21');
INSERT INTO tb_product VALUES (201, 21, 'Product 201', 9.99);
INSERT INTO tb_review VALUES (10002, 201, 4, 'first'), (10003, 201, 2, 'second');
UPDATE tb_review SET rating = 1 WHERE pk_review = 1;
COMMIT;
";

/// Two reviews for each of the first 50 products still there (after a TRUNCATE of tb_review).
const REFILL: &str = "
INSERT INTO tb_review
SELECT 30000 + row_number() OVER (ORDER BY p.pk_product, i), p.pk_product, 1 + i % 5, 'again ' || i
FROM (SELECT pk_product FROM tb_product ORDER BY pk_product LIMIT 50) p, generate_series(1, 2) i;
";

/// The TVIEWs a database holds, dependencies first (creation order: a TVIEW reads only
/// TVIEWs that existed before it): (name, key column). Reads only the catalog table, so it
/// works wherever the tables can be read.
async fn tviews(c: &Client) -> Result<Vec<(String, String)>> {
    let rows = c
        .query(
            "SELECT relid::text, key_column::text FROM tviews.tview ORDER BY relid::oid",
            &[],
        )
        .await
        .context("listing TVIEWs")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Every row of `table` as text, ordered by `key`.
async fn contents(c: &Client, table: &str, key: &str) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT t::text FROM {table} t ORDER BY t.\"{}\"",
        key.replace('"', "\"\"")
    );
    let rows = c
        .query(&sql, &[])
        .await
        .with_context(|| format!("reading {table}"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What differs between two ordered row lists, for a failure message.
fn row_diff(left_label: &str, left: &[String], right_label: &str, right: &[String]) -> String {
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter()
            .filter(|r| !b.contains(r))
            .take(5)
            .map(|r| format!("    {}", abbreviate(r)))
            .collect()
    };
    format!(
        "{} rows on {left_label}, {} on {right_label}\n  only on {left_label}:\n{}\n  only on {right_label}:\n{}",
        left.len(),
        right.len(),
        only(left, right).join("\n"),
        only(right, left).join("\n"),
    )
}

fn abbreviate(row: &str) -> String {
    match row.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &row[..cut]),
        None => row.to_owned(),
    }
}

/// The primary's TVIEW catalog and every TVIEW's rows equal the standby's; returns how many
/// rows were compared (so a caller can tell it was not nothing).
async fn assert_same_tviews(primary: &Client, standby: &Client) -> Result<usize> {
    let list = tviews(primary).await?;
    let standby_list = tviews(standby).await?;
    ensure!(
        list == standby_list,
        "TVIEW catalogs differ: primary {list:?}, standby {standby_list:?}"
    );
    ensure!(!list.is_empty(), "no TVIEWs to compare");
    let mut compared = 0;
    for (name, key) in &list {
        let p = contents(primary, name, key).await?;
        let s = contents(standby, name, key).await?;
        ensure!(
            p == s,
            "{name} differs between primary and standby: {}",
            row_diff("the primary", &p, "the standby", &s)
        );
        compared += p.len();
    }
    Ok(compared)
}

/// Runs `sql` expecting it to fail with `code`; returns the server's message.
async fn expect_error(c: &Client, sql: &str, code: &str) -> Result<String> {
    match c.batch_execute(sql).await {
        Ok(()) => bail!("`{sql}` succeeded; expected SQLSTATE {code}"),
        Err(e) => {
            let got = sqlstate(&e);
            ensure!(
                got.as_deref() == Some(code),
                "`{sql}` failed with SQLSTATE {got:?}, expected {code}: {e:?}"
            );
            Ok(e.as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_default())
        }
    }
}

/// What a hot standby answers without loading the extension's registry: TVIEW reads are plain
/// table reads; the version, the monitoring views over shared memory and the catalogs, and an
/// empty flush work and agree with the primary.
async fn check_hot_standby_reads(
    primary: &Client,
    standby: &Client,
    preloaded: bool,
) -> Result<()> {
    let in_recovery: bool = standby
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await?
        .get(0);
    ensure!(in_recovery, "the standby is not in recovery");
    let version = "SELECT pg_tviews_version(), (SELECT extversion FROM pg_extension WHERE extname = 'pg_tviews')";
    let (p, s) = (
        primary.query_one(version, &[]).await?,
        standby
            .query_one(version, &[])
            .await
            .context("pg_tviews_version() on the standby")?,
    );
    let (p, s): ((String, String), (String, String)) = ((p.get(0), p.get(1)), (s.get(0), s.get(1)));
    ensure!(p == s, "versions: primary {p:?}, standby {s:?}");

    // Statistics are the server's own: a standby refreshes nothing.
    let mut expected: Vec<String> = tviews(standby).await?.into_iter().map(|(n, _)| n).collect();
    expected.sort();
    let stats = standby
        .query(
            "SELECT tview, refreshes FROM pg_tviews_stats ORDER BY tview",
            &[],
        )
        .await
        .context("pg_tviews_stats on the standby")?;
    let listed: Vec<String> = stats.iter().map(|r| r.get(0)).collect();
    ensure!(
        listed == expected,
        "pg_tviews_stats lists {listed:?}, expected {expected:?}"
    );
    for r in &stats {
        let (tview, refreshes): (String, i64) = (r.get(0), r.get(1));
        ensure!(
            refreshes == 0,
            "{tview}: {refreshes} refreshes on the standby"
        );
    }
    let cache_preloaded: bool = standby
        .query_one("SELECT preloaded FROM pg_tviews_cache_stats", &[])
        .await
        .context("pg_tviews_cache_stats on the standby")?
        .get(0);
    ensure!(
        cache_preloaded == preloaded,
        "pg_tviews_cache_stats.preloaded = {cache_preloaded}"
    );
    for sql in [
        "SELECT count(*) FROM pg_tviews_prepared",
        "SELECT count(*) FROM pg_tviews_queue_realtime",
        "SELECT count(*) FROM pg_tviews_lock_waits",
        "SELECT count(*) FROM pg_tviews_source_stats",
        "SELECT count(*) FROM pg_tviews_performance_summary",
        "SELECT count(*) FROM pg_tviews_pending()",
    ] {
        standby
            .query_one(sql, &[])
            .await
            .with_context(|| format!("`{sql}` on the standby"))?;
    }
    // Flushing an empty queue is a no-op, also in an explicit read-only transaction.
    standby
        .batch_execute("SELECT pg_tviews_flush(); BEGIN; SELECT pg_tviews_flush(); COMMIT;")
        .await
        .context("pg_tviews_flush() on the standby")?;
    Ok(())
}

/// The extension's functions that load its registry (the per-backend cache of plans) work on
/// a hot standby and agree with the primary: health check, snapshot, sources, explain, diff,
/// verify, session statistics.
async fn check_hot_standby_functions(
    primary: &Client,
    standby: &Client,
    preloaded: bool,
) -> Result<()> {
    let names: Vec<String> = tviews(standby).await?.into_iter().map(|(n, _)| n).collect();
    let mut expected = names.clone();
    expected.sort();

    // The health check runs and finds nothing wrong.
    let checks = standby
        .query(
            "SELECT check_name, severity, detail FROM pg_tviews_health_check()",
            &[],
        )
        .await
        .context("pg_tviews_health_check() on the standby")?;
    ensure!(checks.len() >= 7, "{} health checks", checks.len());
    for r in &checks {
        let (name, severity, detail): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let expected = match name.as_str() {
            "statistics" if !preloaded => "info",
            _ => "ok",
        };
        ensure!(
            severity == expected,
            "health check {name}: {severity}: {detail}"
        );
    }

    // The console's snapshot.
    let snapshot: serde_json::Value = standby
        .query_one("SELECT pg_tviews_snapshot()", &[])
        .await
        .context("pg_tviews_snapshot() on the standby")?
        .get(0);
    ensure!(snapshot["schema_version"] == 1, "snapshot: {snapshot}");
    ensure!(
        snapshot["preloaded"] == preloaded,
        "snapshot.preloaded: {snapshot}"
    );
    let mut in_snapshot: Vec<String> = snapshot["tviews"]
        .as_array()
        .context("snapshot.tviews")?
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    in_snapshot.sort();
    ensure!(in_snapshot == expected, "snapshot.tviews: {in_snapshot:?}");

    // The registry loads: the same sources, plans and verdicts as on the primary.
    let sources = "SELECT tviews.display_name(tview) || ' <- ' || tviews.display_name(source) || ' ' || full_rebuild || ' ' || depth
                   FROM pg_tviews_sources() ORDER BY 1";
    let p = primary.query(sources, &[]).await?;
    let s = standby
        .query(sources, &[])
        .await
        .context("pg_tviews_sources() on the standby")?;
    let (p, s): (Vec<String>, Vec<String>) = (
        p.iter().map(|r| r.get(0)).collect(),
        s.iter().map(|r| r.get(0)).collect(),
    );
    ensure!(
        !p.is_empty() && p == s,
        "sources: primary {p:?}, standby {s:?}"
    );
    for name in &names {
        let explain = "SELECT pg_tviews_explain($1, 'text', true)";
        let p: String = primary.query_one(explain, &[name]).await?.get(0);
        let s: String = standby
            .query_one(explain, &[name])
            .await
            .with_context(|| format!("pg_tviews_explain('{name}') on the standby"))?
            .get(0);
        ensure!(
            p == s,
            "explain {name}:\n--- primary\n{p}\n--- standby\n{s}"
        );
        let diff: i64 = standby
            .query_one("SELECT pg_tviews_diff($1)", &[name])
            .await
            .with_context(|| format!("pg_tviews_diff('{name}') on the standby"))?
            .get(0);
        ensure!(
            diff == 0,
            "pg_tviews_diff('{name}') = {diff} on the standby"
        );
        let verify = standby
            .query("SELECT key, difference FROM pg_tviews_verify($1)", &[name])
            .await
            .with_context(|| format!("pg_tviews_verify('{name}') on the standby"))?;
        ensure!(
            verify.is_empty(),
            "pg_tviews_verify('{name}'): {} rows",
            verify.len()
        );
    }
    for sql in [
        "SELECT count(*) FROM pg_tviews_session_stats()",
        "SELECT count(*) FROM pg_tviews_session_source_stats()",
        "SELECT count(*) FROM pg_tviews_pending_keys()",
    ] {
        standby
            .query_one(sql, &[])
            .await
            .with_context(|| format!("`{sql}` on the standby"))?;
    }
    assert_exact(standby)
        .await
        .context("the standby's TVIEWs equal their definitions")
}

/// Every kind of write on a standby fails with PostgreSQL's read-only error, before any of
/// the extension's triggers run (a direct write to a TVIEW gets 25006, not the guard's 42809),
/// and the session goes on.
async fn check_writes_refused(standby: &Client) -> Result<()> {
    refuse_all(
        standby,
        &[
            "UPDATE tb_product SET name = 'no' WHERE pk_product = 1",
            "INSERT INTO tb_review VALUES (99999, 1, 5, 'no')",
            "DELETE FROM tb_review WHERE pk_review = 2",
            "TRUNCATE tb_review",
            "DELETE FROM tv_product WHERE pk_product = 1",
            "UPDATE tv_category SET data = '{}'",
            "CREATE TABLE tv_new AS SELECT pk_category, name FROM tb_category",
            "DROP TABLE tv_category",
            "BEGIN; UPDATE tb_category SET name = 'no' WHERE pk_category = 2; COMMIT",
        ],
    )
    .await
}

/// The extension's writing functions fail on a standby with the read-only error too.
async fn check_function_writes_refused(standby: &Client) -> Result<()> {
    refuse_all(
        standby,
        &[
            "SELECT pg_tviews_refresh('tv_product')",
            "SELECT pg_tviews_create('tv_new', 'SELECT pk_category, name FROM tb_category')",
            "SELECT pg_tviews_drop('tv_category', true)",
        ],
    )
    .await
}

async fn refuse_all(standby: &Client, statements: &[&str]) -> Result<()> {
    let before = contents(standby, "tv_category", "pk_category").await?;
    for sql in statements {
        expect_error(standby, sql, "25006").await?;
        standby.batch_execute("ROLLBACK").await?;
    }
    let after = contents(standby, "tv_category", "pk_category").await?;
    ensure!(before == after, "tv_category changed on the standby");
    Ok(())
}

/// Each TVIEW equals its backing view (`tviews.<name>`, the definition), compared with plain
/// SQL as row text: works on a hot standby, where nothing of the extension needs to run.
async fn assert_equal_to_definitions(c: &Client) -> Result<()> {
    let rows = c
        .query(
            "SELECT relid::text, defview::text, key_column::text FROM tviews.tview ORDER BY relid::oid",
            &[],
        )
        .await?;
    ensure!(!rows.is_empty(), "no TVIEWs");
    for r in rows {
        let (table, view, key): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let stored = contents(c, &table, &key).await?;
        let defined = contents(c, &view, &key).await?;
        ensure!(
            stored == defined,
            "{table} differs from its definition: {}",
            row_diff("the TVIEW", &stored, "the definition", &defined)
        );
    }
    Ok(())
}

/// No server process of `cluster` crashed (the postmaster logs every child that died of a
/// signal) and nothing PANICked.
fn assert_no_crash(cluster: &Cluster, label: &str) -> Result<()> {
    let log = std::fs::read_to_string(cluster.log_path())
        .with_context(|| format!("reading the log of {label}"))?;
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("PANIC")
                || l.contains("terminated by signal")
                || l.contains("was terminated")
        })
        .collect();
    ensure!(
        bad.is_empty(),
        "{label} logged crashes:\n{}",
        bad.join("\n")
    );
    ensure!(cluster.is_running(), "{label} is not running");
    Ok(())
}

/// Panics with the error chain if `result` failed: in a test that owns its clusters, the panic
/// makes each cluster print its log tail as it is dropped.
fn or_panic<T>(result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{e:?}"))
}

fn cluster(name: &str, preload: bool, tcp: bool, settings: &[(&str, &str)]) -> Cluster {
    Cluster::start(ClusterOptions {
        name: name.into(),
        preload,
        tcp,
        settings: settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    })
    .unwrap_or_else(|e| panic!("could not start cluster {name}: {e:#}"))
}

/// A primary with the cascade, its data and TVIEWs in database `app`.
fn start_primary(name: &str, preload: bool, tcp: bool, settings: &[(&str, &str)]) -> Cluster {
    let cluster = cluster(name, preload, tcp, settings);
    or_panic(cluster.create_database_with_extension("app"));
    or_panic(cluster.psql("app", &format!("{SOURCES}{DATA}{TVIEWS}")));
    cluster
}

fn start_standby(primary: &Cluster, name: &str, preload: bool, via_tcp: bool) -> Result<Standby> {
    Standby::start(
        primary,
        StandbyOptions {
            name: name.into(),
            preload,
            via_tcp,
            ..StandbyOptions::default()
        },
    )
}

/// The primary preloads pg_tviews. A standby that preloads it too and one that does not (the
/// base backup carries the primary's `shared_preload_libraries`; the harness overrides it) both
/// replay the TVIEWs exactly, at every level of the cascade, and refuse writes with 25006. A
/// TVIEW created after the base backup arrives with the WAL.
#[tokio::test(flavor = "multi_thread")]
async fn standby_serves_tviews_equal_to_the_primary() {
    let primary = start_primary("primary", true, false, &[]);
    let standby = or_panic(start_standby(&primary, "standby_preload", true, false));
    or_panic(
        async {
            let p = primary.connect("app").await?;
            let s = standby.connect("app").await?;
            // The base backup holds the TVIEWs as they were.
            assert_same_tviews(&p, &s).await.context("right after the base backup")?;
            let before = contents(&s, "tv_category", "pk_category").await?;

            p.batch_execute(WRITES).await.context("writing on the primary")?;
            assert_exact(&p).await.context("the primary after the writes")?;
            standby.wait_for_replay(&primary)?;
            let rows = assert_same_tviews(&p, &s).await.context("after replay")?;
            ensure!(rows > 800, "compared only {rows} rows");
            assert_equal_to_definitions(&s).await.context("the standby")?;
            // The writes did reach every level on the standby.
            let after = contents(&s, "tv_category", "pk_category").await?;
            ensure!(before != after, "tv_category did not change on the standby");
            let r = s
                .query_one(
                    "SELECT (SELECT (data->>'reviews')::int8 FROM tv_product WHERE pk_product = 201),
                            (SELECT data->'product'->>'name' FROM tv_review WHERE fk_product = 3 ORDER BY pk_review LIMIT 1),
                            (SELECT data->'products'->0->>'name' FROM tv_category WHERE pk_category = 21)",
                    &[],
                )
                .await?;
            let seen: (i64, String, String) = (r.get(0), r.get(1), r.get(2));
            ensure!(
                seen == (2, "Renamed 3".to_owned(), "Product 201".to_owned()),
                "the standby reads {seen:?}"
            );
            check_hot_standby_reads(&p, &s, true).await?;
            check_writes_refused(&s).await?;

            // A TVIEW created on the primary after the base backup, then written through.
            p.batch_execute(
                "CREATE TABLE tv_category_summary WITH (tviews.key = 'pk_category') AS
                 SELECT c.pk_category, c.name, count(tp.pk_product) AS products
                 FROM tb_category c LEFT JOIN tv_product tp ON tp.fk_category = c.pk_category
                 GROUP BY c.pk_category, c.name;
                 INSERT INTO tb_product VALUES (202, 21, 'Product 202', 1.50);",
            )
            .await?;
            assert_exact(&p).await?;
            standby.wait_for_replay(&primary)?;
            let listed = tviews(&s).await?.len();
            ensure!(listed == 4, "the standby lists {listed} TVIEWs");
            assert_same_tviews(&p, &s).await.context("after a TVIEW created late")?;
            let products: i64 = s
                .query_one("SELECT products FROM tv_category_summary WHERE pk_category = 21", &[])
                .await?
                .get(0);
            ensure!(products == 2, "tv_category_summary on the standby: {products} products in category 21");
            check_hot_standby_reads(&p, &s, true).await?;

            // A second standby of the same primary, without the library preloaded.
            let plain = start_standby(&primary, "standby_plain", false, false)?;
            let s2 = plain.connect("app").await?;
            p.batch_execute(
                "DELETE FROM tb_review WHERE pk_review BETWEEN 100 AND 150;
                 UPDATE tb_category SET name = 'Two' WHERE pk_category = 2;",
            )
            .await?;
            plain.wait_for_replay(&primary)?;
            standby.wait_for_replay(&primary)?;
            assert_same_tviews(&p, &s2).await.context("the standby without preload")?;
            assert_same_tviews(&p, &s).await.context("the standby with preload")?;
            assert_equal_to_definitions(&s2).await.context("the standby without preload")?;
            check_hot_standby_reads(&p, &s2, false).await?;
            check_writes_refused(&s2).await?;

            assert_no_crash(&primary, "the primary")?;
            assert_no_crash(&standby, "the preloading standby")?;
            assert_no_crash(&plain, "the standby without preload")?;

            // Dropping a standby drops its replication slot on the primary.
            let slot = plain.slot().to_owned();
            drop(s2);
            drop(plain);
            let left = primary.psql(
                "postgres",
                &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"),
            )?;
            ensure!(left == "0", "slot {slot} is still on the primary");
            Ok(())
        }
        .await,
    );
}

/// The primary does not preload pg_tviews and streams over loopback TCP to a standby that
/// does. After promotion the former standby maintains its TVIEWs like any primary.
#[tokio::test(flavor = "multi_thread")]
async fn standby_over_tcp_preloads_alone_and_takes_over_after_promotion() {
    let primary = start_primary("primary_tcp", false, true, &[]);
    let standby = or_panic(start_standby(&primary, "standby_tcp", true, true));
    or_panic(
        async {
            let conninfo = standby
                .psql("postgres", "SELECT conninfo FROM pg_stat_wal_receiver")
                .context("the standby's WAL receiver")?;
            ensure!(conninfo.contains("host=127.0.0.1"), "streams from {conninfo}");
            let p = primary.connect("app").await?;
            let s = standby.connect("app").await?;
            p.batch_execute(WRITES).await?;
            standby.wait_for_replay(&primary)?;
            assert_same_tviews(&p, &s).await?;
            check_hot_standby_reads(&p, &s, true).await?;
            check_writes_refused(&s).await?;

            // Fail over: the promoted standby's writers maintain its TVIEWs.
            standby.promote()?;
            let promoted = standby.connect("app").await?;
            promoted
                .batch_execute(
                    "INSERT INTO tb_review VALUES (20001, 201, 5, 'after failover');
                     UPDATE tb_product SET name = 'Promoted' WHERE pk_product = 201;
                     DELETE FROM tb_product WHERE pk_product = 10;",
                )
                .await
                .context("writing on the promoted standby")?;
            assert_exact(&promoted).await.context("TVIEWs on the promoted standby")?;
            let r = promoted
                .query_one(
                    "SELECT (data->>'reviews')::int8, data->>'name' FROM tv_product WHERE pk_product = 201",
                    &[],
                )
                .await?;
            let (reviews, name): (i64, String) = (r.get(0), r.get(1));
            ensure!(
                (reviews, name.as_str()) == (3, "Promoted"),
                "tv_product 201 on the promoted standby: {reviews} reviews, {name}"
            );
            let refreshes: i64 = promoted
                .query_one("SELECT sum(refreshes)::int8 FROM pg_tviews_stats", &[])
                .await?
                .get(0);
            ensure!(refreshes > 0, "the promoted server counted no refreshes");
            assert_no_crash(&standby, "the promoted standby")?;
            Ok(())
        }
        .await,
    );
}

/// The functions that load the extension's registry (health check, snapshot, sources,
/// explain, diff, verify, session statistics) answer on a hot standby, with and without the
/// library preloaded, and its writing functions fail with the read-only error 25006.
///
/// The extension's queries must not ask for a transaction id: in recovery that fails with
/// "cannot assign TransactionIds during recovery" (pgrx's `SpiClient::update` did; ext/src/spi.rs
/// runs SPI itself).
#[tokio::test(flavor = "multi_thread")]
async fn extension_functions_work_on_a_hot_standby() {
    let primary = start_primary("primary_fn", true, false, &[]);
    let preloading = or_panic(start_standby(&primary, "standby_fn_preload", true, false));
    let plain = or_panic(start_standby(&primary, "standby_fn_plain", false, false));
    or_panic(
        async {
            let p = primary.connect("app").await?;
            p.batch_execute(WRITES).await?;
            for (standby, preloaded) in [(&preloading, true), (&plain, false)] {
                standby.wait_for_replay(&primary)?;
                let s = standby.connect("app").await?;
                assert_same_tviews(&p, &s).await?;
                check_hot_standby_functions(&p, &s, preloaded)
                    .await
                    .with_context(|| format!("preloaded: {preloaded}"))?;
                check_function_writes_refused(&s)
                    .await
                    .with_context(|| format!("preloaded: {preloaded}"))?;
                assert_no_crash(standby, "the standby")?;
            }
            Ok(())
        }
        .await,
    );
}

// ---- logical replication ----------------------------------------------------------------------

const LOGICAL: &[(&str, &str)] = &[("wal_level", "logical")];

/// `CREATE SUBSCRIPTION s` on the subscriber's `app`, to publication `p` of the publisher's
/// `app`, over the publisher's unix socket.
fn subscribe(subscriber: &Cluster, publisher: &Cluster) -> Result<()> {
    let conninfo = publisher.conninfo("app").replace('\'', "''");
    subscriber
        .psql(
            "app",
            &format!("CREATE SUBSCRIPTION s CONNECTION '{conninfo}' PUBLICATION p"),
        )
        .context("creating the subscription")?;
    Ok(())
}

/// Waits until every table of the subscription finished its initial copy.
fn wait_for_sync(subscriber: &Cluster) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = subscriber.psql(
            "app",
            "SELECT count(*) FILTER (WHERE srsubstate NOT IN ('r', 's')) || ' ' || count(*) FROM pg_subscription_rel",
        )?;
        let mut parts = out.split(' ');
        if parts.next() == Some("0") && parts.next().is_some_and(|n| n != "0") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the subscription's tables did not sync in 60 s ({out} pending/total); subscriber log:\n{}",
                subscriber.log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the subscriber's apply worker confirmed everything the publisher had written
/// when this was called (`pg_stat_replication.replay_lsn` of subscription `s`).
fn wait_for_catchup(publisher: &Cluster, subscriber: &Cluster) -> Result<()> {
    let target = publisher.psql("app", "SELECT pg_current_wal_lsn()")?;
    let check = format!(
        "SELECT coalesce(bool_or(replay_lsn >= '{target}'::pg_lsn), false) FROM pg_stat_replication WHERE application_name = 's'"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while publisher.psql("app", &check)? != "t" {
        if Instant::now() >= deadline {
            bail!(
                "subscription s did not catch up with {target} in 60 s; subscriber log:\n{}",
                subscriber.log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Waits (up to 60 s) until `table` on the subscriber has the rows of `table` on the publisher;
/// fails with the difference.
async fn wait_until_equal(
    publisher: &Client,
    subscriber: &Client,
    table: &str,
    key: &str,
) -> Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = contents(publisher, table, key).await?;
        let s = contents(subscriber, table, key).await?;
        if p == s {
            return Ok(p.len());
        }
        if Instant::now() >= deadline {
            bail!(
                "{table} on the subscriber did not converge to the publisher's in 60 s: {}",
                row_diff("the publisher", &p, "the subscriber", &s)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The publication of the source tables: (table, key).
const SOURCE_TABLES: &[(&str, &str)] = &[
    ("tb_category", "pk_category"),
    ("tb_product", "pk_product"),
    ("tb_review", "pk_review"),
];

/// The two ends of a logical replication test, with a session on each.
struct Logical<'a> {
    publisher: &'a Cluster,
    subscriber: &'a Cluster,
    p: Client,
    s: Client,
}

impl Logical<'_> {
    /// Waits until the subscriber caught up with the publisher and `tables` hold the same rows
    /// on both; returns how many rows that is. The publisher's TVIEWs are checked too: exact,
    /// as on any server.
    async fn caught_up(&self, stage: &str, tables: &[(&str, &str)]) -> Result<usize> {
        wait_for_catchup(self.publisher, self.subscriber).with_context(|| stage.to_owned())?;
        let mut rows = 0;
        for (table, key) in tables {
            rows += wait_until_equal(&self.p, &self.s, table, key)
                .await
                .with_context(|| format!("{stage}: {table}"))?;
        }
        assert_exact(&self.p)
            .await
            .with_context(|| format!("{stage}: the publisher's TVIEWs"))?;
        Ok(rows)
    }
}

/// Each TVIEW's number of differing rows (`pg_tviews_diff`), dependencies first.
async fn diffs(c: &Client) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for (name, _) in tviews(c).await? {
        let d: i64 = c
            .query_one("SELECT pg_tviews_diff($1)", &[&name])
            .await?
            .get(0);
        out.push((name, d));
    }
    Ok(out)
}

/// `pg_tviews_refresh` of every TVIEW, dependencies first: the repair for a subscriber.
async fn refresh_all(c: &Client) -> Result<()> {
    for (name, _) in tviews(c).await? {
        c.query_one("SELECT pg_tviews_refresh($1)", &[&name])
            .await
            .with_context(|| format!("pg_tviews_refresh('{name}')"))?;
    }
    Ok(())
}

/// `ENABLE ALWAYS` (or back to the default, `ENABLE`) every capture trigger of the database,
/// on source tables (`tb_*`) and, with `tviews_too`, on TVIEWs other TVIEWs read.
async fn set_capture_triggers(c: &Client, mode: &str, tables: &str) -> Result<()> {
    let rows = c
        .query(
            "SELECT format('ALTER TABLE %s %s TRIGGER %I', t.tgrelid::regclass, $1::text, t.tgname)
             FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid
             WHERE t.tgfoid = 'tviews.capture()'::regprocedure AND r.relname LIKE $2
             ORDER BY 1",
            &[&mode, &tables],
        )
        .await?;
    ensure!(!rows.is_empty(), "no capture triggers on {tables}");
    for r in rows {
        let sql: String = r.get(0);
        c.batch_execute(&sql).await.with_context(|| sql.clone())?;
    }
    Ok(())
}

/// A TVIEW is an ordinary table to publish: a subscriber without the extension receives its
/// rows (initial copy) and every change its refreshes make — row changes at each level, a full
/// rebuild after a TRUNCATE of a source, a manual `pg_tviews_refresh`. On the publisher the
/// TVIEWs stay exact as usual.
#[tokio::test(flavor = "multi_thread")]
async fn a_published_tview_replicates_to_a_plain_table() {
    let publisher = cluster("publisher", false, false, LOGICAL);
    let subscriber = cluster("subscriber", false, false, &[]);
    or_panic(
        async {
            publisher.create_database_with_extension("app")?;
            publisher.psql("app", &format!("{SOURCES}{DATA}{TVIEWS}"))?;
            // Every TVIEW has a primary key, the default replica identity: UPDATE and DELETE
            // can be published (without one, a refresh's UPDATE would fail on the publisher).
            let identity = publisher.psql(
                "app",
                "SELECT string_agg(c.relname || ':' || c.relreplident::text || ':' || (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), ',' ORDER BY c.relname)
                 FROM tviews.tview t JOIN pg_class c ON c.oid = t.relid",
            )?;
            ensure!(
                identity == "tv_category:d:1,tv_product:d:1,tv_review:d:1",
                "replica identities: {identity}"
            );
            publisher.psql("app", "CREATE PUBLICATION p FOR TABLE tv_review, tv_product, tv_category")?;
            subscriber.create_database("app")?;
            subscriber.psql(
                "app",
                "CREATE TABLE tv_review (pk_review bigint PRIMARY KEY, fk_product bigint, rating int, data jsonb);
                 CREATE TABLE tv_product (pk_product bigint PRIMARY KEY, fk_category bigint, data jsonb);
                 CREATE TABLE tv_category (pk_category bigint PRIMARY KEY, data jsonb);",
            )?;
            subscribe(&subscriber, &publisher)?;
            wait_for_sync(&subscriber)?;
            let l = Logical {
                publisher: &publisher,
                subscriber: &subscriber,
                p: publisher.connect("app").await?,
                s: subscriber.connect("app").await?,
            };
            let (p, s) = (&l.p, &l.s);
            let published = [
                ("tv_review", "pk_review"),
                ("tv_product", "pk_product"),
                ("tv_category", "pk_category"),
            ];
            let rows = l.caught_up("initial copy", &published).await?;
            ensure!(rows > 800, "only {rows} rows replicated");

            p.batch_execute(WRITES).await?;
            l.caught_up("after writes to every level", &published).await?;
            let name: String = s
                .query_one("SELECT data->>'name' FROM tv_product WHERE pk_product = 3", &[])
                .await?
                .get(0);
            ensure!(name == "Renamed 3", "tv_product 3 on the subscriber: {name}");

            // TRUNCATE of a source: the publisher rebuilds tv_review fully; the subscriber gets
            // the rows that rebuild deleted, and the cascade's updates.
            p.batch_execute("TRUNCATE tb_review").await?;
            l.caught_up("after TRUNCATE of a source", &published).await?;
            let left: i64 = s.query_one("SELECT count(*) FROM tv_review", &[]).await?.get(0);
            ensure!(left == 0, "{left} reviews left on the subscriber");
            p.batch_execute(REFILL).await?;
            p.batch_execute("SELECT pg_tviews_refresh('tv_category')").await?;
            l.caught_up("after a refill and a manual refresh", &published).await?;
            Ok(())
        }
        .await,
    );
}

/// Source tables published to a subscriber that has the extension and its own TVIEWs over
/// them: by default nothing the apply workers write is captured — neither the initial copy nor
/// any replicated change — and the TVIEWs go stale; `pg_tviews_diff` and `pg_tviews_verify` say
/// so, and `pg_tviews_refresh` of each TVIEW (dependencies first) repairs them. On the publisher
/// (TVIEWs over published sources) nothing is special.
#[tokio::test(flavor = "multi_thread")]
async fn subscriber_tviews_miss_replicated_changes_by_default() {
    let publisher = cluster("publisher", false, false, LOGICAL);
    let subscriber = cluster("subscriber", false, false, &[]);
    or_panic(
        async {
            publisher.create_database_with_extension("app")?;
            publisher.psql("app", &format!("{SOURCES}{DATA}{TVIEWS}"))?;
            publisher.psql("app", "CREATE PUBLICATION p FOR TABLE tb_category, tb_product, tb_review")?;
            subscriber.create_database_with_extension("app")?;
            subscriber.psql("app", &format!("{SOURCES}{TVIEWS}"))?;
            subscribe(&subscriber, &publisher)?;
            wait_for_sync(&subscriber)?;
            let l = Logical {
                publisher: &publisher,
                subscriber: &subscriber,
                p: publisher.connect("app").await?,
                s: subscriber.connect("app").await?,
            };
            let (p, s) = (&l.p, &l.s);
            l.caught_up("initial copy", SOURCE_TABLES).await?;
            // The initial copy was not captured: the TVIEWs are still empty.
            let stale = diffs(s).await?;
            ensure!(
                stale == [("tv_review".to_owned(), 600), ("tv_product".to_owned(), 200), ("tv_category".to_owned(), 20)],
                "after the initial copy: {stale:?}"
            );
            let missing: i64 = s
                .query_one("SELECT count(*) FROM pg_tviews_verify('tv_review') WHERE difference = 'missing'", &[])
                .await?
                .get(0);
            ensure!(missing == 600, "pg_tviews_verify('tv_review'): {missing} missing");
            refresh_all(s).await?;
            assert_exact(s).await.context("after pg_tviews_refresh")?;
            assert_same_tviews(p, s).await?;

            // Replicated row changes are not captured either.
            p.batch_execute(WRITES).await?;
            l.caught_up("after writes", SOURCE_TABLES).await?;
            for (name, d) in diffs(s).await? {
                ensure!(d > 0, "{name} followed the replicated writes ({d} differing rows)");
            }
            let verify = s
                .query(
                    "SELECT 'tv_review ' || key || ' ' || difference FROM pg_tviews_verify('tv_review') WHERE key IN ('10001', '286')
                     UNION ALL SELECT 'tv_product ' || key || ' ' || difference FROM pg_tviews_verify('tv_product') WHERE key IN ('3', '201')
                     ORDER BY 1",
                    &[],
                )
                .await?;
            let verify: Vec<String> = verify.iter().map(|r| r.get(0)).collect();
            ensure!(
                verify == ["tv_product 201 missing", "tv_product 3 different", "tv_review 10001 missing", "tv_review 286 different"],
                "pg_tviews_verify: {verify:?}"
            );
            // The health check says why.
            let warned: String = s
                .query_one(
                    "SELECT severity || ': ' || detail FROM pg_tviews_health_check() WHERE check_name = 'subscribed sources'",
                    &[],
                )
                .await?
                .get(0);
            ensure!(
                warned.starts_with("warning") && warned.contains("tb_review"),
                "health check: {warned}"
            );
            refresh_all(s).await?;
            assert_exact(s).await.context("after pg_tviews_refresh")?;
            assert_same_tviews(p, s).await?;
            Ok(())
        }
        .await,
    );
}

/// With every capture trigger `ENABLE ALWAYS` (on the source tables and on TVIEWs other TVIEWs
/// read), the initial table copy and replicated TRUNCATEs are captured and cascade; replicated
/// INSERT, UPDATE and DELETE still are not (the apply worker fires row triggers only). Without
/// `ENABLE ALWAYS` on a TVIEW's own capture triggers, the cascade stops there.
#[tokio::test(flavor = "multi_thread")]
async fn subscriber_capture_triggers_enabled_always() {
    let publisher = cluster("publisher", false, false, LOGICAL);
    let subscriber = cluster("subscriber", false, false, &[]);
    or_panic(
        async {
            publisher.create_database_with_extension("app")?;
            publisher.psql("app", &format!("{SOURCES}{DATA}{TVIEWS}"))?;
            publisher.psql(
                "app",
                "CREATE PUBLICATION p FOR TABLE tb_category, tb_product, tb_review",
            )?;
            subscriber.create_database_with_extension("app")?;
            subscriber.psql("app", &format!("{SOURCES}{TVIEWS}"))?;
            let l = Logical {
                publisher: &publisher,
                subscriber: &subscriber,
                p: publisher.connect("app").await?,
                s: subscriber.connect("app").await?,
            };
            let (p, s) = (&l.p, &l.s);
            set_capture_triggers(s, "ENABLE ALWAYS", "%").await?;
            subscribe(&subscriber, &publisher)?;
            wait_for_sync(&subscriber)?;
            l.caught_up("initial copy", SOURCE_TABLES).await?;
            // The copy (COPY, with statement triggers) was captured at every level.
            assert_exact(s).await.context("after the initial copy")?;
            assert_same_tviews(p, s).await?;

            // Row changes: still not captured.
            p.batch_execute(WRITES).await?;
            l.caught_up("after writes", SOURCE_TABLES).await?;
            for (name, d) in diffs(s).await? {
                ensure!(
                    d > 0,
                    "{name} followed the replicated writes ({d} differing rows)"
                );
            }
            refresh_all(s).await?;
            assert_exact(s).await?;

            // TRUNCATE: captured, and it cascades through tv_review's and tv_product's triggers.
            p.batch_execute("TRUNCATE tb_review").await?;
            l.caught_up("after TRUNCATE", SOURCE_TABLES).await?;
            assert_exact(s)
                .await
                .context("after a replicated TRUNCATE")?;
            assert_same_tviews(p, s).await?;

            // Without ENABLE ALWAYS on the TVIEWs' own capture triggers, the rebuild of
            // tv_review does not reach tv_product.
            p.batch_execute(REFILL).await?;
            l.caught_up("after a refill", SOURCE_TABLES).await?;
            refresh_all(s).await?;
            assert_exact(s).await?;
            set_capture_triggers(s, "ENABLE", "tv%").await?;
            p.batch_execute("TRUNCATE tb_review").await?;
            l.caught_up("after a second TRUNCATE", SOURCE_TABLES)
                .await?;
            let stale = diffs(s).await?;
            ensure!(
                stale.first() == Some(&("tv_review".to_owned(), 0))
                    && stale.iter().any(|(n, d)| n == "tv_product" && *d > 0),
                "with origin-only triggers on TVIEWs: {stale:?}"
            );
            Ok(())
        }
        .await,
    );
}
