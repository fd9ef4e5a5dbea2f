//! One task — one step on one host: `when`, `loop` (binding `item`), `retry` with `until`,
//! `timeout`, the step kind's run, expectations checked into `Check`s, `changed_when`,
//! `ignore_errors`, `secret`. Input: the step, the host's scope, earlier results; output: a
//! `TaskReport` plus the result fields later steps read as `steps.<id>` and any `set` vars.

use std::time::Instant;

use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use crate::conn::HostConn;
use crate::diag::Diagnostic;
use crate::expect::{self, Check, Op};
use crate::inventory::Host;
use crate::playbook::{StepDef, default_expectations};
use crate::report::{CheckReport, ErrorReport, Status, TaskReport};
use crate::steps::{Limits, StepError, StepOutput, StepSpec, TaskCx, render_args};
use crate::template::{Place, templates};
use crate::units::Duration;
use crate::vars::{Scope, VarMap};

/// What a task hands back to its host.
#[derive(Clone, Debug)]
pub struct TaskResult {
    pub report: TaskReport,
    /// The fields later steps read as `steps.<id>`.
    pub output: Json,
    /// Variables a `set` step defined.
    pub set: VarMap,
}

/// The inputs a task reads: the host, its scope and what earlier steps left.
pub struct TaskInput<'a> {
    pub step: &'a StepDef,
    pub host: &'a Host,
    pub scope: &'a Scope,
    pub set_vars: crate::vars::ValueMap,
    pub steps: crate::vars::ValueMap,
    pub conn: &'a HostConn,
    pub dir: &'a std::path::Path,
    pub cancel: &'a CancellationToken,
    pub limits: Limits,
    /// Learns a secret step's rendered arguments and results (see `report::redact`).
    pub redactor: &'a crate::report::redact::Redactor,
}

impl TaskInput<'_> {
    fn ctx(&self, item: Option<&Json>, current: Option<&Json>) -> minijinja::Value {
        let item = item.map(crate::template::json_to_value);
        match current {
            Some(c) => {
                let mut steps = self.steps.clone();
                steps.insert(self.step.id.clone(), crate::template::json_to_value(c));
                self.scope.context_values(&self.set_vars, &steps, item)
            }
            None => self.scope.context_values(&self.set_vars, &self.steps, item),
        }
    }
}

/// The result of one attempt at one item.
struct Attempt {
    status: Status,
    output: StepOutput,
    checks: Vec<Check>,
    error: Option<StepError>,
    message: Option<String>,
}

fn skipped(step: &StepDef, reason: String) -> TaskResult {
    TaskResult {
        report: base_report(step, Status::Skipped, Some(reason), 0),
        output: Json::Object(Default::default()),
        set: VarMap::new(),
    }
}

pub fn base_report(step: &StepDef, status: Status, message: Option<String>, ms: u64) -> TaskReport {
    TaskReport {
        id: step.id.clone(),
        name: step.display_name(),
        kind: step.kind.to_string(),
        status,
        ignored: false,
        message,
        error: None,
        checks: Vec::new(),
        output: Json::Object(Default::default()),
        attempts: 0,
        duration_ms: ms,
        location: step.kind_span.to_string(),
        warnings: Vec::new(),
    }
}

/// A task skipped without running (a failed dependency, tags, an interrupted run, …).
pub fn skip(step: &StepDef, reason: impl Into<String>) -> TaskResult {
    skipped(step, reason.into())
}

fn template_failure(step: &StepDef, d: Diagnostic, started: Instant) -> TaskResult {
    let mut r = base_report(
        step,
        Status::Failed,
        Some(d.one_line()),
        started.elapsed().as_millis() as u64,
    );
    r.error = Some(ErrorReport {
        kind: "template".into(),
        message: d.one_line(),
        help: d.help.clone(),
    });
    r.ignored = step.ignore_errors;
    TaskResult {
        report: r,
        output: Json::Object(Default::default()),
        set: VarMap::new(),
    }
}

/// Runs one step on one host.
pub async fn run(input: TaskInput<'_>) -> TaskResult {
    // The name as this host sees it (`Deploy {{ version }}` → `Deploy 2.4.1`); the name as
    // written when it cannot be rendered yet (it names a loop item, say).
    let name = templates()
        .render(
            &input.step.display_name(),
            Place::of_span(input.step.kind_span),
            &input.ctx(None, None),
        )
        .ok();
    let mut result = run_task(input).await;
    if let Some(n) = name {
        result.report.name = n;
    }
    result
}

async fn run_task(input: TaskInput<'_>) -> TaskResult {
    let step = input.step;
    let started = Instant::now();
    let t = templates();
    let items: Option<Vec<Json>> = match &step.loop_ {
        None => None,
        Some(node) => {
            let ctx = input.ctx(None, None);
            match t.render_node(node, &ctx) {
                Ok(n) => match n.to_json() {
                    Json::Array(a) => Some(a),
                    Json::Null => Some(Vec::new()),
                    other => {
                        let d = Diagnostic::error(format!(
                            "`loop` must give a list, got {}",
                            expect::short(&other)
                        ))
                        .at(node.span)
                        .help("write a YAML list, or an expression that gives one: `loop: \"{{ groups.web }}\"`");
                        return template_failure(step, d, started);
                    }
                },
                Err(d) => return template_failure(step, d, started),
            }
        }
    };
    let Some(items) = items else {
        // No loop.
        let ctx = input.ctx(None, None);
        match when_holds(step, &ctx) {
            Ok(true) => {}
            Ok(false) => return skip(step, format!("when: {}", when_text(step))),
            Err(d) => return template_failure(step, d, started),
        }
        let a = attempts(&input, None).await;
        return finish(step, vec![a.1], a.0, started, None);
    };
    let mut results = Vec::new();
    let mut total_attempts = 0;
    for item in &items {
        let ctx = input.ctx(Some(item), None);
        match when_holds(step, &ctx) {
            Ok(true) => {}
            Ok(false) => {
                results.push(Attempt {
                    status: Status::Skipped,
                    output: StepOutput::default().with("item", item.clone()),
                    checks: Vec::new(),
                    error: None,
                    message: Some(format!("when: {}", when_text(step))),
                });
                continue;
            }
            Err(d) => return template_failure(step, d, started),
        }
        let (n, mut a) = attempts(&input, Some(item)).await;
        total_attempts += n;
        a.output.fields.insert("item".into(), item.clone());
        let stop = a.status == Status::Unreachable || input.cancel.is_cancelled();
        results.push(a);
        if stop {
            break;
        }
    }
    finish(step, results, total_attempts, started, Some(items.len()))
}

fn when_text(step: &StepDef) -> String {
    step.when
        .iter()
        .map(|w| w.value.as_str())
        .collect::<Vec<_>>()
        .join(" and ")
}

fn when_holds(step: &StepDef, ctx: &minijinja::Value) -> Result<bool, Diagnostic> {
    for w in &step.when {
        if !templates().truthy(&w.value, Place::of_span(w.span), ctx)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Runs the attempts of one item (retrying as `retry` says). Returns (attempts, last).
async fn attempts(input: &TaskInput<'_>, item: Option<&Json>) -> (u32, Attempt) {
    let step = input.step;
    let ctx = input.ctx(item, None);
    let render = |n: &crate::yaml::Node| templates().render_node(n, &ctx);
    let (max, delay, backoff) = match &step.retry {
        None => (1, Duration::default(), 1.0),
        Some(r) => {
            let max = match r.attempts.resolve(&render) {
                Ok(v) => v.max(1),
                Err(d) => return (0, template_attempt(d)),
            };
            let delay = match r.delay.as_ref().map(|d| d.resolve(&render)).transpose() {
                Ok(v) => v.unwrap_or(Duration::from_secs(1)),
                Err(d) => return (0, template_attempt(d)),
            };
            let backoff = match r.backoff.as_ref().map(|d| d.resolve(&render)).transpose() {
                Ok(v) => v.unwrap_or(1.0),
                Err(d) => return (0, template_attempt(d)),
            };
            (max.min(10_000), delay, backoff)
        }
    };
    let timeout = match step
        .timeout
        .as_ref()
        .map(|d| d.resolve(&render))
        .transpose()
    {
        Ok(t) => t,
        Err(d) => return (0, template_attempt(d)),
    };
    let mut wait = delay.std();
    let mut n = 0;
    loop {
        n += 1;
        let a = attempt(input, item, timeout).await;
        let retryable = matches!(a.status, Status::Failed)
            && !matches!(
                a.error,
                Some(StepError::Template(_)) | Some(StepError::Cancelled)
            );
        if !retryable || n >= max || input.cancel.is_cancelled() {
            return (n, a);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = input.cancel.cancelled() => return (n, a),
        }
        wait = wait
            .mul_f64(backoff.clamp(0.0, 1000.0))
            .min(std::time::Duration::from_secs(3600));
    }
}

fn template_attempt(d: Diagnostic) -> Attempt {
    Attempt {
        status: Status::Failed,
        output: StepOutput::default(),
        checks: Vec::new(),
        message: Some(d.one_line()),
        error: Some(StepError::Template(d)),
    }
}

async fn attempt(input: &TaskInput<'_>, item: Option<&Json>, timeout: Option<Duration>) -> Attempt {
    let step = input.step;
    let ctx = input.ctx(item, None);
    let rendered = match render_args(step.kind, &step.args, &ctx, step.unsafe_shell) {
        Ok(n) => n,
        Err(d) => return template_attempt(d),
    };
    if step.secret {
        input.redactor.add_derived(&rendered.to_json());
    }
    let cx = TaskCx {
        host: input.host,
        args: &rendered,
        ctx: &ctx,
        dir: input.dir,
        conn: input.conn,
        cancel: input.cancel,
        limits: input.limits,
        timeout: timeout.map(Duration::std),
        unsafe_shell: step.unsafe_shell,
    };
    let fut = step.spec.run(&rendered, &cx);
    let result = match timeout {
        Some(t) => tokio::select! {
            r = tokio::time::timeout(t.std(), fut) => match r {
                Ok(r) => r,
                Err(_) => Err(StepError::Timeout(t.to_string())),
            },
            _ = input.cancel.cancelled() => Err(StepError::Cancelled),
        },
        None => tokio::select! {
            r = fut => r,
            _ = input.cancel.cancelled() => Err(StepError::Cancelled),
        },
    };
    let output = match result {
        Ok(o) if step.secret => {
            input.redactor.add_derived(&Json::Object(o.fields.clone()));
            o
        }
        Ok(o) => o,
        Err(e) => {
            let status = if e.is_unreachable() {
                Status::Unreachable
            } else {
                Status::Failed
            };
            return Attempt {
                status,
                output: StepOutput::default(),
                checks: Vec::new(),
                message: Some(e.to_string()),
                error: Some(e),
            };
        }
    };
    if let Some(reason) = &output.skipped {
        return Attempt {
            status: Status::Ok,
            message: Some(reason.clone()),
            output,
            checks: Vec::new(),
            error: None,
        };
    }
    let fields = Json::Object(output.fields.clone());
    let checks = match check_expectations(step, &fields, &ctx) {
        Ok(c) => c,
        Err(d) => return template_attempt(d),
    };
    let mut failed_msg = output.failure.clone();
    if failed_msg.is_none()
        && let Some(c) = checks.iter().find(|c| !c.passed)
    {
        failed_msg = Some(match step.spec.failure_context(&fields) {
            Some(context) => format!("{} — {context}", c.message()),
            None => c.message(),
        });
    }
    // `until`: with this attempt's result visible as steps.<id>.
    if failed_msg.is_none()
        && let Some(until) = step.retry.as_ref().and_then(|r| r.until.as_ref())
    {
        let uctx = input.ctx(item, Some(&fields));
        for u in until.clone().into_vec() {
            match templates().truthy(&u.value, Place::of_span(u.span), &uctx) {
                Ok(true) => {}
                Ok(false) => {
                    failed_msg = Some(format!("until: `{}` is false", u.value));
                    break;
                }
                Err(d) => return template_attempt(d),
            }
        }
    }
    let mut changed = output.changed;
    if failed_msg.is_none()
        && let Some(cw) = &step.changed_when
    {
        let cctx = input.ctx(item, Some(&fields));
        changed = true;
        for c in cw {
            match templates().truthy(&c.value, Place::of_span(c.span), &cctx) {
                Ok(v) => changed &= v,
                Err(d) => return template_attempt(d),
            }
        }
    }
    let status = if failed_msg.is_some() {
        Status::Failed
    } else if changed {
        Status::Changed
    } else {
        Status::Ok
    };
    Attempt {
        status,
        output,
        checks,
        error: None,
        message: failed_msg,
    }
}

/// Checks the declared (or default) expectations against a result.
fn check_expectations(
    step: &StepDef,
    fields: &Json,
    ctx: &minijinja::Value,
) -> Result<Vec<Check>, Diagnostic> {
    let exps = if step.expect_node.is_none() {
        default_expectations(&step.spec)
    } else {
        step.expect.clone()
    };
    let t = templates();
    let mut checks = Vec::new();
    for e in &exps {
        // A key may be a template too (`servers: { "{{ dns2 }}": … }`).
        let keyed;
        let e = match &e.key {
            Some(k) if crate::yaml::is_template(k) => {
                keyed = expect::Expectation {
                    key: Some(t.render(k, Place::of_span(e.span), ctx)?),
                    ..e.clone()
                };
                &keyed
            }
            _ => e,
        };
        let actual = lookup(&step.spec, fields, &e.field, e.key.as_deref());
        for m in &e.matchers {
            if m.op == Op::Len {
                let len = expect::len_of(actual.as_ref());
                let label = format!("len({})", e.label());
                let sub = expect::Expectation {
                    field: label,
                    key: None,
                    matchers: Vec::new(),
                    span: e.span,
                };
                for n in &m.nested {
                    let arg = t.render_node(&n.arg, ctx)?.to_json();
                    checks.extend(expect::evaluate(&sub, &[(n.clone(), arg)], len.as_ref()));
                }
            } else {
                let arg = t.render_node(&m.arg, ctx)?.to_json();
                let (actual, arg) =
                    step.spec
                        .expectation_values(fields, &e.field, e.key.as_deref(), m.op, arg);
                checks.extend(expect::evaluate(e, &[(m.clone(), arg)], actual.as_ref()));
            }
        }
    }
    Ok(checks)
}

/// A result field (or a key under a keyed field) of a step's output.
fn lookup(spec: &StepSpec, fields: &Json, field: &str, key: Option<&str>) -> Option<Json> {
    spec.lookup(fields, field, key)
}

fn finish(
    step: &StepDef,
    results: Vec<Attempt>,
    attempts: u32,
    started: Instant,
    looped: Option<usize>,
) -> TaskResult {
    let ms = started.elapsed().as_millis() as u64;
    let status = if results.iter().any(|a| a.status == Status::Unreachable) {
        Status::Unreachable
    } else if results.iter().any(|a| a.status == Status::Failed) {
        Status::Failed
    } else if results.iter().any(|a| a.status == Status::Changed) {
        Status::Changed
    } else if !results.is_empty() && results.iter().all(|a| a.status == Status::Skipped) {
        Status::Skipped
    } else {
        Status::Ok
    };
    let bad = results
        .iter()
        .find(|a| matches!(a.status, Status::Failed | Status::Unreachable));
    let message = match (bad, looped) {
        (Some(a), Some(_)) => {
            let item = a
                .output
                .fields
                .get("item")
                .map(expect::short)
                .unwrap_or_default();
            a.message.clone().map(|m| format!("item {item}: {m}"))
        }
        (Some(a), None) => a.message.clone(),
        (None, _) => results
            .last()
            .and_then(|a| a.message.clone())
            .filter(|_| status != Status::Ok || looped.is_none()),
    };
    let error = bad.and_then(|a| a.error.as_ref()).map(|e| ErrorReport {
        kind: e.kind().to_string(),
        message: e.to_string(),
        help: e.help(),
    });
    let checks: Vec<CheckReport> = match bad {
        Some(a) => a.checks.iter().map(CheckReport::from).collect(),
        None => results
            .last()
            .map(|a| a.checks.iter().map(CheckReport::from).collect())
            .unwrap_or_default(),
    };
    let mut warnings: Vec<String> = Vec::new();
    for w in results.iter().flat_map(|a| a.output.warnings.iter()) {
        if !warnings.contains(w) {
            warnings.push(w.clone());
        }
    }
    let mut set = VarMap::new();
    let output = match looped {
        None => {
            let a = results.into_iter().next();
            let out = a.map(|a| a.output).unwrap_or_default();
            if let crate::steps::StepSpec::Set(_) = step.spec {
                for (k, v) in &out.fields {
                    set.insert(k.clone(), v.clone());
                }
            }
            Json::Object(out.fields)
        }
        Some(_) => {
            let list: Vec<Json> = results
                .into_iter()
                .map(|a| Json::Object(a.output.fields))
                .collect();
            if let crate::steps::StepSpec::Set(_) = step.spec {
                for r in &list {
                    if let Some(o) = r.as_object() {
                        for (k, v) in o {
                            if k != "item" {
                                set.insert(k.clone(), v.clone());
                            }
                        }
                    }
                }
            }
            serde_json::json!({ "results": list })
        }
    };
    let mut report = base_report(step, status, message, ms);
    report.error = error;
    report.checks = checks;
    report.attempts = attempts;
    report.warnings = if step.secret {
        warnings
            .iter()
            .map(|_| "*** (secret step)".to_string())
            .collect()
    } else {
        warnings
    };
    report.ignored = step.ignore_errors && status == Status::Failed;
    report.output = if step.secret {
        Json::String("***".into())
    } else {
        output.clone()
    };
    if step.secret {
        report.message = report.message.map(|_| "*** (secret step)".to_string());
        if let Some(e) = &mut report.error {
            e.message = "*** (secret step)".to_string();
        }
        for c in &mut report.checks {
            c.actual = Json::String("***".into());
            c.expected = Json::String("***".into());
        }
    }
    TaskResult {
        report,
        output,
        set,
    }
}
