//! A server's own thread and tokio runtime, so the lab's HTTP and TCP servers work the same from
//! plain `#[test]`s, from `#[tokio::test]`s and from the `sortie-lab` binary.
//!
//! The caller's setup future binds its sockets on that runtime and hands back what it bound; the
//! server then runs until the [`Background`] is dropped, which cancels it and joins the thread.

use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::LabError;

const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server thread; dropping it stops the server.
pub struct Background {
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts a thread with a current-thread runtime and runs `setup` on it. `setup` returns what
    /// it bound (sent back to the caller) and the future that serves until its token is cancelled.
    pub fn start<T, S, SFut, Serve>(name: &str, setup: S) -> Result<(Background, T), LabError>
    where
        T: Send + 'static,
        S: FnOnce(CancellationToken) -> SFut + Send + 'static,
        SFut: Future<Output = Result<(T, Serve), LabError>>,
        Serve: Future<Output = ()>,
    {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let (tx, rx) = mpsc::channel::<Result<T, LabError>>();
        let thread = std::thread::Builder::new()
            .name(format!("lab-{name}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(LabError::io("building a tokio runtime", e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match setup(token.clone()).await {
                        Ok((bound, serve)) => {
                            if tx.send(Ok(bound)).is_ok() {
                                tokio::select! {
                                    () = serve => {}
                                    () = token.cancelled() => {}
                                }
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
                // Connection tasks still running are dropped here, within a bound.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| LabError::io(format!("starting the {name} thread"), e))?;
        let background = Background {
            stop,
            thread: Some(thread),
        };
        match rx.recv_timeout(SETUP_TIMEOUT) {
            Ok(Ok(bound)) => Ok((background, bound)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LabError::Timeout {
                what: format!("starting the {name} server"),
                after: SETUP_TIMEOUT,
            }),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds one port on every address in `ips` (listen backlog `backlog`). With `port` 0 the kernel
/// picks one on the first address and the others must have it free; a few tries find one.
pub async fn bind_all(
    ips: &[std::net::Ipv4Addr],
    port: u16,
    backlog: u32,
) -> Result<(u16, Vec<tokio::net::TcpListener>), LabError> {
    let mut last_error = None;
    for _ in 0..20 {
        let mut listeners = Vec::with_capacity(ips.len());
        let mut chosen = port;
        let mut failed = None;
        for ip in ips {
            match bind_one(std::net::SocketAddr::from((*ip, chosen)), backlog) {
                Ok(listener) => {
                    if chosen == 0 {
                        chosen = listener
                            .local_addr()
                            .map_err(|e| LabError::io("reading a bound address", e))?
                            .port();
                    }
                    listeners.push(listener);
                }
                Err(e) => {
                    failed = Some(LabError::PortUnavailable {
                        address: ip.to_string(),
                        port: chosen,
                        detail: e.to_string(),
                    });
                    break;
                }
            }
        }
        match failed {
            None => return Ok((chosen, listeners)),
            Some(e) if port != 0 => return Err(e),
            Some(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or(LabError::Server("no free port".into())))
}

fn bind_one(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}
