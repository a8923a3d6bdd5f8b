//! The multi-upstream gateway's client for one Streamable HTTP upstream
//! (MCP 2025-06-18 / 2025-11-25, and stateless 2026-07-28 requests).
//!
//! One [`HttpUpstream::session`] plays the part a server process plays on
//! stdio: the hub writes messages into a channel, and every message the
//! server sends — a JSON body, each event of an SSE answer, each event of
//! the optional GET stream — comes back through the same [`Sink`] the stdio
//! reader feeds. A session ends when the hub drops its channel (the session
//! is then DELETEd) or when the upstream fails: unreachable, a 5xx, or a 404
//! (an expired session). The hub then treats it like an exited server.

use crate::conn::OWN_REQUEST_TIMEOUT;
use crate::jsonrpc::{Kind, classify};
use crate::sse::{SseSplitter, event_json, event_meta, is_sse};
use crate::upstream_client::{HttpTarget, UpstreamClient, describe};
use axum::http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// Pause before reopening a GET stream that ended or broke, unless the
/// server's `retry:` field names another.
const GET_REOPEN: Duration = Duration::from_secs(1);
/// Longest pause between two attempts to reopen a GET stream.
const GET_REOPEN_MAX: Duration = Duration::from_secs(30);
/// Failed attempts in a row after which a GET stream is given up.
const GET_ATTEMPTS: u32 = 5;
/// Longest wait for the server to acknowledge the session's DELETE.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a session hands the hub.
pub(crate) enum Inbound {
    /// A message the server sent (a JSON body, or the data of one SSE event).
    Message(Value),
    /// A request the server will not answer over this POST: an error status
    /// without a response, an answer over the size limit, or a stream that
    /// broke or ended first.
    Unanswered {
        /// The request's id, as the hub sent it.
        id: Value,
        /// Why, for the client and the outcome record.
        why: String,
    },
}

/// Where a session's inbound messages go (the hub, for one upstream generation).
pub(crate) trait Sink: Send + Sync + 'static {
    /// Handles one inbound message; awaited in order within one response stream.
    fn deliver(&self, inbound: Inbound) -> impl Future<Output = ()> + Send;
}

/// One Streamable HTTP upstream: its endpoint (with its TLS trust and
/// configured headers) and an HTTP client.
pub(crate) struct HttpUpstream {
    target: HttpTarget,
    client: UpstreamClient,
    /// Largest message accepted from the server (a JSON body, one SSE event).
    max: usize,
}

/// What the server told this session at `initialize`.
#[derive(Default)]
struct Session {
    /// `Mcp-Session-Id`, sent back on every later request.
    id: Mutex<Option<HeaderValue>>,
    /// The negotiated version, sent as `MCP-Protocol-Version`.
    version: Mutex<Option<HeaderValue>>,
    /// Whether the GET stream was tried (once per session).
    listening: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere cannot leave it unsafe to read.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HttpUpstream {
    /// A client (its own connection pool) for `target`, accepting messages
    /// of at most `max` bytes.
    pub(crate) fn new(target: &HttpTarget, max: usize) -> Self {
        HttpUpstream {
            client: target.client(),
            target: target.clone(),
            max,
        }
    }

    /// Runs one session: POSTs every message from `rx` (an `initialize`
    /// is answered before anything else is sent, since its answer carries the
    /// session id; the rest run concurrently, as a client's requests do),
    /// and hands `sink` everything the server sends. `Ok` once `rx` closes
    /// (the session is DELETEd); `Err(why)` when the upstream failed.
    pub(crate) async fn session<S: Sink>(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Vec<u8>>,
        sink: Arc<S>,
    ) -> Result<(), String> {
        let s = Arc::new(Session::default());
        // Dropping the set (on failure or close) aborts what is in flight;
        // the hub answers those requests as it does for an exited server.
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(bytes) = msg else { break };
                    let msg: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    let init = matches!(classify(&msg), Kind::Request { method: "initialize", .. });
                    let post = Arc::clone(&self).post(Arc::clone(&s), msg, bytes, Arc::clone(&sink));
                    if !init {
                        tasks.spawn(post);
                        continue;
                    }
                    // Bounded like the hub's own wait for the answer: a server
                    // that never answers must not hold every later message.
                    tokio::time::timeout(OWN_REQUEST_TIMEOUT, post)
                        .await
                        .map_err(|_| format!("no answer to initialize within {OWN_REQUEST_TIMEOUT:?}"))??;
                    if lock(&s.version).is_some() && !s.listening.swap(true, Ordering::Relaxed) {
                        tasks.spawn(Arc::clone(&self).listen(Arc::clone(&s), Arc::clone(&sink)));
                    }
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(Err(why)) = done {
                        return Err(why);
                    }
                }
            }
        }
        tasks.abort_all();
        self.delete(&s).await;
        Ok(())
    }

    /// A request to the endpoint with the configured and the session's headers.
    fn request(
        &self,
        method: Method,
        s: &Session,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, String> {
        // The session's headers are managed names, never configured ones.
        self.target.request(method, body, |h| {
            if let Some(id) = lock(&s.id).clone() {
                h.insert("mcp-session-id", id);
            }
            if let Some(v) = lock(&s.version).clone() {
                h.insert("mcp-protocol-version", v);
            }
        })
    }

    /// POSTs one message and delivers what comes back. `Err` only when the
    /// upstream failed as a whole (the session ends).
    async fn post<S: Sink>(
        self: Arc<Self>,
        s: Arc<Session>,
        msg: Value,
        bytes: Vec<u8>,
        sink: Arc<S>,
    ) -> Result<(), String> {
        let (id, method) = match classify(&msg) {
            Kind::Request { id, method } => (Some(id.clone()), Some(method)),
            Kind::Notification => (None, msg.get("method").and_then(Value::as_str)),
            _ => (None, None),
        };
        let init = method == Some("initialize") && id.is_some();
        let unanswered = |why: String| async {
            if let Some(id) = &id {
                sink.deliver(Inbound::Unanswered {
                    id: id.clone(),
                    why,
                })
                .await;
            }
        };
        let body = Bytes::from(bytes.strip_suffix(b"\n").unwrap_or(&bytes).to_vec());
        let mut req = match self.request(Method::POST, &s, body) {
            Ok(r) => r,
            Err(e) => {
                unanswered(format!("request not sent: {e}")).await;
                return Ok(());
            }
        };
        let h = req.headers_mut();
        h.insert(
            "accept",
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        h.insert("content-type", HeaderValue::from_static("application/json"));
        // Routing headers of the stateless revision; the server checks them
        // against the body, which is what the gateway decided on.
        if let Some(v) = method.and_then(|m| HeaderValue::from_str(m).ok()) {
            h.insert("mcp-method", v);
        }
        // A stateless (2026-07-28) request names its version in `_meta`.
        if let Some(v) = msg
            .pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion")
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            h.insert("mcp-protocol-version", v);
        }
        let target = match method {
            Some("tools/call" | "prompts/get") => msg.pointer("/params/name"),
            Some("resources/read") => msg.pointer("/params/uri"),
            _ => None,
        };
        if let Some(v) = target
            .and_then(Value::as_str)
            .and_then(|t| HeaderValue::from_str(t).ok())
        {
            h.insert("mcp-name", v);
        }
        let resp = match self.client.request(req).await {
            Ok(r) => r,
            Err(e) => {
                // Whoever waits learns why (a TLS failure named as such);
                // then the session ends like an exited server.
                let why = format!("unreachable: {}", describe(&e));
                unanswered(why.clone()).await;
                return Err(why);
            }
        };
        let status = resp.status();
        if status.is_server_error() || status == StatusCode::NOT_FOUND {
            // 404: the session expired (or the endpoint is gone); 5xx: the
            // server failed. Either way it needs a new session.
            return Err(format!(
                "answered {method:?} with HTTP {status}",
                method = method.unwrap_or("a message")
            ));
        }
        if init
            && status.is_success()
            && let Some(sid) = resp.headers().get("mcp-session-id")
        {
            *lock(&s.id) = Some(sid.clone());
        }
        let Some(id) = id.clone() else {
            // A notification or a response: 202 Accepted, no body to read.
            return Ok(());
        };
        let mut answered = false;
        // Everything on this POST goes to the hub, which maps answers by id
        // (one to another request included); this request's own answer
        // settles it, and an `initialize` answer names the protocol version.
        let mut on_message = async |m: Value| {
            if matches!(classify(&m), Kind::Response { id: rid } if *rid == id) {
                answered = true;
                let v = m.pointer("/result/protocolVersion").and_then(Value::as_str);
                if init && let Some(v) = v.and_then(|v| HeaderValue::from_str(v).ok()) {
                    *lock(&s.version) = Some(v);
                }
            }
            sink.deliver(Inbound::Message(m)).await;
        };
        let failure = if is_sse(resp.headers()) {
            let mut events = Events::new(resp.into_body(), self.max);
            loop {
                match events.next().await {
                    Some(Ok(m)) => on_message(m).await,
                    Some(Err(e)) => break Some(e),
                    None => break None,
                }
            }
        } else {
            match Limited::new(resp.into_body(), self.max).collect().await {
                Err(e) if e.is::<http_body_util::LengthLimitError>() => Some(oversize(self.max)),
                Err(e) => Some(format!("the answer broke off: {e}")),
                Ok(c) => match serde_json::from_slice::<Value>(&c.to_bytes()) {
                    Ok(m) if m.is_object() => {
                        // An error status's JSON-RPC error for someone else
                        // (e.g. id null) is not an answer to this request.
                        let foreign =
                            matches!(classify(&m), Kind::Response { id: rid } if *rid != id);
                        if !foreign {
                            on_message(m).await;
                        }
                        None
                    }
                    _ => None,
                },
            }
        };
        if !answered {
            let why = failure.unwrap_or_else(|| {
                if status.is_success() {
                    "the server did not answer the request".to_owned()
                } else {
                    format!("the server answered HTTP {status}")
                }
            });
            unanswered(why).await;
        }
        Ok(())
    }

    /// The optional GET stream for server-initiated messages, kept open
    /// while the session lasts; a server that does not offer one (405, or
    /// anything but an SSE stream on the first try) has none.
    ///
    /// The last event id seen is remembered: a stream that ends or breaks
    /// is reopened with `Last-Event-ID`, so a server that supports
    /// resumption replays what it sent meanwhile (delivered to `sink` like
    /// anything else, so screened the same way). The pause before reopening
    /// is the server's `retry:` field, else [`GET_REOPEN`], at most
    /// [`GET_REOPEN_MAX`]; failed attempts in a row (unreachable, a 5xx, a
    /// 429) double it up to that bound, and after [`GET_ATTEMPTS`] of them the stream is
    /// given up. A server that refuses the id (another 4xx) is asked once
    /// more without it: what it sent meanwhile is then lost (logged).
    async fn listen<S: Sink>(self: Arc<Self>, s: Arc<Session>, sink: Arc<S>) -> Result<(), String> {
        let mut last_id: Option<String> = None;
        let mut retry: Option<Duration> = None;
        let mut failures: u32 = 0;
        let mut opened = false;
        loop {
            if opened {
                if failures >= GET_ATTEMPTS {
                    eprintln!(
                        "warden mcp: the upstream's GET stream could not be reopened ({GET_ATTEMPTS} attempts); closed"
                    );
                    return Ok(());
                }
                tokio::time::sleep(reopen_pause(retry, failures)).await;
            }
            let Ok(mut req) = self.request(Method::GET, &s, Bytes::new()) else {
                return Ok(());
            };
            let h = req.headers_mut();
            h.insert("accept", HeaderValue::from_static("text/event-stream"));
            if let Some(v) = last_id
                .as_deref()
                .and_then(|id| HeaderValue::from_str(id).ok())
            {
                h.insert("last-event-id", v);
            }
            let resp = match self.client.request(req).await {
                Ok(r) => r,
                // Unreachable at first: the next POST finds out and ends
                // the session. Later: the stream is retried.
                Err(_) if !opened => return Ok(()),
                Err(_) => {
                    failures += 1;
                    continue;
                }
            };
            let status = resp.status();
            if status != StatusCode::OK || !is_sse(resp.headers()) {
                match status {
                    _ if !opened => return Ok(()),
                    StatusCode::TOO_MANY_REQUESTS => failures += 1,
                    _ if status.is_server_error() => failures += 1,
                    // 404: the session expired, the next POST finds out; 405: no stream.
                    StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => return Ok(()),
                    _ if status.is_client_error() && last_id.is_some() => {
                        eprintln!(
                            "warden mcp: the upstream refused to resume its GET stream (HTTP {status}); reopened without Last-Event-ID, messages it sent meanwhile are lost"
                        );
                        last_id = None;
                        failures += 1;
                    }
                    _ => return Ok(()),
                }
                continue;
            }
            opened = true;
            failures = 0;
            let mut events = Events::new(resp.into_body(), self.max);
            events.last_id = last_id.take();
            let over = loop {
                match events.next().await {
                    Some(Ok(m)) => sink.deliver(Inbound::Message(m)).await,
                    Some(Err(e)) => {
                        eprintln!("warden mcp: the upstream's GET stream: {e}");
                        break events.over;
                    }
                    None => break false,
                }
            };
            if over {
                // Resuming would only bring the same event again.
                eprintln!("warden mcp: the upstream's GET stream is closed");
                return Ok(());
            }
            last_id = events.last_id.take().filter(|id| !id.is_empty());
            retry = events.retry.map(Duration::from_millis).or(retry);
        }
    }

    /// Ends the session on the server (best effort: the gateway is leaving).
    async fn delete(&self, s: &Session) {
        if lock(&s.id).is_none() {
            return;
        }
        if let Ok(req) = self.request(Method::DELETE, s, Bytes::new()) {
            let _ = tokio::time::timeout(DELETE_TIMEOUT, self.client.request(req)).await;
        }
    }
}

/// The pause before reopening a GET stream after `failures` failed
/// attempts in a row: `retry` (the server's) or [`GET_REOPEN`], doubled per
/// failure, never more than [`GET_REOPEN_MAX`] (a longer `retry` too).
fn reopen_pause(retry: Option<Duration>, failures: u32) -> Duration {
    retry
        .unwrap_or(GET_REOPEN)
        .saturating_mul(1 << failures.min(16))
        .min(GET_REOPEN_MAX)
}

fn oversize(max: usize) -> String {
    format!("the server's answer exceeds the gateway limit of {max} bytes")
}

/// The JSON messages of an SSE body, each event at most `max` bytes.
struct Events<B> {
    body: B,
    split: SseSplitter,
    ready: VecDeque<Vec<u8>>,
    max: usize,
    done: bool,
    /// The last event id: of the events returned (or skipped) so far.
    last_id: Option<String>,
    /// The last `retry:` field, in milliseconds.
    retry: Option<u64>,
    /// Whether the stream ended on an event over `max`.
    over: bool,
}

impl<B> Events<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    fn new(body: B, max: usize) -> Self {
        Events {
            body,
            split: SseSplitter::default(),
            ready: VecDeque::new(),
            max,
            done: false,
            last_id: None,
            retry: None,
            over: false,
        }
    }

    /// Ends the stream on an event over the limit.
    fn too_big(&mut self) -> Option<Result<Value, String>> {
        self.done = true;
        self.over = true;
        self.ready.clear();
        Some(Err(oversize(self.max)))
    }

    /// The next message; `None` at the end; `Err` when the stream broke or
    /// an event is over the limit (nothing more is read).
    async fn next(&mut self) -> Option<Result<Value, String>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                if event.len() > self.max {
                    return self.too_big();
                }
                let meta = event_meta(&event);
                if let Some(id) = meta.id {
                    self.last_id = Some(id);
                }
                self.retry = meta.retry.or(self.retry);
                match event_json(&event) {
                    Some(m) if m.is_object() => return Some(Ok(m)),
                    // Comments, keep-alives, priming events without data.
                    _ => continue,
                }
            }
            if self.done {
                return None;
            }
            match self.body.frame().await {
                None => {
                    self.done = true;
                    // A last event without its blank line still counts.
                    let rest = std::mem::take(&mut self.split.buf);
                    if !rest.is_empty() {
                        self.ready.push_back(rest);
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(format!("the stream broke off: {e}")));
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    self.ready.extend(self.split.push(&data));
                    if self.split.buf.len() > self.max {
                        return self.too_big();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    async fn all<B>(mut e: Events<B>) -> Vec<Result<Value, String>>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let mut out = Vec::new();
        while let Some(m) = e.next().await {
            out.push(m);
        }
        out
    }

    fn body(text: String) -> Full<Bytes> {
        Full::new(Bytes::from(text))
    }

    #[tokio::test]
    async fn events_yield_json_messages_and_skip_the_rest() {
        let text = "id: 0\ndata:\n\n: keep-alive\n\nevent: message\ndata: {\"a\":1}\n\ndata: [1]\n\ndata: {\"b\":2}".to_owned();
        let got = all(Events::new(body(text), 1024)).await;
        // The last event has no blank line but the stream ended: it counts.
        assert_eq!(got, vec![Ok(json!({"a": 1})), Ok(json!({"b": 2}))]);
    }

    #[tokio::test]
    async fn events_remember_the_last_id_and_retry() {
        let text = "id: s-1\nretry: 250\ndata:\n\nid: s-2\ndata: {\"a\":1}\n\n: no id here\n\ndata: {\"b\":2}\n\nid: s-3\n\n".to_owned();
        let mut e = Events::new(body(text), 1024);
        e.last_id = Some("before".to_owned());
        assert_eq!(e.next().await, Some(Ok(json!({"a": 1}))));
        assert_eq!(e.last_id.as_deref(), Some("s-2"));
        assert_eq!(e.retry, Some(250));
        // An event without an id keeps the last one.
        assert_eq!(e.next().await, Some(Ok(json!({"b": 2}))));
        assert_eq!(e.last_id.as_deref(), Some("s-2"));
        // A trailing id-only event still counts once the stream ends.
        assert_eq!(e.next().await, None);
        assert_eq!(e.last_id.as_deref(), Some("s-3"));
        assert!(!e.over);
    }

    #[test]
    fn reopening_backs_off_within_bounds() {
        assert_eq!(reopen_pause(None, 0), GET_REOPEN);
        assert_eq!(reopen_pause(None, 2), GET_REOPEN * 4);
        assert_eq!(reopen_pause(None, 40), GET_REOPEN_MAX);
        let ms = Duration::from_millis;
        assert_eq!(reopen_pause(Some(ms(100)), 0), ms(100));
        assert_eq!(reopen_pause(Some(ms(100)), 3), ms(800));
        // A server asking for an hour gets the longest pause, not an hour.
        assert_eq!(reopen_pause(Some(ms(3_600_000)), 0), GET_REOPEN_MAX);
        assert_eq!(reopen_pause(Some(Duration::MAX), 5), GET_REOPEN_MAX);
    }

    #[tokio::test]
    async fn an_event_over_the_limit_ends_the_stream_with_an_error() {
        // One chunk holding a whole oversize event, then a small one.
        let text = format!("data: {{\"t\":\"{}\"}}\n\ndata: {{}}\n\n", "x".repeat(200));
        let got = all(Events::new(body(text), 100)).await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].as_ref().unwrap_err().contains("limit of 100 bytes"));
        // An unterminated event growing past the limit.
        let text = format!("data: {}", "y".repeat(200));
        let mut e = Events::new(body(text), 100);
        assert!(e.next().await.unwrap().is_err());
        assert!(e.over);
        assert_eq!(e.next().await, None);
    }
}
