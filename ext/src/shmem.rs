//! Shared memory, present only when the library is loaded through
//! `shared_preload_libraries`. Today: cluster-wide totals since the server
//! started; per-TVIEW statistics build on the same segment. Without
//! preload everything else works and these report as off.

use std::sync::atomic::{AtomicU64, Ordering};

use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgAtomic, pg_shmem_init};

#[derive(Default)]
pub struct Totals {
    pub flushes: AtomicU64,
    pub keys: AtomicU64,
    pub rows_written: AtomicU64,
    pub rows_skipped: AtomicU64,
}

// SAFETY: only atomics, valid in shared memory across processes.
unsafe impl PGRXSharedMemory for Totals {}

static TOTALS: PgAtomic<Totals> = unsafe { PgAtomic::new(c"pg_tviews_totals") };

/// Requests the segment; called from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(TOTALS);
}

pub fn enabled() -> bool {
    crate::preloaded()
}

/// Adds a refresh to the totals (no lock: atomics only).
pub fn record_flush(keys: u64, written: u64, skipped: u64) {
    if !enabled() {
        return;
    }
    let t = TOTALS.get();
    t.flushes.fetch_add(1, Ordering::Relaxed);
    t.keys.fetch_add(keys, Ordering::Relaxed);
    t.rows_written.fetch_add(written, Ordering::Relaxed);
    t.rows_skipped.fetch_add(skipped, Ordering::Relaxed);
}

/// (flushes, keys, rows written, rows skipped), or None without preload.
pub fn totals() -> Option<(u64, u64, u64, u64)> {
    if !enabled() {
        return None;
    }
    let t = TOTALS.get();
    Some((
        t.flushes.load(Ordering::Relaxed),
        t.keys.load(Ordering::Relaxed),
        t.rows_written.load(Ordering::Relaxed),
        t.rows_skipped.load(Ordering::Relaxed),
    ))
}
