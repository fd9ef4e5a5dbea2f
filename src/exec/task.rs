//! One task — one step on one host: `when`, `loop` (binding `item`), `retry` with `until`,
//! `timeout`, the step kind's run, expectations checked into `Check`s, `changed_when`,
//! `ignore_errors`, `secret`. Input: the step, the host's scope, earlier results; output: a
//! `TaskReport` plus the result fields later steps read as `steps.<id>` and any `set` vars.

use std::time::Instant;

use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use crate::conn::HostConn;
use crate::diag::{Diagnostic, Span};
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
    /// A `fleet` step's barrier for this batch, and the host's slots.
    pub fleet: Option<std::sync::Arc<crate::steps::fleet::Barrier>>,
    pub slots: Option<std::sync::Arc<crate::steps::fleet::Slots>>,
    /// Where `via` probes find their gateways.
    pub gateways: &'a crate::conn::via::Gateways,
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
#[derive(Default)]
struct Attempt {
    status: Status,
    output: StepOutput,
    checks: Vec<Check>,
    /// The checks are the kind's default expectation (no place in the playbook).
    default_checks: bool,
    error: Option<StepError>,
    message: Option<String>,
    /// What the kind adds to a failed check.
    context: Option<String>,
    /// Where a failure that is neither an error nor a check points.
    failure_at: Option<Span>,
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
        context: None,
        failure_location: None,
        error: None,
        checks: Vec::new(),
        output: Json::Object(Default::default()),
        attempts: 0,
        duration_ms: ms,
        started_ms: None,
        location: step.kind_span.into(),
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
    r.error = Some(error_report(&StepError::Template(d)));
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
                    message: Some(format!("when: {}", when_text(step))),
                    ..Attempt::default()
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
            return (n, exhausted(a, n, max));
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

/// The last of `max` retried attempts still failed: its message says how many were made.
fn exhausted(mut a: Attempt, n: u32, max: u32) -> Attempt {
    if max > 1
        && n >= max
        && matches!(a.status, Status::Failed)
        && let Some(m) = &a.message
    {
        a.message = Some(format!("after {n} attempts, the last: {m}"));
    }
    a
}

fn template_attempt(d: Diagnostic) -> Attempt {
    Attempt {
        status: Status::Failed,
        message: Some(d.one_line()),
        error: Some(StepError::Template(d)),
        ..Attempt::default()
    }
}

/// A run-time error as reported: a template error keeps its place and caret label.
fn error_report(e: &StepError) -> ErrorReport {
    let (location, label, message) = match e {
        StepError::Template(d) => (
            d.span.map(Into::into),
            Some(d.label.clone()).filter(|l| !l.is_empty()),
            d.title.clone(),
        ),
        other => (None, None, other.to_string()),
    };
    ErrorReport {
        kind: e.kind().to_string(),
        message,
        help: e.help(),
        location,
        label,
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
        fleet: input.fleet.clone(),
        slots: input.slots.clone(),
        gateways: input.gateways,
    };
    let output = match run_step(input, &rendered, &cx, timeout).await {
        Ok(o) => o,
        Err(e) => {
            let status = if e.is_unreachable() {
                Status::Unreachable
            } else {
                Status::Failed
            };
            return Attempt {
                status,
                message: Some(e.to_string()),
                error: Some(e),
                ..Attempt::default()
            };
        }
    };
    if let Some(reason) = &output.skipped {
        return Attempt {
            message: Some(reason.clone()),
            output,
            ..Attempt::default()
        };
    }
    judge(input, item, &ctx, output)
}

/// Runs the kind with the step's timeout, until cancelled.
async fn run_step(
    input: &TaskInput<'_>,
    rendered: &crate::yaml::Node,
    cx: &TaskCx<'_>,
    timeout: Option<Duration>,
) -> Result<StepOutput, StepError> {
    let step = input.step;
    let fut = step.spec.run(rendered, cx);
    let output = match timeout {
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
    }?;
    if step.secret {
        input
            .redactor
            .add_derived(&Json::Object(output.fields.clone()));
    }
    Ok(output)
}

/// Judges what a step produced: the kind's own verdict, the expectations, `until`, then
/// `changed_when`.
fn judge(
    input: &TaskInput<'_>,
    item: Option<&Json>,
    ctx: &minijinja::Value,
    mut output: StepOutput,
) -> Attempt {
    let step = input.step;
    // The fields are moved out for judging and back in at the end: a kept body is not
    // copied for it.
    let fields = Json::Object(std::mem::take(&mut output.fields));
    let checks = match check_expectations(step, &fields, ctx) {
        Ok(c) => c,
        Err(d) => return template_attempt(d),
    };
    let mut a = Attempt {
        default_checks: step.expect_node.is_none(),
        message: output.failure.clone(),
        ..Attempt::default()
    };
    if a.message.is_none()
        && let Some(c) = checks.iter().find(|c| !c.passed)
    {
        a.context = step.spec.failure_context(&fields);
        a.message = Some(match &a.context {
            Some(context) => format!("{} — {context}", c.message()),
            None => c.message(),
        });
    }
    a.checks = checks;
    let later = input.ctx(item, Some(&fields));
    if a.message.is_none() {
        match until_fails(step, &later) {
            Ok(Some((message, span))) => {
                // What this attempt saw, as the failure's note: the kind's summary (an HTTP
                // request, its status and body), else the result itself, shortened.
                a.context = Some(step.spec.failure_context(&fields).unwrap_or_else(|| {
                    format!("the result was {}", crate::expect::short(&fields))
                }));
                a.message = Some(message);
                a.failure_at = Some(span);
            }
            Ok(None) => {}
            Err(d) => return template_attempt(d),
        }
    }
    let mut changed = output.changed;
    if a.message.is_none()
        && let Some(cw) = &step.changed_when
    {
        changed = true;
        for c in cw {
            match templates().truthy(&c.value, Place::of_span(c.span), &later) {
                Ok(v) => changed &= v,
                Err(d) => return template_attempt(d),
            }
        }
    }
    a.status = if a.message.is_some() {
        Status::Failed
    } else if changed {
        Status::Changed
    } else {
        Status::Ok
    };
    if let Json::Object(fields) = fields {
        output.fields = fields;
    }
    a.output = output;
    a
}

/// The first `until` expression that is false, with this attempt's result visible as
/// `steps.<id>`: its message and place.
fn until_fails(
    step: &StepDef,
    ctx: &minijinja::Value,
) -> Result<Option<(String, Span)>, Diagnostic> {
    let Some(until) = step.retry.as_ref().and_then(|r| r.until.as_ref()) else {
        return Ok(None);
    };
    for u in until.clone().into_vec() {
        if !templates().truthy(&u.value, Place::of_span(u.span), ctx)? {
            return Ok(Some((format!("until: `{}` is false", u.value), u.span)));
        }
    }
    Ok(None)
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

/// The task's status from its items' attempts: unreachable > failed > changed > ok; skipped
/// when every item was.
fn overall_status(results: &[Attempt]) -> Status {
    if results.iter().any(|a| a.status == Status::Unreachable) {
        Status::Unreachable
    } else if results.iter().any(|a| a.status == Status::Failed) {
        Status::Failed
    } else if results.iter().any(|a| a.status == Status::Changed) {
        Status::Changed
    } else if !results.is_empty() && results.iter().all(|a| a.status == Status::Skipped) {
        Status::Skipped
    } else {
        Status::Ok
    }
}

/// The task's one-line message: the bad attempt's (prefixed by its item in a loop), else the
/// last attempt's reason to be skipped or ok.
fn overall_message(
    results: &[Attempt],
    bad: Option<&Attempt>,
    status: Status,
    looped: bool,
) -> Option<String> {
    match bad {
        Some(a) if looped => {
            let item = a
                .output
                .fields
                .get("item")
                .map(expect::short)
                .unwrap_or_default();
            a.message.clone().map(|m| format!("item {item}: {m}"))
        }
        Some(a) => a.message.clone(),
        None => results
            .last()
            .and_then(|a| a.message.clone())
            .filter(|_| status != Status::Ok || !looped),
    }
}

/// The result fields later steps read (`results` per item in a loop) and the variables the
/// step defines, if its kind defines any.
fn outputs(step: &StepDef, results: Vec<Attempt>, looped: bool) -> (Json, VarMap) {
    let defines = step.spec.defines_vars();
    let mut set = VarMap::new();
    if !looped {
        let out = results
            .into_iter()
            .next()
            .map(|a| a.output)
            .unwrap_or_default();
        if defines {
            set.extend(out.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        return (Json::Object(out.fields), set);
    }
    let list: Vec<Json> = results
        .into_iter()
        .map(|a| Json::Object(a.output.fields))
        .collect();
    if defines {
        for o in list.iter().filter_map(Json::as_object) {
            set.extend(
                o.iter()
                    .filter(|(k, _)| *k != "item")
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
    }
    (serde_json::json!({ "results": list }), set)
}

/// A secret step's report keeps its status and shape, never its values.
fn mask_secret(report: &mut TaskReport) {
    report.output = Json::String("***".into());
    report.warnings = report
        .warnings
        .iter()
        .map(|_| "*** (secret step)".to_string())
        .collect();
    report.message = report
        .message
        .as_ref()
        .map(|_| "*** (secret step)".to_string());
    report.context = report.context.as_ref().map(|_| "***".to_string());
    if let Some(e) = &mut report.error {
        e.message = "*** (secret step)".to_string();
        e.label = None;
    }
    for c in &mut report.checks {
        c.actual = Json::String("***".into());
        c.expected = Json::String("***".into());
    }
}

fn finish(
    step: &StepDef,
    results: Vec<Attempt>,
    attempts: u32,
    started: Instant,
    looped: Option<usize>,
) -> TaskResult {
    let ms = started.elapsed().as_millis() as u64;
    let status = overall_status(&results);
    let bad_index = results
        .iter()
        .position(|a| matches!(a.status, Status::Failed | Status::Unreachable));
    let bad = bad_index.map(|i| &results[i]);
    let shown = bad.or(results.last());
    let mut report = base_report(
        step,
        status,
        overall_message(&results, bad, status, looped.is_some()),
        ms,
    );
    report.error = bad.and_then(|a| a.error.as_ref()).map(error_report);
    report.checks = shown
        .map(|a| {
            a.checks
                .iter()
                .map(|c| CheckReport::of(c, a.default_checks))
                .collect()
        })
        .unwrap_or_default();
    report.context = bad.and_then(|a| a.context.clone());
    report.failure_location = bad.and_then(|a| a.failure_at).map(Into::into);
    for w in results.iter().flat_map(|a| a.output.warnings.iter()) {
        if !report.warnings.contains(w) {
            report.warnings.push(w.clone());
        }
    }
    report.attempts = attempts;
    report.ignored = step.ignore_errors && status == Status::Failed;
    let (output, set) = outputs(step, results, looped.is_some());
    report.output = output.clone();
    if step.secret {
        mask_secret(&mut report);
    }
    TaskResult {
        report,
        output,
        set,
    }
}
