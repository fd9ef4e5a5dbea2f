//! The lab's plain TCP listeners, for `tcp` steps and for connect-timeout and concurrency tests.
//!
//! A [`TcpServer`] listens on one port on every address it is given, on its own thread and
//! runtime ([`crate::background`]), and behaves as its [`TcpKind`] says: hold the connection open,
//! echo, send a banner, send a banner late, never complete the connect (a full accept queue), or
//! count how many connections are open at once. [`closed_port`] gives a port that refuses.
//! Counters ([`TcpServer::accepted`], [`TcpServer::max_open`]) are read by tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::LabError;
use crate::background::{Background, bind_all};

/// No connection is held longer than this, whatever the client does.
const MAX_HOLD: Duration = Duration::from_secs(600);

/// What a listener does with each connection.
#[derive(Debug, Clone)]
pub enum TcpKind {
    /// Accepts and holds the connection, discarding what arrives, until the client closes.
    Open,
    /// Sends back every byte it receives.
    Echo,
    /// Sends this text on accept (e.g. `SSH-2.0-lab\r\n`), then holds like `Open`.
    Banner(String),
    /// Sends this text on accept, then echoes like `Echo` (the site's `db`).
    Greet(String),
    /// Accepts, waits `delay`, sends `banner`, then holds like `Open`.
    Slow { delay: Duration, banner: String },
    /// Never completes a connect: listens with a backlog of 0 and fills its accept queue
    /// itself, so clients' SYNs are dropped and their connects time out.
    Blackhole,
    /// Holds each connection `hold` (less if the client closes), sends `ok\r\n` and closes;
    /// records the most connections open at once.
    Counter { hold: Duration },
}

impl TcpKind {
    fn name(&self) -> &'static str {
        match self {
            TcpKind::Open => "tcp-open",
            TcpKind::Echo => "tcp-echo",
            TcpKind::Banner(_) => "tcp-banner",
            TcpKind::Greet(_) => "tcp-greet",
            TcpKind::Slow { .. } => "tcp-slow",
            TcpKind::Blackhole => "tcp-blackhole",
            TcpKind::Counter { .. } => "tcp-counter",
        }
    }
}

#[derive(Default)]
struct Stats {
    accepted: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
}

/// A running TCP listener; dropping it closes it and every connection it holds.
pub struct TcpServer {
    kind: TcpKind,
    port: u16,
    addrs: Vec<SocketAddr>,
    stats: Arc<Stats>,
    _background: Background,
}

impl TcpServer {
    /// Starts a listener of `kind` on 127.0.0.1 and a free port.
    pub fn start_local(kind: TcpKind) -> Result<TcpServer, LabError> {
        TcpServer::start(kind, &[Ipv4Addr::LOCALHOST], 0)
    }

    /// Starts a listener of `kind` on `port` (0: a free one) on every address in `ips`.
    pub fn start(kind: TcpKind, ips: &[Ipv4Addr], port: u16) -> Result<TcpServer, LabError> {
        let stats = Arc::new(Stats::default());
        let shared = stats.clone();
        let ips = ips.to_vec();
        let behaviour = kind.clone();
        let (background, (port, addrs)) = Background::start(kind.name(), move |stop| async move {
            let backlog = if matches!(behaviour, TcpKind::Blackhole) {
                0
            } else {
                1024
            };
            let (port, listeners) = bind_all(&ips, port, backlog).await?;
            let addrs: Vec<SocketAddr> =
                ips.iter().map(|ip| SocketAddr::from((*ip, port))).collect();
            let fillers = if matches!(behaviour, TcpKind::Blackhole) {
                fill_accept_queues(&addrs).await
            } else {
                Vec::new()
            };
            let serve = async move {
                let _fillers = fillers;
                let mut tasks = tokio::task::JoinSet::new();
                for listener in listeners {
                    if matches!(behaviour, TcpKind::Blackhole) {
                        // Never accept: keep the listener (and its full queue) alive.
                        let stop = stop.clone();
                        tasks.spawn(async move {
                            stop.cancelled().await;
                            drop(listener);
                        });
                    } else {
                        tasks.spawn(accept_loop(
                            listener,
                            behaviour.clone(),
                            shared.clone(),
                            stop.clone(),
                        ));
                    }
                }
                while tasks.join_next().await.is_some() {}
            };
            Ok(((port, addrs), serve))
        })?;
        Ok(TcpServer {
            kind,
            port,
            addrs,
            stats,
            _background: background,
        })
    }

    pub fn kind(&self) -> &TcpKind {
        &self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The first address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addrs
            .first()
            .copied()
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)))
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn open_now(&self) -> usize {
        self.stats.open.load(Ordering::SeqCst)
    }

    /// The most connections open at the same time since the start or the last reset.
    pub fn max_open(&self) -> usize {
        self.stats.max_open.load(Ordering::SeqCst)
    }

    pub fn reset_max_open(&self) {
        self.stats.max_open.store(0, Ordering::SeqCst);
    }
}

/// A port on `ip` that nothing listens on: bound, then released, so connecting is refused.
pub fn closed_port(ip: Ipv4Addr) -> Result<SocketAddr, LabError> {
    let listener = std::net::TcpListener::bind((ip, 0))
        .map_err(|e| LabError::io("binding a port to close", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| LabError::io("reading a bound address", e))?;
    drop(listener);
    Ok(addr)
}

/// Connects to each blackhole listener until a connect no longer completes (its queue is full),
/// at most 4 times each, all addresses at once; returns the connections that fill the queues.
async fn fill_accept_queues(addrs: &[SocketAddr]) -> Vec<TcpStream> {
    let mut tasks = tokio::task::JoinSet::new();
    for addr in addrs.iter().copied() {
        tasks.spawn(async move {
            let mut held = Vec::new();
            for _ in 0..4 {
                match tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(addr))
                    .await
                {
                    Ok(Ok(stream)) => held.push(stream),
                    _ => break,
                }
            }
            held
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.unwrap_or_default());
    }
    all
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    kind: TcpKind,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    // Runs until the server is stopped; each connection is its own task.
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        let now = stats.open.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_open.fetch_max(now, Ordering::SeqCst);
        let kind = kind.clone();
        let stats = stats.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = serve(stream, &kind) => {}
                () = stop.cancelled() => {}
                () = tokio::time::sleep(MAX_HOLD) => {}
            }
            stats.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn serve(mut stream: TcpStream, kind: &TcpKind) {
    match kind {
        TcpKind::Open | TcpKind::Blackhole => drain(&mut stream).await,
        TcpKind::Echo => echo(&mut stream).await,
        TcpKind::Greet(banner) => {
            if stream.write_all(banner.as_bytes()).await.is_ok() {
                echo(&mut stream).await;
            }
        }
        TcpKind::Banner(banner) => {
            if stream.write_all(banner.as_bytes()).await.is_ok() {
                drain(&mut stream).await;
            }
        }
        TcpKind::Slow { delay, banner } => {
            let client_left = tokio::select! {
                () = drain(&mut stream) => true,
                () = tokio::time::sleep(*delay) => false,
            };
            if !client_left && stream.write_all(banner.as_bytes()).await.is_ok() {
                drain(&mut stream).await;
            }
        }
        TcpKind::Counter { hold } => {
            let client_left = tokio::select! {
                () = drain(&mut stream) => true,
                () = tokio::time::sleep(*hold) => false,
            };
            if !client_left {
                let _ = stream.write_all(b"ok\r\n").await;
                let _ = stream.shutdown().await;
            }
        }
    }
}

/// Sends back what arrives until the client closes (a read of 0) or the connection breaks.
async fn echo(stream: &mut TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

/// Reads and discards until the client closes or the connection breaks.
async fn drain(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    fn connect(addr: SocketAddr) -> std::net::TcpStream {
        let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    #[test]
    fn echo_echoes_and_banner_greets() {
        let echo = TcpServer::start_local(TcpKind::Echo).unwrap();
        let mut s = connect(echo.addr());
        s.write_all(b"hello lab\n").unwrap();
        let mut buf = [0u8; 10];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello lab\n");
        assert_eq!(echo.accepted(), 1);

        let banner = TcpServer::start_local(TcpKind::Banner("SSH-2.0-lab\r\n".into())).unwrap();
        let mut s = connect(banner.addr());
        let mut buf = [0u8; 13];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"SSH-2.0-lab\r\n");
    }

    #[test]
    fn open_holds_and_slow_answers_late() {
        let open = TcpServer::start_local(TcpKind::Open).unwrap();
        let mut s = connect(open.addr());
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 1];
        // Nothing arrives and the connection stays up.
        assert!(s.read(&mut buf).is_err());

        let slow = TcpServer::start_local(TcpKind::Slow {
            delay: Duration::from_millis(300),
            banner: "late\n".into(),
        })
        .unwrap();
        let started = Instant::now();
        let mut s = connect(slow.addr());
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"late\n");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn blackhole_times_out_and_closed_port_refuses() {
        let hole = TcpServer::start_local(TcpKind::Blackhole).unwrap();
        let started = Instant::now();
        let err = std::net::TcpStream::connect_timeout(&hole.addr(), Duration::from_millis(300))
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() >= Duration::from_millis(250));

        let closed = closed_port(Ipv4Addr::LOCALHOST).unwrap();
        let err =
            std::net::TcpStream::connect_timeout(&closed, Duration::from_secs(2)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn counter_counts_connections_open_at_once() {
        let counter = TcpServer::start_local(TcpKind::Counter {
            hold: Duration::from_millis(300),
        })
        .unwrap();
        let addr = counter.addr();
        let threads: Vec<_> = (0..5)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut s = connect(addr);
                    let mut out = String::new();
                    s.read_to_string(&mut out).unwrap();
                    out
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), "ok\r\n");
        }
        assert_eq!(counter.max_open(), 5);
        assert_eq!(counter.accepted(), 5);
        // Sequential connections never overlap.
        counter.reset_max_open();
        for _ in 0..3 {
            let mut s = connect(addr);
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            let deadline = Instant::now() + Duration::from_secs(2);
            while counter.open_now() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert_eq!(counter.max_open(), 1);
    }

    #[test]
    fn one_port_on_many_addresses() {
        let ips = [
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::new(127, 0, 9, 7),
            Ipv4Addr::new(127, 0, 9, 8),
        ];
        let echo = TcpServer::start(TcpKind::Echo, &ips, 0).unwrap();
        assert_eq!(echo.addrs().len(), 3);
        for addr in echo.addrs() {
            assert_eq!(addr.port(), echo.port());
            let mut s = connect(*addr);
            s.write_all(b"x").unwrap();
            let mut buf = [0u8; 1];
            s.read_exact(&mut buf).unwrap();
        }
    }
}
