//! The `http` kind: an HTTP request from the runner, with auth, bodies (JSON, form, multipart,
//! raw, file — files streamed from disk), redirects, TLS settings, per-host cookies and an
//! optional atomic `save` of the body. Input: the step's arguments rendered for one host;
//! output: the result fields `request`, `status`, `reason`, `url`, `headers`, `body`, `json`,
//! `elapsed_ms` (and a few more) that expectations read through [`Http::lookup`] (JSONPath for
//! `json`, any-case names for `headers`) and later steps read as `steps.<id>`.
//!
//! One reqwest client per distinct TLS setting serves the whole run (a process-wide cache), so
//! every host shares pooled connections; proxies come from the environment (`HTTP_PROXY`,
//! `HTTPS_PROXY`, `NO_PROXY`). Redirects and cookies are handled here, not by reqwest: a
//! redirect limit is per step while the client is shared, and cookies belong to one host's run
//! (one jar per inventory host), which a client-wide cookie store cannot express.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use reqwest::cookie::CookieStore as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::Value as Json;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;

use super::{BoolOr, CheckCx, Kind, OneOrMany, RunsOn, StepError, StepOutput, TaskCx};
use crate::diag::Diagnostic;
use crate::expect::ExpectFields;
use crate::yaml::RawNode;

/// Redirects followed when `follow_redirects` is not given (curl's and requests' habit is
/// similar; enough for any sane login or canonical-URL chain).
const DEFAULT_REDIRECTS: u32 = 10;
/// Without a step `timeout`: the longest wait for a TCP (and TLS) connection…
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// …and for the response, or for each next piece of its body.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The kind's own deadline ends this much before the step's timeout, so that its message
/// (which names the URL) wins the race against the runner's backstop timer.
const DEADLINE_MARGIN: Duration = Duration::from_millis(5);
/// Characters of body shown in a failure message.
const EXCERPT_CHARS: usize = 200;

/// Send an HTTP request from the runner.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// The URL (`http://` or `https://`).
    pub url: String,
    /// The method (default GET).
    pub method: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Query parameters added to the URL (a list value repeats the parameter).
    #[serde(default)]
    pub query: IndexMap<String, OneOrMany<String>>,
    /// Authentication: `basic: [user, password]` or `bearer: TOKEN`. Sent to the URL's own
    /// origin only, never to a redirect target elsewhere.
    pub auth: Option<HttpAuth>,
    /// A JSON body (any YAML value); sets `Content-Type: application/json`.
    pub json: Option<RawNode>,
    /// A form body (`application/x-www-form-urlencoded`).
    pub form: Option<IndexMap<String, String>>,
    /// A multipart body: field → text, or `{ file: PATH, filename?, content_type? }` (files
    /// are streamed from disk; relative paths are from the playbook's directory).
    pub multipart: Option<IndexMap<String, MultipartField>>,
    /// A raw text body.
    pub body: Option<String>,
    /// A body read from a local file (streamed; relative to the playbook's directory).
    pub body_file: Option<String>,
    /// Follow redirects: true (default, at most 10), false, or the most to follow.
    pub follow_redirects: Option<BoolOr<u32>>,
    /// TLS settings.
    pub tls: Option<HttpTls>,
    /// Stream a 2xx response's body to this local file (relative to the playbook's
    /// directory), atomically: a temporary name in the same folder, then a rename. `body` and
    /// `json` stay empty; `saved`, `bytes` and `sha256` say what was written.
    pub save: Option<String>,
}

/// `basic: [user, password]` or `bearer: TOKEN`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpAuth {
    /// User and password.
    pub basic: Option<(String, String)>,
    /// A bearer token.
    pub bearer: Option<String>,
}

/// A multipart field: text, or a file.
#[derive(Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum MultipartField {
    Text(String),
    File(MultipartFile),
}

/// A file part of a multipart body.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultipartFile {
    /// Local path of the file (streamed).
    pub file: String,
    /// The file name sent (default the path's base name).
    pub filename: Option<String>,
    /// The part's content type (default: guessed from the extension, else
    /// `application/octet-stream`).
    pub content_type: Option<String>,
}

impl<'de> Deserialize<'de> for MultipartField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let RawNode(node) = RawNode::deserialize(d)?;
        let r = if node.as_map().is_some() {
            crate::yaml::decode_any::<MultipartFile>(&node).map(MultipartField::File)
        } else {
            crate::yaml::decode_any::<String>(&node).map(MultipartField::Text)
        };
        r.map_err(|e| D::Error::custom(crate::yaml::carry(e)))
    }
}

/// TLS settings for HTTPS.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpTls {
    /// Verify the server certificate (default true). `false` warns on every run.
    pub verify: Option<bool>,
    /// Same as `verify: false`, spelled out.
    pub insecure: Option<bool>,
    /// A PEM file of CA certificates to trust (besides the system's).
    pub ca: Option<String>,
    /// A PEM client certificate for mutual TLS.
    pub client_cert: Option<String>,
    /// The PEM private key of `client_cert`.
    pub client_key: Option<String>,
}

impl HttpTls {
    fn verifies(&self) -> bool {
        self.verify.unwrap_or(true) && !self.insecure.unwrap_or(false)
    }
}

impl Kind for Http {
    const NAME: &'static str = "http";
    const SUMMARY: &'static str = "Send an HTTP request from the runner and check the response.";
    const RUNS_ON: RunsOn = RunsOn::Runner;
    const EXPECT: ExpectFields = ExpectFields {
        plain: &["status", "body", "elapsed_ms", "url"],
        keyed: &["json", "headers"],
    };
    const DEFAULT_EXPECT: &'static str = "status: { gte: 200, lt: 300 }";

    fn run<'a>(&'a self, cx: &'a TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(request(self, cx))
    }

    /// `json` keys are RFC 9535 JSONPath queries (`$.items[0].id`; a key without the leading
    /// `$` is read as `$.KEY`); `headers` keys are names in any case.
    fn lookup(fields: &Json, field: &str, key: Option<&str>) -> Option<Json> {
        match (field, key) {
            ("json", Some(path)) => json_path(fields.get("json")?, path).ok().flatten(),
            ("headers", Some(name)) => {
                let headers = fields.get("headers")?;
                headers
                    .get(name.to_ascii_lowercase())
                    .or_else(|| {
                        headers.as_object().and_then(|o| {
                            o.iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                                .map(|(_, v)| v)
                        })
                    })
                    .cloned()
            }
            _ => super::generic_lookup(fields, field, key),
        }
    }

    fn failure_context(fields: &Json) -> Option<String> {
        let request = fields.get("request")?.as_str()?;
        let mut out = request.to_string();
        if let Some(status) = fields.get("status").and_then(Json::as_u64) {
            out.push_str(&format!(" → {status}"));
            if let Some(reason) = fields
                .get("reason")
                .and_then(Json::as_str)
                .filter(|r| !r.is_empty())
            {
                out.push_str(&format!(" {reason}"));
            }
        }
        match fields.get("body_excerpt").and_then(Json::as_str) {
            Some(excerpt) if !excerpt.is_empty() => out.push_str(&format!("; body: {excerpt}")),
            _ => {}
        }
        Some(out)
    }

    fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
        let span_of = |key: &str| cx.args.get(key).map(|n| n.span).unwrap_or(cx.kind_span);
        let bodies: Vec<&str> = [
            ("json", self.json.is_some()),
            ("form", self.form.is_some()),
            ("multipart", self.multipart.is_some()),
            ("body", self.body.is_some()),
            ("body_file", self.body_file.is_some()),
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
                .at(span_of(bodies[1]))
                .label("second body")
                .help("keep one of `json`, `form`, `multipart`, `body`, `body_file`"),
            );
        }
        if let Some(url) = super::literal(cx.args.get("url"))
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            out.push(
                Diagnostic::error(format!("`{url}` is not an http(s) URL"))
                    .at(span_of("url"))
                    .label("expected `http://…` or `https://…`")
                    .help("write the full URL, e.g. `http://{{ host.address }}:8080/health`"),
            );
        }
        if let Some(method) = super::literal(cx.args.get("method"))
            && Method::from_bytes(method.to_ascii_uppercase().as_bytes()).is_err()
        {
            out.push(
                Diagnostic::error(format!("`{method}` is not an HTTP method"))
                    .at(span_of("method"))
                    .label("not a method token")
                    .help("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, or another token"),
            );
        }
        if let Some(headers) = cx.args.get("headers").and_then(|h| h.as_map()) {
            for (k, _) in headers {
                let name = k.key_text();
                if !crate::yaml::is_template(&name)
                    && HeaderName::from_bytes(name.as_bytes()).is_err()
                {
                    out.push(
                        Diagnostic::error(format!("`{name}` is not a valid header name"))
                            .at(k.span)
                            .label("letters, digits and `-` only")
                            .help("header names are tokens such as `Accept` or `X-Request-Id`"),
                    );
                }
            }
        }
        if let Some(auth) = &self.auth
            && auth.basic.is_some() == auth.bearer.is_some()
        {
            out.push(
                Diagnostic::error("`auth` takes one of `basic` or `bearer`")
                    .at(span_of("auth"))
                    .label("give exactly one")
                    .help("`auth: { basic: [user, password] }` or `auth: { bearer: TOKEN }`"),
            );
        }
        if let Some(tls) = &self.tls {
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                out.push(
                    Diagnostic::error("`client_cert` and `client_key` go together")
                        .at(span_of("tls"))
                        .label("one of the pair is missing")
                        .help("give both the PEM certificate and its private key"),
                );
            }
            if tls.verify == Some(true) && tls.insecure == Some(true) {
                out.push(
                    Diagnostic::error("`verify: true` and `insecure: true` contradict each other")
                        .at(span_of("tls"))
                        .label("keep one")
                        .help("certificates are verified unless `insecure: true` (or `verify: false`)"),
                );
            } else if !tls.verifies() {
                out.push(
                    Diagnostic::warning("TLS certificates will not be verified")
                        .at(span_of("tls"))
                        .label("anyone on the path can impersonate this server")
                        .help("trust the server's CA with `tls: { ca: PEM-FILE }` instead"),
                );
            }
        }
        if let Some(save) = &self.save {
            let per_host = save.contains("host") || save.contains("item");
            if !cx.run_once && !per_host {
                out.push(
                    Diagnostic::error("`save` is the same file for every host")
                        .at(span_of("save"))
                        .label("hosts would overwrite each other's file here")
                        .help("make it differ per host, e.g. `save: \"out/{{ host.name }}.json\"`, or set `run_once: true`"),
                );
            }
        }
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
}

// ---------------------------------------------------------------------------------------------
// JSONPath
// ---------------------------------------------------------------------------------------------

/// `$…` as written; `[…]` and `name…` are read as `$[…]` and `$.name…`.
fn normalize_path(path: &str) -> String {
    let p = path.trim();
    if p.starts_with('$') {
        p.to_string()
    } else if p.starts_with('[') {
        format!("${p}")
    } else {
        format!("$.{p}")
    }
}

fn parse_path(path: &str) -> Result<serde_json_path::JsonPath, String> {
    serde_json_path::JsonPath::parse(&normalize_path(path)).map_err(|e| e.to_string())
}

/// Whether a query can select at most one node (RFC 9535 §2.3.5.1: names and indexes only).
/// The crate keeps this private, but RFC 9535 allows only singular queries as comparison
/// operands, so the parser itself answers: `$[?QUERY == null]` parses exactly when QUERY is
/// singular.
fn is_singular(path: &str) -> bool {
    serde_json_path::JsonPath::parse(&format!("$[?{path} == null]")).is_ok()
}

/// Evaluates a JSONPath query. A singular query (`$.a.b`, `$.items[0]`) gives its one value,
/// or nothing when it selects none; any other (`$.items[*].id`, filters, slices, `..`) gives the
/// list of every value it selects, possibly empty — the shape depends on the query, never on
/// the data.
pub fn json_path(doc: &Json, path: &str) -> Result<Option<Json>, String> {
    let full = normalize_path(path);
    let query = parse_path(&full)?;
    let nodes = query.query(doc);
    if is_singular(&full) {
        Ok(nodes.all().first().map(|v| (*v).clone()))
    } else {
        Ok(Some(Json::Array(
            nodes.all().into_iter().cloned().collect(),
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// The client, cookies
// ---------------------------------------------------------------------------------------------

/// What makes two requests need different clients: their TLS settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    verify: bool,
    ca: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
}

/// The run's clients, one per TLS setting, shared by every host and step: reqwest clients
/// are handles to one connection pool, so a clone is cheap and pools stay shared.
fn client(key: &ClientKey) -> Result<(reqwest::Client, Arc<rustls::ClientConfig>), String> {
    type Clients = HashMap<ClientKey, (reqwest::Client, Arc<rustls::ClientConfig>)>;
    static CLIENTS: OnceLock<Mutex<Clients>> = OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(c) = clients.get(key) {
        return Ok(c.clone());
    }
    // Built under the lock: hosts that start together wait for one build instead of each
    // loading the system's roots.
    let identity = key
        .identity
        .as_ref()
        .map(|(c, k)| (c.as_path(), k.as_path()));
    let mut tls = crate::tls::client_config_with_identity(key.verify, key.ca.as_deref(), identity)?;
    // A preconfigured rustls config is used as is: ALPN is ours to set.
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let config = Arc::new(tls.clone());
    let built = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("sortie/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", describe(&e)))?;
    clients.insert(key.clone(), (built.clone(), config.clone()));
    Ok((built, config))
}

/// The cookie jar of one inventory host, kept for the whole run.
fn jar(host: &str) -> Arc<reqwest::cookie::Jar> {
    static JARS: OnceLock<Mutex<HashMap<String, Arc<reqwest::cookie::Jar>>>> = OnceLock::new();
    let mut jars = JARS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    jars.entry(host.to_string()).or_default().clone()
}

// ---------------------------------------------------------------------------------------------
// The request
// ---------------------------------------------------------------------------------------------

/// How long a network wait may last: until the step's deadline, or, without a step timeout,
/// a bounded wait for each next thing.
#[derive(Clone, Copy)]
enum Limit {
    Deadline {
        at: tokio::time::Instant,
        step: Duration,
    },
    Idle,
}

impl Limit {
    async fn wait<T>(self, fut: impl Future<Output = T>) -> Result<T, String> {
        match self {
            Limit::Deadline { at, step } => tokio::time::timeout_at(at, fut)
                .await
                .map_err(|_| crate::units::Duration(step).to_string()),
            Limit::Idle => tokio::time::timeout(IDLE_TIMEOUT, fut)
                .await
                .map_err(|_| crate::units::Duration(IDLE_TIMEOUT).to_string()),
        }
    }
}

fn resolve(dir: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Everything a hop needs besides its URL and method.
struct Prepared<'a> {
    spec: &'a Http,
    cx: &'a TaskCx<'a>,
    client: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    headers: HeaderMap,
    origin: Url,
}

/// Headers that carry credentials: dropped when a redirect leaves the first URL's origin.
const SENSITIVE: &[&str] = &["authorization", "cookie", "proxy-authorization"];

impl Prepared<'_> {
    /// One hop's request. Bodies are built afresh each time, so a 307/308 redirect can send a
    /// streamed file again.
    async fn build(
        &self,
        method: &Method,
        url: &Url,
        with_body: bool,
    ) -> Result<reqwest::Request, StepError> {
        let spec = self.spec;
        let trusted = same_origin(url, &self.origin);
        let mut headers = self.headers.clone();
        if !trusted {
            for name in SENSITIVE {
                headers.remove(*name);
            }
        }
        if let Some(cookies) = self.jar.cookies(url) {
            let merged = match headers
                .get(reqwest::header::COOKIE)
                .and_then(|v| v.to_str().ok())
            {
                Some(own) => HeaderValue::from_str(&format!(
                    "{own}; {}",
                    cookies.to_str().unwrap_or_default()
                ))
                .unwrap_or(cookies),
                None => cookies,
            };
            headers.insert(reqwest::header::COOKIE, merged);
        }
        let mut rb = self
            .client
            .request(method.clone(), url.clone())
            .headers(headers);
        if trusted && let Some(auth) = &spec.auth {
            if let Some((user, pass)) = &auth.basic {
                rb = rb.basic_auth(user, Some(pass));
            } else if let Some(token) = &auth.bearer {
                rb = rb.bearer_auth(token);
            }
        }
        if with_body {
            rb = self.body(rb).await?;
        }
        rb.build().map_err(|e| {
            StepError::Protocol(format!(
                "{method} {url}: cannot build the request: {}",
                describe(&e)
            ))
        })
    }

    async fn body(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, StepError> {
        let spec = self.spec;
        let dir = self.cx.dir;
        if let Some(RawNode(node)) = &spec.json {
            return Ok(rb.json(&node.to_json()));
        }
        if let Some(form) = &spec.form {
            return Ok(rb.form(form));
        }
        if let Some(text) = &spec.body {
            return Ok(rb.body(text.clone()));
        }
        if let Some(file) = &spec.body_file {
            let path = resolve(dir, file);
            let f = tokio::fs::File::open(&path)
                .await
                .map_err(|e| StepError::Io(format!("body_file `{}`: {e}", path.display())))?;
            let len = f
                .metadata()
                .await
                .map_err(|e| StepError::Io(format!("body_file `{}`: {e}", path.display())))?
                .len();
            // A known length goes out as Content-Length rather than chunked.
            return Ok(rb
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(reqwest::Body::from(f)));
        }
        if let Some(fields) = &spec.multipart {
            let mut form = reqwest::multipart::Form::new();
            for (name, field) in fields {
                form = match field {
                    MultipartField::Text(t) => form.text(name.clone(), t.clone()),
                    MultipartField::File(f) => {
                        let path = resolve(dir, &f.file);
                        let mut part =
                            reqwest::multipart::Part::file(&path).await.map_err(|e| {
                                StepError::Io(format!(
                                    "multipart field `{name}`: cannot read `{}`: {e}",
                                    path.display()
                                ))
                            })?;
                        if let Some(n) = &f.filename {
                            part = part.file_name(n.clone());
                        }
                        if let Some(ct) = &f.content_type {
                            part = part.mime_str(ct).map_err(|_| {
                                StepError::Protocol(format!(
                                    "multipart field `{name}`: `{ct}` is not a content type"
                                ))
                            })?;
                        }
                        form.part(name.clone(), part)
                    }
                };
            }
            return Ok(rb.multipart(form));
        }
        Ok(rb)
    }
}

/// The message of a failed request, from reqwest's error and the errors below it: names the
/// request and says in words what went wrong (and what to do for TLS trouble).
fn classify(request: &str, e: &reqwest::Error) -> StepError {
    let detail = describe(e);
    if let Some(tls) = find_tls_error(e).or_else(|| tls_text(&detail)) {
        return StepError::Protocol(format!("{request}: TLS: {tls}{}", tls_help(&tls)));
    }
    if let Some(io) = find_io_error(e) {
        use std::io::ErrorKind as K;
        let what = match io.kind() {
            K::ConnectionRefused => Some("connection refused"),
            K::ConnectionReset => Some("connection reset by the server"),
            K::ConnectionAborted => Some("connection aborted"),
            K::TimedOut => Some("connection timed out"),
            K::HostUnreachable => Some("host unreachable"),
            K::NetworkUnreachable => Some("network unreachable"),
            K::AddrNotAvailable => Some("address not available"),
            _ => None,
        };
        if let Some(what) = what {
            return StepError::Io(format!("{request}: {what}"));
        }
    }
    if let Some(h) = chain(e)
        .into_iter()
        .find_map(|s| s.downcast_ref::<hyper::Error>())
        && h.is_incomplete_message()
    {
        return StepError::Io(format!(
            "{request}: the server closed the connection before answering"
        ));
    }
    if e.is_connect() {
        if detail.contains("tls") || detail.contains("certificate") {
            return StepError::Protocol(format!("{request}: TLS: {detail}"));
        }
        return StepError::Io(format!("{request}: cannot connect: {detail}"));
    }
    if e.is_timeout() {
        return StepError::Timeout(format!(
            "{} on {request}",
            crate::units::Duration(CONNECT_TIMEOUT)
        ));
    }
    if e.is_body() || e.is_decode() {
        return StepError::Io(format!("{request}: {detail}"));
    }
    if e.is_builder() || (e.is_request() && detail.contains("invalid")) {
        return StepError::Protocol(format!("{request}: {detail}"));
    }
    StepError::Io(format!("{request}: {detail}"))
}

fn tls_help(tls: &str) -> &'static str {
    if tls.contains("UnknownIssuer") || tls.contains("unknown issuer") {
        " — the server's certificate is not signed by a CA sortie trusts; trust its CA with `tls: { ca: PEM-FILE }` (for a throw-away test server only: `tls: { insecure: true }`)"
    } else if tls.contains("NotValidForName") || tls.contains("not valid for name") {
        " — the certificate does not name this host; use the name it was issued for in the URL"
    } else if tls.contains("Expired") || tls.contains("expired") {
        " — the server's certificate has expired"
    } else if tls.contains("CertificateRequired") || tls.contains("certificate required") {
        " — the server requires a client certificate: give `tls: { client_cert: PEM, client_key: PEM }`"
    } else if tls.contains("UnknownCA")
        || tls.contains("BadCertificate")
        || tls.contains("bad certificate")
    {
        " — the server rejected the client certificate"
    } else {
        ""
    }
}

fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = vec![e];
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s);
        cur = s.source();
        if out.len() > 16 {
            break;
        }
    }
    out
}

fn find_io_error(e: &reqwest::Error) -> Option<&std::io::Error> {
    chain(e)
        .into_iter()
        .find_map(|s| s.downcast_ref::<std::io::Error>())
}

/// A rustls error anywhere below, including inside (nested) `io::Error`s, whose `source`
/// skips the error they wrap.
fn find_tls_error(e: &reqwest::Error) -> Option<String> {
    chain(e).into_iter().find_map(tls_error_in)
}

fn tls_error_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = e;
    for _ in 0..8 {
        if let Some(t) = cur.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        cur = cur.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
    None
}

/// A TLS error known only by its text: HTTP/2 keeps an I/O error's message but not the error
/// (so a rustls alert arrives as words).
fn tls_text(detail: &str) -> Option<String> {
    [
        "received fatal alert",
        "invalid peer certificate",
        "peer is incompatible",
        "peer misbehaved",
    ]
    .iter()
    .find_map(|m| detail.find(m))
    .map(|i| detail[i..].to_string())
}

/// Whether an HTTPS request failed on a connection that ended without saying why: over
/// HTTP/2 a TLS alert that arrives after the handshake (as a mutual-TLS refusal does in TLS
/// 1.3) ends the connection's task, and the request learns only "connection closed" or "broken
/// pipe", depending on who noticed first. Timeouts and refused connections are clear already.
fn closed_without_reason(e: &reqwest::Error) -> bool {
    let refused =
        find_io_error(e).is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
    find_tls_error(e).is_none()
        && tls_text(&describe(e)).is_none()
        && !e.is_timeout()
        && !refused
        && chain(e)
            .into_iter()
            .any(|s| s.downcast_ref::<hyper::Error>().is_some())
}

/// Learns why a server closes TLS connections: one direct handshake with the same settings,
/// then a short read for the alert the server sends. It dials the server itself, not through a
/// proxy: only a failed request's message depends on it.
async fn tls_reason(url: &Url, config: Arc<rustls::ClientConfig>) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    const PROBE: Duration = Duration::from_secs(2);
    let host = url.host_str()?.trim_matches(['[', ']']).to_string();
    let port = url.port_or_known_default()?;
    let tcp = tokio::time::timeout(PROBE, tokio::net::TcpStream::connect((host.as_str(), port)))
        .await
        .ok()?
        .ok()?;
    let name = rustls::pki_types::ServerName::try_from(host).ok()?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut stream = match tokio::time::timeout(PROBE, connector.connect(name, tcp))
        .await
        .ok()?
    {
        Ok(s) => s,
        Err(e) => return tls_error_in(&e),
    };
    let mut byte = [0u8; 1];
    match tokio::time::timeout(PROBE, stream.read(&mut byte)).await {
        Ok(Err(e)) => tls_error_in(&e),
        _ => None,
    }
}

/// The errors under reqwest's own ("error sending request for url …"), joined, without
/// repeats: the URL is already in our message.
fn describe(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for s in chain(e).into_iter().skip(1) {
        let t = s.to_string();
        if !t.is_empty() && !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// Removes a temporary file unless it was renamed into place (also when the step is
/// cancelled or times out and its future is dropped).
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the body reading produced.
#[derive(Default)]
struct BodyRead {
    kept: Vec<u8>,
    total: u64,
    saved: Option<(PathBuf, String, bool)>,
}

async fn request(spec: &Http, cx: &TaskCx<'_>) -> Result<StepOutput, StepError> {
    let started = Instant::now();
    let limit = match cx.timeout {
        Some(t) => Limit::Deadline {
            at: tokio::time::Instant::now() + t.saturating_sub(DEADLINE_MARGIN),
            step: t,
        },
        None => Limit::Idle,
    };
    let method_text = spec
        .method
        .as_deref()
        .unwrap_or("GET")
        .trim()
        .to_ascii_uppercase();
    let mut method = Method::from_bytes(method_text.as_bytes())
        .map_err(|_| StepError::Protocol(format!("`{method_text}` is not an HTTP method")))?;
    let mut url = Url::parse(spec.url.trim())
        .map_err(|e| StepError::Protocol(format!("`{}` is not a valid URL: {e}", spec.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(StepError::Protocol(format!(
            "`{}` is not an http(s) URL",
            spec.url
        )));
    }
    if !spec.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &spec.query {
            for value in v.clone().into_vec() {
                pairs.append_pair(k, &value);
            }
        }
    }
    let mut headers = HeaderMap::new();
    for (k, v) in &spec.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| StepError::Protocol(format!("`{k}` is not a valid header name")))?;
        let value = HeaderValue::from_str(v).map_err(|_| {
            StepError::Protocol(format!(
                "the value of header `{k}` has characters HTTP does not allow"
            ))
        })?;
        headers.append(name, value);
    }

    let tls = spec.tls.clone().unwrap_or_default();
    let mut out = StepOutput::default();
    if !tls.verifies() {
        out.warnings.push(format!(
            "TLS certificates are not verified for {}: anyone on the path can impersonate the server",
            url.host_str().unwrap_or("this URL")
        ));
    }
    let key = ClientKey {
        verify: tls.verifies(),
        ca: tls.ca.as_deref().map(|p| resolve(cx.dir, p)),
        identity: match (&tls.client_cert, &tls.client_key) {
            (Some(c), Some(k)) => Some((resolve(cx.dir, c), resolve(cx.dir, k))),
            _ => None,
        },
    };
    let (client, tls_config) = client(&key).map_err(StepError::Io)?;
    let prepared = Prepared {
        spec,
        cx,
        client,
        jar: jar(&cx.host.name),
        headers,
        origin: url.clone(),
    };
    let max_redirects = match spec.follow_redirects {
        None | Some(BoolOr::Bool(true)) => DEFAULT_REDIRECTS,
        Some(BoolOr::Bool(false)) => 0,
        Some(BoolOr::Value(n)) => n,
    };
    let request_line = format!("{method} {url}");

    // Hops: send, keep cookies, follow a redirect when allowed.
    let mut redirects: Vec<String> = Vec::new();
    let mut with_body = true;
    let mut response = loop {
        let hop = format!("{method} {url}");
        let req = prepared.build(&method, &url, with_body).await?;
        let resp = match limit.wait(prepared.client.execute(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                if url.scheme() == "https"
                    && closed_without_reason(&e)
                    && let Ok(Some(reason)) = limit.wait(tls_reason(&url, tls_config.clone())).await
                {
                    return Err(StepError::Protocol(format!(
                        "{hop}: TLS: {reason}{}",
                        tls_help(&reason)
                    )));
                }
                return Err(classify(&hop, &e));
            }
            Err(after) => {
                return Err(StepError::Timeout(format!(
                    "{after} waiting for {hop} to answer"
                )));
            }
        };
        prepared.jar.set_cookies(
            &mut resp.headers().get_all(reqwest::header::SET_COOKIE).iter(),
            &url,
        );
        let status = resp.status();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let Some(location) = location.filter(|_| status.is_redirection() && max_redirects > 0)
        else {
            break resp;
        };
        let next = url.join(&location).map_err(|e| {
            StepError::Protocol(format!(
                "{hop}: redirect to `{location}`, which is not a valid URL: {e}"
            ))
        })?;
        redirects.push(url.to_string());
        if redirects.len() as u32 > max_redirects {
            return Err(StepError::Protocol(format!(
                "{request_line}: {}",
                redirect_trouble(&prepared.origin, &redirects, &next, max_redirects)
            )));
        }
        // As browsers, curl and requests do: 303 turns into GET, and so do 301/302 after a
        // POST; 307/308 repeat the method and the body.
        match status.as_u16() {
            303 if method != Method::HEAD => {
                method = Method::GET;
                with_body = false;
            }
            301 | 302 if method == Method::POST => {
                method = Method::GET;
                with_body = false;
            }
            _ => {}
        }
        url = next;
    };

    let status = response.status();
    let final_url = response.url().clone();
    let version = format!("{:?}", response.version());
    let mut header_map = serde_json::Map::new();
    for (name, value) in response.headers() {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match header_map.get_mut(name.as_str()) {
            Some(Json::String(before)) => {
                before.push_str(", ");
                before.push_str(&v);
            }
            _ => {
                header_map.insert(name.as_str().to_string(), Json::String(v));
            }
        }
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let announced = response.content_length();
    let hop = format!("{method} {final_url}");

    let save = spec
        .save
        .as_ref()
        .filter(|_| status.is_success())
        .map(|s| resolve(cx.dir, s));
    let read = read_body(
        &mut response,
        &hop,
        limit,
        cx.limits.max_output,
        save.as_deref(),
        announced,
    )
    .await?;
    let elapsed_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;

    let kept_len = read.kept.len() as u64;
    let dropped = read.total - kept_len;
    let text = decode_text(&read.kept, &content_type, dropped > 0);
    let is_json_type = content_type.contains("json");
    let looks_json = matches!(text.trim_start().chars().next(), Some('{' | '['));
    let json = if read.saved.is_some() {
        Json::Null
    } else if dropped > 0 {
        if is_json_type {
            out.warnings.push(format!(
                "{hop}: the JSON body ({} bytes) is larger than the {} bytes kept: `json` was not parsed",
                read.total,
                cx.limits.max_output
            ));
        }
        Json::Null
    } else if is_json_type || looks_json {
        match serde_json::from_slice::<Json>(&read.kept) {
            Ok(v) => v,
            Err(e) => {
                if is_json_type && !read.kept.is_empty() {
                    out.warnings
                        .push(format!("{hop}: the body is not valid JSON: {e}"));
                }
                Json::Null
            }
        }
    } else {
        Json::Null
    };
    if dropped > 0 {
        out.warnings.push(format!(
            "{hop}: body: kept the first {kept_len} bytes, {dropped} more not kept"
        ));
    }
    let excerpt = excerpt(&text);

    out = out
        .with("request", request_line)
        .with("status", status.as_u16())
        .with("reason", status.canonical_reason().unwrap_or(""))
        .with("url", final_url.to_string())
        .with("headers", Json::Object(header_map))
        .with("body", text)
        .with("json", json)
        .with("elapsed_ms", elapsed_ms)
        .with("version", version)
        .with("redirects", redirects)
        .with("body_bytes", read.total)
        .with("body_truncated_bytes", dropped)
        .with("body_excerpt", excerpt);
    if let Some((path, sha, changed)) = read.saved {
        out.changed = changed;
        out = out
            .with("saved", path.display().to_string())
            .with("sha256", sha);
    }
    Ok(out)
}

/// Why a redirect chain was given up: the loop it went round, or the way it went.
fn redirect_trouble(origin: &Url, visited: &[String], next: &Url, max: u32) -> String {
    let chain: Vec<Url> = visited
        .iter()
        .filter_map(|u| Url::parse(u).ok())
        .chain([next.clone()])
        .collect();
    // Same-origin hops are shown by path: the origin is in the request line already.
    let show = |u: &Url| {
        if same_origin(u, origin) {
            match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            }
        } else {
            u.to_string()
        }
    };
    let first_repeat = (1..chain.len()).find_map(|j| {
        chain[..j]
            .iter()
            .position(|u| *u == chain[j])
            .map(|i| (i, j))
    });
    match first_repeat {
        Some((i, j)) => format!(
            "redirect loop ({}), stopped after {max} redirects",
            chain[i..=j]
                .iter()
                .map(show)
                .collect::<Vec<_>>()
                .join(" → ")
        ),
        None => {
            let shown: Vec<String> = chain.iter().map(show).collect();
            let way = if shown.len() > 5 {
                format!(
                    "{} → … → {}",
                    shown[..2].join(" → "),
                    shown[shown.len() - 2..].join(" → ")
                )
            } else {
                shown.join(" → ")
            };
            format!("too many redirects ({way}), stopped after {max}")
        }
    }
}

/// Reads the body: into memory (the first `max` bytes kept, the rest counted), or, with
/// `save`, into a temporary file beside the destination that is renamed into place at the end.
async fn read_body(
    response: &mut reqwest::Response,
    hop: &str,
    limit: Limit,
    max: usize,
    save: Option<&Path>,
    announced: Option<u64>,
) -> Result<BodyRead, StepError> {
    let mut read = BodyRead::default();
    let mut file = None;
    let mut hasher = sha2::Sha256::new();
    if let Some(dest) = save {
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(parent).await.map_err(|e| {
            StepError::Io(format!("save: cannot create `{}`: {e}", parent.display()))
        })?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{name}.sortie-{}.tmp", std::process::id()));
        let f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| StepError::Io(format!("save: cannot create `{}`: {e}", tmp.display())))?;
        file = Some((
            f,
            TempFile {
                path: tmp,
                keep: false,
            },
        ));
    }
    loop {
        let chunk = match limit.wait(response.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                let of = announced.map(|n| format!(" of {n}")).unwrap_or_default();
                return Err(StepError::Io(format!(
                    "{hop}: the response body was cut off after {}{of} bytes: {}",
                    read.total,
                    describe(&e)
                )));
            }
            Err(after) => {
                return Err(StepError::Timeout(format!(
                    "{after} reading the body of {hop} ({} bytes received)",
                    read.total
                )));
            }
        };
        read.total += chunk.len() as u64;
        match &mut file {
            Some((f, tmp)) => {
                hasher.update(&chunk);
                f.write_all(&chunk).await.map_err(|e| {
                    StepError::Io(format!("save: writing `{}`: {e}", tmp.path.display()))
                })?;
            }
            None => {
                if read.kept.len() < max {
                    let room = max - read.kept.len();
                    read.kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
            }
        }
    }
    if let (Some((mut f, mut tmp)), Some(dest)) = (file, save) {
        let sha = hex::encode(hasher.finalize());
        let io = |e: std::io::Error| {
            StepError::Io(format!("save: writing `{}`: {e}", tmp.path.display()))
        };
        f.flush().await.map_err(io)?;
        f.sync_all().await.map_err(io)?;
        drop(f);
        let unchanged = match tokio::fs::read(dest).await {
            Ok(old) => hex::encode(sha2::Sha256::digest(&old)) == sha,
            Err(_) => false,
        };
        if !unchanged {
            tokio::fs::rename(&tmp.path, dest).await.map_err(|e| {
                StepError::Io(format!(
                    "save: renaming `{}` to `{}`: {e}",
                    tmp.path.display(),
                    dest.display()
                ))
            })?;
            tmp.keep = true;
        }
        read.saved = Some((dest.to_path_buf(), sha, !unchanged));
    }
    Ok(read)
}

/// The kept bytes as text, in the charset the response names (UTF-8 by default). A character
/// cut in two by the limit is left out rather than shown as a replacement.
fn decode_text(bytes: &[u8], content_type: &str, truncated: bool) -> String {
    let charset = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .next()
        .map(|c| c.trim_matches('"'));
    if let Some(enc) = charset.and_then(|c| encoding_rs::Encoding::for_label(c.as_bytes()))
        && enc != encoding_rs::UTF_8
    {
        return enc.decode_without_bom_handling(bytes).0.into_owned();
    }
    let bytes = match std::str::from_utf8(bytes) {
        Err(e) if truncated && e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    };
    String::from_utf8_lossy(bytes).into_owned()
}

/// The start of the body on one line, for failure messages.
fn excerpt(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > EXCERPT_CHARS {
        let cut: String = flat.chars().take(EXCERPT_CHARS).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Json {
        json!({
            "status": "ok",
            "items": [ { "id": 1, "name": "one", "on": true }, { "id": 2, "name": "two", "on": false } ],
            "a-b": 5,
            "nothing": null
        })
    }

    #[test]
    fn singular_queries_give_a_value_others_a_list() {
        let d = doc();
        assert_eq!(json_path(&d, "$.status").unwrap(), Some(json!("ok")));
        assert_eq!(json_path(&d, "status").unwrap(), Some(json!("ok")));
        assert_eq!(
            json_path(&d, "$.items[1].name").unwrap(),
            Some(json!("two"))
        );
        assert_eq!(json_path(&d, "items[0].id").unwrap(), Some(json!(1)));
        assert_eq!(json_path(&d, "$['a-b']").unwrap(), Some(json!(5)));
        assert_eq!(json_path(&d, "$").unwrap(), Some(d.clone()));
        assert_eq!(json_path(&d, "$.missing").unwrap(), None);
        assert_eq!(json_path(&d, "$.nothing").unwrap(), Some(Json::Null));
        assert_eq!(json_path(&d, "$.items[*].id").unwrap(), Some(json!([1, 2])));
        assert_eq!(
            json_path(&d, "$.items[?@.on == true].name").unwrap(),
            Some(json!(["one"]))
        );
        assert_eq!(
            json_path(&d, "$.items[?@.id > 5].name").unwrap(),
            Some(json!([]))
        );
        assert_eq!(
            json_path(&d, "$..name").unwrap(),
            Some(json!(["one", "two"]))
        );
        assert_eq!(
            json_path(&d, "$.items[0:1]").unwrap(),
            Some(json!([d["items"][0]]))
        );
        assert!(json_path(&d, "$.items[").is_err());
        assert!(json_path(&d, "$.a-b").is_err());
        assert!(is_singular("$.a.b[0]['c']"));
        assert!(!is_singular("$.a[*]"));
        assert!(!is_singular("$..a"));
        assert!(!is_singular("$.a[0,1]"));
    }

    #[test]
    fn lookup_reads_json_paths_and_headers_in_any_case() {
        let fields = json!({
            "status": 200,
            "headers": { "content-type": "application/json", "x-request-id": "abc" },
            "json": doc(),
        });
        assert_eq!(
            Http::lookup(&fields, "json", Some("$.items[0].name")),
            Some(json!("one"))
        );
        assert_eq!(
            Http::lookup(&fields, "headers", Some("Content-Type")),
            Some(json!("application/json"))
        );
        assert_eq!(
            Http::lookup(&fields, "headers", Some("X-REQUEST-ID")),
            Some(json!("abc"))
        );
        assert_eq!(Http::lookup(&fields, "headers", Some("x-missing")), None);
        assert_eq!(Http::lookup(&fields, "status", None), Some(json!(200)));
        assert_eq!(
            Http::lookup(&json!({ "json": null }), "json", Some("$.a")),
            None
        );
    }

    #[test]
    fn failure_context_names_the_request_and_shows_the_body() {
        let fields = json!({
            "request": "GET http://h/x",
            "status": 503,
            "reason": "Service Unavailable",
            "body_excerpt": "{\"error\":\"down\"}",
        });
        assert_eq!(
            Http::failure_context(&fields).unwrap(),
            "GET http://h/x → 503 Service Unavailable; body: {\"error\":\"down\"}"
        );
        assert_eq!(Http::failure_context(&json!({})), None);
    }

    #[tokio::test]
    async fn a_probe_learns_why_a_tls_server_hangs_up() {
        use sortie_lab::http::{ClientAuth, HttpServer};
        let dir = tempfile::tempdir().unwrap();
        let pki = sortie_lab::pki::TestPki::generate(dir.path(), &["127.0.0.1".parse().unwrap()])
            .unwrap();
        let names = [(std::net::Ipv4Addr::LOCALHOST, "lab".to_string())];
        let server = HttpServer::start_tls(&names, 0, &pki, ClientAuth::Required).unwrap();
        let url = Url::parse(&server.url("/health")).unwrap();
        let without = crate::tls::client_config(true, Some(&pki.path("ca.pem"))).unwrap();
        let reason = tls_reason(&url, Arc::new(without)).await;
        assert_eq!(
            reason.as_deref(),
            Some("received fatal alert: CertificateRequired")
        );
        let other = crate::tls::client_config(true, None).unwrap();
        let reason = tls_reason(&url, Arc::new(other)).await;
        assert_eq!(
            reason.as_deref(),
            Some("invalid peer certificate: UnknownIssuer")
        );
    }

    #[test]
    fn text_is_decoded_by_charset_and_cut_on_a_character() {
        assert_eq!(
            decode_text("h\u{e9}".as_bytes(), "text/plain", false),
            "h\u{e9}"
        );
        // "é" cut in the middle by the limit: the half is left out.
        assert_eq!(
            decode_text(&"h\u{e9}".as_bytes()[..2], "text/plain", true),
            "h"
        );
        assert_eq!(
            decode_text(&[0x68, 0xe9], "text/plain; charset=ISO-8859-1", false),
            "h\u{e9}"
        );
        assert_eq!(excerpt("a\n  b\tc"), "a b c");
        assert_eq!(excerpt(&"x".repeat(300)).chars().count(), EXCERPT_CHARS + 1);
    }
}
