//! Value locks in PostgreSQL's lock manager (DESIGN.md §6).
//!
//! A value lock is an advisory lock whose tag names `(database, relation,
//! hash(column, value))` (`objsubid` 3 in `pg_locks`); a relation-level
//! lock of ours is `(database, relation, 0)` (`objsubid` 4). Both are
//! transaction locks: released at commit or abort, kept by `PREPARE
//! TRANSACTION` until `COMMIT PREPARED`.
//!
//! Modes follow multi-granularity locking: readers take ROW SHARE on the
//! relation and SHARE on each value, writers ROW EXCLUSIVE and EXCLUSIVE.
//! Past [`ESCALATE_AFTER`] values of one relation in one request, the
//! relation itself is locked SHARE (readers) or EXCLUSIVE (writers), so a
//! bulk statement cannot exhaust the lock table. Within a request, locks
//! are taken in one order: relations, then values, each sorted.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use pgrx::pg_sys;

use crate::error::raise_with;

/// `objsubid` of our lock tags in `pg_locks`.
pub const VALUE_LOCK: u16 = 3;
pub const RELATION_LOCK: u16 = 4;

/// More values than this for one relation in one request lock the relation.
pub const ESCALATE_AFTER: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    Share,
    Exclusive,
}

/// A set of locks to take together.
#[derive(Debug, Default)]
pub struct Request {
    values: BTreeMap<(u32, Mode), BTreeSet<u32>>,
    relations: BTreeMap<u32, Mode>,
    intents: BTreeMap<u32, Mode>,
    /// `column = value` of each value lock, shown while waiting for it.
    labels: HashMap<(u32, u32), String>,
}

/// What taking a request cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct Acquired {
    /// Locks not held before.
    pub taken: usize,
    /// Locks another transaction held, which we waited for.
    pub waits: usize,
    pub wait_time: std::time::Duration,
}

/// FNV-1a over the column name, a separator and the value's text: the
/// same value of the same column always gives the same lock; a collision
/// only makes two writers wait for each other needlessly.
pub fn value_hash(column: &str, value: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in column
        .bytes()
        .chain(std::iter::once(0u8))
        .chain(value.bytes())
    {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    // 0 is the relation lock's field.
    if h == 0 { 1 } else { h }
}

impl Request {
    pub fn value(&mut self, relation: u32, column: &str, value: &str, mode: Mode) {
        let h = value_hash(column, value);
        self.values.entry((relation, mode)).or_default().insert(h);
        self.labels.entry((relation, h)).or_insert_with(|| {
            let mut l = format!("{column} = {value}");
            if l.len() > 100 {
                let mut end = 100;
                while !l.is_char_boundary(end) {
                    end -= 1;
                }
                l.truncate(end);
                l.push('…');
            }
            l
        });
    }

    /// The relation-level intention lock alone (ROW SHARE / ROW EXCLUSIVE):
    /// for writes to a relation that some refresh reads whole.
    pub fn intent(&mut self, relation: u32, mode: Mode) {
        let m = self.intents.entry(relation).or_insert(mode);
        if mode > *m {
            *m = mode;
        }
    }

    pub fn relation(&mut self, relation: u32, mode: Mode) {
        let m = self.relations.entry(relation).or_insert(mode);
        if mode > *m {
            *m = mode;
        }
    }

    pub fn len(&self) -> usize {
        self.values.values().map(BTreeSet::len).sum::<usize>()
            + self.relations.len()
            + self.intents.len()
    }

    /// Takes every lock of the request not yet held by this transaction.
    /// `nowait` (REPEATABLE READ and SERIALIZABLE): a lock held by another
    /// transaction raises 40001 instead of waiting, since our snapshot could
    /// not see what we would wait for. Returns how many locks were new.
    pub fn acquire(self, nowait: bool) -> Acquired {
        // Escalate: many values of one relation → the relation itself.
        let mut relations: BTreeMap<u32, (Mode, bool)> = self
            .relations
            .iter()
            .map(|(r, m)| (*r, (*m, true)))
            .collect();
        let mut values: Vec<(u32, u32, Mode)> = Vec::new();
        for ((rel, mode), hashes) in &self.values {
            let whole = relations.get(rel).is_some_and(|(m, w)| *w && *m >= *mode);
            if whole {
                continue;
            }
            if hashes.len() > ESCALATE_AFTER {
                let e = relations.entry(*rel).or_insert((*mode, true));
                e.1 = true;
                if *mode > e.0 {
                    e.0 = *mode;
                }
                continue;
            }
            // Intention lock on the relation.
            let e = relations.entry(*rel).or_insert((*mode, false));
            if !e.1 && *mode > e.0 {
                e.0 = *mode;
            }
            values.extend(hashes.iter().map(|h| (*rel, *h, *mode)));
        }
        for (rel, mode) in &self.intents {
            let e = relations.entry(*rel).or_insert((*mode, false));
            if !e.1 && *mode > e.0 {
                e.0 = *mode;
            }
        }
        let mut acquired = Acquired::default();
        for (rel, (mode, whole)) in relations {
            let lockmode = match (mode, whole) {
                (Mode::Share, false) => pg_sys::RowShareLock,
                (Mode::Exclusive, false) => pg_sys::RowExclusiveLock,
                (Mode::Share, true) => pg_sys::ShareLock,
                (Mode::Exclusive, true) => pg_sys::ExclusiveLock,
            };
            let label = if whole {
                "the whole relation"
            } else {
                "the relation (intention)"
            };
            take(
                tag(rel, 0, RELATION_LOCK),
                lockmode as i32,
                nowait,
                rel,
                label,
                &mut acquired,
            );
        }
        // One lock per value, in its strongest mode: taking SHARE and then
        // EXCLUSIVE on the same value would deadlock two transactions that
        // both read and write it (each waiting to upgrade).
        let mut strongest: BTreeMap<(u32, u32), Mode> = BTreeMap::new();
        for (rel, hash, mode) in values {
            let m = strongest.entry((rel, hash)).or_insert(mode);
            if mode > *m {
                *m = mode;
            }
        }
        for ((rel, hash), mode) in strongest {
            let lockmode = match mode {
                Mode::Share => pg_sys::ShareLock,
                Mode::Exclusive => pg_sys::ExclusiveLock,
            };
            let label = self
                .labels
                .get(&(rel, hash))
                .map(String::as_str)
                .unwrap_or("a value");
            take(
                tag(rel, hash, VALUE_LOCK),
                lockmode as i32,
                nowait,
                rel,
                label,
                &mut acquired,
            );
        }
        acquired
    }
}

thread_local! {
    /// Locks this transaction already holds (tag fields → modes): taking
    /// them again, or a weaker mode, would only bump a counter; skipping
    /// saves the calls and tells the flush nothing new was locked.
    static HELD: RefCell<HashMap<(u32, u32, u16), Vec<i32>>> = RefCell::new(HashMap::new());
}

/// The lock modes `mode` conflicts with, as a bit set (PostgreSQL's
/// conflict table, for the modes used here).
fn conflicts(mode: i32) -> u32 {
    let bits = |ms: &[u32]| ms.iter().fold(0u32, |acc, m| acc | (1 << m));
    match mode as u32 {
        pg_sys::RowShareLock => bits(&[pg_sys::ExclusiveLock, pg_sys::AccessExclusiveLock]),
        pg_sys::RowExclusiveLock => bits(&[
            pg_sys::ShareLock,
            pg_sys::ShareRowExclusiveLock,
            pg_sys::ExclusiveLock,
            pg_sys::AccessExclusiveLock,
        ]),
        pg_sys::ShareLock => bits(&[
            pg_sys::RowExclusiveLock,
            pg_sys::ShareUpdateExclusiveLock,
            pg_sys::ShareRowExclusiveLock,
            pg_sys::ExclusiveLock,
            pg_sys::AccessExclusiveLock,
        ]),
        _ => u32::MAX,
    }
}

/// Holding `held` protects at least as much as `wanted` would: everything
/// that conflicts with `wanted` conflicts with `held`.
fn covers(held: i32, wanted: i32) -> bool {
    held == wanted || conflicts(wanted) & !conflicts(held) == 0
}

/// Forgets what is held (at transaction end, and when a subtransaction
/// aborts: locks it took are released with it, so take them again).
pub fn forget() {
    HELD.with(|h| {
        if let Ok(mut h) = h.try_borrow_mut() {
            h.clear();
        }
    });
}

fn tag(relation: u32, field3: u32, kind: u16) -> pg_sys::LOCKTAG {
    // SAFETY: reading the backend's database id.
    let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
    pg_sys::LOCKTAG {
        locktag_field1: db,
        locktag_field2: relation,
        locktag_field3: field3,
        locktag_field4: kind,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

/// Takes one lock (not already held): without waiting first; when another
/// transaction holds it, says so in shared memory and waits (or, with
/// `nowait`, raises 40001).
fn take(
    tag: pg_sys::LOCKTAG,
    mode: i32,
    nowait: bool,
    rel: u32,
    label: &str,
    acquired: &mut Acquired,
) {
    let key = (tag.locktag_field2, tag.locktag_field3, tag.locktag_field4);
    let held = HELD.with(|h| {
        h.borrow()
            .get(&key)
            .is_some_and(|modes| modes.iter().any(|m| covers(*m, mode)))
    });
    if held {
        return;
    }
    // SAFETY: a transaction-level lock in the lock manager, released by
    // PostgreSQL at transaction end.
    let mut result = unsafe { pg_sys::LockAcquire(&tag, mode, false, true) };
    if result == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL && !nowait {
        let started = std::time::Instant::now();
        // SAFETY: reads the relation's name from the syscache (NULL if gone).
        let relname = unsafe {
            let p = pg_sys::get_rel_name(pg_sys::Oid::from(rel));
            if p.is_null() {
                rel.to_string()
            } else {
                std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        crate::shmem::set_waiting(Some(&format!("{relname}: {label}")));
        // SAFETY: as above, now waiting.
        result = unsafe { pg_sys::LockAcquire(&tag, mode, false, false) };
        crate::shmem::set_waiting(None);
        acquired.waits += 1;
        acquired.wait_time += started.elapsed();
    }
    if result == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
        raise_with(
            "40001",
            "could not serialize access due to a concurrent refresh of the same TVIEW rows",
            Some("Another transaction holds a value lock this refresh needs; under REPEATABLE READ or SERIALIZABLE this transaction could not see its result.".into()),
            Some("Retry the transaction.".into()),
        );
    }
    HELD.with(|h| h.borrow_mut().entry(key).or_default().push(mode));
    acquired.taken += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stronger_modes_cover_weaker_ones() {
        let (rs, rx, s, x) = (
            pg_sys::RowShareLock as i32,
            pg_sys::RowExclusiveLock as i32,
            pg_sys::ShareLock as i32,
            pg_sys::ExclusiveLock as i32,
        );
        assert!(covers(rx, rs) && covers(s, rs) && covers(x, s) && covers(x, rx));
        assert!(!covers(rs, rx) && !covers(s, rx) && !covers(rx, s) && !covers(s, x));
    }

    #[test]
    fn hashes_are_stable_and_column_sensitive() {
        assert_eq!(value_hash("pk_user", "1"), value_hash("pk_user", "1"));
        assert_ne!(value_hash("pk_user", "1"), value_hash("pk_user", "2"));
        assert_ne!(value_hash("pk_user", "1"), value_hash("fk_user", "1"));
        assert_ne!(value_hash("a", "bc"), value_hash("ab", "c"));
    }
}
