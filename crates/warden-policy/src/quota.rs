//! Quota declarations: rate limits and budgets a policy sets, compiled for the runtime.

use crate::error::{Origin, PolicyError};
use crate::pattern::NameSet;
use crate::rule::RateLimit;
use warden_core::{Action, Point};

/// What a quota's counters are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaScope {
    /// One counter per agent (default).
    Agent,
    /// One counter per session (actions without a session share the key `""`).
    Session,
    /// One counter per tool.
    Tool,
    /// One counter per (agent, tool).
    AgentTool,
    /// One counter for everything the quota matches.
    Global,
}

impl QuotaScope {
    fn parse(s: &str) -> Option<QuotaScope> {
        Some(match s {
            "agent" => QuotaScope::Agent,
            "session" => QuotaScope::Session,
            "tool" => QuotaScope::Tool,
            "agent_tool" => QuotaScope::AgentTool,
            "global" => QuotaScope::Global,
            _ => return None,
        })
    }
}

/// Where a quota came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaOrigin {
    /// A `quotas:` entry of a Warden policy: checked before the policy runs.
    Declared,
    /// An AGT rule's `limit`: checked when that rule decides.
    RuleLimit,
}

/// One compiled quota.
#[derive(Debug, Clone)]
pub struct Quota {
    /// Id; exceeding it denies with reason `quota:<id>`.
    pub id: String,
    /// Counter key.
    pub scope: QuotaScope,
    /// GCRA rate limit.
    pub rate: Option<RateLimit>,
    /// Extra burst capacity on top of the steady rate (default: the rate's count).
    pub burst: Option<u32>,
    /// Lifetime budget of allowed calls per key.
    pub calls: Option<u64>,
    /// Lifetime budget of tokens per key (consumed by reported outcomes).
    pub tokens: Option<u64>,
    /// Lifetime budget of cost per key (consumed by reported outcomes).
    pub cost: Option<f64>,
    /// Declared quota or rule limit.
    pub kind: QuotaOrigin,
    /// Where it was written.
    pub origin: Origin,
    points: u16,
    tools: Option<NameSet>,
    agents: Option<NameSet>,
}

impl Quota {
    /// Whether the quota counts `action`.
    pub fn applies(&self, action: &Action) -> bool {
        self.points & (1 << action.point.index()) != 0
            && self
                .tools
                .as_ref()
                .is_none_or(|t| action.tool().is_some_and(|tool| t.matches(tool)))
            && self
                .agents
                .as_ref()
                .is_none_or(|a| a.matches(&action.agent))
    }

    /// A rule limit (AGT `limit:`) for the rule `id`, counted per agent.
    pub(crate) fn rule_limit(id: &str, limit: RateLimit, origin: Origin) -> Quota {
        Quota {
            id: id.to_owned(),
            scope: QuotaScope::Agent,
            rate: Some(limit),
            burst: None,
            calls: None,
            tokens: None,
            cost: None,
            kind: QuotaOrigin::RuleLimit,
            origin,
            points: u16::MAX >> (16 - Point::ALL.len()),
            tools: None,
            agents: None,
        }
    }

    /// Builds a declared quota (fields already parsed by `compile`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn declared(
        id: String,
        scope: Option<(&str, Origin)>,
        rate: Option<RateLimit>,
        burst: Option<u32>,
        budgets: (Option<u64>, Option<u64>, Option<f64>),
        origin: Origin,
        points: u16,
        tools: Option<NameSet>,
        agents: Option<NameSet>,
        field: &str,
    ) -> Result<Quota, PolicyError> {
        let scope = match scope {
            None => QuotaScope::Agent,
            Some((s, o)) => QuotaScope::parse(s).ok_or_else(|| {
                PolicyError::invalid(
                    o,
                    format!("{field}.per"),
                    format!(
                        "unknown scope `{s}` (expected agent, session, tool, agent_tool or global)"
                    ),
                )
            })?,
        };
        let (calls, tokens, cost) = budgets;
        if rate.is_none() && calls.is_none() && tokens.is_none() && cost.is_none() {
            return Err(PolicyError::invalid(
                origin,
                field,
                "a quota needs `rate`, `calls`, `tokens` or `cost`",
            ));
        }
        if burst.is_some() && rate.is_none() {
            return Err(PolicyError::invalid(
                origin,
                format!("{field}.burst"),
                "`burst` needs a `rate`",
            ));
        }
        if burst == Some(0) {
            return Err(PolicyError::invalid(
                origin,
                format!("{field}.burst"),
                "must be at least 1",
            ));
        }
        if let Some(c) = cost
            && !(c.is_finite() && c >= 0.0)
        {
            return Err(PolicyError::invalid(
                origin,
                format!("{field}.cost"),
                "must be a finite, non-negative number",
            ));
        }
        Ok(Quota {
            id,
            scope,
            rate,
            burst,
            calls,
            tokens,
            cost,
            kind: QuotaOrigin::Declared,
            origin,
            points,
            tools,
            agents,
        })
    }
}
