//! `warden check`: one action in, one decision out.

use anyhow::{Context as _, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_core::{Action, Verdict};
use warden_identity::{Tier, TrustBook, TrustConfig, now_secs};
use warden_kernel::Kernel;
use warden_policy::testing::{AssumedFacts, Decider};
use warden_policy::{MAX_TRUST, PolicySet};

/// Largest action document accepted (a hostile caller cannot exhaust memory).
pub(crate) const MAX_ACTION_BYTES: u64 = 8 * 1024 * 1024;

/// Reads and validates an Action from a file or stdin (`None` or `-`).
pub(crate) fn read_action(path: Option<&Path>) -> Result<Action> {
    let (label, text) = match path {
        Some(p) if p != Path::new("-") => {
            let f = std::fs::File::open(p).with_context(|| format!("{}", p.display()))?;
            (
                p.display().to_string(),
                read_limited(f).with_context(|| p.display().to_string())?,
            )
        }
        _ => (
            "<stdin>".to_owned(),
            read_limited(std::io::stdin().lock()).context("<stdin>")?,
        ),
    };
    serde_json::from_str(&text).with_context(|| format!("{label}: invalid action"))
}

fn read_limited(r: impl Read) -> Result<String> {
    let mut buf = String::new();
    r.take(MAX_ACTION_BYTES + 1).read_to_string(&mut buf)?;
    if buf.len() as u64 > MAX_ACTION_BYTES {
        anyhow::bail!("action is larger than {MAX_ACTION_BYTES} bytes");
    }
    Ok(buf)
}

/// Exit code for a verdict.
pub(crate) fn exit_code(v: Verdict) -> u8 {
    match v {
        Verdict::Allow | Verdict::Warn | Verdict::Transform => 0,
        Verdict::Deny => 1,
        Verdict::Escalate => 3,
    }
}

/// Audit durability on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum DurabilityArg {
    /// Return once the record is on disk.
    Sync,
    /// Return once the record is queued (flushed before exit).
    Batched,
}

impl DurabilityArg {
    /// The audit log's durability for this flag.
    pub(crate) fn into_durability(self) -> warden_audit::Durability {
        match self {
            DurabilityArg::Sync => warden_audit::Durability::Sync,
            DurabilityArg::Batched => warden_audit::Durability::Batched,
        }
    }
}

pub(crate) fn run(
    policy: &[PathBuf],
    action: Option<&Path>,
    data_dir: Option<&Path>,
    durability: DurabilityArg,
) -> Result<u8> {
    let decision = match data_dir {
        None => {
            let set = PolicySet::load(policy)?;
            let action = read_action(action)?;
            Kernel::preview(&set, &action, None)
        }
        Some(dir) => {
            // Creates DIR if needed, before the trust book is opened in it.
            let builder = Kernel::builder(warden_policy::PolicyHandle::load(policy)?)
                .data_dir(dir, durability.into_durability())?;
            // Agents' trust scores in DIR (`warden trust set`) decide their
            // tiers, rings and facts; an agent not in it is at the baseline.
            let trust = TrustBook::open(dir, TrustConfig::default())
                .with_context(|| format!("trust book in {}", dir.display()))?;
            let kernel = builder.trust(Arc::new(trust)).build()?;
            let action = read_action(action)?;
            let decision = kernel.decide(&action);
            kernel.flush()?;
            decision
        }
    };
    println!("{}", serde_json::to_string(&decision)?);
    Ok(exit_code(decision.verdict))
}

/// A trust book holding only `agent` at the score the assumed facts give:
/// `trust` itself, else the lowest score of `tier` (with both, they must agree).
pub(crate) fn assumed_trust(agent: &str, facts: &AssumedFacts) -> Result<Arc<TrustBook>, String> {
    let tier: Option<Tier> = match &facts.tier {
        Some(t) => Some(t.parse().map_err(|e| format!("agent_facts.tier: {e}"))?),
        None => None,
    };
    let score = match (facts.trust, tier) {
        (Some(trust), Some(tier)) if Tier::of(f64::from(trust)) != tier => {
            return Err(format!(
                "trust {trust} is in tier `{}`, not `{tier}`",
                Tier::of(f64::from(trust))
            ));
        }
        (Some(trust), _) => trust,
        // The tier's lowest score, found through the tier function itself.
        (None, Some(tier)) => (0..=MAX_TRUST)
            .find(|s| Tier::of(f64::from(*s)) == tier)
            .ok_or_else(|| format!("no score has tier `{tier}`"))?,
        (None, None) => return Err("give `trust` (0-1000) and/or `tier`".to_owned()),
    };
    let book = TrustBook::in_memory(TrustConfig::default());
    book.set(agent, f64::from(score), now_secs())
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(book))
}

/// Decides test cases like the kernel: trust tiers, the ring stage, then the policy.
pub(crate) struct KernelDecider;

impl Decider for KernelDecider {
    fn decide(
        &self,
        set: &PolicySet,
        action: &Action,
        facts: Option<&AssumedFacts>,
    ) -> std::result::Result<warden_core::Decision, String> {
        let trust = match facts {
            Some(f) => Some(assumed_trust(&action.agent, f)?),
            None => None,
        };
        Ok(Kernel::preview(set, action, trust))
    }
}
