//! TLS client configuration shared by the kinds that speak TLS from the runner (`tcp`, and
//! `http` through its client): the system's roots plus an optional CA bundle, or — only when
//! the playbook says so — no verification at all; optionally a client certificate for mutual
//! TLS. Input: paths and flags from step arguments.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Reads every certificate of a PEM file.
pub fn read_pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA file `{}`: {e}", path.display()))?;
    let certs: Result<Vec<_>, _> = iter.collect();
    let certs =
        certs.map_err(|e| format!("`{}` is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config: verify against the system roots (+ `ca`), or accept anything.
pub fn client_config(verify: bool, ca: Option<&std::path::Path>) -> Result<ClientConfig, String> {
    client_config_with_identity(verify, ca, None)
}

/// A PEM certificate chain and its private key, presented to servers that ask (mutual TLS).
pub fn read_identity(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let iter = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read client certificate `{}`: {e}", cert.display()))?;
    let chain: Vec<_> = iter
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{}` is not a PEM certificate file: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("`{}` holds no PEM certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "cannot read a PEM private key from `{}`: {e}",
            key.display()
        )
    })?;
    Ok((chain, key))
}

/// Like [`client_config`], also presenting `identity` (certificate, key files) when given.
pub fn client_config_with_identity(
    verify: bool,
    ca: Option<&std::path::Path>,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let with_identity =
        |b: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>| match identity {
            None => Ok(b.with_no_client_auth()),
            Some((cert, key)) => {
                let (chain, key_der) = read_identity(cert, key)?;
                b.with_client_auth_cert(chain, key_der).map_err(|e| {
                    format!(
                        "client certificate `{}` and key `{}` do not go together: {e}",
                        cert.display(),
                        key.display()
                    )
                })
            }
        };
    if !verify {
        return with_identity(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify)),
        );
    }
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        let _ = roots.add(c);
    }
    if let Some(p) = ca {
        for c in read_pem_certs(p)? {
            roots
                .add(c)
                .map_err(|e| format!("bad CA certificate in `{}`: {e}", p.display()))?;
        }
    }
    with_identity(builder.with_root_certificates(roots))
}

#[derive(Debug)]
struct NoVerify;

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
