//! `tviews verify [TVIEW...]`: compares each TVIEW with its definition, both ways
//! (`pg_tviews_verify`), prints the differing keys and columns, and exits 1 on any
//! difference, so that CI and cron can run it.

use comfy_table::Cell;
use serde::Serialize;
use tokio_postgres::Client;

use super::graph::{self, NodeKind};
use super::probe::Api;
use crate::failure::{EXIT_ERROR, Failure, Outcome};
use crate::output::{Format, Style, severity_cell, table_text, table_with_header, to_json};
use crate::progress;

/// `pg_tviews_verify` returns at most this many rows per TVIEW.
pub const SERVER_LIMIT: usize = 1000;

#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct VerifyArgs {
    /// The TVIEWs to check (default: every TVIEW, in refresh order)
    #[arg(value_name = "TVIEW")]
    pub tviews: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Every TVIEW checked equals its definition.
    pub exact: bool,
    pub tviews: Vec<TviewCheck>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TviewCheck {
    pub tview: String,
    pub exact: bool,
    pub differences: Vec<Difference>,
    /// The server stopped at [`SERVER_LIMIT`] differences: there may be more.
    pub truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The key, as text.
    pub key: String,
    /// `missing` (in the definition, not in the TVIEW), `extra` (in the TVIEW only) or
    /// `different`.
    pub difference: String,
    /// For `different`: the columns whose values differ.
    pub columns: Vec<String>,
}

pub async fn gather(
    client: &Client,
    args: &VerifyArgs,
    style: Style,
) -> Result<VerifyReport, Failure> {
    let api = Api::require(client).await?;
    let names: Vec<String> = if args.tviews.is_empty() {
        graph::load(client, &api)
            .await?
            .nodes()
            .into_iter()
            .filter(|n| n.kind == NodeKind::Tview)
            .map(|n| n.name)
            .collect()
    } else {
        args.tviews.clone()
    };
    let verify = api.object("pg_tviews_verify");
    let sql = format!(
        "SELECT key::text, difference::text, columns::text[] FROM {verify}($1) ORDER BY 1, 2"
    );
    let mut checks = Vec::new();
    for name in names {
        let bar = progress::spinner(style.progress, format!("verifying {name}"));
        let rows = client.query(&sql, &[&name]).await;
        bar.finish_and_clear();
        let differences = rows?
            .iter()
            .map(|r| {
                Ok(Difference {
                    key: r.try_get(0)?,
                    difference: r.try_get(1)?,
                    columns: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        let tview: String = client
            .query_one(
                "SELECT coalesce(tviews.display_name(to_regclass($1)::oid), $1)",
                &[&name],
            )
            .await?
            .try_get(0)?;
        checks.push(TviewCheck {
            tview,
            exact: differences.is_empty(),
            truncated: differences.len() >= SERVER_LIMIT,
            differences,
        });
    }
    Ok(VerifyReport {
        exact: checks.iter().all(|c| c.exact),
        tviews: checks,
    })
}

pub async fn run(client: &Client, args: &VerifyArgs, style: Style) -> Result<Outcome, Failure> {
    let report = gather(client, args, style).await?;
    Ok(outcome(&report, style)?)
}

/// The output, and exit 1 with a line on stderr when a TVIEW differs.
pub fn outcome(r: &VerifyReport, style: Style) -> anyhow::Result<Outcome> {
    let mut out = Outcome::ok(render(r, style)?);
    if !r.exact {
        let bad: Vec<&str> = r
            .tviews
            .iter()
            .filter(|c| !c.exact)
            .map(|c| c.tview.as_str())
            .collect();
        out.code = EXIT_ERROR;
        out.stderr = format!(
            "tviews: {} of {} TVIEWs differ from their definitions (repair: tviews refresh {})\n",
            bad.len(),
            r.tviews.len(),
            bad.join(" ")
        );
    }
    Ok(out)
}

fn summary(c: &TviewCheck) -> String {
    if c.exact {
        return "exact".into();
    }
    let n = c.differences.len();
    let more = if c.truncated { " or more" } else { "" };
    format!(
        "{n}{more} differing {}",
        if n == 1 && !c.truncated {
            "key"
        } else {
            "keys"
        }
    )
}

pub fn render(r: &VerifyReport, style: Style) -> anyhow::Result<String> {
    if style.format == Format::Json {
        return to_json(r);
    }
    if r.tviews.is_empty() {
        return Ok("no TVIEWs to verify\n".into());
    }
    let mut t = table_with_header(style, &["tview", "result"]);
    for c in &r.tviews {
        t.add_row(vec![
            Cell::new(&c.tview),
            severity_cell(summary(c), if c.exact { "ok" } else { "error" }, style),
        ]);
    }
    let mut out = table_text(&t);
    if !r.exact {
        let mut d = table_with_header(style, &["tview", "key", "difference", "columns"]);
        for c in &r.tviews {
            for diff in &c.differences {
                d.add_row(vec![
                    Cell::new(&c.tview),
                    Cell::new(&diff.key),
                    Cell::new(&diff.difference),
                    Cell::new(diff.columns.join(", ")),
                ]);
            }
        }
        out.push_str(&table_text(&d));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> VerifyReport {
        VerifyReport {
            exact: false,
            tviews: vec![
                TviewCheck {
                    tview: "tv_product".into(),
                    exact: false,
                    differences: vec![
                        Difference {
                            key: "5".into(),
                            difference: "different".into(),
                            columns: vec!["data".into(), "fk_category".into()],
                        },
                        Difference {
                            key: "1001".into(),
                            difference: "missing".into(),
                            columns: vec![],
                        },
                    ],
                    truncated: false,
                },
                TviewCheck {
                    tview: "tv_category".into(),
                    exact: true,
                    differences: vec![],
                    truncated: false,
                },
            ],
        }
    }

    #[test]
    fn differences_exit_1_and_name_the_keys() {
        let out = outcome(&report(), Style::default()).unwrap();
        assert_eq!(out.code, EXIT_ERROR);
        assert_eq!(
            out.stderr,
            "tviews: 1 of 2 TVIEWs differ from their definitions (repair: tviews refresh tv_product)\n"
        );
        insta::assert_snapshot!(out.stdout);
    }

    #[test]
    fn exact_exits_0() {
        let r = VerifyReport {
            exact: true,
            tviews: vec![report().tviews[1].clone()],
        };
        let out = outcome(&r, Style::default()).unwrap();
        assert_eq!(out.code, 0);
        assert_eq!(out.stderr, "");
        assert!(!out.stdout.contains("difference"));
    }

    #[test]
    fn json_field_names_are_stable() {
        let style = Style::plain(Format::Json);
        insta::assert_snapshot!(render(&report(), style).unwrap());
    }
}
