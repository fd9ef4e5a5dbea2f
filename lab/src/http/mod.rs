//! The lab's HTTP server (hyper), for `http` steps to talk to: plain HTTP/1.1, or HTTPS with the
//! lab's generated CA ([`crate::pki`]), optionally requiring a client certificate (mutual TLS),
//! speaking HTTP/2 when the client offers it.
//!
//! It listens on one port on every address it is given (127.0.0.1 and each SSH host's address, so
//! `http://{{ host.address }}:{{ http_port }}/health` answers as that host), on its own thread and
//! runtime ([`crate::background`]). Routes, all answering JSON unless noted:
//!
//! | route | answer |
//! |---|---|
//! | `/health` | 200 `{"status":"ok","host":NAME,"address":IP}` — NAME is the host whose address was dialled |
//! | `/status/{code}` | that status |
//! | `/echo` (any method, any suffix) | the request: method, path, query, args, headers, body, body_len, json, form, version, tls, client_cert |
//! | `/redirect/{n}` | 302 to `/redirect/{n-1}`; `/redirect/0` is 200 |
//! | `/redirect-to?url=U[&status=S]` | S (default 302) to U |
//! | `/loop/a`, `/loop/b` | 302 to each other, for ever |
//! | `/slow?ms=N` | 200 after N ms (at most 120 s) |
//! | `/slow-body?ms=N` | 200 and half the body at once, the rest after N ms |
//! | `/truncated/{n}` | announces 2n bytes, sends n, then drops the connection |
//! | `/json` | a fixed sample document |
//! | `/bytes/{n}` | n bytes of text (at most 64 MiB), `application/octet-stream` |
//! | `/binary/{n}` | n bytes of a fixed pseudo-random sequence, not UTF-8 (at most 64 MiB) |
//! | `/encoded/{gzip\|deflate\|br}` | the `/json` document compressed so, with `Content-Encoding` |
//! | `/basic-auth/{user}/{pass}` | 200 with those Basic credentials, else 401 |
//! | `/bearer[/{token}]` | 200 with a (that) Bearer token, else 401 |
//! | `/login` (POST JSON `{"username","password"}`) | 200 `{"token":…}` when the password is [`LOGIN_PASSWORD`], else 401 |
//! | `/api/me` | 200 `{"user":…}` with a Bearer token from `/login`, else 401 |
//! | `/cookies/set?name=value…` | 200, setting those cookies (`Path=/`) |
//! | `/cookies` | 200 `{"cookies":{…}}`: the cookies the request carried |
//! | `/upload` (multipart) | 200 `{"parts":[{name, filename, content_type, size, sha256, text}]}` |
//! | `/response-headers?Name=value` | 200 with those headers set |
//!
//! Every request is recorded (method, path, headers, body length and its first MiB) for tests to
//! read with [`HttpServer::requests`]; the most requests in flight at once is kept too.
//!
//! This module listens, shakes hands, serves connections and records requests; `routes` answers
//! them (its submodules grouped by what they serve) with the responses `respond` builds.

mod respond;
mod routes;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::LabError;
use crate::background::{Background, bind_all};
use crate::pki::TestPki;
use respond::{Body, json_response};

const MAX_BODY: usize = 256 << 20;
const KEPT_BODY: usize = 1 << 20;
const MAX_RECORDED: usize = 100_000;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The password `/login` accepts, for any user name.
pub const LOGIN_PASSWORD: &str = "lab-password";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// The body's first MiB.
    pub body: Vec<u8>,
    /// The address the client dialled.
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: String,
    /// Whether it came over TLS, and whether the client presented a certificate.
    pub tls: bool,
    pub client_cert: bool,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a connection negotiated, for the requests on it.
#[derive(Clone, Copy, Debug, Default)]
struct ConnInfo {
    tls: bool,
    client_cert: bool,
}

struct State {
    names: HashMap<IpAddr, String>,
    requests: Mutex<Vec<RecordedRequest>>,
    total: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Tokens `/login` handed out → user name.
    tokens: Mutex<HashMap<String, String>>,
    logins: AtomicUsize,
    handshake_failures: AtomicUsize,
    connections: AtomicUsize,
}

/// How the TLS variant authenticates clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Any client; no certificate asked for.
    None,
    /// Only clients with a certificate signed by the lab CA (mutual TLS).
    Required,
}

/// A running HTTP server; dropping it stops it.
pub struct HttpServer {
    port: u16,
    addrs: Vec<SocketAddr>,
    state: Arc<State>,
    scheme: &'static str,
    _background: Background,
}

impl HttpServer {
    /// Starts on 127.0.0.1 and a free port; `/health` names the host `lab`.
    pub fn start() -> Result<HttpServer, LabError> {
        HttpServer::start_on(&[(Ipv4Addr::LOCALHOST, "lab".to_string())], 0)
    }

    /// Starts on `port` (0: a free one) on each address; each address answers `/health` with
    /// its name.
    pub fn start_on(names: &[(Ipv4Addr, String)], port: u16) -> Result<HttpServer, LabError> {
        HttpServer::launch(names, port, None)
    }

    /// The HTTPS variant: the same routes over TLS with `pki`'s server certificate (which must
    /// name the addresses), HTTP/2 or HTTP/1.1 by ALPN, and client certificates as `auth` says.
    pub fn start_tls(
        names: &[(Ipv4Addr, String)],
        port: u16,
        pki: &TestPki,
        auth: ClientAuth,
    ) -> Result<HttpServer, LabError> {
        let config = server_config(pki, auth)?;
        HttpServer::launch(names, port, Some(tokio_rustls::TlsAcceptor::from(config)))
    }

    fn launch(
        names: &[(Ipv4Addr, String)],
        port: u16,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Result<HttpServer, LabError> {
        let state = Arc::new(State {
            names: names
                .iter()
                .map(|(ip, name)| (IpAddr::V4(*ip), name.clone()))
                .collect(),
            requests: Mutex::new(Vec::new()),
            total: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            tokens: Mutex::new(HashMap::new()),
            logins: AtomicUsize::new(0),
            handshake_failures: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let ips: Vec<Ipv4Addr> = names.iter().map(|(ip, _)| *ip).collect();
        let shared = state.clone();
        let (background, (port, addrs)) = Background::start(scheme, move |stop| async move {
            let (port, listeners) = bind_all(&ips, port, 1024).await?;
            let addrs: Vec<SocketAddr> =
                ips.iter().map(|ip| SocketAddr::from((*ip, port))).collect();
            let serve = async move {
                let mut tasks = tokio::task::JoinSet::new();
                for listener in listeners {
                    tasks.spawn(accept_loop(
                        listener,
                        shared.clone(),
                        tls.clone(),
                        stop.clone(),
                    ));
                }
                while tasks.join_next().await.is_some() {}
            };
            Ok(((port, addrs), serve))
        })?;
        Ok(HttpServer {
            port,
            addrs,
            state,
            scheme,
            _background: background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The first address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addrs
            .first()
            .copied()
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)))
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// `http://ADDR:PORT{path}` (`https://` for the TLS variant) on the first address.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr(), path)
    }

    /// Every request recorded so far (the first 100 000).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// How many requests arrived, recorded or not.
    pub fn request_count(&self) -> usize {
        self.state.total.load(Ordering::SeqCst)
    }

    pub fn clear_requests(&self) {
        if let Ok(mut r) = self.state.requests.lock() {
            r.clear();
        }
    }

    /// The most requests handled at the same time since the start or the last reset.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn reset_max_in_flight(&self) {
        self.state.max_in_flight.store(0, Ordering::SeqCst);
    }

    /// How many successful `/login`s there were.
    pub fn logins(&self) -> usize {
        self.state.logins.load(Ordering::SeqCst)
    }

    /// How many connections were accepted (a pooling client opens few).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// How many TLS handshakes failed (unknown CA on the client's side, missing client
    /// certificate, …).
    pub fn handshake_failures(&self) -> usize {
        self.state.handshake_failures.load(Ordering::SeqCst)
    }
}

/// The rustls server side: the lab's server certificate, h2 and http/1.1 by ALPN, and client
/// certificates verified against the lab CA when `auth` requires them.
fn server_config(pki: &TestPki, auth: ClientAuth) -> Result<Arc<rustls::ServerConfig>, LabError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_err = |e: rustls::Error| LabError::Server(format!("TLS server config: {e}"));
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let builder = match auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Required => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca.cert_der.clone()).map_err(tls_err)?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| LabError::Server(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(vec![pki.server.cert_der.clone()], pki.server.key_der())
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    // Runs until the server is stopped; each connection is its own task.
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(_) => {
                // Out of descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        state.connections.fetch_add(1, Ordering::SeqCst);
        let state = state.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = async {
                match tls {
                    None => serve(stream, false, ConnInfo::default(), state, local, peer).await,
                    Some(acceptor) => {
                        let shake =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                        let Ok(Ok(stream)) = shake else {
                            state.handshake_failures.fetch_add(1, Ordering::SeqCst);
                            return;
                        };
                        let (_, conn) = stream.get_ref();
                        let h2 = conn.alpn_protocol() == Some(b"h2".as_slice());
                        let info = ConnInfo {
                            tls: true,
                            client_cert: conn.peer_certificates().is_some_and(|c| !c.is_empty()),
                        };
                        serve(stream, h2, info, state, local, peer).await
                    }
                }
            };
            tokio::select! {
                () = served => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// Serves one connection, HTTP/2 or HTTP/1.1, until it closes.
async fn serve<S>(
    stream: S,
    h2: bool,
    info: ConnInfo,
    state: Arc<State>,
    local: SocketAddr,
    peer: SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(req, state, info, local, peer).await) }
    });
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<State>);

impl InFlight {
    fn enter(state: &Arc<State>) -> InFlight {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    info: ConnInfo,
    local: SocketAddr,
    peer: SocketAddr,
) -> Response<Body> {
    let _in_flight = InFlight::enter(&state);
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return json_response(413, &json!({ "error": e.to_string() })),
    };
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // HTTP/2 carries the host in the URI's authority, not in a `Host` header.
    if parts.headers.get("host").is_none()
        && let Some(authority) = parts.uri.authority()
    {
        headers.insert(0, ("host".to_string(), authority.to_string()));
    }
    let record = RecordedRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers,
        body_len: body.len(),
        body: body[..body.len().min(KEPT_BODY)].to_vec(),
        local,
        peer,
        version: format!("{:?}", parts.version),
        tls: info.tls,
        client_cert: info.client_cert,
    };
    state.total.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut requests) = state.requests.lock()
        && requests.len() < MAX_RECORDED
    {
        requests.push(record.clone());
    }
    let host = state
        .names
        .get(&local.ip())
        .cloned()
        .unwrap_or_else(|| local.ip().to_string());
    routes::route(&record, &body, &host, &state).await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::Value;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// A raw HTTP/1.1 exchange over a real TCP connection; returns the whole response.
    pub(crate) fn request(addr: SocketAddr, raw: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    }

    pub(crate) fn get(addr: SocketAddr, path: &str) -> String {
        request(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"),
        )
    }

    #[test]
    fn answers_health_status_echo_redirect_and_records_requests() {
        let server = HttpServer::start().unwrap();
        let addr = server.addr();

        let health = get(addr, "/health");
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(health.ends_with(r#"{"status":"ok","host":"lab","address":"127.0.0.1"}"#));

        assert!(get(addr, "/status/503").starts_with("HTTP/1.1 503 "));
        assert!(get(addr, "/status/204").starts_with("HTTP/1.1 204 "));
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404 "));

        let redirect = get(addr, "/redirect/2");
        assert!(redirect.starts_with("HTTP/1.1 302 "));
        assert!(redirect.contains("location: /redirect/1\r\n"));

        let echo = request(
            addr,
            "POST /echo/x?a=1&b=two+words&a=3 HTTP/1.1\r\nHost: lab\r\nX-Token: abc\r\n\
             Content-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"k\": true}",
        );
        let body: Value = serde_json::from_str(echo.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["method"], "POST");
        assert_eq!(body["path"], "/echo/x");
        assert_eq!(body["args"]["b"], "two words");
        assert_eq!(body["args"]["a"], json!(["1", "3"]));
        assert_eq!(body["headers"]["x-token"], "abc");
        assert_eq!(body["json"]["k"], true);
        assert_eq!(body["body_len"], 11);

        let auth = base64::engine::general_purpose::STANDARD.encode("u:p");
        let ok = request(
            addr,
            &format!(
                "GET /basic-auth/u/p HTTP/1.1\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert!(ok.starts_with("HTTP/1.1 200 "));
        assert!(get(addr, "/basic-auth/u/p").starts_with("HTTP/1.1 401 "));
        assert!(get(addr, "/bytes/100").contains("content-length: 100\r\n"));
        assert!(get(addr, "/json").contains("\"items\":[{\"id\":1"));

        let requests = server.requests();
        let post = requests.iter().find(|r| r.method == "POST").unwrap();
        assert_eq!(post.header("X-Token"), Some("abc"));
        assert_eq!(post.body_len, 11);
        assert_eq!(post.query.as_deref(), Some("a=1&b=two+words&a=3"));
        assert_eq!(server.request_count(), requests.len());
    }

    #[test]
    fn keeps_connections_alive_and_counts_requests_in_flight() {
        let server = HttpServer::start().unwrap();
        let addr = server.addr();
        // Two requests on one connection.
        let both = request(
            addr,
            "GET /health HTTP/1.1\r\nHost: a\r\n\r\nGET /json HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(both.matches("HTTP/1.1 200 OK").count(), 2);

        let started = std::time::Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || get(addr, "/slow?ms=300")))
            .collect();
        for t in threads {
            assert!(t.join().unwrap().contains("\"slept_ms\":300"));
        }
        assert!(started.elapsed() < Duration::from_millis(1500));
        assert_eq!(server.max_in_flight(), 4);
    }
}
