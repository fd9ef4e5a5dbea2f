//! Queries on a resolved inventory and its output: the hosts a pattern selects, a host by
//! name, and the two views of `sortie inventory` — `--list` (JSON) and `--graph` (a tree).
//!
//! Input is an `Inventory` from `resolve`; the runner and `sortie check` select hosts here,
//! `app` prints the views.

use std::collections::HashSet;

use serde_json::Value;

use super::{Host, Inventory, Pattern};
use crate::diag::{Diagnostic, Span};

impl Inventory {
    /// The hosts `pattern` selects (see `Pattern`), in inventory order. `span` is where the
    /// pattern was written, for the diagnostic when it names nothing known.
    pub fn select(&self, pattern: &str, span: Option<Span>) -> Result<Vec<&Host>, Diagnostic> {
        Pattern::parse(pattern, span)?.resolve(self)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        match self.index.get(name).and_then(|i| self.hosts.get(*i)) {
            Some(h) if h.name == name => Some(h),
            _ => self.hosts.iter().find(|h| h.name == name),
        }
    }

    /// Templates' `groups`, as Ansible's magic variable: each group (and `all`) → the names of
    /// its hosts, children's hosts included, in inventory order.
    pub fn group_members(&self) -> Value {
        let mut out = serde_json::Map::new();
        out.insert(
            "all".into(),
            self.hosts
                .iter()
                .map(|h| Value::from(h.name.clone()))
                .collect(),
        );
        for name in self.groups.keys() {
            let hosts = self.select(name, None).unwrap_or_default();
            out.insert(
                name.clone(),
                hosts.iter().map(|h| Value::from(h.name.clone())).collect(),
            );
        }
        Value::Object(out)
    }

    /// `sortie inventory --list`: the selected hosts with everything resolved, and the groups
    /// that hold them.
    pub fn to_json(&self, selected: &[&Host]) -> Value {
        let shown = self.shown_groups(selected);
        let names: HashSet<&str> = selected.iter().map(|h| h.name.as_str()).collect();
        let hosts: serde_json::Map<String, Value> = selected
            .iter()
            .map(|h| (h.name.clone(), h.to_json()))
            .collect();
        let groups: serde_json::Map<String, Value> = self
            .groups
            .values()
            .filter(|g| shown.contains(g.name.as_str()))
            .map(|g| {
                let mut o = serde_json::Map::new();
                o.insert(
                    "children".into(),
                    g.children
                        .iter()
                        .filter(|c| shown.contains(c.as_str()))
                        .cloned()
                        .collect(),
                );
                o.insert(
                    "hosts".into(),
                    g.hosts
                        .iter()
                        .filter(|h| names.contains(h.as_str()))
                        .cloned()
                        .collect(),
                );
                o.insert(
                    "vars".into(),
                    Value::Object(g.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                );
                (g.name.clone(), Value::Object(o))
            })
            .collect();
        serde_json::json!({ "hosts": hosts, "groups": groups })
    }

    /// `sortie inventory --graph`: groups and hosts as a tree, the way `ansible-inventory
    /// --graph` draws it; only groups holding a selected host appear.
    pub fn graph(&self, selected: &[&Host]) -> String {
        let shown = self.shown_groups(selected);
        let names: HashSet<&str> = selected.iter().map(|h| h.name.as_str()).collect();
        let mut out = String::new();
        let mut lines = 0usize;
        // (group, depth); a group under several parents is drawn under each.
        let mut stack: Vec<(&str, usize)> = vec![("all", 0)];
        while let Some((g, d)) = stack.pop() {
            let Some(group) = self.groups.get(g) else {
                continue;
            };
            lines += 1;
            if lines > GRAPH_MAX_LINES {
                out.push_str("  …\n");
                break;
            }
            out.push_str(&graph_line(&format!("@{g}:"), d));
            for h in group.hosts.iter().filter(|h| names.contains(h.as_str())) {
                out.push_str(&graph_line(h, d + 1));
            }
            for c in group.children.iter().rev() {
                if shown.contains(c.as_str()) && d < 64 {
                    stack.push((c, d + 1));
                }
            }
        }
        out
    }

    fn shown_groups<'a>(&'a self, selected: &[&'a Host]) -> HashSet<&'a str> {
        let mut shown: HashSet<&str> = HashSet::from(["all"]);
        for h in selected {
            shown.extend(h.groups.iter().map(String::as_str));
        }
        shown
    }
}

/// Past this many groups drawn, `graph` stops (groups under many parents multiply).
const GRAPH_MAX_LINES: usize = 100_000;

fn graph_line(name: &str, depth: usize) -> String {
    if depth == 0 {
        format!("{name}\n")
    } else {
        format!("{}--{name}\n", "  |".repeat(depth))
    }
}

impl Host {
    /// Everything resolved about this host, as JSON (for `sortie inventory` and reports).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "groups": self.groups,
            "vars": Value::Object(self.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            "ssh": serde_json::to_value(&self.ssh).unwrap_or(Value::Null),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::tests::inv;
    use serde_json::json;

    #[test]
    fn group_members_hold_childrens_hosts_as_ansibles_groups_does() {
        let i = inv(
            "hosts: { lone: {} }\ngroups:\n  web: { hosts: { w1: {}, w2: {} } }\n  prod: { children: [web], hosts: { p1: {} } }\n",
        );
        let g = i.group_members();
        assert_eq!(g["all"], serde_json::json!(["lone", "w1", "w2", "p1"]));
        assert_eq!(g["web"], serde_json::json!(["w1", "w2"]));
        assert_eq!(g["prod"], serde_json::json!(["w1", "w2", "p1"]));
    }

    #[test]
    fn list_json_and_graph() {
        let i = inv(
            "hosts: { lone: {} }\ngroups:\n  web: { hosts: { w1: { address: 10.0.0.1 } }, vars: { role: fe } }\n  prod: { children: [web] }\n  db: { hosts: { d1: {} } }\n",
        );
        let all: Vec<&Host> = i.hosts.iter().collect();
        assert_eq!(
            i.graph(&all),
            "@all:\n  |--@prod:\n  |  |--@web:\n  |  |  |--w1\n  |--@db:\n  |  |--d1\n  |--@ungrouped:\n  |  |--lone\n"
        );
        let web = i.select("web", None).expect("web");
        assert_eq!(
            i.graph(&web),
            "@all:\n  |--@prod:\n  |  |--@web:\n  |  |  |--w1\n"
        );
        let j = i.to_json(&web);
        assert_eq!(j["hosts"]["w1"]["address"], json!("10.0.0.1"));
        assert_eq!(j["hosts"]["w1"]["vars"]["role"], json!("fe"));
        assert_eq!(j["hosts"]["w1"]["groups"], json!(["all", "prod", "web"]));
        assert_eq!(j["groups"]["all"]["children"], json!(["prod"]));
        assert_eq!(j["groups"]["web"]["vars"], json!({"role": "fe"}));
        assert!(j["groups"].get("db").is_none());
    }
}
