//! Resolution: from the `Raw` model the loaders filled to the `Inventory` the rest of sortie
//! reads. Groups are linked to their children (unknown names and cycles reported, the whole
//! cycle shown; the graph work is `graph`'s), groups without a parent hang under `all` and
//! hosts in no group go to `ungrouped`, and every host gets its groups in precedence order with
//! the vars and SSH settings merged along them.
//!
//! Variable precedence, lowest first: the `all` group's vars, then every other group the host
//! belongs to, ordered by depth (the longest path from `all`) and, at equal depth, by name — so
//! a child's vars beat its parent's — then the host's own vars. SSH settings merge the same
//! way, key by key. Input comes from `load`; output goes back to its callers.

use std::collections::HashMap;

use indexmap::IndexMap;

use super::ansible::{ConnVars, connection_settings};
use super::raw::{Raw, RawHost};
use super::{Group, Host, Inventory, SshSettings};
use crate::diag::{Diagnostic, Diagnostics, Span, did_you_mean};
use crate::graph;

/// Resolves everything read (`sources` names the files) into an inventory.
pub(super) fn resolve(mut raw: Raw, sources: Vec<String>) -> Result<Inventory, Diagnostics> {
    raw.group("all");
    raw.group("ungrouped");
    let tree = GroupTree::build(&raw)?;
    let members = Members::of(&raw, &tree.order);
    let groups = tree.groups(&raw, &members);
    let hosts: Vec<Host> = raw
        .hosts
        .iter()
        .zip(&members.direct)
        .map(|((name, rh), direct)| resolve_host(name, rh, direct, &tree, &raw))
        .collect();
    let index = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.clone(), i))
        .collect();
    Ok(Inventory {
        hosts,
        groups,
        sources,
        index,
    })
}

/// The groups linked, by index into `order`: `all` is 0, `ungrouped` the last.
struct GroupTree {
    /// Group names: `all`, groups as defined, `ungrouped`.
    order: Vec<String>,
    children: Vec<Vec<usize>>,
    parents: Vec<Vec<usize>>,
    /// The longest path from `all`.
    depth: Vec<usize>,
    /// Every group above, sorted by index.
    ancestors: Vec<Vec<usize>>,
}

impl GroupTree {
    /// Links the groups of `raw` (which holds `all` and `ungrouped`); unknown children, `all`
    /// as a child and a cycle are diagnostics.
    fn build(raw: &Raw) -> Result<GroupTree, Diagnostics> {
        let order = group_order(raw);
        let mut diags = Diagnostics::default();
        let (mut children, edge_span) = child_edges(raw, &order, &mut diags);
        // `all` is no one's child, so it comes first, and stays first once the groups without
        // a parent are hung under it.
        let topo = match graph::topo_order(&children) {
            Ok(topo) => topo,
            Err(cycle) => {
                diags.push(cycle_diagnostic(&cycle, &order, &edge_span));
                Vec::new()
            }
        };
        if diags.has_errors() {
            return Err(diags);
        }
        let parents = hang_under_all(&mut children);
        let (depth, ancestors) = depths_and_ancestors(&topo, &parents);
        Ok(GroupTree {
            order,
            children,
            parents,
            depth,
            ancestors,
        })
    }

    /// Every group as the inventory shows it: links by name, its direct hosts in host order.
    fn groups(&self, raw: &Raw, members: &Members) -> IndexMap<String, Group> {
        let host_names: Vec<&String> = raw.hosts.keys().collect();
        let group_names =
            |ids: &[usize]| -> Vec<String> { ids.iter().map(|&g| self.order[g].clone()).collect() };
        let mut groups = IndexMap::new();
        for (g, name) in self.order.iter().enumerate() {
            let rg = raw.groups.get(name);
            let mut hosts = members.group_hosts[g].clone();
            hosts.sort_unstable();
            groups.insert(
                name.clone(),
                Group {
                    name: name.clone(),
                    parents: group_names(&self.parents[g]),
                    children: group_names(&self.children[g]),
                    hosts: hosts.iter().map(|&h| host_names[h].clone()).collect(),
                    vars: rg.map(|r| r.vars.clone()).unwrap_or_default(),
                    span: rg.and_then(|r| r.span),
                },
            );
        }
        groups
    }
}

/// `all`, the groups in the order they were defined, `ungrouped`.
fn group_order(raw: &Raw) -> Vec<String> {
    let mut order: Vec<String> = vec!["all".into()];
    order.extend(
        raw.groups
            .keys()
            .filter(|g| *g != "all" && *g != "ungrouped")
            .cloned(),
    );
    order.push("ungrouped".into());
    order
}

/// Where each `children` edge (parent, child) was written.
type EdgeSpans = HashMap<(usize, usize), Option<Span>>;

/// The `children` edges between known groups, each once, with where each was written; a child
/// that is `all` or names no group is reported instead.
fn child_edges(
    raw: &Raw,
    order: &[String],
    diags: &mut Diagnostics,
) -> (Vec<Vec<usize>>, EdgeSpans) {
    let idx: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); order.len()];
    let mut edge_span = EdgeSpans::new();
    for (p, name) in order.iter().enumerate() {
        let Some(g) = raw.groups.get(name) else {
            continue;
        };
        for (child, span) in &g.children {
            if child == "all" {
                diags.push(
                    Diagnostic::error("the group `all` cannot be a child of another group")
                        .at_opt(*span)
                        .label("`all` already contains every group")
                        .help(format!("remove `all` from the children of `{name}`")),
                );
                continue;
            }
            match idx.get(child.as_str()) {
                Some(&c) => {
                    if !children[p].contains(&c) {
                        children[p].push(c);
                        edge_span.insert((p, c), *span);
                    }
                }
                None => diags.push(unknown_child(child, name, order, *span)),
            }
        }
    }
    (children, edge_span)
}

fn unknown_child(child: &str, parent: &str, order: &[String], span: Option<Span>) -> Diagnostic {
    let label = match did_you_mean(child, order.iter().map(String::as_str)) {
        Some(s) => format!("did you mean `{s}`?"),
        None => "no group of this name is defined".to_string(),
    };
    Diagnostic::error(format!("unknown child group `{child}`"))
        .at_opt(span)
        .label(label)
        .help(format!(
            "define the group `{child}`, or remove it from the children of `{parent}`"
        ))
}

/// A cycle among children edges (`graph`'s, each group a child of the one before it and the
/// first a child of the last), as a diagnostic naming every group on it.
fn cycle_diagnostic(cycle: &[usize], order: &[String], edge_span: &EdgeSpans) -> Diagnostic {
    let mut path: Vec<String> = cycle.iter().map(|g| format!("`{}`", order[*g])).collect();
    path.push(format!("`{}`", order[cycle[0]]));
    let last = cycle[cycle.len() - 1];
    let first = cycle[0];
    let mut d = Diagnostic::error(format!("cycle in group children: {}", path.join(" → ")))
        .at_opt(edge_span.get(&(last, first)).copied().flatten())
        .label(format!(
            "`{}` is a child of `{}` here, which closes the cycle",
            order[first], order[last]
        ))
        .help("a group cannot contain itself: remove one of these `children` entries");
    for w in cycle.windows(2) {
        if let Some(Some(s)) = edge_span.get(&(w[0], w[1])) {
            d = d.also(
                *s,
                format!("`{}` is a child of `{}` here", order[w[1]], order[w[0]]),
            );
        }
    }
    d
}

/// Every group's parents; a group without one (but `all`) becomes a child of `all`.
fn hang_under_all(children: &mut [Vec<usize>]) -> Vec<Vec<usize>> {
    let mut parents = graph::reverse(children);
    for (g, ps) in parents.iter_mut().enumerate().skip(1) {
        if ps.is_empty() {
            ps.push(0);
            children[0].push(g);
        }
    }
    parents
}

/// Each group's depth (longest path from `all`) and ancestors, walking `topo`, an order in
/// which parents come before their children.
fn depths_and_ancestors(topo: &[usize], parents: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut depth = vec![0usize; parents.len()];
    let mut ancestors: Vec<Vec<usize>> = vec![Vec::new(); parents.len()];
    for &g in topo {
        let mut anc: Vec<usize> = Vec::new();
        for &p in &parents[g] {
            depth[g] = depth[g].max(depth[p] + 1);
            anc.push(p);
            anc.extend_from_slice(&ancestors[p]);
        }
        anc.sort_unstable();
        anc.dedup();
        ancestors[g] = anc;
    }
    (depth, ancestors)
}

/// Direct membership, by index: hosts in host order, groups in group order.
struct Members {
    /// For each host, the groups that list it (never `all`; `ungrouped` only alone).
    direct: Vec<Vec<usize>>,
    /// For each group, the hosts it lists.
    group_hosts: Vec<Vec<usize>>,
}

impl Members {
    /// Who lists whom, with `ungrouped` reconciled as Ansible does: a host in no group is in
    /// `ungrouped`, a host in another group is not.
    fn of(raw: &Raw, order: &[String]) -> Members {
        let host_idx: HashMap<&str, usize> = raw
            .hosts
            .keys()
            .enumerate()
            .map(|(i, h)| (h.as_str(), i))
            .collect();
        let mut direct: Vec<Vec<usize>> = vec![Vec::new(); raw.hosts.len()];
        let mut group_hosts: Vec<Vec<usize>> = vec![Vec::new(); order.len()];
        for (g, name) in order.iter().enumerate().skip(1) {
            if let Some(rg) = raw.groups.get(name) {
                for h in &rg.hosts {
                    if let Some(&hi) = host_idx.get(h.as_str()) {
                        direct[hi].push(g);
                        group_hosts[g].push(hi);
                    }
                }
            }
        }
        let ungrouped = order.len() - 1;
        for (hi, gs) in direct.iter_mut().enumerate() {
            if gs.is_empty() {
                gs.push(ungrouped);
                group_hosts[ungrouped].push(hi);
            } else if gs.len() > 1 && gs.contains(&ungrouped) {
                gs.retain(|g| *g != ungrouped);
                group_hosts[ungrouped].retain(|h| *h != hi);
            }
        }
        Members {
            direct,
            group_hosts,
        }
    }
}

/// One host resolved: every group it is in (directly or through children) in precedence
/// order, and its vars and SSH settings merged along them, its own last. As in Ansible, the
/// inventory files' group vars come first (`all`, then by depth, priority and name), then the
/// `group_vars/` files' in the same order, then the host's; the merged Ansible connection
/// variables then become the host's address, port, user, key and jump host.
fn resolve_host(name: &str, rh: &RawHost, direct: &[usize], tree: &GroupTree, raw: &Raw) -> Host {
    let mut member: Vec<usize> = vec![0];
    for &g in direct {
        member.push(g);
        member.extend_from_slice(&tree.ancestors[g]);
    }
    member.sort_unstable();
    member.dedup();
    let priority = |g: usize| {
        raw.groups
            .get(&tree.order[g])
            .and_then(|r| r.priority)
            .unwrap_or(1)
    };
    member.sort_by(|a, b| {
        (tree.depth[*a], priority(*a), &tree.order[*a]).cmp(&(
            tree.depth[*b],
            priority(*b),
            &tree.order[*b],
        ))
    });
    let mut vars = IndexMap::new();
    let mut ssh = SshSettings::default();
    let groups = || {
        member
            .iter()
            .filter_map(|g| raw.groups.get(&tree.order[*g]))
    };
    for rg in groups() {
        vars.extend(rg.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        ssh.merge(&rg.ssh);
    }
    for rg in groups() {
        vars.extend(rg.dir_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    vars.extend(rh.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    let conn = if rh.ansible {
        connection_settings(&mut vars)
    } else {
        ConnVars::default()
    };
    if conn.identity_file.is_some() {
        ssh.identity_file.clone_from(&conn.identity_file);
    }
    if conn.jump.is_some() {
        ssh.jump.clone_from(&conn.jump);
    }
    if conn.proxy_command.is_some() {
        ssh.proxy_command.clone_from(&conn.proxy_command);
    }
    ssh.merge(&rh.ssh);
    let user = rh.user.clone().or(conn.user).or_else(|| ssh.user.clone());
    let port = rh.port.or(conn.port).or(ssh.port);
    ssh.user.clone_from(&user);
    ssh.port = port;
    Host {
        name: name.to_string(),
        address: rh
            .address
            .clone()
            .or(conn.address)
            .unwrap_or_else(|| name.to_string()),
        port,
        user,
        groups: member.iter().map(|g| tree.order[*g].clone()).collect(),
        vars,
        ssh,
        local: conn.local,
        span: rh.span,
    }
}

#[cfg(test)]
mod tests {
    use crate::inventory::HostKeyChecking;
    use crate::inventory::tests::{err, host, inv};
    use crate::units::Duration;
    use serde_json::json;

    #[test]
    fn precedence_all_vars_are_the_base() {
        let i = inv("vars: { env: prod, tier: base }\nhosts: { h1: {} }\n");
        assert_eq!(host(&i, "h1").vars["env"], json!("prod"));
        assert_eq!(host(&i, "h1").vars["tier"], json!("base"));
    }

    #[test]
    fn precedence_group_over_all() {
        let i = inv(
            "vars: { tier: base }\ngroups: { web: { hosts: { h1: {} }, vars: { tier: web } } }\n",
        );
        assert_eq!(host(&i, "h1").vars["tier"], json!("web"));
    }

    #[test]
    fn precedence_child_over_parent() {
        // `prod` is defined first and lists `web` as a child: web's vars still win.
        let i = inv(
            "groups:\n  prod: { children: [web], vars: { tier: prod, only_prod: 1 } }\n  web: { hosts: { h1: {} }, vars: { tier: web } }\n",
        );
        let h = host(&i, "h1");
        assert_eq!(h.vars["tier"], json!("web"));
        assert_eq!(h.vars["only_prod"], json!(1));
        assert_eq!(h.groups, ["all", "prod", "web"]);
    }

    #[test]
    fn precedence_depth_is_the_longest_path() {
        // c sits under a (all→a→c, depth 2) and under b (all→a→b→c, depth 3): the longest
        // path counts, so c (3) applies after b (2) and wins.
        let i = inv(
            "groups:\n  a: { children: [b, c], vars: { x: a } }\n  b: { children: [c], vars: { x: b } }\n  c: { hosts: { h1: {} }, vars: { x: c } }\n",
        );
        assert_eq!(host(&i, "h1").vars["x"], json!("c"));
        assert_eq!(host(&i, "h1").groups, ["all", "a", "b", "c"]);
    }

    #[test]
    fn precedence_equal_depth_by_name_later_wins() {
        // zeta is defined first, but at equal depth alphabetical order applies: zeta wins.
        let i = inv(
            "groups:\n  zeta: { hosts: { h1: {} }, vars: { x: zeta } }\n  alpha: { hosts: { h1: {} }, vars: { x: alpha } }\n",
        );
        let h = host(&i, "h1");
        assert_eq!(h.vars["x"], json!("zeta"));
        assert_eq!(h.groups, ["all", "alpha", "zeta"]);
    }

    #[test]
    fn precedence_host_over_groups() {
        let i = inv(
            "vars: { x: all }\ngroups:\n  web: { hosts: { h1: { vars: { x: host } } }, vars: { x: web } }\n",
        );
        assert_eq!(host(&i, "h1").vars["x"], json!("host"));
    }

    #[test]
    fn ssh_settings_merge_by_level() {
        let i = inv(
            "ssh: { user: deploy, port: 22, connect_timeout: 10s, host_key_checking: strict }\ngroups:\n  web:\n    ssh: { port: 2200, host_key_checking: accept-new }\n    hosts:\n      w1: {}\n      w2: { port: 2222, ssh: { user: root, keepalive: 30s } }\n      w3: { user: admin, jump: bastion }\n",
        );
        let w1 = host(&i, "w1");
        assert_eq!(w1.port, Some(2200));
        assert_eq!(w1.user.as_deref(), Some("deploy"));
        assert_eq!(w1.ssh.host_key_checking, Some(HostKeyChecking::AcceptNew));
        assert_eq!(w1.ssh.connect_timeout, Some(Duration::from_secs(10)));
        let w2 = host(&i, "w2");
        assert_eq!((w2.port, w2.ssh.port), (Some(2222), Some(2222)));
        assert_eq!(w2.user.as_deref(), Some("root"));
        assert_eq!(w2.ssh.keepalive, Some(Duration::from_secs(30)));
        let w3 = host(&i, "w3");
        assert_eq!(w3.user.as_deref(), Some("admin"));
        assert_eq!(w3.ssh.user.as_deref(), Some("admin"));
        assert_eq!(w3.ssh.jump.as_deref(), Some("bastion"));
    }

    #[test]
    fn groups_link_to_all_and_ungrouped() {
        let i = inv(
            "hosts: { lone: {}, w1: {} }\ngroups:\n  web: { hosts: [w1] }\n  prod: { children: [web] }\n",
        );
        assert_eq!(
            i.groups.keys().collect::<Vec<_>>(),
            ["all", "web", "prod", "ungrouped"]
        );
        assert_eq!(i.groups["all"].children, ["prod", "ungrouped"]);
        assert_eq!(i.groups["web"].parents, ["prod"]);
        assert_eq!(i.groups["prod"].parents, ["all"]);
        assert_eq!(i.groups["ungrouped"].hosts, ["lone"]);
        assert_eq!(i.groups["web"].hosts, ["w1"]);
        assert_eq!(host(&i, "w1").groups, ["all", "prod", "web"]);
        assert_eq!(host(&i, "lone").groups, ["all", "ungrouped"]);
    }

    #[test]
    fn unknown_child_group_suggests() {
        let d = err("c.yml", "groups:\n  web: {}\n  prod: { children: [wev] }\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].title, "unknown child group `wev`");
        assert_eq!(d[0].label, "did you mean `web`?");
        assert_eq!(
            d[0].help.as_deref(),
            Some("define the group `wev`, or remove it from the children of `prod`")
        );
        let s = d[0].span.expect("span");
        assert_eq!((s.line, s.col, s.end_col), (3, 22, 25));
    }

    #[test]
    fn cycles_show_the_whole_cycle() {
        let d = err(
            "cy.yml",
            "groups:\n  a: { children: [b] }\n  b: { children: [c] }\n  c: { children: [a] }\n",
        );
        assert_eq!(d[0].title, "cycle in group children: `a` → `b` → `c` → `a`");
        assert_eq!(
            d[0].label,
            "`a` is a child of `c` here, which closes the cycle"
        );
        assert_eq!(d[0].span.map(|s| s.line), Some(4));
        assert_eq!(d[0].secondary.len(), 2);
        assert_eq!(d[0].secondary[0].1, "`b` is a child of `a` here");
        let d = err("self.yml", "groups:\n  a: { children: [a] }\n");
        assert_eq!(d[0].title, "cycle in group children: `a` → `a`");
    }

    #[test]
    fn all_cannot_be_a_child() {
        let d = err("all.yml", "groups:\n  web: { children: [all] }\n");
        assert_eq!(
            d[0].title,
            "the group `all` cannot be a child of another group"
        );
    }
}
