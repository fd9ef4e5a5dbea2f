//! Step kinds: one file per kind, each with its argument type (read strictly from the
//! playbook, documented for the JSON Schema), its rules, its result fields and default
//! expectation, behind the `Kind` trait; and the one registry (`kinds!` below) that generates
//! the `StepSpec` enum, the list of kind names for "did you mean", decoding and dispatch.
//! Adding a kind is one file and one line in the registry.

use std::fmt::Debug;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use crate::diag::{Diagnostic, Span};
pub use crate::error::StepError;
use crate::expect::{ExpectFields, Op};
use crate::inventory::Host;
use crate::yaml::{DeError, Node, decode, decode_lenient};
pub use command::check_guard;

pub mod assert;
mod command;
pub mod dns;
pub mod fleet;
pub mod http;
pub mod local;
pub mod set;
pub mod sftp_get;
pub mod sftp_put;
pub mod ssh;
pub mod tcp;
mod temp_name;
pub mod udp;
pub mod via;

pub use via::via_misplaced;

/// Where a kind runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunsOn {
    /// On the target over its SSH session (`ssh`, `sftp_put`, `sftp_get`).
    Host,
    /// On the machine running sortie (`local`, `http`, `dns`, `tcp`, `udp`).
    Runner,
    /// Nowhere in particular: evaluated by the runner (`assert`, `set`).
    Engine,
}

impl RunsOn {
    /// Where, in words (the README's kind table and the schema say this).
    pub fn describe(self) -> &'static str {
        match self {
            RunsOn::Host => "on the host",
            RunsOn::Runner => "on the runner",
            RunsOn::Engine => "in the engine",
        }
    }
}

/// What a step kind's checks may use about its step.
pub struct CheckCx<'a> {
    pub run_once: bool,
    pub args: &'a Node,
    pub kind_span: Span,
    /// The step's declared expectations (for kinds that check their keys, e.g. JSONPath).
    pub expect: &'a [crate::expect::Expectation],
}

/// One step kind.
pub trait Kind:
    DeserializeOwned + schemars::JsonSchema + Clone + Debug + Send + Sync + 'static
{
    /// The key that names the kind in a step (`ssh`, `http`, …).
    const NAME: &'static str;
    /// One line for the docs and `sortie schema`.
    const SUMMARY: &'static str;
    const RUNS_ON: RunsOn;
    /// The result fields `expect` may name.
    const EXPECT: ExpectFields;
    /// The expectation used when a step declares none (YAML text; "" for none).
    const DEFAULT_EXPECT: &'static str;
    /// Whether `expect` and `timeout` may also stand inside the kind's mapping
    /// (false for `set`, whose keys are variable names).
    const LIFTS_STEP_FIELDS: bool = true;

    /// Whether the step's result fields become host variables for later steps (`set`).
    const DEFINES_VARS: bool = false;
    /// Argument fields that say what a step does, in order of preference: the first one a
    /// step has names it when it has no `name` (`http https://…/health`).
    const NAME_FIELDS: &'static [&'static str] = &[];

    /// What a step of this kind does, from its arguments as written (for its display name).
    fn describe(args: &Node) -> Option<String> {
        if let Some(text) = args.as_str() {
            return Some(text.to_string());
        }
        Self::NAME_FIELDS.iter().find_map(|k| {
            args.get(k).map(|n| match n.as_str() {
                Some(s) => s.to_string(),
                None => n.to_json().to_string(),
            })
        })
    }

    /// Whether a plain string may stand for the arguments (`ssh: "uptime"`; see
    /// `from_scalar`).
    const SHORT_FORM: bool = false;

    /// Argument fields rendered as shell commands (the shell-injection guard applies).
    /// A short-form scalar of such a kind is a command too.
    const COMMAND_FIELDS: &'static [&'static str] = &[];
    /// Argument fields kept as written (expressions the kind evaluates itself).
    const RAW_FIELDS: &'static [&'static str] = &[];

    /// A result field, or a key under a keyed field, for expectations.
    fn lookup(fields: &Json, field: &str, key: Option<&str>) -> Option<Json> {
        generic_lookup(fields, field, key)
    }

    /// The two values one matcher compares: the result field as `lookup` reads it and the
    /// rendered expected value. A kind may normalise both (`dns` compares answer lists as sets).
    fn expectation_values(
        fields: &Json,
        field: &str,
        key: Option<&str>,
        _op: Op,
        expected: Json,
    ) -> (Option<Json>, Json) {
        (Self::lookup(fields, field, key), expected)
    }

    /// What to add to a failed expectation's message: what was asked and a glimpse of the
    /// answer (for `http`, the request line, the status and a body excerpt).
    fn failure_context(_fields: &Json) -> Option<String> {
        None
    }

    /// Runs the step with its arguments rendered for this host.
    fn run<'a>(&'a self, cx: &'a TaskCx<'a>) -> StepFuture<'a>;

    /// The short form (`ssh: "uptime"`), when the kind has one.
    fn from_scalar(_node: &Node) -> Option<Self> {
        None
    }

    /// Kind-specific rules beyond the types (exactly one source, a per-host dest, …).
    fn check(&self, _cx: &CheckCx<'_>, _out: &mut Vec<Diagnostic>) {}
}

/// What a step produced: its result fields (`rc`, `status`, …; an object), whether it changed
/// something, and, when the kind itself decided the outcome, why it was skipped or failed.
#[derive(Clone, Debug, Default)]
pub struct StepOutput {
    pub fields: serde_json::Map<String, Json>,
    pub changed: bool,
    /// The step decided not to act (e.g. `creates` exists): status ok, with this reason.
    pub skipped: Option<String>,
    /// The kind's own verdict (an `assert` that is false): status failed, with this message.
    pub failure: Option<String>,
    pub warnings: Vec<String>,
}

impl StepOutput {
    pub fn with(mut self, key: &str, value: impl Into<Json>) -> StepOutput {
        self.fields.insert(key.to_string(), value.into());
        self
    }
}

/// The future a step's `run` returns.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<StepOutput, StepError>> + Send + 'a>>;

/// Bounds on what a step keeps in memory.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes kept per output stream (stdout, stderr, HTTP body); the rest is counted.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output: 1 << 20,
        }
    }
}

/// Everything a running step may use: its host, the host's SSH connection (opened on first
/// use), the template context, the playbook's directory, cancellation and limits.
pub struct TaskCx<'a> {
    pub host: &'a Host,
    /// The rendered arguments (for spans in messages).
    pub args: &'a Node,
    pub ctx: &'a minijinja::Value,
    pub dir: &'a Path,
    pub conn: &'a crate::conn::HostConn,
    pub cancel: &'a CancellationToken,
    pub limits: Limits,
    /// The step's timeout, when it has one (kinds pass it to their own network waits).
    pub timeout: Option<std::time::Duration>,
    /// `unsafe_shell` of the step.
    pub unsafe_shell: bool,
    /// A `fleet` step's meeting point with the other hosts of its batch.
    pub fleet: Option<std::sync::Arc<fleet::Barrier>>,
    /// The host's slots (group limits, hosts in flight), given back while it waits.
    pub slots: Option<std::sync::Arc<fleet::Slots>>,
    /// The gateways `via` probes go through (`via.rs`).
    pub gateways: &'a crate::conn::via::Gateways,
}

/// SFTP needs an SSH session, which a host run on the runner (`ansible_connection: local`)
/// does not have.
fn local_host_refuses(cx: &TaskCx<'_>, kind: &str) -> Result<(), StepError> {
    if cx.host.local {
        return Err(StepError::Protocol(format!(
            "`{kind}` needs SSH, and host `{}` is `ansible_connection: local` (run on the runner): use a `local` step (`cp`, `install`) for it, or remove `ansible_connection: local`",
            cx.host.name
        )));
    }
    Ok(())
}

fn run_kind<'a, K: Kind>(node: &'a Node, cx: &'a TaskCx<'a>) -> StepFuture<'a> {
    Box::pin(async move {
        let spec: K = match K::from_scalar(node) {
            Some(k) => k,
            None => decode::<K>(node).map_err(|e| {
                let mut d = e.into_diagnostic();
                d.title = format!("{} (after rendering templates)", d.title);
                StepError::Template(d)
            })?,
        };
        spec.run(cx).await
    })
}

/// Renders a step's arguments for one host: command fields through the shell guard, raw
/// fields untouched, everything else with native types kept.
pub fn render_args(
    kind: &str,
    node: &Node,
    ctx: &minijinja::Value,
    unsafe_shell: bool,
) -> Result<Node, Diagnostic> {
    use crate::template::{Place, templates};
    use crate::yaml::NodeKind;
    let (command, raw) = field_rules(kind);
    let t = templates();
    match &node.kind {
        NodeKind::Scalar { text, .. } if !command.is_empty() => {
            let out = t.render_command(text, Place::of(node), ctx, unsafe_shell)?;
            Ok(Node::scalar(out, crate::yaml::Style::Quoted, node.span))
        }
        NodeKind::Scalar { .. } if !raw.is_empty() => Ok(node.clone()),
        NodeKind::Map(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let key = k.key_text();
                let value = if command.contains(&key.as_str()) && v.as_str().is_some() {
                    let text = v.as_str().unwrap_or_default();
                    Node::scalar(
                        t.render_command(text, Place::of(v), ctx, unsafe_shell)?,
                        crate::yaml::Style::Quoted,
                        v.span,
                    )
                } else if raw.contains(&key.as_str()) {
                    v.clone()
                } else {
                    t.render_node(v, ctx)?
                };
                out.push((t.render_node(k, ctx)?, value));
            }
            Ok(Node {
                span: node.span,
                kind: NodeKind::Map(out),
            })
        }
        _ => t.render_node(node, ctx),
    }
}

/// `fields[field]`, then `[key]` (exact, else case-insensitive).
pub fn generic_lookup(fields: &Json, field: &str, key: Option<&str>) -> Option<Json> {
    let v = fields.get(field)?;
    match key {
        None => Some(v.clone()),
        Some(k) => match v.get(k) {
            Some(x) => Some(x.clone()),
            None => v.as_object().and_then(|o| {
                o.iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(k))
                    .map(|(_, x)| x.clone())
            }),
        },
    }
}

fn decode_kind<K: Kind>(node: &Node) -> Result<K, DeError> {
    if let Some(k) = K::from_scalar(node) {
        return Ok(k);
    }
    decode_lenient::<K>(node)
}

macro_rules! kinds {
    ($($variant:ident($module:ident::$ty:ident)),* $(,)?) => {
        /// The payload of one step: the arguments of its kind.
        #[derive(Clone, Debug)]
        #[allow(clippy::large_enum_variant)]
        pub enum StepSpec {
            $($variant($module::$ty)),*
        }

        /// Every kind name, in registry order.
        pub const KIND_NAMES: &[&str] = &[$(<$module::$ty as Kind>::NAME),*];

        impl StepSpec {
            /// Reads a kind's arguments (templates allowed anywhere) from its node.
            /// `None` when `kind` names no kind.
            pub fn decode(kind: &str, node: &Node) -> Option<Result<StepSpec, DeError>> {
                $(
                    if kind == <$module::$ty as Kind>::NAME {
                        return Some(decode_kind::<$module::$ty>(node).map(StepSpec::$variant));
                    }
                )*
                None
            }

            pub fn name(&self) -> &'static str {
                match self { $(StepSpec::$variant(_) => <$module::$ty as Kind>::NAME),* }
            }

            pub fn runs_on(&self) -> RunsOn {
                match self { $(StepSpec::$variant(_) => <$module::$ty as Kind>::RUNS_ON),* }
            }

            /// What the step does, from its arguments as written (for its display name).
            pub fn describe(&self, args: &Node) -> Option<String> {
                match self { $(StepSpec::$variant(_) => <$module::$ty as Kind>::describe(args)),* }
            }

            /// Whether the step's result fields become host variables (`set`).
            pub fn defines_vars(&self) -> bool {
                match self { $(StepSpec::$variant(_) => <$module::$ty as Kind>::DEFINES_VARS),* }
            }

            pub fn expect_fields(&self) -> ExpectFields {
                match self { $(StepSpec::$variant(_) => <$module::$ty as Kind>::EXPECT),* }
            }

            pub fn default_expect(&self) -> &'static str {
                match self { $(StepSpec::$variant(_) => <$module::$ty as Kind>::DEFAULT_EXPECT),* }
            }

            pub fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
                match self { $(StepSpec::$variant(s) => s.check(cx, out)),* }
            }

            /// A result field for expectations, as the kind reads it.
            pub fn lookup(&self, fields: &Json, field: &str, key: Option<&str>) -> Option<Json> {
                match self { $(StepSpec::$variant(_) => <$module::$ty as Kind>::lookup(fields, field, key)),* }
            }

            /// What one matcher compares, as the kind reads it: (actual, expected).
            pub fn expectation_values(&self, fields: &Json, field: &str, key: Option<&str>, op: Op, expected: Json) -> (Option<Json>, Json) {
                match self { $(StepSpec::$variant(_) => <$module::$ty as Kind>::expectation_values(fields, field, key, op, expected)),* }
            }

            /// More for a failed expectation's message, as the kind sees it.
            pub fn failure_context(&self, fields: &Json) -> Option<String> {
                match self { $(StepSpec::$variant(_) => <$module::$ty as Kind>::failure_context(fields)),* }
            }

            /// Reads the rendered arguments as this kind and runs the step.
            pub fn run<'a>(&self, rendered: &'a Node, cx: &'a TaskCx<'a>) -> StepFuture<'a> {
                match self { $(StepSpec::$variant(_) => run_kind::<$module::$ty>(rendered, cx)),* }
            }
        }

        /// A kind's command and raw fields.
        fn field_rules(kind: &str) -> (&'static [&'static str], &'static [&'static str]) {
            $(
                if kind == <$module::$ty as Kind>::NAME {
                    return (<$module::$ty as Kind>::COMMAND_FIELDS, <$module::$ty as Kind>::RAW_FIELDS);
                }
            )*
            (&[], &[])
        }

        /// Whether a kind lets `expect`/`timeout` stand inside its mapping.
        pub fn lifts_step_fields(kind: &str) -> bool {
            $(
                if kind == <$module::$ty as Kind>::NAME {
                    return <$module::$ty as Kind>::LIFTS_STEP_FIELDS;
                }
            )*
            false
        }

        /// Each kind as the playbook schema describes it.
        pub fn kind_schemas(g: &mut schemars::SchemaGenerator) -> Vec<KindSchema> {
            vec![$(KindSchema {
                name: <$module::$ty as Kind>::NAME,
                summary: <$module::$ty as Kind>::SUMMARY,
                runs_on: <$module::$ty as Kind>::RUNS_ON,
                short_form: <$module::$ty as Kind>::SHORT_FORM,
                lifts_step_fields: <$module::$ty as Kind>::LIFTS_STEP_FIELDS,
                args: g.subschema_for::<$module::$ty>(),
            }),*]
        }

        /// Where each kind runs, in registry order.
        pub const KIND_RUNS_ON: &[(&str, RunsOn)] = &[$((<$module::$ty as Kind>::NAME, <$module::$ty as Kind>::RUNS_ON)),*];
    };
}

kinds! {
    Ssh(ssh::Ssh),
    SftpPut(sftp_put::SftpPut),
    SftpGet(sftp_get::SftpGet),
    Http(http::Http),
    Dns(dns::Dns),
    Tcp(tcp::Tcp),
    Udp(udp::Udp),
    Local(local::Local),
    Assert(assert::Assert),
    Set(set::Set),
    Fleet(fleet::Fleet),
}

/// One kind, for the playbook schema: its key, its summary, where it runs, whether a string
/// may stand for its arguments, whether `expect`/`timeout` may stand inside them, and the
/// schema of its arguments.
pub struct KindSchema {
    pub name: &'static str,
    pub summary: &'static str,
    pub runs_on: RunsOn,
    pub short_form: bool,
    pub lifts_step_fields: bool,
    pub args: schemars::Schema,
}

/// A value written either alone or as a list (`tags: web` or `tags: [web, db]`).
#[derive(Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

impl<'de, T: DeserializeOwned> serde::Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let crate::yaml::RawNode(node) = crate::yaml::RawNode::deserialize(d)?;
        let r = match node.as_seq() {
            Some(_) => crate::yaml::decode_any::<Vec<T>>(&node).map(OneOrMany::Many),
            None => crate::yaml::decode_any::<T>(&node).map(OneOrMany::One),
        };
        r.map_err(|e| D::Error::custom(crate::yaml::carry(e)))
    }
}

/// `true`/`false`, or settings (`tls: true` or `tls: { ca: … }`).
#[derive(Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum BoolOr<T> {
    Bool(bool),
    Value(T),
}

impl<'de, T: DeserializeOwned> serde::Deserialize<'de> for BoolOr<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let crate::yaml::RawNode(node) = crate::yaml::RawNode::deserialize(d)?;
        let r = if node.describe() == "a boolean"
            || node.as_str().is_some_and(crate::yaml::lenient_template)
        {
            crate::yaml::decode_any::<bool>(&node).map(BoolOr::Bool)
        } else {
            crate::yaml::decode_any::<T>(&node).map(BoolOr::Value)
        };
        r.map_err(|e| D::Error::custom(crate::yaml::carry(e)))
    }
}

/// Is this text a literal (not a template) that fails `check`? Helper for kind rules.
pub fn literal(node: Option<&Node>) -> Option<&str> {
    node.and_then(Node::as_str)
        .filter(|t| !crate::yaml::is_template(t))
}
