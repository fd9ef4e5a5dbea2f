//! The lab's authoritative DNS server (hickory-server, in-process), for `dns` steps to query.
//!
//! [`DnsServer::start`] serves UDP and TCP on one port of a loopback address, on its own thread
//! and runtime ([`crate::background`]). Its zones are zone-file text built here from
//! [`DnsOptions`] (the lab's hosts, a serial, extra lines), parsed by hickory's zone-file parser:
//!
//! | zone | what it holds |
//! |---|---|
//! | `lab.test.` | SOA, NS, A, AAAA, MX, TXT (one and several strings), CNAME, SRV, CAA; `hNN` → each lab host's address; `big` (100 A records: truncated over UDP); `short` (TTL 5). AXFR allowed. |
//! | `other.test.` | a small zone whose AXFR is refused |
//! | `127.in-addr.arpa.` | PTR for 127.0.0.1, `mail` and every lab host |
//! | `8.b.d.0.1.0.0.2.ip6.arpa.` | PTR for `2001:db8::53` (`ns1.lab.test.`) |
//!
//! `servfail.lab.test.` answers SERVFAIL (whatever the type); a name in no zone above answers
//! REFUSED. Every query is recorded ([`DnsServer::queries`]) with its transport and RD flag, so
//! tests can see a TCP retry or a cleared recursion bit. [`DnsBlackhole`] is a UDP socket (and a
//! TCP listener) on one port that never answers, for timeouts.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_net::runtime::{Time, TokioRuntimeProvider};
use hickory_net::xfer::Protocol;
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RecordSet, RrKey};
use hickory_proto::serialize::txt::Parser;
use hickory_server::Server;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{
    AxfrPolicy, Catalog, MessageResponseBuilder, ZoneHandler, ZoneType,
};

use crate::LabError;
use crate::background::Background;

/// The serial of the lab zone unless [`DnsOptions::serial`] says otherwise.
pub const LAB_SERIAL: u32 = 2024010101;
/// Records in `big.lab.test.`: more than fit in a 1232-byte UDP answer.
pub const BIG_RECORDS: u32 = 100;
/// How long a TCP client may stay idle before the server closes its connection.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// How to start a [`DnsServer`].
#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// Address to listen on (UDP and TCP).
    pub ip: Ipv4Addr,
    /// Port; 0 picks one free for both UDP and TCP.
    pub port: u16,
    /// Lab hosts: `NAME.lab.test.` A records and their PTRs.
    pub hosts: Vec<(String, Ipv4Addr)>,
    /// The lab zone's SOA serial.
    pub serial: u32,
    /// Zone-file lines appended to `lab.test.` (relative names are under `lab.test.`), to give a
    /// second server different content.
    pub extra: Vec<String>,
    /// Further zones, (origin, zone-file text), e.g. the site's `internal.` ([`crate::inside`]).
    pub zones: Vec<(String, String)>,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            ip: Ipv4Addr::LOCALHOST,
            port: 0,
            hosts: Vec::new(),
            serial: LAB_SERIAL,
            extra: Vec::new(),
            zones: Vec::new(),
        }
    }
}

impl DnsOptions {
    /// The lab zone with these hosts, on 127.0.0.1 and a free port.
    pub fn with_hosts(hosts: &[(String, Ipv4Addr)]) -> Self {
        DnsOptions {
            hosts: hosts.to_vec(),
            ..DnsOptions::default()
        }
    }

    /// The text of the `lab.test.` zone file these options describe.
    pub fn lab_zone(&self) -> String {
        let mut z = format!(
            "$ORIGIN lab.test.\n\
             $TTL 3600\n\
             @          IN SOA   ns1.lab.test. hostmaster.lab.test. ( {serial} 3600 600 86400 300 )\n\
             @          IN NS    ns1.lab.test.\n\
             @          IN NS    ns2.lab.test.\n\
             @          IN A     127.0.0.1\n\
             @          IN MX    10 mail.lab.test.\n\
             @          IN MX    20 backup.lab.test.\n\
             @          IN TXT   \"v=spf1 ip4:127.0.0.0/8 -all\"\n\
             @          IN CAA   0 issue \"letsencrypt.org\"\n\
             @          IN CAA   0 iodef \"mailto:security@lab.test\"\n\
             ns1        IN A     127.0.0.1\n\
             ns1        IN AAAA  2001:db8::53\n\
             ns2        IN A     127.0.0.2\n\
             www    300 IN A     127.0.0.1\n\
             www    300 IN AAAA  ::1\n\
             alias   60 IN CNAME www.lab.test.\n\
             mail       IN A     127.0.0.25\n\
             backup     IN A     127.0.0.26\n\
             multi      IN TXT   \"part one\" \"part two\"\n\
             _http._tcp IN SRV   10 5 8080 www.lab.test.\n\
             _http._tcp IN SRV   20 5 8081 backup.lab.test.\n\
             short    5 IN A     127.0.0.5\n",
            serial = self.serial
        );
        for i in 1..=BIG_RECORDS {
            z.push_str(&format!("big        IN A     127.1.0.{i}\n"));
        }
        for (name, ip) in &self.hosts {
            z.push_str(&format!("{name:<10} IN A     {ip}\n"));
        }
        for line in &self.extra {
            z.push_str(line);
            z.push('\n');
        }
        z
    }

    /// The text of the `127.in-addr.arpa.` zone file.
    pub fn reverse_zone(&self) -> String {
        let mut z = format!(
            "$ORIGIN 127.in-addr.arpa.\n\
             $TTL 3600\n\
             @          IN SOA   ns1.lab.test. hostmaster.lab.test. ( {serial} 3600 600 86400 300 )\n\
             @          IN NS    ns1.lab.test.\n\
             1.0.0      IN PTR   ns1.lab.test.\n\
             25.0.0     IN PTR   mail.lab.test.\n",
            serial = self.serial
        );
        for (name, ip) in &self.hosts {
            let [_, b, c, d] = ip.octets();
            z.push_str(&format!("{d}.{c}.{b:<6} IN PTR   {name}.lab.test.\n"));
        }
        z
    }
}

const OTHER_ZONE: &str = "$ORIGIN other.test.\n\
    $TTL 3600\n\
    @   IN SOA ns1.lab.test. hostmaster.lab.test. ( 1 3600 600 86400 300 )\n\
    @   IN NS  ns1.lab.test.\n\
    @   IN A   127.0.0.1\n";

const IP6_ZONE: &str = "$ORIGIN 8.b.d.0.1.0.0.2.ip6.arpa.\n\
    $TTL 3600\n\
    @   IN SOA ns1.lab.test. hostmaster.lab.test. ( 1 3600 600 86400 300 )\n\
    @   IN NS  ns1.lab.test.\n\
    3.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 IN PTR ns1.lab.test.\n";

/// One query as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenQuery {
    /// The query name, lower case, fully qualified.
    pub name: String,
    /// `A`, `MX`, `AXFR`, …
    pub rtype: String,
    /// `udp` or `tcp`.
    pub protocol: String,
    pub recursion_desired: bool,
    pub src: SocketAddr,
}

/// A running DNS server; dropping it stops it.
pub struct DnsServer {
    addr: SocketAddr,
    options: DnsOptions,
    seen: Arc<Mutex<Vec<SeenQuery>>>,
    _background: Background,
}

impl DnsServer {
    /// Builds the zones from `options`, binds UDP and TCP, and serves until dropped.
    pub fn start(options: DnsOptions) -> Result<DnsServer, LabError> {
        let catalog = catalog(&options)?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler = LabHandler {
            catalog,
            servfail: LowerName::from(name("servfail.lab.test.")?),
            seen: seen.clone(),
        };
        let (ip, port) = (options.ip, options.port);
        let (background, addr) = Background::start("dns", move |_stop| async move {
            let (udp, tcp) = bind_pair(ip, port).await?;
            let addr = udp
                .local_addr()
                .map_err(|e| LabError::io("reading the DNS server's address", e))?;
            let mut server = Server::new(handler);
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE, 64);
            let serve = async move {
                // It only returns when its sockets fail; the lab stops it by cancellation.
                let _ = server.block_until_done().await;
            };
            Ok((addr, serve))
        })?;
        Ok(DnsServer {
            addr,
            options,
            seen,
            _background: background,
        })
    }

    /// The address it answers on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn options(&self) -> &DnsOptions {
        &self.options
    }

    /// Every query received so far, in arrival order.
    pub fn queries(&self) -> Vec<SeenQuery> {
        self.seen.lock().map(|q| q.clone()).unwrap_or_default()
    }
}

fn name(text: &str) -> Result<Name, LabError> {
    Name::from_ascii(text).map_err(|e| LabError::Server(format!("DNS name {text}: {e}")))
}

/// Parses one zone file into a zone handler.
fn zone(
    origin: &str,
    text: &str,
    axfr: AxfrPolicy,
) -> Result<(LowerName, Arc<dyn ZoneHandler>), LabError> {
    let origin = name(origin)?;
    let (origin, records): (Name, BTreeMap<RrKey, RecordSet>) =
        Parser::new(text, None, Some(origin))
            .parse()
            .map_err(|e| LabError::Server(format!("zone {text:.40}…: {e}")))?;
    let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
        origin.clone(),
        records,
        ZoneType::Primary,
        axfr,
    )
    .map_err(|e| LabError::Server(format!("zone {origin}: {e}")))?;
    Ok((LowerName::from(origin), Arc::new(handler)))
}

fn catalog(options: &DnsOptions) -> Result<Catalog, LabError> {
    let mut catalog = Catalog::new();
    for (origin, text, axfr) in [
        ("lab.test.", options.lab_zone(), AxfrPolicy::AllowAll),
        ("other.test.", OTHER_ZONE.to_string(), AxfrPolicy::Deny),
        (
            "127.in-addr.arpa.",
            options.reverse_zone(),
            AxfrPolicy::AllowAll,
        ),
        (
            "8.b.d.0.1.0.0.2.ip6.arpa.",
            IP6_ZONE.to_string(),
            AxfrPolicy::AllowAll,
        ),
    ] {
        let (origin, handler) = zone(origin, &text, axfr)?;
        catalog.upsert(origin, vec![handler]);
    }
    for (origin, text) in &options.zones {
        let (origin, handler) = zone(origin, text, AxfrPolicy::AllowAll)?;
        catalog.upsert(origin, vec![handler]);
    }
    Ok(catalog)
}

/// Binds UDP and TCP on the same port (with `port` 0, one free for both: a few tries).
async fn bind_pair(
    ip: Ipv4Addr,
    port: u16,
) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener), LabError> {
    let mut last = None;
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind((ip, port)).await.map_err(|e| {
            LabError::PortUnavailable {
                address: ip.to_string(),
                port,
                detail: format!("udp: {e}"),
            }
        })?;
        let chosen = udp
            .local_addr()
            .map_err(|e| LabError::io("reading a bound address", e))?
            .port();
        match tokio::net::TcpListener::bind((ip, chosen)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => {
                let err = LabError::PortUnavailable {
                    address: ip.to_string(),
                    port: chosen,
                    detail: format!("tcp: {e}"),
                };
                if port != 0 {
                    return Err(err);
                }
                last = Some(err);
            }
        }
    }
    Err(last.unwrap_or(LabError::Server("no port free for both UDP and TCP".into())))
}

/// The catalog, plus the SERVFAIL name and the query log.
struct LabHandler {
    catalog: Catalog,
    servfail: LowerName,
    seen: Arc<Mutex<Vec<SeenQuery>>>,
}

#[async_trait::async_trait]
impl RequestHandler for LabHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        if let Ok(info) = request.request_info() {
            let query = SeenQuery {
                name: info.query.name().to_string(),
                rtype: info.query.query_type().to_string(),
                protocol: match info.protocol {
                    Protocol::Udp => "udp".to_string(),
                    Protocol::Tcp => "tcp".to_string(),
                    other => other.to_string(),
                },
                recursion_desired: info.metadata.recursion_desired,
                src: info.src,
            };
            if let Ok(mut seen) = self.seen.lock()
                && seen.len() < 1_000_000
            {
                seen.push(query);
            }
            if info.query.name() == &self.servfail {
                let response = MessageResponseBuilder::new(&request.queries, None)
                    .error_msg(&request.metadata, ResponseCode::ServFail);
                return match response_handle.send_response(response).await {
                    Ok(sent) => sent,
                    Err(_) => failed(request),
                };
            }
        }
        self.catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// A port that takes DNS queries and never answers: a bound UDP socket nobody reads and a TCP
/// listener nobody accepts on (connections complete in the backlog, then nothing).
pub struct DnsBlackhole {
    addr: SocketAddr,
    _udp: std::net::UdpSocket,
    _tcp: std::net::TcpListener,
}

impl DnsBlackhole {
    /// On `ip`, a port free for both UDP and TCP.
    pub fn start(ip: Ipv4Addr) -> Result<DnsBlackhole, LabError> {
        let mut last = None;
        for _ in 0..20 {
            let udp = std::net::UdpSocket::bind((ip, 0))
                .map_err(|e| LabError::io("binding a UDP socket", e))?;
            let port = udp
                .local_addr()
                .map_err(|e| LabError::io("reading a bound address", e))?
                .port();
            match std::net::TcpListener::bind((ip, port)) {
                Ok(tcp) => {
                    return Ok(DnsBlackhole {
                        addr: SocketAddr::from((ip, port)),
                        _udp: udp,
                        _tcp: tcp,
                    });
                }
                Err(e) => last = Some(LabError::io(format!("binding TCP {ip}:{port}"), e)),
            }
        }
        Err(last.unwrap_or(LabError::Server("no port free for both UDP and TCP".into())))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_parse_and_the_server_binds_udp_and_tcp_on_one_port() {
        let options = DnsOptions::with_hosts(&[("h01".into(), Ipv4Addr::new(127, 64, 0, 1))]);
        assert!(
            options
                .lab_zone()
                .contains("h01        IN A     127.64.0.1")
        );
        assert!(
            options
                .reverse_zone()
                .contains("1.0.64     IN PTR   h01.lab.test.")
        );
        let server = DnsServer::start(options).unwrap();
        assert_ne!(server.port(), 0);
        // TCP answers on the same port.
        std::net::TcpStream::connect(server.addr()).unwrap();
    }
}
