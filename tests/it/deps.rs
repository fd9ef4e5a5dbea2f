//! What the product is built from: `cargo tree` of the `sortie` package's normal dependencies
//! (with their features) holds none of the test lab's servers. The lab (`sortie-lab`, hyper's
//! HTTP/2 and auto server, hickory-server, rcgen, multer) is only a dev-dependency of sortie.
//! `sortie serve` is a server of its own: exactly hyper's HTTP/1 server and hyper-util's
//! graceful shutdown are allowed (docs/decisions.md), nothing more.

use std::collections::BTreeSet;
use std::process::Command;

use crate::harness::repo;

/// The cargo running the tests, else the one on PATH.
fn cargo() -> String {
    std::env::var("CARGO")
        .ok()
        .or_else(|| option_env!("CARGO").map(str::to_string))
        .unwrap_or_else(|| "cargo".to_string())
}

/// `cargo tree -p sortie -e normal -e features`, one entry a line, no tree drawing.
fn normal_tree() -> String {
    let out = Command::new(cargo())
        .args(["tree", "-p", "sortie", "-e", "normal", "-e", "features"])
        .args(["--prefix", "none", "--offline"])
        .current_dir(repo())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

#[test]
fn the_product_is_built_without_the_lab_servers() {
    let tree = normal_tree();
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // The tree was printed: sortie itself and what it does depend on.
    assert!(
        tree.lines()
            .next()
            .is_some_and(|l| l.starts_with("sortie v")),
        "{tree}"
    );
    for needed in ["reqwest", "hyper", "hickory-resolver", "tokio"] {
        assert!(crates.contains(needed), "{needed} missing from:\n{tree}");
    }

    let unwanted: Vec<&str> = ["sortie-lab", "hickory-server", "rcgen", "multer"]
        .into_iter()
        .filter(|c| crates.contains(c))
        .collect();
    assert!(
        unwanted.is_empty(),
        "in sortie's normal dependencies: {unwanted:?}"
    );

    // reqwest's HTTP client is fine; of hyper's (and hyper-util's) server side, only what
    // `serve` uses: HTTP/1 connections and graceful shutdown, not the lab's auto (HTTP/2) server.
    let servers: BTreeSet<&str> = tree
        .lines()
        .filter(|l| {
            l.starts_with("hyper feature \"server") || l.starts_with("hyper-util feature \"server")
        })
        .map(|l| l.trim_end_matches(" (*)"))
        .collect();
    let allowed: BTreeSet<&str> = [
        "hyper feature \"server\"",
        "hyper-util feature \"server\"",
        "hyper-util feature \"server-graceful\"",
    ]
    .into_iter()
    .collect();
    assert_eq!(servers, allowed, "server features in sortie's build");
}
