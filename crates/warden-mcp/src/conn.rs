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
    INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, Kind, classify, error_line, id_key,
    result_line, tool_error,
};
use crate::slot::{Slot, Started};
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use warden_core::Point;

/// How long a request the gateway sends itself (`tools/list`, a replayed
/// `initialize`) may take.
pub(crate) const OWN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
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
    ) -> Result<Started, String> {
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

/// What the client is sent, framed. Closed when the gateway is done with
/// the client: answers of tasks still in flight are then dropped and the
/// writer task can finish.
pub(crate) struct ClientQueue(Mutex<Option<mpsc::Sender<Vec<u8>>>>);

impl ClientQueue {
    pub(crate) fn new(tx: mpsc::Sender<Vec<u8>>) -> Self {
        ClientQueue(Mutex::new(Some(tx)))
    }

    /// Queues `bytes` for the client (nothing once closed).
    pub(crate) async fn send(&self, bytes: Vec<u8>) {
        let tx = self.lock().clone();
        if let Some(tx) = tx {
            let _ = tx.send(bytes).await;
        }
    }

    /// Lets go of the queue.
    pub(crate) fn close(&self) {
        self.lock().take();
    }

    fn lock(&self) -> MutexGuard<'_, Option<mpsc::Sender<Vec<u8>>>> {
        // A sender or nothing: a panic elsewhere cannot leave it unsafe to read.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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

struct State {
    inflight: HashMap<String, Inflight>,
    tools: ToolBook,
}

struct Conn {
    gw: Arc<Gateway>,
    session: String,
    cmd: ServerCommand,
    state: Mutex<State>,
    /// The server: its generation, restarts, own requests and the replayed handshake.
    slot: Slot,
    client: ClientQueue,
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
            tools: ToolBook::default(),
        }),
        slot: Slot::new(None, Arc::new(AtomicU64::new(1))),
        client: ClientQueue::new(client_tx.clone()),
    });
    conn.slot
        .start(|generation| conn.spawn(generation))
        .map_err(McpError::Upstream)?;
    let max = conn.gw.max_message_bytes();
    let c = &conn;
    let result = read_client(input, max, client_tx, |l| c.on_client(l)).await;
    conn.slot.stop().await;
    conn.client.close();
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
    /// Starts generation `generation` of the server process with its reader and writer tasks.
    fn spawn(self: &Arc<Self>, generation: u64) -> Result<Started, String> {
        let out = ConnOutput {
            conn: Arc::clone(self),
            generation,
        };
        let max = self.gw.max_message_bytes();
        self.cmd.start(max, "the server".to_owned(), out)
    }

    /// The running server's input, restarting a crashed server (with backoff,
    /// replaying the client's initialize handshake) if needed.
    async fn upstream(self: &Arc<Self>) -> Result<(mpsc::Sender<Vec<u8>>, u64), String> {
        self.slot.running(|g| self.spawn(g), |_| {}).await
    }

    /// The server of `generation` is gone: every request it owed an answer
    /// gets an error (never a silent hang, never an allow).
    async fn on_upstream_exit(&self, generation: u64) {
        if !self.slot.exited(generation) {
            return;
        }
        let mut failed = Vec::new();
        {
            let mut st = lock(&self.state);
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
        }
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
            self.client.send(bytes).await;
        }
    }

    /// Forwards a message the gateway has nothing to say about.
    async fn forward_raw(self: &Arc<Self>, mut bytes: Vec<u8>) {
        bytes.push(b'\n');
        if let Ok((tx, _)) = self.upstream().await {
            let _ = tx.send(bytes).await;
        }
    }

    async fn on_client(self: &Arc<Self>, bytes: Vec<u8>) {
        let msg = match crate::calls::screen_client(&bytes) {
            Ok(msg) => msg,
            Err(Some(answer)) => return self.client.send(answer).await,
            Err(None) => return,
        };
        match classify(&msg) {
            // Screened out above.
            Kind::Invalid(_) => {}
            Kind::Notification => {
                if msg.get("method").and_then(Value::as_str) == Some("notifications/initialized") {
                    self.slot.remember_initialized(bytes.clone());
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
                        .client
                        .send(error_line(&id, INVALID_REQUEST, &text))
                        .await;
                }
                if lock(&self.state).inflight.contains_key(&key) {
                    return self
                        .client
                        .send(error_line(
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
                        self.slot
                            .remember_init(msg.get("params").cloned().unwrap_or(Value::Null));
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
                return self.client.send(out).await;
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
                self.client.send(out).await;
            }
        }
    }

    async fn on_call(self: Arc<Self>, mut msg: Value, id: Value, method: &'static str) {
        let (tool, args) = match call_target(&msg, method) {
            Ok(t) => t,
            Err(e) => return self.client.send(error_line(&id, INVALID_PARAMS, &e)).await,
        };
        if method == "tools/call"
            && let Err(reasons) = self.check_tool(&tool, &msg).await
        {
            self.gw.refuse(&self.session, &tool, method, args, &reasons);
            return self.client.send(denial(&id, method, &reasons)).await;
        }
        let decision_id =
            match crate::calls::before_call(&self.gw, &self.session, &tool, method, args, &mut msg)
                .await
            {
                Ok((decision_id, _)) => decision_id,
                Err(reasons) => return self.client.send(denial(&id, method, &reasons)).await,
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
        self.slot
            .pages("tools/list", meta.as_ref(), |result, first| {
                self.screen_list(result, first);
            })
            .await
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
                if self.slot.answer(&key, &msg) {
                    return;
                }
                let inflight = lock(&self.state).inflight.remove(&key);
                let Some(f) = inflight.filter(|f| f.generation == generation) else {
                    // An answer to nobody (or a previous server): the client never asked.
                    eprintln!("warden mcp: dropped a response to an unknown request id {key}");
                    return;
                };
                match f.pending {
                    Pending::Plain => self.client.send(with_newline(bytes)).await,
                    Pending::ToolsList { first_page } => match msg.get("result") {
                        Some(r) => {
                            let screened = self.screen_list(r.clone(), first_page);
                            self.client.send(result_line(&f.id, screened)).await;
                        }
                        None => self.client.send(with_newline(bytes)).await,
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
                self.client.send(with_newline(bytes)).await;
            }
            Kind::Request { .. } => self.client.send(with_newline(bytes)).await,
            Kind::Invalid(why) => {
                eprintln!("warden mcp: dropped an invalid message from the server: {why}");
            }
        }
    }

    async fn after_call(self: Arc<Self>, msg: Value, id: Value, call: CallInfo) {
        let out = checked_result(Arc::clone(&self.gw), &self.session, msg, &id, call).await;
        self.client.send(out).await;
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

/// [`serve_stdio`] on this process's own stdin and stdout.
pub async fn serve_own_stdio(gw: Arc<Gateway>, cmd: ServerCommand) -> Result<(), McpError> {
    let (input, output) = own_stdio();
    serve_stdio(gw, cmd, input, output).await
}

/// This process's stdin and stdout for a gateway. When they are pipes (as
/// when an MCP client spawns the gateway) they are driven by the event loop
/// directly instead of through tokio's blocking-thread stdio, which saves
/// two thread hand-offs per message.
pub(crate) fn own_stdio() -> (
    Box<dyn AsyncRead + Unpin + Send>,
    Box<dyn AsyncWrite + Unpin + Send>,
) {
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
        let input: Box<dyn AsyncRead + Unpin + Send> = match input {
            Some(i) => Box::new(i),
            None => Box::new(tokio::io::stdin()),
        };
        let output: Box<dyn AsyncWrite + Unpin + Send> = match output {
            Some(o) => Box::new(o),
            None => Box::new(tokio::io::stdout()),
        };
        (input, output)
    }
    #[cfg(not(unix))]
    {
        (Box::new(tokio::io::stdin()), Box::new(tokio::io::stdout()))
    }
}
