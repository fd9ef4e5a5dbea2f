//! Host patterns, as Ansible reads them: `all` / `*`, a group or host name, `web:db` or `web,db`
//! (union), `web:&prod` (intersection), `web:!canary` (exclusion), globs (`web*`, `db-?`,
//! `n[0-9]`), `~regex` (matched from the start of a host or group name), and subscripts
//! (`web[0]`, `web[-1]`, `web[0:2]`, both ends included).
//!
//! Patterns come from a play's `hosts:` and from `-l`; `Pattern::parse` checks the syntax alone
//! (for `sortie check` before any inventory is known), `Pattern::resolve` picks hosts from an
//! `Inventory`. Terms combine as Ansible does: every union first, then the intersections, then
//! the exclusions; a pattern made only of `&` / `!` terms starts from `all`. The result is always
//! in inventory order, whatever the order of the terms.

use regex::Regex;

use super::{Host, Inventory};
use crate::diag::{Diagnostic, Span, did_you_mean};

/// A parsed host pattern: its text, where it was written, and its terms.
#[derive(Clone, Debug)]
pub struct Pattern {
    pub text: String,
    pub span: Option<Span>,
    terms: Vec<Term>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Union,
    And,
    Not,
}

#[derive(Clone, Debug)]
enum Matcher {
    All,
    Name(String),
    Glob(Regex),
    Regex(Regex),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subscript {
    Index(i64),
    Slice(usize, Option<usize>),
}

#[derive(Clone, Debug)]
struct Term {
    op: Op,
    /// The term without its operator and subscript.
    name: String,
    matcher: Matcher,
    subscript: Option<Subscript>,
    /// Character offset and length of the term (operator included) inside the pattern.
    start: usize,
    len: usize,
}

impl Pattern {
    /// Reads a pattern. `span` is where the pattern text stands (a YAML scalar), if anywhere;
    /// diagnostics then point at the term at fault.
    pub fn parse(text: &str, span: Option<Span>) -> Result<Pattern, Diagnostic> {
        let mut terms = Vec::new();
        for (start, raw) in split_terms(text) {
            let lead = raw.chars().take_while(|c| c.is_whitespace()).count();
            let term = raw.trim();
            if term.is_empty() {
                continue;
            }
            let start = start + lead;
            let len = term.chars().count();
            let (op, rest) = match term.chars().next() {
                Some('&') => (Op::And, &term[1..]),
                Some('!') => (Op::Not, &term[1..]),
                _ => (Op::Union, term),
            };
            let at = |d: Diagnostic| d.at_opt(term_span(span, text, start, len));
            if rest.trim().is_empty() {
                return Err(at(Diagnostic::error(format!(
                    "incomplete host pattern `{term}`"
                ))
                .label(format!("`{term}` must be followed by a group or host name"))
                .help(
                    "write e.g. `web:!canary` (web without canary) or `web:&prod` (web and prod)",
                )));
            }
            let (name, subscript) = split_subscript(rest);
            let matcher = if name == "all" || name == "*" {
                Matcher::All
            } else if let Some(re) = name.strip_prefix('~') {
                match Regex::new(&format!("^(?:{re})")) {
                    Ok(r) => Matcher::Regex(r),
                    Err(e) => {
                        return Err(at(Diagnostic::error(format!(
                            "invalid regular expression in host pattern `{term}`"
                        ))
                        .label(regex_error(&e))
                        .help("after `~` comes a regular expression matched from the start of host and group names, e.g. `~web\\d+`")));
                    }
                }
            } else if name.contains(['*', '?', '[']) {
                match Regex::new(&glob_to_regex(name)) {
                    Ok(r) => Matcher::Glob(r),
                    Err(e) => {
                        return Err(at(Diagnostic::error(format!(
                            "invalid glob in host pattern `{term}`"
                        ))
                        .label(regex_error(&e))
                        .help("`*` matches any text, `?` one character, `[abc]` one of the listed characters")));
                    }
                }
            } else {
                Matcher::Name(name.to_string())
            };
            terms.push(Term {
                op,
                name: name.to_string(),
                matcher,
                subscript,
                start,
                len,
            });
        }
        if terms.is_empty() {
            return Err(Diagnostic::error("empty host pattern")
                .at_opt(span)
                .label("this pattern names no hosts")
                .help("write `all`, a group or host name, or a combination like `web:!canary`"));
        }
        Ok(Pattern {
            text: text.to_string(),
            span,
            terms,
        })
    }

    /// The hosts of `inv` this pattern selects, in inventory order. A term that names no known
    /// group or host, or a glob or regex that matches nothing, is a diagnostic.
    pub fn resolve<'a>(&self, inv: &'a Inventory) -> Result<Vec<&'a Host>, Diagnostic> {
        let n = inv.hosts.len();
        let mut selected = vec![false; n];
        if !self.terms.iter().any(|t| t.op == Op::Union) {
            selected.iter_mut().for_each(|s| *s = true);
        }
        let members = group_members(inv);
        for op in [Op::Union, Op::And, Op::Not] {
            for term in self.terms.iter().filter(|t| t.op == op) {
                let mut hit = vec![false; n];
                for i in self.matches(term, inv, &members)? {
                    hit[i] = true;
                }
                for (s, h) in selected.iter_mut().zip(hit) {
                    match op {
                        Op::Union => *s |= h,
                        Op::And => *s &= h,
                        Op::Not => *s &= !h,
                    }
                }
            }
        }
        Ok(inv
            .hosts
            .iter()
            .zip(selected)
            .filter_map(|(h, s)| s.then_some(h))
            .collect())
    }

    /// Indexes (into `inv.hosts`, ascending) of the hosts one term stands for.
    fn matches(
        &self,
        term: &Term,
        inv: &Inventory,
        members: &indexmap::IndexMap<&str, Vec<usize>>,
    ) -> Result<Vec<usize>, Diagnostic> {
        let mut found: Vec<usize> = match &term.matcher {
            Matcher::All => (0..inv.hosts.len()).collect(),
            Matcher::Name(name) => {
                if let Some(m) = members.get(name.as_str()) {
                    m.clone()
                } else if let Some(i) = inv.hosts.iter().position(|h| h.name == *name) {
                    vec![i]
                } else {
                    return Err(self.unknown(term, inv));
                }
            }
            Matcher::Glob(re) | Matcher::Regex(re) => {
                let mut any = false;
                let mut hit = vec![false; inv.hosts.len()];
                for (g, m) in members {
                    if re.is_match(g) {
                        any = true;
                        m.iter().for_each(|i| hit[*i] = true);
                    }
                }
                for (i, h) in inv.hosts.iter().enumerate() {
                    if re.is_match(&h.name) {
                        any = true;
                        hit[i] = true;
                    }
                }
                if !any {
                    return Err(self.nothing(term, inv));
                }
                hit.iter()
                    .enumerate()
                    .filter_map(|(i, h)| h.then_some(i))
                    .collect()
            }
        };
        if let Some(sub) = term.subscript {
            found = apply_subscript(found, sub);
        }
        Ok(found)
    }

    fn term_span(&self, term: &Term) -> Option<Span> {
        term_span(self.span, &self.text, term.start, term.len)
    }

    fn unknown(&self, term: &Term, inv: &Inventory) -> Diagnostic {
        let names = inv
            .groups
            .keys()
            .map(String::as_str)
            .chain(inv.hosts.iter().map(|h| h.name.as_str()));
        let label = match did_you_mean(&term.name, names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "no group or host has this name".to_string(),
        };
        Diagnostic::error(format!("unknown host or group `{}`", term.name))
            .at_opt(self.term_span(term))
            .label(label)
            .help(known_groups(inv))
    }

    fn nothing(&self, term: &Term, inv: &Inventory) -> Diagnostic {
        Diagnostic::error(format!(
            "host pattern `{}` matches no host or group",
            term.name
        ))
        .at_opt(self.term_span(term))
        .label("matches nothing in this inventory")
        .help(known_groups(inv))
    }
}

/// Every group's hosts (direct or through children), as ascending indexes into `inv.hosts`.
fn group_members(inv: &Inventory) -> indexmap::IndexMap<&str, Vec<usize>> {
    let mut m: indexmap::IndexMap<&str, Vec<usize>> = inv
        .groups
        .keys()
        .map(|g| (g.as_str(), Vec::new()))
        .collect();
    for (i, h) in inv.hosts.iter().enumerate() {
        for g in &h.groups {
            if let Some(v) = m.get_mut(g.as_str()) {
                v.push(i);
            }
        }
    }
    m
}

fn known_groups(inv: &Inventory) -> String {
    const SHOWN: usize = 12;
    let names: Vec<&str> = inv.groups.keys().map(String::as_str).collect();
    let mut list = names
        .iter()
        .take(SHOWN)
        .map(|g| format!("`{g}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        list.push_str(", …");
    }
    format!("groups in this inventory: {list}; list its hosts with `sortie inventory -i …`")
}

fn apply_subscript(hosts: Vec<usize>, sub: Subscript) -> Vec<usize> {
    match sub {
        Subscript::Index(i) => {
            let idx = if i < 0 {
                i64::try_from(hosts.len()).unwrap_or(i64::MAX) + i
            } else {
                i
            };
            usize::try_from(idx)
                .ok()
                .and_then(|k| hosts.get(k).copied())
                .into_iter()
                .collect()
        }
        Subscript::Slice(start, end) => {
            let end = end.map_or(hosts.len(), |e| e.saturating_add(1).min(hosts.len()));
            hosts
                .get(start..end)
                .map(<[usize]>::to_vec)
                .unwrap_or_default()
        }
    }
}

/// `web[0]`, `web[-1]`, `web[1:3]`, `web[2:]`, `web[1-3]` → (name, subscript). Anything else in
/// trailing brackets is part of a glob.
fn split_subscript(term: &str) -> (&str, Option<Subscript>) {
    let Some(body) = term.strip_suffix(']') else {
        return (term, None);
    };
    let Some(open) = body.rfind('[') else {
        return (term, None);
    };
    let (name, inner) = (&body[..open], &body[open + 1..]);
    if name.is_empty() || name.starts_with('~') {
        return (term, None);
    }
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if let Some(n) = inner.strip_prefix('-').filter(|n| digits(n))
        && let Ok(i) = n.parse::<i64>()
    {
        return (name, Some(Subscript::Index(-i)));
    }
    if digits(inner)
        && let Ok(i) = inner.parse::<i64>()
    {
        return (name, Some(Subscript::Index(i)));
    }
    if let Some(sep) = inner.find([':', '-']) {
        let (a, b) = (&inner[..sep], &inner[sep + 1..]);
        if digits(a)
            && (b.is_empty() || digits(b))
            && let Ok(s) = a.parse::<usize>()
        {
            let e = b.parse::<usize>().ok();
            return (name, Some(Subscript::Slice(s, e)));
        }
    }
    (term, None)
}

/// Splits on `,` and `:` outside brackets; yields (character offset, text) of every piece.
fn split_terms(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start_byte = 0;
    let mut start_char = 0;
    for (ci, (bi, c)) in text.char_indices().enumerate() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' | ':' if depth == 0 => {
                out.push((start_char, &text[start_byte..bi]));
                start_byte = bi + c.len_utf8();
                start_char = ci + 1;
            }
            _ => {}
        }
    }
    out.push((start_char, &text[start_byte..]));
    out
}

/// Python's `fnmatch.translate`, anchored at both ends.
fn glob_to_regex(glob: &str) -> String {
    let chars: Vec<char> = glob.chars().collect();
    let mut re = String::from("^(?:");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                let mut j = i + 1;
                if chars.get(j) == Some(&'!') {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    re.push_str("\\[");
                } else {
                    let mut class: String = chars[i + 1..j].iter().collect();
                    if let Some(rest) = class.strip_prefix('!') {
                        class = format!("^{rest}");
                    }
                    let class = class.replace('\\', "\\\\").replace('[', "\\[");
                    re.push('[');
                    re.push_str(&class);
                    re.push(']');
                    i = j;
                }
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push_str(")$");
    re
}

/// The last line of a regex error ("error: …"), without the prefix.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("error:"))
        .unwrap_or_else(|| text.lines().last().unwrap_or(""));
    line.trim().trim_start_matches("error:").trim().to_string()
}

/// The span of characters `start..start+len` of the pattern, when the pattern's own span shows
/// exactly where its characters are (a one-line plain or quoted scalar); else the whole span.
fn term_span(span: Option<Span>, text: &str, start: usize, len: usize) -> Option<Span> {
    let s = span?;
    if s.line != s.end_line {
        return Some(s);
    }
    let width = s.end_col.saturating_sub(s.col) as usize;
    let chars = text.chars().count();
    let (start, len) = (u32::try_from(start).ok()?, u32::try_from(len).ok()?);
    if width == chars {
        Some(s.offset(1, start + 1, len))
    } else if width == chars + 2 {
        Some(s.offset(1, start + 2, len))
    } else {
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::register_source;
    use crate::inventory::tests::inv;

    const INV: &str = "
groups:
  web:
    hosts:
      web[1:3]: {}
      canary: {}
  db:
    hosts: { db1: {}, db2: {} }
  prod: { children: [web, db] }
  staging: { hosts: { stage1: {} } }
";

    fn names(i: &Inventory, p: &str) -> Vec<String> {
        i.select(p, None)
            .expect("pattern selects")
            .iter()
            .map(|h| h.name.clone())
            .collect()
    }

    #[test]
    fn all_star_group_and_host() {
        let i = inv(INV);
        let every = ["web1", "web2", "web3", "canary", "db1", "db2", "stage1"];
        assert_eq!(names(&i, "all"), every);
        assert_eq!(names(&i, "*"), every);
        assert_eq!(names(&i, "web"), ["web1", "web2", "web3", "canary"]);
        assert_eq!(
            names(&i, "prod"),
            ["web1", "web2", "web3", "canary", "db1", "db2"]
        );
        assert_eq!(names(&i, "db2"), ["db2"]);
    }

    #[test]
    fn union_intersection_exclusion() {
        let i = inv(INV);
        assert_eq!(names(&i, "db:stage1"), ["db1", "db2", "stage1"]);
        assert_eq!(names(&i, "stage1,db"), ["db1", "db2", "stage1"]);
        assert_eq!(names(&i, "web:!canary"), ["web1", "web2", "web3"]);
        assert_eq!(names(&i, "!canary:web"), ["web1", "web2", "web3"]);
        assert_eq!(names(&i, "all:&db"), ["db1", "db2"]);
        assert_eq!(names(&i, "prod:&web:!web2"), ["web1", "web3", "canary"]);
        assert_eq!(names(&i, "!prod"), ["stage1"]);
        assert_eq!(names(&i, "web:&db"), Vec::<String>::new());
    }

    #[test]
    fn globs_regexes_and_subscripts() {
        let i = inv(INV);
        assert_eq!(names(&i, "web*"), ["web1", "web2", "web3", "canary"]);
        assert_eq!(names(&i, "db?"), ["db1", "db2"]);
        assert_eq!(names(&i, "web[1-2]"), ["web2", "web3"]);
        assert_eq!(names(&i, "web[0]"), ["web1"]);
        assert_eq!(names(&i, "web[-1]"), ["canary"]);
        assert_eq!(names(&i, "web[2:]"), ["web3", "canary"]);
        assert_eq!(names(&i, "~(web|db)[12]"), ["web1", "web2", "db1", "db2"]);
        assert_eq!(names(&i, "~stag"), ["stage1"]);
        assert_eq!(names(&i, "w?b[!2]"), ["web1", "web3"]);
    }

    #[test]
    fn unknown_name_suggests_and_points_at_the_term() {
        let i = inv(INV);
        let text = "hosts: web:!canry\n";
        let f = register_source("play.yml", text);
        let span = Span::new(f, 1, 8, 1, 18);
        let d = i.select("web:!canry", Some(span)).expect_err("unknown");
        assert_eq!(d.title, "unknown host or group `canry`");
        assert_eq!(d.label, "did you mean `canary`?");
        let s = d.span.expect("span");
        assert_eq!((s.line, s.col, s.end_col), (1, 12, 18));
        assert_eq!(
            d.help.as_deref(),
            Some(
                "groups in this inventory: `all`, `web`, `db`, `prod`, `staging`, `ungrouped`; list its hosts with `sortie inventory -i …`"
            )
        );
        let d = i.select("zzzzzz", None).expect_err("unknown");
        assert_eq!(d.label, "no group or host has this name");
    }

    #[test]
    fn quoted_pattern_spans_skip_the_quote() {
        let i = inv(INV);
        let f = register_source("play.yml", "hosts: \"wev\"\n");
        let d = i
            .select("wev", Some(Span::new(f, 1, 8, 1, 13)))
            .expect_err("unknown");
        let s = d.span.expect("span");
        assert_eq!((s.col, s.end_col), (9, 12));
        assert_eq!(d.label, "did you mean `web`?");
    }

    #[test]
    fn glob_or_regex_matching_nothing() {
        let i = inv(INV);
        let d = i.select("cache*", None).expect_err("nothing");
        assert_eq!(d.title, "host pattern `cache*` matches no host or group");
        assert_eq!(d.label, "matches nothing in this inventory");
        let d = i.select("~^x", None).expect_err("nothing");
        assert_eq!(d.title, "host pattern `~^x` matches no host or group");
    }

    #[test]
    fn syntax_errors() {
        let d = Pattern::parse("web:!", None).expect_err("bad");
        assert_eq!(d.title, "incomplete host pattern `!`");
        assert_eq!(d.label, "`!` must be followed by a group or host name");
        let d = Pattern::parse(" : ,", None).expect_err("bad");
        assert_eq!(d.title, "empty host pattern");
        let d = Pattern::parse("~web(", None).expect_err("bad");
        assert_eq!(
            d.title,
            "invalid regular expression in host pattern `~web(`"
        );
        assert_eq!(d.label, "unclosed group");
        assert!(Pattern::parse("web:&prod:!canary", None).is_ok());
    }

    #[test]
    fn empty_group_selects_nothing_without_error() {
        let i = inv("groups: { empty: {}, web: { hosts: { w1: {} } } }\n");
        assert!(names(&i, "empty").is_empty());
    }
}
