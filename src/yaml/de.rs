//! The serde `Deserializer` over one `Node`: typed model structs are read from the tree with
//! `decode` (strict) or `decode_lenient` (template strings stand in for any scalar type), and
//! every error is placed at the node at fault.
//!
//! Nodes come from `parse`; callers are the playbook, inventory, vars and step-kind readers,
//! and the wrappers in `wrappers`, which take the raw node handed over through `take_raw`.
//! Errors are `DeError`s (from `error`).

use std::cell::{Cell, RefCell};

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::error::{DeError, decode_span};
use super::{Node, NodeKind, Plain, Style, is_template, parse_int, resolve_plain};

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

/// The newtype name `RawNode` asks for: the deserializer then hands over the node itself.
pub(super) const RAW_NODE: &str = "$sortie::RawNode";

/// The node handed over by the last `RAW_NODE` request on this thread.
pub(super) fn take_raw() -> Option<Node> {
    RAW.with(|r| r.borrow_mut().take())
}

/// The serde deserializer over one node.
struct NodeDe<'a> {
    node: &'a Node,
}

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
    let lenient = LENIENT.with(|l| l.get());
    let template = matches!(&node.kind, NodeKind::Scalar { text, .. } if is_template(text));
    let help = match what {
        // Strict fields (the play's `strategy`, an inventory) are read before any variable is
        // known: a template there is never rendered.
        _ if template && !lenient => {
            "this field is read when the file is loaded, before any variable is known: it takes no template; write the value itself"
        }
        "a whole number" | "an integer" if lenient => {
            "write digits only, e.g. `8080`; a template such as `\"{{ port }}\"` works too"
        }
        "a whole number" | "an integer" => "write digits only, e.g. `8080`",
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
    use crate::yaml::parse;
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
    fn lenient_accepts_templates_for_numbers() {
        let n = p("name: web\nport: \"{{ p }}\"\n");
        assert!(decode::<S>(&n).is_err());
        assert_eq!(decode_lenient::<S>(&n).ok().and_then(|s| s.port), Some(0));
    }
}
