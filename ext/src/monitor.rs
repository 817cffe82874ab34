//! The monitoring API (DESIGN.md §8): raw readers of shared memory and the
//! registry, under SQL views and functions defined in `ext/sql/finalize.sql`
//! (`pg_tviews_stats`, `pg_tviews_source_stats`, `pg_tviews_queue_realtime`,
//! `pg_tviews_cache_stats`, `pg_tviews_performance_summary`,
//! `pg_tviews_lock_waits`, `pg_tviews_health_check()`,
//! `pg_tviews_snapshot()`). The CLI and the console read only those.

use std::sync::atomic::Ordering;

use pgrx::prelude::*;

use crate::registry;
use crate::shmem::{self, Phase};

fn ts(v: i64) -> Option<TimestampWithTimeZone> {
    if v == 0 {
        return None;
    }
    // SAFETY: a timestamptz is microseconds since the PostgreSQL epoch.
    unsafe { TimestampWithTimeZone::from_datum(pg_sys::Datum::from(v), false) }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn my_db() -> u32 {
    // SAFETY: reading the backend's database id.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// Per-TVIEW counters of this database from shared memory.
#[pg_extern(volatile, parallel_safe)]
#[allow(clippy::type_complexity)]
fn pg_tviews_stats_raw() -> TableIterator<
    'static,
    (
        name!(relid, pg_sys::Oid),
        name!(refreshes, i64),
        name!(keys, i64),
        name!(inserted, i64),
        name!(updated, i64),
        name!(deleted, i64),
        name!(skipped, i64),
        name!(cascaded_keys, i64),
        name!(full_rebuilds, i64),
        name!(errors, i64),
        name!(statements, i64),
        name!(time_ms, f64),
        name!(lock_ms, f64),
        name!(derive_ms, f64),
        name!(apply_ms, f64),
        name!(lock_waits, i64),
        name!(lock_wait_ms, f64),
        name!(last_refresh, Option<TimestampWithTimeZone>),
        name!(stats_since, Option<TimestampWithTimeZone>),
    ),
> {
    let mut rows = Vec::new();
    if let Some(sh) = shmem::shared() {
        let db = my_db();
        for s in &sh.tviews {
            let (d, rel) = shmem::split_key(s.key.load(Ordering::Acquire));
            if d != db || rel == 0 {
                continue;
            }
            let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as i64;
            rows.push((
                pg_sys::Oid::from(rel),
                g(&s.refreshes),
                g(&s.keys),
                g(&s.inserted),
                g(&s.updated),
                g(&s.deleted),
                g(&s.skipped),
                g(&s.cascaded),
                g(&s.full_rebuilds),
                g(&s.errors),
                g(&s.statements),
                ms(s.time_us.load(Ordering::Relaxed)),
                ms(s.lock_us.load(Ordering::Relaxed)),
                ms(s.derive_us.load(Ordering::Relaxed)),
                ms(s.apply_us.load(Ordering::Relaxed)),
                g(&s.lock_waits),
                ms(s.lock_wait_us.load(Ordering::Relaxed)),
                ts(s.last_refresh.load(Ordering::Relaxed)),
                ts(s.stats_since.load(Ordering::Relaxed)),
            ));
        }
    }
    TableIterator::new(rows)
}

/// Per-source counters of this database from shared memory.
#[pg_extern(volatile, parallel_safe)]
#[allow(clippy::type_complexity)]
fn pg_tviews_source_stats_raw() -> TableIterator<
    'static,
    (
        name!(relid, pg_sys::Oid),
        name!(captures, i64),
        name!(rows_captured, i64),
        name!(capture_ms, f64),
        name!(refresh_ms, f64),
        name!(stats_since, Option<TimestampWithTimeZone>),
    ),
> {
    let mut rows = Vec::new();
    if let Some(sh) = shmem::shared() {
        let db = my_db();
        for s in &sh.sources {
            let (d, rel) = shmem::split_key(s.key.load(Ordering::Acquire));
            if d != db || rel == 0 {
                continue;
            }
            rows.push((
                pg_sys::Oid::from(rel),
                s.captures.load(Ordering::Relaxed) as i64,
                s.rows.load(Ordering::Relaxed) as i64,
                ms(s.capture_us.load(Ordering::Relaxed)),
                ms(s.refresh_us.load(Ordering::Relaxed)),
                ts(s.stats_since.load(Ordering::Relaxed)),
            ));
        }
    }
    TableIterator::new(rows)
}

/// Every backend's pending TVIEW work, any database.
#[pg_extern(volatile, parallel_safe)]
#[allow(clippy::type_complexity)]
fn pg_tviews_queue_raw() -> TableIterator<
    'static,
    (
        name!(pid, i32),
        name!(datid, pg_sys::Oid),
        name!(relid, Option<pg_sys::Oid>),
        name!(keys, i64),
        name!(phase, String),
        name!(since, Option<TimestampWithTimeZone>),
        name!(waiting_for, Option<String>),
    ),
> {
    let mut rows = Vec::new();
    if let Some(sh) = shmem::shared() {
        for b in &sh.backends {
            let phase = b.phase.load(Ordering::Relaxed);
            let pid = b.pid.load(Ordering::Relaxed);
            if phase == Phase::Idle as u32 || pid == 0 {
                continue;
            }
            let rel = b.tview.load(Ordering::Relaxed);
            rows.push((
                pid,
                pg_sys::Oid::from(b.db.load(Ordering::Relaxed)),
                (rel != 0).then(|| pg_sys::Oid::from(rel)),
                b.keys.load(Ordering::Relaxed),
                Phase::name(phase).to_string(),
                ts(b.since.load(Ordering::Relaxed)),
                shmem::waiting_text(b),
            ));
        }
    }
    TableIterator::new(rows)
}

/// Plan-cache counters and when statistics were last reset.
#[pg_extern(volatile, parallel_safe)]
#[allow(clippy::type_complexity)]
fn pg_tviews_cache_raw() -> TableIterator<
    'static,
    (
        name!(preloaded, bool),
        name!(hits, Option<i64>),
        name!(misses, Option<i64>),
        name!(invalidations, Option<i64>),
        name!(slots_full, Option<i64>),
        name!(stats_since, Option<TimestampWithTimeZone>),
    ),
> {
    let row = match shmem::shared() {
        Some(sh) => (
            true,
            Some(sh.cache_hits.load(Ordering::Relaxed) as i64),
            Some(sh.cache_misses.load(Ordering::Relaxed) as i64),
            Some(sh.cache_invalidations.load(Ordering::Relaxed) as i64),
            Some(sh.slots_full.load(Ordering::Relaxed) as i64),
            ts(sh.stats_since.load(Ordering::Relaxed)),
        ),
        None => (false, None, None, None, None, None),
    };
    TableIterator::once(row)
}

/// The per-minute ring (last 24 hours), every database.
#[pg_extern(volatile, parallel_safe)]
#[allow(clippy::type_complexity)]
fn pg_tviews_ring_raw() -> TableIterator<
    'static,
    (
        name!(minute, Option<TimestampWithTimeZone>),
        name!(refreshes, i64),
        name!(keys, i64),
        name!(rows_written, i64),
        name!(rows_skipped, i64),
        name!(errors, i64),
        name!(time_ms, f64),
    ),
> {
    let mut rows = Vec::new();
    if let Some(sh) = shmem::shared() {
        let now_minute = shmem::now().div_euclid(60_000_000);
        for m in &sh.ring {
            let minute = m.minute.load(Ordering::Acquire);
            if minute == 0 || now_minute - minute >= shmem::RING_MINUTES as i64 {
                continue;
            }
            rows.push((
                ts(minute * 60_000_000),
                m.refreshes.load(Ordering::Relaxed) as i64,
                m.keys.load(Ordering::Relaxed) as i64,
                m.written.load(Ordering::Relaxed) as i64,
                m.skipped.load(Ordering::Relaxed) as i64,
                m.errors.load(Ordering::Relaxed) as i64,
                ms(m.time_us.load(Ordering::Relaxed)),
            ));
        }
    }
    TableIterator::new(rows)
}

/// Resets the statistics in shared memory (and this backend's session
/// counters). Superusers only (granted to nobody else by default).
#[pg_extern(volatile)]
fn pg_tviews_stats_reset() {
    shmem::reset();
    crate::stats::reset();
}

/// Each TVIEW's sources as this backend's registry knows them: (tview,
/// source, whether any change of the source rebuilds the TVIEW).
#[pg_extern(volatile)]
fn pg_tviews_sources() -> TableIterator<
    'static,
    (
        name!(tview, pg_sys::Oid),
        name!(source, pg_sys::Oid),
        name!(full_rebuild, bool),
        name!(depth, i32),
    ),
> {
    let mut rows = Vec::new();
    if let Some(reg) = registry::get_quiet() {
        for t in &reg.tviews {
            for s in &t.analysis.sources {
                rows.push((
                    t.relid,
                    pg_sys::Oid::from(s.relation),
                    matches!(s.mapping, tviews_core::analyze::Mapping::Full { .. }),
                    t.depth as i32,
                ));
            }
        }
    }
    TableIterator::new(rows)
}

/// How a TVIEW is maintained: its sources and how a change in each maps to
/// keys (the path), the TVIEWs it reads and that read it, and with
/// `verbose` its refresh statements. `format`: text, json or dot.
#[pg_extern(volatile)]
fn pg_tviews_explain(
    tview: &str,
    format: default!(&str, "'text'"),
    verbose: default!(bool, false),
) -> String {
    let relid = Spi::connect_mut(|client| crate::api::require_tview(client, tview));
    let Some(reg) = registry::get() else {
        return String::new();
    };
    let tv = reg.require(relid);
    let e = registry::explain(&reg, tv);
    match format {
        "text" => e.to_text(verbose),
        "json" => serde_json::to_string_pretty(&e).unwrap_or_default(),
        "dot" => e.to_dot(),
        other => crate::error::raise_with(
            "22023",
            format!("unknown explain format \"{other}\""),
            None,
            Some("Use text, json or dot.".into()),
        ),
    }
}
