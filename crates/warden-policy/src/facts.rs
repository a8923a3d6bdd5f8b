//! What the kernel knows about the calling agent at decision time, handed to
//! policy conditions as `agent.trust`, `agent.tier` and `agent.ring`.
//!
//! The facts are computed by the kernel from its trust book and ring stage,
//! never read from the action: a caller must not be able to claim its own
//! trust. They are a small `Copy` value passed by reference, so handing them
//! to the policy costs nothing on the decision path.

use crate::rings::{DEFAULT_TIER_RINGS, Ring, TIER_NAMES};

/// The keys `agent` has in conditions.
pub const AGENT_KEYS: [&str; 4] = ["id", "trust", "tier", "ring"];

/// The trust score of an agent the trust book has never seen (the default
/// `TrustConfig::baseline` of `warden-identity`; a kernel test holds the two together).
pub const BASELINE_TRUST: u16 = 400;

/// Highest trust score.
pub const MAX_TRUST: u16 = 1000;

/// The agent facts of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentFacts {
    trust: u16,
    /// Index into [`TIER_NAMES`].
    tier: u8,
    ring: Ring,
}

impl AgentFacts {
    /// The facts of an agent the trust book has never seen, with no
    /// `rings:` block: trust 400, tier `probationary`, ring 3 (the default
    /// tier mapping's ring for `probationary`).
    pub const BASELINE: AgentFacts = AgentFacts {
        trust: BASELINE_TRUST,
        tier: 1,
        ring: DEFAULT_TIER_RINGS[1],
    };

    /// Facts from a trust score (0–1000), a tier name as `warden-identity`
    /// spells it and a ring. `None` when the score is out of range or the
    /// tier unknown.
    pub fn new(trust: u16, tier: &str, ring: Ring) -> Option<AgentFacts> {
        let tier = u8::try_from(TIER_NAMES.iter().position(|t| *t == tier)?).ok()?;
        (trust <= MAX_TRUST).then_some(AgentFacts { trust, tier, ring })
    }

    /// The same facts in another ring.
    #[must_use]
    pub fn with_ring(self, ring: Ring) -> AgentFacts {
        AgentFacts { ring, ..self }
    }

    /// `agent.trust`: the decayed score at decision time, rounded down (so
    /// `agent.trust >= 700` holds exactly when the tier is `trusted` or above).
    pub fn trust(&self) -> u16 {
        self.trust
    }

    /// `agent.tier`: `untrusted`, `probationary`, `standard`, `trusted` or `verified`.
    pub fn tier(&self) -> &'static str {
        TIER_NAMES
            .get(usize::from(self.tier))
            .copied()
            .unwrap_or(TIER_NAMES[0])
    }

    /// `agent.ring`: the agent's effective ring for this action (0–3).
    pub fn ring(&self) -> Ring {
        self.ring
    }
}

impl Default for AgentFacts {
    fn default() -> Self {
        AgentFacts::BASELINE
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn construction_is_checked() {
        let f = AgentFacts::new(820, "trusted", Ring::new(1).unwrap()).unwrap();
        assert_eq!((f.trust(), f.tier(), f.ring().get()), (820, "trusted", 1));
        assert!(AgentFacts::new(1001, "trusted", Ring::ZERO).is_none());
        assert!(AgentFacts::new(1, "Trusted", Ring::ZERO).is_none());
        assert_eq!(AgentFacts::default().tier(), "probationary");
        assert_eq!(AgentFacts::BASELINE.ring(), Ring::LOWEST);
    }
}
