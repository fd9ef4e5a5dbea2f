//! Why a request failed, in words, for `request.rs` (and `describe` for the other parts):
//! reqwest's error and the errors below it (rustls, hyper, I/O) become a `StepError` that names
//! the request and says what went wrong, with what to do about TLS trouble. When an HTTPS
//! connection just closed, `tls_reason` asks the server itself why (one direct handshake).

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::CONNECT_TIMEOUT;
use crate::error::StepError;

/// The message of a failed request, from reqwest's error and the errors below it: names the
/// request and says in words what went wrong (and what to do for TLS trouble).
pub(super) fn classify(request: &str, e: &reqwest::Error) -> StepError {
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

/// What to do about a TLS failure, by its reason (or nothing to add).
pub(super) fn tls_help(tls: &str) -> &'static str {
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

/// An error and its sources, outermost first (bounded).
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

/// The first `io::Error` among the sources.
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

/// A rustls error in `e`, or in the `io::Error`s it wraps.
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
pub(super) fn closed_without_reason(e: &reqwest::Error) -> bool {
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
pub(super) async fn tls_reason(url: &Url, config: Arc<rustls::ClientConfig>) -> Option<String> {
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
pub(super) fn describe(e: &reqwest::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
