//! The Warden policy language, compiled.
//!
//! Warden YAML rules (with CEL conditions) and AGT `governance.toolkit/v1`
//! files compile into one immutable [`PolicySet`]: rules indexed by
//! (intervention point, tool), globs and CEL programs compiled once, every
//! evaluation bounded and fail-closed. [`PolicyHandle`] swaps a whole set
//! atomically on reload.
//!
//! ```
//! use warden_core::{Action, Verdict};
//! use warden_policy::PolicySet;
//!
//! let set = PolicySet::from_yaml(r#"
//! apiVersion: warden.dev/v1
//! kind: Policy
//! name: example
//! default: allow
//! rules:
//!   - id: no-drop
//!     tools: ["sql.*"]
//!     when: args.query.matches("(?i)\\bdrop\\s+table\\b")
//!     effect: deny
//!     reason: destructive SQL
//! "#).unwrap();
//!
//! let mut args = serde_json::Map::new();
//! args.insert("query".into(), "DROP TABLE users".into());
//! let action = Action::tool_call("bot", "sql.exec").unwrap().with_args(args);
//! assert_eq!(set.evaluate(&action).verdict, Verdict::Deny);
//! ```

mod agt_condition;
mod cedar;
mod compile;
mod condition;
mod duration;
mod engines;
mod error;
mod facts;
mod fast;
mod handle;
pub mod lint;
mod load;
mod pattern;
mod quota;
mod rego;
mod rings;
mod rule;
mod set;
mod source;
pub mod testing;
pub mod workloads;

pub use cedar::{CedarPolicy, CedarSource, CedarWarning};
pub use compile::AGT_APPROVAL_TIMEOUT_MS;
pub use condition::{MAX_COMPREHENSION_DEPTH, MAX_CONDITION_BYTES, MAX_INPUT_DEPTH, VARIABLES};
pub use engines::{PolicySource, SourceDecision, SourceResult, SourceTrace};
pub use error::{Origin, PolicyError};
pub use facts::{AGENT_KEYS, AgentFacts, BASELINE_TRUST, MAX_TRUST};
pub use handle::PolicyHandle;
pub use load::{Source, is_test_file};
pub use quota::{Quota, QuotaOrigin, QuotaScope};
pub use rego::{RegoSource, RegoTest};
pub use rings::{
    DEFAULT_TIER_RINGS, DEFAULT_TOOL_RING, Elevation, MAX_ELEVATION_TTL, Ring, RingPolicy,
    RingQuota, TIER_NAMES, ToolRing, default_tier_ring,
};
pub use rule::{OnError, RateLimit, Rule, RuleSource};
pub use set::{Evaluation, Explanation, Limits, Outcome, PolicySet, RuleResult, Trace};
pub use source::{AGT_API_VERSION, MAX_SOURCE_BYTES, WARDEN_API_VERSION};
