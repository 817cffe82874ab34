//! What the console shows: one `pg_tviews_snapshot()` document per tick.
//!
//! **Provisional until the observability issue fixes the SQL contract.** The field names below are
//! the console's proposal; the extension's snapshot function is the authority once it exists, and
//! `schema_version` is how the two stay in step (STYLE.md item 10: one versioned call, never a
//! scatter of queries that drift from the extension).
//!
//! Timestamps (`server_time`, `stats_since`, `since`, `prepared_at`) are **microseconds since the
//! Unix epoch, as JSON numbers**, read from the server's clock, e.g.
//! `extract(epoch from clock_timestamp()) * 1000000`. A number rather than an RFC 3339 string
//! because the console only ever subtracts them (rates, ages) and should not need a date library;
//! `f64` rather than `i64` because PostgreSQL's `extract` returns `numeric` with a fractional part,
//! which `i64` would refuse, and `f64` is exact for microsecond epochs for centuries to come.
//!
//! Counters in [`TviewStats`] and [`CacheStats`] are cumulative since `stats_since`; the console
//! turns them into per-second rates itself (see `app`).

use serde::{Deserialize, Serialize};

/// The only `schema_version` this build of the console understands.
pub const SUPPORTED_SCHEMA_VERSION: u32 = 1;

/// Microseconds since the Unix epoch, on the server's clock.
pub type EpochMicros = f64;

/// One poll of `pg_tviews_snapshot()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub schema_version: u32,
    /// When the server took this snapshot; rates divide by differences of this, never by the
    /// console's own clock, so a slow network does not distort them.
    pub server_time: EpochMicros,
    /// When the cumulative counters last started from zero (preload, or an explicit reset). A
    /// change means counters restarted and the next deltas are meaningless.
    pub stats_since: EpochMicros,
    #[serde(default)]
    pub tviews: Vec<TviewStats>,
    /// The dependency graph: `from` is a source (table or TVIEW), `to` the TVIEW reading it.
    #[serde(default)]
    pub edges: Vec<Edge>,
    /// What each backend has queued for refresh in its open transaction, right now.
    #[serde(default)]
    pub queues: Vec<BackendQueue>,
    #[serde(default)]
    pub cache: CacheStats,
    /// Prepared (2PC) transactions still holding TVIEW work.
    #[serde(default)]
    pub prepared: Vec<PreparedXact>,
}

/// Cumulative counters for one TVIEW, plus its current size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TviewStats {
    /// Schema-qualified name, as the user would type it.
    pub name: String,
    /// Current row count (a gauge, not a counter).
    pub rows: u64,
    pub refreshes: u64,
    /// Distinct keys refreshed.
    pub keys: u64,
    pub rows_written: u64,
    /// Rows recomputed but left alone because they were unchanged.
    pub rows_skipped: u64,
    /// Total time spent refreshing, in milliseconds.
    pub refresh_time_ms: f64,
    #[serde(default)]
    pub cascades: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub lock_waits: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendQueue {
    pub pid: i32,
    pub tview: String,
    pub keys_pending: u64,
    /// Free text from the extension for now (e.g. "capture", "flush"); an enum once it settles.
    pub phase: String,
    pub since: EpochMicros,
}

/// Plan-cache counters, cumulative since `stats_since`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub invalidations: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedXact {
    pub gid: String,
    pub owner: String,
    pub prepared_at: EpochMicros,
    pub tviews: Vec<String>,
    pub keys: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "snapshot schema_version {found} is not supported by this console (it reads version \
         {SUPPORTED_SCHEMA_VERSION}); use a `tviews` built for this extension version"
    )]
    UnsupportedVersion { found: u32 },
    #[error("snapshot is not valid JSON for schema_version {SUPPORTED_SCHEMA_VERSION}: {0}")]
    Malformed(#[source] serde_json::Error),
}

/// Parses one snapshot document, refusing any schema version but [`SUPPORTED_SCHEMA_VERSION`].
///
/// The version is read on its own first, so a newer extension gets the clear "unsupported
/// version" message instead of whichever field happened to change first.
pub fn parse(json: &str) -> Result<Snapshot, SnapshotError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        schema_version: u32,
    }
    let version: VersionOnly = serde_json::from_str(json).map_err(SnapshotError::Malformed)?;
    if version.schema_version != SUPPORTED_SCHEMA_VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            found: version.schema_version,
        });
    }
    serde_json::from_str(json).map_err(SnapshotError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minimal_document_with_defaults() {
        let snap = parse(r#"{"schema_version":1,"server_time":2.5e15,"stats_since":1e15}"#)
            .expect("minimal snapshot parses");
        assert!(snap.tviews.is_empty());
        assert_eq!(snap.cache, CacheStats::default());
    }

    #[test]
    fn refuses_unknown_version_before_looking_at_other_fields() {
        let err = parse(r#"{"schema_version":2,"server_time":"tomorrow"}"#).unwrap_err();
        assert!(matches!(
            err,
            SnapshotError::UnsupportedVersion { found: 2 }
        ));
        assert!(
            err.to_string()
                .contains("schema_version 2 is not supported")
        );
    }

    #[test]
    fn reports_malformed_documents() {
        let err = parse(r#"{"schema_version":1}"#).unwrap_err();
        assert!(matches!(err, SnapshotError::Malformed(_)));
    }
}
