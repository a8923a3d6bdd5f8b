//! The enforcement pipeline: every action an agent takes passes
//! [`Kernel::decide`], which composes the stages of DESIGN.md §3 — kill switch
//! → identity → ring → quotas → policy → escalation — and hands a record of
//! the decision to the audit log before returning it.
//!
//! Decisions never error: a stage that cannot decide, an evaluation error, an
//! unwritable audit log — each becomes a deny with a reason.

mod identity;
mod kernel;
mod record;
mod ring;
mod stage;

pub use identity::{IdentityStage, TrustFeed};
pub use kernel::{ArgsMode, DEFAULT_SLOT_TTL, Kernel, KernelBuilder, KernelError, Outcome};
pub use record::{ActionBody, AuditEvent, AuditSink, DecisionTag};
pub use ring::RingStage;
pub use stage::{KillStage, QuotaStage, Stage, StageOrder, Stop};
