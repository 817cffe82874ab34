//! `explain --for "<DML>"`: runs the statement in a transaction that is rolled back and
//! shows, per TVIEW, the keys it queued and through which path
//! (`pg_tviews_pending_keys`); then, unless told not to, runs the refresh there too
//! (`pg_tviews_flush`) to show what it wrote and where it cascaded (this session's
//! counters before and after; the cascaded keys are the rows the transaction wrote).
//!
//! The statement goes over the extended protocol, which takes exactly one statement,
//! and only a data-changing statement is accepted: `"UPDATE ...; COMMIT"` or `COMMIT`
//! cannot end the transaction that is meant to be rolled back.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tokio_postgres::Client;

use super::paths::ident;
use super::tview_tables;
use crate::commands::graph;
use crate::commands::probe::Api;
use crate::commands::refresh::{Counts, delta, session_counts};
use crate::failure::{EXIT_ERROR, Failure, Outcome, ServerError};
use crate::output::{Format, Style, to_json};
use crate::tree::{Node, render_forest};

/// Keys shown per path in the text tree (JSON has them all).
pub const TEXT_KEYS: usize = 20;
/// Keys read per TVIEW for what the refresh wrote.
pub const WRITTEN_KEYS: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DmlReport {
    pub statement: String,
    /// Rows the statement changed (its command tag's count).
    pub rows: u64,
    /// The refresh was run (and rolled back) too.
    pub refreshed: bool,
    /// `TVIEW` given: only its entry is shown.
    pub only: Option<String>,
    pub tviews: Vec<DmlTview>,
    /// The refresh failed: the statement would fail at commit with this.
    pub refresh_error: Option<ServerError>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DmlTview {
    pub tview: String,
    pub depth: i32,
    /// Keys the statement queued, per path (`direct`: a changed column that is the
    /// key, or maps to it without a join).
    pub queued: Vec<PathKeys>,
    /// Any change rebuilds it (a source without a key path, or TRUNCATE).
    pub full_rebuild: bool,
    /// Refreshed because TVIEWs it reads changed (upstream TVIEWs).
    pub cascade_from: Vec<String>,
    /// What the refresh did, when it was run.
    pub refresh: Option<Counts>,
    /// For a cascaded TVIEW: the keys of the rows the refresh inserted or updated.
    pub written_keys: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathKeys {
    pub path: String,
    pub keys: Vec<String>,
}

/// The first word of a statement, past comments and opening parentheses, lower case.
pub fn first_keyword(sql: &str) -> String {
    let mut rest = sql;
    loop {
        let t = rest.trim_start();
        if let Some(r) = t.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(r) = t.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, r)| r);
        } else if let Some(r) = t.strip_prefix('(') {
            rest = r;
        } else {
            rest = t;
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Statements `--for` runs: those that change data and cannot end a transaction.
pub const ALLOWED: &[&str] = &[
    "insert", "update", "delete", "merge", "with", "truncate", "select", "values",
];

pub fn check_statement(sql: &str) -> anyhow::Result<()> {
    let word = first_keyword(sql);
    if ALLOWED.contains(&word.as_str()) {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "--for takes one INSERT, UPDATE, DELETE, MERGE, TRUNCATE, WITH or SELECT statement, not {}",
            if word.is_empty() {
                "this".to_string()
            } else {
                word.to_ascii_uppercase()
            }
        ))
    }
}

pub async fn gather(
    client: &Client,
    api: &Api,
    statement: &str,
    only: Option<&str>,
    refresh: bool,
) -> Result<DmlReport, Failure> {
    check_statement(statement)?;
    let dag = graph::load(client, api).await?;
    let only = match only {
        Some(name) => {
            let display = graph::display_form(name);
            if dag
                .node(&display)
                .is_none_or(|n| n.kind != graph::NodeKind::Tview)
            {
                return Err(Failure::Other(anyhow::anyhow!("\"{name}\" is not a TVIEW")));
            }
            Some(display)
        }
        None => None,
    };
    let tables = tview_tables(client).await?;
    let before = session_counts(client, api).await?;
    // Commit mode: a session or role set to refresh at each statement would have
    // refreshed (and emptied the queue) before the keys could be read.
    client
        .batch_execute("BEGIN; SET LOCAL pg_tviews.refresh_mode = 'commit'")
        .await?;
    let result = run_in_transaction(client, api, statement, refresh, &before, &tables).await;
    // Whatever happened, nothing the statement or the refresh did stays.
    let rollback = client.batch_execute("ROLLBACK").await;
    let (rows, pending, moved, written, refresh_error) = result?;
    rollback?;

    let mut by_tview: BTreeMap<String, DmlTview> = BTreeMap::new();
    let entry = |name: &str, by_tview: &mut BTreeMap<String, DmlTview>| {
        by_tview
            .entry(name.to_string())
            .or_insert_with(|| DmlTview {
                tview: name.to_string(),
                depth: dag.node(name).and_then(|n| n.depth).unwrap_or(0),
                queued: Vec::new(),
                full_rebuild: false,
                cascade_from: Vec::new(),
                refresh: None,
                written_keys: Vec::new(),
            })
            .tview
            .clone()
    };
    for (tview, path, key) in pending {
        entry(&tview, &mut by_tview);
        let Some(t) = by_tview.get_mut(&tview) else {
            continue;
        };
        if path == "full rebuild" {
            t.full_rebuild = true;
            continue;
        }
        match t.queued.iter_mut().find(|p| p.path == path) {
            Some(p) => p.keys.push(key),
            None => t.queued.push(PathKeys {
                path,
                keys: vec![key],
            }),
        }
    }
    for t in by_tview.values_mut() {
        for p in &mut t.queued {
            sort_keys(&mut p.keys);
        }
    }
    let queued: BTreeSet<String> = by_tview.keys().cloned().collect();
    for (tview, counts) in &moved {
        entry(tview, &mut by_tview);
        if let Some(t) = by_tview.get_mut(tview) {
            t.refresh = Some(counts.clone());
        }
    }
    for (tview, keys) in written {
        if let Some(t) = by_tview.get_mut(&tview) {
            t.written_keys = keys;
        }
    }
    // Cascades: a TVIEW refreshed without queued keys of its own, fed by TVIEWs that
    // were refreshed.
    let refreshed: BTreeSet<String> = by_tview.keys().cloned().collect();
    for t in by_tview.values_mut() {
        if queued.contains(&t.tview) && t.queued.iter().any(|p| !p.keys.is_empty()) {
            continue;
        }
        t.cascade_from = dag
            .upstream(&t.tview)
            .into_iter()
            .map(|r| r.name)
            .filter(|n| refreshed.contains(n))
            .collect();
    }
    let mut tviews: Vec<DmlTview> = by_tview
        .into_values()
        .filter(|t| only.as_ref().is_none_or(|o| *o == t.tview))
        .collect();
    tviews.sort_by(|a, b| (a.depth, &a.tview).cmp(&(b.depth, &b.tview)));
    Ok(DmlReport {
        statement: statement.trim().to_string(),
        rows,
        refreshed: refresh,
        only,
        tviews,
        refresh_error,
    })
}

/// Keys in their natural order: numerically when they are all integers.
pub fn sort_keys(keys: &mut [String]) {
    if keys.iter().all(|k| k.parse::<i64>().is_ok()) {
        keys.sort_by_key(|k| k.parse::<i64>().unwrap_or_default());
    } else {
        keys.sort();
    }
}

type Pending = Vec<(String, String, String)>;
type InTransaction = (
    u64,
    Pending,
    BTreeMap<String, Counts>,
    BTreeMap<String, Vec<String>>,
    Option<ServerError>,
);

async fn run_in_transaction(
    client: &Client,
    api: &Api,
    statement: &str,
    refresh: bool,
    before: &BTreeMap<String, Counts>,
    tables: &BTreeMap<String, super::TviewTable>,
) -> Result<InTransaction, Failure> {
    // Extended protocol: one statement, whatever the text holds.
    let rows = client.execute(statement, &[]).await?;
    let pending: Pending = client
        .query(
            &format!(
                "SELECT tview::text, path::text, key::text FROM {}() ORDER BY 1, 2, 3",
                api.object("pg_tviews_pending_keys")
            ),
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let mut moved = BTreeMap::new();
    let mut written = BTreeMap::new();
    let mut refresh_error = None;
    if refresh {
        let flush = client
            .execute(&format!("SELECT {}()", api.object("pg_tviews_flush")), &[])
            .await;
        match flush {
            Err(e) if e.as_db_error().is_some() => {
                refresh_error = e.as_db_error().map(ServerError::from);
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {
                moved = delta(before, &session_counts(client, api).await?);
                let queued: BTreeSet<&str> = pending.iter().map(|p| p.0.as_str()).collect();
                for (tview, counts) in &moved {
                    let Some(t) = tables.get(tview) else { continue };
                    if queued.contains(tview.as_str()) || counts.inserted + counts.updated == 0 {
                        continue;
                    }
                    // Rows this transaction wrote carry its id as xmin.
                    let key = ident(&t.key_column);
                    let keys = client
                        .query(
                            &format!(
                                "SELECT {key}::text FROM {} WHERE xmin = pg_current_xact_id()::xid \
                                 ORDER BY {key} LIMIT {WRITTEN_KEYS}",
                                t.quoted()
                            ),
                            &[],
                        )
                        .await?
                        .iter()
                        .map(|r| r.try_get(0))
                        .collect::<Result<Vec<String>, _>>()?;
                    written.insert(tview.clone(), keys);
                }
            }
        }
    }
    Ok((rows, pending, moved, written, refresh_error))
}

/// The report, and exit 1 with the server's error when the refresh failed (the
/// statement would fail at commit).
pub fn outcome(r: &DmlReport, style: Style) -> anyhow::Result<Outcome> {
    let mut out = Outcome::ok(render(r, style)?);
    if let Some(e) = &r.refresh_error {
        out.code = EXIT_ERROR;
        out.stderr = format!("tviews: the refresh at commit would fail:\n{}", e.render());
    }
    Ok(out)
}

fn keys_line(keys: &[String]) -> String {
    if keys.len() <= TEXT_KEYS {
        keys.join(", ")
    } else {
        format!(
            "{}, … and {} more",
            keys[..TEXT_KEYS].join(", "),
            keys.len() - TEXT_KEYS
        )
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `1 key: 1 updated` / `3 keys: 2 updated, 1 unchanged` / `2 keys: nothing written`.
pub fn describe_counts(c: &Counts) -> String {
    let parts: Vec<String> = [
        (c.inserted, "inserted"),
        (c.updated, "updated"),
        (c.deleted, "deleted"),
        (c.skipped, "unchanged"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    let keys = plural(c.keys.max(0) as usize, "key", "keys");
    if parts.is_empty() {
        format!("{keys}: nothing written")
    } else {
        format!("{keys}: {}", parts.join(", "))
    }
}

pub fn render(r: &DmlReport, style: Style) -> anyhow::Result<String> {
    if style.format == Format::Json {
        return to_json(r);
    }
    let mut out = format!(
        "{}\n{}, in a transaction that was rolled back\n\n",
        r.statement,
        plural(r.rows as usize, "row", "rows")
    );
    if r.tviews.is_empty() {
        out.push_str(&match &r.only {
            Some(t) => format!("{t}: the statement refreshes nothing in it\n"),
            None => {
                "the statement queued no TVIEW work (it changed no column a TVIEW reads)\n".into()
            }
        });
        return Ok(out);
    }
    let mut roots = Vec::new();
    for t in &r.tviews {
        let n_keys: usize = t.queued.iter().map(|p| p.keys.len()).sum();
        let mut head = format!("{} (depth {})", t.tview, t.depth);
        if n_keys > 0 {
            head.push_str(&format!(": {} queued", plural(n_keys, "key", "keys")));
        } else if !t.cascade_from.is_empty() {
            head.push_str(&format!(": cascade from {}", t.cascade_from.join(", ")));
        }
        let mut node = Node::new(head);
        if t.full_rebuild {
            node.children.push(Node::new("full rebuild"));
        }
        for p in &t.queued {
            let path = if p.path == "direct" {
                "direct (a changed column maps to the key without a join)".to_string()
            } else {
                p.path.clone()
            };
            node.children
                .push(Node::with(path, vec![Node::new(keys_line(&p.keys))]));
        }
        if !t.written_keys.is_empty() {
            node.children.push(Node::with(
                "rows written",
                vec![Node::new(keys_line(&t.written_keys))],
            ));
        }
        if let Some(c) = &t.refresh {
            node.children
                .push(Node::new(format!("refresh: {}", describe_counts(c))));
        }
        roots.push(node);
    }
    out.push_str(&render_forest(&roots));
    if !r.refreshed {
        out.push_str("\n(refresh not run: --no-refresh; cascades are not shown)\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_data_changing_statements() {
        assert_eq!(first_keyword("  update t set a = 1"), "update");
        assert_eq!(
            first_keyword("-- why\n/* c */ (WITH x AS (SELECT 1) SELECT 1)"),
            "with"
        );
        assert!(check_statement("DELETE FROM t").is_ok());
        assert!(check_statement("commit").is_err());
        assert!(check_statement("BEGIN; UPDATE t SET a = 1").is_err());
        assert!(check_statement("call p()").is_err());
        assert!(check_statement("").is_err());
    }

    fn report() -> DmlReport {
        let counts = |keys, updated, skipped| Counts {
            keys,
            updated,
            skipped,
            ..Counts::default()
        };
        DmlReport {
            statement: "UPDATE tb_category SET name = 'x' WHERE pk_category = 3".into(),
            rows: 1,
            refreshed: true,
            only: None,
            tviews: vec![
                DmlTview {
                    tview: "tv_product".into(),
                    depth: 0,
                    queued: vec![PathKeys {
                        path: "tb_category.pk_category → tb_product.fk_category → tb_product.pk_product → tv_product.pk_product".into(),
                        keys: (0..25).map(|i| (2 + 20 * i).to_string()).collect(),
                    }],
                    full_rebuild: false,
                    cascade_from: vec![],
                    refresh: Some(counts(25, 25, 0)),
                    written_keys: vec![],
                },
                DmlTview {
                    tview: "tv_category".into(),
                    depth: 1,
                    queued: vec![PathKeys {
                        path: "direct".into(),
                        keys: vec!["3".into()],
                    }],
                    full_rebuild: false,
                    cascade_from: vec![],
                    refresh: Some(counts(2, 1, 1)),
                    written_keys: vec![],
                },
                DmlTview {
                    tview: "tv_search".into(),
                    depth: 2,
                    queued: vec![],
                    full_rebuild: false,
                    cascade_from: vec!["tv_category".into()],
                    refresh: Some(counts(1, 1, 0)),
                    written_keys: vec!["3".into()],
                },
            ],
            refresh_error: None,
        }
    }

    #[test]
    fn text_tree() {
        insta::assert_snapshot!(render(&report(), Style::default()).unwrap());
    }

    #[test]
    fn json_field_names_are_stable() {
        let style = Style::plain(Format::Json);
        insta::assert_snapshot!(render(&report(), style).unwrap());
    }

    #[test]
    fn a_failing_refresh_exits_1() {
        let r = DmlReport {
            refresh_error: Some(ServerError {
                severity: "ERROR".into(),
                code: "21000".into(),
                message: "duplicate key 3 in tv_x".into(),
                detail: None,
                hint: None,
                context: None,
            }),
            ..report()
        };
        let out = outcome(&r, Style::default()).unwrap();
        assert_eq!(out.code, EXIT_ERROR);
        assert!(out.stderr.contains("SQLSTATE: 21000"), "{}", out.stderr);
    }

    #[test]
    fn keys_sort_naturally() {
        let mut k: Vec<String> = ["102", "2", "22"].map(String::from).to_vec();
        sort_keys(&mut k);
        assert_eq!(k, ["2", "22", "102"]);
        let mut k: Vec<String> = ["b", "a", "10"].map(String::from).to_vec();
        sort_keys(&mut k);
        assert_eq!(k, ["10", "a", "b"]);
    }

    #[test]
    fn counts_in_words() {
        let c = Counts {
            keys: 3,
            updated: 2,
            skipped: 1,
            ..Counts::default()
        };
        assert_eq!(describe_counts(&c), "3 keys: 2 updated, 1 unchanged");
        assert_eq!(
            describe_counts(&Counts::default()),
            "0 keys: nothing written"
        );
    }
}
