//! `warden policy lint`: findings that load fine but are probably mistakes.

use crate::engines::PolicySource;
use crate::rule::Rule;
use crate::set::PolicySet;
use std::fmt;

/// One lint finding (all are warnings; load errors are reported by loading).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `file:line:col` of the rule.
    pub origin: String,
    /// Rule id (a Cedar policy id, or the Cedar source id for source-wide findings).
    pub rule: String,
    /// Short code: `shadowed` or `never-matches` (Warden rules);
    /// `never-applies`, `unvalidated` or `cedar-validator` (Cedar policies).
    pub code: &'static str,
    /// Explanation.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: warning[{}]: rule `{}`: {}",
            self.origin, self.code, self.rule, self.message
        )
    }
}

/// Whether `a`, evaluated before `b`, always decides whenever `b` could apply.
fn covers(a: &Rule, b: &Rule) -> bool {
    a.condition.is_none()
        && (a.points & b.points) == b.points
        && match (&a.tools, &b.tools) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(x), Some(y)) => y.is_subset_of(x),
        }
        && match (&a.agents, &b.agents) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(x), Some(y)) => y.is_subset_of(x),
        }
}

/// Lints a compiled set.
pub fn lint(set: &PolicySet) -> Vec<Finding> {
    let rules = set.rules();
    let mut out = Vec::new();
    for (i, b) in rules.iter().enumerate() {
        let finding = |code, message| Finding {
            origin: b.origin.to_string(),
            rule: b.id.clone(),
            code,
            message,
        };
        if b.condition.as_ref().is_some_and(|c| c.constant_false) {
            out.push(finding(
                "never-matches",
                "its condition is the constant `false`".to_owned(),
            ));
            continue;
        }
        if let Some(a) = rules.iter().take(i).find(|a| covers(a, b)) {
            out.push(finding(
                "shadowed",
                format!(
                    "unreachable: rule `{}` ({}) has higher rank, no condition and covers every point, tool and agent this rule applies to",
                    a.id, a.origin
                ),
            ));
            continue;
        }
    }
    for cedar in set.sources().iter().filter_map(PolicySource::as_cedar) {
        for w in cedar.warnings() {
            out.push(Finding {
                origin: w.origin.to_string(),
                rule: if w.policy.is_empty() {
                    cedar.id().to_owned()
                } else {
                    w.policy.clone()
                },
                code: w.code,
                message: w.message.clone(),
            });
        }
    }
    out
}
