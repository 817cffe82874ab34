//! The SQL functions of the extension (installed in its schema, `public`
//! by default).

use pgrx::prelude::*;
use tviews_core::sql::qualified;

use crate::error::raise_with;
use crate::registry::{self, Registry};
use crate::{ddl, flush, queue, security, spi, stats};

/// The version of the loaded library.
#[pg_extern(stable, parallel_safe)]
fn pg_tviews_version() -> &'static str {
    tviews_core::VERSION
}

/// Refreshes everything this transaction has queued so far, now, instead
/// of at commit (read-your-writes on demand).
#[pg_extern(volatile)]
fn pg_tviews_flush() {
    flush::flush_pending();
}

/// `CREATE TABLE <tview> AS <definition>`, for tools that prefer a function.
#[pg_extern(volatile)]
fn pg_tviews_create(tview: &str, definition: &str, key_column: default!(Option<&str>, "NULL")) {
    Spi::connect_mut(|client| {
        let sql = ddl::create_statement(client, tview, definition, key_column);
        spi::run(client, &sql, &[]);
    });
}

/// Creates the TVIEW, or replaces an existing one with a new definition
/// (it is dropped and created again in the same transaction; TVIEWs that
/// read it must be dropped first).
#[pg_extern(volatile)]
fn pg_tviews_create_or_replace(
    tview: &str,
    definition: &str,
    key_column: default!(Option<&str>, "NULL"),
) {
    Spi::connect_mut(|client| {
        if let Some(existing) = resolve(client, tview) {
            if is_tview(client, existing) {
                let name = display_name(client, existing);
                spi::run(client, &format!("DROP TABLE {name}"), &[]);
            } else {
                raise_with(
                    "42809",
                    format!("\"{tview}\" exists and is not a TVIEW"),
                    None,
                    Some("Drop or rename the existing table first.".into()),
                );
            }
        }
        let sql = ddl::create_statement(client, tview, definition, key_column);
        spi::run(client, &sql, &[]);
    });
}

/// `DROP TABLE <tview> [CASCADE]`.
#[pg_extern(volatile)]
fn pg_tviews_drop(tview: &str, cascade: default!(bool, false)) {
    Spi::connect_mut(|client| {
        let relid = require_tview(client, tview);
        let name = display_name(client, relid);
        let suffix = if cascade { " CASCADE" } else { "" };
        spi::run(client, &format!("DROP TABLE {name}{suffix}"), &[]);
    });
}

/// Rebuilds a TVIEW from its definition now (a repair tool: a TVIEW is
/// always maintained without it). Returns the number of rows it holds.
#[pg_extern(volatile)]
fn pg_tviews_refresh(tview: &str) -> i64 {
    let relid = Spi::connect_mut(|client| require_tview(client, tview));
    queue::mark_full(relid);
    flush::flush_pending();
    Spi::connect_mut(|client| {
        let name = display_name(client, relid);
        spi::one(client, &format!("SELECT count(*) FROM {name}"), &[])
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    })
}

/// Number of rows in which a TVIEW and its definition differ, counted both
/// ways (`EXCEPT ALL` on each row's text form, under the TVIEW's settings).
/// 0 means exact.
#[pg_extern(volatile)]
fn pg_tviews_diff(tview: &str) -> i64 {
    let relid = Spi::connect_mut(|client| require_tview(client, tview));
    let Some(reg) = registry::get() else { return 0 };
    let Some(tv) = reg.tview(relid) else { return 0 };
    let (table, view) = (tv.names.table(), tv.names.view());
    // ROW(alias.*): a column named like the alias cannot capture the reference.
    let sql = format!(
        "SELECT count(*) FROM ((SELECT ROW(t.*)::pg_catalog.text FROM {table} t EXCEPT ALL SELECT ROW(v.*)::pg_catalog.text FROM {view} v) \
         UNION ALL (SELECT ROW(v.*)::pg_catalog.text FROM {view} v EXCEPT ALL SELECT ROW(t.*)::pg_catalog.text FROM {table} t)) d"
    );
    security::with_settings(&tv.settings, || {
        Spi::connect_mut(|client| {
            spi::one(client, &sql, &[])
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        })
    })
}

/// This backend's refresh counters per TVIEW, since the session started
/// (or `tviews.session_stats_reset()`).
#[pg_extern(volatile)]
#[allow(clippy::type_complexity)]
fn pg_tviews_session_stats() -> TableIterator<
    'static,
    (
        name!(tview, String),
        name!(refreshes, i64),
        name!(full_rebuilds, i64),
        name!(keys, i64),
        name!(recomputed, i64),
        name!(inserted, i64),
        name!(updated, i64),
        name!(deleted, i64),
        name!(skipped, i64),
        name!(statements, i64),
        name!(time_ms, f64),
    ),
> {
    let reg: Option<std::rc::Rc<Registry>> = registry::get();
    let rows: Vec<_> = stats::tviews()
        .into_iter()
        .map(|(relid, c)| {
            let name = reg
                .as_ref()
                .and_then(|r| r.tview(relid))
                .map(|t| t.names.display())
                .unwrap_or_else(|| relid.to_u32().to_string());
            (
                name,
                c.refreshes,
                c.full_rebuilds,
                c.keys,
                c.recomputed,
                c.inserted,
                c.updated,
                c.deleted,
                c.skipped,
                c.statements,
                c.time.as_secs_f64() * 1000.0,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Resets this backend's counters.
#[pg_extern(volatile)]
fn pg_tviews_session_stats_reset() {
    stats::reset();
}

/// Keys and join-path values queued in this transaction, not yet refreshed.
#[pg_extern(volatile)]
fn pg_tviews_pending() -> TableIterator<'static, (name!(keys, i64), name!(start_values, i64))> {
    let (k, s) = queue::size();
    TableIterator::once((k as i64, s as i64))
}

fn resolve(client: &mut pgrx::spi::SpiClient<'_>, name: &str) -> Option<pg_sys::Oid> {
    spi::one(
        client,
        "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid::pg_catalog.text",
        &[pgrx::datum::DatumWithOid::from(name)],
    )
    .and_then(|s| registry::parse_oid(&s).ok())
}

fn is_tview(client: &mut pgrx::spi::SpiClient<'_>, relid: pg_sys::Oid) -> bool {
    spi::one(
        client,
        "SELECT 1::pg_catalog.text FROM tviews.tview WHERE relid::pg_catalog.oid = $1",
        &[spi::oid_arg(relid)],
    )
    .is_some()
}

fn require_tview(client: &mut pgrx::spi::SpiClient<'_>, name: &str) -> pg_sys::Oid {
    match resolve(client, name) {
        Some(relid) if is_tview(client, relid) => relid,
        Some(_) => raise_with(
            "42809",
            format!("\"{name}\" is not a TVIEW"),
            None,
            Some("TVIEWs are listed in tviews.tview.".into()),
        ),
        None => raise_with(
            "42P01",
            format!("relation \"{name}\" does not exist"),
            None,
            None,
        ),
    }
}

fn display_name(client: &mut pgrx::spi::SpiClient<'_>, relid: pg_sys::Oid) -> String {
    let row = spi::rows(
        client,
        "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
        &[spi::oid_arg(relid)],
    );
    let r = row.into_iter().next().unwrap_or_default();
    qualified(
        r.first().cloned().flatten().unwrap_or_default().as_str(),
        r.get(1).cloned().flatten().unwrap_or_default().as_str(),
    )
}

/// This backend's capture work per source table: statements captured and
/// the time spent deriving their keys.
#[pg_extern(volatile)]
fn pg_tviews_session_source_stats() -> TableIterator<
    'static,
    (
        name!(source, String),
        name!(captures, i64),
        name!(time_ms, f64),
    ),
> {
    let rows: Vec<_> = stats::sources()
        .into_iter()
        .map(|(relid, c)| {
            let name = Spi::connect_mut(|client| display_name(client, relid));
            (name, c.captures, c.time.as_secs_f64() * 1000.0)
        })
        .collect();
    TableIterator::new(rows)
}

/// Cluster-wide totals since the server started, from shared memory; one
/// row with `preloaded = false` and NULL counters when pg_tviews is not in
/// `shared_preload_libraries`.
#[pg_extern(volatile)]
#[allow(clippy::type_complexity)]
fn pg_tviews_shared_totals() -> TableIterator<
    'static,
    (
        name!(preloaded, bool),
        name!(flushes, Option<i64>),
        name!(keys, Option<i64>),
        name!(rows_written, Option<i64>),
        name!(rows_skipped, Option<i64>),
    ),
> {
    let row = match crate::shmem::totals() {
        Some((f, k, w, s)) => (
            true,
            Some(f as i64),
            Some(k as i64),
            Some(w as i64),
            Some(s as i64),
        ),
        None => (false, None, None, None, None),
    };
    TableIterator::once(row)
}

/// The statements that maintain a TVIEW, as they are prepared: `apply_keys`
/// (`$1` = keys as text[]), `apply_all`, and one `derive` per join path
/// (`$1` = start values as text[]), with the source each path starts from.
#[pg_extern(volatile)]
fn pg_tviews_statements(
    tview: &str,
) -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(source, Option<String>),
        name!(sql, String),
    ),
> {
    let relid = Spi::connect_mut(|client| require_tview(client, tview));
    let Some(reg) = registry::get() else {
        return TableIterator::new(Vec::new());
    };
    let Some(tv) = reg.tview(relid) else {
        return TableIterator::new(Vec::new());
    };
    let mut rows = vec![
        ("apply_keys".to_string(), None, tv.plan.apply_keys.clone()),
        ("apply_all".to_string(), None, tv.plan.apply_all.clone()),
    ];
    for (p, sql) in tv.plan.paths.iter().zip(&tv.plan.derive) {
        let source = tv
            .analysis
            .sources
            .iter()
            .find(|s| s.relation == p.source)
            .map(|s| format!("{}.{}", s.schema, s.name));
        rows.push(("derive".to_string(), source, sql.clone()));
    }
    TableIterator::new(rows)
}
