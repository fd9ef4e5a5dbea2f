//! The `tcp` kind: a TCP (optionally TLS) probe from the runner to the host or another
//! address: connect with a timeout, then either send once and read once, or hold a `dialog`
//! of exchanges (send, read, check each reply, upgrade to TLS in place with `starttls`).
//! Arguments come from the step rendered for one host (the address by default the host's);
//! results go back as the step's fields `open`, `connect_ms`, `response`, `hex`, `length`,
//! `exchanges`, `tls` (and `error`, `address` for a closed port).
//!
//! `payload` holds the bytes on the wire (shared with `udp`), `dialog` the conversation,
//! `tls` the handshake and the peer's certificate, `check` the rules `sortie check` applies.

mod check;
pub mod dialog;
pub mod payload;
mod tls;

use serde::Deserialize;
use serde_json::Value as Json;
use tokio_util::either::Either;

use super::via::Route;
use super::{BoolOr, CheckCx, Kind, RunsOn, StepError, StepOutput, TaskCx};
use crate::conn::via::Failure;
use crate::diag::Diagnostic;
use crate::expect::ExpectFields;
use crate::units::ByteSize;
use dialog::{Exchange, Session, Stop, Transcript};
use payload::Payload;

pub use payload::unescape;

/// Probe a TCP port from the runner.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tcp {
    /// Address to connect to; default the host's address.
    pub host: Option<String>,
    /// Port to connect to.
    pub port: u16,
    /// TLS settings (`true`, or settings). Without a `starttls` exchange the connection is TLS
    /// from the start; with one, these settings serve the upgrade.
    pub tls: Option<BoolOr<TlsSettings>>,
    /// What to send after connecting: text (escapes `\r`, `\n`, `\t`, `\0`, `\xHH` are
    /// understood) or `{ hex: … }` / `{ base64: … }` bytes.
    pub send: Option<Payload>,
    /// What to read back: until a delimiter, a number of bytes, or (with neither) until the
    /// peer closes or the timeout ends.
    pub read: Option<TcpRead>,
    /// A conversation instead of `send`/`read`: exchanges in order, each sending, reading,
    /// checking its reply and optionally starting TLS (`starttls: true`).
    pub dialog: Option<Vec<Exchange>>,
    /// Probe from a host instead of the runner: `host` (the current host) or an inventory
    /// host's name (a template), through its SSH session (`direct-tcpip`: nothing runs there).
    /// The name in `host` then resolves on that host.
    pub via: Option<String>,
}

/// Certificate checks for TLS connections.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Verify the server's certificate (default true).
    pub verify: Option<bool>,
    /// A PEM file of CA certificates to trust (besides the system's).
    pub ca: Option<String>,
    /// The server name to send and verify (default the address).
    pub server_name: Option<String>,
}

/// How much of the reply to read.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpRead {
    /// Stop after this text (escapes as in `send`).
    pub until: Option<String>,
    /// Stop at the end of the first match of this regular expression (multi-line replies:
    /// `"(?m)^250 .*\r\n"`).
    pub until_regex: Option<String>,
    /// Stop after one line (`\n`).
    pub line: Option<bool>,
    /// Stop after this many bytes.
    pub bytes: Option<ByteSize>,
    /// How long this read may wait (default: what is left of the step's timeout).
    pub timeout: Option<crate::units::Duration>,
}

impl TcpRead {
    /// One line.
    pub fn line() -> TcpRead {
        TcpRead {
            line: Some(true),
            ..TcpRead::default()
        }
    }

    /// The text that ends the reply: `until`, else a newline for `line: true`.
    pub fn delimiter(&self) -> Option<Vec<u8>> {
        match (&self.until, self.line) {
            (Some(u), _) => Some(unescape(u)),
            (None, Some(true)) => Some(b"\n".to_vec()),
            _ => None,
        }
    }
}

impl Tcp {
    /// Whether an exchange of the dialog starts TLS.
    fn starts_tls(&self) -> bool {
        self.dialog
            .iter()
            .flatten()
            .any(|e| e.starttls == Some(true))
    }
}

impl Kind for Tcp {
    const NAME: &'static str = "tcp";
    const SUMMARY: &'static str = "Probe a TCP port from the runner: connect, optionally send and read, or hold a dialog (STARTTLS included).";
    const RUNS_ON: RunsOn = RunsOn::Runner;
    const NAME_FIELDS: &'static [&'static str] = &["port"];
    const EXPECT: ExpectFields = ExpectFields {
        plain: &[
            "open",
            "connect_ms",
            "response",
            "hex",
            "length",
            "exchanges",
        ],
        keyed: &["tls", "byte"],
    };
    const DEFAULT_EXPECT: &'static str = "open: true";

    fn run<'a>(&'a self, cx: &'a TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(probe(self, cx))
    }

    fn lookup(fields: &Json, field: &str, key: Option<&str>) -> Option<Json> {
        payload::lookup(fields, field, key)
    }

    /// Why a port was found closed (`127.0.0.1:8080: Connection refused`).
    fn failure_context(fields: &Json) -> Option<String> {
        payload::address_error(fields)
    }

    fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
        check::check(self, cx, out);
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub fn target(host: &str, port: u16) -> String {
    crate::conn::host_port(host, port)
}

/// Runs the probe: connect, TLS when asked, then the exchanges (one for `send`/`read`).
async fn probe(spec: &Tcp, cx: &TaskCx<'_>) -> Result<StepOutput, StepError> {
    let host = spec.host.clone().unwrap_or_else(|| cx.host.address.clone());
    let wait = cx.timeout.unwrap_or(std::time::Duration::from_secs(10));
    // The probe's own deadline ends a little before the runner's timeout of the step, so that
    // a silent port is reported as closed (`open: false`) rather than as a timed-out step.
    let deadline = tokio::time::Instant::now() + wait.mul_f64(0.9);
    let target = target(&host, spec.port);
    let route = Route::of(spec.via.as_deref(), cx).await?;
    let via = route.as_ref().map(|r| r.name.clone());
    let started = std::time::Instant::now();
    let connect =
        tokio::time::timeout_at(deadline, connect(&route, &host, spec.port, &target)).await;
    let tcp = match (connect, &route) {
        (Ok(Ok(s)), _) => s,
        (Ok(Err(Failure::Refused(e) | Failure::NoAnswer(e))), _) => {
            return Ok(closed(target, e, via));
        }
        (Ok(Err(f)), Some(r)) => return Err(r.step_error(f, cx)),
        (Ok(Err(f)), None) => return Ok(closed(target, f.message().to_string(), via)),
        (Err(_), _) => {
            let error = format!("no answer within {}", crate::units::Duration(wait));
            return Ok(closed(target, error, via));
        }
    };
    let connect_ms = started.elapsed().as_secs_f64() * 1000.0;
    let _ = tcp.set_nodelay(true);
    let at = Deadline { at: deadline, wait };
    let implicit_tls = !matches!(spec.tls, None | Some(BoolOr::Bool(false))) && !spec.starts_tls();
    let mut transcript = Transcript::default();
    let conn = if implicit_tls {
        let s = tls::handshake(spec.tls.as_ref(), tcp, &host, &target, cx.dir, at).await?;
        transcript.tls = Some(tls::describe(&s));
        Either::Right(s)
    } else {
        Either::Left(tcp)
    };
    let mut session = Session {
        conn: Some(conn),
        pending: Vec::new(),
        limit: cx.limits.max_output,
        target: &target,
        deadline: at,
    };
    let (exchanges, nodes) = match &spec.dialog {
        Some(d) => {
            let nodes = cx
                .args
                .get("dialog")
                .and_then(|n| n.as_seq())
                .map(<[_]>::to_vec)
                .unwrap_or_default();
            (d.clone(), nodes)
        }
        None => (one_shot(spec), Vec::new()),
    };
    let upgrade = |tcp: tokio::net::TcpStream| {
        tls::handshake(spec.tls.as_ref(), tcp, &host, &target, cx.dir, at)
    };
    let stopped = dialog::run(&mut session, &exchanges, &nodes, &mut transcript, upgrade).await;
    if let Some(conn) = session.conn.as_mut() {
        use tokio::io::AsyncWriteExt;
        let _ = conn.shutdown().await;
    }
    let mut out = StepOutput::default()
        .with("open", true)
        .with("connect_ms", (connect_ms * 1000.0).round() / 1000.0)
        .with("address", target.clone());
    if let Some(v) = via {
        out = out.with("via", v);
    }
    for (k, v) in payload::reply_fields(transcript.last_reply.as_deref().unwrap_or(&[])) {
        out.fields.insert(k, v);
    }
    if spec.dialog.is_some() {
        out = out.with("exchanges", transcript.exchanges);
    }
    if let Some(t) = transcript.tls {
        out = out.with("tls", t);
    }
    match stopped {
        Ok(()) => Ok(out),
        Err(Stop::Broken(e)) if spec.dialog.is_none() => Err(e),
        Err(Stop::Timeout { wait, .. }) if spec.dialog.is_none() => Err(StepError::Timeout(wait)),
        Err(Stop::Broken(e)) => {
            out.failure = Some(e.to_string());
            Ok(out)
        }
        Err(Stop::Timeout { label, wait }) => {
            out.failure = Some(format!("{label}: timed out after {wait}"));
            Ok(out)
        }
        Err(Stop::Failed(m)) => {
            out.failure = Some(m);
            Ok(out)
        }
    }
}

/// The one exchange of the `send`/`read` form: a reply is read when either is given.
fn one_shot(spec: &Tcp) -> Vec<Exchange> {
    if spec.send.is_none() && spec.read.is_none() {
        return Vec::new();
    }
    vec![Exchange {
        send: spec.send.clone(),
        read: Some(spec.read.clone().unwrap_or_default()),
        expect: None,
        starttls: None,
    }]
}

/// Connects from the runner, or from the via host through its gateway (a refused or silent
/// port is `Failure::Refused` either way).
async fn connect(
    route: &Option<Route>,
    host: &str,
    port: u16,
    target: &str,
) -> Result<tokio::net::TcpStream, Failure> {
    match route.as_ref().and_then(|r| r.gateway.as_ref()) {
        Some(g) => g.connect(host, port).await,
        None => tokio::net::TcpStream::connect(target)
            .await
            .map_err(|e| Failure::Refused(e.to_string())),
    }
}

/// The result of a port found closed (or silent): `open: false`, and why.
fn closed(target: String, error: String, via: Option<String>) -> StepOutput {
    let out = StepOutput::default()
        .with("open", false)
        .with("error", error)
        .with("address", target);
    match via {
        Some(v) => out.with("via", v),
        None => out,
    }
}

/// When the probe's waits end, and the step's timeout (for messages).
#[derive(Clone, Copy)]
pub(crate) struct Deadline {
    pub at: tokio::time::Instant,
    pub wait: std::time::Duration,
}
