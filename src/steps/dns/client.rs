//! The raw client path (hickory's `hickory_net`, not its resolver, which caches, retries by
//! its own policy and reports REFUSED as NXDOMAIN): one question (`Ask`) sent to one server
//! over UDP, asked again over TCP when the answer is truncated (as `dig` does), or over TCP
//! alone; the answer comes back as a `Reply` with the rcode, flags, TTL and normalised answers
//! (`records.rs`) the server actually sent, or as an `AskError` naming the server. Called by
//! `query.rs`, `system.rs` and `transfer.rs` (which also opens its TCP connection here).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::NetError;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::{DnsExchange, DnsHandle};
use hickory_proto::op::{DnsRequestOptions, DnsResponse, Query};
use hickory_proto::rr::{Name, RData, RecordType as HickoryType};
use serde_json::{Map, Value as Json, json};

use super::Protocol;
use super::records::{name_text, rcode_text, rdata_text};
use crate::conn::via::Gateway;
use crate::error::StepError;

/// One question and how to ask it.
#[derive(Clone, Copy)]
pub(super) struct Ask<'a> {
    pub name: &'a Name,
    pub rtype: HickoryType,
    pub protocol: Protocol,
    /// How long each exchange may wait.
    pub wait: Duration,
    pub recursion: bool,
    /// Ask from this via host (over TCP through its gateway: SSH carries no UDP).
    pub via: Option<&'a Gateway>,
}

/// Why one server gave no answer.
#[derive(Debug, Clone)]
pub(super) enum AskError {
    Timeout(String),
    Io(String),
}

impl AskError {
    pub(super) fn message(&self) -> &str {
        match self {
            AskError::Timeout(m) | AskError::Io(m) => m,
        }
    }

    pub(super) fn into_step_error(self) -> StepError {
        match self {
            AskError::Timeout(m) => StepError::Timeout(m),
            AskError::Io(m) => StepError::Io(m),
        }
    }
}

/// One server's answer to one question, normalised.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub server: SocketAddr,
    pub rcode: String,
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
    pub serial: Option<u32>,
}

impl Reply {
    /// The reply as result fields (`rcode`, `answers`, `ttl`, …).
    pub(super) fn fields(&self) -> Map<String, Json> {
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
    pub(super) fn agreement_key(&self, rtype: HickoryType) -> Json {
        if rtype == HickoryType::SOA && self.rcode == "NOERROR" {
            json!({ "rcode": self.rcode, "serial": self.serial })
        } else {
            json!({ "rcode": self.rcode, "answers": self.answers })
        }
    }
}

/// A client connection to one server. It keeps the runtime provider alive: hickory's bag of
/// background tasks lives in it, and the TCP connection's task is aborted once the last
/// provider is dropped.
pub(super) struct Conn {
    pub exchange: DnsExchange<TokioRuntimeProvider>,
    _provider: TokioRuntimeProvider,
}

/// A UDP "connection" to `server`.
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

/// A TCP connection to `server`, within `wait`: from the runner, or from a via host.
pub(super) async fn tcp_conn(
    server: SocketAddr,
    wait: Duration,
    via: Option<&Gateway>,
) -> Result<Conn, AskError> {
    let provider = TokioRuntimeProvider::default();
    let connect = async {
        match via {
            None => TcpClientStream::exchange(server, None, wait, None, provider.clone()).await,
            Some(g) => via_exchange(g, server, wait, &provider).await,
        }
    };
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

/// A DNS exchange over a TCP connection the via host made (the same multiplexer hickory
/// builds over its own connection).
async fn via_exchange(
    g: &Gateway,
    server: SocketAddr,
    wait: Duration,
    provider: &TokioRuntimeProvider,
) -> Result<DnsExchange<TokioRuntimeProvider>, NetError> {
    use hickory_net::runtime::iocompat::AsyncIoTokioAsStd;
    use hickory_net::runtime::{RuntimeProvider, Spawn};
    let tcp = g
        .connect(&server.ip().to_string(), server.port())
        .await
        .map_err(|f| NetError::from(f.message().to_string()))?;
    let (stream, sender) = hickory_net::tcp::TcpStream::from_stream(AsyncIoTokioAsStd(tcp), server);
    let mux = hickory_net::DnsMultiplexer::new(TcpClientStream::from_stream(stream), sender)
        .with_timeout(wait);
    let (exchange, bg) = DnsExchange::from_stream(mux);
    provider.create_handle().spawn_bg(bg);
    Ok(exchange)
}

/// A client error, named by its server and transport.
pub(super) fn net_error(server: SocketAddr, proto: &str, wait: Duration, e: NetError) -> AskError {
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
pub(super) async fn ask(server: SocketAddr, q: &Ask<'_>) -> Result<Reply, AskError> {
    let Ask {
        name,
        rtype,
        protocol,
        wait,
        recursion,
        via,
    } = *q;
    let mut options = DnsRequestOptions::default();
    options.recursion_desired = recursion;
    let query = Query::query(name.clone(), rtype);
    let mut truncated = false;
    if protocol == Protocol::Udp && via.is_none() {
        let conn = udp_conn(server, wait);
        let response = exchange_once(&conn, server, "udp", query.clone(), options, wait).await?;
        if !response.metadata.truncation {
            return Ok(reply(server, rtype, &response, false, "udp"));
        }
        truncated = true;
    }
    let conn = tcp_conn(server, wait, via).await?;
    let response = exchange_once(&conn, server, "tcp", query, options, wait).await?;
    Ok(reply(server, rtype, &response, truncated, "tcp"))
}

/// The reply of one response: the records of the asked type normalised, sorted and
/// deduplicated, CNAMEs followed, the smallest TTL.
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
