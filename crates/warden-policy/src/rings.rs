//! Execution rings: the `rings:` block of a Warden policy, compiled for the runtime.
//!
//! Ring 0 is the most privileged, ring 3 the least. An agent's ring comes
//! from an explicit grant or, failing that, from its trust tier; a tool's
//! required ring comes from the tool catalogue, or `default_tool_ring` for
//! tools the catalogue does not name. An agent may call a tool when its ring
//! number is at most the tool's.

use crate::compile::{at, name_set};
use crate::duration::parse_duration;
use crate::error::{Origin, PolicyError};
use crate::pattern::NameSet;
use crate::rule::RateLimit;
use crate::source::{RingQuotaDoc, RingToolDoc, RingsDoc};
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// An execution ring, 0 (most privileged) to 3 (least). Values outside 0–3 cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ring(u8);

impl Ring {
    /// Ring 0: only by explicit grant.
    pub const ZERO: Ring = Ring(0);
    /// Ring 3: the least privileged.
    pub const LOWEST: Ring = Ring(3);

    /// The ring numbered `n`, if `n` is 0–3.
    pub fn new(n: u8) -> Option<Ring> {
        (n <= 3).then_some(Ring(n))
    }

    /// The ring number.
    pub fn get(self) -> u8 {
        self.0
    }

    /// Whether an agent in this ring may call a tool that requires `required`.
    pub fn satisfies(self, required: Ring) -> bool {
        self.0 <= required.0
    }
}

impl fmt::Display for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Trust tier names, lowest first, as `warden-identity` spells them.
pub const TIER_NAMES: [&str; 5] = [
    "untrusted",
    "probationary",
    "standard",
    "trusted",
    "verified",
];

/// Default ring per tier (same order as [`TIER_NAMES`]).
pub const DEFAULT_TIER_RINGS: [Ring; 5] = [Ring(3), Ring(3), Ring(2), Ring(1), Ring(1)];

/// The ring `tier` maps to without a `rings:` block (ring 3 for an unknown tier name).
pub fn default_tier_ring(tier: &str) -> Ring {
    TIER_NAMES
        .iter()
        .position(|t| *t == tier)
        .and_then(|i| DEFAULT_TIER_RINGS.get(i).copied())
        .unwrap_or(Ring::LOWEST)
}

/// Required ring of a tool the catalogue does not name, unless the policy sets `default_tool_ring`.
pub const DEFAULT_TOOL_RING: Ring = Ring(2);

/// Largest temporary elevation a policy may grant.
pub const MAX_ELEVATION_TTL: Duration = Duration::from_secs(24 * 3600);

/// How a ring denial for a tool may be escalated into a temporary elevation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elevation {
    /// Who may approve it.
    pub approvers: Vec<String>,
    /// How long an approved elevation lasts.
    pub ttl: Duration,
}

/// One catalogue entry: tools and the ring they require.
#[derive(Debug, Clone)]
pub struct ToolRing {
    /// Required ring.
    pub ring: Ring,
    /// Escalation to a temporary elevation, if allowed.
    pub elevate: Option<Elevation>,
    /// Where it was written.
    pub origin: Origin,
    tools: NameSet,
}

impl ToolRing {
    /// Whether this entry names `tool`.
    pub fn matches(&self, tool: &str) -> bool {
        self.tools.matches(tool)
    }

    /// The tool patterns as written.
    pub fn patterns(&self) -> &[String] {
        &self.tools.written
    }
}

/// Per-ring limits: a GCRA rate and/or a bound on calls in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct RingQuota {
    /// Steady rate per agent in the ring.
    pub rate: Option<RateLimit>,
    /// Calls in flight at once per agent in the ring.
    pub concurrency: Option<u32>,
}

/// The compiled `rings:` block.
#[derive(Debug, Clone)]
pub struct RingPolicy {
    default_tool_ring: Ring,
    tier_rings: [Ring; 5],
    grants: HashMap<String, Ring>,
    tools: Vec<ToolRing>,
    quotas: [Option<RingQuota>; 4],
    /// Where the block was written.
    pub origin: Origin,
}

impl RingPolicy {
    /// Required ring of a tool not in the catalogue.
    pub fn default_tool_ring(&self) -> Ring {
        self.default_tool_ring
    }

    /// The ring an agent's tier maps to (`None` for an unknown tier name).
    pub fn tier_ring(&self, tier: &str) -> Option<Ring> {
        TIER_NAMES
            .iter()
            .position(|t| *t == tier)
            .map(|i| self.tier_rings[i])
    }

    /// The ring explicitly granted to `agent` (exact id or DID), if any.
    pub fn grant(&self, agent: &str) -> Option<Ring> {
        self.grants.get(agent).copied()
    }

    /// The agent's ring before elevations: its explicit grant, else its
    /// tier's ring; but a tier mapped to ring 3 (or an unknown tier name)
    /// is ring 3 whatever the grant — low trust suspends every privilege.
    pub fn agent_ring(&self, agent: &str, tier: &str) -> Ring {
        let by_tier = self.tier_ring(tier).unwrap_or(Ring::LOWEST);
        if by_tier == Ring::LOWEST {
            return Ring::LOWEST;
        }
        self.grant(agent).unwrap_or(by_tier)
    }

    /// The catalogue entry for `tool`: the first entry that names it, in order written.
    pub fn tool_entry(&self, tool: &str) -> Option<&ToolRing> {
        self.tools.iter().find(|t| t.matches(tool))
    }

    /// The ring `tool` requires (the catalogue's, else the default).
    pub fn tool_ring(&self, tool: &str) -> Ring {
        self.tool_entry(tool)
            .map_or(self.default_tool_ring, |t| t.ring)
    }

    /// The catalogue, in order written.
    pub fn tools(&self) -> &[ToolRing] {
        &self.tools
    }

    /// The limits of `ring`, if the policy sets any.
    pub fn quota(&self, ring: Ring) -> Option<&RingQuota> {
        self.quotas[usize::from(ring.0)].as_ref()
    }
}

fn ring_of(file: &Path, field: &str, n: &Spanned<u8>) -> Result<Ring, PolicyError> {
    Ring::new(n.value).ok_or_else(|| {
        PolicyError::invalid(
            at(file, n),
            field,
            format!("ring {} does not exist (rings are 0 to 3)", n.value),
        )
    })
}

/// Compiles a `rings:` block.
pub(crate) fn compile_rings(
    file: &Path,
    spanned: Spanned<RingsDoc>,
) -> Result<RingPolicy, PolicyError> {
    let origin = at(file, &spanned);
    let doc = spanned.value;
    let default_tool_ring = match &doc.default_tool_ring {
        Some(n) => ring_of(file, "rings.default_tool_ring", n)?,
        None => DEFAULT_TOOL_RING,
    };
    let mut tier_rings = DEFAULT_TIER_RINGS;
    for (name, n) in &doc.tiers {
        let field = format!("rings.tiers.{name}");
        let i = TIER_NAMES
            .iter()
            .position(|t| *t == name.as_str())
            .ok_or_else(|| {
                PolicyError::invalid(
                    at(file, n),
                    &field,
                    format!(
                        "unknown tier `{name}` (expected one of: {})",
                        TIER_NAMES.join(", ")
                    ),
                )
            })?;
        let ring = ring_of(file, &field, n)?;
        if ring == Ring::ZERO {
            return Err(PolicyError::invalid(
                at(file, n),
                field,
                "ring 0 is only given by an explicit grant in `rings.agents`",
            ));
        }
        tier_rings[i] = ring;
    }
    let mut grants = HashMap::with_capacity(doc.agents.len());
    for (agent, n) in &doc.agents {
        let field = format!("rings.agents.{agent}");
        if agent.is_empty() || agent.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PolicyError::invalid(
                at(file, n),
                field,
                "agent id must be non-empty and contain no whitespace or control characters",
            ));
        }
        if crate::pattern::is_glob(agent) {
            return Err(PolicyError::invalid(
                at(file, n),
                field,
                "a ring grant names one agent exactly; globs are not allowed",
            ));
        }
        grants.insert(agent.clone(), ring_of(file, &field, n)?);
    }
    let mut tools = Vec::with_capacity(doc.tools.len());
    for (i, t) in doc.tools.into_iter().enumerate() {
        tools.push(compile_tool(file, i, t)?);
    }
    let mut quotas: [Option<RingQuota>; 4] = Default::default();
    for (i, q) in doc.quotas.iter().enumerate() {
        let (ring, quota) = compile_quota(file, i, q)?;
        let slot = &mut quotas[usize::from(ring.0)];
        if slot.is_some() {
            return Err(PolicyError::invalid(
                at(file, q),
                format!("rings.quotas[{i}].ring"),
                format!("ring {ring} already has quotas"),
            ));
        }
        *slot = Some(quota);
    }
    Ok(RingPolicy {
        default_tool_ring,
        tier_rings,
        grants,
        tools,
        quotas,
        origin,
    })
}

fn compile_tool(
    file: &Path,
    i: usize,
    spanned: Spanned<RingToolDoc>,
) -> Result<ToolRing, PolicyError> {
    let origin = at(file, &spanned);
    let t = spanned.value;
    let f = |name: &str| format!("rings.tools[{i}].{name}");
    let tools = name_set(file, &f("tools"), &Some(t.tools))?
        .ok_or_else(|| PolicyError::invalid(origin.clone(), f("tools"), "must list tools"))?;
    let ring = ring_of(file, &f("ring"), &t.ring)?;
    let elevate = match t.elevate {
        None => None,
        Some(e) => {
            let eo = at(file, &e);
            let e = e.value;
            if e.approvers.is_empty() || e.approvers.iter().any(|a| a.trim().is_empty()) {
                return Err(PolicyError::invalid(
                    eo,
                    f("elevate.approvers"),
                    "must list at least one approver, none empty",
                ));
            }
            let ttl = parse_duration(&e.ttl.value)
                .map_err(|m| PolicyError::invalid(at(file, &e.ttl), f("elevate.ttl"), m))?;
            if ttl.is_zero() || ttl > MAX_ELEVATION_TTL {
                return Err(PolicyError::invalid(
                    at(file, &e.ttl),
                    f("elevate.ttl"),
                    "must be greater than zero and at most 24h",
                ));
            }
            Some(Elevation {
                approvers: e.approvers,
                ttl,
            })
        }
    };
    Ok(ToolRing {
        ring,
        elevate,
        origin,
        tools,
    })
}

fn compile_quota(
    file: &Path,
    i: usize,
    spanned: &Spanned<RingQuotaDoc>,
) -> Result<(Ring, RingQuota), PolicyError> {
    let q = &spanned.value;
    let f = |name: &str| format!("rings.quotas[{i}].{name}");
    let ring = ring_of(file, &f("ring"), &q.ring)?;
    let rate = match &q.rate {
        Some(r) => Some(
            RateLimit::parse(&r.value)
                .map_err(|m| PolicyError::invalid(at(file, r), f("rate"), m))?,
        ),
        None => None,
    };
    if let Some(c) = &q.concurrency
        && c.value == 0
    {
        return Err(PolicyError::invalid(
            at(file, c),
            f("concurrency"),
            "must be at least 1",
        ));
    }
    if rate.is_none() && q.concurrency.is_none() {
        return Err(PolicyError::invalid(
            at(file, spanned),
            format!("rings.quotas[{i}]"),
            "a ring quota needs `rate` or `concurrency`",
        ));
    }
    Ok((
        ring,
        RingQuota {
            rate,
            concurrency: q.concurrency.as_ref().map(|c| c.value),
        },
    ))
}
