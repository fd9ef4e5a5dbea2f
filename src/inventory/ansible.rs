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

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{
    Raw, RawGroup, RawHost, bad_group_name, expand_host_name, group_name_error, inside,
    resolve_path,
};
use crate::diag::{Diagnostic, Diagnostics, FileId, Span, did_you_mean, register_source};
use crate::yaml::{self, Node, NodeKind, RawNode};

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
// Values: what Python's `ast.literal_eval` would make of INI text
// ---------------------------------------------------------------------------------------------

/// Types an INI value as Ansible does: a Python literal (number, `True`/`False`/`None`, quoted
/// string, list or dict) if it is one, else the text itself.
fn ini_value(v: &str) -> Value {
    let t = v.trim();
    match t {
        "True" => return Value::Bool(true),
        "False" => return Value::Bool(false),
        "None" => return Value::Null,
        _ => {}
    }
    let (sign, digits) = match t.strip_prefix(['-', '+']) {
        Some(d) => (&t[..1], d),
        None => ("", t),
    };
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        // Python 3 refuses leading zeros (`0644`): that stays a string.
        if (digits == "0" || !digits.starts_with('0'))
            && let Ok(i) = format!("{sign}{digits}").parse::<i64>()
        {
            return Value::from(i);
        }
        return Value::String(t.to_string());
    }
    let floaty = digits.chars().any(|c| c.is_ascii_digit())
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
    if floaty
        && let Ok(f) = t.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return Value::Number(n);
    }
    if let Some(s) = python_string(t) {
        return Value::String(s);
    }
    if (t.starts_with('[') && t.ends_with(']')) || (t.starts_with('{') && t.ends_with('}')) {
        if let Ok(j) = serde_json::from_str::<Value>(t) {
            return j;
        }
        if let Ok(j) = serde_json::from_str::<Value>(&python_to_json(t)) {
            return j;
        }
    }
    Value::String(t.to_string())
}

/// `'text'` or `"text"` as one whole Python string literal.
fn python_string(t: &str) -> Option<String> {
    let q = t.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    if t.len() < 2 || !t.ends_with(q) {
        return None;
    }
    let inner = &t[1..t.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c if c == q => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Python literal syntax to JSON, for lists and dicts: single quotes, True/False/None.
fn python_to_json(t: &str) -> String {
    let mut out = String::new();
    let mut chars = t.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(match word.as_str() {
            "True" => "true",
            "False" => "false",
            "None" => "null",
            w => w,
        });
        word.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                flush(&mut word, &mut out);
                let mut s = String::new();
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => {
                            if let Some(e) = chars.next() {
                                s.push(e);
                            }
                        }
                        d if d == c => break,
                        d => s.push(d),
                    }
                }
                out.push_str(&Value::String(s).to_string());
            }
            c if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' => word.push(c),
            c => {
                flush(&mut word, &mut out);
                out.push(c);
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// INI
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Hosts,
    Vars,
    Children,
}

/// One whitespace-separated token of a host line: its unquoted text and where it stands.
struct Tok {
    text: String,
    /// 1-based columns of the first character and just past the last.
    col: u32,
    end: u32,
    /// Character offset of the first `=` outside quotes in the written token, if any.
    eq: Option<u32>,
}

/// Splits a host line the way Ansible's `shlex_split(line, comments=True)` does: quotes group,
/// backslashes escape, and a `#` outside quotes starts a comment — even inside a word.
fn tokenize(line: &str, file: FileId, ln: u32) -> Result<Vec<Tok>, Diagnostic> {
    let chars: Vec<char> = line.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let col = |i: usize| u32::try_from(i).unwrap_or(u32::MAX - 1) + 1;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        if chars[i] == '#' {
            break;
        }
        let start = i;
        let mut text = String::new();
        let mut eq = None;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '#' {
            let c = chars[i];
            match c {
                '\'' | '"' => {
                    let open = i;
                    i += 1;
                    loop {
                        let Some(&d) = chars.get(i) else {
                            return Err(Diagnostic::error("unclosed quote in host line")
                                .at(Span::new(file, ln, col(open), ln, col(open) + 1))
                                .label(format!("this {c} is never closed"))
                                .help("close the quote, or escape it with a backslash"));
                        };
                        i += 1;
                        if d == c {
                            break;
                        }
                        if d == '\\' && c == '"' && matches!(chars.get(i), Some('"' | '\\')) {
                            text.push(chars[i]);
                            i += 1;
                            continue;
                        }
                        text.push(d);
                    }
                }
                '\\' => {
                    if let Some(&d) = chars.get(i + 1) {
                        text.push(d);
                    }
                    i += 2;
                }
                '=' => {
                    if eq.is_none() {
                        eq = Some(col(i));
                    }
                    text.push(c);
                    i += 1;
                }
                _ => {
                    text.push(c);
                    i += 1;
                }
            }
        }
        toks.push(Tok {
            text,
            col: col(start),
            end: col(i.min(chars.len())),
            eq,
        });
        if chars.get(i) == Some(&'#') {
            break;
        }
    }
    Ok(toks)
}

/// Removes a ` # comment` (a `#` after whitespace, outside quotes) from a vars line's value.
fn strip_comment(v: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev_space = true;
    for (i, c) in v.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if (c == '#' || c == ';') && prev_space => return &v[..i],
            None => {}
        }
        prev_space = c.is_whitespace();
    }
    v
}

/// Reads an Ansible INI inventory.
pub(crate) fn load_ini(file: FileId, text: &str, raw: &mut Raw, diags: &mut Diagnostics) {
    let before: HashSet<String> = raw.groups.keys().cloned().collect();
    let mut declared: HashSet<String> = HashSet::from(["all".into(), "ungrouped".into()]);
    let mut vars_sections: Vec<(String, Span)> = Vec::new();
    let mut group = String::from("ungrouped");
    let mut state = State::Hosts;
    for (n, line) in text.split('\n').enumerate() {
        let ln = u32::try_from(n + 1).unwrap_or(u32::MAX);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        let col0 = u32::try_from(indent).unwrap_or(0) + 1;
        let width = u32::try_from(trimmed.chars().count()).unwrap_or(0);
        let whole = Span::new(file, ln, col0, ln, col0 + width);
        if trimmed.starts_with('[') {
            match section(trimmed, file, ln, col0) {
                Ok((name, kind, name_span)) => {
                    if let Some(label) = bad_group_name(&name) {
                        diags.push(group_name_error(&name, label, Some(name_span)));
                        continue;
                    }
                    group = name;
                    state = kind;
                    if kind == State::Vars {
                        raw.group(&group);
                        if !declared.contains(&group) {
                            vars_sections.push((group.clone(), name_span));
                        }
                    } else {
                        raw.define_group(&group, Some(name_span));
                        declared.insert(group.clone());
                    }
                }
                Err(d) => diags.push(d),
            }
            continue;
        }
        match state {
            State::Hosts => host_line(line, file, ln, &group, raw, diags),
            State::Vars => {
                let Some((k, v)) = trimmed.split_once('=') else {
                    diags.push(
                        Diagnostic::error("expected `key=value`")
                            .at(whole)
                            .label(format!(
                                "a `[{group}:vars]` section holds `name=value` lines"
                            ))
                            .help("write one variable per line, e.g. `http_port=8080`"),
                    );
                    continue;
                };
                let key = k.trim();
                let kcol = col0;
                let klen = u32::try_from(k.trim_end().chars().count()).unwrap_or(0);
                if key.is_empty() || key.contains(char::is_whitespace) {
                    diags.push(
                        Diagnostic::error(format!("invalid variable name `{key}`"))
                            .at(Span::new(file, ln, kcol, ln, kcol + klen.max(1)))
                            .label("a variable name is one word")
                            .help("write one variable per line, e.g. `http_port=8080`"),
                    );
                    continue;
                }
                let value_text = strip_comment(v).trim();
                let vstart = u32::try_from(
                    k.chars().count() + 1 + v.chars().take_while(|c| c.is_whitespace()).count(),
                )
                .unwrap_or(0);
                let vlen = u32::try_from(value_text.chars().count()).unwrap_or(0);
                let vspan = Span::new(file, ln, col0 + vstart, ln, col0 + vstart + vlen.max(1));
                let var = Var {
                    key: key.to_string(),
                    value: ini_value(value_text),
                    span: Some(vspan),
                };
                apply_group_var(raw.group(&group), var, diags);
            }
            State::Children => {
                let child = strip_comment(trimmed).trim();
                let clen = u32::try_from(child.chars().count()).unwrap_or(0);
                let span = Span::new(file, ln, col0, ln, col0 + clen.max(1));
                if child.contains(char::is_whitespace) {
                    diags.push(
                        Diagnostic::error(format!("expected a group name, found `{child}`"))
                            .at(span)
                            .label(format!(
                                "a `[{group}:children]` section lists one group name per line"
                            ))
                            .help("put each child group on its own line"),
                    );
                    continue;
                }
                if let Some(label) = bad_group_name(child) {
                    diags.push(group_name_error(child, label, Some(span)));
                    continue;
                }
                raw.add_child(&group, child, Some(span));
            }
        }
    }
    for (g, span) in vars_sections {
        if declared.contains(&g) || before.contains(&g) {
            continue;
        }
        let known = declared.iter().map(String::as_str).filter(|d| *d != g);
        let label = match did_you_mean(&g, known) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "no `[group]` or `[group:children]` section defines it".to_string(),
        };
        diags.push(
            Diagnostic::error(format!("variables for undefined group `{g}`"))
                .at(span)
                .label(label)
                .help(format!(
                    "add a `[{g}]` section listing its hosts, or fix the group name"
                )),
        );
    }
}

/// `[name]`, `[name:vars]`, `[name:children]` (and `[name:hosts]`), with an optional comment.
fn section(
    line: &str,
    file: FileId,
    ln: u32,
    col0: u32,
) -> Result<(String, State, Span), Diagnostic> {
    let width = u32::try_from(line.chars().count()).unwrap_or(0);
    let whole = Span::new(file, ln, col0, ln, col0 + width);
    let bad = |label: &str| {
        Diagnostic::error("invalid section header")
            .at(whole)
            .label(label.to_string())
            .help("a section is `[group]`, `[group:vars]` or `[group:children]`, without spaces")
    };
    let Some(close) = line.find(']') else {
        return Err(bad("this `[` has no matching `]`"));
    };
    let rest = line[close + 1..].trim();
    if !rest.is_empty() && !rest.starts_with('#') && !rest.starts_with(';') {
        return Err(bad("nothing but a comment may follow the section name"));
    }
    let inner = &line[1..close];
    let (name, kind) = match inner.split_once(':') {
        Some((n, k)) => (n, Some(k)),
        None => (inner, None),
    };
    let name_len = u32::try_from(name.chars().count()).unwrap_or(0);
    let name_span = Span::new(file, ln, col0 + 1, ln, col0 + 1 + name_len.max(1));
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad("expected a group name without spaces"));
    }
    let state = match kind {
        None | Some("hosts") => State::Hosts,
        Some("vars") => State::Vars,
        Some("children") => State::Children,
        Some(k) => {
            let kcol = col0 + 2 + name_len;
            let klen = u32::try_from(k.chars().count()).unwrap_or(0);
            let label = match did_you_mean(k, ["vars", "children", "hosts"]) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "expected `vars` or `children`".to_string(),
            };
            return Err(Diagnostic::error(format!("unknown section type `{k}`"))
                .at(Span::new(file, ln, kcol, ln, kcol + klen.max(1)))
                .label(label)
                .help("a section is `[group]`, `[group:vars]` or `[group:children]`"));
        }
    };
    Ok((name.to_string(), state, name_span))
}

/// `name[:port] [key=value ...]` in a hosts section.
fn host_line(
    line: &str,
    file: FileId,
    ln: u32,
    group: &str,
    raw: &mut Raw,
    diags: &mut Diagnostics,
) {
    let toks = match tokenize(line, file, ln) {
        Ok(t) => t,
        Err(d) => {
            diags.push(d);
            return;
        }
    };
    let Some((first, rest)) = toks.split_first() else {
        return;
    };
    let tok_span = |t: &Tok| Span::new(file, ln, t.col, ln, t.end.max(t.col + 1));
    let (name, port) = match split_port(&first.text) {
        Ok(p) => p,
        Err((label, at, len)) => {
            let c = first.col + at;
            diags.push(
                Diagnostic::error(format!("invalid port in host `{}`", first.text))
                    .at(Span::new(file, ln, c, ln, c + len.max(1)))
                    .label(label)
                    .help("write `host:port` with a port from 1 to 65535, or set `ansible_port`"),
            );
            return;
        }
    };
    let names = match expand_host_name(name, raw.hosts.len(), |s, l| {
        let c = first.col + u32::try_from(s).ok()?;
        Some(Span::new(file, ln, c, ln, c + u32::try_from(l).ok()?))
    }) {
        Ok(n) => n,
        Err(d) => {
            diags.push(d);
            return;
        }
    };
    let mut vars = Vec::new();
    for t in rest {
        let Some((k, v)) = t.text.split_once('=') else {
            diags.push(
                Diagnostic::error(format!("expected `key=value` after the host name, found `{}`", t.text))
                    .at(tok_span(t))
                    .label("this is not a `key=value` pair")
                    .help("host variables are written `name=value`; quote a value that holds spaces: `motd=\"hello world\"`"),
            );
            continue;
        };
        if k.is_empty() {
            diags.push(
                Diagnostic::error("missing variable name before `=`")
                    .at(tok_span(t))
                    .label("expected `name=value`")
                    .help("host variables are written `name=value`"),
            );
            continue;
        }
        let vcol = t.eq.map_or(t.col, |e| e + 1);
        let span = Span::new(file, ln, vcol, ln, t.end.max(vcol + 1));
        vars.push((k.to_string(), ini_value(v), span));
    }
    let span = tok_span(first);
    for name in names {
        let h = raw.host(&name, Some(span));
        if port.is_some() {
            h.port = port;
        }
        for (k, v, s) in &vars {
            let var = Var {
                key: k.clone(),
                value: v.clone(),
                span: Some(*s),
            };
            apply_host_var(h, var, diags);
        }
        raw.add_member(group, &name);
    }
}

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

// ---------------------------------------------------------------------------------------------
// Ansible YAML
// ---------------------------------------------------------------------------------------------

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
            diags.push(super::native::decode_error(e));
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
        if port.is_some() {
            h.port = port;
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

// ---------------------------------------------------------------------------------------------
// group_vars/ and host_vars/
// ---------------------------------------------------------------------------------------------

const VAR_FILE_EXTENSIONS: &[&str] = &["yml", "yaml", "json"];

/// Reads `dir/group_vars/<group>[.yml|.yaml|.json]` (or a folder of such files) for every known
/// group, and `dir/host_vars/<host>…` for every known host. They override the inventory
/// file's own vars, as in Ansible. Names that match nothing are ignored.
pub(crate) fn load_var_dirs(dir: &Path, raw: &mut Raw, diags: &mut Diagnostics) {
    for (sub, is_group) in [("group_vars", true), ("host_vars", false)] {
        let d = dir.join(sub);
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let Some(fname) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if fname.starts_with('.') {
                continue;
            }
            let (name, files) = if p.is_dir() {
                let mut inner: Vec<PathBuf> = std::fs::read_dir(&p)
                    .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
                    .unwrap_or_default();
                inner.retain(|f| f.is_file() && var_file(f));
                inner.sort();
                (fname.to_string(), inner)
            } else {
                let ext = p.extension().and_then(|e| e.to_str());
                let name = match ext {
                    Some(e) if VAR_FILE_EXTENSIONS.contains(&e) => {
                        p.file_stem().and_then(|s| s.to_str()).unwrap_or(fname)
                    }
                    None => fname,
                    Some(_) => continue,
                };
                (name.to_string(), vec![p.clone()])
            };
            let known = if is_group {
                name == "all" || name == "ungrouped" || raw.groups.contains_key(&name)
            } else {
                raw.hosts.contains_key(&name)
            };
            if !known {
                continue;
            }
            for f in files {
                for var in read_var_file(&f, diags) {
                    if is_group {
                        apply_group_var(raw.group(&name), var, diags);
                    } else {
                        apply_host_var(raw.host(&name, None), var, diags);
                    }
                }
            }
        }
    }
}

fn var_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.')
        && p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| VAR_FILE_EXTENSIONS.contains(&e))
}

fn read_var_file(path: &Path, diags: &mut Diagnostics) -> Vec<Var> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            diags.push(
                Diagnostic::error(format!("cannot read variables file `{}`", path.display()))
                    .label(e.to_string())
                    .help("fix the file's permissions or encoding (UTF-8), or remove it"),
            );
            return Vec::new();
        }
    };
    let file = register_source(path.display().to_string(), text.as_str());
    match yaml::parse(file, &text) {
        Ok(node) if node.is_null() || node.as_map().is_some() => yaml_vars(&node, diags),
        Ok(node) => {
            diags.push(
                Diagnostic::error(format!(
                    "expected a mapping of variables, found {}",
                    node.describe()
                ))
                .at(node.span)
                .label("expected `name: value` pairs")
                .help("a group_vars or host_vars file is a mapping of variable names to values"),
            );
            Vec::new()
        }
        Err(d) => {
            diags.push(d);
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::tests::err;
    use serde_json::json;

    fn ok(text: &str) -> crate::inventory::Inventory {
        match crate::inventory::load_str("hosts.ini", text) {
            Ok(i) => i,
            Err(d) => panic!("did not load:\n{d}"),
        }
    }

    #[test]
    fn ini_sections_vars_children_and_ungrouped() {
        let i = ok(
            "# comment\nlone ansible_host=10.0.0.5\n\n[web]\nweb[1:2].lab http_port=8080\ncanary.lab:2222 ansible_user=root # comment\n\n[web:vars]\nrole = frontend # trailing comment\nmax=5\n\n[prod:children]\nweb\n\n[all:vars]\nenv=prod\n",
        );
        let names: Vec<&str> = i.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["lone", "web1.lab", "web2.lab", "canary.lab"]);
        let lone = i.host("lone").expect("lone");
        assert_eq!(lone.address, "10.0.0.5");
        assert_eq!(lone.groups, ["all", "ungrouped"]);
        assert!(!lone.vars.contains_key("ansible_host"));
        let w1 = i.host("web1.lab").expect("w1");
        assert_eq!(w1.vars["http_port"], json!(8080));
        assert_eq!(w1.vars["role"], json!("frontend"));
        assert_eq!(w1.vars["max"], json!(5));
        assert_eq!(w1.vars["env"], json!("prod"));
        assert_eq!(w1.groups, ["all", "prod", "web"]);
        let c = i.host("canary.lab").expect("canary");
        assert_eq!(c.port, Some(2222));
        assert_eq!(c.user.as_deref(), Some("root"));
    }

    #[test]
    fn ini_values_are_typed_like_ansible() {
        assert_eq!(ini_value("8080"), json!(8080));
        assert_eq!(ini_value("-3"), json!(-3));
        assert_eq!(ini_value("0644"), json!("0644"));
        assert_eq!(ini_value("1.5"), json!(1.5));
        assert_eq!(ini_value("True"), json!(true));
        assert_eq!(ini_value("FALSE"), json!("FALSE"));
        assert_eq!(ini_value("None"), json!(null));
        assert_eq!(ini_value("'quoted'"), json!("quoted"));
        assert_eq!(ini_value("\"5\""), json!("5"));
        assert_eq!(ini_value("[1, 'a', True]"), json!([1, "a", true]));
        assert_eq!(ini_value("{'k': None}"), json!({"k": null}));
        assert_eq!(ini_value("hello world"), json!("hello world"));
        assert_eq!(ini_value("inf"), json!("inf"));
        assert_eq!(ini_value(""), json!(""));
    }

    #[test]
    fn ini_quotes_and_comments_on_host_lines() {
        let i = ok("[g]\nh1 motd=\"hello world\" pw=\"'03#pa'\" n='5' x=1#gone y=2\n");
        let h = i.host("h1").expect("h1");
        assert_eq!(h.vars["motd"], json!("hello world"));
        assert_eq!(h.vars["pw"], json!("03#pa"));
        // shlex drops the quotes, then the value reads as a Python literal: 5.
        assert_eq!(h.vars["n"], json!(5));
        assert_eq!(h.vars["x"], json!(1));
        assert!(!h.vars.contains_key("y"));
    }

    #[test]
    fn ini_connection_vars_at_group_level() {
        let i = ok(
            "[web]\nw1\n[web:vars]\nansible_user=deploy\nansible_port=2200\nansible_ssh_private_key_file=/keys/id\nansible_ssh_common_args='-o ProxyJump=bastion'\n",
        );
        let w = i.host("w1").expect("w1");
        assert_eq!(w.user.as_deref(), Some("deploy"));
        assert_eq!(w.port, Some(2200));
        assert_eq!(w.ssh.identity_file.as_deref(), Some(Path::new("/keys/id")));
        assert_eq!(w.ssh.jump.as_deref(), Some("bastion"));
        assert!(w.vars.contains_key("ansible_ssh_common_args"));
        assert!(!w.vars.contains_key("ansible_user"));
    }

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

    #[test]
    fn ini_errors_are_located() {
        let d = err("e1.ini", "[web]\nw1 ansible_port=abc\n");
        assert_eq!(d[0].title, "invalid `ansible_port` value `abc`");
        assert_eq!(d[0].label, "expected a port number from 1 to 65535");
        let s = d[0].span.expect("span");
        assert_eq!((s.line, s.col, s.end_col), (2, 17, 20));

        let d = err("e2.ini", "[web]\nw1 oops\n");
        assert_eq!(
            d[0].title,
            "expected `key=value` after the host name, found `oops`"
        );
        assert_eq!(
            d[0].span.map(|s| (s.line, s.col, s.end_col)),
            Some((2, 4, 8))
        );

        let d = err("e3.ini", "[web:var]\n");
        assert_eq!(d[0].title, "unknown section type `var`");
        assert_eq!(d[0].label, "did you mean `vars`?");
        assert_eq!(
            d[0].span.map(|s| (s.line, s.col, s.end_col)),
            Some((1, 6, 9))
        );

        let d = err("e4.ini", "[web]\nw1\n[wev:vars]\nx=1\n");
        assert_eq!(d[0].title, "variables for undefined group `wev`");
        assert_eq!(d[0].label, "did you mean `web`?");
        assert_eq!(d[0].span.map(|s| (s.line, s.col)), Some((3, 2)));

        let d = err("e5.ini", "[web:children]\ndb\n");
        assert_eq!(d[0].title, "unknown child group `db`");
        assert_eq!(d[0].span.map(|s| (s.line, s.col)), Some((2, 1)));

        let d = err("e6.ini", "[web]\n  web[3:1]\n");
        assert_eq!(d[0].title, "invalid host range `[3:1]`");
        assert_eq!(
            d[0].span.map(|s| (s.line, s.col, s.end_col)),
            Some((2, 6, 11))
        );

        let d = err("e7.ini", "[web]\nw1 motd=\"unclosed\n");
        assert_eq!(d[0].title, "unclosed quote in host line");
        assert_eq!(d[0].span.map(|s| (s.line, s.col)), Some((2, 9)));

        let d = err("e8.ini", "[web]\nw1:99999\n");
        assert_eq!(d[0].title, "invalid port in host `w1:99999`");
        assert_eq!(d[0].label, "`99999` is not a port number from 1 to 65535");
        assert_eq!(
            d[0].span.map(|s| (s.line, s.col, s.end_col)),
            Some((2, 4, 9))
        );

        let d = err("e9.ini", "[web]\nw1\n[web:vars]\njust text\n");
        assert_eq!(d[0].title, "expected `key=value`");
        assert_eq!(
            d[0].label,
            "a `[web:vars]` section holds `name=value` lines"
        );

        let d = err("e10.ini", "[web extra]\n");
        assert_eq!(d[0].title, "invalid section header");

        let d = err("e11.ini", "[a]\nh\n[b:children]\na\n[a:children]\nb\n");
        assert_eq!(d[0].title, "cycle in group children: `a` → `b` → `a`");
    }

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

    #[test]
    fn group_vars_and_host_vars_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        std::fs::write(
            p.join("hosts"),
            "[web]\nw1 x=inline\nw2\n[web:vars]\ny=inline\n",
        )
        .expect("write");
        std::fs::create_dir_all(p.join("group_vars/all")).expect("mkdir");
        std::fs::create_dir_all(p.join("host_vars")).expect("mkdir");
        std::fs::write(
            p.join("group_vars/web.yml"),
            "y: from_file\nansible_user: deploy\n",
        )
        .expect("write");
        std::fs::write(p.join("group_vars/all/main.yaml"), "z: all_dir\n").expect("write");
        std::fs::write(p.join("group_vars/nosuch.yml"), "q: 1\n").expect("write");
        std::fs::write(
            p.join("host_vars/w1"),
            "x: from_host_file\nansible_host: 10.1.1.1\n",
        )
        .expect("write");
        let i = crate::inventory::load(&[p.join("hosts")]).expect("loads");
        let w1 = i.host("w1").expect("w1");
        assert_eq!(w1.vars["x"], json!("from_host_file"));
        assert_eq!(w1.vars["y"], json!("from_file"));
        assert_eq!(w1.vars["z"], json!("all_dir"));
        assert_eq!(w1.address, "10.1.1.1");
        assert_eq!(w1.user.as_deref(), Some("deploy"));
        assert!(!w1.vars.contains_key("q"));
        std::fs::write(p.join("host_vars/w2.yml"), "- not a map\n").expect("write");
        let d = crate::inventory::load(&[p.join("hosts")]).expect_err("bad var file");
        assert_eq!(
            d.0[0].title,
            "expected a mapping of variables, found a list"
        );
    }

    #[test]
    fn inventory_directory_reads_every_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        std::fs::write(p.join("01-web.ini"), "[web]\nw1\n").expect("write");
        std::fs::write(
            p.join("02-db.yml"),
            "all:\n  children:\n    db:\n      hosts: { d1: }\n",
        )
        .expect("write");
        std::fs::write(p.join("README.md"), "# not an inventory\n").expect("write");
        std::fs::write(p.join(".hidden"), "[x]\n").expect("write");
        let i = crate::inventory::load(&[p.to_path_buf()]).expect("loads");
        let names: Vec<&str> = i.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["w1", "d1"]);
    }
}
