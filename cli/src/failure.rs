//! How a command fails: psql's exit codes and psql's way of printing server errors.
//!
//! | code | meaning                                                        |
//! |------|----------------------------------------------------------------|
//! | 0    | success (also: "extension not installed", which is information) |
//! | 1    | an error: bad usage, a server error (SQLSTATE), anything else   |
//! | 2    | no connection: could not connect, or the connection was lost   |

use std::fmt::Write as _;

use crate::conn::ConnectError;

pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_CONNECTION: u8 = 2;

/// A server error with the fields psql shows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServerError {
    /// `ERROR`, `FATAL`, ...
    pub severity: String,
    /// The SQLSTATE, e.g. `42P01`.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// Where in a PL/pgSQL function or cascade it happened.
    pub context: Option<String>,
}

impl From<&tokio_postgres::error::DbError> for ServerError {
    fn from(db: &tokio_postgres::error::DbError) -> Self {
        ServerError {
            severity: db.severity().to_string(),
            code: db.code().code().to_string(),
            message: db.message().to_string(),
            detail: db.detail().map(str::to_string),
            hint: db.hint().map(str::to_string),
            context: db.where_().map(str::to_string),
        }
    }
}

impl ServerError {
    /// psql's layout (`ERROR:  message`, two spaces), plus the SQLSTATE on its own line
    /// so that scripts and bug reports have it without `\set VERBOSITY verbose`.
    pub fn render(&self) -> String {
        let mut s = format!("{}:  {}\n", self.severity, self.message);
        // Writing into a String cannot fail.
        if let Some(d) = &self.detail {
            let _ = writeln!(s, "DETAIL:  {d}");
        }
        if let Some(h) = &self.hint {
            let _ = writeln!(s, "HINT:  {h}");
        }
        if let Some(c) = &self.context {
            let _ = writeln!(s, "CONTEXT:  {c}");
        }
        let _ = writeln!(s, "SQLSTATE: {}", self.code);
        s
    }
}

/// What a command that ran to the end prints, and how the process exits: a command can
/// succeed in running and still report a failure (`verify` finding a difference exits
/// 1, with the differences on stdout).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    /// Printed after stdout, e.g. the server error a refresh would end with.
    pub stderr: String,
    pub code: u8,
}

impl Outcome {
    pub fn ok(stdout: String) -> Outcome {
        Outcome {
            stdout,
            stderr: String::new(),
            code: EXIT_OK,
        }
    }
}

/// Everything a subcommand can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{}", .0.message)]
    Server(ServerError),
    #[error("connection to server was lost: {0}")]
    ConnectionLost(String),
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            Failure::Server(db.into())
        } else if e.is_closed() {
            Failure::ConnectionLost(e.to_string())
        } else {
            Failure::Other(e.into())
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        // A database error wrapped in context keeps its special treatment.
        match e.downcast::<tokio_postgres::Error>() {
            Ok(pg) => pg.into(),
            Err(other) => Failure::Other(other),
        }
    }
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Connect(_) | Failure::ConnectionLost(_) => EXIT_CONNECTION,
            Failure::Server(_) | Failure::Other(_) => EXIT_ERROR,
        }
    }

    /// The text for stderr, ending in a newline.
    pub fn render(&self) -> String {
        match self {
            Failure::Server(e) => e.render(),
            other => format!("tviews: error: {other}\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{AttemptFailure, ResolveError};

    fn server_error() -> ServerError {
        ServerError {
            severity: "ERROR".into(),
            code: "42P01".into(),
            message: "relation \"tviews.tview\" does not exist".into(),
            detail: Some("The catalog is missing.".into()),
            hint: Some("Run CREATE EXTENSION pg_tviews.".into()),
            context: None,
        }
    }

    #[test]
    fn exit_codes_like_psql() {
        let connect = Failure::Connect(ConnectError::Failed(vec![]));
        assert_eq!(connect.exit_code(), EXIT_CONNECTION);
        let resolve = Failure::Connect(ConnectError::Resolve(ResolveError::NoUser));
        assert_eq!(resolve.exit_code(), EXIT_CONNECTION);
        assert_eq!(
            Failure::ConnectionLost("x".into()).exit_code(),
            EXIT_CONNECTION
        );
        assert_eq!(Failure::Server(server_error()).exit_code(), EXIT_ERROR);
        assert_eq!(
            Failure::Other(anyhow::anyhow!("boom")).exit_code(),
            EXIT_ERROR
        );
    }

    #[test]
    fn server_error_renders_like_psql() {
        insta::assert_snapshot!(Failure::Server(server_error()).render(), @r#"
        ERROR:  relation "tviews.tview" does not exist
        DETAIL:  The catalog is missing.
        HINT:  Run CREATE EXTENSION pg_tviews.
        SQLSTATE: 42P01
        "#);
        let bare = ServerError {
            detail: None,
            hint: None,
            ..server_error()
        };
        assert_eq!(
            bare.render(),
            "ERROR:  relation \"tviews.tview\" does not exist\nSQLSTATE: 42P01\n"
        );
    }

    #[test]
    fn connection_failure_renders_every_attempt() {
        let attempt = |target: &str, msg: &str| AttemptFailure {
            target: target.into(),
            user: "postgres".into(),
            dbname: "postgres".into(),
            message: msg.into(),
            hints: vec![],
        };
        let f = Failure::Connect(ConnectError::Failed(vec![
            attempt(
                "server at \"a\", port 1",
                "error connecting to server: refused",
            ),
            attempt("server at \"b\", port 2", "FATAL:  no pg_hba.conf entry"),
        ]));
        insta::assert_snapshot!(f.render(), @r#"
        tviews: error: connection to server at "a", port 1 (user "postgres", database "postgres") failed: error connecting to server: refused
        connection to server at "b", port 2 (user "postgres", database "postgres") failed: FATAL:  no pg_hba.conf entry
        "#);
    }

    #[test]
    fn other_errors_show_their_context_chain() {
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(Failure::from(e).render(), "tviews: error: outer: inner\n");
    }
}
