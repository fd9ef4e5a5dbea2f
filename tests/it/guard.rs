//! The shell-injection guard against an attacker's values: payloads that try to create a file
//! (`$(…)`, `"$(…)"`, backticks, `;`, a newline, a backslash, a single quote), put where
//! `| quote` does not protect (inside "…", '…', backticks, after a backslash, in a
//! here-document) or unquoted, through real `local` steps and real `ssh` steps on a lab sshd
//! host. The file is never created; the safe forms run and print each payload as it is.

use std::path::Path;

use serde_json::Value;

use crate::harness::{Case, Output, TestLab};

fn payloads(canary: &Path) -> Vec<String> {
    let c = canary.display();
    vec![
        format!("$(touch {c})"),
        format!("\"$(touch {c})\""),
        format!("`touch {c}`"),
        format!("; touch {c}"),
        format!("x\ntouch {c}"),
        format!("\\\"; touch {c}; #"),
        format!("it's'; touch {c}; '"),
        format!("`; touch {c}; `"),
    ]
}

/// Steps that put each payload (`item`) where the guard must refuse it, hidden from the
/// check-time guard by a `{% if %}` so that the run-time guard is the one tested, then the
/// safe forms.
fn attack_playbook(kind: &str) -> String {
    let step = |id: &str, cmd: &str| {
        format!(
            "  - id: {id}\n    loop: \"{{{{ payloads }}}}\"\n    ignore_errors: true\n    {kind}: {}\n",
            serde_json::to_string(cmd).expect("json")
        )
    };
    let mut pb = String::from("hosts: all\nvars_files: [payloads.yml]\nsteps:\n");
    for (id, cmd) in [
        (
            "in_double",
            "{% if true %}echo \"{{ item | quote }}\"{% endif %}",
        ),
        (
            "in_single",
            "{% if true %}echo '{{ item | quote }}'{% endif %}",
        ),
        (
            "in_backticks",
            "{% if true %}echo `echo {{ item | quote }}`{% endif %}",
        ),
        (
            "after_backslash",
            "{% if true %}echo \\{{ item | quote }}{% endif %}",
        ),
        (
            "in_heredoc",
            "{% if true %}cat <<EOF\n{{ item | quote }}\nEOF{% endif %}",
        ),
        ("raw", "echo {{ item }}"),
        ("raw_in_double", "echo \"{{ item }}\""),
        ("safe", "printf %s {{ item | quote }}"),
        (
            "safe_nested",
            "printf %s \"$(printf %s {{ item | quote }})\"",
        ),
    ] {
        pb.push_str(&step(id, cmd));
    }
    pb
}

fn with_payloads(c: Case, canary: &Path) -> Case {
    let vars = serde_json::json!({ "payloads": payloads(canary) });
    c.file("payloads.yml", &vars.to_string())
}

fn assert_refused_and_safe_forms_ran(o: &Output, host: &str, canary: &Path) {
    assert!(!canary.exists(), "a payload ran:\n{}", o.all());
    for id in [
        "in_double",
        "in_single",
        "in_backticks",
        "after_backslash",
        "in_heredoc",
        "raw",
        "raw_in_double",
    ] {
        let t = o.task(host, id);
        assert_eq!(t["status"], "failed", "{id}: {t}");
        let message = t["message"].as_str().unwrap_or("");
        assert!(message.contains("shell-injection guard"), "{id}: {message}");
    }
    let want: Vec<Value> = payloads(canary).into_iter().map(Value::from).collect();
    for id in ["safe", "safe_nested"] {
        let t = o.task(host, id);
        assert_eq!(t["status"], "changed", "{id}: {t}");
        let got: Vec<Value> = t["output"]["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["stdout"].clone())
            .collect();
        assert_eq!(got, want, "{id}: every payload arrives as it is");
    }
}

#[test]
fn payloads_never_run_in_local_steps() {
    let dir = tempfile::tempdir().expect("tmp");
    let canary = dir.path().join("pwned");
    let c = with_payloads(Case::new(&attack_playbook("local")), &canary);
    let o = c.run();
    assert_eq!(o.code, 0, "failures are ignored\n{}", o.all());
    assert_refused_and_safe_forms_ran(&o, "localhost", &canary);
    // The report says where and why.
    let t = o.task("localhost", "in_double");
    assert_eq!(t["error"]["location"]["line"], 7, "{t}");
    assert_eq!(t["error"]["location"]["column"], 36, "{t}");
    assert!(
        o.stdout
            .contains("does not protect a value inside double quotes")
    );
}

#[test]
fn payloads_never_run_in_ssh_steps_on_a_real_host() {
    let t = TestLab::start(1);
    let h = &t.lab.ssh.hosts()[0];
    let inventory = format!(
        "ssh:\n  user: root\n  identity_file: \"{}\"\n  known_hosts: \"{}\"\n  host_key_checking: strict\n  connect_timeout: 5s\ngroups:\n  lab:\n    hosts:\n      h01: {{ address: \"{}\", port: {} }}\n",
        t.lab.ssh.identity_file().display(),
        t.lab.ssh.known_hosts().display(),
        h.address,
        h.port
    );
    // The lab's hosts share this machine's file system: a file the host would create is here.
    let canary = t.lab.dir().join("pwned");
    let mut c = with_payloads(Case::new(&attack_playbook("ssh")), &canary).inventory(&inventory);
    let home = c.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    c.env.push(("HOME".into(), home.display().to_string()));
    c.env.push(("SSH_AUTH_SOCK".into(), String::new()));
    let o = c.run();
    assert_eq!(o.code, 0, "failures are ignored\n{}", o.all());
    assert_refused_and_safe_forms_ran(&o, "h01", &canary);
}

#[test]
fn check_refuses_quote_inside_quotes_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tmp");
    let canary = dir.path().join("pwned");
    let pb = r#"hosts: all
vars_files: [payloads.yml]
vars: { v: "{{ payloads[0] }}" }
steps:
  - local: "echo \"{{ v | quote }}\""
  - local: "echo '{{ v | quote }}'"
  - local: { cmd: "echo `echo {{ v | quote }}`" }
  - ssh: "echo \\{{ v | quote }}"
  - ssh: { cmd: "cat <<EOF\n{{ v | quote }}\nEOF" }
  - local: "echo {{ v | quote }} \"$(echo {{ v | quote }})\""
  - local: "echo \"{{ v | quote }}\""
    unsafe_shell: true
"#;
    let c = with_payloads(Case::new(pb), &canary);
    let o = c.check();
    assert_eq!(o.code, 3, "{}", o.all());
    let places: Vec<&str> = o
        .stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("--> "))
        .filter_map(|l| l.rsplit('/').next())
        .collect();
    assert_eq!(
        places,
        [
            "playbook.yml:5:23",
            "playbook.yml:6:22",
            "playbook.yml:7:34",
            "playbook.yml:8:21",
            "playbook.yml:9:32"
        ],
        "{}",
        o.stderr
    );
    for context in [
        "inside double quotes",
        "inside single quotes",
        "inside backticks",
        "after a backslash",
        "in a here-document",
    ] {
        assert!(
            o.stderr.contains(&format!(
                "error: shell-injection guard: `| quote` does not protect a value {context}"
            )),
            "{context}\n{}",
            o.stderr
        );
    }
    assert!(o.stderr.contains("help: drop the surrounding quotes"));
    let o = c.run();
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(!canary.exists(), "nothing ran");
}
