//! Cedar policies (via `cedar-policy`) as a policy source of a [`PolicySet`](crate::PolicySet).
//!
//! A `cedar:` block names `.cedar` policy files, an optional schema and an
//! optional entities document. Everything is parsed, validated (strict mode,
//! when a schema is given) and indexed once at load; evaluation shares the
//! result read-only across threads.
//!
//! Request mapping: principal `Agent::"<agent>"`; at tool points action
//! `Action::"<tool>"` and resource `Tool::"<tool>"`, elsewhere
//! `Action::"<point>"` and `Point::"<point>"`; context
//! `{"point": ..., "args": ..., "context": ...}`.

use crate::duration::parse_duration;
use crate::engines::{Resolve, SourceResult, beside};
use crate::error::{Origin, PolicyError};
use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision, Effect, Entities, EntityId, EntityTypeName,
    EntityUid, Policy, PolicyId, PolicySet as CedarSet, PrincipalConstraint, Request,
    ResourceConstraint, RestrictedExpression, Schema, ValidationMode, ValidationWarning, Validator,
};
use miette::Diagnostic;
use rustc_hash::FxHashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use warden_core::{Action, Obligation, RuntimeError, Verdict};

/// One Cedar policy as Warden reports it.
#[derive(Debug, Clone)]
pub struct CedarPolicy {
    /// Its rule id: the `@id("...")` annotation, else `policy<N>` (N counts
    /// the block's policies in file order from 0, as Cedar numbers one file).
    pub id: String,
    /// Where the policy starts.
    pub origin: Origin,
    /// The verdict it gives when it determines the outcome: deny for
    /// `forbid`; allow, warn or escalate for `permit` (`@verdict`).
    pub verdict: Verdict,
    /// The reason reported: `@reason("...")`, else a generated one.
    pub reason: String,
    /// An approval for `@verdict("escalate")` (from `@approvers`, `@timeout`).
    pub obligations: Vec<Obligation>,
}

/// Something Cedar's validator or Warden's scope check found suspicious (for `warden policy lint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CedarWarning {
    /// The policy's rule id (empty for schema-level warnings).
    pub policy: String,
    /// Where.
    pub origin: Origin,
    /// Short code: `never-applies`, `unvalidated` or `cedar-validator`.
    pub code: &'static str,
    /// Explanation.
    pub message: String,
}

/// One compiled Cedar source: policies, schema and entities, ready to evaluate.
pub struct CedarSource {
    id: String,
    origin: Origin,
    files: Vec<String>,
    schema: Option<Arc<Schema>>,
    entities: Arc<Entities>,
    policies: Vec<CedarPolicy>,
    by_id: FxHashMap<Box<str>, usize>,
    /// For each action id named by an `action == Action::"..."` scope: those
    /// policies plus every policy without such a scope.
    by_action: FxHashMap<Box<str>, Group>,
    /// Policies without an `action ==` scope: all that can apply to other actions.
    other: Group,
    warnings: Vec<CedarWarning>,
    authorizer: Authorizer,
}

impl std::fmt::Debug for CedarSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CedarSource")
            .field("id", &self.id)
            .field("origin", &self.origin)
            .field("policies", &self.policies.len())
            .field("schema", &self.schema.is_some())
            .finish_non_exhaustive()
    }
}

/// The policies that can apply to one action.
struct Group {
    set: Arc<CedarSet>,
    /// Whether any of them reads `context` (else the request carries an
    /// empty context and the action's args are not converted).
    reads_context: bool,
}

/// The Cedar requests for one action, each built at most once per decision:
/// with the converted context, and without (for policies that never read it).
#[derive(Default)]
pub(crate) struct CedarInputs {
    full: Option<Result<Request, String>>,
    bare: Option<Result<Request, String>>,
}

impl CedarInputs {
    fn request(&mut self, action: &Action, with_context: bool) -> Result<&Request, String> {
        let slot = if with_context {
            &mut self.full
        } else {
            &mut self.bare
        };
        slot.get_or_insert_with(|| request(action, with_context))
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// The Cedar action id (and resource id) of an action: its tool at tool
/// points, else its point.
fn action_id(action: &Action) -> &str {
    match action.tool() {
        Some(tool) if action.point.requires_tool() => tool,
        _ => action.point.as_str(),
    }
}

/// The entity types of the request mapping, parsed once.
struct Types {
    agent: EntityTypeName,
    action: EntityTypeName,
    tool: EntityTypeName,
    point: EntityTypeName,
}

static TYPES: LazyLock<Result<Types, String>> = LazyLock::new(|| {
    let t = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
    Ok(Types {
        agent: t("Agent")?,
        action: t("Action")?,
        tool: t("Tool")?,
        point: t("Point")?,
    })
});

/// Maps an action to its Cedar request. Fails for input Cedar cannot
/// represent (floats, integers outside i64, `null` inside an array).
fn request(action: &Action, with_context: bool) -> Result<Request, String> {
    let types = TYPES.as_ref().map_err(Clone::clone)?;
    let point = action.point.as_str();
    let id = action_id(action);
    let resource_type = match action.tool() {
        Some(_) if action.point.requires_tool() => &types.tool,
        _ => &types.point,
    };
    let uid = |ty: &EntityTypeName, id: &str| {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    };
    let context = if with_context {
        Context::from_pairs([
            (
                "point".to_owned(),
                RestrictedExpression::new_string(point.to_owned()),
            ),
            ("args".to_owned(), record(&action.args, "args")?),
            ("context".to_owned(), record(&action.context, "context")?),
        ])
        .map_err(|e| format!("cedar context: {e}"))?
    } else {
        Context::empty()
    };
    Request::new(
        uid(&types.agent, &action.agent),
        uid(&types.action, id),
        uid(resource_type, id),
        context,
        None,
    )
    .map_err(|e| format!("cedar request: {e}"))
}

/// A JSON object as a Cedar record. `null` attributes are left out (Cedar
/// has no null: `has` is false for them); `__entity`/`__extn` keys are plain
/// attributes, never escapes, so input cannot forge entity references.
fn record(
    m: &serde_json::Map<String, serde_json::Value>,
    path: &str,
) -> Result<RestrictedExpression, String> {
    let mut fields = Vec::with_capacity(m.len());
    for (k, v) in m {
        if v.is_null() {
            continue;
        }
        fields.push((k.clone(), value(v, &format!("{path}.{k}"))?));
    }
    RestrictedExpression::new_record(fields).map_err(|e| format!("{path}: {e}"))
}

fn value(v: &serde_json::Value, path: &str) -> Result<RestrictedExpression, String> {
    use serde_json::Value as J;
    match v {
        J::Null => Err(format!(
            "{path}: null inside an array cannot be represented in Cedar"
        )),
        J::Bool(b) => Ok(RestrictedExpression::new_bool(*b)),
        J::Number(n) => n
            .as_i64()
            .map(RestrictedExpression::new_long)
            .ok_or_else(|| {
                format!("{path}: {n} is not a 64-bit integer (Cedar has no floating-point numbers)")
            }),
        J::String(s) => Ok(RestrictedExpression::new_string(s.clone())),
        J::Array(a) => {
            let items = a
                .iter()
                .enumerate()
                .map(|(i, x)| value(x, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RestrictedExpression::new_set(items))
        }
        J::Object(o) => record(o, path),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (u64, u64) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() as u64 + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map_or(0, |l| l.chars().count() as u64)
        + 1;
    (line, col)
}

/// A load error at the first labelled span of a Cedar diagnostic.
fn diagnostic_error(
    file: &Path,
    text: &str,
    field: &str,
    e: &(impl Diagnostic + ?Sized),
) -> PolicyError {
    let offset = e
        .labels()
        .and_then(|mut l| l.next())
        .map(|l| l.offset())
        .or_else(|| {
            e.related()
                .and_then(|mut r| r.next())
                .and_then(|d| d.labels())
                .and_then(|mut l| l.next())
                .map(|l| l.offset())
        });
    let origin = match offset {
        Some(o) => {
            let (line, column) = line_col(text, o);
            Origin::new(file, line, column)
        }
        None => Origin::new(file, 0, 0),
    };
    let mut message = e.to_string();
    // Cedar's top-level messages are terse ("entity does not conform to the
    // schema"); the detail is in the source chain.
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let m = c.to_string();
        if !message.contains(&m) {
            message.push_str(": ");
            message.push_str(&m);
        }
        cause = c.source();
    }
    if let Some(h) = e.help() {
        message.push_str(&format!(" (help: {h})"));
    }
    PolicyError::invalid(origin, field, message)
}

/// Reads a policy's Warden annotations (`id`, `reason`, `verdict`,
/// `approvers`, `timeout`); any other annotation is Cedar metadata, ignored.
fn policy_meta(p: &Policy, id: String, origin: Origin) -> Result<CedarPolicy, PolicyError> {
    let err = |field: &str, m: String| {
        PolicyError::invalid(origin.clone(), format!("cedar `{id}` @{field}"), m)
    };
    let get = |k: &str| p.annotation(k);
    let forbid = p.effect() == Effect::Forbid;
    let verdict = match (forbid, get("verdict")) {
        (true, None) => Verdict::Deny,
        (true, Some(v)) => {
            return Err(err(
                "verdict",
                format!(
                    "`@verdict(\"{v}\")` on a forbid policy: a forbid always denies; put @verdict on a permit"
                ),
            ));
        }
        (false, None | Some("allow")) => Verdict::Allow,
        (false, Some("warn")) => Verdict::Warn,
        (false, Some("escalate")) => Verdict::Escalate,
        (false, Some("deny")) => {
            return Err(err(
                "verdict",
                "a permit cannot deny: write a forbid policy".to_owned(),
            ));
        }
        (false, Some(other)) => {
            return Err(err(
                "verdict",
                format!("unknown verdict `{other}` (expected allow, warn or escalate)"),
            ));
        }
    };
    let mut obligations = Vec::new();
    match (verdict, get("approvers"), get("timeout")) {
        (Verdict::Escalate, Some(a), Some(t)) => {
            let approvers: Vec<String> = a
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            if approvers.is_empty() {
                return Err(err(
                    "approvers",
                    "must name at least one approver, e.g. @approvers(\"alice, secops\")"
                        .to_owned(),
                ));
            }
            let d = parse_duration(t).map_err(|m| err("timeout", m))?;
            if d.is_zero() {
                return Err(err("timeout", "must be greater than zero".to_owned()));
            }
            obligations.push(Obligation::Approval {
                approvers,
                timeout_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            });
        }
        (Verdict::Escalate, None, _) => {
            return Err(err(
                "approvers",
                "an escalate policy must name approvers, e.g. @approvers(\"alice, secops\")"
                    .to_owned(),
            ));
        }
        (Verdict::Escalate, _, None) => {
            return Err(err(
                "timeout",
                "an escalate policy must set a timeout, e.g. @timeout(\"5m\")".to_owned(),
            ));
        }
        (_, Some(_), _) => {
            return Err(err(
                "approvers",
                "only an escalate policy takes approvers".to_owned(),
            ));
        }
        (_, _, Some(_)) => {
            return Err(err(
                "timeout",
                "only an escalate policy takes a timeout".to_owned(),
            ));
        }
        _ => {}
    }
    let reason = match get("reason").map(str::trim) {
        Some(r) if !r.is_empty() => r.to_owned(),
        _ if forbid => format!("cedar policy `{id}` forbids"),
        _ => format!("cedar policy `{id}` permits ({verdict})"),
    };
    Ok(CedarPolicy {
        id,
        origin,
        verdict,
        reason,
        obligations,
    })
}

impl CedarSource {
    /// The source id: `cedar:<first policy file>`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the `cedar:` block was written.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The policy files, as written in the block.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The policies, in file order.
    pub fn policies(&self) -> &[CedarPolicy] {
        &self.policies
    }

    /// Whether a schema validated the policies.
    pub fn has_schema(&self) -> bool {
        self.schema.is_some()
    }

    /// Validator warnings and scopes that can never match a Warden request.
    pub fn warnings(&self) -> &[CedarWarning] {
        &self.warnings
    }

    /// Parses, validates and indexes a `cedar:` block.
    pub(crate) fn compile(
        origin: Origin,
        files: &[String],
        schema: Option<&str>,
        entities: Option<&str>,
        resolve: &mut Resolve<'_>,
    ) -> Result<CedarSource, PolicyError> {
        let first = files.first().ok_or_else(|| {
            PolicyError::invalid(
                origin.clone(),
                "cedar.policies",
                "must list at least one .cedar file",
            )
        })?;
        // Per file: path, text; per policy: its file index.
        let mut texts = Vec::with_capacity(files.len());
        let mut all = CedarSet::new();
        let mut policies: Vec<CedarPolicy> = Vec::new();
        let mut file_of: FxHashMap<Box<str>, usize> = FxHashMap::default();
        for (i, f) in files.iter().enumerate() {
            let field = format!("cedar.policies[{i}]");
            let text = resolve(&origin, &field, f)?;
            let path = beside(&origin, f);
            let parsed = CedarSet::from_str(&text)
                .map_err(|e| diagnostic_error(&path, &text, "cedar", &e))?;
            if let Some(t) = parsed.templates().next() {
                let at = locate_policy(&path, &text, Some(t.to_cedar()));
                return Err(PolicyError::invalid(
                    at,
                    "cedar",
                    "policy templates (`?principal`/`?resource` slots) are not supported: Warden has no template links; write static policies",
                ));
            }
            // Cedar numbers a file's policies policy0, policy1, ... in file
            // order; its iteration order is unspecified.
            let mut ps: Vec<&Policy> = parsed.policies().collect();
            ps.sort_by_key(|p| {
                AsRef::<str>::as_ref(p.id())
                    .strip_prefix("policy")
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(u64::MAX)
            });
            for p in ps {
                let at = locate_policy(&path, &text, p.to_cedar());
                let id = match p.annotation("id") {
                    Some(id) => id.trim().to_owned(),
                    None => format!("policy{}", policies.len()),
                };
                if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(PolicyError::invalid(
                        at,
                        "cedar @id",
                        format!(
                            "`{id}` must be non-empty and contain no whitespace or control characters"
                        ),
                    ));
                }
                if let Some(&j) = file_of.get(id.as_str()) {
                    let prev = policies
                        .iter()
                        .find(|q| q.id == id)
                        .map(|q| q.origin.to_string())
                        .unwrap_or_else(|| files.get(j).cloned().unwrap_or_default());
                    return Err(PolicyError::invalid(
                        at,
                        "cedar @id",
                        format!("duplicate policy id `{id}` (first defined at {prev})"),
                    ));
                }
                let meta = policy_meta(p, id.clone(), at)?;
                all.add(p.new_id(PolicyId::new(&id))).map_err(|e| {
                    PolicyError::invalid(meta.origin.clone(), "cedar", e.to_string())
                })?;
                file_of.insert(id.into(), i);
                policies.push(meta);
            }
            texts.push((path, text));
        }
        let mut warnings = Vec::new();
        let schema = match schema {
            Some(s) => Some(Arc::new(load_schema(&origin, s, resolve, &mut warnings)?)),
            None => {
                warnings.push(CedarWarning {
                    policy: String::new(),
                    origin: origin.clone(),
                    code: "unvalidated",
                    message: "no `schema:`: the Cedar policies are not validated; typos in attribute or entity names surface only as evaluation errors (deny) at run time".to_owned(),
                });
                None
            }
        };
        let locate = |id: &PolicyId, d: &dyn Diagnostic| -> Origin {
            let file = file_of
                .get(AsRef::<str>::as_ref(id))
                .and_then(|&i| texts.get(i));
            match (file, d.labels().and_then(|mut l| l.next())) {
                (Some((path, text)), Some(l)) => {
                    let (line, column) = line_col(text, l.offset());
                    Origin::new(path, line, column)
                }
                _ => policies
                    .iter()
                    .find(|p| p.id == AsRef::<str>::as_ref(id))
                    .map(|p| p.origin.clone())
                    .unwrap_or_else(|| origin.clone()),
            }
        };
        if let Some(schema) = &schema {
            let result = Validator::new((**schema).clone()).validate(&all, ValidationMode::Strict);
            let errors: Vec<_> = result.validation_errors().collect();
            if let Some(e) = errors.first() {
                let more = match errors.len() {
                    1 => String::new(),
                    n => format!(" (and {} more validation errors)", n - 1),
                };
                let mut message = e.to_string();
                if let Some(h) = e.help() {
                    message.push_str(&format!(" (help: {h})"));
                }
                message.push_str(&more);
                return Err(PolicyError::invalid(
                    locate(e.policy_id(), *e),
                    "cedar schema validation",
                    message,
                ));
            }
            for w in result.validation_warnings() {
                let code = match w {
                    ValidationWarning::ImpossiblePolicy(_) => "never-applies",
                    _ => "cedar-validator",
                };
                warnings.push(CedarWarning {
                    policy: w.policy_id().to_string(),
                    origin: locate(w.policy_id(), w),
                    code,
                    message: w.to_string(),
                });
            }
        }
        let entities = match entities {
            Some(e) => {
                let text = resolve(&origin, "cedar.entities", e)?;
                let path = beside(&origin, e);
                Entities::from_json_str(&text, schema.as_deref())
                    .map_err(|err| diagnostic_error(&path, &text, "cedar.entities", &err))?
            }
            None => match &schema {
                Some(s) => s.action_entities().map_err(|e| {
                    PolicyError::invalid(origin.clone(), "cedar.schema", e.to_string())
                })?,
                None => Entities::empty(),
            },
        };
        let (by_action, other) = index(&all, &policies, &mut warnings)?;
        Ok(CedarSource {
            id: format!("cedar:{first}"),
            origin,
            files: files.to_vec(),
            schema,
            entities: Arc::new(entities),
            by_id: policies
                .iter()
                .enumerate()
                .map(|(i, p)| (p.id.as_str().into(), i))
                .collect(),
            policies,
            by_action,
            other,
            warnings,
            authorizer: Authorizer::new(),
        })
    }

    /// Authorizes `action` and maps Cedar's response to a [`SourceResult`].
    pub(crate) fn eval(
        &self,
        action: &Action,
        inputs: &mut CedarInputs,
        deadline: Duration,
    ) -> SourceResult {
        let group = self.by_action.get(action_id(action)).unwrap_or(&self.other);
        // No policy can apply: no decision, and nothing to convert.
        if group.set.is_empty() {
            return SourceResult::Undefined;
        }
        // The deadline covers converting the input too (it is linear in its size).
        let started = Instant::now();
        let req = match inputs.request(action, group.reads_context) {
            Ok(r) => r,
            Err(m) => {
                return SourceResult::error(
                    RuntimeError::InvalidAction,
                    format!("{}: {m}", self.id),
                );
            }
        };
        let response = self
            .authorizer
            .is_authorized(req, &group.set, &self.entities);
        if started.elapsed() > deadline {
            return SourceResult::error(
                RuntimeError::BudgetExceeded,
                format!("{}: evaluation exceeded the {deadline:?} deadline", self.id),
            );
        }
        let diagnostics = response.diagnostics();
        // Cedar skips a policy whose condition errors; Warden denies instead.
        if let Some(e) = diagnostics.errors().next() {
            return SourceResult::error(RuntimeError::EvaluationError, format!("{}: {e}", self.id));
        }
        let mut determining: Vec<&CedarPolicy> = diagnostics
            .reason()
            .filter_map(|id| self.by_id.get(AsRef::<str>::as_ref(id)))
            .filter_map(|&i| self.policies.get(i))
            .collect();
        // `Deny` with no determining policy: nothing applied.
        let Some(verdict) = determining.iter().map(|p| p.verdict).max() else {
            return SourceResult::Undefined;
        };
        if response.decision() == Decision::Deny && verdict != Verdict::Deny {
            return SourceResult::error(
                RuntimeError::Internal,
                format!("{}: Cedar denied on permit policies", self.id),
            );
        }
        determining.retain(|p| p.verdict == verdict);
        // Report in file order (Cedar's reason set is unordered).
        determining.sort_by_key(|p| self.by_id.get(p.id.as_str()).copied());
        let obligations = determining
            .iter()
            .find(|p| !p.obligations.is_empty())
            .map(|p| p.obligations.clone())
            .unwrap_or_default();
        SourceResult::Decided {
            verdict,
            reasons: determining.iter().map(|p| p.reason.clone()).collect(),
            rule_ids: determining.iter().map(|p| p.id.clone()).collect(),
            obligations,
        }
    }
}

/// Where a policy's text starts in its file.
fn locate_policy(path: &Path, text: &str, policy_text: Option<String>) -> Origin {
    match policy_text.as_deref().and_then(|t| text.find(t.trim())) {
        Some(off) => {
            let (line, column) = line_col(text, off);
            Origin::new(path, line, column)
        }
        None => Origin::new(path, 0, 0),
    }
}

/// Parses the schema: `*.json` as Cedar's JSON schema format, anything else
/// as the human-readable `.cedarschema` format.
fn load_schema(
    origin: &Origin,
    rel: &str,
    resolve: &mut Resolve<'_>,
    warnings: &mut Vec<CedarWarning>,
) -> Result<Schema, PolicyError> {
    let text = resolve(origin, "cedar.schema", rel)?;
    let path = beside(origin, rel);
    if rel.ends_with(".json") {
        return Schema::from_json_str(&text)
            .map_err(|e| diagnostic_error(&path, &text, "cedar.schema", &e));
    }
    let (schema, ws) = Schema::from_cedarschema_str(&text)
        .map_err(|e| diagnostic_error(&path, &text, "cedar.schema", &e))?;
    for w in ws {
        let at = w
            .labels()
            .and_then(|mut l| l.next())
            .map(|l| line_col(&text, l.offset()));
        let (line, column) = at.unwrap_or((0, 0));
        warnings.push(CedarWarning {
            policy: String::new(),
            origin: Origin::new(&path, line, column),
            code: "cedar-validator",
            message: w.to_string(),
        });
    }
    Ok(schema)
}

/// Indexes policies by the action id of an `action == Action::"..."` scope,
/// and flags scopes that can never match a Warden request.
fn index(
    all: &CedarSet,
    policies: &[CedarPolicy],
    warnings: &mut Vec<CedarWarning>,
) -> Result<(FxHashMap<Box<str>, Group>, Group), PolicyError> {
    let is = |t: &EntityTypeName, name: &str| t.to_string() == name;
    let mut exact: FxHashMap<Box<str>, Vec<Policy>> = FxHashMap::default();
    let mut other: Vec<Policy> = Vec::new();
    for meta in policies {
        let Some(p) = all.policy(&PolicyId::new(&meta.id)) else {
            continue;
        };
        let mut never = |what: String| {
            warnings.push(CedarWarning {
                policy: meta.id.clone(),
                origin: meta.origin.clone(),
                code: "never-applies",
                message: format!(
                    "{what}: Warden's requests never match it (principal Agent, action Action, resource Tool or Point)"
                ),
            });
        };
        match p.principal_constraint() {
            PrincipalConstraint::Eq(u) if !is(u.type_name(), "Agent") => {
                never(format!("its principal is {u}"));
                continue;
            }
            PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) if !is(&t, "Agent") => {
                never(format!("its principal is a {t}"));
                continue;
            }
            _ => {}
        }
        match p.resource_constraint() {
            ResourceConstraint::Eq(u)
                if !is(u.type_name(), "Tool") && !is(u.type_name(), "Point") =>
            {
                never(format!("its resource is {u}"));
                continue;
            }
            ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _)
                if !is(&t, "Tool") && !is(&t, "Point") =>
            {
                never(format!("its resource is a {t}"));
                continue;
            }
            _ => {}
        }
        match p.action_constraint() {
            ActionConstraint::Eq(u) if is(u.type_name(), "Action") => exact
                .entry(u.id().unescaped().into())
                .or_default()
                .push(p.clone()),
            ActionConstraint::Eq(u) => never(format!("its action is {u}")),
            ActionConstraint::Any | ActionConstraint::In(_) => other.push(p.clone()),
        }
    }
    let group = |ps: &mut dyn Iterator<Item = &Policy>| -> Result<Group, PolicyError> {
        let mut set = CedarSet::new();
        let mut reads_context = false;
        for p in ps {
            reads_context |= reads_context_var(p);
            set.add(p.clone())
                .map_err(|e| PolicyError::invalid(Origin::default(), "cedar", e.to_string()))?;
        }
        Ok(Group {
            set: Arc::new(set),
            reads_context,
        })
    };
    let mut by_action = FxHashMap::default();
    for (action, ps) in &exact {
        by_action.insert(action.clone(), group(&mut ps.iter().chain(other.iter()))?);
    }
    Ok((by_action, group(&mut other.iter())?))
}

/// Whether a policy mentions the `context` variable anywhere (conservative:
/// `true` if its JSON form cannot be produced).
fn reads_context_var(p: &Policy) -> bool {
    fn walk(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(m) => m
                .iter()
                .any(|(k, v)| (k == "Var" && v.as_str() == Some("context")) || walk(v)),
            serde_json::Value::Array(a) => a.iter().any(walk),
            _ => false,
        }
    }
    p.to_json().map_or(true, |j| walk(&j))
}
