//! The task graph: which steps of a play wait for which (each step follows the one before it
//! unless it says `needs`), checked for cycles (the whole cycle is shown), and the per-host
//! `Plan` that `sortie plan` prints — every step rendered for one host, nothing executed.
//! The edges, their order and the cycle diagnostic come from `playbook::needs`, which
//! `validate` uses too.
//! Input: a validated `Play` and the host's variable scope; output: `Graph` for the runner
//! and `HostPlan`s for display (text, JSON, Graphviz dot).

use serde::Serialize;

use crate::diag::Diagnostic;
use crate::graph;
use crate::playbook::{Play, needs};
use crate::template::templates;

/// The dependency graph of one play's steps (indices into `play.steps`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    /// For each step, the steps it waits for.
    pub deps: Vec<Vec<usize>>,
    /// For each step, the steps that wait for it.
    pub dependents: Vec<Vec<usize>>,
    /// A topological order (ties in playbook order).
    pub order: Vec<usize>,
}

impl Graph {
    /// Builds the graph; a cycle in `needs` is a diagnostic that lists the whole cycle.
    pub fn build(play: &Play) -> Result<Graph, Diagnostic> {
        let deps = needs::waits_for(play);
        let order = needs::step_order(play, &deps)?;
        let dependents = graph::reverse(&deps);
        Ok(Graph {
            deps,
            dependents,
            order,
        })
    }
}

/// One step of one host's plan, rendered.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedStep {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub needs: Vec<String>,
    pub when: Vec<String>,
    pub run_once: bool,
    pub tags: Vec<String>,
    /// The arguments rendered for this host; strings that depend on earlier results or loop
    /// items stay as templates.
    pub args: serde_json::Value,
    pub location: String,
}

/// The plan for one host of one play.
#[derive(Clone, Debug, Serialize)]
pub struct HostPlan {
    pub play: String,
    pub host: String,
    pub address: String,
    pub steps: Vec<PlannedStep>,
}

/// Renders a play's steps for one host: templates that need run-time values (earlier results,
/// `item`) are left as written.
pub fn host_plan(
    play: &Play,
    graph: &Graph,
    host: &crate::inventory::Host,
    ctx: &minijinja::Value,
) -> HostPlan {
    let steps = play
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let args = render_partially(&s.args, ctx, s.secret);
            PlannedStep {
                id: s.id.clone(),
                name: s.display_name(),
                kind: s.kind,
                needs: graph.deps[i]
                    .iter()
                    .map(|&j| play.steps[j].id.clone())
                    .collect(),
                when: s.when.iter().map(|w| w.value.clone()).collect(),
                run_once: s.run_once,
                tags: s.tags.clone(),
                args,
                location: s.kind_span.to_string(),
            }
        })
        .collect();
    HostPlan {
        play: play.display_name(),
        host: host.name.clone(),
        address: host.address.clone(),
        steps,
    }
}

fn render_partially(
    node: &crate::yaml::Node,
    ctx: &minijinja::Value,
    secret: bool,
) -> serde_json::Value {
    use crate::yaml::NodeKind;
    if secret {
        return serde_json::Value::String("***".into());
    }
    match &node.kind {
        NodeKind::Scalar { .. } => match templates().render_node(node, ctx) {
            Ok(n) => n.to_json(),
            Err(_) => node.to_json(),
        },
        NodeKind::Seq(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|n| render_partially(n, ctx, false))
                .collect(),
        ),
        NodeKind::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.key_text(), render_partially(v, ctx, false)))
                .collect(),
        ),
    }
}

/// Plans as text: per host, each step with its edges and rendered arguments.
pub fn render_text(plans: &[HostPlan]) -> String {
    let mut out = String::new();
    for p in plans {
        out.push_str(&format!("{} · {} ({})\n", p.play, p.host, p.address));
        for s in &p.steps {
            let needs = if s.needs.is_empty() {
                "start".to_string()
            } else {
                format!("after {}", s.needs.join(", "))
            };
            out.push_str(&format!("  {:<12} {:<40} [{}]\n", s.id, s.name, needs));
            if !s.when.is_empty() {
                out.push_str(&format!("  {:<12} when {}\n", "", s.when.join(" and ")));
            }
            if s.run_once {
                out.push_str(&format!("  {:<12} run_once\n", ""));
            }
            out.push_str(&format!("  {:<12} {} {}\n", "", s.kind, s.args));
        }
        out.push('\n');
    }
    out
}

/// Plans as a Graphviz digraph: one cluster per host, an edge per dependency.
pub fn render_dot(plans: &[HostPlan]) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::from("digraph sortie {\n  rankdir=LR;\n  node [shape=box];\n");
    for (h, p) in plans.iter().enumerate() {
        out.push_str(&format!(
            "  subgraph cluster_{h} {{\n    label=\"{} · {}\";\n",
            esc(&p.play),
            esc(&p.host)
        ));
        for s in &p.steps {
            out.push_str(&format!(
                "    \"{h}:{}\" [label=\"{}\\n{}\"];\n",
                esc(&s.id),
                esc(&s.id),
                esc(&s.name)
            ));
        }
        for s in &p.steps {
            for n in &s.needs {
                out.push_str(&format!(
                    "    \"{h}:{}\" -> \"{h}:{}\";\n",
                    esc(n),
                    esc(&s.id)
                ));
            }
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}
