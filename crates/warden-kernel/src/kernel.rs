//! `Kernel::decide`: the single chokepoint every action passes.

use crate::record::{ActionBody, AuditEvent, AuditSink, DecisionTag};
use crate::ring::{RingCheck, RingStage};
use crate::stage::{KillStage, QuotaStage, Stage, StageOrder, Stop};
use arc_swap::ArcSwap;
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use warden_core::{Action, Decision, Obligation, RuntimeError, Verdict};
use warden_identity::TrustBook;
use warden_policy::{
    AgentFacts, Elevation, Outcome as PolicyOutcome, PolicyError, PolicyHandle, PolicySet,
};
use warden_runtime::{
    ApprovalError, ApprovalRequest, Approvals, KillError, KillSwitch, KillTarget, QuotaBook,
    Resolution, RingPermit, Usage, now_ms,
};

/// Pending outcome charges kept before old ones are evicted.
const MAX_PENDING_USAGE: usize = 65_536;
/// Age after which an outcome (or an approval of a ring escalation) is no longer expected.
const PENDING_USAGE_TTL: Duration = Duration::from_secs(3600);
/// Default [`KernelBuilder::slot_ttl`].
pub const DEFAULT_SLOT_TTL: Duration = Duration::from_secs(600);
/// Expired pending entries are swept at most this often (by a decision).
const SWEEP_EVERY_MS: u64 = 1000;

/// Whether audit records keep raw arguments or only their digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArgsMode {
    /// `sha256:` digest of the canonical arguments and context (default: tool
    /// arguments often carry personal data and secrets).
    #[default]
    Digest,
    /// The arguments and context themselves, plus the digest.
    Raw,
}

/// Kernel errors (decisions themselves never error: they fail closed).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A policy could not be (re)loaded.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The kill switch could not be changed or read.
    #[error(transparent)]
    Kill(#[from] KillError),
    /// An approval could not be resolved.
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    /// The audit log refused a record.
    #[error("audit: {0}")]
    Audit(String),
}

/// How an executed action went, reported after the fact.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// `None` for success, else the error message.
    pub error: Option<String>,
    /// Execution time.
    pub latency: Duration,
    /// Digest of the output, if the caller computed one.
    pub output_digest: Option<String>,
    /// What it consumed (charged to token/cost budgets).
    pub usage: Usage,
}

/// Builder for a [`Kernel`].
pub struct KernelBuilder {
    policy: PolicyHandle,
    kill: Option<KillSwitch>,
    audit: Option<Arc<dyn AuditSink>>,
    approvals: Option<Approvals>,
    stages: Vec<Box<dyn Stage>>,
    args_mode: ArgsMode,
    observe_kills: bool,
    trust: Option<Arc<TrustBook>>,
    slot_ttl: Duration,
}

impl KernelBuilder {
    /// Keeps state in `dir`: the kill switch shared with other processes
    /// (`killswitch.json`) and the audit log (`audit/`) with the given
    /// durability. Kill changes other processes make are audited here too.
    pub fn data_dir(
        self,
        dir: &std::path::Path,
        durability: warden_audit::Durability,
    ) -> Result<Self, KernelError> {
        let log = warden_audit::AuditLog::<Box<AuditEvent>>::open(
            dir,
            warden_audit::AuditConfig {
                durability,
                // Bounds memory (records hold copies of arguments) while
                // leaving the writer large group commits.
                queue_capacity: 8192,
                ..warden_audit::AuditConfig::default()
            },
        )
        .map_err(|e| KernelError::Audit(e.to_string()))?;
        Ok(self.kill_dir(dir)?.audit(Arc::new(log)))
    }

    /// Shares the kill switch in `dir` (`killswitch.json`) with every other
    /// process using it; kills they make are audited by this kernel's sink
    /// (whichever store it is, see [`KernelBuilder::audit`]).
    pub fn kill_dir(mut self, dir: &std::path::Path) -> Result<Self, KernelError> {
        self.kill = Some(KillSwitch::open(dir, Duration::from_millis(10))?);
        self.observe_kills = true;
        Ok(self)
    }

    /// Uses this kill switch (default: in memory).
    #[must_use]
    pub fn kill_switch(mut self, kill: KillSwitch) -> Self {
        self.kill = Some(kill);
        self
    }

    /// Writes every decision, outcome, approval and kill to `sink`.
    #[must_use]
    pub fn audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// Uses this approval book (default: no backend; requests are listed by `pending_approvals`).
    #[must_use]
    pub fn approvals(mut self, approvals: Approvals) -> Self {
        self.approvals = Some(approvals);
        self
    }

    /// Adds a gate stage (identity, ring, ...); stages run in [`StageOrder`](crate::StageOrder).
    #[must_use]
    pub fn stage(mut self, stage: Box<dyn Stage>) -> Self {
        self.stages.push(stage);
        self
    }

    /// Reads agents' trust tiers for the ring stage from `trust` (share the
    /// book the identity stage's [`TrustFeed`](crate::TrustFeed) updates).
    /// Without one, every agent is at the default baseline's tier.
    #[must_use]
    pub fn trust(mut self, trust: Arc<TrustBook>) -> Self {
        self.trust = Some(trust);
        self
    }

    /// Scores agents from this kernel's audit stream: wraps the audit sink
    /// chosen so far (call after [`KernelBuilder::data_dir`] or
    /// [`KernelBuilder::audit`]) in a [`TrustFeed`](crate::TrustFeed) feeding
    /// `book`, and reads ring tiers from `book`. `gate` supplies delegators
    /// for penalty propagation.
    #[must_use]
    pub fn trust_feed(
        mut self,
        book: Arc<TrustBook>,
        gate: Option<Arc<warden_identity::Gate>>,
    ) -> Self {
        let inner = self.audit.take();
        self.audit = Some(Arc::new(crate::TrustFeed::new(
            Arc::clone(&book),
            inner,
            gate,
        )));
        self.trust = Some(book);
        self
    }

    /// How long a ring concurrency slot stays held when the call's outcome is
    /// never reported (default [`DEFAULT_SLOT_TTL`], 10 minutes): a client
    /// that never calls [`Kernel::record_outcome`] cannot keep the agent's
    /// slots forever. Expired slots are released within a second of the TTL,
    /// by the next decision. A call running longer than this stops counting
    /// against its ring's concurrency limit.
    #[must_use]
    pub fn slot_ttl(mut self, ttl: Duration) -> Self {
        self.slot_ttl = ttl;
        self
    }

    /// Raw or hashed arguments in audit records.
    #[must_use]
    pub fn args_mode(mut self, mode: ArgsMode) -> Self {
        self.args_mode = mode;
        self
    }

    /// Builds the kernel and records the policy load.
    pub fn build(self) -> Result<Kernel, KernelError> {
        let policy = self.policy;
        let set = policy.current();
        let quotas = Arc::new(ArcSwap::from_pointee(QuotaBook::new(set.quotas())));
        let rings = RingStage::new(&set, self.trust);
        let kill = self.kill.unwrap_or_else(KillSwitch::in_memory);
        if self.observe_kills
            && let Some(sink) = &self.audit
        {
            observe_kills(&kill, Arc::clone(sink));
        }
        let mut stages = self.stages;
        stages.push(Box::new(KillStage(kill.clone())));
        stages.push(Box::new(QuotaStage(Arc::clone(&quotas))));
        stages.sort_by_key(|s| s.order());
        let kernel = Kernel {
            policy,
            quotas,
            kill,
            approvals: self.approvals.unwrap_or_else(|| Approvals::new(None)),
            stages,
            audit: self.audit,
            usage: DashMap::new(),
            args_mode: self.args_mode,
            rings,
            ring_permits: DashMap::new(),
            ring_escalations: DashMap::new(),
            slot_ttl: self.slot_ttl,
            last_sweep_ms: AtomicU64::new(now_ms()),
        };
        kernel.audit(AuditEvent::PolicyLoaded {
            ts_ms: now_ms(),
            policy_hash: set.hash().to_owned(),
            names: set.names().to_vec(),
        })?;
        Ok(kernel)
    }
}

/// Audits kill switch changes other processes make (seen by the file watcher).
fn observe_kills(kill: &KillSwitch, sink: Arc<dyn AuditSink>) {
    kill.observe(move |change| {
        let event = match change {
            warden_runtime::KillChange::Killed(target, k) => AuditEvent::Kill {
                ts_ms: k.at_ms,
                target,
                reason: k.reason,
                by: k.by,
            },
            warden_runtime::KillChange::Lifted(target) => AuditEvent::Unkill {
                ts_ms: now_ms(),
                target,
                by: None,
            },
        };
        // The kill is in force either way; a failing log fails the next decision.
        let _ = sink.append(event);
    });
}

/// The enforcement pipeline. `Send + Sync`; share it with `Arc`.
pub struct Kernel {
    policy: PolicyHandle,
    quotas: Arc<ArcSwap<QuotaBook>>,
    kill: KillSwitch,
    approvals: Approvals,
    stages: Vec<Box<dyn Stage>>,
    audit: Option<Arc<dyn AuditSink>>,
    /// Decisions whose outcome must be charged to token/cost budgets, with
    /// when they were decided (entries whose outcome never comes are evicted).
    usage: DashMap<String, (Action, std::time::Instant)>,
    args_mode: ArgsMode,
    /// Stage 3, run between the stages ordered before and after [`StageOrder::Ring`].
    rings: RingStage,
    /// Ring concurrency slots held until the decision's outcome is recorded.
    ring_permits: DashMap<String, (RingPermit, std::time::Instant)>,
    /// Pending ring escalations: decision id → (agent, tool).
    ring_escalations: DashMap<String, ((String, String), std::time::Instant)>,
    /// Age after which a held ring permit is released.
    slot_ttl: Duration,
    /// When pending entries were last swept for expiry.
    last_sweep_ms: AtomicU64,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field(
                "stages",
                &self.stages.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("audited", &self.audit.is_some())
            .finish_non_exhaustive()
    }
}

impl Kernel {
    /// Starts building a kernel around a loaded policy.
    pub fn builder(policy: PolicyHandle) -> KernelBuilder {
        KernelBuilder {
            policy,
            kill: None,
            audit: None,
            approvals: None,
            stages: Vec::new(),
            args_mode: ArgsMode::Digest,
            observe_kills: false,
            trust: None,
            slot_ttl: DEFAULT_SLOT_TTL,
        }
    }

    /// The policy set in force.
    pub fn policy(&self) -> Arc<PolicySet> {
        self.policy.current()
    }

    /// The kill switch.
    pub fn kill_switch(&self) -> &KillSwitch {
        &self.kill
    }

    /// Appends an event to this kernel's audit log (adapters record their
    /// own findings, e.g. the MCP gateway's rug-pulls, in the same log).
    pub fn record_event(&self, event: AuditEvent) -> Result<(), KernelError> {
        self.audit(event)
    }

    /// Audit records handed over but not yet durable (`None`: no audit, or
    /// the store cannot tell). Exported as a queue-depth metric.
    pub fn audit_backlog(&self) -> Option<u64> {
        self.audit.as_ref().and_then(|s| s.backlog())
    }

    fn audit(&self, event: AuditEvent) -> Result<(), KernelError> {
        match &self.audit {
            Some(sink) => sink.append(event).map_err(KernelError::Audit),
            None => Ok(()),
        }
    }

    /// Decides `action`: kill switch → identity → ring → quotas → policy →
    /// escalation, then the audit record. Never errors: every failure is a
    /// deny with a reason. An `escalate` verdict opens a pending approval
    /// whose id is the decision id.
    pub fn decide(&self, action: &Action) -> Decision {
        let set = self.policy.guard();
        let now = now_ms();
        self.sweep(now);
        let mut permit = None;
        let decision = self.evaluate(&set, action, now, &mut permit);
        let decision = self.finish(&set, action, decision, now);
        if let Some(p) = permit
            && decision.verdict.proceeds()
        {
            self.hold(&self.ring_permits, decision.decision_id.clone(), p);
        }
        decision
    }

    /// Inserts into a map of entries awaiting an outcome or approval,
    /// evicting stale ones first so entries that never resolve stay bounded.
    fn hold<V>(&self, map: &DashMap<String, (V, std::time::Instant)>, id: String, v: V) {
        // Outcomes that never came must not grow memory without bound.
        if map.len() >= MAX_PENDING_USAGE
            && let Some(cutoff) = std::time::Instant::now().checked_sub(PENDING_USAGE_TTL)
        {
            map.retain(|_, (_, at)| *at > cutoff);
        }
        map.insert(id, (v, std::time::Instant::now()));
    }

    /// Releases held entries whose outcome or approval is overdue: ring
    /// permits older than the slot TTL, usage charges and ring escalations
    /// older than an hour. Runs at most every [`SWEEP_EVERY_MS`], on one
    /// thread (the others skip it), so the amortised cost per decision is an
    /// atomic load.
    fn sweep(&self, now: u64) {
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY_MS
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let at = std::time::Instant::now();
        if let Some(cutoff) = at.checked_sub(self.slot_ttl) {
            // Dropping a permit frees its concurrency slot.
            self.ring_permits.retain(|_, (_, t)| *t > cutoff);
        }
        if let Some(cutoff) = at.checked_sub(PENDING_USAGE_TTL) {
            self.usage.retain(|_, (_, t)| *t > cutoff);
            self.ring_escalations.retain(|_, (_, t)| *t > cutoff);
        }
    }

    /// Ring permits held for calls whose outcome has not been recorded (a gauge for tests and metrics).
    pub fn held_ring_slots(&self) -> usize {
        self.ring_permits.len()
    }

    /// The ring stage: `Some` decision when it stops the action; else the
    /// agent facts for the policy.
    fn ring_gate(
        &self,
        set: &PolicySet,
        action: &Action,
        now: u64,
        permit: &mut Option<RingPermit>,
    ) -> Result<AgentFacts, Box<Decision>> {
        let (check, facts) = self.rings.gate(action, set.uses_agent_facts(), now);
        match check {
            RingCheck::Pass(p) => {
                *permit = p;
                Ok(facts)
            }
            RingCheck::Stop(stop) => Err(Box::new(stopped(set, stop))),
            RingCheck::Escalate(stop, elevation) => {
                let d = escalation(set, stop, elevation);
                self.hold(
                    &self.ring_escalations,
                    d.decision_id.clone(),
                    (
                        action.agent.clone(),
                        action.tool().unwrap_or_default().to_owned(),
                    ),
                );
                Err(Box::new(d))
            }
        }
    }

    fn evaluate(
        &self,
        set: &PolicySet,
        action: &Action,
        now: u64,
        permit: &mut Option<RingPermit>,
    ) -> Decision {
        let mut facts = None;
        for stage in &self.stages {
            if facts.is_none() && stage.order() > StageOrder::Ring {
                match self.ring_gate(set, action, now, permit) {
                    Ok(f) => facts = Some(f),
                    Err(d) => return *d,
                }
            }
            if let Some(stop) = stage.check(action) {
                return stopped(set, stop);
            }
        }
        let facts = match facts {
            Some(f) => f,
            None => match self.ring_gate(set, action, now, permit) {
                Ok(f) => f,
                Err(d) => return *d,
            },
        };
        let eval = set.evaluate_with(action, &facts);
        let deciding_rule = match &eval.outcome {
            PolicyOutcome::Rule(rule)
            | PolicyOutcome::Sources {
                rule: Some(rule), ..
            } => Some(*rule),
            _ => None,
        };
        if let Some(rule) = deciding_rule
            && rule.limit.is_some()
            && let Err(d) = self.quotas.load().check_rule(&rule.id, action)
        {
            return stopped(
                set,
                Stop {
                    reason: d.reason(),
                    detail: d.detail,
                },
            );
        }
        set.to_decision_at(&eval, now)
    }

    /// Opens an approval, holds usage and writes the audit record (stamped
    /// `now`, the decision's own clock reading).
    fn finish(
        &self,
        set: &PolicySet,
        action: &Action,
        mut decision: Decision,
        now: u64,
    ) -> Decision {
        if decision.verdict == Verdict::Escalate
            && let Err(e) = self.open_approval(action, &decision)
        {
            decision = internal_error(set, format!("approval could not be opened: {e}"));
        }
        if decision.verdict.proceeds() && self.quotas.load().wants_usage(action) {
            let mut key = Action::new(
                action.point,
                action.agent.clone(),
                action.tool().map(str::to_owned),
            )
            .unwrap_or_else(|_| action.clone());
            key.session = action.session.clone();
            self.hold(&self.usage, decision.decision_id.clone(), key);
        }
        let Some(sink) = &self.audit else {
            return decision;
        };
        let spare = SPARE_RECORD.with(std::cell::Cell::take);
        let raw = self.args_mode == ArgsMode::Raw;
        let event = decision_record(spare, action, &decision, raw, now);
        let mut next = None;
        let appended = sink.append_recycling(event, &mut next);
        if next.is_some() {
            SPARE_RECORD.with(|c| c.set(next));
        }
        if let Err(e) = appended {
            // An unrecorded decision must not let the action through.
            return internal_error(set, format!("audit: {e}"));
        }
        decision
    }

    fn open_approval(&self, action: &Action, decision: &Decision) -> Result<(), ApprovalError> {
        let (approvers, timeout_ms) = decision
            .obligations
            .iter()
            .find_map(|o| match o {
                Obligation::Approval {
                    approvers,
                    timeout_ms,
                } => Some((approvers.clone(), *timeout_ms)),
                _ => None,
            })
            .unwrap_or((Vec::new(), 0));
        let now = now_ms();
        self.approvals.open(
            ApprovalRequest {
                id: decision.decision_id.clone(),
                agent: action.agent.clone(),
                session: action.session.clone(),
                point: action.point.as_str().to_owned(),
                tool: action.tool().map(str::to_owned),
                reasons: decision.reasons.clone(),
                rule_ids: decision.rule_ids.clone(),
                approvers,
                created_ms: now,
                deadline_ms: now.saturating_add(timeout_ms),
            },
            Duration::from_millis(timeout_ms),
        )
    }

    /// Decides and, on `escalate`, waits up to `timeout` (and at most the
    /// rule's own timeout) for an approver; returns the final decision
    /// (same decision id): allow when approved, deny when denied or timed out.
    pub fn decide_and_wait(&self, action: &Action, timeout: Duration) -> Decision {
        let mut decision = self.decide(action);
        if decision.verdict != Verdict::Escalate {
            return decision;
        }
        let resolution = match self.approvals.wait(&decision.decision_id, timeout) {
            Ok(r) => r,
            Err(e) => {
                decision.verdict = Verdict::Deny;
                decision.reasons = vec![
                    RuntimeError::Internal.reason().to_owned(),
                    format!("approval: {e}"),
                ];
                return decision;
            }
        };
        // A waiter-side timeout ends the approval: record it (explicit resolutions are recorded by `resolve_approval`).
        if resolution == Resolution::TimedOut
            && let Err(e) = self.audit(AuditEvent::Approval {
                decision_id: decision.decision_id.clone(),
                ts_ms: now_ms(),
                resolution: resolution.clone(),
            })
        {
            decision.verdict = Verdict::Deny;
            decision.reasons = vec![RuntimeError::Internal.reason().to_owned(), e.to_string()];
            return decision;
        }
        apply_resolution(&mut decision, &resolution);
        decision
    }

    /// An approver's answer to a pending escalation; audited with the approver's identity.
    pub fn resolve_approval(
        &self,
        decision_id: &str,
        approver: &str,
        approve: bool,
        reason: Option<String>,
    ) -> Result<Resolution, KernelError> {
        let resolution = self
            .approvals
            .resolve(decision_id, approver, approve, reason);
        if let Ok(r) = &resolution
            && let Some((_, ((agent, tool), _))) = self.ring_escalations.remove(decision_id)
            && matches!(r, Resolution::Approved { .. })
            && let Some(book) = self.rings.book()
        {
            // The current catalogue decides: an entry no longer elevatable grants nothing.
            book.elevate(&agent, &tool, now_ms());
        }
        let recorded = match &resolution {
            Ok(r) => Some(r.clone()),
            Err(ApprovalError::Expired(_)) => Some(Resolution::TimedOut),
            Err(_) => None,
        };
        if let Some(r) = recorded {
            self.audit(AuditEvent::Approval {
                decision_id: decision_id.to_owned(),
                ts_ms: now_ms(),
                resolution: r,
            })?;
        }
        Ok(resolution?)
    }

    /// Approvals waiting for an answer.
    pub fn pending_approvals(&self) -> Vec<ApprovalRequest> {
        for expired in self.approvals.expire() {
            let _ = self.audit(AuditEvent::Approval {
                decision_id: expired.id,
                ts_ms: now_ms(),
                resolution: Resolution::TimedOut,
            });
        }
        self.approvals.pending()
    }

    /// Records how an executed action went and charges its usage to budgets.
    pub fn record_outcome(&self, decision_id: &str, outcome: Outcome) -> Result<(), KernelError> {
        if let Some((_, (action, _))) = self.usage.remove(decision_id) {
            self.quotas.load().charge(&action, outcome.usage);
        }
        // Frees the ring concurrency slot.
        self.ring_permits.remove(decision_id);
        self.audit(AuditEvent::Outcome {
            decision_id: decision_id.to_owned(),
            ts_ms: now_ms(),
            status: if outcome.error.is_some() {
                "error"
            } else {
                "ok"
            }
            .to_owned(),
            error: outcome.error,
            latency_ms: u64::try_from(outcome.latency.as_millis()).unwrap_or(u64::MAX),
            output_digest: outcome.output_digest,
            tokens: outcome.usage.tokens,
            cost: outcome.usage.cost,
        })
    }

    /// Kills an agent, a session or everything; effective for the next decision on every thread. Audited.
    pub fn kill(
        &self,
        target: KillTarget,
        reason: &str,
        by: Option<&str>,
    ) -> Result<(), KernelError> {
        self.kill.kill(target.clone(), reason, by)?;
        self.audit(AuditEvent::Kill {
            ts_ms: now_ms(),
            target,
            reason: reason.to_owned(),
            by: by.map(str::to_owned),
        })
    }

    /// Lifts a kill. Audited. Returns whether one was active.
    pub fn unkill(&self, target: KillTarget, by: Option<&str>) -> Result<bool, KernelError> {
        let was = self.kill.lift(&target)?;
        self.audit(AuditEvent::Unkill {
            ts_ms: now_ms(),
            target,
            by: by.map(str::to_owned),
        })?;
        Ok(was)
    }

    /// Reloads the policy files; on error the old policy stays in force.
    /// Quota counters of unchanged quotas carry over, and so does ring state
    /// (see [`RingBook::carry_over`](warden_runtime::RingBook::carry_over)).
    pub fn reload_policy(&self) -> Result<Arc<PolicySet>, KernelError> {
        let set = self.policy.reload()?;
        let mut book = QuotaBook::new(set.quotas());
        book.carry_over(&self.quotas.load());
        self.quotas.store(Arc::new(book));
        self.rings.reload(&set, now_ms());
        self.audit(AuditEvent::PolicyLoaded {
            ts_ms: now_ms(),
            policy_hash: set.hash().to_owned(),
            names: set.names().to_vec(),
        })?;
        Ok(set)
    }

    /// Waits until every audit record handed over so far is durable.
    pub fn flush(&self) -> Result<(), KernelError> {
        match &self.audit {
            Some(sink) => sink.flush().map_err(KernelError::Audit),
            None => Ok(()),
        }
    }
}

thread_local! {
    /// A spent decision record from the audit sink, overwritten for this
    /// thread's next decision (see [`AuditSink::append_recycling`]).
    static SPARE_RECORD: std::cell::Cell<Option<Box<AuditEvent>>> = const { std::cell::Cell::new(None) };
}

/// The audit record of `decision`, reusing the allocations of `spare` (a
/// record the sink is done with) when it is a decision record.
fn decision_record(
    spare: Option<Box<AuditEvent>>,
    action: &Action,
    decision: &Decision,
    raw: bool,
    ts: u64,
) -> Box<AuditEvent> {
    let mut event = match spare {
        Some(event) if matches!(*event, AuditEvent::Decision { .. }) => event,
        _ => {
            return Box::new(AuditEvent::Decision {
                decision_id: decision.decision_id.clone(),
                ts_ms: ts,
                policy_hash: decision.policy_hash.clone(),
                point: action.point,
                agent: action.agent.clone(),
                session: action.session.clone(),
                tool: action.tool().map(str::to_owned),
                action: ActionBody {
                    args: action.args.clone(),
                    context: action.context.clone(),
                    raw,
                },
                verdict: decision.verdict,
                reasons: decision.reasons.clone(),
                rule_ids: decision.rule_ids.clone(),
                obligations: decision.obligations.clone(),
                kind: DecisionTag::Decision,
            });
        }
    };
    // Overwritten in place: every field, so nothing of the earlier decision
    // survives (tests/recycled_records.rs checks each record byte for byte).
    if let AuditEvent::Decision {
        action: body,
        agent,
        decision_id,
        obligations,
        point,
        policy_hash,
        reasons,
        rule_ids,
        session,
        tool,
        ts_ms,
        kind: _,
        verdict,
    } = &mut *event
    {
        assign_map(&mut body.args, &action.args);
        assign_map(&mut body.context, &action.context);
        body.raw = raw;
        agent.clone_from(&action.agent);
        decision_id.clone_from(&decision.decision_id);
        obligations.clone_from(&decision.obligations);
        *point = action.point;
        policy_hash.clone_from(&decision.policy_hash);
        reasons.clone_from(&decision.reasons);
        rule_ids.clone_from(&decision.rule_ids);
        session.clone_from(&action.session);
        match (tool, action.tool()) {
            (Some(t), Some(new)) => {
                t.clear();
                t.push_str(new);
            }
            (t, new) => *t = new.map(str::to_owned),
        }
        *ts_ms = ts;
        *verdict = decision.verdict;
    }
    event
}

/// `dst = src.clone()`, reusing `dst`'s allocations: in place when the keys
/// are the same and in the same order (the usual case: the same tool called
/// again), which keeps the map's index valid.
fn assign_map(
    dst: &mut serde_json::Map<String, serde_json::Value>,
    src: &serde_json::Map<String, serde_json::Value>,
) {
    if dst.len() == src.len() && dst.keys().zip(src.keys()).all(|(a, b)| a == b) {
        for (d, s) in dst.values_mut().zip(src.values()) {
            assign_value(d, s);
        }
    } else {
        dst.clone_from(src);
    }
}

fn assign_value(dst: &mut serde_json::Value, src: &serde_json::Value) {
    use serde_json::Value;
    match (&mut *dst, src) {
        (Value::String(d), Value::String(s)) => d.clone_from(s),
        (Value::Object(d), Value::Object(s)) => assign_map(d, s),
        (Value::Array(d), Value::Array(s)) if d.len() == s.len() => {
            for (d, s) in d.iter_mut().zip(s) {
                assign_value(d, s);
            }
        }
        _ => dst.clone_from(src),
    }
}

/// The decision for a ring denial the tool's catalogue entry lets the agent
/// escalate: `escalate`, with the entry's approvers.
fn escalation(set: &PolicySet, stop: Stop, elevation: Elevation) -> Decision {
    let mut d = stopped(set, stop);
    d.verdict = Verdict::Escalate;
    d.obligations.push(Obligation::Approval {
        approvers: elevation.approvers,
        timeout_ms: warden_policy::AGT_APPROVAL_TIMEOUT_MS,
    });
    d
}

impl Kernel {
    /// What the ring stage and the policy make of `action` with no runtime
    /// state, for the policy tools (`warden check`, `warden policy test`,
    /// `warden policy explain`): the agent facts from `trust` (or the
    /// default baseline), the ring check of `set`'s `rings:` block against a
    /// fresh ring book (no rate or concurrency history, no elevations), the
    /// same way [`Kernel::decide`] runs it. `Ok(facts)` when the ring stage
    /// lets the action through (evaluate the policy with them, e.g.
    /// [`PolicySet::decide_with`]); `Err(decision)` when it stops it.
    pub fn preview_ring(
        set: &PolicySet,
        action: &Action,
        trust: Option<Arc<TrustBook>>,
    ) -> Result<AgentFacts, Box<Decision>> {
        let stage = RingStage::new(set, trust);
        match stage.gate(action, true, now_ms()) {
            (RingCheck::Pass(_), facts) => Ok(facts),
            (RingCheck::Stop(stop), _) => Err(Box::new(stopped(set, stop))),
            (RingCheck::Escalate(stop, e), _) => Err(Box::new(escalation(set, stop, e))),
        }
    }

    /// [`preview_ring`](Self::preview_ring), then the policy: the decision
    /// the tools report (no kill switch, quota or audit state).
    pub fn preview(set: &PolicySet, action: &Action, trust: Option<Arc<TrustBook>>) -> Decision {
        match Kernel::preview_ring(set, action, trust) {
            Ok(facts) => set.decide_with(action, &facts),
            Err(d) => *d,
        }
    }
}

fn stopped(set: &PolicySet, stop: Stop) -> Decision {
    Decision {
        verdict: Verdict::Deny,
        reasons: vec![stop.reason, stop.detail],
        rule_ids: Vec::new(),
        obligations: Vec::new(),
        policy_hash: set.hash().to_owned(),
        decision_id: Decision::new_id(),
    }
}

fn internal_error(set: &PolicySet, detail: String) -> Decision {
    Decision::runtime_error(RuntimeError::Internal, Some(detail), set.hash().to_owned())
}

fn apply_resolution(decision: &mut Decision, resolution: &Resolution) {
    match resolution {
        Resolution::Approved { by, reason } => {
            decision.verdict = Verdict::Allow;
            decision.reasons.push(match reason {
                Some(r) => format!("approved by {by}: {r}"),
                None => format!("approved by {by}"),
            });
        }
        Resolution::Denied { by, reason } => {
            decision.verdict = Verdict::Deny;
            decision.reasons = vec![
                "approval:denied".to_owned(),
                match reason {
                    Some(r) => format!("denied by {by}: {r}"),
                    None => format!("denied by {by}"),
                },
            ];
        }
        Resolution::TimedOut => {
            decision.verdict = Verdict::Deny;
            decision.reasons = vec![
                "approval:timeout".to_owned(),
                "no approver answered before the deadline".to_owned(),
            ];
        }
    }
    decision
        .obligations
        .retain(|o| !matches!(o, Obligation::Approval { .. }));
}
