//! `tviews graph`: the dependency graph of every TVIEW (sources → TVIEWs, TVIEWs →
//! the TVIEWs that read them), or with `--invert SOURCE` everything a change to
//! SOURCE reaches, in refresh order. The [`Dag`] is shared with `explain`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::Bfs;
use serde::Serialize;
use tokio_postgres::Client;

use super::probe::Api;
use crate::conn::ConnTarget;
use crate::failure::Failure;
use crate::output::{Format, Style, to_json};
use crate::tree::{self, Node};

#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct GraphArgs {
    /// Only what a change to SOURCE (a table or a TVIEW) reaches, in refresh order
    #[arg(long, value_name = "SOURCE")]
    pub invert: Option<String>,

    #[command(flatten)]
    pub target: ConnTarget,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A table (or anything else) that TVIEWs read.
    Table,
    Tview,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GraphNode {
    pub name: String,
    pub kind: NodeKind,
    /// For a TVIEW: the longest chain of TVIEWs below it (0: reads tables only).
    pub depth: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Edge {
    pub source: String,
    pub tview: String,
    /// Any change of the source rebuilds the whole TVIEW (no key path).
    pub full_rebuild: bool,
}

/// The TVIEW dependency graph: an edge from each source to each TVIEW reading it.
#[derive(Clone, Debug, Default)]
pub struct Dag {
    graph: DiGraph<GraphNode, bool>,
    index: HashMap<String, NodeIndex>,
}

impl Dag {
    /// Builds the graph from the TVIEWs (name, depth) and the edges; a source that is
    /// not in `tviews` is a table.
    pub fn new(tviews: &[(String, i32)], edges: &[Edge]) -> Dag {
        let mut dag = Dag::default();
        for (name, depth) in tviews {
            dag.add(name, NodeKind::Tview, Some(*depth));
        }
        for e in edges {
            let s = dag.add(&e.source, NodeKind::Table, None);
            let t = dag.add(&e.tview, NodeKind::Tview, None);
            dag.graph.update_edge(s, t, e.full_rebuild);
        }
        dag
    }

    fn add(&mut self, name: &str, kind: NodeKind, depth: Option<i32>) -> NodeIndex {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.graph.add_node(GraphNode {
            name: name.to_string(),
            kind,
            depth: depth.or((kind == NodeKind::Tview).then_some(0)),
        });
        self.index.insert(name.to_string(), i);
        i
    }

    pub fn node(&self, name: &str) -> Option<&GraphNode> {
        self.index.get(name).map(|&i| &self.graph[i])
    }

    /// Every node, tables first, then TVIEWs in refresh order.
    pub fn nodes(&self) -> Vec<GraphNode> {
        let mut v: Vec<GraphNode> = self.graph.node_weights().cloned().collect();
        v.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
        v
    }

    /// Every edge, by source then TVIEW.
    pub fn edges(&self) -> Vec<Edge> {
        let mut v: Vec<Edge> = self
            .graph
            .edge_indices()
            .filter_map(|e| {
                let (s, t) = self.graph.edge_endpoints(e)?;
                Some(Edge {
                    source: self.graph[s].name.clone(),
                    tview: self.graph[t].name.clone(),
                    full_rebuild: self.graph[e],
                })
            })
            .collect();
        v.sort_by(|a, b| (&a.source, &a.tview).cmp(&(&b.source, &b.tview)));
        v
    }

    fn sorted(&self, of: NodeIndex, dir: Direction) -> Vec<NodeIndex> {
        let mut v: Vec<NodeIndex> = self.graph.neighbors_directed(of, dir).collect();
        v.sort_by(|a, b| order_key(&self.graph[*a]).cmp(&order_key(&self.graph[*b])));
        v.dedup();
        v
    }

    /// The TVIEWs a change to `source` reaches (not `source` itself), in refresh order:
    /// depth, then name.
    pub fn reach(&self, source: &str) -> Vec<GraphNode> {
        let Some(&start) = self.index.get(source) else {
            return Vec::new();
        };
        let mut bfs = Bfs::new(&self.graph, start);
        let mut out = Vec::new();
        while let Some(i) = bfs.next(&self.graph) {
            if i != start {
                out.push(self.graph[i].clone());
            }
        }
        out.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
        out
    }

    /// The TVIEWs that read `name`, and those that read them, as trees; a TVIEW already
    /// shown with its readers is shown again as `repeated`, without them.
    pub fn downstream(&self, name: &str) -> Vec<Related> {
        let Some(&i) = self.index.get(name) else {
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        self.sorted(i, Direction::Outgoing)
            .into_iter()
            .map(|c| self.tree(c, Some(i), Direction::Outgoing, &mut seen, &|_| true))
            .collect()
    }

    /// The TVIEWs `name` reads, and those they read, as trees (tables left out).
    pub fn upstream(&self, name: &str) -> Vec<Related> {
        let Some(&i) = self.index.get(name) else {
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        let is_tview = |n: &GraphNode| n.kind == NodeKind::Tview;
        self.sorted(i, Direction::Incoming)
            .into_iter()
            .filter(|c| is_tview(&self.graph[*c]))
            .map(|c| self.tree(c, Some(i), Direction::Incoming, &mut seen, &is_tview))
            .collect()
    }

    /// The whole graph as a forest: each table, the TVIEWs reading it, and so on.
    pub fn forest(&self) -> Vec<Related> {
        let mut seen = BTreeSet::new();
        let mut roots: Vec<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|&i| {
                self.graph[i].kind == NodeKind::Table
                    || self
                        .graph
                        .neighbors_directed(i, Direction::Incoming)
                        .next()
                        .is_none()
            })
            .collect();
        roots.sort_by(|a, b| order_key(&self.graph[*a]).cmp(&order_key(&self.graph[*b])));
        roots
            .into_iter()
            .map(|r| self.tree(r, None, Direction::Outgoing, &mut seen, &|_| true))
            .collect()
    }

    fn tree(
        &self,
        i: NodeIndex,
        parent: Option<NodeIndex>,
        dir: Direction,
        seen: &mut BTreeSet<NodeIndex>,
        keep: &dyn Fn(&GraphNode) -> bool,
    ) -> Related {
        let n = &self.graph[i];
        let edge = parent.and_then(|p| match dir {
            Direction::Outgoing => self.graph.find_edge(p, i),
            Direction::Incoming => self.graph.find_edge(i, p),
        });
        let mut out = Related {
            name: n.name.clone(),
            depth: n.depth,
            full_rebuild: edge.is_some_and(|e| self.graph[e]),
            repeated: false,
            children: Vec::new(),
        };
        let next: Vec<NodeIndex> = self
            .sorted(i, dir)
            .into_iter()
            .filter(|c| keep(&self.graph[*c]))
            .collect();
        if next.is_empty() {
            return out;
        }
        if !seen.insert(i) {
            out.repeated = true;
            return out;
        }
        out.children = next
            .into_iter()
            .map(|c| self.tree(c, Some(i), dir, seen, keep))
            .collect();
        out
    }
}

/// A relation in a tree of the graph, with what it reaches (or is reached from).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Related {
    pub name: String,
    /// For a TVIEW: its cascade depth.
    pub depth: Option<i32>,
    /// The edge to its parent in the tree rebuilds the whole TVIEW on any change.
    pub full_rebuild: bool,
    /// Already shown with its subtree elsewhere in the tree: `(*)`, no children.
    pub repeated: bool,
    pub children: Vec<Related>,
}

impl Related {
    /// The text-tree node: `name [full rebuild] (*)`.
    pub fn to_node(&self) -> Node {
        let mut label = self.name.clone();
        if self.full_rebuild {
            label.push_str(" [full rebuild]");
        }
        if self.repeated {
            label.push_str(" (*)");
        }
        Node::with(label, self.children.iter().map(Related::to_node).collect())
    }
}

/// Tables before TVIEWs, TVIEWs by depth, then by name.
fn order_key(n: &GraphNode) -> (NodeKind, i32, &str) {
    (n.kind, n.depth.unwrap_or(-1), n.name.as_str())
}

/// Reads the graph from `pg_tviews_sources()` and the catalog.
pub async fn load(client: &Client, api: &Api) -> Result<Dag, tokio_postgres::Error> {
    let sources = api.object("pg_tviews_sources");
    let rows = client
        .query(
            &format!(
                "WITH s AS MATERIALIZED (SELECT tview, source, full_rebuild, depth FROM {sources}()) \
                 SELECT tviews.display_name(t.relid::oid), \
                        coalesce((SELECT max(s.depth) FROM s WHERE s.tview = t.relid::oid), 0)::int4 \
                 FROM tviews.tview t ORDER BY 1"
            ),
            &[],
        )
        .await?;
    let tviews = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<Vec<(String, i32)>, tokio_postgres::Error>>()?;
    let rows = client
        .query(
            &format!(
                "SELECT tviews.display_name(s.source), tviews.display_name(s.tview), s.full_rebuild \
                 FROM {sources}() s ORDER BY 1, 2"
            ),
            &[],
        )
        .await?;
    let edges = rows
        .iter()
        .map(|r| {
            Ok(Edge {
                source: r.try_get(0)?,
                tview: r.try_get(1)?,
                full_rebuild: r.try_get(2)?,
            })
        })
        .collect::<Result<Vec<Edge>, tokio_postgres::Error>>()?;
    Ok(Dag::new(&tviews, &edges))
}

/// How a user may name a relation: `tv_post`, `public.tv_post`, or quoted. Our names
/// leave `public.` out, as `tviews.display_name` does.
pub fn display_form(name: &str) -> String {
    let unquoted: String = name.replace('"', "");
    unquoted
        .strip_prefix("public.")
        .map(str::to_string)
        .unwrap_or(unquoted)
}

#[derive(Clone, Debug, Serialize)]
pub struct GraphReport {
    /// `--invert`: the source whose reach this is; `None` for the whole graph.
    pub source: Option<String>,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<Edge>,
    /// The TVIEWs, in the order a change refreshes them (depth, then name).
    pub refresh_order: Vec<String>,
    #[serde(skip)]
    pub forest: Vec<Node>,
}

pub async fn gather(client: &Client, args: &GraphArgs) -> Result<GraphReport, Failure> {
    let api = Api::require(client).await?;
    let dag = load(client, &api).await?;
    Ok(report(&dag, args.invert.as_deref())?)
}

/// The report for the whole graph, or for what `invert` reaches.
pub fn report(dag: &Dag, invert: Option<&str>) -> anyhow::Result<GraphReport> {
    let Some(source) = invert else {
        let nodes = dag.nodes();
        let refresh_order = nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Tview)
            .map(|n| n.name.clone())
            .collect();
        return Ok(GraphReport {
            source: None,
            forest: dag.forest().iter().map(Related::to_node).collect(),
            edges: dag.edges(),
            nodes,
            refresh_order,
        });
    };
    let name = display_form(source);
    let Some(start) = dag.node(&name).cloned() else {
        anyhow::bail!("\"{source}\" is not read by any TVIEW (tviews graph lists the sources)");
    };
    let reach = dag.reach(&name);
    let mut members: BTreeSet<String> = reach.iter().map(|n| n.name.clone()).collect();
    members.insert(name.clone());
    let edges = dag
        .edges()
        .into_iter()
        .filter(|e| members.contains(&e.source) && members.contains(&e.tview))
        .collect();
    let mut nodes = vec![start];
    nodes.extend(reach.iter().cloned());
    Ok(GraphReport {
        source: Some(name.clone()),
        forest: vec![Node::with(
            name.clone(),
            dag.downstream(&name).iter().map(Related::to_node).collect(),
        )],
        edges,
        nodes,
        refresh_order: reach.into_iter().map(|n| n.name).collect(),
    })
}

pub fn render(r: &GraphReport, style: Style) -> anyhow::Result<String> {
    match style.format {
        Format::Json => to_json(r),
        Format::Dot => Ok(dot(&r.nodes, &r.edges, &BTreeMap::new())),
        Format::Table => Ok(text(r)),
    }
}

fn text(r: &GraphReport) -> String {
    if r.nodes.is_empty() {
        return "no TVIEWs in this database\n".to_string();
    }
    let mut out = tree::render_forest(&r.forest);
    if r.source.is_some() {
        if r.refresh_order.is_empty() {
            out.push_str("\nreaches no TVIEW\n");
        } else {
            out.push_str("\nrefresh order:\n");
            for (i, n) in r.nodes.iter().skip(1).enumerate() {
                let _ = writeln!(
                    out,
                    "  {}. {} (depth {})",
                    i + 1,
                    n.name,
                    n.depth.unwrap_or(0)
                );
            }
        }
    }
    out
}

/// A dot identifier: always quoted, with `"`, `\` and newlines escaped.
pub fn dot_id(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

/// Graphviz dot of nodes and edges: tables as cylinders, TVIEWs as boxes, full-rebuild
/// edges dashed. `edge_labels` (source, tview) → label, e.g. the key paths.
pub fn dot(
    nodes: &[GraphNode],
    edges: &[Edge],
    edge_labels: &BTreeMap<(String, String), String>,
) -> String {
    let mut out =
        String::from("digraph tviews {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for n in nodes {
        let shape = match n.kind {
            NodeKind::Table => "shape=cylinder".to_string(),
            NodeKind::Tview => format!(
                "shape=box, style=bold, tooltip={}",
                dot_id(&format!("depth {}", n.depth.unwrap_or(0)))
            ),
        };
        let _ = writeln!(out, "  {} [{shape}];", dot_id(&n.name));
    }
    for e in edges {
        let mut attrs = Vec::new();
        if let Some(l) = edge_labels.get(&(e.source.clone(), e.tview.clone())) {
            attrs.push(format!("label={}", dot_id(l)));
        }
        if e.full_rebuild {
            attrs.push("style=dashed".into());
            if !edge_labels.contains_key(&(e.source.clone(), e.tview.clone())) {
                attrs.push("label=\"full rebuild\"".into());
            }
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" [{}]", attrs.join(", "))
        };
        let _ = writeln!(
            out,
            "  {} -> {}{attrs};",
            dot_id(&e.source),
            dot_id(&e.tview)
        );
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The demo read model: tv_review and tv_product over tables, tv_category over
    /// tb_category and tv_product; plus a settings table read with a full rebuild.
    pub(crate) fn demo() -> Dag {
        let e = |s: &str, t: &str| Edge {
            source: s.into(),
            tview: t.into(),
            full_rebuild: false,
        };
        Dag::new(
            &[
                ("tv_category".into(), 1),
                ("tv_product".into(), 0),
                ("tv_review".into(), 0),
            ],
            &[
                e("tb_product", "tv_review"),
                e("tb_review", "tv_review"),
                e("tb_category", "tv_product"),
                e("tb_product", "tv_product"),
                e("tb_review", "tv_product"),
                e("tb_inventory", "tv_product"),
                e("tb_category", "tv_category"),
                e("tv_product", "tv_category"),
                Edge {
                    full_rebuild: true,
                    ..e("tb_setting", "tv_review")
                },
            ],
        )
    }

    fn style(format: Format) -> Style {
        Style::plain(format)
    }

    #[test]
    fn whole_graph_as_text_json_and_dot() {
        let r = report(&demo(), None).unwrap();
        assert_eq!(r.refresh_order, ["tv_product", "tv_review", "tv_category"]);
        insta::assert_snapshot!("graph_text", render(&r, style(Format::Table)).unwrap());
        insta::assert_snapshot!("graph_json", render(&r, style(Format::Json)).unwrap());
        insta::assert_snapshot!("graph_dot", render(&r, style(Format::Dot)).unwrap());
    }

    #[test]
    fn inverted_from_a_source() {
        let r = report(&demo(), Some("public.tb_review")).unwrap();
        assert_eq!(r.source.as_deref(), Some("tb_review"));
        assert_eq!(r.refresh_order, ["tv_product", "tv_review", "tv_category"]);
        insta::assert_snapshot!(render(&r, style(Format::Table)).unwrap(), @r"
        tb_review
        ├── tv_product
        │   └── tv_category
        └── tv_review

        refresh order:
          1. tv_product (depth 0)
          2. tv_review (depth 0)
          3. tv_category (depth 1)
        ");
        let r = report(&demo(), Some("tb_inventory")).unwrap();
        assert_eq!(r.refresh_order, ["tv_product", "tv_category"]);
        assert_eq!(r.edges.len(), 2);
        assert!(report(&demo(), Some("tb_nothing")).is_err());
    }

    #[test]
    fn upstream_and_downstream_trees() {
        let dag = demo();
        let nodes = |v: Vec<Related>| v.iter().map(Related::to_node).collect::<Vec<_>>();
        let up = tree::render_forest(&[Node::with(
            "tv_category",
            nodes(dag.upstream("tv_category")),
        )]);
        assert_eq!(up, "tv_category\n└── tv_product\n");
        let down = tree::render_forest(&[Node::with(
            "tb_category",
            nodes(dag.downstream("tb_category")),
        )]);
        assert_eq!(
            down,
            "tb_category\n├── tv_product\n│   └── tv_category\n└── tv_category\n"
        );
    }

    #[test]
    fn names_as_users_write_them() {
        assert_eq!(display_form("public.tv_post"), "tv_post");
        assert_eq!(display_form("\"app\".\"tv_post\""), "app.tv_post");
        assert_eq!(display_form("tv_post"), "tv_post");
    }
}
