//! Reading `EXPLAIN (FORMAT JSON)` output and turning it into advice (pure): which
//! relations each statement scans and how, and warnings a person can act on — a
//! lookup with no index (with the `CREATE INDEX` that fixes it), a sequential scan
//! where a key lookup was expected.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::paths::Lookup;
use crate::failure::ServerError;

/// One statement of `pg_tviews_statements`, its sample parameters and its plans.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatementPlan {
    pub kind: String,
    pub source: Option<String>,
    pub path: Option<String>,
    /// `schema.relation.column` that should be reached through an index.
    pub lookups: Vec<String>,
    /// What `$1` was bound to (sample keys or start values); empty for `apply_all`.
    pub parameters: Vec<String>,
    /// `EXPLAIN (VERBOSE, FORMAT JSON)` of the generic plan.
    pub generic_plan: Option<Value>,
    /// `EXPLAIN (ANALYZE, BUFFERS, VERBOSE, FORMAT JSON)`, run and rolled back.
    pub analyzed_plan: Option<Value>,
    /// Why it was not run with ANALYZE, when it was not.
    pub not_analyzed: Option<String>,
    pub error: Option<ServerError>,
}

impl StatementPlan {
    /// `apply_keys`, `derive from tb_category`, ...
    pub fn label(&self) -> String {
        match (&self.source, self.kind.as_str()) {
            (Some(s), "derive") => format!("derive from {}", display(s)),
            (Some(s), "forward") => format!("forward from {}", display(s)),
            (Some(s), "reverse") => format!("reverse to {}", display(s)),
            (Some(s), k) => format!("{k} ({})", display(s)),
            (None, k) => k.to_string(),
        }
    }

    /// The plan to read: the analysed one when there is one.
    pub fn plan(&self) -> Option<&Value> {
        self.analyzed_plan.as_ref().or(self.generic_plan.as_ref())
    }
}

/// `public.tb_x` → `tb_x`, as the extension displays names.
pub fn display(relation: &str) -> String {
    relation
        .strip_prefix("public.")
        .unwrap_or(relation)
        .to_string()
}

/// A scan node of a plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Scan {
    pub node_type: String,
    pub schema: Option<String>,
    pub relation: Option<String>,
    pub alias: Option<String>,
    /// For index and bitmap scans.
    pub index: Option<String>,
    pub actual_rows: Option<f64>,
    pub loops: Option<f64>,
    pub rows_removed_by_filter: Option<f64>,
}

impl Scan {
    pub fn is_seq(&self) -> bool {
        self.node_type == "Seq Scan"
    }

    /// `schema.relation`, when the plan says (VERBOSE plans do).
    pub fn qualified(&self) -> Option<String> {
        Some(format!(
            "{}.{}",
            self.schema.as_deref()?,
            self.relation.as_deref()?
        ))
    }

    /// `Seq Scan on tb_review r: 3 rows × 3 loops, 2997 removed by filter`.
    pub fn describe(&self) -> String {
        let mut s = self.node_type.clone();
        if let Some(i) = &self.index {
            s.push_str(&format!(" using {i}"));
        }
        if let Some(r) = &self.relation {
            s.push_str(&format!(
                " on {}",
                display(&self.qualified().unwrap_or(r.clone()))
            ));
            if let Some(a) = self.alias.as_deref().filter(|a| a != r) {
                s.push_str(&format!(" {a}"));
            }
        }
        let mut facts = Vec::new();
        if let Some(rows) = self.actual_rows {
            let loops = self.loops.unwrap_or(1.0);
            facts.push(if loops > 1.0 {
                format!("{} rows × {} loops", num(rows), num(loops))
            } else {
                format!("{} rows", num(rows))
            });
        }
        if let Some(removed) = self.rows_removed_by_filter.filter(|r| *r > 0.0) {
            facts.push(format!("{} removed by filter", num(removed)));
        }
        if !facts.is_empty() {
            s.push_str(": ");
            s.push_str(&facts.join(", "));
        }
        s
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v:.1}")
    }
}

/// The scans of an EXPLAIN JSON document, in plan order. A bitmap heap scan carries the
/// index of the bitmap index scans below it.
pub fn scans(explain: &Value) -> Vec<Scan> {
    let mut out = Vec::new();
    if let Some(plan) = root(explain).and_then(|r| r.get("Plan")) {
        walk(plan, &mut out);
    }
    out
}

fn root(explain: &Value) -> Option<&Value> {
    match explain {
        Value::Array(a) => a.first(),
        other => Some(other),
    }
}

fn text(node: &Value, key: &str) -> Option<String> {
    node.get(key).and_then(Value::as_str).map(str::to_string)
}

fn walk(node: &Value, out: &mut Vec<Scan>) {
    let kind = text(node, "Node Type").unwrap_or_default();
    let children: &[Value] = node
        .get("Plans")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let scan = |index: Option<String>| Scan {
        node_type: kind.clone(),
        schema: text(node, "Schema"),
        relation: text(node, "Relation Name"),
        alias: text(node, "Alias"),
        index,
        actual_rows: node.get("Actual Rows").and_then(Value::as_f64),
        loops: node.get("Actual Loops").and_then(Value::as_f64),
        rows_removed_by_filter: node.get("Rows Removed by Filter").and_then(Value::as_f64),
    };
    match kind.as_str() {
        "Seq Scan" | "Index Scan" | "Index Only Scan" | "Tid Scan" | "Tid Range Scan" => {
            out.push(scan(text(node, "Index Name")));
        }
        "Bitmap Heap Scan" => {
            let mut names = Vec::new();
            collect_bitmap_indexes(children, &mut names);
            out.push(scan((!names.is_empty()).then(|| names.join(", "))));
            return;
        }
        _ => {}
    }
    for child in children {
        walk(child, out);
    }
}

fn collect_bitmap_indexes(nodes: &[Value], names: &mut Vec<String>) {
    for n in nodes {
        if let Some(i) = text(n, "Index Name") {
            names.push(i);
        }
        if let Some(children) = n.get("Plans").and_then(Value::as_array) {
            collect_bitmap_indexes(children, names);
        }
    }
}

/// The totals of an EXPLAIN JSON document.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub total_cost: Option<f64>,
    pub execution_ms: Option<f64>,
    pub shared_hit_blocks: Option<i64>,
    pub shared_read_blocks: Option<i64>,
}

pub fn totals(explain: &Value) -> Totals {
    let Some(r) = root(explain) else {
        return Totals::default();
    };
    let plan = r.get("Plan");
    let int = |k: &str| plan.and_then(|p| p.get(k)).and_then(Value::as_i64);
    Totals {
        total_cost: plan
            .and_then(|p| p.get("Total Cost"))
            .and_then(Value::as_f64),
        execution_ms: r.get("Execution Time").and_then(Value::as_f64),
        shared_hit_blocks: int("Shared Hit Blocks"),
        shared_read_blocks: int("Shared Read Blocks"),
    }
}

/// What the catalog says about one lookup column.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LookupFacts {
    /// The relation and the column exist (a lookup in a view cannot be checked).
    pub found: bool,
    /// An array column: served by a GIN index.
    pub array: bool,
    /// Valid, non-partial indexes whose first column it is: (name, access method).
    pub indexes: Vec<(String, String)>,
    /// `pg_class.reltuples` (-1: never analysed).
    pub rows_estimate: f64,
}

impl LookupFacts {
    /// The indexes that serve the statements' `= ANY` (btree, hash) or `&&` (GIN).
    pub fn usable(&self) -> Vec<&str> {
        self.indexes
            .iter()
            .filter(|(_, am)| {
                if self.array {
                    am == "gin"
                } else {
                    am == "btree" || am == "hash"
                }
            })
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// `warning` (act on it) or `info`.
    pub severity: String,
    /// `schema.relation`.
    pub relation: String,
    pub column: Option<String>,
    /// The statements concerned, by label.
    pub statements: Vec<String>,
    pub message: String,
    /// What the plans show, e.g. the sequential scan and the rows it threw away.
    pub evidence: Vec<String>,
    /// The SQL that fixes it.
    pub fix: Option<String>,
}

/// Warnings from the statements' lookups, the catalog facts about each lookup (by its
/// `schema.relation.column` text) and the plans.
pub fn warnings(plans: &[StatementPlan], facts: &BTreeMap<String, LookupFacts>) -> Vec<Warning> {
    let mut missing: Vec<(Lookup, Warning)> = Vec::new();
    for p in plans {
        for text in &p.lookups {
            let (Some(lookup), Some(f)) = (Lookup::parse(text), facts.get(text)) else {
                continue;
            };
            if !f.found || !f.usable().is_empty() {
                continue;
            }
            if let Some((_, w)) = missing.iter_mut().find(|(l, _)| *l == lookup) {
                if !w.statements.contains(&p.label()) {
                    w.statements.push(p.label());
                }
                continue;
            }
            let kind = if f.array { "GIN index" } else { "index" };
            let other = if f.indexes.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = f.indexes.iter().map(|(n, _)| n.as_str()).collect();
                format!(" ({} cannot serve it)", names.join(", "))
            };
            let warning = Warning {
                severity: "warning".into(),
                relation: lookup.relation(),
                column: Some(lookup.column.clone()),
                statements: vec![p.label()],
                message: format!(
                    "no {kind} on {} ({}){other}: finding rows by {} reads the whole table{}",
                    display(&lookup.relation()),
                    lookup.column,
                    lookup.column,
                    rows_note(f.rows_estimate)
                ),
                evidence: Vec::new(),
                fix: Some(lookup.create_index(f.array)),
            };
            missing.push((lookup, warning));
        }
    }
    let mut infos: Vec<Warning> = Vec::new();
    for p in plans {
        let Some(plan) = p.plan() else { continue };
        let generic = if p.analyzed_plan.is_some() {
            ""
        } else {
            " (generic plan)"
        };
        for scan in scans(plan).into_iter().filter(Scan::is_seq) {
            let Some(relation) = scan.qualified() else {
                continue;
            };
            let looked_up: Vec<Lookup> = p
                .lookups
                .iter()
                .filter_map(|l| Lookup::parse(l))
                .filter(|l| l.relation() == relation)
                .collect();
            if looked_up.is_empty() {
                continue;
            }
            let evidence = format!("{}{generic}: {}", p.label(), scan.describe());
            if let Some((_, w)) = missing.iter_mut().find(|(l, _)| looked_up.contains(l)) {
                if !w.evidence.contains(&evidence) {
                    w.evidence.push(evidence);
                }
                continue;
            }
            let lookup = &looked_up[0];
            let f = facts.get(&lookup.to_string()).cloned().unwrap_or_default();
            if infos
                .iter()
                .any(|w| w.relation == relation && w.statements.contains(&p.label()))
            {
                continue;
            }
            infos.push(Warning {
                severity: "info".into(),
                relation: relation.clone(),
                column: Some(lookup.column.clone()),
                statements: vec![p.label()],
                message: format!(
                    "sequential scan of {} although {} serves {}: the planner's choice for a small table{}; \
                     if the table is large, run ANALYZE {}",
                    display(&relation),
                    f.usable().join(", "),
                    lookup.column,
                    rows_note(f.rows_estimate),
                    lookup.quoted_relation()
                ),
                evidence: vec![evidence],
                fix: None,
            });
        }
    }
    missing.into_iter().map(|(_, w)| w).chain(infos).collect()
}

fn rows_note(rows_estimate: f64) -> String {
    if rows_estimate >= 0.0 {
        format!(" (about {} rows)", rows_estimate as i64)
    } else {
        " (never analysed)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shape of EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) of tv_product's apply_keys
    /// with tb_review's index dropped, cut down.
    fn analyzed() -> Value {
        json!([{
            "Plan": {
                "Node Type": "Aggregate", "Total Cost": 1489.93,
                "Shared Hit Blocks": 171, "Shared Read Blocks": 0,
                "Plans": [
                    {"Node Type": "Hash Join", "Plans": [
                        {"Node Type": "Seq Scan", "Schema": "public", "Relation Name": "tb_category",
                         "Alias": "c", "Actual Rows": 20.0, "Actual Loops": 1.0},
                        {"Node Type": "Bitmap Heap Scan", "Schema": "public", "Relation Name": "tb_product",
                         "Alias": "p", "Actual Rows": 3.0, "Actual Loops": 1.0, "Plans": [
                            {"Node Type": "Bitmap Index Scan", "Index Name": "tb_product_pkey"}]}
                    ]},
                    {"Node Type": "Aggregate", "Subplan Name": "SubPlan 1", "Plans": [
                        {"Node Type": "Seq Scan", "Schema": "public", "Relation Name": "tb_review",
                         "Alias": "r", "Actual Rows": 3.0, "Actual Loops": 3.0,
                         "Rows Removed by Filter": 2997.0}
                    ]}
                ]
            },
            "Execution Time": 4.982
        }])
    }

    fn apply_keys() -> StatementPlan {
        StatementPlan {
            kind: "apply_keys".into(),
            source: None,
            path: None,
            lookups: vec![
                "public.tb_product.pk_product".into(),
                "public.tb_category.pk_category".into(),
                "public.tb_review.fk_product".into(),
            ],
            parameters: vec!["1".into(), "2".into(), "3".into()],
            generic_plan: None,
            analyzed_plan: Some(analyzed()),
            not_analyzed: None,
            error: None,
        }
    }

    fn facts(review_indexed: bool) -> BTreeMap<String, LookupFacts> {
        let f = |name: &str, rows: f64| LookupFacts {
            found: true,
            array: false,
            indexes: vec![(name.to_string(), "btree".to_string())],
            rows_estimate: rows,
        };
        let mut m = BTreeMap::from([
            (
                "public.tb_product.pk_product".to_string(),
                f("tb_product_pkey", 1000.0),
            ),
            (
                "public.tb_category.pk_category".to_string(),
                f("tb_category_pkey", 20.0),
            ),
            (
                "public.tb_review.fk_product".to_string(),
                f("tb_review_fk_product_idx", 3000.0),
            ),
        ]);
        if !review_indexed && let Some(r) = m.get_mut("public.tb_review.fk_product") {
            r.indexes.clear();
        }
        m
    }

    #[test]
    fn scans_in_plan_order() {
        let s: Vec<String> = scans(&analyzed()).iter().map(Scan::describe).collect();
        assert_eq!(
            s,
            [
                "Seq Scan on tb_category c: 20 rows",
                "Bitmap Heap Scan using tb_product_pkey on tb_product p: 3 rows",
                "Seq Scan on tb_review r: 3 rows × 3 loops, 2997 removed by filter",
            ]
        );
        let t = totals(&analyzed());
        assert_eq!(t.execution_ms, Some(4.982));
        assert_eq!(t.shared_hit_blocks, Some(171));
    }

    #[test]
    fn a_missing_index_is_a_warning_with_its_fix() {
        let w = warnings(&[apply_keys()], &facts(false));
        assert_eq!(w.len(), 2, "{w:#?}");
        assert_eq!(w[0].severity, "warning");
        assert_eq!(
            w[0].fix.as_deref(),
            Some("CREATE INDEX ON public.tb_review (fk_product);")
        );
        assert_eq!(
            w[0].evidence,
            ["apply_keys: Seq Scan on tb_review r: 3 rows × 3 loops, 2997 removed by filter"]
        );
        insta::assert_json_snapshot!(w);
    }

    #[test]
    fn with_every_index_only_the_planners_choices_remain() {
        // The same plan, as if the planner had preferred scans to the indexes.
        let w = warnings(&[apply_keys()], &facts(true));
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(w.iter().all(|w| w.severity == "info" && w.fix.is_none()));
        assert_eq!(w[0].relation, "public.tb_category");
        assert_eq!(w[1].relation, "public.tb_review");
    }

    #[test]
    fn arrays_need_gin() {
        let f = LookupFacts {
            found: true,
            array: true,
            indexes: vec![("t_tags_idx".into(), "btree".into())],
            rows_estimate: -1.0,
        };
        assert!(f.usable().is_empty());
        let p = StatementPlan {
            kind: "derive".into(),
            source: Some("public.tb_tag".into()),
            lookups: vec!["public.tb_post.tag_ids".into()],
            analyzed_plan: None,
            ..apply_keys()
        };
        let w = warnings(
            &[p],
            &BTreeMap::from([("public.tb_post.tag_ids".to_string(), f)]),
        );
        assert_eq!(
            w[0].fix.as_deref(),
            Some("CREATE INDEX ON public.tb_post USING gin (tag_ids);")
        );
        assert_eq!(w[0].statements, ["derive from tb_tag"]);
    }
}
