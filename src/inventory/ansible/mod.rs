//! Ansible inventories, read as they are: INI (`[group]`, `[group:vars]`, `[group:children]`,
//! host lines with inline `key=value` vars, ranges, `host:port`, `#`/`;` comments, hosts before
//! any section in `ungrouped`), Ansible YAML (`all: { hosts, children, vars }`), and the
//! `group_vars/` and `host_vars/` folders beside them. Values are typed as Ansible's INI reader
//! types them (a Python literal if it is one, else a string).
//!
//! Connection variables become sortie settings: `ansible_host` → address, `ansible_port` →
//! port, `ansible_user` → user, `ansible_ssh_private_key_file` → `ssh.identity_file` (the old
//! `ansible_ssh_host` / `_port` / `_user` spellings too); a `ProxyJump` in
//! `ansible_ssh_common_args` becomes `ssh.jump`. Everything else stays a variable. INI text is
//! registered like any source and every token is placed by line and column for diagnostics.
//!
//! This file holds what both formats share — connection variables, `host:port` names and
//! YAML variable mappings; the INI reader is `ini`, the YAML reader `yaml_groups`, and the
//! `group_vars/` and `host_vars/` folders are read by `var_dirs`. Input is the text or node
//! `load` detected as Ansible; output goes into the `Raw` model for `resolve`.

mod ini;
mod var_dirs;
mod yaml_groups;

pub(crate) use ini::load_ini;
pub(crate) use var_dirs::load_var_dirs;
pub(crate) use yaml_groups::load_yaml;

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{RawGroup, RawHost, resolve_path};
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::yaml::{Node, NodeKind};

// ---------------------------------------------------------------------------------------------
// Connection variables
// ---------------------------------------------------------------------------------------------

/// A variable as read: name, value, and where the value stands.
struct Var {
    key: String,
    value: Value,
    span: Option<Span>,
}

enum Conn {
    Address(String),
    Port(u16),
    User(String),
    IdentityFile(PathBuf),
}

/// The sortie setting an Ansible connection variable stands for, if it is one.
fn connection(var: &Var) -> Result<Option<Conn>, Diagnostic> {
    let text = || match &var.value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    Ok(match var.key.as_str() {
        "ansible_host" | "ansible_ssh_host" => text().map(Conn::Address),
        "ansible_user" | "ansible_ssh_user" => text().map(Conn::User),
        "ansible_ssh_private_key_file" | "ansible_private_key_file" => {
            text().map(|t| Conn::IdentityFile(resolve_path(Path::new(&t), None)))
        }
        "ansible_port" | "ansible_ssh_port" => {
            if var.value.is_null() {
                return Ok(None);
            }
            let port = match &var.value {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            match port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) {
                Some(p) => Some(Conn::Port(p)),
                None => {
                    let shown = match &var.value {
                        Value::String(s) => s.clone(),
                        v => v.to_string(),
                    };
                    return Err(Diagnostic::error(format!(
                        "invalid `{}` value `{shown}`",
                        var.key
                    ))
                    .at_opt(var.span)
                    .label("expected a port number from 1 to 65535")
                    .help(format!("set the SSH port, e.g. `{}=2222`", var.key)));
                }
            }
        }
        _ => None,
    })
}

/// `-o ProxyJump=x`, `-oProxyJump x` or `-J x` inside `ansible_ssh_common_args`.
fn proxy_jump(args: &str) -> Option<String> {
    let words = shlex::split(args)?;
    let mut it = words.iter().peekable();
    while let Some(w) = it.next() {
        if w == "-J" {
            return it.next().cloned();
        }
        let opt = if w == "-o" {
            it.next().map(String::as_str)
        } else {
            w.strip_prefix("-o")
        };
        if let Some(o) = opt {
            let (k, v) = o
                .split_once('=')
                .or_else(|| o.split_once(' '))
                .unwrap_or((o, ""));
            if k.trim().eq_ignore_ascii_case("proxyjump") {
                let v = if v.trim().is_empty() {
                    it.next().cloned().unwrap_or_default()
                } else {
                    v.trim().to_string()
                };
                return Some(v).filter(|v| !v.is_empty());
            }
        }
    }
    None
}

fn jump_of(var: &Var) -> Option<String> {
    match (var.key.as_str(), &var.value) {
        ("ansible_ssh_common_args" | "ansible_ssh_extra_args", Value::String(s)) => proxy_jump(s),
        _ => None,
    }
}

fn apply_host_var(h: &mut RawHost, var: Var, diags: &mut Diagnostics) {
    match connection(&var) {
        Ok(Some(Conn::Address(a))) => h.address = Some(a),
        Ok(Some(Conn::Port(p))) => h.port = Some(p),
        Ok(Some(Conn::User(u))) => h.user = Some(u),
        Ok(Some(Conn::IdentityFile(p))) => h.ssh.identity_file = Some(p),
        Ok(None) => {
            if let Some(j) = jump_of(&var) {
                h.ssh.jump = Some(j);
            }
            h.vars.insert(var.key, var.value);
        }
        Err(d) => diags.push(d),
    }
}

/// Group level: user, port and key file become the group's SSH settings; `ansible_host`
/// (meaningless for a group) stays a variable.
fn apply_group_var(g: &mut RawGroup, var: Var, diags: &mut Diagnostics) {
    match connection(&var) {
        Ok(Some(Conn::Port(p))) => g.ssh.port = Some(p),
        Ok(Some(Conn::User(u))) => g.ssh.user = Some(u),
        Ok(Some(Conn::IdentityFile(p))) => g.ssh.identity_file = Some(p),
        Ok(Some(Conn::Address(_)) | None) => {
            if let Some(j) = jump_of(&var) {
                g.ssh.jump = Some(j);
            }
            g.vars.insert(var.key, var.value);
        }
        Err(d) => diags.push(d),
    }
}

// ---------------------------------------------------------------------------------------------
// Host names and variable mappings, as both formats write them
// ---------------------------------------------------------------------------------------------

/// `host:2222` → (`host`, 2222). Colons inside `[a:b]` ranges, and IPv6 addresses (several
/// colons), are not ports. Errors are (label, column offset, length) within the token.
#[allow(clippy::type_complexity)]
fn split_port(tok: &str) -> Result<(&str, Option<u16>), (String, u32, u32)> {
    let mut depth = 0usize;
    let mut colons = Vec::new();
    for (i, c) in tok.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    let [at] = colons[..] else {
        return Ok((tok, None));
    };
    let (name, port) = (&tok[..at], &tok[at + 1..]);
    let off = u32::try_from(tok[..at].chars().count() + 1).unwrap_or(0);
    let len = u32::try_from(port.chars().count()).unwrap_or(0);
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((name, Some(p))),
        _ => Err((
            format!("`{port}` is not a port number from 1 to 65535"),
            off,
            len,
        )),
    }
}

/// The variables of a YAML mapping (`vars:`, a host's value, a vars file), each placed at its
/// value; anything but a mapping or nothing is reported.
fn yaml_vars(node: &Node, diags: &mut Diagnostics) -> Vec<Var> {
    match &node.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .map(|(k, v)| Var {
                key: k.key_text(),
                value: v.to_json(),
                span: Some(v.span),
            })
            .collect(),
        _ if node.is_null() => Vec::new(),
        _ => {
            diags.push(
                Diagnostic::error(format!(
                    "expected a mapping of variables, found {}",
                    node.describe()
                ))
                .at(node.span)
                .label("expected `name: value` pairs")
                .help("write variables as a mapping: `vars: { http_port: 8080 }`"),
            );
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_jump_forms() {
        assert_eq!(proxy_jump("-o ProxyJump=b1").as_deref(), Some("b1"));
        assert_eq!(
            proxy_jump("-oProxyJump=u@b:22 -v").as_deref(),
            Some("u@b:22")
        );
        assert_eq!(proxy_jump("-J b2").as_deref(), Some("b2"));
        assert_eq!(proxy_jump("-o StrictHostKeyChecking=no"), None);
    }
}
