//! The dependency graph as the console lays it out: layers from left to right in the direction
//! data flows — tables, then TVIEWs of cascade depth 0 (they read tables only), depth 1 (they
//! read a depth-0 TVIEW), and so on. Every edge goes from a layer to a later one, so the layers
//! alone show the order of a cascade; the edges of the selected node are shown by marking its
//! relatives rather than drawing lines, which stays readable with dozens of TVIEWs.
//!
//! Pure: built from a snapshot's `tviews` and `edges`, tested without a terminal.

use std::collections::{BTreeMap, BTreeSet};

use crate::snapshot::Snapshot;

/// How a node relates to the selected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Selected,
    /// The selection reads it directly.
    DirectInput,
    /// The selection reads it through other TVIEWs.
    Input,
    /// It reads the selection directly: the first step of its cascade.
    DirectReader,
    /// It is further down the selection's cascade.
    Reader,
    Unrelated,
}

impl Relation {
    pub fn is_related(self) -> bool {
        !matches!(self, Relation::Unrelated)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    /// `layers[0]`: tables (sources that are not TVIEWs); `layers[d + 1]`: TVIEWs of depth
    /// `d`. Names sorted within a layer.
    pub layers: Vec<Vec<String>>,
    /// For each TVIEW, what it reads, and whether any change of it rebuilds the whole TVIEW.
    inputs: BTreeMap<String, Vec<(String, bool)>>,
    /// For each node, the TVIEWs that read it.
    readers: BTreeMap<String, Vec<String>>,
}

impl Graph {
    pub fn of(snapshot: &Snapshot) -> Graph {
        let tviews: BTreeSet<&str> = snapshot.tviews.iter().map(|t| t.name.as_str()).collect();
        let mut inputs: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
        let mut readers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut tables = BTreeSet::new();
        for edge in &snapshot.edges {
            let entry = inputs.entry(edge.to.clone()).or_default();
            if !entry.iter().any(|(name, _)| name == &edge.from) {
                entry.push((edge.from.clone(), edge.full_rebuild));
            }
            let entry = readers.entry(edge.from.clone()).or_default();
            if !entry.contains(&edge.to) {
                entry.push(edge.to.clone());
            }
            if !tviews.contains(edge.from.as_str()) {
                tables.insert(edge.from.clone());
            }
        }
        for list in inputs.values_mut() {
            list.sort();
        }
        for list in readers.values_mut() {
            list.sort();
        }
        let mut depth = BTreeMap::new();
        for name in &tviews {
            depth_of(name, &tviews, &inputs, &mut depth, &mut BTreeSet::new());
        }
        let deepest = depth.values().copied().max().unwrap_or(0);
        let mut layers = vec![Vec::new(); if tviews.is_empty() { 1 } else { deepest + 2 }];
        layers[0] = tables.into_iter().collect();
        for name in &tviews {
            layers[depth[*name] + 1].push((*name).to_string());
        }
        Graph {
            layers,
            inputs,
            readers,
        }
    }

    /// (layer, index) of a node.
    pub fn position(&self, name: &str) -> Option<(usize, usize)> {
        self.layers.iter().enumerate().find_map(|(layer, nodes)| {
            nodes
                .iter()
                .position(|node| node == name)
                .map(|index| (layer, index))
        })
    }

    /// What `name` reads directly, with the full-rebuild flag of each edge.
    pub fn inputs(&self, name: &str) -> &[(String, bool)] {
        self.inputs.get(name).map_or(&[], Vec::as_slice)
    }

    /// The TVIEWs reading `name` directly.
    pub fn readers(&self, name: &str) -> &[String] {
        self.readers.get(name).map_or(&[], Vec::as_slice)
    }

    /// Everything `name` reads, directly or not.
    pub fn upstream(&self, name: &str) -> BTreeSet<String> {
        self.closure(name, |n| {
            self.inputs(n).iter().map(|(i, _)| i.clone()).collect()
        })
    }

    /// Everything a change of `name` reaches: its cascade.
    pub fn downstream(&self, name: &str) -> BTreeSet<String> {
        self.closure(name, |n| self.readers(n).to_vec())
    }

    /// The cascade of `name` in refresh order: by depth, then name (how the extension orders
    /// a flush).
    pub fn cascade(&self, name: &str) -> Vec<String> {
        let down = self.downstream(name);
        self.layers
            .iter()
            .flatten()
            .filter(|node| down.contains(*node))
            .cloned()
            .collect()
    }

    fn closure(&self, start: &str, next: impl Fn(&str) -> Vec<String>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = next(start);
        while let Some(node) = todo.pop() {
            if node != start && seen.insert(node.clone()) {
                todo.extend(next(&node));
            }
        }
        seen
    }

    /// How every node relates to `selected`.
    pub fn relations(&self, selected: Option<&str>) -> BTreeMap<String, Relation> {
        let mut out: BTreeMap<String, Relation> = self
            .layers
            .iter()
            .flatten()
            .map(|n| (n.clone(), Relation::Unrelated))
            .collect();
        let Some(selected) = selected.filter(|s| out.contains_key(*s)) else {
            return out;
        };
        for node in self.upstream(selected) {
            out.insert(node, Relation::Input);
        }
        for (node, _) in self.inputs(selected) {
            out.insert(node.clone(), Relation::DirectInput);
        }
        for node in self.downstream(selected) {
            out.insert(node, Relation::Reader);
        }
        for node in self.readers(selected) {
            out.insert(node.clone(), Relation::DirectReader);
        }
        out.insert(selected.to_string(), Relation::Selected);
        out
    }

    /// The node to go to from `from` when moving one layer left (`step` -1) or right (+1):
    /// the first direct neighbour there, else the node on the same row (or the last one).
    pub fn step_layer(&self, from: &str, step: isize) -> Option<String> {
        let (layer, index) = self.position(from)?;
        let target = layer.checked_add_signed(step)?;
        let nodes = self.layers.get(target).filter(|n| !n.is_empty())?;
        let neighbour = if step < 0 {
            self.inputs(from)
                .iter()
                .map(|(n, _)| n)
                .find(|n| nodes.contains(n))
        } else {
            self.readers(from).iter().find(|n| nodes.contains(n))
        };
        Some(
            neighbour
                .cloned()
                .unwrap_or_else(|| nodes[index.min(nodes.len() - 1)].clone()),
        )
    }

    /// The node `step` places up or down within `from`'s layer, clamped at the ends.
    pub fn step_within_layer(&self, from: &str, step: isize) -> Option<String> {
        let (layer, index) = self.position(from)?;
        let nodes = &self.layers[layer];
        let target = index.saturating_add_signed(step).min(nodes.len() - 1);
        Some(nodes[target].clone())
    }
}

/// Longest path from the tables, in TVIEWs (a TVIEW reading only tables has depth 0). The
/// extension forbids cycles; `visiting` keeps a corrupt graph from recursing forever.
fn depth_of(
    name: &str,
    tviews: &BTreeSet<&str>,
    inputs: &BTreeMap<String, Vec<(String, bool)>>,
    memo: &mut BTreeMap<String, usize>,
    visiting: &mut BTreeSet<String>,
) -> usize {
    if let Some(d) = memo.get(name) {
        return *d;
    }
    if !visiting.insert(name.to_string()) {
        return 0;
    }
    let mut depth = 0;
    for (input, _) in inputs.get(name).map_or(&[][..], Vec::as_slice) {
        if tviews.contains(input.as_str()) {
            depth = depth.max(depth_of(input, tviews, inputs, memo, visiting) + 1);
        }
    }
    visiting.remove(name);
    memo.insert(name.to_string(), depth);
    depth
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Edge, TviewStats};

    fn snapshot(tviews: &[&str], edges: &[(&str, &str)]) -> Snapshot {
        let mut snap: Snapshot =
            crate::snapshot::parse(r#"{"schema_version":1,"server_time":1,"stats_since":0}"#)
                .expect("minimal");
        snap.tviews = tviews
            .iter()
            .map(|n| TviewStats {
                name: (*n).into(),
                ..TviewStats::default()
            })
            .collect();
        snap.edges = edges
            .iter()
            .map(|(from, to)| Edge {
                from: (*from).into(),
                to: (*to).into(),
                full_rebuild: *from == "tb_settings",
            })
            .collect();
        snap
    }

    /// The demo read model plus a second-level cascade and a full-rebuild source.
    fn demo() -> Graph {
        Graph::of(&snapshot(
            &["tv_product", "tv_review", "tv_category", "tv_shop"],
            &[
                ("tb_product", "tv_review"),
                ("tb_review", "tv_review"),
                ("tb_category", "tv_product"),
                ("tb_product", "tv_product"),
                ("tb_review", "tv_product"),
                ("tb_category", "tv_category"),
                ("tv_product", "tv_category"),
                ("tv_category", "tv_shop"),
                ("tb_settings", "tv_shop"),
            ],
        ))
    }

    #[test]
    fn layers_follow_cascade_depth() {
        let g = demo();
        assert_eq!(
            g.layers,
            vec![
                vec!["tb_category", "tb_product", "tb_review", "tb_settings"],
                vec!["tv_product", "tv_review"],
                vec!["tv_category"],
                vec!["tv_shop"],
            ]
        );
        assert_eq!(g.position("tv_category"), Some((2, 0)));
        assert_eq!(g.inputs("tv_shop")[1], ("tv_category".to_string(), false));
        assert_eq!(g.inputs("tv_shop")[0], ("tb_settings".to_string(), true));
    }

    #[test]
    fn relatives_of_the_selection() {
        let g = demo();
        let r = g.relations(Some("tv_product"));
        assert_eq!(r["tv_product"], Relation::Selected);
        assert_eq!(r["tb_review"], Relation::DirectInput);
        assert_eq!(r["tv_category"], Relation::DirectReader);
        assert_eq!(r["tv_shop"], Relation::Reader);
        assert_eq!(r["tv_review"], Relation::Unrelated);
        assert_eq!(r["tb_settings"], Relation::Unrelated);
        let r = g.relations(Some("tv_shop"));
        assert_eq!(r["tv_category"], Relation::DirectInput);
        assert_eq!(r["tb_review"], Relation::Input);
        assert!(g.relations(None).values().all(|r| !r.is_related()));
        assert_eq!(
            g.cascade("tb_category"),
            ["tv_product", "tv_category", "tv_shop"]
        );
    }

    #[test]
    fn moving_between_layers_follows_edges() {
        let g = demo();
        assert_eq!(
            g.step_layer("tv_category", -1).as_deref(),
            Some("tv_product")
        );
        assert_eq!(g.step_layer("tv_category", 1).as_deref(), Some("tv_shop"));
        assert_eq!(g.step_layer("tv_review", 1).as_deref(), Some("tv_category"));
        assert_eq!(g.step_layer("tv_shop", 1), None);
        assert_eq!(g.step_layer("tb_product", -1), None);
        assert_eq!(
            g.step_within_layer("tb_category", 10).as_deref(),
            Some("tb_settings")
        );
        assert_eq!(
            g.step_within_layer("tb_product", -5).as_deref(),
            Some("tb_category")
        );
    }

    #[test]
    fn tviews_without_edges_and_cycles_do_not_break_layout() {
        let g = Graph::of(&snapshot(
            &["tv_a", "tv_b", "tv_lonely"],
            &[("tv_a", "tv_b"), ("tv_b", "tv_a")],
        ));
        assert_eq!(g.layers.iter().flatten().count(), 3);
        assert_eq!(
            Graph::of(&snapshot(&[], &[])).layers,
            vec![Vec::<String>::new()]
        );
    }
}
