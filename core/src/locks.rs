//! Value locks (DESIGN.md §6): what a flush must lock before it computes.
//!
//! A lock names a *join value*: `(relation, column, value)`. Writers take
//! it exclusive for the values of the link columns of the rows they
//! changed (old and new images); a refresh takes it shared for every value
//! its computation follows — the start values of a join path and each
//! value found along it (forward), and every value linking the keys it
//! recomputes back to each source (reverse). Then it computes in a fresh
//! snapshot. A writer of unrelated values never waits; a writer of a value
//! a concurrent refresh read waits until that refresh commits, and then
//! sees its result.
//!
//! This module plans the lock sets: the *targets* (relation, column) each
//! level of values is locked on, and the statements that find the values.
//! `ext` turns (target, value) pairs into lock tags and takes them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::analyze::{Analysis, KeyPath, Mapping};
use crate::catalog::Oid;
use crate::plan::RefreshPlan;
use crate::sql::{ident, operator, qualified};

/// A column whose values are locked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Target {
    pub relation: Oid,
    pub column: String,
    /// The column is an array: its elements are the values.
    pub array: bool,
}

/// A statement returning `(level, value)` rows, and the targets each
/// level's values are locked on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LevelQuery {
    /// `$1 text[]` → rows of `(level int4, value text)`.
    pub sql: String,
    pub levels: Vec<Vec<Target>>,
}

/// Everything a flush of one TVIEW locks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockPlan {
    /// Locked with the key values themselves (shared).
    pub key_targets: Vec<Target>,
    /// Per join path (the order of [`RefreshPlan::paths`]): targets locked
    /// with the start values before deriving.
    pub start_targets: Vec<Vec<Target>>,
    /// Per join path of two hops or more: the values found beyond the
    /// first hop (`$1` = start values). `None` for one-hop paths.
    pub forward: Vec<Option<LevelQuery>>,
    /// Per join path: from keys back to the path's source (`$1` = keys).
    pub reverse: Vec<LevelQuery>,
    /// Relations with no key path: locked whole (shared) by every refresh.
    pub whole: Vec<Oid>,
}

/// Builds the lock plan of one TVIEW.
pub fn lock_plan(analysis: &Analysis, plan: &RefreshPlan) -> LockPlan {
    let mut key_targets = BTreeSet::new();
    let mut whole = Vec::new();
    for s in &analysis.sources {
        match &s.mapping {
            Mapping::Full { .. } => whole.push(s.relation),
            Mapping::Keyed { paths } => {
                for p in paths.iter().filter(|p| p.is_direct()) {
                    key_targets.insert(Target {
                        relation: s.relation,
                        column: p.column.clone(),
                        array: p.unnest,
                    });
                }
            }
        }
    }
    let mut start_targets = Vec::new();
    let mut forward = Vec::new();
    let mut reverse = Vec::new();
    for pp in &plan.paths {
        let p = &pp.path;
        let h1 = &p.hops[0];
        start_targets.push(vec![Target {
            relation: h1.relation,
            column: h1.join_column.clone(),
            array: h1.overlap,
        }]);
        forward.push(forward_query(p));
        reverse.push(reverse_query(pp.source, p, &plan.key_type));
        // The key side of the path: its last relation's key column.
        let last = &p.hops[p.hops.len() - 1];
        key_targets.insert(Target {
            relation: last.relation,
            column: last.next_column.clone(),
            array: last.next_unnest,
        });
    }
    LockPlan {
        key_targets: key_targets.into_iter().collect(),
        start_targets,
        forward,
        reverse,
        whole,
    }
}

/// The join condition between hop `i` (alias t{i+1}) and the previous one.
fn link_condition(
    prev: &crate::analyze::Hop,
    prev_alias: &str,
    hop: &crate::analyze::Hop,
    alias: &str,
) -> String {
    let prev_col = format!("{prev_alias}.{}", ident(&prev.next_column));
    let this_col = format!("{alias}.{}", ident(&hop.join_column));
    let op = operator(&hop.operator.0, &hop.operator.1);
    match (prev.next_unnest, hop.overlap) {
        (false, false) => format!("{this_col} {op} {prev_col}"),
        (true, false) => format!("{this_col} {op} ANY ({prev_col})"),
        (false, true) => format!("{prev_col} {op} ANY ({this_col})"),
        (true, true) => format!("{this_col} OPERATOR(pg_catalog.&&) {prev_col}"),
    }
}

/// Values found beyond the first hop of a derive, level by level: level i
/// holds the values leaving hop i (1-based) towards hop i+1, locked on both
/// columns they link.
fn forward_query(p: &KeyPath) -> Option<LevelQuery> {
    if p.hops.len() < 2 {
        return None;
    }
    let first = &p.hops[0];
    let mut from = format!("{} AS t1", qualified(&first.schema, &first.name));
    for i in 1..p.hops.len() {
        let hop = &p.hops[i];
        from.push_str(&format!(
            " JOIN {} AS t{} ON {}",
            qualified(&hop.schema, &hop.name),
            i + 1,
            link_condition(
                &p.hops[i - 1],
                &format!("t{i}"),
                hop,
                &format!("t{}", i + 1)
            )
        ));
    }
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
            p.column_type
        )
    };
    let mut columns = Vec::new();
    let mut levels = Vec::new();
    for i in 0..p.hops.len() - 1 {
        let (hop, next) = (&p.hops[i], &p.hops[i + 1]);
        columns.push((
            format!("t{}.{}", i + 1, ident(&hop.next_column)),
            hop.next_unnest,
        ));
        levels.push(vec![
            Target {
                relation: hop.relation,
                column: hop.next_column.clone(),
                array: hop.next_unnest,
            },
            Target {
                relation: next.relation,
                column: next.join_column.clone(),
                array: next.overlap,
            },
        ]);
    }
    Some(LevelQuery {
        sql: level_sql(&columns, &from, &filter),
        levels,
    })
}

/// From keys back to the path's source: level j holds the values of the
/// join column of hop n-j (counting from the key side), locked on it and
/// on the column it links to (the previous hop's, or the source's).
fn reverse_query(source: Oid, p: &KeyPath, key_type: &str) -> LevelQuery {
    let n = p.hops.len();
    let last = &p.hops[n - 1];
    let mut from = format!("{} AS t{n}", qualified(&last.schema, &last.name));
    for i in (1..n).rev() {
        // Hop i (0-based i-1 .. ) joined from the key side: t{i} to t{i+1}.
        let (prev, hop) = (&p.hops[i - 1], &p.hops[i]);
        from.push_str(&format!(
            " LEFT JOIN {} AS t{i} ON {}",
            qualified(&prev.schema, &prev.name),
            link_condition(prev, &format!("t{i}"), hop, &format!("t{}", i + 1))
        ));
    }
    let key_col = format!("t{n}.{}", ident(&last.next_column));
    let filter = if last.next_unnest {
        format!("{key_col} OPERATOR(pg_catalog.&&) (($1::pg_catalog.text[])::{key_type}[])")
    } else {
        format!("{key_col} OPERATOR(pg_catalog.=) ANY (($1::pg_catalog.text[])::{key_type}[])")
    };
    let mut columns = Vec::new();
    let mut levels = Vec::new();
    for i in (0..n).rev() {
        let hop = &p.hops[i];
        columns.push((
            format!("t{}.{}", i + 1, ident(&hop.join_column)),
            hop.overlap,
        ));
        let linked = if i == 0 {
            Target {
                relation: source,
                column: p.column.clone(),
                array: p.unnest,
            }
        } else {
            let prev = &p.hops[i - 1];
            Target {
                relation: prev.relation,
                column: prev.next_column.clone(),
                array: prev.next_unnest,
            }
        };
        levels.push(vec![
            Target {
                relation: hop.relation,
                column: hop.join_column.clone(),
                array: hop.overlap,
            },
            linked,
        ]);
    }
    LevelQuery {
        sql: level_sql(&columns, &from, &filter),
        levels,
    }
}

/// One pass over the join chain (materialized), then one `(level, value)`
/// row per distinct value of each level's column (its elements for arrays).
fn level_sql(columns: &[(String, bool)], from: &str, filter: &str) -> String {
    let list = columns
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("{c} AS l{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let selects = columns
        .iter()
        .enumerate()
        .map(|(i, (_, array))| {
            let v = if *array {
                format!("pg_catalog.unnest(c.l{i})")
            } else {
                format!("c.l{i}")
            };
            format!("SELECT {i}, ({v})::pg_catalog.text FROM c")
        })
        .collect::<Vec<_>>()
        .join(" UNION ");
    format!(
        "WITH c AS MATERIALIZED (SELECT {list} FROM {from} WHERE {filter}) \
         SELECT s.lvl, s.v FROM ({selects}) AS s(lvl, v) WHERE s.v IS NOT NULL"
    )
}

/// The link columns of each relation across TVIEWs: the columns whose
/// values a writer of that relation locks exclusively.
pub fn link_columns<'a>(
    plans: impl IntoIterator<Item = &'a LockPlan>,
) -> BTreeMap<Oid, BTreeSet<Target>> {
    let mut out: BTreeMap<Oid, BTreeSet<Target>> = BTreeMap::new();
    for lp in plans {
        let all = lp
            .key_targets
            .iter()
            .chain(lp.start_targets.iter().flatten())
            .chain(
                lp.forward
                    .iter()
                    .flatten()
                    .flat_map(|q| q.levels.iter().flatten()),
            )
            .chain(lp.reverse.iter().flat_map(|q| q.levels.iter().flatten()));
        for t in all {
            out.entry(t.relation).or_default().insert(t.clone());
        }
    }
    out
}
