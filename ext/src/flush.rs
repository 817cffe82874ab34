//! Flush: turn the queue into TVIEW rows (DESIGN.md §4–6).
//!
//! TVIEWs are refreshed one at a time in the global flush order
//! (dependencies first), each with a constant number of statements:
//! 1. take the TVIEW's refresh lock (held to commit: see "Concurrency" in
//!    docs/ARCHITECTURE.md);
//! 2. derive keys from join-path start values, in a fresh snapshot taken
//!    after the lock, so rows committed by the previous holder are seen;
//! 3. apply: recompute the keys, delete, upsert, skip identical rows.
//!
//! Writes to a TVIEW fire the capture triggers of TVIEWs that read it, so
//! cascades queue themselves and are refreshed later in the same loop.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::error::raise_with;
use crate::queue::{self, Work};
use crate::registry::{self, LOCK_NOWAIT_SQL, LOCK_SQL, Registry, prepared};
use crate::stats::{self, Counters};
use crate::{security, spi};

/// Refreshes everything queued, cascades included, until the queue is empty.
pub fn flush_pending() {
    loop {
        let pending = queue::pending();
        if pending.is_empty() {
            queue::clear();
            return;
        }
        let Some(reg) = registry::get() else {
            queue::clear();
            return;
        };
        let next = pending
            .iter()
            .filter_map(|relid| reg.index.get(relid).map(|i| (*i, *relid)))
            .min_by_key(|(i, _)| *i);
        match next {
            Some((idx, relid)) => {
                let work = queue::take(relid).unwrap_or_default();
                flush_one(&reg, idx, work);
            }
            None => {
                // Queued for TVIEWs that no longer exist (dropped in this
                // transaction): nothing to refresh.
                for relid in pending {
                    queue::take(relid);
                }
            }
        }
    }
}

fn flush_one(reg: &Registry, idx: usize, work: Work) {
    let tv = &reg.tviews[idx];
    let started = Instant::now();
    let mut c = Counters {
        refreshes: 1,
        ..Counters::default()
    };
    Spi::connect_mut(|client| {
        lock(client, reg, tv.relid, &mut c);
        security::as_user(tv.owner, tv.restricted, || {
            security::with_settings(&tv.settings, || apply(client, reg, idx, work, &mut c))
        });
    });
    c.time = started.elapsed();
    crate::shmem::record_flush(
        c.keys.max(0) as u64,
        (c.inserted + c.updated + c.deleted).max(0) as u64,
        c.skipped.max(0) as u64,
    );
    stats::record_refresh(tv.relid, c);
}

fn repeatable_read() -> bool {
    // SAFETY: reading a backend-global integer.
    unsafe { pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 }
}

/// Takes the TVIEW's refresh lock, as the extension owner (the lock table
/// is ours, not the writer's).
fn lock(client: &mut SpiClient<'_>, reg: &Registry, relid: pg_sys::Oid, c: &mut Counters) {
    let safe = vec![(
        "search_path".to_string(),
        security::SAFE_SEARCH_PATH.to_string(),
    )];
    security::as_user(reg.ext_owner, false, || {
        security::with_settings(&safe, || {
            if repeatable_read() {
                let stmt = prepared(
                    &reg.lock_nowait_stmt,
                    client,
                    LOCK_NOWAIT_SQL,
                    &[pg_sys::OIDOID],
                );
                let mut client = AssertUnwindSafe(&mut *client);
                PgTryBuilder::new(AssertUnwindSafe(|| {
                    spi::rows_prepared(&mut client, stmt, &[spi::oid_arg(relid)]);
                }))
                .catch_when(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE, |_| {
                    raise_with(
                        "40001",
                        "could not serialize access due to a concurrent refresh of the same TVIEW",
                        Some("Another transaction is refreshing this TVIEW; under REPEATABLE READ this transaction could not see its result.".into()),
                        Some("Retry the transaction.".into()),
                    )
                })
                .execute();
                c.statements += 1;
            }
            let stmt = prepared(&reg.lock_stmt, client, LOCK_SQL, &[pg_sys::OIDOID]);
            spi::rows_prepared(client, stmt, &[spi::oid_arg(relid)]);
            c.statements += 1;
        })
    });
}

fn apply(client: &mut SpiClient<'_>, reg: &Registry, idx: usize, work: Work, c: &mut Counters) {
    let tv = &reg.tviews[idx];
    let mut keys = work.keys;
    let mut full = work.full;
    if !full {
        for (sql, values) in work.starts {
            if values.is_empty() {
                continue;
            }
            let Some(i) = tv.plan.derive.iter().position(|d| *d == sql) else {
                // The plan changed under us (DDL in this transaction).
                full = true;
                break;
            };
            let stmt = prepared(&tv.derive[i], client, &sql, &[pg_sys::TEXTARRAYOID]);
            let rows = spi::rows_prepared(
                client,
                stmt,
                &[spi::text_array(values.into_iter().collect())],
            );
            keys.extend(
                rows.into_iter()
                    .filter_map(|r| r.into_iter().next().flatten()),
            );
            c.statements += 1;
        }
    }
    if !full && keys.is_empty() {
        return;
    }
    c.keys += keys.len() as i64;
    let result = guard_definition_errors(&tv.names.display(), &tv.plan.key, || {
        if full {
            c.full_rebuilds += 1;
            let stmt = prepared(&tv.apply_all, client, &tv.plan.apply_all, &[]);
            spi::rows_prepared(client, stmt, &[])
        } else {
            let stmt = prepared(
                &tv.apply_keys,
                client,
                &tv.plan.apply_keys,
                &[pg_sys::TEXTARRAYOID],
            );
            spi::rows_prepared(client, stmt, &[spi::text_array(keys.into_iter().collect())])
        }
    });
    c.statements += 1;
    let n = |i: usize| -> i64 {
        result
            .first()
            .and_then(|r| r.get(i).cloned().flatten())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    c.recomputed += n(0);
    c.deleted += n(1);
    c.inserted += n(2);
    c.updated += n(3);
    c.skipped += n(0) - n(2) - n(3);
}

/// Turns the errors a definition can cause at refresh time into errors
/// that name the TVIEW.
fn guard_definition_errors<R>(tview: &str, key: &str, f: impl FnOnce() -> R) -> R {
    PgTryBuilder::new(AssertUnwindSafe(f))
        .catch_when(PgSqlErrorCode::ERRCODE_CARDINALITY_VIOLATION, |_| {
            raise_with(
                "21000",
                format!("TVIEW {tview}: its definition returned the same key more than once"),
                Some(format!(
                    "Each value of the key column \"{key}\" must appear at most once in the definition's result."
                )),
                Some(
                    "Make the key unique (join on a unique column, or GROUP BY the key), or choose another key column."
                        .into(),
                ),
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
        .execute()
}
