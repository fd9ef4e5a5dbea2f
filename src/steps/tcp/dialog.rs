//! A `tcp` step's conversation over one connection: each exchange sends (text or bytes),
//! reads (until a text, a regex, a line, a number of bytes, or the peer closing), checks its
//! own `expect` on the reply, and may upgrade the connection to TLS in place (`starttls`).
//! Input: the step's exchanges, decoded from the arguments rendered for one host, and the
//! rendered node (the exchanges' `expect` mappings are read from it). Output: one record per
//! exchange (`exchanges`), the peer's TLS details, or the first failure in words.

use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use super::payload::{self, Payload};
use super::{Deadline, TcpRead};
use crate::units::Duration;
use crate::yaml::{Node, RawNode};

/// One exchange of a dialog: send, then read, then check, then (with `starttls`) upgrade.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// What to send first: text with escapes, or `{ hex: … }` / `{ base64: … }` bytes.
    pub send: Option<Payload>,
    /// What to read back (default, when the exchange has an `expect`: one line).
    pub read: Option<TcpRead>,
    /// Checks on this exchange's reply: `response` (text), `hex`, `length`, `byte` (offset →
    /// value).
    #[schemars(with = "Option<ReplyExpect>")]
    pub expect: Option<RawNode>,
    /// After sending, reading and checking, start TLS on this connection with the step's
    /// `tls` settings (SMTP and IMAP `STARTTLS`, POP3 `STLS`).
    pub starttls: Option<bool>,
}

/// The fields an exchange's `expect` may name; each takes a value or matchers.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
pub struct ReplyExpect {
    /// The reply as text.
    response: Option<RawNode>,
    /// The reply's bytes in lower-case hex.
    hex: Option<RawNode>,
    /// The reply's length in bytes.
    length: Option<RawNode>,
    /// Byte values by offset: `byte: { "1": { lt: 16 } }`.
    byte: Option<std::collections::BTreeMap<String, RawNode>>,
}

/// A connection, plain until an exchange starts TLS on it.
pub(super) type Conn = Either<TcpStream, TlsStream<TcpStream>>;

/// The open connection and what was read past the last reply.
pub(super) struct Session<'a> {
    pub conn: Option<Conn>,
    pub pending: Vec<u8>,
    pub limit: usize,
    pub target: &'a str,
    pub deadline: Deadline,
}

/// Why a dialog stopped.
pub(super) enum Stop {
    /// A wait ended (a reply that did not come): which exchange, and how long it waited.
    Timeout { label: String, wait: String },
    /// The connection failed, or a TLS upgrade did.
    Broken(crate::steps::StepError),
    /// An exchange's expectation did not hold.
    Failed(String),
}

impl Session<'_> {
    fn conn(&mut self) -> Result<&mut Conn, Stop> {
        self.conn.as_mut().ok_or_else(|| {
            Stop::Broken(crate::steps::StepError::Io(format!(
                "the connection to {} is gone",
                self.target
            )))
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        let target = self.target.to_string();
        let conn = self.conn()?;
        conn.write_all(bytes).await.map_err(|e| {
            Stop::Broken(crate::steps::StepError::Io(format!(
                "sending to {target}: {e}"
            )))
        })?;
        let _ = conn.flush().await;
        Ok(())
    }

    /// Reads one reply as `read` says: the bytes up to and including the delimiter (what came
    /// after stays for the next read), `bytes` bytes, or, with neither, what arrives until the
    /// peer closes or the time is up.
    pub async fn read(&mut self, read: &TcpRead) -> Result<Vec<u8>, Stop> {
        let until = read.delimiter();
        let regex = match &read.until_regex {
            Some(r) => Some(regex::bytes::Regex::new(r).map_err(|e| {
                Stop::Broken(crate::steps::StepError::Protocol(format!(
                    "`until_regex`: {e}"
                )))
            })?),
            None => None,
        };
        let want = read.bytes.map(|b| b.0 as usize);
        let max = want.unwrap_or(self.limit).min(self.limit);
        let at = match read.timeout {
            Some(t) => self.deadline.at.min(tokio::time::Instant::now() + t.0),
            None => self.deadline.at,
        };
        let wait = read.timeout.map(|t| t.0).unwrap_or(self.deadline.wait);
        let bounded = until.is_some() || regex.is_some() || want.is_some();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let end = until
                .as_ref()
                .filter(|u| !u.is_empty())
                .and_then(|u| {
                    self.pending
                        .windows(u.len())
                        .position(|w| w == u.as_slice())
                        .map(|p| p + u.len())
                })
                .or_else(|| {
                    regex
                        .as_ref()
                        .and_then(|r| r.find(&self.pending))
                        .map(|m| m.end())
                })
                .or_else(|| (self.pending.len() >= max).then_some(max));
            if let Some(end) = end {
                let rest = self.pending.split_off(end.min(self.pending.len()));
                return Ok(std::mem::replace(&mut self.pending, rest));
            }
            let conn = self.conn()?;
            match tokio::time::timeout_at(at, conn.read(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => self.pending.extend_from_slice(&buf[..n]),
                Ok(Err(e)) if self.pending.is_empty() => {
                    return Err(Stop::Broken(crate::steps::StepError::Io(format!(
                        "reading from {}: {e}",
                        self.target
                    ))));
                }
                Ok(Err(_)) => break,
                Err(_) if bounded => {
                    return Err(Stop::Timeout {
                        label: String::new(),
                        wait: format!(
                            "{} waiting for the reply ({} bytes read)",
                            Duration(wait),
                            self.pending.len()
                        ),
                    });
                }
                Err(_) => break,
            }
        }
        Ok(std::mem::take(&mut self.pending))
    }
}

/// What one exchange did, for the `exchanges` result field.
fn record(ex: &Exchange, reply: Option<&[u8]>, ms: f64) -> Json {
    let mut r = json!({});
    if let Some(send) = &ex.send {
        r["send"] = send.describe().into();
    }
    if let Some(bytes) = reply {
        for (k, v) in payload::reply_fields(bytes) {
            r[k] = v;
        }
    }
    if ex.starttls == Some(true) {
        r["starttls"] = true.into();
    }
    r["ms"] = ((ms * 1000.0).round() / 1000.0).into();
    r
}

/// The dialog's results so far, and the TLS details once an upgrade happened.
#[derive(Default)]
pub(super) struct Transcript {
    pub exchanges: Vec<Json>,
    pub last_reply: Option<Vec<u8>>,
    pub tls: Option<Json>,
}

/// Runs the exchanges in order; `nodes` are their rendered argument nodes (for `expect`).
/// `upgrade` starts TLS on the plain connection.
pub(super) async fn run<F, Fut>(
    session: &mut Session<'_>,
    exchanges: &[Exchange],
    nodes: &[Node],
    transcript: &mut Transcript,
    upgrade: F,
) -> Result<(), Stop>
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = Result<TlsStream<TcpStream>, crate::steps::StepError>>,
{
    for (i, ex) in exchanges.iter().enumerate() {
        let started = std::time::Instant::now();
        let label = exchange_label(i, ex);
        if let Some(send) = &ex.send {
            let bytes = send
                .bytes()
                .map_err(|e| Stop::Failed(format!("{label}: `send`: {e}")))?;
            session.send(&bytes).await?;
        }
        let read = match (&ex.read, &ex.expect) {
            (Some(r), _) => Some(r.clone()),
            (None, Some(_)) => Some(TcpRead::line()),
            (None, None) => None,
        };
        let reply = match &read {
            Some(r) => Some(session.read(r).await.map_err(|s| match s {
                Stop::Timeout { wait, .. } => Stop::Timeout {
                    label: label.clone(),
                    wait,
                },
                other => other,
            })?),
            None => None,
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        transcript.exchanges.push(record(ex, reply.as_deref(), ms));
        if let Some(r) = &reply {
            transcript.last_reply = Some(r.clone());
        }
        if let Some(node) = nodes.get(i).and_then(|n| n.get("expect")) {
            check(node, reply.as_deref().unwrap_or(&[]), &label)?;
        }
        if ex.starttls == Some(true) {
            if !session.pending.is_empty() {
                return Err(Stop::Failed(format!(
                    "{label}: the server sent {} bytes after its answer and before TLS started; refusing to upgrade (a STARTTLS injection?)",
                    session.pending.len()
                )));
            }
            let tls = match session.conn.take() {
                Some(Either::Left(tcp)) => upgrade(tcp).await.map_err(Stop::Broken)?,
                Some(Either::Right(_)) | None => {
                    return Err(Stop::Failed(format!(
                        "{label}: the connection is already TLS"
                    )));
                }
            };
            transcript.tls = Some(super::tls::describe(&tls));
            session.conn = Some(Either::Right(tls));
        }
    }
    Ok(())
}

/// `exchange 2 (EHLO sortie)`, for messages.
fn exchange_label(i: usize, ex: &Exchange) -> String {
    match &ex.send {
        Some(s) => {
            let text = s.describe();
            let shown: String = text.trim_end().chars().take(40).collect();
            format!("exchange {} (`{}`)", i + 1, shown.escape_debug())
        }
        None => format!("exchange {}", i + 1),
    }
}

/// Checks an exchange's rendered `expect` against its reply.
fn check(node: &Node, reply: &[u8], label: &str) -> Result<(), Stop> {
    let mut problems = Vec::new();
    let exps = payload::parse_expect(node, &mut problems);
    if let Some(d) = problems.first() {
        return Err(Stop::Failed(format!("{label}: `expect`: {}", d.title)));
    }
    let fields = Json::Object(payload::reply_fields(reply));
    let failed = payload::failed_checks(&exps, &fields);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Stop::Failed(format!("{label}: {}", failed.join("; "))))
    }
}
