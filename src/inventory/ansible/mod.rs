//! Ansible inventories, read as they are: INI (`[group]`, `[group:vars]`, `[group:children]`,
//! host lines with inline `key=value` vars, ranges, `host:port`, `#`/`;` comments, hosts before
//! any section in `ungrouped`), Ansible YAML (`all: { hosts, children, vars }`), and the
//! `group_vars/` and `host_vars/` folders beside them. Values are typed as Ansible's INI reader
//! types them (a Python literal if it is one, else a string).
//!
//! Connection variables become sortie settings: `ansible_host` → address, `ansible_port` →
//! port, `ansible_user` → user, `ansible_ssh_private_key_file` → `ssh.identity_file` (the old
//! `ansible_ssh_host` / `_port` / `_user` spellings too); a `ProxyJump` (`-J`) or a
//! `ProxyCommand` in `ansible_ssh_common_args` / `_extra_args` becomes `ssh.jump` or
//! `ssh.proxy_command`, whichever comes first, as ssh reads them. Everything else stays a variable. INI text is
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

/// How ssh's arguments say to reach the host, when they do.
#[derive(Debug, PartialEq)]
enum Proxy {
    /// `-J x`, `-o ProxyJump=x`.
    Jump(String),
    /// `-o ProxyCommand=…`.
    Command(String),
}

/// The first of `-o ProxyJump=x`, `-oProxyJump x`, `-J x` and `-o ProxyCommand=…` inside
/// `ansible_ssh_common_args` (ssh keeps the first it reads of the two).
fn proxy(args: &str) -> Option<Proxy> {
    let words = shlex::split(args)?;
    let mut it = words.iter().peekable();
    while let Some(w) = it.next() {
        if w == "-J" {
            return it.next().cloned().map(Proxy::Jump);
        }
        let opt = if w == "-o" {
            it.next().map(String::as_str)
        } else {
            w.strip_prefix("-o")
        };
        let Some(o) = opt else { continue };
        let (k, v) = o
            .split_once('=')
            .or_else(|| o.split_once(' '))
            .unwrap_or((o, ""));
        let k = k.trim().to_ascii_lowercase();
        if k != "proxyjump" && k != "proxycommand" {
            continue;
        }
        let v = if v.trim().is_empty() {
            it.next().cloned().unwrap_or_default()
        } else {
            v.trim().to_string()
        };
        if v.is_empty() {
            return None;
        }
        return Some(if k == "proxyjump" {
            Proxy::Jump(v)
        } else {
            Proxy::Command(v)
        });
    }
    None
}

/// Checks one variable as it is read (a bad port) and keeps it: connection variables stay
/// variables until `resolve` has merged them, as Ansible merges them, and then become the
/// host's settings (`connection_settings`).
fn check_var(var: &Var, diags: &mut Diagnostics) -> bool {
    if let Err(d) = connection(var) {
        diags.push(d);
        return false;
    }
    true
}

fn apply_host_var(h: &mut RawHost, var: Var, diags: &mut Diagnostics) {
    h.ansible = true;
    if check_var(&var, diags) {
        h.vars.insert(var.key, var.value);
    }
}

/// A group variable of an inventory file. `ansible_group_priority` is not a variable: it
/// orders groups of equal depth (Ansible's default is 1), as Ansible reads it.
fn apply_group_var(g: &mut RawGroup, var: Var, diags: &mut Diagnostics) {
    if var.key == "ansible_group_priority" {
        let p = match &var.value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        if let Some(p) = p {
            g.priority = Some(p);
            return;
        }
    }
    if check_var(&var, diags) {
        g.vars.insert(var.key, var.value);
    }
}

/// A group variable of a `group_vars/` file: these apply after every inventory file's group
/// variables (Ansible's `groups_plugins_inventory` comes after `groups_inventory`).
fn apply_group_dir_var(g: &mut RawGroup, var: Var, diags: &mut Diagnostics) {
    if check_var(&var, diags) {
        g.dir_vars.insert(var.key, var.value);
    }
}

/// The connection a host's merged Ansible variables describe; the variables that became
/// settings (address, port, user, key file) are taken out of `vars`, the rest stay.
#[derive(Default)]
pub(crate) struct ConnVars {
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    pub jump: Option<String>,
    /// `-o ProxyCommand=…` in the ssh arguments.
    pub proxy_command: Option<String>,
    /// `ansible_connection: local`: run on the runner, never over SSH.
    pub local: bool,
}

/// Reads (and removes) the connection variables of a host's merged vars. When both spellings
/// are set, `ansible_ssh_host` beats `ansible_host` (and so on), as in Ansible's ssh plugin,
/// where the last of an option's variables that is set wins.
pub(crate) fn connection_settings(vars: &mut indexmap::IndexMap<String, Value>) -> ConnVars {
    let mut c = ConnVars::default();
    for key in [
        "ansible_host",
        "ansible_ssh_host",
        "ansible_port",
        "ansible_ssh_port",
        "ansible_user",
        "ansible_ssh_user",
        "ansible_private_key_file",
        "ansible_ssh_private_key_file",
    ] {
        let Some(value) = vars.shift_remove(key) else {
            continue;
        };
        let var = Var {
            key: key.to_string(),
            value,
            span: None,
        };
        match connection(&var) {
            Ok(Some(Conn::Address(a))) => c.address = Some(a),
            Ok(Some(Conn::Port(p))) => c.port = Some(p),
            Ok(Some(Conn::User(u))) => c.user = Some(u),
            Ok(Some(Conn::IdentityFile(p))) => c.identity_file = Some(p),
            // Checked when read; a null value sets nothing.
            Ok(None) | Err(_) => {}
        }
    }
    // ssh's command line has the common arguments before the extra ones; the first
    // ProxyJump or ProxyCommand wins.
    let found = ["ansible_ssh_common_args", "ansible_ssh_extra_args"]
        .iter()
        .find_map(|key| match vars.get(*key) {
            Some(Value::String(s)) => proxy(s),
            _ => None,
        });
    match found {
        Some(Proxy::Jump(j)) => c.jump = Some(j),
        Some(Proxy::Command(p)) => c.proxy_command = Some(p),
        None => {}
    }
    c.local = vars
        .get("ansible_connection")
        .and_then(Value::as_str)
        .is_some_and(|s| s == "local");
    c
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
                value: yaml11_json(v),
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

/// A file Ansible Vault encrypted (`$ANSIBLE_VAULT;1.1;AES256` on its first line), which sortie
/// cannot read: a located error, rather than reading the cipher text as hosts or variables.
pub(crate) fn vault_error(file: crate::diag::FileId, text: &str, what: &str) -> Option<Diagnostic> {
    let first = text.trim_start_matches('\u{feff}').lines().next()?;
    if !first.starts_with("$ANSIBLE_VAULT;") {
        return None;
    }
    let width = u32::try_from(first.trim_end().chars().count()).unwrap_or(1);
    Some(
        Diagnostic::error(format!("this {what} is vault-encrypted, which is not supported"))
            .at(Span::new(file, 1, 1, 1, width.max(1) + 1))
            .label("an Ansible Vault header: sortie cannot decrypt it")
            .help(format!(
                "decrypt it first (`ansible-vault decrypt {}`), or keep secrets out of it: sortie reads passwords from the environment (`password_env`)",
                crate::diag::file_name(file)
            )),
    )
}

// ---------------------------------------------------------------------------------------------
// YAML 1.1, as PyYAML (and so Ansible) reads plain scalars
// ---------------------------------------------------------------------------------------------

/// A YAML node as JSON with plain scalars resolved as YAML 1.1 does (PyYAML's resolver, which
/// Ansible uses): `yes`/`no`/`on`/`off` are booleans, `0644` is octal, `1_000` a number,
/// `1:30` sexagesimal, and `1e3` (no dot) a string.
pub(crate) fn yaml11_json(node: &Node) -> Value {
    match &node.kind {
        NodeKind::Scalar {
            text,
            style: crate::yaml::Style::Plain,
        } => yaml11_plain(text),
        NodeKind::Scalar { text, .. } => Value::String(text.clone()),
        NodeKind::Seq(s) => Value::Array(s.iter().map(yaml11_json).collect()),
        NodeKind::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.key_text(), yaml11_json(v)))
                .collect(),
        ),
    }
}

/// One plain scalar by PyYAML's implicit resolvers: null, bool, int, float, else a string.
fn yaml11_plain(t: &str) -> Value {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    if let Some(i) = yaml11_int(t) {
        return Value::from(i);
    }
    if let Some(n) = yaml11_float(t).and_then(serde_json::Number::from_f64) {
        return Value::Number(n);
    }
    Value::String(t.to_string())
}

fn yaml11_int(t: &str) -> Option<i64> {
    let (neg, rest) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = |s: &str, ok: fn(char) -> bool| {
        !s.is_empty() && s.chars().all(|c| c == '_' || ok(c)) && s.chars().any(ok)
    };
    let clean = |s: &str| s.replace('_', "");
    let v = if let Some(b) = rest.strip_prefix("0b") {
        digits(b, |c| matches!(c, '0' | '1')).then(|| i64::from_str_radix(&clean(b), 2).ok())??
    } else if let Some(h) = rest.strip_prefix("0x") {
        digits(h, |c| c.is_ascii_hexdigit()).then(|| i64::from_str_radix(&clean(h), 16).ok())??
    } else if rest == "0" {
        0
    } else if let Some(o) = rest.strip_prefix('0') {
        digits(o, |c| matches!(c, '0'..='7')).then(|| i64::from_str_radix(&clean(o), 8).ok())??
    } else if rest.contains(':') {
        if rest.contains('.') || !rest.starts_with(|c: char| matches!(c, '1'..='9')) {
            return None;
        }
        sexagesimal(rest)? as i64
    } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
        if !digits(rest, |c| c.is_ascii_digit()) {
            return None;
        }
        clean(rest).parse::<i64>().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

/// `1:30` (90) or `1:30.5`: base-60 parts after the first, each 0 to 59.
fn sexagesimal(t: &str) -> Option<f64> {
    let mut parts = t.split(':');
    let first = parts.next()?.replace('_', "");
    let mut v: f64 = first.parse::<u64>().ok().filter(|_| !first.is_empty())? as f64;
    let rest: Vec<&str> = parts.collect();
    for (i, p) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        let (int, frac) = match p.split_once('.') {
            Some((a, b)) if last => (a, Some(b)),
            _ => (*p, None),
        };
        if int.is_empty() || int.len() > 2 || !int.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let n: u64 = int.parse().ok()?;
        if n > 59 || (int.len() == 2 && int.starts_with(|c| c > '5')) {
            return None;
        }
        v = v * 60.0 + n as f64;
        if let Some(f) = frac {
            let f = f.replace('_', "");
            if !f.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            v += format!("0.{f}0").parse::<f64>().ok()?;
        }
    }
    Some(v)
}

fn yaml11_float(t: &str) -> Option<f64> {
    let (neg, rest) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let sign = |v: f64| if neg { -v } else { v };
    match rest {
        ".inf" | ".Inf" | ".INF" => return Some(sign(f64::INFINITY)),
        ".nan" | ".NaN" | ".NAN" if t == rest => return Some(f64::NAN),
        _ => {}
    }
    if rest.contains(':') {
        return rest
            .starts_with(|c: char| c.is_ascii_digit())
            .then(|| rest.contains('.').then(|| sexagesimal(rest)))??
            .map(sign);
    }
    // [0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?  or  \.[0-9_]+([eE][-+][0-9]+)? (no sign)
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (int, frac) = mantissa.split_once('.')?;
    let ok_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit() || c == '_');
    let int_ok = if int.is_empty() {
        t == rest && !frac.is_empty() && frac.chars().any(|c| c.is_ascii_digit())
    } else {
        int.starts_with(|c: char| c.is_ascii_digit())
    };
    if !int_ok || !ok_digits(int) || !ok_digits(frac) {
        return None;
    }
    if let Some(e) = exp {
        let digits = e.strip_prefix(['-', '+'])?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let text = format!("{int}.{frac}").replace('_', "");
    let text = match exp {
        Some(e) => format!("{text}0e{e}"),
        None => format!("{text}0"),
    };
    text.parse::<f64>().ok().map(sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_jump_forms() {
        let jump = |s: &str| Some(Proxy::Jump(s.into()));
        let command = |s: &str| Some(Proxy::Command(s.into()));
        assert_eq!(proxy("-o ProxyJump=b1"), jump("b1"));
        assert_eq!(proxy("-oProxyJump=u@b:22 -v"), jump("u@b:22"));
        assert_eq!(proxy("-J b2"), jump("b2"));
        assert_eq!(proxy("-o StrictHostKeyChecking=no"), None);
        assert_eq!(
            proxy("-o ProxyCommand=\"ssh -W %h:%p j\""),
            command("ssh -W %h:%p j")
        );
        assert_eq!(proxy("-oProxyCommand='nc %h %p'"), command("nc %h %p"));
        // The first of the two wins, as in ssh.
        assert_eq!(proxy("-J j -o ProxyCommand=x"), jump("j"));
        assert_eq!(proxy("-o ProxyCommand=x -J j"), command("x"));
    }

    #[test]
    fn yaml11_scalars_as_pyyaml_reads_them() {
        use serde_json::json;
        let cases = [
            ("yes", json!(true)),
            ("Off", json!(false)),
            ("y", json!("y")),
            ("0644", json!(420)),
            ("08", json!("08")),
            ("0", json!(0)),
            ("-0x1F", json!(-31)),
            ("0b101", json!(5)),
            ("1_000", json!(1000)),
            ("1:30", json!(90)),
            ("1e3", json!("1e3")),
            ("1.5e3", json!("1.5e3")),
            ("1.5e+3", json!(1500.0)),
            ("1.", json!(1.0)),
            (".5", json!(0.5)),
            ("-.5", json!("-.5")),
            ("1:30.5", json!(90.5)),
            ("-.inf", json!("-.inf")),
            ("~", json!(null)),
            ("2001-12-14", json!("2001-12-14")),
            ("0o17", json!("0o17")),
        ];
        for (text, want) in cases {
            let got = yaml11_plain(text);
            // Infinity has no JSON form; it stays text, as JSON output shows it.
            assert_eq!(got, want, "{text}");
        }
    }
}
