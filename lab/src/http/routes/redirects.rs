//! Routes that send the client elsewhere: `/redirect/{n}` (a chain of n redirects) and
//! `/redirect-to?url=U[&status=S]`. (`/loop/a` ⇄ `/loop/b` are one line each in the router.)

use hyper::Response;
use serde_json::json;

use super::arg;
use crate::http::respond::{Body, json_response, redirect};

/// `/redirect/{n}`: 302 to `/redirect/{n-1}`; `/redirect/0` is 200.
pub(super) fn count_down(n: &str) -> Response<Body> {
    match n.parse::<u32>() {
        Ok(0) => json_response(200, &json!({ "status": "ok", "redirected": true })),
        Ok(n) if n <= 100 => redirect(302, &format!("/redirect/{}", n - 1)),
        _ => json_response(400, &json!({ "error": "redirect count must be 0 to 100" })),
    }
}

/// `/redirect-to?url=U[&status=S]`: S (default 302, any 3xx) to U.
pub(super) fn to(args: &[(String, String)]) -> Response<Body> {
    let status = arg(args, "status")
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (300..400).contains(s))
        .unwrap_or(302);
    match arg(args, "url") {
        Some(url) => redirect(status, url),
        None => json_response(400, &json!({ "error": "give ?url=" })),
    }
}
