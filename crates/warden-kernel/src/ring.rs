//! Stage 3: execution rings. The agent's ring (from its grant and current
//! trust tier) must be at least as privileged as the tool's; per-ring rate and
//! concurrency limits apply. Runs only when the policy has a `rings:` block.

use crate::stage::{StageOrder, Stop};
use arc_swap::ArcSwapOption;
use std::sync::Arc;
use warden_core::{Action, Point};
use warden_identity::{Tier, TrustBook, TrustConfig, now_secs};
use warden_policy::{Elevation, PolicySet};
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
/// swaps it; reads tiers from the identity stage's [`TrustBook`] when given
/// one, else every agent is at the tier of the default trust baseline
/// (`TrustConfig::default().baseline`, i.e. `probationary`: ring 3 by default).
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

    /// Swaps in the ring book of a reloaded policy (`None` when it has no `rings:`).
    pub(crate) fn reload(&self, set: &PolicySet) {
        self.book
            .store(set.rings().map(|r| Arc::new(RingBook::new(r))));
    }

    /// The ring book in force, if the policy has a `rings:` block.
    pub fn book(&self) -> Option<Arc<RingBook>> {
        self.book.load_full()
    }

    fn tier(&self, agent: &str) -> Result<Tier, String> {
        match &self.trust {
            Some(t) => t.tier(agent, now_secs()).map_err(|e| e.to_string()),
            None => Ok(Tier::of(TrustConfig::default().baseline)),
        }
    }

    pub(crate) fn check(&self, action: &Action, now_ms: u64) -> RingCheck {
        let guard = self.book.load();
        let Some(book) = guard.as_ref() else {
            return RingCheck::Pass(None);
        };
        // Rings govern the call itself: later points of the same call
        // (`post_tool_call`) must not count it twice or take another slot.
        if action.point != Point::PreToolCall {
            return RingCheck::Pass(None);
        }
        let Some(tool) = action.tool() else {
            return RingCheck::Pass(None);
        };
        let tier = match self.tier(&action.agent) {
            Ok(t) => t,
            Err(why) => {
                // Unknown trust: fail closed.
                return RingCheck::Stop(Stop {
                    reason: warden_core::RuntimeError::Internal.reason().to_owned(),
                    detail: format!("ring: trust score unavailable: {why}"),
                });
            }
        };
        match book.check(&action.agent, tier.as_str(), tool, now_ms) {
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
        }
    }
}
