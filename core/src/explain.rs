//! The explain model: one value describing how a TVIEW is maintained,
//! rendered as a text tree (in the spirit of `cargo tree`), JSON, or
//! Graphviz dot (STYLE.md §3). `tviews explain` and `pg_tviews_explain()`
//! print it; everything in it comes from the analysis and the plans.

use std::fmt::Write as _;

use serde::Serialize;

use crate::analyze::{Analysis, KeyPath, Mapping};
use crate::plan::RefreshPlan;

/// What `explain` shows about one TVIEW.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explain {
    pub tview: String,
    pub key: String,
    pub key_type: String,
    /// Longest chain of TVIEWs below this one (0: reads base tables only).
    pub depth: usize,
    /// TVIEWs this one reads (upstream), recursively, each once.
    pub reads: Vec<Upstream>,
    /// TVIEWs that read this one (downstream), directly.
    pub read_by: Vec<String>,
    pub sources: Vec<SourceExplain>,
    pub statements: Statements,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upstream {
    pub tview: String,
    /// The TVIEWs it reads in turn (names only; each shown once).
    pub reads: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceExplain {
    pub relation: String,
    /// Whether the relation is itself a TVIEW (a cascade).
    pub tview: bool,
    pub columns_read: Vec<String>,
    /// How a changed row reaches keys, e.g.
    /// `tb_user.pk_user → tb_post.fk_user → tv_post.pk_post`.
    pub paths: Vec<String>,
    /// Why any change rebuilds the whole TVIEW, when it does.
    pub full_rebuild: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statements {
    pub apply_keys: String,
    pub apply_all: String,
    /// (source, path, statement) per join path.
    pub derive: Vec<(String, String, String)>,
}

/// Renders a key path: `source.col → hop.col → ... → tview.key`.
pub fn path_text(source: &str, p: &KeyPath, tview: &str, key: &str) -> String {
    let elems = |col: &str, unnest: bool| {
        if unnest {
            format!("{col}[]")
        } else {
            col.to_string()
        }
    };
    let mut parts = vec![format!("{source}.{}", elems(&p.column, p.unnest))];
    for h in &p.hops {
        let rel = if h.schema == "public" {
            h.name.clone()
        } else {
            format!("{}.{}", h.schema, h.name)
        };
        let join = if h.overlap {
            format!("{}[]", h.join_column)
        } else {
            h.join_column.clone()
        };
        parts.push(format!("{rel}.{join}"));
        if h.next_column != h.join_column {
            parts.push(format!("{rel}.{}", elems(&h.next_column, h.next_unnest)));
        }
    }
    parts.push(format!("{tview}.{key}"));
    parts.join(" → ")
}

/// Builds the model. `is_tview` tells which relations are TVIEWs;
/// `upstream`/`read_by` come from the dependency graph.
pub fn explain(
    tview: &str,
    analysis: &Analysis,
    plan: &RefreshPlan,
    depth: usize,
    reads: Vec<Upstream>,
    read_by: Vec<String>,
    is_tview: &dyn Fn(u32) -> bool,
) -> Explain {
    let mut sources = Vec::new();
    for s in &analysis.sources {
        let name = if s.schema == "public" {
            s.name.clone()
        } else {
            format!("{}.{}", s.schema, s.name)
        };
        let (paths, full_rebuild) = match &s.mapping {
            Mapping::Keyed { paths } => (
                paths
                    .iter()
                    .map(|p| path_text(&name, p, tview, &analysis.key.name))
                    .collect(),
                None,
            ),
            Mapping::Full { reason } => (Vec::new(), Some(reason.clone())),
        };
        sources.push(SourceExplain {
            relation: name,
            tview: is_tview(s.relation),
            columns_read: s.columns_read.clone(),
            paths,
            full_rebuild,
        });
    }
    let derive = plan
        .paths
        .iter()
        .zip(&plan.derive)
        .map(|(pp, sql)| {
            let src = sources
                .iter()
                .zip(&analysis.sources)
                .find(|(_, a)| a.relation == pp.source)
                .map(|(s, _)| s.relation.clone())
                .unwrap_or_default();
            let path = path_text(&src, &pp.path, tview, &analysis.key.name);
            (src, path, sql.clone())
        })
        .collect();
    Explain {
        tview: tview.to_string(),
        key: analysis.key.name.clone(),
        key_type: analysis.key.type_name.clone(),
        depth,
        reads,
        read_by,
        sources,
        statements: Statements {
            apply_keys: plan.apply_keys.clone(),
            apply_all: plan.apply_all.clone(),
            derive,
        },
    }
}

impl Explain {
    /// The text tree. `verbose` adds the statements.
    pub fn to_text(&self, verbose: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} (key {} {}, cascade depth {})",
            self.tview, self.key, self.key_type, self.depth
        );
        let mut sections: Vec<(String, Vec<String>)> = Vec::new();
        let mut src_lines = Vec::new();
        for s in &self.sources {
            let kind = if s.tview { " [TVIEW]" } else { "" };
            src_lines.push(format!(
                "{}{kind}  reads ({})",
                s.relation,
                s.columns_read.join(", ")
            ));
            for p in &s.paths {
                src_lines.push(format!("  {p}"));
            }
            if let Some(r) = &s.full_rebuild {
                src_lines.push(format!("  any change rebuilds the whole TVIEW: {r}"));
            }
        }
        sections.push(("sources".into(), src_lines));
        if !self.reads.is_empty() {
            let mut seen = std::collections::BTreeSet::new();
            let mut lines = Vec::new();
            for u in &self.reads {
                let repeat = !seen.insert(u.tview.clone());
                lines.push(format!("{}{}", u.tview, if repeat { " (*)" } else { "" }));
                for r in &u.reads {
                    let repeat = !seen.insert(r.clone());
                    lines.push(format!("  reads {r}{}", if repeat { " (*)" } else { "" }));
                }
            }
            sections.push(("reads TVIEWs".into(), lines));
        }
        if !self.read_by.is_empty() {
            sections.push(("read by".into(), self.read_by.clone()));
        }
        if verbose {
            let mut lines = vec![format!("apply: {}", self.statements.apply_keys)];
            for (src, path, sql) in &self.statements.derive {
                lines.push(format!("derive from {src} ({path}): {sql}"));
            }
            sections.push(("statements".into(), lines));
        }
        let n = sections.len();
        for (i, (title, lines)) in sections.into_iter().enumerate() {
            let last = i + 1 == n;
            let _ = writeln!(out, "{} {title}", if last { "└──" } else { "├──" });
            let stem = if last { "    " } else { "│   " };
            // Entries are lines not starting with two spaces; their details follow indented.
            let entries: Vec<usize> = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| !l.starts_with("  "))
                .map(|(i, _)| i)
                .collect();
            for (k, &start) in entries.iter().enumerate() {
                let end = entries.get(k + 1).copied().unwrap_or(lines.len());
                let last_entry = k + 1 == entries.len();
                let _ = writeln!(
                    out,
                    "{stem}{} {}",
                    if last_entry { "└──" } else { "├──" },
                    lines[start]
                );
                let inner = if last_entry { "    " } else { "│   " };
                for l in &lines[start + 1..end] {
                    let _ = writeln!(out, "{stem}{inner}{}", l.trim_start());
                }
            }
        }
        out
    }

    /// Graphviz dot: sources → TVIEW, labelled with their key paths.
    pub fn to_dot(&self) -> String {
        let q = |s: &str| {
            format!(
                "\"{}\"",
                s.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        };
        let mut out = String::from("digraph tviews {\n  rankdir=LR;\n  node [shape=box];\n");
        let _ = writeln!(out, "  {} [style=bold];", q(&self.tview));
        for s in &self.sources {
            let shape = if s.tview { "box" } else { "cylinder" };
            let _ = writeln!(out, "  {} [shape={shape}];", q(&s.relation));
            let label = if let Some(r) = &s.full_rebuild {
                format!("full rebuild: {r}")
            } else {
                s.paths.join("\n")
            };
            let _ = writeln!(
                out,
                "  {} -> {} [label={}];",
                q(&s.relation),
                q(&self.tview),
                q(&label)
            );
        }
        for d in &self.read_by {
            let _ = writeln!(out, "  {} -> {};", q(&self.tview), q(d));
        }
        out.push_str("}\n");
        out
    }
}
