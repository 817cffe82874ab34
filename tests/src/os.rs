//! Operating-system helpers: who runs the server, running commands with useful errors, and
//! asking `/proc` whether a process is still there. Linux only, like the rest of the harness.

use std::ffi::OsStr;
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The unprivileged user that runs the server programs when we are root.
const DEFAULT_SERVER_USER: &str = "pgtviews";

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The OS user that server-side programs (initdb, pg_ctl, postgres) must run as: `None` means
/// "ourselves". PostgreSQL refuses to run as root, so root hands them to `TVIEWS_PG_USER`
/// (default `pgtviews`, created by scripts/setup.sh).
pub(crate) fn server_user() -> Option<String> {
    if !is_root() {
        return None;
    }
    let user = std::env::var("TVIEWS_PG_USER").unwrap_or_default();
    Some(if user.is_empty() {
        DEFAULT_SERVER_USER.to_owned()
    } else {
        user
    })
}

/// `program`, run as `user` through `runuser` when given, directly otherwise. The working
/// directory is `/`: the caller's (often under /root) may not be readable by `user`.
pub(crate) fn command_as(user: Option<&str>, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = match user {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    };
    cmd.current_dir("/");
    cmd
}

/// The numeric uid and gid of `user`, for handing it the directories we create.
pub(crate) fn user_ids(user: &str) -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let out = run(Command::new("id").args([flag, user]))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .with_context(|| format!("unexpected output of `id {flag} {user}`: {text:?}"))
    };
    let ids = (id("-u")?, id("-g")?);
    Ok(ids)
}

/// The command line as a shell would show it, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|part| {
            let part = part.to_string_lossy();
            let plain = !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
            if plain {
                part.into_owned()
            } else {
                format!("'{}'", part.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion with `input` on its stdin (empty stdin when `None`), capturing
/// stdout and stderr. Only failing to start it is an error: the caller judges the exit status.
pub(crate) fn output(cmd: &mut Command, input: Option<&[u8]>) -> Result<Output> {
    let line = describe(cmd);
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run `{line}`"))?;
    let writer = child.stdin.take();
    std::thread::scope(|scope| {
        if let (Some(mut stdin), Some(input)) = (writer, input) {
            // A program that stops reading early (psql after an error) closes the pipe; what it
            // printed says why, so a write error here carries no news.
            scope.spawn(move || stdin.write_all(input));
        }
        child.wait_with_output()
    })
    .with_context(|| format!("could not wait for `{line}`"))
}

/// Runs `cmd` and fails unless it exits with status 0; the error has the command line, the
/// exit status and what the command printed.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    let out = output(cmd, None)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}){}",
            describe(cmd),
            out.status,
            printed(&out)
        );
    }
    Ok(out)
}

/// What a finished command printed, labelled, for an error message ("" when nothing).
pub(crate) fn printed(out: &Output) -> String {
    let mut text = String::new();
    for (label, bytes) in [("stderr", &out.stderr), ("stdout", &out.stdout)] {
        let s = String::from_utf8_lossy(bytes);
        if !s.trim().is_empty() {
            text.push_str(&format!("\n{label}:\n{}", s.trim_end()));
        }
    }
    text
}

/// Whether process `pid` still runs. A zombie counts as gone: here PID 1 does not always reap
/// orphans, so a dead postmaster can linger in `/proc` as `Z`. Anything unexpected counts as
/// alive, the safe answer for callers that would otherwise kill or delete something.
pub(crate) fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat_fields(&stat).first(), Some(&("Z" | "X"))),
        Err(e) => e.kind() != ErrorKind::NotFound,
    }
}

/// The start time of process `pid` (clock ticks since boot): with the pid, it names a process
/// even after the pid is reused.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 of /proc/<pid>/stat; `stat_fields` starts at field 3.
    stat_fields(&stat).get(19)?.parse().ok()
}

/// The fields of a `/proc/<pid>/stat` line after the command name, which may hold spaces and
/// parentheses, so split after its last `)`.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// Whether the command line of `pid` mentions `needle` (to recognise a postmaster by its data
/// directory before killing the pid a pid file names).
pub(crate) fn cmdline_mentions(pid: u32, needle: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = needle.as_os_str().as_encoded_bytes();
    cmdline.split(|&b| b == 0).any(|arg| arg == needle)
}

pub(crate) fn kill_hard(pid: u32) -> Result<()> {
    let raw = libc::pid_t::try_from(pid).with_context(|| format!("pid {pid} out of range"))?;
    // SAFETY: kill has no memory-safety preconditions; callers checked that `pid` is the process
    // they mean (see `cmdline_mentions`).
    if unsafe { libc::kill(raw, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("kill -KILL {pid}"));
    }
    Ok(())
}

/// Polls `done` every 50 ms until it holds (true) or `timeout` passes (false).
pub(crate) fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_quotes_what_a_shell_would_split() {
        let mut cmd = Command::new("psql");
        cmd.args(["-c", "SELECT 'a b'", "-d", "host=/tmp"]);
        assert_eq!(
            describe(&cmd),
            r#"psql -c 'SELECT '\''a b'\''' -d host=/tmp"#
        );
    }

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let stat = "42 (a) b) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0";
        let fields = stat_fields(stat);
        assert_eq!(fields[0], "S");
        assert_eq!(fields[19], "777");
    }

    #[test]
    fn own_process_is_alive_and_a_reaped_child_is_not() -> Result<()> {
        assert!(process_alive(std::process::id()));
        assert!(process_start_time(std::process::id()).is_some());
        let mut child = Command::new("true").spawn()?;
        let pid = child.id();
        child.wait()?;
        assert!(!process_alive(pid));
        Ok(())
    }

    #[test]
    fn run_reports_the_command_and_its_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"]))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            err.contains("`sh -c 'echo oops >&2; exit 3'` failed"),
            "{err}"
        );
        assert!(
            err.contains("exit status: 3") && err.contains("oops"),
            "{err}"
        );
    }
}
