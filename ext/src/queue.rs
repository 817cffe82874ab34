//! The transaction's pending refresh work, per TVIEW: keys to recompute,
//! start values of join paths to turn into keys at flush time, or a full
//! rebuild. Deduplicated; cleared at commit and abort.
//!
//! Start values are keyed by the derive statement's text rather than a
//! path index, so that a registry reloaded in the middle of a transaction
//! (DDL in the same transaction) cannot apply them to the wrong path: an
//! unknown statement turns into a full rebuild.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use pgrx::pg_sys;

#[derive(Debug, Default)]
pub struct Work {
    pub keys: HashSet<String>,
    pub starts: HashMap<String, HashSet<String>>,
    pub full: bool,
}

impl Work {
    pub fn is_empty(&self) -> bool {
        !self.full && self.keys.is_empty() && self.starts.values().all(HashSet::is_empty)
    }
}

thread_local! {
    static QUEUE: RefCell<BTreeMap<u32, Work>> = const { RefCell::new(BTreeMap::new()) };
}

fn with<R>(f: impl FnOnce(&mut BTreeMap<u32, Work>) -> R) -> R {
    QUEUE.with(|q| f(&mut q.borrow_mut()))
}

pub fn add_keys(tview: pg_sys::Oid, values: impl IntoIterator<Item = String>) {
    with(|q| q.entry(tview.to_u32()).or_default().keys.extend(values));
}

pub fn add_starts(tview: pg_sys::Oid, derive_sql: &str, values: impl IntoIterator<Item = String>) {
    with(|q| {
        q.entry(tview.to_u32())
            .or_default()
            .starts
            .entry(derive_sql.to_string())
            .or_default()
            .extend(values)
    });
}

pub fn mark_full(tview: pg_sys::Oid) {
    with(|q| q.entry(tview.to_u32()).or_default().full = true);
}

/// Removes and returns the work of one TVIEW.
pub fn take(tview: pg_sys::Oid) -> Option<Work> {
    with(|q| q.remove(&tview.to_u32()))
}

/// TVIEWs with pending work.
pub fn pending() -> Vec<pg_sys::Oid> {
    with(|q| {
        q.iter()
            .filter(|(_, w)| !w.is_empty())
            .map(|(k, _)| pg_sys::Oid::from(*k))
            .collect()
    })
}

pub fn is_empty() -> bool {
    with(|q| q.values().all(Work::is_empty))
}

pub fn clear() {
    // try_borrow: the abort callback may run while a capture held the queue.
    QUEUE.with(|q| {
        if let Ok(mut q) = q.try_borrow_mut() {
            q.clear();
        }
    });
}

/// Number of keys and start values queued (for statistics and tests).
pub fn size() -> (usize, usize) {
    with(|q| {
        q.values().fold((0, 0), |(k, s), w| {
            (
                k + w.keys.len(),
                s + w.starts.values().map(HashSet::len).sum::<usize>(),
            )
        })
    })
}
