//! Ansible INI inventories: `[group]`, `[group:vars]` and `[group:children]` sections, host
//! lines with inline `key=value` vars, ranges and `host:port`, `#`/`;` comments, hosts before
//! any section in `ungrouped`. Values are typed as Ansible's INI reader types them (a Python
//! literal if it is one, else a string); every token is placed by line and column.
//!
//! Input is the text `load` detected as INI (registered as `file`); output goes into `Raw`,
//! connection variables through the parent module's `apply_host_var` / `apply_group_var`.

use std::collections::HashSet;

use serde_json::Value;

use super::{Var, apply_group_var, apply_host_var, split_port};
use crate::diag::{Diagnostic, Diagnostics, FileId, Span, did_you_mean};
use crate::inventory::{Raw, bad_group_name, expand_host_name, group_name_error};

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

/// A `[group:vars]` value as Ansible reads it: the whole text after `=`, as a Python literal if
/// it is one — where a `#` outside quotes starts a comment, so `1 # one` is 1 — else the text
/// itself, `#` and `;` included (`a # b` stays `a # b`).
fn vars_value(text: &str) -> Value {
    let t = text.trim();
    let v = ini_value(t);
    if v != Value::String(t.to_string()) {
        return v;
    }
    let mut quote: Option<char> = None;
    for (i, c) in t.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' => {
                let before = t[..i].trim();
                let w = ini_value(before);
                if !before.is_empty() && w != Value::String(before.to_string()) {
                    return w;
                }
                break;
            }
            None => {}
        }
    }
    v
}

/// Removes a ` # comment` (a `#` after whitespace, outside quotes) from a children line.
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
    let mut ini = Ini {
        file,
        raw,
        diags,
        declared: HashSet::from(["all".into(), "ungrouped".into()]),
        vars_sections: Vec::new(),
        group: String::from("ungrouped"),
        state: State::Hosts,
    };
    for (n, line) in text.split('\n').enumerate() {
        let ln = u32::try_from(n + 1).unwrap_or(u32::MAX);
        ini.line(line.strip_suffix('\r').unwrap_or(line), ln);
    }
    ini.undefined_vars_groups(&before);
}

/// The INI reader between lines: the section it is in, and what it has seen of groups.
struct Ini<'a> {
    file: FileId,
    raw: &'a mut Raw,
    diags: &'a mut Diagnostics,
    /// Groups defined by a `[group]` or `[group:children]` section (and the implicit two).
    declared: HashSet<String>,
    /// `[group:vars]` sections met before their group was defined, with where they stand.
    vars_sections: Vec<(String, Span)>,
    /// The current section's group and kind.
    group: String,
    state: State,
}

impl Ini<'_> {
    /// One line (number `ln`, without its line break): skipped if blank or a comment, else a
    /// section header or an entry of the current section.
    fn line(&mut self, line: &str, ln: u32) {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            return;
        }
        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        let col0 = u32::try_from(indent).unwrap_or(0) + 1;
        if trimmed.starts_with('[') {
            self.section_header(trimmed, ln, col0);
            return;
        }
        match self.state {
            State::Hosts => host_line(line, self.file, ln, &self.group, self.raw, self.diags),
            State::Vars => self.vars_line(trimmed, ln, col0),
            State::Children => self.children_line(trimmed, ln, col0),
        }
    }

    /// `[group]`, `[group:vars]` or `[group:children]`: the section that following lines are in.
    fn section_header(&mut self, trimmed: &str, ln: u32, col0: u32) {
        let (name, kind, name_span) = match section(trimmed, self.file, ln, col0) {
            Ok(s) => s,
            Err(d) => {
                self.diags.push(d);
                return;
            }
        };
        if let Some(label) = bad_group_name(&name) {
            self.diags
                .push(group_name_error(&name, label, Some(name_span)));
            return;
        }
        self.group = name;
        self.state = kind;
        if kind == State::Vars {
            self.raw.group(&self.group);
            if !self.declared.contains(&self.group) {
                self.vars_sections.push((self.group.clone(), name_span));
            }
        } else {
            self.raw.define_group(&self.group, Some(name_span));
            self.declared.insert(self.group.clone());
        }
    }

    /// `name=value` in a `[group:vars]` section (the line trimmed, starting at column `col0`).
    fn vars_line(&mut self, trimmed: &str, ln: u32, col0: u32) {
        let file = self.file;
        let Some((k, v)) = trimmed.split_once('=') else {
            let width = u32::try_from(trimmed.chars().count()).unwrap_or(0);
            self.diags.push(
                Diagnostic::error("expected `key=value`")
                    .at(Span::new(file, ln, col0, ln, col0 + width))
                    .label(format!(
                        "a `[{}:vars]` section holds `name=value` lines",
                        self.group
                    ))
                    .help("write one variable per line, e.g. `http_port=8080`"),
            );
            return;
        };
        let key = k.trim();
        let klen = u32::try_from(k.trim_end().chars().count()).unwrap_or(0);
        if key.is_empty() || key.contains(char::is_whitespace) {
            self.diags.push(
                Diagnostic::error(format!("invalid variable name `{key}`"))
                    .at(Span::new(file, ln, col0, ln, col0 + klen.max(1)))
                    .label("a variable name is one word")
                    .help("write one variable per line, e.g. `http_port=8080`"),
            );
            return;
        }
        let value_text = v.trim();
        let vstart = u32::try_from(
            k.chars().count() + 1 + v.chars().take_while(|c| c.is_whitespace()).count(),
        )
        .unwrap_or(0);
        let vlen = u32::try_from(value_text.chars().count()).unwrap_or(0);
        let vspan = Span::new(file, ln, col0 + vstart, ln, col0 + vstart + vlen.max(1));
        let var = Var {
            key: key.to_string(),
            value: vars_value(value_text),
            span: Some(vspan),
        };
        apply_group_var(self.raw.group(&self.group), var, self.diags);
    }

    /// A child group's name in a `[group:children]` section.
    fn children_line(&mut self, trimmed: &str, ln: u32, col0: u32) {
        let child = strip_comment(trimmed).trim();
        let clen = u32::try_from(child.chars().count()).unwrap_or(0);
        let span = Span::new(self.file, ln, col0, ln, col0 + clen.max(1));
        if child.contains(char::is_whitespace) {
            self.diags.push(
                Diagnostic::error(format!("expected a group name, found `{child}`"))
                    .at(span)
                    .label(format!(
                        "a `[{}:children]` section lists one group name per line",
                        self.group
                    ))
                    .help("put each child group on its own line"),
            );
            return;
        }
        if let Some(label) = bad_group_name(child) {
            self.diags.push(group_name_error(child, label, Some(span)));
            return;
        }
        self.raw.add_child(&self.group, child, Some(span));
    }

    /// After the last line: a `[group:vars]` section for a group that no section of this file
    /// (nor an earlier `-i` file, `before`) defines is reported, with the nearest name.
    fn undefined_vars_groups(self, before: &HashSet<String>) {
        for (g, span) in self.vars_sections {
            if self.declared.contains(&g) || before.contains(&g) {
                continue;
            }
            let known = self.declared.iter().map(String::as_str).filter(|d| *d != g);
            let label = match did_you_mean(&g, known) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "no `[group]` or `[group:children]` section defines it".to_string(),
            };
            self.diags.push(
                Diagnostic::error(format!("variables for undefined group `{g}`"))
                    .at(span)
                    .label(label)
                    .help(format!(
                        "add a `[{g}]` section listing its hosts, or fix the group name"
                    )),
            );
        }
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
        h.ansible = true;
        if let Some(p) = port {
            h.vars.insert("ansible_port".into(), Value::from(p));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::tests::err;
    use serde_json::json;
    use std::path::Path;

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
        // As Ansible reads it: a `#` in a `:vars` value is text unless the value is a literal.
        assert_eq!(w1.vars["role"], json!("frontend # trailing comment"));
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
}
