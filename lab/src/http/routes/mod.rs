//! The lab HTTP server's routes: [`route`] picks the handler by the request's path, and the
//! handlers live by what they serve — [`inspect`] (what the request and the server look like),
//! [`redirects`], [`bodies`] (slow, cut-off, sized and multipart bodies) and [`auth`] (Basic,
//! Bearer, a login that hands out tokens). Query strings are read here.

mod auth;
mod bodies;
mod inspect;
mod redirects;

use hyper::Response;
use hyper::body::Bytes;
use serde_json::{Value, json};

use super::respond::{Body, json_response, redirect};
use super::{RecordedRequest, State};

/// The answer to one request (already read whole and recorded); `host` is the name of the
/// address it was sent to.
pub(super) async fn route(
    req: &RecordedRequest,
    body: &Bytes,
    host: &str,
    state: &State,
) -> Response<Body> {
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let args = query_args(req.query.as_deref().unwrap_or(""));
    match segments.as_slice() {
        ["health"] => inspect::health(req, host),
        ["status", code] => inspect::status(code),
        ["echo", ..] => inspect::echo(req, body, host, &args),
        ["redirect", n] => redirects::count_down(n),
        ["redirect-to"] => redirects::to(&args),
        ["loop", "a"] => redirect(302, "/loop/b"),
        ["loop", "b"] => redirect(302, "/loop/a"),
        ["slow"] => bodies::slow(&args).await,
        ["slow-body"] => bodies::slow_body(&args),
        ["truncated", n] => bodies::truncated(n),
        ["json"] => json_response(200, &inspect::sample_document()),
        ["bytes", n] => bodies::bytes(n),
        ["binary", n] => bodies::binary(n),
        ["encoded", how] => bodies::encoded(how, &inspect::sample_document()),
        ["basic-auth", user, pass] => auth::basic(req, user, pass),
        ["bearer", rest @ ..] if rest.len() <= 1 => auth::bearer(req, rest.first().copied()),
        ["login"] => auth::login(req, body, host, state),
        ["api", "me"] => auth::me(req, host, state),
        ["cookies", "set"] => inspect::set_cookies(&args),
        ["cookies"] => inspect::cookies(req),
        ["upload"] => bodies::upload(req, body).await,
        ["response-headers"] => inspect::response_headers(&args),
        _ => json_response(404, &json!({ "error": "not found", "path": req.path })),
    }
}

/// The first value of query argument `name`.
fn arg<'a>(args: &'a [(String, String)], name: &str) -> Option<&'a str> {
    args.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `a=1&b=x+y` → [("a","1"), ("b","x y")], percent-decoded.
fn query_args(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

/// Args as a JSON object: one value per name, or a list when a name repeats.
fn args_json(args: &[(String, String)]) -> Value {
    let mut map = serde_json::Map::new();
    for (k, v) in args {
        match map.get_mut(k) {
            Some(Value::Array(list)) => list.push(Value::from(v.as_str())),
            Some(first) => *first = Value::Array(vec![first.clone(), Value::from(v.as_str())]),
            None => {
                map.insert(k.clone(), Value::from(v.as_str()));
            }
        }
    }
    Value::Object(map)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%e2%9c%93"), "✓");
    }
}
