//! Opening the connection: tries each target in order, with the TLS fallbacks of
//! [`super::tls::plan`], prompting for a password the way psql does.

use std::error::Error as _;
use std::fmt;
use std::io;

use tokio_postgres::config::{
    ChannelBinding as PgChannelBinding, SslMode as PgSslMode,
    TargetSessionAttrs as PgTargetSessionAttrs,
};
use tokio_postgres::{Client, Config};

use super::resolve::{
    ChannelBinding, HostSpec, Password, PasswordSource, ResolveError, Settings, Target,
    TargetSessionAttrs,
};
use super::tls::{self, Plan, RetryWhen, Tls};

/// psql's `-w` / `-W` / neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordPolicy {
    /// `-w`: never prompt; fail if the server wants a password we do not have.
    Never,
    /// Default: prompt once if the server asks for a password and none is known.
    IfRequired,
    /// `-W`: prompt before connecting.
    Always,
}

impl PasswordPolicy {
    /// Without a terminal on stdin, psql's default prompt cannot be answered: behave as
    /// `-w` rather than hang a script. `-W` is honoured regardless (the prompt reads
    /// from the terminal itself and fails cleanly without one).
    pub fn from_flags(no_password: bool, force_prompt: bool, stdin_is_terminal: bool) -> Self {
        if force_prompt {
            PasswordPolicy::Always
        } else if no_password || !stdin_is_terminal {
            PasswordPolicy::Never
        } else {
            PasswordPolicy::IfRequired
        }
    }
}

/// Why one target could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptFailure {
    /// `server on socket "..."` or `server at "...", port N`.
    pub target: String,
    pub user: String,
    pub dbname: String,
    /// The error, possibly several lines (`FATAL:  ...`, `DETAIL:  ...`).
    pub message: String,
    /// psql's follow-up lines ("Is the server running...").
    pub hints: Vec<String>,
}

impl fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection to {} (user \"{}\", database \"{}\") failed: {}",
            self.target, self.user, self.dbname, self.message
        )?;
        for hint in &self.hints {
            write!(f, "\n\t{hint}")?;
        }
        Ok(())
    }
}

/// No connection could be made. Maps to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{}", join_failures(.0))]
    Failed(Vec<AttemptFailure>),
}

fn join_failures(failures: &[AttemptFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// An open connection. The connection's I/O runs on a spawned task that ends when
/// `client` is dropped.
pub struct Connected {
    pub client: Client,
    /// The target that accepted the connection.
    pub target: Target,
}

/// The tokio-postgres configuration for one attempt at one target.
pub fn pg_config(
    settings: &Settings,
    target: &Target,
    tls: Tls,
    password: Option<&Password>,
) -> Config {
    let mut config = Config::new();
    config
        .user(&settings.user)
        .dbname(&settings.dbname)
        .port(target.port)
        .application_name(
            settings
                .application_name
                .as_deref()
                .unwrap_or(&settings.fallback_application_name),
        )
        .ssl_mode(match tls {
            Tls::Off => PgSslMode::Disable,
            Tls::IfOffered(_) => PgSslMode::Prefer,
            Tls::Required(_) => PgSslMode::Require,
        })
        .target_session_attrs(match settings.target_session_attrs {
            TargetSessionAttrs::Any => PgTargetSessionAttrs::Any,
            TargetSessionAttrs::ReadWrite => PgTargetSessionAttrs::ReadWrite,
            TargetSessionAttrs::ReadOnly => PgTargetSessionAttrs::ReadOnly,
        })
        .channel_binding(match settings.channel_binding {
            ChannelBinding::Disable => PgChannelBinding::Disable,
            ChannelBinding::Prefer => PgChannelBinding::Prefer,
            ChannelBinding::Require => PgChannelBinding::Require,
        });
    match &target.host {
        HostSpec::Socket(dir) => config.host_path(dir),
        HostSpec::Tcp(host) => config.host(host),
    };
    if let Some(addr) = target.hostaddr {
        config.hostaddr(addr);
    }
    if let Some(p) = password {
        config.password(p.value.as_bytes());
    }
    if let Some(t) = settings.connect_timeout {
        config.connect_timeout(t);
    }
    if let Some(o) = &settings.options {
        config.options(o);
    }
    config
}

/// The error's text followed by its causes: tokio-postgres's Display shows only the
/// error kind ("invalid configuration"), the cause says what happened.
fn error_chain(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// tokio-postgres reports "the server asked for a password and none was configured" only
/// as a configuration error with this cause text; there is no error kind to match on.
fn is_password_missing(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_none() && error_chain(e).ends_with("password missing")
}

/// tokio-postgres's Display for a failed handshake (`Kind::Tls`).
fn is_tls_failure(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_none() && e.to_string().starts_with("error performing TLS handshake")
}

async fn attempt(
    settings: &Settings,
    target: &Target,
    tls: Tls,
    password: Option<&Password>,
) -> Result<Client, AttemptError> {
    let connector = tls::connector(tls, &settings.tls).map_err(AttemptError::Setup)?;
    let config = pg_config(settings, target, tls, password);
    let (client, connection) = config.connect(connector).await.map_err(AttemptError::Pg)?;
    tokio::spawn(async move {
        // An error here also fails the client's next call, which reports it; printing
        // it here too would say the same thing twice.
        let _ = connection.await;
    });
    Ok(client)
}

enum AttemptError {
    Setup(String),
    Pg(tokio_postgres::Error),
}

async fn attempt_plan(
    settings: &Settings,
    target: &Target,
    plan: Plan,
    password: Option<&Password>,
) -> Result<Client, AttemptError> {
    let first = attempt(settings, target, plan.first, password).await;
    match (first, plan.fallback) {
        (Err(AttemptError::Pg(e)), Some((when, tls)))
            if match when {
                RetryWhen::ServerRejected => e.as_db_error().is_some(),
                RetryWhen::TlsFailed => is_tls_failure(&e),
            } =>
        {
            attempt(settings, target, tls, password).await
        }
        (result, _) => result,
    }
}

/// Turns a tokio-postgres error into libpq-like text plus psql's hints.
pub fn describe_error(
    e: &tokio_postgres::Error,
    target: &Target,
    password: Option<&Password>,
) -> (String, Vec<String>) {
    let mut hints = Vec::new();
    if let Some(db) = e.as_db_error() {
        let mut msg = format!("{}:  {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            msg.push_str(&format!("\nDETAIL:  {d}"));
        }
        if let Some(h) = db.hint() {
            msg.push_str(&format!("\nHINT:  {h}"));
        }
        if db.code() == &tokio_postgres::error::SqlState::INVALID_PASSWORD
            && let Some(Password {
                source: PasswordSource::PassFile(path),
                ..
            }) = password
        {
            hints.push(format!(
                "password retrieved from file \"{}\"",
                path.display()
            ));
        }
        return (msg, hints);
    }
    if is_password_missing(e) {
        return ("fe_sendauth: no password supplied".to_string(), hints);
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>()
            && matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
            )
        {
            hints.push(if target.is_socket() {
                "Is the server running locally and accepting connections on that socket?"
                    .to_string()
            } else {
                "Is the server running on that host and accepting TCP/IP connections?".to_string()
            });
        }
        source = s.source();
    }
    // "error connecting to server: Connection refused (os error 111)"
    (error_chain(e), hints)
}

/// Connects to the first target that accepts, like libpq with a host list.
///
/// `ask` reads a password from the user (given the prompt text); it is called at most
/// once, as `policy` allows.
pub async fn connect(
    settings: &Settings,
    policy: PasswordPolicy,
    ask: &mut dyn FnMut(&str) -> io::Result<String>,
) -> Result<Connected, ConnectError> {
    let prompt_text = format!("Password for user {}: ", settings.user);
    let mut prompted: Option<Password> = None;
    let mut failures = Vec::new();
    let failure = |target: &Target, message: String, hints: Vec<String>| AttemptFailure {
        target: target.to_string(),
        user: settings.user.clone(),
        dbname: settings.dbname.clone(),
        message,
        hints,
    };
    let read_password = |ask: &mut dyn FnMut(&str) -> io::Result<String>| {
        ask(&prompt_text).map(|value| Password {
            value,
            source: PasswordSource::Prompt,
        })
    };

    if policy == PasswordPolicy::Always {
        match read_password(ask) {
            Ok(p) => prompted = Some(p),
            Err(e) => {
                let first = settings
                    .targets
                    .first()
                    .map(|t| failure(t, format!("could not read password: {e}"), vec![]));
                return Err(ConnectError::Failed(first.into_iter().collect()));
            }
        }
    }

    for (target, plan) in settings.targets.iter().zip(tls::plans(settings)) {
        let plan = match plan {
            Ok(p) => p,
            Err(msg) => {
                failures.push(failure(target, msg, vec![]));
                continue;
            }
        };
        loop {
            let password = prompted.as_ref().or(target.password.as_ref());
            match attempt_plan(settings, target, plan, password).await {
                Ok(client) => {
                    return Ok(Connected {
                        client,
                        target: target.clone(),
                    });
                }
                Err(AttemptError::Pg(e))
                    if is_password_missing(&e)
                        && prompted.is_none()
                        && policy == PasswordPolicy::IfRequired =>
                {
                    match read_password(ask) {
                        Ok(p) => prompted = Some(p),
                        Err(read_err) => {
                            failures.push(failure(
                                target,
                                format!("could not read password: {read_err}"),
                                vec![],
                            ));
                            break;
                        }
                    }
                }
                Err(AttemptError::Pg(e)) => {
                    let (message, hints) = describe_error(&e, target, password);
                    failures.push(failure(target, message, hints));
                    break;
                }
                Err(AttemptError::Setup(message)) => {
                    failures.push(failure(target, message, vec![]));
                    break;
                }
            }
        }
    }
    Err(ConnectError::Failed(failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy_like_psql() {
        assert_eq!(
            PasswordPolicy::from_flags(false, false, true),
            PasswordPolicy::IfRequired
        );
        assert_eq!(
            PasswordPolicy::from_flags(true, false, true),
            PasswordPolicy::Never
        );
        assert_eq!(
            PasswordPolicy::from_flags(false, false, false),
            PasswordPolicy::Never
        );
        assert_eq!(
            PasswordPolicy::from_flags(false, true, false),
            PasswordPolicy::Always
        );
    }

    #[test]
    fn failure_names_target_user_and_database() {
        let f = AttemptFailure {
            target: "server on socket \"/tmp/.s.PGSQL.1\"".into(),
            user: "alice".into(),
            dbname: "app".into(),
            message: "error connecting to server: No such file or directory (os error 2)".into(),
            hints: vec![
                "Is the server running locally and accepting connections on that socket?".into(),
            ],
        };
        assert_eq!(
            f.to_string(),
            "connection to server on socket \"/tmp/.s.PGSQL.1\" (user \"alice\", database \"app\") \
             failed: error connecting to server: No such file or directory (os error 2)\n\
             \tIs the server running locally and accepting connections on that socket?"
        );
    }
}
