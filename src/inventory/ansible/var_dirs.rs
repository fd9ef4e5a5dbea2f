//! Ansible's `group_vars/` and `host_vars/` folders beside an inventory: for every known
//! group and host, `<name>[.yml|.yaml|.json]` or a folder of such files, whose variables
//! override the inventory file's own.
//!
//! `load` names the folders (those of the Ansible inventories it read); output goes into `Raw`
//! through the parent module's `apply_host_var` / `apply_group_var`.

use std::path::{Path, PathBuf};

use super::{Var, apply_group_var, apply_host_var, yaml_vars};
use crate::diag::{Diagnostic, Diagnostics, register_source};
use crate::inventory::Raw;
use crate::yaml;

const VAR_FILE_EXTENSIONS: &[&str] = &["yml", "yaml", "json"];

/// Reads `dir/group_vars/<group>[.yml|.yaml|.json]` (or a folder of such files) for every known
/// group, and `dir/host_vars/<host>…` for every known host. They override the inventory
/// file's own vars, as in Ansible. Names that match nothing are ignored.
pub(crate) fn load_var_dirs(dir: &Path, raw: &mut Raw, diags: &mut Diagnostics) {
    for (sub, is_group) in [("group_vars", true), ("host_vars", false)] {
        let d = dir.join(sub);
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let Some(fname) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if fname.starts_with('.') {
                continue;
            }
            let (name, files) = if p.is_dir() {
                let mut inner: Vec<PathBuf> = std::fs::read_dir(&p)
                    .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
                    .unwrap_or_default();
                inner.retain(|f| f.is_file() && var_file(f));
                inner.sort();
                (fname.to_string(), inner)
            } else {
                let ext = p.extension().and_then(|e| e.to_str());
                let name = match ext {
                    Some(e) if VAR_FILE_EXTENSIONS.contains(&e) => {
                        p.file_stem().and_then(|s| s.to_str()).unwrap_or(fname)
                    }
                    None => fname,
                    Some(_) => continue,
                };
                (name.to_string(), vec![p.clone()])
            };
            let known = if is_group {
                name == "all" || name == "ungrouped" || raw.groups.contains_key(&name)
            } else {
                raw.hosts.contains_key(&name)
            };
            if !known {
                continue;
            }
            for f in files {
                for var in read_var_file(&f, diags) {
                    if is_group {
                        apply_group_var(raw.group(&name), var, diags);
                    } else {
                        apply_host_var(raw.host(&name, None), var, diags);
                    }
                }
            }
        }
    }
}

fn var_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.')
        && p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| VAR_FILE_EXTENSIONS.contains(&e))
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
