//! Statistics in shared memory, present only when the library is loaded
//! through `shared_preload_libraries` (without it everything else works,
//! and the health check says statistics are off).
//!
//! Everything is atomics: per-TVIEW and per-source slots found by hashing
//! (database, relation) with linear probing and claimed by compare-and-swap,
//! one slot per backend for its live queue (written only by that backend),
//! and a ring of per-minute totals covering 24 hours. No lock is taken on
//! the refresh path.

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

use pgrx::prelude::*;

pub const MAX_TVIEWS: usize = 1024;
pub const MAX_SOURCES: usize = 1024;
pub const MAX_BACKENDS: usize = 1024;
pub const RING_MINUTES: usize = 1440;
/// Bytes of the text of the value a waiting backend waits for.
pub const WAIT_TEXT: usize = 120;

/// Cumulative counters of one TVIEW.
#[repr(C)]
pub struct TviewSlot {
    pub key: AtomicU64,
    pub refreshes: AtomicU64,
    pub keys: AtomicU64,
    pub inserted: AtomicU64,
    pub updated: AtomicU64,
    pub deleted: AtomicU64,
    pub skipped: AtomicU64,
    pub cascaded: AtomicU64,
    pub full_rebuilds: AtomicU64,
    pub errors: AtomicU64,
    pub statements: AtomicU64,
    pub time_us: AtomicU64,
    pub lock_us: AtomicU64,
    pub derive_us: AtomicU64,
    pub apply_us: AtomicU64,
    pub lock_waits: AtomicU64,
    pub lock_wait_us: AtomicU64,
    pub last_refresh: AtomicI64,
    pub stats_since: AtomicI64,
}

/// What the writers of one source table spent on TVIEWs.
#[repr(C)]
pub struct SourceSlot {
    pub key: AtomicU64,
    pub captures: AtomicU64,
    pub rows: AtomicU64,
    pub capture_us: AtomicU64,
    pub refresh_us: AtomicU64,
    pub stats_since: AtomicI64,
}

/// The live state of one backend, written only by it.
#[repr(C)]
pub struct BackendSlot {
    pub pid: AtomicI32,
    pub db: AtomicU32,
    pub tview: AtomicU32,
    pub keys: AtomicI64,
    pub phase: AtomicU32,
    pub since: AtomicI64,
    pub wait_len: AtomicU32,
    pub wait_text: [std::sync::atomic::AtomicU8; WAIT_TEXT],
}

#[repr(C)]
pub struct Minute {
    pub minute: AtomicI64,
    pub refreshes: AtomicU64,
    pub keys: AtomicU64,
    pub written: AtomicU64,
    pub skipped: AtomicU64,
    pub errors: AtomicU64,
    pub time_us: AtomicU64,
}

#[repr(C)]
pub struct Shared {
    pub stats_since: AtomicI64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_invalidations: AtomicU64,
    pub slots_full: AtomicU64,
    pub tviews: [TviewSlot; MAX_TVIEWS],
    pub sources: [SourceSlot; MAX_SOURCES],
    pub backends: [BackendSlot; MAX_BACKENDS],
    pub ring: [Minute; RING_MINUTES],
}

/// Phases a backend reports in its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Phase {
    Idle = 0,
    Queued = 1,
    Locking = 2,
    Deriving = 3,
    Applying = 4,
}

impl Phase {
    pub fn name(v: u32) -> &'static str {
        match v {
            1 => "queued",
            2 => "locking",
            3 => "deriving",
            4 => "applying",
            _ => "idle",
        }
    }
}

static mut SHARED: *mut Shared = std::ptr::null_mut();
static mut PREV_REQUEST: Option<unsafe extern "C-unwind" fn()> = None;
static mut PREV_STARTUP: Option<unsafe extern "C-unwind" fn()> = None;

/// Installs the hooks that size and create the segment; from `_PG_init`
/// while preloading.
pub fn init() {
    // SAFETY: hook chaining in _PG_init, single-threaded.
    unsafe {
        PREV_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(on_request);
        PREV_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(on_startup);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_request() {
    // SAFETY: chains to the previous hook, then requests our space.
    unsafe {
        if let Some(prev) = PREV_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(std::mem::size_of::<Shared>());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_startup() {
    // SAFETY: chains, then finds or creates the segment under the
    // AddinShmemInitLock as every extension does; a new one is zeroed,
    // which is a valid state for every atomic in it.
    unsafe {
        if let Some(prev) = PREV_STARTUP {
            prev();
        }
        // AddinShmemInitLock is MainLWLockArray[21] in PostgreSQL 15 (lwlocknames.h).
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let ptr = pg_sys::ShmemInitStruct(
            c"pg_tviews statistics".as_ptr(),
            std::mem::size_of::<Shared>(),
            &mut found,
        );
        if !found {
            std::ptr::write_bytes(ptr.cast::<u8>(), 0, std::mem::size_of::<Shared>());
            (*ptr.cast::<Shared>())
                .stats_since
                .store(now(), Ordering::Relaxed);
        }
        SHARED = ptr.cast();
        pg_sys::LWLockRelease(lock);
    }
}

/// The segment, when preloaded.
pub fn shared() -> Option<&'static Shared> {
    // SAFETY: set once at startup (inherited by backends), never freed.
    unsafe { SHARED.as_ref() }
}

/// Microseconds since the PostgreSQL epoch (a `timestamptz`).
pub fn now() -> i64 {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

fn slot_key(relid: pg_sys::Oid) -> u64 {
    // SAFETY: reading the backend's database id.
    let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
    (u64::from(db) << 32) | u64::from(relid.to_u32())
}

/// Finds or claims the slot of `key` in a table of `n` slots.
fn find<T>(slots: &[T], key: u64, slot_key: impl Fn(&T) -> &AtomicU64, claim: bool) -> Option<&T> {
    let n = slots.len();
    let start = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize % n;
    for i in 0..n {
        let s = &slots[(start + i) % n];
        let k = slot_key(s).load(Ordering::Acquire);
        if k == key {
            return Some(s);
        }
        if k == 0 {
            if !claim {
                return None;
            }
            match slot_key(s).compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(s),
                Err(other) if other == key => return Some(s),
                Err(_) => continue,
            }
        }
    }
    if let Some(sh) = shared() {
        sh.slots_full.fetch_add(1, Ordering::Relaxed);
    }
    None
}

pub fn tview_slot(relid: pg_sys::Oid) -> Option<&'static TviewSlot> {
    let sh = shared()?;
    let s = find(&sh.tviews, slot_key(relid), |s| &s.key, true)?;
    if s.stats_since.load(Ordering::Relaxed) == 0 {
        s.stats_since.store(now(), Ordering::Relaxed);
    }
    Some(s)
}

pub fn source_slot(relid: pg_sys::Oid) -> Option<&'static SourceSlot> {
    let sh = shared()?;
    let s = find(&sh.sources, slot_key(relid), |s| &s.key, true)?;
    if s.stats_since.load(Ordering::Relaxed) == 0 {
        s.stats_since.store(now(), Ordering::Relaxed);
    }
    Some(s)
}

/// This backend's slot.
pub fn backend_slot() -> Option<&'static BackendSlot> {
    let sh = shared()?;
    // SAFETY: reading the backend's id (1-based for regular backends).
    let id = unsafe { pg_sys::MyBackendId };
    let idx = usize::try_from(id).ok()?.checked_sub(1)?;
    sh.backends.get(idx)
}

/// Reports what this backend is doing (for `pg_tviews_queue_realtime`).
pub fn set_phase(phase: Phase, tview: pg_sys::Oid, keys: i64) {
    let Some(b) = backend_slot() else { return };
    // SAFETY: reading backend-global ids.
    let (pid, db) = unsafe { (pg_sys::MyProcPid, pg_sys::MyDatabaseId.to_u32()) };
    if b.phase.load(Ordering::Relaxed) != phase as u32 || b.pid.load(Ordering::Relaxed) != pid {
        b.since.store(now(), Ordering::Relaxed);
    }
    b.pid.store(pid, Ordering::Relaxed);
    b.db.store(db, Ordering::Relaxed);
    b.tview.store(tview.to_u32(), Ordering::Relaxed);
    b.keys.store(keys, Ordering::Relaxed);
    b.phase.store(phase as u32, Ordering::Relaxed);
}

pub fn set_idle() {
    if let Some(b) = backend_slot()
        && b.phase.load(Ordering::Relaxed) != Phase::Idle as u32
    {
        b.phase.store(Phase::Idle as u32, Ordering::Relaxed);
        b.keys.store(0, Ordering::Relaxed);
        b.wait_len.store(0, Ordering::Relaxed);
        b.since.store(now(), Ordering::Relaxed);
    }
}

/// What this backend waits for, while it waits for a value lock.
pub fn set_waiting(text: Option<&str>) {
    let Some(b) = backend_slot() else { return };
    match text {
        None => b.wait_len.store(0, Ordering::Relaxed),
        Some(t) => {
            let bytes = t.as_bytes();
            let n = bytes.len().min(WAIT_TEXT);
            for (i, byte) in bytes[..n].iter().enumerate() {
                b.wait_text[i].store(*byte, Ordering::Relaxed);
            }
            b.wait_len.store(n as u32, Ordering::Release);
        }
    }
}

pub fn waiting_text(b: &BackendSlot) -> Option<String> {
    let n = b.wait_len.load(Ordering::Acquire) as usize;
    if n == 0 {
        return None;
    }
    let bytes: Vec<u8> = b.wait_text[..n.min(WAIT_TEXT)]
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Adds a refresh to its TVIEW's counters and the current minute.
pub fn record_refresh(relid: pg_sys::Oid, c: &crate::stats::Counters, error: bool) {
    let Some(sh) = shared() else { return };
    let written = (c.inserted + c.updated + c.deleted).max(0) as u64;
    if let Some(s) = tview_slot(relid) {
        let add = |a: &AtomicU64, v: i64| {
            a.fetch_add(v.max(0) as u64, Ordering::Relaxed);
        };
        add(&s.refreshes, c.refreshes);
        add(&s.keys, c.keys);
        add(&s.inserted, c.inserted);
        add(&s.updated, c.updated);
        add(&s.deleted, c.deleted);
        add(&s.skipped, c.skipped);
        add(&s.cascaded, c.cascaded);
        add(&s.full_rebuilds, c.full_rebuilds);
        add(&s.statements, c.statements);
        add(&s.lock_waits, c.lock_waits);
        s.time_us
            .fetch_add(c.time.as_micros() as u64, Ordering::Relaxed);
        s.lock_us
            .fetch_add(c.lock_time.as_micros() as u64, Ordering::Relaxed);
        s.derive_us
            .fetch_add(c.derive_time.as_micros() as u64, Ordering::Relaxed);
        s.apply_us
            .fetch_add(c.apply_time.as_micros() as u64, Ordering::Relaxed);
        s.lock_wait_us
            .fetch_add(c.lock_wait_time.as_micros() as u64, Ordering::Relaxed);
        if error {
            s.errors.fetch_add(1, Ordering::Relaxed);
        }
        s.last_refresh.store(now(), Ordering::Relaxed);
    }
    let m = current_minute(sh);
    m.refreshes.fetch_add(1, Ordering::Relaxed);
    m.keys.fetch_add(c.keys.max(0) as u64, Ordering::Relaxed);
    m.written.fetch_add(written, Ordering::Relaxed);
    m.skipped
        .fetch_add(c.skipped.max(0) as u64, Ordering::Relaxed);
    m.time_us
        .fetch_add(c.time.as_micros() as u64, Ordering::Relaxed);
    if error {
        m.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The ring bucket of the current minute, reset when it is reused.
fn current_minute(sh: &Shared) -> &Minute {
    let minute = now().div_euclid(60_000_000);
    let m = &sh.ring[minute.rem_euclid(RING_MINUTES as i64) as usize];
    let seen = m.minute.load(Ordering::Acquire);
    if seen != minute
        && m.minute
            .compare_exchange(seen, minute, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        // The bucket held a minute 24 hours old: start it over. (Another
        // backend adding at this instant may lose its addition.)
        for a in [
            &m.refreshes,
            &m.keys,
            &m.written,
            &m.skipped,
            &m.errors,
            &m.time_us,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }
    m
}

pub fn record_capture(source: pg_sys::Oid, rows: u64, time: std::time::Duration) {
    if let Some(s) = source_slot(source) {
        s.captures.fetch_add(1, Ordering::Relaxed);
        s.rows.fetch_add(rows, Ordering::Relaxed);
        s.capture_us
            .fetch_add(time.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Time a transaction's commit spent refreshing, charged to every source
/// it wrote (what its writers paid for TVIEWs at commit).
pub fn record_source_refresh(sources: &[pg_sys::Oid], time: std::time::Duration) {
    for s in sources {
        if let Some(slot) = source_slot(*s) {
            slot.refresh_us
                .fetch_add(time.as_micros() as u64, Ordering::Relaxed);
        }
    }
}

pub fn cache_event(hit: bool) {
    if let Some(sh) = shared() {
        if hit {
            sh.cache_hits.fetch_add(1, Ordering::Relaxed);
        } else {
            sh.cache_misses.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub fn cache_invalidation() {
    if let Some(sh) = shared() {
        sh.cache_invalidations.fetch_add(1, Ordering::Relaxed);
    }
}

/// Zeroes every counter (slots of this database's TVIEWs and sources keep
/// their place; a new `stats_since` tells readers it was a reset).
pub fn reset() {
    let Some(sh) = shared() else { return };
    let t = now();
    sh.stats_since.store(t, Ordering::Relaxed);
    for a in [
        &sh.cache_hits,
        &sh.cache_misses,
        &sh.cache_invalidations,
        &sh.slots_full,
    ] {
        a.store(0, Ordering::Relaxed);
    }
    for s in &sh.tviews {
        for a in [
            &s.refreshes,
            &s.keys,
            &s.inserted,
            &s.updated,
            &s.deleted,
            &s.skipped,
            &s.cascaded,
            &s.full_rebuilds,
            &s.errors,
            &s.statements,
            &s.time_us,
            &s.lock_us,
            &s.derive_us,
            &s.apply_us,
            &s.lock_waits,
            &s.lock_wait_us,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        s.stats_since.store(t, Ordering::Relaxed);
    }
    for s in &sh.sources {
        for a in [&s.captures, &s.rows, &s.capture_us, &s.refresh_us] {
            a.store(0, Ordering::Relaxed);
        }
        s.stats_since.store(t, Ordering::Relaxed);
    }
    for m in &sh.ring {
        m.minute.store(0, Ordering::Relaxed);
    }
}

/// Splits a slot key into (database OID, relation OID).
pub fn split_key(key: u64) -> (u32, u32) {
    ((key >> 32) as u32, key as u32)
}
