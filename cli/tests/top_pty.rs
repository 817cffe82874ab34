//! End to end: `tviews top` in a real pseudo-terminal. A scratch cluster (pg_tviews
//! preloaded) holds the demo read model; `tviews workload` writes to it, with prepared
//! transactions; the console runs inside a detached tmux session of a fixed size, on a
//! private tmux socket. The test waits until the screen shows live numbers (the three
//! TVIEWs, a refresh rate above zero, a prepared transaction), presses `q`, and checks
//! that the console exited 0 and gave the terminal back: the alternate screen left, the
//! cursor shown, the line discipline cooked again (`stty -a` run in the same terminal
//! right after).
//!
//! Needs tmux (scripts/setup.sh installs it); skipped without it or without the
//! extension. `--nocapture` prints the live screen.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::BIN;
use tviews_tests::{Cluster, ClusterOptions};

const DEMO: &str = include_str!("../../demo/schema.sql");
const DB: &str = "shop";
const WIDTH: u16 = 120;
const HEIGHT: u16 = 40;
/// How long the screen may take to show live numbers (the first rates need two
/// snapshots; a debug build on a busy 2-core machine is slow to start).
const LIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `q` may take to end the console.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);
/// What the shell in the pane prints when the console has exited, before `stty -a`...
const EXITED: &str = "[tviews top exited with ";
/// ...and after it.
const DONE: &str = "[terminal settings above]";

/// The pane runs this: the console with a clean environment (only `HOME`, `PATH`,
/// `TERM`, `LANG`: no developer's PG* variables), then its exit code and the terminal's
/// settings, then it stays open so the screen can be read.
const PANE_SCRIPT: &str = r#"home=$1; shift
env -i HOME="$home" PATH="$PATH" TERM="$TERM" LANG=C.UTF-8 "$@"
code=$?
printf '\n%s%s]\n' '[tviews top exited with ' "$code"
stty -a
echo '[terminal settings above]'
exec sleep 3600
"#;

/// A tmux server of our own (`-S` socket in a temporary directory), killed on drop.
struct Tmux {
    dir: tempfile::TempDir,
    session: &'static str,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// A detached session of `WIDTH`×`HEIGHT`, no status line, running `argv`.
    fn start(argv: &[String]) -> Tmux {
        let dir = tempfile::tempdir().expect("a directory for the tmux socket");
        let conf = dir.path().join("tmux.conf");
        std::fs::write(&conf, "set -g status off\nset -g remain-on-exit on\n")
            .expect("writing tmux.conf");
        let tmux = Tmux {
            dir,
            session: "top",
        };
        let (w, h) = (WIDTH.to_string(), HEIGHT.to_string());
        let mut args: Vec<&str> = vec!["-f", conf.to_str().expect("UTF-8 path")];
        args.extend(["new-session", "-d", "-s", tmux.session, "-x", &w, "-y", &h]);
        args.extend(argv.iter().map(String::as_str));
        tmux.run(&args);
        tmux
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("tmux");
        // -u: UTF-8 out whatever the locale, so the console's box drawing survives.
        cmd.arg("-u").arg("-S").arg(self.socket()).args(args);
        cmd.env("LANG", "C.UTF-8");
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        let out = match self.command(args).output() {
            Ok(out) => out,
            Err(e) => panic!("tmux {args:?}: {e}"),
        };
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The visible screen, as text.
    fn capture(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", self.session])
    }

    /// A tmux format about the pane, e.g. `#{alternate_on}`.
    fn format(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", self.session, format])
            .trim()
            .to_string()
    }

    fn send_keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", self.session, keys]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .command(&["kill-server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `tviews workload` in the background, its output in a file; stopped with SIGTERM (it
/// rolls its prepared transaction back) and waited for, or killed, on drop.
struct Workload {
    child: Option<Child>,
    log: PathBuf,
}

impl Workload {
    fn start(home: &Path, conn: &[&str], log: PathBuf) -> Workload {
        let out = File::create(&log).expect("workload log");
        let err = out.try_clone().expect("workload log");
        let child = Command::new(BIN)
            .env_clear()
            .env("HOME", home)
            .args(conn)
            .args(["workload", "--clients", "3", "--rate", "60"])
            .args(["--prepared-every", "2", "--seconds", "600"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting tviews workload");
        Workload {
            child: Some(child),
            log,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then up to 40 s for its clean stop; the exit status.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A number the console prints for a rate, e.g. `12.3`, `0.50`, `1.2k`.
fn rate_value(token: &str) -> Option<f64> {
    let (digits, scale) = match token.strip_suffix('k') {
        Some(d) => (d, 1e3),
        None => match token.strip_suffix('M') {
            Some(d) => (d, 1e6),
            None => (token, 1.0),
        },
    };
    // Counts (rows, errors) are integers; rates always have decimals.
    if !digits.contains('.') {
        return None;
    }
    digits.parse::<f64>().ok().map(|v| v * scale)
}

/// What "live" means: every TVIEW listed, one of them refreshing at a rate above zero,
/// and a prepared transaction on screen.
fn is_live(screen: &str) -> bool {
    let names = ["tv_product", "tv_review", "tv_category"];
    let all_listed = names.iter().all(|n| screen.contains(n));
    let refreshing = screen.lines().any(|line| {
        names.iter().any(|n| line.contains(n))
            && line
                .split(|c: char| c.is_whitespace() || c == '│' || c == '┆')
                .filter_map(rate_value)
                .any(|v| v > 0.0)
    });
    let prepared = screen.contains("tviews-workload:")
        || screen
            .split(" prepared")
            .next()
            .and_then(|before| before.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    all_listed && refreshing && prepared
}

/// Polls until `done` holds for the screen, or panics with `what` and the last screen.
fn wait_for_screen(
    tmux: &Tmux,
    timeout: Duration,
    what: &str,
    context: &dyn Fn() -> String,
    done: &dyn Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let screen = tmux.capture();
        if done(&screen) {
            return screen;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not seen within {timeout:?}\n--- screen ---\n{screen}\n{}",
                context()
            );
        }
        sleep(Duration::from_millis(500));
    }
}

#[test]
fn top_in_a_pseudo_terminal_under_a_workload() {
    if !tviews_tests::extension_installed() {
        eprintln!("skipping: {}", tviews_tests::EXTENSION_NOT_INSTALLED);
        return;
    }
    if !Tmux::available() {
        eprintln!("skipping: tmux is not installed (scripts/setup.sh installs it)");
        return;
    }
    let cluster = match Cluster::start(ClusterOptions {
        preload: true,
        name: "top-pty".into(),
        ..ClusterOptions::default()
    }) {
        Ok(c) => c,
        Err(e) => panic!("{e:?}"),
    };
    if let Err(e) = cluster.create_database_with_extension(DB) {
        panic!("{e:#}");
    }
    if let Err(e) = cluster.psql(DB, DEMO) {
        panic!("loading demo/schema.sql: {e:#}");
    }
    let home = tempfile::tempdir().expect("temporary HOME");
    let socket = cluster.socket_dir().display().to_string();
    let port = cluster.port().to_string();
    let conn = ["-h", &socket, "-p", &port, "-U", "postgres", "-d", DB];

    let mut workload = Workload::start(home.path(), &conn, home.path().join("workload.log"));
    let mut argv: Vec<String> = ["sh", "-c", PANE_SCRIPT, "sh"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.push(home.path().display().to_string());
    argv.push(BIN.to_string());
    argv.extend(conn.iter().map(|s| s.to_string()));
    argv.push("top".into());
    let tmux = Tmux::start(&argv);
    let context = || {
        format!(
            "--- workload ---\n{}\n--- server log ---\n{}",
            workload.output(),
            cluster.log_tail(30)
        )
    };

    let live = wait_for_screen(&tmux, LIVE_TIMEOUT, "live numbers", &context, &|s| {
        s.contains(EXITED) || is_live(s)
    });
    assert!(
        !live.contains(EXITED),
        "the console exited on its own:\n{live}\n{}",
        context()
    );
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "1",
        "the console draws on the alternate screen"
    );
    eprintln!("--- the console, live ---\n{live}");

    tmux.send_keys("q");
    let after = wait_for_screen(
        &tmux,
        QUIT_TIMEOUT,
        "the console's exit after q",
        &context,
        &|s| s.contains(DONE),
    );
    assert!(
        after.contains(&format!("{EXITED}0]")),
        "tviews top did not exit 0 after q:\n{after}"
    );
    // The terminal is given back: normal screen, cursor shown, cooked mode.
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "0",
        "alternate screen left:\n{after}"
    );
    assert_eq!(tmux.format("#{cursor_flag}"), "1", "cursor shown:\n{after}");
    let modes: Vec<&str> = after
        .split(EXITED)
        .nth(1)
        .unwrap_or_default()
        .split(|c: char| c.is_whitespace() || c == ';')
        .collect();
    for mode in ["icanon", "echo", "isig", "icrnl", "opost"] {
        assert!(
            modes.contains(&mode) && !modes.contains(&format!("-{mode}").as_str()),
            "terminal mode {mode} not restored (stty -a after the console):\n{after}"
        );
    }

    // The workload stops cleanly and leaves no prepared transaction behind.
    let status = workload.stop();
    let output = workload.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "tviews workload: {status:?}\n{output}"
    );
    assert!(
        output.contains(" prepared (") && !output.contains("LEFT PENDING"),
        "{output}"
    );
    let pending = cluster
        .psql(DB, "SELECT count(*) FROM pg_prepared_xacts")
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(pending.trim(), "0", "prepared transactions left: {pending}");
}

#[test]
fn rates_are_numbers_with_decimals() {
    assert_eq!(rate_value("12.5"), Some(12.5));
    assert_eq!(rate_value("1.2k"), Some(1200.0));
    assert_eq!(rate_value("0.00"), Some(0.0));
    assert_eq!(rate_value("1000"), None);
    assert_eq!(rate_value("n/a"), None);
}
