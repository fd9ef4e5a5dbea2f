//! Building the lab HTTP server's responses: the body type every route answers with, JSON and
//! empty answers, redirects, 401s, and headers set only when HTTP allows them.

use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

/// Response bodies: whole, or streamed (and possibly cut off with an error).
pub(super) type Body = BoxBody<Bytes, std::io::Error>;

pub(super) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(super) fn json_response(status: u16, body: &Value) -> Response<Body> {
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    set_header(&mut resp, "content-type", "application/json");
    resp
}

pub(super) fn empty_response(status: u16) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp
}

pub(super) fn redirect(status: u16, location: &str) -> Response<Body> {
    let mut resp = json_response(status, &json!({ "location": location }));
    set_header(&mut resp, "location", location);
    resp
}

pub(super) fn unauthorized(scheme: &str) -> Response<Body> {
    let mut resp = json_response(401, &json!({ "authenticated": false }));
    set_header(&mut resp, "www-authenticate", scheme);
    resp
}

/// Sets a header; a name or value HTTP does not allow is skipped.
pub(super) fn set_header(resp: &mut Response<Body>, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        resp.headers_mut().insert(name, value);
    }
}
