//! The `tcp` kind's rules beyond the types, run by `sortie check` and before every run, on the
//! arguments as written (literal values only; templates are checked once rendered): a dialog
//! replaces `send`/`read`; every exchange sends or reads; `starttls` needs TLS settings that
//! verify, once; literal `hex`/`base64` bytes decode; `until_regex` compiles; an exchange's
//! `expect` names reply fields with valid matchers. Each rule adds its diagnostics to `out`.

use super::Tcp;
use super::payload;
use crate::diag::{Diagnostic, Span};
use crate::steps::{BoolOr, CheckCx};
use crate::yaml::Node;

/// Every rule of the kind, in the order their diagnostics are listed.
pub(super) fn check(spec: &Tcp, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    if let Some(send) = cx.args.get("send") {
        payload::check_literal(send, out);
    }
    if let Some(read) = cx.args.get("read") {
        check_read(read, out);
    }
    let Some(dialog) = cx.args.get("dialog") else {
        return;
    };
    for key in ["send", "read"] {
        if let Some((k, _)) = cx
            .args
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.key_text() == key))
        {
            out.push(
                Diagnostic::error(format!("`dialog` replaces `{key}`"))
                    .at(k.span)
                    .label("beside a dialog")
                    .help(format!("move `{key}` into the dialog's first exchange")),
            );
        }
    }
    let Some(items) = dialog.as_seq() else {
        return;
    };
    if items.is_empty() {
        out.push(
            Diagnostic::error("a dialog needs at least one exchange")
                .at(dialog.span)
                .label("empty")
                .help("write `dialog: [{ read: { line: true }, expect: { response: { matches: \"^220 \" } } }]`"),
        );
    }
    let mut starttls: Vec<Span> = Vec::new();
    for item in items {
        exchange(item, out, &mut starttls);
    }
    starttls_rules(spec, cx, &starttls, out);
}

/// One exchange's rules; `starttls` collects where exchanges start TLS.
fn exchange(item: &Node, out: &mut Vec<Diagnostic>, starttls: &mut Vec<Span>) {
    let has = |k: &str| item.get(k).is_some();
    let tls_here = item
        .get("starttls")
        .is_some_and(|n| n.as_str() == Some("true"));
    if tls_here
        && let Some((k, _)) = item
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.key_text() == "starttls"))
    {
        starttls.push(k.span);
    }
    if !has("send") && !has("read") && !has("expect") && !tls_here {
        out.push(
            Diagnostic::error("this exchange neither sends nor reads")
                .at(item.span)
                .label("an exchange with nothing to do")
                .help("give it `send` (text, or `{ hex: … }` / `{ base64: … }`), `read` (`until`, `until_regex`, `line`, `bytes`), or both"),
        );
    }
    if let Some(send) = item.get("send") {
        payload::check_literal(send, out);
    }
    if let Some(read) = item.get("read") {
        check_read(read, out);
    }
    if let Some(expect) = item.get("expect") {
        payload::parse_expect(expect, out);
    }
}

/// A literal `until_regex` compiles.
fn check_read(read: &Node, out: &mut Vec<Diagnostic>) {
    let Some(node) = read.get("until_regex") else {
        return;
    };
    if let Some(text) = crate::steps::literal(Some(node))
        && let Err(e) = regex::bytes::Regex::new(text)
    {
        let msg = e.to_string();
        let last = msg.lines().last().unwrap_or("invalid").trim().to_string();
        out.push(
            Diagnostic::error("invalid regular expression")
                .at(node.span)
                .label(last)
                .help(
                    "the syntax is Rust's regex crate (like RE2); escape `\\` inside double quotes",
                ),
        );
    }
}

/// `starttls` once, with the step's `tls` settings present, on, and verifying (else warned).
fn starttls_rules(spec: &Tcp, cx: &CheckCx<'_>, at: &[Span], out: &mut Vec<Diagnostic>) {
    let Some(first) = at.first() else {
        return;
    };
    if let Some(second) = at.get(1) {
        out.push(
            Diagnostic::error("a dialog starts TLS once")
                .at(*second)
                .label("second `starttls`")
                .also(*first, "TLS starts here")
                .help("keep the first `starttls: true`"),
        );
    }
    let tls_span = cx.args.get("tls").map(|n| n.span);
    match &spec.tls {
        None | Some(BoolOr::Bool(false)) => out.push(
            Diagnostic::error("`starttls` needs the step's `tls` settings")
                .at(*first)
                .label(if spec.tls.is_none() {
                    "the step has no `tls`"
                } else {
                    "the step says `tls: false`"
                })
                .help("add `tls: { ca: CA.pem }` (or `tls: true` for the system's CAs) beside `port`; the upgrade verifies the server with them"),
        ),
        Some(BoolOr::Value(s)) if s.verify == Some(false) => out.push(
            Diagnostic::warning("TLS certificates will not be verified after `starttls`")
                .at(tls_span.unwrap_or(*first))
                .label("anyone on the path can impersonate this server")
                .help("trust the server's CA with `tls: { ca: PEM-FILE }` instead"),
        ),
        Some(_) => {}
    }
}
