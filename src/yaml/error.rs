//! `DeError`, what went wrong while reading a typed value from a node, and the text encoding
//! that lets such an error keep its span and label while it travels through serde's `custom`
//! (errors of a nested `Spanned` or `Tpl`, and custom errors of hand-written `Deserialize`
//! impls in the model and step kinds).
//!
//! Errors are raised by serde (through `de::Error`) and by the node deserializer in `de`; they
//! leave as `Diagnostic`s via `into_diagnostic`, read by the playbook, inventory and vars
//! loaders.

use std::fmt;

use serde::de;

use crate::diag::{Diagnostic, FileId, Span, did_you_mean};

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
    /// Places the error at `span` unless it already has a place.
    pub(super) fn at(mut self, span: Span) -> DeError {
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

/// A nested error as text that keeps its place when it travels through serde's `custom`.
pub fn carry(e: DeError) -> String {
    encode_span(&e.message, e.span, &e.label, e.help.as_deref())
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

// Errors raised inside a nested `Spanned` travel through serde's `custom` as text; this
// encoding keeps their span and label so the outer layer can restore them.
const SPAN_MARK: char = '\u{1}';

fn encode_span(msg: &str, span: Option<Span>, label: &str, help: Option<&str>) -> String {
    match span {
        Some(s) => format!(
            "{SPAN_MARK}{}:{}:{}:{}:{}{SPAN_MARK}{label}{SPAN_MARK}{}{SPAN_MARK}{msg}",
            s.file.index(),
            s.line,
            s.col,
            s.end_line,
            s.end_col,
            help.unwrap_or("")
        ),
        None => msg.to_string(),
    }
}

/// An error whose message carries an encoded span, label and help, restored to its fields.
pub(super) fn decode_span(e: DeError) -> DeError {
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
