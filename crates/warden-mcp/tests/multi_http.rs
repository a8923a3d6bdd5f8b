//! The multi-upstream gateway with a Streamable HTTP upstream next to a
//! scripted stdio one: a real in-test MCP server (axum) that issues session
//! ids, answers in JSON or SSE, offers a GET stream, and records every
//! message it receives with the headers it came with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{Capture, Harness, WEB_NO_BLOCKED_ECHO, kernel, policy, scripted, text};
use hyper::body::Bytes;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warden_mcp::{Gateway, HttpTarget, PinStore, UpstreamSpec, UpstreamTransport};

/// The gateway's message limit in these tests.
const MAX: usize = 64 * 1024;

/// One message the HTTP server received, with its MCP headers.
#[derive(Debug, Clone)]
struct Seen {
    msg: Value,
    session: Option<String>,
    version: Option<String>,
    method: Option<String>,
    name: Option<String>,
}

type Stream = http_body_util::channel::Sender<Bytes, std::convert::Infallible>;

#[derive(Default)]
struct Srv {
    seen: Mutex<Vec<Seen>>,
    /// Sessions still valid (a request naming another gets 404).
    sessions: Mutex<Vec<String>>,
    issued: AtomicUsize,
    deleted: Mutex<Vec<String>>,
    /// Open GET streams (kept so they stay open).
    streams: Mutex<Vec<Stream>>,
    /// Whether GET streams are offered (else 405).
    offer_get: AtomicBool,
    /// Stateless (2026-07-28): no session needed.
    stateless: AtomicBool,
}

impl Srv {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn methods(&self, method: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.msg["method"] == method)
            .collect()
    }

    /// `tools/call`s of `tool` the server received.
    fn calls(&self, tool: &str) -> usize {
        self.methods("tools/call")
            .iter()
            .filter(|s| s.msg["params"]["name"] == tool)
            .count()
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_owned())
}

fn sse(events: &[Value]) -> Response {
    // A priming event without data first, as servers that support resumption send.
    let mut body = String::from("id: 0\ndata:\n\n");
    for e in events {
        body.push_str(&format!("event: message\ndata: {e}\n\n"));
    }
    ([("content-type", "text/event-stream")], body).into_response()
}

fn json_answer(id: &Value, result: Value) -> Response {
    let out = json!({"jsonrpc": "2.0", "id": id, "result": result});
    ([("content-type", "application/json")], out.to_string()).into_response()
}

fn tool_text(t: &str) -> Value {
    json!({"content": [{"type": "text", "text": t}]})
}

async fn post(State(srv): State<Arc<Srv>>, headers: HeaderMap, body: String) -> Response {
    let msg: Value = serde_json::from_str(&body).unwrap();
    srv.seen.lock().unwrap().push(Seen {
        msg: msg.clone(),
        session: header(&headers, "mcp-session-id"),
        version: header(&headers, "mcp-protocol-version"),
        method: header(&headers, "mcp-method"),
        name: header(&headers, "mcp-name"),
    });
    assert_eq!(
        header(&headers, "accept").as_deref(),
        Some("application/json, text/event-stream")
    );
    let id = msg["id"].clone();
    let method = msg["method"].as_str().unwrap_or("");
    if method == "initialize" {
        let n = srv.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let sid = format!("sess-{n}");
        srv.sessions.lock().unwrap().push(sid.clone());
        let result = json!({"protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {"listChanged": true}, "logging": {}},
            "serverInfo": {"name": "http-test", "version": "1"}});
        let mut r = json_answer(&id, result);
        r.headers_mut()
            .insert("mcp-session-id", sid.parse().unwrap());
        return r;
    }
    let valid = header(&headers, "mcp-session-id")
        .is_some_and(|s| srv.sessions.lock().unwrap().contains(&s));
    if !valid && !srv.stateless.load(Ordering::SeqCst) {
        return (StatusCode::NOT_FOUND, "unknown session").into_response();
    }
    if id.is_null() || msg.get("method").is_none() {
        return StatusCode::ACCEPTED.into_response();
    }
    match method {
        "tools/list" => {
            let tools: Vec<Value> = [
                "echo",
                "slow_echo",
                "write_file",
                "big",
                "big_sse",
                "cut",
                "fail",
            ]
            .iter()
            .map(|n| json!({"name": n, "inputSchema": {"type": "object"}}))
            .collect();
            // Listed over SSE: the gateway's own requests read streams too.
            sse(&[json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools}})])
        }
        "tools/call" => {
            let args = &msg["params"]["arguments"];
            match msg["params"]["name"].as_str().unwrap() {
                "echo" | "write_file" => json_answer(
                    &id,
                    tool_text(&format!("http:{}", args["text"].as_str().unwrap_or(""))),
                ),
                "slow_echo" => {
                    let token = msg["params"]["_meta"]["progressToken"].clone();
                    sse(&[
                        json!({"jsonrpc": "2.0", "method": "notifications/progress",
                            "params": {"progressToken": token, "progress": 1, "total": 2}}),
                        json!({"jsonrpc": "2.0", "id": id, "result": tool_text("slow")}),
                    ])
                }
                "big" => json_answer(&id, tool_text(&"x".repeat(MAX * 2))),
                // A stream that ends without the answer.
                "cut" => sse(
                    &[json!({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": "c", "progress": 1}})],
                ),
                "big_sse" => sse(&[
                    json!({"jsonrpc": "2.0", "id": id, "result": tool_text(&"y".repeat(MAX * 2))}),
                ]),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
            }
        }
        _ => json_answer(&id, json!({})),
    }
}

async fn get(State(srv): State<Arc<Srv>>, headers: HeaderMap) -> Response {
    if !srv.offer_get.load(Ordering::SeqCst) {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let valid = header(&headers, "mcp-session-id")
        .is_some_and(|s| srv.sessions.lock().unwrap().contains(&s));
    if !valid || header(&headers, "mcp-protocol-version").is_none() {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let (mut tx, chan) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(8);
    let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
        "params": {"level": "info", "data": "from GET"}});
    let ask = json!({"jsonrpc": "2.0", "id": "srv-1", "method": "ping"});
    tx.send_data(Bytes::from(format!(
        "data: {note}\n\nevent: message\ndata: {ask}\n\n"
    )))
    .await
    .unwrap();
    srv.streams.lock().unwrap().push(tx);
    ([("content-type", "text/event-stream")], Body::new(chan)).into_response()
}

async fn delete(State(srv): State<Arc<Srv>>, headers: HeaderMap) -> StatusCode {
    if let Some(s) = header(&headers, "mcp-session-id") {
        srv.sessions.lock().unwrap().retain(|x| *x != s);
        srv.deleted.lock().unwrap().push(s);
    }
    StatusCode::OK
}

/// Serves `srv` on `listener` at `/mcp`.
fn serve(srv: &Arc<Srv>, listener: tokio::net::TcpListener) {
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(post).get(get).delete(delete))
        .with_state(Arc::clone(srv));
    tokio::spawn(async move { axum::serve(listener, app).await });
}

/// An address nothing listens on (yet).
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The scripted stdio server `a` (no prefix) and the HTTP server at `addr`
/// as `web` with `prefix`, behind one gateway.
fn gateway(addr: SocketAddr, prefix: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let events = Arc::new(Capture::default());
    let kernel = kernel(&policy("multi-http-test", WEB_NO_BLOCKED_ECHO), &events);
    let pins = Arc::new(PinStore::in_memory());
    let gw = |name: &str| {
        Arc::new(
            Gateway::new(Arc::clone(&kernel), "agent-1", name)
                .with_shared_pins(Arc::clone(&pins))
                .with_max_message_bytes(MAX),
        )
    };
    let (cmd, log) = scripted(dir.path(), "a", &[]);
    let specs = vec![
        UpstreamSpec {
            gateway: gw("a"),
            transport: cmd.into(),
            prefix: String::new(),
        },
        UpstreamSpec {
            gateway: gw("web"),
            transport: UpstreamTransport::Http(
                HttpTarget::new(&format!("http://{addr}/mcp")).unwrap(),
            ),
            prefix: prefix.to_owned(),
        },
    ];
    Harness::connect(specs, vec![log], events, dir)
}

/// A server set up by `setup`, listening, and a gateway in front of it (no handshake yet).
async fn listening(setup: impl FnOnce(&Srv), prefix: &str) -> (Arc<Srv>, Harness) {
    let srv = Arc::new(Srv::default());
    setup(&srv);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    serve(&srv, l);
    (srv, gateway(addr, prefix))
}

async fn up(prefix: &str) -> (Arc<Srv>, Harness) {
    let (srv, mut h) = listening(|_| {}, prefix).await;
    let r = h.initialize().await;
    assert_eq!(
        r["result"]["serverInfo"]["name"], "warden-mcp-gateway",
        "{r}"
    );
    (srv, h)
}

/// Calls `tool` until it answers `want` (within 10 s), asserting that every
/// other answer meanwhile is `mcp:upstream_unavailable`.
async fn until_back(h: &mut Harness, tool: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 100.. {
        let r = h.call(json!(n), tool, json!({"text": "back"})).await;
        if text(&r) == want {
            return;
        }
        assert!(text(&r).contains("mcp:upstream_unavailable"), "{r}");
        assert!(Instant::now() < deadline, "{tool} did not come back: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_stdio_upstreams_route_share_one_session_and_it_is_deleted_at_exit() {
    let (srv, mut h) = listening(|s| s.offer_get.store(true, Ordering::SeqCst), "h_").await;
    let r = h.initialize().await;
    assert_eq!(r["result"]["protocolVersion"], "2025-06-18", "{r}");
    assert!(r["result"]["capabilities"]["logging"].is_object(), "{r}");

    h.shows(&["echo", "secret", "h_echo", "h_slow_echo"]).await;

    let r = h.call(json!("c-1"), "h_echo", json!({"text": "hi"})).await;
    assert_eq!(r["id"], "c-1");
    assert_eq!(text(&r), "http:hi", "{r}");
    let r = h.call(json!(2), "echo", json!({"text": "hi a"})).await;
    assert_eq!(text(&r), r#"{"text": "hi a"}"#, "{r}");
    assert_eq!(h.calls(0, "tools/call").len(), 1);
    assert_eq!(srv.calls("echo"), 1);

    // An SSE answer: the progress notification reaches the client first.
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "h_slow_echo", "arguments": {}, "_meta": {"progressToken": "p-1"}}}))
        .await;
    assert_eq!(text(&r), "slow", "{r}");
    assert!(
        h.notes
            .iter()
            .any(|n| n["method"] == "notifications/progress"
                && n["params"]["progressToken"] == "p-1"),
        "{:?}",
        h.notes
    );

    // The GET stream: its notification reaches the client, and its ping
    // (server id `srv-1`) is answered back to the server under that id.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ask = loop {
        let got = h.notes.iter().find(|n| n["method"] == "ping").cloned();
        if let Some(ask) = got
            && h.notes.iter().any(|n| n["params"]["data"] == "from GET")
        {
            break ask;
        }
        assert!(Instant::now() < deadline, "no GET stream messages");
        let m = h.read().await;
        h.notes.push(m);
    };
    assert!(
        ask["id"].as_str().unwrap().starts_with("warden-up-"),
        "{ask}"
    );
    h.send(json!({"jsonrpc": "2.0", "id": ask["id"], "result": {}}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !srv
        .seen()
        .iter()
        .any(|s| s.msg["id"] == "srv-1" && s.msg.get("result").is_some())
    {
        assert!(
            Instant::now() < deadline,
            "the ping's answer never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every message after `initialize` carried the session and version;
    // requests carried their routing headers and gateway ids.
    let seen = srv.seen();
    assert_eq!(srv.methods("initialize").len(), 1);
    assert_eq!(srv.methods("notifications/initialized").len(), 1);
    for s in seen.iter().filter(|s| s.msg["method"] != "initialize") {
        assert_eq!(s.session.as_deref(), Some("sess-1"), "{s:?}");
        assert_eq!(s.version.as_deref(), Some("2025-06-18"), "{s:?}");
    }
    for s in srv.methods("tools/call") {
        assert_eq!(s.method.as_deref(), Some("tools/call"), "{s:?}");
        assert_eq!(
            s.name.as_ref(),
            s.msg["params"]["name"].as_str().map(str::to_owned).as_ref()
        );
        assert!(
            s.msg["id"].as_str().unwrap().starts_with("warden-gw-"),
            "{s:?}"
        );
    }
    assert_eq!(srv.methods("tools/call")[0].msg["params"]["name"], "echo");

    // The client leaves: the session is deleted on the server.
    drop(h);
    let deadline = Instant::now() + Duration::from_secs(10);
    while srv.deleted.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the session was not deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*srv.deleted.lock().unwrap(), ["sess-1"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_denied_call_never_reaches_the_http_server() {
    let (srv, mut h) = up("h_").await;
    h.tools().await;
    let r = h.call(json!(1), "h_echo", json!({"text": "blocked"})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("the web server may not echo that"), "{r}");
    // The same text to the stdio server: the rule is scoped to `web`.
    let r = h.call(json!(2), "echo", json!({"text": "blocked"})).await;
    assert_eq!(text(&r), r#"{"text": "blocked"}"#, "{r}");
    let r = h.call(json!(3), "h_write_file", json!({"text": "x"})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("writes are not allowed here"), "{r}");
    assert_eq!(srv.calls("echo"), 0);
    assert_eq!(srv.calls("write_file"), 0);
    let r = h.call(json!(4), "h_echo", json!({"text": "fine"})).await;
    assert_eq!(text(&r), "http:fine", "{r}");
    assert_eq!(srv.calls("echo"), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_tool_offered_over_http_and_stdio_is_hidden_and_refused() {
    let (srv, mut h) = up("").await;
    let tools = h.tools().await;
    assert!(!tools.contains(&"echo".to_owned()), "{tools:?}");
    assert!(tools.contains(&"slow_echo".to_owned()), "{tools:?}");
    assert!(tools.contains(&"secret".to_owned()), "{tools:?}");
    let r = h.call(json!(1), "echo", json!({"text": "which?"})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    let t = text(&r);
    assert!(
        t.contains("mcp:duplicate_tool") && t.contains("a, web"),
        "{t}"
    );
    assert_eq!(h.refusals("echo", "mcp:duplicate_tool"), 1);
    assert_eq!(srv.calls("echo"), 0);
    assert!(h.calls(0, "tools/call").is_empty());
    // The names only one of them offers still route.
    let r = h.call(json!(2), "secret", json!({})).await;
    assert_eq!(text(&r), "token inside", "{r}");
}

#[tokio::test(flavor = "current_thread")]
async fn an_http_upstream_down_at_start_is_unavailable_and_recovers_when_it_comes_up() {
    let addr = free_addr();
    let mut h = gateway(addr, "h_");
    let r = h.initialize().await;
    // The stdio upstream alone answers the handshake.
    assert_eq!(
        r["result"]["serverInfo"]["name"], "warden-mcp-gateway",
        "{r}"
    );
    let r = h.call(json!(1), "h_echo", json!({"text": "x"})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("mcp:upstream_unavailable"), "{r}");
    assert!(text(&r).contains("`web`"), "{r}");
    assert_eq!(h.refusals("h_echo", "mcp:upstream_unavailable"), 1);
    let r = h.call(json!(2), "echo", json!({"text": "a works"})).await;
    assert_eq!(text(&r), r#"{"text": "a works"}"#, "{r}");

    let srv = Arc::new(Srv::default());
    serve(&srv, tokio::net::TcpListener::bind(addr).await.unwrap());
    until_back(&mut h, "h_echo", "http:back").await;
    // It got the client's handshake replayed, then the call.
    let inits = srv.methods("initialize");
    assert_eq!(inits.len(), 1, "{inits:?}");
    assert_eq!(inits[0].msg["params"]["clientInfo"]["name"], "test");
    assert_eq!(srv.methods("notifications/initialized").len(), 1);
    assert_eq!(srv.calls("echo"), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_or_expired_http_upstream_is_unavailable_then_reinitialized() {
    let (srv, mut h) = up("h_").await;
    let r = h.call(json!(1), "h_echo", json!({"text": "one"})).await;
    assert_eq!(text(&r), "http:one", "{r}");

    // A 5xx: the call is answered unavailable and the upstream is down.
    let r = h.call(json!(2), "h_fail", json!({})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("mcp:upstream_unavailable"), "{r}");
    // During the back-off nothing reaches it.
    let r = h.call(json!(3), "h_echo", json!({"text": "two"})).await;
    assert!(text(&r).contains("mcp:upstream_unavailable"), "{r}");
    assert_eq!(srv.calls("echo"), 1);
    // The stdio upstream is unaffected.
    let r = h.call(json!(4), "echo", json!({"text": "a"})).await;
    assert_eq!(text(&r), r#"{"text": "a"}"#, "{r}");
    until_back(&mut h, "h_echo", "http:back").await;
    assert_eq!(srv.methods("initialize").len(), 2);
    let last = srv.methods("tools/call").pop().unwrap();
    assert_eq!(last.session.as_deref(), Some("sess-2"));

    // The server forgets the session: 404, unavailable, a new session.
    srv.sessions.lock().unwrap().clear();
    let r = h.call(json!(5), "h_echo", json!({"text": "three"})).await;
    assert!(text(&r).contains("mcp:upstream_unavailable"), "{r}");
    until_back(&mut h, "h_echo", "http:back").await;
    assert_eq!(srv.methods("initialize").len(), 3);
    let last = srv.methods("tools/call").pop().unwrap();
    assert_eq!(last.session.as_deref(), Some("sess-3"));
}

#[tokio::test(flavor = "current_thread")]
async fn an_oversize_or_unfinished_http_answer_fails_closed() {
    let (srv, mut h) = up("h_").await;
    for (id, tool) in [(1, "h_big"), (2, "h_big_sse")] {
        let r = h.call(json!(id), tool, json!({})).await;
        assert_eq!(r["id"], id);
        assert_eq!(r["result"]["isError"], true, "{tool}");
        let t = text(&r);
        assert!(t.contains("mcp:upstream_unavailable"), "{t}");
        assert!(t.contains(&format!("limit of {MAX} bytes")), "{t}");
        assert!(!r.to_string().contains("xxxx") && !r.to_string().contains("yyyy"));
    }
    assert_eq!(srv.calls("big") + srv.calls("big_sse"), 2);
    // A stream that ends before the answer fails that request the same way.
    let r = h.call(json!(4), "h_cut", json!({})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("did not answer"), "{r}");
    // Only those requests failed: the session goes on.
    let r = h.call(json!(5), "h_echo", json!({"text": "after"})).await;
    assert_eq!(text(&r), "http:after", "{r}");
    assert_eq!(srv.methods("initialize").len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn stateless_requests_carry_their_version_and_routing_headers() {
    let (srv, mut h) = listening(|s| s.stateless.store(true, Ordering::SeqCst), "h_").await;
    // No initialize: the call carries its protocol version in `_meta`.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "h_echo", "arguments": {"text": "s"}, "_meta": meta}}))
        .await;
    assert_eq!(text(&r), "http:s", "{r}");
    assert!(srv.methods("initialize").is_empty());
    // The gateway's own listing went first, with the call's `_meta`.
    let list = srv.methods("tools/list");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].msg["params"]["_meta"], meta);
    assert_eq!(list[0].method.as_deref(), Some("tools/list"));
    assert_eq!(list[0].name, None);
    let call = &srv.methods("tools/call")[0];
    assert_eq!(call.method.as_deref(), Some("tools/call"));
    assert_eq!(call.name.as_deref(), Some("echo"));
    for s in [&list[0], call] {
        assert_eq!(s.version.as_deref(), Some("2026-07-28"), "{s:?}");
        assert_eq!(s.session, None, "{s:?}");
    }
}
