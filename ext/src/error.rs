//! Reporting errors to the client with SQLSTATE, detail and hint.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use tviews_core::TviewError;

/// Raises `err` as a PostgreSQL ERROR. Never returns.
pub fn raise(err: &TviewError) -> ! {
    raise_with(err.sqlstate(), err.to_string(), err.detail(), err.hint())
}

/// Raises an ERROR with an explicit SQLSTATE (five characters).
pub fn raise_with(
    sqlstate: &str,
    message: impl Into<String>,
    detail: Option<String>,
    hint: Option<String>,
) -> ! {
    let mut report = ErrorReport::new(sqlstate_code(sqlstate), message.into(), function_name());
    if let Some(d) = detail {
        report = report.set_detail(d);
    }
    if let Some(h) = hint {
        report = report.set_hint(h);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

fn function_name() -> &'static str {
    "pg_tviews"
}

/// Maps a five-character SQLSTATE to pgrx's enum (unknown codes become
/// internal_error rather than being lost).
pub fn sqlstate_code(s: &str) -> PgSqlErrorCode {
    let b = s.as_bytes();
    if b.len() != 5 {
        return PgSqlErrorCode::ERRCODE_INTERNAL_ERROR;
    }
    // MAKE_SQLSTATE: six bits per character, '0'-based.
    let code = b.iter().enumerate().fold(0i32, |acc, (i, c)| {
        acc | ((i32::from(*c) - i32::from(b'0')) & 0x3F) << (6 * i)
    });
    PgSqlErrorCode::from(code)
}

/// Unwraps an internal result, raising internal_error on failure. For
/// conditions that are bugs, not user errors.
pub trait OrRaise<T> {
    fn or_raise(self, context: &str) -> T;
}

impl<T, E: std::fmt::Display> OrRaise<T> for Result<T, E> {
    fn or_raise(self, context: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise(&TviewError::Internal(format!("{context}: {e}"))),
        }
    }
}
