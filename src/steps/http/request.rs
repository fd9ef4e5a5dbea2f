//! The `http` kind's run (`request`, called by `Kind::run` in `mod.rs` with the step's
//! arguments rendered for one host): the request checked and prepared (`prepare.rs`), sent
//! with the run's client for its TLS settings and the host's cookies (`client.rs`), redirects
//! followed here (the limit is per step while the client is shared; credentials stay with the
//! first origin), failures explained (`explain.rs`), and the final answer turned into the
//! step's result (`response.rs`).

use std::sync::Arc;
use std::time::Instant;

use reqwest::cookie::CookieStore as _;
use reqwest::{Method, StatusCode, Url};

use super::Http;
use super::client::{ClientKey, client, jar, via_client};
use super::explain::{classify, closed_without_reason, tls_help, tls_reason};
use super::limit::Limit;
use super::prepare::{Prepared, header_map, method_and_url, same_origin};
use super::response::{Answer, BodyRules, result};
use crate::conn::via::Failure;
use crate::error::StepError;
use crate::steps::via::Route;
use crate::steps::{BoolOr, StepOutput, TaskCx};

/// Redirects followed when `follow_redirects` is not given (curl's and requests' habit is
/// similar; enough for any sane login or canonical-URL chain).
const DEFAULT_REDIRECTS: u32 = 10;

/// Runs the step: sends the request, follows redirects, reads the answer.
pub(super) async fn request(spec: &Http, cx: &TaskCx<'_>) -> Result<StepOutput, StepError> {
    let started = Instant::now();
    let limit = Limit::for_step(cx.timeout);
    let (method, url) = method_and_url(spec)?;
    let headers = header_map(spec)?;
    let tls = spec.tls.clone().unwrap_or_default();
    let mut out = StepOutput::default();
    if !tls.verifies() {
        out.warnings.push(format!(
            "TLS certificates are not verified for {}: anyone on the path can impersonate the server",
            url.host_str().unwrap_or("this URL")
        ));
    }
    let key = ClientKey::of(&tls, cx.dir);
    let route = Route::of(spec.via.as_deref(), cx).await?;
    let (client, tls_config, via) = match route {
        Some(r) if r.gateway.is_some() => {
            let g = r.gateway.clone().ok_or(StepError::Cancelled)?;
            let user = g.request_id();
            let (c, t) = via_client(&key, &g.proxy_url(&user)).map_err(StepError::Io)?;
            (c, t, Some((r, user)))
        }
        r => {
            let (c, t) = client(&key).map_err(StepError::Io)?;
            (c, t, r.map(|r| (r, String::new())))
        }
    };
    if let Some((r, _)) = &via {
        out = out.with("via", r.name.clone());
    }
    let prepared = Prepared {
        spec,
        cx,
        client,
        jar: jar(&cx.host.name),
        headers,
        origin: url.clone(),
        via,
    };
    let request_line = format!("{method} {url}");
    let answer = follow(&prepared, limit, &tls_config, method, url, &request_line).await?;
    let body = BodyRules {
        save: spec.save.as_deref(),
        max: spec.max_body.map_or(cx.limits.max_output, |m| {
            usize::try_from(m.0).unwrap_or(usize::MAX)
        }),
    };
    result(out, answer, request_line, started, limit, cx, body).await
}

/// Hops: sends, keeps cookies, follows a redirect when allowed; the last response.
async fn follow(
    prepared: &Prepared<'_>,
    limit: Limit,
    tls_config: &Arc<rustls::ClientConfig>,
    mut method: Method,
    mut url: Url,
    request_line: &str,
) -> Result<Answer, StepError> {
    let max_redirects = match prepared.spec.follow_redirects {
        None | Some(BoolOr::Bool(true)) => DEFAULT_REDIRECTS,
        Some(BoolOr::Bool(false)) => 0,
        Some(BoolOr::Value(n)) => n,
    };
    let mut redirects: Vec<String> = Vec::new();
    let mut with_body = true;
    loop {
        let hop = format!("{method} {url}");
        let req = prepared.build(&method, &url, with_body).await?;
        let response = send(prepared, limit, tls_config, req, &url, &hop).await?;
        prepared.jar.set_cookies(
            &mut response
                .headers()
                .get_all(reqwest::header::SET_COOKIE)
                .iter(),
            &url,
        );
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let Some(location) = location.filter(|_| status.is_redirection() && max_redirects > 0)
        else {
            return Ok(Answer {
                response,
                method,
                redirects,
            });
        };
        let next = url.join(&location).map_err(|e| {
            StepError::Protocol(format!(
                "{hop}: redirect to `{location}`, which is not a valid URL: {e}"
            ))
        })?;
        redirects.push(url.to_string());
        if redirects.len() as u32 > max_redirects {
            return Err(StepError::Protocol(format!(
                "{request_line}: {}",
                redirect_trouble(&prepared.origin, &redirects, &next, max_redirects)
            )));
        }
        if let Some(m) = method_after(status, &method) {
            method = m;
            with_body = false;
        }
        url = next;
    }
}

/// One hop: its request sent, within the limit; a failure explained (for an HTTPS
/// connection that just closed, by asking the server why).
async fn send(
    prepared: &Prepared<'_>,
    limit: Limit,
    tls_config: &Arc<rustls::ClientConfig>,
    req: reqwest::Request,
    url: &Url,
    hop: &str,
) -> Result<reqwest::Response, StepError> {
    match limit.wait(prepared.client.execute(req)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => {
            if let Some((route, user)) = &prepared.via
                && let Some(g) = &route.gateway
            {
                return Err(match g.failure(user) {
                    Some(f @ (Failure::Refused(_) | Failure::NoAnswer(_))) => {
                        StepError::Io(format!("{hop}: {}", f.message()))
                    }
                    Some(f) => route.step_error(f, prepared.cx),
                    None => classify(hop, &e),
                });
            }
            if url.scheme() == "https"
                && closed_without_reason(&e)
                && let Ok(Some(reason)) = limit.wait(tls_reason(url, tls_config.clone())).await
            {
                return Err(StepError::Protocol(format!(
                    "{hop}: TLS: {reason}{}",
                    tls_help(&reason)
                )));
            }
            Err(classify(hop, &e))
        }
        Err(after) => Err(StepError::Timeout(format!(
            "{after} waiting for {hop} to answer"
        ))),
    }
}

/// The method a redirect turns the request into, when it changes (then without a body): as
/// browsers, curl and requests do, 303 turns into GET, and so do 301/302 after a POST;
/// 307/308 repeat the method and the body.
fn method_after(status: StatusCode, method: &Method) -> Option<Method> {
    match status.as_u16() {
        303 if *method != Method::HEAD => Some(Method::GET),
        301 | 302 if *method == Method::POST => Some(Method::GET),
        _ => None,
    }
}

/// Why a redirect chain was given up: the loop it went round, or the way it went.
fn redirect_trouble(origin: &Url, visited: &[String], next: &Url, max: u32) -> String {
    let chain: Vec<Url> = visited
        .iter()
        .filter_map(|u| Url::parse(u).ok())
        .chain([next.clone()])
        .collect();
    // Same-origin hops are shown by path: the origin is in the request line already.
    let show = |u: &Url| {
        if same_origin(u, origin) {
            match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            }
        } else {
            u.to_string()
        }
    };
    let first_repeat = (1..chain.len()).find_map(|j| {
        chain[..j]
            .iter()
            .position(|u| *u == chain[j])
            .map(|i| (i, j))
    });
    match first_repeat {
        Some((i, j)) => format!(
            "redirect loop ({}), stopped after {max} redirects",
            chain[i..=j]
                .iter()
                .map(show)
                .collect::<Vec<_>>()
                .join(" → ")
        ),
        None => {
            let shown: Vec<String> = chain.iter().map(show).collect();
            let way = if shown.len() > 5 {
                format!(
                    "{} → … → {}",
                    shown[..2].join(" → "),
                    shown[shown.len() - 2..].join(" → ")
                )
            } else {
                shown.join(" → ")
            };
            format!("too many redirects ({way}), stopped after {max}")
        }
    }
}
