//! The HTTP clients and cookie jars of a run, for `request.rs`: one reqwest client per
//! distinct TLS setting (a process-wide cache, so every host shares pooled connections;
//! proxies come from the environment), built from the step's `tls` settings with `crate::tls`;
//! a client of its own for a step that goes `via` a host (its gateway is its proxy); and one
//! cookie jar per inventory host. Redirects are not the client's: `request.rs`
//! follows them per step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::explain::describe;
use super::{CONNECT_TIMEOUT, HttpTls, resolve};

/// What makes two requests need different clients: their TLS settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ClientKey {
    verify: bool,
    ca: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
}

impl ClientKey {
    /// The key of a step's `tls` settings (paths relative to the playbook's directory `dir`).
    pub(super) fn of(tls: &HttpTls, dir: &Path) -> ClientKey {
        ClientKey {
            verify: tls.verifies(),
            ca: tls.ca.as_deref().map(|p| resolve(dir, p)),
            identity: match (&tls.client_cert, &tls.client_key) {
                (Some(c), Some(k)) => Some((resolve(dir, c), resolve(dir, k))),
                _ => None,
            },
        }
    }
}

/// The run's clients, one per TLS setting, shared by every host and step: reqwest clients
/// are handles to one connection pool, so a clone is cheap and pools stay shared.
pub(super) fn client(
    key: &ClientKey,
) -> Result<(reqwest::Client, Arc<rustls::ClientConfig>), String> {
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
    let built = builder(tls)
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", describe(&e)))?;
    clients.insert(key.clone(), (built.clone(), config.clone()));
    Ok((built, config))
}

/// A client of the run's settings for `tls`.
fn builder(tls: rustls::ClientConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("sortie/", env!("CARGO_PKG_VERSION")))
}

/// A client for one step that goes `via` a host: every connection (redirects too) through the
/// gateway's SOCKS listener at `proxy` (`socks5h://`: names resolve on the far side). Its own
/// pool, dropped with the step; the TLS settings are the run's client's.
pub(super) fn via_client(
    key: &ClientKey,
    proxy: &str,
) -> Result<(reqwest::Client, Arc<rustls::ClientConfig>), String> {
    let (_, config) = client(key)?;
    let proxy = reqwest::Proxy::all(proxy)
        .map_err(|e| format!("cannot set up the gateway proxy: {}", describe(&e)))?;
    let built = builder((*config).clone())
        .proxy(proxy)
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", describe(&e)))?;
    Ok((built, config))
}

/// The cookie jar of one inventory host, kept for the whole run.
pub(super) fn jar(host: &str) -> Arc<reqwest::cookie::Jar> {
    static JARS: OnceLock<Mutex<HashMap<String, Arc<reqwest::cookie::Jar>>>> = OnceLock::new();
    let mut jars = JARS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    jars.entry(host.to_string()).or_default().clone()
}
