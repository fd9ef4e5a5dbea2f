//! Ansible YAML inventories: top-level keys are groups (usually just `all`), each with
//! `hosts` (name → variables), `children` (name → group) and `vars`.
//!
//! Input is the node `load` detected as Ansible YAML; output goes into `Raw`, connection
//! variables through the parent module's `apply_host_var` / `apply_group_var`.

use serde::Deserialize;
use serde_json::Value;

use super::{Var, apply_group_var, apply_host_var, split_port, yaml_vars};
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::inventory::{Raw, bad_group_name, expand_host_name, group_name_error, inside, native};
use crate::yaml::{self, Node, NodeKind, RawNode};

/// One group of an Ansible YAML inventory.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnsGroup {
    #[serde(default)]
    hosts: Option<RawNode>,
    #[serde(default)]
    children: Option<RawNode>,
    #[serde(default)]
    vars: Option<RawNode>,
}

/// Reads an Ansible YAML inventory: top-level keys are groups (usually just `all`).
pub(crate) fn load_yaml(root: &Node, raw: &mut Raw, diags: &mut Diagnostics) {
    for (k, v) in root.as_map().unwrap_or(&[]) {
        yaml_group(k, v, None, raw, diags, 0);
    }
}

fn yaml_group(
    key: &Node,
    node: &Node,
    parent: Option<&str>,
    raw: &mut Raw,
    diags: &mut Diagnostics,
    depth: usize,
) {
    let name = key.key_text();
    if let Some(label) = bad_group_name(&name) {
        diags.push(group_name_error(&name, label, Some(key.span)));
        return;
    }
    raw.define_group(&name, Some(key.span));
    if let Some(p) = parent {
        raw.add_child(p, &name, Some(key.span));
    }
    let def: AnsGroup = match yaml::decode(node) {
        Ok(d) => d,
        Err(e) => {
            diags.push(native::decode_error(e));
            return;
        }
    };
    if let Some(RawNode(hosts)) = &def.hosts {
        match &hosts.kind {
            NodeKind::Map(entries) => {
                for (hk, hv) in entries {
                    yaml_host(hk, hv, &name, raw, diags);
                }
            }
            _ if hosts.is_null() => {}
            _ => diags.push(
                Diagnostic::error(format!(
                    "expected a mapping of hosts, found {}",
                    hosts.describe()
                ))
                .at(hosts.span)
                .label("expected `name:` entries")
                .help("in an Ansible YAML inventory, `hosts` maps each host name to its variables (or to nothing)"),
            ),
        }
    }
    if let Some(RawNode(vars)) = &def.vars {
        for var in yaml_vars(vars, diags) {
            apply_group_var(raw.group(&name), var, diags);
        }
    }
    if let Some(RawNode(children)) = &def.children {
        match &children.kind {
            NodeKind::Map(entries) if depth < yaml::MAX_DEPTH => {
                for (ck, cv) in entries {
                    yaml_group(ck, cv, Some(&name), raw, diags, depth + 1);
                }
            }
            _ if children.is_null() => {}
            _ => diags.push(
                Diagnostic::error(format!(
                    "expected a mapping of groups, found {}",
                    children.describe()
                ))
                .at(children.span)
                .label("expected `group:` entries")
                .help("in an Ansible YAML inventory, `children` maps each child group's name to its definition (or to nothing)"),
            ),
        }
    }
}

fn yaml_host(key: &Node, value: &Node, group: &str, raw: &mut Raw, diags: &mut Diagnostics) {
    let text = key.key_text();
    // YAML reads `1234:` as a number (and `yes:` as a boolean): Ansible refuses such a host.
    if let v @ (Value::Number(_) | Value::Bool(_) | Value::Null) = super::yaml11_json(key) {
        let what = match v {
            Value::Number(_) => "a number",
            Value::Bool(_) => "a boolean",
            _ => "null",
        };
        diags.push(
            Diagnostic::error(format!("host name `{text}` is not a string"))
                .at(key.span)
                .label(format!("YAML reads this as {what}, and Ansible refuses it"))
                .help(format!("enclose it in quotation marks: `\"{text}\":`")),
        );
        return;
    }
    let (name, port) = match split_port(&text) {
        Ok(p) => p,
        Err((label, at, len)) => {
            let at = usize::try_from(at).unwrap_or(0);
            let len = usize::try_from(len).unwrap_or(0);
            diags.push(
                Diagnostic::error(format!("invalid port in host `{text}`"))
                    .at_opt(inside(key, at, len))
                    .label(label)
                    .help("write `host:port` with a port from 1 to 65535, or set `ansible_port`"),
            );
            return;
        }
    };
    let names = match expand_host_name(name, raw.hosts.len(), |s, l| inside(key, s, l)) {
        Ok(n) => n,
        Err(d) => {
            diags.push(d);
            return;
        }
    };
    let vars = if value.is_null() || value.as_map().is_some() {
        yaml_vars(value, diags)
    } else {
        diags.push(
            Diagnostic::error(format!(
                "expected a mapping of host variables, found {}",
                value.describe()
            ))
            .at(value.span)
            .label("expected `name: value` pairs, or nothing")
            .help("in an Ansible YAML inventory, a host maps to its variables: `web1: { ansible_host: 10.0.0.1 }`"),
        );
        return;
    };
    let vars: Vec<(String, Value, Option<Span>)> =
        vars.into_iter().map(|v| (v.key, v.value, v.span)).collect();
    for n in names {
        let h = raw.host(&n, Some(key.span));
        h.ansible = true;
        if let Some(p) = port {
            h.vars.insert("ansible_port".into(), Value::from(p));
        }
        for (k, v, s) in &vars {
            let var = Var {
                key: k.clone(),
                value: v.clone(),
                span: *s,
            };
            apply_host_var(h, var, diags);
        }
        raw.add_member(group, &n);
    }
}

#[cfg(test)]
mod tests {
    use crate::inventory::tests::err;
    use serde_json::json;

    #[test]
    fn ansible_yaml_inventory() {
        let i = crate::inventory::tests::inv(
            "all:\n  hosts:\n    mail.example.com:\n  vars:\n    ntp: ntp.example.com\n  children:\n    web:\n      hosts:\n        web[1:2].example.com:\n          http_port: 80\n        canary:2222:\n          ansible_host: 10.0.0.9\n          ansible_user: ops\n      vars: { ansible_port: 2200 }\n    prod:\n      children:\n        web:\n",
        );
        let names: Vec<&str> = i.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "mail.example.com",
                "web1.example.com",
                "web2.example.com",
                "canary"
            ]
        );
        let mail = i.host("mail.example.com").expect("mail");
        assert_eq!(mail.groups, ["all", "ungrouped"]);
        assert_eq!(mail.vars["ntp"], json!("ntp.example.com"));
        let w1 = i.host("web1.example.com").expect("w1");
        assert_eq!(w1.port, Some(2200));
        assert_eq!(w1.vars["http_port"], json!(80));
        assert_eq!(w1.groups, ["all", "prod", "web"]);
        let c = i.host("canary").expect("canary");
        assert_eq!((c.address.as_str(), c.port), ("10.0.0.9", Some(2222)));
        assert_eq!(c.user.as_deref(), Some("ops"));
        // Listed under `all:` in the file, so `web` is a child of `all` as well as of `prod`.
        assert_eq!(i.groups["all"].children, ["web", "prod", "ungrouped"]);
        assert_eq!(i.groups["web"].parents, ["all", "prod"]);
    }

    #[test]
    fn ansible_yaml_errors() {
        let d = err(
            "a.yml",
            "all:\n  children:\n    web:\n      host: { w1: }\n",
        );
        assert_eq!(d[0].title, "unknown key `host`");
        assert_eq!(d[0].label, "did you mean `hosts`?");
        let d = err("b.yml", "all:\n  hosts: [w1, w2]\n");
        assert_eq!(d[0].title, "expected a mapping of hosts, found a list");
        let d = err("c.yml", "all:\n  hosts:\n    w1: just-a-string\n");
        assert_eq!(
            d[0].title,
            "expected a mapping of host variables, found a string"
        );
        let d = err("d.yml", "all:\n  hosts:\n    w1: { ansible_port: many }\n");
        assert_eq!(d[0].title, "invalid `ansible_port` value `many`");
        assert_eq!(d[0].span.map(|s| (s.line, s.col)), Some((3, 25)));
    }
}
