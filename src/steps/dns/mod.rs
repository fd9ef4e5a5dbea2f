//! The `dns` kind: DNS queries from the runner to the system resolver or listed servers, with
//! exact rcodes, normalised answers per record type, TTLs, reverse lookups, consistency across
//! servers and zone transfers. Results: `rcode`, `answers`, `ttl`, `authoritative`,
//! `consistent`, `servers` (per-server answers), and for `axfr`: `records`, `count`, `serial`.
//!
//! Queries go through hickory's raw client (`hickory_net`), not its resolver: the resolver
//! caches, follows its own retry policy and reports REFUSED as NXDOMAIN, while an assertion
//! needs the rcode, flags and TTLs the server actually sent. Over UDP a truncated answer is
//! asked again over TCP, as `dig` does. Answers are normalised text per type (names lower case
//! and fully qualified, MX `10 mail.example.com.`, SRV `10 5 8080 www.example.com.`, SOA
//! `mname rname serial refresh retry expire minimum`, CAA `0 issue "ca.example"`, TXT the
//! strings of one record joined with nothing between them, as SPF and DKIM read them; the
//! separate strings are in `txt`). Expected answers are normalised the same way and lists
//! compare as sets (see [`Dns::expectation_values`]).
//!
//! The parts: the arguments and the `Kind` impl here; `check` (the rules), `query` (the run:
//! the question, the listed servers compared), `system` (the system resolver's servers),
//! `client` (one question to one server), `transfer` (AXFR), `records` (names and records as
//! text), `compare` (how expectations compare).

use hickory_proto::rr::RecordType as HickoryType;
use serde::Deserialize;
use serde_json::Value as Json;

use super::{CheckCx, Kind, RunsOn, TaskCx};
use crate::diag::Diagnostic;
use crate::expect::{ExpectFields, Op};

mod check;
mod client;
mod compare;
mod query;
mod records;
mod system;
mod transfer;

pub use compare::{normalise_answer, normalise_record};
pub use query::reverse_name;
pub use records::{rcode_text, rdata_text};
pub use system::servers_from_resolv_conf;

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
    /// Ask from a host instead of the runner: `host` (the current host) or an inventory
    /// host's name (a template), over TCP through its SSH session, to `servers` or else to the
    /// name servers of that host's /etc/resolv.conf (read over SFTP).
    pub via: Option<String>,
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

impl RecordType {
    fn hickory(self) -> HickoryType {
        match self {
            RecordType::A => HickoryType::A,
            RecordType::AAAA => HickoryType::AAAA,
            RecordType::MX => HickoryType::MX,
            RecordType::TXT => HickoryType::TXT,
            RecordType::CNAME => HickoryType::CNAME,
            RecordType::NS => HickoryType::NS,
            RecordType::SOA => HickoryType::SOA,
            RecordType::PTR => HickoryType::PTR,
            RecordType::SRV => HickoryType::SRV,
            RecordType::CAA => HickoryType::CAA,
        }
    }
}

/// Transport for DNS queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Udp,
    Tcp,
}

impl Kind for Dns {
    fn run<'a>(&'a self, cx: &'a TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(query::run(self, cx))
    }

    const NAME: &'static str = "dns";
    const SUMMARY: &'static str =
        "Query DNS from the runner and check rcodes, answers, TTLs, zone transfers.";
    const RUNS_ON: RunsOn = RunsOn::Runner;
    const NAME_FIELDS: &'static [&'static str] = &["name", "reverse", "axfr"];
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
            "truncated",
            "protocol",
            "cname",
            "txt",
        ],
        keyed: &["servers"],
    };
    const DEFAULT_EXPECT: &'static str = "rcode: NOERROR\nanswers: { len: { gte: 1 } }";

    /// `answers` of a zone transfer are its `records` (so the default expectation, NOERROR
    /// with at least one answer, means "the transfer gave records"); `servers["ip"]` finds the
    /// server at `ip:53`.
    fn lookup(fields: &Json, field: &str, key: Option<&str>) -> Option<Json> {
        if field == "answers" && fields.get("answers").is_none() {
            return fields.get("records").cloned();
        }
        if field == "servers"
            && let Some(k) = key
            && let Some(servers) = fields.get("servers").and_then(Json::as_object)
        {
            if let Some(v) = servers.get(k) {
                return Some(v.clone());
            }
            if let Some(addr) = parse_server(k) {
                return servers.get(&addr.to_string()).cloned();
            }
        }
        super::generic_lookup(fields, field, key)
    }

    /// Answer and record lists compare as sets of normalised text: both sides are sorted and
    /// the expected entries are qualified like the answers (`mail.lab.test` →
    /// `mail.lab.test.`, `10 mail` → `10 mail.`), for the matchers that compare values (not
    /// `matches`, whose argument is a pattern). `rcode` compares in upper case. When
    /// `consistent: true` fails, the actual value shown is each server's answer set, so the
    /// failure says who disagrees with whom.
    fn expectation_values(
        fields: &Json,
        field: &str,
        key: Option<&str>,
        op: Op,
        expected: Json,
    ) -> (Option<Json>, Json) {
        compare::values(
            fields,
            field,
            Self::lookup(fields, field, key),
            op,
            expected,
        )
    }

    fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
        check::check(self, cx, out);
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
