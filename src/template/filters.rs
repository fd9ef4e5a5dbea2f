//! sortie's own template filters (`quote`, `to_json`, `from_json`, `b64encode`, `b64decode`,
//! `regex_replace`, `regex_search`, `basename`, `dirname`, `sha256`), registered on every
//! environment by `base_env`. `quote` makes one POSIX shell word (with `shlex`) and marks it
//! safe, which the shell-injection guard reads as quoted.

use minijinja::value::Value;
use minijinja::{Error, ErrorKind};

/// POSIX-shell-safe quoting of one word.
pub fn shell_quote(s: &str) -> Result<String, Error> {
    shlex::try_quote(s).map(|c| c.into_owned()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            "cannot quote a NUL byte for the shell",
        )
    })
}

pub(super) fn filter_quote(v: Value) -> Result<Value, Error> {
    let s = match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    };
    Ok(Value::from_safe_string(shell_quote(&s)?))
}

pub(super) fn filter_to_json(v: Value) -> Result<String, Error> {
    serde_json::to_string(&v).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

pub(super) fn filter_from_json(s: &str) -> Result<Value, Error> {
    let j: serde_json::Value = serde_json::from_str(s)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("from_json: {e}")))?;
    Ok(Value::from(minijinja::value::Serde(&j)))
}

pub(super) fn filter_b64encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

pub(super) fn filter_b64decode(s: &str) -> Result<String, Error> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("b64decode: {e}")))?;
    String::from_utf8(bytes).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            "b64decode: result is not UTF-8",
        )
    })
}

fn compile_regex(p: &str) -> Result<regex::Regex, Error> {
    regex::Regex::new(p)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("bad regex: {e}")))
}

pub(super) fn filter_regex_replace(
    s: &str,
    pattern: &str,
    replacement: Option<&str>,
) -> Result<String, Error> {
    let re = compile_regex(pattern)?;
    // Ansible writes group references as `\1`; the regex crate as `${1}`.
    let rep = replacement.unwrap_or("");
    let backref = regex::Regex::new(r"\\(\d+)")
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let rep = backref.replace_all(rep, "$${$1}").into_owned();
    Ok(re.replace_all(s, rep.as_str()).into_owned())
}

pub(super) fn filter_regex_search(s: &str, pattern: &str) -> Result<Value, Error> {
    let re = compile_regex(pattern)?;
    Ok(match re.find(s) {
        Some(m) => Value::from(m.as_str()),
        None => Value::from(()),
    })
}

pub(super) fn filter_basename(s: &str) -> String {
    std::path::Path::new(s)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn filter_dirname(s: &str) -> String {
    std::path::Path::new(s)
        .parent()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn filter_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}
