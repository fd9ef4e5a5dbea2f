//! Expectations and matchers: what a step's `expect` declares (read from the playbook's YAML
//! nodes, per step kind's list of result fields), and how a declared expectation is checked
//! against a task's result (a JSON value produced by the step kind) into a `Check` that says
//! the field, what was expected and what was found. Failed checks are data, not errors.

use serde::Serialize;
use serde_json::Value as Json;

use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::yaml::{Node, NodeKind, Style, is_template};

/// The matcher names, in the order the docs list them.
pub const MATCHERS: &[&str] = &[
    "eq",
    "ne",
    "contains",
    "not_contains",
    "matches",
    "lt",
    "lte",
    "gt",
    "gte",
    "in",
    "not_in",
    "exists",
    "empty",
    "len",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Contains,
    NotContains,
    Matches,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    NotIn,
    Exists,
    Empty,
    Len,
}

impl Op {
    fn from_name(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "contains" => Op::Contains,
            "not_contains" => Op::NotContains,
            "matches" => Op::Matches,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "in" => Op::In,
            "not_in" => Op::NotIn,
            "exists" => Op::Exists,
            "empty" => Op::Empty,
            "len" => Op::Len,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        MATCHERS[self as usize]
    }
}

/// One matcher: an operation and its argument (a node, templated per host).
#[derive(Clone, Debug, PartialEq)]
pub struct Matcher {
    pub op: Op,
    pub arg: Node,
    /// For `len`: the matchers applied to the length.
    pub nested: Vec<Matcher>,
    pub span: Span,
}

/// One declared expectation: a result field (or a key under a keyed field, such as a JSONPath
/// under `json` or a header name under `headers`) and the matchers that must all hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    pub field: String,
    pub key: Option<String>,
    pub matchers: Vec<Matcher>,
    pub span: Span,
}

impl Expectation {
    /// `status`, or `json["$.status"]`, for messages.
    pub fn label(&self) -> String {
        match &self.key {
            Some(k) => format!("{}[{k:?}]", self.field),
            None => self.field.clone(),
        }
    }
}

/// The result fields a step kind lets `expect` name.
#[derive(Clone, Copy, Debug)]
pub struct ExpectFields {
    /// Fields compared as a whole (`rc`, `status`, `open`).
    pub plain: &'static [&'static str],
    /// Fields holding named entries, each with its own matchers (`json`, `headers`).
    pub keyed: &'static [&'static str],
}

impl ExpectFields {
    pub const NONE: ExpectFields = ExpectFields {
        plain: &[],
        keyed: &[],
    };
    fn all(&self) -> impl Iterator<Item = &'static str> {
        self.plain.iter().chain(self.keyed.iter()).copied()
    }
}

/// Reads an `expect` mapping for a kind. Every problem is collected.
pub fn parse(
    node: &Node,
    kind: &str,
    fields: ExpectFields,
    out: &mut Vec<Diagnostic>,
) -> Vec<Expectation> {
    let mut exps = Vec::new();
    let Some(entries) = node.as_map() else {
        if !node.is_null() {
            out.push(
                Diagnostic::error("`expect` must be a mapping of result fields")
                    .at(node.span)
                    .label(format!("found {}", node.describe()))
                    .help(format!(
                        "fields of `{kind}`: {}",
                        fields.all().collect::<Vec<_>>().join(", ")
                    )),
            );
        }
        return exps;
    };
    if fields.plain.is_empty() && fields.keyed.is_empty() {
        out.push(
            Diagnostic::error(format!("`{kind}` steps take no `expect`"))
                .at(node.span)
                .label("remove this")
                .help("use an `assert` step to check conditions"),
        );
        return exps;
    }
    for (k, v) in entries {
        let name = k.key_text();
        if fields.keyed.contains(&name.as_str()) {
            match v.as_map() {
                Some([]) => out.push(
                    Diagnostic::error(format!("empty `expect.{name}` mapping"))
                        .at(v.span)
                        .label("a check with nothing in it cannot fail")
                        .help(format!("name what to check: `{name}: {{ KEY: VALUE-OR-MATCHERS }}`, or remove `{name}`")),
                ),
                Some(sub) => {
                    for (sk, sv) in sub {
                        if let Some(ms) = parse_matchers(sv, out) {
                            exps.push(Expectation {
                                field: name.clone(),
                                key: Some(sk.key_text()),
                                matchers: ms,
                                span: sk.span,
                            });
                        }
                    }
                }
                None => out.push(
                    Diagnostic::error(format!("`expect.{name}` must be a mapping"))
                        .at(v.span)
                        .label(format!("found {}", v.describe()))
                        .help(format!("write `{name}: {{ KEY: VALUE-OR-MATCHERS }}`")),
                ),
            }
        } else if fields.plain.contains(&name.as_str()) {
            if let Some(ms) = parse_matchers(v, out) {
                exps.push(Expectation {
                    field: name,
                    key: None,
                    matchers: ms,
                    span: k.span,
                });
            }
        } else {
            let label = match did_you_mean(&name, fields.all()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "not a result field of this step kind".to_string(),
            };
            out.push(
                Diagnostic::error(format!("unknown expectation `{name}` for a `{kind}` step"))
                    .at(k.span)
                    .label(label)
                    .help(format!(
                        "fields of `{kind}`: {}",
                        fields.all().collect::<Vec<_>>().join(", ")
                    )),
            );
        }
    }
    exps
}

fn is_matcher_map(n: &Node) -> bool {
    n.as_map().is_some_and(|m| {
        !m.is_empty()
            && m.iter()
                .all(|(k, _)| Op::from_name(&k.key_text()).is_some())
    })
}

/// A literal, a mapping of matchers, or a list of matcher mappings.
fn parse_matchers(v: &Node, out: &mut Vec<Diagnostic>) -> Option<Vec<Matcher>> {
    match &v.kind {
        NodeKind::Map(entries) if entries.is_empty() => {
            out.push(
                Diagnostic::error("empty matcher mapping")
                    .at(v.span)
                    .label("a check with no matcher cannot fail")
                    .help("write a value (`200`), matchers (`{ gte: 200, lt: 300 }`), or `{ eq: {} }` to expect an empty mapping"),
            );
            None
        }
        NodeKind::Map(entries) => {
            let mut ms = Vec::new();
            let mut ok = true;
            for (k, a) in entries {
                let name = k.key_text();
                match Op::from_name(&name) {
                    Some(op) => match matcher(op, a, k.span, out) {
                        Some(m) => ms.push(m),
                        None => ok = false,
                    },
                    None => {
                        ok = false;
                        let label = match did_you_mean(&name, MATCHERS.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => "not a matcher".to_string(),
                        };
                        out.push(
                            Diagnostic::error(format!("unknown matcher `{name}`"))
                                .at(k.span)
                                .label(label)
                                .help(format!(
                                    "matchers: {}; to compare with a mapping write `eq: {{…}}`",
                                    MATCHERS.join(", ")
                                )),
                        );
                    }
                }
            }
            ok.then_some(ms)
        }
        NodeKind::Seq(items) if !items.is_empty() && items.iter().all(is_matcher_map) => {
            let mut ms = Vec::new();
            for it in items {
                ms.extend(parse_matchers(it, out)?);
            }
            Some(ms)
        }
        _ => Some(vec![Matcher {
            op: Op::Eq,
            arg: v.clone(),
            nested: Vec::new(),
            span: v.span,
        }]),
    }
}

fn matcher(op: Op, arg: &Node, span: Span, out: &mut Vec<Diagnostic>) -> Option<Matcher> {
    let mut m = Matcher {
        op,
        arg: arg.clone(),
        nested: Vec::new(),
        span,
    };
    match op {
        Op::Matches => {
            let Some(text) = arg.as_str() else {
                out.push(
                    Diagnostic::error("`matches` takes a regular expression")
                        .at(arg.span)
                        .label(format!("found {}", arg.describe()))
                        .help("write `matches: \"^SSH-2\\\\.0\"`"),
                );
                return None;
            };
            if !is_template(text)
                && let Err(e) = regex::Regex::new(text)
            {
                let msg = e.to_string();
                let last = msg.lines().last().unwrap_or("invalid").trim().to_string();
                out.push(
                    Diagnostic::error("invalid regular expression")
                        .at(arg.span)
                        .label(last)
                        .help("the syntax is Rust's regex crate (like RE2); escape `\\` inside double quotes"),
                );
                return None;
            }
        }
        Op::Exists | Op::Empty
            if !matches!(&arg.kind, NodeKind::Scalar { text, style: Style::Plain }
                if matches!(text.as_str(), "true" | "false") || is_template(text)) =>
        {
            out.push(
                Diagnostic::error(format!("`{}` takes true or false", op.name()))
                    .at(arg.span)
                    .label(format!("found {}", arg.describe()))
                    .help(format!(
                        "write `{}: true` or `{}: false`",
                        op.name(),
                        op.name()
                    )),
            );
            return None;
        }
        Op::In | Op::NotIn
            if !matches!(arg.kind, NodeKind::Seq(_)) && !arg.as_str().is_some_and(is_template) =>
        {
            out.push(
                Diagnostic::error(format!("`{}` takes a list", op.name()))
                    .at(arg.span)
                    .label(format!("found {}", arg.describe()))
                    .help(format!("write `{}: [a, b, c]`", op.name())),
            );
            return None;
        }
        Op::Len => {
            m.nested = if arg.as_map().is_some() {
                parse_matchers(arg, out)?
            } else {
                vec![Matcher {
                    op: Op::Eq,
                    arg: arg.clone(),
                    nested: Vec::new(),
                    span: arg.span,
                }]
            };
        }
        Op::Lt | Op::Lte | Op::Gt | Op::Gte if arg.as_str().is_none() => {
            out.push(
                Diagnostic::error(format!("`{}` takes a number", op.name()))
                    .at(arg.span)
                    .label(format!("found {}", arg.describe()))
                    .help(format!("write `{}: 100`", op.name())),
            );
            return None;
        }
        _ => {}
    }
    Some(m)
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// The result of checking one matcher against a value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    pub field: String,
    pub matcher: &'static str,
    pub expected: Json,
    pub actual: Json,
    pub passed: bool,
    #[serde(skip)]
    pub span: Span,
}

impl Check {
    /// `status: expected eq 200, found 503`.
    pub fn message(&self) -> String {
        format!(
            "{}: expected {} {}, found {}",
            self.field,
            self.matcher,
            short(&self.expected),
            short(&self.actual)
        )
    }
}

/// A value for a message, cut to a readable length.
pub fn short(v: &Json) -> String {
    let s = match v {
        Json::Null => "nothing".to_string(),
        _ => v.to_string(),
    };
    if s.chars().count() > 200 {
        let cut: String = s.chars().take(200).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// Checks matchers (their arguments already rendered) against an actual value (`None` when
/// the field is absent).
pub fn evaluate(
    exp: &Expectation,
    matchers: &[(Matcher, Json)],
    actual: Option<&Json>,
) -> Vec<Check> {
    matchers
        .iter()
        .map(|(m, arg)| {
            let passed = holds(m, arg, actual);
            Check {
                field: exp.label(),
                matcher: m.op.name(),
                expected: arg.clone(),
                actual: actual.cloned().unwrap_or(Json::Null),
                passed,
                span: m.span,
            }
        })
        .collect()
}

fn as_f64(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        Json::Bool(_) | Json::Null | Json::Array(_) | Json::Object(_) => None,
    }
}

/// Loose equality: numbers compare numerically, a number equals its decimal text, lists
/// compare as-is.
pub fn loose_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(_), _) | (_, Json::Number(_)) => match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| loose_eq(p, q))
        }
        (Json::String(x), Json::Bool(y)) | (Json::Bool(y), Json::String(x)) => x == &y.to_string(),
        _ => a == b,
    }
}

/// Equality, where a list given for a value that is not a list means "one of these"
/// (`status: [200, 204]`): a scalar can never equal a list, so nothing else is lost.
fn eq_or_one_of(actual: &Json, expected: &Json) -> bool {
    match (actual, expected) {
        (Json::Array(_), _) => loose_eq(actual, expected),
        (_, Json::Array(options)) => options.iter().any(|o| loose_eq(actual, o)),
        _ => loose_eq(actual, expected),
    }
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn length(v: &Json) -> Option<usize> {
    match v {
        Json::String(s) => Some(s.chars().count()),
        Json::Array(a) => Some(a.len()),
        Json::Object(o) => Some(o.len()),
        Json::Null => Some(0),
        _ => None,
    }
}

fn holds(m: &Matcher, arg: &Json, actual: Option<&Json>) -> bool {
    let truthy =
        |j: &Json| matches!(j, Json::Bool(true)) || matches!(j, Json::String(s) if s == "true");
    match m.op {
        Op::Exists => actual.is_some_and(|a| !a.is_null()) == truthy(arg),
        Op::Empty => actual.and_then(length).is_none_or(|l| l == 0) == truthy(arg),
        _ => {
            let Some(a) = actual else { return false };
            match m.op {
                Op::Eq => eq_or_one_of(a, arg),
                Op::Ne => !eq_or_one_of(a, arg),
                Op::Contains => match a {
                    Json::Array(items) => items.iter().any(|i| loose_eq(i, arg)),
                    Json::Object(o) => o.contains_key(&text(arg)),
                    other => text(other).contains(&text(arg)),
                },
                Op::NotContains => match a {
                    Json::Array(items) => !items.iter().any(|i| loose_eq(i, arg)),
                    Json::Object(o) => !o.contains_key(&text(arg)),
                    other => !text(other).contains(&text(arg)),
                },
                Op::Matches => regex::Regex::new(&text(arg)).is_ok_and(|re| re.is_match(&text(a))),
                Op::Lt | Op::Lte | Op::Gt | Op::Gte => match (as_f64(a), as_f64(arg)) {
                    (Some(x), Some(y)) => match m.op {
                        Op::Lt => x < y,
                        Op::Lte => x <= y,
                        Op::Gt => x > y,
                        _ => x >= y,
                    },
                    _ => false,
                },
                Op::In => arg
                    .as_array()
                    .is_some_and(|l| l.iter().any(|i| loose_eq(i, a))),
                Op::NotIn => arg
                    .as_array()
                    .is_some_and(|l| !l.iter().any(|i| loose_eq(i, a))),
                Op::Len => false, // evaluated through `nested` by the caller
                Op::Exists | Op::Empty => false,
            }
        }
    }
}

/// The length of a value, for `len` matchers.
pub fn len_of(v: Option<&Json>) -> Option<Json> {
    v.and_then(length).map(|l| Json::from(l as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::register_source;
    use crate::yaml::parse as yparse;

    const HTTP: ExpectFields = ExpectFields {
        plain: &["status", "body"],
        keyed: &["json", "headers"],
    };

    fn exps(text: &str) -> (Vec<Expectation>, Vec<Diagnostic>) {
        let f = register_source("e.yml", text);
        let n = yparse(f, text).expect("yaml");
        let mut d = Vec::new();
        let e = parse(&n, "http", HTTP, &mut d);
        (e, d)
    }

    #[test]
    fn literal_matchers_and_keyed_fields() {
        let (e, d) = exps(
            "status: 200\nbody: { contains: ok, not_contains: error }\njson: { \"$.status\": ok }\n",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].matchers[0].op, Op::Eq);
        assert_eq!(e[1].matchers.len(), 2);
        assert_eq!(e[2].label(), "json[\"$.status\"]");
    }

    #[test]
    fn empty_matcher_mappings_are_errors() {
        let (e, d) = exps("status: {}\njson: { \"$.args\": {} }\nheaders: {}\n");
        assert!(e.is_empty());
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(d[0].title, "empty matcher mapping");
        assert_eq!(d[0].span.map(|s| (s.line, s.col)), Some((1, 9)));
        assert_eq!(d[1].title, "empty matcher mapping");
        assert_eq!(d[1].span.map(|s| (s.line, s.col)), Some((2, 19)));
        assert_eq!(d[2].title, "empty `expect.headers` mapping");
        let (e, d) = exps("json: { \"$.args\": { eq: {} } }\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn unknown_fields_and_matchers_are_located() {
        let (_, d) = exps("stauts: 200\nbody: { contain: ok }\n");
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].title, "unknown expectation `stauts` for a `http` step");
        assert_eq!(d[0].label, "did you mean `status`?");
        assert_eq!(d[1].title, "unknown matcher `contain`");
        assert_eq!(d[1].label, "did you mean `contains`?");
        let (_, d) = exps("body: { matches: \"([a-z\" }\n");
        assert_eq!(d[0].title, "invalid regular expression");
    }

    #[test]
    fn evaluation() {
        let e = Expectation {
            field: "rc".into(),
            key: None,
            matchers: vec![],
            span: Span::default(),
        };
        let mk = |op| Matcher {
            op,
            arg: Node::null(Span::default()),
            nested: vec![],
            span: Span::default(),
        };
        let a = serde_json::json!(0);
        let c = evaluate(&e, &[(mk(Op::Eq), serde_json::json!(0))], Some(&a));
        assert!(c[0].passed);
        let c = evaluate(&e, &[(mk(Op::Eq), serde_json::json!(1))], Some(&a));
        assert!(!c[0].passed);
        assert_eq!(c[0].message(), "rc: expected eq 1, found 0");
        let s = serde_json::json!("SSH-2.0-OpenSSH");
        assert!(
            evaluate(
                &e,
                &[(mk(Op::Matches), serde_json::json!("^SSH-2"))],
                Some(&s)
            )[0]
            .passed
        );
        assert!(
            evaluate(
                &e,
                &[(mk(Op::Contains), serde_json::json!("Open"))],
                Some(&s)
            )[0]
            .passed
        );
        assert!(evaluate(&e, &[(mk(Op::Exists), serde_json::json!(false))], None)[0].passed);
        assert!(evaluate(&e, &[(mk(Op::In), serde_json::json!([0, 2]))], Some(&a))[0].passed);
        // A list for a scalar is "one of"; a list for a list is compared whole.
        assert!(evaluate(&e, &[(mk(Op::Eq), serde_json::json!([2, 0]))], Some(&a))[0].passed);
        assert!(!evaluate(&e, &[(mk(Op::Eq), serde_json::json!([1, 2]))], Some(&a))[0].passed);
        let l = serde_json::json!(["a"]);
        assert!(!evaluate(&e, &[(mk(Op::Eq), serde_json::json!(["a", "b"]))], Some(&l))[0].passed);
        assert!(evaluate(&e, &[(mk(Op::Lt), serde_json::json!(5))], Some(&a))[0].passed);
    }
}
