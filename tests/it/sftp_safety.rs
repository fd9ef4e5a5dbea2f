//! `sftp_get` and `sftp_put` under attack, against the lab's real sshd hosts (which share
//! this machine's filesystem, so the tests plant on the "remote" side directly): links planted
//! at temporary names (local `NAME.part`, remote `.NAME.sortie-PID-N.tmp`) are never written
//! through; SFTP's exclusive create passes over taken names; globs and recursion never follow a
//! folder link, nor a file link out of `src`'s tree; FIFOs, sockets and dangling links are
//! said, not silently skipped; a download killed half-way is resumed only from a verified
//! prefix; a killed upload's temporaries are removed by the next run, and nothing else is.

// `StepError` (the engine's type) carries a whole `Diagnostic`; `Remote`'s calls return it.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use sha2::Digest;

use crate::harness::{Case, Output, TestLab, finish, sortie_bin};
use crate::ssh::temporaries;

fn sha256_file(p: &Path) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(p).expect("open");
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

fn out(o: &Output, step: &str) -> Value {
    o.task("h01", step)["output"].clone()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// A one-host case over the lab's own inventory.
fn case(t: &TestLab, playbook: &str) -> Case {
    Case::new(playbook).inventory_file(t.inventory())
}

/// Sets the mtime of `p` itself (a link's own, not its target's) to `secs` ago.
fn age(p: &Path, secs: u64) {
    let when = SystemTime::now() - Duration::from_secs(secs);
    let epoch = when
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let st = Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{epoch}"))
        .arg(p)
        .status()
        .expect("touch");
    assert!(st.success());
}

#[test]
fn a_get_never_writes_through_a_link_planted_at_the_part_name() {
    let t = TestLab::start(1);
    let remote = t.lab.dir().join("logs");
    std::fs::create_dir_all(&remote).expect("mkdir");
    std::fs::write(remote.join("app.log"), "fetched app log\n").expect("w");
    std::fs::write(remote.join("err.log"), "fetched err log\n").expect("w");
    let c = case(
        &t,
        &format!(
            "name: get\nhosts: all\nsteps:\n  - id: get\n    sftp_get: {{ src: \"{}/*.log\", dest: \"got/{{{{ host.name }}}}\" }}\n",
            remote.display()
        ),
    );
    // An attacker who can write in dest plants links at the names the old versions wrote to:
    // one to a file that exists, one dangling (it would create a file where it points).
    let outside = c.path("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("victim.txt"), "precious\n").expect("w");
    let got = c.path("got/h01");
    std::fs::create_dir_all(&got).expect("mkdir");
    symlink(&outside.join("victim.txt"), &got.join("app.log.part"));
    symlink(&outside.join("created.txt"), &got.join("err.log.part"));
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(read(&outside.join("victim.txt")), "precious\n");
    assert!(
        !outside.join("created.txt").exists(),
        "a dangling link was followed"
    );
    assert_eq!(
        std::fs::read_dir(&outside).expect("ls").count(),
        1,
        "nothing else appeared outside dest"
    );
    for f in ["app.log", "err.log"] {
        let local = got.join(f);
        let meta = std::fs::symlink_metadata(&local).expect("fetched");
        assert!(meta.is_file(), "{f} is a regular file, not a link");
        assert_eq!(read(&local), read(&remote.join(f)));
    }
    // The planted links are someone else's: left as they are.
    assert!(std::fs::symlink_metadata(got.join("app.log.part")).is_ok_and(|m| m.is_symlink()));
    assert!(temporaries(&got, ".").is_empty(), "no temporary is left");
}

#[test]
fn globs_and_recursion_never_follow_links_out_of_the_tree() {
    let t = TestLab::start(1);
    let tree = t.lab.dir().join("tree");
    let secret = t.lab.dir().join("secret");
    std::fs::create_dir_all(tree.join("real")).expect("mkdir");
    std::fs::create_dir_all(tree.join("other")).expect("mkdir");
    std::fs::create_dir_all(&secret).expect("mkdir");
    std::fs::write(secret.join("passwd"), "root:x:0:0\n").expect("w");
    std::fs::write(secret.join("shadow"), "root:$6$secret\n").expect("w");
    std::fs::write(tree.join("real/a.conf"), "a\n").expect("w");
    std::fs::write(tree.join("other/x.conf"), "x\n").expect("w");
    // `etc -> secret` (like `etc -> /etc`), a file link out of the tree, one inside it.
    symlink(&secret, &tree.join("etc"));
    symlink(&secret.join("shadow"), &tree.join("real/shadow.conf"));
    symlink(Path::new("../other/x.conf"), &tree.join("real/alias.conf"));
    let c = case(
        &t,
        &format!(
            r#"name: get
hosts: all
steps:
  - id: glob
    sftp_get: {{ src: "{tree}/*/*", dest: "glob/{{{{ host.name }}}}" }}
  - id: tree
    sftp_get: {{ src: "{tree}/", dest: "tree/{{{{ host.name }}}}", recursive: true }}
"#,
            tree = tree.display()
        ),
    );
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    for step in ["glob", "tree"] {
        let dir = c.path(&format!("{step}/h01"));
        assert_eq!(read(&dir.join("real/a.conf")), "a\n");
        assert_eq!(read(&dir.join("other/x.conf")), "x\n");
        assert_eq!(
            read(&dir.join("real/alias.conf")),
            "x\n",
            "a link inside the tree"
        );
        assert!(
            !dir.join("etc").exists(),
            "{step}: the folder link was followed"
        );
        assert!(
            !dir.join("real/shadow.conf").exists(),
            "{step}: a link out of the tree"
        );
        let r = out(&o, step);
        let skipped = r["skipped"].as_array().expect("skipped");
        let reason = |path: &Path| -> String {
            skipped
                .iter()
                .find(|s| s["path"] == path.display().to_string())
                .and_then(|s| s["reason"].as_str())
                .unwrap_or_else(|| panic!("{step}: {} not in {r}", path.display()))
                .to_string()
        };
        assert!(
            reason(&tree.join("etc")).contains("symlink to a folder"),
            "{r}"
        );
        let why = reason(&tree.join("real/shadow.conf"));
        assert!(why.contains("outside"), "{why}");
        assert!(
            r["files"]
                .as_array()
                .expect("files")
                .iter()
                .all(|f| !f["path"].as_str().unwrap_or("").contains("secret")),
            "{r}"
        );
        let warnings = o.task("h01", step)["warnings"].to_string();
        assert!(warnings.contains("shadow.conf"), "{warnings}");
    }
}

#[test]
fn a_recursive_get_says_what_it_skipped_and_why() {
    let t = TestLab::start(1);
    let tree = t.lab.dir().join("special");
    std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
    std::fs::write(tree.join("sub/real.txt"), "real\n").expect("w");
    for i in 0..7 {
        let st = Command::new("mkfifo")
            .arg(tree.join(format!("fifo{i}")))
            .status()
            .expect("mkfifo");
        assert!(st.success());
    }
    let _socket =
        std::os::unix::net::UnixListener::bind(tree.join("control.sock")).expect("socket");
    symlink(&tree.join("gone"), &tree.join("dangling"));
    let c = case(
        &t,
        &format!(
            "name: get\nhosts: all\nsteps:\n  - id: get\n    sftp_get: {{ src: \"{}\", dest: \"got/{{{{ host.name }}}}\", recursive: true }}\n",
            tree.display()
        ),
    );
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(read(&c.path("got/h01/special/sub/real.txt")), "real\n");
    let r = out(&o, "get");
    let skipped: Vec<(String, String)> = r["skipped"]
        .as_array()
        .expect("a skipped list")
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap_or("").to_string(),
                s["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let at = |name: &str| tree.join(name).display().to_string();
    assert_eq!(skipped.len(), 9, "{skipped:?}");
    assert!(skipped.contains(&(at("control.sock"), "a socket".into())));
    assert!(skipped.contains(&(at("dangling"), "a dangling symlink".into())));
    for i in 0..7 {
        assert!(skipped.contains(&(at(&format!("fifo{i}")), "a FIFO".into())));
    }
    // Said as a warning too: the first five by name, then a count.
    let warnings = o.task("h01", "get")["warnings"].clone();
    let w = warnings[0].as_str().unwrap_or("");
    assert!(
        w.starts_with("skipped 9 entries that are not fetched: "),
        "{w}"
    );
    assert!(
        w.contains(&format!("{} (a socket)", at("control.sock"))),
        "{w}"
    );
    assert!(w.contains("and 4 more"), "{w}");
    assert!(o.stdout.contains("skipped 9 entries"), "{}", o.all());
    // Only the real file came: nothing stands for the FIFOs or the socket.
    assert_eq!(
        std::fs::read_dir(c.path("got/h01/special"))
            .expect("ls")
            .count(),
        1
    );
}

/// `sortie run` of `c`, started through `sh` so that the shell plants first and then becomes
/// sortie with the same PID (old versions named remote temporaries after it).
fn run_planting(c: &Case, plant: &str) -> Output {
    let report = c.path("report.json");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "{plant} && exec \"$SORTIE\" run playbook.yml -i \"$INVENTORY\" --format plain --report report.json"
        ))
        .env("SORTIE", sortie_bin())
        .env("INVENTORY", &c.inventory[0])
        .env("NO_COLOR", "1")
        .current_dir(c.dir.path());
    finish(cmd, Some(&report))
}

#[test]
fn a_put_never_writes_through_a_link_planted_at_its_temporary_name() {
    let t = TestLab::start(1);
    let dir = t.lab.dir().join("put");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let victim = t.lab.dir().join("victim.conf");
    std::fs::write(&victim, "precious\n").expect("w");
    let c = case(
        &t,
        &format!(
            "name: put\nhosts: all\nsteps:\n  - id: put\n    sftp_put: {{ content: \"uploaded\\n\", dest: \"{}/app.conf\", mode: \"0600\" }}\n",
            dir.display()
        ),
    );
    // Links at the names the old version would use (its PID, upload 0), and a few more.
    let plant = format!(
        "for n in 0 1 2; do ln -s '{v}' '{d}/.app.conf.sortie-'$$-$n.tmp; done",
        v = victim.display(),
        d = dir.display()
    );
    let o = run_planting(&c, &plant);
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(
        read(&victim),
        "precious\n",
        "written through a planted link"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&victim).expect("m").permissions().mode() & 0o777;
    assert_ne!(
        mode, 0o600,
        "the victim's mode was changed through the link"
    );
    let dest = dir.join("app.conf");
    assert!(std::fs::symlink_metadata(&dest).expect("put").is_file());
    assert_eq!(read(&dest), "uploaded\n");
    let links = std::fs::read_dir(&dir)
        .expect("ls")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
        .count();
    assert_eq!(links, 3, "the planted links are left alone");
}

#[test]
fn exclusive_creation_passes_over_taken_names_and_never_writes_through_them() {
    let t = TestLab::start(1);
    let dir = t.lab.dir().join("excl");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").expect("w");
    symlink(&victim, &dir.join("link"));
    symlink(&dir.join("nowhere"), &dir.join("dangling"));
    std::fs::write(dir.join("file"), "someone's\n").expect("w");
    let inventory = sortie::inventory::load(&[t.inventory()]).expect("lab inventory");
    let host = inventory.host("h01").expect("h01").clone();
    let conn = sortie::conn::HostConn::new(&host);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let d = dir.display().to_string();
    let (made, all_taken, dangling) = rt
        .block_on(conn.remote(move |mut r| async move {
            let mut names = ["link", "dangling", "file", "fresh"].into_iter();
            let mut f = r
                .create_unique(8, 0o644, || {
                    Ok(format!("{d}/{}", names.next().unwrap_or("more")))
                })
                .await?;
            r.write_all(&mut f, b"mine\n").await?;
            let made = f.path.clone();
            r.close(f).await?;
            let all_taken = r
                .create_unique(3, 0o644, || Ok(format!("{d}/link")))
                .await
                .err()
                .map(|e| e.to_string());
            let dangling = r.create_new(&format!("{d}/dangling"), 0o644).await.is_ok();
            Ok((made, all_taken, dangling))
        }))
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(conn.close());
    assert_eq!(made, format!("{}/fresh", dir.display()));
    assert_eq!(read(&dir.join("fresh")), "mine\n");
    assert_eq!(read(&victim), "precious\n");
    assert_eq!(read(&dir.join("file")), "someone's\n");
    assert!(
        !dir.join("nowhere").exists(),
        "a dangling link was followed"
    );
    let msg = all_taken.unwrap_or_default();
    assert!(msg.contains("3 names were taken"), "{msg}");
    assert!(
        !dangling,
        "an exclusive create through a dangling link succeeded"
    );
}

#[test]
fn a_killed_uploads_temporaries_are_removed_by_the_next_run_and_nothing_else() {
    let t = TestLab::start(1);
    let dir = t.lab.dir().join("stale");
    std::fs::create_dir_all(dir.join(".app.conf.sortie-bbbbbbbbbbbbbbbb.tmp")).expect("mkdir");
    let victim = t.lab.dir().join("victim.conf");
    std::fs::write(&victim, "precious\n").expect("w");
    let old = |name: &str| {
        std::fs::write(dir.join(name), "half an upload").expect("w");
        age(&dir.join(name), 2 * 3600);
    };
    old(".app.conf.sortie-0123456789abcdef.tmp");
    old(".app.conf.sortie-4242-0.tmp");
    old(".other.conf.sortie-cccccccccccccccc.tmp");
    old("app.conf.sortie-notes");
    std::fs::write(dir.join(".app.conf.sortie-fedcba9876543210.tmp"), "in use").expect("w");
    symlink(&victim, &dir.join(".app.conf.sortie-aaaaaaaaaaaaaaaa.tmp"));
    age(&dir.join(".app.conf.sortie-aaaaaaaaaaaaaaaa.tmp"), 2 * 3600);
    age(&dir.join(".app.conf.sortie-bbbbbbbbbbbbbbbb.tmp"), 2 * 3600);
    let c = case(
        &t,
        &format!(
            "name: put\nhosts: all\nsteps:\n  - id: put\n    sftp_put: {{ content: \"new\\n\", dest: \"{}/app.conf\" }}\n",
            dir.display()
        ),
    );
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(read(&dir.join("app.conf")), "new\n");
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            ".app.conf.sortie-aaaaaaaaaaaaaaaa.tmp", // a link: never taken for ours
            ".app.conf.sortie-bbbbbbbbbbbbbbbb.tmp", // a folder
            ".app.conf.sortie-fedcba9876543210.tmp", // fresh: maybe a run still going
            ".other.conf.sortie-cccccccccccccccc.tmp", // another file's
            "app.conf",
            "app.conf.sortie-notes", // not sortie's pattern
        ]
    );
    assert_eq!(read(&victim), "precious\n");
    let warnings = o.task("h01", "put")["warnings"].to_string();
    assert!(warnings.contains("removed 2 temporary files"), "{warnings}");
    assert!(
        warnings.contains(".app.conf.sortie-4242-0.tmp"),
        "{warnings}"
    );
}

#[test]
fn a_folder_upload_removes_stale_temporaries_in_every_folder_it_wrote_into() {
    // Each folder is listed beside the first upload into it (the listing travels with the
    // write and the close); a second folder's listing starts once the first one's is taken.
    let t = TestLab::start(1);
    let root = t.lab.dir().join("tree/site");
    let mut stale = Vec::new();
    for sub in ["a", "b", "c"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        for name in ["one.conf", "two.conf"] {
            let p = root
                .join(sub)
                .join(format!(".{name}.sortie-0123456789abcdef.tmp"));
            std::fs::write(&p, "half an upload").expect("w");
            age(&p, 2 * 3600);
            stale.push(p);
        }
        // Fresh: maybe a run still going; and one that is not a destination of the step.
        std::fs::write(
            root.join(sub).join(".one.conf.sortie-fedcba9876543210.tmp"),
            "x",
        )
        .expect("w");
        let other = root
            .join(sub)
            .join(".other.conf.sortie-cccccccccccccccc.tmp");
        std::fs::write(&other, "x").expect("w");
        age(&other, 2 * 3600);
    }
    let c = case(
        &t,
        &format!(
            "name: put\nhosts: all\nsteps:\n  - id: put\n    sftp_put: {{ src: site, dest: \"{}/\" }}\n",
            root.parent().expect("tree").display()
        ),
    );
    for sub in ["a", "b", "c"] {
        for name in ["one.conf", "two.conf"] {
            let p = c.path(&format!("site/{sub}/{name}"));
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, format!("{sub}/{name}\n")).expect("w");
        }
    }
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    for p in &stale {
        assert!(!p.exists(), "{} is still there", p.display());
    }
    for sub in ["a", "b", "c"] {
        assert_eq!(
            read(&root.join(sub).join("two.conf")),
            format!("{sub}/two.conf\n")
        );
        assert!(
            root.join(sub)
                .join(".one.conf.sortie-fedcba9876543210.tmp")
                .exists()
        );
        assert!(
            root.join(sub)
                .join(".other.conf.sortie-cccccccccccccccc.tmp")
                .exists()
        );
        let left = std::fs::read_dir(root.join(sub)).expect("ls").count();
        assert_eq!(
            left, 4,
            "{sub}: only the two files and the two foreign temporaries"
        );
    }
    let warnings = o.task("h01", "put")["warnings"].to_string();
    assert!(warnings.contains("removed 6 temporary files"), "{warnings}");
}

/// Starts `sortie run` of `c` and kills it (SIGKILL: it cannot clean up) once a temporary in
/// `got` holds `at_least` bytes; returns that temporary.
fn kill_mid_download(c: &Case, got: &Path, at_least: u64) -> PathBuf {
    let mut cmd = Command::new(sortie_bin());
    cmd.arg("run")
        .arg(&c.playbook)
        .arg("-i")
        .arg(&c.inventory[0])
        .args(["--format", "plain"])
        .current_dir(c.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("sortie");
    let deadline = Instant::now() + Duration::from_secs(60);
    let part = loop {
        let part = temporaries(got, "").into_iter().next();
        let len = part
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        if len >= at_least || Instant::now() > deadline {
            break part;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().expect("kill sortie");
    child.wait().expect("wait");
    part.expect("a temporary was being written when sortie was killed")
}

#[test]
fn a_killed_get_resumes_from_a_verified_leftover_and_only_from_one() {
    let t = TestLab::start(1);
    let big = t.lab.dir().join("big.bin");
    const SIZE: u64 = 192 << 20;
    {
        // Sparse, with bytes that are not all zeros at a few places.
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&big).expect("create");
        f.set_len(SIZE).expect("len");
        for at in [0u64, 3 << 20, 40 << 20, SIZE - 4096] {
            f.seek(SeekFrom::Start(at)).expect("seek");
            let block: Vec<u8> = (0..4096u32).map(|i| (i * 31 + at as u32) as u8).collect();
            f.write_all(&block).expect("w");
        }
    }
    let want = sha256_file(&big);
    let c = case(
        &t,
        &format!(
            "name: get\nhosts: all\nsteps:\n  - id: get\n    sftp_get: {{ src: \"{}\", dest: \"got/{{{{ host.name }}}}\" }}\n",
            big.display()
        ),
    );
    let got = c.path("got/h01");
    let part = kill_mid_download(&c, &got, 8 << 20);
    let left = std::fs::metadata(&part).expect("the leftover stays").len();
    assert!(
        left > 0 && left < SIZE,
        "killed in the middle ({left} bytes)"
    );
    assert!(!got.join("big.bin").exists());
    let keep = c.path("leftover.copy");
    std::fs::copy(&part, &keep).expect("copy");

    // The next run goes on from the leftover's verified prefix.
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    let r = out(&o, "get");
    let from = r["files"][0]["resumed_from"].as_u64().expect("resumed");
    assert_eq!(from, left - left % 65536, "{r}");
    assert_eq!(r["bytes"].as_u64(), Some(SIZE - from));
    assert_eq!(r["files"][0]["sha256"], want);
    assert_eq!(sha256_file(&got.join("big.bin")), want);
    assert!(
        temporaries(&got, ".").is_empty(),
        "the leftover became the file"
    );

    // A leftover whose prefix differs from the remote file is not appended to.
    std::fs::remove_file(got.join("big.bin")).expect("rm");
    std::fs::copy(&keep, &part).expect("restore");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&part)
            .expect("open");
        f.seek(SeekFrom::Start(1 << 20)).expect("seek");
        f.write_all(b"tampered").expect("w");
    }
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    let r = out(&o, "get");
    assert!(r["files"][0].get("resumed_from").is_none(), "{r}");
    assert_eq!(r["bytes"].as_u64(), Some(SIZE));
    assert_eq!(sha256_file(&got.join("big.bin")), want);
    assert!(temporaries(&got, ".").is_empty());

    // A link at a leftover's name is neither followed nor resumed from.
    std::fs::remove_file(got.join("big.bin")).expect("rm");
    let victim = c.path("victim.bin");
    std::fs::copy(&keep, &victim).expect("victim");
    let before = sha256_file(&victim);
    symlink(&victim, &part);
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(out(&o, "get")["files"][0].get("resumed_from").is_none());
    assert_eq!(sha256_file(&victim), before, "the link's target changed");
    assert!(std::fs::symlink_metadata(&part).is_ok_and(|m| m.is_symlink()));
    assert_eq!(sha256_file(&got.join("big.bin")), want);
}

/// A server whose SFTP never starts: h01's `sftp` subsystem swallows the client's `INIT` and
/// never answers with a version, h02's answers a line of text (whose first four bytes, read
/// as SFTP's length prefix, ask for 1.8 GB) and hangs up. Each SFTP step fails by its own
/// timeout or at once with an error that points at the server's subsystem, and the host's
/// session stays good for commands; a second SFTP step on it fails the same way, never hangs
/// (it did: the stalled start kept the session's channel opening to itself for 30 s, and a
/// failed start's clean-up read a stale "would block" as its answer).
#[test]
fn a_server_that_stalls_or_answers_garbage_when_sftp_starts_fails_the_step_not_the_session() {
    let lab = TestLab::start_with(2, |o| {
        o.with_sftp_subsystem(0, "cat > /dev/null")
            .with_sftp_subsystem(1, "echo not-an-sftp-server")
    });
    let started = Instant::now();
    let out = Case::new(
        r#"
name: sftp start
hosts: lab
steps:
  - id: put
    sftp_put: { content: "x\n", dest: "/tmp/sortie-stall-{{ host.name }}.txt" }
    timeout: 3s
    ignore_errors: true
  - id: after
    ssh: "echo still-here"
    timeout: 10s
  - id: again
    sftp_get: { src: "/etc/hostname", dest: "{{ out }}/{{ host.name }}/" }
    timeout: 3s
    ignore_errors: true
  - id: last
    ssh: "echo last"
    timeout: 10s
"#,
    )
    .inventory_file(lab.inventory())
    .arg("-e")
    .arg(format!(
        "out={}",
        std::env::temp_dir()
            .join(format!("sortie-stall-{}", std::process::id()))
            .display()
    ))
    .run();
    let took = started.elapsed();
    for host in ["h01", "h02"] {
        for step in ["put", "again"] {
            let t = out.task(host, step);
            assert_eq!(t["status"], "failed", "{host} {step}: {t}\n{}", out.all());
        }
        for (step, said) in [("after", "still-here"), ("last", "last")] {
            let t = out.task(host, step);
            assert_eq!(t["status"], "changed", "{host} {step}: {t}\n{}", out.all());
            assert_eq!(t["output"]["stdout"], said, "{t}");
        }
        assert!(
            !Path::new(&format!("/tmp/sortie-stall-{host}.txt")).exists(),
            "nothing was written on {host}"
        );
    }
    let stalled = out.task("h01", "put")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        stalled.contains("3s"),
        "the stalled start names its timeout: {stalled}"
    );
    let garbage = out.task("h02", "put")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(garbage.contains("Subsystem sftp"), "{garbage}");
    // The second start on h02 fails as the first did, at once: no wait for data.
    let again = out.task("h02", "again");
    assert!(
        again["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Subsystem sftp"),
        "{again}"
    );
    assert!(
        again["duration_ms"].as_u64().unwrap_or(u64::MAX) < 2000,
        "{again}"
    );
    // Two 3 s timeouts on h01, in series, and the rest quick: a hang would reach the 10 s
    // timeouts of the commands.
    assert!(
        took < Duration::from_secs(16),
        "took {took:?}\n{}",
        out.all()
    );
    eprintln!(
        "h01 put: {stalled}\nh02 put: {garbage}\nh01 again: {}\nh02 again: {}",
        out.task("h01", "again")["message"],
        out.task("h02", "again")["message"]
    );
}

/// A slow SFTP subsystem (the real `sftp-server`, two seconds late): the step whose timeout
/// is shorter fails, a command runs meanwhile, and the next SFTP step takes up the start
/// libssh2 kept half-way and writes the whole file.
#[test]
fn a_slow_sftp_start_cut_short_by_a_timeout_is_taken_up_by_the_next_step() {
    let lab = TestLab::start_with(1, |o| {
        o.with_sftp_subsystem(0, "sleep 2; exec /usr/lib/openssh/sftp-server")
    });
    let dest = std::env::temp_dir().join(format!("sortie-slow-sftp-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&dest);
    let out = Case::new(&format!(
        r#"
name: slow sftp
hosts: lab
steps:
  - id: first
    sftp_put: {{ content: "early\n", dest: "{dest}" }}
    timeout: 1s
    ignore_errors: true
  - id: cmd
    ssh: "echo between"
  - id: second
    sftp_put: {{ content: "late\n", dest: "{dest}" }}
    timeout: 20s
"#,
        dest = dest.display()
    ))
    .inventory_file(lab.inventory())
    .run();
    assert_eq!(out.status("h01", "first"), "failed", "{}", out.all());
    assert_eq!(
        out.task("h01", "cmd")["output"]["stdout"],
        "between",
        "{}",
        out.all()
    );
    assert_eq!(out.status("h01", "second"), "changed", "{}", out.all());
    assert_eq!(std::fs::read_to_string(&dest).expect("written"), "late\n");
    let _ = std::fs::remove_file(&dest);
}
