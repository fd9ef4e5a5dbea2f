//! The `http` kind's rules beyond the types, run by `sortie check` and before every run
//! (`Kind::check` in `mod.rs`): on the step's arguments as written in the playbook (literal
//! values only; templates are checked once rendered) and on its `json` expectations'
//! JSONPath keys. Each rule adds its diagnostics to the caller's list.

use reqwest::Method;
use reqwest::header::HeaderName;

use super::Http;
use super::json_path::parse_path;
use crate::diag::{Diagnostic, Span};
use crate::steps::CheckCx;

/// Every rule of the kind, in the order their diagnostics are listed.
pub(super) fn check(spec: &Http, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    one_body(spec, cx, out);
    url_is_http(cx, out);
    method_is_a_token(cx, out);
    header_names(cx, out);
    auth_is_one_kind(spec, cx, out);
    tls_settings(spec, cx, out);
    save_per_host(spec, cx, out);
    json_paths(cx, out);
}

/// Where an argument is written, else the kind's key.
fn span_of(cx: &CheckCx<'_>, key: &str) -> Span {
    cx.args.get(key).map(|n| n.span).unwrap_or(cx.kind_span)
}

/// At most one of `json`, `form`, `multipart`, `body`, `body_file`.
fn one_body(spec: &Http, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    let bodies: Vec<&str> = [
        ("json", spec.json.is_some()),
        ("form", spec.form.is_some()),
        ("multipart", spec.multipart.is_some()),
        ("body", spec.body.is_some()),
        ("body_file", spec.body_file.is_some()),
    ]
    .iter()
    .filter(|(_, g)| *g)
    .map(|(n, _)| *n)
    .collect();
    if bodies.len() > 1 {
        out.push(
            Diagnostic::error(format!(
                "a request has one body, found `{}` and `{}`",
                bodies[0], bodies[1]
            ))
            .at(span_of(cx, bodies[1]))
            .label("second body")
            .help("keep one of `json`, `form`, `multipart`, `body`, `body_file`"),
        );
    }
}

/// A literal URL is `http://…` or `https://…`.
fn url_is_http(cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    if let Some(url) = crate::steps::literal(cx.args.get("url"))
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        out.push(
            Diagnostic::error(format!("`{url}` is not an http(s) URL"))
                .at(span_of(cx, "url"))
                .label("expected `http://…` or `https://…`")
                .help("write the full URL, e.g. `http://{{ host.address }}:8080/health`"),
        );
    }
}

/// A literal method is an HTTP method token.
fn method_is_a_token(cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    if let Some(method) = crate::steps::literal(cx.args.get("method"))
        && Method::from_bytes(method.to_ascii_uppercase().as_bytes()).is_err()
    {
        out.push(
            Diagnostic::error(format!("`{method}` is not an HTTP method"))
                .at(span_of(cx, "method"))
                .label("not a method token")
                .help("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, or another token"),
        );
    }
}

/// Header names are tokens.
fn header_names(cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    let Some(headers) = cx.args.get("headers").and_then(|h| h.as_map()) else {
        return;
    };
    for (k, _) in headers {
        let name = k.key_text();
        if !crate::yaml::is_template(&name) && HeaderName::from_bytes(name.as_bytes()).is_err() {
            out.push(
                Diagnostic::error(format!("`{name}` is not a valid header name"))
                    .at(k.span)
                    .label("letters, digits and `-` only")
                    .help("header names are tokens such as `Accept` or `X-Request-Id`"),
            );
        }
    }
}

/// `auth` is `basic` or `bearer`, not both or neither.
fn auth_is_one_kind(spec: &Http, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    if let Some(auth) = &spec.auth
        && auth.basic.is_some() == auth.bearer.is_some()
    {
        out.push(
            Diagnostic::error("`auth` takes one of `basic` or `bearer`")
                .at(span_of(cx, "auth"))
                .label("give exactly one")
                .help("`auth: { basic: [user, password] }` or `auth: { bearer: TOKEN }`"),
        );
    }
}

/// A client certificate comes with its key; `verify` and `insecure` agree; not verifying
/// certificates is warned about.
fn tls_settings(spec: &Http, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    let Some(tls) = &spec.tls else {
        return;
    };
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        out.push(
            Diagnostic::error("`client_cert` and `client_key` go together")
                .at(span_of(cx, "tls"))
                .label("one of the pair is missing")
                .help("give both the PEM certificate and its private key"),
        );
    }
    if tls.verify == Some(true) && tls.insecure == Some(true) {
        out.push(
            Diagnostic::error("`verify: true` and `insecure: true` contradict each other")
                .at(span_of(cx, "tls"))
                .label("keep one")
                .help("certificates are verified unless `insecure: true` (or `verify: false`)"),
        );
    } else if !tls.verifies() {
        out.push(
            Diagnostic::warning("TLS certificates will not be verified")
                .at(span_of(cx, "tls"))
                .label("anyone on the path can impersonate this server")
                .help("trust the server's CA with `tls: { ca: PEM-FILE }` instead"),
        );
    }
}

/// `save` names a file per host (or the step runs once).
fn save_per_host(spec: &Http, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    let Some(save) = &spec.save else {
        return;
    };
    let per_host = save.contains("host") || save.contains("item");
    if !cx.run_once && !per_host {
        out.push(
            Diagnostic::error("`save` is the same file for every host")
                .at(span_of(cx, "save"))
                .label("hosts would overwrite each other's file here")
                .help("make it differ per host, e.g. `save: \"out/{{ host.name }}.json\"`, or set `run_once: true`"),
        );
    }
}

/// The keys of `json` expectations are JSONPath queries.
fn json_paths(cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    for e in cx.expect.iter().filter(|e| e.field == "json") {
        if let Some(path) = &e.key
            && !crate::yaml::is_template(path)
            && let Err(msg) = parse_path(path)
        {
            out.push(
                Diagnostic::error(format!("invalid JSONPath `{path}`"))
                    .at(e.span)
                    .label(msg)
                    .help("RFC 9535 syntax: `$.status`, `$.items[0].name`, `$.items[?@.enabled == true].id`, `$['a-key']`"),
            );
        }
    }
}
