//! The engine driven as a library, without the binary: a request built in code, events
//! collected by a sink of the test's own, the report returned — what `serve` and shards do.

use std::path::Path;
use std::sync::{Arc, Mutex};

use sortie::exec::{self, RunRequest, Shard};
use sortie::report::Status;
use sortie::report::event::{Event, EventSink};

/// A sink that keeps every event.
#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn send(&self, event: Event) {
        self.0.lock().expect("events").push(event);
    }
}

const PLAYBOOK: &str = r#"name: library
vars: { token: "lib-secret-5e1f" }
secrets: [token]
steps:
  - id: port
    tcp: { host: 127.0.0.1, port: "{{ port }}", timeout: 2s }
  - id: echo
    local: "echo {{ token }} {{ host.name }}"
  - name: fails on b
    local: "test {{ host.name }} != b"
    expect: { rc: 0 }
"#;

const INVENTORY: &str = "hosts:\n  a: { address: 127.0.0.1 }\n  b: { address: 127.0.0.1 }\n  c: { address: 127.0.0.1 }\n";

fn request(dir: &Path, port: u16) -> RunRequest {
    let pb = sortie::playbook::load_str(&dir.join("library.yml"), PLAYBOOK).expect("playbook");
    let inv = sortie::inventory::load_str("library-inventory.yml", INVENTORY).expect("inventory");
    let mut req = RunRequest::new(pb, inv);
    req.extra.insert("port".into(), port.into());
    req
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_run_through_the_library_reports_and_streams_redacted_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let sink = Arc::new(Collect::default());
    let report = runtime()
        .block_on(exec::run(request(dir.path(), port), sink.clone()))
        .expect("the request is valid");
    assert_eq!(report.exit_code, 1, "b failed its last step");
    let hosts = &report.plays[0].hosts;
    let status: Vec<(&str, Status)> = hosts.iter().map(|h| (h.name.as_str(), h.status)).collect();
    assert_eq!(
        status,
        [
            ("a", Status::Changed),
            ("b", Status::Failed),
            ("c", Status::Changed)
        ]
    );
    assert_eq!(
        hosts[0].tasks[0].output["open"], true,
        "the real listener answered"
    );
    // The failed check keeps its place as data: line 11 of the playbook, the `0` of `rc: 0`.
    let failed = &hosts[1].tasks[2];
    let loc = failed.checks[0]
        .location
        .as_ref()
        .expect("a declared expectation");
    assert_eq!(
        (loc.line, loc.column),
        (11, 19),
        "the caret under the expected value"
    );
    assert!(loc.file.ends_with("library.yml"), "{loc:?}");
    // Nothing that left the engine holds the secret.
    let events = sink.0.lock().expect("events");
    assert!(matches!(
        events.first(),
        Some(Event::RunStarted { hosts: 3, .. })
    ));
    assert!(matches!(events.last(), Some(Event::RunFinished { .. })));
    let finished = events
        .iter()
        .filter(|e| matches!(e, Event::TaskFinished { .. }))
        .count();
    assert_eq!(finished, 9, "a task event per host × step");
    let all = format!(
        "{:?}\n{}",
        *events,
        serde_json::to_string(&report).expect("json")
    );
    assert!(!all.contains("lib-secret-5e1f"), "the secret leaked");
    assert!(all.contains("*** a"), "the echo was redacted, not lost");
}

#[test]
fn a_shard_runs_its_slice_and_a_stopped_run_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let rt = runtime();
    let mut seen = Vec::new();
    for index in 0..2 {
        let mut req = request(dir.path(), port);
        req.shard = Some(Shard { index, count: 2 });
        let r = rt
            .block_on(exec::run(req, Arc::new(sortie::report::event::Discard)))
            .expect("valid");
        seen.extend(r.plays[0].hosts.iter().map(|h| h.name.clone()));
    }
    seen.sort();
    assert_eq!(seen, ["a", "b", "c"], "two shards cover every host once");

    let req = request(dir.path(), port);
    req.cancel.stop_new.cancel();
    let r = rt
        .block_on(exec::run(req, Arc::new(sortie::report::event::Discard)))
        .expect("valid");
    assert!(r.interrupted);
    assert_eq!(r.exit_code, sortie::exit::INTERRUPTED);
    assert!(r.plays[0].hosts.iter().all(|h| h.status == Status::Skipped));
}

#[test]
fn a_bad_request_is_diagnostics_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut req = request(dir.path(), 1);
    req.limit = Some("nosuchhost".into());
    let sink = Arc::new(Collect::default());
    let err = runtime()
        .block_on(exec::run(req, sink.clone()))
        .expect_err("an unknown pattern is refused");
    assert!(err.to_string().contains("nosuchhost"), "{err}");
    assert!(sink.0.lock().expect("events").is_empty(), "nothing started");
}
