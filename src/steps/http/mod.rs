//! The `http` kind: an HTTP request from the runner, with auth, bodies (JSON, form, multipart,
//! raw, file — files streamed from disk), redirects, TLS settings, per-host cookies and an
//! optional atomic `save` of the body. Input: the step's arguments rendered for one host;
//! output: the result fields `request`, `status`, `reason`, `url`, `headers`, `body`, `json`,
//! `elapsed_ms` (and a few more) that expectations read through [`Http::lookup`] (JSONPath for
//! `json`, any-case names for `headers`) and later steps read as `steps.<id>`.
//!
//! One reqwest client per distinct TLS setting serves the whole run (a process-wide cache), so
//! every host shares pooled connections; proxies come from the environment (`HTTP_PROXY`,
//! `HTTPS_PROXY`, `NO_PROXY`). Redirects and cookies are handled here, not by reqwest: a
//! redirect limit is per step while the client is shared, and cookies belong to one host's run
//! (one jar per inventory host), which a client-wide cookie store cannot express.
//!
//! The parts: the arguments and the `Kind` impl here; `check` (the rules), `json_path`,
//! `request` (the run and its redirects), `prepare` (each hop's request and body), `client`
//! (the clients and cookie jars), `limit` (how long to wait), `explain` (why a request
//! failed), `response` (the body and the result fields).

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value as Json;

use super::{BoolOr, CheckCx, Kind, OneOrMany, RunsOn, TaskCx};
use crate::diag::Diagnostic;
use crate::expect::ExpectFields;
use crate::yaml::RawNode;

mod check;
mod client;
mod explain;
mod json_path;
mod limit;
mod prepare;
mod request;
mod response;

pub use json_path::json_path;

/// Without a step `timeout`: the longest wait for a TCP (and TLS) connection (the client's
/// connect timeout; `limit.rs` bounds the waits after it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Query parameters added to the URL (a list value repeats the parameter).
    #[serde(default)]
    pub query: IndexMap<String, OneOrMany<String>>,
    /// Authentication: `basic: [user, password]` or `bearer: TOKEN`. Sent to the URL's own
    /// origin only, never to a redirect target elsewhere.
    pub auth: Option<HttpAuth>,
    /// A JSON body (any YAML value); sets `Content-Type: application/json`.
    pub json: Option<RawNode>,
    /// A form body (`application/x-www-form-urlencoded`).
    pub form: Option<IndexMap<String, String>>,
    /// A multipart body: field → text, or `{ file: PATH, filename?, content_type? }` (files
    /// are streamed from disk; relative paths are from the playbook's directory).
    pub multipart: Option<IndexMap<String, MultipartField>>,
    /// A raw text body.
    pub body: Option<String>,
    /// A body read from a local file (streamed; relative to the playbook's directory).
    pub body_file: Option<String>,
    /// Follow redirects: true (default, at most 10), false, or the most to follow.
    pub follow_redirects: Option<BoolOr<u32>>,
    /// TLS settings.
    pub tls: Option<HttpTls>,
    /// Stream a 2xx response's body to this local file (relative to the playbook's
    /// directory), atomically: a temporary name in the same folder, then a rename. The whole
    /// body goes to the file; `body` and `json` still hold its first `max_body` bytes for
    /// expectations; `saved` and `sha256` say what was written.
    pub save: Option<String>,
    /// The most bytes of the body kept in memory for `body`, `json` and expectations
    /// (default 1MiB): a number, or `512KiB`, `10MiB`. Past it the body is still read (and
    /// saved, counted and hashed) but not kept, and `json` is not parsed.
    pub max_body: Option<crate::units::ByteSize>,
    /// Send from a host instead of the runner: `host` (the current host) or an inventory
    /// host's name (a template). Every connection (redirects too) goes through its SSH
    /// session; names resolve there; TLS, cookies and redirects work as they do directly.
    pub via: Option<String>,
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
    /// The part's content type (default: guessed from the extension, else
    /// `application/octet-stream`).
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
    /// A PEM file of CA certificates to trust (besides the system's).
    pub ca: Option<String>,
    /// A PEM client certificate for mutual TLS.
    pub client_cert: Option<String>,
    /// The PEM private key of `client_cert`.
    pub client_key: Option<String>,
}

impl HttpTls {
    fn verifies(&self) -> bool {
        self.verify.unwrap_or(true) && !self.insecure.unwrap_or(false)
    }
}

impl Kind for Http {
    const NAME: &'static str = "http";
    const SUMMARY: &'static str = "Send an HTTP request from the runner and check the response.";
    const RUNS_ON: RunsOn = RunsOn::Runner;
    const NAME_FIELDS: &'static [&'static str] = &["url"];
    const EXPECT: ExpectFields = ExpectFields {
        plain: &[
            "status",
            "reason",
            "version",
            "body",
            "body_bytes",
            "body_sha256",
            "elapsed_ms",
            "url",
            "redirects",
        ],
        keyed: &["json", "headers"],
    };
    const DEFAULT_EXPECT: &'static str = "status: { gte: 200, lt: 300 }";

    fn run<'a>(&'a self, cx: &'a TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(request::request(self, cx))
    }

    /// `json` keys are RFC 9535 JSONPath queries (`$.items[0].id`; a key without the leading
    /// `$` is read as `$.KEY`); `headers` keys are names in any case.
    fn lookup(fields: &Json, field: &str, key: Option<&str>) -> Option<Json> {
        match (field, key) {
            ("json", Some(path)) => json_path(fields.get("json")?, path).ok().flatten(),
            ("headers", Some(name)) => {
                let headers = fields.get("headers")?;
                headers
                    .get(name.to_ascii_lowercase())
                    .or_else(|| {
                        headers.as_object().and_then(|o| {
                            o.iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                                .map(|(_, v)| v)
                        })
                    })
                    .cloned()
            }
            _ => super::generic_lookup(fields, field, key),
        }
    }

    fn failure_context(fields: &Json) -> Option<String> {
        let request = fields.get("request")?.as_str()?;
        let mut out = request.to_string();
        if let Some(status) = fields.get("status").and_then(Json::as_u64) {
            out.push_str(&format!(" → {status}"));
            if let Some(reason) = fields
                .get("reason")
                .and_then(Json::as_str)
                .filter(|r| !r.is_empty())
            {
                out.push_str(&format!(" {reason}"));
            }
        }
        match fields.get("body_excerpt").and_then(Json::as_str) {
            Some(excerpt) if !excerpt.is_empty() => out.push_str(&format!("; body: {excerpt}")),
            _ => {}
        }
        let cut = fields
            .get("body_truncated_bytes")
            .and_then(Json::as_u64)
            .unwrap_or(0);
        if cut > 0 {
            let total = fields.get("body_bytes").and_then(Json::as_u64).unwrap_or(0);
            let max = fields.get("max_body").and_then(Json::as_u64).unwrap_or(0);
            out.push_str(&format!(
                "; only the first {max} of {total} body bytes were kept (max_body), so `body` is cut and `json` was not parsed: raise `max_body`"
            ));
        }
        Some(out)
    }

    fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
        check::check(self, cx, out);
    }
}

/// A path from the step: relative ones are from the playbook's directory `dir`.
fn resolve(dir: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use json_path::tests::doc;
    use serde_json::json;

    #[test]
    fn lookup_reads_json_paths_and_headers_in_any_case() {
        let fields = json!({
            "status": 200,
            "headers": { "content-type": "application/json", "x-request-id": "abc" },
            "json": doc(),
        });
        assert_eq!(
            Http::lookup(&fields, "json", Some("$.items[0].name")),
            Some(json!("one"))
        );
        assert_eq!(
            Http::lookup(&fields, "headers", Some("Content-Type")),
            Some(json!("application/json"))
        );
        assert_eq!(
            Http::lookup(&fields, "headers", Some("X-REQUEST-ID")),
            Some(json!("abc"))
        );
        assert_eq!(Http::lookup(&fields, "headers", Some("x-missing")), None);
        assert_eq!(Http::lookup(&fields, "status", None), Some(json!(200)));
        assert_eq!(
            Http::lookup(&json!({ "json": null }), "json", Some("$.a")),
            None
        );
    }

    #[test]
    fn failure_context_names_the_request_and_shows_the_body() {
        let fields = json!({
            "request": "GET http://h/x",
            "status": 503,
            "reason": "Service Unavailable",
            "body_excerpt": "{\"error\":\"down\"}",
        });
        assert_eq!(
            Http::failure_context(&fields).unwrap(),
            "GET http://h/x → 503 Service Unavailable; body: {\"error\":\"down\"}"
        );
        assert_eq!(Http::failure_context(&json!({})), None);
    }
}
