//! Probes as seen from a host (`via` on `tcp`, `http` and `dns`): a `Gateway` per via host, a
//! local SOCKS5 listener on 127.0.0.1 (`socks.rs`) whose every connection becomes a
//! `direct-tcpip` channel of an SSH session to that host, its bytes copied by a task of its
//! own (`jump::pump`, awaiting both sides on tokio's reactor). The probes connect to the listener — `tcp` and `dns` with
//! `Gateway::connect`, `http` through reqwest's `socks5h://` proxy (`Gateway::proxy_url`) — so
//! names resolve on the far side, and TLS, redirects and cookies work as they do directly.
//! The run keeps the gateways (`Gateways`, one per via host name, built from the inventory and
//! ssh_config exactly as that host's own connection: host keys, jump hosts, every rule), and
//! closes each when its host is done and all at the end of the play.
//!
//! A gateway has an SSH session of its own, not the host's step session: a channel towards a
//! silent address stays half-open until the far side's connect gives up (minutes behind a
//! firewall that drops), and libssh2 opens one channel at a time per session. So a probe that
//! gets no answer in time leaves that session to finish by itself (it is "spent": no new
//! channel opens on it) and the next probe opens a fresh one, while the host's commands and
//! transfers never wait behind a probe. Why a channel was refused (`AllowTcpForwarding no`,
//! connection refused there) is kept per request and handed back by `failure`.

mod socks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ssh2::Channel;
use tokio::net::{TcpListener, TcpStream};

use super::config::{self, Target};
use super::session::{Ctl, E, Live, OpError, Stop, lock};
use super::{connect, jump};
use crate::inventory::Inventory;

/// The longest a channel may take to open before its session is given up.
pub(super) const OPEN_LIMIT: Duration = Duration::from_secs(60);
/// Failures kept for callers to fetch, at most (older ones are dropped).
const MAX_FAILURES: usize = 1024;
/// The most bytes of the via host's /etc/resolv.conf read.
const RESOLV_CONF_LIMIT: usize = 64 * 1024;

/// Why a connection through a gateway was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No SSH session to the via host (it is unreachable, or the login failed).
    Session(String),
    /// The via host's sshd refused to open the channel: forwarding is off there.
    Prohibited(String),
    /// The via host could not connect (refused, or the name does not resolve there).
    Refused(String),
    /// No answer from the far side in time.
    NoAnswer(String),
    /// Anything else (the gateway itself failed).
    Other(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Session(m)
            | Failure::Prohibited(m)
            | Failure::Refused(m)
            | Failure::NoAnswer(m)
            | Failure::Other(m) => m,
        }
    }
}

/// The gateways of one play, one per via host name.
pub struct Gateways {
    inventory: Arc<Inventory>,
    open: tokio::sync::Mutex<HashMap<String, Arc<Gateway>>>,
}

impl Gateways {
    pub fn new(inventory: Arc<Inventory>) -> Gateways {
        Gateways {
            inventory,
            open: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The gateway through inventory host `name` for a probe of host `user`, started on
    /// first use.
    pub async fn get(&self, name: &str, user: &str) -> Result<Arc<Gateway>, String> {
        let mut open = self.open.lock().await;
        if let Some(g) = open.get(name) {
            g.used_by(user);
            return Ok(g.clone());
        }
        let host = self
            .inventory
            .host(name)
            .ok_or_else(|| format!("`via: {name}`: there is no host `{name}` in the inventory"))?;
        let target = config::resolve(host, Some(&self.inventory))
            .map_err(|e| format!("`via: {name}`: {e}"))?;
        let g = Gateway::start(name.to_string(), target).await?;
        g.used_by(user);
        open.insert(name.to_string(), g.clone());
        Ok(g)
    }

    /// Closes the gateway through `name` when its host is done, if no other host has probed
    /// through it (those may still be running: it then waits for the end of the play).
    pub async fn close(&self, name: &str) {
        let mut open = self.open.lock().await;
        if open.get(name).is_some_and(|g| g.only_for(name))
            && let Some(g) = open.remove(name)
        {
            g.close();
        }
    }

    /// Closes every gateway (the play is done).
    pub async fn close_all(&self) {
        for (_, g) in self.open.lock().await.drain() {
            g.close();
        }
    }
}

/// One via host: the listener, the SSH session behind it, and what went wrong lately.
pub struct Gateway {
    /// The via host's inventory name.
    pub name: String,
    listen: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
    next_user: AtomicU64,
    /// The hosts whose probes went through it.
    users: Mutex<std::collections::BTreeSet<String>>,
}

/// What the listener's connections share with the gateway.
struct Shared {
    name: String,
    target: Target,
    secret: String,
    session: tokio::sync::Mutex<Option<Arc<ViaSession>>>,
    failures: Mutex<HashMap<String, Failure>>,
    resolvers: tokio::sync::OnceCell<Result<Vec<u8>, String>>,
    /// Set at close: every pump stops.
    closed: Arc<Stop>,
}

/// An SSH session to the via host, used by its gateway alone.
struct ViaSession {
    live: Option<Arc<Live>>,
    /// Held while a channel opens: libssh2 opens one at a time per session.
    opening: tokio::sync::Mutex<()>,
    /// A channel open was given up half-way: nothing else may open on this session.
    spent: AtomicBool,
}

impl Drop for ViaSession {
    /// Disconnects in a task of its own (bounded, a few seconds).
    fn drop(&mut self) {
        if let Some(live) = self.live.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move { live.shutdown().await });
        }
    }
}

impl Gateway {
    async fn start(name: String, target: Target) -> Result<Arc<Gateway>, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("`via: {name}`: cannot listen on 127.0.0.1: {e}"))?;
        let listen = listener
            .local_addr()
            .map_err(|e| format!("`via: {name}`: {e}"))?;
        let secret = crate::random::hex(16)
            .map_err(|e| format!("`via: {name}`: no random bytes for a password ({e})"))?;
        let shared = Arc::new(Shared {
            name: name.clone(),
            target,
            secret,
            session: tokio::sync::Mutex::new(None),
            failures: Mutex::new(HashMap::new()),
            resolvers: tokio::sync::OnceCell::new(),
            closed: Stop::new(),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            // Ends when the gateway is closed (the task is aborted) or the listener fails.
            while let Ok((conn, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move { s.serve(conn).await });
            }
        });
        Ok(Arc::new(Gateway {
            name,
            listen,
            shared,
            accept,
            next_user: AtomicU64::new(1),
            users: Mutex::new(Default::default()),
        }))
    }

    fn used_by(&self, host: &str) {
        lock(&self.users).insert(host.to_string());
    }

    /// Whether only `host` has used it.
    fn only_for(&self, host: &str) -> bool {
        lock(&self.users).iter().all(|u| u == host)
    }

    /// A fresh user name for one request (its failure is kept under it).
    pub fn request_id(&self) -> String {
        format!("r{}", self.next_user.fetch_add(1, Ordering::Relaxed))
    }

    /// The proxy URL for reqwest, its requests' failures kept under `user`.
    pub fn proxy_url(&self, user: &str) -> String {
        format!("socks5h://{user}:{}@{}", self.shared.secret, self.listen)
    }

    /// Why the last connection asked for as `user` was not made, if it was not.
    pub fn failure(&self, user: &str) -> Option<Failure> {
        lock(&self.shared.failures).remove(user)
    }

    /// A TCP connection to `host:port` as the via host makes it.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, Failure> {
        let user = self.request_id();
        match socks::connect(self.listen, &user, &self.shared.secret, host, port).await {
            Ok(s) => Ok(s),
            Err(socks::ConnectError::Refused(code)) => {
                Err(self.failure(&user).unwrap_or_else(|| {
                    Failure::Other(format!(
                        "{} did not connect to {host}:{port} (SOCKS reply {code})",
                        self.name
                    ))
                }))
            }
            Err(socks::ConnectError::Io(e)) => Err(Failure::Other(format!(
                "the gateway through {} failed: {e}",
                self.name
            ))),
        }
    }

    /// The via host's /etc/resolv.conf, read over SFTP once per gateway.
    pub async fn resolv_conf(&self) -> Result<Vec<u8>, String> {
        let s = self.shared.clone();
        self.shared
            .resolvers
            .get_or_init(|| async move { s.read_resolv_conf().await })
            .await
            .clone()
    }

    /// Stops the listener and every copy in flight; the session closes when the last one ends.
    pub fn close(&self) {
        self.shared.closed.set();
        self.accept.abort();
        if let Ok(mut s) = self.shared.session.try_lock() {
            s.take();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    /// One connection to the listener: the SOCKS handshake, the channel, then the copying.
    async fn serve(self: Arc<Self>, mut conn: TcpStream) {
        let Ok(Some(req)) = socks::accept(&mut conn, &self.secret).await else {
            return;
        };
        let _ = conn.set_nodelay(true);
        let opened = self.open_channel(&req, &conn).await;
        let (session, ch) = match opened {
            Ok(v) => v,
            Err(f) => {
                let code = match f {
                    Failure::Prohibited(_) => socks::NOT_ALLOWED,
                    Failure::Refused(_) => socks::REFUSED,
                    Failure::NoAnswer(_) => socks::HOST_UNREACHABLE,
                    _ => socks::GENERAL_FAILURE,
                };
                self.remember(&req.user, f);
                let _ = socks::reply(&mut conn, code).await;
                return;
            }
        };
        let local = socks::reply(&mut conn, socks::SUCCEEDED)
            .await
            .map(|()| conn);
        self.copy(session, ch, local.ok()).await;
    }

    /// Copies between the client's connection and the channel, then closes the channel (at
    /// once when the client is already gone).
    async fn copy(&self, session: Arc<ViaSession>, ch: Channel, local: Option<TcpStream>) {
        let Some(live) = session.live.as_ref() else {
            return;
        };
        match local {
            Some(local) => {
                jump::pump(live, ch, jump::LocalEnd::Tcp(local), &self.closed, false).await
            }
            None => live.close_channel(ch).await,
        }
    }

    fn remember(&self, user: &str, f: Failure) {
        let mut fs = lock(&self.failures);
        if fs.len() >= MAX_FAILURES {
            fs.clear();
        }
        fs.insert(user.to_string(), f);
    }

    /// The session to open channels on: the current one, or a new one (then `true`) when
    /// there is none, it died or it is spent.
    async fn session(&self) -> Result<(Arc<ViaSession>, bool), Failure> {
        let mut cur = self.session.lock().await;
        if let Some(s) = cur.as_ref()
            && !s.spent.load(Ordering::SeqCst)
            && s.live.as_ref().is_some_and(|l| l.dead_reason().is_none())
        {
            return Ok((s.clone(), false));
        }
        let live = match connect::connect(&self.target).await {
            Ok(live) => live,
            Err(e) => return Err(Failure::Session(e.to_string())),
        };
        let s = Arc::new(ViaSession {
            live: Some(Arc::new(live)),
            opening: tokio::sync::Mutex::new(()),
            spent: AtomicBool::new(false),
        });
        *cur = Some(s.clone());
        Ok((s, true))
    }

    /// Opens a channel for `req` (in a task of its own), giving up when the client leaves;
    /// once again, on a new session, when a session used before turns out dead or spent.
    async fn open_channel(
        &self,
        req: &socks::Request,
        conn: &TcpStream,
    ) -> Result<(Arc<ViaSession>, Channel), Failure> {
        let mut retried = false;
        loop {
            let (session, new) = self.session().await?;
            let gone = Arc::new(AtomicBool::new(false));
            let (s, g) = (session.clone(), gone.clone());
            let (host, port) = (req.host.clone(), req.port);
            let name = self.name.clone();
            let mut task = tokio::spawn(async move { open(&s, &name, &host, port, &g).await });
            let r = tokio::select! {
                r = &mut task => r,
                _ = client_left(conn) => {
                    gone.store(true, Ordering::SeqCst);
                    task.await
                }
            };
            match r {
                Ok(Ok(ch)) => return Ok((session, ch)),
                Ok(Err(Failure::Session(_))) if !new && !retried => retried = true,
                Ok(Err(f)) => return Err(f),
                Err(e) => return Err(Failure::Other(format!("the channel task failed: {e}"))),
            }
        }
    }

    async fn read_resolv_conf(&self) -> Result<Vec<u8>, String> {
        let (session, _) = self.session().await.map_err(|f| f.message().to_string())?;
        let name = self.name.clone();
        let live = session.live.clone().ok_or("closed")?;
        // SFTP opens a channel too: one at a time on this session.
        let opening = session.opening.lock().await;
        let mut remote = super::Remote::new(live, Ctl::within(Duration::from_secs(10)));
        let r = read_small(&mut remote, "/etc/resolv.conf").await;
        drop(remote);
        drop(opening);
        r.map_err(|e| format!("cannot read {name}'s /etc/resolv.conf: {e}"))
    }
}

/// A small remote file, whole (at most `RESOLV_CONF_LIMIT` bytes).
async fn read_small(
    remote: &mut super::Remote,
    path: &str,
) -> Result<Vec<u8>, crate::error::StepError> {
    let mut f = remote.open_read(path).await?;
    let mut data = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while data.len() < RESOLV_CONF_LIMIT {
        let n = remote.read(&mut f, &mut buf).await?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    data.truncate(RESOLV_CONF_LIMIT);
    remote.close(f).await?;
    Ok(data)
}

/// Resolves when the client closed its end (it sends nothing while it waits for the reply;
/// early bytes are left for the channel).
async fn client_left(conn: &TcpStream) {
    let mut b = [0u8; 1];
    if let Ok(n) = conn.peek(&mut b).await
        && n > 0
    {
        std::future::pending::<()>().await
    }
}

/// Opens a direct-tcpip channel to `host:port` on `s`, letting the session's other channels
/// flow while it waits for the answer; gives up (and spends the session) when `gone` is set
/// or after `OPEN_LIMIT`.
async fn open(
    s: &ViaSession,
    name: &str,
    host: &str,
    port: u16,
    gone: &AtomicBool,
) -> Result<Channel, Failure> {
    let live = s
        .live
        .as_ref()
        .ok_or_else(|| Failure::Other("closed".into()))?;
    let _g = s.opening.lock().await;
    if s.spent.load(Ordering::SeqCst) {
        return Err(Failure::Session(format!("the session to {name} is spent")));
    }
    let target = super::host_port(host, port);
    let start = Instant::now();
    loop {
        match live
            .attempt(|| {
                live.sess
                    .channel_direct_tcpip(host, port, None)
                    .map_err(E::from)
            })
            .await
        {
            Ok(Some(ch)) => return Ok(ch),
            Ok(None) => {}
            Err(OpError::Failed { msg, .. }) => return Err(refused(name, &target, &msg)),
            Err(OpError::Dead(r)) => return Err(Failure::Session(r)),
            Err(OpError::Cancelled) => {}
        }
        if gone.load(Ordering::SeqCst) || start.elapsed() > OPEN_LIMIT {
            // libssh2 keeps this open half-way: no other channel may open on this session.
            s.spent.store(true, Ordering::SeqCst);
            return Err(Failure::NoAnswer(format!(
                "{name} got no answer from {target} within {}",
                crate::units::Duration(start.elapsed())
            )));
        }
        live.wait_io(
            ssh2::BlockDirections::Inbound,
            None,
            Some(Duration::from_millis(200)),
        )
        .await;
    }
}

/// The failure for a channel the via host's sshd would not open (libssh2 names the reason
/// code: "administratively prohibited", "connect failed", …).
fn refused(name: &str, target: &str, msg: &str) -> Failure {
    if msg.contains("prohibited") {
        Failure::Prohibited(format!(
            "{name} does not forward connections: its sshd refused a channel to {target} \
             (administratively prohibited — `AllowTcpForwarding no`, or a `PermitOpen` rule \
             that leaves {target} out, in its sshd_config)"
        ))
    } else if msg.contains("connect failed") {
        Failure::Refused(format!(
            "{name} could not connect to {target} (refused there, or the name does not resolve there)"
        ))
    } else {
        Failure::Other(format!("{name} did not open a channel to {target}: {msg}"))
    }
}
