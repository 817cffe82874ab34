//! Turning flags, connection strings, environment variables and files into the concrete
//! list of servers to try. Pure: everything it reads comes in as arguments.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::conninfo::{ConnInfoError, is_connection_string, parse_connection_string};
use super::inputs::{Environment, Files};
use super::params::{Keyword, Params, Source};
use super::pgpass::{PassQuery, read_password};
use super::service::{ServiceError, load_service};

/// libpq's default port.
pub const DEFAULT_PORT: u16 = 5432;
/// Where to look for a server's socket when no host is given, in order. The first is
/// Debian's compiled-in default; the second is upstream PostgreSQL's.
pub const DEFAULT_SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];
/// Used as `fallback_application_name`, so `pg_stat_activity` shows who is connected
/// unless the user chose a name.
pub const FALLBACK_APPLICATION_NAME: &str = "tviews";

/// The connection-related command-line options, as plain data (see `ConnArgs` for the
/// flags themselves).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnRequest {
    /// `-h/--host`: host name, socket directory, or a comma-separated list of them.
    pub host: Option<String>,
    /// `-p/--port`: a port or a comma-separated list.
    pub port: Option<String>,
    /// `-U/--username`.
    pub username: Option<String>,
    /// `-d/--dbname`: a database name, a conninfo string or a URI.
    pub dbname: Option<String>,
    /// The trailing positional argument: the same as `-d`.
    pub positional: Option<String>,
    /// `--sslmode`.
    pub sslmode: Option<SslMode>,
}

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// Plain only.
    Disable,
    /// Plain first; TLS if the server refuses a plain connection.
    Allow,
    /// TLS if the server offers it, plain otherwise (libpq's default).
    Prefer,
    /// TLS, without checking the certificate (unless a root certificate file exists:
    /// then as `verify-ca`, like libpq).
    Require,
    /// TLS, certificate signed by a trusted CA.
    VerifyCa,
    /// TLS, certificate signed by a trusted CA and issued for the host name.
    VerifyFull,
}

impl SslMode {
    pub const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server certificate is checked against a root certificate.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl FromStr for SslMode {
    type Err = ResolveError;
    fn from_str(s: &str) -> Result<SslMode, ResolveError> {
        SslMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| invalid_value(Keyword::SslMode, s))
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one server is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostSpec {
    /// A Unix-domain socket directory; the socket is `<dir>/.s.PGSQL.<port>`.
    Socket(PathBuf),
    /// A TCP host name or address.
    Tcp(String),
}

/// Where a password came from: shown in authentication-failure messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    Setting(Source),
    PassFile(PathBuf),
    Prompt,
}

/// A password; its `Debug` output does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password {
    pub value: String,
    pub source: PasswordSource,
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Password")
            .field("value", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

/// One server to try, in the order given by the host list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: HostSpec,
    /// `hostaddr`: connect to this address, keep `host` for TLS and the password file.
    pub hostaddr: Option<IpAddr>,
    pub port: u16,
    pub password: Option<Password>,
}

impl Target {
    pub fn is_socket(&self) -> bool {
        matches!(self.host, HostSpec::Socket(_))
    }

    /// The socket file for a socket target.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match &self.host {
            HostSpec::Socket(dir) => Some(socket_file(dir, self.port)),
            HostSpec::Tcp(_) => None,
        }
    }
}

impl fmt::Display for Target {
    /// libpq's wording: `server on socket "/tmp/.s.PGSQL.5432"` or
    /// `server at "db" (10.0.0.1), port 5432`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostSpec::Socket(dir) => {
                write!(
                    f,
                    "server on socket \"{}\"",
                    socket_file(dir, self.port).display()
                )
            }
            HostSpec::Tcp(host) => {
                write!(f, "server at \"{host}\"")?;
                if let Some(addr) = self.hostaddr.filter(|a| a.to_string() != *host) {
                    write!(f, " ({addr})")?;
                }
                write!(f, ", port {}", self.port)
            }
        }
    }
}

/// Certificate files for TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// `sslrootcert`, default `~/.postgresql/root.crt`.
    pub root_cert: Option<PathBuf>,
    /// Whether `root_cert` exists: libpq upgrades `require` to `verify-ca` when it does.
    pub root_cert_exists: bool,
    /// `sslcert`, default `~/.postgresql/postgresql.crt`; only set when the file exists
    /// (libpq silently goes without a client certificate otherwise).
    pub client_cert: Option<PathBuf>,
    /// `sslkey`, default `~/.postgresql/postgresql.key`.
    pub client_key: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSessionAttrs {
    Any,
    ReadWrite,
    ReadOnly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelBinding {
    Disable,
    Prefer,
    Require,
}

/// Everything needed to connect, fully resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Tried in order; the first that accepts the connection wins.
    pub targets: Vec<Target>,
    pub user: String,
    pub dbname: String,
    pub sslmode: SslMode,
    pub tls: TlsFiles,
    pub application_name: Option<String>,
    pub fallback_application_name: String,
    /// `None`: wait forever (libpq's default).
    pub connect_timeout: Option<Duration>,
    pub options: Option<String>,
    pub target_session_attrs: TargetSessionAttrs,
    pub channel_binding: ChannelBinding,
    /// The password file consulted (whether or not it exists).
    pub passfile: Option<PathBuf>,
    /// Things to tell the user on stderr (ignored keywords, password file permissions).
    pub warnings: Vec<String>,
}

/// The settings could not be resolved. psql reports these as connection failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{origin}: {error}")]
    ConnInfo {
        origin: &'static str,
        error: ConnInfoError,
    },
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("both -d/--dbname and a positional connection argument were given; use one")]
    DbnameTwice,
    #[error("invalid {keyword} value: \"{value}\"")]
    InvalidValue { keyword: Keyword, value: String },
    #[error("invalid port number: \"{0}\"")]
    InvalidPort(String),
    #[error("could not match {ports} port numbers to {hosts} hosts")]
    PortCount { ports: usize, hosts: usize },
    #[error("could not match {hosts} host names to {addrs} hostaddr values")]
    HostaddrCount { hosts: usize, addrs: usize },
    #[error("could not parse network address \"{0}\"")]
    InvalidHostaddr(String),
    #[error("could not determine the local user name; give one with -U or PGUSER")]
    NoUser,
}

fn invalid_value(keyword: Keyword, value: &str) -> ResolveError {
    ResolveError::InvalidValue {
        keyword,
        value: value.to_string(),
    }
}

/// `<dir>/.s.PGSQL.<port>`
pub fn socket_file(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// The layer of explicit flags.
fn flag_layer(req: &ConnRequest) -> Params {
    let mut p = Params::new();
    let mut set = |k, v: &Option<String>| {
        if let Some(v) = v {
            p.set(k, v.clone(), Source::Flag);
        }
    };
    set(Keyword::Host, &req.host);
    set(Keyword::Port, &req.port);
    set(Keyword::User, &req.username);
    set(Keyword::SslMode, &req.sslmode.map(|m| m.to_string()));
    p
}

/// The `PG*` variables.
fn env_layer(env: &Environment) -> Params {
    let mut p = Params::new();
    for k in Keyword::ALL {
        if let Some(var) = k.env_var()
            && let Some(value) = env.var(var)
        {
            p.set(k, value, Source::Env(var));
        }
    }
    p
}

/// Stacks every source of settings, highest precedence first:
/// flags > `-d`/positional connection string > `DATABASE_URL` > service file > `PG*`.
pub fn merge_layers(
    req: &ConnRequest,
    env: &Environment,
    files: &dyn Files,
) -> Result<Params, ResolveError> {
    let mut merged = flag_layer(req);

    let conn_arg = match (&req.dbname, &req.positional) {
        (Some(_), Some(_)) => return Err(ResolveError::DbnameTwice),
        (Some(d), None) => Some(("-d/--dbname", d)),
        (None, Some(p)) => Some(("connection argument", p)),
        (None, None) => None,
    };
    match conn_arg {
        Some((origin, s)) if is_connection_string(s) => {
            let layer = parse_connection_string(s)
                .map_err(|error| ResolveError::ConnInfo { origin, error })?;
            merged.fill_from(&layer);
        }
        // A plain name is just the database, as an explicit flag.
        Some((_, name)) => merged.set(Keyword::DbName, name.clone(), Source::Flag),
        // DATABASE_URL only stands in for a missing -d/positional, never beside one.
        None => {
            if let Some(url) = env.var("DATABASE_URL") {
                let layer = parse_connection_string(url)
                    .map_err(|error| ResolveError::ConnInfo {
                        origin: "DATABASE_URL",
                        error,
                    })?
                    .with_source(Source::DatabaseUrl);
                merged.fill_from(&layer);
            }
        }
    }

    let env_params = env_layer(env);
    let service = merged
        .get(Keyword::Service)
        .or(env_params.get(Keyword::Service))
        .map(str::to_string);
    if let Some(service) = service {
        merged.fill_from(&load_service(&service, env, files)?);
    }
    merged.fill_from(&env_params);
    Ok(merged)
}

fn split_list(s: Option<&str>) -> Vec<&str> {
    match s {
        Some(s) => s.split(',').map(str::trim).collect(),
        None => Vec::new(),
    }
}

fn parse_port(s: &str) -> Result<u16, ResolveError> {
    if s.is_empty() {
        return Ok(DEFAULT_PORT);
    }
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ResolveError::InvalidPort(s.to_string())),
    }
}

/// No host given: the first default socket directory where the server's socket exists,
/// else `localhost` over TCP.
pub fn default_host(port: u16, files: &dyn Files) -> HostSpec {
    DEFAULT_SOCKET_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|dir| files.exists(&socket_file(dir, port)))
        .map(HostSpec::Socket)
        .unwrap_or_else(|| HostSpec::Tcp("localhost".to_string()))
}

/// The host, address and port of every server to try (without passwords).
fn targets(merged: &Params, files: &dyn Files) -> Result<Vec<Target>, ResolveError> {
    let hosts = split_list(merged.get(Keyword::Host));
    let addrs = split_list(merged.get(Keyword::HostAddr));
    let ports = split_list(merged.get(Keyword::Port));
    if !hosts.is_empty() && !addrs.is_empty() && hosts.len() != addrs.len() {
        return Err(ResolveError::HostaddrCount {
            hosts: hosts.len(),
            addrs: addrs.len(),
        });
    }
    let count = hosts.len().max(addrs.len()).max(1);
    if ports.len() > 1 && ports.len() != count {
        return Err(ResolveError::PortCount {
            ports: ports.len(),
            hosts: count,
        });
    }

    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let port = parse_port(ports.get(i).or(ports.first()).copied().unwrap_or(""))?;
        let hostaddr = match addrs.get(i).copied().filter(|a| !a.is_empty()) {
            Some(a) => Some(
                a.parse::<IpAddr>()
                    .map_err(|_| ResolveError::InvalidHostaddr(a.to_string()))?,
            ),
            None => None,
        };
        let host = match (hosts.get(i).copied().filter(|h| !h.is_empty()), hostaddr) {
            // An absolute path is a socket directory, as in libpq.
            (Some(h), _) if h.starts_with('/') => HostSpec::Socket(PathBuf::from(h)),
            (Some(h), _) => HostSpec::Tcp(h.to_string()),
            (None, Some(addr)) => HostSpec::Tcp(addr.to_string()),
            (None, None) => default_host(port, files),
        };
        out.push(Target {
            host,
            hostaddr,
            port,
            password: None,
        });
    }
    Ok(out)
}

/// The password file lookup for one target.
fn pass_query<'a>(
    target: &'a Target,
    port: &'a str,
    dbname: &'a str,
    user: &'a str,
) -> PassQuery<'a> {
    let hosts = match &target.host {
        HostSpec::Socket(dir) => vec![dir.to_str().unwrap_or(""), "localhost"],
        HostSpec::Tcp(h) => vec![h.as_str()],
    };
    PassQuery {
        hosts,
        port,
        dbname,
        user,
    }
}

fn home_file(env: &Environment, rel: &str) -> Option<PathBuf> {
    env.home().map(|h| h.join(rel))
}

fn tls_files(merged: &Params, env: &Environment, files: &dyn Files) -> TlsFiles {
    let path = |k: Keyword, default: &str| {
        merged
            .get(k)
            .map(PathBuf::from)
            .or_else(|| home_file(env, default))
    };
    let root_cert = path(Keyword::SslRootCert, ".postgresql/root.crt");
    let root_cert_exists = root_cert.as_deref().is_some_and(|p| files.exists(p));
    let client_cert =
        path(Keyword::SslCert, ".postgresql/postgresql.crt").filter(|p| files.exists(p));
    let client_key = client_cert
        .as_ref()
        .and_then(|_| path(Keyword::SslKey, ".postgresql/postgresql.key"));
    TlsFiles {
        root_cert,
        root_cert_exists,
        client_cert,
        client_key,
    }
}

fn parse_enum<T: Copy>(
    merged: &Params,
    key: Keyword,
    default: T,
    table: &[(&str, T)],
) -> Result<T, ResolveError> {
    match merged.get(key) {
        None => Ok(default),
        Some(v) => table
            .iter()
            .find(|(name, _)| *name == v)
            .map(|(_, t)| *t)
            .ok_or_else(|| invalid_value(key, v)),
    }
}

/// libpq: zero or negative waits forever; anything below two seconds is raised to two.
fn connect_timeout(merged: &Params) -> Result<Option<Duration>, ResolveError> {
    let Some(v) = merged.get(Keyword::ConnectTimeout) else {
        return Ok(None);
    };
    let secs: i64 = v
        .trim()
        .parse()
        .map_err(|_| invalid_value(Keyword::ConnectTimeout, v))?;
    Ok((secs > 0).then(|| Duration::from_secs(secs.max(2) as u64)))
}

/// Resolves the connection settings. See the module documentation of [`crate::conn`]
/// for the precedence rules.
pub fn resolve(
    req: &ConnRequest,
    env: &Environment,
    files: &dyn Files,
) -> Result<Settings, ResolveError> {
    let merged = merge_layers(req, env, files)?;
    let mut warnings: Vec<String> = merged
        .ignored
        .iter()
        .map(|k| format!("connection option \"{k}\" is not supported by tviews and was ignored"))
        .collect();

    let user = merged
        .get(Keyword::User)
        .or(env.os_user())
        .ok_or(ResolveError::NoUser)?
        .to_string();
    let dbname = merged.get(Keyword::DbName).unwrap_or(&user).to_string();
    let sslmode = match merged.get(Keyword::SslMode) {
        Some(s) => s.parse()?,
        None => SslMode::Prefer,
    };

    let passfile = merged
        .get(Keyword::PassFile)
        .map(PathBuf::from)
        .or_else(|| home_file(env, ".pgpass"));
    let explicit_password = merged.get(Keyword::Password).map(|value| Password {
        value: value.to_string(),
        source: PasswordSource::Setting(
            merged
                .source(Keyword::Password)
                .cloned()
                .unwrap_or(Source::Flag),
        ),
    });

    let mut targets = targets(&merged, files)?;
    for target in &mut targets {
        if explicit_password.is_some() {
            target.password = explicit_password.clone();
            continue;
        }
        let Some(passfile) = &passfile else { continue };
        let port = target.port.to_string();
        let found = read_password(files, passfile, &pass_query(target, &port, &dbname, &user));
        if let Some(w) = found.warning.filter(|w| !warnings.contains(w)) {
            warnings.push(w);
        }
        target.password = found.password.map(|value| Password {
            value,
            source: PasswordSource::PassFile(passfile.clone()),
        });
    }

    Ok(Settings {
        targets,
        user,
        dbname,
        sslmode,
        tls: tls_files(&merged, env, files),
        application_name: merged.get(Keyword::ApplicationName).map(str::to_string),
        fallback_application_name: merged
            .get(Keyword::FallbackApplicationName)
            .unwrap_or(FALLBACK_APPLICATION_NAME)
            .to_string(),
        connect_timeout: connect_timeout(&merged)?,
        options: merged.get(Keyword::Options).map(str::to_string),
        target_session_attrs: parse_enum(
            &merged,
            Keyword::TargetSessionAttrs,
            TargetSessionAttrs::Any,
            &[
                ("any", TargetSessionAttrs::Any),
                ("read-write", TargetSessionAttrs::ReadWrite),
                ("read-only", TargetSessionAttrs::ReadOnly),
            ],
        )?,
        channel_binding: parse_enum(
            &merged,
            Keyword::ChannelBinding,
            ChannelBinding::Prefer,
            &[
                ("disable", ChannelBinding::Disable),
                ("prefer", ChannelBinding::Prefer),
                ("require", ChannelBinding::Require),
            ],
        )?,
        passfile,
        warnings,
    })
}
