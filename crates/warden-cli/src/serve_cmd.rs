//! `warden serve`: the sidecar decision API (crate warden-server).

use anyhow::{Context as _, Result};
use std::path::PathBuf;
use warden_server::{Overrides, RunningServer, ServerConfig, TokenSource};

/// Flags of `warden serve` (scripts rely on these forms).
#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (warden.yaml). Without it: 127.0.0.1:8080, the
    /// built-in default policy pack, data in ./warden-data.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address HOST:PORT (overrides config and WARDEN_LISTEN).
    #[arg(long)]
    listen: Option<String>,
    /// Also serve the API on this Unix-domain socket (overrides config and
    /// WARDEN_UNIX_SOCKET); same-host agents skip the TCP stack.
    #[arg(long)]
    unix_socket: Option<PathBuf>,
    /// Policy files or directories (repeatable; replaces the configured list).
    #[arg(long = "policy", short = 'p')]
    policy: Vec<PathBuf>,
    /// Data directory: kill switch state, audit log, keys, admin token.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Audit durability: `sync` answers only once the decision's record is on disk.
    #[arg(long, value_enum)]
    durability: Option<crate::check::DurabilityArg>,
}

pub(crate) fn run(args: ServeArgs) -> Result<u8> {
    init_logging();
    let flags = Overrides {
        listen: args.listen,
        unix_socket: args.unix_socket,
        policy: args.policy,
        data_dir: args.data_dir,
        durability: args
            .durability
            .map(crate::check::DurabilityArg::into_durability),
    };
    let config = ServerConfig::resolve(args.config.as_deref(), |k| std::env::var(k).ok(), flags)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("warden-serve")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(0)
}

async fn serve(config: ServerConfig) -> Result<()> {
    let policy = if config.policy.is_empty() {
        "built-in default pack (policies/default)".to_owned()
    } else {
        config
            .policy
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let data_dir = config.data_dir.clone();
    let server = RunningServer::start(config).await?;
    let addr = server.local_addr();
    let set = server.kernel().policy();
    println!("warden serve: listening on http://{addr}");
    if let Some(path) = server.unix_socket() {
        println!("  unix:   {} (mode 0660)", path.display());
    }
    println!(
        "  policy: {policy} ({} rules, default {}, {})",
        set.rules().len(),
        set.default_verdict().as_str(),
        set.hash()
    );
    println!("  data:   {} (audit log, kill switch)", data_dir.display());
    if let Some(trust) = server.trust().and_then(|t| t.location()) {
        println!("  trust:  {trust}");
    }
    match server.admin_token_source() {
        TokenSource::Environment => println!("  admin:  token from WARDEN_ADMIN_TOKEN"),
        TokenSource::File(p) => println!("  admin:  bearer token in {}", p.display()),
    }
    println!("  try:    curl -s http://{addr}/v1/decide -H 'content-type: application/json' \\");
    println!(
        "            -d '{{\"agent\":\"demo\",\"tool\":\"sql.query\",\"args\":{{\"query\":\"DROP TABLE users\"}}}}'"
    );
    wait_for_signals(&server).await;
    tracing::info!("shutting down: draining connections and flushing the audit log");
    server.shutdown().await.context("flushing the audit log")?;
    Ok(())
}

/// Returns on SIGINT/SIGTERM; reloads the policy on SIGHUP meanwhile.
async fn wait_for_signals(server: &RunningServer) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    let r = std::sync::Arc::clone(server.reloader());
                    let _ = tokio::task::spawn_blocking(move || r.reload("SIGHUP")).await;
                }
                _ = term.recv() => return,
                _ = int.recv() => return,
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
