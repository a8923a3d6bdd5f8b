//! Quotas: GCRA rate limits and lifetime budgets, counted per scope key.
//!
//! Every action that reaches the quota stage counts, whatever the policy
//! later decides: an agent spamming denied calls is throttled too. Budgets
//! for tokens and cost are charged when the outcome is reported
//! ([`QuotaBook::charge`]) and checked before the next call.

use crate::scope_key::{KeyHasher, KeySeeds, Limiter, limiter};
use dashmap::DashMap;
use governor::Quota as GQuota;
use rustc_hash::FxHashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use warden_core::Action;
use warden_policy::{Quota, QuotaOrigin, QuotaScope};

/// A quota said no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaDenial {
    /// The quota (or rule) id; the decision's reason is `quota:<id>`.
    pub id: String,
    /// What was exceeded.
    pub detail: String,
}

impl QuotaDenial {
    /// The reserved reason string, `quota:<id>`.
    pub fn reason(&self) -> String {
        format!("quota:{}", self.id)
    }
}

/// What a finished call consumed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Model tokens.
    pub tokens: u64,
    /// Cost in the policy's currency unit.
    pub cost: f64,
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    tokens: AtomicU64,
    /// Cost in millionths, so it can be an atomic integer.
    cost_micros: AtomicU64,
}

struct Entry {
    quota: Quota,
    limiter: Option<Arc<Limiter>>,
    budgets: DashMap<u128, Arc<Counters>, KeyHasher>,
}

impl Entry {
    fn has_budget(&self) -> bool {
        self.quota.calls.is_some() || self.quota.tokens.is_some() || self.quota.cost.is_some()
    }
}

/// The live counters of a policy set's quotas.
pub struct QuotaBook {
    entries: Vec<Entry>,
    declared: Vec<usize>,
    by_rule: FxHashMap<String, usize>,
    seeds: KeySeeds,
}

impl std::fmt::Debug for QuotaBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaBook")
            .field("quotas", &self.entries.len())
            .finish_non_exhaustive()
    }
}

fn gcra(q: &Quota) -> Option<GQuota> {
    let rate = q.rate?;
    gcra_of(rate.count, rate.per, q.burst)
}

/// A GCRA quota of `count` cells per `per` with `burst` (default: `count`).
/// A zero rate admits nothing: no limiter can express it, the check denies directly.
pub(crate) fn gcra_of(count: u64, per: std::time::Duration, burst: Option<u32>) -> Option<GQuota> {
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    let per_cell = per.checked_div(count.max(1))?;
    let burst = NonZeroU32::new(burst.unwrap_or(count)).or(NonZeroU32::new(1))?;
    GQuota::with_period(per_cell).map(|g| g.allow_burst(burst))
}

impl QuotaBook {
    /// Builds counters for `quotas` (a policy set's [`warden_policy::PolicySet::quotas`]).
    pub fn new(quotas: &[Quota]) -> Self {
        let mut entries = Vec::with_capacity(quotas.len());
        let mut declared = Vec::new();
        let mut by_rule = FxHashMap::default();
        for (i, q) in quotas.iter().enumerate() {
            match q.kind {
                QuotaOrigin::Declared => declared.push(i),
                QuotaOrigin::RuleLimit => {
                    by_rule.insert(q.id.clone(), i);
                }
            }
            entries.push(Entry {
                limiter: gcra(q).map(|g| Arc::new(limiter(g))),
                quota: q.clone(),
                budgets: DashMap::with_hasher(KeyHasher),
            });
        }
        QuotaBook {
            entries,
            declared,
            by_rule,
            seeds: KeySeeds::new(),
        }
    }

    /// Whether any quota would count `action`.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn key(&self, scope: QuotaScope, action: &Action) -> u128 {
        self.seeds.key(|hasher| match scope {
            QuotaScope::Agent => action.agent.hash(hasher),
            QuotaScope::Session => action.session.as_deref().unwrap_or("").hash(hasher),
            QuotaScope::Tool => action.tool().unwrap_or("").hash(hasher),
            QuotaScope::AgentTool => {
                action.agent.hash(hasher);
                action.tool().unwrap_or("").hash(hasher);
            }
            QuotaScope::Global => 0u8.hash(hasher),
        })
    }

    fn counters(&self, e: &Entry, key: u128) -> Arc<Counters> {
        if let Some(c) = e.budgets.get(&key) {
            return Arc::clone(&c);
        }
        Arc::clone(&e.budgets.entry(key).or_default())
    }

    fn check_entry(&self, e: &Entry, action: &Action) -> Result<(), QuotaDenial> {
        let q = &e.quota;
        let deny = |detail: String| QuotaDenial {
            id: q.id.clone(),
            detail,
        };
        let key = self.key(q.scope, action);
        if let Some(rate) = q.rate {
            if rate.count == 0 {
                return Err(deny(format!("rate limit 0/{:?} admits no call", rate.per)));
            }
            if let Some(l) = &e.limiter
                && l.check_key(&key).is_err()
            {
                return Err(deny(format!(
                    "rate limit {} per {:?} exceeded",
                    rate.count, rate.per
                )));
            }
        }
        if e.has_budget() {
            let c = self.counters(e, key);
            if let Some(max) = q.tokens
                && c.tokens.load(Ordering::Acquire) >= max
            {
                return Err(deny(format!("token budget of {max} used up")));
            }
            if let Some(max) = q.cost
                && c.cost_micros.load(Ordering::Acquire) >= to_micros(max)
            {
                return Err(deny(format!("cost budget of {max} used up")));
            }
            if let Some(max) = q.calls
                && c.calls
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < max).then_some(n + 1)
                    })
                    .is_err()
            {
                return Err(deny(format!("call budget of {max} used up")));
            }
        }
        Ok(())
    }

    /// Checks and counts every declared quota that applies to `action`.
    pub fn check(&self, action: &Action) -> Result<(), QuotaDenial> {
        for &i in &self.declared {
            if let Some(e) = self.entries.get(i)
                && e.quota.applies(action)
            {
                self.check_entry(e, action)?;
            }
        }
        Ok(())
    }

    /// Checks and counts the limit attached to rule `rule_id` (AGT `limit:`), if any.
    pub fn check_rule(&self, rule_id: &str, action: &Action) -> Result<(), QuotaDenial> {
        match self.by_rule.get(rule_id).and_then(|&i| self.entries.get(i)) {
            Some(e) => self.check_entry(e, action),
            None => Ok(()),
        }
    }

    /// Whether a token or cost budget applies to `action` (its outcome must be charged).
    pub fn wants_usage(&self, action: &Action) -> bool {
        self.declared
            .iter()
            .filter_map(|&i| self.entries.get(i))
            .any(|e| {
                (e.quota.tokens.is_some() || e.quota.cost.is_some()) && e.quota.applies(action)
            })
    }

    /// Charges what a finished call consumed to every budget that applies to it.
    pub fn charge(&self, action: &Action, usage: Usage) {
        for e in self.declared.iter().filter_map(|&i| self.entries.get(i)) {
            if (e.quota.tokens.is_some() || e.quota.cost.is_some()) && e.quota.applies(action) {
                let c = self.counters(e, self.key(e.quota.scope, action));
                c.tokens.fetch_add(usage.tokens, Ordering::AcqRel);
                c.cost_micros
                    .fetch_add(to_micros(usage.cost), Ordering::AcqRel);
            }
        }
    }

    /// Takes over the counters (rate-limiter state and budgets) of quotas with
    /// the same id and definition from `old`: a policy reload must not reset them.
    pub fn carry_over(&mut self, old: &QuotaBook) {
        for e in &mut self.entries {
            let same = old.entries.iter().find(|o| {
                o.quota.id == e.quota.id
                    && o.quota.kind == e.quota.kind
                    && o.quota.scope == e.quota.scope
                    && o.quota.rate == e.quota.rate
                    && o.quota.burst == e.quota.burst
            });
            if let Some(o) = same {
                e.limiter.clone_from(&o.limiter);
                for kv in o.budgets.iter() {
                    e.budgets.insert(*kv.key(), Arc::clone(kv.value()));
                }
            }
        }
        self.seeds = old.seeds.clone();
    }

    /// Drops rate-limiter state of keys that are back to full capacity.
    pub fn housekeeping(&self) {
        for e in &self.entries {
            if let Some(l) = &e.limiter {
                l.retain_recent();
            }
        }
    }
}

fn to_micros(cost: f64) -> u64 {
    if cost.is_finite() && cost > 0.0 {
        (cost * 1_000_000.0).round().min(u64::MAX as f64) as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use warden_policy::PolicySet;

    fn book(quotas: &str) -> QuotaBook {
        let set = PolicySet::from_yaml(&format!(
            "apiVersion: warden.dev/v1\nkind: Policy\nname: q\ndefault: allow\nquotas:\n{quotas}"
        ))
        .unwrap();
        QuotaBook::new(set.quotas())
    }

    fn act(agent: &str, session: &str, tool: &str) -> Action {
        Action::tool_call(agent, tool)
            .unwrap()
            .with_session(session)
    }

    #[test]
    fn rate_limit_per_agent() {
        let b = book("  - id: r\n    rate: 2/hour\n");
        assert!(b.check(&act("a", "s", "t")).is_ok());
        assert!(b.check(&act("a", "s", "t")).is_ok());
        let d = b.check(&act("a", "s", "t")).unwrap_err();
        assert_eq!(d.reason(), "quota:r");
        assert!(
            b.check(&act("b", "s", "t")).is_ok(),
            "other agents have their own counter"
        );
    }

    #[test]
    fn burst_and_scopes() {
        let b = book(
            "  - id: r\n    rate: 60/minute\n    burst: 1\n    per: session\n    tools: [t]\n",
        );
        assert!(b.check(&act("a", "s1", "t")).is_ok());
        assert!(
            b.check(&act("b", "s1", "t")).is_err(),
            "same session, burst 1"
        );
        assert!(b.check(&act("a", "s2", "t")).is_ok());
        assert!(
            b.check(&act("a", "s1", "other")).is_ok(),
            "quota does not apply"
        );
    }

    #[test]
    fn call_budget_is_exact_under_concurrency() {
        let b = book("  - id: calls\n    per: global\n    calls: 1000\n");
        let ok = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..8 {
                let (b, ok) = (&b, &ok);
                s.spawn(move || {
                    for i in 0..500 {
                        if b.check(&act(&format!("a{t}"), &format!("s{i}"), "x"))
                            .is_ok()
                        {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(ok.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn token_and_cost_budgets_charge_on_outcome() {
        let b = book("  - id: spend\n    per: session\n    tokens: 100\n    cost: 1.5\n");
        let a = act("a", "s", "llm");
        assert!(b.wants_usage(&a));
        assert!(b.check(&a).is_ok());
        b.charge(
            &a,
            Usage {
                tokens: 60,
                cost: 0.5,
            },
        );
        assert!(b.check(&a).is_ok());
        b.charge(
            &a,
            Usage {
                tokens: 40,
                cost: 0.1,
            },
        );
        assert!(b.check(&a).unwrap_err().detail.contains("token budget"));
        let b = book("  - id: spend\n    per: session\n    cost: 1.5\n");
        b.charge(
            &a,
            Usage {
                tokens: 0,
                cost: 1.5,
            },
        );
        assert!(b.check(&a).unwrap_err().detail.contains("cost budget"));
        assert!(b.check(&act("a", "other", "llm")).is_ok());
    }

    #[test]
    fn zero_rate_denies_and_reload_keeps_budgets() {
        let b = book("  - id: never\n    rate: 0/hour\n");
        assert!(b.check(&act("a", "s", "t")).is_err());
        let old = book("  - id: c\n    calls: 1\n");
        assert!(old.check(&act("a", "s", "t")).is_ok());
        let mut new = book("  - id: c\n    calls: 1\n");
        new.carry_over(&old);
        assert!(
            new.check(&act("a", "s", "t")).is_err(),
            "budget survives reload"
        );
        let old = book("  - id: r\n    rate: 1/hour\n");
        assert!(old.check(&act("a", "s", "t")).is_ok());
        let mut new = book("  - id: r\n    rate: 1/hour\n");
        new.carry_over(&old);
        assert!(
            new.check(&act("a", "s", "t")).is_err(),
            "rate state survives reload"
        );
        let mut changed = book("  - id: r\n    rate: 5/hour\n");
        changed.carry_over(&old);
        assert!(
            changed.check(&act("a", "s", "t")).is_ok(),
            "a changed quota starts fresh"
        );
    }

    #[test]
    fn agt_rule_limits() {
        let set = PolicySet::from_yaml(
            "apiVersion: governance.toolkit/v1\nname: x\ndefault_action: allow\nrules:\n  - name: s\n    condition: \"q\"\n    action: allow\n    limit: 1/hour\n",
        )
        .unwrap();
        let b = QuotaBook::new(set.quotas());
        assert!(
            b.check(&act("a", "s", "t")).is_ok(),
            "rule limits are not declared quotas"
        );
        assert!(b.check_rule("s", &act("a", "s", "t")).is_ok());
        assert_eq!(
            b.check_rule("s", &act("a", "s", "t")).unwrap_err().reason(),
            "quota:s"
        );
        assert!(b.check_rule("other", &act("a", "s", "t")).is_ok());
    }
}
