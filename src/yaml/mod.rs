//! YAML with positions: a document tree where every node keeps its `Span`, and a serde
//! `Deserializer` over that tree whose errors carry the span of the exact node at fault.
//!
//! Input comes from the playbook, inventory and vars loaders (text they read from disk);
//! `parse` builds the tree with saphyr-parser's events (the parser under serde-saphyr, used
//! directly so that every node keeps its place and several problems can be reported at once).
//! Typed model structs are then read from nodes with `decode`, strictly (`deny_unknown_fields`
//! and "did you mean"), or in *lenient* mode, where a template string stands in for any scalar
//! type until the runner renders it.
//!
//! This file holds the node tree, its accessors and the YAML 1.2 core schema for plain
//! scalars. The builder from parser events is in `parse`, the serde `Deserializer` over nodes
//! in `de`, its error type (and the text encoding that carries a span through serde) in
//! `error`, and the wrappers that keep a node or its span (`RawNode`, `Tpl`, `Spanned`) in
//! `wrappers`. Everything public is re-exported here, so callers write `yaml::X`.

mod de;
mod error;
mod parse;
mod wrappers;

pub use de::{decode, decode_any, decode_lenient, lenient_template};
pub use error::{DeError, carry, custom_error};
pub use parse::parse;
pub use wrappers::{RawNode, Spanned, Tpl};

use crate::diag::Span;

/// Deepest nesting accepted; deeper input is refused rather than risking the stack.
pub const MAX_DEPTH: usize = 128;
/// Most nodes one document may expand to (aliases included): refuses "billion laughs".
pub const MAX_NODES: usize = 2_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
    Block,
}

/// One YAML value with its place.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub kind: NodeKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    Scalar { text: String, style: Style },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn scalar(text: impl Into<String>, style: Style, span: Span) -> Node {
        Node {
            span,
            kind: NodeKind::Scalar {
                text: text.into(),
                style,
            },
        }
    }

    pub fn null(span: Span) -> Node {
        Node::scalar("", Style::Plain, span)
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, style: Style::Plain } if is_null_text(text))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// What this node is, in words, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Map(_) => "a mapping",
            NodeKind::Seq(_) => "a list",
            NodeKind::Scalar {
                style: Style::Plain,
                text,
            } => match resolve_plain(text) {
                Plain::Null => "null",
                Plain::Bool(_) => "a boolean",
                Plain::Int(_) | Plain::Float(_) => "a number",
                Plain::Str => "a string",
            },
            NodeKind::Scalar { .. } => "a string",
        }
    }

    /// True when any string in this tree holds template syntax.
    pub fn has_template(&self) -> bool {
        match &self.kind {
            NodeKind::Scalar { text, .. } => is_template(text),
            NodeKind::Seq(s) => s.iter().any(Node::has_template),
            NodeKind::Map(m) => m.iter().any(|(k, v)| k.has_template() || v.has_template()),
        }
    }

    /// The node as JSON, resolving plain scalars by the YAML 1.2 core schema.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            NodeKind::Scalar { text, style } => {
                if *style != Style::Plain {
                    return Value::String(text.clone());
                }
                match resolve_plain(text) {
                    Plain::Null => Value::Null,
                    Plain::Bool(b) => Value::Bool(b),
                    Plain::Int(i) => Value::from(i),
                    Plain::Float(f) => serde_json::Number::from_f64(f)
                        .map(Value::Number)
                        .unwrap_or_else(|| Value::String(text.clone())),
                    Plain::Str => Value::String(text.clone()),
                }
            }
            NodeKind::Seq(s) => Value::Array(s.iter().map(Node::to_json).collect()),
            NodeKind::Map(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.key_text(), v.to_json())).collect())
            }
        }
    }

    /// A node built from JSON data (rendered template values, `-e` values), placed at `span`.
    pub fn from_json(v: &serde_json::Value, span: Span) -> Node {
        use serde_json::Value;
        let kind = match v {
            Value::Null => NodeKind::Scalar {
                text: "null".into(),
                style: Style::Plain,
            },
            Value::Bool(b) => NodeKind::Scalar {
                text: b.to_string(),
                style: Style::Plain,
            },
            Value::Number(n) => NodeKind::Scalar {
                text: n.to_string(),
                style: Style::Plain,
            },
            Value::String(s) => NodeKind::Scalar {
                text: s.clone(),
                style: Style::Quoted,
            },
            Value::Array(a) => NodeKind::Seq(a.iter().map(|x| Node::from_json(x, span)).collect()),
            Value::Object(o) => NodeKind::Map(
                o.iter()
                    .map(|(k, x)| {
                        (
                            Node::scalar(k.clone(), Style::Quoted, span),
                            Node::from_json(x, span),
                        )
                    })
                    .collect(),
            ),
        };
        Node { span, kind }
    }

    /// The text of a key node (scalars as written; other keys as JSON).
    pub fn key_text(&self) -> String {
        match &self.kind {
            NodeKind::Scalar { text, .. } => text.clone(),
            _ => self.to_json().to_string(),
        }
    }
}

/// Does this string contain minijinja syntax?
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

fn is_null_text(t: &str) -> bool {
    matches!(t, "" | "~" | "null" | "Null" | "NULL")
}

enum Plain {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str,
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(t: &str) -> Plain {
    if is_null_text(t) {
        return Plain::Null;
    }
    match t {
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        _ => {}
    }
    if let Some(i) = parse_int(t) {
        return Plain::Int(i);
    }
    match t {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Plain::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Plain::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Plain::Float(f64::NAN),
        _ => {}
    }
    let float_like = !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
        && t.chars().any(|c| c.is_ascii_digit());
    if float_like && let Ok(f) = t.parse::<f64>() {
        return Plain::Float(f);
    }
    Plain::Str
}

fn parse_int(t: &str) -> Option<i64> {
    let (neg, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if rest.is_empty() {
        return None;
    }
    let v = if let Some(h) = rest.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = rest.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if rest.chars().all(|c| c.is_ascii_digit()) {
        rest.parse::<i64>().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::register_source;

    #[test]
    fn core_schema_scalars() {
        let text = "a: yes\nb: true\nc: 0644\nd: '1'\ne: 1.5\nf: ~\n";
        let n = parse(register_source("t.yml", text), text).expect("parses");
        assert_eq!(
            n.to_json(),
            serde_json::json!({"a": "yes", "b": true, "c": 644, "d": "1", "e": 1.5, "f": null})
        );
    }
}
