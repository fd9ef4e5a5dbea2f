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

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio_util::sync::CancellationToken;

use crate::LabError;
use crate::background::{Background, bind_all};
use crate::pki::TestPki;

const MAX_BODY: usize = 256 << 20;
const KEPT_BODY: usize = 1 << 20;
const MAX_RECORDED: usize = 100_000;
const MAX_SLOW_MS: u64 = 120_000;
const MAX_BYTES: usize = 64 << 20;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Multipart text parts up to this size are echoed back as text.
const ECHOED_PART: usize = 4096;

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

/// Response bodies: whole, or streamed (and possibly cut off with an error).
type Body = BoxBody<Bytes, std::io::Error>;

fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
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
    route(&record, &body, &host, &state).await
}

fn arg<'a>(args: &'a [(String, String)], name: &str) -> Option<&'a str> {
    args.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn redirect(status: u16, location: &str) -> Response<Body> {
    let mut resp = json_response(status, &json!({ "location": location }));
    set_header(&mut resp, "location", location);
    resp
}

fn unauthorized(scheme: &str) -> Response<Body> {
    let mut resp = json_response(401, &json!({ "authenticated": false }));
    set_header(&mut resp, "www-authenticate", scheme);
    resp
}

async fn route(req: &RecordedRequest, body: &Bytes, host: &str, state: &State) -> Response<Body> {
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let args = query_args(req.query.as_deref().unwrap_or(""));
    match segments.as_slice() {
        ["health"] => json_response(
            200,
            &json!({ "status": "ok", "host": host, "address": req.local.ip().to_string() }),
        ),
        ["status", code] => match code.parse::<u16>().ok().filter(|c| (200..600).contains(c)) {
            Some(code) if code == 204 || code == 304 => empty_response(code),
            Some(code) => json_response(code, &json!({ "status": code })),
            None => json_response(
                400,
                &json!({ "error": format!("bad status code `{code}`") }),
            ),
        },
        ["echo", ..] => {
            let mut headers = serde_json::Map::new();
            for (name, value) in &req.headers {
                let joined = match headers.get(name).and_then(Value::as_str) {
                    Some(before) => format!("{before}, {value}"),
                    None => value.clone(),
                };
                headers.insert(name.clone(), Value::from(joined));
            }
            let text = String::from_utf8_lossy(body);
            let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let form = if req
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
            {
                args_json(&query_args(&text))
            } else {
                Value::Null
            };
            json_response(
                200,
                &json!({
                    "method": req.method,
                    "path": req.path,
                    "query": req.query,
                    "args": args_json(&args),
                    "headers": headers,
                    "body": text,
                    "body_len": req.body_len,
                    "json": parsed,
                    "form": form,
                    "host": host,
                    "version": req.version,
                    "tls": req.tls,
                    "client_cert": req.client_cert,
                }),
            )
        }
        ["redirect", n] => match n.parse::<u32>() {
            Ok(0) => json_response(200, &json!({ "status": "ok", "redirected": true })),
            Ok(n) if n <= 100 => redirect(302, &format!("/redirect/{}", n - 1)),
            _ => json_response(400, &json!({ "error": "redirect count must be 0 to 100" })),
        },
        ["redirect-to"] => {
            let status = arg(&args, "status")
                .and_then(|s| s.parse::<u16>().ok())
                .filter(|s| (300..400).contains(s))
                .unwrap_or(302);
            match arg(&args, "url") {
                Some(url) => redirect(status, url),
                None => json_response(400, &json!({ "error": "give ?url=" })),
            }
        }
        ["loop", "a"] => redirect(302, "/loop/b"),
        ["loop", "b"] => redirect(302, "/loop/a"),
        ["slow"] => {
            let ms = arg(&args, "ms")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1000)
                .min(MAX_SLOW_MS);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            json_response(200, &json!({ "status": "ok", "slept_ms": ms }))
        }
        ["slow-body"] => {
            let ms = arg(&args, "ms")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1000)
                .min(MAX_SLOW_MS);
            let chunks = futures_util::stream::unfold(0u8, move |step| async move {
                match step {
                    0 => Some((Ok(Frame::data(Bytes::from_static(b"first half,"))), 1)),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Some((Ok(Frame::data(Bytes::from_static(b" second half"))), 2))
                    }
                    _ => None,
                }
            });
            let mut resp = Response::new(StreamBody::new(chunks).boxed());
            set_header(&mut resp, "content-type", "text/plain");
            resp
        }
        ["truncated", n] => match n.parse::<usize>().ok().filter(|n| *n <= MAX_BYTES) {
            Some(n) => {
                let data = Bytes::from(vec![b'x'; n]);
                // The first frame goes out (the pause lets hyper flush it); the error then makes
                // hyper drop the connection short of the length announced.
                let frames =
                    futures_util::stream::unfold((Some(data), false), |state| async move {
                        match state {
                            (Some(d), _) => Some((Ok(Frame::data(d)), (None, false))),
                            (None, false) => {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                let cut = std::io::Error::other("the lab cut this response short");
                                Some((Err(cut), (None, true)))
                            }
                            (None, true) => None,
                        }
                    });
                let mut resp = Response::new(StreamBody::new(frames).boxed());
                set_header(&mut resp, "content-type", "text/plain");
                set_header(&mut resp, "content-length", &(2 * n).to_string());
                resp
            }
            None => json_response(400, &json!({ "error": "byte count must be 0 to 64 MiB" })),
        },
        ["json"] => json_response(200, &sample_document()),
        ["bytes", n] => match n.parse::<usize>().ok().filter(|n| *n <= MAX_BYTES) {
            Some(n) => {
                let pattern = b"abcdefghijklmnopqrstuvwxyz0123456789\n";
                let data: Vec<u8> = pattern.iter().copied().cycle().take(n).collect();
                let mut resp = Response::new(full(data));
                set_header(&mut resp, "content-type", "application/octet-stream");
                resp
            }
            None => json_response(400, &json!({ "error": "byte count must be 0 to 64 MiB" })),
        },
        ["basic-auth", user, pass] => {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            );
            if req.header("authorization") == Some(expected.as_str()) {
                json_response(200, &json!({ "authenticated": true, "user": user }))
            } else {
                unauthorized("Basic realm=\"sortie-lab\"")
            }
        }
        ["bearer", rest @ ..] if rest.len() <= 1 => {
            let token = req
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "));
            let ok = match (token, rest.first()) {
                (Some(t), Some(want)) => t == *want,
                (Some(t), None) => !t.is_empty(),
                (None, _) => false,
            };
            if ok {
                json_response(200, &json!({ "authenticated": true, "token": token }))
            } else {
                unauthorized("Bearer")
            }
        }
        ["login"] => login(req, body, host, state),
        ["api", "me"] => {
            let token = req
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "));
            let user = token.and_then(|t| state.tokens.lock().ok()?.get(t).cloned());
            match user {
                Some(user) => json_response(200, &json!({ "user": user, "host": host })),
                None => unauthorized("Bearer"),
            }
        }
        ["cookies", "set"] => {
            let mut resp = json_response(200, &json!({ "set": args_json(&args) }));
            for (name, value) in &args {
                if let Ok(v) = HeaderValue::from_str(&format!("{name}={value}; Path=/")) {
                    resp.headers_mut().append("set-cookie", v);
                }
            }
            resp
        }
        ["cookies"] => {
            let mut cookies = serde_json::Map::new();
            for header in req.headers.iter().filter(|(n, _)| n == "cookie") {
                for pair in header.1.split(';') {
                    if let Some((k, v)) = pair.trim().split_once('=') {
                        cookies.insert(k.to_string(), Value::from(v));
                    }
                }
            }
            json_response(200, &json!({ "cookies": cookies }))
        }
        ["upload"] => upload(req, body).await,
        ["response-headers"] => {
            let mut resp = json_response(200, &args_json(&args));
            for (name, value) in &args {
                set_header(&mut resp, name, value);
            }
            resp
        }
        _ => json_response(404, &json!({ "error": "not found", "path": req.path })),
    }
}

/// `POST /login` with `{"username": U, "password": LOGIN_PASSWORD}` → a fresh token for U.
fn login(req: &RecordedRequest, body: &Bytes, host: &str, state: &State) -> Response<Body> {
    if req.method != "POST" {
        return json_response(405, &json!({ "error": "POST a JSON body" }));
    }
    let Ok(creds) = serde_json::from_slice::<Value>(body) else {
        return json_response(400, &json!({ "error": "the body is not JSON" }));
    };
    let user = creds["username"].as_str().unwrap_or_default();
    if user.is_empty() || creds["password"].as_str() != Some(LOGIN_PASSWORD) {
        return json_response(401, &json!({ "error": "bad credentials" }));
    }
    let n = state.logins.fetch_add(1, Ordering::SeqCst) + 1;
    let digest = sha2::Sha256::digest(format!("{user}/{host}/{n}/{}", std::process::id()));
    let token = hex::encode(&digest[..16]);
    if let Ok(mut tokens) = state.tokens.lock() {
        tokens.insert(token.clone(), user.to_string());
    }
    json_response(
        200,
        &json!({ "token": token, "token_type": "Bearer", "user": user, "expires_in": 3600 }),
    )
}

/// `/upload`: reads a multipart body (multer) and describes each part.
async fn upload(req: &RecordedRequest, body: &Bytes) -> Response<Body> {
    let Some(boundary) = req
        .header("content-type")
        .and_then(|c| multer::parse_boundary(c).ok())
    else {
        return json_response(400, &json!({ "error": "not a multipart body" }));
    };
    let whole = futures_util::stream::iter([Ok::<Bytes, Infallible>(body.clone())]);
    let mut multipart = multer::Multipart::new(whole, boundary);
    let mut parts = Vec::new();
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return json_response(400, &json!({ "error": e.to_string() })),
        };
        let name = field.name().map(str::to_string);
        let filename = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(|m| m.to_string());
        let mut hasher = sha2::Sha256::new();
        let mut size = 0usize;
        let mut head = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    size += chunk.len();
                    hasher.update(&chunk);
                    if head.len() < ECHOED_PART {
                        let room = ECHOED_PART - head.len();
                        head.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                }
                Ok(None) => break,
                Err(e) => return json_response(400, &json!({ "error": e.to_string() })),
            }
        }
        let text = (size <= ECHOED_PART)
            .then(|| String::from_utf8(head).ok())
            .flatten();
        parts.push(json!({
            "name": name,
            "filename": filename,
            "content_type": content_type,
            "size": size,
            "sha256": hex::encode(hasher.finalize()),
            "text": text,
        }));
    }
    json_response(200, &json!({ "parts": parts }))
}

fn sample_document() -> Value {
    json!({
        "name": "sortie-lab",
        "version": "1.2.3",
        "healthy": true,
        "count": 3,
        "ratio": 0.75,
        "tags": ["alpha", "beta", "gamma"],
        "items": [
            { "id": 1, "name": "one", "enabled": true },
            { "id": 2, "name": "two", "enabled": false },
            { "id": 3, "name": "three", "enabled": true }
        ],
        "nested": { "level": { "deep": "value" } },
        "nothing": null
    })
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    set_header(&mut resp, "content-type", "application/json");
    resp
}

fn empty_response(status: u16) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp
}

/// Sets a header; a name or value HTTP does not allow is skipped.
fn set_header(resp: &mut Response<Body>, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        resp.headers_mut().insert(name, value);
    }
}

/// `a=1&b=x+y` → [("a","1"), ("b","x y")], percent-decoded.
fn query_args(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

/// Args as a JSON object: one value per name, or a list when a name repeats.
fn args_json(args: &[(String, String)]) -> Value {
    let mut map = serde_json::Map::new();
    for (k, v) in args {
        match map.get_mut(k) {
            Some(Value::Array(list)) => list.push(Value::from(v.as_str())),
            Some(first) => *first = Value::Array(vec![first.clone(), Value::from(v.as_str())]),
            None => {
                map.insert(k.clone(), Value::from(v.as_str()));
            }
        }
    }
    Value::Object(map)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
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

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%e2%9c%93"), "✓");
    }
}
