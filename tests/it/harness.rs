//! A small builder for integration tests: write a playbook (and inventory) into a temporary
//! directory, run the real `sortie` binary on it, and read its exit code, output and report.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn sortie_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sortie"))
}

/// The repository root (for `playbooks/`, `schemas/`).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What one `sortie` process did.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The `--report` JSON, when the command wrote one.
    pub report: Option<Value>,
}

impl Output {
    /// The task report of `step` (id or name) on `host`, in the first play that has it.
    pub fn task(&self, host: &str, step: &str) -> Value {
        let r = self.report.as_ref().expect("a report was written");
        for p in r["plays"].as_array().expect("plays") {
            for h in p["hosts"].as_array().expect("hosts") {
                if h["name"] == host {
                    for t in h["tasks"].as_array().expect("tasks") {
                        if t["id"] == step || t["name"] == step {
                            return t.clone();
                        }
                    }
                }
            }
        }
        panic!(
            "no task {step} on {host} in report:\n{}",
            serde_json::to_string_pretty(r).unwrap_or_default()
        );
    }

    pub fn status(&self, host: &str, step: &str) -> String {
        self.task(host, step)["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn host_status(&self, host: &str) -> String {
        let r = self.report.as_ref().expect("report");
        for p in r["plays"].as_array().expect("plays") {
            for h in p["hosts"].as_array().expect("hosts") {
                if h["name"] == host {
                    return h["status"].as_str().unwrap_or("").to_string();
                }
            }
        }
        panic!("no host {host}");
    }

    pub fn all(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// One test case: a temporary directory with a playbook and optional inventory.
pub struct Case {
    pub dir: tempfile::TempDir,
    pub playbook: PathBuf,
    pub inventory: Vec<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Case {
    pub fn new(playbook: &str) -> Case {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("playbook.yml");
        std::fs::write(&path, playbook).expect("write playbook");
        Case {
            dir,
            playbook: path,
            inventory: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Uses an existing inventory file.
    pub fn inventory_file(mut self, path: impl AsRef<Path>) -> Case {
        self.inventory.push(path.as_ref().to_path_buf());
        self
    }

    /// Writes an inventory into the case's directory.
    pub fn inventory(mut self, text: &str) -> Case {
        let p = self
            .dir
            .path()
            .join(format!("inventory{}.yml", self.inventory.len()));
        std::fs::write(&p, text).expect("write inventory");
        self.inventory.push(p);
        self
    }

    /// Writes a file beside the playbook.
    pub fn file(self, name: &str, text: &str) -> Case {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, text).expect("write file");
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Case {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Case {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, sub: &str) -> Command {
        let mut c = Command::new(sortie_bin());
        c.arg(sub).arg(&self.playbook);
        for i in &self.inventory {
            c.arg("-i").arg(i);
        }
        c.current_dir(self.dir.path());
        c.env("NO_COLOR", "1");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// `sortie run` with `--format plain --report report.json` and the case's args.
    pub fn run(&self) -> Output {
        self.run_prepared(|_| {})
    }

    /// `run`, with the command changed by `prepare` before it starts.
    fn run_prepared(&self, prepare: impl FnOnce(&mut Command)) -> Output {
        let report = self.dir.path().join("report.json");
        let _ = std::fs::remove_file(&report);
        let mut c = self.command("run");
        c.arg("--format").arg("plain").arg("--report").arg(&report);
        c.args(&self.args);
        prepare(&mut c);
        finish(c, Some(&report))
    }

    /// `run` as under `nohup`: SIGHUP ignored by sortie, and so by what it starts unless it
    /// says otherwise.
    pub fn run_ignoring_hangup(&self) -> Output {
        use std::os::unix::process::CommandExt;
        self.run_prepared(|c| {
            // SAFETY: only `signal` (async-signal-safe) runs between fork and exec.
            unsafe {
                c.pre_exec(|| {
                    libc::signal(libc::SIGHUP, libc::SIG_IGN);
                    Ok(())
                });
            }
        })
    }

    /// `sortie run` as `run` makes it, started and left running (its output discarded).
    pub fn spawn_run(&self) -> std::process::Child {
        let mut c = self.command("run");
        c.arg("--format").arg("plain");
        c.args(&self.args);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c.spawn().expect("start sortie")
    }

    /// `sortie check` with the case's args.
    pub fn check(&self) -> Output {
        let mut c = self.command("check");
        c.args(&self.args);
        finish(c, None)
    }
}

pub fn finish(mut c: Command, report: Option<&Path>) -> Output {
    let out = c.output().expect("run sortie");
    let report = report.filter(|p| p.exists()).map(|p| {
        serde_json::from_str(&std::fs::read_to_string(p).expect("read report"))
            .expect("report is JSON")
    });
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    }
}

/// Runs `sortie ARGS…` in `dir`.
pub fn sortie(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(sortie_bin());
    c.args(args).current_dir(dir).env("NO_COLOR", "1");
    finish(c, None)
}

/// A lab of `n` sshd hosts plus HTTP and TCP servers, in its own temporary directory.
pub struct TestLab {
    pub lab: sortie_lab::Lab,
    pub dir: tempfile::TempDir,
}

impl TestLab {
    pub fn start(n: usize) -> TestLab {
        let dir = tempfile::tempdir().expect("temp dir");
        let lab =
            sortie_lab::Lab::start(sortie_lab::LabOptions::for_test(n, dir.path().join("lab")))
                .expect("the lab starts (is openssh-server installed?)");
        TestLab { lab, dir }
    }

    pub fn inventory(&self) -> PathBuf {
        self.lab.dir().join("inventory.yml")
    }
}

impl TestLab {
    /// A lab of `n` hosts started with the options `f` makes of the test defaults (an inside
    /// network, hosts that forbid forwarding, …).
    pub fn start_with(
        n: usize,
        f: impl FnOnce(sortie_lab::LabOptions) -> sortie_lab::LabOptions,
    ) -> TestLab {
        let dir = tempfile::tempdir().expect("temp dir");
        let lab = sortie_lab::Lab::start(f(sortie_lab::LabOptions::for_test(
            n,
            dir.path().join("lab"),
        )))
        .expect("the lab starts with its options");
        TestLab { lab, dir }
    }

    /// A lab whose hosts are `rtt` away: every connection to a host's address crosses the
    /// lab's WAN (`sortie_lab::wan`), each direction delayed by half the round trip.
    pub fn start_with_rtt(n: usize, rtt: std::time::Duration) -> TestLab {
        let dir = tempfile::tempdir().expect("temp dir");
        let lab = sortie_lab::Lab::start(
            sortie_lab::LabOptions::for_test(n, dir.path().join("lab")).with_rtt(rtt),
        )
        .expect("the lab starts behind its WAN");
        TestLab { lab, dir }
    }
}
