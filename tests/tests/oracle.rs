//! The randomized differential oracle (see `tviews_tests::oracle`).
//!
//! - `TVIEWS_ORACLE_SEED`: the first seed (default: fixed, so CI is
//!   reproducible; `random` picks one and prints it);
//! - `TVIEWS_ORACLE_TXNS`: transactions per mode (default 2000 single-session,
//!   half that concurrent);
//! - `TVIEWS_ORACLE_SECONDS`: keep going with new seeds for this long;
//! - `TVIEWS_ORACLE_RESTARTS`: server restarts with a transaction prepared,
//!   per schema, in `oracle_prepared_across_restarts` (default 6).
//!
//! Each seed makes a new random schema; a failure prints the seed and, for
//! single-session runs, a minimal psql script that reproduces it.

use std::time::{Duration, Instant};

use tviews_tests::oracle::{Report, run_across_restarts, run_concurrent, run_single};
use tviews_tests::support::run;
use tviews_tests::{Cluster, ClusterOptions};

const TXNS_PER_SCHEMA: usize = 100;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn first_seed(default: u64) -> u64 {
    match std::env::var("TVIEWS_ORACLE_SEED").as_deref() {
        Ok("random") => {
            let s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            eprintln!("oracle: TVIEWS_ORACLE_SEED=random chose {s}");
            s
        }
        _ => env_u64("TVIEWS_ORACLE_SEED").unwrap_or(default),
    }
}

fn summary(mode: &str, first: u64, seeds: u64, r: &Report) {
    eprintln!(
        "oracle {mode}: seeds {first}..{} ({seeds} schemas, {} TVIEWs, refused by SQLSTATE {:?}), {} committed, {} rolled back, failed by SQLSTATE {:?}, {} exactness checks, 0 mismatches",
        first + seeds,
        r.tviews,
        r.refused,
        r.committed,
        r.rolled_back,
        r.failed,
        r.checks
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oracle_single_session() {
    run(|| async {
        let first = first_seed(1000);
        let txns = env_u64("TVIEWS_ORACLE_TXNS").unwrap_or(2000) as usize;
        let deadline =
            env_u64("TVIEWS_ORACLE_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
        let mut total = Report::default();
        let mut seed = first;
        loop {
            let r = run_single("oracle", seed, TXNS_PER_SCHEMA).await?;
            total.add(r);
            seed += 1;
            let done_txns = (seed - first) as usize * TXNS_PER_SCHEMA >= txns;
            match deadline {
                Some(d) if Instant::now() < d => continue,
                Some(_) => break,
                None if done_txns => break,
                None => continue,
            }
        }
        summary("single-session", first, seed - first, &total);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn oracle_concurrent() {
    run(|| async {
        let first = first_seed(5000);
        let txns = env_u64("TVIEWS_ORACLE_TXNS").unwrap_or(2000) as usize / 2;
        let sessions = env_u64("TVIEWS_ORACLE_SESSIONS").unwrap_or(3) as usize;
        let deadline =
            env_u64("TVIEWS_ORACLE_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
        let mut total = Report::default();
        let mut seed = first;
        loop {
            let r = run_concurrent("oracle_conc", seed, TXNS_PER_SCHEMA * 2, sessions).await?;
            total.add(r);
            seed += 1;
            let done_txns = (seed - first) as usize * TXNS_PER_SCHEMA * 2 >= txns;
            match deadline {
                Some(d) if Instant::now() < d => continue,
                Some(_) => break,
                None if done_txns => break,
                None => continue,
            }
        }
        summary(
            &format!("concurrent ({sessions} sessions)"),
            first,
            seed - first,
            &total,
        );
        Ok(())
    })
    .await
}

/// Two-phase commit across restarts: prepared transactions survive fast
/// and immediate (crash) restarts and are committed or rolled back by a new
/// session; `TVIEWS_ORACLE_RESTARTS` restarts per schema (default 6).
#[tokio::test(flavor = "multi_thread")]
async fn oracle_prepared_across_restarts() {
    run(|| async {
        let first = first_seed(3000);
        let restarts = env_u64("TVIEWS_ORACLE_RESTARTS").unwrap_or(6) as usize;
        let deadline =
            env_u64("TVIEWS_ORACLE_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
        let mut cluster = Cluster::start(ClusterOptions {
            name: "oracle_restarts".into(),
            ..ClusterOptions::default()
        })?;
        let mut total = Report::default();
        let mut seed = first;
        loop {
            let r = run_across_restarts(&mut cluster, seed, TXNS_PER_SCHEMA, restarts).await?;
            total.add(r);
            seed += 1;
            match deadline {
                Some(d) if Instant::now() < d => continue,
                _ => break,
            }
        }
        summary("prepared across restarts", first, seed - first, &total);
        Ok(())
    })
    .await
}
