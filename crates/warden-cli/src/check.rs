//! `warden check`: one action in, one decision out.

use anyhow::{Context as _, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use warden_core::{Action, Verdict};
use warden_policy::PolicySet;

/// Largest action document accepted (a hostile caller cannot exhaust memory).
pub(crate) const MAX_ACTION_BYTES: u64 = 8 * 1024 * 1024;

/// Reads and validates an Action from a file or stdin (`None` or `-`).
pub(crate) fn read_action(path: Option<&Path>) -> Result<Action> {
    let (label, text) = match path {
        Some(p) if p != Path::new("-") => {
            let f = std::fs::File::open(p).with_context(|| format!("{}", p.display()))?;
            (
                p.display().to_string(),
                read_limited(f).with_context(|| p.display().to_string())?,
            )
        }
        _ => (
            "<stdin>".to_owned(),
            read_limited(std::io::stdin().lock()).context("<stdin>")?,
        ),
    };
    serde_json::from_str(&text).with_context(|| format!("{label}: invalid action"))
}

fn read_limited(r: impl Read) -> Result<String> {
    let mut buf = String::new();
    r.take(MAX_ACTION_BYTES + 1).read_to_string(&mut buf)?;
    if buf.len() as u64 > MAX_ACTION_BYTES {
        anyhow::bail!("action is larger than {MAX_ACTION_BYTES} bytes");
    }
    Ok(buf)
}

/// Exit code for a verdict.
pub(crate) fn exit_code(v: Verdict) -> u8 {
    match v {
        Verdict::Allow | Verdict::Warn | Verdict::Transform => 0,
        Verdict::Deny => 1,
        Verdict::Escalate => 3,
    }
}

/// Audit durability on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum DurabilityArg {
    /// Return once the record is on disk.
    Sync,
    /// Return once the record is queued (flushed before exit).
    Batched,
}

impl DurabilityArg {
    /// The audit log's durability for this flag.
    pub(crate) fn into_durability(self) -> warden_audit::Durability {
        match self {
            DurabilityArg::Sync => warden_audit::Durability::Sync,
            DurabilityArg::Batched => warden_audit::Durability::Batched,
        }
    }
}

pub(crate) fn run(
    policy: &[PathBuf],
    action: Option<&Path>,
    data_dir: Option<&Path>,
    durability: DurabilityArg,
) -> Result<u8> {
    let decision = match data_dir {
        None => {
            let set = PolicySet::load(policy)?;
            let action = read_action(action)?;
            set.decide(&action)
        }
        Some(dir) => {
            let kernel = warden_kernel::Kernel::builder(warden_policy::PolicyHandle::load(policy)?)
                .data_dir(dir, durability.into_durability())?
                .build()?;
            let action = read_action(action)?;
            let decision = kernel.decide(&action);
            kernel.flush()?;
            decision
        }
    };
    println!("{}", serde_json::to_string(&decision)?);
    Ok(exit_code(decision.verdict))
}
