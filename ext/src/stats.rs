//! Backend-local refresh counters, exposed by `pg_tviews_session_stats()`.
//! (Cumulative, cross-backend statistics in shared memory come with the
//! observability work; these already let tests check exactly what a
//! refresh did.)

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use pgrx::pg_sys;

#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub refreshes: i64,
    pub full_rebuilds: i64,
    pub keys: i64,
    pub recomputed: i64,
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    pub skipped: i64,
    pub statements: i64,
    /// Keys that came from writes to upstream TVIEWs (cascades).
    pub cascaded: i64,
    pub lock_waits: i64,
    pub time: Duration,
    pub lock_time: Duration,
    pub lock_wait_time: Duration,
    pub derive_time: Duration,
    pub apply_time: Duration,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SourceCounters {
    pub captures: i64,
    pub time: Duration,
}

thread_local! {
    static TVIEWS: RefCell<BTreeMap<u32, Counters>> = const { RefCell::new(BTreeMap::new()) };
    static SOURCES: RefCell<BTreeMap<u32, SourceCounters>> = const { RefCell::new(BTreeMap::new()) };
}

pub fn record_refresh(tview: pg_sys::Oid, delta: Counters) {
    TVIEWS.with(|t| {
        let mut t = t.borrow_mut();
        let c = t.entry(tview.to_u32()).or_default();
        c.refreshes += delta.refreshes;
        c.full_rebuilds += delta.full_rebuilds;
        c.keys += delta.keys;
        c.recomputed += delta.recomputed;
        c.inserted += delta.inserted;
        c.updated += delta.updated;
        c.deleted += delta.deleted;
        c.skipped += delta.skipped;
        c.statements += delta.statements;
        c.cascaded += delta.cascaded;
        c.lock_waits += delta.lock_waits;
        c.time += delta.time;
        c.lock_time += delta.lock_time;
        c.lock_wait_time += delta.lock_wait_time;
        c.derive_time += delta.derive_time;
        c.apply_time += delta.apply_time;
    });
}

pub fn record_capture(source: pg_sys::Oid, time: Duration) {
    SOURCES.with(|s| {
        let mut s = s.borrow_mut();
        let c = s.entry(source.to_u32()).or_default();
        c.captures += 1;
        c.time += time;
    });
}

pub fn tviews() -> Vec<(pg_sys::Oid, Counters)> {
    TVIEWS.with(|t| {
        t.borrow()
            .iter()
            .map(|(k, v)| (pg_sys::Oid::from(*k), v.clone()))
            .collect()
    })
}

pub fn sources() -> Vec<(pg_sys::Oid, SourceCounters)> {
    SOURCES.with(|s| {
        s.borrow()
            .iter()
            .map(|(k, v)| (pg_sys::Oid::from(*k), *v))
            .collect()
    })
}

pub fn reset() {
    TVIEWS.with(|t| t.borrow_mut().clear());
    SOURCES.with(|s| s.borrow_mut().clear());
}
