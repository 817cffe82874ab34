//! Only maintenance writes a TVIEW (DESIGN.md §7): a statement-level
//! BEFORE trigger on every TVIEW refuses INSERT, UPDATE, DELETE, TRUNCATE
//! and COPY that do not come from a refresh, whoever runs them. A superuser
//! may repair by hand with `SET pg_tviews.allow_direct_writes = on`.

use std::cell::Cell;

use pgrx::prelude::*;

use crate::error::raise_with;

thread_local! {
    static MAINTAINING: Cell<u32> = const { Cell::new(0) };
}

/// Marks the current statements as maintenance while it lives.
pub struct Maintenance;

impl Maintenance {
    pub fn begin() -> Maintenance {
        MAINTAINING.with(|m| m.set(m.get() + 1));
        Maintenance
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        MAINTAINING.with(|m| m.set(m.get().saturating_sub(1)));
    }
}

/// A new transaction starts outside maintenance, however the last ended.
pub fn reset() {
    MAINTAINING.with(|m| m.set(0));
}

#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_tviews_guard() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `tviews.guard()`.
///
/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo`.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn tviews_guard(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is valid; the context is checked to be TriggerData.
    let rel = unsafe {
        let ctx = (*fcinfo).context;
        if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
            raise_with(
                "39P01",
                "tviews.guard() was not called as a trigger",
                None,
                Some(
                    "It is installed by pg_tviews on every TVIEW; do not call it directly.".into(),
                ),
            );
        }
        (*(*(ctx as *mut pg_sys::TriggerData)).tg_relation).rd_id
    };
    if MAINTAINING.with(Cell::get) > 0 {
        return pg_sys::Datum::from(0);
    }
    // SAFETY: superuser() reads the current user's role; the GUC is ours.
    if crate::settings::ALLOW_DIRECT_WRITES.get() && unsafe { pg_sys::superuser() } {
        return pg_sys::Datum::from(0);
    }
    // SAFETY: get_rel_name returns a palloc'd name or NULL.
    let name = unsafe {
        let p = pg_sys::get_rel_name(rel);
        if p.is_null() {
            String::from("a TVIEW")
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    let hint = if is_copy() {
        // Most likely a data-only restore into a schema that has the TVIEW.
        format!(
            "If this is a data-only restore, the TVIEW fills from its sources as they load: leave its rows out of the dump (pg_dump --exclude-table-data), or restore with --disable-triggers to load sources and TVIEWs as dumped. To rebuild it, run SELECT pg_tviews_refresh('{name}')."
        )
    } else {
        format!(
            "Change its source tables instead. To rebuild it, run SELECT pg_tviews_refresh('{name}'); to repair by hand, a superuser can SET pg_tviews.allow_direct_writes = on."
        )
    };
    raise_with(
        "42809",
        format!("cannot change TVIEW \"{name}\" directly"),
        Some(
            "A TVIEW is maintained from its definition by pg_tviews; only its refresh writes it."
                .into(),
        ),
        Some(hint),
    )
}

/// Whether the statement being run is a COPY (the client's query text).
fn is_copy() -> bool {
    // SAFETY: debug_query_string is NULL or the current query's C string.
    let q = unsafe { pg_sys::debug_query_string };
    if q.is_null() {
        return false;
    }
    // SAFETY: checked non-NULL above; NUL-terminated by PostgreSQL.
    let q = unsafe { std::ffi::CStr::from_ptr(q) }.to_string_lossy();
    q.trim_start()
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("copy"))
}
