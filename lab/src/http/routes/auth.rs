//! Routes that want credentials: `/basic-auth/{user}/{pass}`, `/bearer[/{token}]`, and a login
//! flow — `POST /login` hands out a token (for the password [`LOGIN_PASSWORD`]) that `/api/me`
//! then accepts as a Bearer token.

use std::sync::atomic::Ordering;

use base64::Engine as _;
use hyper::Response;
use hyper::body::Bytes;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::http::respond::{Body, json_response, unauthorized};
use crate::http::{LOGIN_PASSWORD, RecordedRequest, State};

/// The token of an `Authorization: Bearer …` header.
fn bearer_token(req: &RecordedRequest) -> Option<&str> {
    req.header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// `/basic-auth/{user}/{pass}`: 200 with those Basic credentials, else 401.
pub(super) fn basic(req: &RecordedRequest, user: &str, pass: &str) -> Response<Body> {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    );
    if req.header("authorization") == Some(expected.as_str()) {
        json_response(200, &json!({ "authenticated": true, "user": user }))
    } else {
        unauthorized("Basic realm=\"sortie-lab\"")
    }
}

/// `/bearer[/{token}]`: 200 with a Bearer token (that one, when the path names it), else 401.
pub(super) fn bearer(req: &RecordedRequest, want: Option<&str>) -> Response<Body> {
    let token = bearer_token(req);
    let ok = match (token, want) {
        (Some(t), Some(want)) => t == want,
        (Some(t), None) => !t.is_empty(),
        (None, _) => false,
    };
    if ok {
        json_response(200, &json!({ "authenticated": true, "token": token }))
    } else {
        unauthorized("Bearer")
    }
}

/// `POST /login` with `{"username": U, "password": LOGIN_PASSWORD}` → a fresh token for U.
pub(super) fn login(
    req: &RecordedRequest,
    body: &Bytes,
    host: &str,
    state: &State,
) -> Response<Body> {
    if req.method != "POST" {
        return json_response(405, &json!({ "error": "POST a JSON body" }));
    }
    let Ok(creds) = serde_json::from_slice::<Value>(body) else {
        return json_response(400, &json!({ "error": "the body is not JSON" }));
    };
    let user = creds["username"].as_str().unwrap_or_default();
    if user.is_empty() || creds["password"].as_str() != Some(LOGIN_PASSWORD) {
        return json_response(401, &json!({ "error": "bad credentials" }));
    }
    let n = state.logins.fetch_add(1, Ordering::SeqCst) + 1;
    let digest = sha2::Sha256::digest(format!("{user}/{host}/{n}/{}", std::process::id()));
    let token = hex::encode(&digest[..16]);
    if let Ok(mut tokens) = state.tokens.lock() {
        tokens.insert(token.clone(), user.to_string());
    }
    json_response(
        200,
        &json!({ "token": token, "token_type": "Bearer", "user": user, "expires_in": 3600 }),
    )
}

/// `/api/me`: the user whose `/login` token the request carries, else 401.
pub(super) fn me(req: &RecordedRequest, host: &str, state: &State) -> Response<Body> {
    let user = bearer_token(req).and_then(|t| state.tokens.lock().ok()?.get(t).cloned());
    match user {
        Some(user) => json_response(200, &json!({ "user": user, "host": host })),
        None => unauthorized("Bearer"),
    }
}
