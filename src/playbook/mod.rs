//! Playbooks: the typed model (`Playbook` → `Play` → `StepDef` + `StepSpec`, in `model`) and
//! its loader. Input is a YAML file (parsed with positions by `yaml`); this file reads it (and
//! its `vars_files`) and hands each play's node to `read`, where steps are read in two stages —
//! common keys off, exactly one known kind key, then a strict read of that kind's arguments
//! (`steps`). `validate` then checks ids, `needs`, cycles (with the step graph of `needs`),
//! templates, regexes and kind rules. Output is a `Playbook` for `plan` and the runner, or
//! every problem as `Diagnostics`.

pub mod model;
pub mod needs;
mod read;
pub mod validate;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

pub use model::*;
pub use read::{PLAY_KEYS, STEP_KEYS};

use crate::diag::{Diagnostic, Diagnostics, Span, register_source};
use crate::expect;
use crate::steps::StepSpec;
use crate::yaml::{self, Node, NodeKind};

/// Reads a file and registers its text for diagnostics.
pub fn read_source(path: &Path, what: &str) -> Result<(crate::diag::FileId, String), Diagnostic> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let name = path.display().to_string();
            let text = crate::diag::utf8_text(&name, bytes, what)?;
            Ok((register_source(name, text.as_str()), text))
        }
        Err(e) => {
            let help = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "check the path; relative paths start from the current directory"
                }
                std::io::ErrorKind::PermissionDenied => "check the file's permissions",
                _ => "check that the path names a readable file",
            };
            Err(Diagnostic::error(format!(
                "cannot read {what} `{}`: {}",
                path.display(),
                io_reason(&e)
            ))
            .help(help))
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "it is a directory".into(),
        _ => e.to_string(),
    }
}

/// Loads and validates a playbook file.
pub fn load(path: &Path) -> Result<Playbook, Diagnostics> {
    let (file, text) = read_source(path, "playbook")?;
    load_text(path, file, &text)
}

/// Loads and validates playbook text (already registered as `file`); `path` places it.
pub fn load_str(path: &Path, text: &str) -> Result<Playbook, Diagnostics> {
    let file = register_source(path.display().to_string(), text);
    load_text(path, file, text)
}

fn load_text(path: &Path, file: crate::diag::FileId, text: &str) -> Result<Playbook, Diagnostics> {
    let root = yaml::parse(file, text)?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let mut diags = Diagnostics::default();
    let play_nodes: Vec<&Node> = match &root.kind {
        NodeKind::Map(_) => vec![&root],
        NodeKind::Seq(items) => items.iter().collect(),
        _ if root.is_null() => {
            return Err(Diagnostic::error("the playbook is empty")
                .at(root.span)
                .label("no play here")
                .help("a playbook is a play (`hosts:` and `steps:`) or a list of plays")
                .into());
        }
        _ => {
            return Err(
                Diagnostic::error("a playbook must be a play or a list of plays")
                    .at(root.span)
                    .label(format!("found {}", root.describe()))
                    .help("start with `name:`, `hosts:` and `steps:` keys")
                    .into(),
            );
        }
    };
    if play_nodes.is_empty() {
        diags.push(
            Diagnostic::error("the playbook has no plays")
                .at(root.span)
                .label("empty list")
                .help("add a play with `hosts:` and `steps:`"),
        );
    }
    let mut plays = Vec::new();
    for (i, node) in play_nodes.into_iter().enumerate() {
        if let Some(play) = read::read_play(i, node, &dir, &mut diags) {
            plays.push(play);
        }
    }
    let playbook = Playbook {
        path: path.to_path_buf(),
        dir,
        file,
        plays,
        warnings: Vec::new(),
    };
    validate::validate(&playbook, &mut diags);
    if diags.has_errors() {
        return Err(diags);
    }
    let mut playbook = playbook;
    playbook.warnings = diags.0;
    Ok(playbook)
}

/// Loads a vars file (a YAML mapping) into variables.
pub fn load_vars_file(
    path: &Path,
    at: Option<Span>,
) -> Result<IndexMap<String, Node>, Diagnostics> {
    let (file, text) = read_source(path, "vars file").map_err(|d| {
        let Some(at) = at else { return d };
        if d.span.is_some() {
            // Placed in the file itself (its encoding): the listing is the second place.
            return d.also(at, "listed here");
        }
        let d = d.at(at).label("listed here");
        if d.help
            .as_deref()
            .is_some_and(|h| h.starts_with("check the path"))
        {
            d.help("`vars_files` paths are relative to the playbook's folder")
        } else {
            d
        }
    })?;
    let root = yaml::parse(file, &text)?;
    match &root.kind {
        NodeKind::Map(entries) => Ok(entries
            .iter()
            .map(|(k, v)| (k.key_text(), v.clone()))
            .collect()),
        _ if root.is_null() => Ok(IndexMap::new()),
        _ => Err(
            Diagnostic::error("a vars file must be a mapping of variables")
                .at(root.span)
                .label(format!("found {}", root.describe()))
                .help("write `name: value` lines")
                .into(),
        ),
    }
}

/// Reads the expectation a kind uses when a step declares none.
pub fn default_expectations(spec: &StepSpec) -> Vec<expect::Expectation> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<&'static str, Vec<expect::Expectation>>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(spec.name())
        .or_insert_with(|| {
            let text = spec.default_expect();
            if text.is_empty() {
                return Vec::new();
            }
            let file = register_source(format!("<default expectation of {}>", spec.name()), text);
            let Ok(node) = yaml::parse(file, text) else {
                return Vec::new();
            };
            let mut sink = Vec::new();
            expect::parse(&node, spec.name(), spec.expect_fields(), &mut sink)
        })
        .clone()
}
