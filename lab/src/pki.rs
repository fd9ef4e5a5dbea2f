//! A throw-away certificate authority for the lab's TLS servers, generated at run time (rcgen,
//! ring): a CA, a server certificate for the lab's addresses and `localhost`, a client
//! certificate for mutual TLS, server certificates that have expired and that expire in ten
//! days, and a second, unrelated CA with its own client certificate (what
//! an unknown issuer looks like). The PEM files go into a directory that playbooks point
//! `tls.ca`, `tls.client_cert` and `tls.client_key` at; the lab's TLS server reads the same
//! material from memory.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::LabError;

/// A certificate and its private key, in DER (for rustls) and PEM (for files).
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Identity {
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// The lab's certificates, and where their PEM files are.
#[derive(Clone)]
pub struct TestPki {
    pub ca: Identity,
    pub server: Identity,
    pub client: Identity,
    /// Server certificates for the same names, signed by the same CA, that expired yesterday
    /// and that expire in ten days (what a "not expiring within 30 days" check catches).
    pub expired: Identity,
    pub expiring: Identity,
    /// A CA nothing trusts, and a client certificate it signed.
    pub other_ca: Identity,
    pub other_client: Identity,
    dir: PathBuf,
}

fn err(what: &str, e: rcgen::Error) -> LabError {
    LabError::Server(format!("generating the test {what}: {e}"))
}

fn ca(name: &str) -> Result<(CertificateParams, KeyPair, Identity), LabError> {
    let key = KeyPair::generate().map_err(|e| err("CA key", e))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", e))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(|e| err("CA", e))?;
    let id = Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    };
    Ok((params, key, id))
}

fn leaf(
    name: &str,
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, &KeyPair>,
) -> Result<Identity, LabError> {
    leaf_valid(name, sans, usage, issuer, None)
}

/// A leaf certificate; with `days`, valid from `days.0` to `days.1` days from now.
fn leaf_valid(
    name: &str,
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, &KeyPair>,
    days: Option<(i64, i64)>,
) -> Result<Identity, LabError> {
    let key = KeyPair::generate().map_err(|e| err("key", e))?;
    let mut params = CertificateParams::new(sans).map_err(|e| err(name, e))?;
    if let Some((from, to)) = days {
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from);
        params.not_after = now + time::Duration::days(to);
    }
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer).map_err(|e| err(name, e))?;
    Ok(Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    })
}

impl TestPki {
    /// Generates everything and writes the PEM files into `dir`: `ca.pem`, `server.pem`,
    /// `server-key.pem`, `client.pem`, `client-key.pem`, `other-ca.pem`, `other-client.pem`,
    /// `other-client-key.pem`, `expired.pem`, `expired-key.pem`, `expiring.pem`,
    /// `expiring-key.pem`. The server certificate names `localhost` and every address in
    /// `ips`.
    pub fn generate(dir: &Path, ips: &[IpAddr]) -> Result<TestPki, LabError> {
        TestPki::generate_named(dir, ips, &[])
    }

    /// Like [`TestPki::generate`], the server certificates also naming each of `names` (DNS
    /// names such as `api.internal`).
    pub fn generate_named(dir: &Path, ips: &[IpAddr], names: &[&str]) -> Result<TestPki, LabError> {
        let (ca_params, ca_key, ca_id) = ca("sortie lab CA")?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let mut sans: Vec<String> = vec!["localhost".into()];
        sans.extend(names.iter().map(|n| n.to_string()));
        sans.extend(ips.iter().map(IpAddr::to_string));
        let server = leaf(
            "sortie lab server",
            sans.clone(),
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        )?;
        let expired = leaf_valid(
            "sortie lab server (expired)",
            sans.clone(),
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
            Some((-30, -1)),
        )?;
        let expiring = leaf_valid(
            "sortie lab server (expiring)",
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
            Some((-30, 10)),
        )?;
        let client = leaf(
            "sortie-client",
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        )?;
        let (other_params, other_key, other_id) = ca("unknown CA")?;
        let other_issuer = Issuer::from_params(&other_params, &other_key);
        let other_client = leaf(
            "stranger",
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            &other_issuer,
        )?;
        std::fs::create_dir_all(dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        let pki = TestPki {
            ca: ca_id,
            server,
            client,
            expired,
            expiring,
            other_ca: other_id,
            other_client,
            dir: dir.to_path_buf(),
        };
        let files: [(&str, &str); 12] = [
            ("expired.pem", &pki.expired.cert_pem),
            ("expired-key.pem", &pki.expired.key_pem),
            ("expiring.pem", &pki.expiring.cert_pem),
            ("expiring-key.pem", &pki.expiring.key_pem),
            ("ca.pem", &pki.ca.cert_pem),
            ("server.pem", &pki.server.cert_pem),
            ("server-key.pem", &pki.server.key_pem),
            ("client.pem", &pki.client.cert_pem),
            ("client-key.pem", &pki.client.key_pem),
            ("other-ca.pem", &pki.other_ca.cert_pem),
            ("other-client.pem", &pki.other_client.cert_pem),
            ("other-client-key.pem", &pki.other_client.key_pem),
        ];
        for (name, text) in files {
            crate::write_atomically(&dir.join(name), text)?;
        }
        Ok(pki)
    }

    /// The directory holding the PEM files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/NAME`, e.g. `pki.path("ca.pem")`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject as _;

    #[test]
    fn writes_pem_files_that_rustls_reads() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path(), &["127.0.0.1".parse().unwrap()]).unwrap();
        for name in ["ca.pem", "server.pem", "client.pem", "other-ca.pem"] {
            let certs: Vec<_> = CertificateDer::pem_file_iter(pki.path(name))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(certs.len(), 1, "{name}");
        }
        let key = std::fs::read_to_string(pki.path("client-key.pem")).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    }
}
