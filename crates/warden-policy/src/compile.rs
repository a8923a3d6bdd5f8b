//! Turns parsed documents into compiled rules, checking everything the schema cannot.

use crate::cedar::CedarSource;
use crate::condition::Condition;
use crate::duration::parse_duration;
use crate::engines::{PolicySource, Resolve};
use crate::error::{Origin, PolicyError};
use crate::pattern::NameSet;
use crate::quota::Quota;
use crate::rego::RegoSource;
use crate::rings::{RingPolicy, compile_rings};
use crate::rule::{OnError, RateLimit, Rule, RuleSource};
use crate::source::{AgtDoc, PolicyDoc, QuotaDoc, RuleDoc};
use cel::Env;
use serde_saphyr::Spanned;
use std::path::Path;
use warden_core::{Obligation, Point, Verdict};

/// Rules and default verdict compiled from one file.
pub(crate) struct Compiled {
    pub name: String,
    pub default: Option<(Verdict, Origin)>,
    pub rules: Vec<Rule>,
    pub quotas: Vec<Quota>,
    /// Rego and Cedar sources, in the order written.
    pub sources: Vec<PolicySource>,
    /// The `rings:` block, if the file has one.
    pub rings: Option<RingPolicy>,
}

pub(crate) fn at<T>(file: &Path, s: &Spanned<T>) -> Origin {
    Origin::at(file, s.referenced)
}

fn parse_default(file: &Path, field: &str, s: &Spanned<String>) -> Result<Verdict, PolicyError> {
    match s.value.as_str() {
        "allow" => Ok(Verdict::Allow),
        "warn" => Ok(Verdict::Warn),
        "deny" => Ok(Verdict::Deny),
        other => Err(PolicyError::invalid(
            at(file, s),
            field,
            format!("unknown default verdict `{other}` (expected allow, warn or deny)"),
        )),
    }
}

fn points_mask(
    file: &Path,
    field: &str,
    points: &Option<Spanned<Vec<String>>>,
) -> Result<u16, PolicyError> {
    let Some(points) = points else {
        return Ok(1 << Point::PreToolCall.index());
    };
    if points.value.is_empty() {
        return Err(PolicyError::invalid(
            at(file, points),
            field,
            "must list at least one point",
        ));
    }
    let mut mask = 0u16;
    for p in &points.value {
        let point: Point = p.parse().map_err(|_| {
            let all: Vec<&str> = Point::ALL.iter().map(|p| p.as_str()).collect();
            PolicyError::invalid(
                at(file, points),
                field,
                format!("unknown point `{p}` (expected one of: {})", all.join(", ")),
            )
        })?;
        mask |= 1 << point.index();
    }
    Ok(mask)
}

pub(crate) fn name_set(
    file: &Path,
    field: &str,
    list: &Option<Spanned<Vec<String>>>,
) -> Result<Option<NameSet>, PolicyError> {
    let Some(list) = list else { return Ok(None) };
    if list.value.is_empty() {
        return Err(PolicyError::invalid(
            at(file, list),
            field,
            "empty list would match nothing; omit the field to match any",
        ));
    }
    NameSet::compile(&list.value)
        .map(Some)
        .map_err(|(i, msg)| PolicyError::invalid(at(file, list), format!("{field}[{i}]"), msg))
}

/// Compiles a `warden.dev/v1` Policy document.
pub(crate) fn compile_policy(
    env: &Env,
    file: &Path,
    doc: PolicyDoc,
    resolve: &mut Resolve<'_>,
) -> Result<Compiled, PolicyError> {
    let default = match &doc.default {
        Some(d) => Some((parse_default(file, "default", d)?, at(file, d))),
        None => {
            return Err(PolicyError::invalid(
                at(file, &doc.name),
                "default",
                "missing required field `default` (allow, warn or deny): Warden never guesses what to do when no rule matches",
            ));
        }
    };
    if doc.name.value.trim().is_empty() {
        return Err(PolicyError::invalid(
            at(file, &doc.name),
            "name",
            "must not be empty",
        ));
    }
    let mut rules = Vec::with_capacity(doc.rules.len());
    for (i, r) in doc.rules.into_iter().enumerate() {
        rules.push(compile_rule(env, file, i, r)?);
    }
    let mut quotas = Vec::with_capacity(doc.quotas.len());
    for (i, q) in doc.quotas.into_iter().enumerate() {
        quotas.push(compile_quota(file, i, q)?);
    }
    let mut sources = Vec::new();
    if let Some(r) = &doc.rego {
        sources.push(PolicySource::Rego(Box::new(RegoSource::compile(
            at(file, r),
            &r.value.modules,
            &r.value.data,
            &r.value.query,
            resolve,
        )?)));
    }
    if let Some(c) = &doc.cedar {
        sources.push(PolicySource::Cedar(Box::new(CedarSource::compile(
            at(file, c),
            &c.value.policies,
            c.value.schema.as_deref(),
            c.value.entities.as_deref(),
            resolve,
        )?)));
    }
    let rings = match doc.rings {
        Some(r) => Some(compile_rings(file, r)?),
        None => None,
    };
    Ok(Compiled {
        name: doc.name.value,
        default,
        rules,
        quotas,
        sources,
        rings,
    })
}

fn compile_quota(file: &Path, i: usize, spanned: Spanned<QuotaDoc>) -> Result<Quota, PolicyError> {
    let origin = at(file, &spanned);
    let q = spanned.value;
    let field = format!("quotas[{i}]");
    let id = q.id.value.trim();
    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(PolicyError::invalid(
            at(file, &q.id),
            format!("{field}.id"),
            "must be non-empty and contain no whitespace or control characters",
        ));
    }
    let rate = match &q.rate {
        Some(r) => Some(
            RateLimit::parse(&r.value)
                .map_err(|m| PolicyError::invalid(at(file, r), format!("{field}.rate"), m))?,
        ),
        None => None,
    };
    Quota::declared(
        id.to_owned(),
        q.per.as_ref().map(|p| (p.value.as_str(), at(file, p))),
        rate,
        q.burst,
        (q.calls, q.tokens, q.cost),
        origin,
        points_mask(file, &format!("{field}.points"), &q.points)?,
        name_set(file, &format!("{field}.tools"), &q.tools)?,
        name_set(file, &format!("{field}.agents"), &q.agents)?,
        &field,
    )
}

fn compile_rule(
    env: &Env,
    file: &Path,
    i: usize,
    spanned: Spanned<RuleDoc>,
) -> Result<Rule, PolicyError> {
    let origin = at(file, &spanned);
    let r = spanned.value;
    let f = |name: &str| format!("rules[{i}].{name}");
    let id = r.id.value.trim();
    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(PolicyError::invalid(
            at(file, &r.id),
            f("id"),
            "must be non-empty and contain no whitespace or control characters",
        ));
    }
    let effect: Verdict = r
        .effect
        .value
        .parse()
        .map_err(|e: String| PolicyError::invalid(at(file, &r.effect), f("effect"), e))?;
    let on_error = match r.on_error.as_ref().map(|s| s.value.as_str()) {
        None | Some("deny") => OnError::Deny,
        Some("skip") => OnError::Skip,
        Some(other) => {
            let o = r.on_error.as_ref().map(|s| at(file, s)).unwrap_or_default();
            return Err(PolicyError::invalid(
                o,
                f("on_error"),
                format!("unknown value `{other}` (expected deny or skip)"),
            ));
        }
    };
    let condition = match &r.when {
        Some(w) => Some(
            Condition::compile(env, &w.value)
                .map_err(|m| PolicyError::invalid(at(file, w), f("when"), m))?,
        ),
        None => None,
    };
    let mut obligations = Vec::new();
    match effect {
        Verdict::Escalate => {
            let approvers = r
                .approvers
                .as_ref()
                .filter(|a| !a.value.is_empty())
                .ok_or_else(|| {
                    PolicyError::invalid(
                        origin.clone(),
                        f("approvers"),
                        "an escalate rule must list at least one approver",
                    )
                })?;
            let timeout = r.timeout.as_ref().ok_or_else(|| {
                PolicyError::invalid(
                    origin.clone(),
                    f("timeout"),
                    "an escalate rule must set a timeout, e.g. `5m`",
                )
            })?;
            let d = parse_duration(&timeout.value)
                .map_err(|m| PolicyError::invalid(at(file, timeout), f("timeout"), m))?;
            if d.is_zero() {
                return Err(PolicyError::invalid(
                    at(file, timeout),
                    f("timeout"),
                    "must be greater than zero",
                ));
            }
            obligations.push(Obligation::Approval {
                approvers: approvers.value.clone(),
                timeout_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            });
        }
        _ => {
            if let Some(a) = &r.approvers {
                return Err(PolicyError::invalid(
                    at(file, a),
                    f("approvers"),
                    "only an escalate rule takes approvers",
                ));
            }
            if let Some(t) = &r.timeout {
                return Err(PolicyError::invalid(
                    at(file, t),
                    f("timeout"),
                    "only an escalate rule takes a timeout",
                ));
            }
        }
    }
    match (effect, &r.transform) {
        (Verdict::Transform, Some(t)) => {
            if t.value.redact.is_empty() && t.value.replace.is_empty() {
                return Err(PolicyError::invalid(
                    at(file, t),
                    f("transform"),
                    "must list `redact` paths or `replace` values",
                ));
            }
            for path in &t.value.redact {
                obligations.push(Obligation::Redact { path: path.clone() });
            }
            for (path, value) in &t.value.replace {
                obligations.push(Obligation::Replace {
                    path: path.clone(),
                    value: value.clone(),
                });
            }
            for o in &obligations {
                o.validate().map_err(|e| {
                    PolicyError::invalid(at(file, t), f("transform"), e.to_string())
                })?;
            }
        }
        (Verdict::Transform, None) => {
            return Err(PolicyError::invalid(
                origin,
                f("transform"),
                "a transform rule must say what to rewrite in `transform:`",
            ));
        }
        (_, Some(t)) => {
            return Err(PolicyError::invalid(
                at(file, t),
                f("transform"),
                "only a transform rule takes `transform:`",
            ));
        }
        (_, None) => {}
    }
    let reason = r
        .reason
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| format!("rule `{id}` matched"));
    Ok(Rule {
        id: id.to_owned(),
        description: r.description,
        effect,
        reason,
        priority: r.priority,
        points: points_mask(file, &f("points"), &r.points)?,
        tools: name_set(file, &f("tools"), &r.tools)?,
        agents: name_set(file, &f("agents"), &r.agents)?,
        condition,
        on_error,
        obligations,
        origin,
        limit: None,
        source: RuleSource::Warden,
    })
}

/// Compiles an AGT `governance.toolkit/v1` document with the meaning AGT's
/// reference (Python) engine gives it.
///
/// AGT rules carry no tool filter; each applies at its `stage` (default
/// `pre_tool` → `pre_tool_call`) and its condition reads the action's
/// `context`. `agent`/`agents` become the rules' agent filter (`*` = any;
/// neither given = any agent, where AGT's Python engine would apply the
/// policy to none — Warden would rather govern than silently skip).
pub(crate) fn compile_agt(env: &Env, file: &Path, doc: AgtDoc) -> Result<Compiled, PolicyError> {
    if let Some(ext) = &doc.extends {
        return Err(PolicyError::invalid(
            at(file, ext),
            "extends",
            "AGT policy inheritance (`extends`) is not supported: list the parent file as another policy path instead (deny still overrides)",
        ));
    }
    if let Some(scope) = &doc.scope
        && !matches!(scope.value.as_str(), "global" | "tenant" | "agent")
    {
        return Err(PolicyError::invalid(
            at(file, scope),
            "scope",
            format!(
                "unknown scope `{}` (expected global, tenant or agent)",
                scope.value
            ),
        ));
    }
    // AGT's engine defaults a missing `default_action` to deny; so does Warden.
    let default = match &doc.default_action {
        Some(d) => (parse_default(file, "default_action", d)?, at(file, d)),
        None => (Verdict::Deny, at(file, &doc.name)),
    };
    let mut agent_names: Vec<String> = doc
        .agent
        .iter()
        .cloned()
        .chain(doc.agents.iter().cloned())
        .collect();
    if agent_names.iter().any(|a| a == "*") {
        agent_names.clear();
    }
    let agents = if agent_names.is_empty() {
        None
    } else {
        Some(NameSet::compile(&agent_names).map_err(|(i, msg)| {
            PolicyError::invalid(at(file, &doc.name), format!("agents[{i}]"), msg)
        })?)
    };
    let mut rules = Vec::with_capacity(doc.rules.len());
    let mut quotas = Vec::new();
    for (i, spanned) in doc.rules.into_iter().enumerate() {
        let origin = at(file, &spanned);
        let r = spanned.value;
        let f = |name: &str| format!("rules[{i}].{name}");
        let id = r.name.value.trim().to_owned();
        if id.is_empty() {
            return Err(PolicyError::invalid(
                at(file, &r.name),
                f("name"),
                "must not be empty",
            ));
        }
        let point = match r.stage.as_ref().map(|s| s.value.as_str()) {
            None | Some("pre_tool") => Point::PreToolCall,
            Some("post_tool") => Point::PostToolCall,
            Some("pre_input") => Point::Input,
            Some("pre_output") => Point::Output,
            Some(other) => {
                let o = r.stage.as_ref().map(|s| at(file, s)).unwrap_or_default();
                return Err(PolicyError::invalid(
                    o,
                    f("stage"),
                    format!(
                        "unknown stage `{other}` (expected pre_input, pre_tool, post_tool or pre_output)"
                    ),
                ));
            }
        };
        // AGT's rule action defaults to deny.
        let action = r.action.as_ref().map_or("deny", |a| a.value.as_str());
        let (effect, mut obligations) = match action {
            "allow" => (Verdict::Allow, Vec::new()),
            "deny" => (Verdict::Deny, Vec::new()),
            "warn" => (Verdict::Warn, Vec::new()),
            "log" => (
                Verdict::Allow,
                vec![Obligation::AuditMark { label: id.clone() }],
            ),
            "require_approval" => (Verdict::Escalate, Vec::new()),
            other => {
                let o = r.action.as_ref().map(|a| at(file, a)).unwrap_or_default();
                return Err(PolicyError::invalid(
                    o,
                    f("action"),
                    format!(
                        "unknown action `{other}` (expected allow, deny, warn, require_approval or log)"
                    ),
                ));
            }
        };
        if effect == Verdict::Escalate {
            obligations.push(Obligation::Approval {
                approvers: r.approvers.clone(),
                timeout_ms: AGT_APPROVAL_TIMEOUT_MS,
            });
        }
        let cel = crate::agt_condition::translate(&r.condition.value).map_err(|e| {
            PolicyError::invalid(at(file, &r.condition), f("condition"), e.to_string())
        })?;
        let condition = Condition::compile(env, &cel)
            .map_err(|m| PolicyError::invalid(at(file, &r.condition), f("condition"), m))?;
        let limit = match &r.limit {
            Some(l) => Some(
                RateLimit::parse(&l.value)
                    .map_err(|m| PolicyError::invalid(at(file, l), f("limit"), m))?,
            ),
            None => None,
        };
        if !r.enabled {
            // Validated above like any rule, then left out, as AGT does.
            continue;
        }
        if let Some(l) = limit {
            quotas.push(Quota::rule_limit(&id, l, origin.clone()));
        }
        rules.push(Rule {
            reason: format!("AGT rule `{id}` matched"),
            id,
            description: r.description,
            effect,
            priority: r.priority,
            points: 1 << point.index(),
            tools: None,
            agents: agents.clone(),
            condition: Some(condition),
            on_error: OnError::Deny,
            obligations,
            origin,
            limit,
            source: RuleSource::Agt,
        });
    }
    Ok(Compiled {
        name: doc.name.value,
        default: Some(default),
        rules,
        quotas,
        sources: Vec::new(),
        rings: None,
    })
}

/// AGT has no per-rule approval timeout; Warden uses 5 minutes (documented).
pub const AGT_APPROVAL_TIMEOUT_MS: u64 = 300_000;
