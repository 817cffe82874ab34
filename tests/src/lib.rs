//! The scratch-cluster harness of pg_tviews' end-to-end tests and benchmarks.
//!
//! [`Cluster::start`] runs `initdb` into a fresh directory under the work root
//! (`/var/tmp/pg_tviews`, or `TVIEWS_WORK_ROOT`), writes the harness's settings into
//! `postgresql.conf` and starts the server on a free port with a private unix socket directory.
//! When the tests run as root, the server programs run as an unprivileged user (`pgtviews`, or
//! `TVIEWS_PG_USER`), because PostgreSQL refuses to run as root; clients (`psql`, tokio-postgres)
//! connect as the `postgres` superuser with trust authentication.
//!
//! No server outlives its test process: dropping a [`Cluster`] stops the server (fast, then
//! immediate, then SIGKILL) even during a panic, and then prints the last lines of the server log
//! if the thread is panicking; a watchdog process stops the server if this process ends without
//! dropping it; and every `Cluster::start` sweeps away the directories (and servers) of test
//! processes that are gone. `TVIEWS_KEEP_CLUSTER=1` keeps the directories for inspection.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let cluster = tviews_tests::Cluster::start_default();
//! cluster.create_database("app")?;
//! cluster.psql("app", "CREATE TABLE t (id int PRIMARY KEY)")?;
//! let client = cluster.connect("app").await?;
//! let row = client.query_one("SELECT count(*) FROM t", &[]).await?;
//! assert_eq!(row.get::<_, i64>(0), 0);
//! # Ok(())
//! # }
//! ```
//!
//! Linux only (it reads `/proc` and uses `runuser`).

mod cluster;
pub mod oracle;
pub mod oracle_pooled;
mod os;
mod pg;
pub mod pgbouncer;
mod server;
pub mod standby;
pub mod support;
mod sweep;

pub use cluster::{Cluster, ClusterOptions};
pub use pg::{EXTENSION_NOT_INSTALLED, extension_installed, pg_bin};
pub use server::StopMode;
