//! Stage 3: execution rings, and the agent facts of a decision. The agent's
//! ring (from its grant and current trust tier) must be at least as
//! privileged as the tool's; per-ring rate and concurrency limits apply. The
//! ring check runs only when the policy has a `rings:` block; the facts
//! (`agent.trust`, `agent.tier`, `agent.ring`) are computed in the same pass
//! — one trust lookup per decision — when the ring check or the policy needs them.

use crate::stage::{StageOrder, Stop};
use arc_swap::ArcSwapOption;
use std::sync::Arc;
use warden_core::{Action, Point, RuntimeError};
use warden_identity::{Tier, TrustBook, TrustConfig, now_secs};
use warden_policy::{AgentFacts, Elevation, MAX_TRUST, PolicySet, default_tier_ring};
use warden_runtime::{RingBook, RingDenial, RingPermit};

/// What the ring stage made of an action.
#[derive(Debug)]
pub(crate) enum RingCheck {
    /// Through; the permit (if the ring limits concurrency) is held until the outcome.
    Pass(Option<RingPermit>),
    /// Denied.
    Stop(Stop),
    /// Denied, but the tool's catalogue entry allows escalating to an elevation.
    Escalate(Stop, Elevation),
}

/// The ring stage: shares the ring book with the kernel so a policy reload
/// swaps it; reads trust scores from the identity stage's [`TrustBook`] when
/// given one, else every agent is at the default trust baseline
/// (`TrustConfig::default().baseline`: 400, `probationary`, ring 3 by default).
#[derive(Debug, Clone)]
pub struct RingStage {
    book: Arc<ArcSwapOption<RingBook>>,
    trust: Option<Arc<TrustBook>>,
}

impl RingStage {
    pub(crate) fn new(set: &PolicySet, trust: Option<Arc<TrustBook>>) -> Self {
        RingStage {
            book: Arc::new(ArcSwapOption::new(
                set.rings().map(|r| Arc::new(RingBook::new(r))),
            )),
            trust,
        }
    }

    /// Position in the pipeline.
    pub fn order(&self) -> StageOrder {
        StageOrder::Ring
    }

    /// Swaps in the ring book of a reloaded policy (`None` when it has no
    /// `rings:`), carrying over the old book's counters, in-flight slots and
    /// unexpired elevations ([`RingBook::carry_over`]).
    pub(crate) fn reload(&self, set: &PolicySet, now_ms: u64) {
        let old = self.book.load_full();
        self.book.store(set.rings().map(|r| {
            let mut book = RingBook::new(r);
            if let Some(old) = &old {
                book.carry_over(old, now_ms);
            }
            Arc::new(book)
        }));
    }

    /// The ring book in force, if the policy has a `rings:` block.
    pub fn book(&self) -> Option<Arc<RingBook>> {
        self.book.load_full()
    }

    fn score(&self, agent: &str) -> Result<f64, String> {
        match &self.trust {
            Some(t) => t.score(agent, now_secs()).map_err(|e| e.to_string()),
            None => Ok(TrustConfig::default().baseline),
        }
    }

    /// Runs the ring check for `action` and computes its agent facts. The
    /// facts are computed only when `need_facts` or the ring check runs
    /// (else they are [`AgentFacts::BASELINE`], which nothing reads).
    pub(crate) fn gate(
        &self,
        action: &Action,
        need_facts: bool,
        now_ms: u64,
    ) -> (RingCheck, AgentFacts) {
        let guard = self.book.load();
        let book = guard.as_deref();
        // Rings govern the call itself: later points of the same call
        // (`post_tool_call`) must not count it twice or take another slot.
        let checked_tool = match (book, action.tool()) {
            (Some(_), Some(tool)) if action.point == Point::PreToolCall => Some(tool),
            _ => None,
        };
        if checked_tool.is_none() && !need_facts {
            return (RingCheck::Pass(None), AgentFacts::BASELINE);
        }
        let facts = match self.score(&action.agent) {
            Ok(score) => facts_of(score, book, action, now_ms),
            Err(why) => Err(format!("trust score unavailable: {why}")),
        };
        let facts = match facts {
            Ok(f) => f,
            // Unknown trust: fail closed.
            Err(why) => {
                return (
                    RingCheck::Stop(Stop {
                        reason: RuntimeError::Internal.reason().to_owned(),
                        detail: format!("ring: {why}"),
                    }),
                    AgentFacts::BASELINE,
                );
            }
        };
        let (Some(book), Some(tool)) = (book, checked_tool) else {
            return (RingCheck::Pass(None), facts);
        };
        let check = match book.admit(&action.agent, facts.ring(), tool) {
            // Only slot-holding permits are kept until the outcome.
            Ok(p) => RingCheck::Pass(p.holds_slot().then_some(p)),
            Err(d) => {
                let stop = Stop {
                    reason: d.reason().to_owned(),
                    detail: d.detail(),
                };
                match d {
                    RingDenial::Insufficient {
                        elevate: Some(e), ..
                    } => RingCheck::Escalate(stop, e),
                    _ => RingCheck::Stop(stop),
                }
            }
        };
        (check, facts)
    }
}

/// The facts of `action`'s agent at trust `score`: the score rounded down
/// (so `agent.trust >= 700` agrees with the tier thresholds), its tier, and
/// its ring — the effective ring for the action's tool (elevations included)
/// under a `rings:` block, its base ring (grant or tier) for an action
/// without a tool, or the default tier mapping without a `rings:` block.
fn facts_of(
    score: f64,
    book: Option<&RingBook>,
    action: &Action,
    now_ms: u64,
) -> Result<AgentFacts, String> {
    if !score.is_finite() {
        return Err(format!("trust score {score} is not a number"));
    }
    let tier = Tier::of(score).as_str();
    let ring = match (book, action.tool()) {
        (Some(b), Some(tool)) => b.effective_ring(&action.agent, tier, tool, now_ms),
        (Some(b), None) => b.agent_ring(&action.agent, tier),
        (None, _) => default_tier_ring(tier),
    };
    // In range by the clamp; the cast only drops the fraction.
    let trust = score.floor().clamp(0.0, f64::from(MAX_TRUST)) as u16;
    AgentFacts::new(trust, tier, ring).ok_or_else(|| format!("trust score {score} out of range"))
}
