//! Warden's runtime controls, each usable on its own and composed by the kernel:
//!
//! - [`KillSwitch`]: stop an agent, a session or everything, effective on the
//!   next decision, persisted in the data directory for other processes;
//! - [`QuotaBook`]: GCRA rate limits and call/token/cost budgets declared in
//!   policy files;
//! - [`Approvals`]: pending escalations, resolved by approvers or by timeout;
//! - [`RingBook`]: execution rings, per-ring limits and temporary elevations.

mod approval;
mod killswitch;
mod quota;
mod ring;
mod scope_key;

pub use approval::{
    ApprovalBackend, ApprovalError, ApprovalRequest, Approvals, ChannelBackend, Resolution,
};
pub use killswitch::{
    KILL_FILE, Kill, KillChange, KillCheck, KillError, KillState, KillSwitch, KillTarget,
};
pub use quota::{QuotaBook, QuotaDenial, Usage};
pub use ring::{RingBook, RingDenial, RingPermit};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    warden_core::unix_ms()
}
