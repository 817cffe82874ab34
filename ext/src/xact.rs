//! When the queue is flushed: just before the transaction commits or is
//! prepared (DESIGN.md §5, option b).
//!
//! PostgreSQL's `CommitTransaction` fires deferred triggers, then calls
//! the PRE_COMMIT callbacks; work done after that would queue deferred
//! trigger events that are silently dropped. So the callback flushes, then
//! fires whatever deferred events the flush queued itself (a deferred
//! constraint or trigger on a TVIEW, or on what a trigger there writes),
//! and repeats until neither the queue nor the deferred events hold
//! anything. `PREPARE TRANSACTION` gets the same treatment, so a prepared
//! transaction already holds its TVIEW changes and `COMMIT PREPARED` from
//! any session (or after a restart) needs nothing from us.

use pgrx::prelude::*;

use crate::{flush, queue};

pub fn register_callbacks() {
    // SAFETY: registered once per backend, in _PG_init.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

/// A subtransaction that aborts releases the locks it took: forget which
/// value locks are held so the next flush takes them again. (Queued keys
/// stay: refreshing them anyway is merely extra work.)
#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        crate::locks::forget();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => {
            // Bounded: a cascade that keeps re-queueing itself is a bug,
            // not a reason to spin forever.
            let started = std::time::Instant::now();
            for _ in 0..1000 {
                if queue::is_empty() {
                    crate::shmem::record_source_refresh(&queue::take_written(), started.elapsed());
                    return;
                }
                // No portal is active at commit: SPI needs an outer
                // snapshot (each of our statements still takes its own).
                // SAFETY: pushed and popped around the flush.
                unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
                flush::flush_pending();
                unsafe { pg_sys::PopActiveSnapshot() };
                // SAFETY: we are in pre-commit, at query depth -1, where
                // CommitTransaction itself calls this function.
                unsafe { pg_sys::AfterTriggerFireDeferred() };
            }
            crate::error::raise_with(
                "54000",
                "pg_tviews: refresh did not settle after 1000 rounds",
                Some("Deferred triggers kept changing the sources of TVIEWs while they were refreshed.".into()),
                Some("A deferred trigger writes a source of a TVIEW each time the TVIEW is refreshed, so the refresh never ends: make the trigger write only when something changed (compare OLD and NEW), or not deferred.".into()),
            );
        }
        pg_sys::XactEvent::XACT_EVENT_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            queue::clear();
            crate::locks::forget();
            crate::ddl::clear_pending();
            crate::shmem::set_idle();
            crate::guard::reset();
        }
        _ => {}
    }
}
