//! Reserved reasons: the `runtime_error:<kind>` family every fail-closed deny carries.

use std::fmt;

/// Why a decision failed closed. Each kind has a reserved reason string,
/// `runtime_error:<kind>`, that policies and dashboards can rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeError {
    /// An evaluation bound (CEL cost budget, deadline) was exceeded.
    BudgetExceeded,
    /// A condition failed to evaluate (type error, missing field, bad result type).
    EvaluationError,
    /// No policy is loaded.
    NoPolicy,
    /// The action itself was malformed.
    InvalidAction,
    /// Anything else that went wrong inside Warden.
    Internal,
}

impl RuntimeError {
    /// The reserved reason string.
    pub const fn reason(self) -> &'static str {
        match self {
            RuntimeError::BudgetExceeded => "runtime_error:budget_exceeded",
            RuntimeError::EvaluationError => "runtime_error:evaluation_error",
            RuntimeError::NoPolicy => "runtime_error:no_policy",
            RuntimeError::InvalidAction => "runtime_error:invalid_action",
            RuntimeError::Internal => "runtime_error:internal",
        }
    }

    /// Whether `reason` is one of the reserved strings.
    pub fn is_reserved(reason: &str) -> bool {
        reason.starts_with("runtime_error:")
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}
