//! A WAN between the runner and the lab's hosts: a user-space TCP proxy that holds every chunk
//! for half the round trip in each direction, keeps its order, and optionally caps the
//! bandwidth — this kernel has no `netem`, so the delay lives here.
//!
//! [`crate::Lab`] starts it when [`crate::LabOptions::wan`] is set: every server then listens on
//! the host's *backstage* address ([`backstage`], the same address in the upper half of
//! 127.0.0.0/8), and [`Wan`] listens on the host's public address and port — the one the
//! inventory, `known_hosts` and `ssh_config` name — and relays to the backstage one. So sortie,
//! `ssh`, pyinfra or Ansible reach every host across the same emulated link, and nothing else
//! changes for them.
//!
//! The model of one connection, from the moment the proxy accepts it (t = 0):
//! - a real TCP handshake costs the client one round trip before it can send, and the server
//!   sees the connection half a round trip later: the proxy connects upstream at 1.5 × RTT, so a
//!   server's banner reaches the client at 2 × RTT, and a client's first request reaches the
//!   server at 1.5 × RTT — as across a real link;
//! - every chunk read on one side is written on the other RTT/2 after it was read (never
//!   earlier, never out of order); with a bandwidth cap, no sooner than the link would have
//!   carried the bytes before it;
//! - a half-close travels like data; an error on either side closes both.
//!
//! The same proxy, with no delay, is the relay of an inside network: [`Wan::start_into`]
//! listens here and connects inside a [`SiteNet`] ([`crate::site`]), and [`Wan::set_open`]
//! closes and reopens one route's listener (a killed host refuses connects).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::LabError;
use crate::background::Background;
use crate::site::SiteNet;

/// Offset from a public lab address to its backstage one (127.0.x.y → 127.128.x.y).
const BACKSTAGE_OFFSET: u32 = 0x0080_0000;
/// The most read from a socket at once.
const CHUNK: usize = 64 * 1024;

/// The emulated link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WanOptions {
    /// The round trip: each direction is delayed by half of it.
    pub rtt: Duration,
    /// Bytes per second in each direction of each connection; `None` for no cap.
    pub bandwidth: Option<u64>,
}

/// Where a server behind the WAN really listens for a host address: the same address in the
/// upper half of 127.0.0.0/8. Public lab addresses stay in the lower half (checked by the lab).
pub fn backstage(public: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(public) | BACKSTAGE_OFFSET)
}

/// Whether `public` can have a backstage address (it is in 127.0.0.0–127.127.255.255).
pub fn has_backstage(public: Ipv4Addr) -> bool {
    public.octets()[0] == 127 && u32::from(public) & BACKSTAGE_OFFSET == 0
}

/// A running WAN: one listener per route; dropping it stops the proxy and every connection.
pub struct Wan {
    options: WanOptions,
    routes: Vec<(SocketAddr, SocketAddr)>,
    control: Control,
    _server: Background,
}

/// What the proxy's thread hands back: its runtime, the token that ends every connection, and
/// the routes listening now (a route can be closed and opened again: [`Wan::set_open`]).
struct Control {
    runtime: Handle,
    stop: CancellationToken,
    upstream: Option<SiteNet>,
    listening: Mutex<HashMap<SocketAddr, Listening>>,
}

/// One route's listener: cancelling `token` ends its accept loop (not its connections), and
/// `gone` disconnects once the listener is closed.
struct Listening {
    token: CancellationToken,
    gone: std::sync::mpsc::Receiver<()>,
}

impl Wan {
    /// Listens on each route's first address and relays to its second, across the link.
    pub fn start(
        options: WanOptions,
        routes: Vec<(SocketAddr, SocketAddr)>,
    ) -> Result<Wan, LabError> {
        Wan::start_into(options, routes, None)
    }

    /// Like [`Wan::start`], but with `upstream` the proxy connects to each route's second
    /// address inside that site (it still listens here): how the runner reaches the sshd of a
    /// host inside the site at its usual address. A zero `rtt` relays without delay.
    pub fn start_into(
        options: WanOptions,
        routes: Vec<(SocketAddr, SocketAddr)>,
        upstream: Option<SiteNet>,
    ) -> Result<Wan, LabError> {
        let bound = routes.clone();
        let site = upstream.clone();
        let (server, (runtime, stop, listening)) =
            Background::start("wan", move |stop: CancellationToken| async move {
                let runtime = Handle::current();
                let mut listening = HashMap::new();
                for (public, upstream) in bound {
                    let listener = bind(public)?;
                    let route = Route {
                        upstream,
                        options,
                        site: site.clone(),
                    };
                    listening.insert(public, listen(&runtime, listener, route, &stop));
                }
                let serve = {
                    let stop = stop.clone();
                    async move { stop.cancelled().await }
                };
                Ok(((runtime, stop, listening), serve))
            })?;
        Ok(Wan {
            options,
            routes,
            control: Control {
                runtime,
                stop,
                upstream,
                listening: Mutex::new(listening),
            },
            _server: server,
        })
    }

    pub fn options(&self) -> WanOptions {
        self.options
    }

    /// (public, backstage) pairs.
    pub fn routes(&self) -> &[(SocketAddr, SocketAddr)] {
        &self.routes
    }

    /// Closes the listener of the route from `public` (connects are then refused; connections
    /// already relayed go on), or opens it again. Returns once the listener is closed or open.
    pub fn set_open(&self, public: SocketAddr, open: bool) -> Result<(), LabError> {
        let mut listening = self
            .control
            .listening
            .lock()
            .map_err(|_| LabError::Server("the WAN's routes are poisoned".into()))?;
        if !open {
            if let Some(route) = listening.remove(&public) {
                route.token.cancel();
                // Disconnected once the accept loop has dropped the listener. A loaded machine
                // (the whole test suite on two cores) took more than the 2 s this used to wait,
                // and a connection still got through: wait longer, and say so if even that
                // passes, rather than report the route closed.
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    route.gone.recv_timeout(CLOSE_WAIT)
                {
                    return Err(LabError::Server(format!(
                        "the WAN proxy still listens on {public} {} s after it was told to stop",
                        CLOSE_WAIT.as_secs()
                    )));
                }
            }
            return Ok(());
        }
        if listening.contains_key(&public) {
            return Ok(());
        }
        let Some((_, upstream)) = self.routes.iter().find(|(p, _)| *p == public) else {
            return Err(LabError::Server(format!(
                "the WAN has no route from {public}"
            )));
        };
        // Bound here, in the caller's (the runner's) namespace, on the proxy's runtime.
        let _context = self.control.runtime.enter();
        let listener = bind(public)?;
        let route = Route {
            upstream: *upstream,
            options: self.options,
            site: self.control.upstream.clone(),
        };
        let control = listen(&self.control.runtime, listener, route, &self.control.stop);
        listening.insert(public, control);
        Ok(())
    }
}

/// How long closing a route waits for its listener to be gone.
const CLOSE_WAIT: Duration = Duration::from_secs(15);

fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, LabError> {
    let io = |e| LabError::PortUnavailable {
        address: addr.ip().to_string(),
        port: addr.port(),
        detail: format!("the WAN proxy cannot listen there: {e}"),
    };
    let socket = tokio::net::TcpSocket::new_v4().map_err(io)?;
    socket.set_reuseaddr(true).map_err(io)?;
    socket.bind(addr).map_err(io)?;
    socket.listen(1024).map_err(io)
}

/// Where one route's connections go, and across what.
#[derive(Clone)]
struct Route {
    upstream: SocketAddr,
    options: WanOptions,
    site: Option<SiteNet>,
}

/// Spawns the accept loop of one route on `runtime`; its connections end with `stop`.
fn listen(
    runtime: &Handle,
    listener: tokio::net::TcpListener,
    route: Route,
    stop: &CancellationToken,
) -> Listening {
    let token = stop.child_token();
    let (gone_tx, gone) = std::sync::mpsc::channel();
    runtime.spawn(accept_loop(
        listener,
        route,
        token.clone(),
        stop.clone(),
        gone_tx,
    ));
    Listening { token, gone }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    route: Route,
    closed: CancellationToken,
    stop: CancellationToken,
    gone: std::sync::mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = closed.cancelled() => break,
        };
        match accepted {
            Ok((client, _)) => {
                let stop = stop.clone();
                let route = route.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = relay(client, route) => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
            // Out of file descriptors and the like: wait a little rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    drop(listener);
    drop(gone);
}

/// Connects to `upstream`, inside `site` when there is one.
async fn connect(upstream: SocketAddr, site: Option<&SiteNet>) -> std::io::Result<TcpStream> {
    match site {
        None => TcpStream::connect(upstream).await,
        Some(site) => {
            let socket = site.tcp_socket().map_err(std::io::Error::other)?;
            socket.connect(upstream).await
        }
    }
}

/// One chunk in flight: due when it may be written on the far side; `None` is end of stream.
type Chunk = (Instant, Option<Vec<u8>>);

async fn relay(client: TcpStream, route: Route) {
    let options = route.options;
    let accepted = Instant::now();
    let half = options.rtt / 2;
    let _ = client.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    // The client may send before the emulated handshake is over: its bytes wait in the queue.
    let (up_tx, up_rx) = mpsc::unbounded_channel::<Chunk>();
    let from_client = tokio::spawn(read_side(client_read, up_tx, half));
    tokio::time::sleep_until(accepted + options.rtt + half).await;
    let server = match connect(route.upstream, route.site.as_ref()).await {
        Ok(s) => s,
        // Refused or gone: the client sees its connection closed, half a round trip later.
        Err(_) => {
            from_client.abort();
            tokio::time::sleep(half).await;
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let (server_read, server_write) = server.into_split();
    let (down_tx, down_rx) = mpsc::unbounded_channel::<Chunk>();
    let from_server = tokio::spawn(read_side(server_read, down_tx, half));
    let to_server = write_side(server_write, up_rx, options.bandwidth);
    let to_client = write_side(client_write, down_rx, options.bandwidth);
    // Either direction failing ends the connection; a clean end waits for both.
    tokio::join!(to_server, to_client);
    from_client.abort();
    from_server.abort();
}

/// Reads one side and queues what it read, due `delay` later; ends with a `None` (EOF/error).
async fn read_side(mut read: OwnedReadHalf, queue: mpsc::UnboundedSender<Chunk>, delay: Duration) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = queue.send((Instant::now() + delay, None));
                return;
            }
            Ok(n) => {
                if queue
                    .send((Instant::now() + delay, Some(buf[..n].to_vec())))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Writes queued chunks when they are due (and the bandwidth allows); half-closes at the end.
async fn write_side(
    mut write: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<Chunk>,
    bandwidth: Option<u64>,
) {
    let mut link_free = Instant::now();
    while let Some((due, chunk)) = queue.recv().await {
        let Some(bytes) = chunk else {
            tokio::time::sleep_until(due).await;
            let _ = write.shutdown().await;
            return;
        };
        let mut at = due;
        if let Some(rate) = bandwidth.filter(|r| *r > 0) {
            let on_wire = Duration::from_secs_f64(bytes.len() as f64 / rate as f64);
            // The link carries one chunk after another: the last byte lands on_wire later.
            at = link_free.max(due) + on_wire;
            link_free = at;
        }
        tokio::time::sleep_until(at).await;
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// Parses a duration as the lab's options give it: `50ms`, `0.2s`, `1s`, or a number of ms.
pub fn parse_rtt(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1e-3)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write it as 50ms or 0.05s"))?;
    if !(0.0..=10.0).contains(&(value * scale)) {
        return Err(format!("`{text}`: a round trip must be between 0 and 10 s"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// Parses a bandwidth: `100mbit`, `10MB` (bytes), `1gbit`, `500kbit`; returns bytes per second.
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let units: [(&str, f64); 8] = [
        ("gbit", 1e9 / 8.0),
        ("mbit", 1e6 / 8.0),
        ("kbit", 1e3 / 8.0),
        ("bit", 1.0 / 8.0),
        ("gb", 1e9),
        ("mb", 1e6),
        ("kb", 1e3),
        ("b", 1.0),
    ];
    let bad = || format!("`{text}` is not a bandwidth: write it as 100mbit or 10MB (per second)");
    let (number, scale) = units
        .iter()
        .find_map(|(u, s)| t.strip_suffix(u).map(|n| (n, *s)))
        .ok_or_else(bad)?;
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    let bytes = value * scale;
    if !(1.0..1e12).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn echo_server() -> (SocketAddr, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        });
        (addr, t)
    }

    fn free_addr() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    #[test]
    fn each_exchange_costs_one_round_trip_and_the_handshake_one_more() {
        let (upstream, server) = echo_server();
        let public = free_addr();
        let rtt = Duration::from_millis(200);
        let _wan = Wan::start(
            WanOptions {
                rtt,
                bandwidth: None,
            },
            vec![(public, upstream)],
        )
        .unwrap();
        let start = std::time::Instant::now();
        let mut s = std::net::TcpStream::connect(public).unwrap();
        s.set_nodelay(true).unwrap();
        let mut times = Vec::new();
        for i in 0..3u8 {
            s.write_all(&[b'a' + i; 10]).unwrap();
            let mut got = [0u8; 10];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got, [b'a' + i; 10], "order and content kept");
            times.push(start.elapsed());
        }
        // The first answer: handshake (1) + the exchange (1); then one round trip each.
        assert!(times[0] >= rtt * 2, "{times:?}");
        assert!(times[1] - times[0] >= rtt, "{times:?}");
        assert!(times[2] - times[1] >= rtt, "{times:?}");
        // Never more than a round trip's worth late on an idle machine; generous for a loaded one.
        assert!(times[2] < rtt * 4 + Duration::from_millis(400), "{times:?}");
        drop(s);
        server.join().unwrap();
    }

    #[test]
    fn a_bandwidth_cap_spreads_a_large_write() {
        let (upstream, server) = echo_server();
        let public = free_addr();
        let _wan = Wan::start(
            WanOptions {
                rtt: Duration::from_millis(20),
                bandwidth: Some(1_000_000),
            },
            vec![(public, upstream)],
        )
        .unwrap();
        let mut s = std::net::TcpStream::connect(public).unwrap();
        let data = vec![7u8; 500_000];
        let start = std::time::Instant::now();
        let writer = {
            let mut w = s.try_clone().unwrap();
            std::thread::spawn(move || w.write_all(&data).unwrap())
        };
        let mut got = vec![0u8; 500_000];
        s.read_exact(&mut got).unwrap();
        writer.join().unwrap();
        // 500 kB at 1 MB/s is 0.5 s each way at least (the two directions overlap).
        assert!(
            start.elapsed() >= Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
        assert!(got.iter().all(|b| *b == 7));
        drop(s);
        server.join().unwrap();
    }

    #[test]
    fn a_refused_upstream_closes_the_client() {
        let public = free_addr();
        let upstream = free_addr(); // nothing listens there now
        let _wan = Wan::start(
            WanOptions {
                rtt: Duration::from_millis(20),
                bandwidth: None,
            },
            vec![(public, upstream)],
        )
        .unwrap();
        let mut s = std::net::TcpStream::connect(public).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap(), 0);
    }

    #[test]
    fn options_parse_as_written_and_refuse_nonsense() {
        assert_eq!(parse_rtt("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(parse_rtt("0.2s").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_rtt("30").unwrap(), Duration::from_millis(30));
        assert!(parse_rtt("fast").is_err());
        assert!(parse_rtt("11s").is_err());
        assert_eq!(parse_bandwidth("100mbit").unwrap(), 12_500_000);
        assert_eq!(parse_bandwidth("10MB").unwrap(), 10_000_000);
        assert!(parse_bandwidth("lots").is_err());
        assert_eq!(
            backstage(Ipv4Addr::new(127, 0, 10, 1)),
            Ipv4Addr::new(127, 128, 10, 1)
        );
        assert!(has_backstage(Ipv4Addr::new(127, 64, 3, 1)));
        assert!(!has_backstage(Ipv4Addr::new(127, 200, 3, 1)));
    }
}
