//! A compiled rule and the pieces it is made of.

use crate::condition::Condition;
use crate::error::Origin;
use crate::pattern::NameSet;
use std::time::Duration;
use warden_core::{Obligation, Point, Verdict};

/// What happens when a rule's condition fails to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// The decision is a deny with `runtime_error:evaluation_error` (default).
    Deny,
    /// The rule is treated as not matching; evaluation goes on.
    Skip,
}

/// Which language a rule was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSource {
    /// `warden.dev/v1`.
    Warden,
    /// `governance.toolkit/v1`, imported.
    Agt,
}

/// A rate limit attached to a rule (AGT `limit: "100/hour"`), kept for the quota stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// How many calls.
    pub count: u64,
    /// Per how long.
    pub per: Duration,
}

impl RateLimit {
    /// Parses `N/second|minute|hour|day` (also `s`, `m`, `h`, `d`, and plurals).
    /// A count of 0 is valid, as in AGT: every call exceeds it.
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let bad = || {
            format!(
                "invalid limit `{text}`: expected `<count>/<second|minute|hour|day>`, e.g. `100/hour`"
            )
        };
        let (count, unit) = text.split_once('/').ok_or_else(bad)?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        let secs = match unit.trim() {
            "s" | "sec" | "second" | "seconds" => 1,
            "m" | "min" | "minute" | "minutes" => 60,
            "h" | "hr" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            _ => return Err(bad()),
        };
        Ok(RateLimit {
            count,
            per: Duration::from_secs(secs),
        })
    }
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Unique id across the whole policy set.
    pub id: String,
    /// Free text.
    pub description: Option<String>,
    /// The verdict when the rule matches.
    pub effect: Verdict,
    /// The reason reported when the rule decides.
    pub reason: String,
    /// Higher wins.
    pub priority: i64,
    /// Bit `p.index()` set for each point the rule applies at.
    pub(crate) points: u16,
    /// `None` = any tool (and actions without a tool).
    pub(crate) tools: Option<NameSet>,
    /// `None` = any agent.
    pub(crate) agents: Option<NameSet>,
    /// `None` = always true.
    pub(crate) condition: Option<Condition>,
    /// Condition error handling.
    pub on_error: OnError,
    /// Obligations attached to the verdict (approval, redactions, audit mark).
    pub obligations: Vec<Obligation>,
    /// Where the rule was written.
    pub origin: Origin,
    /// Rate limit for the quota stage, if declared.
    pub limit: Option<RateLimit>,
    /// Which language it came from.
    pub source: RuleSource,
}

impl Rule {
    /// Whether the rule applies at `point`.
    pub fn applies_at(&self, point: Point) -> bool {
        self.points & (1 << point.index()) != 0
    }

    /// The points the rule applies at.
    pub fn points(&self) -> impl Iterator<Item = Point> + '_ {
        Point::ALL.into_iter().filter(|p| self.applies_at(*p))
    }

    /// The `tools:` patterns as written (empty = any).
    pub fn tool_patterns(&self) -> &[String] {
        self.tools.as_ref().map(|t| &*t.written).unwrap_or(&[])
    }

    /// The `agents:` patterns as written (empty = any).
    pub fn agent_patterns(&self) -> &[String] {
        self.agents.as_ref().map(|t| &*t.written).unwrap_or(&[])
    }

    /// The condition source, if any.
    pub fn condition_source(&self) -> Option<&str> {
        self.condition.as_ref().map(|c| c.source.as_str())
    }

    /// Whether the rule's agent filter admits `agent`.
    pub(crate) fn admits_agent(&self, agent: &str) -> bool {
        self.agents.as_ref().is_none_or(|a| a.matches(agent))
    }

    /// Order key: higher priority first, then the more restrictive verdict, then declaration order.
    pub(crate) fn order_key(&self) -> (std::cmp::Reverse<i64>, std::cmp::Reverse<Verdict>) {
        (
            std::cmp::Reverse(self.priority),
            std::cmp::Reverse(self.effect),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(RateLimit::parse("100/hour").unwrap().count, 100);
        assert_eq!(
            RateLimit::parse("5/m").unwrap().per,
            Duration::from_secs(60)
        );
        assert_eq!(RateLimit::parse("0/hour").unwrap().count, 0);
        for bad in ["", "100", "x/hour", "10/fortnight", "-1/s"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }
}
