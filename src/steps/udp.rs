//! The `udp` kind: one datagram from the runner to the host (or another address), and the
//! replies that come back within the step's timeout. Arguments come from the step rendered for
//! one host; results go back as the step's fields `open` (a reply came), `response`, `hex`,
//! `length` and `byte` of the first reply, every reply under `replies`, `rtt_ms`, and, when no
//! reply came, `error` (an ICMP port-unreachable, where the OS reports it, or silence).

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::tcp::payload::{self, Payload};
use super::{CheckCx, Kind, RunsOn, StepError, StepOutput, TaskCx};
use crate::diag::Diagnostic;
use crate::expect::ExpectFields;

/// Send a UDP datagram from the runner and wait for replies.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Udp {
    /// Address to send to; default the host's address.
    pub host: Option<String>,
    /// Port to send to.
    pub port: u16,
    /// The datagram: text (escapes `\r`, `\n`, `\t`, `\0`, `\xHH` are understood) or
    /// `{ hex: … }` / `{ base64: … }` bytes.
    pub send: Payload,
    /// How many replies to wait for before the step ends (default 1); fewer within the
    /// timeout is not an error (`expect: { replies: { len: 2 } }` says it is).
    pub replies: Option<u32>,
}

impl Kind for Udp {
    const NAME: &'static str = "udp";
    const SUMMARY: &'static str =
        "Send a UDP datagram from the runner and check the replies that come back.";
    const RUNS_ON: RunsOn = RunsOn::Runner;
    const NAME_FIELDS: &'static [&'static str] = &["port"];
    const EXPECT: ExpectFields = ExpectFields {
        plain: &[
            "open",
            "unreachable",
            "response",
            "hex",
            "length",
            "replies",
            "rtt_ms",
        ],
        keyed: &["byte"],
    };
    const DEFAULT_EXPECT: &'static str = "open: true";

    fn run<'a>(&'a self, cx: &'a TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(exchange(self, cx))
    }

    fn lookup(fields: &Json, field: &str, key: Option<&str>) -> Option<Json> {
        payload::lookup(fields, field, key)
    }

    /// Why no reply counted (`127.0.0.1:123: port unreachable (ICMP)`).
    fn failure_context(fields: &Json) -> Option<String> {
        payload::address_error(fields)
    }

    fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
        if let Some(send) = cx.args.get("send") {
            payload::check_literal(send, out);
        }
        if self.replies == Some(0) {
            out.push(
                Diagnostic::error("`replies: 0` waits for nothing")
                    .at(cx
                        .args
                        .get("replies")
                        .map(|n| n.span)
                        .unwrap_or(cx.kind_span))
                    .label("a check that cannot fail")
                    .help("wait for at least one reply (the default), or leave `replies` out"),
            );
        }
    }
}

/// Sends the datagram on a connected socket (so the OS can report an ICMP port-unreachable)
/// and collects replies until enough came or the time is up.
async fn exchange(spec: &Udp, cx: &TaskCx<'_>) -> Result<StepOutput, StepError> {
    let host = spec.host.clone().unwrap_or_else(|| cx.host.address.clone());
    let wait = cx.timeout.unwrap_or(std::time::Duration::from_secs(5));
    let deadline = tokio::time::Instant::now() + wait.mul_f64(0.9);
    let target = super::tcp::target(&host, spec.port);
    let bytes = spec
        .send
        .bytes()
        .map_err(|e| StepError::Protocol(format!("`send`: {e}")))?;
    let addr = tokio::time::timeout_at(deadline, tokio::net::lookup_host(&target))
        .await
        .map_err(|_| {
            StepError::Timeout(format!("{} resolving {host}", crate::units::Duration(wait)))
        })?
        .map_err(|e| StepError::Io(format!("resolving {host}: {e}")))?
        .next()
        .ok_or_else(|| StepError::Io(format!("`{host}` has no address")))?;
    let local: std::net::SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let io = |what: &str, e: std::io::Error| StepError::Io(format!("{what} {target}: {e}"));
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| io("binding a socket for", e))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| io("connecting to", e))?;
    let started = std::time::Instant::now();
    socket.send(&bytes).await.map_err(|e| io("sending to", e))?;
    let want = spec.replies.unwrap_or(1).max(1) as usize;
    let mut replies: Vec<Json> = Vec::new();
    let mut first: Option<(Vec<u8>, f64)> = None;
    let mut error = None;
    let mut buf = vec![0u8; 65_536];
    // Bounded by `want` replies and by the deadline.
    while replies.len() < want {
        match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1000.0;
                let mut r = Json::Object(payload::reply_fields(&buf[..n]));
                r["ms"] = ms.into();
                replies.push(r);
                if first.is_none() {
                    first = Some((buf[..n].to_vec(), ms));
                }
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                error = Some("port unreachable (ICMP)".to_string());
                break;
            }
            Ok(Err(e)) => return Err(io("receiving from", e)),
            Err(_) => break,
        }
    }
    let mut out = StepOutput::default()
        .with("address", target)
        .with("open", first.is_some());
    match first {
        Some((reply, ms)) => {
            for (k, v) in payload::reply_fields(&reply) {
                out.fields.insert(k, v);
            }
            out = out.with("rtt_ms", ms).with("unreachable", false);
        }
        None => {
            let error = error
                .unwrap_or_else(|| format!("no reply within {}", crate::units::Duration(wait)));
            out = out
                .with("error", error.clone())
                .with("unreachable", error.contains("ICMP"));
        }
    }
    Ok(out.with("replies", json!(replies)))
}
