//! Approvals: an `escalate` decision becomes a pending request that an
//! approver resolves, or that times out into a deny.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A pending approval as approvers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// The id of the escalated decision.
    pub id: String,
    /// Who asked.
    pub agent: String,
    /// In which session.
    pub session: Option<String>,
    /// At which point.
    pub point: String,
    /// For which tool.
    pub tool: Option<String>,
    /// Why the policy escalated.
    pub reasons: Vec<String>,
    /// The escalating rule.
    pub rule_ids: Vec<String>,
    /// Who may approve (empty: any authenticated approver).
    pub approvers: Vec<String>,
    /// When it was opened (Unix ms).
    pub created_ms: u64,
    /// When it becomes a deny (Unix ms).
    pub deadline_ms: u64,
}

/// How an approval ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "resolution", rename_all = "snake_case")]
pub enum Resolution {
    /// An approver said yes.
    Approved {
        /// Who.
        by: String,
        /// Optional note.
        reason: Option<String>,
    },
    /// An approver said no.
    Denied {
        /// Who.
        by: String,
        /// Optional note.
        reason: Option<String>,
    },
    /// Nobody answered in time.
    TimedOut,
}

impl Resolution {
    /// Whether the action may proceed.
    pub fn approved(&self) -> bool {
        matches!(self, Resolution::Approved { .. })
    }
}

/// Why an approval could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// No such pending approval.
    #[error("no pending approval `{0}`")]
    NotFound(String),
    /// It was resolved already.
    #[error("approval `{0}` is already resolved")]
    AlreadyResolved(String),
    /// Its deadline passed: it is a deny now.
    #[error("approval `{0}` expired")]
    Expired(String),
    /// The approver is not on the list.
    #[error("`{approver}` may not resolve approval `{id}` (approvers: {allowed})")]
    NotAnApprover {
        /// The approval.
        id: String,
        /// Who tried.
        approver: String,
        /// Who may.
        allowed: String,
    },
    /// Empty approver identity.
    #[error("an approver identity is required")]
    NoApprover,
    /// An id was opened twice.
    #[error("approval `{0}` already exists")]
    Duplicate(String),
    /// Internal lock poisoned.
    #[error("approval state is unavailable")]
    Poisoned,
}

/// Delivers new approval requests to approvers (in-process channel, HTTP, dashboard...).
pub trait ApprovalBackend: Send + Sync {
    /// A request is pending. Delivery failures leave it pending, so it times out into a deny.
    fn submit(&self, request: &ApprovalRequest);
}

/// Delivers requests over a bounded in-process channel.
#[derive(Debug)]
pub struct ChannelBackend {
    tx: SyncSender<ApprovalRequest>,
}

impl ChannelBackend {
    /// A backend and the receiving end approvers read from.
    pub fn new(capacity: usize) -> (Self, Receiver<ApprovalRequest>) {
        let (tx, rx) = sync_channel(capacity);
        (ChannelBackend { tx }, rx)
    }
}

impl ApprovalBackend for ChannelBackend {
    fn submit(&self, request: &ApprovalRequest) {
        // Full or closed: nobody will see it; it stays pending and times out (deny).
        let _: Result<(), TrySendError<ApprovalRequest>> = self.tx.try_send(request.clone());
    }
}

struct Slot {
    request: ApprovalRequest,
    deadline: Instant,
    state: Mutex<Option<Resolution>>,
    done: Condvar,
}

/// The book of pending approvals.
pub struct Approvals {
    pending: Mutex<HashMap<String, Arc<Slot>>>,
    backend: Option<Arc<dyn ApprovalBackend>>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals").finish_non_exhaustive()
    }
}

impl Approvals {
    /// A book delivering requests through `backend` (none: requests are only listed by [`Approvals::pending`]).
    pub fn new(backend: Option<Arc<dyn ApprovalBackend>>) -> Self {
        Approvals {
            pending: Mutex::new(HashMap::new()),
            backend,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, HashMap<String, Arc<Slot>>>, ApprovalError> {
        self.pending.lock().map_err(|_| ApprovalError::Poisoned)
    }

    /// Opens a request that becomes a deny after `timeout`.
    pub fn open(&self, request: ApprovalRequest, timeout: Duration) -> Result<(), ApprovalError> {
        let slot = Arc::new(Slot {
            deadline: Instant::now() + timeout,
            request,
            state: Mutex::new(None),
            done: Condvar::new(),
        });
        {
            let mut map = self.lock()?;
            if map.contains_key(&slot.request.id) {
                return Err(ApprovalError::Duplicate(slot.request.id.clone()));
            }
            map.insert(slot.request.id.clone(), Arc::clone(&slot));
        }
        if let Some(b) = &self.backend {
            b.submit(&slot.request);
        }
        Ok(())
    }

    fn slot(&self, id: &str) -> Result<Arc<Slot>, ApprovalError> {
        self.lock()?
            .get(id)
            .cloned()
            .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))
    }

    fn finish(&self, slot: &Slot, resolution: Resolution) -> Result<Resolution, ApprovalError> {
        let mut state = slot.state.lock().map_err(|_| ApprovalError::Poisoned)?;
        if state.is_some() {
            return Err(ApprovalError::AlreadyResolved(slot.request.id.clone()));
        }
        *state = Some(resolution.clone());
        slot.done.notify_all();
        // The slot stays until its waiter collected the answer or its deadline
        // passed: an answer may arrive before anyone waits for it.
        Ok(resolution)
    }

    /// An approver's answer.
    pub fn resolve(
        &self,
        id: &str,
        approver: &str,
        approve: bool,
        reason: Option<String>,
    ) -> Result<Resolution, ApprovalError> {
        if approver.trim().is_empty() {
            return Err(ApprovalError::NoApprover);
        }
        let slot = self.slot(id)?;
        let allowed = &slot.request.approvers;
        if !allowed.is_empty() && !allowed.iter().any(|a| a == approver) {
            return Err(ApprovalError::NotAnApprover {
                id: id.to_owned(),
                approver: approver.to_owned(),
                allowed: allowed.join(", "),
            });
        }
        if Instant::now() >= slot.deadline {
            let _ = self.finish(&slot, Resolution::TimedOut);
            return Err(ApprovalError::Expired(id.to_owned()));
        }
        let by = approver.to_owned();
        self.finish(
            &slot,
            if approve {
                Resolution::Approved { by, reason }
            } else {
                Resolution::Denied { by, reason }
            },
        )
    }

    /// Blocks until the approval is resolved, its deadline passes, or `timeout`
    /// elapses; the last two end it as [`Resolution::TimedOut`].
    pub fn wait(&self, id: &str, timeout: Duration) -> Result<Resolution, ApprovalError> {
        let slot = self.slot(id)?;
        let until = slot.deadline.min(Instant::now() + timeout);
        let mut state = slot.state.lock().map_err(|_| ApprovalError::Poisoned)?;
        loop {
            if let Some(r) = state.as_ref() {
                let r = r.clone();
                drop(state);
                self.lock()?.remove(id);
                return Ok(r);
            }
            let now = Instant::now();
            if now >= until {
                break;
            }
            state = slot
                .done
                .wait_timeout(state, until - now)
                .map_err(|_| ApprovalError::Poisoned)?
                .0;
        }
        drop(state);
        let ended = self.finish(&slot, Resolution::TimedOut);
        self.lock()?.remove(id);
        match ended {
            Ok(r) => Ok(r),
            // Resolved between the last check and now: report that answer.
            Err(ApprovalError::AlreadyResolved(_)) => slot
                .state
                .lock()
                .map_err(|_| ApprovalError::Poisoned)?
                .clone()
                .ok_or(ApprovalError::Poisoned),
            Err(e) => Err(e),
        }
    }

    /// Requests still waiting for an answer.
    pub fn pending(&self) -> Vec<ApprovalRequest> {
        let now = Instant::now();
        self.lock()
            .map(|m| {
                m.values()
                    .filter(|s| {
                        s.deadline > now && s.state.lock().map(|st| st.is_none()).unwrap_or(false)
                    })
                    .map(|s| s.request.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends every request past its deadline as timed out and forgets it;
    /// returns those nobody had answered (for the audit log).
    pub fn expire(&self) -> Vec<ApprovalRequest> {
        let now = Instant::now();
        let expired: Vec<Arc<Slot>> = match self.lock() {
            Ok(mut m) => {
                let ids: Vec<String> = m
                    .iter()
                    .filter(|(_, s)| s.deadline <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                ids.iter().filter_map(|id| m.remove(id)).collect()
            }
            Err(_) => Vec::new(),
        };
        expired
            .into_iter()
            .filter(|s| self.finish(s, Resolution::TimedOut).is_ok())
            .map(|s| s.request.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn req(id: &str, approvers: &[&str]) -> ApprovalRequest {
        ApprovalRequest {
            id: id.into(),
            agent: "a".into(),
            session: None,
            point: "pre_tool_call".into(),
            tool: Some("pay".into()),
            reasons: vec!["big".into()],
            rule_ids: vec!["r".into()],
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            created_ms: 0,
            deadline_ms: 0,
        }
    }

    #[test]
    fn approve_through_channel_while_waiting() {
        let (backend, rx) = ChannelBackend::new(8);
        let book = Arc::new(Approvals::new(Some(Arc::new(backend))));
        book.open(req("d1", &["alice"]), Duration::from_secs(10))
            .unwrap();
        let b2 = Arc::clone(&book);
        let approver = std::thread::spawn(move || {
            let r = rx.recv().unwrap();
            assert_eq!(r.id, "d1");
            assert!(matches!(
                b2.resolve("d1", "mallory", true, None),
                Err(ApprovalError::NotAnApprover { .. })
            ));
            b2.resolve("d1", "alice", true, Some("ok".into())).unwrap();
        });
        let r = book.wait("d1", Duration::from_secs(10)).unwrap();
        approver.join().unwrap();
        assert_eq!(
            r,
            Resolution::Approved {
                by: "alice".into(),
                reason: Some("ok".into())
            }
        );
        assert!(matches!(
            book.resolve("d1", "alice", false, None),
            Err(ApprovalError::NotFound(_))
        ));
    }

    #[test]
    fn timeouts_deny() {
        let book = Approvals::new(None);
        book.open(req("d2", &[]), Duration::from_millis(30))
            .unwrap();
        assert_eq!(book.pending().len(), 1);
        assert_eq!(
            book.wait("d2", Duration::from_secs(5)).unwrap(),
            Resolution::TimedOut
        );
        assert!(book.resolve("d2", "bob", true, None).is_err());
        book.open(req("d3", &[]), Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(
            book.resolve("d3", "bob", true, None),
            Err(ApprovalError::Expired(_))
        ));
        book.open(req("d4", &[]), Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(book.expire().len(), 1);
        assert!(book.pending().is_empty());
    }

    #[test]
    fn caller_timeout_ends_it_and_deny_is_final() {
        let book = Approvals::new(None);
        book.open(req("d5", &[]), Duration::from_secs(60)).unwrap();
        assert_eq!(
            book.wait("d5", Duration::from_millis(10)).unwrap(),
            Resolution::TimedOut
        );
        book.open(req("d6", &["x"]), Duration::from_secs(60))
            .unwrap();
        assert!(matches!(
            book.open(req("d6", &[]), Duration::from_secs(1)),
            Err(ApprovalError::Duplicate(_))
        ));
        assert!(matches!(
            book.resolve("d6", "", true, None),
            Err(ApprovalError::NoApprover)
        ));
        let r = book.resolve("d6", "x", false, Some("no".into())).unwrap();
        assert!(!r.approved());
    }
}
