//! The multi-upstream gateway served over Streamable HTTP
//! (`warden mcp --config gateway.yaml --listen HOST:PORT`).
//!
//! Each client session gets a hub of its own (multi.rs: its own upstream
//! connections, tool books and routes), started when the client's
//! `initialize` is answered with an `Mcp-Session-Id` of the gateway's own and
//! closed on DELETE, after [`ListenLimits::idle_timeout`] without traffic,
//! and when the gateway stops. A request without a session that is not an
//! `initialize` (MCP 2026-07-28 stateless) gets a hub for that request
//! alone. Every hub counts against [`ListenLimits::max_sessions`]; beyond it
//! the gateway answers 503 with a JSON-RPC error.
//!
//! A POST carries one message. A request is answered as `application/json`,
//! or as an SSE stream when notifications or server requests meant for it
//! (its progress, or anything while the session has no GET stream) come
//! before its answer. GET opens the session's stream for everything else the
//! upstreams send; a second GET replaces the first.
//!
//! Every event of the GET stream carries an id (`<tag>-<n>`: a tag of the
//! session's own, `n` counting from 1), and the session keeps the last
//! [`ListenLimits::replay_events`] of them (at most
//! [`ListenLimits::replay_bytes`]), also while no stream is open once the
//! client has opened one (unless a POST may take them). A GET with
//! `Last-Event-ID` gets the events after that id, then the live ones; an id
//! that is not this session's, or after which events were evicted, gets 409
//! and the open stream is left alone. A stream without a replay starts with
//! an event without data that carries the id to resume from.
//!
//! The hub of a session decides and audits under the `Mcp-Session-Id` the
//! client is given; a stateless request's under an `mcp-<uuid>` of its own.

use crate::McpError;
use crate::auth::ClientAuth;
use crate::http::{json_response, read_post, rpc_error, session_of};
use crate::jsonrpc::{INTERNAL_ERROR, INVALID_REQUEST, Kind, classify, id_key};
use crate::multi::{Hub, UpstreamSpec, check_upstreams};
use crate::sse::event_with;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper::body::Bytes;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The path the gateway serves.
pub const LISTEN_PATH: &str = "/mcp";
/// Default of [`ListenLimits::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 64;
/// Default of [`ListenLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often an idle GET stream carries an SSE comment.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// JSON-RPC error code of a request refused because every session slot is taken.
pub const SERVER_BUSY: i64 = -32000;
/// Default of [`ListenLimits::replay_events`].
pub const DEFAULT_REPLAY_EVENTS: usize = 256;
/// Default of [`ListenLimits::replay_bytes`].
pub const DEFAULT_REPLAY_BYTES: usize = 1024 * 1024;

/// How much the HTTP gateway takes on.
#[derive(Debug, Clone)]
pub struct ListenLimits {
    /// Hubs alive at once: sessions plus stateless requests in flight. Each
    /// runs its own upstream connections (stdio processes, HTTP sessions).
    pub max_sessions: usize,
    /// A session with no request in flight, no GET stream open and no
    /// message for this long is closed (its upstreams stopped).
    pub idle_timeout: Duration,
    /// The last events of a session's GET stream kept for a client that
    /// reconnects with `Last-Event-ID`: at most this many...
    pub replay_events: usize,
    /// ... and at most this many bytes of messages (the oldest go first;
    /// a message larger than this is sent but cannot be replayed).
    pub replay_bytes: usize,
}

impl Default for ListenLimits {
    fn default() -> Self {
        ListenLimits {
            max_sessions: DEFAULT_MAX_SESSIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            replay_events: DEFAULT_REPLAY_EVENTS,
            replay_bytes: DEFAULT_REPLAY_BYTES,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere cannot leave it unsafe to read.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A POST waiting for the answer to its request.
struct Waiter {
    tx: mpsc::Sender<Vec<u8>>,
    /// The request's `_meta.progressToken`: its progress goes to it.
    progress: Option<String>,
    /// Whether messages not addressed to anyone may go to it (not while
    /// initializing: the session id is not issued yet).
    streams: bool,
    seq: u64,
}

/// The events of a session's GET stream still kept for a resume, numbered
/// from 1 in the order they were sent.
struct Replay {
    /// Number of the last event (0: none yet).
    last: u64,
    events: VecDeque<(u64, Vec<u8>)>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
}

impl Replay {
    /// Keeps `line` as the next event (the oldest evicted beyond the
    /// bounds); its number.
    fn push(&mut self, line: Vec<u8>) -> u64 {
        self.last += 1;
        self.bytes += line.len();
        self.events.push_back((self.last, line));
        while self.events.len() > self.max_events || self.bytes > self.max_bytes {
            match self.events.pop_front() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
        self.last
    }

    /// Every event after number `seq`, or `None` when that is not a point
    /// to resume from: ahead of the last event, or some event after it is
    /// no longer kept.
    fn after(&self, seq: u64) -> Option<Vec<(u64, Vec<u8>)>> {
        let first = self.events.front().map_or(self.last + 1, |(n, _)| *n);
        if seq > self.last || seq + 1 < first {
            return None;
        }
        Some(
            self.events
                .iter()
                .filter(|(n, _)| *n > seq)
                .cloned()
                .collect(),
        )
    }
}

/// A session's GET stream: where its events go and what it sent.
struct Stream {
    /// The open GET stream's queue (event number, message).
    tx: Option<mpsc::Sender<(u64, Vec<u8>)>>,
    /// Whether the client ever opened one: from then on, messages for it
    /// are numbered and kept even while none is open, for a resume.
    opened: bool,
    /// This session's event ids are `<tag>-<number>`: an id of another
    /// session's stream is not one of them.
    tag: String,
    replay: Replay,
}

impl Stream {
    /// The events after the event id `last_event_id`, if this stream can
    /// resume from it.
    fn resume(&self, last_event_id: &str) -> Option<Vec<(u64, Vec<u8>)>> {
        let seq = last_event_id
            .strip_prefix(self.tag.as_str())?
            .strip_prefix('-')?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.replay.after(seq.parse().ok()?)
    }
}

/// Where one message for the client goes.
enum Target {
    /// A waiting POST.
    Post(mpsc::Sender<Vec<u8>>),
    /// The GET stream, as event number `.1` (kept for a resume), to the
    /// open stream if there is one.
    Stream(Option<mpsc::Sender<(u64, Vec<u8>)>>, u64),
    /// Nobody: dropped.
    Nobody,
}

/// Where a hub's messages for the client go.
struct Routes {
    /// Requests in flight by client id.
    waiting: Mutex<HashMap<String, Waiter>>,
    /// The session's GET stream (locked after `waiting` when both are).
    stream: Mutex<Stream>,
    next_seq: AtomicU64,
    /// The hub is gone: nothing more will be answered (set under `waiting`).
    closed: AtomicBool,
}

impl Routes {
    fn new(limits: &ListenLimits) -> Routes {
        // The random end of a UUIDv7: ids of two sessions differ.
        let id = warden_core::Decision::new_id();
        let tag = id.rsplit('-').next().unwrap_or(&id).to_owned();
        Routes {
            waiting: Mutex::new(HashMap::new()),
            stream: Mutex::new(Stream {
                tx: None,
                opened: false,
                tag,
                replay: Replay {
                    last: 0,
                    events: VecDeque::new(),
                    bytes: 0,
                    max_events: limits.replay_events,
                    max_bytes: limits.replay_bytes,
                },
            }),
            next_seq: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Who gets `msg` (`line`): the POST it answers; a POST whose progress
    /// it reports; else the GET stream while one is open; else the latest
    /// POST that may stream; else, once the client has opened a GET stream,
    /// that stream's replay buffer, for the client to resume.
    fn target(&self, msg: &Value, line: &[u8]) -> Target {
        let mut waiting = lock(&self.waiting);
        match classify(msg) {
            Kind::Response { id } => {
                return waiting
                    .remove(&id_key(id))
                    .map_or(Target::Nobody, |w| Target::Post(w.tx));
            }
            Kind::Notification
                if msg.get("method").and_then(Value::as_str) == Some("notifications/progress") =>
            {
                let token = msg
                    .get("params")
                    .and_then(|p| p.get("progressToken"))
                    .map(Value::to_string);
                if let Some(w) = waiting
                    .values()
                    .find(|w| token.is_some() && w.progress == token)
                {
                    return Target::Post(w.tx.clone());
                }
            }
            _ => {}
        }
        let mut stream = lock(&self.stream);
        // Numbered and kept under the same lock a GET takes to replay and
        // to open: each event is replayed or sent live, never both.
        let open = stream.tx.as_ref().filter(|s| !s.is_closed()).cloned();
        if open.is_none() {
            let post = waiting.values().filter(|w| w.streams).max_by_key(|w| w.seq);
            if let Some(w) = post {
                return Target::Post(w.tx.clone());
            }
            if !stream.opened {
                return Target::Nobody;
            }
        }
        let seq = stream.replay.push(line.to_vec());
        Target::Stream(open, seq)
    }

    /// Whether anything is in flight or listening.
    fn busy(&self) -> bool {
        !lock(&self.waiting).is_empty()
            || lock(&self.stream)
                .tx
                .as_ref()
                .is_some_and(|s| !s.is_closed())
    }

    /// The hub is gone: every waiting POST and the stream end.
    fn close(&self) {
        {
            let mut waiting = lock(&self.waiting);
            self.closed.store(true, Ordering::SeqCst);
            waiting.clear();
        }
        lock(&self.stream).tx.take();
    }
}

/// Takes a hub's messages for the client and hands each to its route.
async fn dispatch(mut rx: mpsc::Receiver<Vec<u8>>, routes: Arc<Routes>) {
    while let Some(line) = rx.recv().await {
        let Ok(msg) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        match routes.target(&msg, &line) {
            Target::Post(tx) => {
                let _ = tx.send(line).await;
            }
            Target::Stream(Some(tx), seq) => {
                let _ = tx.send((seq, line)).await;
            }
            // Kept for the client to resume its GET stream.
            Target::Stream(None, _) => {}
            Target::Nobody => eprintln!(
                "warden mcp: dropped a message for an HTTP client that has no stream open"
            ),
        }
    }
    routes.close();
}

/// One slot of [`ListenLimits::max_sessions`], given back on drop.
struct Slot(Arc<Front>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A hub with its routes and slot: a session's, or one stateless request's.
struct Live {
    hub: Arc<Hub>,
    routes: Arc<Routes>,
    last: Mutex<Instant>,
    _slot: Slot,
}

impl Live {
    async fn close(&self) {
        self.hub.close().await;
        self.routes.close();
    }
}

struct Front {
    upstreams: Vec<UpstreamSpec>,
    sessions: Mutex<HashMap<String, Arc<Live>>>,
    active: AtomicUsize,
    limits: ListenLimits,
    max: usize,
    /// Set once the gateway stops: no new hubs.
    stopping: AtomicBool,
}

/// Serves the multi-upstream gateway over Streamable HTTP on `listener`
/// (path [`LISTEN_PATH`]) in front of `upstreams` (as for
/// [`serve_multi_stdio`](crate::serve_multi_stdio)), to clients `auth`
/// admits, until `shutdown` completes; then every session is closed (its
/// upstreams stopped) and the function returns once the connections are
/// done. Refuses to start when `auth` does not allow the listener's address
/// ([`ClientAuth::check_listener`]).
pub async fn serve_multi_http(
    upstreams: Vec<UpstreamSpec>,
    listener: tokio::net::TcpListener,
    limits: ListenLimits,
    auth: ClientAuth,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), McpError> {
    check_upstreams(&upstreams)?;
    auth.check_listener(listener.local_addr()?)?;
    let max = upstreams
        .first()
        .map_or(crate::DEFAULT_MAX_MESSAGE_BYTES, |u| {
            u.gateway.max_message_bytes()
        });
    let front = Arc::new(Front {
        upstreams,
        sessions: Mutex::new(HashMap::new()),
        active: AtomicUsize::new(0),
        limits,
        max,
        stopping: AtomicBool::new(false),
    });
    let reaper = tokio::spawn(reap(Arc::downgrade(&front)));
    let app = axum::Router::new()
        .route(
            LISTEN_PATH,
            axum::routing::post(post).get(get).delete(delete),
        )
        .with_state(Arc::clone(&front))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            crate::auth::require,
        ));
    let closing = Arc::clone(&front);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Open streams end with their sessions, so the server can finish.
            closing.close_all().await;
        })
        .await;
    reaper.abort();
    front.close_all().await;
    served.map_err(McpError::Io)
}

/// Closes idle sessions until the gateway is gone.
async fn reap(front: std::sync::Weak<Front>) {
    loop {
        let every = match front.upgrade() {
            Some(f) => {
                (f.limits.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(5))
            }
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(f) = front.upgrade() else { return };
        let idle: Vec<Arc<Live>> = {
            let mut sessions = lock(&f.sessions);
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, l)| {
                    !l.routes.busy() && lock(&l.last).elapsed() >= f.limits.idle_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for live in idle {
            eprintln!("warden mcp: closing an idle HTTP session");
            live.close().await;
        }
    }
}

impl Front {
    /// A new hub (a slot taken), or the 503 refusing it.
    fn open(self: &Arc<Self>, session: String) -> Result<Arc<Live>, Refused> {
        let busy = |text: String| {
            Box::new(rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &Value::Null,
                SERVER_BUSY,
                &text,
            ))
        };
        if self.stopping.load(Ordering::SeqCst) {
            return Err(busy("the gateway is stopping".to_owned()));
        }
        let cap = self.limits.max_sessions;
        if self
            .active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_err()
        {
            return Err(busy(format!(
                "the gateway serves at most {cap} sessions at once; try again later"
            )));
        }
        let slot = Slot(Arc::clone(self));
        let (tx, rx) = mpsc::channel(256);
        let hub = Hub::start(self.upstreams.clone(), session, tx).map_err(|e| {
            Box::new(rpc_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &Value::Null,
                INTERNAL_ERROR,
                &e.to_string(),
            ))
        })?;
        let routes = Arc::new(Routes::new(&self.limits));
        tokio::spawn(dispatch(rx, Arc::clone(&routes)));
        Ok(Arc::new(Live {
            hub,
            routes,
            last: Mutex::new(Instant::now()),
            _slot: slot,
        }))
    }

    fn session(&self, id: &str) -> Option<Arc<Live>> {
        let live = lock(&self.sessions).get(id).cloned()?;
        *lock(&live.last) = Instant::now();
        Some(live)
    }

    async fn close_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let all: Vec<Arc<Live>> = lock(&self.sessions).drain().map(|(_, l)| l).collect();
        let mut set = tokio::task::JoinSet::new();
        for live in all {
            set.spawn(async move { live.close().await });
        }
        while set.join_next().await.is_some() {}
    }
}

fn unknown_session() -> Response<Body> {
    rpc_error(
        StatusCode::NOT_FOUND,
        &Value::Null,
        INVALID_REQUEST,
        "unknown or expired session: initialize again",
    )
}

/// Unregisters a waiting POST however its handler ends; one whose client
/// went away before the answer has its request cancelled upstream.
struct Registered {
    live: Arc<Live>,
    key: String,
    id: Value,
    seq: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Idle time counts from the end of the last request.
        *lock(&self.live.last) = Instant::now();
        let mut waiting = lock(&self.live.routes.waiting);
        // The client may already reuse the id for its next request.
        if waiting.get(&self.key).is_none_or(|w| w.seq != self.seq) {
            return;
        }
        waiting.remove(&self.key);
        drop(waiting);
        let cancel = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": self.id, "reason": "the HTTP client went away"}});
        let hub = Arc::clone(&self.live.hub);
        if let Ok(bytes) = serde_json::to_vec(&cancel) {
            tokio::spawn(async move { hub.on_client(bytes).await });
        }
    }
}

/// The response refusing a request instead of answering it.
type Refused = Box<Response<Body>>;

/// What to do once a stateless request has its answer.
type Done = Option<Arc<Live>>;

/// Registers a POST waiting for the answer to request `id` (`msg`) on
/// `live`; `streams`: whether unaddressed messages may go to it.
fn register(
    live: &Arc<Live>,
    msg: &Value,
    id: &Value,
    streams: bool,
) -> Result<(Registered, mpsc::Receiver<Vec<u8>>), Refused> {
    let key = id_key(id);
    let (tx, rx) = mpsc::channel(64);
    let mut waiting = lock(&live.routes.waiting);
    if live.routes.closed.load(Ordering::SeqCst) {
        // Closed (a DELETE, the idle timer) since the session was looked up.
        return Err(Box::new(ended(id)));
    }
    if waiting.contains_key(&key) {
        return Err(Box::new(rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            INVALID_REQUEST,
            "a request with this id is still in flight",
        )));
    }
    let progress = msg
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("progressToken"))
        .map(Value::to_string);
    let seq = live.routes.next_seq.fetch_add(1, Ordering::Relaxed);
    waiting.insert(
        key.clone(),
        Waiter {
            tx,
            progress,
            streams,
            seq,
        },
    );
    drop(waiting);
    let registered = Registered {
        live: Arc::clone(live),
        key,
        id: id.clone(),
        seq,
    };
    Ok((registered, rx))
}

fn ended(id: &Value) -> Response<Body> {
    rpc_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        id,
        INTERNAL_ERROR,
        "the gateway session ended before answering",
    )
}

/// Hands the request `msg` (`bytes`) to `live`'s hub and answers the POST:
/// JSON when the answer comes first, else an SSE stream that ends with it.
async fn ask(live: Arc<Live>, bytes: Bytes, msg: &Value, id: &Value, done: Done) -> Response<Body> {
    let (registered, mut rx) = match register(&live, msg, id, true) {
        Ok(r) => r,
        Err(refused) => {
            finish(done);
            return *refused;
        }
    };
    live.hub.on_client(bytes.to_vec()).await;
    let Some(first) = rx.recv().await else {
        finish(done);
        return ended(id);
    };
    if is_response(&first) {
        drop(registered);
        finish(done);
        return json_response(StatusCode::OK, first);
    }
    let (mut out, body) = http_body_util::channel::Channel::<Bytes, hyper::Error>::new(32);
    tokio::spawn(async move {
        let _registered = registered;
        let mut next = Some(first);
        while let Some(line) = next {
            let last = is_response(&line);
            let event = event_with(b"event: message\n", &line);
            if out.send_data(Bytes::from(event)).await.is_err() || last {
                break;
            }
            next = rx.recv().await;
        }
        finish(done);
    });
    sse_response(Body::new(body))
}

/// `initialize` without a session: a new hub answers it; when it succeeds
/// the hub becomes a session and the answer carries its id.
async fn initialize(f: &Arc<Front>, bytes: Bytes, msg: &Value, id: &Value) -> Response<Body> {
    // Decided and audited under the session id the client will be given,
    // so audit records name the session the client saw.
    let sid = warden_core::Decision::new_id();
    let live = match f.open(sid.clone()) {
        Ok(l) => l,
        Err(refused) => return *refused,
    };
    let answer = match register(&live, msg, id, false) {
        Ok((registered, mut rx)) => {
            live.hub.on_client(bytes.to_vec()).await;
            let mut answer = None;
            while let Some(line) = rx.recv().await {
                if is_response(&line) {
                    answer = Some(line);
                    break;
                }
            }
            drop(registered);
            answer
        }
        Err(refused) => {
            live.close().await;
            return *refused;
        }
    };
    let Some(answer) = answer else {
        live.close().await;
        return ended(id);
    };
    let ok = serde_json::from_slice::<Value>(&answer).is_ok_and(|m| m.get("result").is_some());
    let mut r = json_response(StatusCode::OK, answer);
    match HeaderValue::from_str(&sid).ok().filter(|_| ok) {
        Some(v) => {
            *lock(&live.last) = Instant::now();
            lock(&f.sessions).insert(sid, live);
            r.headers_mut().insert("mcp-session-id", v);
        }
        // A failed handshake leaves no session behind.
        None => live.close().await,
    }
    r
}

fn is_response(line: &[u8]) -> bool {
    serde_json::from_slice::<Value>(line)
        .is_ok_and(|m| matches!(classify(&m), Kind::Response { .. }))
}

/// Closes a stateless request's hub (in the background: the answer is out).
fn finish(done: Done) {
    if let Some(live) = done {
        tokio::spawn(async move { live.close().await });
    }
}

fn sse_response(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    r
}

async fn post(State(f): State<Arc<Front>>, headers: HeaderMap, body: Body) -> Response<Body> {
    let (bytes, msg) = match read_post(&headers, body, f.max).await {
        Ok(m) => m,
        Err(refused) => return refused,
    };
    let session = session_of(&headers);
    let request = match classify(&msg) {
        Kind::Request { id, method } => Some((id.clone(), method == "initialize")),
        _ => None,
    };
    match (session.is_empty(), request) {
        (false, request) => {
            let Some(live) = f.session(&session) else {
                return unknown_session();
            };
            match request {
                Some((id, _)) => ask(live, bytes, &msg, &id, None).await,
                None => {
                    live.hub.on_client(bytes.to_vec()).await;
                    accepted()
                }
            }
        }
        (true, Some((id, true))) => initialize(&f, bytes, &msg, &id).await,
        (true, Some((id, false))) => {
            // Stateless: a hub for this request alone.
            let live = match f.open(format!("mcp-{}", warden_core::Decision::new_id())) {
                Ok(l) => l,
                Err(refused) => return *refused,
            };
            let done = Some(Arc::clone(&live));
            ask(live, bytes, &msg, &id, done).await
        }
        (true, None) => rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            INVALID_REQUEST,
            "notifications and responses need a session (Mcp-Session-Id): initialize first",
        ),
    }
}

fn accepted() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// The answer to a GET whose `Last-Event-ID` the session cannot resume from.
fn cannot_resume(limits: &ListenLimits) -> Response<Body> {
    rpc_error(
        StatusCode::CONFLICT,
        &Value::Null,
        INVALID_REQUEST,
        &format!(
            "cannot resume after that Last-Event-ID: it is not an event of this session's \
             stream, or events after it are no longer kept (the last {} events, {} bytes at \
             most); GET without Last-Event-ID to continue from now on",
            limits.replay_events, limits.replay_bytes
        ),
    )
}

/// `id: <tag>-<seq>` and the message as one SSE event.
fn numbered(tag: &str, seq: u64, line: &[u8]) -> Vec<u8> {
    event_with(
        format!("id: {tag}-{seq}\nevent: message\n").as_bytes(),
        line,
    )
}

async fn get(State(f): State<Arc<Front>>, headers: HeaderMap) -> Response<Body> {
    let Some(live) = f.session(&session_of(&headers)) else {
        return unknown_session();
    };
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned());
    let (tx, mut rx) = mpsc::channel::<(u64, Vec<u8>)>(256);
    let (tag, replay, mut sent) = {
        let mut stream = lock(&live.routes.stream);
        // Closed since it was looked up (`close` clears the stream after).
        if live.routes.closed.load(Ordering::SeqCst) {
            return unknown_session();
        }
        let replay = match resume.as_deref().map(|id| stream.resume(id)) {
            None => Vec::new(),
            Some(Some(events)) => events,
            // Refused before anything changes: the open stream stays.
            Some(None) => return cannot_resume(&f.limits),
        };
        // A new stream replaces the old one, which ends.
        stream.tx = Some(tx);
        stream.opened = true;
        (stream.tag.clone(), replay, stream.replay.last)
    };
    let (mut out, body) = http_body_util::channel::Channel::<Bytes, hyper::Error>::new(32);
    tokio::spawn(async move {
        // What it missed first; else an event with the id to resume from
        // and no data (which SSE clients do not dispatch).
        let mut first: Vec<Vec<u8>> = replay
            .iter()
            .map(|(seq, line)| numbered(&tag, *seq, line))
            .collect();
        if first.is_empty() {
            first.push(format!("id: {tag}-{sent}\ndata:\n\n").into_bytes());
        }
        for event in first {
            if out.send_data(Bytes::from(event)).await.is_err() {
                return;
            }
        }
        loop {
            // A comment now and then: a client that went away is noticed
            // (the session can then go idle), and proxies keep the stream.
            let event = match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
                // Replayed already.
                Ok(Some((seq, _))) if seq <= sent => continue,
                Ok(Some((seq, line))) => {
                    sent = seq;
                    numbered(&tag, seq, &line)
                }
                Ok(None) => break,
                Err(_) => b": keep-alive\n\n".to_vec(),
            };
            if out.send_data(Bytes::from(event)).await.is_err() {
                break;
            }
        }
    });
    sse_response(Body::new(body))
}

async fn delete(State(f): State<Arc<Front>>, headers: HeaderMap) -> Response<Body> {
    let live = lock(&f.sessions).remove(&session_of(&headers));
    let Some(live) = live else {
        return unknown_session();
    };
    live.close().await;
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}
