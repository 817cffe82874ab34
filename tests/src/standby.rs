//! A streaming physical standby of a running [`Cluster`], for replica tests.
//!
//! [`Standby::start`] takes a base backup of the primary with `pg_basebackup -R` (which writes
//! `standby.signal` and `primary_conninfo`), over the primary's unix socket or loopback TCP, into
//! a cluster directory of its own under the same work root, and starts it in hot-standby mode on
//! a free port with a private socket directory. The base backup runs as the server user, like
//! `initdb`, so the standby is an ordinary harness [`Cluster`] from then on: it derefs to one
//! (`psql`, `connect`, `log_tail`, ...), is stopped and removed on drop and prints its log tail
//! on panic. Its physical replication slot on the primary (created by the base backup, so that
//! the primary keeps every WAL segment the standby still needs) is dropped after the standby
//! stops, when the primary is still up.
//!
//! Streaming needs nothing from the primary beyond the harness defaults: `wal_level = replica`,
//! `max_wal_senders = 10` and `max_replication_slots = 10` are PostgreSQL's defaults, and
//! `initdb --auth=trust` writes `replication` lines for local and loopback connections into
//! `pg_hba.conf`.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use tviews_tests::standby::{Standby, StandbyOptions};
//! let primary = tviews_tests::Cluster::start_default();
//! primary.create_database("app")?;
//! let standby = Standby::start(&primary, StandbyOptions::default())?;
//! primary.psql("app", "CREATE TABLE t AS SELECT 1 AS x")?;
//! standby.wait_for_replay(&primary)?;
//! assert_eq!(standby.psql("app", "SELECT x FROM t")?, "1");
//! # Ok(())
//! # }
//! ```

use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::server::{self, PG_CTL_TIMEOUT_SECS};
use crate::{Cluster, ClusterOptions, StopMode, os, pg};

/// How long [`Standby::wait_for_replay`] waits by default: generous, for a loaded machine.
pub const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to set up a [`Standby`]. Start from `StandbyOptions::default()` and change fields.
#[derive(Debug, Clone)]
pub struct StandbyOptions {
    /// `shared_preload_libraries = 'pg_tviews'` on the standby (default false). The primary's
    /// setting is overridden either way: the base backup copies its `postgresql.conf`.
    pub preload: bool,
    /// Extra `postgresql.conf` settings, written last (see [`ClusterOptions::settings`]).
    pub settings: Vec<(String, String)>,
    /// Stream from the primary over `127.0.0.1:<port>` instead of its unix socket; the primary
    /// must have been started with `tcp: true` (default false).
    pub via_tcp: bool,
    /// Also listen on 127.0.0.1 (default false).
    pub tcp: bool,
    /// Label used in the directory name and in messages (default "standby").
    pub name: String,
}

impl Default for StandbyOptions {
    fn default() -> Self {
        StandbyOptions {
            preload: false,
            settings: Vec::new(),
            via_tcp: false,
            tcp: false,
            name: "standby".to_owned(),
        }
    }
}

/// A running hot standby, streaming from its primary. Derefs to its [`Cluster`].
#[derive(Debug)]
pub struct Standby {
    cluster: Cluster,
    /// The physical replication slot on the primary this standby streams from.
    slot: String,
    /// How to reach the primary, to drop the slot after the standby stops.
    primary_conninfo: String,
}

impl Standby {
    /// Takes a base backup of `primary` (running) and starts it as a hot standby; waits until
    /// it accepts connections. The backup is consistent as of its end: everything the primary
    /// committed before this call is readable on the standby as soon as it returns.
    pub fn start(primary: &Cluster, opts: StandbyOptions) -> Result<Standby> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let slot = format!(
            "tviews_standby_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let source = if opts.via_tcp {
            format!(
                "host=127.0.0.1 port={} user={}",
                primary.port(),
                primary.superuser()
            )
        } else {
            primary.conninfo("postgres")
        };
        if opts.preload && !pg::extension_installed() {
            bail!("cannot preload pg_tviews: {}", pg::EXTENSION_NOT_INSTALLED);
        }
        let mut settings = vec![("hot_standby".to_owned(), "on".to_owned())];
        if !opts.preload {
            // The base backup carries the primary's shared_preload_libraries.
            settings.push(("shared_preload_libraries".to_owned(), String::new()));
        }
        settings.extend(opts.settings.iter().cloned());
        let cluster_opts = ClusterOptions {
            preload: opts.preload,
            settings,
            tcp: opts.tcp,
            name: opts.name.clone(),
        };
        let populate = |data_dir: &Path, user: Option<&str>| -> Result<()> {
            base_backup(&source, &slot, data_dir, user)
        };
        let cluster = Cluster::start_with(cluster_opts, Some(&populate))
            // A standby that did not start (it is stopped by now) leaves no slot behind.
            .inspect_err(|_| drop_slot(&primary.conninfo("postgres"), &slot))
            .with_context(|| {
                format!(
                    "could not start standby '{}' of the primary on port {}",
                    opts.name,
                    primary.port()
                )
            })?;
        Ok(Standby {
            cluster,
            slot,
            primary_conninfo: primary.conninfo("postgres"),
        })
    }

    /// The standby as a harness cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The physical replication slot on the primary this standby streams from.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// Promotes the standby (`pg_ctl promote -w`): returns once it has left recovery and
    /// accepts writes.
    pub fn promote(&self) -> Result<()> {
        let mut cmd = server::pg_ctl(os::server_user().as_deref(), self.cluster.data_dir());
        cmd.args(["promote", "-w", "-t", &PG_CTL_TIMEOUT_SECS.to_string()]);
        os::run(&mut cmd).with_context(|| {
            format!(
                "could not promote the standby on port {}; last lines of its log:\n{}",
                self.cluster.port(),
                self.cluster.log_tail(30)
            )
        })?;
        Ok(())
    }

    /// Waits (up to [`REPLAY_TIMEOUT`]) until the standby has replayed everything the primary
    /// had written when this was called: `pg_last_wal_replay_lsn()` on the standby reaches
    /// `pg_current_wal_lsn()` of the primary. Returns that LSN.
    pub fn wait_for_replay(&self, primary: &Cluster) -> Result<String> {
        self.wait_for_replay_within(primary, REPLAY_TIMEOUT)
    }

    /// [`Standby::wait_for_replay`] with another timeout. Fails with both positions, the
    /// standby's WAL receiver status and the tail of its log.
    pub fn wait_for_replay_within(&self, primary: &Cluster, timeout: Duration) -> Result<String> {
        let target = primary
            .psql("postgres", "SELECT pg_current_wal_lsn()")
            .context("reading the primary's WAL position")?;
        let check = format!(
            "SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn, pg_last_wal_replay_lsn()"
        );
        let deadline = Instant::now() + timeout;
        loop {
            let out = self
                .cluster
                .psql("postgres", &check)
                .context("reading the standby's replay position")?;
            let (caught_up, replayed) = out.split_once('|').unwrap_or((out.as_str(), ""));
            if caught_up == "t" {
                return Ok(target);
            }
            if Instant::now() >= deadline {
                let receiver = self
                    .cluster
                    .psql(
                        "postgres",
                        "SELECT status || ' ' || coalesce(flushed_lsn::text, '-') FROM pg_stat_wal_receiver",
                    )
                    .unwrap_or_else(|e| format!("(cannot read pg_stat_wal_receiver: {e:#})"));
                bail!(
                    "standby on port {} did not replay up to the primary's {target} within {timeout:?}: \
                     replayed {replayed:?}, WAL receiver: {receiver:?}; last lines of its log:\n{}",
                    self.cluster.port(),
                    self.cluster.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Deref for Standby {
    type Target = Cluster;

    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        // The slot can only go once no walsender uses it, i.e. after the standby stopped; the
        // cluster's own drop (after this) then finds it stopped and cleans up as usual.
        if let Err(e) = self.cluster.stop(StopMode::Fast) {
            eprintln!("pg_tviews harness: {e:#}");
            return;
        }
        drop_slot(&self.primary_conninfo, &self.slot);
    }
}

/// `pg_basebackup -R` from `source` into `data_dir` as `user`, creating the slot.
fn base_backup(source: &str, slot: &str, data_dir: &Path, user: Option<&str>) -> Result<()> {
    let mut cmd = os::command_as(user, pg::pg_bin("pg_basebackup"));
    cmd.arg("--dbname")
        .arg(source)
        .arg("--pgdata")
        .arg(data_dir)
        .args([
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-sync",
            "--create-slot",
            "--slot",
            slot,
            "--label",
            "pg_tviews standby",
        ]);
    os::run(&mut cmd).context("base backup of the primary failed")?;
    Ok(())
}

/// Best effort: drops the standby's slot on the primary if the primary is still up. The
/// walsender may take a moment to let go of the slot after the standby stopped.
fn drop_slot(primary_conninfo: &str, slot: &str) {
    // One row per slot of that name: "active" while a walsender holds it, else it is dropped.
    let sql = format!(
        "SELECT CASE WHEN active THEN 'active' ELSE pg_drop_replication_slot(slot_name)::text || 'dropped' END \
         FROM pg_replication_slots WHERE slot_name = '{slot}'"
    );
    let mut last = String::new();
    let done = os::wait_until(Duration::from_secs(10), || {
        let mut cmd = std::process::Command::new(pg::pg_bin("psql"));
        cmd.args(["-X", "-q", "-At", "-c", &sql, "-d"])
            .arg(format!("{primary_conninfo} connect_timeout=5"));
        match os::output(&mut cmd, None) {
            Ok(out) if out.status.success() => {
                last = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                last != "active"
            }
            // The connection failed: the primary is down, and its slots do not matter any more.
            Ok(out) if out.status.code() == Some(2) => true,
            Ok(out) => {
                last = os::printed(&out);
                false
            }
            Err(e) => {
                last = format!("{e:#}");
                false
            }
        }
    });
    if !done {
        eprintln!(
            "pg_tviews harness: could not drop replication slot {slot} on the primary: {last}"
        );
    }
}
