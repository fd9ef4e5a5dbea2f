//! The request of each hop, for `request.rs`: the step's method, URL and headers checked
//! (`method_and_url`, `header_map`), and `Prepared`, which builds one hop's request from them:
//! credentials (headers and `auth`) only to the first URL's origin, the host's cookies, and
//! the body (JSON, form, text, a file or multipart, files streamed from the playbook's
//! directory), built afresh for each hop.

use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;
use reqwest::cookie::CookieStore as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use super::explain::describe;
use super::{Http, MultipartField, MultipartFile, resolve};
use crate::error::StepError;
use crate::steps::TaskCx;
use crate::steps::via::Route;
use crate::yaml::RawNode;

/// The step's method and URL (with `query` added), checked.
pub(super) fn method_and_url(spec: &Http) -> Result<(Method, Url), StepError> {
    let method_text = spec
        .method
        .as_deref()
        .unwrap_or("GET")
        .trim()
        .to_ascii_uppercase();
    let method = Method::from_bytes(method_text.as_bytes())
        .map_err(|_| StepError::Protocol(format!("`{method_text}` is not an HTTP method")))?;
    let mut url = Url::parse(spec.url.trim())
        .map_err(|e| StepError::Protocol(format!("`{}` is not a valid URL: {e}", spec.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(StepError::Protocol(format!(
            "`{}` is not an http(s) URL",
            spec.url
        )));
    }
    if !spec.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &spec.query {
            for value in v.clone().into_vec() {
                pairs.append_pair(k, &value);
            }
        }
    }
    Ok((method, url))
}

/// The step's `headers`, checked.
pub(super) fn header_map(spec: &Http) -> Result<HeaderMap, StepError> {
    let mut headers = HeaderMap::new();
    for (k, v) in &spec.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| StepError::Protocol(format!("`{k}` is not a valid header name")))?;
        let value = HeaderValue::from_str(v).map_err(|_| {
            StepError::Protocol(format!(
                "the value of header `{k}` has characters HTTP does not allow"
            ))
        })?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Whether two URLs share scheme, host and port (where credentials may go).
pub(super) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Everything a hop needs besides its URL and method.
pub(super) struct Prepared<'a> {
    pub spec: &'a Http,
    pub cx: &'a TaskCx<'a>,
    pub client: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
    /// The step's own headers.
    pub headers: HeaderMap,
    /// The first URL: credentials go to its origin only.
    pub origin: Url,
    /// The via host the requests go through, and the request id its gateway knows them by.
    pub via: Option<(Route, String)>,
}

/// Headers that carry credentials: dropped when a redirect leaves the first URL's origin.
const SENSITIVE: &[&str] = &["authorization", "cookie", "proxy-authorization"];

impl Prepared<'_> {
    /// One hop's request. Bodies are built afresh each time, so a 307/308 redirect can send a
    /// streamed file again.
    pub(super) async fn build(
        &self,
        method: &Method,
        url: &Url,
        with_body: bool,
    ) -> Result<reqwest::Request, StepError> {
        let spec = self.spec;
        let trusted = same_origin(url, &self.origin);
        let mut headers = self.headers.clone();
        if !trusted {
            for name in SENSITIVE {
                headers.remove(*name);
            }
        }
        if let Some(cookies) = self.jar.cookies(url) {
            let merged = match headers
                .get(reqwest::header::COOKIE)
                .and_then(|v| v.to_str().ok())
            {
                Some(own) => HeaderValue::from_str(&format!(
                    "{own}; {}",
                    cookies.to_str().unwrap_or_default()
                ))
                .unwrap_or(cookies),
                None => cookies,
            };
            headers.insert(reqwest::header::COOKIE, merged);
        }
        let mut rb = self
            .client
            .request(method.clone(), url.clone())
            .headers(headers);
        if trusted && let Some(auth) = &spec.auth {
            if let Some((user, pass)) = &auth.basic {
                rb = rb.basic_auth(user, Some(pass));
            } else if let Some(token) = &auth.bearer {
                rb = rb.bearer_auth(token);
            }
        }
        if with_body {
            rb = self.body(rb).await?;
        }
        rb.build().map_err(|e| {
            StepError::Protocol(format!(
                "{method} {url}: cannot build the request: {}",
                describe(&e)
            ))
        })
    }

    /// The step's body, if it has one: JSON, form, text, a file, or multipart.
    async fn body(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, StepError> {
        let spec = self.spec;
        let dir = self.cx.dir;
        if let Some(RawNode(node)) = &spec.json {
            return Ok(rb.json(&node.to_json()));
        }
        if let Some(form) = &spec.form {
            return Ok(rb.form(form));
        }
        if let Some(text) = &spec.body {
            return Ok(rb.body(text.clone()));
        }
        if let Some(file) = &spec.body_file {
            return file_body(rb, &resolve(dir, file)).await;
        }
        if let Some(fields) = &spec.multipart {
            return Ok(rb.multipart(multipart_form(fields, dir).await?));
        }
        Ok(rb)
    }
}

/// A body streamed from a local file, with its length.
async fn file_body(
    rb: reqwest::RequestBuilder,
    path: &Path,
) -> Result<reqwest::RequestBuilder, StepError> {
    let f = tokio::fs::File::open(path)
        .await
        .map_err(|e| StepError::Io(format!("body_file `{}`: {e}", path.display())))?;
    let len = f
        .metadata()
        .await
        .map_err(|e| StepError::Io(format!("body_file `{}`: {e}", path.display())))?
        .len();
    // A known length goes out as Content-Length rather than chunked.
    Ok(rb
        .header(reqwest::header::CONTENT_LENGTH, len)
        .body(reqwest::Body::from(f)))
}

/// A multipart body: text fields as they are, file fields streamed from disk.
async fn multipart_form(
    fields: &IndexMap<String, MultipartField>,
    dir: &Path,
) -> Result<reqwest::multipart::Form, StepError> {
    let mut form = reqwest::multipart::Form::new();
    for (name, field) in fields {
        form = match field {
            MultipartField::Text(t) => form.text(name.clone(), t.clone()),
            MultipartField::File(f) => form.part(name.clone(), file_part(name, f, dir).await?),
        };
    }
    Ok(form)
}

/// One file part, named and typed as the step says.
async fn file_part(
    name: &str,
    f: &MultipartFile,
    dir: &Path,
) -> Result<reqwest::multipart::Part, StepError> {
    let path = resolve(dir, &f.file);
    let mut part = reqwest::multipart::Part::file(&path).await.map_err(|e| {
        StepError::Io(format!(
            "multipart field `{name}`: cannot read `{}`: {e}",
            path.display()
        ))
    })?;
    if let Some(n) = &f.filename {
        part = part.file_name(n.clone());
    }
    if let Some(ct) = &f.content_type {
        part = part.mime_str(ct).map_err(|_| {
            StepError::Protocol(format!(
                "multipart field `{name}`: `{ct}` is not a content type"
            ))
        })?;
    }
    Ok(part)
}
