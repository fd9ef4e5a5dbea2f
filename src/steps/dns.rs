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

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::NetError;
use hickory_net::client::ClientHandle;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::{DnsExchange, DnsHandle};
use hickory_proto::op::{DnsRequestOptions, DnsResponse, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType as HickoryType};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::{CheckCx, Kind, RunsOn, StepError, StepOutput, TaskCx};
use crate::diag::Diagnostic;
use crate::expect::{ExpectFields, Op};

/// How long one query waits for its answer when the step sets no `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most records a zone transfer keeps (a bound on memory; past it the step fails).
const MAX_AXFR_RECORDS: usize = 1_000_000;

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
        Box::pin(run(self, cx))
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
        let actual = Self::lookup(fields, field, key);
        let compares = matches!(
            op,
            Op::Eq | Op::Ne | Op::Contains | Op::NotContains | Op::In | Op::NotIn
        );
        if !compares {
            return (actual, expected);
        }
        let rtype = fields
            .get("type")
            .and_then(Json::as_str)
            .unwrap_or("A")
            .to_string();
        match field {
            "answers" | "records" => {
                let record = field == "records" || fields.get("answers").is_none();
                let norm = |s: &str| {
                    if record {
                        normalise_record(s)
                    } else {
                        normalise_answer(&rtype, s)
                    }
                };
                (actual.map(sorted), sorted(map_strings(expected, &norm)))
            }
            "servers" => {
                let expected = match expected {
                    Json::Object(mut o) => {
                        if let Some(a) = o.remove("answers") {
                            o.insert(
                                "answers".into(),
                                sorted(map_strings(a, &|s| normalise_answer(&rtype, s))),
                            );
                        }
                        if let Some(Json::String(r)) = o.get("rcode").cloned() {
                            o.insert("rcode".into(), Json::String(r.to_ascii_uppercase()));
                        }
                        Json::Object(o)
                    }
                    other => other,
                };
                (actual, expected)
            }
            "rcode" => (actual, map_strings(expected, &|s| s.to_ascii_uppercase())),
            "consistent" if truthy(&expected) && actual == Some(Json::Bool(false)) => {
                (Some(disagreement(fields)), expected)
            }
            _ => (actual, expected),
        }
    }

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
        if self.reverse.is_some()
            && let Some(t) = self.rtype
            && t != RecordType::PTR
        {
            out.push(
                Diagnostic::error(format!("`reverse` looks up PTR records, not {t:?}"))
                    .at(cx.args.get("type").map(|n| n.span).unwrap_or(cx.kind_span))
                    .label("remove `type` or make it PTR")
                    .help("use `name:` to ask for other types"),
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

// ---------------------------------------------------------------------------------------------
// Running a query
// ---------------------------------------------------------------------------------------------

/// Why one server gave no answer.
#[derive(Debug, Clone)]
enum AskError {
    Timeout(String),
    Io(String),
}

impl AskError {
    fn message(&self) -> &str {
        match self {
            AskError::Timeout(m) | AskError::Io(m) => m,
        }
    }

    fn into_step_error(self) -> StepError {
        match self {
            AskError::Timeout(m) => StepError::Timeout(m),
            AskError::Io(m) => StepError::Io(m),
        }
    }
}

/// One server's answer to one question, normalised.
#[derive(Debug, Clone)]
struct Reply {
    server: SocketAddr,
    rcode: String,
    /// Records of the asked type, normalised and sorted.
    answers: Vec<String>,
    /// The smallest TTL in the answer section (CNAMEs included: the answer lives that long).
    ttl: Option<u32>,
    authoritative: bool,
    /// The UDP answer had TC set (and TCP was asked).
    truncated: bool,
    protocol: &'static str,
    /// CNAMEs the server followed on the way (their targets).
    cname: Vec<String>,
    /// TXT records' strings, one list per record (sorted like `answers`).
    txt: Vec<Vec<String>>,
    serial: Option<u32>,
}

impl Reply {
    fn fields(&self) -> Map<String, Json> {
        let mut m = Map::new();
        m.insert("rcode".into(), json!(self.rcode));
        m.insert("answers".into(), json!(self.answers));
        m.insert("ttl".into(), json!(self.ttl));
        m.insert("authoritative".into(), json!(self.authoritative));
        m.insert("truncated".into(), json!(self.truncated));
        m.insert("protocol".into(), json!(self.protocol));
        if !self.cname.is_empty() {
            m.insert("cname".into(), json!(self.cname));
        }
        if !self.txt.is_empty() {
            m.insert("txt".into(), json!(self.txt));
        }
        if let Some(s) = self.serial {
            m.insert("serial".into(), json!(s));
        }
        m
    }

    /// What must agree across servers: the rcode and the answer set (for SOA, the serial).
    fn agreement_key(&self, rtype: HickoryType) -> Json {
        if rtype == HickoryType::SOA && self.rcode == "NOERROR" {
            json!({ "rcode": self.rcode, "serial": self.serial })
        } else {
            json!({ "rcode": self.rcode, "answers": self.answers })
        }
    }
}

async fn run(spec: &Dns, cx: &TaskCx<'_>) -> Result<StepOutput, StepError> {
    // Within the step's own timeout, so that with several servers the one that does not answer
    // is named (the runner's timeout would cut the whole step off first).
    let wait = cx
        .timeout
        .map(|t| t.mul_f64(0.9))
        .unwrap_or(DEFAULT_TIMEOUT);
    let recursion = spec.recursion.unwrap_or(true);
    let protocol = spec.protocol.unwrap_or(Protocol::Udp);
    let mut explicit = Vec::with_capacity(spec.servers.len());
    for s in &spec.servers {
        explicit.push(parse_server(s).ok_or_else(|| {
            StepError::Protocol(format!(
                "`{s}` is not a server address (expected `ip` or `ip:port`)"
            ))
        })?);
    }

    if let Some(zone) = &spec.axfr {
        if explicit.is_empty() {
            return Err(StepError::Protocol("`axfr` needs `servers`".into()));
        }
        return transfer_step(zone, &explicit, wait, recursion).await;
    }

    let (qname, rtype) = question(spec)?;
    let mut out = StepOutput::default()
        .with("name", qname.to_ascii().to_ascii_lowercase())
        .with("type", rtype.to_string());

    if explicit.is_empty() {
        // The system resolver: its servers in order, the next one only when one does not answer.
        let servers = system_servers()?;
        let mut last = None;
        for server in servers {
            match ask(server, &qname, rtype, protocol, wait, recursion).await {
                Ok(reply) => {
                    out.fields.extend(reply.fields());
                    return Ok(out
                        .with("server", reply.server.to_string())
                        .with("consistent", true));
                }
                Err(e) => last = Some(e),
            }
        }
        return Err(last
            .map(AskError::into_step_error)
            .unwrap_or_else(|| StepError::Io("no name servers in /etc/resolv.conf".into())));
    }

    let asks = explicit
        .iter()
        .map(|s| ask(*s, &qname, rtype, protocol, wait, recursion));
    let results = futures_util::future::join_all(asks).await;

    let mut per_server = Map::new();
    let mut failures = Vec::new();
    let mut keys = BTreeSet::new();
    let mut first: Option<&Reply> = None;
    for (server, result) in explicit.iter().zip(&results) {
        match result {
            Ok(reply) => {
                per_server.insert(server.to_string(), Json::Object(reply.fields()));
                keys.insert(reply.agreement_key(rtype).to_string());
                first.get_or_insert(reply);
            }
            Err(e) => {
                per_server.insert(server.to_string(), json!({ "error": e.message() }));
                failures.push(e.message().to_string());
            }
        }
    }
    let Some(first) = first else {
        // Nobody answered: the first server's error is the step's.
        let e = results
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_else(|| AskError::Io("no server answered".into()));
        return Err(if explicit.len() == 1 {
            e.into_step_error()
        } else {
            match e {
                AskError::Timeout(_) => StepError::Timeout(failures.join("; ")),
                AskError::Io(_) => StepError::Io(failures.join("; ")),
            }
        });
    };
    out.fields.extend(first.fields());
    out = out
        .with("server", first.server.to_string())
        .with("consistent", failures.is_empty() && keys.len() == 1)
        .with("servers", Json::Object(per_server));
    if !failures.is_empty() {
        // Some servers answered: keep every answer for the report, and fail the step.
        out.failure = Some(failures.join("; "));
    }
    Ok(out)
}

/// The name and type to ask for.
fn question(spec: &Dns) -> Result<(Name, HickoryType), StepError> {
    if let Some(addr) = &spec.reverse {
        let ip: IpAddr = addr.trim().parse().map_err(|_| {
            StepError::Protocol(format!("`reverse`: `{addr}` is not an IP address"))
        })?;
        let name = reverse_name(ip);
        let name =
            Name::from_ascii(&name).map_err(|e| StepError::Protocol(format!("`{name}`: {e}")))?;
        return Ok((name, HickoryType::PTR));
    }
    let text = spec.name.as_deref().unwrap_or_default().trim();
    if text.is_empty() {
        return Err(StepError::Protocol(
            "`dns` needs `name`, `reverse` or `axfr`".into(),
        ));
    }
    Ok((
        fqdn_name(text)?,
        spec.rtype.unwrap_or(RecordType::A).hickory(),
    ))
}

/// `www.example.com` → the absolute name `www.example.com.` (sortie never applies search
/// domains: a check must mean one name).
fn fqdn_name(text: &str) -> Result<Name, StepError> {
    let absolute = if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    };
    Name::from_utf8(&absolute)
        .map_err(|e| StepError::Protocol(format!("`{text}` is not a DNS name: {e}")))
}

/// The PTR name of an address: `192.0.2.1` → `1.2.0.192.in-addr.arpa.`, IPv6 by nibbles under
/// `ip6.arpa.`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

/// The name servers of /etc/resolv.conf, read by hickory's system configuration.
fn system_servers() -> Result<Vec<SocketAddr>, StepError> {
    let data = std::fs::read("/etc/resolv.conf").map_err(|e| {
        StepError::Io(format!(
            "no `servers` given and /etc/resolv.conf is unreadable: {e}"
        ))
    })?;
    servers_from_resolv_conf(&data)
        .map_err(|e| StepError::Io(format!("no `servers` given and /etc/resolv.conf: {e}")))
}

/// The name servers a resolv.conf lists, each with its UDP port (53).
pub fn servers_from_resolv_conf(data: &[u8]) -> Result<Vec<SocketAddr>, String> {
    use hickory_resolver::config::ProtocolConfig;
    let (config, _) =
        hickory_resolver::system_conf::parse_resolv_conf(data).map_err(|e| e.to_string())?;
    Ok(config
        .name_servers()
        .iter()
        .map(|ns| {
            let port = ns
                .connections
                .iter()
                .find(|c| matches!(c.protocol, ProtocolConfig::Udp))
                .map(|c| c.port)
                .unwrap_or(53);
            SocketAddr::new(ns.ip, port)
        })
        .collect())
}

/// A client connection to one server. It keeps the runtime provider alive: hickory's bag of
/// background tasks lives in it, and the TCP connection's task is aborted once the last
/// provider is dropped.
struct Conn {
    exchange: DnsExchange<TokioRuntimeProvider>,
    _provider: TokioRuntimeProvider,
}

fn udp_conn(server: SocketAddr, wait: Duration) -> Conn {
    let provider = TokioRuntimeProvider::default();
    let exchange = UdpClientStream::builder(server, provider.clone())
        .with_timeout(Some(wait))
        .exchange();
    Conn {
        exchange,
        _provider: provider,
    }
}

async fn tcp_conn(server: SocketAddr, wait: Duration) -> Result<Conn, AskError> {
    let provider = TokioRuntimeProvider::default();
    let connect = TcpClientStream::exchange(server, None, wait, None, provider.clone());
    match tokio::time::timeout(wait, connect).await {
        Ok(Ok(exchange)) => Ok(Conn {
            exchange,
            _provider: provider,
        }),
        Ok(Err(e)) => Err(net_error(server, "tcp", wait, e)),
        Err(_) => Err(AskError::Timeout(format!(
            "{server} (tcp): no connection within {}",
            crate::units::Duration(wait)
        ))),
    }
}

fn net_error(server: SocketAddr, proto: &str, wait: Duration, e: NetError) -> AskError {
    match e {
        NetError::Timeout => AskError::Timeout(format!(
            "{server} ({proto}): no answer within {}",
            crate::units::Duration(wait)
        )),
        other => AskError::Io(format!("{server} ({proto}): {other}")),
    }
}

/// Sends one query and waits for its answer.
async fn exchange_once(
    conn: &Conn,
    server: SocketAddr,
    proto: &str,
    query: Query,
    options: DnsRequestOptions,
    wait: Duration,
) -> Result<DnsResponse, AskError> {
    let mut responses = conn.exchange.lookup(query, options);
    match tokio::time::timeout(wait, responses.next()).await {
        Ok(Some(Ok(r))) => Ok(r),
        Ok(Some(Err(e))) => Err(net_error(server, proto, wait, e)),
        Ok(None) | Err(_) => Err(net_error(server, proto, wait, NetError::Timeout)),
    }
}

/// Asks one server one question: UDP first (unless `tcp`), TCP when the UDP answer is truncated.
async fn ask(
    server: SocketAddr,
    qname: &Name,
    rtype: HickoryType,
    protocol: Protocol,
    wait: Duration,
    recursion: bool,
) -> Result<Reply, AskError> {
    let mut options = DnsRequestOptions::default();
    options.recursion_desired = recursion;
    let query = Query::query(qname.clone(), rtype);
    let mut truncated = false;
    if protocol == Protocol::Udp {
        let conn = udp_conn(server, wait);
        let response = exchange_once(&conn, server, "udp", query.clone(), options, wait).await?;
        if !response.metadata.truncation {
            return Ok(reply(server, rtype, &response, false, "udp"));
        }
        truncated = true;
    }
    let conn = tcp_conn(server, wait).await?;
    let response = exchange_once(&conn, server, "tcp", query, options, wait).await?;
    Ok(reply(server, rtype, &response, truncated, "tcp"))
}

fn reply(
    server: SocketAddr,
    rtype: HickoryType,
    response: &DnsResponse,
    truncated: bool,
    protocol: &'static str,
) -> Reply {
    let mut answers: Vec<(String, Option<Vec<String>>)> = Vec::new();
    let mut cname = Vec::new();
    let mut serial = None;
    for r in &response.answers {
        if r.record_type() == rtype {
            let parts = match &r.data {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect(),
                ),
                _ => None,
            };
            if let RData::SOA(soa) = &r.data {
                serial.get_or_insert(soa.serial);
            }
            answers.push((rdata_text(&r.data), parts));
        } else if let RData::CNAME(c) = &r.data {
            cname.push(name_text(&c.0));
        }
    }
    answers.sort();
    answers.dedup();
    Reply {
        server,
        rcode: rcode_text(response.metadata.response_code),
        txt: answers.iter().filter_map(|(_, p)| p.clone()).collect(),
        answers: answers.into_iter().map(|(a, _)| a).collect(),
        ttl: response.answers.iter().map(|r| r.ttl).min(),
        authoritative: response.metadata.authoritative,
        truncated,
        protocol,
        cname,
        serial,
    }
}

/// Rcodes as `dig` prints them.
pub fn rcode_text(code: ResponseCode) -> String {
    let n: u16 = code.into();
    match n {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        16 => "BADVERS".into(),
        23 => "BADCOOKIE".into(),
        other => format!("RCODE{other}"),
    }
}

/// A name in lower case, fully qualified.
fn name_text(name: &Name) -> String {
    let mut s = name.to_ascii().to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// One record's data as normalised text.
pub fn rdata_text(data: &RData) -> String {
    match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::MX(mx) => format!("{} {}", mx.preference, name_text(&mx.exchange)),
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|p| String::from_utf8_lossy(p))
            .collect(),
        RData::CNAME(n) => name_text(&n.0),
        RData::NS(n) => name_text(&n.0),
        RData::PTR(n) => name_text(&n.0),
        RData::SOA(s) => format!(
            "{} {} {} {} {} {} {}",
            name_text(&s.mname),
            name_text(&s.rname),
            s.serial,
            s.refresh,
            s.retry,
            s.expire,
            s.minimum
        ),
        RData::SRV(s) => format!(
            "{} {} {} {}",
            s.priority,
            s.weight,
            s.port,
            name_text(&s.target)
        ),
        RData::CAA(c) => format!(
            "{} {} \"{}\"",
            c.flags(),
            c.tag,
            String::from_utf8_lossy(&c.value).replace('"', "\\\"")
        ),
        other => other.to_string(),
    }
}

/// One record of a zone transfer: `owner TYPE data`.
fn record_text(r: &Record) -> String {
    format!(
        "{} {} {}",
        name_text(&r.name),
        r.record_type(),
        rdata_text(&r.data)
    )
}

// ---------------------------------------------------------------------------------------------
// Zone transfer
// ---------------------------------------------------------------------------------------------

struct Transfer {
    rcode: String,
    records: Vec<String>,
    serial: Option<u32>,
    ttl: Option<u32>,
}

async fn transfer_step(
    zone: &str,
    servers: &[SocketAddr],
    wait: Duration,
    recursion: bool,
) -> Result<StepOutput, StepError> {
    let origin = fqdn_name(zone.trim())?;
    let primary = servers[0];
    let t = transfer(primary, &origin, wait)
        .await
        .map_err(AskError::into_step_error)?;
    let mut out = StepOutput::default()
        .with("name", name_text(&origin))
        .with("type", "AXFR")
        .with("server", primary.to_string())
        .with("protocol", "tcp")
        .with("rcode", t.rcode.clone())
        .with("count", t.records.len())
        .with("serial", json!(t.serial))
        .with("ttl", json!(t.ttl))
        .with("records", json!(t.records));
    if t.rcode != "NOERROR" {
        out.fields.insert(
            "error".into(),
            json!(format!(
                "{primary} refused the transfer of {} ({})",
                name_text(&origin),
                t.rcode
            )),
        );
    }
    // With more servers: each one's SOA serial, to show the zone is the same version everywhere.
    if servers.len() > 1 {
        let mut per_server = Map::new();
        per_server.insert(
            primary.to_string(),
            json!({ "rcode": t.rcode, "serial": t.serial }),
        );
        let asks = servers[1..].iter().map(|s| {
            ask(
                *s,
                &origin,
                HickoryType::SOA,
                Protocol::Udp,
                wait,
                recursion,
            )
        });
        let mut serials = BTreeSet::new();
        serials.insert(json!(t.serial).to_string());
        let mut all_answered = true;
        for (server, result) in servers[1..]
            .iter()
            .zip(futures_util::future::join_all(asks).await)
        {
            match result {
                Ok(r) => {
                    serials.insert(json!(r.serial).to_string());
                    per_server.insert(
                        server.to_string(),
                        json!({ "rcode": r.rcode, "serial": r.serial }),
                    );
                }
                Err(e) => {
                    all_answered = false;
                    per_server.insert(server.to_string(), json!({ "error": e.message() }));
                }
            }
        }
        out = out
            .with("consistent", all_answered && serials.len() == 1)
            .with("servers", Json::Object(per_server));
    } else {
        out = out.with("consistent", true);
    }
    Ok(out)
}

/// AXFR over TCP: every record between the opening and the closing SOA (the SOA listed once).
async fn transfer(server: SocketAddr, origin: &Name, wait: Duration) -> Result<Transfer, AskError> {
    let mut conn = tcp_conn(server, wait).await?;
    let mut stream = conn.exchange.zone_transfer(origin.clone(), None);
    let mut records = Vec::new();
    let mut serial = None;
    let mut ttl: Option<u32> = None;
    let mut soas = 0;
    loop {
        // `wait` bounds each message, so a large zone may take longer than one query would.
        let response = match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => return Err(net_error(server, "tcp", wait, NetError::Timeout)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(net_error(server, "tcp", wait, e)),
            Ok(Some(Ok(r))) => r,
        };
        if response.metadata.response_code != ResponseCode::NoError {
            return Ok(Transfer {
                rcode: rcode_text(response.metadata.response_code),
                records: Vec::new(),
                serial: None,
                ttl: None,
            });
        }
        for r in &response.answers {
            if let RData::SOA(soa) = &r.data {
                soas += 1;
                if soas == 2 {
                    break;
                }
                serial.get_or_insert(soa.serial);
            }
            ttl = Some(ttl.map_or(r.ttl, |t| t.min(r.ttl)));
            records.push(record_text(r));
        }
        if soas >= 2 {
            break;
        }
        if records.len() > MAX_AXFR_RECORDS {
            return Err(AskError::Io(format!(
                "{server}: the zone has more than {MAX_AXFR_RECORDS} records; sortie keeps no more"
            )));
        }
    }
    if records.is_empty() {
        return Err(AskError::Io(format!(
            "{server}: the transfer of {} ended with no records",
            name_text(origin)
        )));
    }
    Ok(Transfer {
        rcode: "NOERROR".into(),
        records,
        serial,
        ttl,
    })
}

// ---------------------------------------------------------------------------------------------
// Expectations
// ---------------------------------------------------------------------------------------------

fn truthy(v: &Json) -> bool {
    matches!(v, Json::Bool(true)) || matches!(v, Json::String(s) if s == "true")
}

fn sorted(v: Json) -> Json {
    match v {
        Json::Array(mut items) => {
            items.sort_by_key(|i| match i {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            });
            Json::Array(items)
        }
        other => other,
    }
}

/// Applies `f` to a string or to each string of a list.
fn map_strings(v: Json, f: &dyn Fn(&str) -> String) -> Json {
    match v {
        Json::String(s) => Json::String(f(&s)),
        Json::Array(items) => Json::Array(items.into_iter().map(|i| map_strings(i, f)).collect()),
        other => other,
    }
}

fn qualify(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    }
}

/// Writes an expected answer the way answers are written: names qualified and lower case,
/// addresses in their canonical form. Text that does not fit the type is left as it is.
pub fn normalise_answer(rtype: &str, text: &str) -> String {
    let t = text.trim();
    let words: Vec<&str> = t.split_whitespace().collect();
    let requalify = |at: &[usize]| {
        words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if at.contains(&i) {
                    qualify(w)
                } else {
                    w.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    match rtype {
        "A" | "AAAA" => t
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|_| t.to_string()),
        "CNAME" | "NS" | "PTR" if words.len() == 1 => qualify(t),
        "MX" if words.len() == 2 => requalify(&[1]),
        "SRV" if words.len() == 4 => requalify(&[3]),
        "SOA" if words.len() == 7 => requalify(&[0, 1]),
        _ => t.to_string(),
    }
}

/// An expected zone-transfer record (`owner TYPE data`), normalised like the records.
pub fn normalise_record(text: &str) -> String {
    let t = text.trim();
    let mut parts = t.splitn(3, char::is_whitespace).filter(|p| !p.is_empty());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(owner), Some(rtype), Some(data)) => {
            let rtype = rtype.to_ascii_uppercase();
            format!(
                "{} {rtype} {}",
                qualify(owner),
                normalise_answer(&rtype, data)
            )
        }
        _ => t.to_string(),
    }
}

/// Each server's answers (its rcode when it is not NOERROR, its serial for SOA, its error when
/// it gave no answer), for a failed `consistent: true`.
fn disagreement(fields: &Json) -> Json {
    let soa = fields
        .get("type")
        .and_then(Json::as_str)
        .is_some_and(|t| t == "SOA" || t == "AXFR");
    let mut out = Map::new();
    if let Some(servers) = fields.get("servers").and_then(Json::as_object) {
        for (addr, s) in servers {
            let v = if let Some(e) = s.get("error") {
                json!({ "error": e })
            } else if s.get("rcode").and_then(Json::as_str) != Some("NOERROR") {
                s.get("rcode").cloned().unwrap_or(Json::Null)
            } else if soa {
                json!({ "serial": s.get("serial") })
            } else {
                s.get("answers").cloned().unwrap_or(Json::Null)
            };
            out.insert(addr.clone(), v);
        }
    }
    Json::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.1".parse().unwrap()),
            "1.2.0.192.in-addr.arpa."
        );
        assert_eq!(
            reverse_name("2001:db8::53".parse().unwrap()),
            "3.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
    }

    #[test]
    fn expected_answers_are_normalised_like_answers() {
        assert_eq!(
            normalise_answer("MX", "10 Mail.Lab.Test"),
            "10 mail.lab.test."
        );
        assert_eq!(normalise_answer("CNAME", "www.lab.test."), "www.lab.test.");
        assert_eq!(
            normalise_answer("SRV", "10 5 8080 www.lab.test"),
            "10 5 8080 www.lab.test."
        );
        assert_eq!(normalise_answer("AAAA", "2001:DB8:0::53"), "2001:db8::53");
        assert_eq!(normalise_answer("TXT", "v=spf1 -all"), "v=spf1 -all");
        assert_eq!(
            normalise_record("www.lab.test a 127.0.0.1"),
            "www.lab.test. A 127.0.0.1"
        );
        assert_eq!(
            normalise_record("lab.test MX 10 mail.lab.test"),
            "lab.test. MX 10 mail.lab.test."
        );
    }

    #[test]
    fn answer_sets_compare_in_any_order() {
        let fields =
            json!({ "type": "MX", "answers": ["10 mail.lab.test.", "20 backup.lab.test."] });
        let (actual, expected) = Dns::expectation_values(
            &fields,
            "answers",
            None,
            Op::Eq,
            json!(["20 backup.lab.test", "10 mail.lab.test"]),
        );
        assert_eq!(actual, Some(expected));
        // A pattern is left alone.
        let (_, expected) =
            Dns::expectation_values(&fields, "answers", None, Op::Matches, json!("^10 mail"));
        assert_eq!(expected, json!("^10 mail"));
    }

    #[test]
    fn a_failed_consistency_shows_every_server() {
        let fields = json!({
            "type": "A",
            "consistent": false,
            "servers": {
                "127.0.0.1:5301": { "rcode": "NOERROR", "answers": ["127.0.0.1"] },
                "127.0.0.1:5302": { "rcode": "NXDOMAIN", "answers": [] },
            }
        });
        let (actual, _) = Dns::expectation_values(&fields, "consistent", None, Op::Eq, json!(true));
        assert_eq!(
            actual,
            Some(json!({ "127.0.0.1:5301": ["127.0.0.1"], "127.0.0.1:5302": "NXDOMAIN" }))
        );
        let (actual, _) =
            Dns::expectation_values(&fields, "consistent", None, Op::Eq, json!(false));
        assert_eq!(actual, Some(json!(false)));
    }

    #[test]
    fn resolv_conf_servers() {
        let servers =
            servers_from_resolv_conf(b"search lab.test\nnameserver 127.0.0.53\nnameserver ::1\n")
                .unwrap();
        assert_eq!(
            servers,
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn rcodes_read_like_dig() {
        assert_eq!(rcode_text(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_text(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_text(ResponseCode::ServFail), "SERVFAIL");
    }
}
