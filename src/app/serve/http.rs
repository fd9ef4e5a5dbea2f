//! `serve`'s HTTP side (hyper, HTTP/1.1): the routes over the last finished run that the
//! scheduler in `serve` leaves in `Shared` — `/healthz` (200 or 503 and a one-line summary),
//! `/metrics` (`report::metrics`), `/report.json`, `/` (the HTML page) — and `/probe?host=H`,
//! which runs that one host now through the engine: at most `--probe-concurrency` probes at
//! once, probes of one host share one run, a result is answered again for `--probe-cache`.
//! When told to stop, it stops accepting and lets open connections finish (bounded).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{SHUTDOWN_GRACE, Shared, counts};
use crate::exec;
use crate::report::event::Discard;
use crate::report::metrics::{self, CONTENT_TYPE as METRICS};
use crate::report::plain::human_ms;

type Reply = Response<Full<Bytes>>;

/// One host's cached probe: when it was made and the text answered.
type Cached = Option<(Instant, Arc<String>)>;

/// Probes in flight and their recent results.
pub(super) struct Probes {
    slots: Semaphore,
    ttl: Duration,
    /// One entry per inventory host probed so far (bounded by the inventory).
    hosts: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Cached>>>>,
}

impl Probes {
    pub(super) fn new(concurrency: usize, ttl: Duration) -> Probes {
        Probes {
            slots: Semaphore::new(concurrency),
            ttl,
            hosts: Mutex::new(HashMap::new()),
        }
    }
}

/// Accepts connections until `stop`, then gives open ones `SHUTDOWN_GRACE` to finish.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: wait a little rather than spin.
                        eprintln!("sortie serve: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let s = shared.clone();
                let conn = http1::Builder::new().serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| handle(s.clone(), req)),
                );
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = stop.cancelled() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET and HEAD\n");
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let last = shared.last();
    let starting = || {
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "starting: the first run has not finished yet\n",
        )
    };
    Ok(match req.uri().path() {
        "/healthz" => healthz(&shared),
        "/metrics" => reply(
            StatusCode::OK,
            METRICS,
            metrics::render(last.as_ref().map(|l| &l.report), shared.counters()),
        ),
        "/report.json" => match last {
            Some(l) => reply(StatusCode::OK, "application/json", l.json.clone()),
            None => starting(),
        },
        "/" => match last {
            Some(l) => reply(StatusCode::OK, "text/html; charset=utf-8", l.html.clone()),
            None => starting(),
        },
        "/probe" => probe(&shared, req.uri().query().unwrap_or("")).await,
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /, /healthz, /metrics, /report.json or /probe?host=H\n",
        ),
    })
}

/// 200 when the last run had no failed or unreachable host, else 503; a one-line summary.
fn healthz(shared: &Shared) -> Reply {
    let Some(l) = shared.last() else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "starting: the first run has not finished yet\n",
        );
    };
    let h = &l.report.hosts;
    let healthy = h.failed + h.unreachable == 0 && !l.report.interrupted;
    let line = format!(
        "{}: {} (run {}, {} ago, took {})\n",
        if healthy { "ok" } else { "failing" },
        counts(&l.report),
        l.number,
        human_ms(l.finished.elapsed().as_millis() as u64),
        human_ms(l.report.duration_ms),
    );
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    reply(status, TEXT, line)
}

/// `/probe?host=H`: that host's run, from the cache when it is recent.
async fn probe(shared: &Shared, query: &str) -> Reply {
    let Some(host) = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.into_owned())
    else {
        return reply(
            StatusCode::BAD_REQUEST,
            TEXT,
            "give the host to probe: /probe?host=NAME\n",
        );
    };
    if !shared.cfg.inventory.hosts.iter().any(|h| h.name == host) {
        return reply(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("unknown host `{host}`: not in the inventory\n"),
        );
    }
    let entry = match shared.probes.hosts.lock() {
        Ok(mut m) => m.entry(host.clone()).or_default().clone(),
        Err(_) => return reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, "internal error\n"),
    };
    // Probes of one host wait for the one in flight and take its result.
    let mut cached = entry.lock().await;
    if let Some((at, text)) = cached.as_ref()
        && at.elapsed() < shared.probes.ttl
    {
        return reply(StatusCode::OK, METRICS, text.as_str().to_owned());
    }
    let Ok(_slot) = shared.probes.slots.acquire().await else {
        return reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "stopping\n");
    };
    let report = match exec::run(shared.cfg.request(Some(&host)), Arc::new(Discard)).await {
        Ok(r) => r,
        Err(d) => {
            let why = d.0.first().map(|x| x.one_line()).unwrap_or_default();
            return reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{why}\n"));
        }
    };
    if report.hosts.hosts == 0 {
        return reply(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("host `{host}` is in no play this serve runs\n"),
        );
    }
    eprintln!(
        "{} probe {host}: {}, in {}",
        crate::units::utc_now_rfc3339(),
        counts(&report),
        human_ms(report.duration_ms)
    );
    let text = Arc::new(metrics::render_probe(&report, &host));
    *cached = Some((Instant::now(), text.clone()));
    reply(StatusCode::OK, METRICS, text.as_str().to_owned())
}
