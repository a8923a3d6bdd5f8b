//! One MCP endpoint (newline-delimited JSON-RPC, as on stdio) in front of
//! several named MCP servers, each run on stdio or reached over Streamable
//! HTTP ([`UpstreamTransport`]).
//!
//! Unlike the single-upstream gateway, nothing passes byte-for-byte: every
//! client request is routed to the upstream that owns its target under a
//! request id of the gateway's own (answers are mapped back), lists are
//! aggregated, and server-initiated requests get gateway ids so the client's
//! answers reach the server that asked. A name offered by two upstreams is
//! never routed to either: it is hidden and its calls are refused
//! (`mcp:duplicate_tool`, audited). Each upstream has its own [`Gateway`]
//! (label = upstream name: pins, `context.mcp.server`), sharing one kernel.
//!
//! The transport is the only difference between upstreams: a stdio server
//! process or an HTTP session (upstream_http.rs) takes the messages the hub
//! writes and feeds what the server sends into the same handler, and going
//! down (a process exiting, an HTTP upstream failing) ends a generation the
//! same way, so routing, policy, pins and restarts do not know which it is.

use crate::McpError;
use crate::calls::{CallInfo, ToolBook, call_target, checked_result, denial};
use crate::conn::{
    ClientQueue, OWN_ID_PREFIX, ServerCommand, ServerOutput, own_stdio, read_client, write_queue,
};
use crate::gate::{
    Gateway, REASON_DUPLICATE_TOOL, REASON_UNKNOWN_TOOL, REASON_UPSTREAM_DOWN, RESERVED_TOOLS,
};
use crate::jsonrpc::{
    INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, Kind, classify, error_line, id_key, line,
    result_line, tool_error,
};
use crate::slot::{Slot, Started};
use crate::upstream_client::HttpTarget;
use crate::upstream_http::{HttpUpstream, Inbound, Sink};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use warden_core::Point;

/// Reason of a `prompts/get` for a prompt no upstream lists.
pub const REASON_UNKNOWN_PROMPT: &str = "mcp:unknown_prompt";
/// Reason of a request for a resource URI no upstream lists or matches.
pub const REASON_UNKNOWN_RESOURCE: &str = "mcp:unknown_resource";
/// Reason of a request whose prompt name or resource URI more than one upstream offers.
pub const REASON_AMBIGUOUS: &str = "mcp:duplicate_target";
/// Prefix of the ids the gateway gives server-initiated requests on their way to the client.
const UP_ID_PREFIX: &str = "warden-up-";

/// One named upstream of a multi-upstream gateway.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// The gateway deciding this upstream's calls; its server label is the
    /// upstream's name (pins, `context.mcp.server`).
    pub gateway: Arc<Gateway>,
    /// How the upstream is reached.
    pub transport: UpstreamTransport,
    /// Prefix added to this upstream's tool and prompt names as the client
    /// sees them (`""`: none). Policy still sees the server's own names.
    pub prefix: String,
}

/// How the gateway reaches one upstream.
#[derive(Debug, Clone)]
pub enum UpstreamTransport {
    /// A stdio server the gateway runs (and restarts).
    Stdio(ServerCommand),
    /// A Streamable HTTP server (`http://` or `https://`, with its TLS
    /// trust and request headers).
    Http(HttpTarget),
}

impl From<ServerCommand> for UpstreamTransport {
    fn from(cmd: ServerCommand) -> Self {
        UpstreamTransport::Stdio(cmd)
    }
}

/// An upstream's transport, ready to start sessions.
enum Transport {
    Stdio(ServerCommand),
    Http(Arc<HttpUpstream>),
}

/// Where an exposed name (tool or prompt) goes.
#[derive(Debug, Clone)]
enum Route {
    /// Upstream index and the server's own name.
    One(usize, String),
    /// Offered by several upstreams (their names): refused.
    Dup(Vec<String>),
}

struct UpState {
    /// Definitions as last listed (pins, in-server duplicates, hiding).
    tools: ToolBook,
    /// Whether `tools` reflects a listing since the last restart or `list_changed`.
    tools_fresh: bool,
    /// Tool names of the last successful listing: routes survive a crash so
    /// calls answer `mcp:upstream_unavailable`, not `mcp:unknown_tool`.
    tool_names: Vec<String>,
    prompt_names: Vec<String>,
    uris: Vec<String>,
    templates: Vec<String>,
    /// The capabilities it declared at `initialize` (`None`: not initialized).
    caps: Option<Value>,
}

struct Up {
    name: String,
    prefix: String,
    gw: Arc<Gateway>,
    transport: Transport,
    /// The server: its generation, restarts, own requests and the replayed handshake.
    slot: Slot,
    st: Mutex<UpState>,
}

/// A client request forwarded to an upstream under a gateway id.
struct Fwd {
    up: usize,
    generation: u64,
    client_id: Value,
    call: Option<CallInfo>,
}

#[derive(Default)]
struct HubState {
    /// Forwarded client requests by gateway id.
    fwd: HashMap<String, Fwd>,
    /// Client request id → (upstream, gateway id), for cancellations.
    by_client: HashMap<String, (usize, Value)>,
    /// Server-initiated requests by the id the client sees: (upstream, server's id).
    to_client: HashMap<String, (usize, Value)>,
    /// Exposed tool and prompt names → routes, rebuilt after each listing.
    tool_routes: HashMap<String, Route>,
    prompt_routes: HashMap<String, Route>,
}

pub(crate) struct Hub {
    ups: Vec<Up>,
    /// Label `""`: refusals no single upstream owns (unknown or duplicate names).
    hub_gw: Gateway,
    session: String,
    st: Mutex<HubState>,
    client: ClientQueue,
    /// Numbers of every gateway-issued id, shared with the slots' own
    /// requests: forwarded and own requests share the `warden-gw-` prefix.
    next_id: Arc<AtomicU64>,
    max: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere cannot leave it unsafe to read.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs one gateway endpoint for a client speaking MCP over `input`/`output`
/// (newline-delimited JSON-RPC) in front of every upstream in `upstreams`
/// (at least one; names unique and non-empty; all gateways share a kernel and
/// agent). Returns when the client closes its input; the servers are then
/// asked to exit (stdin closed) and killed if they do not.
pub async fn serve_multi_stdio<R, W>(
    upstreams: Vec<UpstreamSpec>,
    input: R,
    output: W,
) -> Result<(), McpError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (client_tx, writer) = write_queue(output);
    let session = format!("mcp-{}", warden_core::Decision::new_id());
    let hub = Hub::start(upstreams, session, client_tx.clone())?;
    let max = hub.max;
    let h = &hub;
    let result = read_client(input, max, client_tx, |l| h.on_client(l)).await;
    hub.close().await;
    drop(hub);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    result
}

/// [`serve_multi_stdio`] on this process's own stdin and stdout (driven
/// by the event loop when they are pipes, as for the single gateway).
pub async fn serve_multi_own_stdio(upstreams: Vec<UpstreamSpec>) -> Result<(), McpError> {
    let (input, output) = own_stdio();
    serve_multi_stdio(upstreams, input, output).await
}

/// Refuses upstream lists the hub cannot run: empty, names empty or
/// repeated (HTTP endpoints were checked when their [`HttpTarget`] was made).
pub(crate) fn check_upstreams(upstreams: &[UpstreamSpec]) -> Result<(), McpError> {
    if upstreams.is_empty() {
        return Err(McpError::Upstream("no upstream MCP servers".to_owned()));
    }
    for (i, spec) in upstreams.iter().enumerate() {
        let name = spec.gateway.server();
        if name.is_empty() || upstreams[..i].iter().any(|u| u.gateway.server() == name) {
            return Err(McpError::Upstream(format!(
                "upstream names must be unique and non-empty (`{name}`)"
            )));
        }
    }
    Ok(())
}

/// Merges `b` into `a`: objects key by key, booleans or-ed, other values kept from `a`.
fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Bool(a), Value::Bool(b)) => *a |= *b,
        _ => {}
    }
}

/// Whether `uri` matches the RFC 6570 template `template` (simple and `+`/`#`
/// expressions; a simple expression does not match `/`).
pub(crate) fn template_matches(template: &str, uri: &str) -> bool {
    // Literal and expression parts, in order.
    let mut parts: Vec<(bool, &str)> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return false;
        };
        if open > 0 {
            parts.push((false, &rest[..open]));
        }
        parts.push((true, &rest[open + 1..open + close]));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push((false, rest));
    }
    let mut at = uri;
    for (i, (expr, text)) in parts.iter().enumerate() {
        if !expr {
            match at.strip_prefix(text) {
                Some(r) => at = r,
                None => return false,
            }
            continue;
        }
        let reserved = text.starts_with('+') || text.starts_with('#');
        // The value runs to the next literal (or the end).
        let end = match parts.get(i + 1) {
            Some((false, lit)) => match at.find(lit) {
                Some(e) => e,
                None => return false,
            },
            _ => at.len(),
        };
        let value = &at[..end];
        if value.is_empty() || (!reserved && value.contains('/')) {
            return false;
        }
        at = &at[end..];
    }
    at.is_empty()
}

impl Hub {
    /// A hub in front of `upstreams` (checked by [`check_upstreams`]; all
    /// gateways share a kernel and agent), deciding under the audit session
    /// `session` and writing what the client is sent, framed, to `client`.
    /// Every upstream is started; one that cannot start does not stop the
    /// others (its calls answer `mcp:upstream_unavailable`, it is retried
    /// with back-off).
    pub(crate) fn start(
        upstreams: Vec<UpstreamSpec>,
        session: String,
        client: mpsc::Sender<Vec<u8>>,
    ) -> Result<Arc<Hub>, McpError> {
        check_upstreams(&upstreams)?;
        let Some(first) = upstreams.first() else {
            return Err(McpError::Upstream("no upstream MCP servers".to_owned()));
        };
        let hub_gw = Gateway::new(
            Arc::clone(first.gateway.kernel()),
            first.gateway.agent(),
            "",
        );
        let max = first.gateway.max_message_bytes();
        let ids = Arc::new(AtomicU64::new(1));
        let mut ups: Vec<Up> = Vec::with_capacity(upstreams.len());
        for spec in upstreams {
            let name = spec.gateway.server().to_owned();
            let transport = match spec.transport {
                UpstreamTransport::Stdio(cmd) => Transport::Stdio(cmd),
                UpstreamTransport::Http(target) => {
                    Transport::Http(Arc::new(HttpUpstream::new(&target, max)))
                }
            };
            ups.push(Up {
                slot: Slot::new(Some(name.clone()), Arc::clone(&ids)),
                name,
                prefix: spec.prefix,
                gw: spec.gateway,
                transport,
                st: Mutex::new(UpState {
                    tools: ToolBook::default(),
                    tools_fresh: false,
                    tool_names: Vec::new(),
                    prompt_names: Vec::new(),
                    uris: Vec::new(),
                    templates: Vec::new(),
                    caps: None,
                }),
            });
        }
        let hub = Arc::new(Hub {
            ups,
            hub_gw,
            session,
            st: Mutex::new(HubState::default()),
            client: ClientQueue::new(client),
            next_id: ids,
            max,
        });
        for (i, up) in hub.ups.iter().enumerate() {
            // A failed start is retried with back-off on first use.
            if let Err(e) = up.slot.start(|g| hub.spawn(i, g)) {
                eprintln!("warden mcp: upstream `{}`: {e}", up.name);
            }
        }
        Ok(hub)
    }

    /// Stops every upstream (stdio servers asked to exit, then killed; HTTP
    /// sessions deleted) and lets go of the client queue.
    pub(crate) async fn close(&self) {
        self.shutdown().await;
        self.client.close();
    }

    fn new_id(&self, prefix: &str) -> Value {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        Value::String(format!("{prefix}{n}"))
    }

    /// Starts generation `generation` of upstream `i`: a server process
    /// with its reader and writer tasks, or an HTTP session.
    fn spawn(self: &Arc<Self>, i: usize, generation: u64) -> Result<Started, String> {
        let up = &self.ups[i];
        let sink = UpSink {
            hub: Arc::clone(self),
            i,
            generation,
        };
        match &up.transport {
            Transport::Stdio(cmd) => cmd.start(self.max, format!("upstream `{}`", up.name), sink),
            Transport::Http(http) => {
                let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
                let me = Arc::clone(self);
                let session = Arc::clone(http).session(rx, Arc::new(sink));
                let reader = tokio::spawn(async move {
                    if let Err(e) = session.await {
                        eprintln!("warden mcp: upstream `{}` is down: {e}", me.ups[i].name);
                    }
                    me.on_upstream_exit(i, generation).await;
                });
                Ok((tx, reader))
            }
        }
    }

    /// Upstream `i`'s input, restarting it (with back-off, replaying the
    /// client's handshake) if it is down.
    async fn running(self: &Arc<Self>, i: usize) -> Result<(mpsc::Sender<Vec<u8>>, u64), String> {
        let up = &self.ups[i];
        let on_init = |r: &Value| lock(&up.st).caps = r.get("capabilities").cloned();
        up.slot.running(|g| self.spawn(i, g), on_init).await
    }

    /// Upstream `i` of `generation` is gone: everything it owed gets an answer.
    async fn on_upstream_exit(&self, i: usize, generation: u64) {
        let up = &self.ups[i];
        if !up.slot.exited(generation) {
            return;
        }
        {
            let mut st = lock(&up.st);
            // Re-listed (and re-checked against pins) after a restart.
            st.tools.clear();
            st.tools_fresh = false;
        }
        let failed: Vec<Fwd> = {
            let mut st = lock(&self.st);
            let keys: Vec<String> = st
                .fwd
                .iter()
                .filter(|(_, f)| f.up == i && f.generation == generation)
                .map(|(k, _)| k.clone())
                .collect();
            let mut failed = Vec::with_capacity(keys.len());
            for k in keys {
                if let Some(f) = st.fwd.remove(&k) {
                    st.by_client.remove(&id_key(&f.client_id));
                    failed.push(f);
                }
            }
            st.to_client.retain(|_, (u, _)| *u != i);
            failed
        };
        let text = format!(
            "{REASON_UPSTREAM_DOWN}: upstream `{}` exited before answering; the request may or may not have run",
            up.name
        );
        for f in failed {
            let bytes = self.failed_answer(i, &f.client_id, &f.call, &text);
            self.client.send(bytes).await;
        }
    }

    /// The answer to a forwarded request that upstream `i` will not answer
    /// (its outcome recorded): an `isError` result for `tools/call`, else `-32603`.
    fn failed_answer(
        &self,
        i: usize,
        client_id: &Value,
        call: &Option<CallInfo>,
        text: &str,
    ) -> Vec<u8> {
        match call {
            Some(c) => {
                self.ups[i]
                    .gw
                    .outcome(&c.decision_id, Some(text.to_owned()), c.started.elapsed());
                if c.method == "tools/call" {
                    result_line(client_id, tool_error(text))
                } else {
                    error_line(client_id, INTERNAL_ERROR, text)
                }
            }
            None => error_line(client_id, INTERNAL_ERROR, text),
        }
    }

    /// Upstream `i` of `generation` will not answer request `id` (an HTTP
    /// POST that ended without its answer): whoever waits gets an error.
    async fn unanswered(&self, i: usize, generation: u64, id: &Value, why: &str) {
        let key = id_key(id);
        if self.ups[i].slot.fail_own(&key, why) {
            return;
        }
        let text = format!(
            "{REASON_UPSTREAM_DOWN}: upstream `{}`: {why}",
            self.ups[i].name
        );
        let fwd = {
            let mut st = lock(&self.st);
            match st.fwd.get(&key) {
                Some(f) if f.up == i && f.generation == generation => {
                    let f = st.fwd.remove(&key);
                    if let Some(f) = &f {
                        st.by_client.remove(&id_key(&f.client_id));
                    }
                    f
                }
                _ => None,
            }
        };
        if let Some(f) = fwd {
            let bytes = self.failed_answer(i, &f.client_id, &f.call, &text);
            self.client.send(bytes).await;
        }
    }

    async fn shutdown(&self) {
        for up in &self.ups {
            up.slot.stop().await;
        }
    }

    /// Sends a request of the gateway's own to upstream `i` and waits for its result.
    async fn request(&self, i: usize, method: &str, params: Value) -> Result<Value, String> {
        self.ups[i].slot.request(method, params).await
    }

    /// Runs `f` for every upstream concurrently; results in upstream order
    /// ([`each_index`]).
    async fn each<X, F, Fut>(self: &Arc<Self>, f: F) -> Vec<Result<X, String>>
    where
        X: Send + 'static,
        F: Fn(Arc<Self>, usize) -> Fut,
        Fut: std::future::Future<Output = Result<X, String>> + Send + 'static,
    {
        each_index(self.ups.len(), |i| f(Arc::clone(self), i)).await
    }

    /// Sends `method` with `params` to every upstream (started if needed);
    /// their answers, by upstream index.
    async fn ask_all(
        self: &Arc<Self>,
        method: &'static str,
        params: Value,
    ) -> Vec<Result<Value, String>> {
        self.each(move |hub, i| {
            let params = params.clone();
            async move {
                hub.running(i).await?;
                hub.request(i, method, params).await
            }
        })
        .await
    }

    /// Every page of `method` from upstream `i` (items under `key`);
    /// `tools/list` pages are screened by the upstream's tool book.
    async fn list_pages(
        self: &Arc<Self>,
        i: usize,
        method: &'static str,
        key: &'static str,
        meta: Option<Value>,
    ) -> Result<Vec<Value>, String> {
        self.running(i).await?;
        let up = &self.ups[i];
        // A server that did not declare the capability is not asked.
        let capability = method.split('/').next().unwrap_or(method);
        if lock(&up.st)
            .caps
            .as_ref()
            .is_some_and(|c| c.get(capability).is_none())
        {
            return Ok(Vec::new());
        }
        let mut items = Vec::new();
        // Every tool name this listing has, shown or not: the routes (and
        // so duplicate detection) follow what the server lists now.
        let mut names = Vec::new();
        let tools = method == "tools/list";
        up.slot
            .pages(method, meta.as_ref(), |mut result, first| {
                if tools {
                    if let Some(listed) = result.get("tools").and_then(Value::as_array) {
                        names.extend(
                            listed
                                .iter()
                                .filter_map(|t| t.get("name").and_then(Value::as_str))
                                .map(str::to_owned),
                        );
                    }
                    let mut st = lock(&up.st);
                    result = st.tools.screen(&up.gw, &self.session, result, first);
                }
                if let Some(Value::Array(a)) = result.get_mut(key).map(Value::take) {
                    items.extend(a);
                }
            })
            .await
            .map_err(|e| format!("{REASON_UPSTREAM_DOWN}: upstream `{}`: {e}", up.name))?;
        if tools {
            let mut st = lock(&up.st);
            st.tool_names = names;
            st.tools_fresh = true;
        }
        Ok(items)
    }

    /// Lists every upstream's tools (all pages) and rebuilds the routes;
    /// returns the tools the client sees.
    /// Also returns the names of the upstreams that could not be listed.
    async fn list_tools(self: &Arc<Self>, meta: Option<Value>) -> (Vec<Value>, Vec<String>) {
        let lists = self
            .each(move |hub, i| {
                let meta = meta.clone();
                async move { hub.list_pages(i, "tools/list", "tools", meta).await }
            })
            .await;
        let mut shown = Vec::new();
        let mut unlisted = Vec::new();
        for (i, list) in lists.into_iter().enumerate() {
            match list {
                Ok(tools) => shown.extend(tools.into_iter().map(|t| (i, t))),
                Err(e) => {
                    eprintln!("warden mcp: {e}");
                    unlisted.push(self.ups[i].name.clone());
                }
            }
        }
        self.rebuild_routes(false);
        let shown = shown
            .into_iter()
            .filter_map(|(i, mut t)| {
                let name = t.get("name").and_then(Value::as_str)?.to_owned();
                let exposed = format!("{}{name}", self.ups[i].prefix);
                match self.tool_route(&exposed) {
                    Some(Route::One(..)) if !RESERVED_TOOLS.contains(&exposed.as_str()) => {
                        t["name"] = Value::String(exposed);
                        Some(t)
                    }
                    _ => None,
                }
            })
            .collect();
        (shown, unlisted)
    }

    /// Rebuilds the exposed-name routes from every upstream's last listing.
    fn rebuild_routes(&self, prompts: bool) {
        let r = routes(self.ups.iter().map(|u| {
            let st = lock(&u.st);
            let names = if prompts {
                st.prompt_names.clone()
            } else {
                st.tool_names.clone()
            };
            (u.prefix.as_str(), u.name.as_str(), names)
        }));
        let mut st = lock(&self.st);
        if prompts {
            st.prompt_routes = r;
        } else {
            st.tool_routes = r;
        }
    }

    fn tool_route(&self, exposed: &str) -> Option<Route> {
        lock(&self.st).tool_routes.get(exposed).cloned()
    }

    fn prompt_route(&self, exposed: &str) -> Option<Route> {
        lock(&self.st).prompt_routes.get(exposed).cloned()
    }

    /// One message from the client (without its newline).
    pub(crate) async fn on_client(self: &Arc<Self>, bytes: Vec<u8>) {
        let msg = match crate::calls::screen_client(&bytes) {
            Ok(msg) => msg,
            Err(Some(answer)) => return self.client.send(answer).await,
            Err(None) => return,
        };
        match classify(&msg) {
            // Screened out above.
            Kind::Invalid(_) => {}
            Kind::Notification => self.client_notification(msg, bytes).await,
            Kind::Response { id } => {
                let target = lock(&self.st).to_client.remove(&id_key(id));
                let Some((i, server_id)) = target else {
                    eprintln!("warden mcp: dropped a client response to an unknown request");
                    return;
                };
                let mut msg = msg;
                msg["id"] = server_id;
                self.send_up(i, line(&msg)).await;
            }
            Kind::Request { id, method } => {
                let (id, method) = (id.clone(), method.to_owned());
                if lock(&self.st).by_client.contains_key(&id_key(&id)) {
                    return self
                        .client
                        .send(error_line(
                            &id,
                            INVALID_REQUEST,
                            "a request with this id is still in flight",
                        ))
                        .await;
                }
                // Requests may wait on upstreams: the client loop keeps reading
                // (a server may ask the client something meanwhile).
                let me = Arc::clone(self);
                tokio::spawn(async move { me.client_request(msg, id, &method).await });
            }
        }
    }

    async fn send_up(self: &Arc<Self>, i: usize, bytes: Vec<u8>) {
        if let Ok((tx, _)) = self.running(i).await {
            let _ = tx.send(bytes).await;
        }
    }

    async fn client_notification(self: &Arc<Self>, mut msg: Value, bytes: Vec<u8>) {
        match msg.get("method").and_then(Value::as_str) {
            Some("notifications/initialized") => {
                for up in &self.ups {
                    up.slot.remember_initialized(bytes.clone());
                }
            }
            Some("notifications/cancelled") => {
                let req = param(&msg, "requestId");
                let target = req.and_then(|r| lock(&self.st).by_client.get(&id_key(r)).cloned());
                if let Some((i, gw_id)) = target {
                    msg["params"]["requestId"] = gw_id;
                    self.send_up(i, line(&msg)).await;
                }
                return;
            }
            _ => {}
        }
        let mut framed = bytes;
        framed.push(b'\n');
        for i in 0..self.ups.len() {
            self.send_up(i, framed.clone()).await;
        }
    }

    async fn client_request(self: Arc<Self>, mut msg: Value, id: Value, method: &str) {
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let meta = params.get("_meta").cloned();
        let has_cursor = params.get("cursor").is_some_and(|c| !c.is_null());
        let out = match method {
            "initialize" => self.initialize(&id, params).await,
            "ping" => result_line(&id, json!({})),
            "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list"
                if has_cursor =>
            {
                error_line(
                    &id,
                    INVALID_PARAMS,
                    "the gateway returns every item on one page; there is no next cursor",
                )
            }
            "tools/list" => result_line(&id, json!({"tools": self.list_tools(meta).await.0})),
            "prompts/list" => result_line(&id, json!({"prompts": self.list_prompts(meta).await})),
            "resources/list" => {
                let r = self.list_resources(meta, false).await;
                result_line(&id, json!({"resources": r}))
            }
            "resources/templates/list" => {
                let r = self.list_resources(meta, true).await;
                result_line(&id, json!({"resourceTemplates": r}))
            }
            "logging/setLevel" => {
                let answers = self.ask_all("logging/setLevel", params).await;
                match answers.iter().any(Result::is_ok) {
                    true => result_line(&id, json!({})),
                    false => error_line(&id, INTERNAL_ERROR, "no upstream accepted the level"),
                }
            }
            "tools/call" => match self.route_call(&mut msg).await {
                Ok(i) => return self.gated(i, msg, id, "tools/call").await,
                Err((server, tool, reasons)) => {
                    self.refusal(server, &msg, &tool, "tools/call", &reasons);
                    denial(&id, "tools/call", &reasons)
                }
            },
            "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete" => {
                let routed = if method == "prompts/get" {
                    self.route_prompt(&mut msg, meta).await
                } else if method == "completion/complete" {
                    self.route_completion(&mut msg, meta).await
                } else {
                    self.route_uri(&msg, meta).await
                };
                match (routed, method) {
                    (Ok(i), "prompts/get") => return self.gated(i, msg, id, "prompts/get").await,
                    (Ok(i), "resources/read") => {
                        return self.gated(i, msg, id, "resources/read").await;
                    }
                    (Ok(i), _) => return self.forward(i, msg, id, None).await,
                    (Err((server, _, reasons)), "prompts/get" | "resources/read") => {
                        let m = if method == "prompts/get" {
                            "prompts/get"
                        } else {
                            "resources/read"
                        };
                        self.refusal(server, &msg, m, m, &reasons);
                        denial(&id, m, &reasons)
                    }
                    (Err((_, _, reasons)), _) => {
                        error_line(&id, INVALID_PARAMS, &reasons.join(": "))
                    }
                }
            }
            _ => error_line(
                &id,
                -32601,
                &format!("method `{method}` is not routed by the multi-upstream gateway"),
            ),
        };
        self.client.send(out).await;
    }

    /// Audits a refusal (by the owning upstream's gateway when known).
    fn refusal(
        &self,
        server: Option<usize>,
        msg: &Value,
        tool: &str,
        method: &str,
        reasons: &[String],
    ) {
        let gw = server.map_or(&self.hub_gw, |i| &*self.ups[i].gw);
        let args = call_target(msg, method).map(|(_, a)| a).unwrap_or_default();
        gw.refuse(&self.session, tool, method, args, reasons);
    }

    async fn initialize(self: &Arc<Self>, id: &Value, params: Value) -> Vec<u8> {
        let answers = self.ask_all("initialize", params.clone()).await;
        let mut failures = Vec::new();
        let mut versions: Vec<(String, String)> = Vec::new();
        let mut capabilities = json!({});
        let mut instructions = Vec::new();
        for (i, a) in answers.iter().enumerate() {
            let name = &self.ups[i].name;
            match a {
                Ok(r) => {
                    lock(&self.ups[i].st).caps = r.get("capabilities").cloned();
                    let v = r
                        .get("protocolVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    versions.push((name.clone(), v.to_owned()));
                    if let Some(c) = r.get("capabilities") {
                        merge(&mut capabilities, c);
                    }
                    if let Some(t) = r.get("instructions").and_then(Value::as_str) {
                        instructions.push(format!("[{name}] {t}"));
                    }
                }
                Err(e) => failures.push(format!("`{name}`: {e}")),
            }
        }
        // Remembered for restarts whatever happened now: a server that was
        // down gets the same handshake when it comes back.
        for up in &self.ups {
            up.slot.remember_init(params.clone());
        }
        let Some((_, version)) = versions.first().cloned() else {
            let text = format!(
                "no upstream MCP server initialized: {}",
                failures.join("; ")
            );
            return error_line(id, INTERNAL_ERROR, &text);
        };
        if versions.iter().any(|(_, v)| *v != version) {
            let list: Vec<String> = versions
                .iter()
                .map(|(n, v)| format!("`{n}`: {v}"))
                .collect();
            let text = format!(
                "the upstream MCP servers negotiated different protocol versions ({}); the gateway needs one version for all",
                list.join(", ")
            );
            return error_line(id, INTERNAL_ERROR, &text);
        }
        for f in &failures {
            eprintln!(
                "warden mcp: upstream {f} did not initialize; its tools are unavailable until it restarts"
            );
        }
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": {"name": "warden-mcp-gateway", "version": env!("CARGO_PKG_VERSION")},
        });
        if !instructions.is_empty() {
            result["instructions"] = Value::String(instructions.join("\n"));
        }
        result_line(id, result)
    }

    async fn list_prompts(self: &Arc<Self>, meta: Option<Value>) -> Vec<Value> {
        let lists = self
            .each(move |hub, i| {
                let meta = meta.clone();
                async move { hub.list_pages(i, "prompts/list", "prompts", meta).await }
            })
            .await;
        let mut all = Vec::new();
        for (i, list) in lists.into_iter().enumerate() {
            match list {
                Ok(prompts) => {
                    let names = prompts
                        .iter()
                        .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_owned))
                        .collect();
                    lock(&self.ups[i].st).prompt_names = names;
                    all.extend(prompts.into_iter().map(|p| (i, p)));
                }
                Err(e) => eprintln!("warden mcp: {e}"),
            }
        }
        self.rebuild_routes(true);
        all.into_iter()
            .filter_map(|(i, mut p)| {
                let name = p.get("name").and_then(Value::as_str)?;
                let exposed = format!("{}{name}", self.ups[i].prefix);
                matches!(self.prompt_route(&exposed), Some(Route::One(..))).then(|| {
                    p["name"] = Value::String(exposed);
                    p
                })
            })
            .collect()
    }

    /// Aggregated resources (or templates); a URI (template) offered by two
    /// upstreams stays listed, but requests for it are refused as ambiguous.
    async fn list_resources(self: &Arc<Self>, meta: Option<Value>, templates: bool) -> Vec<Value> {
        let (method, key, field) = if templates {
            (
                "resources/templates/list",
                "resourceTemplates",
                "uriTemplate",
            )
        } else {
            ("resources/list", "resources", "uri")
        };
        let lists = self
            .each(move |hub, i| {
                let meta = meta.clone();
                async move { hub.list_pages(i, method, key, meta).await }
            })
            .await;
        let mut all = Vec::new();
        for (i, list) in lists.into_iter().enumerate() {
            match list {
                Ok(items) => {
                    let uris: Vec<String> = items
                        .iter()
                        .filter_map(|r| r.get(field).and_then(Value::as_str).map(str::to_owned))
                        .collect();
                    let mut st = lock(&self.ups[i].st);
                    if templates {
                        st.templates = uris;
                    } else {
                        st.uris = uris;
                    }
                    drop(st);
                    all.extend(items);
                }
                Err(e) => eprintln!("warden mcp: {e}"),
            }
        }
        all
    }

    /// The upstream owning a `tools/call`; rewrites the name to the server's own.
    async fn route_call(self: &Arc<Self>, msg: &mut Value) -> Result<usize, Refusal> {
        let exposed = param_str(msg, "name");
        let meta = param(msg, "_meta").cloned();
        if RESERVED_TOOLS.contains(&exposed.as_str()) {
            return Err((None, exposed.clone(), crate::calls::reserved(&exposed)));
        }
        let fresh = |hub: &Self| match hub.tool_route(&exposed) {
            Some(Route::One(i, _)) => lock(&hub.ups[i].st).tools_fresh,
            _ => false,
        };
        let mut unlisted = Vec::new();
        if !fresh(self) {
            // Not listed since a start, a restart or a list change: list
            // first, so pins and duplicates are checked.
            unlisted = self.list_tools(meta).await.1;
        }
        match self.tool_route(&exposed) {
            None => {
                // An upstream that could not be listed may own the name:
                // say it is unavailable rather than that the tool does not exist.
                let reasons = if unlisted.is_empty() {
                    vec![
                        REASON_UNKNOWN_TOOL.to_owned(),
                        format!("no upstream MCP server lists a tool named `{exposed}`"),
                    ]
                } else {
                    vec![
                        REASON_UPSTREAM_DOWN.to_owned(),
                        format!(
                            "no available upstream lists a tool named `{exposed}`, and {} could not be listed",
                            unlisted
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ]
                };
                Err((None, exposed.clone(), reasons))
            }
            Some(Route::Dup(servers)) => Err((
                None,
                exposed.clone(),
                vec![
                    REASON_DUPLICATE_TOOL.to_owned(),
                    format!(
                        "tool `{exposed}` is offered by more than one upstream ({}); calls to it are refused",
                        servers.join(", ")
                    ),
                ],
            )),
            Some(Route::One(i, tool)) => {
                let up = &self.ups[i];
                let (fresh, check) = {
                    let st = lock(&up.st);
                    (st.tools_fresh, st.tools.check(&tool))
                };
                if !fresh {
                    return Err((
                        Some(i),
                        tool,
                        vec![
                            REASON_UPSTREAM_DOWN.to_owned(),
                            format!("upstream `{}` is not available", up.name),
                        ],
                    ));
                }
                check.map_err(|r| (Some(i), tool.clone(), r))?;
                msg["params"]["name"] = Value::String(tool);
                Ok(i)
            }
        }
    }

    /// The upstream owning a prompt (`prompts/get`); rewrites the name.
    async fn route_prompt(
        self: &Arc<Self>,
        msg: &mut Value,
        meta: Option<Value>,
    ) -> Result<usize, Refusal> {
        let exposed = param_str(msg, "name");
        let i = self.prompt_owner(&exposed, meta).await?;
        let own = exposed
            .strip_prefix(self.ups[i].prefix.as_str())
            .unwrap_or(&exposed)
            .to_owned();
        msg["params"]["name"] = Value::String(own);
        Ok(i)
    }

    async fn prompt_owner(
        self: &Arc<Self>,
        exposed: &str,
        meta: Option<Value>,
    ) -> Result<usize, Refusal> {
        if self.prompt_route(exposed).is_none() {
            self.list_prompts(meta).await;
        }
        match self.prompt_route(exposed) {
            Some(Route::One(i, _)) => Ok(i),
            Some(Route::Dup(servers)) => Err((
                None,
                exposed.to_owned(),
                vec![
                    REASON_AMBIGUOUS.to_owned(),
                    format!(
                        "prompt `{exposed}` is offered by more than one upstream ({}); requests for it are refused",
                        servers.join(", ")
                    ),
                ],
            )),
            None => Err((
                None,
                exposed.to_owned(),
                vec![
                    REASON_UNKNOWN_PROMPT.to_owned(),
                    format!("no upstream MCP server lists a prompt named `{exposed}`"),
                ],
            )),
        }
    }

    /// The upstream owning `params.uri`: the one that listed it, else the
    /// one with a matching template; never a guess.
    async fn route_uri(
        self: &Arc<Self>,
        msg: &Value,
        meta: Option<Value>,
    ) -> Result<usize, Refusal> {
        let uri = param_str(msg, "uri");
        self.uri_owner(&uri, meta).await
    }

    async fn uri_owner(self: &Arc<Self>, uri: &str, meta: Option<Value>) -> Result<usize, Refusal> {
        let mut owners = self.owners(uri);
        if owners.is_empty() {
            self.list_resources(meta.clone(), false).await;
            self.list_resources(meta, true).await;
            owners = self.owners(uri);
        }
        match owners.as_slice() {
            [i] => Ok(*i),
            [] => Err((
                None,
                "resources/read".to_owned(),
                vec![
                    REASON_UNKNOWN_RESOURCE.to_owned(),
                    format!("no upstream MCP server lists `{uri}` or a template matching it"),
                ],
            )),
            many => Err((
                None,
                "resources/read".to_owned(),
                vec![
                    REASON_AMBIGUOUS.to_owned(),
                    format!(
                        "`{uri}` is offered by more than one upstream ({}); requests for it are refused",
                        many.iter()
                            .map(|i| self.ups[*i].name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ],
            )),
        }
    }

    /// Upstreams listing `uri` exactly, else those with a matching template.
    fn owners(&self, uri: &str) -> Vec<usize> {
        let exact: Vec<usize> = (0..self.ups.len())
            .filter(|i| lock(&self.ups[*i].st).uris.iter().any(|u| u == uri))
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        (0..self.ups.len())
            .filter(|i| {
                lock(&self.ups[*i].st)
                    .templates
                    .iter()
                    .any(|t| template_matches(t, uri))
            })
            .collect()
    }

    /// `completion/complete`: routed by its `ref` (a prompt name or a resource URI).
    async fn route_completion(
        self: &Arc<Self>,
        msg: &mut Value,
        meta: Option<Value>,
    ) -> Result<usize, Refusal> {
        let r = param(msg, "ref").cloned().unwrap_or(Value::Null);
        match r.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let exposed = r.get("name").and_then(Value::as_str).unwrap_or("");
                let i = self.prompt_owner(exposed, meta).await?;
                let own = exposed
                    .strip_prefix(self.ups[i].prefix.as_str())
                    .unwrap_or(exposed);
                msg["params"]["ref"]["name"] = Value::String(own.to_owned());
                Ok(i)
            }
            Some("ref/resource") => {
                let uri = r.get("uri").and_then(Value::as_str).unwrap_or("");
                self.uri_owner(uri, meta).await
            }
            _ => Err((
                None,
                String::new(),
                vec![
                    "completion/complete needs a `ref` of type ref/prompt or ref/resource"
                        .to_owned(),
                ],
            )),
        }
    }

    /// Decides an intercepted request with upstream `i`'s gateway and forwards it.
    async fn gated(self: Arc<Self>, i: usize, mut msg: Value, id: Value, method: &'static str) {
        let (tool, args) = match call_target(&msg, method) {
            Ok(t) => t,
            Err(e) => return self.client.send(error_line(&id, INVALID_PARAMS, &e)).await,
        };
        let gw = &self.ups[i].gw;
        let decision_id =
            match crate::calls::before_call(gw, &self.session, &tool, method, args, &mut msg).await
            {
                Ok((decision_id, _)) => decision_id,
                Err(reasons) => return self.client.send(denial(&id, method, &reasons)).await,
            };
        let call = CallInfo {
            tool,
            method,
            decision_id,
            started: Instant::now(),
        };
        self.forward(i, msg, id, Some(call)).await;
    }

    /// Forwards a client request to upstream `i` under a gateway id.
    async fn forward(
        self: &Arc<Self>,
        i: usize,
        mut msg: Value,
        client_id: Value,
        call: Option<CallInfo>,
    ) {
        let fail =
            |call: &Option<CallInfo>, text: &str| self.failed_answer(i, &client_id, call, text);
        let (tx, generation) = match self.running(i).await {
            Ok(u) => u,
            Err(e) => return self.client.send(fail(&call, &e)).await,
        };
        let gw_id = self.new_id(OWN_ID_PREFIX);
        let key = id_key(&gw_id);
        msg["id"] = gw_id.clone();
        {
            let mut st = lock(&self.st);
            st.by_client.insert(id_key(&client_id), (i, gw_id));
            st.fwd.insert(
                key.clone(),
                Fwd {
                    up: i,
                    generation,
                    client_id: client_id.clone(),
                    call,
                },
            );
        }
        if tx.send(line(&msg)).await.is_err() {
            let f = {
                let mut st = lock(&self.st);
                st.by_client.remove(&id_key(&client_id));
                st.fwd.remove(&key)
            };
            if let Some(f) = f {
                let text = format!(
                    "{REASON_UPSTREAM_DOWN}: upstream `{}` exited",
                    self.ups[i].name
                );
                self.client.send(fail(&f.call, &text)).await;
            }
        }
    }

    /// One line from a stdio server.
    async fn on_server(self: &Arc<Self>, i: usize, bytes: Vec<u8>, generation: u64) {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) if v.is_object() => self.on_message(i, v, generation).await,
            _ => eprintln!(
                "warden mcp: dropped a malformed message from upstream `{}`",
                self.ups[i].name
            ),
        }
    }

    /// One message from upstream `i` of `generation`, whatever its transport.
    async fn on_message(self: &Arc<Self>, i: usize, mut msg: Value, generation: u64) {
        match classify(&msg) {
            Kind::Response { id } => {
                let key = id_key(id);
                if self.ups[i].slot.answer(&key, &msg) {
                    return;
                }
                let fwd = {
                    let mut st = lock(&self.st);
                    let f = st.fwd.remove(&key);
                    if let Some(f) = &f {
                        st.by_client.remove(&id_key(&f.client_id));
                    }
                    f
                };
                let Some(f) = fwd.filter(|f| f.up == i && f.generation == generation) else {
                    eprintln!("warden mcp: dropped a response to an unknown request id {key}");
                    return;
                };
                msg["id"] = f.client_id.clone();
                match f.call {
                    None => self.client.send(line(&msg)).await,
                    Some(call) => {
                        let gw = Arc::clone(&self.ups[i].gw);
                        let me = Arc::clone(self);
                        let task = async move {
                            let out =
                                checked_result(gw, &me.session, msg, &f.client_id, call).await;
                            me.client.send(out).await;
                        };
                        if self.ups[i].gw.can_escalate(Point::PostToolCall) {
                            tokio::spawn(task);
                        } else {
                            task.await;
                        }
                    }
                }
            }
            Kind::Notification => {
                match msg.get("method").and_then(Value::as_str) {
                    Some("notifications/tools/list_changed") => {
                        let mut st = lock(&self.ups[i].st);
                        st.tools.clear();
                        st.tools_fresh = false;
                    }
                    Some("notifications/cancelled") => {
                        // Cancels a request this server sent the client: use the client-side id.
                        let req = param(&msg, "requestId").cloned();
                        let mine = req.and_then(|r| {
                            let mut st = lock(&self.st);
                            let k = st
                                .to_client
                                .iter()
                                .find(|(_, (u, sid))| *u == i && *sid == r)
                                .map(|(k, _)| k.clone())?;
                            st.to_client.remove(&k);
                            serde_json::from_str::<Value>(&k).ok()
                        });
                        match mine {
                            Some(client_side) => msg["params"]["requestId"] = client_side,
                            None => return,
                        }
                    }
                    _ => {}
                }
                self.client.send(line(&msg)).await;
            }
            Kind::Request { id, .. } => {
                let server_id = id.clone();
                let client_side = self.new_id(UP_ID_PREFIX);
                lock(&self.st)
                    .to_client
                    .insert(id_key(&client_side), (i, server_id));
                msg["id"] = client_side;
                self.client.send(line(&msg)).await;
            }
            Kind::Invalid(why) => {
                eprintln!(
                    "warden mcp: dropped an invalid message from upstream `{}`: {why}",
                    self.ups[i].name
                );
            }
        }
    }
}

/// Feeds one generation of an upstream's messages to the hub, whatever its transport.
struct UpSink {
    hub: Arc<Hub>,
    i: usize,
    generation: u64,
}

impl ServerOutput for UpSink {
    async fn line(&self, bytes: Vec<u8>) {
        self.hub.on_server(self.i, bytes, self.generation).await;
    }

    async fn exited(&self) {
        self.hub.on_upstream_exit(self.i, self.generation).await;
    }
}

impl Sink for UpSink {
    async fn deliver(&self, inbound: Inbound) {
        match inbound {
            Inbound::Message(m) => self.hub.on_message(self.i, m, self.generation).await,
            Inbound::Unanswered { id, why } => {
                self.hub
                    .unanswered(self.i, self.generation, &id, &why)
                    .await;
            }
        }
    }
}

/// Runs `f(i)` for every `i < n` concurrently and returns the results in
/// index order, each at its own index: the index travels with the task, so a
/// task that panicked answers `Err` at its index instead of shifting every
/// later result onto the wrong upstream.
async fn each_index<X, F, Fut>(n: usize, f: F) -> Vec<Result<X, String>>
where
    X: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<X, String>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut index = HashMap::with_capacity(n);
    for i in 0..n {
        index.insert(set.spawn(f(i)).id(), i);
    }
    let mut out: Vec<Option<Result<X, String>>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next_with_id().await {
        let (id, r) = match joined {
            Ok((id, r)) => (id, r),
            Err(e) => (e.id(), Err(format!("internal error: {e}"))),
        };
        if let Some(slot) = index.get(&id).and_then(|i| out.get_mut(*i)) {
            *slot = Some(r);
        }
    }
    // Every task reports exactly once; one that did not counts as failed.
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err("the upstream task did not report".to_owned())))
        .collect()
}

/// `params.<key>` of a JSON-RPC message.
fn param<'a>(msg: &'a Value, key: &str) -> Option<&'a Value> {
    msg.get("params").and_then(|p| p.get(key))
}

/// `params.<key>` as a string (`""` when absent or not a string).
fn param_str(msg: &Value, key: &str) -> String {
    param(msg, key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// Who refused (an upstream index, or none), the target, the reasons.
type Refusal = (Option<usize>, String, Vec<String>);

/// Exposed name → route over `(prefix, upstream name, names)` per upstream.
fn routes<'a>(
    lists: impl Iterator<Item = (&'a str, &'a str, Vec<String>)>,
) -> HashMap<String, Route> {
    let mut out: HashMap<String, Route> = HashMap::new();
    let mut owners: HashMap<String, Vec<String>> = HashMap::new();
    for (i, (prefix, server, names)) in lists.enumerate() {
        for name in names {
            let exposed = format!("{prefix}{name}");
            let who = owners.entry(exposed.clone()).or_default();
            if !who.iter().any(|s| s == server) {
                who.push(server.to_owned());
            }
            if who.len() > 1 {
                out.insert(exposed, Route::Dup(who.clone()));
            } else {
                out.insert(exposed, Route::One(i, name));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn each_keeps_results_at_their_index_when_a_task_panics() {
        let out = each_index(4, |i| async move {
            // The later tasks finish first, the panicking one in between.
            tokio::time::sleep(Duration::from_millis(40 - 10 * i as u64)).await;
            if i == 1 {
                #[allow(clippy::panic)]
                {
                    panic!("upstream task 1 failed");
                }
            }
            Ok::<usize, String>(i * 10)
        })
        .await;
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], Ok(0));
        assert!(
            out[1].as_ref().is_err_and(|e| e.contains("panic")),
            "{out:?}"
        );
        assert_eq!(out[2], Ok(20));
        assert_eq!(out[3], Ok(30));
    }

    #[test]
    fn templates_match() {
        assert!(template_matches(
            "test://static/resource/{id}",
            "test://static/resource/7"
        ));
        assert!(!template_matches(
            "test://static/resource/{id}",
            "test://static/resource/7/x"
        ));
        assert!(template_matches("file:///{+path}", "file:///a/b/c.txt"));
        assert!(!template_matches("file:///{+path}", "http:///a"));
        assert!(template_matches(
            "db://{table}/rows/{id}",
            "db://users/rows/3"
        ));
        assert!(!template_matches(
            "db://{table}/rows/{id}",
            "db://users/cols/3"
        ));
        assert!(!template_matches("db://{table}", "db://"));
        assert!(!template_matches("bad{", "bad{"));
    }

    #[test]
    fn merges_capabilities() {
        let mut a = json!({"tools": {"listChanged": false}, "logging": {}});
        merge(
            &mut a,
            &json!({"tools": {"listChanged": true}, "resources": {"subscribe": true}}),
        );
        assert_eq!(
            a,
            json!({"tools": {"listChanged": true}, "logging": {}, "resources": {"subscribe": true}})
        );
    }

    #[test]
    fn duplicate_names_route_nowhere() {
        let r = routes(
            [
                ("", "a", vec!["x".to_owned(), "y".to_owned()]),
                ("", "b", vec!["x".to_owned()]),
                ("b_", "c", vec!["x".to_owned()]),
            ]
            .into_iter(),
        );
        assert!(matches!(r.get("x"), Some(Route::Dup(s)) if s == &["a", "b"]));
        assert!(matches!(r.get("y"), Some(Route::One(0, n)) if n == "y"));
        assert!(matches!(r.get("b_x"), Some(Route::One(2, n)) if n == "x"));
    }
}
