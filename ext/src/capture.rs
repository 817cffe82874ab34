//! The capture trigger: statement-level AFTER INSERT/UPDATE/DELETE (with
//! transition tables) and TRUNCATE on every source relation. It runs when
//! the statement runs (DESIGN.md §3): one query over the transition tables
//! returns the keys and join-path start values the change can affect, for
//! every TVIEW reading the relation, and they go to the queue.

use pgrx::prelude::*;

use crate::error::raise_with;
use crate::registry::{self, prepared};
use crate::{queue, security, stats};
use tviews_core::plan::SlotUse;

#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_tviews_capture() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `tviews.capture()`.
///
/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo`.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn tviews_capture(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is valid; context is checked to be TriggerData.
    unsafe {
        let ctx = (*fcinfo).context;
        if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
            raise_with(
                "39P01",
                "tviews.capture() was not called as a trigger",
                None,
                Some("It is installed by pg_tviews on the sources of TVIEWs; do not call it directly.".into()),
            );
        }
        let td = ctx as *mut pg_sys::TriggerData;
        let event = (*td).tg_event;
        let is_statement = event & pg_sys::TRIGGER_EVENT_ROW == 0;
        let is_after = event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_AFTER;
        if !is_statement || !is_after {
            raise_with(
                "39P01",
                "tviews.capture() must fire AFTER ... FOR EACH STATEMENT",
                None,
                None,
            );
        }
        let relid = (*(*td).tg_relation).rd_id;
        capture(td, relid, event & pg_sys::TRIGGER_EVENT_OPMASK);
    }
    // refresh_mode = statement: the statement is complete when its
    // statement-level triggers fire, so refresh now (the transaction then
    // reads its own writes in the TVIEWs).
    if crate::settings::statement_mode() {
        crate::flush::flush_pending();
    }
    pg_sys::Datum::from(0)
}

unsafe fn capture(td: *mut pg_sys::TriggerData, relid: pg_sys::Oid, op: u32) {
    let Some(reg) = registry::get() else { return };
    let Some(source) = reg.sources.get(&relid) else {
        // A trigger left on a table no TVIEW reads any more: nothing to do.
        return;
    };
    // A TVIEW reading this table cannot be maintained: the write fails
    // rather than leave it stale.
    if let Some(b) = source.broken.first().and_then(|i| reg.broken.get(*i)) {
        b.raise();
    }
    if op == pg_sys::TRIGGER_EVENT_TRUNCATE {
        for t in &source.readers {
            queue::mark_full(*t);
        }
        queue::add_whole_write(relid, true);
        return;
    }
    // SAFETY: the tuplestores belong to this trigger call.
    let rows = unsafe {
        let count = |ts: *mut pg_sys::Tuplestorestate| {
            if ts.is_null() {
                0
            } else {
                pg_sys::tuplestore_tuple_count(ts)
            }
        };
        count((*td).tg_oldtable) + count((*td).tg_newtable)
    };
    if rows == 0 {
        return;
    }
    for t in &source.plan.full {
        queue::mark_full(source.readers[*t]);
    }
    for t in &source.readers {
        if reg.tview(*t).is_some_and(|tv| tv.plan.null_keys.is_some()) {
            queue::mark_null_check(*t);
        }
    }
    if !source.plan.full.is_empty() {
        queue::add_whole_write(relid, false);
    }
    let (sql, cell) = match op {
        pg_sys::TRIGGER_EVENT_INSERT => (&source.plan.on_insert, &source.on_insert),
        pg_sys::TRIGGER_EVENT_UPDATE => (&source.plan.on_update, &source.on_update),
        pg_sys::TRIGGER_EVENT_DELETE => (&source.plan.on_delete, &source.on_delete),
        _ => return,
    };
    let Some(sql) = sql else { return };
    let mut settings = vec![(
        "search_path".to_string(),
        security::SAFE_SEARCH_PATH.to_string(),
    )];
    if source.needs_transport || (op == pg_sys::TRIGGER_EVENT_UPDATE && source.plan.update_filtered)
    {
        settings.extend(security::transport_settings());
    }
    let started = std::time::Instant::now();
    let values = security::with_settings(&settings, || {
        Spi::connect_mut(|client| {
            // SAFETY: registers this call's transition tables with SPI.
            unsafe { pg_sys::SPI_register_trigger_data(td) };
            let _ = client;
            prepared(cell, sql, &[]).run_for_rows(rows.max(0) as u64)
        })
    });
    let mut per_slot: Vec<Vec<String>> = vec![Vec::new(); source.plan.slots.len()];
    for row in values {
        let (Some(Some(slot)), Some(Some(v))) = (row.first(), row.get(1)) else {
            continue;
        };
        if let Some(bucket) = slot.parse::<usize>().ok().and_then(|s| per_slot.get_mut(s)) {
            bucket.push(v.clone());
        }
    }
    for (slot, values) in per_slot.into_iter().enumerate() {
        if values.is_empty() {
            continue;
        }
        for use_ in &source.plan.slots[slot] {
            match *use_ {
                SlotUse::Keys { tview } if reg.index.contains_key(&relid) => {
                    // Keys from writes to an upstream TVIEW: a cascade.
                    queue::add_cascaded_keys(source.readers[tview], values.iter().cloned());
                }
                SlotUse::Keys { tview } => {
                    queue::add_keys(source.readers[tview], values.iter().cloned())
                }
                SlotUse::Start { tview, path } => {
                    let relid = source.readers[tview];
                    if let Some(sql) = reg.tview(relid).and_then(|t| t.plan.derive.get(path)) {
                        queue::add_starts(relid, sql, values.iter().cloned());
                    } else {
                        queue::mark_full(relid);
                    }
                }
                SlotUse::Full { tview } => queue::mark_full(source.readers[tview]),
                SlotUse::Link { column } => {
                    if let Some(t) = source.plan.links.get(column) {
                        queue::add_links(relid, &t.column, values.iter().cloned());
                    }
                }
            }
        }
    }
    let elapsed = started.elapsed();
    stats::record_capture(relid, elapsed);
    crate::shmem::record_capture(relid, rows.max(0) as u64, elapsed);
    queue::add_written(relid);
    let (keys, starts) = queue::size();
    crate::shmem::set_phase(
        crate::shmem::Phase::Queued,
        pg_sys::Oid::INVALID,
        (keys + starts) as i64,
    );
}
