//! Directed graphs over indices, for the two places that order things by their links: a play's
//! steps (`needs`, in `playbook::needs`, used by `plan`) and an inventory's groups (`children`,
//! in `inventory::resolve`). A graph is a slice of edge lists: `edges[a]` holds the nodes `a`
//! points to, every node being an index `0..edges.len()`.
//!
//! Input comes from those callers, already turned into indices; output is a topological order,
//! or the nodes of one cycle in order, from which the caller writes its own diagnostic (each
//! knows what its nodes and edges are called). A leaf: it imports nothing from the crate.

use std::collections::BTreeSet;

/// The same graph with every edge turned around: `reverse(edges)[b]` lists every `a` with an
/// edge `a → b`, in increasing `a`.
pub fn reverse(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); edges.len()];
    for (a, targets) in edges.iter().enumerate() {
        for &b in targets {
            out[b].push(a);
        }
    }
    out
}

/// An order of all nodes in which every node comes before the nodes it points to; among the
/// nodes free to come next, the smallest index goes first, so the order is stable. When the
/// graph has a cycle there is no such order: the error is `find_cycle`'s cycle.
pub fn topo_order(edges: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    if let Some(cycle) = find_cycle(edges) {
        return Err(cycle);
    }
    // Kahn's algorithm: `waiting[b]` counts the edges into `b` from nodes not yet placed.
    let mut waiting = vec![0usize; edges.len()];
    for &b in edges.iter().flatten() {
        waiting[b] += 1;
    }
    let mut ready: BTreeSet<usize> = (0..edges.len()).filter(|&n| waiting[n] == 0).collect();
    let mut order = Vec::with_capacity(edges.len());
    while let Some(a) = ready.pop_first() {
        order.push(a);
        for &b in &edges[a] {
            waiting[b] -= 1;
            if waiting[b] == 0 {
                ready.insert(b);
            }
        }
    }
    Ok(order)
}

/// One cycle of the graph, if it has any: its nodes in edge order, each pointing to the next
/// and the last to the first (the first is not repeated; a node pointing to itself is a cycle
/// of one). The search is depth-first from each node in increasing index, following edges in
/// the order listed, and stops at the first edge that leads back onto the current path.
pub fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut state = vec![Visit::New; edges.len()];
    (0..edges.len()).find_map(|root| match state[root] {
        Visit::New => cycle_from(root, edges, &mut state),
        _ => None,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Visit {
    New,
    OnPath,
    Done,
}

/// The depth-first search of `find_cycle` from one unvisited node, with an explicit stack of
/// (node, next edge to follow) so that long chains cannot overflow the call stack.
fn cycle_from(root: usize, edges: &[Vec<usize>], state: &mut [Visit]) -> Option<Vec<usize>> {
    let mut path: Vec<(usize, usize)> = vec![(root, 0)];
    state[root] = Visit::OnPath;
    while let Some(top) = path.last_mut() {
        let (a, next) = *top;
        let Some(&b) = edges[a].get(next) else {
            state[a] = Visit::Done;
            path.pop();
            continue;
        };
        top.1 += 1;
        match state[b] {
            Visit::New => {
                state[b] = Visit::OnPath;
                path.push((b, 0));
            }
            Visit::OnPath => {
                let from = path.iter().position(|&(n, _)| n == b).unwrap_or(0);
                return Some(path[from..].iter().map(|&(n, _)| n).collect());
            }
            Visit::Done => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_before_and_breaks_ties_by_index() {
        // 3 → 1, 2 → 0: 2 and 3 come first, smallest first.
        let edges = vec![vec![], vec![], vec![0], vec![1]];
        assert_eq!(topo_order(&edges), Ok(vec![2, 0, 3, 1]));
        let chain = vec![vec![1], vec![2], vec![]];
        assert_eq!(topo_order(&chain), Ok(vec![0, 1, 2]));
        assert_eq!(topo_order(&[]), Ok(vec![]));
        let free = vec![vec![], vec![], vec![]];
        assert_eq!(topo_order(&free), Ok(vec![0, 1, 2]));
    }

    #[test]
    fn diamond_waits_for_both_sides() {
        let edges = vec![vec![2, 1], vec![3], vec![3], vec![]];
        assert_eq!(topo_order(&edges), Ok(vec![0, 1, 2, 3]));
    }

    #[test]
    fn a_cycle_is_given_whole_and_in_order() {
        // 0 → 2 → 1 → 0, found from 0 along the listed edges.
        let edges = vec![vec![2], vec![0], vec![1]];
        assert_eq!(find_cycle(&edges), Some(vec![0, 2, 1]));
        assert_eq!(topo_order(&edges), Err(vec![0, 2, 1]));
        // The cycle need not include the node the search started from.
        let tail = vec![vec![1], vec![2], vec![3], vec![1]];
        assert_eq!(find_cycle(&tail), Some(vec![1, 2, 3]));
    }

    #[test]
    fn self_loops_and_acyclic_graphs() {
        assert_eq!(find_cycle(&[vec![1], vec![1]]), Some(vec![1]));
        assert_eq!(find_cycle(&[vec![1, 2], vec![2], vec![]]), None);
        // A node reached twice without a cycle is not one.
        assert_eq!(find_cycle(&[vec![2], vec![2], vec![]]), None);
    }

    #[test]
    fn first_cycle_found_follows_edge_order() {
        // From 0: edge to 1 first, whose cycle 1 → 3 → 1 is found before 0 → 2 → 0.
        let edges = vec![vec![1, 2], vec![3], vec![0], vec![1]];
        assert_eq!(find_cycle(&edges), Some(vec![1, 3]));
    }

    #[test]
    fn long_chains_do_not_overflow() {
        let n = 200_000;
        let mut edges: Vec<Vec<usize>> = (1..n).map(|i| vec![i]).collect();
        edges.push(vec![0]);
        let cycle = find_cycle(&edges).expect("the chain closes");
        assert_eq!(cycle.len(), n);
        edges[n - 1].clear();
        let order = topo_order(&edges).expect("a chain");
        assert_eq!(order.first(), Some(&0));
        assert_eq!(order.len(), n);
    }

    #[test]
    fn reverse_turns_every_edge() {
        let edges = vec![vec![1, 2], vec![2], vec![]];
        assert_eq!(reverse(&edges), vec![vec![], vec![0], vec![0, 1]]);
    }
}
