//! Resumable SSE on both sides of the HTTP gateway (`serve_multi_http`):
//! the gateway numbers its GET stream's events and replays them to a client
//! that reconnects with `Last-Event-ID`, and it reconnects to an upstream's
//! GET stream the same way. Real sockets throughout: a hyper client in front
//! of the gateway, and an in-test Streamable HTTP upstream (axum) whose GET
//! stream numbers its events (`ev-N`), records every `Last-Event-ID` it is
//! sent and replays what came after it. Also: the audit records of an HTTP
//! session carry the `Mcp-Session-Id` the client was given.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{Capture, kernel, mcp_request, policy};
use http_body_util::{BodyExt as _, Full};
use hyper::Method;
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warden_core::Verdict;
use warden_kernel::AuditEvent;
use warden_mcp::{
    ClientAuth, Gateway, HttpTarget, ListenLimits, PinStore, UpstreamSpec, UpstreamTransport,
    serve_multi_http,
};

/// Feeds an open GET stream's body; dropped, the stream ends.
type Tx = tokio::sync::mpsc::UnboundedSender<Bytes>;

/// What the upstream does with a GET after its first one.
#[derive(Clone, Copy, PartialEq)]
enum Reopen {
    /// Replays the events after `Last-Event-ID`.
    Replay,
    /// Refuses a `Last-Event-ID` with 409 (a GET without one is served).
    RefuseId,
    /// Answers 503.
    Fail,
}

/// One upstream session's GET stream: every event it ever sent, in order.
#[derive(Default)]
struct UpStream {
    history: Vec<(String, Value)>,
    open: Option<Tx>,
}

/// The in-test Streamable HTTP upstream.
struct Srv {
    issued: AtomicUsize,
    next_event: AtomicU64,
    /// Streams by upstream session id.
    streams: Mutex<HashMap<String, UpStream>>,
    /// Every GET: session, `Last-Event-ID`, when.
    gets: Mutex<Vec<(String, Option<String>, Instant)>>,
    /// Every POSTed message.
    seen: Mutex<Vec<Value>>,
    reopen: Mutex<Reopen>,
    /// A `retry:` field (ms) sent at the start of every GET stream.
    retry: Mutex<Option<u64>>,
}

impl Srv {
    fn new() -> Arc<Srv> {
        Arc::new(Srv {
            issued: AtomicUsize::new(0),
            next_event: AtomicU64::new(1),
            streams: Mutex::new(HashMap::new()),
            gets: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            reopen: Mutex::new(Reopen::Replay),
            retry: Mutex::new(None),
        })
    }

    /// Sends `msg` on upstream session `sid`'s GET stream (kept in its
    /// history even while no stream is open); its event id.
    async fn push(&self, sid: &str, msg: Value) -> String {
        let id = format!("ev-{}", self.next_event.fetch_add(1, Ordering::SeqCst));
        let open = {
            let mut streams = self.streams.lock().unwrap();
            let s = streams.entry(sid.to_owned()).or_default();
            s.history.push((id.clone(), msg.clone()));
            s.open.clone()
        };
        if let Some(tx) = open {
            let _ = tx.send(Bytes::from(format!(
                "id: {id}\nevent: message\ndata: {msg}\n\n"
            )));
        }
        id
    }

    /// Writes `text` as is on session `sid`'s open GET stream.
    fn raw(&self, sid: &str, text: &str) {
        if let Some(tx) = self
            .streams
            .lock()
            .unwrap()
            .get(sid)
            .and_then(|s| s.open.as_ref())
        {
            tx.send(Bytes::from(text.to_owned())).unwrap();
        }
    }

    /// Ends session `sid`'s GET stream (the gateway sees it end).
    fn cut(&self, sid: &str) {
        if let Some(s) = self.streams.lock().unwrap().get_mut(sid) {
            s.open = None;
        }
    }

    fn gets(&self) -> Vec<(String, Option<String>, Instant)> {
        self.gets.lock().unwrap().clone()
    }

    /// Waits until `n` GETs arrived in all; the last one.
    async fn nth_get(&self, n: usize) -> (String, Option<String>, Instant) {
        eventually(&format!("GET number {n} reaches the upstream"), || {
            self.gets().len() >= n
        })
        .await;
        self.gets()[n - 1].clone()
    }

    /// Waits until upstream session `sid`'s stream is open (again).
    async fn stream_open(&self, sid: &str) {
        eventually("the upstream GET stream is open", || {
            self.streams
                .lock()
                .unwrap()
                .get(sid)
                .is_some_and(|s| s.open.is_some())
        })
        .await;
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_owned())
}

fn json_answer(id: &Value, result: Value) -> Response {
    let out = json!({"jsonrpc": "2.0", "id": id, "result": result});
    ([("content-type", "application/json")], out.to_string()).into_response()
}

async fn up_post(State(srv): State<Arc<Srv>>, headers: HeaderMap, body: String) -> Response {
    let msg: Value = serde_json::from_str(&body).unwrap();
    srv.seen.lock().unwrap().push(msg.clone());
    assert!(header(&headers, "accept").is_some());
    let id = msg["id"].clone();
    match msg["method"].as_str() {
        Some("initialize") => {
            let n = srv.issued.fetch_add(1, Ordering::SeqCst) + 1;
            let result = json!({"protocolVersion": msg["params"]["protocolVersion"],
                "capabilities": {"tools": {}, "logging": {}},
                "serverInfo": {"name": "resume-test", "version": "1"}});
            let mut r = json_answer(&id, result);
            r.headers_mut()
                .insert("mcp-session-id", format!("up-{n}").parse().unwrap());
            r
        }
        _ if id.is_null() || msg.get("method").is_none() => StatusCode::ACCEPTED.into_response(),
        Some("tools/list") => json_answer(
            &id,
            json!({"tools": [
                {"name": "echo", "inputSchema": {"type": "object"}},
                {"name": "write_file", "inputSchema": {"type": "object"}}]}),
        ),
        Some("tools/call") => {
            let text = msg["params"]["arguments"]["text"].as_str().unwrap_or("");
            json_answer(
                &id,
                json!({"content": [{"type": "text", "text": format!("up:{text}")}]}),
            )
        }
        _ => json_answer(&id, json!({})),
    }
}

async fn up_get(State(srv): State<Arc<Srv>>, headers: HeaderMap) -> Response {
    let sid = header(&headers, "mcp-session-id").unwrap_or_default();
    let last = header(&headers, "last-event-id");
    let first = {
        let mut gets = srv.gets.lock().unwrap();
        gets.push((sid.clone(), last.clone(), Instant::now()));
        gets.iter().filter(|g| g.0 == sid).count() == 1
    };
    let reopen = *srv.reopen.lock().unwrap();
    if !first && reopen == Reopen::Fail {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if last.is_some() && reopen == Reopen::RefuseId {
        return StatusCode::CONFLICT.into_response();
    }
    let (mut out, chan) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(64);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if out.send_data(b).await.is_err() {
                break;
            }
        }
    });
    let mut start = String::new();
    if let Some(ms) = *srv.retry.lock().unwrap() {
        start.push_str(&format!("retry: {ms}\n\n"));
    }
    // The replay is queued under the lock `push` takes: nothing live
    // overtakes it.
    let mut streams = srv.streams.lock().unwrap();
    let s = streams.entry(sid).or_default();
    if let Some(last) = &last
        && let Some(at) = s.history.iter().position(|(id, _)| id == last)
    {
        for (id, msg) in &s.history[at + 1..] {
            start.push_str(&format!("id: {id}\nevent: message\ndata: {msg}\n\n"));
        }
    }
    if !start.is_empty() {
        tx.send(Bytes::from(start)).unwrap();
    }
    s.open = Some(tx);
    drop(streams);
    ([("content-type", "text/event-stream")], Body::new(chan)).into_response()
}

async fn up_delete() -> StatusCode {
    StatusCode::OK
}

/// Waits up to 15 s for `cond`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 15 s: {what}");
}

struct Gw {
    url: String,
    http: Client<HttpConnector, Full<Bytes>>,
    srv: Arc<Srv>,
    events: Arc<Capture>,
}

/// The upstream and the gateway (with `limits`) in front of it, as `web`.
async fn gateway(limits: ListenLimits) -> Gw {
    let srv = Srv::new();
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_url = format!("http://{}/mcp", up.local_addr().unwrap());
    let app = axum::Router::new()
        .route(
            "/mcp",
            axum::routing::post(up_post).get(up_get).delete(up_delete),
        )
        .with_state(Arc::clone(&srv));
    tokio::spawn(async move { axum::serve(up, app).await });

    let events = Arc::new(Capture::default());
    let kernel = kernel(&policy("resume-test", ""), &events);
    let gw = Arc::new(
        Gateway::new(Arc::clone(&kernel), "agent-1", "web")
            .with_shared_pins(Arc::new(PinStore::in_memory())),
    );
    let specs = vec![UpstreamSpec {
        gateway: gw,
        transport: UpstreamTransport::Http(HttpTarget::new(&up_url).unwrap()),
        prefix: String::new(),
    }];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(serve_multi_http(
        specs,
        listener,
        limits,
        ClientAuth::loopback_only(),
        std::future::pending(),
    ));
    Gw {
        url,
        http: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        srv,
        events,
    }
}

/// One SSE event of the gateway's GET stream.
#[derive(Debug, Clone)]
struct Ev {
    id: Option<String>,
    msg: Option<Value>,
}

/// A GET stream of the gateway, read event by event.
struct Sse {
    body: Incoming,
    buf: String,
}

impl Sse {
    /// The next event (keep-alive comments skipped); `None` when the
    /// stream ended or nothing came within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Ev> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                let mut ev = Ev {
                    id: None,
                    msg: None,
                };
                let mut comment = true;
                for l in event.lines() {
                    if let Some(id) = l.strip_prefix("id: ") {
                        ev.id = Some(id.to_owned());
                    } else if let Some(d) = l.strip_prefix("data:") {
                        ev.msg = serde_json::from_str(d.trim_start()).ok();
                    }
                    comment &= l.starts_with(':');
                }
                if !comment {
                    return Some(ev);
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await;
            match frame {
                Ok(Some(Ok(f))) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                _ => return None,
            }
        }
    }

    async fn next(&mut self) -> Ev {
        self.next_within(Duration::from_secs(15))
            .await
            .expect("no event on the GET stream within 15 s")
    }

    /// The next event that carries a message.
    async fn next_msg(&mut self) -> (String, Value) {
        loop {
            let ev = self.next().await;
            if let Some(m) = ev.msg {
                return (ev.id.expect("an event without an id"), m);
            }
        }
    }
}

fn note(n: impl Into<Value>) -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/message",
        "params": {"level": "info", "data": n.into()}})
}

impl Gw {
    async fn request(
        &self,
        method: Method,
        session: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> hyper::Response<Incoming> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        mcp_request(&self.http, &self.url, method, session, &body, headers).await
    }

    /// A POST answered in JSON: status, session header, the message.
    async fn post(&self, session: Option<&str>, msg: Value) -> (StatusCode, Option<String>, Value) {
        let r = self.request(Method::POST, session, Some(&msg), &[]).await;
        let status = r.status();
        let sid = header(r.headers(), "mcp-session-id");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let msg = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, sid, msg)
    }

    /// A new session; its id and its upstream session's id.
    async fn session(&self) -> (String, String) {
        let before = self.srv.issued.load(Ordering::SeqCst);
        let (status, sid, _) = self
            .post(
                None,
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "resume-test", "version": "1"}}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let sid = sid.expect("no Mcp-Session-Id");
        let (status, _, _) = self
            .post(
                Some(&sid),
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let up = format!("up-{}", before + 1);
        self.srv.stream_open(&up).await;
        (sid, up)
    }

    /// Opens a GET stream, resuming after `last` if given.
    async fn get(&self, sid: &str, last: Option<&str>) -> hyper::Response<Incoming> {
        let headers: Vec<(&str, &str)> = last.map(|l| ("last-event-id", l)).into_iter().collect();
        self.request(Method::GET, Some(sid), None, &headers).await
    }

    /// A GET stream that must open; returns it with the id of its first
    /// event (a replay's first, or the priming event's).
    async fn stream(&self, sid: &str, last: Option<&str>) -> Sse {
        let r = self.get(sid, last).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header(r.headers(), "content-type").as_deref(),
            Some("text/event-stream")
        );
        Sse {
            body: r.into_body(),
            buf: String::new(),
        }
    }
}

/// `<tag>-<n>` → (`tag`, `n`).
fn split_id(id: &str) -> (String, u64) {
    let (tag, n) = id.rsplit_once('-').unwrap();
    (tag.to_owned(), n.parse().unwrap())
}

/// The JSON-RPC error of a refused resume.
async fn refused(r: hyper::Response<Incoming>) -> Value {
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], -32600, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Last-Event-ID"),
        "{v}"
    );
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_get_stream_resumes_exactly_once_in_order() {
    let g = gateway(ListenLimits::default()).await;
    let (sid, up) = g.session().await;
    let mut s = g.stream(&sid, None).await;
    // The priming event: no data, the id to resume from (nothing sent yet).
    let prime = s.next().await;
    assert!(prime.msg.is_none(), "{prime:?}");
    let (tag, n) = split_id(prime.id.as_deref().unwrap());
    assert_eq!(n, 0);

    g.srv.push(&up, note("one")).await;
    g.srv.push(&up, note("two")).await;
    let (id1, m1) = s.next_msg().await;
    let (id2, m2) = s.next_msg().await;
    assert_eq!(
        (m1["params"]["data"].clone(), m2["params"]["data"].clone()),
        (json!("one"), json!("two"))
    );
    assert_eq!(id1, format!("{tag}-1"));
    assert_eq!(id2, format!("{tag}-2"));

    // The client goes away; the upstream goes on talking.
    drop(s);
    for i in 3..=6 {
        g.srv.push(&up, note(i)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // Let the gateway take them all before the client comes back.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut s = g.stream(&sid, Some(&id2)).await;
    for i in 3..=6 {
        let (id, m) = s.next_msg().await;
        assert_eq!(m["params"]["data"], i, "{m}");
        assert_eq!(id, format!("{tag}-{i}"));
    }
    // Then live, and nothing twice.
    g.srv.push(&up, note("live")).await;
    let (id, m) = s.next_msg().await;
    assert_eq!(m["params"]["data"], "live", "{m}");
    assert_eq!(id, format!("{tag}-7"));
    assert!(s.next_within(Duration::from_millis(500)).await.is_none());

    // Resuming from the newest id replays nothing and primes with it.
    drop(s);
    let mut s = g.stream(&sid, Some(&id)).await;
    let ev = s.next().await;
    assert!(ev.msg.is_none(), "{ev:?}");
    assert_eq!(ev.id.as_deref(), Some(id.as_str()));
    // A plain GET (no Last-Event-ID) continues from now on: no replay.
    drop(s);
    let mut s = g.stream(&sid, None).await;
    assert!(s.next().await.msg.is_none());
    g.srv.push(&up, note("after")).await;
    let (id, m) = s.next_msg().await;
    assert_eq!(m["params"]["data"], "after", "{m}");
    assert_eq!(id, format!("{tag}-8"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_foreign_event_ids_are_refused_and_sessions_never_mix() {
    let g = gateway(ListenLimits::default()).await;
    let (a, up_a) = g.session().await;
    let (b, up_b) = g.session().await;
    let mut sa = g.stream(&a, None).await;
    let mut sb = g.stream(&b, None).await;
    let tag_a = split_id(&sa.next().await.id.unwrap()).0;
    let tag_b = split_id(&sb.next().await.id.unwrap()).0;
    assert_ne!(tag_a, tag_b, "two sessions share event ids");
    g.srv.push(&up_a, note("for a")).await;
    g.srv.push(&up_b, note("for b")).await;
    let (id_a, m) = sa.next_msg().await;
    assert_eq!(m["params"]["data"], "for a");
    let (id_b, m) = sb.next_msg().await;
    assert_eq!(m["params"]["data"], "for b");
    assert_eq!(id_a, format!("{tag_a}-1"));

    // A's id on B's session (and the reverse, after another event each):
    // refused, and the stream that is open stays open.
    g.srv.push(&up_a, note("a2")).await;
    sa.next_msg().await;
    let r = g.get(&b, Some(&id_a)).await;
    let v = refused(r).await;
    assert!(!v.to_string().contains("for a"), "{v}");
    // The same number under B's tag is B's own event: it replays B's only.
    for bad in [
        "nope".to_owned(),
        String::new(),
        format!("{tag_b}-"),
        format!("{tag_b}-+1"),
        format!("{tag_b}-99"),
        format!("{tag_b}-18446744073709551616"),
        format!("{tag_b}-1-1"),
        format!("x{tag_b}-0"),
    ] {
        refused(g.get(&b, Some(&bad)).await).await;
    }
    g.srv.push(&up_b, note("b2")).await;
    let (id, m) = sb.next_msg().await;
    assert_eq!(
        m["params"]["data"], "b2",
        "the refused GETs closed B's stream"
    );
    assert_eq!(id, format!("{tag_b}-2"));

    // B resumes from its own first event: B's message only, never A's.
    drop(sb);
    let mut sb = g.stream(&b, Some(&id_b)).await;
    let (id, m) = sb.next_msg().await;
    assert_eq!(
        (id, m["params"]["data"].clone()),
        (format!("{tag_b}-2"), json!("b2"))
    );
    assert!(sb.next_within(Duration::from_millis(500)).await.is_none());
    // A unknown session cannot resume anything.
    let r = g.get("no-such-session", Some(&id_a)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_buffer_keeps_only_the_newest_events() {
    let g = gateway(ListenLimits {
        replay_events: 3,
        ..ListenLimits::default()
    })
    .await;
    let (sid, up) = g.session().await;
    let mut s = g.stream(&sid, None).await;
    let tag = split_id(&s.next().await.id.unwrap()).0;
    drop(s);
    // Five events while no stream is open: the oldest two are evicted.
    for i in 1..=5 {
        g.srv.push(&up, note(i)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for gone in [0, 1] {
        refused(g.get(&sid, Some(&format!("{tag}-{gone}"))).await).await;
    }
    let mut s = g.stream(&sid, Some(&format!("{tag}-2"))).await;
    for i in 3..=5 {
        let (id, m) = s.next_msg().await;
        assert_eq!(
            (id, m["params"]["data"].clone()),
            (format!("{tag}-{i}"), json!(i))
        );
    }
    assert!(s.next_within(Duration::from_millis(300)).await.is_none());

    // The byte bound: a message bigger than it is sent live but never kept.
    let g = gateway(ListenLimits {
        replay_bytes: 300,
        ..ListenLimits::default()
    })
    .await;
    let (sid, up) = g.session().await;
    let mut s = g.stream(&sid, None).await;
    let tag = split_id(&s.next().await.id.unwrap()).0;
    g.srv.push(&up, note("small")).await;
    g.srv.push(&up, note("x".repeat(400))).await;
    let (_, m) = s.next_msg().await;
    assert_eq!(m["params"]["data"], "small");
    let (id, m) = s.next_msg().await;
    assert_eq!(m["params"]["data"].as_str().unwrap().len(), 400);
    assert_eq!(id, format!("{tag}-2"));
    drop(s);
    // Events 1 and 2 are gone (2 alone is over the bound, and pushed 1 out).
    refused(g.get(&sid, Some(&format!("{tag}-1"))).await).await;
    g.srv.push(&up, note("a")).await;
    g.srv.push(&up, note("b")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut s = g.stream(&sid, Some(&format!("{tag}-2"))).await;
    for (i, want) in [(3, "a"), (4, "b")] {
        let (id, m) = s.next_msg().await;
        assert_eq!(
            (id, m["params"]["data"].clone()),
            (format!("{tag}-{i}"), json!(want))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_get_stream_that_drops_is_resumed_with_last_event_id() {
    let g = gateway(ListenLimits::default()).await;
    let (sid, up) = g.session().await;
    let mut s = g.stream(&sid, None).await;
    s.next().await;
    assert_eq!(g.srv.gets().len(), 1);
    assert_eq!(g.srv.gets()[0].1, None, "the first GET resumes nothing");
    g.srv.push(&up, note("u1")).await;
    let last = g.srv.push(&up, note("u2")).await;
    assert_eq!(s.next_msg().await.1["params"]["data"], "u1");
    assert_eq!(s.next_msg().await.1["params"]["data"], "u2");

    // The upstream's stream ends; what it sends meanwhile is replayed to the
    // gateway on the reconnect, which names the last event it saw.
    g.srv.cut(&up);
    g.srv.push(&up, note("u3")).await;
    // A server request: it passes the hub (gateway id) like a live one.
    g.srv
        .push(
            &up,
            json!({"jsonrpc": "2.0", "id": "srv-9", "method": "ping"}),
        )
        .await;
    let (who, sent, _) = g.srv.nth_get(2).await;
    assert_eq!(who, up);
    assert_eq!(sent.as_deref(), Some(last.as_str()));
    assert_eq!(s.next_msg().await.1["params"]["data"], "u3");
    let (_, ask) = s.next_msg().await;
    assert_eq!(ask["method"], "ping");
    let gw_id = ask["id"].as_str().unwrap().to_owned();
    assert!(gw_id.starts_with("warden-up-"), "{ask}");
    // Its answer reaches the upstream under the upstream's own id.
    let (status, _, _) = g
        .post(
            Some(&sid),
            json!({"jsonrpc": "2.0", "id": gw_id, "result": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually("the ping's answer reaches the upstream", || {
        g.srv
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "srv-9" && m.get("result").is_some())
    })
    .await;
    // Live again, each message once.
    g.srv.push(&up, note("u5")).await;
    assert_eq!(s.next_msg().await.1["params"]["data"], "u5");
    assert!(s.next_within(Duration::from_millis(500)).await.is_none());
    assert_eq!(g.srv.gets().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reconnects_honour_retry_back_off_and_give_up() {
    let g = gateway(ListenLimits::default()).await;
    // The server asks for 2.5 s between reconnects.
    *g.srv.retry.lock().unwrap() = Some(2500);
    let (_sid, up) = g.session().await;
    g.srv.push(&up, note("x")).await;
    let cut = Instant::now();
    g.srv.cut(&up);
    let (_, last, at) = g.srv.nth_get(2).await;
    assert_eq!(last.as_deref(), Some("ev-1"));
    assert!(
        at.duration_since(cut) >= Duration::from_millis(2400),
        "reopened after {:?}, before the server's retry",
        at.duration_since(cut)
    );

    // A `retry:` in the middle of a stream counts too; a server that
    // refuses the id is asked again without it.
    *g.srv.retry.lock().unwrap() = Some(100);
    *g.srv.reopen.lock().unwrap() = Reopen::RefuseId;
    g.srv.stream_open(&up).await;
    g.srv.raw(&up, "retry: 100\n\n");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cut = Instant::now();
    g.srv.cut(&up);
    let (_, last, at) = g.srv.nth_get(3).await;
    assert_eq!(last.as_deref(), Some("ev-1"));
    let (_, last, _) = g.srv.nth_get(4).await;
    assert_eq!(last, None);
    assert!(at.duration_since(cut) < Duration::from_millis(2400));

    // A server that keeps failing: retried with back-off (100, 200, 400,
    // 800, 1600 ms), then given up after five attempts.
    g.srv.stream_open(&up).await;
    *g.srv.reopen.lock().unwrap() = Reopen::Fail;
    g.srv.cut(&up);
    let (_, _, first) = g.srv.nth_get(5).await;
    let (_, _, fifth) = g.srv.nth_get(9).await;
    assert!(
        fifth.duration_since(first) >= Duration::from_millis(1400),
        "no back-off: {:?}",
        fifth.duration_since(first)
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(g.srv.gets().len(), 9, "retried without bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_name_the_session_the_client_was_given() {
    let g = gateway(ListenLimits::default()).await;
    let (a, _) = g.session().await;
    let (b, _) = g.session().await;
    let call = |id: i64, tool: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": {"text": "t"}}})
    };
    let (_, _, r) = g.post(Some(&a), call(1, "echo")).await;
    assert_eq!(r["result"]["content"][0]["text"], "up:t", "{r}");
    let (_, _, r) = g.post(Some(&b), call(1, "write_file")).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    // A stateless request: no session is issued, it gets an id of its own.
    let (_, sid, r) = g
        .post(
            None,
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
                "name": "echo", "arguments": {"text": "s"},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}),
        )
        .await;
    assert_eq!(sid, None);
    assert_eq!(r["result"]["content"][0]["text"], "up:s", "{r}");

    let decisions: Vec<(Option<String>, Verdict, Option<String>)> = g
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            AuditEvent::Decision {
                session,
                verdict,
                tool,
                ..
            } => Some((session.clone(), *verdict, tool.clone())),
            _ => None,
        })
        .collect();
    let of = |s: &str| -> Vec<(Verdict, Option<String>)> {
        decisions
            .iter()
            .filter(|d| d.0.as_deref() == Some(s))
            .map(|d| (d.1, d.2.clone()))
            .collect()
    };
    // A's call, before and after; B's denial.
    assert_eq!(
        of(&a),
        [
            (Verdict::Allow, Some("echo".to_owned())),
            (Verdict::Allow, Some("echo".to_owned()))
        ],
        "{decisions:?}"
    );
    assert_eq!(
        of(&b),
        [(Verdict::Deny, Some("write_file".to_owned()))],
        "{decisions:?}"
    );
    let other: Vec<_> = decisions
        .iter()
        .filter(|d| d.0.as_deref() != Some(&a) && d.0.as_deref() != Some(&b))
        .collect();
    assert_eq!(other.len(), 2, "{decisions:?}");
    assert!(
        other
            .iter()
            .all(|d| d.0.as_deref().is_some_and(|s| s.starts_with("mcp-"))),
        "{decisions:?}"
    );
}
