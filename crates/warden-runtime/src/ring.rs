//! Execution rings at run time: which ring an agent is in, which ring a tool
//! needs, per-ring rate and concurrency limits, and temporary elevations.
//!
//! An agent's ring is recomputed from its current tier at every check, so a
//! falling trust score demotes it on the next call; nothing is cached.
//! Precedence: an explicit grant (`rings.agents`) replaces the tier's ring;
//! an unexpired elevation lowers the ring for the tools of its catalogue
//! entry; but an agent whose *tier* maps to ring 3 is demoted to ring 3
//! whatever its grants and elevations — low trust suspends every privilege.

use crate::scope_key::{KeyHasher, KeySeeds, Limiter, limiter};
use dashmap::DashMap;
use governor::Quota as GQuota;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use warden_policy::{Elevation, Ring, RingPolicy};

/// Why the ring check said no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingDenial {
    /// The agent's ring is less privileged than the tool requires.
    Insufficient {
        /// The agent's effective ring.
        agent: Ring,
        /// The tool's required ring.
        tool: Ring,
        /// The catalogue entry's elevation terms, if the denial may be escalated.
        elevate: Option<Elevation>,
    },
    /// The agent's ring rate limit is exhausted.
    Rate {
        /// The ring whose limit applied.
        ring: Ring,
        /// What was exceeded.
        detail: String,
    },
    /// The agent already has the ring's maximum of calls in flight.
    Concurrency {
        /// The ring whose limit applied.
        ring: Ring,
        /// The limit.
        max: u32,
    },
}

impl RingDenial {
    /// The reserved reason: `ring:insufficient`, `ring:rate` or `ring:concurrency`.
    pub fn reason(&self) -> &'static str {
        match self {
            RingDenial::Insufficient { .. } => "ring:insufficient",
            RingDenial::Rate { .. } => "ring:rate",
            RingDenial::Concurrency { .. } => "ring:concurrency",
        }
    }

    /// A human-readable detail.
    pub fn detail(&self) -> String {
        match self {
            RingDenial::Insufficient { agent, tool, .. } => {
                format!("agent is in ring {agent}; the tool requires ring {tool}")
            }
            RingDenial::Rate { ring, detail } => format!("ring {ring}: {detail}"),
            RingDenial::Concurrency { ring, max } => {
                format!("ring {ring}: {max} calls already in flight for this agent")
            }
        }
    }
}

/// One call in flight counted against its ring's concurrency limit;
/// releases its slot when dropped (hold it until the outcome is recorded).
#[derive(Debug)]
pub struct RingPermit {
    slot: Option<Arc<AtomicU32>>,
    ring: Ring,
}

impl RingPermit {
    /// The ring the call was admitted in.
    pub fn ring(&self) -> Ring {
        self.ring
    }

    /// Whether it holds a concurrency slot (only then must it be kept until the outcome).
    pub fn holds_slot(&self) -> bool {
        self.slot.is_some()
    }
}

impl Drop for RingPermit {
    fn drop(&mut self) {
        if let Some(s) = self.slot.take() {
            // Never underflows: the slot was incremented when this permit was made.
            s.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// An approved elevation: the tools of one catalogue entry, until a deadline.
#[derive(Debug, Clone, Copy)]
struct Grant {
    entry: usize,
    ring: Ring,
    expires_ms: u64,
}

/// The live state of a policy's `rings:` block. Rebuilt on policy reload,
/// taking over the state of the old book with [`RingBook::carry_over`].
pub struct RingBook {
    policy: RingPolicy,
    limiters: [Option<Arc<Limiter>>; 4],
    inflight: DashMap<(u8, u128), Arc<AtomicU32>, KeyHasher>,
    elevations: DashMap<String, Vec<Grant>>,
    seeds: KeySeeds,
}

impl std::fmt::Debug for RingBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingBook")
            .field("elevated_agents", &self.elevations.len())
            .finish_non_exhaustive()
    }
}

fn gcra(count: u64, per: Duration) -> Option<GQuota> {
    crate::quota::gcra_of(count, per, None)
}

impl RingBook {
    /// Builds the book for a policy's ring configuration.
    pub fn new(policy: &RingPolicy) -> Self {
        let limiters = std::array::from_fn(|i| {
            let ring = Ring::new(u8::try_from(i).ok()?)?;
            let rate = policy.quota(ring)?.rate?;
            gcra(rate.count, rate.per).map(|q| Arc::new(limiter(q)))
        });
        RingBook {
            policy: policy.clone(),
            limiters,
            inflight: DashMap::with_hasher(KeyHasher),
            elevations: DashMap::new(),
            seeds: KeySeeds::new(),
        }
    }

    /// The ring configuration this book enforces.
    pub fn policy(&self) -> &RingPolicy {
        &self.policy
    }

    fn key(&self, agent: &str) -> u128 {
        self.seeds.key(|h| agent.hash(h))
    }

    /// The agent's ring before elevations, from its grant and current tier
    /// (a tier name as `warden-identity` spells it; an unknown name is ring 3).
    /// See [`RingPolicy::agent_ring`].
    pub fn agent_ring(&self, agent: &str, tier: &str) -> Ring {
        self.policy.agent_ring(agent, tier)
    }

    /// The ring the agent holds for `tool` at `now_ms`: its base ring, or an
    /// unexpired elevation for the tool's catalogue entry if better.
    pub fn effective_ring(&self, agent: &str, tier: &str, tool: &str, now_ms: u64) -> Ring {
        let base = self.agent_ring(agent, tier);
        if base == Ring::LOWEST {
            // Demoted (or never above ring 3): elevations are suspended too.
            return base;
        }
        let Some(entry) = self.entry_index(tool) else {
            return base;
        };
        self.elevations
            .get(agent)
            .and_then(|g| {
                g.iter()
                    .filter(|g| g.entry == entry && g.expires_ms > now_ms)
                    .map(|g| g.ring)
                    .min()
            })
            .map_or(base, |e| e.min(base))
    }

    fn entry_index(&self, tool: &str) -> Option<usize> {
        self.policy.tools().iter().position(|t| t.matches(tool))
    }

    /// Checks whether `agent` (at `tier`) may call `tool` now, and counts the
    /// call against its ring's rate and concurrency limits. The returned
    /// permit holds a concurrency slot until dropped.
    pub fn check(
        &self,
        agent: &str,
        tier: &str,
        tool: &str,
        now_ms: u64,
    ) -> Result<RingPermit, RingDenial> {
        self.admit(agent, self.effective_ring(agent, tier, tool, now_ms), tool)
    }

    /// The second half of [`check`](Self::check), for a caller that already
    /// computed the agent's [`effective_ring`](Self::effective_ring) for
    /// `tool` (the kernel, which also hands it to the policy as `agent.ring`).
    pub fn admit(&self, agent: &str, ring: Ring, tool: &str) -> Result<RingPermit, RingDenial> {
        let entry = self.policy.tool_entry(tool);
        let required = entry.map_or(self.policy.default_tool_ring(), |e| e.ring);
        if !ring.satisfies(required) {
            return Err(RingDenial::Insufficient {
                agent: ring,
                tool: required,
                elevate: entry.and_then(|e| e.elevate.clone()),
            });
        }
        let Some(quota) = self.policy.quota(ring) else {
            return Ok(RingPermit { slot: None, ring });
        };
        let key = self.key(agent);
        if let Some(rate) = quota.rate {
            if rate.count == 0 {
                return Err(RingDenial::Rate {
                    ring,
                    detail: format!("rate limit 0 per {:?} admits no call", rate.per),
                });
            }
            if let Some(l) = &self.limiters[usize::from(ring.get())]
                && l.check_key(&key).is_err()
            {
                return Err(RingDenial::Rate {
                    ring,
                    detail: format!("rate limit {} per {:?} exceeded", rate.count, rate.per),
                });
            }
        }
        let Some(max) = quota.concurrency else {
            return Ok(RingPermit { slot: None, ring });
        };
        let slot = Arc::clone(&self.inflight.entry((ring.get(), key)).or_default());
        slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .map_err(|_| RingDenial::Concurrency { ring, max })?;
        Ok(RingPermit {
            slot: Some(slot),
            ring,
        })
    }

    /// Takes over the state of `old`, the book of the policy this one
    /// replaces, so a reload neither resets limits nor loses privileges:
    /// rate-limiter state of rings whose rate is unchanged, the in-flight
    /// counters of rings that still limit concurrency (permits held by calls
    /// in flight keep counting against the new book), and unexpired
    /// elevations whose catalogue entry still exists with the same tool
    /// patterns and still allows elevation (at that entry's current ring,
    /// and for no longer than its current TTL from `now_ms`).
    pub fn carry_over(&mut self, old: &RingBook, now_ms: u64) {
        self.seeds = old.seeds.clone();
        for (i, limiter) in self.limiters.iter_mut().enumerate() {
            let Some(ring) = u8::try_from(i).ok().and_then(Ring::new) else {
                continue;
            };
            let rate = |p: &RingPolicy| p.quota(ring).and_then(|q| q.rate);
            if limiter.is_some() && rate(&self.policy) == rate(&old.policy) {
                limiter.clone_from(&old.limiters[i]);
            }
        }
        for kv in old.inflight.iter() {
            let (ring, _) = *kv.key();
            let limited = Ring::new(ring)
                .and_then(|r| self.policy.quota(r))
                .is_some_and(|q| q.concurrency.is_some());
            if limited {
                self.inflight.insert(*kv.key(), Arc::clone(kv.value()));
            }
        }
        for kv in old.elevations.iter() {
            let carried: Vec<Grant> = kv
                .value()
                .iter()
                .filter(|g| g.expires_ms > now_ms)
                .filter_map(|g| {
                    let was = old.policy.tools().get(g.entry)?;
                    let entry = self
                        .policy
                        .tools()
                        .iter()
                        .position(|t| t.patterns() == was.patterns())?;
                    let now = self.policy.tools().get(entry)?;
                    let ttl = u64::try_from(now.elevate.as_ref()?.ttl.as_millis()).ok()?;
                    Some(Grant {
                        entry,
                        ring: now.ring,
                        expires_ms: g.expires_ms.min(now_ms.saturating_add(ttl)),
                    })
                })
                .collect();
            if !carried.is_empty() {
                self.elevations.insert(kv.key().clone(), carried);
            }
        }
    }

    /// Records an approved elevation: `agent` holds the required ring of
    /// `tool`'s catalogue entry for that entry's TTL from `now_ms`. Returns
    /// the expiry, or `None` when the tool's entry allows no elevation.
    pub fn elevate(&self, agent: &str, tool: &str, now_ms: u64) -> Option<u64> {
        let entry = self.entry_index(tool)?;
        let t = self.policy.tools().get(entry)?;
        let e = t.elevate.as_ref()?;
        let ttl = u64::try_from(e.ttl.as_millis()).unwrap_or(u64::MAX);
        let expires_ms = now_ms.saturating_add(ttl);
        let mut grants = self.elevations.entry(agent.to_owned()).or_default();
        grants.retain(|g| g.expires_ms > now_ms);
        grants.push(Grant {
            entry,
            ring: t.ring,
            expires_ms,
        });
        Some(expires_ms)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use warden_policy::PolicySet;

    fn book(rings: &str) -> RingBook {
        let set = PolicySet::from_yaml(&format!(
            "apiVersion: warden.dev/v1\nkind: Policy\nname: t\ndefault: allow\nrings:\n{rings}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        RingBook::new(set.rings().unwrap())
    }

    fn r(n: u8) -> Ring {
        Ring::new(n).unwrap()
    }

    const CATALOGUE: &str = "  agents: {root: 0, ops: 1}
  tools:
    - tools: [\"shell.*\"]
      ring: 0
      elevate: {approvers: [secops], ttl: 15m}
    - tools: [deploy]
      ring: 1
    - tools: [search]
      ring: 3
";

    #[test]
    fn tiers_grants_and_unknown_tools() {
        let b = book(CATALOGUE);
        assert_eq!(b.agent_ring("bot", "verified"), r(1));
        assert_eq!(b.agent_ring("bot", "standard"), r(2));
        assert_eq!(b.agent_ring("bot", "probationary"), r(3));
        assert_eq!(b.agent_ring("bot", "no-such-tier"), r(3));
        assert_eq!(b.agent_ring("root", "standard"), Ring::ZERO);
        // Unknown tool: default ring 2.
        assert!(b.check("bot", "standard", "unknown", 0).is_ok());
        let e = b.check("bot", "probationary", "unknown", 0).unwrap_err();
        assert_eq!(e.reason(), "ring:insufficient");
        assert!(e.detail().contains("ring 3") && e.detail().contains("ring 2"));
        assert!(b.check("bot", "untrusted", "search", 0).is_ok());
        assert!(b.check("root", "standard", "shell.exec", 0).is_ok());
        assert!(b.check("ops", "standard", "deploy", 0).is_ok());
        match b.check("ops", "standard", "shell.exec", 0).unwrap_err() {
            RingDenial::Insufficient {
                agent,
                tool,
                elevate,
            } => {
                assert_eq!((agent, tool), (r(1), Ring::ZERO));
                assert_eq!(elevate.unwrap().approvers, ["secops"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            b.check("bot", "verified", "deploy", 0),
            Ok(ref p) if p.ring() == r(1)
        ));
    }

    #[test]
    fn demotion_suspends_grants_and_elevations() {
        let b = book(CATALOGUE);
        assert!(b.check("root", "trusted", "shell.exec", 0).is_ok());
        // Trust fell: ring recomputed from the tier at this very call.
        let e = b.check("root", "untrusted", "shell.exec", 0).unwrap_err();
        assert_eq!(
            e,
            RingDenial::Insufficient {
                agent: r(3),
                tool: Ring::ZERO,
                elevate: Some(Elevation {
                    approvers: vec!["secops".into()],
                    ttl: Duration::from_secs(900)
                })
            }
        );
        b.elevate("bot", "shell.exec", 0).unwrap();
        assert!(b.check("bot", "standard", "shell.exec", 1).is_ok());
        assert!(b.check("bot", "probationary", "shell.exec", 1).is_err());
        // Recovery restores them.
        assert!(b.check("root", "trusted", "shell.exec", 1).is_ok());
    }

    #[test]
    fn elevation_is_scoped_and_expires() {
        let b = book(CATALOGUE);
        assert!(b.check("bot", "standard", "shell.exec", 1_000).is_err());
        // No elevation for an entry without `elevate`, nor for unknown tools.
        assert_eq!(b.elevate("bot", "deploy", 1_000), None);
        assert_eq!(b.elevate("bot", "unknown", 1_000), None);
        assert!(b.check("bot", "standard", "deploy", 1_000).is_err());
        let until = b.elevate("bot", "shell.exec", 1_000).unwrap();
        assert_eq!(until, 1_000 + 900_000);
        assert!(b.check("bot", "standard", "shell.exec", 1_001).is_ok());
        assert!(b.check("bot", "standard", "shell.rm", until - 1).is_ok());
        // Only that entry's tools, only that agent.
        assert!(b.check("bot", "standard", "deploy", 1_001).is_err());
        assert!(b.check("bot2", "standard", "shell.exec", 1_001).is_err());
        // Expired at the deadline.
        assert!(b.check("bot", "standard", "shell.exec", until).is_err());
        // A far-future clock sees it expired; an elevation at the end of time lasts no time.
        assert!(b.check("bot", "standard", "shell.exec", u64::MAX).is_err());
        assert_eq!(b.elevate("bot", "shell.exec", u64::MAX), Some(u64::MAX));
    }

    #[test]
    fn concurrency_slots_release_on_drop() {
        let b = book("  quotas:\n    - {ring: 2, concurrency: 2}\n");
        let p1 = b.check("bot", "standard", "x", 0).unwrap();
        let p2 = b.check("bot", "standard", "x", 0).unwrap();
        let e = b.check("bot", "standard", "x", 0).unwrap_err();
        assert_eq!(e.reason(), "ring:concurrency");
        // Per agent: another agent in the same ring has its own slots.
        let other = b.check("bot2", "standard", "x", 0).unwrap();
        // Ring 1 has no limit.
        let _free: Vec<_> = (0..10)
            .map(|_| b.check("bot", "verified", "x", 0).unwrap())
            .collect();
        drop(p1);
        let p3 = b.check("bot", "standard", "x", 0).unwrap();
        assert!(b.check("bot", "standard", "x", 0).is_err());
        drop((p2, p3, other));
        assert!(b.check("bot", "standard", "x", 0).is_ok());
    }

    #[test]
    fn concurrency_holds_under_threads() {
        let b = Arc::new(book("  quotas:\n    - {ring: 2, concurrency: 3}\n"));
        let admitted: Vec<Vec<RingPermit>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let b = Arc::clone(&b);
                    s.spawn(move || {
                        (0..50)
                            .filter_map(|_| b.check("bot", "standard", "x", 0).ok())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(admitted.iter().map(Vec::len).sum::<usize>(), 3);
    }

    #[test]
    fn carry_over_keeps_counters_slots_and_elevations() {
        let policy = format!(
            "{CATALOGUE}  quotas:\n    - {{ring: 2, rate: 3/hour, concurrency: 1}}\n    - {{ring: 1, rate: 1/hour}}\n"
        );
        let old = book(&policy);
        let held = old.check("bot", "standard", "x", 0).unwrap();
        let _ = old.check("ops", "standard", "x", 0).unwrap();
        old.elevate("bot", "shell.exec", 0).unwrap();
        old.elevate("ops", "shell.exec", 0).unwrap();
        // The same policy reloaded: nothing resets.
        let mut new = book(&policy);
        new.carry_over(&old, 1);
        assert_eq!(
            new.check("bot", "standard", "y", 1).unwrap_err().reason(),
            "ring:concurrency",
            "the slot held by the call in flight still counts"
        );
        drop(held);
        assert!(new.check("bot", "standard", "y", 1).is_ok());
        assert_eq!(
            new.check("bot", "standard", "y", 1).unwrap_err().reason(),
            "ring:rate",
            "3/hour (a call refused for concurrency counts too): the count carried over"
        );
        assert_eq!(
            new.check("bot", "standard", "shell.exec", 2)
                .unwrap()
                .ring(),
            Ring::ZERO
        );
        // An elevation ends at its original expiry.
        assert!(new.check("ops", "standard", "shell.exec", 900_000).is_err());
        // A changed rate starts fresh; a removed catalogue entry drops its elevations.
        let changed = "  agents: {root: 0, ops: 1}\n  tools:\n    - tools: [deploy]\n      ring: 1\n  quotas:\n    - {ring: 2, rate: 5/hour, concurrency: 1}\n";
        let mut fresh = book(changed);
        fresh.carry_over(&new, 3);
        assert!(fresh.check("bot", "standard", "y", 3).is_ok());
        assert!(
            fresh.check("bot", "standard", "shell.exec", 3).is_ok(),
            "default ring 2 now"
        );
        assert_eq!(
            fresh
                .check("bot", "standard", "deploy", 3)
                .unwrap_err()
                .reason(),
            "ring:insufficient"
        );
        // A shorter TTL after reload caps carried elevations.
        let old = book(CATALOGUE);
        old.elevate("bot", "shell.exec", 0).unwrap();
        let mut shorter = book(&CATALOGUE.replace("ttl: 15m", "ttl: 1m"));
        shorter.carry_over(&old, 10_000);
        assert!(
            shorter
                .check("bot", "standard", "shell.exec", 69_999)
                .is_ok()
        );
        assert!(
            shorter
                .check("bot", "standard", "shell.exec", 70_000)
                .is_err()
        );
        // An entry that no longer allows elevation drops it.
        let mut none =
            book(&CATALOGUE.replace("      elevate: {approvers: [secops], ttl: 15m}\n", ""));
        none.carry_over(&old, 1);
        assert!(none.check("bot", "standard", "shell.exec", 1).is_err());
    }

    #[test]
    fn rate_limit_per_agent_per_ring() {
        let b = book("  quotas:\n    - {ring: 2, rate: 3/hour}\n    - {ring: 3, rate: 0/s}\n");
        for _ in 0..3 {
            assert!(b.check("bot", "standard", "x", 0).is_ok());
        }
        let e = b.check("bot", "standard", "x", 0).unwrap_err();
        assert_eq!(e.reason(), "ring:rate");
        assert!(e.detail().contains("ring 2"), "{}", e.detail());
        assert!(b.check("bot2", "standard", "x", 0).is_ok());
        // Zero rate admits nothing.
        assert_eq!(
            b.check("bot", "untrusted", "x3", 0)
                .map(|_| ())
                .unwrap_err()
                .reason(),
            "ring:insufficient"
        );
        let b = book("  default_tool_ring: 3\n  quotas:\n    - {ring: 3, rate: 0/s}\n");
        assert_eq!(
            b.check("bot", "untrusted", "x", 0).unwrap_err().reason(),
            "ring:rate"
        );
    }
}
