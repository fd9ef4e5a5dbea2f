//! How the `dns` kind's expectations compare (`Kind::expectation_values` in `mod.rs`, called
//! by the runner's expectation check with a result field and the rendered expected value):
//! answer and record lists as sets of normalised text (expected entries written the way
//! answers are: names qualified and lower case, addresses canonical), rcodes in upper case,
//! and a failed `consistent: true` shown as each server's answers.

use std::net::IpAddr;

use serde_json::{Map, Value as Json, json};

use crate::expect::Op;

/// The two values one matcher compares: `actual` (the field as the kind reads it) and
/// `expected`, normalised for the matchers that compare values (not `matches`, whose argument
/// is a pattern).
pub(super) fn values(
    fields: &Json,
    field: &str,
    actual: Option<Json>,
    op: Op,
    expected: Json,
) -> (Option<Json>, Json) {
    let compares = matches!(
        op,
        Op::Eq | Op::Ne | Op::Contains | Op::NotContains | Op::In | Op::NotIn
    );
    if !compares {
        return (actual, expected);
    }
    let rtype = fields
        .get("type")
        .and_then(Json::as_str)
        .unwrap_or("A")
        .to_string();
    match field {
        "answers" | "records" => {
            let record = field == "records" || fields.get("answers").is_none();
            let norm = |s: &str| {
                if record {
                    normalise_record(s)
                } else {
                    normalise_answer(&rtype, s)
                }
            };
            (actual.map(sorted), sorted(map_strings(expected, &norm)))
        }
        "servers" => {
            let expected = match expected {
                Json::Object(mut o) => {
                    if let Some(a) = o.remove("answers") {
                        o.insert(
                            "answers".into(),
                            sorted(map_strings(a, &|s| normalise_answer(&rtype, s))),
                        );
                    }
                    if let Some(Json::String(r)) = o.get("rcode").cloned() {
                        o.insert("rcode".into(), Json::String(r.to_ascii_uppercase()));
                    }
                    Json::Object(o)
                }
                other => other,
            };
            (actual, expected)
        }
        "rcode" => (actual, map_strings(expected, &|s| s.to_ascii_uppercase())),
        "consistent" if truthy(&expected) && actual == Some(Json::Bool(false)) => {
            (Some(disagreement(fields)), expected)
        }
        _ => (actual, expected),
    }
}

/// `true`, written as a boolean or as text.
fn truthy(v: &Json) -> bool {
    matches!(v, Json::Bool(true)) || matches!(v, Json::String(s) if s == "true")
}

/// A list sorted by its entries' text (anything else as it is).
fn sorted(v: Json) -> Json {
    match v {
        Json::Array(mut items) => {
            items.sort_by_key(|i| match i {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            });
            Json::Array(items)
        }
        other => other,
    }
}

/// Applies `f` to a string or to each string of a list.
fn map_strings(v: Json, f: &dyn Fn(&str) -> String) -> Json {
    match v {
        Json::String(s) => Json::String(f(&s)),
        Json::Array(items) => Json::Array(items.into_iter().map(|i| map_strings(i, f)).collect()),
        other => other,
    }
}

/// A name lower case and fully qualified.
fn qualify(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    }
}

/// Writes an expected answer the way answers are written: names qualified and lower case,
/// addresses in their canonical form. Text that does not fit the type is left as it is.
pub fn normalise_answer(rtype: &str, text: &str) -> String {
    let t = text.trim();
    let words: Vec<&str> = t.split_whitespace().collect();
    let requalify = |at: &[usize]| {
        words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if at.contains(&i) {
                    qualify(w)
                } else {
                    w.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    match rtype {
        "A" | "AAAA" => t
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|_| t.to_string()),
        "CNAME" | "NS" | "PTR" if words.len() == 1 => qualify(t),
        "MX" if words.len() == 2 => requalify(&[1]),
        "SRV" if words.len() == 4 => requalify(&[3]),
        "SOA" if words.len() == 7 => requalify(&[0, 1]),
        _ => t.to_string(),
    }
}

/// An expected zone-transfer record (`owner TYPE data`), normalised like the records.
pub fn normalise_record(text: &str) -> String {
    let t = text.trim();
    let mut parts = t.splitn(3, char::is_whitespace).filter(|p| !p.is_empty());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(owner), Some(rtype), Some(data)) => {
            let rtype = rtype.to_ascii_uppercase();
            format!(
                "{} {rtype} {}",
                qualify(owner),
                normalise_answer(&rtype, data)
            )
        }
        _ => t.to_string(),
    }
}

/// Each server's answers (its rcode when it is not NOERROR, its serial for SOA, its error when
/// it gave no answer), for a failed `consistent: true`.
fn disagreement(fields: &Json) -> Json {
    let soa = fields
        .get("type")
        .and_then(Json::as_str)
        .is_some_and(|t| t == "SOA" || t == "AXFR");
    let mut out = Map::new();
    if let Some(servers) = fields.get("servers").and_then(Json::as_object) {
        for (addr, s) in servers {
            let v = if let Some(e) = s.get("error") {
                json!({ "error": e })
            } else if s.get("rcode").and_then(Json::as_str) != Some("NOERROR") {
                s.get("rcode").cloned().unwrap_or(Json::Null)
            } else if soa {
                json!({ "serial": s.get("serial") })
            } else {
                s.get("answers").cloned().unwrap_or(Json::Null)
            };
            out.insert(addr.clone(), v);
        }
    }
    Json::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::Kind;
    use crate::steps::dns::Dns;

    #[test]
    fn expected_answers_are_normalised_like_answers() {
        assert_eq!(
            normalise_answer("MX", "10 Mail.Lab.Test"),
            "10 mail.lab.test."
        );
        assert_eq!(normalise_answer("CNAME", "www.lab.test."), "www.lab.test.");
        assert_eq!(
            normalise_answer("SRV", "10 5 8080 www.lab.test"),
            "10 5 8080 www.lab.test."
        );
        assert_eq!(normalise_answer("AAAA", "2001:DB8:0::53"), "2001:db8::53");
        assert_eq!(normalise_answer("TXT", "v=spf1 -all"), "v=spf1 -all");
        assert_eq!(
            normalise_record("www.lab.test a 127.0.0.1"),
            "www.lab.test. A 127.0.0.1"
        );
        assert_eq!(
            normalise_record("lab.test MX 10 mail.lab.test"),
            "lab.test. MX 10 mail.lab.test."
        );
    }

    #[test]
    fn answer_sets_compare_in_any_order() {
        let fields =
            json!({ "type": "MX", "answers": ["10 mail.lab.test.", "20 backup.lab.test."] });
        let (actual, expected) = Dns::expectation_values(
            &fields,
            "answers",
            None,
            Op::Eq,
            json!(["20 backup.lab.test", "10 mail.lab.test"]),
        );
        assert_eq!(actual, Some(expected));
        // A pattern is left alone.
        let (_, expected) =
            Dns::expectation_values(&fields, "answers", None, Op::Matches, json!("^10 mail"));
        assert_eq!(expected, json!("^10 mail"));
    }

    #[test]
    fn a_failed_consistency_shows_every_server() {
        let fields = json!({
            "type": "A",
            "consistent": false,
            "servers": {
                "127.0.0.1:5301": { "rcode": "NOERROR", "answers": ["127.0.0.1"] },
                "127.0.0.1:5302": { "rcode": "NXDOMAIN", "answers": [] },
            }
        });
        let (actual, _) = Dns::expectation_values(&fields, "consistent", None, Op::Eq, json!(true));
        assert_eq!(
            actual,
            Some(json!({ "127.0.0.1:5301": ["127.0.0.1"], "127.0.0.1:5302": "NXDOMAIN" }))
        );
        let (actual, _) =
            Dns::expectation_values(&fields, "consistent", None, Op::Eq, json!(false));
        assert_eq!(actual, Some(json!(false)));
    }
}
