//! The concurrent oracle (see [`crate::oracle`]) through a real PgBouncer in transaction
//! pooling: many writer clients multiplexed on a few server connections, so that consecutive
//! transactions on one backend come from different clients. Whatever a transaction leaves in
//! its backend (queued keys, held-lock bookkeeping, a `SET LOCAL`) would then reach another
//! client's transaction; the checker, on a direct connection, requires every TVIEW to equal its
//! definition after every commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::oracle::{Report, gen_schema, gen_txn, run_txn_with, setup};
use crate::pgbouncer::{Pgbouncer, PoolMode, server_connections};
use crate::support::{Db, assert_exact_retrying};

/// Clients PgBouncer accepts beyond the writers: the monitor's admin connection and
/// reconnections after a lost connection.
const SPARE_CLIENTS: u32 = 10;
/// How often the monitor samples PgBouncer's server connections.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// A run that takes longer than this is stuck (a pool deadlock, a lock wait nobody ends).
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// One run of `txns` transactions (divided evenly among `clients` writer clients) on the schema
/// of `seed`, the writers connected through PgBouncer in transaction pooling with
/// `pool_size` server connections; after each of its transactions a writer has its own direct
/// session check that every TVIEW is exact. Fails on a mismatch, when PgBouncer ever opened
/// more than `pool_size` server connections to the database, or after [`RUN_TIMEOUT`].
///
/// Transactions run through [`run_txn_with`], which uses `batch_execute` and `copy_in` (inside
/// `BEGIN`, so its named statement stays on one server connection). A two-phase transaction is
/// prepared through PgBouncer and finished (`COMMIT PREPARED`) on the writer's direct session:
/// once prepared, it holds its locks without holding a server connection, so finishing it
/// through PgBouncer could wait for a server connection held by transactions that wait for its
/// locks, a deadlock only `query_wait_timeout` ends.
pub async fn run_pooled(
    prefix: &str,
    seed: u64,
    txns: usize,
    clients: usize,
    pool_size: u32,
) -> Result<Report> {
    let mut rng = StdRng::seed_from_u64(seed);
    let schema = gen_schema(&mut rng);
    let db = Db::fresh(prefix).await?;
    let mut total = Report::default();
    setup(&db.client, &schema, &mut rng, &mut total).await?;
    let max_clients = u32::try_from(clients).context("too many clients")? + SPARE_CLIENTS;
    let bouncer = Arc::new(Pgbouncer::start(
        db.cluster,
        PoolMode::Transaction,
        pool_size,
        max_clients,
    )?);

    // The monitor samples how many server connections PgBouncer holds to the database.
    let done = Arc::new(AtomicBool::new(false));
    let most_servers = Arc::new(AtomicUsize::new(0));
    let monitor = {
        let (done, most) = (done.clone(), most_servers.clone());
        let dbname = db.name.clone();
        let admin = bouncer.admin().await?;
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let n = server_connections(&admin, &dbname).await?;
                most.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
            Ok::<(), anyhow::Error>(())
        })
    };

    let mut handles = Vec::new();
    for c in 0..clients {
        let mut client = bouncer.connect(&db.name).await?;
        let checker = db.session().await?;
        let bouncer = bouncer.clone();
        let dbname = db.name.clone();
        let schema = schema.clone();
        // Other streams than run_concurrent's for the same seed: a different workload.
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(37).wrapping_add(c as u64 + 1));
        let per = txns / clients;
        handles.push(tokio::spawn(async move {
            let mut report = Report::default();
            let mut next_id = 100_000 * (c as i64 + 1);
            for i in 0..per {
                let txn = gen_txn(&mut rng, &schema, &mut next_id);
                let outcome = run_txn_with(&client, &txn, Some(&checker), false)
                    .await
                    .with_context(|| {
                        format!(
                            "seed {seed}, client {c}, transaction {i}:\n{}",
                            txn.to_sql()
                        )
                    })?;
                if report.record(outcome) {
                    // Rare (a COPY the server failed early, see run_txn_with); what
                    // PgBouncer saw tells whether it had a part in it.
                    eprintln!(
                        "oracle pooled: seed {seed}, client {c}, transaction {i}: connection lost; PgBouncer's log ends with:\n{}",
                        bouncer.log_tail(12)
                    );
                    client = bouncer.connect(&dbname).await?;
                }
                assert_exact_retrying(&checker).await.with_context(|| {
                    format!(
                        "seed {seed}, client {c}, after transaction {i}:\n{}",
                        txn.to_sql()
                    )
                })?;
                report.checks += 1;
            }
            Ok::<Report, anyhow::Error>(report)
        }));
    }
    let writers = async {
        for h in handles {
            total.add(h.await.context("writer task")??);
        }
        Ok::<(), anyhow::Error>(())
    };
    let finished = tokio::time::timeout(RUN_TIMEOUT, writers).await;
    done.store(true, Ordering::Relaxed);
    let log = |what: &str| {
        format!(
            "seed {seed}: {what}\n---- PgBouncer log (last lines) ----\n{}",
            bouncer.log_tail(30)
        )
    };
    match finished {
        Err(_) => bail!(log(&format!(
            "the writers did not finish within {RUN_TIMEOUT:?}"
        ))),
        Ok(Err(e)) => return Err(e.context(log("a writer failed"))),
        Ok(Ok(())) => {}
    }
    monitor
        .await
        .context("monitor task")?
        .context("sampling PgBouncer's server connections")?;
    assert_exact_retrying(&db.client)
        .await
        .with_context(|| format!("seed {seed}: after all clients"))?;
    let most = most_servers.load(Ordering::Relaxed);
    if most > pool_size as usize {
        bail!(
            "seed {seed}: PgBouncer held {most} server connections to {}, more than its pool of {pool_size}",
            db.name
        );
    }
    eprintln!(
        "oracle pooled: seed {seed}: {clients} clients on at most {most} server connections (pool {pool_size})"
    );
    Ok(total)
}
