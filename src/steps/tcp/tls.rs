//! TLS for the `tcp` kind: the handshake over an open connection (at connect, or in place when
//! a dialog's exchange says `starttls`), by the step's `tls` settings and the client config of
//! `crate::tls`; a failed handshake in words; and what the peer showed, for the step's `tls`
//! result field (protocol version, certificate subject and issuer, not-after, days left).

use serde_json::{Value as Json, json};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{Deadline, TlsSettings};
use crate::steps::{BoolOr, StepError};

/// The TLS handshake over the connection, by the step's settings (the CA relative to the
/// playbook's directory `dir`; the server name by default the address).
pub(super) async fn handshake(
    tls: Option<&BoolOr<TlsSettings>>,
    tcp: TcpStream,
    host: &str,
    target: &str,
    dir: &std::path::Path,
    deadline: Deadline,
) -> Result<TlsStream<TcpStream>, StepError> {
    let settings = match tls {
        Some(BoolOr::Value(s)) => s.clone(),
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
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(StepError::Protocol(failure(target, &name, &e))),
        Err(_) => Err(StepError::Timeout(format!(
            "{} (TLS handshake)",
            crate::units::Duration(deadline.wait)
        ))),
    }
}

/// A TLS handshake failure in words, with what to do about the common ones.
fn failure(target: &str, name: &str, e: &std::io::Error) -> String {
    let raw = e.to_string();
    let hint = if raw.contains("UnknownIssuer") {
        "the certificate is not signed by a trusted CA: give `tls: { ca: CA.pem }`, or `verify: false` to skip the check".to_string()
    } else if raw.contains("NotValidForName") {
        format!("the certificate is not valid for `{name}`: set `tls: {{ server_name: … }}`")
    } else if raw.contains("Expired") || raw.contains("certificate expired") {
        "the certificate has expired".to_string()
    } else {
        "the server did not complete a TLS handshake".to_string()
    };
    format!("TLS handshake with {target} failed: {hint} ({raw})")
}

/// What the peer showed: `version`, and of its certificate `subject`, `issuer`, `not_after`
/// (RFC 3339) and `days_left` (whole days until then; negative once expired).
pub(super) fn describe(stream: &TlsStream<TcpStream>) -> Json {
    let (_, conn) = stream.get_ref();
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => String::new(),
    };
    let mut out = json!({ "version": version });
    let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) else {
        return out;
    };
    if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) {
        let not_after = parsed.validity().not_after.timestamp();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        out["subject"] = parsed.subject().to_string().into();
        out["issuer"] = parsed.issuer().to_string().into();
        out["not_after"] = rfc3339(not_after).into();
        out["days_left"] = (not_after - now).div_euclid(86_400).into();
    }
    out
}

/// A Unix time as `2027-01-31T12:00:00Z`.
fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_in_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
    }
}
