//! sortie's own inventory format (DESIGN.md "Inventory"): top-level `ssh`, `vars`, `groups`
//! and `hosts`. The structs here are the format's schema (their doc comments become the JSON
//! Schema's descriptions) and are decoded strictly from the YAML tree — unknown keys get a
//! "did you mean". Host and group maps are walked node by node so every host name keeps its
//! place (for range errors and `Host::span`); what is read goes into the shared `Raw` model.

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

use super::{
    Raw, SshSettings, bad_group_name, de_port, expand_host_name, group_name_error, inside,
};
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::yaml::{self, Node, NodeKind, RawNode};

/// A sortie inventory: SSH settings and variables for every host, groups of hosts (with
/// children groups, variables and SSH settings), and hosts that belong to no group.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "sortie inventory")]
pub struct InventoryFile {
    /// SSH settings for every host; a group's or a host's own settings override them key by key.
    #[serde(default)]
    pub ssh: Option<SshSettings>,
    /// Variables every host sees (the `all` group's vars), at the lowest precedence: group
    /// vars, then host vars, then play vars override them.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub vars: Option<RawNode>,
    /// Groups by name. A host may be in several groups; groups without a parent are children of
    /// `all`.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, GroupDef>>")]
    pub groups: Option<RawNode>,
    /// Hosts by name that need no group (they form `ungrouped` unless a group lists them).
    /// Names may hold ranges: `web[01:20].example.com`, `db-[a:c]`, `node[1:9:2]`.
    #[serde(default)]
    #[schemars(with = "Option<HostsSchema>")]
    pub hosts: Option<RawNode>,
}

/// One group: its hosts, its child groups, its variables and SSH settings.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupDef {
    /// Hosts of this group: a mapping of host name to its settings (`{}` for none), or a list
    /// of names of hosts defined elsewhere. Names may hold ranges: `web[01:20].example.com`.
    #[serde(default)]
    #[schemars(with = "Option<HostsSchema>")]
    pub hosts: Option<RawNode>,
    /// Names of groups whose hosts also belong to this group. A child's vars override this
    /// group's.
    #[serde(default)]
    #[schemars(with = "Option<ChildrenSchema>")]
    pub children: Option<RawNode>,
    /// Variables of this group's hosts: they override `all` vars and parent groups' vars, and
    /// host vars override them. Groups at the same depth apply in name order.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub vars: Option<RawNode>,
    /// SSH settings for this group's hosts, overriding the inventory's.
    #[serde(default)]
    pub ssh: Option<SshSettings>,
}

/// One host: where to connect and how, and its own variables.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostDef {
    /// IP address or DNS name to connect to (default: the host's name).
    #[serde(default)]
    pub address: Option<String>,
    /// SSH port (default: the group's or inventory's `ssh.port`, else 22).
    #[serde(default, deserialize_with = "de_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Login user (default: the group's or inventory's `ssh.user`).
    #[serde(default)]
    pub user: Option<String>,
    /// Host to connect through (like `ssh -J`): an inventory host name or `user@host:port`.
    /// Same as `ssh.jump`.
    #[serde(default)]
    pub jump: Option<String>,
    /// SSH settings for this host, overriding its groups' and the inventory's.
    #[serde(default)]
    pub ssh: Option<SshSettings>,
    /// Variables of this host: the highest precedence in the inventory.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub vars: Option<RawNode>,
}

/// Hosts: a mapping of host name to settings, or a list of names (schema only).
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum HostsSchema {
    Map(BTreeMap<String, Option<HostDef>>),
    List(Vec<String>),
}

/// Child groups: a list of group names, or (Ansible style) a mapping of names to nothing
/// (schema only).
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ChildrenSchema {
    List(Vec<String>),
    Map(BTreeMap<String, ()>),
}

/// Reads a native inventory tree into `raw`. Relative SSH paths are resolved against `base`.
pub(crate) fn load(root: &Node, base: &Path, raw: &mut Raw, diags: &mut Diagnostics) {
    if root.is_null() {
        return;
    }
    if root.as_map().is_none() {
        diags.push(
            Diagnostic::error(format!(
                "expected a mapping at the top of the inventory, found {}",
                root.describe()
            ))
            .at(root.span)
            .label("expected `ssh`, `vars`, `groups` or `hosts` here")
            .help("an inventory is a mapping: `groups: { web: { hosts: { web1: {} } } }`"),
        );
        return;
    }
    let file: InventoryFile = match yaml::decode(root) {
        Ok(f) => f,
        Err(e) => {
            diags.push(decode_error(e));
            return;
        }
    };
    if let Some(mut ssh) = file.ssh {
        ssh.resolve_paths(base);
        raw.group("all").ssh.merge(&ssh);
    }
    if let Some(RawNode(v)) = &file.vars {
        match vars_map(v) {
            Ok(m) => raw.group("all").vars.extend(m),
            Err(d) => diags.push(d),
        }
    }
    // Hosts and groups in the order the file gives them, so hosts keep the file's order.
    for (k, _) in root.as_map().unwrap_or(&[]) {
        match (k.key_text().as_str(), &file.groups, &file.hosts) {
            ("groups", Some(RawNode(groups)), _) => match &groups.kind {
                NodeKind::Map(entries) => {
                    for (k, v) in entries {
                        group(k, v, base, raw, diags);
                    }
                }
                _ if groups.is_null() => {}
                _ => diags.push(expected_mapping(
                    groups,
                    "groups",
                    "`groups: { web: { hosts: { web1: {} } } }`",
                )),
            },
            ("hosts", _, Some(RawNode(hosts))) => {
                host_entries(hosts, "ungrouped", base, raw, diags);
            }
            _ => {}
        }
    }
}

fn group(key: &Node, value: &Node, base: &Path, raw: &mut Raw, diags: &mut Diagnostics) {
    let name = key.key_text();
    if let Some(label) = bad_group_name(&name) {
        diags.push(group_name_error(&name, label, Some(key.span)));
        return;
    }
    raw.define_group(&name, Some(key.span));
    let def: GroupDef = match yaml::decode(value) {
        Ok(d) => d,
        Err(e) => {
            diags.push(decode_error(e));
            return;
        }
    };
    if let Some(RawNode(hosts)) = &def.hosts {
        host_entries(hosts, &name, base, raw, diags);
    }
    if let Some(RawNode(children)) = &def.children {
        for (child, span) in child_names(children, diags) {
            raw.add_child(&name, &child, Some(span));
        }
    }
    if let Some(RawNode(v)) = &def.vars {
        match vars_map(v) {
            Ok(m) => raw.group(&name).vars.extend(m),
            Err(d) => diags.push(d),
        }
    }
    if let Some(mut ssh) = def.ssh {
        ssh.resolve_paths(base);
        raw.group(&name).ssh.merge(&ssh);
    }
}

/// `children: [a, b]` (or, as Ansible users write it, `children: { a: , b: }`).
fn child_names(node: &Node, diags: &mut Diagnostics) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    match &node.kind {
        NodeKind::Seq(items) => {
            for item in items {
                match &item.kind {
                    NodeKind::Scalar { text, .. } if !item.is_null() => {
                        out.push((text.clone(), item.span));
                    }
                    _ => diags.push(
                        Diagnostic::error(format!(
                            "expected a group name, found {}",
                            item.describe()
                        ))
                        .at(item.span)
                        .label("expected the name of a group")
                        .help("`children` lists group names: `children: [web, db]`"),
                    ),
                }
            }
        }
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                if v.is_null() || v.as_map().is_some_and(<[_]>::is_empty) {
                    out.push((k.key_text(), k.span));
                } else {
                    diags.push(
                        Diagnostic::error("a group cannot be defined inside `children`")
                            .at(v.span)
                            .label(format!("define `{}` under `groups:` instead", k.key_text()))
                            .help("`children` lists group names: `children: [web, db]`"),
                    );
                }
            }
        }
        _ if node.is_null() => {}
        _ => diags.push(expected_list(node)),
    }
    out
}

fn expected_list(node: &Node) -> Diagnostic {
    Diagnostic::error(format!(
        "expected a list of group names, found {}",
        node.describe()
    ))
    .at(node.span)
    .label("expected a list")
    .help("`children` lists group names: `children: [web, db]`")
}

/// A group's (or the top level's) `hosts`: a mapping of name → settings, or a list of names.
fn host_entries(node: &Node, group: &str, base: &Path, raw: &mut Raw, diags: &mut Diagnostics) {
    match &node.kind {
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                let names = match expand_host_name(&k.key_text(), raw.hosts.len(), |s, l| {
                    inside(k, s, l)
                }) {
                    Ok(n) => n,
                    Err(d) => {
                        diags.push(d);
                        continue;
                    }
                };
                let def: HostDef = match yaml::decode(v) {
                    Ok(d) => d,
                    Err(e) => {
                        diags.push(decode_error(e));
                        continue;
                    }
                };
                let vars = match def.vars.as_ref().map(|RawNode(n)| vars_map(n)) {
                    Some(Ok(m)) => m,
                    Some(Err(d)) => {
                        diags.push(d);
                        IndexMap::new()
                    }
                    None => IndexMap::new(),
                };
                if let Some(a) = def.address.as_deref()
                    && a.trim().is_empty()
                {
                    let at = v.get("address").map_or(v.span, |n| n.span);
                    diags.push(
                        Diagnostic::error("empty host address")
                            .at(at)
                            .label("`address` cannot be empty")
                            .help("give an IP address or DNS name, or leave `address` out to use the host's name"),
                    );
                    continue;
                }
                let mut ssh = def.ssh.clone().unwrap_or_default();
                ssh.resolve_paths(base);
                for name in names {
                    let h = raw.host(&name, Some(k.span));
                    if def.address.is_some() {
                        h.address.clone_from(&def.address);
                    }
                    if def.port.is_some() {
                        h.port = def.port;
                    }
                    if def.user.is_some() {
                        h.user.clone_from(&def.user);
                    }
                    h.ssh.merge(&ssh);
                    if def.jump.is_some() {
                        h.ssh.jump.clone_from(&def.jump);
                    }
                    h.vars
                        .extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
                    raw.add_member(group, &name);
                }
            }
        }
        NodeKind::Seq(items) => {
            for item in items {
                let Some(text) = item.as_str().filter(|_| !item.is_null()) else {
                    diags.push(
                        Diagnostic::error(format!("expected a host name, found {}", item.describe()))
                            .at(item.span)
                            .label("expected the name of a host")
                            .help("list host names (`hosts: [web1, web2]`), or map names to settings (`hosts: { web1: { port: 2222 } }`)"),
                    );
                    continue;
                };
                match expand_host_name(text, raw.hosts.len(), |s, l| inside(item, s, l)) {
                    Ok(names) => {
                        for name in names {
                            raw.host(&name, Some(item.span));
                            raw.add_member(group, &name);
                        }
                    }
                    Err(d) => diags.push(d),
                }
            }
        }
        _ if node.is_null() => {}
        _ => diags.push(expected_mapping(
            node,
            "hosts",
            "`hosts: { web1: {}, web2: { address: 10.0.0.2 } }`",
        )),
    }
}

fn expected_mapping(node: &Node, key: &str, example: &str) -> Diagnostic {
    Diagnostic::error(format!(
        "expected a mapping for `{key}`, found {}",
        node.describe()
    ))
    .at(node.span)
    .label("expected a mapping")
    .help(format!("write e.g. {example}"))
}

/// A decoding error as a diagnostic that always has a label and a help line.
pub(crate) fn decode_error(e: yaml::DeError) -> Diagnostic {
    let mut d = e.into_diagnostic();
    if d.label.is_empty() {
        d.label = "invalid value".into();
    }
    if d.help.is_none() {
        d.help = Some("every key of the format and its type: `sortie schema inventory`".into());
    }
    d
}

/// A `vars:` mapping as JSON values (YAML 1.2 core schema), in file order.
pub(crate) fn vars_map(node: &Node) -> Result<IndexMap<String, Value>, Diagnostic> {
    match &node.kind {
        NodeKind::Map(entries) => Ok(entries
            .iter()
            .map(|(k, v)| (k.key_text(), v.to_json()))
            .collect()),
        _ if node.is_null() => Ok(IndexMap::new()),
        _ => Err(Diagnostic::error(format!(
            "expected a mapping of variables, found {}",
            node.describe()
        ))
        .at(node.span)
        .label("expected `name: value` pairs")
        .help("write variables as a mapping: `vars: { env: prod, http_port: 8080 }`")),
    }
}

#[cfg(test)]
mod tests {
    use crate::inventory::tests::{err, inv};
    use serde_json::json;

    #[test]
    fn design_example_loads() {
        let i = inv(r#"
ssh: { user: deploy, identity_file: ~/.ssh/id_ed25519, known_hosts: ./known_hosts,
       host_key_checking: strict, connect_timeout: 10s }
vars: { env: prod }
groups:
  web:
    hosts:
      web[01:20].example.com: {}
      canary: { address: 10.0.0.9, port: 2222 }
    vars: { role: frontend }
  db: { hosts: { db1: { address: 10.0.0.21, jump: bastion } } }
  prod: { children: [web, db] }
"#);
        assert_eq!(i.hosts.len(), 22);
        assert_eq!(i.hosts[0].name, "web01.example.com");
        assert_eq!(i.hosts[0].address, "web01.example.com");
        assert_eq!(i.hosts[19].name, "web20.example.com");
        let canary = i.host("canary").expect("canary");
        assert_eq!(
            (canary.address.as_str(), canary.port),
            ("10.0.0.9", Some(2222))
        );
        assert_eq!(canary.user.as_deref(), Some("deploy"));
        assert_eq!(canary.vars["role"], json!("frontend"));
        assert_eq!(canary.vars["env"], json!("prod"));
        let kh = canary.ssh.known_hosts.as_ref().expect("known_hosts");
        assert!(kh.is_absolute() && kh.ends_with("known_hosts"), "{kh:?}");
        let id = canary.ssh.identity_file.as_ref().expect("identity");
        assert!(!id.starts_with("~"), "{id:?}");
        let db1 = i.host("db1").expect("db1");
        assert_eq!(db1.ssh.jump.as_deref(), Some("bastion"));
        assert_eq!(db1.groups, ["all", "prod", "db"]);
        let span = canary.span.expect("span");
        assert_eq!((span.line, span.col), (9, 7));
    }

    #[test]
    fn same_host_in_several_groups_is_one_host() {
        let i = inv(
            "groups:\n  web: { hosts: { h1: { port: 2222, vars: { a: 1 } } } }\n  db: { hosts: { h1: { vars: { b: 2 } } } }\n",
        );
        assert_eq!(i.hosts.len(), 1);
        let h = &i.hosts[0];
        assert_eq!(h.port, Some(2222));
        assert_eq!(h.vars["a"], json!(1));
        assert_eq!(h.vars["b"], json!(2));
        assert_eq!(h.groups, ["all", "db", "web"]);
        assert_eq!(i.groups["web"].hosts, ["h1"]);
        assert_eq!(i.groups["db"].hosts, ["h1"]);
        assert_eq!(h.span.map(|s| s.line), Some(2));
    }

    #[test]
    fn host_lists_and_null_entries() {
        let i = inv("hosts:\n  a:\n  b: {}\ngroups:\n  g: { hosts: [a, 'c[1:2]'] }\n");
        let names: Vec<&str> = i.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c1", "c2"]);
        assert_eq!(i.groups["ungrouped"].hosts, ["b"]);
        assert_eq!(i.groups["g"].hosts, ["a", "c1", "c2"]);
    }

    #[test]
    fn unknown_host_key_suggests() {
        let d = err("u.yml", "hosts:\n  h1: { adress: 10.0.0.1 }\n");
        assert_eq!(d[0].title, "unknown key `adress`");
        assert_eq!(d[0].label, "did you mean `address`?");
        let s = d[0].span.expect("span");
        assert_eq!((s.line, s.col), (2, 9));
    }

    #[test]
    fn unknown_top_level_and_group_keys_suggest() {
        let d = err("t.yml", "group:\n  web: {}\n");
        assert_eq!(d[0].title, "unknown key `group`");
        assert_eq!(d[0].label, "did you mean `groups`?");
        let d = err("g.yml", "groups:\n  web: { host: { w1: {} } }\n");
        assert_eq!(d[0].title, "unknown key `host`");
        assert_eq!(d[0].label, "did you mean `hosts`?");
        let d = err("s.yml", "ssh: { identity: ~/.ssh/id }\n");
        assert_eq!(d[0].title, "unknown key `identity`");
        assert_eq!(d[0].label, "did you mean `identity_file`?");
    }

    #[test]
    fn bad_values_are_located() {
        let d = err("p.yml", "hosts:\n  h1: { port: 70000 }\n");
        assert_eq!(
            d[0].title,
            "port 70000 is out of range: expected a port from 1 to 65535"
        );
        assert_eq!(d[0].span.map(|s| (s.line, s.col)), Some((2, 15)));
        let d = err("k.yml", "ssh: { host_key_checking: acept-new }\n");
        assert_eq!(d[0].title, "unknown value `acept-new`");
        assert_eq!(d[0].label, "did you mean `accept-new`?");
        let d = err("d.yml", "ssh: { connect_timeout: soon }\n");
        assert_eq!(d[0].span.map(|s| (s.line, s.col)), Some((1, 25)));
        let d = err("v.yml", "vars: [a, b]\n");
        assert_eq!(d[0].title, "expected a mapping of variables, found a list");
        let d = err("a.yml", "hosts:\n  h1: { address: '' }\n");
        assert_eq!(d[0].title, "empty host address");
        let d = err("top.yml", "- a\n- b\n");
        assert_eq!(
            d[0].title,
            "expected a mapping at the top of the inventory, found a list"
        );
    }

    #[test]
    fn range_errors_point_inside_the_name() {
        let d = err(
            "r.yml",
            "groups:\n  web:\n    hosts:\n      web[5:1].lab: {}\n",
        );
        assert_eq!(d[0].title, "invalid host range `[5:1]`");
        assert_eq!(d[0].label, "`5` comes after `1`");
        let s = d[0].span.expect("span");
        assert_eq!((s.line, s.col, s.end_col), (4, 10, 15));
        let d = err("q.yml", "hosts:\n  \"db[a:3]\": {}\n");
        assert_eq!(d[0].title, "invalid host range `[a:3]`");
        let s = d[0].span.expect("span");
        assert_eq!((s.line, s.col, s.end_col), (2, 6, 11));
        let d = err("n.yml", "hosts: { 'a b': {} }\n");
        assert_eq!(d[0].title, "invalid host name `a b`");
        assert_eq!(d[0].label, "host names cannot contain spaces");
    }

    #[test]
    fn bad_group_names_and_children() {
        let d = err("g.yml", "groups: { 'a:b': {} }\n");
        assert_eq!(d[0].title, "invalid group name `a:b`");
        assert_eq!(d[0].label, "`:` cannot appear in a group name");
        let d = err(
            "c.yml",
            "groups: { a: { children: { b: { hosts: {} } } } }\n",
        );
        assert_eq!(d[0].title, "a group cannot be defined inside `children`");
        let d = err("c2.yml", "groups: { a: { children: web } }\n");
        assert_eq!(d[0].title, "expected a list of group names, found a string");
        let i = inv("groups: { a: { children: { b: } }, b: { hosts: [h] } }\n");
        assert_eq!(i.groups["a"].children, ["b"]);
    }

    #[test]
    fn all_errors_are_collected() {
        let d = err(
            "many.yml",
            "groups:\n  a: { hosts: { 'x[2:1]': {} } }\n  b: { hosts: { y: { prot: 1 } } }\n  c: { children: [zz] }\n",
        );
        let titles: Vec<&str> = d.iter().map(|d| d.title.as_str()).collect();
        assert_eq!(titles, ["invalid host range `[2:1]`", "unknown key `prot`"]);
    }
}
