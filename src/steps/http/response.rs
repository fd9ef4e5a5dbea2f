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

/// What the step says about the body: where to save it, and how much of it to keep.
pub(super) struct BodyRules<'a> {
    pub save: Option<&'a str>,
    /// Bytes kept in memory for `body`, `json` and the expectations (`max_body`).
    pub max: usize,
}

/// The step's result from its answer: the body read (and, for a 2xx, saved to the step's
/// `save`), then every result field. `out` may hold warnings already. The body is kept as
/// bytes while it is read; what stays in the result is its text when it is text, else only
/// its length and digest, and the bytes are dropped here.
pub(super) async fn result(
    mut out: StepOutput,
    answer: Answer,
    request_line: String,
    started: Instant,
    limit: Limit,
    cx: &TaskCx<'_>,
    rules: BodyRules<'_>,
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

    let save = rules
        .save
        .filter(|_| status.is_success())
        .map(|s| resolve(cx.dir, s));
    let max = rules.max;
    let read = read_body(&mut response, &hop, limit, max, save.as_deref(), announced).await?;
    let elapsed_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;

    let kept_len = read.kept.len() as u64;
    let dropped = read.total - kept_len;
    let json = body_json(&read, &content_type, &hop, max, &mut out.warnings);
    let body_sha256 = hex::encode(read.digest);
    let total = read.total;
    let saved = read.saved;
    let text = decode_text(read.kept, &content_type, dropped > 0);
    // A saved body is whole in its file: only an unsaved one lost bytes.
    if dropped > 0 && saved.is_none() {
        out.warnings.push(format!(
            "{hop}: body: kept the first {kept_len} bytes (max_body), {dropped} more not kept"
        ));
    }
    let excerpt = match &text {
        Some(t) => excerpt(t),
        None => format!("{total} bytes of binary data"),
    };

    out = out
        .with("request", request_line)
        .with("status", status.as_u16())
        .with("reason", status.canonical_reason().unwrap_or(""))
        .with("url", final_url.to_string())
        .with("headers", Json::Object(headers))
        .with("body", text.map_or(Json::Null, Json::String))
        .with("json", json)
        .with("elapsed_ms", elapsed_ms)
        .with("version", version)
        .with("redirects", redirects)
        .with("body_bytes", total)
        .with("body_sha256", body_sha256)
        .with("body_truncated_bytes", dropped)
        .with("max_body", max as u64)
        .with("body_excerpt", excerpt);
    if let Some((path, sha, changed)) = saved {
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
    content_type: &str,
    hop: &str,
    max: usize,
    warnings: &mut Vec<String>,
) -> Json {
    let is_json_type = content_type.contains("json");
    let looks_json = matches!(
        read.kept.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    );
    let dropped = read.total - read.kept.len() as u64;
    if dropped > 0 {
        if is_json_type || looks_json {
            warnings.push(format!(
                "{hop}: the JSON body ({} bytes) is larger than the {max} bytes kept (max_body): `json` was not parsed",
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
    /// The first `max` bytes.
    kept: Vec<u8>,
    total: u64,
    /// SHA-256 of the whole body.
    digest: [u8; 32],
    saved: Option<(PathBuf, String, bool)>,
}

/// Reads the body: the first `max` bytes kept in memory, the rest counted and hashed, and
/// with `save` every byte also written to a temporary file beside the destination that is
/// renamed into place at the end (so expectations on `body` and `json` still hold).
async fn read_body(
    response: &mut reqwest::Response,
    hop: &str,
    limit: Limit,
    max: usize,
    save: Option<&Path>,
    announced: Option<u64>,
) -> Result<BodyRead, StepError> {
    // Room for what will be kept, at once: the buffer does not grow by doubling.
    let mut read = BodyRead {
        kept: Vec::with_capacity(announced.map_or(0, |n| n.min(max as u64) as usize)),
        ..BodyRead::default()
    };
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
        hasher.update(&chunk);
        if let Some((f, tmp)) = &mut file {
            f.write_all(&chunk).await.map_err(|e| {
                StepError::Io(format!("save: writing `{}`: {e}", tmp.path.display()))
            })?;
        }
        if read.kept.len() < max {
            let room = max - read.kept.len();
            read.kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }
    read.digest = hasher.finalize().into();
    if let (Some((f, tmp)), Some(dest)) = (file, save) {
        let sha = hex::encode(read.digest);
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

/// The kept bytes as text: in the charset the response names, or as UTF-8 when they are
/// UTF-8 (a character cut in two by the limit is left out). Bytes that are neither are binary:
/// None, so the result holds their length and digest, never a page of replacement characters.
fn decode_text(bytes: Vec<u8>, content_type: &str, truncated: bool) -> Option<String> {
    let charset = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .next()
        .map(|c| c.trim_matches('"'));
    if let Some(enc) = charset.and_then(|c| encoding_rs::Encoding::for_label(c.as_bytes()))
        && enc != encoding_rs::UTF_8
    {
        return Some(enc.decode_without_bom_handling(&bytes).0.into_owned());
    }
    // UTF-8 as it is: the bytes become the text, not a copy of them.
    match String::from_utf8(bytes) {
        Ok(t) => Some(t),
        Err(e) => {
            let u = e.utf8_error();
            let mut bytes = e.into_bytes();
            if truncated && u.error_len().is_none() {
                bytes.truncate(u.valid_up_to());
                String::from_utf8(bytes).ok()
            } else if charset.is_some() {
                // Declared text in UTF-8 with a bad byte here and there: text, as a
                // browser shows it.
                Some(String::from_utf8_lossy(&bytes).into_owned())
            } else {
                None
            }
        }
    }
}

/// The start of the body on one line, for failure messages (only that start is read: a
/// kept body of a MiB is not copied for it).
fn excerpt(text: &str) -> String {
    let mut chars = text
        .split_whitespace()
        .enumerate()
        .flat_map(|(i, w)| (i > 0).then_some(' ').into_iter().chain(w.chars()));
    let flat: String = chars.by_ref().take(EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        format!("{flat}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_decoded_by_charset_and_cut_on_a_character() {
        let text = |b: &[u8], ct: &str, cut: bool| decode_text(b.to_vec(), ct, cut);
        assert_eq!(
            text("h\u{e9}".as_bytes(), "text/plain", false).as_deref(),
            Some("h\u{e9}")
        );
        // "é" cut in the middle by the limit: the half is left out.
        assert_eq!(
            text(&"h\u{e9}".as_bytes()[..2], "text/plain", true).as_deref(),
            Some("h")
        );
        assert_eq!(
            text(&[0x68, 0xe9], "text/plain; charset=ISO-8859-1", false).as_deref(),
            Some("h\u{e9}")
        );
        // Not UTF-8 and no charset: binary.
        assert_eq!(
            text(&[0x89, b'P', b'N', b'G', 0xff], "image/png", false),
            None
        );
        assert_eq!(excerpt("a\n  b\tc"), "a b c");
        assert_eq!(excerpt(&"x".repeat(300)).chars().count(), EXCERPT_CHARS + 1);
    }
}
