//! Values that keep their YAML: `RawNode` (the node itself, read later), `Tpl<T>` (a typed
//! value that may be written as a template, read per host after rendering) and `Spanned<T>`
//! (a value with the span of its node).
//!
//! They appear as fields of the playbook model and step kinds and are filled by the node
//! deserializer in `de` (a `RawNode` only there); `Tpl::resolve` takes the runner's template
//! renderer and gives the typed value or a `Diagnostic`.

use std::fmt;

use serde::de::{self, DeserializeOwned, Visitor};

use super::Node;
use super::de::{RAW_NODE, decode, decode_any, decode_lenient, take_raw};
use super::error::carry;
use crate::diag::{Diagnostic, Span};

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
                take_raw()
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
            decode_lenient::<T>(&node).map_err(|e| de::Error::custom(carry(e.at(node.span))))?;
            return Ok(Tpl { node, value: None });
        }
        let value =
            decode_any::<T>(&node).map_err(|e| de::Error::custom(carry(e.at(node.span))))?;
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
        // Carry the span through the outer deserializer's error type.
        let value =
            decode_any::<T>(&node).map_err(|e| de::Error::custom(carry(e.at(node.span))))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::register_source;
    use crate::yaml::parse;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct S {
        name: String,
        port: Option<u16>,
    }

    fn p(text: &str) -> Node {
        let f = register_source("t.yml", text);
        parse(f, text).expect("parses")
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
}
