//! Bytes on the wire for the `tcp` and `udp` kinds: what a step sends (`send: "text\r\n"` with
//! escapes, or `send: { hex: … }` / `send: { base64: … }`), the result fields a reply becomes
//! (`response` as text, `hex`, `length`), the `byte` lookup (`byte: { "1": { lt: 16 } }`), and
//! the per-reply expectations of a dialog's exchange, read from the rendered arguments and
//! checked with the matchers of `expect`.

use serde::Deserialize;
use serde_json::Value as Json;

use crate::diag::{Diagnostic, Span};
use crate::expect::{self, ExpectFields, Op};
use crate::yaml::{Node, RawNode};

/// What to send: text (escapes `\r`, `\n`, `\t`, `\0`, `\\`, `\xHH`), or bytes written as
/// `{ hex: "1b00ff" }` (spaces allowed) or `{ base64: "…" }`.
#[derive(Clone, Debug, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Payload {
    /// Text; escapes `\r`, `\n`, `\t`, `\0`, `\\`, `\xHH` are understood.
    Text(String),
    /// Bytes, given one way.
    Bytes(PayloadBytes),
}

/// Bytes to send, written one way.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayloadBytes {
    /// Text with escapes, as when `send` is a string.
    pub text: Option<String>,
    /// Hexadecimal digits, two per byte; spaces, newlines and `:` between bytes are ignored.
    pub hex: Option<String>,
    /// Standard base64 (padding optional).
    pub base64: Option<String>,
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let RawNode(node) = RawNode::deserialize(d)?;
        let r = if node.as_map().is_some() {
            crate::yaml::decode_any::<PayloadBytes>(&node).map(Payload::Bytes)
        } else {
            crate::yaml::decode_any::<String>(&node).map(Payload::Text)
        };
        r.map_err(|e| D::Error::custom(crate::yaml::carry(e)))
    }
}

impl Payload {
    /// The bytes to send, or what is wrong with how they are written.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        match self {
            Payload::Text(t) => Ok(unescape(t)),
            Payload::Bytes(b) => match (&b.text, &b.hex, &b.base64) {
                (Some(t), None, None) => Ok(unescape(t)),
                (None, Some(h), None) => decode_hex(h),
                (None, None, Some(s)) => decode_base64(s),
                _ => Err("give exactly one of `text`, `hex`, `base64`".to_string()),
            },
        }
    }

    /// The payload for messages and the report: text as written, bytes as hex.
    pub fn describe(&self) -> String {
        match self.bytes() {
            Ok(b) => printable(&b),
            Err(_) => String::new(),
        }
    }
}

/// Text when the bytes are text, else `hex:…`.
pub fn printable(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s)
            if !s
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t')) =>
        {
            s.to_string()
        }
        _ => format!("hex:{}", hex::encode(b)),
    }
}

/// Hex digits, two per byte, with spaces, newlines and `:` between bytes allowed.
pub fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if let Some((i, c)) = digits.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(format!("`{c}` is not a hex digit (digit {})", i + 1));
    }
    if digits.len() % 2 == 1 {
        return Err(format!(
            "{} hex digits: bytes take two digits each",
            digits.len()
        ));
    }
    hex::decode(&digits).map_err(|e| e.to_string())
}

/// Standard base64, padding optional, whitespace ignored.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(&clean).map_err(|e| match e {
        base64::DecodeError::InvalidByte(at, b) => format!(
            "`{}` is not a base64 character (character {})",
            char::from(b).escape_default(),
            at + 1
        ),
        base64::DecodeError::InvalidLength(n) => {
            format!("{n} base64 characters: the last group is incomplete")
        }
        other => other.to_string(),
    })
}

/// Turns `\r`, `\n`, `\t`, `\0`, `\\` and `\xHH` into bytes.
pub fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let esc = b[i + 1];
            let simple = match esc {
                b'r' => Some(b'\r'),
                b'n' => Some(b'\n'),
                b't' => Some(b'\t'),
                b'0' => Some(0),
                b'\\' => Some(b'\\'),
                _ => None,
            };
            if let Some(c) = simple {
                out.push(c);
                i += 2;
                continue;
            }
            if esc == b'x'
                && i + 3 < b.len()
                && let Ok(hex) = std::str::from_utf8(&b[i + 2..i + 4])
                && let Ok(v) = u8::from_str_radix(hex, 16)
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The fields a reply becomes: `response` (text, invalid UTF-8 replaced), `hex`, `length`.
pub fn reply_fields(bytes: &[u8]) -> serde_json::Map<String, Json> {
    let mut m = serde_json::Map::new();
    m.insert(
        "response".into(),
        String::from_utf8_lossy(bytes).into_owned().into(),
    );
    m.insert("hex".into(), hex::encode(bytes).into());
    m.insert("length".into(), (bytes.len() as u64).into());
    m
}

/// The fields an exchange's `expect` may name.
pub const REPLY_FIELDS: ExpectFields = ExpectFields {
    plain: &["response", "hex", "length"],
    keyed: &["byte"],
};

/// `byte["N"]`: the value of the reply's byte at offset N (from `hex`), else the plain field.
pub fn lookup(fields: &Json, field: &str, key: Option<&str>) -> Option<Json> {
    if field == "byte" {
        let offset: usize = key?.trim().parse().ok()?;
        let hex = fields.get("hex")?.as_str()?;
        let pair = hex.get(offset * 2..offset * 2 + 2)?;
        return u8::from_str_radix(pair, 16).ok().map(Json::from);
    }
    crate::steps::generic_lookup(fields, field, key)
}

/// Reads an exchange's `expect` (as written, or rendered for a host).
pub fn parse_expect(node: &Node, out: &mut Vec<Diagnostic>) -> Vec<expect::Expectation> {
    let mut found = Vec::new();
    let exps = expect::parse(node, "exchange", REPLY_FIELDS, &mut found);
    // `expect` words its messages for steps; these are about one exchange.
    for mut d in found {
        d.title = d.title.replace("for a `exchange` step", "for an exchange");
        d.help = d
            .help
            .map(|h| h.replace("fields of `exchange`", "fields of an exchange"));
        out.push(d);
    }
    exps
}

/// Checks a reply's fields against expectations whose arguments are already rendered: the
/// failures, each as `field: expected …, found …`.
pub fn failed_checks(exps: &[expect::Expectation], fields: &Json) -> Vec<String> {
    let mut failed = Vec::new();
    for e in exps {
        let actual = lookup(fields, &e.field, e.key.as_deref());
        for m in &e.matchers {
            let checks = if m.op == Op::Len {
                let sub = expect::Expectation {
                    field: format!("len({})", e.label()),
                    key: None,
                    matchers: Vec::new(),
                    span: e.span,
                };
                let len = expect::len_of(actual.as_ref());
                m.nested
                    .iter()
                    .flat_map(|n| {
                        expect::evaluate(&sub, &[(n.clone(), n.arg.to_json())], len.as_ref())
                    })
                    .collect::<Vec<_>>()
            } else {
                expect::evaluate(e, &[(m.clone(), m.arg.to_json())], actual.as_ref())
            };
            failed.extend(checks.iter().filter(|c| !c.passed).map(|c| c.message()));
        }
    }
    failed
}

/// A literal `send` mapping is written one way, and its `hex` or `base64` decodes.
pub fn check_literal(node: &Node, out: &mut Vec<Diagnostic>) {
    let Some(map) = node.as_map() else {
        return;
    };
    let given: Vec<&(Node, Node)> = map
        .iter()
        .filter(|(k, _)| matches!(k.key_text().as_str(), "text" | "hex" | "base64"))
        .collect();
    if given.len() > 1 {
        out.push(
            Diagnostic::error("bytes to send are written one way")
                .at(given[1].0.span)
                .label("second form")
                .help("keep one of `text`, `hex`, `base64`"),
        );
    }
    for (k, v) in given {
        let Some(text) = crate::steps::literal(Some(v)) else {
            continue;
        };
        let (what, r) = match k.key_text().as_str() {
            "hex" => ("hex", decode_hex(text).map(|_| ())),
            "base64" => ("base64", decode_base64(text).map(|_| ())),
            _ => continue,
        };
        if let Err(e) = r {
            out.push(bad_bytes(what, v.span, &e));
        }
    }
}

fn bad_bytes(what: &str, span: Span, error: &str) -> Diagnostic {
    let help = if what == "hex" {
        "two hex digits per byte, e.g. `hex: \"1b 00 ff\"`"
    } else {
        "standard base64, e.g. `base64: \"aGVsbG8K\"`"
    };
    Diagnostic::error(format!("invalid {what} bytes"))
        .at(span)
        .label(error.to_string())
        .help(help)
}

/// `ADDRESS: ERROR` from a probe's result fields, for a failed expectation's context (`tcp`
/// and `udp` alike).
pub fn address_error(fields: &Json) -> Option<String> {
    let error = fields.get("error")?.as_str()?;
    let address = fields.get("address").and_then(|a| a.as_str()).unwrap_or("");
    Some(format!("{address}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_base64_and_escapes() {
        assert_eq!(decode_hex("1b 00:ff\nA0").unwrap(), [0x1b, 0, 0xff, 0xa0]);
        assert!(decode_hex("abc").unwrap_err().contains("3 hex digits"));
        assert!(
            decode_hex("zz")
                .unwrap_err()
                .contains("`z` is not a hex digit")
        );
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVs bG8=").unwrap(), b"hello");
        assert!(decode_base64("a$").is_err());
        assert_eq!(unescape("a\\r\\n\\x41\\q"), b"a\r\nA\\q");
        assert_eq!(printable(b"+PONG\r\n"), "+PONG\r\n");
        assert_eq!(printable(&[0x23, 0]), "hex:2300");
    }

    #[test]
    fn byte_lookup_reads_the_hex_field() {
        let fields = Json::Object(reply_fields(&[0x24, 0x02, 0xff]));
        assert_eq!(lookup(&fields, "byte", Some("1")), Some(Json::from(2)));
        assert_eq!(lookup(&fields, "byte", Some("2")), Some(Json::from(255)));
        assert_eq!(lookup(&fields, "byte", Some("3")), None);
        assert_eq!(lookup(&fields, "length", None), Some(Json::from(3)));
    }
}
