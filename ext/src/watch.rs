//! DDL on a TVIEW, its backing view or our triggers: each command ends in a
//! defined state or is refused (docs/OPERATIONS.md, "Schema changes").
//!
//! - `ALTER TABLE` on a TVIEW: renaming it, moving it to another schema,
//!   storage options, RLS, a new owner (the backing view follows) are
//!   fine; changing its columns is refused — the definition decides them.
//! - The backing view belongs to the TVIEW: replacing it, moving it out of
//!   schema `tviews`, changing its columns or owner is refused. Renaming it
//!   is harmless; the guard trigger's arguments follow.
//! - Our triggers are made and dropped by pg_tviews only: renaming or
//!   dropping one that a TVIEW needs is refused.
//! - `CREATE TRIGGER tviews_guard` is how a restore brings a TVIEW back
//!   ([`crate::adopt`]).
//!
//! Source tables need nothing here: the backing view depends on what it
//! reads, so PostgreSQL itself refuses to drop or retype a column or table
//! a TVIEW uses, and renames flow through to our plans by relcache
//! invalidation.

use std::cell::Cell;

use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::error::raise_with;
use crate::registry::{self, parse_oid};
use crate::spi;

thread_local! {
    /// Set while pg_tviews itself creates or drops its triggers.
    static OURS: Cell<u32> = const { Cell::new(0) };
}

/// Marks trigger DDL as our own while it lives.
pub struct OwnDdl;

impl OwnDdl {
    pub fn begin() -> OwnDdl {
        OURS.with(|m| m.set(m.get() + 1));
        OwnDdl
    }
}

impl Drop for OwnDdl {
    fn drop(&mut self) {
        OURS.with(|m| m.set(m.get().saturating_sub(1)));
    }
}

fn own_ddl() -> bool {
    OURS.with(Cell::get) > 0
}

/// Names of the triggers pg_tviews makes.
pub const TRIGGER_NAMES: &[&str] = &[
    "tviews_capture_ins",
    "tviews_capture_upd",
    "tviews_capture_del",
    "tviews_capture_trunc",
    "tviews_guard",
    "tviews_guard_truncate",
];

/// `ddl_command_end` for the commands that can touch a TVIEW's objects.
pub fn on_ddl_end() {
    let installed = Spi::connect_mut(|client| {
        spi::one(
            client,
            "SELECT pg_catalog.to_regclass('tviews.tview')::pg_catalog.text",
            &[],
        )
        .is_some()
    });
    if !installed {
        return;
    }
    crate::adopt::on_create_trigger();
    if !own_ddl() {
        check_triggers();
    }
    check_relations();
}

/// Renamed triggers of ours.
fn check_triggers() {
    let renamed = Spi::connect_mut(|client| {
        spi::rows(
            client,
            "SELECT g.tgname::pg_catalog.text, tviews.display_name(g.tgrelid)
             FROM pg_catalog.pg_event_trigger_ddl_commands() d
             JOIN pg_catalog.pg_trigger g ON g.oid = d.objid
             WHERE d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
               AND d.command_tag = 'ALTER TRIGGER'
               AND g.tgfoid IN ('tviews.guard()'::pg_catalog.regprocedure,
                                'tviews.capture()'::pg_catalog.regprocedure)",
            &[],
        )
    });
    if let Some(r) = renamed.into_iter().next() {
        let field = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        raise_with(
            "0A000",
            format!("cannot rename trigger {} on {}", field(0), field(1)),
            Some("Triggers of pg_tviews keep the names pg_tviews gave them.".into()),
            None,
        );
    }
}

/// ALTER or CREATE OR REPLACE on a TVIEW or a backing view.
fn check_relations() {
    let touched = Spi::connect_mut(|client| {
        spi::rows(
            client,
            "SELECT d.command_tag, t.relid::pg_catalog.oid::pg_catalog.text,
                    t.defview::pg_catalog.oid::pg_catalog.text,
                    (d.objid = t.defview::pg_catalog.oid)::pg_catalog.text,
                    tviews.display_name(t.relid), vn.nspname::pg_catalog.text,
                    (v.relowner = c.relowner)::pg_catalog.text
             FROM pg_catalog.pg_event_trigger_ddl_commands() d
             JOIN tviews.tview t ON d.objid IN (t.relid::pg_catalog.oid, t.defview::pg_catalog.oid)
             JOIN pg_catalog.pg_class c ON c.oid = t.relid
             JOIN pg_catalog.pg_class v ON v.oid = t.defview
             JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
               AND d.command_tag IN ('ALTER TABLE', 'ALTER VIEW', 'CREATE VIEW')",
            &[],
        )
    });
    if touched.is_empty() {
        return;
    }
    let mut rename_view = false;
    for r in touched {
        let field = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let (tag, display) = (field(0), field(4));
        let relid = parse_oid(&field(1)).unwrap_or_else(|e| crate::error::raise(&e));
        let view = parse_oid(&field(2)).unwrap_or_else(|e| crate::error::raise(&e));
        let on_view = field(3) == "true";
        let same_owner = field(6) == "true";
        let hint = format!(
            "A TVIEW's columns come from its definition: change it with pg_tviews_create_or_replace('{display}', ...)."
        );
        if on_view {
            if tag == "CREATE VIEW" {
                raise_with(
                    "0A000",
                    format!("cannot replace the backing view of TVIEW {display}"),
                    Some("The backing view is the TVIEW's definition; replacing it by hand would leave the TVIEW stale.".into()),
                    Some(hint),
                );
            }
            if field(5) != "tviews" || !same_owner {
                raise_with(
                    "0A000",
                    format!("cannot move or give away the backing view of TVIEW {display}"),
                    Some(
                        "The backing view stays in schema tviews and belongs to the TVIEW's owner."
                            .into(),
                    ),
                    Some(format!(
                        "Alter the TVIEW itself (ALTER TABLE {display} ...): its view follows."
                    )),
                );
            }
            rename_view = true;
        } else if !same_owner {
            // A new owner for the TVIEW: its definition now runs as them.
            give_view_to_table_owner(relid, view);
        }
        Spi::connect_mut(|client| {
            if let Some(diff) = crate::adopt::column_difference(client, relid, view) {
                raise_with(
                    "0A000",
                    format!("cannot change the columns of TVIEW {display}"),
                    Some(diff),
                    Some(hint.clone()),
                );
            }
        });
    }
    if rename_view {
        crate::ddl::reconcile_triggers();
    }
}

fn give_view_to_table_owner(relid: pg_sys::Oid, view: pg_sys::Oid) {
    let Some(reg) = registry::get() else { return };
    let ext_owner = reg.ext_owner;
    drop(reg);
    Spi::connect_mut(|client| {
        let Some(sql) = spi::one(
            client,
            "SELECT pg_catalog.format('ALTER VIEW %s OWNER TO %I', $2::pg_catalog.regclass, r.rolname)
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner WHERE c.oid = $1",
            &[spi::oid_arg(relid), spi::oid_arg(view)],
        ) else {
            return;
        };
        crate::security::as_user(ext_owner, false, || spi::run(client, &sql, &[]));
    });
}

/// `sql_drop`: refuses a `DROP TRIGGER` of a trigger a TVIEW still needs.
pub fn check_dropped_triggers(client: &mut SpiClient<'_>) {
    if own_ddl() {
        return;
    }
    let dropped = spi::rows(
        client,
        "SELECT o.address_names[3], pg_catalog.to_regclass(pg_catalog.quote_ident(o.address_names[1])
                    || '.' || pg_catalog.quote_ident(o.address_names[2]))::pg_catalog.oid::pg_catalog.text,
                o.address_names[1] || '.' || o.address_names[2]
         FROM pg_catalog.pg_event_trigger_dropped_objects() o
         WHERE o.object_type = 'trigger' AND o.original AND o.address_names[3] = ANY($1)",
        &[spi::text_array(
            TRIGGER_NAMES.iter().map(|s| s.to_string()).collect(),
        )],
    );
    if dropped.is_empty() {
        return;
    }
    let Some(reg) = registry::get() else { return };
    for r in dropped {
        let field = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let Ok(rel) = parse_oid(&field(1)) else {
            continue;
        };
        let needed_by = if let Some(tv) = reg.tview(rel) {
            Some(tv.names.name.clone())
        } else {
            reg.sources.get(&rel).and_then(|s| {
                s.readers
                    .first()
                    .and_then(|r| reg.tview(*r))
                    .map(|tv| tv.names.name.clone())
            })
        };
        if let Some(tview) = needed_by {
            raise_with(
                "2BP01",
                format!(
                    "cannot drop trigger {} on table {} because TVIEW {tview} requires it",
                    field(0),
                    field(2)
                ),
                Some("pg_tviews makes and drops its triggers itself.".into()),
                Some(format!(
                    "DROP TABLE {tview} drops the TVIEW with its triggers. To stop maintenance for a while, ALTER TABLE ... DISABLE TRIGGER (the TVIEW goes stale; pg_tviews_refresh rebuilds it)."
                )),
            );
        }
    }
}
