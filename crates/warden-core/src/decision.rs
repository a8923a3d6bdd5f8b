//! The answer side of a decision.

use crate::obligation::Obligation;
use crate::reason::RuntimeError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What Warden says about an action.
///
/// The derived order is the tie-break order of the combining algorithm:
/// `Allow < Transform < Warn < Escalate < Deny`, so `max` picks the most
/// restrictive verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Proceed.
    Allow,
    /// Proceed after applying the decision's transform obligations.
    Transform,
    /// Proceed, but flag it.
    Warn,
    /// Hold until an approver decides (timeout means deny).
    Escalate,
    /// Do not proceed.
    Deny,
}

impl Verdict {
    /// Every verdict, least restrictive first.
    pub const ALL: [Verdict; 5] = [
        Verdict::Allow,
        Verdict::Transform,
        Verdict::Warn,
        Verdict::Escalate,
        Verdict::Deny,
    ];

    /// Wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Transform => "transform",
            Verdict::Warn => "warn",
            Verdict::Escalate => "escalate",
            Verdict::Deny => "deny",
        }
    }

    /// Whether the action may go ahead without a human (allow, warn, transform).
    pub const fn proceeds(self) -> bool {
        matches!(self, Verdict::Allow | Verdict::Warn | Verdict::Transform)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verdict::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("unknown verdict `{s}` (expected allow, warn, deny, escalate or transform)")
            })
    }
}

/// The outcome of one decision, in its JSON wire form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// Human-readable reasons; reserved ones start with `runtime_error:`.
    pub reasons: Vec<String>,
    /// Ids of the rules that produced the verdict (empty for the default).
    pub rule_ids: Vec<String>,
    /// What the caller must do before proceeding (approval, redaction, ...).
    pub obligations: Vec<Obligation>,
    /// `sha256:<hex>` of the policy set that decided.
    pub policy_hash: String,
    /// Unique, time-ordered id of this decision (UUIDv7).
    pub decision_id: String,
}

impl Decision {
    /// A fresh, time-ordered decision id: a UUIDv7 (RFC 9562) whose 74
    /// random bits come from a per-thread SplitMix64 stream seeded from the
    /// OS, so ids are unique without a system call per decision.
    pub fn new_id() -> String {
        Self::new_id_at(unix_ms())
    }

    /// [`Decision::new_id`] for a decision made at `unix_ms` (milliseconds
    /// since the Unix epoch), for callers that already read the clock: the
    /// kernel reads it once per decision.
    pub fn new_id_at(unix_ms: u64) -> String {
        let r = next_random();
        let mut rand = [0u8; 10];
        rand[..8].copy_from_slice(&r.to_le_bytes());
        rand[8..].copy_from_slice(&(r.rotate_left(17) as u16).to_le_bytes());
        let id = uuid::Builder::from_unix_timestamp_millis(unix_ms, &rand).into_uuid();
        // Encoded into a stack buffer: `to_string` goes through the
        // formatting machinery, which costs more than the rest of the id.
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        id.hyphenated().encode_lower(&mut buf).to_owned()
    }

    /// A fail-closed deny for a runtime error, with an optional detail reason.
    pub fn runtime_error(kind: RuntimeError, detail: Option<String>, policy_hash: String) -> Self {
        let mut reasons = vec![kind.reason().to_owned()];
        reasons.extend(detail);
        Decision {
            verdict: Verdict::Deny,
            reasons,
            rule_ids: Vec::new(),
            obligations: Vec::new(),
            policy_hash,
            decision_id: Decision::new_id(),
        }
    }
}

thread_local! {
    /// SplitMix64 state: a per-thread seed from the OS-seeded std hasher keys.
    static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        h.finish()
    });
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        // Seconds and sub-second milliseconds: `as_millis` is a 128-bit
        // division, on every decision.
        Ok(d) => d
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_millis())),
        Err(_) => 0,
    }
}

/// SplitMix64: a bijection of its counter, so a thread never repeats an output.
fn next_random() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn order_is_tie_break_order() {
        assert!(Verdict::Deny > Verdict::Escalate);
        assert!(Verdict::Escalate > Verdict::Warn);
        assert!(Verdict::Warn > Verdict::Transform);
        assert!(Verdict::Transform > Verdict::Allow);
    }

    #[test]
    fn proceeds() {
        let go: Vec<_> = Verdict::ALL.into_iter().filter(|v| v.proceeds()).collect();
        assert_eq!(go, [Verdict::Allow, Verdict::Transform, Verdict::Warn]);
    }

    #[test]
    fn runtime_error_is_deny() {
        let d = Decision::runtime_error(
            RuntimeError::BudgetExceeded,
            Some("x".into()),
            "sha256:0".into(),
        );
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(d.reasons, ["runtime_error:budget_exceeded", "x"]);
        let v: serde_json::Value = serde_json::to_value(&d).unwrap();
        assert_eq!(v["verdict"], "deny");
        assert_eq!(v["decision_id"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn ids_are_unique_v7_across_threads() {
        let ids: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..20_000).map(|_| Decision::new_id()).collect::<Vec<_>>()))
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let set: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        let u = uuid::Uuid::parse_str(&ids[0]).unwrap();
        assert_eq!(u.get_version_num(), 7);
    }

    #[test]
    fn ids_carry_the_given_time_and_the_clock_reads_milliseconds() {
        let ms = 1_763_800_000_123;
        let id = Decision::new_id_at(ms);
        let u = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(id, u.hyphenated().to_string(), "lower-case hyphenated");
        let (secs, nanos) = u.get_timestamp().unwrap().to_unix();
        assert_eq!(secs * 1000 + u64::from(nanos / 1_000_000), ms);
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let now = unix_ms();
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }

    #[test]
    fn verdict_parse() {
        for v in Verdict::ALL {
            assert_eq!(v.as_str().parse::<Verdict>().unwrap(), v);
        }
        assert!("block".parse::<Verdict>().is_err());
    }
}
