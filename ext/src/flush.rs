//! Flush: turn the queue into TVIEW rows (DESIGN.md §4–6).
//!
//! TVIEWs are refreshed one at a time in the global flush order
//! (dependencies first). Before anything is computed, value locks are
//! taken (see locks.rs): exclusive on the link values of every row this
//! transaction changed, shared on every value the refresh will follow.
//! Then, in fresh snapshots:
//! 1. derive keys from join-path start values;
//! 2. check that every value the keys link to is locked (otherwise lock it
//!    and derive again);
//! 3. apply: recompute the keys, delete, upsert, skip identical rows.
//!
//! Writes to a TVIEW fire the capture triggers of TVIEWs that read it, so
//! cascades queue themselves and are refreshed later in the same loop.
//! Under REPEATABLE READ and SERIALIZABLE nothing waits (a held lock
//! raises 40001), and the derived keys and recomputed rows are compared
//! with what the latest committed state gives: if they differ, another
//! transaction committed something this one cannot see, and it fails with
//! 40001 rather than write rows its snapshot cannot justify.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use pgrx::prelude::*;

use crate::error::raise_with;
use crate::locks::{Acquired, Mode, Request};
use crate::queue::{self, Work};
use crate::registry::{self, Registry, Tview, prepared};
use crate::security;
use crate::spi::Arg;
use crate::stats::{self, Counters};

/// Rounds of "lock what the keys link to, derive again" before giving up.
const MAX_LOCK_ROUNDS: usize = 8;

/// Refreshes everything queued, cascades included, until the queue is empty.
///
/// Each round takes the work of every TVIEW with something queued, and
/// first takes, in one sorted request, the exclusive locks of this
/// transaction's writes and an estimate of the shared locks each refresh
/// will need (its derive and reverse statements run before locking). Two
/// flushes taking their locks in one global order cannot deadlock; the
/// refreshes then verify, in fresh snapshots, that nothing they read was
/// left unlocked (adding locks if needed, rarely).
pub fn flush_pending() {
    // A flush running already (a capture inside it, in statement mode)
    // leaves the new work to that flush's loop.
    if FLUSHING.with(Cell::get) {
        return;
    }
    FLUSHING.with(|f| f.set(true));
    let _reset = ResetOnDrop;
    flush_loop();
}

thread_local! {
    static FLUSHING: Cell<bool> = const { Cell::new(false) };
}

/// Clears [`FLUSHING`] however the flush ends (an error unwinds through it).
struct ResetOnDrop;

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        FLUSHING.with(|f| f.set(false));
    }
}

fn flush_loop() {
    // Catch up with DDL committed by others since our last statement (a
    // dropped TVIEW, a replaced definition): the registry must see it.
    // SAFETY: processes pending invalidation messages, as any lock does.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    // What each TVIEW of the previous round refreshed (a full rebuild, or
    // its direct keys). Keys cascaded to it since came from writes to
    // upstream TVIEWs — which only maintenance writes, and which the flush
    // order puts before it in that round — so its refresh already read
    // them: a category renamed refreshes tv_category once, not again for the
    // cascade from its 50 products. Work from anything else (a trigger on a
    // TVIEW writing a base table, a foreign-key action) is kept whole.
    let mut last_round: HashMap<pg_sys::Oid, (bool, BTreeSet<String>)> = HashMap::new();
    loop {
        let pending = queue::pending();
        if pending.is_empty() {
            lock_writes(Request::default());
            queue::clear_work();
            crate::shmem::set_idle();
            return;
        }
        let Some(reg) = registry::get() else {
            queue::clear_work();
            return;
        };
        let mut batch: Vec<(usize, Work)> = Vec::new();
        for relid in pending {
            match reg.index.get(&relid) {
                Some(i) => {
                    let mut work = queue::take(relid).unwrap_or_default();
                    if let Some((full, keys)) = last_round.get(&relid) {
                        skip_refreshed(&mut work, *full, keys);
                    }
                    if !work.is_empty() {
                        batch.push((*i, work));
                    }
                }
                // Queued for a TVIEW dropped in this transaction.
                None => {
                    queue::take(relid);
                }
            }
        }
        batch.sort_by_key(|(i, _)| *i);
        let jobs: Vec<(usize, Job)> = batch
            .into_iter()
            .map(|(i, w)| (i, Job::new(&reg.tviews[i], w)))
            .collect();
        last_round = jobs
            .iter()
            .map(|(i, job)| (reg.tviews[*i].relid, (job.full, job.direct.clone())))
            .collect();
        let mut req = Request::default();
        let mut counters: Vec<Counters> = jobs.iter().map(|_| Counters::default()).collect();
        Spi::connect_mut(|_client| {
            for ((i, job), c) in jobs.iter().zip(counters.iter_mut()) {
                let tv = &reg.tviews[*i];
                security::as_user(tv.owner, tv.restricted, || job.estimate(tv, &mut req, c));
            }
        });
        // One lock request for the round, on behalf of all its TVIEWs: the
        // live queue shows it without a TVIEW, and each TVIEW of the round
        // counts its time and waits (and its failure: a lock timeout, a
        // deadlock, a serialization failure).
        let (keys, starts) = queue::size();
        crate::shmem::set_phase(
            crate::shmem::Phase::Locking,
            pg_sys::Oid::INVALID,
            (keys + starts) as i64,
        );
        let lock_started = Instant::now();
        let round: Vec<pg_sys::Oid> = jobs.iter().map(|(i, _)| reg.tviews[*i].relid).collect();
        let acquired = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| lock_writes(req)))
            .catch_others(|e| {
                let failed = Counters {
                    refreshes: 1,
                    lock_time: lock_started.elapsed(),
                    ..Counters::default()
                };
                for relid in &round {
                    crate::shmem::record_refresh(*relid, &failed, true);
                }
                e.rethrow()
            })
            .execute();
        for c in counters.iter_mut() {
            c.lock_time += lock_started.elapsed();
            c.lock_waits += acquired.waits as i64;
            c.lock_wait_time += acquired.wait_time;
        }
        for ((i, job), c) in jobs.into_iter().zip(counters) {
            flush_one(&reg, i, job, c);
        }
    }
}

/// Drops from `work` the cascaded keys the previous round's refresh of its
/// TVIEW already covered (see `flush_loop`): all of them after a full
/// rebuild, else those it refreshed. Keys from other writes, start values,
/// rebuild marks and NULL-key checks are kept.
fn skip_refreshed(work: &mut Work, full: bool, keys: &BTreeSet<String>) {
    let before = work.cascade_keys.len();
    if full {
        work.cascade_keys.clear();
    } else {
        work.cascade_keys.retain(|k| !keys.contains(k));
    }
    work.cascaded = work
        .cascaded
        .saturating_sub(before - work.cascade_keys.len());
}

fn strict_isolation() -> bool {
    // SAFETY: reading a backend-global integer.
    unsafe { pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 }
}

/// Exclusive locks on the link values of every row this transaction
/// changed (captured by the triggers, old and new images).
fn lock_writes(mut req: Request) -> Acquired {
    let (written, truncated) = queue::take_whole_writes();
    for rel in written {
        req.intent(rel, Mode::Exclusive);
    }
    for rel in truncated {
        req.relation(rel, Mode::Exclusive);
    }
    let links = queue::take_links();
    for ((rel, column), values) in &links {
        for v in values {
            req.value(*rel, column, v, Mode::Exclusive);
        }
    }
    if req.len() > 0 {
        return req.acquire(strict_isolation());
    }
    Acquired::default()
}

fn flush_one(reg: &Registry, idx: usize, job: Job, mut c: Counters) {
    let tv = &reg.tviews[idx];
    let started = Instant::now();
    // The round's lock request, before this TVIEW's own work, is part of
    // its time.
    let round_lock = c.lock_time;
    c.refreshes = 1;
    c.cascaded += job.cascaded as i64;
    let relid = tv.relid;
    // An error counts against the TVIEW before it ends the transaction.
    let c_ref = &mut c;
    // A full rebuild meets NULL keys itself (the key column is NOT NULL).
    let check_nulls = !job.full;
    PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        Spi::connect_mut(|_client| {
            security::as_user(tv.owner, tv.restricted, || {
                job.refresh(tv, c_ref);
                if check_nulls {
                    null_keys(tv, c_ref);
                }
            });
        });
    }))
    .catch_others(move |e| {
        let failed = Counters {
            refreshes: 1,
            time: started.elapsed(),
            ..Counters::default()
        };
        crate::shmem::record_refresh(relid, &failed, true);
        e.rethrow()
    })
    .execute();
    c.time = started.elapsed() + round_lock;
    crate::shmem::record_refresh(relid, &c, false);
    stats::record_refresh(relid, c);
}

/// Fails when the definition of `tv`, whose key may be NULL, now returns a
/// NULL key: no key set reaches such a row, and the TVIEW cannot hold it.
fn null_keys(tv: &Tview, c: &mut Counters) {
    let Some(sql) = &tv.plan.null_keys else {
        return;
    };
    let found = security::with_settings(&tv.settings, || {
        prepared(&tv.null_keys, sql, &[]).run(&[], None)
    });
    c.statements += 1;
    if !found.is_empty() {
        raise_with(
            "23502",
            format!(
                "TVIEW {}: its definition returned a NULL key",
                tv.names.display()
            ),
            Some(format!(
                "After this transaction's changes the definition returns a row whose key column \"{}\" is NULL; a TVIEW cannot hold it.",
                tv.plan.key
            )),
            Some(format!(
                "Filter out rows where \"{}\" is NULL in the definition (WHERE ... IS NOT NULL), or keep the change from making it NULL.",
                tv.plan.key
            )),
        );
    }
}

/// Settings for the lock-level statements: the TVIEW's, plus the
/// transport settings when values' text depends on settings (so they
/// match the text the capture triggers produced).
fn lock_settings(tv: &Tview) -> Vec<(String, String)> {
    let mut s = tv.settings.clone();
    if tv.lock_transport {
        s.extend(security::transport_settings());
    }
    s
}

/// One TVIEW's work in a flush round, parsed from its queue entry.
struct Job {
    full: bool,
    /// Keys that came from writes to upstream TVIEWs.
    cascaded: usize,
    direct: BTreeSet<String>,
    /// Start values per join path (index into the plan's derive statements).
    starts: HashMap<usize, Vec<String>>,
}

impl Job {
    fn new(tv: &Tview, work: Work) -> Job {
        let mut full = work.full;
        let mut starts: HashMap<usize, Vec<String>> = HashMap::new();
        if !full {
            for (sql, values) in work.starts {
                if values.is_empty() {
                    continue;
                }
                match tv.plan.derive.iter().position(|d| *d == sql) {
                    Some(i) => starts.entry(i).or_default().extend(values),
                    None => {
                        // The plan changed under us (DDL in this transaction).
                        full = true;
                        break;
                    }
                }
            }
        }
        Job {
            full,
            cascaded: work.cascaded,
            direct: work.keys.into_iter().chain(work.cascade_keys).collect(),
            starts,
        }
    }

    fn is_empty(&self) -> bool {
        !self.full && self.direct.is_empty() && self.starts.is_empty()
    }

    /// Adds the shared locks this refresh will likely need to `req`,
    /// computing them without locks (they are verified after locking).
    fn estimate(&self, tv: &Tview, req: &mut Request, c: &mut Counters) {
        if self.is_empty() {
            return;
        }
        if self.full {
            for s in &tv.analysis.sources {
                req.relation(s.relation, Mode::Share);
            }
            return;
        }
        for rel in &tv.locks.whole {
            req.relation(*rel, Mode::Share);
        }
        let mut keys = self.direct.clone();
        if !self.starts.is_empty() {
            let fwd =
                security::with_settings(&lock_settings(tv), || forward_values(tv, &self.starts, c));
            add_shared(req, fwd);
            keys.extend(security::with_settings(&tv.settings, || {
                derive(tv, &self.starts, None, c)
            }));
        }
        if !keys.is_empty() {
            let rev = security::with_settings(&lock_settings(tv), || reverse_values(tv, &keys, c));
            add_shared(req, rev);
        }
    }

    fn refresh(self, tv: &Tview, c: &mut Counters) {
        if self.is_empty() {
            return;
        }
        let strict = strict_isolation();
        if self.full {
            refresh_all(tv, strict, c);
            return;
        }
        let relid = tv.relid;
        let lock = |values: Vec<(tviews_core::locks::Target, String)>, c: &mut Counters| -> usize {
            let mut req = Request::default();
            add_shared(&mut req, values);
            crate::shmem::set_phase(crate::shmem::Phase::Locking, relid, 0);
            let started = Instant::now();
            let a = req.acquire(strict);
            c.lock_time += started.elapsed();
            c.lock_waits += a.waits as i64;
            c.lock_wait_time += a.wait_time;
            a.taken
        };
        let starts = &self.starts;

        // Phase A: every value deriving follows is locked (start values,
        // values found beyond the first hop); derive in a fresh snapshot
        // taken after the locks; again if the values found were not all
        // locked yet.
        let mut keys: BTreeSet<String> = self.direct;
        if !starts.is_empty() {
            let mut derived = BTreeSet::new();
            for round in 0..=MAX_LOCK_ROUNDS {
                let values =
                    security::with_settings(&lock_settings(tv), || forward_values(tv, starts, c));
                if lock(values, c) == 0 && round > 0 {
                    break;
                }
                if round == MAX_LOCK_ROUNDS {
                    kept_changing(tv);
                }
                crate::shmem::set_phase(crate::shmem::Phase::Deriving, relid, 0);
                let started = Instant::now();
                derived = security::with_settings(&tv.settings, || derive(tv, starts, None, c));
                c.derive_time += started.elapsed();
            }
            keys.extend(derived);
        }
        if keys.is_empty() {
            return;
        }

        // Phase B: every value linking the keys back to the sources is
        // locked; checked again in a fresh snapshot after any new lock.
        for round in 0..=MAX_LOCK_ROUNDS {
            let values =
                security::with_settings(&lock_settings(tv), || reverse_values(tv, &keys, c));
            if lock(values, c) == 0 {
                break;
            }
            if round == MAX_LOCK_ROUNDS {
                kept_changing(tv);
            }
        }
        if strict {
            check_snapshot(tv, starts, &keys, c);
        }
        c.keys += keys.len() as i64;
        crate::shmem::set_phase(crate::shmem::Phase::Applying, relid, keys.len() as i64);
        let started = Instant::now();
        let _maintenance = crate::guard::Maintenance::begin();
        let result = security::with_settings(&tv.settings, || {
            guard_definition_errors(&tv.names.display(), &tv.plan.key, || {
                prepared(&tv.apply_keys, &tv.plan.apply_keys, &[pg_sys::TEXTARRAYOID])
                    .run(&[Arg::TextArray(keys.iter().cloned().collect())], None)
            })
        });
        c.statements += 1;
        c.apply_time += started.elapsed();
        count_result(tv, &result, c);
    }
}

fn add_shared(req: &mut Request, values: Vec<(tviews_core::locks::Target, String)>) {
    for (t, v) in values {
        req.value(t.relation, &t.column, &v, Mode::Share);
    }
}

/// Values deriving follows: start values on their targets, and the
/// values found beyond the first hop of longer paths.
fn forward_values(
    tv: &Tview,
    starts: &HashMap<usize, Vec<String>>,
    c: &mut Counters,
) -> Vec<(tviews_core::locks::Target, String)> {
    let mut out = Vec::new();
    for (path, values) in starts {
        for t in &tv.locks.start_targets[*path] {
            out.extend(values.iter().map(|v| (t.clone(), v.clone())));
        }
        if let (Some(Some(q)), Some(cell)) = (tv.locks.forward.get(*path), tv.forward.get(*path)) {
            let rows = prepared(cell, &q.sql, &[pg_sys::TEXTARRAYOID])
                .run(&[Arg::TextArray(values.clone())], None);
            c.statements += 1;
            push_levels(&rows, &q.levels, &mut out);
        }
    }
    out
}

/// Values the recompute of `keys` reads through: the keys on the key
/// targets, and the values linking them back to every source.
fn reverse_values(
    tv: &Tview,
    keys: &BTreeSet<String>,
    c: &mut Counters,
) -> Vec<(tviews_core::locks::Target, String)> {
    let mut out = Vec::new();
    for t in &tv.locks.key_targets {
        out.extend(keys.iter().map(|k| (t.clone(), k.clone())));
    }
    let key_arg = [Arg::TextArray(keys.iter().cloned().collect())];
    for (q, cell) in tv.locks.reverse.iter().zip(&tv.reverse) {
        let rows = prepared(cell, &q.sql, &[pg_sys::TEXTARRAYOID]).run(&key_arg, None);
        c.statements += 1;
        push_levels(&rows, &q.levels, &mut out);
    }
    out
}

fn kept_changing(tv: &Tview) -> ! {
    raise_with(
        "40001",
        "could not serialize access: the rows a TVIEW refresh reads kept changing",
        Some(format!(
            "TVIEW {}: concurrent writers changed the links of its keys in {MAX_LOCK_ROUNDS} rounds in a row.",
            tv.names.display()
        )),
        Some("Retry the transaction.".into()),
    )
}

fn push_levels(
    rows: &[Vec<Option<String>>],
    levels: &[Vec<tviews_core::locks::Target>],
    out: &mut Vec<(tviews_core::locks::Target, String)>,
) {
    for r in rows {
        let (Some(Some(l)), Some(Some(v))) = (r.first(), r.get(1)) else {
            continue;
        };
        let Some(targets) = l.parse::<usize>().ok().and_then(|l| levels.get(l)) else {
            continue;
        };
        out.extend(targets.iter().map(|t| (t.clone(), v.clone())));
    }
}

/// Keys from start values, each join path's statement in a fresh snapshot
/// (or in `snapshot`).
fn derive(
    tv: &Tview,
    starts: &HashMap<usize, Vec<String>>,
    snapshot: Option<pg_sys::Snapshot>,
    c: &mut Counters,
) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (path, values) in starts {
        let rows = prepared(
            &tv.derive[*path],
            &tv.plan.derive[*path],
            &[pg_sys::TEXTARRAYOID],
        )
        .run(&[Arg::TextArray(values.clone())], snapshot);
        c.statements += 1;
        keys.extend(
            rows.into_iter()
                .filter_map(|r| r.into_iter().next().flatten()),
        );
    }
    keys
}

/// REPEATABLE READ / SERIALIZABLE: the keys and rows computed in the
/// transaction's snapshot must be what the latest committed state gives.
fn check_snapshot(
    tv: &Tview,
    starts: &HashMap<usize, Vec<String>>,
    keys: &BTreeSet<String>,
    c: &mut Counters,
) {
    security::with_settings(&tv.settings, || {
        // SAFETY: a registered copy of the latest snapshot, unregistered below.
        let latest = unsafe { pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot()) };
        let fresh_keys = derive(tv, starts, Some(latest), c);
        let mine_keys = derive(tv, starts, None, c);
        let arg = [Arg::TextArray(keys.iter().cloned().collect())];
        let digest = prepared(
            &tv.digest_keys,
            &tv.plan.digest_keys,
            &[pg_sys::TEXTARRAYOID],
        );
        let fresh = digest.run(&arg, Some(latest));
        let mine = digest.run(&arg, None);
        c.statements += 4;
        // SAFETY: registered above.
        unsafe { pg_sys::UnregisterSnapshot(latest) };
        if fresh_keys != mine_keys || fresh != mine {
            serialization_failure(tv);
        }
    });
}

fn serialization_failure(tv: &Tview) -> ! {
    raise_with(
        "40001",
        "could not serialize access due to a concurrent update of a TVIEW's sources",
        Some(format!(
            "TVIEW {}: a transaction that committed after this one's snapshot changed rows this refresh reads.",
            tv.names.display()
        )),
        Some("Retry the transaction.".into()),
    )
}

/// A full rebuild reads every source: lock them all, shared.
fn refresh_all(tv: &Tview, strict: bool, c: &mut Counters) {
    let mut req = Request::default();
    for s in &tv.analysis.sources {
        req.relation(s.relation, Mode::Share);
    }
    crate::shmem::set_phase(crate::shmem::Phase::Locking, tv.relid, 0);
    let started = Instant::now();
    let a = req.acquire(strict);
    c.lock_time += started.elapsed();
    c.lock_waits += a.waits as i64;
    c.lock_wait_time += a.wait_time;
    c.full_rebuilds += 1;
    if strict {
        security::with_settings(&tv.settings, || {
            // SAFETY: as in check_snapshot.
            let latest = unsafe { pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot()) };
            let digest = prepared(&tv.digest_all, &tv.plan.digest_all, &[]);
            let fresh = digest.run(&[], Some(latest));
            let mine = digest.run(&[], None);
            unsafe { pg_sys::UnregisterSnapshot(latest) };
            c.statements += 2;
            if fresh != mine {
                serialization_failure(tv);
            }
        });
    }
    crate::shmem::set_phase(crate::shmem::Phase::Applying, tv.relid, 0);
    let started = Instant::now();
    let _maintenance = crate::guard::Maintenance::begin();
    let result = security::with_settings(&tv.settings, || {
        guard_definition_errors(&tv.names.display(), &tv.plan.key, || {
            prepared(&tv.apply_all, &tv.plan.apply_all, &[]).run(&[], None)
        })
    });
    c.apply_time += started.elapsed();
    c.statements += 1;
    count_result(tv, &result, c);
}

fn count_result(tv: &Tview, result: &[Vec<Option<String>>], c: &mut Counters) {
    let n = |i: usize| -> i64 {
        result
            .first()
            .and_then(|r| r.get(i).cloned().flatten())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    if n(4) > 0 {
        // ON CONFLICT would keep one of the rows silently when the others
        // are identical to what is stored: refuse, like a unique index.
        raise_with(
            "21000",
            format!(
                "TVIEW {}: its definition returned the same key more than once",
                tv.names.display()
            ),
            Some(format!(
                "{} key(s) appeared more than once in the definition's result for key column \"{}\".",
                n(4),
                tv.plan.key
            )),
            Some("Make the key unique (join on a unique column, or GROUP BY the key), or choose another key column.".into()),
        );
    }
    c.recomputed += n(0);
    c.deleted += n(1);
    c.inserted += n(2);
    c.updated += n(3);
    c.skipped += n(0) - n(2) - n(3);
}

/// Turns the errors a definition can cause at refresh time into errors
/// that name the TVIEW.
fn guard_definition_errors<R>(tview: &str, key: &str, f: impl FnOnce() -> R) -> R {
    PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .catch_when(PgSqlErrorCode::ERRCODE_CARDINALITY_VIOLATION, |_| {
            raise_with(
                "21000",
                format!("TVIEW {tview}: its definition returned the same key more than once"),
                Some(format!(
                    "Each value of the key column \"{key}\" must appear at most once in the definition's result."
                )),
                Some("Make the key unique (join on a unique column, or GROUP BY the key), or choose another key column.".into()),
            )
        })
        .catch_when(PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION, |e| {
            let detail = match &e {
                pgrx::pg_sys::panic::CaughtError::PostgresError(r) => r.message().to_string(),
                _ => String::new(),
            };
            raise_with(
                "23502",
                format!("TVIEW {tview}: its definition returned a NULL key"),
                Some(detail),
                Some(format!("Filter out rows where \"{key}\" is NULL in the definition.")),
            )
        })
        // Any other error of the definition (a division by zero, a failed
        // cast...): the same error, saying which TVIEW's refresh hit it.
        .catch_others(|e| match e {
            pgrx::pg_sys::panic::CaughtError::PostgresError(r)
            | pgrx::pg_sys::panic::CaughtError::ErrorReport(r) => {
                let context = format!("while refreshing TVIEW {tview}");
                let detail = match r.detail() {
                    Some(d) => format!("{d}\n({context})"),
                    None => format!("Raised {context}."),
                };
                let mut report = pgrx::pg_sys::panic::ErrorReport::new(
                    r.sql_error_code(),
                    r.message().to_string(),
                    "pg_tviews",
                )
                .set_detail(detail);
                if let Some(h) = r.hint() {
                    report = report.set_hint(h.to_string());
                }
                report.report(PgLogLevel::ERROR);
                unreachable!("ERROR does not return")
            }
            other => other.rethrow(),
        })
        .execute()
}
