//! Warden's decision vocabulary.
//!
//! Every adapter (CLI, sidecar, MCP gateway, Python) turns what an agent wants
//! to do into an [`Action`]; the kernel answers with a [`Decision`]. Their JSON
//! wire forms are a public contract documented in `docs/wire-format.md`.
//!
//! ```
//! use warden_core::{Action, Point};
//!
//! let action: Action = serde_json::from_str(
//!     r#"{"agent": "billing-bot", "tool": "sql.query", "args": {"q": "select 1"}}"#,
//! ).unwrap();
//! assert_eq!(action.point, Point::PreToolCall);
//! assert_eq!(action.tool(), Some("sql.query"));
//! ```

mod action;
mod decision;
mod obligation;
mod reason;

pub use action::{Action, ActionError, Point};
pub use decision::{Decision, Verdict, unix_ms};
pub use obligation::{Obligation, ObligationError, REDACTED};
pub use reason::RuntimeError;
