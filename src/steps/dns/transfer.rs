//! Zone transfers (`axfr`), for `query.rs`: AXFR over TCP from the first listed server by
//! the raw client's connection (`client.rs`), every record between the opening and closing
//! SOA written as `owner TYPE data` (`records.rs`); with more servers, each one's SOA serial,
//! to show the zone is the same version everywhere. The output is the step's result fields
//! (`records`, `count`, `serial`, `consistent`, `servers`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::NetError;
use hickory_net::client::ClientHandle;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType as HickoryType};
use serde_json::{Map, Value as Json, json};

use super::Protocol;
use super::client::{Ask, AskError, ask, net_error, tcp_conn};
use super::records::{fqdn_name, name_text, rcode_text, record_text};
use crate::conn::via::Gateway;
use crate::error::StepError;
use crate::steps::StepOutput;

/// The most records a zone transfer keeps (a bound on memory; past it the step fails).
const MAX_AXFR_RECORDS: usize = 1_000_000;

/// What a transfer gave.
struct Transfer {
    rcode: String,
    records: Vec<String>,
    serial: Option<u32>,
    ttl: Option<u32>,
}

/// The step of a zone transfer of `zone` from `servers[0]` (the others asked for the serial).
pub(super) async fn transfer_step(
    zone: &str,
    servers: &[SocketAddr],
    wait: Duration,
    recursion: bool,
    via: Option<&Gateway>,
) -> Result<StepOutput, StepError> {
    let origin = fqdn_name(zone.trim())?;
    let primary = servers[0];
    let t = transfer(primary, &origin, wait, via)
        .await
        .map_err(AskError::into_step_error)?;
    let mut out = StepOutput::default()
        .with("name", name_text(&origin))
        .with("type", "AXFR")
        .with("server", primary.to_string())
        .with("protocol", "tcp")
        .with("rcode", t.rcode.clone())
        .with("count", t.records.len())
        .with("serial", json!(t.serial))
        .with("ttl", json!(t.ttl))
        .with("records", json!(t.records));
    if t.rcode != "NOERROR" {
        out.fields.insert(
            "error".into(),
            json!(format!(
                "{primary} refused the transfer of {} ({})",
                name_text(&origin),
                t.rcode
            )),
        );
    }
    if servers.len() > 1 {
        let q = Ask {
            name: &origin,
            rtype: HickoryType::SOA,
            protocol: Protocol::Udp,
            wait,
            recursion,
            via,
        };
        let (consistent, per_server) = serials(&t, primary, &servers[1..], &q).await;
        out = out
            .with("consistent", consistent)
            .with("servers", Json::Object(per_server));
    } else {
        out = out.with("consistent", true);
    }
    Ok(out)
}

/// Each server's SOA serial beside the transfer's (`q` asks for the SOA): whether every
/// server answered with the same serial, and what each said.
async fn serials(
    t: &Transfer,
    primary: SocketAddr,
    others: &[SocketAddr],
    q: &Ask<'_>,
) -> (bool, Map<String, Json>) {
    let mut per_server = Map::new();
    per_server.insert(
        primary.to_string(),
        json!({ "rcode": t.rcode, "serial": t.serial }),
    );
    let asks = others.iter().map(|s| ask(*s, q));
    let mut serials = BTreeSet::new();
    serials.insert(json!(t.serial).to_string());
    let mut all_answered = true;
    for (server, result) in others
        .iter()
        .zip(futures_util::future::join_all(asks).await)
    {
        match result {
            Ok(r) => {
                serials.insert(json!(r.serial).to_string());
                per_server.insert(
                    server.to_string(),
                    json!({ "rcode": r.rcode, "serial": r.serial }),
                );
            }
            Err(e) => {
                all_answered = false;
                per_server.insert(server.to_string(), json!({ "error": e.message() }));
            }
        }
    }
    (all_answered && serials.len() == 1, per_server)
}

/// AXFR over TCP: every record between the opening and the closing SOA (the SOA listed once).
async fn transfer(
    server: SocketAddr,
    origin: &Name,
    wait: Duration,
    via: Option<&Gateway>,
) -> Result<Transfer, AskError> {
    let mut conn = tcp_conn(server, wait, via).await?;
    let mut stream = conn.exchange.zone_transfer(origin.clone(), None);
    let mut records = Vec::new();
    let mut serial = None;
    let mut ttl: Option<u32> = None;
    let mut soas = 0;
    loop {
        // `wait` bounds each message, so a large zone may take longer than one query would.
        let response = match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => return Err(net_error(server, "tcp", wait, NetError::Timeout)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(net_error(server, "tcp", wait, e)),
            Ok(Some(Ok(r))) => r,
        };
        if response.metadata.response_code != ResponseCode::NoError {
            return Ok(Transfer {
                rcode: rcode_text(response.metadata.response_code),
                records: Vec::new(),
                serial: None,
                ttl: None,
            });
        }
        for r in &response.answers {
            if let RData::SOA(soa) = &r.data {
                soas += 1;
                if soas == 2 {
                    break;
                }
                serial.get_or_insert(soa.serial);
            }
            ttl = Some(ttl.map_or(r.ttl, |t| t.min(r.ttl)));
            records.push(record_text(r));
        }
        if soas >= 2 {
            break;
        }
        if records.len() > MAX_AXFR_RECORDS {
            return Err(AskError::Io(format!(
                "{server}: the zone has more than {MAX_AXFR_RECORDS} records; sortie keeps no more"
            )));
        }
    }
    if records.is_empty() {
        return Err(AskError::Io(format!(
            "{server}: the transfer of {} ended with no records",
            name_text(origin)
        )));
    }
    Ok(Transfer {
        rcode: "NOERROR".into(),
        records,
        serial,
        ttl,
    })
}
