//! JUnit XML (`--junit FILE`), written with quick-junit: a testsuite per play, a testcase per
//! host × step (classname the host), failures for failed checks, errors for run-time errors
//! and unreachable hosts, skipped cases, times. Built from the final `RunReport`.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{RunReport, Status};

pub fn render(r: &RunReport) -> String {
    let mut report = Report::new("sortie");
    for p in &r.plays {
        let mut suite = TestSuite::new(p.name.as_str());
        for h in &p.hosts {
            for t in &h.tasks {
                let status = match t.status {
                    Status::Ok | Status::Changed => TestCaseStatus::success(),
                    Status::Skipped => {
                        let mut s = TestCaseStatus::skipped();
                        if let Some(m) = &t.message {
                            s.set_message(m.as_str());
                        }
                        s
                    }
                    Status::Failed | Status::Unreachable => {
                        let kind = if t.error.is_some() || t.status == Status::Unreachable {
                            NonSuccessKind::Error
                        } else {
                            NonSuccessKind::Failure
                        };
                        let mut s = TestCaseStatus::non_success(kind);
                        if let Some(m) = &t.message {
                            s.set_message(m.as_str());
                        }
                        if let Some(e) = &t.error {
                            s.set_type(e.kind.as_str());
                        } else {
                            s.set_type("expectation");
                        }
                        let mut desc = format!("at {}\n", t.location);
                        for c in t.checks.iter().filter(|c| !c.passed) {
                            desc.push_str(&format!(
                                "{}: expected {} {}, found {}\n",
                                c.field, c.matcher, c.expected, c.actual
                            ));
                        }
                        s.set_description(desc);
                        s
                    }
                };
                let mut case = TestCase::new(t.name.as_str(), status);
                case.set_classname(h.name.as_str());
                case.set_time(std::time::Duration::from_millis(t.duration_ms));
                suite.add_test_case(case);
            }
        }
        report.add_test_suite(suite);
    }
    report.to_string().unwrap_or_default()
}
