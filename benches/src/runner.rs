//! Runs the benchmark on a scratch cluster: loads the data once into a template database,
//! copies it into one database per approach, and measures every operation in every approach
//! in turn, run after run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::SinkExt;
use tokio_postgres::Client;
use tviews_tests::{Cluster, ClusterOptions};

use crate::approach::{Approach, Doc, diff_sql};
use crate::data::Catalogue;
use crate::results::{
    ApproachStatus, Check, Meta, OpResult, ProfileEntry, Results, Sample, TviewsBreakdown,
    TviewsCounters, Unit,
};
use crate::scale::Scale;
use crate::workload::{ClientKeys, Group, Op, Params};

pub fn params(t: &Params) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    t.iter().map(|v| v.as_sql()).collect()
}

const TEMPLATE_DB: &str = "bench_template";
const CREATE_DB: &str = "bench_create";
/// In the preloading cluster: where CHECKPOINT and pg_walinspect run.
const ADMIN_DB: &str = "bench_admin";
/// Materialized views are left out of the concurrency operations when one refresh of what a
/// price change touches takes longer than this: every client would wait for every refresh.
const MATVIEW_CONCURRENCY_LIMIT: Duration = Duration::from_secs(1);
/// The safety check after the runs: clients and how long they write.
const SAFETY_CLIENTS: u32 = 8;
const SAFETY_WINDOW: Duration = Duration::from_millis(500);
/// Each concurrency sample is this many windows, alternating between the approaches.
const CONCURRENCY_WINDOWS: u32 = 3;

/// One client connection of a concurrency measurement.
struct Session {
    client: Client,
    stmt: tokio_postgres::Statement,
    keys: ClientKeys,
}

fn push_note(notes: &mut Vec<String>, note: String) {
    eprintln!("tviews-benches: {note}");
    if !notes.contains(&note) {
        notes.push(note);
    }
}

/// Runs every session's transactions until `window` has passed; returns the sessions, the
/// commits, the serialization failures and deadlocks (retried), and the seconds it took (the
/// last transaction started before the deadline is waited for).
async fn run_window(
    sessions: Vec<Session>,
    refresh: Arc<String>,
    window: Duration,
) -> Result<(Vec<Session>, u64, u64, f64)> {
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = Vec::new();
    for mut s in sessions {
        let refresh = refresh.clone();
        tasks.push(tokio::spawn(async move {
            let (mut commits, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                let key = s.keys.next_key();
                match execute_txn(&s.client, &s.stmt, &[&key], &refresh, false).await {
                    Ok(()) => commits += 1,
                    Err(e)
                        if e.code()
                            .is_some_and(|c| c.code() == "40001" || c.code() == "40P01") =>
                    {
                        errors += 1;
                        let _ = s.client.batch_execute("ROLLBACK").await;
                    }
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
            }
            Ok::<_, anyhow::Error>((s, commits, errors, Instant::now()))
        }));
    }
    let (mut sessions, mut commits, mut errors, mut end) = (Vec::new(), 0, 0, start);
    for t in tasks {
        let (s, c, e, finished) = t.await??;
        sessions.push(s);
        commits += c;
        errors += e;
        end = end.max(finished);
    }
    Ok((sessions, commits, errors, (end - start).as_secs_f64()))
}

#[derive(Debug, Clone)]
pub struct Config {
    pub scale: Scale,
    pub runs: u32,
    /// Single-row transactions per sample.
    pub iterations: u64,
    pub seed: u64,
    pub out: PathBuf,
    /// Seconds of timed transactions a materialized-view sample may take; the rest of its
    /// transactions are applied untimed, without refresh, then refreshed once.
    pub matview_budget: f64,
    pub preload: bool,
    /// Only these approaches (plain DML and pg_tviews are always measured).
    pub approaches: Option<Vec<Approach>>,
    /// Only operations whose id starts with one of these (development).
    pub ops: Option<Vec<String>>,
    /// "release build, installed by this command", or None when the command did not install.
    pub installed: Option<String>,
    /// With --no-install: what the caller says the installed library is (--build-note).
    pub build_note: Option<String>,
    pub command: String,
}

/// The second cluster of the statistics comparison: the same settings plus
/// `shared_preload_libraries = 'pg_tviews'`, holding the preloaded twins' databases.
struct PreloadedCluster {
    /// A connection for CHECKPOINT and pg_walinspect.
    admin: Client,
    walinspect: bool,
    cluster: Cluster,
}

/// A connection per approach database, plus what the report needs to know about them.
struct Bench {
    cat: Catalogue,
    cfg: Config,
    approaches: Vec<Approach>,
    statuses: Vec<ApproachStatus>,
    clients: BTreeMap<Approach, Client>,
    create_client: Client,
    /// pg_walinspect is installed in the scratch database: WAL is split into full-page images
    /// and the rest.
    walinspect: bool,
    /// Seconds one REFRESH of each materialized view takes (plain, concurrently).
    refresh_estimate: BTreeMap<(Approach, Doc), f64>,
    checks: Vec<Check>,
    notes: Vec<String>,
    /// The preloading cluster of the statistics comparison, when measured.
    preloaded: Option<PreloadedCluster>,
    /// Last, so that it is dropped (stopped) after the connections.
    cluster: Cluster,
}

pub async fn run(cfg: Config) -> Result<Results> {
    let started = Instant::now();
    let settings: Vec<(String, String)> = [
        ("fsync", "on"),
        ("synchronous_commit", "on"),
        ("full_page_writes", "on"),
        ("shared_buffers", cfg.scale.shared_buffers()),
        ("work_mem", "64MB"),
        ("maintenance_work_mem", "512MB"),
        ("max_wal_size", "8GB"),
        ("checkpoint_timeout", "30min"),
        // Vacuum runs between runs, untimed, in every database alike.
        ("autovacuum", "off"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let cluster = Cluster::start(ClusterOptions {
        name: "bench".into(),
        preload: cfg.preload,
        settings: settings.clone(),
        ..ClusterOptions::default()
    })?;
    eprintln!(
        "tviews-benches: cluster on port {}, generating {} data (seed {})",
        cluster.port(),
        cfg.scale.name(),
        cfg.seed
    );
    let cat = Catalogue::generate(cfg.scale, cfg.seed);
    load_template(&cluster, &cat).await?;

    let mut statuses = Vec::new();
    let mut approaches = Vec::new();
    let pg_ivm_available = cluster
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_ivm'",
        )?
        .trim()
        == "1";
    // The statistics comparison: both preloaded twins or neither.
    let twins_wanted = cfg
        .approaches
        .as_ref()
        .is_none_or(|w| Approach::PRELOADED.iter().any(|t| w.contains(t)));
    let mut preloaded: Option<Cluster> = None;
    for a in Approach::ALL {
        let wanted = if a.is_preloaded_twin() {
            twins_wanted
        } else {
            cfg.approaches
                .as_ref()
                .is_none_or(|w| w.contains(&a) || matches!(a, Approach::Plain | Approach::Tviews))
        };
        if !wanted {
            statuses.push(ApproachStatus {
                approach: a,
                included: false,
                note: Some("left out by --approaches".into()),
            });
            continue;
        }
        if a.is_preloaded_twin() {
            if cfg.preload {
                statuses.push(ApproachStatus {
                    approach: a,
                    included: false,
                    note: Some(
                        "the main cluster preloads pg_tviews too (--preload): nothing to compare"
                            .into(),
                    ),
                });
                continue;
            }
            if preloaded.is_none() {
                eprintln!(
                    "tviews-benches: starting the second cluster (pg_tviews in shared_preload_libraries)"
                );
                let second = Cluster::start(ClusterOptions {
                    name: "bench_preloaded".into(),
                    preload: true,
                    settings: settings.clone(),
                    ..ClusterOptions::default()
                })
                .context("starting the preloading cluster of the statistics comparison")?;
                load_template(&second, &cat).await?;
                preloaded = Some(second);
            }
            let second = preloaded.as_ref().expect("started above");
            eprintln!("tviews-benches: setting up {}", a.label());
            setup_approach(second, a).with_context(|| format!("setting up {}", a.label()))?;
            approaches.push(a);
            statuses.push(ApproachStatus {
                approach: a,
                included: true,
                note: approach_note(a),
            });
            continue;
        }
        if a == Approach::PgIvm && !pg_ivm_available {
            statuses.push(ApproachStatus {
                approach: a,
                included: false,
                note: Some(
                    "pg_ivm is not installed in this PostgreSQL (not in pg_available_extensions)"
                        .into(),
                ),
            });
            continue;
        }
        eprintln!("tviews-benches: setting up {}", a.label());
        match setup_approach(&cluster, a) {
            Ok(()) => {
                approaches.push(a);
                statuses.push(ApproachStatus {
                    approach: a,
                    included: true,
                    note: approach_note(a),
                });
            }
            Err(e) if a == Approach::PgIvm => {
                statuses.push(ApproachStatus {
                    approach: a,
                    included: false,
                    note: Some(format!("setting it up failed: {e:#}")),
                });
            }
            Err(e) => return Err(e.context(format!("setting up {}", a.label()))),
        }
    }
    setup_create_db(&cluster, &approaches)?;

    let mut clients = BTreeMap::new();
    for a in &approaches {
        let home = match (&preloaded, a.is_preloaded_twin()) {
            (Some(second), true) => second,
            _ => &cluster,
        };
        clients.insert(*a, home.connect(&a.database()).await?);
    }
    let create_client = cluster.connect(CREATE_DB).await?;
    let walinspect = create_client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await
        .is_ok();
    let preloaded = match preloaded {
        Some(second) => {
            second.create_database(ADMIN_DB)?;
            let admin = second.connect(ADMIN_DB).await?;
            let walinspect = admin
                .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
                .await
                .is_ok();
            Some(PreloadedCluster {
                admin,
                walinspect,
                cluster: second,
            })
        }
        None => None,
    };
    let mut bench = Bench {
        cluster,
        cat,
        cfg,
        approaches,
        statuses,
        clients,
        create_client,
        walinspect,
        refresh_estimate: BTreeMap::new(),
        checks: Vec::new(),
        notes: Vec::new(),
        preloaded,
    };
    bench.estimate_refreshes().await?;
    for a in bench.approaches.clone() {
        bench.check(a, "before the runs").await?;
    }
    let ops: Vec<Op> = Op::sequence(bench.cfg.scale)
        .into_iter()
        .filter(|op| {
            bench
                .cfg
                .ops
                .as_ref()
                .is_none_or(|w| w.iter().any(|p| op.id().starts_with(p.as_str())))
        })
        .collect();
    let mut results: Vec<OpResult> = ops
        .iter()
        .map(|op| OpResult {
            op: *op,
            id: op.id(),
            title: op.title(),
            group: op.group(),
            unit: match op.group() {
                Group::Concurrency => Unit::TxnPerSecond,
                Group::Creation => Unit::Seconds,
                _ => Unit::SecondsPerTxn,
            },
            rows_per_txn: op.rows_per_txn(),
            samples: Vec::new(),
            notes: Vec::new(),
        })
        .collect();
    for run in 1..=bench.cfg.runs {
        bench.prepare_run().await?;
        let n = bench.approaches.len();
        let order: Vec<Approach> = (0..n)
            .map(|i| bench.approaches[(i + run as usize - 1) % n])
            .collect();
        for (op, result) in ops.iter().zip(results.iter_mut()) {
            let samples = bench.measure_op(op, run, &order, &mut result.notes).await;
            let mut line = format!("[run {run}/{}] {:<28}", bench.cfg.runs, op.id());
            for sample in &samples {
                line.push_str(&format!(
                    " {}={}",
                    sample.approach.id(),
                    match result.unit {
                        Unit::TxnPerSecond => format!("{}tx/s", crate::report::sig3(sample.value)),
                        _ => crate::report::duration(sample.value).replace(' ', ""),
                    }
                ));
            }
            eprintln!("{line}");
            result.samples.extend(samples);
        }
        for a in bench.approaches.clone() {
            let ok = bench.check(a, &format!("after run {run}")).await?;
            if !ok {
                for r in results.iter_mut() {
                    for s in r
                        .samples
                        .iter_mut()
                        .filter(|s| s.approach == a && s.run == run)
                    {
                        s.void = true;
                    }
                }
                eprintln!(
                    "tviews-benches: {} is WRONG after run {run}: its samples of this run are void; repairing",
                    a.label()
                );
                bench.clients[&a].batch_execute(a.repair_sql()).await?;
            }
        }
    }
    let safety = bench.safety().await?;
    let (profile, plans) = if bench.approaches.contains(&Approach::Tviews) {
        bench.profile_tviews().await.unwrap_or_else(|e| {
            bench
                .notes
                .push(format!("profiling pg_tviews failed: {e:#}"));
            (Vec::new(), Vec::new())
        })
    } else {
        (Vec::new(), Vec::new())
    };
    let meta = bench.meta(started.elapsed().as_secs_f64()).await?;
    let results = Results {
        meta,
        approaches: bench.statuses.clone(),
        checks: bench.checks.clone(),
        safety,
        ops: results,
        profile,
        preload_comparison: None,
    };
    std::fs::create_dir_all(&bench.cfg.out)?;
    std::fs::write(
        bench.cfg.out.join("profile.md"),
        crate::report::render_profile_plans(&results, &plans),
    )?;
    Ok(results)
}

fn approach_note(a: Approach) -> Option<String> {
    match a {
        Approach::TriggersRow => Some(
            "Not safe under concurrency: two transactions changing products of one category each \
             recompute the category from a snapshot without the other's change (the disjoint-key \
             clients here never share a category)"
                .into(),
        ),
        Approach::TriggersStmt => Some("Not safe under concurrency either".into()),
        Approach::PgIvm => Some(
            "pg_ivm refuses jsonb_build_object (STABLE), correlated subqueries, jsonb_agg and IMMVs \
             over IMMVs, so: documents are built by IMMUTABLE wrapper functions; ivm_review \
             (= tv_review), ivm_product_base (a product's own document with its category, and its \
             stock) and ivm_review_stats (count and average rating per product) are IMMVs; the \
             product and category documents are views assembled from them when read, so the \
             category's list of product documents is never stored. The check compares those views \
             with the definitions"
                .into(),
        ),
        Approach::PlainPreloaded | Approach::TviewsPreloaded => Some(format!(
            "In a second cluster started with the same settings plus shared_preload_libraries = \
             'pg_tviews' (shared-memory statistics on), from the same data; {} takes its turns in \
             the same interleaving as every approach, with the same keys, for the statistics \
             comparison only (not in the tables per operation, nor in initial creation and the \
             safety rounds)",
            a.base().label()
        )),
        Approach::Matview => Some(
            "When a refresh is slow, only the first transactions of a sample are timed (with their \
             refresh); the rest are applied without refresh and the views refreshed once after"
                .into(),
        ),
        _ => None,
    }
}

/// The template database: sources, definitions (plain views) and the generated rows.
pub async fn load_template(cluster: &Cluster, cat: &Catalogue) -> Result<()> {
    cluster.create_database(TEMPLATE_DB)?;
    cluster.psql(TEMPLATE_DB, crate::approach::SCHEMA_SQL)?;
    cluster.psql(TEMPLATE_DB, crate::approach::DEFINITIONS_SQL)?;
    let client = cluster.connect(TEMPLATE_DB).await?;
    for (table, columns, chunks) in [
        (
            "tb_category",
            "pk_category, name, slug",
            cat.category_rows(),
        ),
        (
            "tb_product",
            "pk_product, fk_category, name, price",
            cat.product_rows(),
        ),
        (
            "tb_review",
            "pk_review, fk_product, rating, body",
            cat.review_rows(),
        ),
        (
            "tb_inventory",
            "fk_product, quantity, warehouse",
            cat.inventory_rows(),
        ),
    ] {
        let sink = client
            .copy_in(&format!("COPY {table} ({columns}) FROM STDIN"))
            .await?;
        let mut sink = Box::pin(sink);
        for chunk in chunks {
            sink.send(chunk).await?;
        }
        sink.as_mut()
            .finish()
            .await
            .with_context(|| format!("loading {table}"))?;
    }
    client.batch_execute("VACUUM (ANALYZE, FREEZE)").await?;
    drop(client);
    Ok(())
}

/// Creates the approach's database from the template and builds its read model.
pub fn setup_approach(cluster: &Cluster, a: Approach) -> Result<()> {
    let db = a.database();
    cluster.psql(
        "postgres",
        &format!("CREATE DATABASE {db} TEMPLATE {TEMPLATE_DB}"),
    )?;
    match a.base() {
        Approach::Tviews => {
            cluster.psql(&db, "CREATE EXTENSION pg_tviews")?;
        }
        Approach::PgIvm => {
            cluster.psql(
                &db,
                &format!(
                    "CREATE EXTENSION pg_ivm; ALTER DATABASE {db} SET session_preload_libraries = 'pg_ivm'"
                ),
            )?;
        }
        _ => {}
    }
    cluster.psql(&db, a.setup_sql())?;
    cluster.psql(&db, "VACUUM (ANALYZE)")?;
    Ok(())
}

/// A database with the sources and every extension, where creation is timed and undone.
fn setup_create_db(cluster: &Cluster, approaches: &[Approach]) -> Result<()> {
    cluster.psql(
        "postgres",
        &format!("CREATE DATABASE {CREATE_DB} TEMPLATE {TEMPLATE_DB}"),
    )?;
    if approaches.contains(&Approach::Tviews) {
        cluster.psql(CREATE_DB, "CREATE EXTENSION pg_tviews")?;
    }
    if approaches.contains(&Approach::PgIvm) {
        cluster.psql(
            CREATE_DB,
            &format!(
                "CREATE EXTENSION pg_ivm; ALTER DATABASE {CREATE_DB} SET session_preload_libraries = 'pg_ivm'"
            ),
        )?;
    }
    Ok(())
}

/// Rows in which each of the approach's read-model tables differs from its definition (and,
/// for pg_tviews, what `pg_tviews_diff` says).
pub async fn check_read_model(client: &Client, a: Approach) -> Result<Vec<(String, i64)>> {
    let mut differing = Vec::new();
    for doc in Doc::ALL {
        let Some(model) = a.model(doc) else { continue };
        let n: i64 = client
            .query_one(&diff_sql(&model), &[])
            .await
            .with_context(|| format!("checking {}", model.table))?
            .get(0);
        differing.push((model.table.to_owned(), n));
        if a.base() == Approach::Tviews {
            let n: i64 = client
                .query_one("SELECT pg_tviews_diff($1)", &[&model.table])
                .await?
                .get(0);
            differing.push((format!("pg_tviews_diff('{}')", model.table), n));
        }
    }
    Ok(differing)
}

/// One transaction of a measured operation: the statement alone (autocommit), or, when
/// `refresh` is not empty (materialized views), the statement and then, once it committed,
/// the refreshes in a second transaction (so each refresh's snapshot includes the change).
pub async fn execute_txn(
    client: &Client,
    stmt: &tokio_postgres::Statement,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    refresh: &str,
    read: bool,
) -> Result<(), tokio_postgres::Error> {
    if read {
        client.query(stmt, params).await.map(drop)
    } else if refresh.is_empty() {
        client.execute(stmt, params).await.map(drop)
    } else {
        client.execute(stmt, params).await?;
        client
            .batch_execute(&format!("BEGIN; {refresh} COMMIT"))
            .await
    }
}

/// Bytes of full-page images in the WAL of the given LSN ranges (pg_walinspect).
async fn fpi_bytes(client: &Client, ranges: &[(u64, u64)]) -> Result<u64> {
    if ranges.is_empty() {
        return Ok(0);
    }
    let lsn = |v: u64| format!("{:X}/{:X}", v >> 32, v & 0xFFFF_FFFF);
    let starts: Vec<String> = ranges.iter().map(|r| lsn(r.0)).collect();
    let ends: Vec<String> = ranges.iter().map(|r| lsn(r.1)).collect();
    let row = client
        .query_one(
            "SELECT coalesce(sum(w.fpi_length), 0)::int8 \
             FROM unnest($1::text[]::pg_lsn[], $2::text[]::pg_lsn[]) AS r(s, e), \
                  LATERAL pg_get_wal_records_info(r.s, r.e) w",
            &[&starts, &ends],
        )
        .await
        .context("reading full-page images with pg_walinspect")?;
    Ok(row.get::<_, i64>(0) as u64)
}

async fn wal_lsn(client: &Client) -> Result<u64> {
    let row = client
        .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[])
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

impl Bench {
    fn client(&self, a: Approach) -> &Client {
        &self.clients[&a]
    }

    /// The cluster that holds the approach's database.
    fn cluster_of(&self, a: Approach) -> &Cluster {
        match &self.preloaded {
            Some(second) if a.is_preloaded_twin() => &second.cluster,
            _ => &self.cluster,
        }
    }

    /// A connection to the approach's cluster for pg_walinspect, when it is installed there.
    fn walinspect_of(&self, a: Approach) -> Option<&Client> {
        match &self.preloaded {
            Some(second) if a.is_preloaded_twin() => second.walinspect.then_some(&second.admin),
            _ if a.is_preloaded_twin() => None,
            _ => self.walinspect.then_some(&self.create_client),
        }
    }

    /// Keep each transaction's value in the samples of the statistics comparison's approaches
    /// (their transactions are paired one by one).
    fn keeps_values(&self, a: Approach) -> bool {
        self.preloaded.is_some() && (a.is_preloaded_twin() || a.preloaded_twin().is_some())
    }

    /// One REFRESH of each materialized view, timed, to size the samples.
    async fn estimate_refreshes(&mut self) -> Result<()> {
        for a in self.approaches.clone() {
            if !a.is_matview() {
                continue;
            }
            for doc in Doc::ALL {
                let sql = a.refresh_sql(&[doc]);
                let t = Instant::now();
                self.client(a).batch_execute(&sql).await?;
                self.refresh_estimate
                    .insert((a, doc), t.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    fn refresh_seconds(&self, a: Approach, docs: &[Doc]) -> f64 {
        docs.iter()
            .map(|d| self.refresh_estimate.get(&(a, *d)).copied().unwrap_or(0.0))
            .sum()
    }

    /// Before each run: a checkpoint (so every run pays the same full-page images) and a
    /// vacuum of every database (autovacuum is off).
    async fn prepare_run(&self) -> Result<()> {
        for a in &self.approaches {
            self.client(*a).batch_execute("VACUUM (ANALYZE)").await?;
        }
        self.create_client.batch_execute("CHECKPOINT").await?;
        if let Some(second) = &self.preloaded {
            second.admin.batch_execute("CHECKPOINT").await?;
        }
        Ok(())
    }

    /// Compares the read model with the definitions; records the check.
    async fn check(&mut self, a: Approach, when: &str) -> Result<bool> {
        if a.base() == Approach::Plain {
            return Ok(true);
        }
        let check = Check {
            approach: a,
            when: when.to_owned(),
            differing: check_read_model(self.client(a), a).await?,
        };
        let ok = check.ok();
        self.checks.push(check);
        Ok(ok)
    }

    /// Measures one operation in every approach of `order`; failures become notes.
    async fn measure_op(
        &self,
        op: &Op,
        run: u32,
        order: &[Approach],
        notes: &mut Vec<String>,
    ) -> Vec<Sample> {
        match op {
            Op::Concurrent { clients, hot } => {
                self.measure_concurrent(op, *clients, *hot, run, order, notes)
                    .await
            }
            Op::Create => {
                let mut samples = Vec::new();
                for &a in order {
                    if a == Approach::MatviewConcurrently || a.is_preloaded_twin() {
                        // The same views and indexes as REFRESH MATVIEW; the twins' creation
                        // would be timed in another cluster than the rest.
                        continue;
                    }
                    match self.measure_create(a, run).await {
                        Ok(s) => samples.push(s),
                        Err(e) => {
                            push_note(notes, format!("{} failed in run {run}: {e:#}", a.label()));
                            let _ = self.create_client.batch_execute("ROLLBACK").await;
                        }
                    }
                }
                samples
            }
            _ => self.measure_interleaved(op, run, order, notes).await,
        }
    }

    /// Sequential transactions, interleaved: transaction i runs in every approach before
    /// transaction i + 1 runs in any, each timed on its own (so a burst of noise on the machine
    /// hits every approach alike), with the WAL it wrote. A sample's value is the median
    /// latency of its transactions.
    async fn measure_interleaved(
        &self,
        op: &Op,
        run: u32,
        order: &[Approach],
        notes: &mut Vec<String>,
    ) -> Vec<Sample> {
        struct State<'a> {
            a: Approach,
            client: &'a Client,
            stmt: tokio_postgres::Statement,
            refresh: String,
            timed: usize,
            latencies: Vec<f64>,
            wal: u64,
            /// Each timed transaction's WAL (start, end), for pg_walinspect.
            wal_ranges: Vec<(u64, u64)>,
            failed: Option<String>,
            /// pg_tviews: the counters so far, and each timed transaction's latency and counters.
            counters: Option<TviewsCounters>,
            tviews_txns: Vec<(f64, TviewsCounters)>,
        }
        let n = op.iterations(self.cfg.iterations);
        let txns = op.transactions(&self.cat, run, n);
        let read = op.group() == Group::Read;
        let docs = op.touched_docs();
        let mut states = Vec::new();
        for &a in order {
            let client = self.client(a);
            let prepared = async {
                let (sql, types) = op.statement(a).context("no statement")?;
                let stmt = client.prepare_typed(&sql, &types).await?;
                // Both pg_tviews variants read their counters after each transaction, so that
                // the untimed work between their transactions is the same.
                let counters = if a.base() == Approach::Tviews {
                    client
                        .batch_execute("SELECT pg_tviews_session_stats_reset()")
                        .await?;
                    Some(tviews_counters(client).await?)
                } else {
                    None
                };
                Ok::<_, anyhow::Error>((stmt, counters))
            }
            .await;
            let (stmt, counters) = match prepared {
                Ok(prepared) => prepared,
                Err(e) => {
                    push_note(notes, format!("{} failed in run {run}: {e:#}", a.label()));
                    continue;
                }
            };
            let refresh = if read {
                String::new()
            } else {
                a.refresh_sql(&docs)
            };
            let timed = if refresh.is_empty() {
                n
            } else {
                let est = self.refresh_seconds(a, &docs).max(1e-6);
                ((self.cfg.matview_budget / est).floor() as u64).clamp(1, n)
            };
            states.push(State {
                a,
                client,
                stmt,
                refresh,
                timed: timed as usize,
                latencies: Vec::with_capacity(timed as usize),
                wal: 0,
                wal_ranges: Vec::new(),
                failed: None,
                counters,
                tviews_txns: Vec::new(),
            });
        }
        let k = states.len();
        for (i, t) in txns.iter().enumerate() {
            for j in 0..k {
                let st = &mut states[(i + j) % k];
                if st.failed.is_some() {
                    continue;
                }
                let outcome = async {
                    if i < st.timed {
                        let before = if read { 0 } else { wal_lsn(st.client).await? };
                        let started = Instant::now();
                        execute_txn(st.client, &st.stmt, &params(t), &st.refresh, read).await?;
                        let latency = started.elapsed().as_secs_f64();
                        st.latencies.push(latency);
                        if !read {
                            let after = wal_lsn(st.client).await?;
                            st.wal += after.saturating_sub(before);
                            if after > before {
                                st.wal_ranges.push((before, after));
                            }
                        }
                        if let Some(prev) = &st.counters {
                            let now = tviews_counters(st.client).await?;
                            st.tviews_txns.push((latency, now.since(prev)));
                            st.counters = Some(now);
                        }
                    } else {
                        // Materialized views past their budget: applied, not refreshed.
                        execute_txn(st.client, &st.stmt, &params(t), "", read).await?;
                    }
                    Ok::<_, anyhow::Error>(())
                }
                .await;
                if let Err(e) = outcome {
                    st.failed = Some(format!("{e:#}"));
                    let _ = st.client.batch_execute("ROLLBACK").await;
                }
            }
        }
        let mut samples = Vec::new();
        for st in states {
            let finished = async {
                if let Some(e) = &st.failed {
                    bail!("{e}");
                }
                if st.timed < txns.len() {
                    // Up to date again, so the next operation starts from current views.
                    st.client.batch_execute(&st.refresh).await?;
                }
                let fpi = match self.walinspect_of(st.a) {
                    Some(admin) if !read => Some(fpi_bytes(admin, &st.wal_ranges).await?),
                    _ => None,
                };
                Ok((TviewsBreakdown::from_transactions(&st.tviews_txns), fpi))
            }
            .await;
            let (tviews, wal_fpi_bytes) = match finished {
                Ok(t) => t,
                Err(e) => {
                    push_note(
                        notes,
                        format!("{} failed in run {run}: {e:#}", st.a.label()),
                    );
                    continue;
                }
            };
            let Some(sample) = Sample::of_values(st.a, run, &st.latencies, st.timed as u64, n)
            else {
                continue;
            };
            let values = if self.keeps_values(st.a) {
                st.latencies.clone()
            } else {
                Vec::new()
            };
            samples.push(Sample {
                wal_bytes: (!read).then_some(st.wal),
                wal_fpi_bytes,
                tviews,
                values,
                ..sample
            });
        }
        samples
    }

    /// Throughput of `clients` connections per approach changing product prices, in short
    /// windows that alternate between the approaches; a sample's value is the median of its
    /// windows' transactions per second.
    async fn measure_concurrent(
        &self,
        op: &Op,
        clients: u32,
        hot: bool,
        run: u32,
        order: &[Approach],
        notes: &mut Vec<String>,
    ) -> Vec<Sample> {
        struct Conc {
            a: Approach,
            sessions: Vec<Session>,
            refresh: Arc<String>,
            tps: Vec<f64>,
            commits: u64,
            errors: u64,
            failed: Option<String>,
        }
        let mut concs = Vec::new();
        for &a in order {
            if a.is_matview() {
                let est = self.refresh_seconds(a, &op.touched_docs());
                if est > MATVIEW_CONCURRENCY_LIMIT.as_secs_f64() {
                    push_note(
                        notes,
                        format!(
                            "{} left out: one refresh takes {} (> {} s), every client would queue behind it",
                            a.label(),
                            crate::report::duration(est),
                            MATVIEW_CONCURRENCY_LIMIT.as_secs()
                        ),
                    );
                    continue;
                }
            }
            let opened = self
                .open_sessions(a, op, clients, |k| {
                    ClientKeys::new(&self.cat, run, clients, hot, k)
                })
                .await;
            match opened {
                Ok(sessions) => concs.push(Conc {
                    a,
                    sessions,
                    refresh: Arc::new(a.refresh_sql(&op.touched_docs())),
                    tps: Vec::new(),
                    commits: 0,
                    errors: 0,
                    failed: None,
                }),
                Err(e) => push_note(notes, format!("{} failed in run {run}: {e:#}", a.label())),
            }
        }
        let window = Duration::from_secs_f64(
            self.cfg.scale.concurrency_seconds() / f64::from(CONCURRENCY_WINDOWS),
        );
        for w in 0..CONCURRENCY_WINDOWS as usize {
            let k = concs.len();
            for j in 0..k {
                let conc = &mut concs[(w + j) % k];
                if conc.failed.is_some() {
                    continue;
                }
                let sessions = std::mem::take(&mut conc.sessions);
                match run_window(sessions, conc.refresh.clone(), window).await {
                    Ok((sessions, commits, errors, elapsed)) => {
                        conc.sessions = sessions;
                        conc.commits += commits;
                        conc.errors += errors;
                        conc.tps.push(commits as f64 / elapsed);
                    }
                    Err(e) => conc.failed = Some(format!("{e:#}")),
                }
            }
        }
        let mut samples = Vec::new();
        for conc in concs {
            if let Some(e) = conc.failed {
                push_note(
                    notes,
                    format!("{} failed in run {run}: {e}", conc.a.label()),
                );
                continue;
            }
            if let Some(sample) =
                Sample::of_values(conc.a, run, &conc.tps, conc.commits, conc.commits)
            {
                let values = if self.keeps_values(conc.a) {
                    conc.tps.clone()
                } else {
                    Vec::new()
                };
                samples.push(Sample {
                    errors: conc.errors,
                    values,
                    ..sample
                });
            }
        }
        samples
    }

    /// Builds the approach's read model in the scratch database (one transaction), then drops it.
    async fn measure_create(&self, a: Approach, run: u32) -> Result<Sample> {
        let c = &self.create_client;
        let start = Instant::now();
        c.batch_execute(a.creation_sql())
            .await
            .with_context(|| format!("creating the read model of {}", a.label()))?;
        let elapsed = start.elapsed().as_secs_f64();
        c.batch_execute(a.teardown_sql())
            .await
            .with_context(|| format!("dropping the read model of {}", a.label()))?;
        Ok(Sample {
            approach: a,
            run,
            value: elapsed,
            mean: None,
            timed: 1,
            total: 1,
            wal_bytes: None,
            wal_fpi_bytes: None,
            errors: 0,
            void: false,
            tviews: None,
            values: Vec::new(),
        })
    }

    /// `clients` connections to the approach's database, with the operation's statement
    /// prepared and their keys.
    async fn open_sessions(
        &self,
        a: Approach,
        op: &Op,
        clients: u32,
        keys: impl Fn(u32) -> ClientKeys,
    ) -> Result<Vec<Session>> {
        let (sql, types) = op.statement(a).context("no statement")?;
        let mut sessions = Vec::new();
        for k in 0..clients {
            let client = self.cluster_of(a).connect(&a.database()).await?;
            let stmt = client.prepare_typed(&sql, &types).await?;
            sessions.push(Session {
                client,
                stmt,
                keys: keys(k),
            });
        }
        Ok(sessions)
    }

    /// Not timed, after the runs: eight clients change prices of products of one category for a
    /// moment, in each approach in turn, then each read model is checked (and repaired if
    /// wrong); a few rounds, since a race does not show every time.
    async fn safety(&self) -> Result<Vec<Check>> {
        let op = Op::Concurrent {
            clients: SAFETY_CLIENTS,
            hot: false,
        };
        let category = self.cat.categories() / 2 + 1;
        let mut checks = Vec::new();
        for &a in &self.approaches {
            if a == Approach::Plain || a.is_preloaded_twin() {
                continue;
            }
            let mut sessions = self
                .open_sessions(a, &op, SAFETY_CLIENTS, |k| {
                    ClientKeys::shared_category(&self.cat, category, k)
                })
                .await?;
            let refresh = Arc::new(a.refresh_sql(&op.touched_docs()));
            for round in 1..=self.cfg.scale.safety_rounds() {
                let (back, commits, _, _) =
                    run_window(sessions, refresh.clone(), SAFETY_WINDOW).await?;
                sessions = back;
                let check = Check {
                    approach: a,
                    when: format!(
                        "round {round}: {commits} price changes by {SAFETY_CLIENTS} clients on category {category}"
                    ),
                    differing: check_read_model(self.client(a), a).await?,
                };
                if !check.ok() {
                    eprintln!(
                        "tviews-benches: {} is wrong after concurrent writers on one category ({}); repairing",
                        a.label(),
                        check.differences()
                    );
                    self.client(a).batch_execute(a.repair_sql()).await?;
                }
                checks.push(check);
            }
        }
        Ok(checks)
    }

    /// EXPLAIN (ANALYZE, BUFFERS) of pg_tviews' refresh statements with representative keys,
    /// each after changing the sources in the same transaction, rolled back.
    async fn profile_tviews(&self) -> Result<(Vec<ProfileEntry>, Vec<(String, String)>)> {
        let c = self.client(Approach::Tviews);
        let stmt = |tview: &str, kind: &str| {
            let (tview, kind) = (tview.to_owned(), kind.to_owned());
            async move {
                let row = c
                    .query_one(
                        "SELECT sql FROM pg_tviews_statements($1) WHERE kind = $2 LIMIT 1",
                        &[&tview, &kind],
                    )
                    .await
                    .with_context(|| format!("{kind} of {tview}"))?;
                Ok::<String, anyhow::Error>(row.get(0))
            }
        };
        let product_apply = stmt("tv_product", "apply_keys").await?;
        let product_derive = stmt("tv_product", "derive").await?;
        let category_apply = stmt("tv_category", "apply_keys").await?;
        let review_apply = stmt("tv_review", "apply_keys").await?;
        let product = (self.cat.products() / 2) as i64;
        let category = i64::from(self.cat.product_category[(product - 1) as usize]);
        let cat_products: Vec<String> = self
            .cat
            .products_of(category as u64)
            .iter()
            .map(|p| p.to_string())
            .collect();
        let array = |v: &[String]| format!("{{{}}}", v.join(","));
        let review = (self.cat.reviews() / 2) as i64;
        // The statement pg_tviews runs first in each flush (ext/src/registry.rs, LOCK_SQL).
        let lock_sql = "INSERT INTO tviews.refresh_lock AS l (relid, flushes) VALUES ($1, 1) \
             ON CONFLICT (relid) DO UPDATE SET flushes = l.flushes OPERATOR(pg_catalog.+) 1";
        let has_lock_table: bool = c
            .query_one("SELECT to_regclass('tviews.refresh_lock') IS NOT NULL", &[])
            .await?
            .get(0);
        let mut cases: Vec<(String, String, String, &str, String)> = Vec::new();
        if has_lock_table {
            cases.push((
                "refresh lock (upsert of tviews.refresh_lock)".into(),
                "tv_product's oid".into(),
                String::new(),
                lock_sql,
                "'tv_product'::regclass::oid".into(),
            ));
        }
        cases.extend([
            (
                "tv_product apply_keys".into(),
                "1 product, after a price change".into(),
                format!("UPDATE tb_product SET price = price + 1 WHERE pk_product = {product}"),
                product_apply.as_str(),
                format!("'{}'::text[]", array(&[product.to_string()])),
            ),
            (
                "tv_product derive (from tb_category)".into(),
                "1 category → its 50 products".into(),
                String::new(),
                product_derive.as_str(),
                format!("'{{{category}}}'::text[]"),
            ),
            (
                "tv_product apply_keys".into(),
                "50 products, after their category's rename".into(),
                format!(
                    "UPDATE tb_category SET name = name || ' (profiled)' WHERE pk_category = {category}"
                ),
                product_apply.as_str(),
                format!("'{}'::text[]", array(&cat_products)),
            ),
            (
                "tv_category apply_keys".into(),
                "1 category, after one of its products changed".into(),
                format!(
                    "UPDATE tb_product SET price = price + 1 WHERE pk_product = {product}; \
                     PREPARE tv_product_apply(text[]) AS {product_apply}; \
                     EXECUTE tv_product_apply('{}'); DEALLOCATE tv_product_apply",
                    array(&[product.to_string()])
                ),
                category_apply.as_str(),
                format!("'{{{category}}}'::text[]"),
            ),
            (
                "tv_review apply_keys".into(),
                "1 review, after a rating change".into(),
                format!("UPDATE tb_review SET rating = rating % 5 + 1 WHERE pk_review = {review}"),
                review_apply.as_str(),
                format!("'{{{review}}}'::text[]"),
            ),
        ]);
        let mut entries = Vec::new();
        let mut plans = Vec::new();
        for (name, keys, before, sql, arg) in cases {
            let explained = async {
                // The apply statements write the TVIEWs, which only pg_tviews' own refresh may
                // do; a superuser may for repairs (rolled back here).
                c.batch_execute("BEGIN; SET LOCAL pg_tviews.allow_direct_writes = on")
                    .await?;
                if !before.is_empty() {
                    c.batch_execute(&before)
                        .await
                        .context("changing the sources first")?;
                }
                c.batch_execute(&format!("PREPARE bench_profile AS {sql}"))
                    .await
                    .context("PREPARE")?;
                let rows = c
                    .simple_query(&format!(
                        "EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_profile({arg})"
                    ))
                    .await
                    .context("EXPLAIN EXECUTE")?;
                Ok::<_, anyhow::Error>(rows)
            }
            .await;
            // Undoes the change and the refresh; a prepared statement outlives the rollback.
            c.batch_execute("ROLLBACK").await?;
            let _ = c.batch_execute("DEALLOCATE bench_profile").await;
            let rows = match explained {
                Ok(rows) => rows,
                Err(e) => {
                    let e = format!("{e:#}");
                    plans.push((format!("{name} — {keys}"), format!("{sql}\n\nfailed: {e}")));
                    entries.push(ProfileEntry {
                        statement: name,
                        keys,
                        execution_ms: None,
                        planning_ms: None,
                        plan_head: format!("failed: {e}"),
                    });
                    continue;
                }
            };
            let text: Vec<String> = rows
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
                .collect();
            let find = |label: &str| {
                text.iter()
                    .find_map(|l| l.trim().strip_prefix(label))
                    .and_then(|v| v.trim().trim_end_matches(" ms").trim().parse::<f64>().ok())
            };
            entries.push(ProfileEntry {
                statement: name.clone(),
                keys: keys.clone(),
                execution_ms: find("Execution Time:"),
                planning_ms: find("Planning Time:"),
                plan_head: text.iter().take(3).cloned().collect::<Vec<_>>().join("\n"),
            });
            plans.push((
                format!("{name} — {keys}"),
                format!("{sql}\n\n{}", text.join("\n")),
            ));
        }
        let (capture_entries, capture_plans) = self.profile_capture().await?;
        entries.extend(capture_entries);
        plans.extend(capture_plans);
        Ok((entries, plans))
    }

    /// The capture and refresh of one 1000-row price update, as auto_explain logs them (every
    /// nested statement over 5 ms, with its plan as executed): once in a new session, once in a
    /// session that ran single-row price updates first. A capture statement has no parameters,
    /// so each plan is made for the transition tables of its first call; pg_tviews keeps one
    /// per size class, and the two sessions show whether a plan made for one row serves the
    /// thousand.
    async fn profile_capture(&self) -> Result<(Vec<ProfileEntry>, Vec<(String, String)>)> {
        let mut entries = Vec::new();
        let mut plans = Vec::new();
        let products = self.cat.products().min(1000) as i64;
        for warm in [false, true] {
            let session = if warm {
                "session that ran 3 single-row price updates first"
            } else {
                "new session"
            };
            let c = self.cluster.connect(&Approach::Tviews.database()).await?;
            if warm {
                for p in [11_i64, 12, 13] {
                    c.execute(
                        "UPDATE tb_product SET price = price + 1 WHERE pk_product = $1",
                        &[&p],
                    )
                    .await?;
                }
            }
            c.batch_execute(
                "LOAD 'auto_explain'; SET auto_explain.log_min_duration = '5ms'; \
                 SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; \
                 SET auto_explain.log_nested_statements = on",
            )
            .await
            .context("loading auto_explain")?;
            let log = self.cluster.log_path();
            let offset = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
            let sql = format!(
                "UPDATE tb_product SET price = price + 1 WHERE pk_product BETWEEN 1 AND {products}; \
                 SELECT pg_tviews_flush()"
            );
            c.batch_execute("BEGIN").await?;
            let started = Instant::now();
            let done = c.batch_execute(&sql).await;
            let elapsed = started.elapsed().as_secs_f64();
            c.batch_execute("ROLLBACK").await?;
            done.context("the 1000-row price update")?;
            // Give the server a moment to write the last lines of the log.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let text = std::fs::read(log)
                .map(|b| {
                    String::from_utf8_lossy(&b[offset.min(b.len() as u64) as usize..]).into_owned()
                })
                .unwrap_or_default();
            entries.push(ProfileEntry {
                statement: format!("UPDATE of {products} prices + pg_tviews_flush()"),
                keys: format!("whole statement and refresh, {session}"),
                execution_ms: Some(elapsed * 1e3),
                planning_ms: None,
                plan_head: String::new(),
            });
            for logged in auto_explain_entries(&text) {
                let what = if logged.query.contains("tviews_changed_old") {
                    // The columns compared tell the two captured tables apart: only
                    // tb_product's capture compares a price.
                    let table = if logged.query.contains(".\"price\"") {
                        "tb_product"
                    } else {
                        "tv_product (cascade)"
                    };
                    format!("capture of {table}: update filter")
                } else if logged.query.starts_with("WITH src AS") {
                    let target = logged
                        .query
                        .split("DELETE FROM ")
                        .nth(1)
                        .and_then(|s| s.split(" AS").next())
                        .unwrap_or("?");
                    format!("apply_keys of {target}")
                } else {
                    continue;
                };
                entries.push(ProfileEntry {
                    statement: what.clone(),
                    keys: format!("{products} products, {session}"),
                    execution_ms: Some(logged.ms),
                    planning_ms: None,
                    plan_head: logged.plan.lines().take(3).collect::<Vec<_>>().join("\n"),
                });
                plans.push((
                    format!("{what} — {products} products, {session} (auto_explain)"),
                    format!("{}\n\n{}", logged.query, logged.plan),
                ));
            }
        }
        Ok((entries, plans))
    }

    async fn meta(&self, seconds: f64) -> Result<Meta> {
        let c = &self.create_client;
        let one = |sql: &'static str| async move {
            let row = c.query_one(sql, &[]).await?;
            Ok::<String, anyhow::Error>(row.get(0))
        };
        let date =
            one("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')").await?;
        let postgres = one("SELECT current_setting('server_version')").await?;
        let tviews_version = match self.clients.get(&Approach::Tviews) {
            Some(t) => t
                .query_one("SELECT pg_tviews_version()::text", &[])
                .await?
                .get(0),
            None => "not measured".to_owned(),
        };
        let settings = c
            .query(
                "SELECT name, current_setting(name) FROM pg_settings \
                 WHERE source NOT IN ('default', 'override', 'client', 'session') \
                   AND name NOT IN ('port', 'unix_socket_directories', 'listen_addresses', \
                     'log_line_prefix', 'log_min_messages', 'log_timezone', 'TimeZone', \
                     'DateStyle', 'default_text_search_config', 'lc_messages', 'lc_monetary', \
                     'lc_numeric', 'lc_time', 'dynamic_shared_memory_type', 'application_name', \
                     'client_encoding', 'session_preload_libraries') \
                 ORDER BY name",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        let mut rows = BTreeMap::new();
        rows.insert("category".to_owned(), self.cat.categories());
        rows.insert("product".to_owned(), self.cat.products());
        rows.insert("review".to_owned(), self.cat.reviews());
        rows.insert("inventory".to_owned(), self.cat.stocked.len() as u64);
        let mut notes = self.notes.clone();
        for size in self.cfg.scale.skipped_bulk_sizes() {
            notes.push(format!(
                "Bulk statements of {size} rows are left out: the {} scale has {} products.",
                self.cfg.scale.name(),
                self.cat.products()
            ));
        }
        notes.push(
            "The concurrent operations run for a fixed time, so each approach applies a different \
             number of price changes; they run last in each run, after the operations whose data \
             must match."
                .into(),
        );
        Ok(Meta {
            date,
            scale: self.cfg.scale.name().to_owned(),
            seed: self.cfg.seed,
            runs: self.cfg.runs,
            iterations: self.cfg.iterations,
            rows,
            postgres,
            bindir: tviews_tests::pg_bin("")
                .to_string_lossy()
                .trim_end_matches('/')
                .to_owned(),
            tviews_version,
            tviews_build: self
                .cfg
                .installed
                .clone()
                .unwrap_or_else(|| installed_build(self.cfg.build_note.as_deref())),
            cpu: crate::machine::cpu_model(),
            cores: crate::machine::cores(),
            memory: crate::machine::memory(),
            settings,
            preload: self.cfg.preload,
            command: self.cfg.command.clone(),
            seconds,
            notes,
        })
    }
}

/// One statement auto_explain logged: its duration, text and plan.
#[derive(Debug, Clone, PartialEq)]
struct Logged {
    ms: f64,
    query: String,
    plan: String,
}

/// The statements auto_explain logged in `log` (`LOG:  duration: 12.3 ms  plan:`, then the
/// query text and the plan on lines indented by a tab).
fn auto_explain_entries(log: &str) -> Vec<Logged> {
    let mut out = Vec::new();
    let mut lines = log.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(ms) = line
            .split("LOG:  duration: ")
            .nth(1)
            .filter(|rest| rest.ends_with("plan:"))
            .and_then(|rest| rest.split(" ms").next())
            .and_then(|v| v.trim().parse::<f64>().ok())
        else {
            continue;
        };
        let mut query = String::new();
        let mut plan = Vec::new();
        while let Some(next) = lines.next_if(|l| l.starts_with('\t')) {
            let next = &next[1..];
            match next.strip_prefix("Query Text: ") {
                Some(q) => query = q.to_owned(),
                None => plan.push(next.to_owned()),
            }
        }
        out.push(Logged {
            ms,
            query,
            plan: plan.join("\n"),
        });
    }
    out
}

/// What the installed library looks like when this command did not install it, after what the
/// caller says it is (`note`).
fn installed_build(note: Option<&str>) -> String {
    let lib = pkglibdir().map(|d| d.join("pg_tviews.so"));
    let what = match lib.as_deref().and_then(crate::machine::has_debug_info) {
        Some(true) => "the installed library has debug info: a debug build",
        Some(false) => "the installed library has no debug info: probably a release build",
        None => "the installed library could not be read",
    };
    match note {
        Some(note) => format!("{note}; not built by this command (--no-install): {what}"),
        None => format!("not built by this command (--no-install): {what}"),
    }
}

fn pkglibdir() -> Option<PathBuf> {
    let pg_config = std::env::var_os("PG_CONFIG").unwrap_or_else(|| "pg_config".into());
    let out = std::process::Command::new(pg_config)
        .arg("--pkglibdir")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

async fn tviews_counters(client: &Client) -> Result<TviewsCounters> {
    let mut c = TviewsCounters::default();
    for r in client
        .query(
            "SELECT tview, statements, keys, inserted + updated + deleted, skipped, time_ms \
             FROM pg_tviews_session_stats()",
            &[],
        )
        .await?
    {
        let name: String = r.get(0);
        let name = name.strip_prefix("public.").unwrap_or(&name).to_owned();
        c.statements += r.get::<_, i64>(1);
        c.keys += r.get::<_, i64>(2);
        c.written += r.get::<_, i64>(3);
        c.skipped += r.get::<_, i64>(4);
        *c.flush_ms.entry(name).or_default() += r.get::<_, f64>(5);
    }
    // A TVIEW read by another TVIEW is a source too; its capture runs inside the upstream
    // TVIEW's flush, so it is counted apart (else it would be counted twice).
    let row = client
        .query_one(
            "SELECT coalesce(sum(s.time_ms) FILTER (WHERE t.relid IS NULL), 0)::float8, \
                    coalesce(sum(s.time_ms) FILTER (WHERE t.relid IS NOT NULL), 0)::float8 \
             FROM pg_tviews_session_source_stats() s \
             LEFT JOIN tviews.tview t ON t.relid::pg_catalog.regclass::pg_catalog.text = s.source",
            &[],
        )
        .await?;
    c.capture_ms = row.get(0);
    c.cascade_capture_ms = row.get(1);
    Ok(c)
}

/// Fails early with a clear message when the harness cannot run a cluster here.
pub fn preflight() -> Result<()> {
    if !tviews_tests::extension_installed() {
        bail!(tviews_tests::EXTENSION_NOT_INSTALLED);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auto_explain_from_the_server_log() {
        let log = "2026-11-26 04:55:21.384 UTC [4457] postgres@db LOG:  duration: 364.842 ms  plan:\n\
                   \tQuery Text: WITH tviews_changed_old AS (SELECT 1)\n\
                   \tHashAggregate  (cost=0.30..0.36 rows=6 width=64)\n\
                   \t  ->  Nested Loop Semi Join\n\
                   2026-11-26 04:55:21.384 UTC [4457] postgres@db CONTEXT:  SQL statement \"WITH\"\n\
                   2026-11-26 04:55:21.385 UTC [4457] postgres@db LOG:  duration: 7.5 ms  plan:\n\
                   \tQuery Text: UPDATE t SET x = 1\n\
                   \tUpdate on t\n\
                   2026-11-26 04:55:21.386 UTC [4457] postgres@db LOG:  statement: SELECT 1\n";
        let entries = auto_explain_entries(log);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].ms, 364.842);
        assert_eq!(entries[0].query, "WITH tviews_changed_old AS (SELECT 1)");
        assert_eq!(
            entries[0].plan,
            "HashAggregate  (cost=0.30..0.36 rows=6 width=64)\n  ->  Nested Loop Semi Join"
        );
        assert_eq!(entries[1].plan, "Update on t");
    }
}
