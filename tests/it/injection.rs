//! The shell-injection guard, tried as an attacker would: values that try to break out of
//! the quotes around them, run in real `local` steps and over a real sshd host. A payload
//! that got through would create a file; every test asserts that it did not.

use crate::harness::{Case, TestLab};

/// The payloads: each would run `touch PWNED` if the shell interpreted it.
fn payloads(pwned: &str) -> Vec<String> {
    vec![
        format!("$(touch {pwned})"),
        format!("`touch {pwned}`"),
        format!("x'; touch {pwned}; echo '"),
        format!("x\"; touch {pwned}; echo \""),
        format!("x\ntouch {pwned}"),
        format!("\\'$(touch {pwned})"),
    ]
}

/// Commands that put `v` somewhere `| quote` does not protect it, or unquoted.
const REFUSED: &[&str] = &[
    r#"echo "{{ v | quote }}""#,
    r#"echo '{{ v | quote }}'"#,
    r#"echo $'{{ v | quote }}'"#,
    r#"echo \{{ v | quote }}"#,
    r#"echo "$(printf %s {{ v | quote }})""#,
    r#"echo {{ v }}"#,
    r#"echo "{{ v }}""#,
];

/// A playbook running each command (`v` is the loop's item) with each payload, as `kind`
/// steps, one step per command.
fn playbook(kind: &str, commands: &[&str], payloads: &[String]) -> String {
    let items = serde_json::to_string(payloads).expect("json");
    let mut pb = String::from("name: injection\nhosts: all\nsteps:\n");
    for (i, c) in commands.iter().enumerate() {
        let cmd = serde_json::to_string(&c.replace("{{ v", "{{ item")).expect("json");
        pb.push_str(&format!(
            "  - id: c{i}\n    {kind}: {cmd}\n    loop: {items}\n    needs: []\n"
        ));
    }
    pb
}

fn assert_untouched(pwned: &std::path::Path, what: &str) {
    assert!(
        !pwned.exists(),
        "{what}: a payload ran (`{}` exists)",
        pwned.display()
    );
}

#[test]
fn quote_inside_quotes_is_refused_and_outside_is_safe_in_local_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pwned = dir.path().join("PWNED");
    let p = payloads(&pwned.display().to_string());
    let out = Case::new(&playbook("local", REFUSED, &p)).run();
    assert_untouched(&pwned, "refused commands");
    assert_eq!(out.code, 1, "{}", out.stdout);
    for (i, cmd) in REFUSED.iter().enumerate() {
        let t = out.task("localhost", &format!("c{i}"));
        assert_eq!(t["status"], "failed", "{cmd}: {t}");
        assert_eq!(t["error"]["kind"], "template", "{cmd}: {t}");
    }
    let t = out.task("localhost", "c0");
    assert_eq!(
        t["error"]["message"],
        "`| quote` does not protect a value inside quotes"
    );
    assert_eq!(t["error"]["label"], "this value lands inside \"…\"");
    assert!(
        out.stdout.contains("drop the quotes around"),
        "{}",
        out.stdout
    );

    // Outside quotes, `quote` makes each payload one word, printed as it is.
    let safe = [r#"printf '%s|' {{ v | quote }}"#];
    let out = Case::new(&playbook("local", &safe, &p)).run();
    assert_untouched(&pwned, "quoted commands");
    assert_eq!(out.code, 0, "{}", out.stdout);
    let results = out.task("localhost", "c0")["output"]["results"].clone();
    for (r, payload) in results.as_array().expect("results").iter().zip(&p) {
        assert_eq!(r["stdout"].as_str(), Some(format!("{payload}|").as_str()));
    }
}

#[test]
fn quote_inside_quotes_is_refused_over_ssh() {
    let t = TestLab::start(1);
    let pwned = t.dir.path().join("PWNED-ssh");
    let p = payloads(&pwned.display().to_string());
    let out = Case::new(&playbook("ssh", &REFUSED[..4], &p))
        .inventory(&std::fs::read_to_string(t.inventory()).expect("inventory"))
        .run();
    // The lab's hosts are this machine: a payload run there would create the file here.
    assert_untouched(&pwned, "ssh");
    assert_eq!(out.code, 1, "{}", out.stdout);
    let t0 = out.task("h01", "c1");
    assert_eq!(t0["error"]["label"], "this value lands inside '…'");
}
