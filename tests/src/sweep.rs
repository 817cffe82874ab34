//! Cleaning up after test processes that died without dropping their clusters (killed, or
//! `process::exit` with a cluster still alive). Every cluster directory records its owner; a
//! directory whose owner is gone has its server stopped and is removed by the next
//! `Cluster::start`. A directory whose owner may still be alive is never touched.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::os;
use crate::server::{self, StopMode};

/// Prefix of every cluster directory under the work root.
pub(crate) const DIR_PREFIX: &str = "harness-";
/// File in a cluster directory naming the test process that owns it: `<pid> <start time>`.
pub(crate) const OWNER_FILE: &str = "owner.pid";
/// File marking a directory kept on purpose (`TVIEWS_KEEP_CLUSTER=1`): never swept.
pub(crate) const KEEP_FILE: &str = "kept";

/// Records the current process as the owner of `dir`.
pub(crate) fn write_owner(dir: &Path) -> Result<()> {
    let pid = std::process::id();
    let start = os::process_start_time(pid)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let path = dir.join(OWNER_FILE);
    fs::write(&path, format!("{pid} {start}\n"))
        .with_context(|| format!("writing {}", path.display()))
}

/// Whether the process that owns `dir` may still be alive. The owner comes from `owner.pid`,
/// or, if that is not written yet, from the pid in the directory name
/// (`harness-<name>-<pid>-<n>`); when neither can be read the answer is yes.
fn owner_may_be_alive(dir: &Path) -> bool {
    let recorded = fs::read_to_string(dir.join(OWNER_FILE)).unwrap_or_default();
    let mut fields = recorded.split_whitespace();
    let pid = fields
        .next()
        .and_then(|p| p.parse::<u32>().ok())
        .or_else(|| {
            let name = dir.file_name()?.to_str()?;
            name.rsplit('-').nth(1)?.parse().ok()
        });
    let Some(pid) = pid else { return true };
    if !os::process_alive(pid) {
        return false;
    }
    // Alive, but maybe a new process that reused the pid: compare start times when recorded.
    match (
        fields.next().and_then(|t| t.parse::<u64>().ok()),
        os::process_start_time(pid),
    ) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}

/// Stops the servers and removes the directories of dead owners under `root`; returns the
/// directories removed. Problems are reported on stderr, never returned: a failed sweep must
/// not fail the test that triggered it.
pub(crate) fn sweep(root: &Path, user: Option<&str>) -> Vec<std::path::PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_candidate = entry.file_name().to_string_lossy().starts_with(DIR_PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_dir())
            && !dir.join(KEEP_FILE).exists();
        if !is_candidate || owner_may_be_alive(&dir) {
            continue;
        }
        if let Err(e) = server::shut_down(user, &dir.join("data"), StopMode::Immediate) {
            eprintln!("pg_tviews harness: leaving stale {}: {e:#}", dir.display());
            continue;
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => removed.push(dir),
            // Another test process sweeping at the same time got there first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "pg_tviews harness: cannot remove stale {}: {e}",
                dir.display()
            ),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn dead_pid() -> Result<u32> {
        let mut child = Command::new("true").spawn()?;
        child.wait()?;
        Ok(child.id())
    }

    #[test]
    fn sweeps_only_dead_owners_directories() -> Result<()> {
        let root = tempfile::tempdir()?;
        let me = std::process::id();
        let dead = dead_pid()?;
        let make = |name: &str, owner: Option<String>| -> Result<std::path::PathBuf> {
            let dir = root.path().join(name);
            fs::create_dir_all(dir.join("data"))?;
            if let Some(owner) = owner {
                fs::write(dir.join(OWNER_FILE), owner)?;
            }
            Ok(dir)
        };
        let dead_recorded = make("harness-a-1-0", Some(format!("{dead} 1\n")))?;
        let dead_by_name = make(&format!("harness-b-c-{dead}-3"), None)?;
        let alive = make("harness-d-1-0", Some(format!("{me}\n")))?;
        let alive_by_name = make(&format!("harness-e-{me}-0"), None)?;
        let reused_pid = make("harness-f-1-0", Some(format!("{me} 1\n")))?;
        let kept = make(&format!("harness-g-{dead}-0"), None)?;
        fs::write(kept.join(KEEP_FILE), "")?;
        let unrelated = make(&format!("dev-{dead}-0"), None)?;
        let unreadable_owner = make("harness-h-x-y", None)?;

        let mut removed = sweep(root.path(), None);
        removed.sort();
        let mut expected = vec![dead_recorded, dead_by_name, reused_pid];
        expected.sort();
        assert_eq!(removed, expected);
        for dir in [alive, alive_by_name, kept, unrelated, unreadable_owner] {
            assert!(dir.exists(), "{} was swept", dir.display());
        }
        Ok(())
    }
}
