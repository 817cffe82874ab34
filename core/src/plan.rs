//! Refresh plans: the statements that capture, derive and apply, rendered
//! from an [`Analysis`] (DESIGN.md §3–4).
//!
//! Every statement is fixed per TVIEW (or per source) and takes its values
//! as parameters, so `ext` prepares each once per backend:
//! - capture (per source, per event): reads the statement's transition
//!   tables and returns `(slot, value)` pairs — keys, or the start values
//!   of a join path;
//! - derive (per join path): start values → keys, evaluated at flush time
//!   under the TVIEW's refresh lock, with a fresh snapshot;
//! - apply: recompute the definition for a key set, delete keys that left,
//!   upsert rows that changed, skip identical rows — one statement.

use serde::Serialize;

use crate::analyze::{Analysis, KeyPath, Mapping};
use crate::catalog::Oid;
use crate::sql::{ident, operator, qualified};

/// Names of the transition tables of our capture triggers.
pub const OLD_TABLE: &str = "tviews_old";
pub const NEW_TABLE: &str = "tviews_new";

/// Where a TVIEW lives: its storage table and its backing view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TviewNames {
    pub schema: String,
    pub name: String,
    pub view_schema: String,
    pub view_name: String,
}

impl TviewNames {
    pub fn table(&self) -> String {
        qualified(&self.schema, &self.name)
    }

    pub fn view(&self) -> String {
        qualified(&self.view_schema, &self.view_name)
    }

    pub fn display(&self) -> String {
        if self.schema == "public" {
            self.name.clone()
        } else {
            format!("{}.{}", self.schema, self.name)
        }
    }
}

/// The statements that maintain one TVIEW.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshPlan {
    pub names: TviewNames,
    pub key: String,
    pub key_type: String,
    /// `$1 text[]` keys → one row `(recomputed, deleted, inserted, updated,
    /// duplicates)`: keys the definition returned more than once (an error:
    /// the caller raises, which rolls the statement back).
    pub apply_keys: String,
    /// No parameter: the same for every key (full rebuild).
    pub apply_all: String,
    /// `$1 text[]` keys → one text: a digest of the definition's rows for
    /// those keys (REPEATABLE READ compares it across two snapshots).
    pub digest_keys: String,
    /// The same over every row.
    pub digest_all: String,
    /// When the definition may return a NULL key (which a keyed refresh
    /// cannot see, and the TVIEW cannot hold): a query returning a row if
    /// it does. Run after each keyed refresh.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub null_keys: Option<String>,
    /// One per join path, in the order of [`RefreshPlan::paths`]:
    /// `$1 text[]` start values → rows of one text column, the keys.
    pub derive: Vec<String>,
    pub paths: Vec<PlannedPath>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedPath {
    pub source: Oid,
    pub path: KeyPath,
}

/// What a capture slot's values are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SlotUse {
    /// Keys of a TVIEW (index into the caller's TVIEW list).
    Keys { tview: usize },
    /// Start values of a join path of a TVIEW (index into its `derive`).
    Start { tview: usize, path: usize },
    /// Any change rebuilds the TVIEW.
    Full { tview: usize },
    /// Values of a link column the writer locks (index into
    /// [`CapturePlan::links`]).
    Link { column: usize },
}

/// The capture statements of one source relation, for all TVIEWs reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapturePlan {
    pub source: Oid,
    /// `slots[i]` lists who consumes the values returned with slot `i`.
    pub slots: Vec<Vec<SlotUse>>,
    /// TVIEWs rebuilt in full on any change of this source.
    pub full: Vec<usize>,
    /// Link columns of the source whose values a writer locks.
    pub links: Vec<crate::locks::Target>,
    pub on_insert: Option<String>,
    pub on_update: Option<String>,
    pub on_delete: Option<String>,
    /// `on_update` compares rows by their text: run it under the transport
    /// settings.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub update_filtered: bool,
}

/// Builds the refresh plan of one TVIEW.
pub fn refresh_plan(names: TviewNames, analysis: &Analysis) -> RefreshPlan {
    let key = ident(&analysis.key.name);
    let key_type = analysis.key.type_name.clone();
    let table = names.table();
    let view = names.view();
    let cols: Vec<String> = analysis.columns.iter().map(|c| ident(c)).collect();
    let col_list = cols.join(", ");
    let set_list = cols
        .iter()
        .filter(|c| **c != key)
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    // A key-only TVIEW has nothing to update: its rows are either there or not.
    let on_conflict = if set_list.is_empty() {
        format!("ON CONFLICT ({key}) DO NOTHING")
    } else {
        format!(
            "ON CONFLICT ({key}) DO UPDATE SET {set_list} \
             WHERE (t.*) OPERATOR(pg_catalog.*<>) (EXCLUDED.*)"
        )
    };
    let keys_param = format!("(($1::pg_catalog.text[])::{key_type}[])");
    let apply = |restrict_src: &str, restrict_del: &str| {
        format!(
            "WITH src AS MATERIALIZED (SELECT {col_list} FROM {view} AS v{restrict_src}), \
             del AS (DELETE FROM {table} AS t WHERE {restrict_del}NOT EXISTS \
             (SELECT FROM src WHERE src.{key} = t.{key}) RETURNING 1), \
             ups AS (INSERT INTO {table} AS t ({col_list}) SELECT {col_list} FROM src {on_conflict} \
             RETURNING (t.xmax OPERATOR(pg_catalog.=) 0) AS inserted) \
             SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM del), \
             count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted), \
             (SELECT count(*) - count(DISTINCT src.{key}) FROM src) FROM ups"
        )
    };
    let apply_keys = apply(
        &format!(" WHERE v.{key} = ANY {keys_param}"),
        &format!("t.{key} = ANY {keys_param} AND "),
    );
    let apply_all = apply("", "");
    let digest = |restrict: &str| {
        format!(
            "SELECT count(*)::pg_catalog.text || ':' || coalesce(pg_catalog.md5(pg_catalog.string_agg(ROW(v.*)::pg_catalog.text, ',' \
             ORDER BY ROW(v.*)::pg_catalog.text)), '') FROM {view} AS v{restrict}"
        )
    };
    let digest_keys = digest(&format!(" WHERE v.{key} = ANY {keys_param}"));
    let digest_all = digest("");

    let mut paths = Vec::new();
    let mut derive = Vec::new();
    for source in &analysis.sources {
        if let Mapping::Keyed { paths: ps } = &source.mapping {
            for p in ps.iter().filter(|p| !p.is_direct()) {
                derive.push(derive_sql(p, &key_type));
                paths.push(PlannedPath {
                    source: source.relation,
                    path: p.clone(),
                });
            }
        }
    }
    RefreshPlan {
        names,
        key: analysis.key.name.clone(),
        key_type,
        apply_keys,
        apply_all,
        digest_keys,
        digest_all,
        null_keys: analysis
            .key
            .nullable
            .then(|| format!("SELECT 1 FROM {view} AS v WHERE v.{key} IS NULL LIMIT 1")),
        derive,
        paths,
    }
}

/// Start values → keys, joining the path's relations in order.
fn derive_sql(path: &KeyPath, key_type: &str) -> String {
    let mut from = String::new();
    for (i, hop) in path.hops.iter().enumerate() {
        let t = format!("t{}", i + 1);
        let rel = qualified(&hop.schema, &hop.name);
        if i == 0 {
            from.push_str(&format!("{rel} AS {t}"));
            continue;
        }
        let prev = &path.hops[i - 1];
        let prev_col = format!("t{i}.{}", ident(&prev.next_column));
        let this_col = format!("{t}.{}", ident(&hop.join_column));
        let op = operator(&hop.operator.0, &hop.operator.1);
        let cond = match (prev.next_unnest, hop.overlap) {
            (false, false) => format!("{this_col} {op} {prev_col}"),
            (true, false) => format!("{this_col} {op} ANY ({prev_col})"),
            (false, true) => format!("{prev_col} {op} ANY ({this_col})"),
            (true, true) => format!("{this_col} OPERATOR(pg_catalog.&&) {prev_col}"),
        };
        from.push_str(&format!(" JOIN {rel} AS {t} ON {cond}"));
    }
    let first = &path.hops[0];
    let last = path.hops.len();
    let last_hop = &path.hops[last - 1];
    let (select, lateral) = if last_hop.next_unnest {
        (
            "u.k".to_string(),
            format!(
                " CROSS JOIN LATERAL pg_catalog.unnest(t{last}.{}) AS u(k)",
                ident(&last_hop.next_column)
            ),
        )
    } else {
        (
            format!("t{last}.{}", ident(&last_hop.next_column)),
            String::new(),
        )
    };
    let filter = if first.overlap {
        format!(
            "t1.{} OPERATOR(pg_catalog.&&) (($1::pg_catalog.text[])::{})",
            ident(&first.join_column),
            first.join_type
        )
    } else {
        format!(
            "t1.{} {} ANY (($1::pg_catalog.text[])::{}[])",
            ident(&first.join_column),
            operator(&first.operator.0, &first.operator.1),
            path.column_type
        )
    };
    format!(
        "SELECT DISTINCT (({select})::{key_type})::pg_catalog.text FROM {from}{lateral} WHERE {filter}"
    )
}

/// The expression over a transition row that yields a path's start values.
fn start_expr(path: &KeyPath, cast: Option<&str>) -> String {
    let col = ident(&path.column);
    let value = if path.unnest {
        format!("pg_catalog.unnest({col})")
    } else {
        col
    };
    match cast {
        Some(t) => format!("(({value})::{t})::pg_catalog.text"),
        None => format!("({value})::pg_catalog.text"),
    }
}

/// The source's columns (name, type as `format_type` gives it under the
/// maintenance search_path), for telling which rows an UPDATE really
/// changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateFilter {
    pub columns: Vec<(String, String)>,
    /// The source is a TVIEW: only its maintenance writes it, and only rows
    /// that changed (`*<>`), so comparing every column would filter nothing.
    pub changed_rows_only: bool,
}

const CHANGED_OLD: &str = "tviews_changed_old";
const CHANGED_NEW: &str = "tviews_changed_new";

/// The columns an UPDATE filter compares: those each reader reads, and all
/// of them (what a value-lock link compares); `None` when the filter cannot
/// be used safely (a system column read, a column whose type's text may not
/// be its value).
///
/// Each slot compares the columns read by the TVIEW it serves (all columns
/// read by any reader for a lock link): an UPDATE of a column only one
/// TVIEW reads refreshes that TVIEW alone. Slots comparing the same columns
/// share their pair of transition subsets.
struct FilterColumns {
    read_by: std::collections::BTreeMap<usize, std::collections::BTreeSet<String>>,
    all: std::collections::BTreeSet<String>,
}

impl FilterColumns {
    fn new(
        source: Oid,
        readers: &[(usize, &Analysis, &RefreshPlan)],
        links: &[crate::locks::Target],
        filter: Option<&UpdateFilter>,
    ) -> Option<FilterColumns> {
        let filter = filter?;
        let mut read_by: std::collections::BTreeMap<usize, std::collections::BTreeSet<String>> =
            Default::default();
        for (tview, analysis, _) in readers {
            let read = read_by.entry(*tview).or_default();
            for s in analysis.sources.iter().filter(|s| s.relation == source) {
                if s.reads_system_columns {
                    return None;
                }
                read.extend(s.columns_read.iter().cloned());
                if let Mapping::Keyed { paths } = &s.mapping {
                    read.extend(paths.iter().map(|p| p.column.clone()));
                }
            }
        }
        let mut all: std::collections::BTreeSet<String> =
            read_by.values().flatten().cloned().collect();
        all.extend(links.iter().map(|l| l.column.clone()));
        if all.is_empty() {
            return None;
        }
        // Text is the value for pg_catalog's types under the transport
        // settings, but for money (lc_monetary); other schemas' types may
        // print two values alike.
        let text_is_value =
            |t: &str| !t.contains('.') && !t.contains('"') && t.trim_end_matches("[]") != "money";
        for c in &all {
            match filter.columns.iter().find(|(n, _)| n == c) {
                Some((_, t)) if text_is_value(t) => {}
                _ => return None,
            }
        }
        Some(FilterColumns { read_by, all })
    }

    /// The columns a slot use compares.
    fn of(&self, use_: &SlotUse) -> std::collections::BTreeSet<String> {
        let cols = match use_ {
            SlotUse::Keys { tview } | SlotUse::Start { tview, .. } | SlotUse::Full { tview } => {
                self.read_by.get(tview).cloned().unwrap_or_default()
            }
            SlotUse::Link { .. } => self.all.clone(),
        };
        if cols.is_empty() {
            self.all.clone()
        } else {
            cols
        }
    }
}

/// The `WITH` clause naming, for each group of compared columns, the old
/// and new rows an UPDATE changed in them.
fn update_filter(groups: &[std::collections::BTreeSet<String>]) -> String {
    let single = groups.len() == 1;
    let mut ctes = Vec::new();
    for (g, cols) in groups.iter().enumerate() {
        let image = |alias: &str| {
            let cols: Vec<String> = cols
                .iter()
                .map(|c| format!("{alias}.{}", ident(c)))
                .collect();
            format!("(ROW({}))::pg_catalog.text", cols.join(", "))
        };
        let side = |name: String, this: &str, other: &str| {
            format!(
                "{name} AS (SELECT a.* FROM {this} AS a WHERE {} IN \
                 (SELECT {} FROM {this} AS b EXCEPT ALL SELECT {} FROM {other} AS c))",
                image("a"),
                image("b"),
                image("c")
            )
        };
        ctes.push(side(
            changed_name(CHANGED_OLD, g, single),
            &ident(OLD_TABLE),
            &ident(NEW_TABLE),
        ));
        ctes.push(side(
            changed_name(CHANGED_NEW, g, single),
            &ident(NEW_TABLE),
            &ident(OLD_TABLE),
        ));
    }
    format!("WITH {}", ctes.join(", "))
}

/// The name of a group's subset of a transition table (no suffix when
/// there is one group).
fn changed_name(base: &str, group: usize, single: bool) -> String {
    if single {
        base.to_string()
    } else {
        format!("{base}_{group}")
    }
}

/// Builds the capture plan of one source for the TVIEWs reading it.
/// `readers` pairs each TVIEW's index with its analysis and plan.
///
/// With `filter` (the caller leaves it out when row-level security may
/// read other columns), an UPDATE captures only rows whose columns read by
/// some TVIEW changed: the TVIEWs depend on the multiset of those columns'
/// values, and the statement changed it by `new − old` (transition tables
/// hold every version a row went through, so an intermediate version — a
/// row updated again by a cascade — cancels out). The difference is taken
/// on each row's text form (`EXCEPT ALL`, any type), which the caller
/// computes under the transport settings, where a value's text is the
/// value. Every row whose image is left after the difference is captured
/// (all rows with that image: more is never wrong).
pub fn capture_plan(
    source: Oid,
    readers: &[(usize, &Analysis, &RefreshPlan)],
    links: &[crate::locks::Target],
    filter: Option<&UpdateFilter>,
) -> CapturePlan {
    // With the UPDATE filter, the columns each use compares, grouped.
    let columns = FilterColumns::new(source, readers, links, filter);
    let mut groups: Vec<std::collections::BTreeSet<String>> = Vec::new();
    // Distinct value expressions over the transition rows (per group of
    // compared columns), and their users.
    let mut exprs: Vec<(String, usize)> = Vec::new();
    let mut slots: Vec<Vec<SlotUse>> = Vec::new();
    let mut full = Vec::new();
    let mut slot_for = |expr: String, use_: SlotUse| {
        let group = match &columns {
            Some(columns) => {
                let cols = columns.of(&use_);
                match groups.iter().position(|g| *g == cols) {
                    Some(g) => g,
                    None => {
                        groups.push(cols);
                        groups.len() - 1
                    }
                }
            }
            None => 0,
        };
        let key = (expr, group);
        let i = match exprs.iter().position(|e| *e == key) {
            Some(i) => i,
            None => {
                exprs.push(key);
                slots.push(Vec::new());
                exprs.len() - 1
            }
        };
        if !slots[i].contains(&use_) {
            slots[i].push(use_);
        }
    };
    for (tview, analysis, plan) in readers {
        for s in analysis.sources.iter().filter(|s| s.relation == source) {
            match &s.mapping {
                Mapping::Full { .. } => {
                    if !full.contains(tview) {
                        full.push(*tview);
                    }
                }
                Mapping::Keyed { paths } => {
                    for p in paths {
                        if p.is_direct() {
                            let expr = start_expr(p, Some(&analysis.key.type_name));
                            slot_for(expr, SlotUse::Keys { tview: *tview });
                        } else {
                            let idx = plan
                                .paths
                                .iter()
                                .position(|pp| pp.source == source && pp.path == *p)
                                .unwrap_or_default();
                            let expr = start_expr(p, None);
                            slot_for(
                                expr,
                                SlotUse::Start {
                                    tview: *tview,
                                    path: idx,
                                },
                            );
                        }
                    }
                }
            }
        }
    }
    for (i, t) in links.iter().enumerate() {
        let col = ident(&t.column);
        let value = if t.array {
            format!("pg_catalog.unnest({col})")
        } else {
            col
        };
        slot_for(
            format!("({value})::pg_catalog.text"),
            SlotUse::Link { column: i },
        );
    }
    // Each slot's part of the union, over the tables `from(slot)` names.
    let select = |from: &dyn Fn(usize) -> [String; 2], sides: usize| -> Option<String> {
        if exprs.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        for side in 0..sides {
            for (i, (e, _)) in exprs.iter().enumerate() {
                parts.push(format!(
                    "SELECT '{i}'::pg_catalog.text AS slot, {e} AS v FROM {}",
                    ident(&from(i)[side])
                ));
            }
        }
        Some(format!(
            "SELECT s.slot, s.v FROM ({}) AS s WHERE s.v IS NOT NULL",
            parts.join(" UNION ")
        ))
    };
    // A group comparing every column of a TVIEW source would keep every
    // updated row: its slots read the transition tables as they are.
    let every_column = |cols: &std::collections::BTreeSet<String>| {
        filter
            .is_some_and(|f| f.changed_rows_only && f.columns.iter().all(|(c, _)| cols.contains(c)))
    };
    let mut compared: Vec<std::collections::BTreeSet<String>> = Vec::new();
    let group_index: Vec<Option<usize>> = groups
        .iter()
        .map(|g| {
            (!every_column(g)).then(|| {
                compared.push(g.clone());
                compared.len() - 1
            })
        })
        .collect();
    let update_filtered = columns.is_some() && !exprs.is_empty() && !compared.is_empty();
    let on_update = if update_filtered {
        let single = compared.len() == 1;
        let from = |i: usize| match group_index.get(exprs[i].1).copied().flatten() {
            Some(g) => [
                changed_name(CHANGED_OLD, g, single),
                changed_name(CHANGED_NEW, g, single),
            ],
            None => [OLD_TABLE.to_string(), NEW_TABLE.to_string()],
        };
        select(&from, 2).map(|q| format!("{} {q}", update_filter(&compared)))
    } else {
        select(&|_| [OLD_TABLE.to_string(), NEW_TABLE.to_string()], 2)
    };
    CapturePlan {
        source,
        on_insert: select(&|_| [NEW_TABLE.to_string(), String::new()], 1),
        on_update,
        on_delete: select(&|_| [OLD_TABLE.to_string(), String::new()], 1),
        update_filtered,
        slots,
        full,
        links: links.to_vec(),
    }
}
