//! The `http` kind: an HTTP request from the runner through the run's one pooled client, with
//! auth, bodies (JSON, form, multipart, raw, file), redirects, TLS settings and an optional
//! atomic `save` of the body. Results: `status`, `headers`, `body`, `json`, `elapsed_ms`, `url`.

use indexmap::IndexMap;
use serde::Deserialize;

use super::{BoolOr, CheckCx, Kind, RunsOn};
use crate::diag::Diagnostic;
use crate::expect::ExpectFields;
use crate::yaml::RawNode;

/// Send an HTTP request from the runner.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// The URL (`http://` or `https://`).
    pub url: String,
    /// The method (default GET).
    pub method: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Query parameters added to the URL.
    #[serde(default)]
    pub query: IndexMap<String, String>,
    /// Authentication: `basic: [user, password]` or `bearer: TOKEN`.
    pub auth: Option<HttpAuth>,
    /// A JSON body (any YAML value).
    pub json: Option<RawNode>,
    /// A form body (`application/x-www-form-urlencoded`).
    pub form: Option<IndexMap<String, String>>,
    /// A multipart body: field → text, or `{ file: PATH, filename?, content_type? }`.
    pub multipart: Option<IndexMap<String, MultipartField>>,
    /// A raw text body.
    pub body: Option<String>,
    /// A body read from a local file (streamed).
    pub body_file: Option<String>,
    /// Follow redirects: true (default, at most 10), false, or the most to follow.
    pub follow_redirects: Option<BoolOr<u32>>,
    /// TLS settings.
    pub tls: Option<HttpTls>,
    /// Stream the response body to this local file (atomically: temporary name, rename).
    pub save: Option<String>,
}

/// `basic: [user, password]` or `bearer: TOKEN`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpAuth {
    /// User and password.
    pub basic: Option<(String, String)>,
    /// A bearer token.
    pub bearer: Option<String>,
}

/// A multipart field: text, or a file.
#[derive(Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum MultipartField {
    Text(String),
    File(MultipartFile),
}

/// A file part of a multipart body.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultipartFile {
    /// Local path of the file (streamed).
    pub file: String,
    /// The file name sent (default the path's base name).
    pub filename: Option<String>,
    /// The part's content type (default `application/octet-stream`).
    pub content_type: Option<String>,
}

impl<'de> Deserialize<'de> for MultipartField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let RawNode(node) = RawNode::deserialize(d)?;
        let r = if node.as_map().is_some() {
            crate::yaml::decode_any::<MultipartFile>(&node).map(MultipartField::File)
        } else {
            crate::yaml::decode_any::<String>(&node).map(MultipartField::Text)
        };
        r.map_err(|e| D::Error::custom(crate::yaml::carry(e)))
    }
}

/// TLS settings for HTTPS.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpTls {
    /// Verify the server certificate (default true). `false` warns on every run.
    pub verify: Option<bool>,
    /// Same as `verify: false`, spelled out.
    pub insecure: Option<bool>,
    /// A PEM file of CA certificates to trust.
    pub ca: Option<String>,
    /// A PEM client certificate for mutual TLS.
    pub client_cert: Option<String>,
    /// The PEM private key of `client_cert`.
    pub client_key: Option<String>,
}

impl Kind for Http {
    fn run<'a>(&'a self, _cx: &'a super::TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(async {
            Err(super::StepError::Protocol(
                "the `http` step is being built".into(),
            ))
        })
    }

    const NAME: &'static str = "http";
    const SUMMARY: &'static str = "Send an HTTP request from the runner and check the response.";
    const RUNS_ON: RunsOn = RunsOn::Runner;
    const EXPECT: ExpectFields = ExpectFields {
        plain: &["status", "body", "elapsed_ms", "url"],
        keyed: &["json", "headers"],
    };
    const DEFAULT_EXPECT: &'static str = "status: { gte: 200, lt: 300 }";

    fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
        let bodies: Vec<&str> = [
            ("json", self.json.is_some()),
            ("form", self.form.is_some()),
            ("multipart", self.multipart.is_some()),
            ("body", self.body.is_some()),
            ("body_file", self.body_file.is_some()),
        ]
        .iter()
        .filter(|(_, g)| *g)
        .map(|(n, _)| *n)
        .collect();
        if bodies.len() > 1 {
            out.push(
                Diagnostic::error(format!(
                    "a request has one body, found `{}` and `{}`",
                    bodies[0], bodies[1]
                ))
                .at(cx
                    .args
                    .get(bodies[1])
                    .map(|n| n.span)
                    .unwrap_or(cx.kind_span))
                .label("second body")
                .help("keep one of `json`, `form`, `multipart`, `body`, `body_file`"),
            );
        }
        if let Some(url) = super::literal(cx.args.get("url"))
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            out.push(
                Diagnostic::error(format!("`{url}` is not an http(s) URL"))
                    .at(cx.args.get("url").map(|n| n.span).unwrap_or(cx.kind_span))
                    .label("expected `http://…` or `https://…`")
                    .help("write the full URL, e.g. `http://{{ host.address }}:8080/health`"),
            );
        }
        if let Some(auth) = &self.auth
            && auth.basic.is_some() == auth.bearer.is_some()
        {
            out.push(
                Diagnostic::error("`auth` takes one of `basic` or `bearer`")
                    .at(cx.args.get("auth").map(|n| n.span).unwrap_or(cx.kind_span))
                    .label("give exactly one")
                    .help("`auth: { basic: [user, password] }` or `auth: { bearer: TOKEN }`"),
            );
        }
        if let Some(tls) = &self.tls
            && tls.client_cert.is_some() != tls.client_key.is_some()
        {
            out.push(
                Diagnostic::error("`client_cert` and `client_key` go together")
                    .at(cx.args.get("tls").map(|n| n.span).unwrap_or(cx.kind_span))
                    .label("one of the pair is missing")
                    .help("give both the PEM certificate and its private key"),
            );
        }
    }
}
