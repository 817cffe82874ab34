//! A throwaway PostgreSQL cluster per test: `initdb` into a private directory, start on a free
//! port with a private socket directory, stop and delete everything on drop.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::server::{self, PG_CTL_TIMEOUT_SECS, StopMode};
use crate::{os, pg, sweep};

const SUPERUSER: &str = "postgres";
/// Where cluster directories go unless `TVIEWS_WORK_ROOT` says otherwise (scripts/setup.sh
/// creates it, owned by the server user).
const DEFAULT_WORK_ROOT: &str = "/var/tmp/pg_tviews";
/// Attempts at finding a free port when the server finds its port taken.
const PORT_ATTEMPTS: u32 = 5;
/// Log lines printed when a test panics.
const PANIC_LOG_LINES: usize = 80;
/// The longest socket file path the kernel accepts (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;
/// What a URI must escape in a host or database name: all but RFC 3986 unreserved characters.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How to set up a [`Cluster`]. Start from `ClusterOptions::default()` and change fields.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `shared_preload_libraries = 'pg_tviews'` (default false).
    pub preload: bool,
    /// Extra `postgresql.conf` settings as (name, value), written after the harness's own, so
    /// they win. Values are quoted by the harness: pass `("work_mem", "64MB")`.
    pub settings: Vec<(String, String)>,
    /// Also listen on 127.0.0.1:<port> (default false: unix socket only).
    pub tcp: bool,
    /// Label used in the directory name and in messages (default "test").
    pub name: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            preload: false,
            settings: Vec::new(),
            tcp: false,
            name: "test".to_owned(),
        }
    }
}

/// Fills a new cluster's data directory instead of `initdb`: `(data_dir, server_user)`.
pub(crate) type Populate<'a> = dyn Fn(&Path, Option<&str>) -> Result<()> + 'a;

/// A running PostgreSQL server in its own directory. Dropping it stops the server and removes
/// the directory (see the crate documentation).
#[derive(Debug)]
pub struct Cluster {
    name: String,
    dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    /// Who runs the server programs: `None` is the current user.
    server_user: Option<String>,
    /// `sh` waiting for our end of its stdin to close, which happens however this process ends,
    /// to stop the server then (see `spawn_watchdog`).
    watchdog: Option<Child>,
}

impl Cluster {
    /// Creates, configures and starts a new cluster; waits until it accepts connections.
    pub fn start(opts: ClusterOptions) -> Result<Cluster> {
        Cluster::start_with(opts, None)
    }

    /// [`Cluster::start`], with `populate` filling the (not yet existing) data directory instead
    /// of `initdb`: `populate(data_dir, server_user)`. A physical standby starts from a base
    /// backup this way (`crate::standby`).
    pub(crate) fn start_with(
        opts: ClusterOptions,
        populate: Option<&Populate<'_>>,
    ) -> Result<Cluster> {
        let root = work_root()?;
        let server_user = os::server_user();
        sweep::sweep(&root, server_user.as_deref());
        if opts.preload && !pg::extension_installed() {
            bail!("cannot preload pg_tviews: {}", pg::EXTENSION_NOT_INSTALLED);
        }
        let owner = match &server_user {
            Some(user) => Some(os::user_ids(user).with_context(|| {
                format!("server user {user} (TVIEWS_PG_USER) is missing: run scripts/setup.sh")
            })?),
            None => None,
        };
        let dir = create_cluster_dir(&root, &opts.name, owner)?;
        // From here on the value exists, so any failure below drops it: stop, clean up.
        let mut cluster = Cluster {
            name: opts.name.clone(),
            data_dir: dir.join("data"),
            socket_dir: dir.join("socket"),
            log_path: dir.join("postgres.log"),
            dir,
            port: 0,
            server_user,
            watchdog: None,
        };
        cluster
            .init_and_launch(&opts, owner, populate)
            .with_context(|| {
                format!(
                    "could not start PostgreSQL cluster '{}' in {}",
                    cluster.name,
                    cluster.dir.display()
                )
            })?;
        Ok(cluster)
    }

    /// `Cluster::start(ClusterOptions::default())`, panicking with the whole error chain.
    pub fn start_default() -> Cluster {
        match Cluster::start(ClusterOptions::default()) {
            Ok(cluster) => cluster,
            Err(e) => panic!("{e:?}"),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The superuser every connection uses: "postgres" (trust authentication).
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// libpq key/value connection string: `host=<socket dir> port=<port> user=postgres dbname=<db>`.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user={SUPERUSER} dbname={}",
            conninfo_value(&self.socket_dir.to_string_lossy()),
            self.port,
            conninfo_value(db)
        )
    }

    /// The same as a URI: `postgresql://postgres@%2F...socket:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgresql://{SUPERUSER}@{}:{}/{}",
            utf8_percent_encode(&self.socket_dir.to_string_lossy(), URI_COMPONENT),
            self.port,
            utf8_percent_encode(db, URI_COMPONENT)
        )
    }

    /// A tokio-postgres client over the unix socket. The connection task is spawned on the
    /// current tokio runtime; its errors are printed on stderr.
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("Cluster::connect must be called inside a tokio runtime")?;
        let (client, connection) = tokio_postgres::Config::new()
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(SUPERUSER)
            .dbname(db)
            .application_name("tviews-tests")
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("could not connect to {}", self.conninfo(db)))
            .map_err(|e| self.with_log_tail(e, "the connection failed"))?;
        let label = format!("cluster '{}', database {db}", self.name);
        runtime.spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("pg_tviews harness: connection to {label} failed: {e}");
            }
        });
        Ok(client)
    }

    pub fn create_database(&self, name: &str) -> Result<()> {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        )
        .map(drop)
        .with_context(|| format!("could not create database {name}"))
    }

    /// A new database with `CREATE EXTENSION pg_tviews` done; fails with
    /// [`crate::EXTENSION_NOT_INSTALLED`] when the extension is not installed.
    pub fn create_database_with_extension(&self, name: &str) -> Result<()> {
        if !pg::extension_installed() {
            bail!(pg::EXTENSION_NOT_INSTALLED);
        }
        self.create_database(name)?;
        self.psql(name, "CREATE EXTENSION pg_tviews")
            .map(drop)
            .with_context(|| format!("could not create extension pg_tviews in database {name}"))
    }

    /// Runs `sql` (any number of statements, each in its own transaction unless the script
    /// says BEGIN) with `psql -X -q -v ON_ERROR_STOP=1 -At`, and returns its stdout without the
    /// final newline. Fails at the first error, with psql's stderr and the SQL.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let mut cmd = self.psql_command(db);
        cmd.args(["-f", "-"]);
        let out = os::output(&mut cmd, Some(sql.as_bytes()))?;
        self.psql_result(&out, db, || format!("SQL:\n{}", abbreviate(sql, 4000)))
    }

    /// Runs the SQL file at `path` like [`Cluster::psql`].
    pub fn psql_file(&self, db: &str, path: &Path) -> Result<String> {
        let mut cmd = self.psql_command(db);
        cmd.arg("-f").arg(path);
        let out = os::output(&mut cmd, None)?;
        self.psql_result(&out, db, || format!("file: {}", path.display()))
    }

    /// Stops the server (`pg_ctl stop -m <mode> -w`); a no-op when it is not running.
    /// `Smart` waits for every client to disconnect, so drop your clients first.
    pub fn stop(&mut self, mode: StopMode) -> Result<()> {
        let Some(pid) = self.postmaster_pid() else {
            return Ok(());
        };
        let mut cmd = server::stop_command(
            self.server_user(),
            &self.data_dir,
            mode,
            PG_CTL_TIMEOUT_SECS,
        );
        os::run(&mut cmd).map_err(|e| self.with_log_tail(e, "server did not stop"))?;
        // pg_ctl returns once the pid file is gone; the process itself may take a moment more.
        if !os::wait_until(std::time::Duration::from_secs(10), || {
            !os::process_alive(pid)
        }) {
            bail!(
                "postmaster {pid} of cluster '{}' still alive after pg_ctl stop",
                self.name
            );
        }
        Ok(())
    }

    /// Starts the stopped server again on the same data directory and port.
    pub fn start_again(&mut self) -> Result<()> {
        if let Some(pid) = self.postmaster_pid() {
            bail!(
                "cluster '{}' is already running (postmaster pid {pid})",
                self.name
            );
        }
        self.pg_ctl_start()
    }

    /// `stop(mode)` then `start_again()`. `Immediate` simulates a crash: the start runs recovery.
    pub fn restart(&mut self, mode: StopMode) -> Result<()> {
        self.stop(mode)?;
        self.start_again()
    }

    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some()
    }

    /// The pid of the running postmaster, from its pid file, checked against `/proc`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        server::postmaster_pid(&self.data_dir)
    }

    /// The last `lines` lines of the server log (a note instead when it cannot be read).
    pub fn log_tail(&self, lines: usize) -> String {
        match fs::read(&self.log_path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.log_path.display()),
        }
    }

    fn server_user(&self) -> Option<&str> {
        self.server_user.as_deref()
    }

    /// Stdout without its final newline, or an error with psql's stderr and `what` ran. Exit
    /// status 2 means the connection failed or broke (a crashed backend, a server that is
    /// down): the server log says why, so its tail goes into the error.
    fn psql_result(
        &self,
        out: &std::process::Output,
        db: &str,
        what: impl FnOnce() -> String,
    ) -> Result<String> {
        if !out.status.success() {
            let error = anyhow::anyhow!(
                "psql failed on database {db} ({}){}\n{}",
                out.status,
                os::printed(out),
                what()
            );
            return Err(match out.status.code() {
                Some(2) => self.with_log_tail(error, "the connection failed"),
                _ => error,
            });
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_owned())
    }

    fn psql_command(&self, db: &str) -> Command {
        let mut cmd = Command::new(pg::pg_bin("psql"));
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d"])
            .arg(self.conninfo(db));
        cmd
    }

    /// initdb (or `populate`), postgresql.conf, first start (with port retries), watchdog.
    fn init_and_launch(
        &mut self,
        opts: &ClusterOptions,
        owner: Option<(u32, u32)>,
        populate: Option<&Populate<'_>>,
    ) -> Result<()> {
        let socket_path_len = self.socket_dir.as_os_str().len() + "/.s.PGSQL.65535".len();
        if socket_path_len > MAX_SOCKET_PATH {
            bail!(
                "socket directory {} is too long for a unix socket path: use a shorter TVIEWS_WORK_ROOT or cluster name",
                self.socket_dir.display()
            );
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.socket_dir)
            .with_context(|| format!("creating {}", self.socket_dir.display()))?;
        if let Some((uid, gid)) = owner {
            chown(&self.socket_dir, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", self.socket_dir.display()))?;
        }
        match populate {
            Some(populate) => populate(&self.data_dir, self.server_user())?,
            None => self.initdb()?,
        }
        let conf_path = self.data_dir.join("postgresql.conf");
        let initdb_conf = fs::read_to_string(&conf_path)
            .with_context(|| format!("reading {}", conf_path.display()))?;
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = free_port()?;
            let conf = format!("{initdb_conf}{}", self.harness_conf(opts));
            fs::write(&conf_path, conf)
                .with_context(|| format!("writing {}", conf_path.display()))?;
            let log_before = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
            match self.pg_ctl_start() {
                Ok(()) => break,
                Err(e) if attempt < PORT_ATTEMPTS && self.port_was_taken(log_before) => {
                    eprintln!(
                        "pg_tviews harness: port {} was taken, trying another ({e:#})",
                        self.port
                    );
                }
                Err(e) => return Err(e),
            }
        }
        self.watchdog = Some(self.spawn_watchdog()?);
        Ok(())
    }

    fn initdb(&self) -> Result<()> {
        let initdb = |locale: &str| {
            let mut cmd = os::command_as(self.server_user(), pg::pg_bin("initdb"));
            cmd.arg("-D").arg(&self.data_dir).args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                &format!("--locale={locale}"),
                "--no-sync",
            ]);
            os::run(&mut cmd)
        };
        match initdb("C.UTF-8") {
            Err(e) if format!("{e:#}").contains("locale") => {
                initdb("C").context("initdb failed with --locale=C.UTF-8 and with --locale=C")?;
            }
            result => {
                result?;
            }
        }
        Ok(())
    }

    /// The harness's postgresql.conf lines, appended to initdb's.
    fn harness_conf(&self, opts: &ClusterOptions) -> String {
        let listen = if opts.tcp { "127.0.0.1" } else { "" };
        let mut settings: Vec<(&str, String)> = vec![
            ("port", self.port.to_string()),
            (
                "unix_socket_directories",
                self.socket_dir.to_string_lossy().into_owned(),
            ),
            ("listen_addresses", listen.to_owned()),
            ("fsync", "off".to_owned()),
            ("max_prepared_transactions", "20".to_owned()),
            ("max_connections", "100".to_owned()),
            ("log_line_prefix", "%m [%p] %q%u@%d ".to_owned()),
            ("log_min_messages", "warning".to_owned()),
        ];
        if opts.preload {
            settings.push(("shared_preload_libraries", "pg_tviews".to_owned()));
        }
        settings.extend(opts.settings.iter().map(|(k, v)| (k.as_str(), v.clone())));
        let mut conf = String::from(
            "\n# ---- added by the pg_tviews test harness (crate tviews-tests) ----\n",
        );
        for (name, value) in settings {
            // In postgresql.conf a quoted string is valid for every type and backslash escapes.
            conf.push_str(&format!(
                "{name} = '{}'\n",
                value.replace('\\', r"\\").replace('\'', "''")
            ));
        }
        conf
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let mut cmd = server::pg_ctl(self.server_user(), &self.data_dir);
        cmd.arg("-l").arg(&self.log_path).args([
            "-w",
            "-t",
            &PG_CTL_TIMEOUT_SECS.to_string(),
            "start",
        ]);
        let started = os::run(&mut cmd);
        if let Err(e) = started {
            // A start that timed out may have left a postmaster behind.
            if let Err(stop) =
                server::shut_down(self.server_user(), &self.data_dir, StopMode::Immediate)
            {
                eprintln!("pg_tviews harness: {stop:#}");
            }
            return Err(self.with_log_tail(e, "server did not start"));
        }
        Ok(())
    }

    /// Whether the server log written since byte `from` says the port was in use.
    fn port_was_taken(&self, from: u64) -> bool {
        let log = fs::read(&self.log_path).unwrap_or_default();
        let recent = String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default());
        recent.contains("Address already in use")
            || recent.contains("could not create any TCP/IP sockets")
    }

    fn with_log_tail(&self, e: anyhow::Error, what: &str) -> anyhow::Error {
        e.context(format!(
            "{what}; last lines of {}:\n{}",
            self.log_path.display(),
            self.log_tail(30)
        ))
    }

    /// Spawns `sh -c 'read x; exec pg_ctl stop -m immediate ...'` with a pipe from us on its
    /// stdin. The pipe closes when this process ends, however it ends (panic=abort,
    /// `process::exit`, SIGKILL, a `Cluster` in a static that is never dropped), and the server
    /// stops then. It runs in its own process group so that Ctrl-C reaches only the tests. Drop
    /// kills it after stopping the server itself.
    fn spawn_watchdog(&self) -> Result<Child> {
        let stop =
            server::stop_command(self.server_user(), &self.data_dir, StopMode::Immediate, 30);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", r#"read _ignored; exec "$@""#, "tviews-watchdog"])
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        cmd.spawn()
            .with_context(|| format!("could not spawn the watchdog `{}`", os::describe(&cmd)))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pid = self.postmaster_pid();
        let stopped = server::shut_down(self.server_user(), &self.data_dir, StopMode::Fast);
        if let Err(e) = &stopped {
            eprintln!("pg_tviews harness: {e:#}");
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            // Killing the shell before it reads EOF means it never runs its pg_ctl.
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if std::thread::panicking() {
            let pid = pid.map_or_else(|| "none".to_owned(), |p| p.to_string());
            eprintln!(
                "---- PostgreSQL log (last {PANIC_LOG_LINES} lines of {}) ----\n{}\n\
                 ---- end of PostgreSQL log (cluster '{}', data dir {}, postmaster pid {pid}) ----",
                self.log_path.display(),
                self.log_tail(PANIC_LOG_LINES),
                self.name,
                self.data_dir.display(),
            );
        }
        if keep_requested() {
            let _ = fs::write(self.dir.join(sweep::KEEP_FILE), "TVIEWS_KEEP_CLUSTER=1\n");
            eprintln!(
                "pg_tviews harness: kept cluster '{}' in {} (TVIEWS_KEEP_CLUSTER=1; remove it by hand).\n\
                 Start it with: {}\nthen connect with: psql '{}'",
                self.name,
                self.dir.display(),
                os::describe(
                    server::pg_ctl(self.server_user(), &self.data_dir)
                        .arg("-l")
                        .arg(&self.log_path)
                        .arg("start")
                ),
                self.conninfo("postgres"),
            );
        } else if stopped.is_ok() {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                eprintln!(
                    "pg_tviews harness: could not remove {}: {e}",
                    self.dir.display()
                );
            }
        } else {
            eprintln!(
                "pg_tviews harness: left {} behind: its server would not stop",
                self.dir.display()
            );
        }
    }
}

/// `TVIEWS_WORK_ROOT` or /var/tmp/pg_tviews, absolute and existing.
fn work_root() -> Result<PathBuf> {
    let root = std::env::var_os("TVIEWS_WORK_ROOT")
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| DEFAULT_WORK_ROOT.into());
    let root =
        std::path::absolute(&root).with_context(|| format!("bad TVIEWS_WORK_ROOT {root:?}"))?;
    fs::create_dir_all(&root).with_context(|| {
        format!(
            "cannot create the work root {} (run scripts/setup.sh, or set TVIEWS_WORK_ROOT)",
            root.display()
        )
    })?;
    Ok(root)
}

/// Creates `<root>/harness-<name>-<pid>-<n>`, records this process as its owner, and hands it
/// to the server user.
fn create_cluster_dir(root: &Path, name: &str, owner: Option<(u32, u32)>) -> Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let label: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!(
            "{}{label}-{}-{n}",
            sweep::DIR_PREFIX,
            std::process::id()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => {
                sweep::write_owner(&dir)?;
                if let Some((uid, gid)) = owner {
                    chown(&dir, Some(uid), Some(gid))
                        .with_context(|| format!("chown {}", dir.display()))?;
                }
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot create {} (is {} writable? run scripts/setup.sh, or set TVIEWS_WORK_ROOT)",
                        dir.display(),
                        root.display()
                    )
                });
            }
        }
    }
}

/// A port that was free a moment ago (the server may still lose a race for it: see the retries).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn keep_requested() -> bool {
    std::env::var("TVIEWS_KEEP_CLUSTER").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A libpq conninfo value, single-quoted when it needs to be.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The first `max` characters of `text`, with a note of what was cut.
fn abbreviate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}\n... ({} more bytes)", &text[..cut], text.len() - cut),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_values_are_quoted_only_when_needed() {
        assert_eq!(conninfo_value("/var/tmp/x"), "/var/tmp/x");
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value(r"it's\"), r"'it\'s\\'");
        assert_eq!(conninfo_value(""), "''");
    }

    #[test]
    fn abbreviate_cuts_on_a_character_boundary() {
        assert_eq!(abbreviate("héllo", 10), "héllo");
        assert_eq!(abbreviate("héllo", 2), "hé\n... (3 more bytes)");
    }
}
