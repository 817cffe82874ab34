//! What the console shows: one `pg_tviews_snapshot()` document per tick.
//!
//! The extension defines the document (`ext/sql/finalize.sql`, `schema_version` 1); this module
//! is its reader, tested against the real function by `tests/tests/monitoring.rs`. Fields the
//! console does not use yet are still read where they are cheap, so a recording replays with
//! everything the server said; unknown fields are ignored, so the extension can add fields
//! within a version. A different `schema_version` is refused with a message that says what to
//! do, before any other field is looked at.
//!
//! Timestamps (`server_time`, `stats_since`, `since`, `prepared_at`, `last_refresh`) are
//! **microseconds since the Unix epoch on the server's clock**, as JSON numbers
//! (`extract(epoch FROM ...) * 1e6`, a `numeric` with a fractional part, hence `f64`, which is
//! exact for microsecond epochs for centuries). The console only subtracts them (rates, ages),
//! so it needs neither a date library nor the client's clock.
//!
//! Counters in [`TviewStats`], [`SourceStats`] and [`CacheStats`] are cumulative since
//! `stats_since` (shared memory, reset by `pg_tviews_stats_reset()` and by a server restart);
//! the console turns them into per-second rates itself (see [`crate::rates`]).

use serde::{Deserialize, Serialize};

/// The only `schema_version` this build of the console understands.
pub const SUPPORTED_SCHEMA_VERSION: u32 = 1;

/// Microseconds since the Unix epoch, on the server's clock.
pub type EpochMicros = f64;

/// One call of `pg_tviews_snapshot()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub schema_version: u32,
    /// `clock_timestamp()` when the server built the document; rates divide by differences of
    /// this, never by the console's own clock, so a slow network does not distort them.
    pub server_time: EpochMicros,
    /// When the cumulative counters last started from zero (shared memory created at server
    /// start, or `pg_tviews_stats_reset()`); 0 without `shared_preload_libraries`. A change
    /// means the counters restarted: the console shows a reset, never a negative rate.
    pub stats_since: EpochMicros,
    /// False without `shared_preload_libraries = 'pg_tviews'`: every counter is zero and the
    /// live queue is empty (pg_tviews itself works).
    #[serde(default = "yes")]
    pub preloaded: bool,
    /// The database the snapshot describes (TVIEWs, graph, prepared transactions); the live
    /// queue lists every database's backends.
    #[serde(default)]
    pub database: String,
    /// Every TVIEW of the database, by name (`pg_tviews_stats`).
    #[serde(default)]
    pub tviews: Vec<TviewStats>,
    /// The dependency graph: `from` is a source (table or TVIEW), `to` the TVIEW reading it
    /// (`pg_tviews_sources()`).
    #[serde(default)]
    pub edges: Vec<Edge>,
    /// What each backend has pending right now, every database (`pg_tviews_queue_realtime`).
    #[serde(default)]
    pub queues: Vec<BackendQueue>,
    /// Plan-cache counters (`pg_tviews_cache_stats`).
    #[serde(default)]
    pub cache: CacheStats,
    /// Prepared (2PC) transactions holding TVIEW work (`pg_tviews_prepared`).
    #[serde(default)]
    pub prepared: Vec<PreparedXact>,
    /// Sessions waiting for a value lock, and who holds it (`pg_tviews_lock_waits`).
    #[serde(default)]
    pub lock_waits: Vec<LockWait>,
    /// What the writers of each source table spent capturing (`pg_tviews_source_stats`).
    #[serde(default)]
    pub sources: Vec<SourceStats>,
}

fn yes() -> bool {
    true
}

/// One TVIEW: cumulative counters since `stats_since`, plus its current size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TviewStats {
    /// The name as the views show it: `name` in `public`, `schema.name` elsewhere.
    pub name: String,
    /// Estimated row count (`pg_class.reltuples`; 0 before the first ANALYZE): a gauge.
    pub rows: u64,
    pub size_bytes: u64,
    /// Flushes that refreshed this TVIEW.
    pub refreshes: u64,
    /// Keys recomputed.
    pub keys: u64,
    /// Rows inserted, updated or deleted.
    pub rows_written: u64,
    /// Rows recomputed but left alone because they were byte-identical.
    pub rows_skipped: u64,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Time spent refreshing, in milliseconds; split into lock, derive and apply.
    pub refresh_time_ms: f64,
    pub lock_ms: f64,
    pub derive_ms: f64,
    pub apply_ms: f64,
    /// Keys that reached this TVIEW through a cascade from another TVIEW.
    pub cascades: u64,
    pub full_rebuilds: u64,
    /// Refreshes that failed (their transaction rolled back).
    pub errors: u64,
    /// Times a refresh waited for a value lock, and for how long in total.
    pub lock_waits: u64,
    pub lock_wait_ms: f64,
    /// Longest chain of TVIEWs below it (0: it reads tables only).
    pub depth: u32,
    /// When it was last refreshed, if ever since `stats_since`.
    pub last_refresh: Option<EpochMicros>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// Any change of `from` rebuilds the whole of `to` (no key path).
    #[serde(default)]
    pub full_rebuild: bool,
}

/// One backend with TVIEW work in its open transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendQueue {
    pub pid: i32,
    /// `None` when the database was dropped meanwhile.
    #[serde(default)]
    pub database: Option<String>,
    /// The TVIEW being refreshed; empty when the work is the whole transaction's (queueing
    /// keys, taking a flush round's value locks), or when the backend is in another database.
    #[serde(default)]
    pub tview: String,
    /// Without a TVIEW: keys and start values the transaction has queued, all TVIEWs together;
    /// in `applying`: the keys of the TVIEW being written; otherwise 0.
    pub keys_pending: u64,
    /// `queued`, `locking`, `deriving` or `applying`.
    pub phase: String,
    /// When the backend entered this phase.
    #[serde(default)]
    pub since: Option<EpochMicros>,
    /// The value lock it waits for, e.g. `tb_category: pk_category = 1`.
    #[serde(default)]
    pub waiting_for: Option<String>,
}

/// Plan-cache (registry) counters, cumulative since `stats_since`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
    /// The TVIEWs it wrote (it holds them `ROW EXCLUSIVE` until it ends).
    #[serde(default)]
    pub tviews: Vec<String>,
    /// The value locks it holds (`pg_tviews_prepared.value_locks`): the keys and join values
    /// its writes and refreshes locked, which writers of the same values wait for.
    #[serde(default)]
    pub keys: u64,
}

/// A session waiting for a value lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockWait {
    pub waiting_pid: i32,
    /// The relation the value belongs to.
    #[serde(default)]
    pub relation: Option<String>,
    /// The value, e.g. `tb_category: pk_category = 1` (known while the waiter is in `locking`).
    #[serde(default)]
    pub waiting_for: Option<String>,
    /// The holder: a backend, or a prepared transaction.
    #[serde(default)]
    pub holder_pid: Option<i32>,
    #[serde(default)]
    pub holder_gid: Option<String>,
    /// Since the waiter entered its `locking` phase.
    #[serde(default)]
    pub waiting_ms: Option<f64>,
}

/// What the writers of one source relation spent on TVIEWs, cumulative since `stats_since`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceStats {
    pub name: String,
    /// Statements whose changes were captured.
    pub captures: u64,
    pub rows_captured: u64,
    pub capture_ms: f64,
    pub refresh_ms: f64,
}

impl Snapshot {
    pub fn tview(&self, name: &str) -> Option<&TviewStats> {
        self.tviews.iter().find(|t| t.name == name)
    }

    pub fn source(&self, name: &str) -> Option<&SourceStats> {
        self.sources.iter().find(|s| s.name == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "pg_tviews_snapshot() returned schema_version {found}, and this console reads only \
         version {SUPPORTED_SCHEMA_VERSION}: use the `tviews` built with the installed pg_tviews"
    )]
    UnsupportedVersion { found: u32 },
    #[error("the snapshot is not a valid schema_version {SUPPORTED_SCHEMA_VERSION} document: {0}")]
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
        assert!(snap.tviews.is_empty() && snap.lock_waits.is_empty());
        assert_eq!(snap.cache, CacheStats::default());
        assert!(snap.preloaded);
    }

    /// The document as the extension writes it: numeric timestamps with six decimals, nulls
    /// for absent values, fields in jsonb's order, one the console does not know.
    #[test]
    fn parses_the_extensions_shapes() {
        let json = r#"{"cache": {"hits": 18, "misses": 21, "invalidations": 8},
          "edges": [{"to": "tv_review", "from": "tb_product", "full_rebuild": false}],
          "queues": [{"pid": 17214, "phase": "locking", "since": 1795666693515793.000000,
                      "tview": "tv_review", "database": "shop",
                      "waiting_for": "tb_category: pk_category = 1", "keys_pending": 0}],
          "tviews": [{"keys": 0, "name": "tv_category", "rows": 20, "depth": 1, "errors": 0,
                      "lock_ms": 0, "refreshes": 0, "size_bytes": 49152, "last_refresh": null,
                      "rows_written": 0, "refresh_time_ms": 0.25, "something_new": [1]}],
          "sources": [{"name": "tb_category", "captures": 1, "capture_ms": 0.388,
                       "refresh_ms": 0, "rows_captured": 2}],
          "database": "shop",
          "prepared": [{"gid": "held_1", "keys": 154, "owner": "postgres",
                        "tviews": ["tv_category"], "prepared_at": 1795666693456250.000000}],
          "preloaded": true,
          "lock_waits": [{"relation": "tb_category", "holder_gid": "held_1", "holder_pid": null,
                          "waiting_ms": 2960.577000, "waiting_for": "tb_category: pk_category = 1",
                          "waiting_pid": 17214}],
          "server_time": 1795666696467653.000000, "stats_since": 1795666675010535.000000,
          "schema_version": 1}"#;
        let snap = parse(json).expect("the extension's document parses");
        assert_eq!(snap.tviews[0].depth, 1);
        assert_eq!(snap.tviews[0].last_refresh, None);
        assert_eq!(snap.queues[0].since, Some(1_795_666_693_515_793.0));
        assert_eq!(snap.lock_waits[0].holder_gid.as_deref(), Some("held_1"));
        assert_eq!(snap.prepared[0].keys, 154);
        assert_eq!(snap.source("tb_category").map(|s| s.rows_captured), Some(2));
    }

    #[test]
    fn refuses_unknown_version_before_looking_at_other_fields() {
        let err = parse(r#"{"schema_version":2,"server_time":"tomorrow"}"#).unwrap_err();
        assert!(matches!(
            err,
            SnapshotError::UnsupportedVersion { found: 2 }
        ));
        assert!(err.to_string().contains("schema_version 2"), "{err}");
        assert!(err.to_string().contains("reads only version 1"), "{err}");
    }

    #[test]
    fn reports_malformed_documents() {
        let err = parse(r#"{"schema_version":1}"#).unwrap_err();
        assert!(matches!(err, SnapshotError::Malformed(_)));
        assert!(parse("not json").is_err());
    }
}
