//! The information-flow graph: who can send to, signal, or write memory
//! that another protection domain reads.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use crate::diagnostic::Span;

/// One way information can move from one protection domain to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowEdge {
    /// The source PD.
    pub from: String,
    /// The destination PD.
    pub to: String,
    /// What makes the flow possible, e.g. `call log` or `writes dma_buffer`.
    pub cause: String,
    /// The manifest line that grants it.
    pub span: Span,
}

/// The flows computed from every capability and mapping of a manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowGraph {
    /// Every protection domain, in the order declared.
    pub domains: Vec<String>,
    /// The edges, in the order their causes appear.
    pub edges: Vec<FlowEdge>,
}

impl FlowGraph {
    /// The distinct (from, to) pairs with their causes joined.
    pub fn pairs(&self) -> BTreeMap<(String, String), Vec<String>> {
        let mut pairs: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for edge in &self.edges {
            let causes = pairs.entry((edge.from.clone(), edge.to.clone())).or_default();
            if !causes.contains(&edge.cause) {
                causes.push(edge.cause.clone());
            }
        }
        pairs
    }

    /// The graph in Graphviz DOT: one node per PD, one edge per distinct
    /// (from, to) pair labelled with its causes.
    pub fn to_dot(&self) -> String {
        let mut dot = String::from("digraph flows {\n    node [shape=box];\n");
        for domain in &self.domains {
            let _ = writeln!(dot, "    \"{domain}\";");
        }
        for ((from, to), causes) in self.pairs() {
            let _ = writeln!(dot, "    \"{from}\" -> \"{to}\" [label=\"{}\"];", causes.join(", "));
        }
        dot.push_str("}\n");
        dot
    }

    /// For each PD, every other PD that information from it can reach,
    /// directly or through others.
    pub fn reachability(&self) -> BTreeMap<String, BTreeSet<String>> {
        let pairs = self.pairs();
        let mut reach = BTreeMap::new();
        for domain in &self.domains {
            let mut seen = BTreeSet::new();
            let mut queue = VecDeque::from([domain.clone()]);
            while let Some(current) = queue.pop_front() {
                for (from, to) in pairs.keys() {
                    if *from == current && to != domain && seen.insert(to.clone()) {
                        queue.push_back(to.clone());
                    }
                }
            }
            reach.insert(domain.clone(), seen);
        }
        reach
    }

    /// [`Self::reachability`] as text, one line per PD:
    /// `driver -> log, vmm`, or `driver -> (nothing)`.
    pub fn render_reachability(&self) -> String {
        let mut text = String::new();
        for (domain, reached) in self.reachability() {
            let list: Vec<&str> = reached.iter().map(String::as_str).collect();
            let list = if list.is_empty() { "(nothing)".to_owned() } else { list.join(", ") };
            let _ = writeln!(text, "{domain} -> {list}");
        }
        text
    }
}
