//! The system resolver path of the `dns` kind, for a step without `servers`: the name servers
//! of /etc/resolv.conf (read with hickory's parser; the via host's, read over SFTP, for a step
//! with `via`), asked in order by the raw client (`client.rs`), the next one only when one
//! does not answer. The first answer becomes the step's result fields; with none, the last
//! server's error is the step's.

use std::net::SocketAddr;

use super::client::{Ask, AskError, ask};
use crate::error::StepError;
use crate::steps::StepOutput;

/// Asks the system's servers in order; `out` holds the question's fields already.
pub(super) async fn ask_system(mut out: StepOutput, q: &Ask<'_>) -> Result<StepOutput, StepError> {
    let mut last = None;
    let servers = match q.via {
        Some(g) => via_servers(g).await?,
        None => system_servers()?,
    };
    for server in servers {
        match ask(server, q).await {
            Ok(reply) => {
                out.fields.extend(reply.fields());
                return Ok(out
                    .with("server", reply.server.to_string())
                    .with("consistent", true));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .map(AskError::into_step_error)
        .unwrap_or_else(|| StepError::Io("no name servers in /etc/resolv.conf".into())))
}

/// The name servers of /etc/resolv.conf, read by hickory's system configuration.
fn system_servers() -> Result<Vec<SocketAddr>, StepError> {
    let data = std::fs::read("/etc/resolv.conf").map_err(|e| {
        StepError::Io(format!(
            "no `servers` given and /etc/resolv.conf is unreadable: {e}"
        ))
    })?;
    servers_from_resolv_conf(&data)
        .map_err(|e| StepError::Io(format!("no `servers` given and /etc/resolv.conf: {e}")))
}

/// The name servers of the via host's /etc/resolv.conf.
async fn via_servers(g: &crate::conn::via::Gateway) -> Result<Vec<SocketAddr>, StepError> {
    let data = g
        .resolv_conf()
        .await
        .map_err(|e| StepError::Io(format!("no `servers` given, and {e}")))?;
    let servers = servers_from_resolv_conf(&data).map_err(|e| {
        StepError::Io(format!(
            "no `servers` given, and {}'s /etc/resolv.conf: {e}",
            g.name
        ))
    })?;
    if servers.is_empty() {
        return Err(StepError::Io(format!(
            "no `servers` given, and {}'s /etc/resolv.conf names no name server",
            g.name
        )));
    }
    Ok(servers)
}

/// The name servers a resolv.conf lists, each with its UDP port (53).
pub fn servers_from_resolv_conf(data: &[u8]) -> Result<Vec<SocketAddr>, String> {
    use hickory_resolver::config::ProtocolConfig;
    let (config, _) =
        hickory_resolver::system_conf::parse_resolv_conf(data).map_err(|e| e.to_string())?;
    Ok(config
        .name_servers()
        .iter()
        .map(|ns| {
            let port = ns
                .connections
                .iter()
                .find(|c| matches!(c.protocol, ProtocolConfig::Udp))
                .map(|c| c.port)
                .unwrap_or(53);
            SocketAddr::new(ns.ip, port)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_servers() {
        let servers =
            servers_from_resolv_conf(b"search lab.test\nnameserver 127.0.0.53\nnameserver ::1\n")
                .unwrap();
        assert_eq!(
            servers,
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
