//! `tviews refresh TVIEW...`: rebuilds TVIEWs from their definitions now
//! (`pg_tviews_refresh`), a repair tool, with a spinner while the server works. What
//! changed, here and in the TVIEWs the rebuild cascaded to, comes from this session's
//! counters (`pg_tviews_session_stats`) before and after.

use std::collections::BTreeMap;
use std::time::Instant;

use comfy_table::Cell;
use serde::Serialize;
use tokio_postgres::Client;

use super::probe::Api;
use crate::failure::{Failure, Outcome};
use crate::output::{Format, Style, human_ms, table_text, table_with_header, to_json};
use crate::progress;

#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct RefreshArgs {
    /// The TVIEWs to rebuild, each in its own transaction
    #[arg(value_name = "TVIEW", required = true)]
    pub tviews: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RefreshReport {
    pub tviews: Vec<Rebuilt>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rebuilt {
    pub tview: String,
    /// Rows it holds after the rebuild.
    pub rows: i64,
    pub elapsed_ms: f64,
    /// What the rebuild wrote (rows recomputed identical are `skipped`, not written).
    pub changes: Counts,
    /// TVIEWs reading it, refreshed because rows changed.
    pub cascades: Vec<Cascade>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Keys (or, for a rebuild, rows) recomputed.
    pub keys: i64,
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    pub skipped: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cascade {
    pub tview: String,
    #[serde(flatten)]
    pub counts: Counts,
}

/// This session's counters per TVIEW, to diff around a statement.
pub async fn session_counts(
    client: &Client,
    api: &Api,
) -> Result<BTreeMap<String, Counts>, tokio_postgres::Error> {
    let f = api.object("pg_tviews_session_stats");
    let rows = client
        .query(
            &format!(
                "SELECT tview::text, recomputed::int8, inserted::int8, updated::int8, \
                        deleted::int8, skipped::int8 FROM {f}()"
            ),
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                Counts {
                    keys: r.try_get(1)?,
                    inserted: r.try_get(2)?,
                    updated: r.try_get(3)?,
                    deleted: r.try_get(4)?,
                    skipped: r.try_get(5)?,
                },
            ))
        })
        .collect()
}

/// What moved between two readings of [`session_counts`], TVIEWs that did nothing left
/// out.
pub fn delta(
    before: &BTreeMap<String, Counts>,
    after: &BTreeMap<String, Counts>,
) -> BTreeMap<String, Counts> {
    let zero = Counts::default();
    after
        .iter()
        .filter_map(|(name, a)| {
            let b = before.get(name).unwrap_or(&zero);
            let d = Counts {
                keys: a.keys - b.keys,
                inserted: a.inserted - b.inserted,
                updated: a.updated - b.updated,
                deleted: a.deleted - b.deleted,
                skipped: a.skipped - b.skipped,
            };
            (d != zero).then(|| (name.clone(), d))
        })
        .collect()
}

pub async fn run(client: &Client, args: &RefreshArgs, style: Style) -> Result<Outcome, Failure> {
    let api = Api::require(client).await?;
    let refresh = api.object("pg_tviews_refresh");
    let mut done = Vec::new();
    for name in &args.tviews {
        let before = session_counts(client, &api).await?;
        let bar = progress::spinner(style.progress, format!("rebuilding {name}"));
        let started = Instant::now();
        let result = client
            .query_one(
                &format!(
                    "SELECT {refresh}($1), coalesce(tviews.display_name(to_regclass($1)::oid), $1)"
                ),
                &[name],
            )
            .await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        bar.finish_and_clear();
        let row = result?;
        let tview: String = row.try_get(1)?;
        let mut moved = delta(&before, &session_counts(client, &api).await?);
        let changes = moved.remove(&tview).unwrap_or_default();
        done.push(Rebuilt {
            rows: row.try_get(0)?,
            elapsed_ms,
            changes,
            cascades: moved
                .into_iter()
                .map(|(tview, counts)| Cascade { tview, counts })
                .collect(),
            tview,
        });
    }
    Ok(Outcome::ok(render(&RefreshReport { tviews: done }, style)?))
}

pub fn render(r: &RefreshReport, style: Style) -> anyhow::Result<String> {
    if style.format == Format::Json {
        return to_json(r);
    }
    let mut t = table_with_header(
        style,
        &[
            "tview",
            "how",
            "rows",
            "keys",
            "inserted",
            "updated",
            "deleted",
            "unchanged",
            "time",
        ],
    );
    let counts = |c: &Counts| {
        [c.keys, c.inserted, c.updated, c.deleted, c.skipped]
            .into_iter()
            .map(Cell::new)
            .collect::<Vec<_>>()
    };
    for tv in &r.tviews {
        let mut row = vec![
            Cell::new(&tv.tview),
            Cell::new("rebuilt"),
            Cell::new(tv.rows),
        ];
        row.extend(counts(&tv.changes));
        row.push(Cell::new(human_ms(tv.elapsed_ms)));
        t.add_row(row);
        for c in &tv.cascades {
            let mut row = vec![
                Cell::new(&c.tview),
                Cell::new(format!("cascade from {}", tv.tview)),
                Cell::new("-"),
            ];
            row.extend(counts(&c.counts));
            row.push(Cell::new("-"));
            t.add_row(row);
        }
    }
    Ok(table_text(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(keys: i64, updated: i64, skipped: i64) -> Counts {
        Counts {
            keys,
            updated,
            skipped,
            ..Counts::default()
        }
    }

    #[test]
    fn delta_leaves_out_what_did_not_move() {
        let before = BTreeMap::from([
            ("tv_a".to_string(), counts(5, 1, 4)),
            ("tv_b".to_string(), counts(2, 2, 0)),
        ]);
        let after = BTreeMap::from([
            ("tv_a".to_string(), counts(15, 2, 13)),
            ("tv_b".to_string(), counts(2, 2, 0)),
            ("tv_c".to_string(), counts(1, 1, 0)),
        ]);
        let d = delta(&before, &after);
        assert_eq!(d.len(), 2);
        assert_eq!(d["tv_a"], counts(10, 1, 9));
        assert_eq!(d["tv_c"], counts(1, 1, 0));
    }

    #[test]
    fn table_and_json() {
        let r = RefreshReport {
            tviews: vec![Rebuilt {
                tview: "tv_product".into(),
                rows: 1000,
                elapsed_ms: 15.5,
                changes: counts(1000, 1, 999),
                cascades: vec![Cascade {
                    tview: "tv_category".into(),
                    counts: counts(1, 1, 0),
                }],
            }],
        };
        insta::assert_snapshot!(render(&r, Style::default()).unwrap());
        let json = Style::plain(Format::Json);
        insta::assert_snapshot!(render(&r, json).unwrap());
    }
}
