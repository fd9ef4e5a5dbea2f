//! The `tcp` kind: a TCP (optionally TLS) probe from the runner to the host or another
//! address: connect with a timeout, optionally send bytes and read a reply. Arguments come from
//! the step rendered for one host (the address by default the host's); results go back as the
//! step's fields `open`, `connect_ms`, `response` (and `error`, `address` for a closed port).

use serde::Deserialize;

use super::{BoolOr, Kind, RunsOn, StepError, StepOutput, TaskCx};
use crate::expect::ExpectFields;
use crate::units::ByteSize;

/// Probe a TCP port from the runner.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tcp {
    /// Address to connect to; default the host's address.
    pub host: Option<String>,
    /// Port to connect to.
    pub port: u16,
    /// Wrap the connection in TLS (`true`, or settings).
    pub tls: Option<BoolOr<TlsSettings>>,
    /// Text to send after connecting; escapes `\r`, `\n`, `\t`, `\0`, `\xHH` are understood.
    pub send: Option<String>,
    /// What to read back: until a delimiter, a number of bytes, or (with neither) until the
    /// peer closes or the timeout ends.
    pub read: Option<TcpRead>,
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
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpRead {
    /// Stop after this text (escapes as in `send`).
    pub until: Option<String>,
    /// Stop after this many bytes.
    pub bytes: Option<ByteSize>,
}

impl Kind for Tcp {
    const NAME: &'static str = "tcp";
    const SUMMARY: &'static str =
        "Probe a TCP port from the runner: connect, optionally send and read.";
    const RUNS_ON: RunsOn = RunsOn::Runner;
    const NAME_FIELDS: &'static [&'static str] = &["port"];
    const EXPECT: ExpectFields = ExpectFields {
        plain: &["open", "connect_ms", "response"],
        keyed: &[],
    };
    const DEFAULT_EXPECT: &'static str = "open: true";

    fn run<'a>(&'a self, cx: &'a TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(probe(self, cx))
    }

    /// Why a port was found closed (`127.0.0.1:8080: Connection refused`).
    fn failure_context(fields: &serde_json::Value) -> Option<String> {
        let error = fields.get("error")?.as_str()?;
        let address = fields.get("address").and_then(|a| a.as_str()).unwrap_or("");
        Some(format!("{address}: {error}"))
    }
}

/// Turns `\r`, `\n`, `\t`, `\0`, `\\` and `\xHH` into bytes.
pub fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let esc = b[i + 1];
            let simple = match esc {
                b'r' => Some(b'\r'),
                b'n' => Some(b'\n'),
                b't' => Some(b'\t'),
                b'0' => Some(0),
                b'\\' => Some(b'\\'),
                _ => None,
            };
            if let Some(c) = simple {
                out.push(c);
                i += 2;
                continue;
            }
            if esc == b'x'
                && i + 3 < b.len()
                && let Ok(hex) = std::str::from_utf8(&b[i + 2..i + 4])
                && let Ok(v) = u8::from_str_radix(hex, 16)
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A TLS handshake failure in words, with what to do about the common ones.
fn tls_failure(target: &str, name: &str, e: &std::io::Error) -> String {
    let raw = e.to_string();
    let hint = if raw.contains("UnknownIssuer") {
        "the certificate is not signed by a trusted CA: give `tls: { ca: CA.pem }`, or `verify: false` to skip the check".to_string()
    } else if raw.contains("NotValidForName") {
        format!("the certificate is not valid for `{name}`: set `tls: {{ server_name: … }}`")
    } else if raw.contains("Expired") {
        "the certificate has expired".to_string()
    } else {
        "the server did not complete a TLS handshake".to_string()
    };
    format!("TLS handshake with {target} failed: {hint} ({raw})")
}

/// A connection, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Runs the probe: connect, TLS when asked, send, read.
async fn probe(spec: &Tcp, cx: &TaskCx<'_>) -> Result<StepOutput, StepError> {
    use tokio::io::AsyncWriteExt;
    let host = spec.host.clone().unwrap_or_else(|| cx.host.address.clone());
    let wait = cx.timeout.unwrap_or(std::time::Duration::from_secs(10));
    // The probe's own deadline ends a little before the runner's timeout of the step, so that
    // a silent port is reported as closed (`open: false`) rather than as a timed-out step.
    let deadline = tokio::time::Instant::now() + wait.mul_f64(0.9);
    let target = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{}", spec.port)
    } else {
        format!("{host}:{}", spec.port)
    };
    let started = std::time::Instant::now();
    let connect = tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(&target)).await;
    let tcp = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Ok(closed(target, e.to_string())),
        Err(_) => {
            let error = format!("no answer within {}", crate::units::Duration(wait));
            return Ok(closed(target, error));
        }
    };
    let connect_ms = started.elapsed().as_secs_f64() * 1000.0;
    let _ = tcp.set_nodelay(true);
    let at = Deadline { at: deadline, wait };
    let mut stream: Box<dyn Stream> = match &spec.tls {
        None | Some(BoolOr::Bool(false)) => Box::new(tcp),
        Some(tls) => handshake(tls, tcp, &host, &target, cx.dir, at).await?,
    };
    if let Some(send) = &spec.send {
        let bytes = unescape(send);
        stream
            .write_all(&bytes)
            .await
            .map_err(|e| StepError::Io(format!("sending to {target}: {e}")))?;
        let _ = stream.flush().await;
    }
    let response = if spec.read.is_some() || spec.send.is_some() {
        let limit = cx.limits.max_output;
        read_reply(&mut stream, spec.read.as_ref(), limit, &target, at).await?
    } else {
        Vec::new()
    };
    let _ = stream.shutdown().await;
    Ok(StepOutput::default()
        .with("open", true)
        .with("connect_ms", (connect_ms * 1000.0).round() / 1000.0)
        .with("address", target)
        .with("response", String::from_utf8_lossy(&response).into_owned()))
}

/// The result of a port found closed (or silent): `open: false`, and why.
fn closed(target: String, error: String) -> StepOutput {
    StepOutput::default()
        .with("open", false)
        .with("error", error)
        .with("address", target)
}

/// When the probe's waits end, and the step's timeout (for messages).
#[derive(Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    wait: std::time::Duration,
}

/// The TLS handshake over the connection, by the step's settings (the CA relative to the
/// playbook's directory `dir`; the server name by default the address).
async fn handshake(
    tls: &BoolOr<TlsSettings>,
    tcp: tokio::net::TcpStream,
    host: &str,
    target: &str,
    dir: &std::path::Path,
    deadline: Deadline,
) -> Result<Box<dyn Stream>, StepError> {
    let settings = match tls {
        BoolOr::Value(s) => s.clone(),
        _ => TlsSettings::default(),
    };
    let ca = settings.ca.as_ref().map(|c| {
        let p = std::path::Path::new(c);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    });
    let config = crate::tls::client_config(settings.verify.unwrap_or(true), ca.as_deref())
        .map_err(StepError::Io)?;
    let name = settings
        .server_name
        .clone()
        .unwrap_or_else(|| host.trim_matches(['[', ']']).to_string());
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|_| StepError::Protocol(format!("`{name}` is not a valid TLS server name")))?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    match tokio::time::timeout_at(deadline.at, connector.connect(server_name, tcp)).await {
        Ok(Ok(s)) => Ok(Box::new(s)),
        Ok(Err(e)) => Err(StepError::Protocol(tls_failure(target, &name, &e))),
        Err(_) => Err(StepError::Timeout(format!(
            "{} (TLS handshake)",
            crate::units::Duration(deadline.wait)
        ))),
    }
}

/// Reads the reply: until the `read.until` text, `read.bytes` bytes (at most `limit`), or the
/// peer closing. Running out of time fails the step when a delimiter or a byte count was
/// asked for; a plain read just ends.
async fn read_reply(
    stream: &mut Box<dyn Stream>,
    read: Option<&TcpRead>,
    limit: usize,
    target: &str,
    deadline: Deadline,
) -> Result<Vec<u8>, StepError> {
    use tokio::io::AsyncReadExt;
    let until = read.and_then(|r| r.until.as_ref()).map(|u| unescape(u));
    let bytes = read.and_then(|r| r.bytes);
    let max = bytes.map(|b| b.0 as usize).unwrap_or(limit).min(limit);
    let mut response = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if response.len() >= max {
            response.truncate(max);
            break;
        }
        if let Some(u) = &until
            && !u.is_empty()
            && response.windows(u.len()).any(|w| w == u.as_slice())
        {
            break;
        }
        match tokio::time::timeout_at(deadline.at, stream.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => response.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => {
                if response.is_empty() {
                    return Err(StepError::Io(format!("reading from {target}: {e}")));
                }
                break;
            }
            Err(_) => {
                if until.is_some() || bytes.is_some() {
                    return Err(StepError::Timeout(format!(
                        "{} waiting for the reply ({} bytes read)",
                        crate::units::Duration(deadline.wait),
                        response.len()
                    )));
                }
                break;
            }
        }
    }
    Ok(response)
}
