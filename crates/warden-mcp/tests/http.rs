//! The Streamable HTTP gateway against a small in-test MCP server (axum)
//! that answers in JSON or, for `slow_echo`, in an SSE stream with a
//! progress notification first. The server counts the calls it receives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Capture, call, kernel, policy, send};

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use warden_kernel::AuditEvent;
use warden_mcp::{ClientAuth, Gateway, HEADER_MISMATCH, HttpTarget, serve_http};

/// Rules after the shared `no-writes` ([`policy`]).
const RULES: &str = r#"
  - id: redact-token
    points: [post_tool_call]
    tools: [slow_echo]
    effect: transform
    transform:
      redact: [args.result.structuredContent.token]
    reason: tokens never reach the model
"#;

#[derive(Default)]
struct Upstream {
    calls: AtomicUsize,
    /// `Last-Event-ID` of the last GET.
    last_event_id: std::sync::Mutex<Option<String>>,
}

/// The upstream's GET stream: what a resuming server sends after the
/// client's `Last-Event-ID` (two notifications and a stray response).
async fn stream(
    axum::extract::State(u): axum::extract::State<Arc<Upstream>>,
    headers: HeaderMap,
) -> axum::response::Response {
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap().to_owned());
    *u.last_event_id.lock().unwrap() = last;
    let note = |n: u32| {
        json!({"jsonrpc": "2.0", "method": "notifications/message",
            "params": {"level": "info", "data": n}})
    };
    let stray = json!({"jsonrpc": "2.0", "id": 3, "result": {}});
    let sse = format!(
        "id: 5\nevent: message\ndata: {}\n\nid: 6\nevent: message\ndata: {stray}\n\nid: 7\nevent: message\ndata: {}\n\n",
        note(5),
        note(7)
    );
    ([("content-type", "text/event-stream")], sse).into_response()
}

async fn upstream(
    axum::extract::State(u): axum::extract::State<Arc<Upstream>>,
    body: String,
) -> axum::response::Response {
    let msg: Value = serde_json::from_str(&body).unwrap();
    let id = msg["id"].clone();
    let result = match msg["method"].as_str().unwrap_or("") {
        "tools/list" => json!({"tools": [
            {"name": "echo", "inputSchema": {"type": "object"}},
            {"name": "slow_echo", "inputSchema": {"type": "object"}},
            {"name": "write_file", "inputSchema": {"type": "object"}}]}),
        "tools/call" => {
            u.calls.fetch_add(1, Ordering::SeqCst);
            if msg["params"]["name"] == "slow_echo" {
                let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": "t", "progress": 1}});
                let answer = json!({"jsonrpc": "2.0", "id": id, "result": {
                    "content": [{"type": "text", "text": "slow"}],
                    "structuredContent": {"token": "tok-123"}}});
                let sse = format!(
                    "event: message\ndata: {progress}\n\nid: 7\nevent: message\ndata: {answer}\n\n"
                );
                return ([("content-type", "text/event-stream")], sse).into_response();
            }
            json!({"content": [{"type": "text", "text": msg["params"]["arguments"].to_string()}]})
        }
        _ => {
            if id.is_null() {
                return StatusCode::ACCEPTED.into_response();
            }
            json!({})
        }
    };
    let out = json!({"jsonrpc": "2.0", "id": id, "result": result});
    ([("content-type", "application/json")], out.to_string()).into_response()
}

struct Harness {
    url: String,
    upstream: Arc<Upstream>,
}

async fn start() -> Harness {
    let up = Arc::new(Upstream::default());
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(upstream).get(stream))
        .with_state(Arc::clone(&up));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_url = format!("http://{}/mcp", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    let kernel = kernel(&policy("http-test", RULES), &Arc::new(Capture::default()));
    let gw = Gateway::new(kernel, "agent-1", "http-test").with_max_message_bytes(8192);
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", front.local_addr().unwrap());
    tokio::spawn(async move {
        serve_http(
            Arc::new(gw),
            HttpTarget::new(&up_url).unwrap(),
            front,
            ClientAuth::loopback_only(),
        )
        .await
    });
    Harness { url, upstream: up }
}

async fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
    send(Method::POST, url, headers, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_and_denied_calls() {
    let h = start().await;
    let (s, _, body) = post(&h.url, &call(1, "echo"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["content"][0]["text"], r#"{"x":1}"#, "{body}");
    let (s, _, body) = post(&h.url, &call(2, "write_file"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["isError"], true);
    assert!(body.contains("writes are not allowed here"));
    assert_eq!(
        h.upstream.calls.load(Ordering::SeqCst),
        1,
        "the denied call never left"
    );
    // Hidden from the listing.
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}).to_string();
    let (_, _, body) = post(&h.url, &list, &[]).await;
    assert!(
        !body.contains("write_file") && body.contains("slow_echo"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_answers_are_checked_and_other_events_pass() {
    let h = start().await;
    let (s, headers, body) = post(&h.url, &call(1, "slow_echo"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(body.contains("notifications/progress"), "{body}");
    assert!(
        body.contains("[REDACTED]") && !body.contains("tok-123"),
        "{body}"
    );
    assert!(body.contains("id: 7"), "event ids kept: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_must_match_the_body() {
    let h = start().await;
    // A call dressed up as a ping in its headers is refused, not routed by header.
    let (s, _, body) = post(&h.url, &call(1, "write_file"), &[("mcp-method", "ping")]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], HEADER_MISMATCH);
    let (s, _, _) = post(
        &h.url,
        &call(2, "write_file"),
        &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, body) = post(
        &h.url,
        &call(3, "echo"),
        &[
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
            ("mcp-protocol-version", "2026-07-28"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(h.upstream.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversize_and_unreachable() {
    let h = start().await;
    let (s, _, body) = post(&h.url, "{nope", &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("-32700"));
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"x": "a".repeat(10_000)}}})
    .to_string();
    let (s, _, body) = post(&h.url, &big, &[]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (s, _, _) = post(&h.url, r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let bad_args = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": "x"}})
    .to_string();
    let (_, _, body) = post(&h.url, &bad_args, &[]).await;
    assert!(body.contains("-32602"), "{body}");
    let sneaky = r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#;
    let (s, _, _) = post(&h.url, sneaky, &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(h.upstream.calls.load(Ordering::SeqCst), 0);

    // A gateway whose upstream is down answers with an error, never an allow.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/mcp", dead.local_addr().unwrap());
    drop(dead);
    let events = Arc::new(Capture::default());
    let gw = Gateway::new(
        kernel(&policy("http-test", RULES), &events),
        "agent-1",
        "dead",
    );
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", front.local_addr().unwrap());
    tokio::spawn(async move {
        serve_http(
            Arc::new(gw),
            HttpTarget::new(&dead_url).unwrap(),
            front,
            ClientAuth::loopback_only(),
        )
        .await
    });
    let (s, _, body) = post(&url, &call(3, "echo"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["isError"], true, "{body}");
    assert!(body.contains("mcp:unknown_tool") || body.contains("mcp:upstream_unavailable"));
    // The refusal is audited: a deny decision for the call that never left.
    let events = events.0.lock().unwrap();
    assert!(
        events.iter().any(|e| matches!(e, AuditEvent::Decision { tool: Some(t), verdict: warden_core::Verdict::Deny, reasons, .. }
            if t == "echo" && reasons.iter().any(|r| r.contains("could not be listed")))),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_streams_resume_end_to_end_through_the_proxy() {
    let h = start().await;
    let (status, headers, body) = send(
        Method::GET,
        &h.url,
        &[("mcp-session-id", "s-1"), ("last-event-id", "4")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // The client's Last-Event-ID reached the upstream ...
    assert_eq!(
        h.upstream.last_event_id.lock().unwrap().as_deref(),
        Some("4")
    );
    // ... and the events came back with their ids, the stray response dropped.
    assert!(
        body.contains("id: 5\n") && body.contains("id: 7\n"),
        "{body}"
    );
    assert!(!body.contains("id: 6\n"), "{body}");
    assert!(body.find("\"data\":5").unwrap() < body.find("\"data\":7").unwrap());
}
