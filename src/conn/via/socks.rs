//! The SOCKS5 (RFC 1928) both ends of a `via` gateway speak on loopback: the server side
//! (`accept`, `reply`) that the gateway's listener runs for each connection, and the client side
//! (`connect`) that the `tcp` and `dns` probes use; reqwest speaks the client side itself for
//! `http` (`socks5h://`, so names go to the far side unresolved). Only CONNECT, and only with a
//! user name and password (RFC 1929): the password is the gateway's secret, so no other local
//! user can borrow the SSH session through the listener; the user name identifies the request,
//! so the caller can fetch why its channel was refused (`Gateway::failure`).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long either side waits for the other during the handshake (all on loopback).
const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);

/// Reply codes (RFC 1928 §6).
pub(super) const SUCCEEDED: u8 = 0x00;
pub(super) const GENERAL_FAILURE: u8 = 0x01;
pub(super) const NOT_ALLOWED: u8 = 0x02;
pub(super) const HOST_UNREACHABLE: u8 = 0x04;
pub(super) const REFUSED: u8 = 0x05;
const COMMAND_NOT_SUPPORTED: u8 = 0x07;

/// A CONNECT request that passed the password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    pub user: String,
    pub host: String,
    pub port: u16,
}

/// Reads the greeting, the password and the request; `None` (the connection answered and
/// left to close) when the client does not offer a password, gives the wrong one, or asks
/// for anything but CONNECT.
pub(super) async fn accept(s: &mut TcpStream, secret: &str) -> std::io::Result<Option<Request>> {
    match tokio::time::timeout(HANDSHAKE_WAIT, handshake(s, secret)).await {
        Ok(r) => r,
        Err(_) => Ok(None),
    }
}

async fn handshake(s: &mut TcpStream, secret: &str) -> std::io::Result<Option<Request>> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut methods).await?;
    if head[0] != 5 || !methods.contains(&2) {
        s.write_all(&[5, 0xff]).await?;
        return Ok(None);
    }
    s.write_all(&[5, 2]).await?;
    let user = read_short(s, true).await?;
    let password = read_short(s, false).await?;
    if !same(password.as_bytes(), secret.as_bytes()) {
        s.write_all(&[1, 1]).await?;
        return Ok(None);
    }
    s.write_all(&[1, 0]).await?;
    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    if req[0] != 5 || req[1] != 1 {
        reply(s, COMMAND_NOT_SUPPORTED).await?;
        return Ok(None);
    }
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            s.read_exact(&mut a).await?;
            Ipv4Addr::from(a).to_string()
        }
        4 => {
            let mut a = [0u8; 16];
            s.read_exact(&mut a).await?;
            Ipv6Addr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            s.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => {
            reply(s, 0x08).await?;
            return Ok(None);
        }
    };
    let mut port = [0u8; 2];
    s.read_exact(&mut port).await?;
    Ok(Some(Request {
        user,
        host,
        port: u16::from_be_bytes(port),
    }))
}

/// A version byte (1 for the user/password exchange, checked by the caller's reply) then a
/// length-prefixed string: the user name when `version` is true, else the password.
async fn read_short(s: &mut TcpStream, version: bool) -> std::io::Result<String> {
    if version {
        let mut v = [0u8; 1];
        s.read_exact(&mut v).await?;
    }
    let mut len = [0u8; 1];
    s.read_exact(&mut len).await?;
    let mut text = vec![0u8; usize::from(len[0])];
    s.read_exact(&mut text).await?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers the request: `SUCCEEDED`, or why not.
pub(super) async fn reply(s: &mut TcpStream, code: u8) -> std::io::Result<()> {
    s.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await
}

/// Why the client side did not get a connection.
#[derive(Debug)]
pub(super) enum ConnectError {
    /// The gateway answered with this reply code.
    Refused(u8),
    Io(String),
}

/// The client side: connects to the gateway at `proxy` and asks it for `host:port`.
pub(super) async fn connect(
    proxy: SocketAddr,
    user: &str,
    secret: &str,
    host: &str,
    port: u16,
) -> Result<TcpStream, ConnectError> {
    let io = |e: std::io::Error| ConnectError::Io(e.to_string());
    let mut s = TcpStream::connect(proxy).await.map_err(io)?;
    let _ = s.set_nodelay(true);
    let name = host.trim_start_matches('[').trim_end_matches(']');
    if user.len() > 255 || secret.len() > 255 || name.len() > 255 {
        return Err(ConnectError::Io(format!("`{host}` is too long a name")));
    }
    let mut hello = vec![5, 1, 2, 1, user.len() as u8];
    hello.extend_from_slice(user.as_bytes());
    hello.push(secret.len() as u8);
    hello.extend_from_slice(secret.as_bytes());
    hello.extend_from_slice(&[5, 1, 0]);
    match name.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => {
            hello.push(1);
            hello.extend_from_slice(&a.octets());
        }
        Ok(std::net::IpAddr::V6(a)) => {
            hello.push(4);
            hello.extend_from_slice(&a.octets());
        }
        Err(_) => {
            hello.push(3);
            hello.push(name.len() as u8);
            hello.extend_from_slice(name.as_bytes());
        }
    }
    hello.extend_from_slice(&port.to_be_bytes());
    // Everything at once: the gateway reads it in order (one loopback write, no round trips).
    s.write_all(&hello).await.map_err(io)?;
    let mut answers = [0u8; 2 + 2 + 10];
    let read = tokio::time::timeout(
        HANDSHAKE_WAIT + super::OPEN_LIMIT,
        s.read_exact(&mut answers),
    );
    match read.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(io(e)),
        Err(_) => return Err(ConnectError::Io("the gateway did not answer".into())),
    }
    if answers[1] != 2 || answers[3] != 0 {
        return Err(ConnectError::Io(
            "the gateway refused its own password".into(),
        ));
    }
    match answers[5] {
        SUCCEEDED => Ok(s),
        code => Err(ConnectError::Refused(code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }

    #[tokio::test]
    async fn client_and_server_agree_and_wrong_passwords_are_refused() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = l.accept().await.unwrap();
                let r = accept(&mut s, "s3cret").await.unwrap();
                if r.is_some() {
                    reply(&mut s, REFUSED).await.unwrap();
                }
                seen.push(r);
            }
            seen
        });
        let e = connect(addr, "r1", "s3cret", "db.internal", 5432).await;
        assert!(matches!(e, Err(ConnectError::Refused(REFUSED))), "{e:?}");
        let e = connect(addr, "r2", "wrong", "db.internal", 5432).await;
        assert!(matches!(e, Err(ConnectError::Io(_))), "{e:?}");
        let seen = server.await.unwrap();
        assert_eq!(
            seen[0],
            Some(Request {
                user: "r1".into(),
                host: "db.internal".into(),
                port: 5432
            })
        );
        assert_eq!(seen[1], None);
    }
}
