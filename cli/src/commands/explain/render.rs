//! The renderers of [`ExplainReport`]: a text tree in the spirit of `cargo tree`, JSON
//! (the report itself), and Graphviz dot. Pure.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::ExplainReport;
use super::analyze::Analysis;
use super::plan::{self, display};
use crate::commands::graph::{Related, dot_id};
use crate::output::{Format, Style, human_ms, to_json};
use crate::tree::{Node, render_forest};

pub fn render(r: &ExplainReport, style: Style) -> anyhow::Result<String> {
    match style.format {
        Format::Json => to_json(r),
        Format::Dot => Ok(dot(r)),
        Format::Table => Ok(text(r)),
    }
}

pub fn text(r: &ExplainReport) -> String {
    let mut root = Node::new(format!(
        "{} (key {} {}, cascade depth {})",
        r.tview, r.key, r.key_type, r.depth
    ));
    let sources = r
        .sources
        .iter()
        .map(|s| {
            let kind = if s.tview { " [TVIEW]" } else { "" };
            let mut n = Node::new(format!(
                "{}{kind}  reads {}",
                s.relation,
                s.columns_read.join(", ")
            ));
            for p in &s.paths {
                n.children.push(Node::new(p.clone()));
            }
            if let Some(why) = &s.full_rebuild {
                n.children.push(Node::new(format!(
                    "any change rebuilds the whole TVIEW: {why}"
                )));
            }
            n
        })
        .collect();
    root.children.push(Node::with("sources", sources));
    if !r.reads.is_empty() {
        root.children.push(Node::with(
            "reads TVIEWs",
            r.reads.iter().map(related).collect(),
        ));
    }
    root.children.push(if r.read_by.is_empty() {
        Node::new("read by no TVIEW")
    } else {
        Node::with(
            "read by (the cascade)",
            r.read_by.iter().map(related).collect(),
        )
    });
    let statements = r
        .statements
        .iter()
        .map(|s| {
            let param = s
                .parameter
                .as_deref()
                .map(|p| format!(", $1 = {p}"))
                .unwrap_or_default();
            let mut label = format!("{}: {}{param}", s.kind, s.purpose());
            if let Some(p) = &s.path {
                let _ = write!(label, "\npath: {p}");
            }
            if !s.lookups.is_empty() {
                let lookups: Vec<String> = s.lookups.iter().map(|l| display(l)).collect();
                let _ = write!(label, "\nindex lookups: {}", lookups.join(", "));
            }
            let _ = write!(label, "\n{}", s.sql);
            Node::new(label)
        })
        .collect();
    root.children.push(Node::with("statements", statements));
    if let Some(a) = &r.analysis {
        root.children.push(plans(a));
        root.children.push(warnings(a));
    }
    render_forest(&[root])
}

/// `tv_category (depth 1)`, `(*)` for a subtree shown before.
fn related(r: &Related) -> Node {
    let mut label = r.name.clone();
    if let Some(d) = r.depth {
        let _ = write!(label, " (depth {d})");
    }
    if r.full_rebuild {
        label.push_str(" [full rebuild]");
    }
    if r.repeated {
        label.push_str(" (*)");
    }
    Node::with(label, r.children.iter().map(related).collect())
}

fn plans(a: &Analysis) -> Node {
    let head = if a.sample_keys.is_empty() {
        "plans (generic; the TVIEW is empty, so nothing was run)".to_string()
    } else {
        format!(
            "plans (generic; run with EXPLAIN ANALYZE on keys {} in a transaction rolled back)",
            a.sample_keys.join(", ")
        )
    };
    let children = a
        .statements
        .iter()
        .map(|p| {
            let mut label = p.label();
            if let Some(e) = &p.error {
                let _ = write!(label, ": failed: {} (SQLSTATE {})", e.message, e.code);
                if p.generic_plan.is_none() {
                    return Node::new(label);
                }
            }
            let generic = p
                .generic_plan
                .as_ref()
                .map(plan::totals)
                .unwrap_or_default();
            if let Some(cost) = generic.total_cost {
                let _ = write!(label, ": cost {cost:.2}");
            }
            if let Some(analyzed) = &p.analyzed_plan {
                let t = plan::totals(analyzed);
                if let Some(ms) = t.execution_ms {
                    let _ = write!(label, ", {}", human_ms(ms));
                }
                if let (Some(hit), Some(read)) = (t.shared_hit_blocks, t.shared_read_blocks) {
                    let _ = write!(label, ", buffers {hit} hit {read} read");
                }
                if p.kind == "derive" || p.kind == "forward" {
                    let _ = write!(label, ", on values {}", p.parameters.join(", "));
                }
            } else if let Some(why) = &p.not_analyzed {
                let _ = write!(label, " (not run: {why})");
            }
            let scans = p
                .plan()
                .map(plan::scans)
                .unwrap_or_default()
                .iter()
                .map(|s| Node::new(s.describe()))
                .collect();
            Node::with(label, scans)
        })
        .collect();
    Node::with(head, children)
}

fn warnings(a: &Analysis) -> Node {
    if a.warnings.is_empty() {
        return Node::new("warnings: none, every lookup is served by an index");
    }
    let children = a
        .warnings
        .iter()
        .map(|w| {
            let mut n = Node::new(format!(
                "{}: {} [{}]",
                w.severity,
                w.message,
                w.statements.join(", ")
            ));
            for e in &w.evidence {
                n.children.push(Node::new(e.clone()));
            }
            if let Some(fix) = &w.fix {
                n.children.push(Node::new(format!("fix: {fix}")));
            }
            n
        })
        .collect();
    let n = a
        .warnings
        .iter()
        .filter(|w| w.severity == "warning")
        .count();
    Node::with(
        format!(
            "warnings: {n} to act on, {} for information",
            a.warnings.len() - n
        ),
        children,
    )
}

/// Dot: the sources with their key paths on the edges, the TVIEWs it reads and those
/// that read it; with `--analyze`, relations missing an index in red.
pub fn dot(r: &ExplainReport) -> String {
    let missing: BTreeSet<String> = r
        .analysis
        .iter()
        .flat_map(|a| &a.warnings)
        .filter(|w| w.severity == "warning")
        .map(|w| display(&w.relation))
        .collect();
    let mut out = String::from(
        "digraph tviews {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n",
    );
    let mut nodes = BTreeSet::new();
    let mut node = |out: &mut String, name: &str, tview: bool| {
        if !nodes.insert(name.to_string()) {
            return;
        }
        let mut attrs = vec![if tview { "shape=box" } else { "shape=cylinder" }.to_string()];
        if name == r.tview {
            attrs.push("style=bold".into());
            attrs.push(format!(
                "label={}",
                dot_id(&format!("{}\nkey {} {}", name, r.key, r.key_type))
            ));
        }
        if missing.contains(name) {
            attrs.push("color=red".into());
            attrs.push("fontcolor=red".into());
        }
        let _ = writeln!(out, "  {} [{}];", dot_id(name), attrs.join(", "));
    };
    node(&mut out, &r.tview, true);
    for s in &r.sources {
        node(&mut out, &s.relation, s.tview);
    }
    let mut edges = Vec::new();
    let mut pairs: BTreeSet<(String, String)> = BTreeSet::new();
    for s in &r.sources {
        pairs.insert((s.relation.clone(), r.tview.clone()));
        let label = match &s.full_rebuild {
            Some(why) => format!("full rebuild: {why}"),
            None => s.paths.join("\n"),
        };
        let style = if s.full_rebuild.is_some() {
            ", style=dashed"
        } else {
            ""
        };
        edges.push(format!(
            "  {} -> {} [label={}{style}];",
            dot_id(&s.relation),
            dot_id(&r.tview),
            dot_id(&label)
        ));
    }
    struct Walk<'a> {
        out: String,
        edges: Vec<String>,
        pairs: BTreeSet<(String, String)>,
        node: &'a mut dyn FnMut(&mut String, &str, bool),
    }
    fn walk(w: &mut Walk<'_>, parent: &str, list: &[Related], upstream: bool) {
        for rel in list {
            (w.node)(&mut w.out, &rel.name, true);
            let (from, to) = if upstream {
                (rel.name.as_str(), parent)
            } else {
                (parent, rel.name.as_str())
            };
            if w.pairs.insert((from.to_string(), to.to_string())) {
                w.edges
                    .push(format!("  {} -> {};", dot_id(from), dot_id(to)));
            }
            walk(w, &rel.name, &rel.children, upstream);
        }
    }
    let mut w = Walk {
        out,
        edges,
        pairs,
        node: &mut node,
    };
    walk(&mut w, &r.tview, &r.reads, true);
    walk(&mut w, &r.tview, &r.read_by, false);
    let Walk { mut out, edges, .. } = w;
    for e in edges {
        out.push_str(&e);
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Source, Statement};
    use super::*;
    use crate::commands::explain::plan::{LookupFacts, StatementPlan, Warning};

    /// tv_product of the demo read model, as the extension describes it.
    pub(crate) fn tv_product() -> ExplainReport {
        let source = |rel: &str, cols: &[&str], path: &str| Source {
            relation: rel.into(),
            tview: false,
            columns_read: cols.iter().map(|c| c.to_string()).collect(),
            paths: vec![path.into()],
            full_rebuild: None,
        };
        let statement =
            |kind: &str, source: Option<&str>, path: Option<&str>, lookups: &[&str], sql: &str| {
                Statement {
                    kind: kind.into(),
                    source: source.map(str::to_string),
                    path: path.map(str::to_string),
                    parameter: match kind {
                        "apply_all" => None,
                        "derive" | "forward" => Some("start values".into()),
                        _ => Some("keys".into()),
                    },
                    lookups: lookups.iter().map(|l| l.to_string()).collect(),
                    sql: sql.into(),
                }
            };
        let cat_path = "tb_category.pk_category → tb_product.fk_category → tb_product.pk_product → tv_product.pk_product";
        ExplainReport {
            tview: "tv_product".into(),
            key: "pk_product".into(),
            key_type: "bigint".into(),
            depth: 0,
            sources: vec![
                source("tb_category", &["pk_category", "name", "slug"], cat_path),
                source(
                    "tb_product",
                    &["pk_product", "fk_category", "name", "price"],
                    "tb_product.pk_product → tv_product.pk_product",
                ),
                source(
                    "tb_review",
                    &["fk_product", "rating"],
                    "tb_review.fk_product → tv_product.pk_product",
                ),
                source(
                    "tb_inventory",
                    &["fk_product", "quantity"],
                    "tb_inventory.fk_product → tv_product.pk_product",
                ),
            ],
            reads: vec![],
            read_by: vec![Related {
                name: "tv_category".into(),
                depth: Some(1),
                full_rebuild: false,
                repeated: false,
                children: vec![],
            }],
            statements: vec![
                statement(
                    "apply_keys",
                    None,
                    None,
                    &[
                        "public.tb_product.pk_product",
                        "public.tb_category.pk_category",
                        "public.tb_review.fk_product",
                    ],
                    "WITH src AS MATERIALIZED (SELECT ... WHERE v.\"pk_product\" = ANY (($1::pg_catalog.text[])::bigint[])) ...",
                ),
                statement(
                    "apply_all",
                    None,
                    None,
                    &[],
                    "WITH src AS MATERIALIZED (SELECT ... FROM \"tviews\".\"tv_product\" AS v) ...",
                ),
                statement(
                    "derive",
                    Some("public.tb_category"),
                    Some(cat_path),
                    &["public.tb_product.fk_category"],
                    "SELECT DISTINCT ((t1.\"pk_product\")::bigint)::pg_catalog.text FROM \"public\".\"tb_product\" AS t1 WHERE ...",
                ),
            ],
            analysis: None,
        }
    }

    fn style(format: Format) -> Style {
        Style::plain(format)
    }

    #[test]
    fn text_json_and_dot() {
        let r = tv_product();
        insta::assert_snapshot!("explain_text", render(&r, style(Format::Table)).unwrap());
        insta::assert_snapshot!("explain_json", render(&r, style(Format::Json)).unwrap());
        insta::assert_snapshot!("explain_dot", render(&r, style(Format::Dot)).unwrap());
    }

    #[test]
    fn analysis_in_text_and_dot() {
        let mut r = tv_product();
        let scan = serde_json::json!([{
            "Plan": {"Node Type": "Aggregate", "Total Cost": 1489.93,
                     "Shared Hit Blocks": 171, "Shared Read Blocks": 0,
                     "Plans": [{"Node Type": "Seq Scan", "Schema": "public", "Relation Name": "tb_review",
                                "Alias": "r", "Actual Rows": 3.0, "Actual Loops": 3.0,
                                "Rows Removed by Filter": 2997.0}]},
            "Execution Time": 4.982}]);
        let apply = StatementPlan {
            kind: "apply_keys".into(),
            source: None,
            path: None,
            lookups: r.statements[0].lookups.clone(),
            parameters: vec!["1".into(), "2".into(), "3".into()],
            generic_plan: Some(scan.clone()),
            analyzed_plan: Some(scan),
            not_analyzed: None,
            error: None,
        };
        let all = StatementPlan {
            kind: "apply_all".into(),
            lookups: vec![],
            parameters: vec![],
            analyzed_plan: None,
            not_analyzed: Some("it rewrites every row: its generic plan only".into()),
            ..apply.clone()
        };
        r.analysis = Some(Analysis {
            sample_keys: vec!["1".into(), "2".into(), "3".into()],
            direct_writes: true,
            statements: vec![apply, all],
            lookups: [(
                "public.tb_review.fk_product".to_string(),
                LookupFacts { found: true, array: false, indexes: vec![], rows_estimate: 3000.0 },
            )]
            .into_iter()
            .collect(),
            warnings: vec![Warning {
                severity: "warning".into(),
                relation: "public.tb_review".into(),
                column: Some("fk_product".into()),
                statements: vec!["apply_keys".into()],
                message: "no index on tb_review (fk_product): finding rows by fk_product reads the whole table (about 3000 rows)".into(),
                evidence: vec!["apply_keys: Seq Scan on tb_review r: 3 rows × 3 loops, 2997 removed by filter".into()],
                fix: Some("CREATE INDEX ON public.tb_review (fk_product);".into()),
            }],
        });
        let text = render(&r, style(Format::Table)).unwrap();
        let plans = &text[text.find("├── plans").unwrap_or(0)..];
        insta::assert_snapshot!("explain_analyze_text", plans);
        let dot = render(&r, style(Format::Dot)).unwrap();
        assert!(
            dot.contains("\"tb_review\" [shape=cylinder, color=red, fontcolor=red];"),
            "{dot}"
        );
    }
}
