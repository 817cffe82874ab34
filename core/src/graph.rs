//! The dependency graph of TVIEWs: a TVIEW that reads another TVIEW's
//! storage table depends on it (a cascade edge). Flushes refresh TVIEWs in
//! one global order — dependencies first, then by OID — so that cascades
//! settle in one pass and every backend takes refresh locks in the same
//! order (no deadlock between flushes, DESIGN.md §6).

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::catalog::Oid;
use crate::error::{Result, TviewError};

/// One TVIEW as the graph sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNode {
    pub relid: Oid,
    pub name: String,
    /// Relations its definition reads (tables and other TVIEWs).
    pub sources: BTreeSet<Oid>,
}

#[derive(Debug, Clone)]
pub struct TviewGraph {
    graph: DiGraph<Oid, ()>,
    index: BTreeMap<Oid, NodeIndex>,
    names: BTreeMap<Oid, String>,
}

impl TviewGraph {
    /// Builds the graph; fails with the cycle named when there is one.
    pub fn build(nodes: &[GraphNode]) -> Result<TviewGraph> {
        let mut graph = DiGraph::new();
        let mut index = BTreeMap::new();
        let mut names = BTreeMap::new();
        for n in nodes {
            index.insert(n.relid, graph.add_node(n.relid));
            names.insert(n.relid, n.name.clone());
        }
        for n in nodes {
            for s in &n.sources {
                if let Some(&from) = index.get(s) {
                    graph.add_edge(from, index[&n.relid], ());
                }
            }
        }
        let g = TviewGraph {
            graph,
            index,
            names,
        };
        if let Some(cycle) = g.find_cycle() {
            return Err(TviewError::Cycle { cycle });
        }
        Ok(g)
    }

    fn find_cycle(&self) -> Option<String> {
        for scc in tarjan_scc(&self.graph) {
            let self_loop = scc.len() == 1 && self.graph.contains_edge(scc[0], scc[0]);
            if scc.len() > 1 || self_loop {
                let mut names: Vec<&str> = scc
                    .iter()
                    .map(|i| self.names[&self.graph[*i]].as_str())
                    .collect();
                names.sort();
                let first = names[0];
                names.push(first);
                return Some(names.join(" → "));
            }
        }
        None
    }

    /// Longest path from a TVIEW that reads no other TVIEW (0 for those).
    pub fn depth(&self, relid: Oid) -> usize {
        let Some(&start) = self.index.get(&relid) else {
            return 0;
        };
        let mut memo = BTreeMap::new();
        self.depth_of(start, &mut memo)
    }

    fn depth_of(&self, n: NodeIndex, memo: &mut BTreeMap<NodeIndex, usize>) -> usize {
        if let Some(d) = memo.get(&n) {
            return *d;
        }
        let d = self
            .graph
            .neighbors_directed(n, petgraph::Direction::Incoming)
            .map(|p| self.depth_of(p, memo) + 1)
            .max()
            .unwrap_or(0);
        memo.insert(n, d);
        d
    }

    /// The global refresh order: by depth, then by OID.
    pub fn flush_order(&self) -> Vec<Oid> {
        let mut v: Vec<(usize, Oid)> = self.index.keys().map(|o| (self.depth(*o), *o)).collect();
        v.sort();
        v.into_iter().map(|(_, o)| o).collect()
    }

    /// TVIEWs that read `relid` directly.
    pub fn dependents(&self, relid: Oid) -> Vec<Oid> {
        let Some(&n) = self.index.get(&relid) else {
            return Vec::new();
        };
        let mut v: Vec<Oid> = self
            .graph
            .neighbors_directed(n, petgraph::Direction::Outgoing)
            .map(|i| self.graph[i])
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(relid: Oid, name: &str, sources: &[Oid]) -> GraphNode {
        GraphNode {
            relid,
            name: name.into(),
            sources: sources.iter().copied().collect(),
        }
    }

    #[test]
    fn orders_cascades_by_depth() {
        // tv_b reads tv_a, tv_c reads tv_b and a table (1).
        let g = TviewGraph::build(&[
            node(30, "tv_c", &[20, 1]),
            node(10, "tv_a", &[1]),
            node(20, "tv_b", &[10]),
        ])
        .unwrap();
        assert_eq!(g.flush_order(), vec![10, 20, 30]);
        assert_eq!(g.depth(30), 2);
        assert_eq!(g.dependents(10), vec![20]);
    }

    #[test]
    fn names_a_cycle() {
        let err = TviewGraph::build(&[node(1, "tv_a", &[2]), node(2, "tv_b", &[1])]).unwrap_err();
        assert_eq!(
            err,
            TviewError::Cycle {
                cycle: "tv_a → tv_b → tv_a".into()
            }
        );
    }
}
