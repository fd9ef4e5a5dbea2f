//! The answer of the `http` kind, for `request.rs` once the hops are done: the final
//! response's body read within the step's `Limit` (`limit.rs`) — into memory up to the
//! output limit, or, with `save`, streamed into a temporary file renamed into place — decoded
//! by its charset, parsed as JSON when it is some, and turned into the step's result fields
//! (`status`, `headers`, `body`, `json`, `saved`, …) that expectations and later steps read.

use std::path::{Path, PathBuf};
use std::time::Instant;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value as Json;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;

use super::explain::describe;
use super::limit::Limit;
use super::resolve;
use crate::error::StepError;
use crate::steps::{StepOutput, TaskCx};

/// Characters of body shown in a failure message.
const EXCERPT_CHARS: usize = 200;

/// What the hops ended with: the last response, the method it was asked with, and the URLs
/// redirected from.
pub(super) struct Answer {
    pub response: reqwest::Response,
    pub method: Method,
    pub redirects: Vec<String>,
}

/// The step's result from its answer: the body read (or saved to the step's `save`, for a
/// 2xx), then every result field. `out` may hold warnings already.
pub(super) async fn result(
    mut out: StepOutput,
    answer: Answer,
    request_line: String,
    started: Instant,
    limit: Limit,
    cx: &TaskCx<'_>,
    save: Option<&str>,
) -> Result<StepOutput, StepError> {
    let Answer {
        mut response,
        method,
        redirects,
    } = answer;
    let status = response.status();
    let final_url = response.url().clone();
    let version = format!("{:?}", response.version());
    let headers = header_fields(response.headers());
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let announced = response.content_length();
    let hop = format!("{method} {final_url}");

    let save = save
        .filter(|_| status.is_success())
        .map(|s| resolve(cx.dir, s));
    let max = cx.limits.max_output;
    let read = read_body(&mut response, &hop, limit, max, save.as_deref(), announced).await?;
    let elapsed_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;

    let kept_len = read.kept.len() as u64;
    let dropped = read.total - kept_len;
    let text = decode_text(&read.kept, &content_type, dropped > 0);
    let json = body_json(&read, &text, &content_type, &hop, max, &mut out.warnings);
    if dropped > 0 {
        out.warnings.push(format!(
            "{hop}: body: kept the first {kept_len} bytes, {dropped} more not kept"
        ));
    }
    let excerpt = excerpt(&text);

    out = out
        .with("request", request_line)
        .with("status", status.as_u16())
        .with("reason", status.canonical_reason().unwrap_or(""))
        .with("url", final_url.to_string())
        .with("headers", Json::Object(headers))
        .with("body", text)
        .with("json", json)
        .with("elapsed_ms", elapsed_ms)
        .with("version", version)
        .with("redirects", redirects)
        .with("body_bytes", read.total)
        .with("body_truncated_bytes", dropped)
        .with("body_excerpt", excerpt);
    if let Some((path, sha, changed)) = read.saved {
        out.changed = changed;
        out = out
            .with("saved", path.display().to_string())
            .with("sha256", sha);
    }
    Ok(out)
}

/// The response headers by lowercase name; repeated ones joined with `, `.
fn header_fields(headers: &HeaderMap) -> serde_json::Map<String, Json> {
    let mut fields = serde_json::Map::new();
    for (name, value) in headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match fields.get_mut(name.as_str()) {
            Some(Json::String(before)) => {
                before.push_str(", ");
                before.push_str(&v);
            }
            _ => {
                fields.insert(name.as_str().to_string(), Json::String(v));
            }
        }
    }
    fields
}

/// The body as JSON when it is JSON (by its type, or by its look) and was kept whole; null
/// otherwise. Why a JSON-typed body gave none goes to `warnings`.
fn body_json(
    read: &BodyRead,
    text: &str,
    content_type: &str,
    hop: &str,
    max: usize,
    warnings: &mut Vec<String>,
) -> Json {
    let is_json_type = content_type.contains("json");
    let looks_json = matches!(text.trim_start().chars().next(), Some('{' | '['));
    let dropped = read.total - read.kept.len() as u64;
    if read.saved.is_some() {
        Json::Null
    } else if dropped > 0 {
        if is_json_type {
            warnings.push(format!(
                "{hop}: the JSON body ({} bytes) is larger than the {max} bytes kept: `json` was not parsed",
                read.total
            ));
        }
        Json::Null
    } else if is_json_type || looks_json {
        match serde_json::from_slice::<Json>(&read.kept) {
            Ok(v) => v,
            Err(e) => {
                if is_json_type && !read.kept.is_empty() {
                    warnings.push(format!("{hop}: the body is not valid JSON: {e}"));
                }
                Json::Null
            }
        }
    } else {
        Json::Null
    }
}

/// Removes a temporary file unless it was renamed into place (also when the step is
/// cancelled or times out and its future is dropped).
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the body reading produced.
#[derive(Default)]
struct BodyRead {
    kept: Vec<u8>,
    total: u64,
    saved: Option<(PathBuf, String, bool)>,
}

/// Reads the body: into memory (the first `max` bytes kept, the rest counted), or, with
/// `save`, into a temporary file beside the destination that is renamed into place at the end.
async fn read_body(
    response: &mut reqwest::Response,
    hop: &str,
    limit: Limit,
    max: usize,
    save: Option<&Path>,
    announced: Option<u64>,
) -> Result<BodyRead, StepError> {
    let mut read = BodyRead::default();
    let mut file = match save {
        Some(dest) => Some(create_temp(dest).await?),
        None => None,
    };
    let mut hasher = sha2::Sha256::new();
    loop {
        let chunk = match limit.wait(response.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                let of = announced.map(|n| format!(" of {n}")).unwrap_or_default();
                return Err(StepError::Io(format!(
                    "{hop}: the response body was cut off after {}{of} bytes: {}",
                    read.total,
                    describe(&e)
                )));
            }
            Err(after) => {
                return Err(StepError::Timeout(format!(
                    "{after} reading the body of {hop} ({} bytes received)",
                    read.total
                )));
            }
        };
        read.total += chunk.len() as u64;
        match &mut file {
            Some((f, tmp)) => {
                hasher.update(&chunk);
                f.write_all(&chunk).await.map_err(|e| {
                    StepError::Io(format!("save: writing `{}`: {e}", tmp.path.display()))
                })?;
            }
            None => {
                if read.kept.len() < max {
                    let room = max - read.kept.len();
                    read.kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
            }
        }
    }
    if let (Some((f, tmp)), Some(dest)) = (file, save) {
        let sha = hex::encode(hasher.finalize());
        let changed = put_in_place(f, tmp, dest, &sha).await?;
        read.saved = Some((dest.to_path_buf(), sha, changed));
    }
    Ok(read)
}

/// The temporary file beside `dest` that a saved body is written to (its folder created).
async fn create_temp(dest: &Path) -> Result<(tokio::fs::File, TempFile), StepError> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| StepError::Io(format!("save: cannot create `{}`: {e}", parent.display())))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A new file of an unpredictable name, never through a link planted beside `dest`.
    let mut tries = 0;
    let (f, tmp) = loop {
        let tmp = parent.join(crate::steps::temp_name::put_temp(&name)?);
        let opened = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp)
            .await;
        match opened {
            Ok(f) => break (f, tmp),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
            Err(e) => {
                return Err(StepError::Io(format!(
                    "save: cannot create `{}`: {e}",
                    tmp.display()
                )));
            }
        }
    };
    Ok((
        f,
        TempFile {
            path: tmp,
            keep: false,
        },
    ))
}

/// Flushes the saved body and renames it onto `dest`, unless `dest` already holds the same
/// bytes (then the temporary file goes). Whether `dest` changed.
async fn put_in_place(
    mut f: tokio::fs::File,
    mut tmp: TempFile,
    dest: &Path,
    sha: &str,
) -> Result<bool, StepError> {
    let io =
        |e: std::io::Error| StepError::Io(format!("save: writing `{}`: {e}", tmp.path.display()));
    f.flush().await.map_err(io)?;
    f.sync_all().await.map_err(io)?;
    drop(f);
    let unchanged = match tokio::fs::read(dest).await {
        Ok(old) => hex::encode(sha2::Sha256::digest(&old)) == sha,
        Err(_) => false,
    };
    if !unchanged {
        tokio::fs::rename(&tmp.path, dest).await.map_err(|e| {
            StepError::Io(format!(
                "save: renaming `{}` to `{}`: {e}",
                tmp.path.display(),
                dest.display()
            ))
        })?;
        tmp.keep = true;
    }
    Ok(!unchanged)
}

/// The kept bytes as text, in the charset the response names (UTF-8 by default). A character
/// cut in two by the limit is left out rather than shown as a replacement.
fn decode_text(bytes: &[u8], content_type: &str, truncated: bool) -> String {
    let charset = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .next()
        .map(|c| c.trim_matches('"'));
    if let Some(enc) = charset.and_then(|c| encoding_rs::Encoding::for_label(c.as_bytes()))
        && enc != encoding_rs::UTF_8
    {
        return enc.decode_without_bom_handling(bytes).0.into_owned();
    }
    let bytes = match std::str::from_utf8(bytes) {
        Err(e) if truncated && e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    };
    String::from_utf8_lossy(bytes).into_owned()
}

/// The start of the body on one line, for failure messages.
fn excerpt(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > EXCERPT_CHARS {
        let cut: String = flat.chars().take(EXCERPT_CHARS).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_decoded_by_charset_and_cut_on_a_character() {
        assert_eq!(
            decode_text("h\u{e9}".as_bytes(), "text/plain", false),
            "h\u{e9}"
        );
        // "é" cut in the middle by the limit: the half is left out.
        assert_eq!(
            decode_text(&"h\u{e9}".as_bytes()[..2], "text/plain", true),
            "h"
        );
        assert_eq!(
            decode_text(&[0x68, 0xe9], "text/plain; charset=ISO-8859-1", false),
            "h\u{e9}"
        );
        assert_eq!(excerpt("a\n  b\tc"), "a b c");
        assert_eq!(excerpt(&"x".repeat(300)).chars().count(), EXCERPT_CHARS + 1);
    }
}
