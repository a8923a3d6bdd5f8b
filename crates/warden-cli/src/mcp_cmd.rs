//! `warden mcp`: the MCP gateway in front of a stdio MCP server, a
//! Streamable HTTP server, or (`--config`) several named stdio and
//! Streamable HTTP servers.

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use warden_mcp::{
    ClientAuth, Gateway, GatewayConfig, HttpTarget, PinStore, ServerCommand, UpstreamSpec,
    UpstreamTransport,
};

/// `warden mcp` arguments.
#[derive(clap::Args)]
pub(crate) struct McpArgs {
    /// Policy files or directories (repeatable). Required: the gateway never runs without a policy.
    #[arg(long = "policy", short = 'p', required_unless_present_any = ["echo_server", "config"], num_args = 1..)]
    policy: Vec<PathBuf>,
    /// A gateway file (docs/mcp.md): named upstream servers and these
    /// options; flags given as well override the file's values.
    #[arg(long, conflicts_with_all = ["command", "upstream", "server_name"])]
    config: Option<PathBuf>,
    /// Keep the kill switch, the audit log and the tool pins in this directory
    /// (without it, pins last as long as the process and nothing is audited).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Audit durability with --data-dir [default: sync].
    #[arg(long, value_enum)]
    durability: Option<crate::check::DurabilityArg>,
    /// The agent id calls are decided for [default: mcp-client].
    #[arg(long)]
    agent: Option<String>,
    /// Label of the server in pins and action context (default: the command line).
    #[arg(long)]
    server_name: Option<String>,
    /// Largest message accepted from either side, in bytes [default: 4194304].
    #[arg(long)]
    max_message_bytes: Option<usize>,
    /// Longest wait for an approver on an escalated call, in seconds (the
    /// rule's own timeout applies when shorter) [default: 600].
    #[arg(long)]
    approval_wait_secs: Option<u64>,
    /// The stdio MCP server to run: `warden mcp --policy p.yaml -- npx server ...`.
    #[arg(last = true, required_unless_present_any = ["echo_server", "upstream", "config"], conflicts_with = "upstream", num_args = 1..)]
    command: Vec<OsString>,
    /// Front a Streamable HTTP MCP server at this `http://` or `https://` URL
    /// (instead of a stdio command); the gateway serves Streamable HTTP on
    /// --listen, same path. TLS certificates are always verified (Mozilla
    /// roots, plus --upstream-ca).
    #[arg(long)]
    upstream: Option<String>,
    /// With an https:// --upstream: also trust the CA certificates in this
    /// PEM file (a server with a certificate from a private CA).
    #[arg(long, value_name = "PATH", requires = "upstream")]
    upstream_ca: Option<PathBuf>,
    /// With --upstream: send this header on every request to the server
    /// (repeatable), e.g. 'Authorization: Bearer ${API_TOKEN}'; `${VAR}` is
    /// replaced by the environment variable VAR (unset: refused at start).
    /// Headers the gateway manages (Mcp-Session-Id, Mcp-Protocol-Version,
    /// Mcp-Method, Mcp-Name, Content-Type, Accept, Host, Content-Length) are
    /// refused. Values are never logged.
    #[arg(long, value_name = "NAME: VALUE", requires = "upstream")]
    upstream_header: Vec<String>,
    /// Where the HTTP gateway listens: with --upstream or a single `url`
    /// server in --config it proxies that server [default: 127.0.0.1:8090];
    /// with several servers in --config (or a `prefix`) it serves the
    /// multi-upstream gateway on path /mcp, a hub per client session
    /// (without it, several servers are served on stdio).
    #[arg(long)]
    listen: Option<String>,
    /// The HTTP gateway's clients must send `Authorization: Bearer <token>`
    /// with the token in this file (at least 16 printable characters;
    /// refused if every user may read it). WARDEN_MCP_TOKEN, when set, wins.
    /// Without a token the gateway listens on loopback addresses only.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Let the HTTP gateway listen on a non-loopback address without a
    /// client token: anyone who can reach it can use every upstream through
    /// it. Only behind something else that authenticates clients.
    #[arg(long, conflicts_with = "token_file")]
    insecure_no_auth: bool,
    /// With --listen and several servers: client sessions served at once;
    /// beyond it new sessions get 503 [default: 64].
    #[arg(long)]
    max_sessions: Option<usize>,
    /// With --listen and several servers: seconds a session may stay idle
    /// before its upstreams are stopped [default: 1800].
    #[arg(long)]
    session_idle_secs: Option<u64>,
    /// Also serve the sidecar API (approvals, kill switch, audit head and
    /// proofs, metrics; docs/server.md) for this gateway's kernel on
    /// HOST:PORT, so an approver can answer escalated calls. Needs --data-dir;
    /// the admin token is WARDEN_ADMIN_TOKEN or DATA_DIR/admin.token.
    #[arg(long)]
    api: Option<String>,
    /// Instead of a gateway, be a minimal stdio MCP server with one tool,
    /// `echo` (the upstream of `warden bench mcp`).
    #[arg(long, hide = true)]
    echo_server: bool,
}

/// What the gateway fronts.
enum Mode {
    /// One stdio server, passed through byte-for-byte.
    Stdio(ServerCommand),
    /// One Streamable HTTP server, served on `listen`.
    Http { target: HttpTarget, listen: String },
    /// Several named stdio or HTTP servers, served on stdio, or over
    /// Streamable HTTP when `listen` is set: (name, prefix, transport).
    Multi {
        servers: Vec<(String, String, UpstreamTransport)>,
        listen: Option<(String, warden_mcp::ListenLimits)>,
    },
}

/// The flags and the gateway file (if any) merged: flags win.
struct Resolved {
    policy: Vec<PathBuf>,
    data_dir: Option<PathBuf>,
    durability: warden_audit::Durability,
    agent: String,
    label: String,
    max_message_bytes: usize,
    approval_wait: std::time::Duration,
    api: Option<String>,
    /// Who may use an HTTP gateway (unused on stdio).
    auth: ClientAuth,
    mode: Mode,
}

/// `--upstream-header 'Name: value'`, `${VAR}` expanded from the environment.
fn header_flag(flag: &str) -> Result<(String, String)> {
    let Some((name, value)) = flag.split_once(':') else {
        bail!("--upstream-header needs `Name: value` (no `:` in it)");
    };
    let name = name.trim();
    let value = warden_mcp::expand_env(value.trim(), |k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("--upstream-header `{name}`: {e}"))?;
    Ok((name.to_owned(), value))
}

/// The `--upstream` endpoint with `--upstream-ca` and `--upstream-header`.
fn upstream_target(
    url: &str,
    ca: Option<&std::path::Path>,
    headers: &[String],
) -> Result<HttpTarget> {
    let mut target = HttpTarget::new(url)?;
    if let Some(ca) = ca {
        target = target.with_ca_cert(ca)?;
    }
    for flag in headers {
        let (name, value) = header_flag(flag)?;
        target = target
            .with_header(&name, &value)
            .with_context(|| "--upstream-header".to_owned())?;
    }
    Ok(target)
}

/// The client token: `WARDEN_MCP_TOKEN`, else the token file (flag, then
/// gateway file), else none (loopback only unless `insecure`).
fn client_auth(token_file: Option<&std::path::Path>, insecure: bool) -> Result<ClientAuth> {
    let env = match std::env::var(warden_mcp::TOKEN_ENV) {
        Ok(t) => Some(t),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("{} is not valid UTF-8", warden_mcp::TOKEN_ENV)
        }
    };
    Ok(ClientAuth::resolve(env.as_deref(), token_file, insecure)?)
}

fn resolve(args: McpArgs) -> Result<Resolved> {
    let file = match &args.config {
        Some(path) => Some(GatewayConfig::load(path)?),
        None => None,
    };
    let f = file.as_ref();
    let policy = if args.policy.is_empty() {
        f.map(|c| c.policy.clone()).unwrap_or_default()
    } else {
        args.policy.clone()
    };
    if policy.is_empty() {
        bail!("no policy: give --policy or `policy:` in the gateway file");
    }
    let durability = match (args.durability, f.and_then(|c| c.durability)) {
        (Some(d), _) => d.into_durability(),
        (None, Some(warden_mcp::ConfigDurability::Batched)) => warden_audit::Durability::Batched,
        (None, _) => warden_audit::Durability::Sync,
    };
    let data_dir = args.data_dir.or_else(|| f.and_then(|c| c.data_dir.clone()));
    let api = args.api.or_else(|| f.and_then(|c| c.api.clone()));
    if api.is_some() && data_dir.is_none() {
        bail!("--api needs --data-dir (or `data_dir:` in the gateway file)");
    }
    let listen = args.listen.or_else(|| f.and_then(|c| c.listen.clone()));
    let (label, mode) = match (f, &args.upstream) {
        (Some(c), _) if c.is_multi() => {
            let mut servers = Vec::with_capacity(c.servers.len());
            for s in &c.servers {
                servers.push((s.name.clone(), s.prefix.clone(), s.transport()?));
            }
            let names: Vec<&str> = c.servers.iter().map(|s| s.name.as_str()).collect();
            let defaults = warden_mcp::ListenLimits::default();
            let limits = warden_mcp::ListenLimits {
                max_sessions: args
                    .max_sessions
                    .or(c.max_sessions)
                    .unwrap_or(defaults.max_sessions),
                idle_timeout: args
                    .session_idle_secs
                    .or(c.session_idle_secs)
                    .map_or(defaults.idle_timeout, std::time::Duration::from_secs),
                ..defaults
            };
            if limits.max_sessions == 0 || limits.idle_timeout.is_zero() {
                bail!("--max-sessions and --session-idle-secs must be at least 1");
            }
            let listen = listen.clone().map(|l| (l, limits));
            (names.join(", "), Mode::Multi { servers, listen })
        }
        (Some(c), _) => {
            let Some(s) = c.servers.first() else {
                bail!("the gateway file lists no servers");
            };
            let mode = match (s.http_target()?, s.server_command()) {
                (Some(target), _) => Mode::Http {
                    target,
                    listen: listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
                },
                (None, Some(cmd)) => Mode::Stdio(cmd),
                (None, None) => bail!("server `{}` has neither `command` nor `url`", s.name),
            };
            (s.name.clone(), mode)
        }
        (None, Some(url)) => (
            args.server_name.clone().unwrap_or_else(|| url.clone()),
            Mode::Http {
                target: upstream_target(url, args.upstream_ca.as_deref(), &args.upstream_header)?,
                listen: listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            },
        ),
        (None, None) => {
            let Some((program, rest)) = args.command.split_first() else {
                bail!("no MCP server command given (after `--`)");
            };
            let label = args.server_name.clone().unwrap_or_else(|| {
                args.command
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            (
                label,
                Mode::Stdio(ServerCommand::new(program, rest.to_vec())),
            )
        }
    };
    match mode {
        Mode::Stdio(_) if listen.is_some() => bail!(
            "--listen applies to an HTTP upstream (--upstream, or a `url` server) or to several servers in --config"
        ),
        Mode::Multi {
            listen: Some(_), ..
        } => {}
        _ if args.max_sessions.is_some() || args.session_idle_secs.is_some() => {
            bail!("--max-sessions and --session-idle-secs apply to several servers with --listen")
        }
        _ => {}
    }
    let serves_http = matches!(
        mode,
        Mode::Http { .. }
            | Mode::Multi {
                listen: Some(_),
                ..
            }
    );
    let token_file = args
        .token_file
        .clone()
        .or_else(|| f.and_then(|c| c.token_file.clone()));
    if !serves_http && (token_file.is_some() || args.insecure_no_auth) {
        bail!("--token-file and --insecure-no-auth apply to an HTTP gateway (--listen)");
    }
    let auth = if serves_http {
        client_auth(token_file.as_deref(), args.insecure_no_auth)?
    } else {
        ClientAuth::loopback_only()
    };
    Ok(Resolved {
        policy,
        data_dir,
        durability,
        agent: args
            .agent
            .or_else(|| f.and_then(|c| c.agent.clone()))
            .unwrap_or_else(|| warden_mcp::DEFAULT_AGENT.to_owned()),
        label,
        max_message_bytes: args
            .max_message_bytes
            .or_else(|| f.and_then(|c| c.max_message_bytes))
            .unwrap_or(warden_mcp::DEFAULT_MAX_MESSAGE_BYTES),
        approval_wait: args
            .approval_wait_secs
            .or_else(|| f.and_then(|c| c.approval_wait_secs))
            .map_or(
                warden_mcp::DEFAULT_APPROVAL_WAIT,
                std::time::Duration::from_secs,
            ),
        api,
        auth,
        mode,
    })
}

/// Where the HTTP gateway listens by default.
const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

pub(crate) fn run(args: McpArgs) -> Result<u8> {
    if args.echo_server {
        echo_server()?;
        return Ok(0);
    }
    let r = resolve(args)?;
    let policy = warden_policy::PolicyHandle::load(&r.policy)?;
    // Trust scores: the data directory's book, fed by the kernel's audit
    // stream, saved every second and by `kernel.flush()` at exit.
    let mut _trust_sync = None;
    let (kernel, pins) = match &r.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
            let trust = Arc::new(warden_identity::TrustBook::open(dir, Default::default())?);
            let kernel = Arc::new(
                warden_kernel::Kernel::builder(policy)
                    .data_dir(dir, r.durability)?
                    .trust_feed(Arc::clone(&trust), None)
                    .build()?,
            );
            _trust_sync = Some(
                trust.spawn_sync(warden_identity::trust::DEFAULT_SYNC_INTERVAL, |e| {
                    eprintln!("warden mcp: trust scores not saved (will retry): {e}")
                })?,
            );
            (kernel, Arc::new(PinStore::open(dir)?))
        }
        None => (
            Arc::new(warden_kernel::Kernel::builder(policy).build()?),
            Arc::new(PinStore::in_memory()),
        ),
    };
    // Every upstream's gateway shares the kernel and the pin store; the
    // label keys pins and names the server in the action context.
    let gateway = |label: &str| {
        Arc::new(
            Gateway::new(Arc::clone(&kernel), &r.agent, label)
                .with_shared_pins(Arc::clone(&pins))
                .with_max_message_bytes(r.max_message_bytes)
                .with_approval_wait(r.approval_wait),
        )
    };
    // stdio serves one client: one event-loop thread, so a message crosses
    // no thread on its way through (decisions run in place; escalation waits
    // go to the blocking pool). HTTP serves many sessions: two workers.
    let runtime = match r.mode {
        Mode::Http { .. }
        | Mode::Multi {
            listen: Some(_), ..
        } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    };
    // The API task lives on this runtime as long as the gateway does.
    let api = match (&r.api, &r.data_dir) {
        (Some(listen), Some(dir)) => {
            let config = warden_server::ServerConfig::resolve(
                None,
                |k| std::env::var(k).ok(),
                warden_server::Overrides {
                    listen: Some(listen.clone()),
                    unix_socket: None,
                    policy: r.policy.clone(),
                    data_dir: Some(dir.clone()),
                    durability: Some(r.durability),
                },
            )?;
            let server = runtime.block_on(warden_server::RunningServer::attach(
                Arc::clone(&kernel),
                &config,
            ))?;
            eprintln!(
                "warden mcp: API (approvals, kill switch, audit, metrics) on http://{}",
                server.local_addr()
            );
            Some(server)
        }
        _ => None,
    };
    let served = match r.mode {
        Mode::Http { target, listen } => runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            r.auth.check_listener(listener.local_addr()?)?;
            let url = target.url().to_owned();
            let path = url
                .parse::<hyper::Uri>()
                .map(|u| u.path().to_owned())
                .unwrap_or_default();
            eprintln!(
                "warden mcp: gateway for agent `{}` listening on http://{}{path} in front of {url}{}",
                r.agent,
                listener.local_addr()?,
                auth_note(&r.auth)
            );
            warden_mcp::serve_http(gateway(&r.label), target, listener, r.auth.clone())
                .await
                .map_err(anyhow::Error::from)
        }),
        Mode::Stdio(cmd) => {
            eprintln!(
                "warden mcp: gateway for agent `{}` in front of `{}`",
                r.agent, r.label
            );
            runtime
                .block_on(warden_mcp::serve_own_stdio(gateway(&r.label), cmd))
                .map_err(anyhow::Error::from)
        }
        Mode::Multi { servers, listen } => {
            let count = servers.len();
            let specs: Vec<UpstreamSpec> = servers
                .into_iter()
                .map(|(name, prefix, transport)| UpstreamSpec {
                    gateway: gateway(&name),
                    transport,
                    prefix,
                })
                .collect();
            match listen {
                None => {
                    eprintln!(
                        "warden mcp: gateway for agent `{}` in front of {count} servers ({})",
                        r.agent, r.label
                    );
                    runtime
                        .block_on(warden_mcp::serve_multi_own_stdio(specs))
                        .map_err(anyhow::Error::from)
                }
                Some((listen, limits)) => runtime.block_on(async {
                    let listener = tokio::net::TcpListener::bind(&listen)
                        .await
                        .with_context(|| format!("cannot listen on {listen}"))?;
                    r.auth.check_listener(listener.local_addr()?)?;
                    eprintln!(
                        "warden mcp: gateway for agent `{}` listening on http://{}{} in front of {count} servers ({}){}",
                        r.agent,
                        listener.local_addr()?,
                        warden_mcp::LISTEN_PATH,
                        r.label,
                        auth_note(&r.auth)
                    );
                    let auth = r.auth.clone();
                    warden_mcp::serve_multi_http(specs, listener, limits, auth, stop_signal())
                        .await
                        .map_err(anyhow::Error::from)
                }),
            }
        }
    };
    if let Some(server) = api {
        runtime.block_on(server.shutdown())?;
    }
    kernel.flush()?;
    // stdin readers may still block on the OS: do not wait for them.
    runtime.shutdown_background();
    served?;
    Ok(0)
}

/// How the HTTP gateway's clients authenticate, for the startup line (never the token).
fn auth_note(auth: &ClientAuth) -> &'static str {
    if auth.requires_token() {
        "; clients need the bearer token"
    } else {
        "; no client token (WARDEN_MCP_TOKEN or --token-file to require one)"
    }
}

/// Completes on SIGINT or SIGTERM (Ctrl-C elsewhere): the HTTP gateway then
/// closes its sessions, stopping their upstreams, before the process exits.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
    }
    // Without signal handlers, Ctrl-C (or nothing: then the gateway runs until killed).
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A minimal MCP server on stdio: `initialize`, `ping`, `tools/list` with one
/// tool `echo`, and `tools/call` echoing `arguments.text`.
fn echo_server() -> Result<()> {
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lines() {
        let msg: Value = match serde_json::from_str(&line?) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let Some(id) = msg.get("id").cloned() else {
            continue;
        };
        let result = match msg.get("method").and_then(Value::as_str) {
            Some("initialize") => json!({
                "protocolVersion": msg["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "warden-echo", "version": env!("CARGO_PKG_VERSION")}
            }),
            Some("tools/list") => json!({"tools": [{
                "name": "echo",
                "description": "Echoes `text`.",
                "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}
            }]}),
            Some("tools/call") => json!({"content": [{
                "type": "text",
                "text": msg["params"]["arguments"]["text"].as_str().unwrap_or_default()
            }]}),
            _ => json!({}),
        };
        serde_json::to_writer(
            &mut out,
            &json!({"jsonrpc": "2.0", "id": id, "result": result}),
        )?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(())
}

/// A stdio MCP client over a child process, one request at a time.
struct Client {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
    line: String,
}

impl Client {
    fn spawn(program: &std::path::Path, args: &[&std::ffi::OsStr]) -> Result<Client> {
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("child stdio not captured");
        };
        let mut c = Client {
            child,
            input,
            output: std::io::BufReader::new(output),
            line: String::new(),
        };
        c.rpc(br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#)?;
        c.input
            .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")?;
        c.rpc(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)?;
        Ok(c)
    }

    /// Sends one request line and reads the answer line.
    fn rpc(&mut self, request: &[u8]) -> Result<&str> {
        self.input.write_all(request)?;
        self.input.write_all(b"\n")?;
        self.input.flush()?;
        self.line.clear();
        if self.output.read_line(&mut self.line)? == 0 {
            bail!("the server closed its output");
        }
        Ok(&self.line)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Round-trip latencies (ns, sorted) of `tools/call echo` for `budget`.
fn round_trips(client: &mut Client, budget: std::time::Duration) -> Result<Vec<u64>> {
    let call = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#;
    // Warm up (first listing by the gateway, page cache, branch predictors).
    for _ in 0..200 {
        client.rpc(call)?;
    }
    let mut samples = Vec::new();
    let end = std::time::Instant::now() + budget;
    while std::time::Instant::now() < end || samples.len() < 1000 {
        let t = std::time::Instant::now();
        let answer = client.rpc(call)?;
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if !answer.contains("hello") || answer.contains("isError") {
            bail!("unexpected answer: {answer}");
        }
        samples.push(ns);
    }
    samples.sort_unstable();
    Ok(samples)
}

/// `warden bench mcp`: `tools/call` round trips to a local echo server,
/// directly, through `warden mcp` (allow-all policy, no audit) and through
/// `warden mcp --config` in front of two echo servers (the call routed by
/// name), one at a time, each for `time_ms`; the `mcp/tools-call` and
/// `mcp/tools-call-multi` lines are the differences (the added latency).
pub(crate) fn bench(time_ms: u64) -> Result<()> {
    let exe = std::env::current_exe()?;
    let dir = crate::bench::ScratchDir::new("mcp")?;
    let policy = dir.0.join("bench-allow.yaml");
    std::fs::write(
        &policy,
        "apiVersion: warden.dev/v1\nkind: Policy\nname: bench\ndefault: allow\nrules:\n  - id: no-writes\n    tools: [write_file]\n    effect: deny\n",
    )?;
    // Two echo servers; the second's tools are exposed as `b_*`, so the
    // hub routes `echo` by name to the first.
    let quoted = |p: &std::path::Path| -> Result<String> {
        let Some(s) = p.to_str() else {
            bail!("the path {} is not UTF-8", p.display());
        };
        Ok(serde_json::to_string(s)?)
    };
    let (exe_q, policy_q) = (quoted(&exe)?, quoted(&policy)?);
    let config = dir.0.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "policy: [{policy_q}]\nagent: bench\nservers:\n  - name: echo-a\n    command: {exe_q}\n    args: [mcp, --echo-server]\n  - name: echo-b\n    command: {exe_q}\n    args: [mcp, --echo-server]\n    prefix: b_\n"
        ),
    )?;
    let budget = std::time::Duration::from_millis(time_ms);
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let echo = [os("mcp"), os("--echo-server")];
    let direct = round_trips(&mut Client::spawn(&exe, &echo)?, budget)?;
    print_latencies("mcp/tools-call/direct", &direct, None);
    let single = [
        os("mcp"),
        os("--policy"),
        policy.as_os_str(),
        os("--agent"),
        os("bench"),
        os("--"),
        exe.as_os_str(),
        os("mcp"),
        os("--echo-server"),
    ];
    let multi = [os("mcp"), os("--config"), config.as_os_str()];
    for (workload, args) in [
        ("mcp/tools-call", &single[..]),
        ("mcp/tools-call-multi", &multi[..]),
    ] {
        let gated = round_trips(&mut Client::spawn(&exe, args)?, budget)?;
        print_latencies(&format!("{workload}/gateway"), &gated, None);
        print_latencies(workload, &gated, Some(&direct));
    }
    Ok(())
}

/// Prints one workload line: the percentiles of `samples` (sorted ns), or
/// with `direct`, what they add to it, percentile by percentile.
fn print_latencies(workload: &str, samples: &[u64], direct: Option<&[u64]>) {
    let pct = |s: &[u64], q: f64| {
        s.get(((s.len().saturating_sub(1)) as f64 * q) as usize)
            .copied()
            .unwrap_or(0) as f64
    };
    let line = match direct {
        None => json!({"workload": workload, "median_ns": pct(samples, 0.5),
            "p99_ns": pct(samples, 0.99), "p999_ns": pct(samples, 0.999),
            "ops_per_sec": (1e9 / pct(samples, 0.5)).round(),
            "samples": samples.len(), "batch": 1}),
        Some(d) => json!({"workload": workload,
            "median_ns": pct(samples, 0.5) - pct(d, 0.5),
            "p99_ns": pct(samples, 0.99) - pct(d, 0.99),
            "p999_ns": pct(samples, 0.999) - pct(d, 0.999),
            "samples": samples.len(), "batch": 1,
            "note": "added by the gateway: gateway minus direct round trip, per percentile"}),
    };
    println!("{line}");
}
