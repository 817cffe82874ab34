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
fn pg_tviews_create(
    tview: Option<&str>,
    definition: Option<&str>,
    key_column: default!(Option<&str>, "NULL"),
) {
    let (tview, definition) = required(tview, definition);
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
    tview: Option<&str>,
    definition: Option<&str>,
    key_column: default!(Option<&str>, "NULL"),
) {
    let (tview, definition) = required(tview, definition);
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

/// The name and definition of a create function, which may not be NULL
/// (the key column may: then the conventional one is used).
fn required<'a>(tview: Option<&'a str>, definition: Option<&'a str>) -> (&'a str, &'a str) {
    match (tview, definition) {
        (Some(t), Some(d)) => (t, d),
        (t, _) => raise_with(
            "22004",
            format!(
                "the {} of a TVIEW cannot be NULL",
                if t.is_none() { "name" } else { "definition" }
            ),
            None,
            Some("Pass the TVIEW's name and its SELECT; only key_column may be NULL.".into()),
        ),
    }
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
    let relid = Spi::connect_mut(|client| {
        let relid = require_tview(client, tview);
        // As REFRESH MATERIALIZED VIEW: the owner's right (a rebuild locks
        // every source against writers until commit).
        let owns = spi::one(
            client,
            "SELECT pg_catalog.pg_has_role(relowner, 'USAGE')::pg_catalog.text FROM pg_catalog.pg_class WHERE oid = $1",
            &[spi::oid_arg(relid)],
        );
        if owns.as_deref() != Some("true") {
            let name = spi::one(
                client,
                "SELECT tviews.display_name($1)",
                &[spi::oid_arg(relid)],
            )
            .unwrap_or_default();
            raise_with(
                "42501",
                format!("must be owner of TVIEW {name}"),
                None,
                Some("Ask its owner (or a superuser) to rebuild it.".into()),
            );
        }
        relid
    });
    // A TVIEW that cannot be maintained any more cannot be rebuilt either.
    if let Some(reg) = registry::get() {
        reg.require(relid);
    }
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
    let tv = reg.require(relid);
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
/// (or `pg_tviews_session_stats_reset()`).
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

pub(crate) fn require_tview(client: &mut pgrx::spi::SpiClient<'_>, name: &str) -> pg_sys::Oid {
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
            // Named as in every view of ours: the name alone in public.
            let name = Spi::connect_mut(|client| {
                spi::one(
                    client,
                    "SELECT tviews.display_name($1)",
                    &[spi::oid_arg(relid)],
                )
            })
            .unwrap_or_else(|| relid.to_u32().to_string());
            (name, c.captures, c.time.as_secs_f64() * 1000.0)
        })
        .collect();
    TableIterator::new(rows)
}

/// The statements that maintain a TVIEW, as they are prepared, and the
/// lookups each should make through an index (`relation.column`), so
/// `tviews explain --analyze` can check their plans: `apply_keys` and
/// `apply_all` (`$1` = keys as text[]), one `derive` per join path (`$1` =
/// start values) with the `forward` lock statement of longer paths, and
/// one `reverse` lock statement per join path (`$1` = keys).
#[pg_extern(volatile)]
#[allow(clippy::type_complexity)]
fn pg_tviews_statements(
    tview: &str,
) -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(source, Option<String>),
        name!(path, Option<String>),
        name!(sql, String),
        name!(lookups, Vec<String>),
    ),
> {
    let relid = Spi::connect_mut(|client| require_tview(client, tview));
    let Some(reg) = registry::get() else {
        return TableIterator::new(Vec::new());
    };
    let tv = reg.require(relid);
    let qualified = |schema: &str, name: &str| format!("{schema}.{name}");
    let key_rel = tv
        .analysis
        .sources
        .iter()
        .find(|s| s.relation == tv.analysis.key.relation)
        .map(|s| qualified(&s.schema, &s.name))
        .unwrap_or_default();
    // What the recompute of keys looks up: the key, then every join path
    // walked back from the key to its source.
    let mut recompute = vec![format!("{key_rel}.{}", tv.analysis.key.relation_column)];
    let mut rows = Vec::new();
    let tview_name = tv.names.display();
    for ((pp, sql), (fwd, rev)) in tv
        .plan
        .paths
        .iter()
        .zip(&tv.plan.derive)
        .zip(tv.locks.forward.iter().zip(&tv.locks.reverse))
    {
        let Some(src) = tv.analysis.sources.iter().find(|s| s.relation == pp.source) else {
            continue;
        };
        let source = qualified(&src.schema, &src.name);
        let path = tviews_core::explain::path_text(
            &src.name,
            &pp.path,
            &tview_name,
            &tv.analysis.key.name,
        );
        let forward: Vec<String> = pp
            .path
            .hops
            .iter()
            .map(|h| format!("{}.{}", qualified(&h.schema, &h.name), h.join_column))
            .collect();
        let mut backward: Vec<String> = pp
            .path
            .hops
            .iter()
            .map(|h| format!("{}.{}", qualified(&h.schema, &h.name), h.next_column))
            .collect();
        backward.push(format!("{source}.{}", pp.path.column));
        rows.push((
            "derive".to_string(),
            Some(source.clone()),
            Some(path.clone()),
            sql.clone(),
            forward.clone(),
        ));
        if let Some(q) = fwd {
            rows.push((
                "forward".to_string(),
                Some(source.clone()),
                Some(path.clone()),
                q.sql.clone(),
                forward,
            ));
        }
        rows.push((
            "reverse".to_string(),
            Some(source),
            Some(path),
            rev.sql.clone(),
            backward.clone(),
        ));
        recompute.extend(backward);
    }
    // Distinct, the key's lookup first.
    let mut seen = std::collections::HashSet::new();
    recompute.retain(|l| seen.insert(l.clone()));
    let mut out = vec![
        (
            "apply_keys".to_string(),
            None,
            None,
            tv.plan.apply_keys.clone(),
            recompute.clone(),
        ),
        (
            "apply_all".to_string(),
            None,
            None,
            tv.plan.apply_all.clone(),
            Vec::new(),
        ),
    ];
    out.extend(rows);
    TableIterator::new(out)
}

/// Rows in which a TVIEW differs from its definition, by key: `missing`
/// (in the definition, not the TVIEW), `extra` (the other way), or
/// `different` (with the columns that differ). Compared under the
/// TVIEW's settings, each row by its text form.
#[pg_extern(volatile)]
#[allow(clippy::type_complexity)]
fn pg_tviews_verify(
    tview: &str,
) -> TableIterator<
    'static,
    (
        name!(key, String),
        name!(difference, String),
        name!(columns, Vec<String>),
    ),
> {
    let relid = Spi::connect_mut(|client| require_tview(client, tview));
    let Some(reg) = registry::get() else {
        return TableIterator::new(Vec::new());
    };
    let tv = reg.require(relid);
    let (table, view) = (tv.names.table(), tv.names.view());
    let key = tviews_core::sql::ident(&tv.plan.key);
    let sql = format!(
        "WITH t AS (SELECT t.{key}::pg_catalog.text AS k, ROW(t.*)::pg_catalog.text AS r, pg_catalog.to_jsonb(t.*) AS j FROM {table} t), \
              v AS (SELECT v.{key}::pg_catalog.text AS k, ROW(v.*)::pg_catalog.text AS r, pg_catalog.to_jsonb(v.*) AS j FROM {view} v) \
         SELECT coalesce(t.k, v.k), \
                CASE WHEN t.k IS NULL THEN 'missing' WHEN v.k IS NULL THEN 'extra' ELSE 'different' END, \
                coalesce((SELECT pg_catalog.array_agg(a.key ORDER BY a.key) FROM pg_catalog.jsonb_each(t.j) a \
                          JOIN pg_catalog.jsonb_each(v.j) b USING (key) WHERE a.value::pg_catalog.text IS DISTINCT FROM b.value::pg_catalog.text), '{{}}')::pg_catalog.text \
         FROM t FULL JOIN v ON t.k OPERATOR(pg_catalog.=) v.k \
         WHERE t.r IS DISTINCT FROM v.r ORDER BY 1 LIMIT 1000"
    );
    let rows = security::with_settings(&tv.settings, || {
        Spi::connect_mut(|client| spi::rows(client, &sql, &[]))
    });
    let out: Vec<(String, String, Vec<String>)> = rows
        .into_iter()
        .map(|r| {
            let f = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            (
                f(0),
                f(1),
                registry::parse_text_array(&f(2))
                    .into_iter()
                    .filter(|c| !c.is_empty())
                    .collect(),
            )
        })
        .collect();
    TableIterator::new(out)
}

/// What this transaction has queued, per TVIEW: the keys it would refresh
/// and through which path (join paths are derived now, without locks).
/// `tviews explain --for` runs a statement in a rolled-back transaction and
/// reads this.
#[pg_extern(volatile)]
#[allow(clippy::type_complexity)]
fn pg_tviews_pending_keys() -> TableIterator<
    'static,
    (
        name!(tview, String),
        name!(path, String),
        name!(key, String),
    ),
> {
    let mut out = Vec::new();
    let Some(reg) = registry::get() else {
        return TableIterator::new(out);
    };
    for (relid, work) in queue::snapshot() {
        let Some(tv) = reg.tview(relid) else { continue };
        let name = tv.names.display();
        if work.full {
            out.push((name.clone(), "full rebuild".to_string(), "*".to_string()));
        }
        for k in work.keys.union(&work.cascade_keys) {
            out.push((name.clone(), "direct".to_string(), k.clone()));
        }
        for (sql, values) in &work.starts {
            let Some(i) = tv.plan.derive.iter().position(|d| d == sql) else {
                continue;
            };
            let pp = &tv.plan.paths[i];
            let src = tv.analysis.sources.iter().find(|s| s.relation == pp.source);
            let path = tviews_core::explain::path_text(
                src.map(|s| s.name.as_str()).unwrap_or("?"),
                &pp.path,
                &name,
                &tv.analysis.key.name,
            );
            let keys = security::with_settings(&tv.settings, || {
                Spi::connect_mut(|_c| {
                    crate::spi::Plan::prepare(sql, &[pg_sys::TEXTARRAYOID]).run(
                        &[crate::spi::Arg::TextArray(values.iter().cloned().collect())],
                        None,
                    )
                })
            });
            for k in keys
                .into_iter()
                .filter_map(|r| r.into_iter().next().flatten())
            {
                out.push((name.clone(), path.clone(), k));
            }
        }
    }
    out.sort();
    out.dedup();
    TableIterator::new(out)
}
