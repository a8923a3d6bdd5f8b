//! One client connection proxied to one stdio MCP server process.
//!
//! Client messages are read in order; `tools/call`, `resources/read` and
//! `prompts/get` are decided on their own tasks (an escalation may wait for
//! minutes) and forwarded only when policy lets them proceed. Responses to
//! intercepted requests are checked at `post_tool_call`; every other message,
//! in both directions, is forwarded byte-for-byte.

use crate::McpError;
use crate::calls::{CallInfo, ToolBook, call_target, checked_result, denial, reserved};
use crate::gate::{Gateway, REASON_UNKNOWN_TOOL, REASON_UPSTREAM_DOWN, RESERVED_TOOLS};
use crate::jsonrpc::{
    INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, Kind, classify, error_line, id_key, line,
    result_line, tool_error,
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use warden_core::Point;

/// First delay before restarting a crashed server; doubles per crash up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Longest delay between restart attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a request the gateway sends itself (`tools/list`, a replayed
/// `initialize`) may take.
pub(crate) const OWN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A server that stayed up this long starts the next crash at the initial backoff.
const STABLE_UPTIME: Duration = Duration::from_secs(10);
/// Prefix of request ids the gateway sends itself; clients may not use it.
pub(crate) const OWN_ID_PREFIX: &str = "warden-gw-";

/// The stdio MCP server command to run.
#[derive(Debug, Clone)]
pub struct ServerCommand {
    /// Program.
    pub program: OsString,
    /// Arguments.
    pub args: Vec<OsString>,
    /// Environment variables set for the server (on top of the gateway's own).
    pub env: Vec<(OsString, OsString)>,
    /// Working directory of the server (default: the gateway's).
    pub cwd: Option<std::path::PathBuf>,
}

impl ServerCommand {
    /// `program args...`, with the gateway's environment and working directory.
    pub fn new(program: impl Into<OsString>, args: Vec<OsString>) -> Self {
        ServerCommand {
            program: program.into(),
            args,
            env: Vec::new(),
            cwd: None,
        }
    }

    /// Starts the process with piped stdin/stdout (stderr inherited: the
    /// server's own messages go to the gateway's stderr) and pumps it: what
    /// is sent on the returned queue is written to its stdin, each message on
    /// its stdout (at most `max` bytes) goes to `out` in order. When its
    /// stdout ends (EOF, a read error, or an oversize message, which stops
    /// it) the process is reaped, killed if it has not exited within 2 s, and
    /// `out` is told. `who` names the server in the gateway's log.
    /// Returns the queue and the task reading its output.
    pub(crate) fn start(
        &self,
        max: usize,
        who: String,
        out: impl ServerOutput,
    ) -> Result<(mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<()>), String> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", self.program))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("server stdio not captured".to_owned());
        };
        let (tx, _writer) = write_queue(stdin);
        let reader = tokio::spawn(async move {
            let mut stdout = BufReader::with_capacity(64 * 1024, stdout);
            loop {
                match read_frame(&mut stdout, max).await {
                    Ok(Frame::Line(l)) => out.line(l).await,
                    Ok(Frame::Oversize) => {
                        eprintln!("warden mcp: {who} sent a message over {max} bytes; stopping it");
                        break;
                    }
                    Ok(Frame::Eof) | Err(_) => break,
                }
            }
            // Its stdout is gone: the process is of no further use.
            if tokio::time::timeout(Duration::from_secs(2), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
            out.exited().await;
        });
        Ok((tx, reader))
    }
}

/// Where a stdio server's output goes (one server generation).
pub(crate) trait ServerOutput: Send + Sync + 'static {
    /// One message (without its newline), in the order the server wrote them.
    fn line(&self, bytes: Vec<u8>) -> impl Future<Output = ()> + Send;
    /// The server's output ended and its process was reaped.
    fn exited(&self) -> impl Future<Output = ()> + Send;
}

/// A bounded queue whose messages a task writes to `w` (flushed each), until
/// every sender is gone or a write fails. Bounded: a reader that does not
/// keep up holds the writers back instead of growing memory.
pub(crate) fn write_queue<W>(w: W) -> (mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let task = tokio::spawn(async move {
        let mut w = w;
        while let Some(bytes) = rx.recv().await {
            if w.write_all(&bytes).await.is_err() || w.flush().await.is_err() {
                break;
            }
        }
    });
    (tx, task)
}

/// Reads a client's newline-delimited messages from `input` until it closes,
/// handing each to `on_line` in order; a message over `max` bytes is answered
/// on `client` with an error (it is never buffered whole).
pub(crate) async fn read_client<R, F, Fut>(
    input: R,
    max: usize,
    client: mpsc::Sender<Vec<u8>>,
    mut on_line: F,
) -> Result<(), McpError>
where
    R: AsyncRead + Unpin,
    F: FnMut(Vec<u8>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    loop {
        match read_frame(&mut reader, max).await {
            Ok(Frame::Eof) => return Ok(()),
            Ok(Frame::Oversize) => {
                let msg = format!("message exceeds the gateway limit of {max} bytes");
                let _ = client
                    .send(error_line(&Value::Null, INVALID_REQUEST, &msg))
                    .await;
            }
            Ok(Frame::Line(l)) => on_line(l).await,
            Err(e) => return Err(McpError::Io(e)),
        }
    }
}

/// When a crashed server may be restarted: [`INITIAL_BACKOFF`] after the
/// first crash, doubling per crash up to [`MAX_BACKOFF`], back to the
/// initial delay once a server stayed up [`STABLE_UPTIME`].
#[derive(Debug)]
pub(crate) struct Restarts {
    next_attempt: Instant,
    backoff: Duration,
}

impl Restarts {
    pub(crate) fn new() -> Self {
        Restarts {
            next_attempt: Instant::now(),
            backoff: INITIAL_BACKOFF,
        }
    }

    /// `Err(text)` while the back-off runs.
    pub(crate) fn may_start(&self) -> Result<(), String> {
        let now = Instant::now();
        if now < self.next_attempt {
            return Err(format!(
                "{REASON_UPSTREAM_DOWN}: the MCP server exited; next restart attempt in {} ms",
                (self.next_attempt - now).as_millis()
            ));
        }
        Ok(())
    }

    /// A start failed (or a server exited): wait before the next attempt.
    pub(crate) fn failed(&mut self) {
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// A server that had been up for `uptime` exited.
    pub(crate) fn exited(&mut self, uptime: Duration) {
        if uptime > STABLE_UPTIME {
            self.backoff = INITIAL_BACKOFF;
        }
        self.failed();
    }
}

/// One framed message, or why there is none.
pub(crate) enum Frame {
    Line(Vec<u8>),
    Oversize,
    Eof,
}

/// Reads one newline-delimited message of at most `max` bytes; longer ones
/// are skipped to their end without being buffered.
pub(crate) async fn read_frame<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Frame> {
    let mut buf = Vec::new();
    let mut over = false;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(match (over, buf.is_empty()) {
                (true, _) => Frame::Oversize,
                (false, true) => Frame::Eof,
                (false, false) => Frame::Line(buf),
            });
        }
        let (take, done) = match avail.iter().position(|b| *b == b'\n') {
            Some(i) => (i, Some(i + 1)),
            None => (avail.len(), None),
        };
        if !over {
            if buf.len() + take > max {
                over = true;
                buf = Vec::new();
            } else {
                buf.extend_from_slice(&avail[..take]);
            }
        }
        let consumed = done.unwrap_or(take);
        r.consume(consumed);
        if done.is_some() {
            if over {
                return Ok(Frame::Oversize);
            }
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                buf.clear();
                continue;
            }
            return Ok(Frame::Line(buf));
        }
    }
}

/// What a forwarded client request was, for handling its response.
enum Pending {
    Plain,
    ToolsList {
        first_page: bool,
    },
    Call {
        tool: String,
        method: &'static str,
        decision_id: String,
        started: Instant,
    },
}

struct Inflight {
    id: Value,
    generation: u64,
    pending: Pending,
}

struct Upstream {
    tx: mpsc::Sender<Vec<u8>>,
    generation: u64,
    started: Instant,
}

struct State {
    inflight: HashMap<String, Inflight>,
    own: HashMap<String, oneshot::Sender<Result<Value, String>>>,
    tools: ToolBook,
    /// The client's `initialize` params and `initialized` notification, replayed to a restarted server.
    init: Option<Value>,
    initialized: Option<Vec<u8>>,
    upstream: Option<Upstream>,
    generation: u64,
    restarts: Restarts,
    reader: Option<tokio::task::JoinHandle<()>>,
}

struct Conn {
    gw: Arc<Gateway>,
    session: String,
    cmd: ServerCommand,
    state: Mutex<State>,
    client: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    restart: tokio::sync::Mutex<()>,
    next_own: AtomicU64,
}

/// Runs the gateway for one client speaking MCP over `input`/`output`
/// (newline-delimited JSON-RPC, as on stdio) in front of the stdio server
/// `cmd`. Returns when the client closes its input; the server is then
/// asked to exit (its stdin closed) and killed if it does not.
pub async fn serve_stdio<R, W>(
    gw: Arc<Gateway>,
    cmd: ServerCommand,
    input: R,
    output: W,
) -> Result<(), McpError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (client_tx, writer) = write_queue(output);
    let conn = Arc::new(Conn {
        session: format!("mcp-{}", warden_core::Decision::new_id()),
        gw,
        cmd,
        state: Mutex::new(State {
            inflight: HashMap::new(),
            own: HashMap::new(),
            tools: ToolBook::default(),
            init: None,
            initialized: None,
            upstream: None,
            generation: 0,
            restarts: Restarts::new(),
            reader: None,
        }),
        client: Mutex::new(Some(client_tx.clone())),
        restart: tokio::sync::Mutex::new(()),
        next_own: AtomicU64::new(1),
    });
    conn.spawn_upstream().map_err(McpError::Upstream)?;
    let max = conn.gw.max_message_bytes();
    let c = &conn;
    let result = read_client(input, max, client_tx, |l| c.on_client(l)).await;
    conn.shutdown().await;
    if let Ok(mut c) = conn.client.lock() {
        c.take();
    }
    drop(conn);
    // In-flight tasks hold senders; give them a moment to deliver, then stop.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    result
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // State is plain data: a panic elsewhere cannot leave it unsafe to read.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Conn {
    fn client(&self) -> Option<mpsc::Sender<Vec<u8>>> {
        self.client.lock().ok().and_then(|c| c.clone())
    }

    async fn send_client(&self, bytes: Vec<u8>) {
        if let Some(c) = self.client() {
            let _ = c.send(bytes).await;
        }
    }

    /// Starts the server process (generation n+1) with its reader and writer tasks.
    fn spawn_upstream(self: &Arc<Self>) -> Result<(), String> {
        let generation = {
            let mut st = lock(&self.state);
            st.generation += 1;
            st.generation
        };
        let out = ConnOutput {
            conn: Arc::clone(self),
            generation,
        };
        let max = self.gw.max_message_bytes();
        let (tx, reader) = self.cmd.start(max, "the server".to_owned(), out)?;
        let mut st = lock(&self.state);
        st.upstream = Some(Upstream {
            tx,
            generation,
            started: Instant::now(),
        });
        st.reader = Some(reader);
        Ok(())
    }

    /// The running server's input, restarting a crashed server (with backoff,
    /// replaying the client's initialize handshake) if needed.
    async fn upstream(self: &Arc<Self>) -> Result<(mpsc::Sender<Vec<u8>>, u64), String> {
        if let Some(u) = &lock(&self.state).upstream {
            return Ok((u.tx.clone(), u.generation));
        }
        let _restart = self.restart.lock().await;
        let (init, initialized) = {
            let st = lock(&self.state);
            if let Some(u) = &st.upstream {
                return Ok((u.tx.clone(), u.generation));
            }
            st.restarts.may_start()?;
            (st.init.clone(), st.initialized.clone())
        };
        eprintln!("warden mcp: restarting the MCP server");
        if let Err(e) = self.spawn_upstream() {
            self.note_failed_start();
            return Err(format!("{REASON_UPSTREAM_DOWN}: {e}"));
        }
        if let Some(params) = init {
            if let Err(e) = self.request("initialize", params).await {
                self.note_failed_start();
                return Err(format!(
                    "{REASON_UPSTREAM_DOWN}: restarted server failed to initialize: {e}"
                ));
            }
            if let Some(mut note) = initialized {
                note.push(b'\n');
                let tx = lock(&self.state).upstream.as_ref().map(|u| u.tx.clone());
                if let Some(tx) = tx {
                    let _ = tx.send(note).await;
                }
            }
        }
        lock(&self.state)
            .upstream
            .as_ref()
            .map(|u| (u.tx.clone(), u.generation))
            .ok_or_else(|| format!("{REASON_UPSTREAM_DOWN}: the restarted server exited"))
    }

    fn note_failed_start(&self) {
        let mut st = lock(&self.state);
        st.upstream = None;
        st.restarts.failed();
    }

    /// The server of `generation` is gone: every request it owed an answer
    /// gets an error (never a silent hang, never an allow).
    async fn on_upstream_exit(&self, generation: u64) {
        let mut failed = Vec::new();
        {
            let mut st = lock(&self.state);
            let Some(u) = &st.upstream else { return };
            if u.generation != generation {
                return;
            }
            let uptime = u.started.elapsed();
            st.upstream = None;
            st.restarts.exited(uptime);
            // Definitions are re-listed (and re-checked against pins) after a restart.
            st.tools.clear();
            let keys: Vec<String> = st
                .inflight
                .iter()
                .filter(|(_, f)| f.generation == generation)
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                if let Some(f) = st.inflight.remove(&k) {
                    failed.push(f);
                }
            }
            for (_, waiter) in st.own.drain() {
                let _ = waiter.send(Err("the MCP server exited".to_owned()));
            }
        }
        eprintln!("warden mcp: the MCP server exited");
        let text = format!(
            "{REASON_UPSTREAM_DOWN}: the MCP server exited before answering; the request may or may not have run"
        );
        for f in failed {
            let bytes = match &f.pending {
                Pending::Call {
                    method: "tools/call",
                    decision_id,
                    started,
                    ..
                } => {
                    self.gw
                        .outcome(decision_id, Some(text.clone()), started.elapsed());
                    result_line(&f.id, tool_error(&text))
                }
                Pending::Call {
                    decision_id,
                    started,
                    ..
                } => {
                    self.gw
                        .outcome(decision_id, Some(text.clone()), started.elapsed());
                    error_line(&f.id, INTERNAL_ERROR, &text)
                }
                _ => error_line(&f.id, INTERNAL_ERROR, &text),
            };
            self.send_client(bytes).await;
        }
    }

    async fn shutdown(&self) {
        let reader = {
            let mut st = lock(&self.state);
            st.upstream = None;
            st.reader.take()
        };
        if let Some(mut reader) = reader {
            // Closing its stdin asks the server to exit; the reader reaps it.
            if tokio::time::timeout(Duration::from_secs(5), &mut reader)
                .await
                .is_err()
            {
                reader.abort();
            }
        }
    }

    /// Forwards a message the gateway has nothing to say about.
    async fn forward_raw(self: &Arc<Self>, mut bytes: Vec<u8>) {
        bytes.push(b'\n');
        if let Ok((tx, _)) = self.upstream().await {
            let _ = tx.send(bytes).await;
        }
    }

    /// Sends a request of the gateway's own and waits for its result.
    async fn request(self: &Arc<Self>, method: &str, params: Value) -> Result<Value, String> {
        let n = self.next_own.fetch_add(1, Ordering::Relaxed);
        let id = Value::String(format!("{OWN_ID_PREFIX}{n}"));
        let (tx, rx) = oneshot::channel();
        let (up, _) = {
            let st = lock(&self.state);
            match &st.upstream {
                Some(u) => (u.tx.clone(), u.generation),
                None => return Err("the MCP server is not running".to_owned()),
            }
        };
        lock(&self.state).own.insert(id_key(&id), tx);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if up.send(line(&msg)).await.is_err() {
            lock(&self.state).own.remove(&id_key(&id));
            return Err("the MCP server is not running".to_owned());
        }
        match tokio::time::timeout(OWN_REQUEST_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the MCP server exited".to_owned()),
            Err(_) => {
                lock(&self.state).own.remove(&id_key(&id));
                Err(format!(
                    "no answer to {method} within {OWN_REQUEST_TIMEOUT:?}"
                ))
            }
        }
    }

    async fn on_client(self: &Arc<Self>, bytes: Vec<u8>) {
        let msg = match crate::calls::screen_client(&bytes) {
            Ok(msg) => msg,
            Err(Some(answer)) => return self.send_client(answer).await,
            Err(None) => return,
        };
        match classify(&msg) {
            // Screened out above.
            Kind::Invalid(_) => {}
            Kind::Notification => {
                if msg.get("method").and_then(Value::as_str) == Some("notifications/initialized") {
                    lock(&self.state).initialized = Some(bytes.clone());
                }
                self.forward_raw(bytes).await;
            }
            Kind::Response { .. } => self.forward_raw(bytes).await,
            Kind::Request { id, method } => {
                let id = id.clone();
                let key = id_key(&id);
                if id.as_str().is_some_and(|s| s.starts_with(OWN_ID_PREFIX)) {
                    let text = format!(
                        "request ids starting with `{OWN_ID_PREFIX}` are reserved by the gateway"
                    );
                    return self
                        .send_client(error_line(&id, INVALID_REQUEST, &text))
                        .await;
                }
                if lock(&self.state).inflight.contains_key(&key) {
                    return self
                        .send_client(error_line(
                            &id,
                            INVALID_REQUEST,
                            "a request with this id is still in flight",
                        ))
                        .await;
                }
                match method {
                    m if crate::calls::INTERCEPTED.contains(&m) => {
                        let method: &'static str = match method {
                            "tools/call" => "tools/call",
                            "resources/read" => "resources/read",
                            _ => "prompts/get",
                        };
                        let me = Arc::clone(self);
                        if self.gw.can_escalate(Point::PreToolCall) {
                            // An approval may take minutes: keep reading meanwhile.
                            tokio::spawn(async move { me.on_call(msg, id, method).await });
                        } else {
                            // Saves a task hand-off on the hot path.
                            me.on_call(msg, id, method).await;
                        }
                    }
                    "tools/list" => {
                        let first_page = msg
                            .get("params")
                            .and_then(|p| p.get("cursor"))
                            .is_none_or(Value::is_null);
                        self.forward_request(id, Pending::ToolsList { first_page }, bytes)
                            .await;
                    }
                    "initialize" => {
                        lock(&self.state).init =
                            Some(msg.get("params").cloned().unwrap_or(Value::Null));
                        self.forward_request(id, Pending::Plain, bytes).await;
                    }
                    _ => self.forward_request(id, Pending::Plain, bytes).await,
                }
            }
        }
    }

    /// Forwards a client request, remembering it so a crash can answer it.
    async fn forward_request(self: &Arc<Self>, id: Value, pending: Pending, mut bytes: Vec<u8>) {
        let is_call = matches!(
            pending,
            Pending::Call {
                method: "tools/call",
                ..
            }
        );
        let (tx, generation) = match self.upstream().await {
            Ok(u) => u,
            Err(e) => {
                if let Pending::Call {
                    decision_id,
                    started,
                    ..
                } = &pending
                {
                    self.gw
                        .outcome(decision_id, Some(e.clone()), started.elapsed());
                }
                let out = if is_call {
                    result_line(&id, tool_error(&e))
                } else {
                    error_line(&id, INTERNAL_ERROR, &e)
                };
                return self.send_client(out).await;
            }
        };
        let key = id_key(&id);
        lock(&self.state).inflight.insert(
            key.clone(),
            Inflight {
                id: id.clone(),
                generation,
                pending,
            },
        );
        bytes.push(b'\n');
        if tx.send(bytes).await.is_err() {
            // The server went away between the check and the send.
            let f = lock(&self.state).inflight.remove(&key);
            if f.is_some() {
                let text = format!("{REASON_UPSTREAM_DOWN}: the MCP server exited");
                let out = if is_call {
                    result_line(&id, tool_error(&text))
                } else {
                    error_line(&id, INTERNAL_ERROR, &text)
                };
                self.send_client(out).await;
            }
        }
    }

    async fn on_call(self: Arc<Self>, mut msg: Value, id: Value, method: &'static str) {
        let (tool, args) = match call_target(&msg, method) {
            Ok(t) => t,
            Err(e) => return self.send_client(error_line(&id, INVALID_PARAMS, &e)).await,
        };
        if method == "tools/call"
            && let Err(reasons) = self.check_tool(&tool, &msg).await
        {
            self.gw.refuse(&self.session, &tool, method, args, &reasons);
            return self.send_client(denial(&id, method, &reasons)).await;
        }
        let decision_id =
            match crate::calls::before_call(&self.gw, &self.session, &tool, method, args, &mut msg)
                .await
            {
                Ok((decision_id, _)) => decision_id,
                Err(reasons) => return self.send_client(denial(&id, method, &reasons)).await,
            };
        let bytes = serde_json::to_vec(&msg).unwrap_or_default();
        let pending = Pending::Call {
            tool,
            method,
            decision_id,
            started: Instant::now(),
        };
        self.forward_request(id, pending, bytes).await;
    }

    /// A tool must be listed by the server, unchanged since pinned and unique.
    async fn check_tool(self: &Arc<Self>, tool: &str, msg: &Value) -> Result<(), Vec<String>> {
        if RESERVED_TOOLS.contains(&tool) {
            return Err(reserved(tool));
        }
        let listed = lock(&self.state).tools.is_listed(tool);
        if !listed {
            // Not listed on this connection yet (a stateless client, or a
            // list_changed since): fetch the definitions so the pin is checked.
            let meta = msg.get("params").and_then(|p| p.get("_meta")).cloned();
            self.list_all(meta).await.map_err(|e| {
                vec![
                    REASON_UNKNOWN_TOOL.to_owned(),
                    format!("tool definitions could not be listed: {e}"),
                ]
            })?;
        }
        lock(&self.state).tools.check(tool)
    }

    /// Lists every page of the server's tools with requests of the gateway's own.
    async fn list_all(self: &Arc<Self>, meta: Option<Value>) -> Result<(), String> {
        self.upstream().await?;
        let mut cursor: Option<Value> = None;
        for page in 0..1000 {
            let mut params = Map::new();
            if let Some(c) = &cursor {
                params.insert("cursor".to_owned(), c.clone());
            }
            if let Some(m) = &meta {
                params.insert("_meta".to_owned(), m.clone());
            }
            let result = self.request("tools/list", Value::Object(params)).await?;
            self.screen_list(result.clone(), page == 0);
            cursor = result.get("nextCursor").filter(|c| !c.is_null()).cloned();
            if cursor.is_none() {
                return Ok(());
            }
        }
        Err("more than 1000 pages of tools".to_owned())
    }

    /// Pins, de-duplicates and filters one page of a `tools/list` result.
    fn screen_list(&self, result: Value, first_page: bool) -> Value {
        let mut st = lock(&self.state);
        st.tools.screen(&self.gw, &self.session, result, first_page)
    }

    async fn on_server(self: &Arc<Self>, bytes: Vec<u8>, generation: u64) {
        let msg: Value = match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) if v.is_object() => v,
            // A server answering in a batch could slip a tool result past the
            // post-call check: nothing but single messages goes through.
            _ => {
                eprintln!("warden mcp: dropped a malformed message from the server");
                return;
            }
        };
        match classify(&msg) {
            Kind::Response { id } => {
                let key = id_key(id);
                let (own, inflight) = {
                    let mut st = lock(&self.state);
                    match st.own.remove(&key) {
                        Some(w) => (Some(w), None),
                        None => (None, st.inflight.remove(&key)),
                    }
                };
                if let Some(waiter) = own {
                    let r = match msg.get("result") {
                        Some(r) => Ok(r.clone()),
                        None => Err(msg.get("error").map(|e| e.to_string()).unwrap_or_default()),
                    };
                    let _ = waiter.send(r);
                    return;
                }
                let Some(f) = inflight.filter(|f| f.generation == generation) else {
                    // An answer to nobody (or a previous server): the client never asked.
                    eprintln!("warden mcp: dropped a response to an unknown request id {key}");
                    return;
                };
                match f.pending {
                    Pending::Plain => self.send_client(with_newline(bytes)).await,
                    Pending::ToolsList { first_page } => match msg.get("result") {
                        Some(r) => {
                            let screened = self.screen_list(r.clone(), first_page);
                            self.send_client(result_line(&f.id, screened)).await;
                        }
                        None => self.send_client(with_newline(bytes)).await,
                    },
                    Pending::Call {
                        tool,
                        method,
                        decision_id,
                        started,
                    } => {
                        let me = Arc::clone(self);
                        let call = CallInfo {
                            tool,
                            method,
                            decision_id,
                            started,
                        };
                        if self.gw.can_escalate(Point::PostToolCall) {
                            tokio::spawn(async move { me.after_call(msg, f.id, call).await });
                        } else {
                            me.after_call(msg, f.id, call).await;
                        }
                    }
                }
            }
            Kind::Notification => {
                if msg.get("method").and_then(Value::as_str)
                    == Some("notifications/tools/list_changed")
                {
                    // Calls re-list first, so a changed definition meets its pin.
                    lock(&self.state).tools.clear();
                }
                self.send_client(with_newline(bytes)).await;
            }
            Kind::Request { .. } => self.send_client(with_newline(bytes)).await,
            Kind::Invalid(why) => {
                eprintln!("warden mcp: dropped an invalid message from the server: {why}");
            }
        }
    }

    async fn after_call(self: Arc<Self>, msg: Value, id: Value, call: CallInfo) {
        let out = checked_result(Arc::clone(&self.gw), &self.session, msg, &id, call).await;
        self.send_client(out).await;
    }
}

/// One generation of the server's output, fed to its connection.
struct ConnOutput {
    conn: Arc<Conn>,
    generation: u64,
}

impl ServerOutput for ConnOutput {
    async fn line(&self, bytes: Vec<u8>) {
        self.conn.on_server(bytes, self.generation).await;
    }

    async fn exited(&self) {
        self.conn.on_upstream_exit(self.generation).await;
    }
}

fn with_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.push(b'\n');
    bytes
}

/// [`serve_stdio`] on this process's own stdin and stdout. When they are
/// pipes (as when an MCP client spawns the gateway) they are driven by the
/// event loop directly instead of through tokio's blocking-thread stdio,
/// which saves two thread hand-offs per message.
pub async fn serve_own_stdio(gw: Arc<Gateway>, cmd: ServerCommand) -> Result<(), McpError> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use tokio::net::unix::pipe;
        let input = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .and_then(|fd| pipe::Receiver::from_file(std::fs::File::from(fd)).ok());
        let output = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .and_then(|fd| pipe::Sender::from_file(std::fs::File::from(fd)).ok());
        match (input, output) {
            (Some(i), Some(o)) => return serve_stdio(gw, cmd, i, o).await,
            (Some(i), None) => return serve_stdio(gw, cmd, i, tokio::io::stdout()).await,
            (None, Some(o)) => return serve_stdio(gw, cmd, tokio::io::stdin(), o).await,
            (None, None) => {}
        }
    }
    serve_stdio(gw, cmd, tokio::io::stdin(), tokio::io::stdout()).await
}
