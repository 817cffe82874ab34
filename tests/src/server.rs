//! `pg_ctl` and the postmaster of a data directory: the part shared by a live [`crate::Cluster`]
//! and the sweep that cleans up after dead test processes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::{os, pg};

/// How to stop a server (`pg_ctl stop -m ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Wait for every client to disconnect: hangs while a test still holds a connection.
    Smart,
    /// Roll back open transactions, disconnect clients, checkpoint, exit.
    Fast,
    /// Exit at once, no checkpoint: the next start runs crash recovery.
    Immediate,
}

impl StopMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// How long `pg_ctl` may wait for a start or a stop.
pub(crate) const PG_CTL_TIMEOUT_SECS: u32 = 60;

/// `pg_ctl -D <data_dir>`, run as the server user.
pub(crate) fn pg_ctl(user: Option<&str>, data_dir: &Path) -> Command {
    let mut cmd = os::command_as(user, pg::pg_bin("pg_ctl"));
    cmd.arg("-D").arg(data_dir);
    cmd
}

/// `pg_ctl stop -m <mode>` as a command, waiting at most `timeout_secs`.
pub(crate) fn stop_command(
    user: Option<&str>,
    data_dir: &Path,
    mode: StopMode,
    timeout_secs: u32,
) -> Command {
    let mut cmd = pg_ctl(user, data_dir);
    cmd.args([
        "stop",
        "-m",
        mode.as_str(),
        "-w",
        "-t",
        &timeout_secs.to_string(),
    ]);
    cmd
}

/// The pid of the postmaster running on `data_dir`, from its `postmaster.pid`, if that process
/// is alive and really is a postgres started on `data_dir` (a stale pid file may name a pid that
/// now belongs to something else).
pub(crate) fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    (os::process_alive(pid) && os::cmdline_mentions(pid, data_dir)).then_some(pid)
}

/// Stops the server on `data_dir` if one runs, whatever it takes: `pg_ctl stop` in `first`
/// mode, then in immediate mode, then SIGKILL to the postmaster. Returns once the postmaster
/// process is gone, or fails saying what was tried.
pub(crate) fn shut_down(user: Option<&str>, data_dir: &Path, first: StopMode) -> Result<()> {
    let Some(pid) = postmaster_pid(data_dir) else {
        return Ok(());
    };
    let gone = || os::wait_until(Duration::from_secs(10), || !os::process_alive(pid));
    let mut failures = Vec::new();
    let modes: &[StopMode] = match first {
        StopMode::Immediate => &[StopMode::Immediate],
        _ => &[first, StopMode::Immediate],
    };
    for &mode in modes {
        // Fast gets a short timeout: a server that cannot stop fast in 30 s is stuck.
        let timeout = if mode == StopMode::Immediate {
            PG_CTL_TIMEOUT_SECS
        } else {
            30
        };
        match os::run(&mut stop_command(user, data_dir, mode, timeout)) {
            Ok(_) if gone() => return Ok(()),
            Ok(_) => failures.push(format!(
                "postmaster {pid} still alive after a {} stop",
                mode.as_str()
            )),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    // Check again right before the kill: never signal a process that is not that postmaster.
    if !(os::process_alive(pid) && os::cmdline_mentions(pid, data_dir)) {
        return Ok(());
    }
    match os::kill_hard(pid) {
        Ok(()) if gone() => {
            eprintln!(
                "pg_tviews harness: killed postmaster {pid} of {}",
                data_dir.display()
            );
            return Ok(());
        }
        Ok(()) => failures.push(format!("postmaster {pid} survived SIGKILL")),
        Err(e) => failures.push(format!("{e:#}")),
    }
    bail!(
        "could not stop the server on {} (postmaster pid {pid}):\n{}",
        data_dir.display(),
        failures.join("\n")
    )
}
