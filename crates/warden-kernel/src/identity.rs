//! Stage 2: identity. Every action must carry a credential the
//! [`Gate`] accepts — a session credential (a lookup) or a signed invocation
//! envelope — naming the action's agent and covering its point and tool.

use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use warden_core::{Action, Verdict};
use warden_identity::{Gate, IdentityError, Request, Signal, TrustBook, now_secs};
use warden_runtime::Resolution;

use crate::record::{AuditEvent, AuditSink};
use crate::stage::{Stage, StageOrder, Stop};

/// The identity stage: denies with `identity:<why>` (e.g.
/// `identity:bad_signature`, `identity:replayed`, `identity:expired`,
/// `identity:audience`, `identity:scope`, `identity:revoked`).
#[derive(Debug, Clone)]
pub struct IdentityStage {
    gate: Arc<Gate>,
}

impl IdentityStage {
    /// A stage consulting `gate` (share the gate with the handshake server
    /// so sessions it opens are accepted here).
    #[must_use]
    pub fn new(gate: Arc<Gate>) -> Self {
        IdentityStage { gate }
    }

    /// The gate.
    #[must_use]
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }
}

impl Stage for IdentityStage {
    fn name(&self) -> &'static str {
        "identity"
    }

    fn order(&self) -> StageOrder {
        StageOrder::Identity
    }

    fn check(&self, action: &Action) -> Option<Stop> {
        let result = match action.credential.as_deref() {
            None => Err(IdentityError::Missing),
            Some(credential) => self.gate.authenticate(
                credential,
                &Request {
                    agent: &action.agent,
                    point: action.point,
                    tool: action.tool(),
                },
                now_secs(),
            ),
        };
        result.err().map(|e| Stop {
            reason: e.reason().to_owned(),
            detail: e.to_string(),
        })
    }
}

/// Decisions remembered while their outcome or approval may still come.
const MAX_PENDING: usize = 65_536;
/// Age after which a decision's outcome or approval is no longer expected.
const PENDING_TTL_MS: u64 = 3_600_000;

/// Feeds trust signals from the kernel's audit stream, then passes every
/// event on to the wrapped sink (if any): a deny decided by a policy rule is
/// a violation; an outcome is a success or an error; an approval granted or
/// denied is a signal too. Denials by the gate stages (identity, kill,
/// quota) are not held against the claimed agent: anyone can send a forged
/// request in another agent's name. Penalties propagate to the agent's
/// delegators as last seen by the gate.
///
/// Signals are applied synchronously, in the order the kernel hands events
/// over, to the [`TrustBook`]'s in-memory view (one shard of a sharded map,
/// no global lock); the book persists them later ([`TrustBook::save`], also
/// run by [`AuditSink::flush`]). A signal the book refuses (its store has
/// been unreachable for [`warden_identity::trust::MAX_QUEUED_SIGNALS`]
/// signals) fails the event like a failing audit log would: the decision is
/// denied, the outcome report errors.
///
/// To attribute outcomes and approvals (whose records name only the
/// decision), each decision that proceeds is remembered by its id (the
/// UUID's 128 bits) with an interned agent name: a sharded map, so nothing
/// allocates per decision once the agent was seen. At most 65,536 decisions
/// are remembered, each for an hour; when the map is full, decisions older
/// than that are evicted and, if it is still full, the new decision is not
/// remembered. Either way its outcome will not be scored; [`TrustFeed::unscored`]
/// counts them.
pub struct TrustFeed {
    inner: Option<Arc<dyn AuditSink>>,
    book: Arc<TrustBook>,
    gate: Option<Arc<Gate>>,
    /// Decision id → (agent, decided at, Unix ms).
    pending: DashMap<u128, (Arc<str>, u64)>,
    /// Agent names referenced by `pending`.
    agents: DashMap<Arc<str>, ()>,
    /// Entries in `pending` (its `len` would lock every shard).
    held: AtomicUsize,
    /// When `pending` was last swept, Unix ms.
    swept_ms: AtomicU64,
    /// Decisions whose outcome can no longer be scored.
    unscored: AtomicU64,
}

impl std::fmt::Debug for TrustFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustFeed").finish_non_exhaustive()
    }
}

impl TrustFeed {
    /// Feeds `book`, forwarding events to `inner`; `gate` supplies delegators.
    #[must_use]
    pub fn new(
        book: Arc<TrustBook>,
        inner: Option<Arc<dyn AuditSink>>,
        gate: Option<Arc<Gate>>,
    ) -> Self {
        TrustFeed {
            inner,
            book,
            gate,
            pending: DashMap::new(),
            agents: DashMap::new(),
            held: AtomicUsize::new(0),
            swept_ms: AtomicU64::new(0),
            unscored: AtomicU64::new(0),
        }
    }

    /// The book it feeds.
    #[must_use]
    pub fn book(&self) -> &Arc<TrustBook> {
        &self.book
    }

    /// Decisions that proceeded but whose outcome or approval can no longer
    /// be scored (evicted after an hour, or not remembered because 65,536
    /// newer decisions were awaiting theirs).
    #[must_use]
    pub fn unscored(&self) -> u64 {
        self.unscored.load(Ordering::Relaxed)
    }

    fn signal(&self, agent: &str, signal: Signal, ts_ms: u64) -> Result<(), String> {
        let now = ts_ms / 1000;
        let penalty = self.book.config().weight(signal) < 0.0;
        let recorded = match (&self.gate, penalty) {
            (Some(gate), true) => {
                let delegators = gate.delegators(agent);
                let refs: Vec<&str> = delegators.iter().map(String::as_str).collect();
                self.book.record(agent, signal, &refs, now)
            }
            _ => self.book.record(agent, signal, &[], now),
        };
        recorded.map(|_| ()).map_err(|e| format!("trust: {e}"))
    }

    fn intern(&self, agent: &str) -> Arc<str> {
        if let Some(known) = self.agents.get(agent) {
            return Arc::clone(known.key());
        }
        let name: Arc<str> = Arc::from(agent);
        Arc::clone(self.agents.entry(name).or_insert(()).key())
    }

    fn remember(&self, decision_id: &str, agent: &str, ts_ms: u64) {
        let Some(key) = uuid_bits(decision_id) else {
            return;
        };
        if self.held.load(Ordering::Relaxed) >= MAX_PENDING {
            self.sweep(ts_ms);
            if self.held.load(Ordering::Relaxed) >= MAX_PENDING {
                self.unscored.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let agent = self.intern(agent);
        if self.pending.insert(key, (agent, ts_ms)).is_none() {
            self.held.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Evicts decisions older than the TTL, at most once a second (a full
    /// map of fresh decisions must not turn every decision into a scan).
    fn sweep(&self, now_ms: u64) {
        let last = self.swept_ms.load(Ordering::Relaxed);
        if now_ms < last.saturating_add(1000)
            || self
                .swept_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let cutoff = now_ms.saturating_sub(PENDING_TTL_MS);
        self.pending.retain(|_, (_, at)| {
            let keep = *at > cutoff;
            if !keep {
                self.held.fetch_sub(1, Ordering::Relaxed);
                self.unscored.fetch_add(1, Ordering::Relaxed);
            }
            keep
        });
        self.agents.retain(|name, ()| Arc::strong_count(name) > 1);
    }

    /// The agent of a remembered decision; `done` forgets the decision.
    fn agent_of(&self, decision_id: &str, done: bool) -> Option<Arc<str>> {
        let key = uuid_bits(decision_id)?;
        if !done {
            return self.pending.get(&key).map(|e| Arc::clone(&e.0));
        }
        let (_, (agent, _)) = self.pending.remove(&key)?;
        self.held.fetch_sub(1, Ordering::Relaxed);
        // Forget the name once no other decision refers to it (the map's
        // copy and this one).
        self.agents
            .remove_if(&*agent, |name, ()| Arc::strong_count(name) <= 2);
        Some(agent)
    }

    fn observe(&self, event: &AuditEvent) -> Result<(), String> {
        match event {
            AuditEvent::Decision {
                decision_id,
                ts_ms,
                agent,
                verdict,
                rule_ids,
                ..
            } => {
                if *verdict != Verdict::Deny {
                    self.remember(decision_id, agent, *ts_ms);
                    Ok(())
                } else if !rule_ids.is_empty() {
                    self.signal(agent, Signal::PolicyViolation, *ts_ms)
                } else {
                    Ok(())
                }
            }
            AuditEvent::Outcome {
                decision_id,
                ts_ms,
                error,
                ..
            } => match self.agent_of(decision_id, true) {
                Some(agent) => {
                    let s = if error.is_some() {
                        Signal::Error
                    } else {
                        Signal::Success
                    };
                    self.signal(&agent, s, *ts_ms)
                }
                None => Ok(()),
            },
            AuditEvent::Approval {
                decision_id,
                ts_ms,
                resolution,
            } => {
                let (signal, done) = match resolution {
                    // An approved action runs: its outcome is still to come.
                    Resolution::Approved { .. } => (Signal::ApprovalGranted, false),
                    Resolution::Denied { .. } => (Signal::ApprovalDenied, true),
                    _ => {
                        self.agent_of(decision_id, true);
                        return Ok(());
                    }
                };
                match self.agent_of(decision_id, done) {
                    Some(agent) => self.signal(&agent, signal, *ts_ms),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

/// The 128 bits of a UUID in its hyphenated (or plain) hex form; `None` for
/// anything else (no decision id this kernel issued).
fn uuid_bits(id: &str) -> Option<u128> {
    let mut bits: u128 = 0;
    let mut digits = 0;
    for b in id.bytes() {
        if b == b'-' {
            continue;
        }
        let d = char::from(b).to_digit(16)?;
        digits += 1;
        if digits > 32 {
            return None;
        }
        bits = (bits << 4) | u128::from(d);
    }
    (digits == 32).then_some(bits)
}

impl AuditSink for TrustFeed {
    fn append(&self, event: AuditEvent) -> Result<(), String> {
        // A failing trust book must fail the decision like a failing log would.
        self.observe(&event)?;
        match &self.inner {
            Some(sink) => sink.append(event),
            None => Ok(()),
        }
    }

    fn append_recycling(
        &self,
        event: Box<AuditEvent>,
        spare: &mut Option<Box<AuditEvent>>,
    ) -> Result<(), String> {
        self.observe(&event)?;
        match &self.inner {
            Some(sink) => sink.append_recycling(event, spare),
            // Nothing keeps the record: it is the caller's next one.
            None => {
                spare.get_or_insert(event);
                Ok(())
            }
        }
    }

    fn flush(&self) -> Result<(), String> {
        if let Some(sink) = &self.inner {
            sink.flush()?;
        }
        self.book.save().map_err(|e| format!("trust: {e}"))
    }

    fn backlog(&self) -> Option<u64> {
        self.inner.as_ref().and_then(|s| s.backlog())
    }
}
