//! YAML with positions: a document tree where every node keeps its `Span`, and a serde
//! `Deserializer` over that tree whose errors carry the span of the exact node at fault.
//!
//! Input comes from the playbook, inventory and vars loaders (text they read from disk);
//! `parse` builds the tree with saphyr-parser's events (the parser under serde-saphyr, used
//! directly so that every node keeps its place and several problems can be reported at once).
//! Typed model structs are then read from nodes with `decode`, strictly (`deny_unknown_fields`
//! and "did you mean"), or in *lenient* mode, where a template string stands in for any scalar
//! type until the runner renders it.

use std::cell::{Cell, RefCell};
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use crate::diag::{Diagnostic, FileId, Span, did_you_mean};

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

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Parses one YAML document of a registered file into a tree. An empty document is a null node.
/// Duplicate keys, several documents, too deep nesting and alias bombs are diagnostics.
pub fn parse(file: FileId, text: &str) -> Result<Node, Diagnostic> {
    let mut b = Builder {
        file,
        stack: Vec::new(),
        anchors: Vec::new(),
        nodes: 0,
        root: None,
        docs: 0,
    };
    let mut parser = Parser::new_from_str(text);
    while let Some(ev) = parser.next_event() {
        match ev {
            Ok((event, span)) => {
                let sp = b.span(span);
                b.event(event, sp)?;
            }
            Err(e) => {
                let m = e.marker();
                let msg = e.info().to_string();
                return Err(Diagnostic::error(format!("invalid YAML: {msg}"))
                    .at(Span::point(file, m.line() as u32, m.col() as u32 + 1))
                    .label(yaml_hint(&msg))
                    .help("check the indentation and quoting around this place"));
            }
        }
    }
    Ok(b.root.unwrap_or_else(|| Node::null(Span::file_start(file))))
}

fn yaml_hint(msg: &str) -> String {
    if msg.contains("mapping values are not allowed") {
        "a `key: value` cannot start here; quote the value if it contains `: `".into()
    } else if msg.contains("tab") {
        "YAML indentation must use spaces, not tabs".into()
    } else {
        "here".into()
    }
}

enum Frame {
    Seq {
        start: Span,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: Span,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        /// Keys copied in by a `<<` merge: an explicit key later replaces them.
        merged: Vec<String>,
    },
}

struct Builder {
    file: FileId,
    stack: Vec<Frame>,
    anchors: Vec<(usize, Node)>,
    nodes: usize,
    root: Option<Node>,
    docs: usize,
}

impl Builder {
    fn span(&self, s: saphyr_parser::Span) -> Span {
        Span::new(
            self.file,
            s.start.line() as u32,
            s.start.col() as u32 + 1,
            s.end.line() as u32,
            s.end.col() as u32 + 1,
        )
    }

    fn count(&mut self, n: usize, at: Span) -> Result<(), Diagnostic> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(Diagnostic::error("YAML document is too large")
                .at(at)
                .label(format!("expands to more than {MAX_NODES} values"))
                .help("aliases that repeat other aliases multiply; write the data out instead"));
        }
        Ok(())
    }

    fn event(&mut self, ev: Event<'_>, sp: Span) -> Result<(), Diagnostic> {
        match ev {
            Event::DocumentStart(_) => {
                self.docs += 1;
                if self.docs > 1 {
                    return Err(Diagnostic::error("more than one YAML document in this file")
                        .at(sp)
                        .label("a second document starts here")
                        .help("put each playbook or inventory in its own file, or write plays as a list"));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, sp)?;
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    _ => Style::Block,
                };
                // An explicit `!!str` tag makes a plain scalar a string.
                let style = match (&tag, style) {
                    (Some(t), Style::Plain) if t.suffix == "str" => Style::Quoted,
                    (_, s) => s,
                };
                let node = Node::scalar(text.into_owned(), style, sp);
                if anchor > 0 {
                    self.anchors.push((anchor, node.clone()));
                }
                self.push(node)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.depth_check(sp)?;
                self.stack.push(Frame::Seq {
                    start: sp,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                self.depth_check(sp)?;
                self.stack.push(Frame::Map {
                    start: sp,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    merged: Vec::new(),
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    start,
                    anchor,
                    items,
                }) = self.stack.pop()
                {
                    self.count(1, start)?;
                    let node = Node {
                        span: join(start, items.last().map(|n| n.span), sp),
                        kind: NodeKind::Seq(items),
                    };
                    if anchor > 0 {
                        self.anchors.push((anchor, node.clone()));
                    }
                    self.push(node)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    start,
                    anchor,
                    entries,
                    ..
                }) = self.stack.pop()
                {
                    self.count(1, start)?;
                    let last = entries.last().map(|(_, v)| v.span);
                    let node = Node {
                        span: join(start, last, sp),
                        kind: NodeKind::Map(entries),
                    };
                    if anchor > 0 {
                        self.anchors.push((anchor, node.clone()));
                    }
                    self.push(node)?;
                }
            }
            Event::Alias(id) => {
                let found = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| n.clone());
                match found {
                    Some(mut n) => {
                        let size = node_count(&n);
                        self.count(size, sp)?;
                        n.span = sp;
                        self.push(n)?;
                    }
                    None => {
                        return Err(Diagnostic::error("unknown YAML alias")
                            .at(sp)
                            .label("no anchor of this name was defined before")
                            .help("define the anchor (`&name`) before using the alias (`*name`)"));
                    }
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn depth_check(&self, sp: Span) -> Result<(), Diagnostic> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Diagnostic::error("YAML nesting is too deep")
                .at(sp)
                .label(format!("more than {MAX_DEPTH} levels deep"))
                .help("flatten the structure"));
        }
        Ok(())
    }

    fn push(&mut self, node: Node) -> Result<(), Diagnostic> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                key,
                merged,
                ..
            }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    // `<<: *anchor` merge keys: copy entries the mapping does not set itself.
                    if k.as_str() == Some("<<")
                        && matches!(
                            k.kind,
                            NodeKind::Scalar {
                                style: Style::Plain,
                                ..
                            }
                        )
                    {
                        let sources: Vec<&Node> = match &node.kind {
                            NodeKind::Map(_) => vec![&node],
                            NodeKind::Seq(s) => s.iter().collect(),
                            _ => Vec::new(),
                        };
                        if sources.is_empty() || sources.iter().any(|s| s.as_map().is_none()) {
                            return Err(Diagnostic::error("a merge key `<<` needs a mapping")
                                .at(node.span)
                                .label(format!("found {}", node.describe()))
                                .help("write `<<: *anchor` where the anchor names a mapping"));
                        }
                        for src in sources {
                            for (mk, mv) in src.as_map().unwrap_or(&[]) {
                                let exists =
                                    entries.iter().any(|(ek, _)| ek.key_text() == mk.key_text());
                                if !exists {
                                    merged.push(mk.key_text());
                                    entries.push((mk.clone(), mv.clone()));
                                }
                            }
                        }
                        return Ok(());
                    }
                    let text = k.key_text();
                    if let Some(pos) = merged.iter().position(|m| *m == text) {
                        merged.remove(pos);
                        entries.retain(|(ek, _)| ek.key_text() != text);
                    }
                    if let Some((first, _)) = entries.iter().find(|(ek, _)| ek.kind == k.kind) {
                        return Err(
                            Diagnostic::error(format!("duplicate key `{}`", k.key_text()))
                                .at(k.span)
                                .label("defined again here")
                                .also(first.span, "first defined here")
                                .help("remove one of them; YAML mappings cannot repeat a key"),
                        );
                    }
                    entries.push((k, node));
                }
            },
        }
        Ok(())
    }
}

fn node_count(n: &Node) -> usize {
    match &n.kind {
        NodeKind::Scalar { .. } => 1,
        NodeKind::Seq(s) => 1 + s.iter().map(node_count).sum::<usize>(),
        NodeKind::Map(m) => {
            1 + m
                .iter()
                .map(|(k, v)| node_count(k) + node_count(v))
                .sum::<usize>()
        }
    }
}

fn join(start: Span, last: Option<Span>, end: Span) -> Span {
    let e = last.unwrap_or(end);
    let (el, ec) = if (end.line, end.col) > (start.line, start.col) && last.is_none() {
        (end.end_line, end.end_col)
    } else {
        (e.end_line, e.end_col)
    };
    Span::new(start.file, start.line, start.col, el, ec)
}

// ---------------------------------------------------------------------------------------------
// Deserializing typed values from nodes
// ---------------------------------------------------------------------------------------------

/// What went wrong while reading a typed value from a node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct DeError {
    pub message: String,
    pub span: Option<Span>,
    pub label: String,
    pub help: Option<String>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl DeError {
    fn at(mut self, span: Span) -> DeError {
        if self.span.is_none() {
            self.span = Some(span);
        }
        self
    }

    pub fn into_diagnostic(self) -> Diagnostic {
        let mut d = Diagnostic::error(self.message)
            .at_opt(self.span)
            .label(self.label);
        if let Some(h) = self.help {
            d = d.help(h);
        }
        d
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            span: None,
            label: String::new(),
            help: None,
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let found = match unexp {
            de::Unexpected::Map => "a mapping".to_string(),
            de::Unexpected::Seq => "a list".to_string(),
            de::Unexpected::Str(s) => format!("the string `{s}`"),
            de::Unexpected::Unit => "null".to_string(),
            other => other.to_string(),
        };
        DeError {
            message: format!("expected {exp}, found {found}"),
            span: None,
            label: format!("expected {exp}"),
            help: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let suggestion = did_you_mean(field, expected.iter().copied());
        let label = match suggestion {
            Some(s) => format!("did you mean `{s}`?"),
            None => "unknown key".to_string(),
        };
        DeError {
            message: format!("unknown key `{field}`"),
            span: None,
            label,
            help: Some(format!("valid keys here: {}", expected.join(", "))),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let suggestion = did_you_mean(variant, expected.iter().copied());
        let label = match suggestion {
            Some(s) => format!("did you mean `{s}`?"),
            None => "not one of the allowed values".to_string(),
        };
        DeError {
            message: format!("unknown value `{variant}`"),
            span: None,
            label,
            help: Some(format!("allowed values: {}", expected.join(", "))),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            message: format!("missing required key `{field}`"),
            span: None,
            label: format!("`{field}` is required here"),
            help: None,
        }
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError::custom(format!("duplicate key `{field}`"))
    }
}

thread_local! {
    static LENIENT: Cell<bool> = const { Cell::new(false) };
    static RAW: RefCell<Option<Node>> = const { RefCell::new(None) };
}

/// In lenient mode (while checking a playbook before any value is known), a template string
/// may stand for a value of any scalar type; custom scalar types ask this to accept it.
pub fn lenient_template(s: &str) -> bool {
    LENIENT.with(|l| l.get()) && is_template(s)
}

struct LenientGuard(bool);
impl Drop for LenientGuard {
    fn drop(&mut self) {
        LENIENT.with(|l| l.set(self.0));
    }
}

/// Reads a typed value from a node, strictly: templates must already be rendered.
pub fn decode<T: DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    let _g = LenientGuard(LENIENT.with(|l| l.replace(false)));
    T::deserialize(NodeDe { node })
}

/// Reads a typed value from a node, accepting template strings for scalar fields.
pub fn decode_lenient<T: DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    let _g = LenientGuard(LENIENT.with(|l| l.replace(true)));
    T::deserialize(NodeDe { node })
}

/// Reads a typed value from a node in the current mode (for use inside another decode).
pub fn decode_any<T: DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe { node })
}

/// A nested error as text that keeps its place when it travels through serde's `custom`.
pub fn carry(e: DeError) -> String {
    encode_span(&e.message, e.span, &e.label, e.help.as_deref())
}

const RAW_NODE: &str = "$sortie::RawNode";

/// A node kept as it is, for values read later (templates rendered per host, step kinds read
/// in a second stage). Only the node deserializer can produce one.
#[derive(Clone, Debug, PartialEq)]
pub struct RawNode(pub Node);

impl<'de> serde::Deserialize<'de> for RawNode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawNode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawNode, E> {
                RAW.with(|r| r.borrow_mut().take())
                    .map(RawNode)
                    .ok_or_else(|| E::custom("internal: raw node read outside YAML"))
            }
        }
        d.deserialize_newtype_struct(RAW_NODE, V)
    }
}

impl schemars::JsonSchema for RawNode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Any".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!(true)
    }
}

/// A typed value that may be written as a template (`port: "{{ app_port }}"`): known at load
/// time when the text has no template, else read per host after rendering.
#[derive(Clone, Debug)]
pub struct Tpl<T> {
    pub node: Node,
    pub value: Option<T>,
}

impl<T: DeserializeOwned + Clone> Tpl<T> {
    /// The value, rendering the node first when it holds a template.
    pub fn resolve(
        &self,
        render: &dyn Fn(&Node) -> Result<Node, Diagnostic>,
    ) -> Result<T, Diagnostic> {
        if let Some(v) = &self.value {
            return Ok(v.clone());
        }
        let rendered = render(&self.node)?;
        decode::<T>(&rendered).map_err(|e| {
            let mut d = e.into_diagnostic();
            d.title = format!("{} (after rendering the template)", d.title);
            d.at_opt(Some(self.node.span))
        })
    }
}

impl<'de, T: DeserializeOwned> serde::Deserialize<'de> for Tpl<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let RawNode(node) = RawNode::deserialize(d)?;
        if node.has_template() {
            // Check the shape now with templates standing in for values.
            let _g = LenientGuard(LENIENT.with(|l| l.replace(true)));
            T::deserialize(NodeDe { node: &node })
                .map_err(|e| de::Error::custom(carry(e.at(node.span))))?;
            return Ok(Tpl { node, value: None });
        }
        let value = T::deserialize(NodeDe { node: &node })
            .map_err(|e| de::Error::custom(carry(e.at(node.span))))?;
        Ok(Tpl {
            node,
            value: Some(value),
        })
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Tpl<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let inner = g.subschema_for::<T>();
        schemars::json_schema!({
            "anyOf": [inner, { "type": "string", "pattern": "\\{\\{", "description": "a template whose rendered text is read as this type" }]
        })
    }
}

/// A value with the span of the node it was read from.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    pub span: Span,
    pub value: T,
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Spanned<T> {
        Spanned { span, value }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: DeserializeOwned> serde::Deserialize<'de> for Spanned<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let RawNode(node) = RawNode::deserialize(d)?;
        let value = T::deserialize(NodeDe { node: &node }).map_err(|e| {
            let e = e.at(node.span);
            let mut msg = e.message.clone();
            // Carry the span through the outer deserializer's error type.
            msg = encode_span(&msg, e.span, &e.label, e.help.as_deref());
            de::Error::custom(msg)
        })?;
        Ok(Spanned {
            span: node.span,
            value,
        })
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Spanned<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(g)
    }
    fn inline_schema() -> bool {
        T::inline_schema()
    }
}

// Errors raised inside a nested `Spanned` travel through serde's `custom` as text; this
// encoding keeps their span and label so the outer layer can restore them.
const SPAN_MARK: char = '\u{1}';

fn encode_span(msg: &str, span: Option<Span>, label: &str, help: Option<&str>) -> String {
    match span {
        Some(s) => format!(
            "{SPAN_MARK}{}:{}:{}:{}:{}{SPAN_MARK}{label}{SPAN_MARK}{}{SPAN_MARK}{msg}",
            s.file_index(),
            s.line,
            s.col,
            s.end_line,
            s.end_col,
            help.unwrap_or("")
        ),
        None => msg.to_string(),
    }
}

fn decode_span(e: DeError) -> DeError {
    let Some(rest) = e.message.strip_prefix(SPAN_MARK) else {
        return e;
    };
    let parts: Vec<&str> = rest.splitn(4, SPAN_MARK).collect();
    if parts.len() != 4 {
        return e;
    }
    let nums: Vec<u32> = parts[0].split(':').filter_map(|x| x.parse().ok()).collect();
    let span = if nums.len() == 5 {
        Some(Span::new(
            FileId::from_index(nums[0]),
            nums[1],
            nums[2],
            nums[3],
            nums[4],
        ))
    } else if parts[0] == "-" {
        None
    } else {
        return e;
    };
    DeError {
        message: parts[3].to_string(),
        span,
        label: parts[1].to_string(),
        help: if parts[2].is_empty() {
            None
        } else {
            Some(parts[2].to_string())
        },
    }
}

impl Span {
    fn file_index(&self) -> u32 {
        self.file.index()
    }
}

/// The serde deserializer over one node.
struct NodeDe<'a> {
    node: &'a Node,
}

impl<'a> NodeDe<'a> {}

macro_rules! wrap {
    ($self:ident, $e:expr) => {{
        let span = $self.node.span;
        ($e).map_err(|e: DeError| decode_span(e).at(span))
    }};
}

fn scalar_parts(n: &Node) -> Option<(&str, Style)> {
    match &n.kind {
        NodeKind::Scalar { text, style } => Some((text, *style)),
        _ => None,
    }
}

impl<'a> NodeDe<'a> {
    fn lenient_tpl(&self) -> bool {
        matches!(scalar_parts(self.node), Some((t, _)) if lenient_template(t))
    }

    fn int<V: Visitor<'a>>(self, v: V, what: &'static str) -> Result<V::Value, DeError> {
        if self.lenient_tpl() {
            return v.visit_u64(0);
        }
        match scalar_parts(self.node) {
            Some((t, _)) => {
                let t = t.trim();
                if let Some(i) = parse_int(t) {
                    if i < 0 {
                        v.visit_i64(i)
                    } else {
                        v.visit_u64(i as u64)
                    }
                } else if let Ok(u) = t.parse::<u64>() {
                    v.visit_u64(u)
                } else {
                    Err(type_error(what, self.node))
                }
            }
            None => Err(type_error(what, self.node)),
        }
    }
}

fn type_error(what: &str, node: &Node) -> DeError {
    let found = match &node.kind {
        NodeKind::Scalar { text, .. } if text.chars().count() <= 40 => format!("`{text}`"),
        _ => node.describe().to_string(),
    };
    let help = match what {
        "a whole number" | "an integer" => {
            "write digits only, e.g. `8080`; a template such as `\"{{ port }}\"` works too"
        }
        "true or false" => "write `true` or `false`",
        "a list" => "write `[a, b]`, or one `- item` per line",
        "a mapping" => "write `key: value` pairs, or `{ key: value }`",
        "a string" => "write text; quote it if it contains `: ` or starts with `{` or `[`",
        "a number" => "write a number such as `1.5`",
        _ => "see `sortie schema playbook` for the expected shape",
    };
    DeError {
        message: format!("expected {what}, found {found}"),
        span: Some(node.span),
        label: format!("expected {what}"),
        help: Some(help.to_string()),
    }
}

/// A custom deserialization error with its own label and help, for `serde::de::Error::custom`;
/// the node deserializer places it at the node being read.
pub fn custom_error(
    message: impl Into<String>,
    label: impl Into<String>,
    help: impl Into<String>,
) -> String {
    let (message, label, help) = (message.into(), label.into(), help.into());
    format!("{SPAN_MARK}-{SPAN_MARK}{label}{SPAN_MARK}{help}{SPAN_MARK}{message}")
}

impl<'a> de::Deserializer<'a> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, {
            match &self.node.kind {
                NodeKind::Scalar { text, style } => {
                    if *style != Style::Plain {
                        v.visit_str(text)
                    } else {
                        match resolve_plain(text) {
                            Plain::Null => v.visit_unit(),
                            Plain::Bool(b) => v.visit_bool(b),
                            Plain::Int(i) => {
                                if i < 0 {
                                    v.visit_i64(i)
                                } else {
                                    v.visit_u64(i as u64)
                                }
                            }
                            Plain::Float(f) => v.visit_f64(f),
                            Plain::Str => v.visit_str(text),
                        }
                    }
                }
                NodeKind::Seq(items) => v.visit_seq(SeqAccess { it: items.iter() }),
                NodeKind::Map(entries) => v.visit_map(MapAccess {
                    it: entries.iter(),
                    value: None,
                }),
            }
        })
    }

    fn deserialize_bool<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, {
            if self.lenient_tpl() {
                return v.visit_bool(false).map_err(|e: DeError| e);
            }
            match scalar_parts(self.node) {
                Some((t, _)) => match t.trim() {
                    "true" | "True" | "TRUE" => v.visit_bool(true),
                    "false" | "False" | "FALSE" => v.visit_bool(false),
                    _ => Err(type_error("true or false", self.node)),
                },
                None => Err(type_error("true or false", self.node)),
            }
        })
    }

    fn deserialize_i8<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, self.int(v, "an integer"))
    }
    fn deserialize_i16<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, self.int(v, "an integer"))
    }
    fn deserialize_i32<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, self.int(v, "an integer"))
    }
    fn deserialize_i64<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, self.int(v, "an integer"))
    }
    fn deserialize_u8<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, self.int(v, "a whole number"))
    }
    fn deserialize_u16<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, self.int(v, "a whole number"))
    }
    fn deserialize_u32<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, self.int(v, "a whole number"))
    }
    fn deserialize_u64<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, self.int(v, "a whole number"))
    }

    fn deserialize_f32<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(v)
    }
    fn deserialize_f64<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, {
            if self.lenient_tpl() {
                return v.visit_f64(0.0);
            }
            match scalar_parts(self.node).map(|(t, _)| t.trim().parse::<f64>()) {
                Some(Ok(f)) => v.visit_f64(f),
                _ => Err(type_error("a number", self.node)),
            }
        })
    }

    fn deserialize_char<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, {
            match &self.node.kind {
                NodeKind::Scalar { text, .. } => v.visit_str(text),
                _ => Err(type_error("a string", self.node)),
            }
        })
    }
    fn deserialize_string<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }
    fn deserialize_bytes<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }
    fn deserialize_byte_buf<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, {
            if self.node.is_null() {
                v.visit_unit()
            } else {
                Err(type_error("null", self.node))
            }
        })
    }
    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        if name == RAW_NODE {
            RAW.with(|r| *r.borrow_mut() = Some(self.node.clone()));
            return v.visit_unit();
        }
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, {
            match &self.node.kind {
                NodeKind::Seq(items) => v.visit_seq(SeqAccess { it: items.iter() }),
                _ if self.lenient_tpl() => v.visit_seq(SeqAccess { it: [].iter() }),
                _ => Err(type_error("a list", self.node)),
            }
        })
    }
    fn deserialize_tuple<V: Visitor<'a>>(self, _: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }
    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        wrap!(self, {
            match &self.node.kind {
                NodeKind::Map(entries) => v.visit_map(MapAccess {
                    it: entries.iter(),
                    value: None,
                }),
                _ if self.node.is_null() => v.visit_map(MapAccess {
                    it: [].iter(),
                    value: None,
                }),
                _ => Err(type_error("a mapping", self.node)),
            }
        })
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        wrap!(self, {
            match &self.node.kind {
                NodeKind::Scalar { text, .. } => {
                    if lenient_template(text)
                        && let Some(first) = variants.first()
                    {
                        return v.visit_enum((*first).into_deserializer());
                    }
                    v.visit_enum(UnitVariant { node: self.node })
                }
                NodeKind::Map(entries) if entries.len() == 1 => v.visit_enum(MapVariant {
                    key: &entries[0].0,
                    value: &entries[0].1,
                }),
                _ => Err(type_error(
                    &format!("one of {}", variants.join(", ")),
                    self.node,
                )),
            }
        })
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

struct SeqAccess<'a> {
    it: std::slice::Iter<'a, Node>,
}

impl<'a> de::SeqAccess<'a> for SeqAccess<'a> {
    type Error = DeError;
    fn next_element_seed<T: de::DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.it.next() {
            Some(node) => seed.deserialize(NodeDe { node }).map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.it.len())
    }
}

struct MapAccess<'a> {
    it: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'a> de::MapAccess<'a> for MapAccess<'a> {
    type Error = DeError;
    fn next_key_seed<K: de::DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.it.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(NodeDe { node: k })
                    .map(Some)
                    .map_err(|e| decode_span(e).at(k.span))
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: de::DeserializeSeed<'a>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(node) => seed.deserialize(NodeDe { node }),
            None => Err(de::Error::custom("internal: value without key")),
        }
    }
}

struct UnitVariant<'a> {
    node: &'a Node,
}

impl<'a> de::EnumAccess<'a> for UnitVariant<'a> {
    type Error = DeError;
    type Variant = UnitOnly<'a>;
    fn variant_seed<V: de::DeserializeSeed<'a>>(
        self,
        seed: V,
    ) -> Result<(V::Value, UnitOnly<'a>), DeError> {
        let v = seed
            .deserialize(NodeDe { node: self.node })
            .map_err(|e| decode_span(e).at(self.node.span))?;
        Ok((v, UnitOnly { node: self.node }))
    }
}

struct UnitOnly<'a> {
    node: &'a Node,
}

impl<'a> de::VariantAccess<'a> for UnitOnly<'a> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }
    fn newtype_variant_seed<T: de::DeserializeSeed<'a>>(self, _: T) -> Result<T::Value, DeError> {
        Err(type_error("a mapping with one key", self.node))
    }
    fn tuple_variant<V: Visitor<'a>>(self, _: usize, _: V) -> Result<V::Value, DeError> {
        Err(type_error("a mapping with one key", self.node))
    }
    fn struct_variant<V: Visitor<'a>>(
        self,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, DeError> {
        Err(type_error("a mapping with one key", self.node))
    }
}

struct MapVariant<'a> {
    key: &'a Node,
    value: &'a Node,
}

impl<'a> de::EnumAccess<'a> for MapVariant<'a> {
    type Error = DeError;
    type Variant = NodeDe<'a>;
    fn variant_seed<V: de::DeserializeSeed<'a>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'a>), DeError> {
        let v = seed
            .deserialize(NodeDe { node: self.key })
            .map_err(|e| decode_span(e).at(self.key.span))?;
        Ok((v, NodeDe { node: self.value }))
    }
}

impl<'a> de::VariantAccess<'a> for NodeDe<'a> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }
    fn newtype_variant_seed<T: de::DeserializeSeed<'a>>(
        self,
        seed: T,
    ) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'a>>(self, _: usize, v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, v)
    }
    fn struct_variant<V: Visitor<'a>>(
        self,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(self, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::register_source;
    use serde::Deserialize;

    fn p(text: &str) -> Node {
        let f = register_source("t.yml", text);
        parse(f, text).expect("parses")
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct S {
        name: String,
        port: Option<u16>,
        tags: Option<Vec<String>>,
    }

    #[test]
    fn decodes_with_spans_and_unknown_key_suggestion() {
        let n = p("name: web\nprot: 22\n");
        let e = decode::<S>(&n).expect_err("unknown key");
        assert_eq!(e.message, "unknown key `prot`");
        assert_eq!(e.label, "did you mean `port`?");
        let s = e.span.expect("span");
        assert_eq!((s.line, s.col), (2, 1));
    }

    #[test]
    fn type_errors_point_at_value() {
        let n = p("name: web\nport: lots\n");
        let e = decode::<S>(&n).expect_err("bad type");
        assert_eq!(e.message, "expected a whole number, found `lots`");
        assert_eq!(e.span.map(|s| (s.line, s.col)), Some((2, 7)));
    }

    #[test]
    fn spanned_keeps_position_and_nested_errors() {
        #[derive(Deserialize)]
        struct T {
            inner: Spanned<S>,
        }
        let n = p("inner:\n  name: x\n  port: 70000\n");
        let e = decode::<T>(&n).err().expect("err");
        assert_eq!(e.span.map(|s| (s.line, s.col)), Some((3, 9)));
        let Ok(ok) = decode::<T>(&p("inner:\n  name: x\n")) else {
            panic!("decodes")
        };
        assert_eq!((ok.inner.span.line, ok.inner.span.col), (2, 3));
    }

    #[test]
    fn lenient_accepts_templates_for_numbers() {
        let n = p("name: web\nport: \"{{ p }}\"\n");
        assert!(decode::<S>(&n).is_err());
        assert_eq!(decode_lenient::<S>(&n).ok().and_then(|s| s.port), Some(0));
    }

    #[test]
    fn duplicate_keys_and_merge_keys() {
        let f = register_source("d.yml", "a: 1\nb: 2\na: 3\n");
        let d = parse(f, "a: 1\nb: 2\na: 3\n").expect_err("dup");
        assert_eq!(d.title, "duplicate key `a`");
        let n = p("base: &b { x: 1, y: 2 }\nother:\n  <<: *b\n  y: 3\n");
        let other = n.get("other").expect("other");
        assert_eq!(other.to_json(), serde_json::json!({"y": 3, "x": 1}));
    }

    #[test]
    fn core_schema_scalars() {
        let n = p("a: yes\nb: true\nc: 0644\nd: '1'\ne: 1.5\nf: ~\n");
        assert_eq!(
            n.to_json(),
            serde_json::json!({"a": "yes", "b": true, "c": 644, "d": "1", "e": 1.5, "f": null})
        );
    }

    #[test]
    fn limits_depth_and_alias_bombs() {
        let deep = "[".repeat(500);
        let f = register_source("deep.yml", deep.clone());
        assert!(parse(f, &deep).is_err());
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let f = register_source("bomb.yml", bomb.clone());
        let e = parse(f, &bomb).expect_err("bomb refused");
        assert_eq!(e.title, "YAML document is too large");
    }
}
