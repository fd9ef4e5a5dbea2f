//! The `dns` kind's rules beyond the types, run by `sortie check` and before every run
//! (`Kind::check` in `mod.rs`), on the step's arguments as written in the playbook (literal
//! values only; templates are checked once rendered). Each rule adds its diagnostics to the
//! caller's list.

use super::{Dns, RecordType, parse_server};
use crate::diag::{Diagnostic, Span};
use crate::steps::CheckCx;

/// Every rule of the kind, in the order their diagnostics are listed.
pub(super) fn check(spec: &Dns, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    one_query(spec, cx, out);
    reverse_is_an_address(cx, out);
    reverse_is_ptr(spec, cx, out);
    server_addresses(cx, out);
    axfr_has_servers(spec, cx, out);
    via_is_tcp(spec, cx, out);
}

/// `via` asks over TCP: an SSH session carries no UDP.
fn via_is_tcp(spec: &Dns, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    if spec.via.is_some() && spec.protocol == Some(super::Protocol::Udp) {
        out.push(
            Diagnostic::error("`protocol: udp` cannot go `via` a host")
                .at(span_of(cx, "protocol"))
                .label("an SSH session carries TCP only")
                .help("remove `protocol` (with `via`, DNS is asked over TCP) or remove `via`"),
        );
    }
}

/// Where an argument is written, else the kind's key.
fn span_of(cx: &CheckCx<'_>, key: &str) -> Span {
    cx.args.get(key).map(|n| n.span).unwrap_or(cx.kind_span)
}

/// Exactly one of `name`, `reverse`, `axfr`.
fn one_query(spec: &Dns, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    let given: Vec<&str> = [
        ("name", spec.name.is_some()),
        ("reverse", spec.reverse.is_some()),
        ("axfr", spec.axfr.is_some()),
    ]
    .iter()
    .filter(|(_, g)| *g)
    .map(|(n, _)| *n)
    .collect();
    if given.len() == 1 {
        return;
    }
    out.push(
        Diagnostic::error(if given.is_empty() {
            "`dns` needs `name`, `reverse` or `axfr`".to_string()
        } else {
            format!(
                "`dns` takes one of `name`, `reverse`, `axfr`, not `{}` and `{}`",
                given[0], given[1]
            )
        })
        .at(given.get(1).map(|k| span_of(cx, k)).unwrap_or(cx.kind_span))
        .label("one query per step")
        .help("`name: www.example.com`, `reverse: 192.0.2.1` or `axfr: example.com`"),
    );
}

/// A literal `reverse` is an IP address.
fn reverse_is_an_address(cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    if let Some(addr) = crate::steps::literal(cx.args.get("reverse"))
        && addr.parse::<std::net::IpAddr>().is_err()
    {
        out.push(
            Diagnostic::error(format!("`{addr}` is not an IP address"))
                .at(span_of(cx, "reverse"))
                .label("`reverse` takes an IPv4 or IPv6 address")
                .help("use `name:` with `type: PTR` for a name that is already in-addr.arpa form"),
        );
    }
}

/// `reverse` asks for PTR records only.
fn reverse_is_ptr(spec: &Dns, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    if spec.reverse.is_some()
        && let Some(t) = spec.rtype
        && t != RecordType::PTR
    {
        out.push(
            Diagnostic::error(format!("`reverse` looks up PTR records, not {t:?}"))
                .at(span_of(cx, "type"))
                .label("remove `type` or make it PTR")
                .help("use `name:` to ask for other types"),
        );
    }
}

/// Literal `servers` are addresses (`ip` or `ip:port`).
fn server_addresses(cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    let Some(servers) = cx.args.get("servers").and_then(|s| s.as_seq()) else {
        return;
    };
    for s in servers {
        if let Some(t) = crate::steps::literal(Some(s))
            && parse_server(t).is_none()
        {
            out.push(
                Diagnostic::error(format!("`{t}` is not a server address"))
                    .at(s.span)
                    .label("expected `ip` or `ip:port` (IPv6 as `[::1]:53`)")
                    .help("name servers by address; sortie does not resolve server names"),
            );
        }
    }
}

/// A zone transfer names the server to transfer from.
fn axfr_has_servers(spec: &Dns, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    if spec.axfr.is_some() && spec.servers.is_empty() && cx.args.get("servers").is_none() {
        out.push(
            Diagnostic::error("`axfr` needs `servers`")
                .at(span_of(cx, "axfr"))
                .label("which server should transfer the zone?")
                .help("add `servers: [\"192.0.2.53\"]`"),
        );
    }
}
