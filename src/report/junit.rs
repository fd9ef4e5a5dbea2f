//! JUnit XML (`--junit FILE`), written with quick-junit: a testsuite per play (with the
//! playbook and run id as properties), a testcase per host × step (classname the host, name
//! the step), `failure` for failed expectations, `error` for run-time errors and unreachable
//! hosts (type = the error kind), `skipped` with its reason, times in seconds. A failure's
//! text is the recap's (the failure rendered as diagnostics: the place, the source line, expected
//! and found, the error and its help, stderr's tail); a failed command's stdout and stderr go to the case's system-out / system-err. A
//! failure that `ignore_errors` let pass is a passing case with a note in system-out. Built
//! from the final, redacted `RunReport`; the output validates against
//! `tests/fixtures/junit.xsd` (the common Jenkins/Ant shape) in the tests.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde_json::Value as Json;

use super::{RunReport, Status, TaskReport, diagnose, plain};

pub fn render(r: &RunReport) -> String {
    let mut report = Report::new("sortie");
    report.set_time(Duration::from_millis(r.duration_ms));
    for p in &r.plays {
        let mut suite = TestSuite::new(p.name.as_str());
        suite.add_property(("playbook", r.playbook.as_str()));
        suite.add_property(("run_id", r.run_id.as_str()));
        let longest = p.hosts.iter().map(|h| h.duration_ms).max().unwrap_or(0);
        suite.set_time(Duration::from_millis(longest));
        for h in &p.hosts {
            for t in &h.tasks {
                suite.add_test_case(case(&h.name, t));
            }
        }
        report.add_test_suite(suite);
    }
    report.to_string().unwrap_or_default()
}

fn case(host: &str, t: &TaskReport) -> TestCase {
    let failed = matches!(t.status, Status::Failed | Status::Unreachable);
    let status = match t.status {
        Status::Skipped => {
            let mut s = TestCaseStatus::skipped();
            if let Some(m) = &t.message {
                s.set_message(m.as_str());
            }
            s
        }
        _ if failed && !t.ignored => {
            let kind = if t.error.is_some() || t.status == Status::Unreachable {
                NonSuccessKind::Error
            } else {
                NonSuccessKind::Failure
            };
            let mut s = TestCaseStatus::non_success(kind);
            s.set_message(
                t.message
                    .clone()
                    .unwrap_or_else(|| t.status.as_str().to_string()),
            );
            s.set_type(t.error.as_ref().map_or("expectation", |e| e.kind.as_str()));
            s.set_description(format!(
                "{}\n{}",
                plain::failure_header(host, t),
                diagnose::failure_text(t, false)
            ));
            s
        }
        _ => TestCaseStatus::success(),
    };
    let mut case = TestCase::new(t.name.as_str(), status);
    case.set_classname(host);
    case.set_time(Duration::from_millis(t.duration_ms));
    if failed && t.ignored {
        case.set_system_out(format!(
            "failed, ignored (ignore_errors): {}\n",
            t.message.as_deref().unwrap_or("")
        ));
    } else if failed {
        if let Some(s) = t.output.get("stdout").and_then(Json::as_str)
            && !s.is_empty()
        {
            case.set_system_out(s);
        }
        if let Some(s) = t.output.get("stderr").and_then(Json::as_str)
            && !s.is_empty()
        {
            case.set_system_err(s);
        }
    }
    case
}
