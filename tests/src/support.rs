//! Helpers shared by the end-to-end tests: one cluster per test binary,
//! a fresh database per test, and the exactness check of every TVIEW.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};
use tokio_postgres::Client;

use crate::{Cluster, ClusterOptions};

static SHARED: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(1);

/// The cluster shared by the tests of this binary (started on first use;
/// the harness's watchdog stops it when the process ends).
pub fn shared_cluster() -> &'static Cluster {
    SHARED.get_or_init(|| {
        Cluster::start(ClusterOptions {
            name: "e2e".into(),
            ..ClusterOptions::default()
        })
        .unwrap_or_else(|e| panic!("could not start the test cluster: {e:#}"))
    })
}

/// A database of its own for one test, with the extension created.
pub struct Db {
    pub cluster: &'static Cluster,
    pub name: String,
    pub client: Client,
}

impl Db {
    pub async fn fresh(prefix: &str) -> Result<Db> {
        let cluster = shared_cluster();
        let name = format!("{prefix}_{}", NEXT_DB.fetch_add(1, Ordering::Relaxed));
        cluster.create_database_with_extension(&name)?;
        let client = cluster.connect(&name).await?;
        Ok(Db {
            cluster,
            name,
            client,
        })
    }

    /// Another session on the same database.
    pub async fn session(&self) -> Result<Client> {
        self.cluster.connect(&self.name).await
    }

    /// Fails with the differing rows unless every TVIEW equals its definition.
    pub async fn assert_exact(&self) -> Result<()> {
        assert_exact(&self.client).await
    }

    /// Runs a test body; on failure prints the server log tail before
    /// failing, since the shared cluster is never dropped by a panic.
    pub fn log_tail(&self) -> String {
        self.cluster.log_tail(60)
    }
}

/// Every TVIEW of the database equals its definition (`EXCEPT ALL` both
/// ways, on each row's text, under the TVIEW's recorded settings).
pub async fn assert_exact(client: &Client) -> Result<()> {
    let rows = client
        .query(
            "SELECT relid::text, pg_tviews_diff(relid::text) FROM tviews.tview ORDER BY relid::oid",
            &[],
        )
        .await
        .context("checking TVIEWs")?;
    let mut bad = Vec::new();
    for r in rows {
        let name: String = r.get(0);
        let diff: i64 = r.get(1);
        if diff != 0 {
            let view: String = client
                .query_one(
                    "SELECT defview::text FROM tviews.tview WHERE relid = $1::text::regclass",
                    &[&name],
                )
                .await?
                .get(0);
            let detail = client
                .query(
                    &format!(
                        "(SELECT 'stored   ' || ROW(t.*)::text FROM {name} t EXCEPT ALL SELECT 'stored   ' || ROW(v.*)::text FROM {view} v) \
                         UNION ALL (SELECT 'expected ' || ROW(v.*)::text FROM {view} v EXCEPT ALL SELECT 'expected ' || ROW(t.*)::text FROM {name} t) LIMIT 20"
                    ),
                    &[],
                )
                .await?;
            let lines: Vec<String> = detail.iter().map(|r| r.get::<_, String>(0)).collect();
            bad.push(format!(
                "{name}: {diff} differing rows\n  {}",
                lines.join("\n  ")
            ));
        }
    }
    if !bad.is_empty() {
        bail!("TVIEWs differ from their definitions:\n{}", bad.join("\n"));
    }
    Ok(())
}

/// [`assert_exact`] for a checker running beside concurrent writers: its
/// reads can be chosen as a deadlock victim (say, against a TRUNCATE that
/// takes its locks in another order), which says nothing about the
/// TVIEWs; it then tries again.
pub async fn assert_exact_retrying(client: &Client) -> Result<()> {
    for _ in 0..20 {
        match assert_exact(client).await {
            Err(e)
                if e.chain().any(|c| {
                    c.downcast_ref::<tokio_postgres::Error>()
                        .and_then(sqlstate)
                        .is_some_and(|s| s == "40P01" || s == "40001")
                }) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
    assert_exact(client).await
}

/// Runs `f`; if it fails, prints the shared cluster's log tail and panics
/// with the error chain.
pub async fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    if let Err(e) = f().await {
        let tail = SHARED.get().map(|c| c.log_tail(80)).unwrap_or_default();
        panic!("{e:?}\n---- PostgreSQL log (last lines) ----\n{tail}");
    }
}

/// The SQLSTATE of a failed statement, if the server raised one.
pub fn sqlstate(err: &tokio_postgres::Error) -> Option<String> {
    err.as_db_error().map(|d| d.code().code().to_string())
}
