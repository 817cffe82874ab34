//! `tviews list`: every TVIEW with its key, size, sources, last refresh and the main
//! counters of `pg_tviews_stats`.

use comfy_table::Cell;
use serde::Serialize;
use tokio_postgres::Client;

use super::probe::Api;
use crate::failure::Failure;
use crate::output::{
    Format, Style, human_bytes, human_ms, short_time, table_text, table_with_header, to_json,
};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListReport {
    pub database: String,
    pub tviews: Vec<TviewRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TviewRow {
    pub tview: String,
    pub key_column: String,
    /// Longest chain of TVIEWs below it (0: it reads tables only).
    pub depth: i32,
    /// The planner's estimate (`pg_class.reltuples`).
    pub rows_estimate: i64,
    /// Table, indexes and TOAST (`pg_total_relation_size`).
    pub size_bytes: i64,
    /// What it reads, TVIEWs included.
    pub sources: Vec<String>,
    pub refreshes: i64,
    pub keys: i64,
    /// Rows inserted, updated or deleted by refreshes.
    pub rows_written: i64,
    /// Rows recomputed identical, so not written.
    pub rows_skipped: i64,
    pub full_rebuilds: i64,
    pub errors: i64,
    pub time_ms: f64,
    pub last_refresh: Option<String>,
    pub created_at: String,
}

pub async fn gather(client: &Client) -> Result<ListReport, Failure> {
    let api = Api::require(client).await?;
    let sources = api.object("pg_tviews_sources");
    let stats = api.object("pg_tviews_stats");
    let sql = format!(
        "WITH src AS MATERIALIZED (SELECT tview, source, depth FROM {sources}()), \
              tv AS (SELECT t.*, tviews.display_name(t.relid::oid) AS name FROM tviews.tview t) \
         SELECT tv.name, tv.key_column::text, \
                coalesce((SELECT max(src.depth) FROM src WHERE src.tview = tv.relid::oid), 0)::int4 AS depth, \
                coalesce(s.rows_estimate, 0)::int8, coalesce(s.size_bytes, 0)::int8, \
                ARRAY(SELECT tviews.display_name(src.source) FROM src WHERE src.tview = tv.relid::oid ORDER BY 1), \
                coalesce(s.refreshes, 0)::int8, coalesce(s.keys, 0)::int8, \
                coalesce(s.inserted + s.updated + s.deleted, 0)::int8, coalesce(s.skipped, 0)::int8, \
                coalesce(s.full_rebuilds, 0)::int8, coalesce(s.errors, 0)::int8, \
                coalesce(s.time_ms, 0)::float8, s.last_refresh::text, tv.created_at::text \
         FROM tv LEFT JOIN {stats} s ON s.tview = tv.name \
         ORDER BY depth, tv.name"
    );
    let rows = client.query(&sql, &[]).await?;
    let tviews = rows
        .iter()
        .map(|r| {
            Ok(TviewRow {
                tview: r.try_get(0)?,
                key_column: r.try_get(1)?,
                depth: r.try_get(2)?,
                rows_estimate: r.try_get(3)?,
                size_bytes: r.try_get(4)?,
                sources: r.try_get(5)?,
                refreshes: r.try_get(6)?,
                keys: r.try_get(7)?,
                rows_written: r.try_get(8)?,
                rows_skipped: r.try_get(9)?,
                full_rebuilds: r.try_get(10)?,
                errors: r.try_get(11)?,
                time_ms: r.try_get(12)?,
                last_refresh: r.try_get(13)?,
                created_at: r.try_get(14)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    Ok(ListReport {
        database: api.database,
        tviews,
    })
}

pub fn render(r: &ListReport, style: Style) -> anyhow::Result<String> {
    if style.format == Format::Json {
        return to_json(r);
    }
    if r.tviews.is_empty() {
        return Ok(format!(
            "no TVIEWs in database \"{}\" (create one with CREATE TABLE tv_<name> AS SELECT ...)\n",
            r.database
        ));
    }
    let mut t = table_with_header(
        style,
        &[
            "tview",
            "key",
            "depth",
            "rows (est.)",
            "size",
            "sources",
            "refreshes",
            "keys",
            "written",
            "skipped",
            "errors",
            "refresh time",
            "last refresh",
        ],
    );
    for tv in &r.tviews {
        t.add_row(vec![
            Cell::new(&tv.tview),
            Cell::new(&tv.key_column),
            Cell::new(tv.depth),
            Cell::new(tv.rows_estimate),
            Cell::new(human_bytes(tv.size_bytes)),
            Cell::new(tv.sources.join(", ")),
            Cell::new(tv.refreshes),
            Cell::new(tv.keys),
            Cell::new(tv.rows_written),
            Cell::new(tv.rows_skipped),
            crate::output::severity_cell(
                tv.errors,
                if tv.errors > 0 { "error" } else { "" },
                style,
            ),
            Cell::new(human_ms(tv.time_ms)),
            Cell::new(
                tv.last_refresh
                    .as_deref()
                    .map(short_time)
                    .unwrap_or_else(|| "never".into()),
            ),
        ]);
    }
    Ok(table_text(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ListReport {
        let row = |name: &str, depth: i32, sources: &[&str]| TviewRow {
            tview: name.into(),
            key_column: format!("pk_{}", name.trim_start_matches("tv_")),
            depth,
            rows_estimate: 1000,
            size_bytes: 352_256,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            refreshes: 12,
            keys: 40,
            rows_written: 30,
            rows_skipped: 10,
            full_rebuilds: 0,
            errors: 0,
            time_ms: 14.25,
            last_refresh: Some("2026-05-01 10:00:00.123456+00".into()),
            created_at: "2026-05-01 09:00:00.5+00".into(),
        };
        let mut cat = row("tv_category", 1, &["tb_category", "tv_product"]);
        cat.last_refresh = None;
        cat.errors = 2;
        ListReport {
            database: "shop".into(),
            tviews: vec![
                row(
                    "tv_product",
                    0,
                    &["tb_category", "tb_inventory", "tb_product", "tb_review"],
                ),
                cat,
            ],
        }
    }

    #[test]
    fn table() {
        insta::assert_snapshot!(render(&report(), Style::default()).unwrap());
    }

    #[test]
    fn empty() {
        let r = ListReport {
            database: "shop".into(),
            tviews: vec![],
        };
        assert!(
            render(&r, Style::default())
                .unwrap()
                .starts_with("no TVIEWs")
        );
    }

    #[test]
    fn json_field_names_are_stable() {
        let style = Style::plain(Format::Json);
        insta::assert_snapshot!(render(&report(), style).unwrap());
    }
}
