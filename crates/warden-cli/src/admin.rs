//! `warden kill|unkill` and `warden audit verify|tail|export|prove`.

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use warden_audit::{AuditConfig, AuditError, AuditLog, Durability, ExportFormat, ExportOptions};
use warden_kernel::AuditEvent;
use warden_runtime::{KillSwitch, KillTarget, now_ms};

/// Which kill to set or lift: exactly one of the three.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Target {
    /// An agent id.
    #[arg(long)]
    agent: Option<String>,
    /// A session id.
    #[arg(long)]
    session: Option<String>,
    /// Everything.
    #[arg(long)]
    all: bool,
}

impl Target {
    fn target(&self) -> KillTarget {
        match (&self.agent, &self.session) {
            (Some(a), _) => KillTarget::Agent(a.clone()),
            (_, Some(s)) => KillTarget::Session(s.clone()),
            _ => KillTarget::All,
        }
    }
}

/// `warden kill`.
#[derive(Args)]
pub(crate) struct KillArgs {
    #[command(flatten)]
    target: Target,
    /// Why (recorded in the audit log and shown in every denied decision).
    #[arg(long, required = true)]
    reason: String,
    /// Data directory shared with the running kernels.
    #[arg(long, required = true)]
    data_dir: PathBuf,
    /// Who is acting (recorded).
    #[arg(long)]
    by: Option<String>,
}

/// `warden unkill`.
#[derive(Args)]
pub(crate) struct UnkillArgs {
    #[command(flatten)]
    target: Target,
    /// Data directory shared with the running kernels.
    #[arg(long, required = true)]
    data_dir: PathBuf,
    /// Who is acting (recorded).
    #[arg(long)]
    by: Option<String>,
}

/// Appends one event to the log, or explains who will.
fn record(data_dir: &Path, event: AuditEvent) -> Result<()> {
    let config = AuditConfig {
        durability: Durability::Sync,
        ..AuditConfig::default()
    };
    match AuditLog::<AuditEvent>::open(data_dir, config) {
        Ok(log) => {
            log.append(event)?;
            log.close()?;
            Ok(())
        }
        Err(AuditError::Locked(_)) => {
            eprintln!(
                "note: a running Warden process holds the audit log; it records this change when it picks it up"
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn kill(args: KillArgs) -> Result<u8> {
    let ks = KillSwitch::open(&args.data_dir, Duration::from_secs(3600))?;
    let target = args.target.target();
    ks.kill(target.clone(), &args.reason, args.by.as_deref())?;
    record(
        &args.data_dir,
        AuditEvent::Kill {
            ts_ms: now_ms(),
            target: target.clone(),
            reason: args.reason.clone(),
            by: args.by.clone(),
        },
    )?;
    println!("killed {target}: {}", args.reason);
    Ok(0)
}

pub(crate) fn unkill(args: UnkillArgs) -> Result<u8> {
    let ks = KillSwitch::open(&args.data_dir, Duration::from_secs(3600))?;
    let target = args.target.target();
    let was = ks.lift(&target)?;
    if !was {
        eprintln!("{target} was not killed");
        return Ok(1);
    }
    record(
        &args.data_dir,
        AuditEvent::Unkill {
            ts_ms: now_ms(),
            target: target.clone(),
            by: args.by.clone(),
        },
    )?;
    println!("lifted the kill of {target}");
    Ok(0)
}

/// Export formats on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// One `{"index", "leaf_hash", "record"}` object per line.
    Jsonl,
    /// One CloudEvents 1.0 JSON event per line.
    Cloudevents,
}

/// `warden audit ...`.
#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Recompute the whole log, check every signed tree head; exit 1 naming the first bad position.
    Verify {
        /// Data directory.
        #[arg(long, required = true)]
        data_dir: PathBuf,
    },
    /// Print the last records.
    Tail {
        /// Data directory.
        #[arg(long, required = true)]
        data_dir: PathBuf,
        /// How many.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u64,
    },
    /// Export records as JSON lines or CloudEvents.
    Export {
        /// Data directory.
        #[arg(long, required = true)]
        data_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// First record index.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many records.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Inclusion proof of record N in the latest signed tree head (JSON).
    Prove {
        /// Data directory.
        #[arg(long, required = true)]
        data_dir: PathBuf,
        /// Record index.
        #[arg(long)]
        index: u64,
    },
}

pub(crate) fn audit(cmd: AuditCommand) -> Result<u8> {
    match cmd {
        AuditCommand::Verify { data_dir } => {
            match warden_audit::verify(&data_dir, &Default::default()) {
                Ok(report) => {
                    println!("{}", serde_json::to_string(&report)?);
                    Ok(0)
                }
                Err(e) if e.violation().is_some() => {
                    eprintln!("warden: audit log FAILED verification: {e}");
                    Ok(1)
                }
                Err(e) => Err(e).with_context(|| format!("verify {}", data_dir.display())),
            }
        }
        AuditCommand::Tail { data_dir, lines } => {
            let out = std::io::stdout();
            let mut out = out.lock();
            for r in warden_audit::tail(&data_dir, lines)? {
                writeln!(out, "{}", r.as_str())?;
            }
            Ok(0)
        }
        AuditCommand::Export {
            data_dir,
            format,
            from,
            limit,
        } => {
            let options = ExportOptions {
                format: match format {
                    Format::Jsonl => ExportFormat::JsonLines,
                    Format::Cloudevents => ExportFormat::CloudEvents,
                },
                from,
                limit,
                ..ExportOptions::default()
            };
            let out = std::io::stdout();
            let mut out = std::io::BufWriter::new(out.lock());
            warden_audit::export(&data_dir, &options, &mut out)?;
            out.flush()?;
            Ok(0)
        }
        AuditCommand::Prove { data_dir, index } => {
            let bundle = warden_audit::prove_inclusion(&data_dir, index)?;
            println!("{}", serde_json::to_string(&bundle)?);
            Ok(0)
        }
    }
}
