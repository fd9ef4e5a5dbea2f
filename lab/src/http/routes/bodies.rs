//! Routes about bodies and their timing: `/slow?ms=N` (the answer after N ms), `/slow-body?ms=N`
//! (half the body, the rest N ms later), `/truncated/{n}` (cut short of its announced length),
//! `/bytes/{n}` (n bytes of text), `/binary/{n}` (n bytes that are not UTF-8),
//! `/encoded/{gzip|deflate|br}` (the `/json` document compressed so, with its
//! `Content-Encoding`) and `/upload` (a multipart body read back part by part).

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::{BodyExt as _, StreamBody};
use hyper::Response;
use hyper::body::{Bytes, Frame};
use serde_json::json;
use sha2::Digest as _;

use super::arg;
use crate::http::RecordedRequest;
use crate::http::respond::{Body, full, json_response, set_header};

const MAX_SLOW_MS: u64 = 120_000;
const MAX_BYTES: usize = 64 << 20;
/// Multipart text parts up to this size are echoed back as text.
const ECHOED_PART: usize = 4096;

/// `?ms=N` (default 1000, at most 120 s).
fn delay_ms(args: &[(String, String)]) -> u64 {
    arg(args, "ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1000)
        .min(MAX_SLOW_MS)
}

/// `n` as a byte count of at most 64 MiB.
fn byte_count(n: &str) -> Option<usize> {
    n.parse::<usize>().ok().filter(|n| *n <= MAX_BYTES)
}

fn bad_byte_count() -> Response<Body> {
    json_response(400, &json!({ "error": "byte count must be 0 to 64 MiB" }))
}

/// `/slow?ms=N`: 200 after N ms.
pub(super) async fn slow(args: &[(String, String)]) -> Response<Body> {
    let ms = delay_ms(args);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    json_response(200, &json!({ "status": "ok", "slept_ms": ms }))
}

/// `/slow-body?ms=N`: 200 and half the body at once, the rest after N ms.
pub(super) fn slow_body(args: &[(String, String)]) -> Response<Body> {
    let ms = delay_ms(args);
    let chunks = futures_util::stream::unfold(0u8, move |step| async move {
        match step {
            0 => Some((Ok(Frame::data(Bytes::from_static(b"first half,"))), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Some((Ok(Frame::data(Bytes::from_static(b" second half"))), 2))
            }
            _ => None,
        }
    });
    let mut resp = Response::new(StreamBody::new(chunks).boxed());
    set_header(&mut resp, "content-type", "text/plain");
    resp
}

/// `/truncated/{n}`: announces 2n bytes, sends n, then drops the connection.
pub(super) fn truncated(n: &str) -> Response<Body> {
    let Some(n) = byte_count(n) else {
        return bad_byte_count();
    };
    let data = Bytes::from(vec![b'x'; n]);
    // The first frame goes out (the pause lets hyper flush it); the error then makes
    // hyper drop the connection short of the length announced.
    let frames = futures_util::stream::unfold((Some(data), false), |state| async move {
        match state {
            (Some(d), _) => Some((Ok(Frame::data(d)), (None, false))),
            (None, false) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let cut = std::io::Error::other("the lab cut this response short");
                Some((Err(cut), (None, true)))
            }
            (None, true) => None,
        }
    });
    let mut resp = Response::new(StreamBody::new(frames).boxed());
    set_header(&mut resp, "content-type", "text/plain");
    set_header(&mut resp, "content-length", &(2 * n).to_string());
    resp
}

/// `/bytes/{n}`: n bytes of text, `application/octet-stream`.
pub(super) fn bytes(n: &str) -> Response<Body> {
    let Some(n) = byte_count(n) else {
        return bad_byte_count();
    };
    let pattern = b"abcdefghijklmnopqrstuvwxyz0123456789\n";
    let data: Vec<u8> = pattern.iter().copied().cycle().take(n).collect();
    let mut resp = Response::new(full(data));
    set_header(&mut resp, "content-type", "application/octet-stream");
    resp
}

/// `/binary/{n}`: n bytes of a fixed pseudo-random sequence (a xorshift), mostly not UTF-8.
pub(super) fn binary(n: &str) -> Response<Body> {
    let Some(n) = byte_count(n) else {
        return bad_byte_count();
    };
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8 | 0x80
        })
        .collect();
    let mut resp = Response::new(full(data));
    set_header(&mut resp, "content-type", "application/octet-stream");
    resp
}

/// `/encoded/{gzip|deflate|br}`: the `/json` document, compressed as named (`deflate` is the
/// zlib format, as RFC 9110 and curl have it), with `Content-Encoding` set.
pub(super) fn encoded(how: &str, doc: &serde_json::Value) -> Response<Body> {
    use std::io::Write as _;
    let plain = doc.to_string().into_bytes();
    let packed = match how {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&plain).and_then(|()| e.finish())
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&plain).and_then(|()| e.finish())
        }
        "br" => {
            let mut out = Vec::new();
            let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            let r = e.write_all(&plain).and_then(|()| e.flush());
            drop(e);
            r.map(|()| out)
        }
        _ => {
            return json_response(
                400,
                &json!({ "error": "encoding must be gzip, deflate or br" }),
            );
        }
    };
    match packed {
        Ok(body) => {
            let mut resp = Response::new(full(body));
            set_header(&mut resp, "content-type", "application/json");
            set_header(&mut resp, "content-encoding", how);
            resp
        }
        Err(e) => json_response(500, &json!({ "error": e.to_string() })),
    }
}

/// `/upload`: reads a multipart body (multer) and describes each part.
pub(super) async fn upload(req: &RecordedRequest, body: &Bytes) -> Response<Body> {
    let Some(boundary) = req
        .header("content-type")
        .and_then(|c| multer::parse_boundary(c).ok())
    else {
        return json_response(400, &json!({ "error": "not a multipart body" }));
    };
    let whole = futures_util::stream::iter([Ok::<Bytes, Infallible>(body.clone())]);
    let mut multipart = multer::Multipart::new(whole, boundary);
    let mut parts = Vec::new();
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return json_response(400, &json!({ "error": e.to_string() })),
        };
        let name = field.name().map(str::to_string);
        let filename = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(|m| m.to_string());
        let mut hasher = sha2::Sha256::new();
        let mut size = 0usize;
        let mut head = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    size += chunk.len();
                    hasher.update(&chunk);
                    if head.len() < ECHOED_PART {
                        let room = ECHOED_PART - head.len();
                        head.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                }
                Ok(None) => break,
                Err(e) => return json_response(400, &json!({ "error": e.to_string() })),
            }
        }
        let text = (size <= ECHOED_PART)
            .then(|| String::from_utf8(head).ok())
            .flatten();
        parts.push(json!({
            "name": name,
            "filename": filename,
            "content_type": content_type,
            "size": size,
            "sha256": hex::encode(hasher.finalize()),
            "text": text,
        }));
    }
    json_response(200, &json!({ "parts": parts }))
}
