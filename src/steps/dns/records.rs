//! Names and records as text, the one way the `dns` kind writes them: rcodes as `dig` prints
//! them, names lower case and fully qualified, each record type's data normalised (MX
//! `10 mail.example.com.`, SOA `mname rname serial refresh retry expire minimum`, …), zone
//! transfer records as `owner TYPE data`; and a name from the playbook read as an absolute
//! name. Used by the raw client (`client.rs`), the zone transfer (`transfer.rs`) and the
//! question (`query.rs`); exported for tests as `steps::dns::{rcode_text, rdata_text}`.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record};

use crate::error::StepError;

/// `www.example.com` → the absolute name `www.example.com.` (sortie never applies search
/// domains: a check must mean one name).
pub(super) fn fqdn_name(text: &str) -> Result<Name, StepError> {
    let absolute = if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    };
    Name::from_utf8(&absolute)
        .map_err(|e| StepError::Protocol(format!("`{text}` is not a DNS name: {e}")))
}

/// Rcodes as `dig` prints them.
pub fn rcode_text(code: ResponseCode) -> String {
    let n: u16 = code.into();
    match n {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        16 => "BADVERS".into(),
        23 => "BADCOOKIE".into(),
        other => format!("RCODE{other}"),
    }
}

/// A name in lower case, fully qualified.
pub(super) fn name_text(name: &Name) -> String {
    let mut s = name.to_ascii().to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// One record's data as normalised text.
pub fn rdata_text(data: &RData) -> String {
    match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::MX(mx) => format!("{} {}", mx.preference, name_text(&mx.exchange)),
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|p| String::from_utf8_lossy(p))
            .collect(),
        RData::CNAME(n) => name_text(&n.0),
        RData::NS(n) => name_text(&n.0),
        RData::PTR(n) => name_text(&n.0),
        RData::SOA(s) => format!(
            "{} {} {} {} {} {} {}",
            name_text(&s.mname),
            name_text(&s.rname),
            s.serial,
            s.refresh,
            s.retry,
            s.expire,
            s.minimum
        ),
        RData::SRV(s) => format!(
            "{} {} {} {}",
            s.priority,
            s.weight,
            s.port,
            name_text(&s.target)
        ),
        RData::CAA(c) => format!(
            "{} {} \"{}\"",
            c.flags(),
            c.tag,
            String::from_utf8_lossy(&c.value).replace('"', "\\\"")
        ),
        other => other.to_string(),
    }
}

/// One record of a zone transfer: `owner TYPE data`.
pub(super) fn record_text(r: &Record) -> String {
    format!(
        "{} {} {}",
        name_text(&r.name),
        r.record_type(),
        rdata_text(&r.data)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcodes_read_like_dig() {
        assert_eq!(rcode_text(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_text(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_text(ResponseCode::ServFail), "SERVFAIL");
    }
}
