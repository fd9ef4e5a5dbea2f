//! Routes that show what the request and the server look like: `/health`, `/status/{code}`,
//! `/echo`, `/json` (a fixed sample document), `/cookies`, `/cookies/set` and
//! `/response-headers`.

use hyper::Response;
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use serde_json::{Value, json};

use super::{args_json, query_args};
use crate::http::RecordedRequest;
use crate::http::respond::{Body, empty_response, json_response, set_header};

/// `/health`: who answered, on which address.
pub(super) fn health(req: &RecordedRequest, host: &str) -> Response<Body> {
    json_response(
        200,
        &json!({ "status": "ok", "host": host, "address": req.local.ip().to_string() }),
    )
}

/// `/status/{code}`: that status (no body for 204 and 304).
pub(super) fn status(code: &str) -> Response<Body> {
    match code.parse::<u16>().ok().filter(|c| (200..600).contains(c)) {
        Some(code) if code == 204 || code == 304 => empty_response(code),
        Some(code) => json_response(code, &json!({ "status": code })),
        None => json_response(
            400,
            &json!({ "error": format!("bad status code `{code}`") }),
        ),
    }
}

/// `/echo[/…]`: the request as the server read it.
pub(super) fn echo(
    req: &RecordedRequest,
    body: &Bytes,
    host: &str,
    args: &[(String, String)],
) -> Response<Body> {
    let mut headers = serde_json::Map::new();
    for (name, value) in &req.headers {
        let joined = match headers.get(name).and_then(Value::as_str) {
            Some(before) => format!("{before}, {value}"),
            None => value.clone(),
        };
        headers.insert(name.clone(), Value::from(joined));
    }
    let text = String::from_utf8_lossy(body);
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let form = if req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        args_json(&query_args(&text))
    } else {
        Value::Null
    };
    json_response(
        200,
        &json!({
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "args": args_json(args),
            "headers": headers,
            "body": text,
            "body_len": req.body_len,
            "json": parsed,
            "form": form,
            "host": host,
            "version": req.version,
            "tls": req.tls,
            "client_cert": req.client_cert,
        }),
    )
}

/// `/cookies/set?name=value…`: sets those cookies (`Path=/`).
pub(super) fn set_cookies(args: &[(String, String)]) -> Response<Body> {
    let mut resp = json_response(200, &json!({ "set": args_json(args) }));
    for (name, value) in args {
        if let Ok(v) = HeaderValue::from_str(&format!("{name}={value}; Path=/")) {
            resp.headers_mut().append("set-cookie", v);
        }
    }
    resp
}

/// `/cookies`: the cookies the request carried.
pub(super) fn cookies(req: &RecordedRequest) -> Response<Body> {
    let mut cookies = serde_json::Map::new();
    for header in req.headers.iter().filter(|(n, _)| n == "cookie") {
        for pair in header.1.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                cookies.insert(k.to_string(), Value::from(v));
            }
        }
    }
    json_response(200, &json!({ "cookies": cookies }))
}

/// `/response-headers?Name=value`: those headers set on the answer.
pub(super) fn response_headers(args: &[(String, String)]) -> Response<Body> {
    let mut resp = json_response(200, &args_json(args));
    for (name, value) in args {
        set_header(&mut resp, name, value);
    }
    resp
}

/// What `/json` answers.
pub(super) fn sample_document() -> Value {
    json!({
        "name": "sortie-lab",
        "version": "1.2.3",
        "healthy": true,
        "count": 3,
        "ratio": 0.75,
        "tags": ["alpha", "beta", "gamma"],
        "items": [
            { "id": 1, "name": "one", "enabled": true },
            { "id": 2, "name": "two", "enabled": false },
            { "id": 3, "name": "three", "enabled": true }
        ],
        "nested": { "level": { "deep": "value" } },
        "nothing": null
    })
}
