//! The transaction's pending refresh work, per TVIEW: keys to recompute,
//! start values of join paths to turn into keys at flush time, or a full
//! rebuild. Deduplicated; cleared at commit and abort.
//!
//! Start values are keyed by the derive statement's text rather than a
//! path index, so that a registry reloaded in the middle of a transaction
//! (DDL in the same transaction) cannot apply them to the wrong path: an
//! unknown statement turns into a full rebuild.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use pgrx::pg_sys;

#[derive(Debug, Default)]
pub struct Work {
    /// Keys queued by writes to upstream TVIEWs (cascades), counted.
    pub cascaded: usize,
    /// Keys from writes to base tables (and anything but an upstream TVIEW).
    pub keys: HashSet<String>,
    /// Keys from writes to upstream TVIEWs (only maintenance writes them).
    pub cascade_keys: HashSet<String>,
    pub starts: HashMap<String, HashSet<String>>,
    pub full: bool,
    /// A source of a TVIEW whose key may be NULL was written: look for NULL
    /// keys (a NULL captured value queues no key).
    pub null_check: bool,
}

impl Work {
    pub fn is_empty(&self) -> bool {
        !self.full
            && !self.null_check
            && self.keys.is_empty()
            && self.cascade_keys.is_empty()
            && self.starts.values().all(HashSet::is_empty)
    }
}

thread_local! {
    /// Values of link columns this transaction changed, per (relation,
    /// column), not yet locked (see locks.rs).
    static LINKS: RefCell<BTreeMap<(u32, String), HashSet<String>>> = const { RefCell::new(BTreeMap::new()) };
    /// Source relations written in this transaction (for the statistics
    /// of what their writers spent refreshing).
    static WRITTEN: RefCell<BTreeSet<u32>> = const { RefCell::new(BTreeSet::new()) };
    /// Relations written (a refresh reads them whole) and truncated.
    static WHOLE_WRITES: RefCell<(BTreeSet<u32>, BTreeSet<u32>)> = const { RefCell::new((BTreeSet::new(), BTreeSet::new())) };
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

/// Keys from writes to an upstream TVIEW: a cascade, counted.
pub fn add_cascaded_keys(tview: pg_sys::Oid, values: impl IntoIterator<Item = String>) {
    with(|q| {
        let w = q.entry(tview.to_u32()).or_default();
        for v in values {
            w.cascaded += 1;
            w.cascade_keys.insert(v);
        }
    });
}

pub fn mark_full(tview: pg_sys::Oid) {
    with(|q| q.entry(tview.to_u32()).or_default().full = true);
}

pub fn mark_null_check(tview: pg_sys::Oid) {
    with(|q| q.entry(tview.to_u32()).or_default().null_check = true);
}

/// A copy of the queued work (for `pg_tviews_pending_keys`).
pub fn snapshot() -> Vec<(pg_sys::Oid, Work)> {
    with(|q| {
        q.iter()
            .map(|(k, w)| {
                (
                    pg_sys::Oid::from(*k),
                    Work {
                        cascaded: w.cascaded,
                        keys: w.keys.clone(),
                        cascade_keys: w.cascade_keys.clone(),
                        starts: w.starts.clone(),
                        full: w.full,
                        null_check: w.null_check,
                    },
                )
            })
            .collect()
    })
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
        && LINKS.with(|l| l.borrow().is_empty())
        && WHOLE_WRITES.with(|w| {
            let w = w.borrow();
            w.0.is_empty() && w.1.is_empty()
        })
}

pub fn add_links(relation: pg_sys::Oid, column: &str, values: impl IntoIterator<Item = String>) {
    LINKS.with(|l| {
        l.borrow_mut()
            .entry((relation.to_u32(), column.to_string()))
            .or_default()
            .extend(values)
    });
}

pub fn add_written(relation: pg_sys::Oid) {
    WRITTEN.with(|w| w.borrow_mut().insert(relation.to_u32()));
}

/// Removes and returns the source relations written so far.
pub fn take_written() -> Vec<pg_sys::Oid> {
    WRITTEN.with(|w| {
        std::mem::take(&mut *w.borrow_mut())
            .into_iter()
            .map(pg_sys::Oid::from)
            .collect()
    })
}

/// A write to a relation some TVIEW reads whole (or a TRUNCATE of it).
pub fn add_whole_write(relation: pg_sys::Oid, truncate: bool) {
    WHOLE_WRITES.with(|w| {
        let mut w = w.borrow_mut();
        if truncate {
            w.1.insert(relation.to_u32());
        } else {
            w.0.insert(relation.to_u32());
        }
    });
}

/// Removes and returns (written, truncated) relations.
pub fn take_whole_writes() -> (BTreeSet<u32>, BTreeSet<u32>) {
    WHOLE_WRITES.with(|w| std::mem::take(&mut *w.borrow_mut()))
}

/// Removes and returns the link values captured so far.
pub fn take_links() -> BTreeMap<(u32, String), HashSet<String>> {
    LINKS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// Forgets everything, at the end of a transaction.
pub fn clear() {
    WRITTEN.with(|w| {
        if let Ok(mut w) = w.try_borrow_mut() {
            w.clear();
        }
    });
    clear_work();
}

/// Forgets the work queued, after a flush did it; keeps the list of
/// sources written, which the commit charges the refresh time to.
pub fn clear_work() {
    WHOLE_WRITES.with(|w| {
        if let Ok(mut w) = w.try_borrow_mut() {
            *w = Default::default();
        }
    });
    LINKS.with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            l.clear();
        }
    });
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
                k + w.keys.len() + w.cascade_keys.len(),
                s + w.starts.values().map(HashSet::len).sum::<usize>(),
            )
        })
    })
}
