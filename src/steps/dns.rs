//! The `dns` kind: DNS queries from the runner to the system resolver or listed servers, with
//! exact rcodes, normalised answers per record type, TTLs, reverse lookups, consistency across
//! servers and zone transfers. Results: `rcode`, `answers`, `ttl`, `authoritative`,
//! `consistent`, `servers` (per-server answers), and for `axfr`: `records`, `count`, `serial`.

use serde::Deserialize;

use super::{CheckCx, Kind, RunsOn};
use crate::diag::Diagnostic;
use crate::expect::ExpectFields;

/// Query DNS from the runner.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// The name to look up.
    pub name: Option<String>,
    /// The record type (default A).
    #[serde(rename = "type")]
    pub rtype: Option<RecordType>,
    /// An IPv4 or IPv6 address to look up by PTR (builds the `in-addr.arpa`/`ip6.arpa` name).
    pub reverse: Option<String>,
    /// Servers to ask, `ip` or `ip:port` (default the system resolver). With several, each is
    /// asked and their answers are compared.
    #[serde(default)]
    pub servers: Vec<String>,
    /// `udp` (default; falls back to TCP when truncated) or `tcp`.
    pub protocol: Option<Protocol>,
    /// Ask for recursion (default true).
    pub recursion: Option<bool>,
    /// Transfer this zone (AXFR) from the first server.
    pub axfr: Option<String>,
}

/// DNS record types sortie can query and normalise.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
pub enum RecordType {
    A,
    AAAA,
    MX,
    TXT,
    CNAME,
    NS,
    SOA,
    PTR,
    SRV,
    CAA,
}

/// Transport for DNS queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Udp,
    Tcp,
}

impl Kind for Dns {
    fn run<'a>(&'a self, _cx: &'a super::TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(async {
            Err(super::StepError::Protocol(
                "the `dns` step is being built".into(),
            ))
        })
    }

    const NAME: &'static str = "dns";
    const SUMMARY: &'static str =
        "Query DNS from the runner and check rcodes, answers, TTLs, zone transfers.";
    const RUNS_ON: RunsOn = RunsOn::Runner;
    const EXPECT: ExpectFields = ExpectFields {
        plain: &[
            "rcode",
            "answers",
            "ttl",
            "authoritative",
            "consistent",
            "records",
            "count",
            "serial",
        ],
        keyed: &["servers"],
    };
    const DEFAULT_EXPECT: &'static str = "rcode: NOERROR\nanswers: { len: { gte: 1 } }";

    fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
        let given: Vec<&str> = [
            ("name", self.name.is_some()),
            ("reverse", self.reverse.is_some()),
            ("axfr", self.axfr.is_some()),
        ]
        .iter()
        .filter(|(_, g)| *g)
        .map(|(n, _)| *n)
        .collect();
        if given.len() != 1 {
            out.push(
                Diagnostic::error(if given.is_empty() {
                    "`dns` needs `name`, `reverse` or `axfr`".to_string()
                } else {
                    format!(
                        "`dns` takes one of `name`, `reverse`, `axfr`, not `{}` and `{}`",
                        given[0], given[1]
                    )
                })
                .at(given
                    .get(1)
                    .and_then(|k| cx.args.get(k))
                    .map(|n| n.span)
                    .unwrap_or(cx.kind_span))
                .label("one query per step")
                .help("`name: www.example.com`, `reverse: 192.0.2.1` or `axfr: example.com`"),
            );
        }
        if let Some(addr) = super::literal(cx.args.get("reverse"))
            && addr.parse::<std::net::IpAddr>().is_err()
        {
            out.push(
                Diagnostic::error(format!("`{addr}` is not an IP address"))
                    .at(cx
                        .args
                        .get("reverse")
                        .map(|n| n.span)
                        .unwrap_or(cx.kind_span))
                    .label("`reverse` takes an IPv4 or IPv6 address")
                    .help(
                        "use `name:` with `type: PTR` for a name that is already in-addr.arpa form",
                    ),
            );
        }
        if let Some(servers) = cx.args.get("servers").and_then(|s| s.as_seq()) {
            for s in servers {
                if let Some(t) = super::literal(Some(s))
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
        if self.axfr.is_some() && self.servers.is_empty() && cx.args.get("servers").is_none() {
            out.push(
                Diagnostic::error("`axfr` needs `servers`")
                    .at(cx.args.get("axfr").map(|n| n.span).unwrap_or(cx.kind_span))
                    .label("which server should transfer the zone?")
                    .help("add `servers: [\"192.0.2.53\"]`"),
            );
        }
    }
}

/// `ip`, `ip:port` or `[v6]:port` → socket address (port 53 by default).
pub fn parse_server(s: &str) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, SocketAddr};
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    s.parse::<SocketAddr>().ok()
}
