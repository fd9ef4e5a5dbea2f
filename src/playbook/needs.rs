//! The steps of one play as a graph: which steps each one waits for (the steps its `needs`
//! names, else the step before it), an order that respects that, and the diagnostic for a
//! cycle in `needs`, which lists the whole cycle.
//!
//! Input is a loaded `Play`; `validate` asks for the order to report a cycle, and `plan` builds
//! the runner's task graph from the same edges and order. The graph algorithms are `graph`'s.

use crate::diag::Diagnostic;
use crate::graph;
use crate::playbook::Play;

/// For each step of `play`, the steps it waits for (indices into `play.steps`, each once):
/// those its `needs` names that exist, else the step before it.
pub fn waits_for(play: &Play) -> Vec<Vec<usize>> {
    let mut deps = vec![Vec::new(); play.steps.len()];
    for (i, s) in play.steps.iter().enumerate() {
        match &s.needs {
            Some(needs) => {
                for name in needs {
                    if let Some(j) = play.steps.iter().position(|x| x.id == name.value)
                        && !deps[i].contains(&j)
                    {
                        deps[i].push(j);
                    }
                }
            }
            None if i > 0 => deps[i].push(i - 1),
            None => {}
        }
    }
    deps
}

/// The steps in an order where each comes after every step it waits for (`deps`, from
/// `waits_for`), ties in playbook order; or, for a cycle in `needs`, a diagnostic that lists
/// the whole cycle.
pub fn step_order(play: &Play, deps: &[Vec<usize>]) -> Result<Vec<usize>, Diagnostic> {
    if let Some(cycle) = graph::find_cycle(deps) {
        return Err(cycle_diagnostic(play, &cycle));
    }
    // Edges turned around: a step comes before the steps that wait for it.
    let order = graph::topo_order(&graph::reverse(deps))
        .expect("invariant: a graph without a cycle, turned around, has none either");
    Ok(order)
}

/// `cycle` follows "waits for" edges: a waits for b waits for … a (the first not repeated).
fn cycle_diagnostic(play: &Play, cycle: &[usize]) -> Diagnostic {
    let mut cycle = cycle.to_vec();
    cycle.push(cycle[0]);
    let names: Vec<String> = cycle
        .iter()
        .map(|&i| format!("`{}`", play.steps[i].id))
        .collect();
    let first = &play.steps[cycle[0]];
    let need_span = |from: usize, to: usize| {
        play.steps[from]
            .needs
            .iter()
            .flatten()
            .find(|n| n.value == play.steps[to].id)
            .map(|n| n.span)
            .unwrap_or(play.steps[from].id_span)
    };
    let mut d = Diagnostic::error(format!("cycle in `needs`: {}", names.join(" → ")))
        .at(need_span(cycle[0], cycle[1]))
        .label(format!(
            "`{}` waits for `{}`",
            first.id, play.steps[cycle[1]].id
        ));
    for w in cycle.windows(2).skip(1) {
        d = d.also(
            need_span(w[0], w[1]),
            format!(
                "`{}` waits for `{}`",
                play.steps[w[0]].id, play.steps[w[1]].id
            ),
        );
    }
    d.help("steps in a cycle would wait for each other forever; remove one of these `needs`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn play(text: &str) -> Play {
        let file = crate::diag::register_source("needs.yml", text);
        let root = crate::yaml::parse(file, text).expect("parses");
        let mut diags = crate::diag::Diagnostics::default();
        let play = crate::playbook::read::read_play(0, &root, Path::new("."), &mut diags);
        assert!(!diags.has_errors(), "{diags}");
        play.expect("a play")
    }

    const STEPS: &str = "hosts: all\nsteps:\n";

    #[test]
    fn each_step_follows_the_one_before_unless_it_says_needs() {
        let p = play(&format!(
            "{STEPS}  - {{ id: a, tcp: {{ port: 1 }} }}\n  - {{ id: b, tcp: {{ port: 1 }} }}\n  - {{ id: c, needs: [], tcp: {{ port: 1 }} }}\n  - {{ id: d, needs: [a, b, a], tcp: {{ port: 1 }} }}\n"
        ));
        let deps = waits_for(&p);
        assert_eq!(deps, vec![vec![], vec![0], vec![], vec![0, 1]]);
        assert_eq!(step_order(&p, &deps).ok(), Some(vec![0, 1, 2, 3]));
    }

    #[test]
    fn ties_go_in_playbook_order() {
        let p = play(&format!(
            "{STEPS}  - {{ id: a, needs: [c], tcp: {{ port: 1 }} }}\n  - {{ id: b, needs: [], tcp: {{ port: 1 }} }}\n  - {{ id: c, needs: [], tcp: {{ port: 1 }} }}\n"
        ));
        assert_eq!(step_order(&p, &waits_for(&p)).ok(), Some(vec![1, 2, 0]));
    }

    #[test]
    fn a_cycle_lists_every_step_on_it() {
        let p = play(&format!(
            "{STEPS}  - {{ id: a, needs: [c], tcp: {{ port: 1 }} }}\n  - {{ id: b, needs: [a], tcp: {{ port: 1 }} }}\n  - {{ id: c, needs: [b], tcp: {{ port: 1 }} }}\n"
        ));
        let d = step_order(&p, &waits_for(&p)).expect_err("a cycle");
        assert_eq!(d.title, "cycle in `needs`: `a` → `c` → `b` → `a`");
        assert_eq!(d.label, "`a` waits for `c`");
    }
}
