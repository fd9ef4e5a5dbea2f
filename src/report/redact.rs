//! Redaction: the one place where secrets leave sortie's output. A `Redactor` holds the set of
//! secret strings of a run and replaces each occurrence with `***` in every string that is
//! printed or written: the live view, plain lines, the recap, JSON events, the JSON report,
//! JUnit and TAP (the reporter and `exec`'s report writer call it; nothing else prints).
//!
//! Where the secrets come from:
//! - at the start of a run (`Redactor::for_run`): the values of the environment variables the
//!   inventory names in `password_env` / `passphrase_env`, and of every `env.NAME` a `secret: true`
//!   step's templates read;
//! - per host, once its scope is built: the values of the variables the play lists in `secrets:`
//!   (and later, values a `set` step gives those variables);
//! - while a `secret: true` step runs (`exec::task`): its rendered arguments — `env:` values
//!   included — and its result fields.
//!
//! Values the user declared secret are redacted whatever their length. Values derived from a
//! secret step's arguments and results are redacted when they have at least `MIN_DERIVED`
//! characters, so that a secret step's `rc: 0` or `cwd: /` does not blank every `0` or `/` of
//! the output. Strings are redacted before they are escaped (JSON, XML), and the JSON-escaped
//! form of each secret is a secret too, because messages quote values as JSON.

use std::collections::BTreeSet;
use std::sync::RwLock;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value as Json;

use super::event::Event;
use super::{RunReport, TaskReport};
use crate::inventory::Inventory;
use crate::playbook::Playbook;
use crate::vars::VarMap;
use crate::yaml::{Node, NodeKind};

/// What a secret is replaced with.
pub const MASK: &str = "***";
/// Shortest value, in characters, taken from a secret step's arguments or results.
pub const MIN_DERIVED: usize = 4;
/// Shortest prefix of a secret redacted where a value was cut for a message (`…`).
const MIN_PREFIX: usize = 3;

/// The secrets of a run, and the replacing of them.
#[derive(Default)]
pub struct Redactor {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    secrets: BTreeSet<String>,
    matcher: Option<AhoCorasick>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets themselves.
        write!(f, "Redactor({} secrets)", self.len())
    }
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// The secrets known before anything runs: `password_env` / `passphrase_env` values and
    /// the `env.NAME` values that secret steps read.
    pub fn for_run(playbook: &Playbook, inventory: &Inventory) -> Redactor {
        let r = Redactor::new();
        for h in &inventory.hosts {
            for name in [&h.ssh.password_env, &h.ssh.passphrase_env]
                .into_iter()
                .flatten()
            {
                if let Ok(v) = std::env::var(name) {
                    r.add(&v);
                }
            }
        }
        for play in &playbook.plays {
            for step in play.steps.iter().filter(|s| s.secret) {
                for name in env_refs(&step.args) {
                    if let Ok(v) = std::env::var(&name) {
                        r.add(&v);
                    }
                }
            }
        }
        r
    }

    /// How many secret strings are known (escaped forms included).
    pub fn len(&self) -> usize {
        self.read().secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A value the user declared secret (any non-empty length).
    pub fn add(&self, secret: &str) {
        self.insert(variants(secret, 1));
    }

    /// A declared-secret value of any JSON type: every string and number leaf in it.
    pub fn add_value(&self, v: &Json) {
        let mut out = Vec::new();
        leaves(v, &mut |s| out.extend(variants(s, 1)));
        self.insert(out);
    }

    /// Values from a secret step's arguments or results: string leaves of at least
    /// `MIN_DERIVED` characters (numbers such as `rc` or `elapsed_ms` are not secrets).
    pub fn add_derived(&self, v: &Json) {
        fn strings(v: &Json, out: &mut Vec<String>) {
            match v {
                Json::String(s) => out.extend(variants(s, MIN_DERIVED)),
                Json::Array(items) => items.iter().for_each(|i| strings(i, out)),
                Json::Object(map) => map.values().for_each(|i| strings(i, out)),
                Json::Number(_) | Json::Bool(_) | Json::Null => {}
            }
        }
        let mut out = Vec::new();
        strings(v, &mut out);
        self.insert(out);
    }

    /// The values of the variables named in `names` (a play's `secrets:`) found in `vars`.
    pub fn add_vars(&self, names: &[String], vars: &VarMap) {
        for n in names {
            if let Some(v) = vars.get(n) {
                self.add_value(v);
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, values: Vec<String>) {
        if values.is_empty() {
            return;
        }
        {
            let r = self.read();
            if values.iter().all(|v| r.secrets.contains(v)) {
                return;
            }
        }
        let mut w = self.inner.write().unwrap_or_else(|p| p.into_inner());
        w.secrets.extend(values);
        // Leftmost-longest: where one secret contains another, the whole longer one goes.
        w.matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(w.secrets.iter())
            .ok();
    }

    /// `s` with every secret replaced by `***`, and the password of every URL
    /// (`scheme://user:PASSWORD@host`) too, secret or not.
    pub fn redact(&self, s: &str) -> String {
        self.redact_cow(s).into_owned()
    }

    /// `redact`, borrowing `s` back when nothing in it changes (a kept body of a MiB is not
    /// copied to find that out).
    fn redact_cow<'s>(&self, s: &'s str) -> std::borrow::Cow<'s, str> {
        let s = redact_userinfo(s);
        let r = self.read();
        let Some(m) = &r.matcher else {
            return s;
        };
        if !m.is_match(s.as_ref()) && !s.contains('…') {
            return s;
        }
        let mut out = m.replace_all(&s, &vec![MASK; r.secrets.len()]);
        if out.contains('…') {
            out = redact_cut_prefixes(&out, &r.secrets);
        }
        std::borrow::Cow::Owned(out)
    }

    /// `s` redacted, and, because it was cut short at its end (an output past its cap), the
    /// start of a secret it ends with.
    fn redact_cut_end(&self, s: &str) -> String {
        let out = self.redact(s);
        let r = self.read();
        let mut cut = 0;
        for secret in &r.secrets {
            for (k, _) in secret.char_indices().skip(MIN_PREFIX) {
                if k > cut && out.ends_with(&secret[..k]) {
                    cut = k;
                }
            }
        }
        if cut == 0 {
            return out;
        }
        format!("{}{MASK}", &out[..out.len() - cut])
    }

    /// Redacts every string (and key) of a JSON value in place. A string whose sibling
    /// `NAME_truncated_bytes` is above zero was cut at its end: a secret's start there goes too.
    pub fn redact_json(&self, v: &mut Json) {
        match v {
            Json::String(s) => {
                if let std::borrow::Cow::Owned(o) = self.redact_cow(s) {
                    *s = o;
                }
            }
            Json::Array(items) => items.iter_mut().for_each(|i| self.redact_json(i)),
            Json::Object(map) => {
                let cut: Vec<String> = map
                    .iter()
                    .filter(|(_, v)| v.as_u64().is_some_and(|n| n > 0))
                    .filter_map(|(k, _)| k.strip_suffix("_truncated_bytes"))
                    .map(str::to_string)
                    .collect();
                let old = std::mem::take(map);
                for (k, mut val) in old {
                    match (&mut val, cut.contains(&k)) {
                        (Json::String(s), true) => *s = self.redact_cut_end(s),
                        _ => self.redact_json(&mut val),
                    }
                    map.insert(self.redact(&k), val);
                }
            }
            Json::Number(_) | Json::Bool(_) | Json::Null => {}
        }
    }

    /// The report with every string redacted (what `--report`, `--junit`, `--tap` and the
    /// recap are made from), one task at a time (`RunReport::map_strings`).
    pub fn report(&self, r: RunReport) -> RunReport {
        r.map_strings(&mut |v| self.redact_json(v))
    }
}

impl Redactor {
    /// An event with every string redacted (the engine sends only these).
    pub fn event(&self, ev: Event) -> Event {
        ev.map_strings(&mut |v| self.redact_json(v))
    }

    /// A copy of a task's report with every string redacted.
    pub fn task(&self, t: &TaskReport) -> TaskReport {
        let Ok(mut v) = serde_json::to_value(t) else {
            return t.clone();
        };
        self.redact_json(&mut v);
        serde_json::from_value(v).unwrap_or_else(|_| t.clone())
    }
}

impl Redactor {
    /// A writer that redacts what goes through it a line at a time into `inner`: for text
    /// whose secrets cannot span lines, such as pretty JSON (a string is on one line, its
    /// newlines escaped), so a big report is masked without being held whole. `finish`
    /// writes the last line.
    pub fn lines<W: std::io::Write>(&self, inner: W) -> RedactLines<'_, W> {
        RedactLines {
            redactor: self,
            inner,
            line: Vec::new(),
        }
    }
}

/// See `Redactor::lines`.
pub struct RedactLines<'a, W: std::io::Write> {
    redactor: &'a Redactor,
    inner: W,
    line: Vec<u8>,
}

impl<W: std::io::Write> RedactLines<'_, W> {
    fn emit(&mut self) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(&self.line);
        let masked = self.redactor.redact(&text);
        self.inner.write_all(masked.as_bytes())?;
        self.line.clear();
        Ok(())
    }

    /// Writes what is left after the last newline, and flushes.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.emit()?;
        self.inner.flush()
    }
}

impl<W: std::io::Write> std::io::Write for RedactLines<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..=at]);
            self.emit()?;
            rest = &rest[at + 1..];
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `scheme://user:password@host` → `scheme://user:***@host`, wherever a URL stands in `s`.
fn redact_userinfo(s: &str) -> std::borrow::Cow<'_, str> {
    static URL_PASSWORD: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = URL_PASSWORD.get_or_init(|| {
        regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/?#@:]*:)[^\s/?#@]+@").ok()
    });
    match re {
        Some(re) if s.contains("://") => re.replace_all(s, "${1}***@"),
        _ => std::borrow::Cow::Borrowed(s),
    }
}

/// The forms of one secret worth matching: itself, trimmed, and JSON-escaped.
fn variants(secret: &str, min_chars: usize) -> Vec<String> {
    let mut out = Vec::new();
    for s in [secret, secret.trim()] {
        if s.chars().count() < min_chars.max(1) {
            continue;
        }
        out.push(s.to_string());
        let escaped = Json::String(s.to_string()).to_string();
        let inner = &escaped[1..escaped.len() - 1];
        if inner != s {
            out.push(inner.to_string());
        }
    }
    out.dedup();
    out
}

fn leaves(v: &Json, f: &mut impl FnMut(&str)) {
    match v {
        Json::String(s) => f(s),
        Json::Number(n) => f(&n.to_string()),
        Json::Array(items) => items.iter().for_each(|i| leaves(i, f)),
        Json::Object(map) => map.values().for_each(|i| leaves(i, f)),
        Json::Bool(_) | Json::Null => {}
    }
}

/// A value cut for a message ends in `…`; if what precedes it is the start of a secret,
/// that start goes too.
fn redact_cut_prefixes(s: &str, secrets: &BTreeSet<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('…') {
        let before = &rest[..at];
        let mut cut = 0;
        for secret in secrets {
            for (k, _) in secret.char_indices().skip(MIN_PREFIX) {
                if k > cut && before.ends_with(&secret[..k]) {
                    cut = k;
                }
            }
        }
        if cut > 0 {
            out.push_str(&before[..before.len() - cut]);
            out.push_str(MASK);
        } else {
            out.push_str(before);
        }
        out.push('…');
        rest = &rest[at + '…'.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// The environment variables a step's templates read as `env.NAME` or `env["NAME"]`.
pub fn env_refs(node: &Node) -> Vec<String> {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(re) = RE
        .get_or_init(|| {
            regex::Regex::new(
                r#"\benv\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*["']([^"']+)["']\s*\])"#,
            )
            .ok()
        })
        .as_ref()
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut visit = |text: &str| {
        for c in re.captures_iter(text) {
            if let Some(m) = c.get(1).or_else(|| c.get(2)) {
                out.push(m.as_str().to_string());
            }
        }
    };
    scalars(node, &mut visit);
    out.sort();
    out.dedup();
    out
}

fn scalars(node: &Node, f: &mut impl FnMut(&str)) {
    match &node.kind {
        NodeKind::Scalar { text, .. } => f(text),
        NodeKind::Seq(items) => items.iter().for_each(|i| scalars(i, f)),
        NodeKind::Map(entries) => entries.iter().for_each(|(k, v)| {
            scalars(k, f);
            scalars(v, f);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence_longest_first() {
        let r = Redactor::new();
        r.add("hunter2");
        r.add("hunter2-extended");
        assert_eq!(r.redact("a hunter2 b hunter2-extended c"), "a *** b *** c");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn empty_and_short_derived_values_are_not_secrets() {
        let r = Redactor::new();
        r.add("");
        assert!(r.is_empty());
        r.add_derived(&serde_json::json!({"rc": 0, "cwd": "/", "stdout": "ok", "token": "abcd"}));
        assert_eq!(r.redact("rc 0 in / ok abcd"), "rc 0 in / ok ***");
    }

    #[test]
    fn json_escaped_forms_are_secrets_too() {
        let r = Redactor::new();
        r.add("pa\"ss\\word");
        let quoted = serde_json::Value::String("x pa\"ss\\word y".into()).to_string();
        assert!(!r.redact(&quoted).contains("ss"), "{}", r.redact(&quoted));
    }

    #[test]
    fn a_secret_cut_by_an_ellipsis_loses_its_start_too() {
        let r = Redactor::new();
        r.add("s3cr3t-value");
        assert_eq!(r.redact("found \"xx s3cr3…"), "found \"xx ***…");
        assert_eq!(r.redact("found \"xx s3…"), "found \"xx s3…");
    }

    #[test]
    fn json_keys_and_values_are_redacted() {
        let r = Redactor::new();
        r.add("tok123");
        let mut v = serde_json::json!({"tok123": ["a tok123", 5], "n": {"m": "tok123"}});
        r.redact_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"***": ["a ***", 5], "n": {"m": "***"}})
        );
    }

    #[test]
    fn env_refs_finds_both_spellings() {
        let file = crate::diag::register_source("t.yml".to_string(), "x");
        let node = crate::yaml::parse(
            file,
            "cmd: \"x {{ env.API_TOKEN }} {{ env['OTHER'] }} {{ environment }}\"\n",
        )
        .expect("yaml");
        assert_eq!(env_refs(&node), ["API_TOKEN", "OTHER"]);
    }
}
