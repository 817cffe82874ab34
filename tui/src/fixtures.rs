//! Snapshots built by hand for the unit tests of the rates and the app.

use crate::snapshot::{SUPPORTED_SCHEMA_VERSION, Snapshot, TviewStats};

/// A TVIEW's counters: `keys` keys refreshed and as many rows written.
pub fn tview(name: &str, refreshes: u64, keys: u64, time_ms: f64) -> TviewStats {
    TviewStats {
        name: name.into(),
        rows: 100,
        refreshes,
        keys,
        rows_written: keys,
        refresh_time_ms: time_ms,
        ..TviewStats::default()
    }
}

/// A snapshot taken at `seconds` on the server's clock, holding only `tviews`.
pub fn snap(seconds: f64, stats_since: f64, tviews: Vec<TviewStats>) -> Snapshot {
    Snapshot {
        schema_version: SUPPORTED_SCHEMA_VERSION,
        server_time: seconds * 1e6,
        stats_since,
        preloaded: true,
        database: "db".into(),
        tviews,
        edges: vec![],
        queues: vec![],
        cache: Default::default(),
        prepared: vec![],
        lock_waits: vec![],
        sources: vec![],
    }
}
