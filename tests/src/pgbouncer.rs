//! A real PgBouncer in front of a test [`Cluster`], for the pooled-connection tests.
//!
//! [`Pgbouncer::start`] writes a `pgbouncer.ini` into a private directory inside the cluster's
//! directory (`<cluster dir>/pgbouncer-<n>/`, so the sweep of dead test processes removes it too)
//! and runs the system's `pgbouncer` (`/usr/sbin/pgbouncer`, the OS package; `PGBOUNCER` names
//! another) in the foreground as a child process of the tests. Like PostgreSQL, PgBouncer refuses
//! to run as root: when the tests run as root it runs as the server user (`pgtviews`, or
//! `TVIEWS_PG_USER`), and its directory belongs to that user. It listens on a free TCP port on
//! 127.0.0.1 and on a unix socket in its directory, with trust authentication for `postgres`, and
//! connects to the cluster over the cluster's unix socket.
//!
//! No PgBouncer outlives its test process: dropping a [`Pgbouncer`] stops it (SIGTERM, then
//! SIGKILL), also during a panic, and first prints the end of its log when the thread is
//! panicking; a watchdog (`sh`, holding a pipe from this process) stops it when this process ends
//! without dropping it. Declare it after its cluster, so that it is dropped first.
//!
//! # Which client calls work through it
//!
//! In transaction pooling a client owns a server connection only from `BEGIN` (or its first
//! statement) to the end of that transaction; its next transaction may run on another one.
//! PgBouncer 1.18 does not track protocol-level prepared statements, so tokio-postgres's
//! `query`, `execute`, `query_one` and `prepare` (named prepared statements: Parse in one
//! round trip, Bind in the next) break outside an explicit transaction, with "prepared statement
//! "s3" does not exist" from whichever backend the Bind lands on. Use `simple_query` and
//! `batch_execute` ([`simple_rows`], [`simple_one`]). `copy_in` also prepares a named statement,
//! but its Parse, Bind and the Close sent when the statement is dropped all happen while the
//! `COPY` holds the server, so it works inside an explicit transaction; outside one, don't.
//! Session pooling has none of these limits (the client keeps its server until it disconnects,
//! then PgBouncer runs `server_reset_query`, `DISCARD ALL`, before handing it to the next).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::{Cluster, os};

/// The program, unless `PGBOUNCER` names another.
const DEFAULT_PROGRAM: &str = "/usr/sbin/pgbouncer";
/// Attempts at a free port when PgBouncer finds its port taken.
const PORT_ATTEMPTS: u32 = 5;
/// How long PgBouncer may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long PgBouncer may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Log lines printed when a test panics.
const PANIC_LOG_LINES: usize = 60;
/// The longest socket file path the kernel accepts (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;
/// The only user PgBouncer knows (trust authentication, like the cluster).
const USER: &str = "postgres";
/// `application_name` of clients that come through PgBouncer, to tell them apart from the
/// harness's direct connections (`tviews-tests`) in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "tviews-pooled";

/// PgBouncer's `pool_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client for as long as the client is connected; PgBouncer runs
    /// `server_reset_query` (`DISCARD ALL`) when the client leaves.
    Session,
    /// A server connection per transaction: consecutive transactions of one client may run on
    /// different server connections, and those of different clients on the same one. No reset
    /// query runs between clients.
    Transaction,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// A running PgBouncer in front of a cluster (see the module documentation).
#[derive(Debug)]
pub struct Pgbouncer {
    dir: PathBuf,
    ini_path: PathBuf,
    log_path: PathBuf,
    port: u16,
    pool_mode: PoolMode,
    child: Child,
    /// `sh` that stops PgBouncer when its stdin (a pipe from us) closes; see `spawn_watchdog`.
    watchdog: Option<Child>,
}

impl Pgbouncer {
    /// Starts PgBouncer in front of `cluster` in `pool_mode` with at most `default_pool_size`
    /// server connections per database and user and at most `max_client_conn` clients, and
    /// waits until it accepts connections on both its TCP port and its unix socket.
    pub fn start(
        cluster: &Cluster,
        pool_mode: PoolMode,
        default_pool_size: u32,
        max_client_conn: u32,
    ) -> Result<Pgbouncer> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let program = program();
        if !program.exists() {
            bail!(
                "{} is missing: install PgBouncer (apt-get install -y pgbouncer) or set PGBOUNCER",
                program.display()
            );
        }
        let cluster_dir = cluster
            .data_dir()
            .parent()
            .context("the cluster's data directory has no parent")?;
        let dir = cluster_dir.join(format!(
            "pgbouncer-{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let socket_path_len = dir.as_os_str().len() + "/.s.PGSQL.65535".len();
        if socket_path_len > MAX_SOCKET_PATH {
            bail!(
                "{} is too long for a unix socket path: use a shorter TVIEWS_WORK_ROOT or cluster name",
                dir.display()
            );
        }
        // Private to the server user: only it (and root) can reach PgBouncer's socket.
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let owner = match os::server_user() {
            Some(user) => Some(os::user_ids(&user)?),
            None => None,
        };
        let auth_file = dir.join("userlist.txt");
        fs::write(&auth_file, format!("\"{USER}\" \"\"\n"))
            .with_context(|| format!("writing {}", auth_file.display()))?;
        if let Some((uid, gid)) = owner {
            for path in [&dir, &auth_file] {
                chown(path, Some(uid), Some(gid))
                    .with_context(|| format!("chown {}", path.display()))?;
            }
        }
        let ini_path = dir.join("pgbouncer.ini");
        let log_path = dir.join("pgbouncer.log");
        let mut bouncer: Option<Pgbouncer> = None;
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port()?;
            let ini = ini(
                cluster,
                &dir,
                port,
                pool_mode,
                default_pool_size,
                max_client_conn,
            );
            fs::write(&ini_path, ini).with_context(|| format!("writing {}", ini_path.display()))?;
            let log_before = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
            let child = spawn(&program, &ini_path, &log_path, owner)?;
            // From here on the value exists: any failure drops it, which stops the child and
            // removes the directory.
            let b = match bouncer.as_mut() {
                Some(b) => {
                    b.port = port;
                    b.child = child;
                    b
                }
                None => bouncer.insert(Pgbouncer {
                    dir: dir.clone(),
                    ini_path: ini_path.clone(),
                    log_path: log_path.clone(),
                    port,
                    pool_mode,
                    child,
                    watchdog: None,
                }),
            };
            b.watchdog = Some(b.spawn_watchdog()?);
            match b.wait_ready() {
                Ok(()) => break,
                Err(e) if attempt < PORT_ATTEMPTS && b.port_was_taken(log_before) => {
                    eprintln!(
                        "pg_tviews harness: PgBouncer port {port} was taken ({e:#}), trying another"
                    );
                    b.stop_child();
                }
                Err(e) => return Err(e),
            }
        }
        bouncer.context("PgBouncer did not start")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of its unix socket (and of its ini, log and pid files).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn pool_mode(&self) -> PoolMode {
        self.pool_mode
    }

    /// The pid of the PgBouncer process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of PgBouncer's log (a note instead when it cannot be read).
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

    /// A tokio-postgres client to database `db` through PgBouncer's unix socket, as `postgres`.
    /// Use only the simple protocol on it in transaction pooling (see the module documentation).
    /// The connection task runs on the current tokio runtime; its errors go to stderr.
    pub async fn connect(&self, db: &str) -> Result<Client> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("Pgbouncer::connect must be called inside a tokio runtime")?;
        let (client, connection) = self
            .config(db)
            .host_path(&self.dir)
            .port(self.port)
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| self.describe_failure(db, "unix socket"))?;
        let label = format!("PgBouncer (unix socket), database {db}");
        runtime.spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("pg_tviews harness: connection through {label} failed: {e}");
            }
        });
        Ok(client)
    }

    /// A client through PgBouncer's TCP port, and a [`TcpKill`] that cuts its connection without
    /// the protocol's goodbye (a client that crashes or loses its network).
    pub async fn connect_tcp(&self, db: &str) -> Result<(Client, TcpKill)> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("Pgbouncer::connect_tcp must be called inside a tokio runtime")?;
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .with_context(|| self.describe_failure(db, "TCP"))?;
        // A second handle on the same socket, kept to shut it down behind tokio-postgres's back.
        let std_stream = stream.into_std().context("TcpStream::into_std")?;
        let kill = TcpKill(std_stream.try_clone().context("cloning a TCP socket")?);
        let stream = tokio::net::TcpStream::from_std(std_stream).context("TcpStream::from_std")?;
        let (client, connection) = self
            .config(db)
            .connect_raw(stream, tokio_postgres::NoTls)
            .await
            .with_context(|| self.describe_failure(db, "TCP"))?;
        let label = format!("PgBouncer (TCP), database {db}");
        runtime.spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("pg_tviews harness: connection through {label} failed: {e}");
            }
        });
        Ok((client, kill))
    }

    /// A client of PgBouncer's admin console (database `pgbouncer`; simple protocol only).
    pub async fn admin(&self) -> Result<Client> {
        self.connect("pgbouncer").await
    }

    fn config(&self, db: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .user(USER)
            .dbname(db)
            .application_name(APPLICATION_NAME);
        config
    }

    fn describe_failure(&self, db: &str, how: &str) -> String {
        format!(
            "could not connect to database {db} through PgBouncer ({how}, port {}, socket dir {}); last lines of its log:\n{}",
            self.port,
            self.dir.display(),
            self.log_tail(20)
        )
    }

    /// Polls until PgBouncer accepts TCP and unix socket connections; fails if it exits first.
    fn wait_ready(&mut self) -> Result<()> {
        let socket = self.dir.join(format!(".s.PGSQL.{}", self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for PgBouncer")? {
                bail!(
                    "PgBouncer exited at start ({status}); last lines of {}:\n{}",
                    self.log_path.display(),
                    self.log_tail(20)
                );
            }
            // The socket file and the port exist once PgBouncer has loaded its configuration
            // and bound both: connecting to each is the readiness check.
            let tcp = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            let unix = std::os::unix::net::UnixStream::connect(&socket).is_ok();
            if tcp && unix {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "PgBouncer did not accept connections within {START_TIMEOUT:?} (tcp: {tcp}, unix socket {}: {unix}); last lines of {}:\n{}",
                    socket.display(),
                    self.log_path.display(),
                    self.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn port_was_taken(&self, from: u64) -> bool {
        let log = fs::read(&self.log_path).unwrap_or_default();
        String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default())
            .contains("Address already in use")
    }

    /// Spawns `sh` reading its stdin, a pipe from us: the pipe closes when this process ends,
    /// however it ends (SIGKILL, `process::exit`, a value that is never dropped), and the shell
    /// then stops PgBouncer, if the pid still names it (its command line holds our ini path).
    /// Its own process group keeps Ctrl-C from killing it before it can act. Drop kills it first.
    fn spawn_watchdog(&self) -> Result<Child> {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            r#"read _ignored; grep -qaF -- "$2" "/proc/$1/cmdline" 2>/dev/null && kill -TERM "$1""#,
            "tviews-pgbouncer-watchdog",
        ])
        .arg(self.child.id().to_string())
        .arg(&self.ini_path)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
        cmd.spawn()
            .with_context(|| format!("could not spawn the watchdog `{}`", os::describe(&cmd)))
    }

    /// Stops the watchdog (before it could act), then PgBouncer: SIGTERM (its immediate
    /// shutdown, which closes the server connections, so their open transactions roll back),
    /// then SIGKILL if it lingers. Reaps both.
    fn stop_child(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child,
            // so it cannot name another process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "pg_tviews harness: PgBouncer {} ignored SIGTERM for {STOP_TIMEOUT:?}: SIGKILL",
            self.child.id()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let pid = self.child.id();
        self.stop_child();
        if std::thread::panicking() {
            eprintln!(
                "---- PgBouncer log (last {PANIC_LOG_LINES} lines of {}) ----\n{}\n\
                 ---- end of PgBouncer log (pid {pid}, port {}, pool_mode {}) ----",
                self.log_path.display(),
                self.log_tail(PANIC_LOG_LINES),
                self.port,
                self.pool_mode.as_str(),
            );
        }
        if std::env::var("TVIEWS_KEEP_CLUSTER").is_ok_and(|v| !v.is_empty() && v != "0") {
            eprintln!(
                "pg_tviews harness: kept PgBouncer's directory {} (TVIEWS_KEEP_CLUSTER=1)",
                self.dir.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.dir)
            // Gone already when its cluster was dropped first.
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "pg_tviews harness: could not remove {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// Cuts one TCP connection to PgBouncer (see [`Pgbouncer::connect_tcp`]).
#[derive(Debug)]
pub struct TcpKill(std::net::TcpStream);

impl TcpKill {
    /// Shuts the socket down both ways: PgBouncer reads end-of-file where a Terminate message
    /// would have been, and the client's next request fails.
    pub fn kill(&self) -> Result<()> {
        self.0
            .shutdown(std::net::Shutdown::Both)
            .context("shutting down a TCP connection to PgBouncer")
    }
}

/// Server connections PgBouncer has open to database `db`, from its `SHOW SERVERS`, asked
/// on `admin` (a client from [`Pgbouncer::admin`]).
pub async fn server_connections(admin: &Client, db: &str) -> Result<usize> {
    let rows = admin
        .simple_query("SHOW SERVERS")
        .await
        .context("SHOW SERVERS")?;
    Ok(rows
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get("database") == Some(db)))
        .count())
}

/// The rows of `sql` run with the simple query protocol, each column as text (`None` for NULL).
/// Safe through PgBouncer in any pool mode.
pub async fn simple_rows(client: &Client, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    let messages = client
        .simple_query(sql)
        .await
        .with_context(|| format!("simple query failed: {sql}"))?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// The single value `sql` returns (first column of its only row), as text; fails on NULL or
/// any other number of rows.
pub async fn simple_one(client: &Client, sql: &str) -> Result<String> {
    let rows = simple_rows(client, sql).await?;
    match rows.as_slice() {
        [row] => row
            .first()
            .cloned()
            .flatten()
            .with_context(|| format!("NULL from: {sql}")),
        _ => bail!("{} rows instead of one from: {sql}", rows.len()),
    }
}

fn program() -> PathBuf {
    std::env::var_os("PGBOUNCER")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_PROGRAM), PathBuf::from)
}

fn ini(
    cluster: &Cluster,
    dir: &Path,
    port: u16,
    pool_mode: PoolMode,
    default_pool_size: u32,
    max_client_conn: u32,
) -> String {
    let dir = dir.display();
    format!(
        "; written by the pg_tviews test harness (crate tviews-tests, src/pgbouncer.rs)
[databases]
* = host={socket} port={cluster_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {dir}
pidfile = {dir}/pgbouncer.pid
auth_type = trust
auth_file = {dir}/userlist.txt
admin_users = {USER}
pool_mode = {mode}
default_pool_size = {default_pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = {max_client_conn}
; Used in session pooling only (and PgBouncer's default): what a client leaves behind is gone
; before the next client gets the server connection.
server_reset_query = DISCARD ALL
ignore_startup_parameters = extra_float_digits,options
; After a server connection dies (pg_terminate_backend), log in again at once rather than after
; the default 15 s.
server_login_retry = 1
; A client waiting this long for a server connection gets an error instead of hanging the test
; (the default is 120 s).
query_wait_timeout = 60
log_connections = 1
log_disconnections = 1
",
        socket = cluster.socket_dir().display(),
        cluster_port = cluster.port(),
        mode = pool_mode.as_str(),
    )
}

/// Starts PgBouncer in the foreground with stdout and stderr (its log) appended to `log_path`,
/// as `owner` when given: PgBouncer refuses to run as root.
fn spawn(program: &Path, ini: &Path, log_path: &Path, owner: Option<(u32, u32)>) -> Result<Child> {
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let _ = writeln!(log, "---- pg_tviews harness: starting PgBouncer ----");
    let mut cmd = Command::new(program);
    cmd.arg(ini)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating the log file")?)
        .stderr(log);
    if let Some((uid, gid)) = owner {
        // Direct rather than through `runuser`, so that the child we hold (and kill) is
        // PgBouncer itself. std drops root's supplementary groups when it sets the uid.
        cmd.uid(uid).gid(gid);
    }
    cmd.spawn()
        .with_context(|| format!("could not start `{}`", os::describe(&cmd)))
}

/// A port that was free a moment ago (PgBouncer may lose it: see the retries in `start`).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}
