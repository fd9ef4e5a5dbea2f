//! The `dns` kind's run (`run`, called by `Kind::run` in `mod.rs` with the step's arguments
//! rendered for one host): the question (a name and type, or the PTR name of a `reverse`
//! address), then the system resolver (`system.rs`), or every listed server at once by the raw
//! client (`client.rs`) with their answers compared (`consistent`, `servers`), or a zone
//! transfer (`transfer.rs`). The output is the step's result fields.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::{Name, RecordType as HickoryType};
use serde_json::{Map, Value as Json, json};

use super::client::{Ask, AskError, Reply, ask};
use super::records::fqdn_name;
use super::system::ask_system;
use super::transfer::transfer_step;
use super::{Dns, Protocol, RecordType, parse_server};
use crate::error::StepError;
use crate::steps::via::Route;
use crate::steps::{StepOutput, TaskCx};

/// How long one query waits for its answer when the step sets no `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the step: a zone transfer, or one question to the system resolver or to the listed
/// servers.
pub(super) async fn run(spec: &Dns, cx: &TaskCx<'_>) -> Result<StepOutput, StepError> {
    // Within the step's own timeout, so that with several servers the one that does not answer
    // is named (the runner's timeout would cut the whole step off first).
    let wait = cx
        .timeout
        .map(|t| t.mul_f64(0.9))
        .unwrap_or(DEFAULT_TIMEOUT);
    let recursion = spec.recursion.unwrap_or(true);
    let explicit = listed_servers(spec)?;
    let route = Route::of(spec.via.as_deref(), cx).await?;
    let via = route.as_ref().and_then(|r| r.gateway.as_deref());
    let said = |r: Result<StepOutput, StepError>| match (&route, r) {
        (Some(route), Ok(out)) => Ok(out.with("via", route.name.clone())),
        (_, r) => r,
    };

    if let Some(zone) = &spec.axfr {
        if explicit.is_empty() {
            return Err(StepError::Protocol("`axfr` needs `servers`".into()));
        }
        return said(transfer_step(zone, &explicit, wait, recursion, via).await);
    }

    let (qname, rtype) = question(spec)?;
    let out = StepOutput::default()
        .with("name", qname.to_ascii().to_ascii_lowercase())
        .with("type", rtype.to_string());
    let q = Ask {
        name: &qname,
        rtype,
        protocol: spec.protocol.unwrap_or(Protocol::Udp),
        wait,
        recursion,
        via,
    };
    if explicit.is_empty() {
        return said(ask_system(out, &q).await);
    }
    said(ask_each(out, &explicit, &q).await)
}

/// The step's `servers`, as addresses.
fn listed_servers(spec: &Dns) -> Result<Vec<SocketAddr>, StepError> {
    spec.servers
        .iter()
        .map(|s| {
            parse_server(s).ok_or_else(|| {
                StepError::Protocol(format!(
                    "`{s}` is not a server address (expected `ip` or `ip:port`)"
                ))
            })
        })
        .collect()
}

/// Asks every listed server at once: the first answer's fields, whether all agree, and each
/// one's answer (or error) under `servers`. A server that does not answer fails the step (its
/// answers kept for the report); when none answers, the error is the step's.
async fn ask_each(
    mut out: StepOutput,
    servers: &[SocketAddr],
    q: &Ask<'_>,
) -> Result<StepOutput, StepError> {
    let results = futures_util::future::join_all(servers.iter().map(|s| ask(*s, q))).await;

    let mut per_server = Map::new();
    let mut failures = Vec::new();
    let mut keys = BTreeSet::new();
    let mut first: Option<&Reply> = None;
    for (server, result) in servers.iter().zip(&results) {
        match result {
            Ok(reply) => {
                per_server.insert(server.to_string(), Json::Object(reply.fields()));
                keys.insert(reply.agreement_key(q.rtype).to_string());
                first.get_or_insert(reply);
            }
            Err(e) => {
                per_server.insert(server.to_string(), json!({ "error": e.message() }));
                failures.push(e.message().to_string());
            }
        }
    }
    let Some(first) = first else {
        // Nobody answered: the first server's error is the step's.
        let e = results
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_else(|| AskError::Io("no server answered".into()));
        return Err(if servers.len() == 1 {
            e.into_step_error()
        } else {
            match e {
                AskError::Timeout(_) => StepError::Timeout(failures.join("; ")),
                AskError::Io(_) => StepError::Io(failures.join("; ")),
            }
        });
    };
    out.fields.extend(first.fields());
    out = out
        .with("server", first.server.to_string())
        .with("consistent", failures.is_empty() && keys.len() == 1)
        .with("servers", Json::Object(per_server));
    if !failures.is_empty() {
        // Some servers answered: keep every answer for the report, and fail the step.
        out.failure = Some(failures.join("; "));
    }
    Ok(out)
}

/// The name and type to ask for.
fn question(spec: &Dns) -> Result<(Name, HickoryType), StepError> {
    if let Some(addr) = &spec.reverse {
        let ip: IpAddr = addr.trim().parse().map_err(|_| {
            StepError::Protocol(format!("`reverse`: `{addr}` is not an IP address"))
        })?;
        let name = reverse_name(ip);
        let name =
            Name::from_ascii(&name).map_err(|e| StepError::Protocol(format!("`{name}`: {e}")))?;
        return Ok((name, HickoryType::PTR));
    }
    let text = spec.name.as_deref().unwrap_or_default().trim();
    if text.is_empty() {
        return Err(StepError::Protocol(
            "`dns` needs `name`, `reverse` or `axfr`".into(),
        ));
    }
    Ok((
        fqdn_name(text)?,
        spec.rtype.unwrap_or(RecordType::A).hickory(),
    ))
}

/// The PTR name of an address: `192.0.2.1` → `1.2.0.192.in-addr.arpa.`, IPv6 by nibbles under
/// `ip6.arpa.`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.1".parse().unwrap()),
            "1.2.0.192.in-addr.arpa."
        );
        assert_eq!(
            reverse_name("2001:db8::53".parse().unwrap()),
            "3.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
    }
}
