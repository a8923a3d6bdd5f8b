//! The gate stages that run before the policy: one trait, one small type each.

use arc_swap::ArcSwap;
use std::sync::Arc;
use warden_core::Action;
use warden_runtime::{KillCheck, KillSwitch, QuotaBook};

/// Where a stage sits in the pipeline (DESIGN.md §3). Stages run in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StageOrder {
    /// Kill switch and quarantine.
    KillSwitch = 10,
    /// Identity: envelope/credential verification, delegation scope.
    Identity = 20,
    /// Execution ring of the agent vs the tool.
    Ring = 30,
    /// Rate limits and budgets.
    Quota = 40,
}

/// A stage stopping an action: always a deny, with a reserved-style reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Machine-readable reason, e.g. `killed:agent`, `quota:search-rate`.
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
}

/// A check that runs before the policy and can only stop an action.
pub trait Stage: Send + Sync {
    /// Short name for explain output and metrics.
    fn name(&self) -> &'static str;
    /// Position in the pipeline.
    fn order(&self) -> StageOrder;
    /// `None` lets the action through to the next stage.
    fn check(&self, action: &Action) -> Option<Stop>;
}

/// Stage 1: the kill switch.
#[derive(Debug, Clone)]
pub struct KillStage(pub KillSwitch);

impl Stage for KillStage {
    fn name(&self) -> &'static str {
        "kill_switch"
    }

    fn order(&self) -> StageOrder {
        StageOrder::KillSwitch
    }

    fn check(&self, action: &Action) -> Option<Stop> {
        match self.0.check(&action.agent, action.session.as_deref()) {
            KillCheck::Clear => None,
            KillCheck::Killed(target, kill) => Some(Stop {
                reason: match target {
                    warden_runtime::KillTarget::All => "killed:all".to_owned(),
                    warden_runtime::KillTarget::Agent(_) => "killed:agent".to_owned(),
                    warden_runtime::KillTarget::Session(_) => "killed:session".to_owned(),
                },
                detail: format!("{target} was killed: {}", kill.reason),
            }),
            KillCheck::Unknown(why) => Some(Stop {
                reason: warden_core::RuntimeError::Internal.reason().to_owned(),
                detail: why,
            }),
        }
    }
}

/// Stage 4: declared quotas. Shares the book with the kernel so a policy
/// reload swaps it for this stage too.
#[derive(Debug, Clone)]
pub struct QuotaStage(pub Arc<ArcSwap<QuotaBook>>);

impl Stage for QuotaStage {
    fn name(&self) -> &'static str {
        "quota"
    }

    fn order(&self) -> StageOrder {
        StageOrder::Quota
    }

    fn check(&self, action: &Action) -> Option<Stop> {
        let book = self.0.load();
        if book.is_empty() {
            return None;
        }
        book.check(action).err().map(|d| Stop {
            reason: d.reason(),
            detail: d.detail,
        })
    }
}
