//! Stage 2: identity. Every action must carry a credential the
//! [`Gate`] accepts — a session credential (a lookup) or a signed invocation
//! envelope — naming the action's agent and covering its point and tool.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use warden_core::{Action, Verdict};
use warden_identity::{Gate, IdentityError, Request, Signal, TrustBook, now_secs};
use warden_runtime::Resolution;

use crate::record::{AuditEvent, AuditSink};
use crate::stage::{Stage, StageOrder, Stop};

/// Decisions remembered while their outcome or approval may still come.
const MAX_PENDING: usize = 65_536;

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

/// Feeds trust signals from the kernel's audit stream, then passes every
/// event on to the wrapped sink (if any): a deny decided by a policy rule is
/// a violation; an outcome is a success or an error; an approval granted or
/// denied is a signal too. Denials by the gate stages (identity, kill,
/// quota) are not held against the claimed agent: anyone can send a forged
/// request in another agent's name. Penalties propagate to the agent's
/// delegators as last seen by the gate.
pub struct TrustFeed {
    inner: Option<Arc<dyn AuditSink>>,
    book: Arc<TrustBook>,
    gate: Option<Arc<Gate>>,
    pending: Mutex<(HashMap<String, String>, VecDeque<String>)>,
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
            pending: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    fn signal(&self, agent: &str, signal: Signal, ts_ms: u64) -> Result<(), String> {
        let delegators = self.gate.as_ref().map(|g| g.delegators(agent));
        let refs: Vec<&str> = delegators
            .iter()
            .flat_map(|d| d.iter().map(String::as_str))
            .collect();
        self.book
            .record(agent, signal, &refs, ts_ms / 1000)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn observe(&self, event: &AuditEvent) -> Result<(), String> {
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| "trust feed lock poisoned".to_owned())?;
        let (agents, order) = &mut *pending;
        match event {
            AuditEvent::Decision {
                decision_id,
                ts_ms,
                agent,
                verdict,
                rule_ids,
                ..
            } => {
                if *verdict == Verdict::Deny && !rule_ids.is_empty() {
                    drop(pending);
                    return self.signal(agent, Signal::PolicyViolation, *ts_ms);
                }
                if *verdict != Verdict::Deny {
                    if order.len() >= MAX_PENDING
                        && let Some(old) = order.pop_front()
                    {
                        agents.remove(&old);
                    }
                    agents.insert(decision_id.clone(), agent.clone());
                    order.push_back(decision_id.clone());
                }
                Ok(())
            }
            AuditEvent::Outcome {
                decision_id,
                ts_ms,
                error,
                ..
            } => match agents.remove(decision_id) {
                Some(agent) => {
                    drop(pending);
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
                let signal = match resolution {
                    Resolution::Approved { .. } => Signal::ApprovalGranted,
                    Resolution::Denied { .. } => Signal::ApprovalDenied,
                    _ => return Ok(()),
                };
                match agents.get(decision_id).cloned() {
                    Some(agent) => {
                        drop(pending);
                        self.signal(&agent, signal, *ts_ms)
                    }
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
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

    fn flush(&self) -> Result<(), String> {
        if let Some(sink) = &self.inner {
            sink.flush()?;
        }
        self.book.save().map_err(|e| e.to_string())
    }
}
