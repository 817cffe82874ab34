//! `tviews stats`: the cumulative refresh statistics in shared memory, per TVIEW
//! (`pg_tviews_stats`), per source (`pg_tviews_source_stats`), the plan cache
//! (`pg_tviews_cache_stats`) and the last 24 hours (`pg_tviews_performance_summary`).

use comfy_table::Cell;
use serde::Serialize;
use tokio_postgres::Client;

use super::probe::{self, Api};
use crate::conn::ConnTarget;
use crate::failure::Failure;
use crate::output::{
    Format, Style, key_value_table, severity_cell, short_time, table_text, table_with_header,
    to_json,
};

#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct StatsArgs {
    /// Reset the statistics first (pg_tviews_stats_reset(); superusers by default)
    #[arg(long)]
    pub reset: bool,

    #[command(flatten)]
    pub target: ConnTarget,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsReport {
    /// pg_tviews is in `shared_preload_libraries`: without it every counter is zero.
    pub preloaded: bool,
    /// The statistics were reset by this command.
    pub reset: bool,
    pub tviews: Vec<TviewStats>,
    pub sources: Vec<SourceStats>,
    pub cache: CacheStats,
    pub hourly: Vec<HourStats>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TviewStats {
    pub tview: String,
    pub refreshes: i64,
    pub keys: i64,
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    pub skipped: i64,
    pub cascaded_keys: i64,
    pub full_rebuilds: i64,
    pub errors: i64,
    pub statements: i64,
    pub time_ms: f64,
    pub lock_ms: f64,
    pub derive_ms: f64,
    pub apply_ms: f64,
    pub lock_waits: i64,
    pub lock_wait_ms: f64,
    pub last_refresh: Option<String>,
    pub stats_since: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceStats {
    pub source: String,
    pub captures: i64,
    pub rows_captured: i64,
    pub capture_ms: f64,
    pub refresh_ms: f64,
    pub stats_since: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CacheStats {
    pub hits: Option<i64>,
    pub misses: Option<i64>,
    pub invalidations: Option<i64>,
    pub hit_ratio: Option<f64>,
    pub slots_full: Option<i64>,
    pub stats_since: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HourStats {
    pub hour: String,
    pub refreshes: i64,
    pub keys: i64,
    pub rows_written: i64,
    pub rows_skipped: i64,
    pub errors: i64,
    pub time_ms: f64,
    pub mean_ms: Option<f64>,
}

pub async fn gather(client: &Client, args: &StatsArgs) -> Result<StatsReport, Failure> {
    let api = Api::require(client).await?;
    if args.reset {
        client
            .execute(
                &format!("SELECT {}()", api.object("pg_tviews_stats_reset")),
                &[],
            )
            .await?;
    }
    let tviews = probe::rows(client, &format!(
                "SELECT tview::text, refreshes::int8, keys::int8, inserted::int8, updated::int8, \
                        deleted::int8, skipped::int8, cascaded_keys::int8, full_rebuilds::int8, \
                        errors::int8, statements::int8, time_ms::float8, lock_ms::float8, \
                        derive_ms::float8, apply_ms::float8, lock_waits::int8, lock_wait_ms::float8, \
                        last_refresh::text, stats_since::text \
                 FROM {} ORDER BY tview",
                api.object("pg_tviews_stats")
            ), |r| {
            Ok(TviewStats {
                tview: r.try_get(0)?,
                refreshes: r.try_get(1)?,
                keys: r.try_get(2)?,
                inserted: r.try_get(3)?,
                updated: r.try_get(4)?,
                deleted: r.try_get(5)?,
                skipped: r.try_get(6)?,
                cascaded_keys: r.try_get(7)?,
                full_rebuilds: r.try_get(8)?,
                errors: r.try_get(9)?,
                statements: r.try_get(10)?,
                time_ms: r.try_get(11)?,
                lock_ms: r.try_get(12)?,
                derive_ms: r.try_get(13)?,
                apply_ms: r.try_get(14)?,
                lock_waits: r.try_get(15)?,
                lock_wait_ms: r.try_get(16)?,
                last_refresh: r.try_get(17)?,
                stats_since: r.try_get(18)?,
            })
    })
    .await?;
    let sources = probe::rows(
        client,
        &format!(
            "SELECT source::text, captures::int8, rows_captured::int8, capture_ms::float8, \
                        refresh_ms::float8, stats_since::text FROM {} ORDER BY source",
            api.object("pg_tviews_source_stats")
        ),
        |r| {
            Ok(SourceStats {
                source: r.try_get(0)?,
                captures: r.try_get(1)?,
                rows_captured: r.try_get(2)?,
                capture_ms: r.try_get(3)?,
                refresh_ms: r.try_get(4)?,
                stats_since: r.try_get(5)?,
            })
        },
    )
    .await?;
    let row = client
        .query_one(
            &format!(
                "SELECT preloaded, hits::int8, misses::int8, invalidations::int8, \
                        hit_ratio::float8, slots_full::int8, stats_since::text FROM {}",
                api.object("pg_tviews_cache_stats")
            ),
            &[],
        )
        .await?;
    let preloaded: bool = row.try_get(0)?;
    let cache = CacheStats {
        hits: row.try_get(1)?,
        misses: row.try_get(2)?,
        invalidations: row.try_get(3)?,
        hit_ratio: row.try_get(4)?,
        slots_full: row.try_get(5)?,
        stats_since: row.try_get(6)?,
    };
    let hourly = probe::rows(
        client,
        &format!(
            "SELECT hour::text, refreshes::int8, keys::int8, rows_written::int8, \
                        rows_skipped::int8, errors::int8, time_ms::float8, mean_ms::float8 \
                 FROM {} ORDER BY hour",
            api.object("pg_tviews_performance_summary")
        ),
        |r| {
            Ok(HourStats {
                hour: r.try_get(0)?,
                refreshes: r.try_get(1)?,
                keys: r.try_get(2)?,
                rows_written: r.try_get(3)?,
                rows_skipped: r.try_get(4)?,
                errors: r.try_get(5)?,
                time_ms: r.try_get(6)?,
                mean_ms: r.try_get(7)?,
            })
        },
    )
    .await?;
    Ok(StatsReport {
        preloaded,
        reset: args.reset,
        tviews,
        sources,
        cache,
        hourly,
    })
}

fn ms(v: f64) -> String {
    format!("{v:.3}")
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_else(|| "-".into())
}

pub fn render(r: &StatsReport, style: Style) -> anyhow::Result<String> {
    if style.format == Format::Json {
        return to_json(r);
    }
    let mut out = String::new();
    if r.reset {
        out.push_str("statistics reset\n");
    }
    if !r.preloaded {
        out.push_str(
            "statistics are off: pg_tviews is not in shared_preload_libraries (add it and restart the server)\n",
        );
        return Ok(out);
    }
    if r.tviews.is_empty() {
        out.push_str("no TVIEWs\n");
    } else {
        let mut t = table_with_header(
            style,
            &[
                "tview",
                "refreshes",
                "keys",
                "inserted",
                "updated",
                "deleted",
                "skipped",
                "cascaded keys",
                "full rebuilds",
                "errors",
                "last refresh",
            ],
        );
        for s in &r.tviews {
            t.add_row(vec![
                Cell::new(&s.tview),
                Cell::new(s.refreshes),
                Cell::new(s.keys),
                Cell::new(s.inserted),
                Cell::new(s.updated),
                Cell::new(s.deleted),
                Cell::new(s.skipped),
                Cell::new(s.cascaded_keys),
                Cell::new(s.full_rebuilds),
                severity_cell(s.errors, if s.errors > 0 { "error" } else { "" }, style),
                Cell::new(
                    s.last_refresh
                        .as_deref()
                        .map(short_time)
                        .unwrap_or_else(|| "never".into()),
                ),
            ]);
        }
        out.push_str(&table_text(&t));
        let mut t = table_with_header(
            style,
            &[
                "tview",
                "statements",
                "time ms",
                "mean ms",
                "lock ms",
                "derive ms",
                "apply ms",
                "lock waits",
                "lock wait ms",
            ],
        );
        for s in &r.tviews {
            let mean = if s.refreshes > 0 {
                ms(s.time_ms / s.refreshes as f64)
            } else {
                "-".into()
            };
            t.add_row(vec![
                Cell::new(&s.tview),
                Cell::new(s.statements),
                Cell::new(ms(s.time_ms)),
                Cell::new(mean),
                Cell::new(ms(s.lock_ms)),
                Cell::new(ms(s.derive_ms)),
                Cell::new(ms(s.apply_ms)),
                severity_cell(
                    s.lock_waits,
                    if s.lock_waits > 0 { "warning" } else { "" },
                    style,
                ),
                Cell::new(ms(s.lock_wait_ms)),
            ]);
        }
        out.push_str(&table_text(&t));
    }
    if !r.sources.is_empty() {
        let mut t = table_with_header(
            style,
            &[
                "source",
                "captures",
                "rows captured",
                "capture ms",
                "refresh ms",
            ],
        );
        for s in &r.sources {
            t.add_row(vec![
                Cell::new(&s.source),
                Cell::new(s.captures),
                Cell::new(s.rows_captured),
                Cell::new(ms(s.capture_ms)),
                Cell::new(ms(s.refresh_ms)),
            ]);
        }
        out.push_str(&table_text(&t));
    }
    let c = &r.cache;
    let ratio = c
        .hit_ratio
        .map(|h| format!("{:.1}%", h * 100.0))
        .unwrap_or_else(|| "-".into());
    let rows = vec![
        ("plan cache hits", Cell::new(opt(&c.hits))),
        ("misses", Cell::new(opt(&c.misses))),
        ("invalidations", Cell::new(opt(&c.invalidations))),
        ("hit ratio", Cell::new(ratio)),
        (
            "slots full",
            severity_cell(
                opt(&c.slots_full),
                if c.slots_full.unwrap_or(0) > 0 {
                    "warning"
                } else {
                    ""
                },
                style,
            ),
        ),
        (
            "stats since",
            Cell::new(c.stats_since.as_deref().map(short_time).unwrap_or_default()),
        ),
    ];
    out.push_str(&table_text(&key_value_table(style, rows)));
    if !r.hourly.is_empty() {
        let mut t = table_with_header(
            style,
            &[
                "hour",
                "refreshes",
                "keys",
                "rows written",
                "rows skipped",
                "errors",
                "time ms",
                "mean ms",
            ],
        );
        for h in &r.hourly {
            t.add_row(vec![
                Cell::new(short_time(&h.hour)),
                Cell::new(h.refreshes),
                Cell::new(h.keys),
                Cell::new(h.rows_written),
                Cell::new(h.rows_skipped),
                Cell::new(h.errors),
                Cell::new(ms(h.time_ms)),
                Cell::new(h.mean_ms.map(ms).unwrap_or_else(|| "-".into())),
            ]);
        }
        out.push_str(&table_text(&t));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StatsReport {
        StatsReport {
            preloaded: true,
            reset: false,
            tviews: vec![TviewStats {
                tview: "tv_product".into(),
                refreshes: 4,
                keys: 7,
                inserted: 1,
                updated: 5,
                deleted: 0,
                skipped: 1,
                cascaded_keys: 0,
                full_rebuilds: 1,
                errors: 0,
                statements: 9,
                time_ms: 12.5,
                lock_ms: 0.25,
                derive_ms: 1.0,
                apply_ms: 10.0,
                lock_waits: 1,
                lock_wait_ms: 3.5,
                last_refresh: Some("2026-05-01 10:00:00.123+00".into()),
                stats_since: Some("2026-05-01 09:00:00+00".into()),
            }],
            sources: vec![SourceStats {
                source: "tb_review".into(),
                captures: 3,
                rows_captured: 6,
                capture_ms: 0.5,
                refresh_ms: 8.0,
                stats_since: Some("2026-05-01 09:00:00+00".into()),
            }],
            cache: CacheStats {
                hits: Some(14),
                misses: Some(18),
                invalidations: Some(7),
                hit_ratio: Some(0.4375),
                slots_full: Some(0),
                stats_since: Some("2026-05-01 09:00:00.5+00".into()),
            },
            hourly: vec![HourStats {
                hour: "2026-05-01 10:00:00+00".into(),
                refreshes: 4,
                keys: 7,
                rows_written: 6,
                rows_skipped: 1,
                errors: 0,
                time_ms: 12.5,
                mean_ms: Some(3.125),
            }],
        }
    }

    #[test]
    fn tables() {
        insta::assert_snapshot!(render(&report(), Style::default()).unwrap());
    }

    #[test]
    fn off_without_preload() {
        let r = StatsReport {
            preloaded: false,
            ..report()
        };
        assert!(
            render(&r, Style::default())
                .unwrap()
                .starts_with("statistics are off")
        );
    }

    #[test]
    fn json_field_names_are_stable() {
        let style = Style::plain(Format::Json);
        insta::assert_snapshot!(render(&report(), style).unwrap());
    }
}
