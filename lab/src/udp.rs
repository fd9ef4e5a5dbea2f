//! The lab's UDP responders, for `udp` steps: an echo (every datagram sent back) and a
//! minimal NTP server that answers mode-3 queries at a stratum it is given (16, "unsynchronised",
//! is what chrony will not serve). Each runs on its own thread and runtime
//! ([`crate::background`]) on 127.0.0.1 and a free port, until dropped. [`closed_udp_port`]
//! gives a port nothing listens on, where the kernel answers with ICMP port-unreachable.

use std::net::{Ipv4Addr, SocketAddr};

use crate::LabError;
use crate::background::Background;

/// What a responder does with each datagram.
#[derive(Debug, Clone, Copy)]
pub enum UdpKind {
    /// Sends every datagram back as it came.
    Echo,
    /// Answers a 48-byte NTP query with a server reply (mode 4) at this stratum.
    Ntp { stratum: u8 },
}

/// A running UDP responder; dropping it stops it.
pub struct UdpServer {
    addr: SocketAddr,
    _background: Background,
}

impl UdpServer {
    /// Starts a responder of `kind` on 127.0.0.1 and a free port.
    pub fn start_local(kind: UdpKind) -> Result<UdpServer, LabError> {
        let (background, addr) = Background::start("udp", move |stop| async move {
            let socket = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .map_err(|e| LabError::io("binding a UDP port", e))?;
            let addr = socket
                .local_addr()
                .map_err(|e| LabError::io("reading a bound address", e))?;
            let serve = async move {
                let mut buf = vec![0u8; 65_536];
                loop {
                    let got = tokio::select! {
                        () = stop.cancelled() => break,
                        r = socket.recv_from(&mut buf) => r,
                    };
                    let Ok((n, peer)) = got else { continue };
                    let reply = match kind {
                        UdpKind::Echo => buf[..n].to_vec(),
                        UdpKind::Ntp { stratum } => ntp_reply(&buf[..n], stratum),
                    };
                    if !reply.is_empty() {
                        let _ = socket.send_to(&reply, peer).await;
                    }
                }
            };
            Ok((addr, serve))
        })?;
        Ok(UdpServer {
            addr,
            _background: background,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// A server reply to an NTP client query (nothing for anything else): leap 0 (3 at stratum
/// 16), version of the query, mode 4, the stratum, the query's transmit time as origin.
fn ntp_reply(query: &[u8], stratum: u8) -> Vec<u8> {
    if query.len() < 48 || query[0] & 0x07 != 3 {
        return Vec::new();
    }
    let mut r = vec![0u8; 48];
    let leap = if stratum >= 16 { 3 } else { 0 };
    let version = (query[0] >> 3) & 0x07;
    r[0] = (leap << 6) | (version << 3) | 4;
    r[1] = stratum;
    r[2] = query[2];
    r[3] = 0xe9; // precision: about a microsecond
    r[12..16].copy_from_slice(b"LAB\0");
    r[24..32].copy_from_slice(&query[40..48]);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 2_208_988_800;
    let ts = (secs as u32).to_be_bytes();
    for at in [16, 32, 40] {
        r[at..at + 4].copy_from_slice(&ts);
    }
    r
}

/// A UDP port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_udp_port() -> Result<u16, LabError> {
    crate::daemons::free_udp(Ipv4Addr::LOCALHOST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_replies_at_the_stratum_it_is_given() {
        let s = UdpServer::start_local(UdpKind::Ntp { stratum: 16 }).unwrap();
        let reply = crate::daemons::ntp_query(s.addr()).unwrap();
        assert_eq!(reply.len(), 48);
        assert_eq!(reply[0], 0xe4);
        assert_eq!(reply[1], 16);
    }
}
