//! The compiled policy set: rules indexed by (point, tool), evaluated in rank order.

use crate::condition::{ActionVars, Condition, MAX_INPUT_DEPTH, json_nodes, within_depth};
use crate::engines::{Inputs, PolicySource, SourceDecision, SourceResult, SourceTrace};
use crate::error::{Origin, PolicyError};
use crate::facts::AgentFacts;
use crate::quota::{Quota, QuotaOrigin};
use crate::rule::{OnError, Rule};
use cel::{Context, Env};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_core::{Action, Decision, Obligation, Point, RuntimeError, Verdict};

/// Evaluation bounds. Exceeding either is a deny with `runtime_error:budget_exceeded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest worst-case CEL cost (AST nodes × input nodes^comprehension depth) run per condition.
    pub cel_cost_budget: u64,
    /// Wall-clock budget for all conditions of one decision, checked after each one.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cel_cost_budget: 10_000_000,
            deadline: Duration::from_millis(50),
        }
    }
}

/// Rules that can apply at one point, pre-sorted by rank.
#[derive(Debug, Default)]
struct PointIndex {
    /// For each exact tool name some rule names: that tool's rules merged with `untargeted`.
    by_tool: FxHashMap<Box<str>, Box<[u32]>>,
    /// Rules with no tool filter (the candidates for any tool, and for no tool).
    untargeted: Box<[u32]>,
    /// Rules whose tool filter has a glob: checked against the tool at evaluation.
    globbed: Box<[u32]>,
}

/// The compiled, immutable policy set. Cheap to share (`Arc`), swapped whole on reload.
pub struct PolicySet {
    /// All rules, sorted by rank (the evaluation order).
    rules: Vec<Rule>,
    quotas: Vec<Quota>,
    index: [PointIndex; 9],
    default: Verdict,
    default_origin: Origin,
    hash: String,
    names: Vec<String>,
    env: Arc<Env>,
    limits: Limits,
    /// Rego and Cedar sources, in load order.
    sources: Vec<PolicySource>,
    /// The `rings:` block, if a file declared one.
    rings: Option<crate::rings::RingPolicy>,
    /// Whether any condition reads `agent.trust`, `agent.tier` or `agent.ring`.
    uses_facts: bool,
}

/// How an evaluation ended.
#[derive(Debug, Clone)]
pub enum Outcome<'p> {
    /// A rule matched and decided.
    Rule(&'p Rule),
    /// No rule matched; the policy default applied.
    Default,
    /// Evaluation failed closed.
    Failed {
        /// The reserved reason.
        kind: RuntimeError,
        /// The rule being evaluated when it failed.
        rule: Option<&'p Rule>,
        /// What went wrong.
        detail: String,
    },
    /// Rego or Cedar sources decided (possibly alongside a Warden rule): the
    /// most restrictive verdict won; these are the sources that gave it.
    Sources {
        /// The Warden rule that gave the same verdict, if one did.
        rule: Option<&'p Rule>,
        /// The Rego and Cedar sources that gave the winning verdict.
        sources: Vec<SourceDecision<'p>>,
    },
}

/// The result of [`PolicySet::evaluate`]: borrows the set, allocates nothing on success.
#[derive(Debug, Clone)]
pub struct Evaluation<'p> {
    /// The verdict.
    pub verdict: Verdict,
    /// Why.
    pub outcome: Outcome<'p>,
}

impl Evaluation<'_> {
    /// Reasons in wire form.
    pub fn reasons(&self, default: Verdict) -> Vec<String> {
        match &self.outcome {
            Outcome::Rule(r) => vec![r.reason.clone()],
            Outcome::Default => vec![format!("no rule matched; policy default is {default}")],
            Outcome::Failed { kind, rule, detail } => {
                let mut v = vec![kind.reason().to_owned()];
                v.push(match rule {
                    Some(r) => format!("rule `{}`: {detail}", r.id),
                    None => detail.clone(),
                });
                v
            }
            Outcome::Sources { rule, sources } => {
                let mut v: Vec<String> = rule.iter().map(|r| r.reason.clone()).collect();
                for d in sources {
                    if d.reasons.is_empty() {
                        v.push(format!("{} decided {}", d.source.id(), d.verdict));
                    } else {
                        v.extend(d.reasons.iter().cloned());
                    }
                }
                v
            }
        }
    }

    /// The id of the deciding rule, if any.
    pub fn rule_ids(&self) -> Vec<String> {
        match &self.outcome {
            Outcome::Rule(r) => vec![r.id.clone()],
            Outcome::Failed { rule: Some(r), .. } => vec![r.id.clone()],
            Outcome::Sources { rule, sources } => rule
                .iter()
                .map(|r| r.id.clone())
                .chain(sources.iter().flat_map(|d| d.rule_ids.iter().cloned()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Obligations of the deciding rule; when no Warden rule shares the
    /// verdict, those of the first deciding source that has any (a Cedar
    /// escalation's approval), as the first matching Warden rule's would be.
    pub fn obligations(&self) -> &[Obligation] {
        match &self.outcome {
            Outcome::Rule(r) => &r.obligations,
            Outcome::Sources { rule: Some(r), .. } => &r.obligations,
            Outcome::Sources {
                rule: None,
                sources,
            } => sources
                .iter()
                .find(|d| !d.obligations.is_empty())
                .map_or(&[], |d| &d.obligations),
            _ => &[],
        }
    }
}

/// What one rule did during [`PolicySet::explain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleResult {
    /// The agent filter excluded it.
    AgentMismatch,
    /// Its tool glob did not match.
    ToolMismatch,
    /// Its condition was false.
    ConditionFalse,
    /// It matched (no condition, or condition true).
    Matched,
    /// The condition errored; `skipped` says whether `on_error: skip` let evaluation go on.
    Error {
        /// The message.
        message: String,
        /// Whether the rule was skipped rather than failing the decision.
        skipped: bool,
    },
    /// The condition was not run: its worst-case cost exceeds the budget.
    OverBudget,
}

/// One line of an explanation.
#[derive(Debug, Clone)]
pub struct Trace<'p> {
    /// The rule.
    pub rule: &'p Rule,
    /// What happened.
    pub result: RuleResult,
}

/// Full account of a decision: every candidate rule and its result.
#[derive(Debug, Clone)]
pub struct Explanation<'p> {
    /// The decision the set takes (same as [`PolicySet::evaluate`]).
    pub evaluation: Evaluation<'p>,
    /// Candidate rules in evaluation order, all evaluated (no short-circuit).
    pub traces: Vec<Trace<'p>>,
    /// What each Rego and Cedar source returned, in load order (all evaluated).
    pub sources: Vec<SourceTrace<'p>>,
    /// Rules the index excluded without evaluating (other points or tools).
    pub not_considered: usize,
}

/// Why a rule failed to produce a match result.
enum Fail {
    Error(String),
    OverBudget(u64),
    Invalid(String),
}

/// Per-decision lazy state: the CEL context and input size, built on first use.
struct Scratch {
    input_checked: bool,
    input_nodes: Option<u64>,
    started: Option<Instant>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("names", &self.names)
            .field("hash", &self.hash)
            .field("default", &self.default)
            .field("rules", &self.rules.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl PolicySet {
    pub(crate) fn build(
        mut rules: Vec<Rule>,
        quotas: Vec<Quota>,
        default: Verdict,
        default_origin: Origin,
        hash: String,
        names: Vec<String>,
        env: Arc<Env>,
    ) -> Result<Self, PolicyError> {
        // Duplicate ids are an error naming both places.
        let mut seen: HashMap<&str, &Origin> = HashMap::new();
        for r in &rules {
            if let Some(first) = seen.insert(r.id.as_str(), &r.origin) {
                return Err(PolicyError::invalid(
                    r.origin.clone(),
                    "id",
                    format!("duplicate rule id `{}` (first defined at {first})", r.id),
                ));
            }
        }
        let mut seen_quota: HashMap<&str, &Origin> = HashMap::new();
        for q in quotas.iter().filter(|q| q.kind == QuotaOrigin::Declared) {
            if let Some(first) = seen_quota.insert(q.id.as_str(), &q.origin) {
                return Err(PolicyError::invalid(
                    q.origin.clone(),
                    "id",
                    format!("duplicate quota id `{}` (first defined at {first})", q.id),
                ));
            }
        }
        // Stable sort keeps declaration order among equal keys.
        rules.sort_by_key(Rule::order_key);
        let index = std::array::from_fn(|p| build_index(&rules, Point::ALL[p]));
        let uses_facts = rules
            .iter()
            .any(|r| r.condition.as_ref().is_some_and(|c| c.uses_facts));
        Ok(PolicySet {
            uses_facts,
            rules,
            quotas,
            sources: Vec::new(),
            rings: None,
            index,
            default,
            default_origin,
            hash,
            names,
            env,
            limits: Limits::default(),
        })
    }

    /// Adds the compiled Rego and Cedar sources (evaluated in this order).
    /// Cedar policy ids join the rule ids, so they must not collide with
    /// Warden rule ids or each other.
    pub(crate) fn with_sources(mut self, sources: Vec<PolicySource>) -> Result<Self, PolicyError> {
        let mut seen: HashMap<&str, &Origin> = self
            .rules
            .iter()
            .map(|r| (r.id.as_str(), &r.origin))
            .collect();
        for p in sources
            .iter()
            .filter_map(PolicySource::as_cedar)
            .flat_map(|c| c.policies())
        {
            if let Some(first) = seen.insert(p.id.as_str(), &p.origin) {
                return Err(PolicyError::invalid(
                    p.origin.clone(),
                    "cedar @id",
                    format!("duplicate rule id `{}` (first defined at {first})", p.id),
                ));
            }
        }
        self.sources = sources;
        Ok(self)
    }

    /// Replaces the evaluation bounds.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The evaluation bounds in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// `sha256:<hex>` over the sources, in load order.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The verdict when no rule matches.
    pub fn default_verdict(&self) -> Verdict {
        self.default
    }

    /// Where the deciding default was declared.
    pub fn default_origin(&self) -> &Origin {
        &self.default_origin
    }

    /// Names of the composed policies.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// All rules in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Rego and Cedar sources, in load order.
    pub fn sources(&self) -> &[PolicySource] {
        &self.sources
    }

    /// The execution-ring configuration, if a file declared `rings:`.
    pub fn rings(&self) -> Option<&crate::rings::RingPolicy> {
        self.rings.as_ref()
    }

    /// Adds the `rings:` blocks of all files. At most one file may declare
    /// one: merging two would make "which file decides an agent's ring" ambiguous.
    pub(crate) fn with_rings(
        mut self,
        rings: Vec<crate::rings::RingPolicy>,
    ) -> Result<Self, PolicyError> {
        let mut rings = rings.into_iter();
        self.rings = rings.next();
        if let (Some(first), Some(second)) = (&self.rings, rings.next()) {
            return Err(PolicyError::invalid(
                second.origin,
                "rings",
                format!(
                    "only one policy file may declare `rings:` (first declared at {})",
                    first.origin
                ),
            ));
        }
        Ok(self)
    }

    /// Whether any condition reads the agent facts (`agent.trust`,
    /// `agent.tier`, `agent.ring`): when none does, the kernel need not
    /// compute them for the policy.
    pub fn uses_agent_facts(&self) -> bool {
        self.uses_facts
    }

    /// The facts [`evaluate`](Self::evaluate) assumes for `agent`: a trust
    /// book that has never seen it (trust 400, `probationary`) and the ring
    /// that tier gives it under this set's `rings:` block (grants included),
    /// or ring 3 without one. Only conditions reading the facts see them.
    pub fn baseline_facts(&self, agent: &str) -> AgentFacts {
        let base = AgentFacts::BASELINE;
        match &self.rings {
            Some(r) => base.with_ring(r.agent_ring(agent, base.tier())),
            None => base,
        }
    }

    /// Declared quotas and rule limits, for the quota stage.
    pub fn quotas(&self) -> &[Quota] {
        &self.quotas
    }

    /// The rule ranks to consider for `action`: the exact-tool list (or the
    /// untargeted list) and the glob list, each already in rank order.
    fn lists(&self, action: &Action) -> (&[u32], &[u32]) {
        let idx = &self.index[action.point.index()];
        match action.tool() {
            Some(tool) => (
                idx.by_tool.get(tool).map_or(&*idx.untargeted, |v| &**v),
                &*idx.globbed,
            ),
            None => (&*idx.untargeted, &[]),
        }
    }

    /// Calls `visit` for each candidate rule in rank order, merging the two
    /// sorted lists; glob rules whose pattern does not match the tool are
    /// reported as `None`. Stops when `visit` returns `false`.
    fn for_candidates<'s>(
        &'s self,
        action: &Action,
        mut visit: impl FnMut(&'s Rule, bool) -> bool,
    ) {
        let (listed, globbed) = self.lists(action);
        let tool = action.tool().unwrap_or("");
        let (mut i, mut j) = (0, 0);
        loop {
            let next = match (listed.get(i), globbed.get(j)) {
                (Some(&a), Some(&b)) if a < b => {
                    i += 1;
                    (a, true)
                }
                // A rule with exact names and globs is in both lists: visit it once.
                (Some(&a), Some(&b)) if a == b => {
                    i += 1;
                    j += 1;
                    (a, true)
                }
                (Some(&a), None) => {
                    i += 1;
                    (a, true)
                }
                (_, Some(&b)) => {
                    j += 1;
                    (b, false)
                }
                (None, None) => return,
            };
            let Some(rule) = self.rules.get(next.0 as usize) else {
                return;
            };
            // Listed rules are known to apply to this tool; glob rules must be checked.
            let tool_ok = next.1 || rule.tools.as_ref().is_some_and(|t| t.matches(tool));
            if !visit(rule, tool_ok) {
                return;
            }
        }
    }

    /// Runs one condition: the native evaluator when it has one, else the
    /// interpreter (its context is built on first use and reused).
    fn run_condition<'v>(
        &self,
        c: &Condition,
        action: &Action,
        facts: AgentFacts,
        scratch: &mut Scratch,
        ctx: &mut Option<Context<'v, 'v>>,
        vars: &'v ActionVars<'v>,
    ) -> Result<bool, Fail> {
        if !scratch.input_checked {
            let deep = |m: &serde_json::Map<String, serde_json::Value>| {
                !m.values().all(|v| within_depth(v, MAX_INPUT_DEPTH - 1))
            };
            if deep(&action.args) || deep(&action.context) {
                return Err(Fail::Invalid(format!(
                    "args or context nest deeper than {MAX_INPUT_DEPTH} levels"
                )));
            }
            scratch.input_checked = true;
        }
        if c.iterates() {
            let n = *scratch.input_nodes.get_or_insert_with(|| {
                let args: u64 = action.args.values().map(json_nodes).sum();
                let context: u64 = action.context.values().map(json_nodes).sum();
                args + context
            });
            let cost = c.cost(n);
            if cost > self.limits.cel_cost_budget {
                return Err(Fail::OverBudget(cost));
            }
        }
        // Native conditions have no loops and run in time linear in the
        // input, so only interpreted ones start the deadline clock.
        if let Some(fast) = c.fast() {
            return fast.eval_bool(action, facts).map_err(Fail::Error);
        }
        scratch.started.get_or_insert_with(Instant::now);
        let ctx = ctx.get_or_insert_with(|| {
            let mut ctx = Context::with_env(Arc::clone(&self.env));
            ctx.set_variable_resolver(vars);
            ctx
        });
        c.eval(ctx).map_err(Fail::Error)
    }

    fn over_deadline(&self, scratch: &Scratch) -> bool {
        scratch
            .started
            .is_some_and(|s| s.elapsed() > self.limits.deadline)
    }

    fn budget_failure<'p>(&self, rule: &'p Rule, what: String) -> Evaluation<'p> {
        Evaluation {
            verdict: Verdict::Deny,
            outcome: Outcome::Failed {
                kind: RuntimeError::BudgetExceeded,
                rule: Some(rule),
                detail: what,
            },
        }
    }

    /// Decides `action`: the first candidate Warden rule in rank order that
    /// matches decides for the rules; each Rego or Cedar source decides or abstains;
    /// the most restrictive verdict among the deciders wins (deny overrides
    /// across sources); if nothing decides, the default applies. Any
    /// evaluation failure is a deny.
    ///
    /// Conditions see the [`baseline_facts`](Self::baseline_facts) of the
    /// agent; the kernel passes the real ones with [`evaluate_with`](Self::evaluate_with).
    pub fn evaluate(&self, action: &Action) -> Evaluation<'_> {
        // Only sets whose conditions read the facts pay for the grant lookup.
        let facts = if self.uses_facts {
            self.baseline_facts(&action.agent)
        } else {
            AgentFacts::BASELINE
        };
        self.evaluate_with(action, &facts)
    }

    /// Like [`evaluate`](Self::evaluate), with the agent facts the kernel
    /// computed for this decision (`agent.trust`, `agent.tier`, `agent.ring`).
    pub fn evaluate_with(&self, action: &Action, facts: &AgentFacts) -> Evaluation<'_> {
        if self.sources.is_empty() {
            return self.evaluate_rules(action, *facts);
        }
        self.combine(action, self.evaluate_rules(action, *facts))
    }

    /// Folds the Rego and Cedar sources' results into the Warden rules' evaluation.
    #[inline(never)]
    fn combine<'p>(&'p self, action: &Action, e: Evaluation<'p>) -> Evaluation<'p> {
        let rule = match e.outcome {
            Outcome::Rule(r) => Some(r),
            Outcome::Default => None,
            Outcome::Failed { .. } | Outcome::Sources { .. } => return e,
        };
        // Nothing is more restrictive than a rule's deny.
        if rule.is_some() && e.verdict == Verdict::Deny {
            return e;
        }
        let mut inputs = Inputs::new(action);
        let mut decided = Vec::new();
        for source in &self.sources {
            match source.eval(&mut inputs, self.limits.deadline) {
                SourceResult::Decided {
                    verdict,
                    reasons,
                    rule_ids,
                    obligations,
                } => decided.push(SourceDecision {
                    source,
                    verdict,
                    reasons,
                    rule_ids,
                    obligations,
                }),
                SourceResult::Undefined => {}
                SourceResult::Error { kind, message } => return source_failure(kind, message),
            }
        }
        let Some(sources_max) = decided.iter().map(|d| d.verdict).max() else {
            return e;
        };
        let verdict = rule.map_or(sources_max, |r| r.effect.max(sources_max));
        decided.retain(|d| d.verdict == verdict);
        let rule = rule.filter(|r| r.effect == verdict);
        match (rule, decided.is_empty()) {
            (Some(r), true) => Evaluation {
                verdict,
                outcome: Outcome::Rule(r),
            },
            _ => Evaluation {
                verdict,
                outcome: Outcome::Sources {
                    rule,
                    sources: decided,
                },
            },
        }
    }

    /// The Warden rules alone: first matching candidate in rank order.
    fn evaluate_rules(&self, action: &Action, facts: AgentFacts) -> Evaluation<'_> {
        let vars = ActionVars::new(action, &facts);
        let mut scratch = Scratch {
            input_checked: false,
            input_nodes: None,
            started: None,
        };
        let mut ctx: Option<Context<'_, '_>> = None;
        let mut result = None;
        self.for_candidates(action, |rule, tool_ok| {
            if !tool_ok || !rule.admits_agent(&action.agent) {
                return true;
            }
            let matched = match &rule.condition {
                None => Ok(true),
                Some(c) => {
                    let r = self.run_condition(c, action, facts, &mut scratch, &mut ctx, &vars);
                    if self.over_deadline(&scratch) {
                        result = Some(self.budget_failure(
                            rule,
                            format!(
                                "evaluation exceeded the {:?} deadline",
                                self.limits.deadline
                            ),
                        ));
                        return false;
                    }
                    r
                }
            };
            match matched {
                Ok(true) => {
                    result = Some(Evaluation {
                        verdict: rule.effect,
                        outcome: Outcome::Rule(rule),
                    });
                    false
                }
                Ok(false) => true,
                Err(Fail::OverBudget(cost)) => {
                    result = Some(self.budget_failure(
                        rule,
                        format!(
                            "worst-case CEL cost {cost} exceeds the budget of {}",
                            self.limits.cel_cost_budget
                        ),
                    ));
                    false
                }
                Err(Fail::Invalid(detail)) => {
                    result = Some(Evaluation {
                        verdict: Verdict::Deny,
                        outcome: Outcome::Failed {
                            kind: RuntimeError::InvalidAction,
                            rule: Some(rule),
                            detail,
                        },
                    });
                    false
                }
                Err(Fail::Error(_)) if rule.on_error == OnError::Skip => true,
                Err(Fail::Error(message)) => {
                    result = Some(Evaluation {
                        verdict: Verdict::Deny,
                        outcome: Outcome::Failed {
                            kind: RuntimeError::EvaluationError,
                            rule: Some(rule),
                            detail: message,
                        },
                    });
                    false
                }
            }
        });
        result.unwrap_or(Evaluation {
            verdict: self.default,
            outcome: Outcome::Default,
        })
    }

    /// Like [`evaluate`](Self::evaluate), but runs every candidate rule and
    /// reports what each did.
    pub fn explain(&self, action: &Action) -> Explanation<'_> {
        self.explain_with(action, &self.baseline_facts(&action.agent))
    }

    /// Like [`explain`](Self::explain), with the given agent facts.
    pub fn explain_with(&self, action: &Action, facts: &AgentFacts) -> Explanation<'_> {
        let facts = *facts;
        let evaluation = self.evaluate_with(action, &facts);
        let vars = ActionVars::new(action, &facts);
        let mut scratch = Scratch {
            input_checked: false,
            input_nodes: None,
            started: None,
        };
        let mut ctx = None;
        let mut traces = Vec::new();
        self.for_candidates(action, |rule, tool_ok| {
            let result = if !tool_ok {
                RuleResult::ToolMismatch
            } else if !rule.admits_agent(&action.agent) {
                RuleResult::AgentMismatch
            } else {
                match &rule.condition {
                    None => RuleResult::Matched,
                    Some(c) => {
                        match self.run_condition(c, action, facts, &mut scratch, &mut ctx, &vars) {
                            Ok(true) => RuleResult::Matched,
                            Ok(false) => RuleResult::ConditionFalse,
                            Err(Fail::OverBudget(_)) => RuleResult::OverBudget,
                            Err(Fail::Invalid(message)) => RuleResult::Error {
                                message,
                                skipped: false,
                            },
                            Err(Fail::Error(message)) => RuleResult::Error {
                                message,
                                skipped: rule.on_error == OnError::Skip,
                            },
                        }
                    }
                }
            };
            traces.push(Trace { rule, result });
            true
        });
        let not_considered = self.rules.len() - traces.len();
        let mut inputs = Inputs::new(action);
        let sources = self
            .sources
            .iter()
            .map(|source| SourceTrace {
                source,
                result: source.eval(&mut inputs, self.limits.deadline),
            })
            .collect();
        Explanation {
            evaluation,
            traces,
            not_considered,
            sources,
        }
    }

    /// Evaluates and builds the wire-form [`Decision`] with a fresh id.
    pub fn decide(&self, action: &Action) -> Decision {
        self.to_decision(&self.evaluate(action))
    }

    /// Like [`decide`](Self::decide), with the given agent facts.
    pub fn decide_with(&self, action: &Action, facts: &AgentFacts) -> Decision {
        self.to_decision(&self.evaluate_with(action, facts))
    }

    /// Builds the wire-form [`Decision`] for an evaluation of this set.
    pub fn to_decision(&self, e: &Evaluation<'_>) -> Decision {
        self.to_decision_at(e, warden_core::unix_ms())
    }

    /// [`to_decision`](Self::to_decision) for a decision made at `unix_ms`
    /// (the time in its id), for callers that already read the clock.
    pub fn to_decision_at(&self, e: &Evaluation<'_>, unix_ms: u64) -> Decision {
        Decision {
            verdict: e.verdict,
            reasons: e.reasons(self.default),
            rule_ids: e.rule_ids(),
            obligations: e.obligations().to_vec(),
            policy_hash: self.hash.clone(),
            decision_id: Decision::new_id_at(unix_ms),
        }
    }
}

fn source_failure<'p>(kind: RuntimeError, detail: String) -> Evaluation<'p> {
    Evaluation {
        verdict: Verdict::Deny,
        outcome: Outcome::Failed {
            kind,
            rule: None,
            detail,
        },
    }
}

fn build_index(rules: &[Rule], point: Point) -> PointIndex {
    let mut idx = PointIndex::default();
    let mut untargeted = Vec::new();
    let mut globbed = Vec::new();
    let mut exact: HashMap<Box<str>, Vec<u32>> = HashMap::new();
    for (rank, rule) in rules.iter().enumerate() {
        if !rule.applies_at(point) {
            continue;
        }
        let rank = u32::try_from(rank).unwrap_or(u32::MAX);
        match &rule.tools {
            None => untargeted.push(rank),
            Some(tools) => {
                let mut has_glob = false;
                for p in tools.written.iter() {
                    if crate::pattern::is_glob(p) {
                        has_glob = true;
                    } else {
                        let list = exact.entry(p.as_str().into()).or_default();
                        if list.last() != Some(&rank) {
                            list.push(rank);
                        }
                    }
                }
                // A rule with both exact names and globs sits in both places;
                // the merge in `for_candidates` visits it once.
                if has_glob {
                    globbed.push(rank);
                }
            }
        }
    }
    for (tool, mut list) in exact {
        list.extend_from_slice(&untargeted);
        list.sort_unstable();
        list.dedup();
        idx.by_tool.insert(tool, list.into_boxed_slice());
    }
    idx.untargeted = untargeted.into_boxed_slice();
    idx.globbed = globbed.into_boxed_slice();
    idx
}
