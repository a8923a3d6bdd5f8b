//! OPA Rego policies (via `regorus`) as a policy source of a [`PolicySet`](crate::PolicySet).
//!
//! A `rego:` block of a Warden policy file names Rego modules, data documents
//! and a query (a rule path such as `data.warden.verdict`). The modules are
//! parsed and compiled once at load into a prototype engine; each thread that
//! evaluates the set clones the prototype once (lazily) and reuses it.

use crate::engines::{Resolve, SourceResult, beside};
use crate::error::{Origin, PolicyError};
use regorus::{Engine, LimitError, Value};
use std::cell::RefCell;
use std::num::NonZeroU32;
use std::time::Duration;
use thread_local::ThreadLocal;
use warden_core::{RuntimeError, Verdict};

/// One compiled Rego source: modules + data + query, ready to evaluate.
pub struct RegoSource {
    id: String,
    origin: Origin,
    query: String,
    proto: Engine,
    engines: ThreadLocal<RefCell<Engine>>,
}

impl std::fmt::Debug for RegoSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoSource")
            .field("id", &self.id)
            .field("origin", &self.origin)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl RegoSource {
    /// The rule id used for this source's decisions: `rego:<first module path>`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the `rego:` block was written.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The query evaluated.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// Compiles modules and data into a prototype engine and checks the query.
    /// `resolve(origin, field, path)` returns a file's text.
    pub(crate) fn compile(
        origin: Origin,
        modules: &[String],
        data: &[String],
        query: &str,
        resolve: &mut Resolve<'_>,
    ) -> Result<RegoSource, PolicyError> {
        let first = modules.first().ok_or_else(|| {
            PolicyError::invalid(
                origin.clone(),
                "rego.modules",
                "must list at least one module",
            )
        })?;
        let query = query.trim();
        let path_ok = query.starts_with("data.")
            && query[5..]
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
        if !path_ok {
            return Err(PolicyError::invalid(
                origin,
                "rego.query",
                format!("`{query}` is not a rule path such as `data.warden.verdict`"),
            ));
        }
        let mut proto = Engine::new();
        for (i, m) in modules.iter().enumerate() {
            let field = format!("rego.modules[{i}]");
            let text = resolve(&origin, &field, m)?;
            let file = beside(&origin, m);
            proto
                .add_policy(file.display().to_string(), text)
                .map_err(|e| rego_error(&file, &e.to_string()))?;
        }
        for (i, d) in data.iter().enumerate() {
            let field = format!("rego.data[{i}]");
            let text = resolve(&origin, &field, d)?;
            let file = beside(&origin, d);
            let value = Value::from_json_str(&text).map_err(|e| {
                PolicyError::invalid(Origin::new(&file, 0, 0), "document", e.to_string())
            })?;
            proto.add_data(value).map_err(|e| {
                PolicyError::invalid(Origin::new(&file, 0, 0), "document", e.to_string())
            })?;
        }
        // Evaluate once against an empty input: checks the query names a rule
        // and prepares the prototype so clones start ready.
        proto.set_input(Value::new_object());
        if let Err(e) = proto.eval_rule(query.to_owned()) {
            return Err(PolicyError::invalid(
                origin,
                "rego.query",
                format!("`{query}`: {e}"),
            ));
        }
        Ok(RegoSource {
            id: format!("rego:{first}"),
            origin,
            query: query.to_owned(),
            proto,
            engines: ThreadLocal::new(),
        })
    }

    /// Evaluates the query with `input`, bounded by `deadline`.
    pub(crate) fn eval(&self, input: &Value, deadline: Duration) -> SourceResult {
        let cell = self
            .engines
            .get_or(|| RefCell::new(self.engine_for(deadline)));
        let Ok(mut engine) = cell.try_borrow_mut() else {
            // Re-entrant use on one thread: fall back to a private clone.
            return self.run(&mut self.engine_for(deadline), input, deadline);
        };
        self.run(&mut engine, input, deadline)
    }

    fn engine_for(&self, deadline: Duration) -> Engine {
        let mut e = self.proto.clone();
        set_timer(&mut e, deadline);
        e
    }

    fn run(&self, engine: &mut Engine, input: &Value, deadline: Duration) -> SourceResult {
        set_timer(engine, deadline);
        engine.set_input(input.clone());
        let started = std::time::Instant::now();
        let result = engine.eval_rule(self.query.clone());
        if started.elapsed() > deadline {
            return SourceResult::error(
                RuntimeError::BudgetExceeded,
                format!("{}: evaluation exceeded the {deadline:?} deadline", self.id),
            );
        }
        match result {
            Ok(v) => interpret(&self.id, &v),
            Err(e) => {
                let kind = if e.downcast_ref::<LimitError>().is_some() {
                    RuntimeError::BudgetExceeded
                } else {
                    RuntimeError::EvaluationError
                };
                SourceResult::error(kind, format!("{}: {e}", self.id))
            }
        }
    }
}

/// The result of one Rego `test_` rule (see [`RegoSource::run_tests`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegoTest {
    /// The rule path, e.g. `data.warden.test_shell_denied`.
    pub name: String,
    /// The module and line of the (first) definition.
    pub origin: Origin,
    /// `None` when the rule evaluated to `true`, else what it gave.
    pub failure: Option<String>,
}

impl RegoSource {
    /// Runs every `test_*` rule of the source's modules like `opa test`:
    /// each is evaluated on its own (no input; tests set it with `with
    /// input as ...`) and passes when its value is `true`. Undefined, any
    /// other value or an error fails it. Each test gets `deadline`.
    pub fn run_tests(&self, deadline: Duration) -> Vec<RegoTest> {
        let mut engine = self.proto.clone();
        let mut found: Vec<(String, Origin)> = Vec::new();
        for m in engine.get_modules() {
            let Ok(pkg) = regorus::utils::get_path_string(&m.package.refr, Some("data")) else {
                continue;
            };
            for rule in &m.policy {
                let refr = match rule.as_ref() {
                    regorus::unstable::Rule::Spec {
                        head:
                            regorus::unstable::RuleHead::Compr { refr, .. }
                            | regorus::unstable::RuleHead::Set { refr, .. },
                        ..
                    } => refr,
                    _ => continue,
                };
                let Ok(path) = regorus::utils::get_path_string(refr, None) else {
                    continue;
                };
                if !path
                    .split('.')
                    .next()
                    .is_some_and(|n| n.starts_with("test_"))
                {
                    continue;
                }
                let name = format!("{pkg}.{path}");
                if found.iter().any(|(n, _)| *n == name) {
                    continue;
                }
                let span = rule.span();
                let origin = Origin::new(
                    std::path::Path::new(span.source.get_path()),
                    u64::from(span.line),
                    u64::from(span.col),
                );
                found.push((name, origin));
            }
        }
        found
            .into_iter()
            .map(|(name, origin)| {
                set_timer(&mut engine, deadline);
                engine.set_input(Value::Undefined);
                let failure = match engine.eval_rule(name.clone()) {
                    Ok(Value::Bool(true)) => None,
                    Ok(Value::Undefined) => {
                        Some("undefined (a test passes when it is true)".to_owned())
                    }
                    Ok(other) => Some(format!(
                        "gave {} (a test passes when it is true)",
                        other.to_json_str().unwrap_or_default()
                    )),
                    Err(e) => Some(format!("error: {e}")),
                };
                RegoTest {
                    name,
                    origin,
                    failure,
                }
            })
            .collect()
    }
}

/// Work units between regorus' deadline checks: 1 costs ~30 % more per call, 64 the same as none.
const CHECK_INTERVAL: NonZeroU32 = match NonZeroU32::new(64) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

fn set_timer(engine: &mut Engine, deadline: Duration) {
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: deadline,
        check_interval: CHECK_INTERVAL,
    });
}

fn verdict_of(id: &str, s: &str) -> Result<Verdict, SourceResult> {
    match s {
        "allow" => Ok(Verdict::Allow),
        "warn" => Ok(Verdict::Warn),
        "deny" => Ok(Verdict::Deny),
        "escalate" | "transform" => Err(bad(
            id,
            format!(
                "verdict `{s}` cannot come from Rego (it needs approvers or obligations); write a Warden rule"
            ),
        )),
        other => Err(bad(
            id,
            format!("unknown verdict `{other}` (expected allow, warn or deny)"),
        )),
    }
}

fn bad(id: &str, message: String) -> SourceResult {
    SourceResult::error(RuntimeError::EvaluationError, format!("{id}: {message}"))
}

/// Maps a query result to a [`SourceResult`] following the documented contract.
fn interpret(id: &str, v: &Value) -> SourceResult {
    let decided = |verdict, reasons| SourceResult::decided(verdict, reasons, id);
    match v {
        Value::Undefined => SourceResult::Undefined,
        Value::Bool(true) => decided(Verdict::Allow, Vec::new()),
        Value::Bool(false) => decided(Verdict::Deny, Vec::new()),
        Value::String(s) => match verdict_of(id, s) {
            Ok(verdict) => decided(verdict, Vec::new()),
            Err(e) => e,
        },
        Value::Object(o) => {
            let mut verdict = None;
            let mut reasons = Vec::new();
            for (k, val) in o.iter() {
                match (k, val) {
                    (Value::String(k), Value::String(s)) if &**k == "verdict" => {
                        match verdict_of(id, s) {
                            Ok(v) => verdict = Some(v),
                            Err(e) => return e,
                        }
                    }
                    (Value::String(k), Value::Array(a)) if &**k == "reasons" => {
                        for r in a.iter() {
                            match r {
                                Value::String(s) => reasons.push(s.to_string()),
                                _ => {
                                    return bad(id, "`reasons` must be an array of strings".into());
                                }
                            }
                        }
                    }
                    (Value::String(k), Value::Set(a)) if &**k == "reasons" => {
                        for r in a.iter() {
                            match r {
                                Value::String(s) => reasons.push(s.to_string()),
                                _ => {
                                    return bad(id, "`reasons` must be a set of strings".into());
                                }
                            }
                        }
                    }
                    (k, _) => {
                        return bad(
                            id,
                            format!(
                                "unexpected key {} in the result object (expected `verdict` and `reasons`)",
                                k.to_json_str().unwrap_or_default()
                            ),
                        );
                    }
                }
            }
            match verdict {
                Some(v) => decided(v, reasons),
                None => bad(id, "result object has no string `verdict`".into()),
            }
        }
        other => bad(
            id,
            format!(
                "result {} is not a verdict string, a {{verdict, reasons}} object or a boolean",
                other.to_json_str().unwrap_or_default()
            ),
        ),
    }
}

/// Turns a regorus parse/compile error into a load error with file:line:column.
fn rego_error(file: &std::path::Path, message: &str) -> PolicyError {
    let (line, column) = locate(file, message).unwrap_or((0, 0));
    // regorus renders `--> file:line:col`, a source excerpt, then `error: <what>`.
    let what = message
        .lines()
        .find_map(|l| l.trim().strip_prefix("error:"))
        .map_or_else(|| message.trim().to_owned(), |w| w.trim().to_owned());
    PolicyError::invalid(Origin::new(file, line, column), "rego", what)
}

/// Finds `<file>:<line>:<col>` in a regorus message.
fn locate(file: &std::path::Path, message: &str) -> Option<(u64, u64)> {
    let name = file.display().to_string();
    let rest = &message[message.find(&format!("{name}:"))? + name.len() + 1..];
    let mut parts = rest.splitn(3, ':');
    let line = parts.next()?.trim().parse().ok()?;
    let col = parts
        .next()?
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((line, col))
}

/// The Rego `input` for an action: its exact JSON wire form.
pub(crate) fn input_of(action: &warden_core::Action) -> Result<Value, String> {
    serde_json::to_value(action)
        .map(Value::from)
        .map_err(|e| e.to_string())
}
