//! `warden`: the command-line face of Warden.
//!
//! Exit codes (scripts rely on them): 0 the action may proceed (allow, warn,
//! transform) or the command succeeded; 1 deny, or failed tests/lint; 3
//! escalate; 2 invalid input or policy (message on stderr naming file, line
//! and field).

mod admin;
mod bench;
mod bench_sidecar;
mod check;
mod identity_cmd;
mod mcp_cmd;
mod policy_cmd;
mod serve_cmd;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Warden: a fail-closed governance checkpoint for AI agents.
#[derive(Parser)]
#[command(name = "warden", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide one action (JSON on stdin or --action) against policies; print the Decision as one JSON line.
    Check {
        /// Policy files or directories (repeatable). Required: Warden never runs without a policy.
        #[arg(long = "policy", short = 'p', required = true, num_args = 1..)]
        policy: Vec<PathBuf>,
        /// File with the Action JSON; `-` or omitted reads stdin.
        #[arg(long)]
        action: Option<PathBuf>,
        /// Run the full kernel on this data directory: kill switch state and audit log live here.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// With --data-dir: `sync` returns only once the decision's audit record is on disk.
        #[arg(long, value_enum, default_value_t = check::DurabilityArg::Sync)]
        durability: check::DurabilityArg,
    },
    /// Run the sidecar: the HTTP decision API, approvals, kill switch, audit proofs, metrics.
    Serve(serve_cmd::ServeArgs),
    /// MCP gateway: run a stdio MCP server behind Warden and speak MCP on stdio (docs/mcp.md).
    Mcp(mcp_cmd::McpArgs),
    /// Agent identities: did:key files, signed envelopes (docs/identity.md).
    Id {
        #[command(subcommand)]
        command: identity_cmd::IdCommand,
    },
    /// Issue a delegation token (never wider than its --proof), or `check` a chain.
    Delegate(identity_cmd::DelegateArgs),
    /// Agents' trust scores (docs/trust.md).
    Trust {
        #[command(subcommand)]
        command: identity_cmd::TrustCommand,
    },
    /// Kill an agent, a session or everything: every kernel on the data directory denies their next action.
    Kill(admin::KillArgs),
    /// Lift a kill.
    Unkill(admin::UnkillArgs),
    /// Read, verify and prove the audit log.
    Audit {
        #[command(subcommand)]
        command: admin::AuditCommand,
    },
    /// Policy engineering: lint, test, explain.
    Policy {
        #[command(subcommand)]
        command: policy_cmd::PolicyCommand,
    },
    /// Run benchmark workloads and print one JSON line per workload (DESIGN.md §6).
    Bench {
        /// Which group: `policy`, `kernel`, or `kernel-sustained` (a long batched run
        /// reporting latency and RSS per million decisions).
        group: bench::Group,
        /// Print JSON lines (the default output is also JSON; kept for script compatibility).
        #[arg(long)]
        json: bool,
        /// Measurement time per workload in milliseconds.
        #[arg(long, default_value_t = 1000)]
        time_ms: u64,
        /// Decisions for `kernel-sustained`.
        #[arg(long, default_value_t = 10_000_000)]
        decisions: u64,
    },
}

/// Exit code for invalid input or policy.
pub(crate) const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check {
            policy,
            action,
            data_dir,
            durability,
        } => check::run(&policy, action.as_deref(), data_dir.as_deref(), durability),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Mcp(args) => mcp_cmd::run(args),
        Command::Id { command } => identity_cmd::id(command),
        Command::Delegate(args) => identity_cmd::delegate_cmd(args),
        Command::Trust { command } => identity_cmd::trust(command),
        Command::Kill(args) => admin::kill(args),
        Command::Unkill(args) => admin::unkill(args),
        Command::Audit { command } => admin::audit(command),
        Command::Policy { command } => policy_cmd::run(command),
        Command::Bench {
            group,
            json: _,
            time_ms,
            decisions,
        } => bench::run(group, time_ms, decisions),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}
