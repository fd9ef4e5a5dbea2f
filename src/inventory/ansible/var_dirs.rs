//! Ansible's `group_vars/` and `host_vars/` folders beside an inventory: for every known
//! group and host, `<name>[.yml|.yaml|.json]` or a folder of such files, whose variables
//! override the inventory file's own.
//!
//! `load` names the folders (those of the Ansible inventories it read); output goes into `Raw`
//! through the parent module's `apply_host_var` / `apply_group_var`.

use std::path::{Path, PathBuf};

use super::{Var, apply_group_dir_var, apply_host_var, yaml_vars};
use crate::diag::{Diagnostic, Diagnostics, register_source};
use crate::inventory::Raw;
use crate::yaml;

const VAR_FILE_EXTENSIONS: &[&str] = &["yml", "yaml", "json"];

/// Reads `dir/group_vars/<group>` for every known group and `dir/host_vars/<host>` for every
/// known host, as Ansible's `host_group_vars` plugin finds them: the first of `<name>.yml`,
/// `<name>.yaml`, `<name>.json` and `<name>` that exists (so `host_vars/web1.example.com`,
/// with a dot and no extension, is read), and when that is a folder, every file in it and in
/// its sub-folders, by name, that has no extension or one of those. They override the
/// inventory files' own vars, as in Ansible. Files that match no name are ignored.
pub(crate) fn load_var_dirs(dir: &Path, raw: &mut Raw, diags: &mut Diagnostics) {
    let groups: Vec<String> = raw.groups.keys().cloned().collect();
    for name in ["all", "ungrouped"].into_iter().map(String::from).chain(
        groups
            .into_iter()
            .filter(|g| g != "all" && g != "ungrouped"),
    ) {
        for f in vars_files(&dir.join("group_vars"), &name) {
            for var in read_var_file(&f, diags) {
                apply_group_dir_var(raw.group(&name), var, diags);
            }
        }
    }
    let hosts: Vec<String> = raw.hosts.keys().cloned().collect();
    for name in hosts {
        for f in vars_files(&dir.join("host_vars"), &name) {
            for var in read_var_file(&f, diags) {
                apply_host_var(raw.host(&name, None), var, diags);
            }
        }
    }
}

/// The files that hold the variables of `name` under `base` (see `load_var_dirs`).
fn vars_files(base: &Path, name: &str) -> Vec<PathBuf> {
    if name.contains('/') || name.starts_with('.') || !base.is_dir() {
        return Vec::new();
    }
    let candidates = VAR_FILE_EXTENSIONS
        .iter()
        .map(|e| base.join(format!("{name}.{e}")))
        .chain([base.join(name)]);
    for p in candidates {
        if p.is_dir() {
            let mut found = Vec::new();
            dir_files(&p, &mut found, 0);
            return found;
        }
        if p.is_file() {
            return vec![p];
        }
    }
    Vec::new()
}

/// Every variables file in `dir`, by name, descending into sub-folders without an extension;
/// hidden files and `~` backups are skipped.
fn dir_files(dir: &Path, found: &mut Vec<PathBuf>, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for n in names {
        if n.starts_with('.') || n.ends_with('~') {
            continue;
        }
        let p = dir.join(&n);
        let ext = Path::new(&n).extension().and_then(|e| e.to_str());
        if p.is_dir() && ext.is_none() {
            if depth < 32 {
                dir_files(&p, found, depth + 1);
            }
        } else if p.is_file() && ext.is_none_or(|e| VAR_FILE_EXTENSIONS.contains(&e)) {
            found.push(p);
        }
    }
}

fn read_var_file(path: &Path, diags: &mut Diagnostics) -> Vec<Var> {
    let read = std::fs::read(path).map_err(|e| {
        Diagnostic::error(format!("cannot read variables file `{}`", path.display()))
            .label(e.to_string())
            .help("fix the file's permissions, or remove it")
    });
    let text = match read
        .and_then(|b| crate::diag::utf8_text(&path.display().to_string(), b, "variables file"))
    {
        Ok(t) => t,
        Err(d) => {
            diags.push(d);
            return Vec::new();
        }
    };
    let file = register_source(path.display().to_string(), text.as_str());
    if let Some(d) = super::vault_error(file, &text, "variables file") {
        diags.push(d);
        return Vec::new();
    }
    match yaml::parse(file, &text) {
        Ok(node) if node.is_null() || node.as_map().is_some() => yaml_vars(&node, diags),
        Ok(node) => {
            diags.push(
                Diagnostic::error(format!(
                    "expected a mapping of variables, found {}",
                    node.describe()
                ))
                .at(node.span)
                .label("expected `name: value` pairs")
                .help("a group_vars or host_vars file is a mapping of variable names to values"),
            );
            Vec::new()
        }
        Err(d) => {
            diags.push(d);
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn group_vars_and_host_vars_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        std::fs::write(
            p.join("hosts"),
            "[web]\nw1 x=inline\nw2\n[web:vars]\ny=inline\n",
        )
        .expect("write");
        std::fs::create_dir_all(p.join("group_vars/all")).expect("mkdir");
        std::fs::create_dir_all(p.join("host_vars")).expect("mkdir");
        std::fs::write(
            p.join("group_vars/web.yml"),
            "y: from_file\nansible_user: deploy\n",
        )
        .expect("write");
        std::fs::write(p.join("group_vars/all/main.yaml"), "z: all_dir\n").expect("write");
        std::fs::write(p.join("group_vars/nosuch.yml"), "q: 1\n").expect("write");
        std::fs::write(
            p.join("host_vars/w1"),
            "x: from_host_file\nansible_host: 10.1.1.1\n",
        )
        .expect("write");
        let i = crate::inventory::load(&[p.join("hosts")]).expect("loads");
        let w1 = i.host("w1").expect("w1");
        assert_eq!(w1.vars["x"], json!("from_host_file"));
        assert_eq!(w1.vars["y"], json!("from_file"));
        assert_eq!(w1.vars["z"], json!("all_dir"));
        assert_eq!(w1.address, "10.1.1.1");
        assert_eq!(w1.user.as_deref(), Some("deploy"));
        assert!(!w1.vars.contains_key("q"));
        std::fs::write(p.join("host_vars/w2.yml"), "- not a map\n").expect("write");
        let d = crate::inventory::load(&[p.join("hosts")]).expect_err("bad var file");
        assert_eq!(
            d.0[0].title,
            "expected a mapping of variables, found a list"
        );
    }

    #[test]
    fn inventory_directory_reads_every_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        std::fs::write(p.join("01-web.ini"), "[web]\nw1\n").expect("write");
        std::fs::write(
            p.join("02-db.yml"),
            "all:\n  children:\n    db:\n      hosts: { d1: }\n",
        )
        .expect("write");
        std::fs::write(p.join("README.md"), "# not an inventory\n").expect("write");
        std::fs::write(p.join(".hidden"), "[x]\n").expect("write");
        let i = crate::inventory::load(&[p.to_path_buf()]).expect("loads");
        let names: Vec<&str> = i.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["w1", "d1"]);
    }
}
