//! The gateway end to end: a client on an in-memory pipe, `serve_stdio`, and
//! a scripted stdio MCP server (tests/fixtures/scripted_server.py) that logs
//! every message it receives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Capture, Harness, kernel, policy, scripted, text};

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use warden_kernel::AuditEvent;
use warden_mcp::{Gateway, serve_stdio};

/// Rules after the shared `no-writes` ([`policy`]).
const BASE: &str = r#"
  - id: deploy-approval
    tools: [deploy]
    effect: escalate
    approvers: [ops]
    timeout: APPROVAL_TIMEOUT
    reason: deploys need a human
  - id: force-safe-mode
    tools: [echo]
    when: has(args.mode)
    effect: transform
    transform:
      replace:
        args.mode: safe
    reason: mode is forced to safe
  - id: redact-token
    points: [post_tool_call]
    tools: [secret]
    effect: transform
    transform:
      redact:
        - args.result.structuredContent.token
    reason: tokens never reach the model
  - id: no-private-resources
    tools: [resources/read]
    when: args.uri.startsWith("file:///private/")
    effect: deny
    reason: private resources are off limits
  - id: redact-passwords-in-text
    points: [post_tool_call]
    when: args.output.contains("password=")
    effect: transform
    transform:
      redact: [args.output]
    reason: passwords never reach the model
  - id: no-leaks-in-results
    points: [post_tool_call]
    tools: [echo]
    when: args.result.content.exists(c, c.text.contains("LEAK"))
    effect: deny
    reason: the result carried a leak marker
"#;

async fn start_with(yaml: &str, opts: &[&str], max: Option<usize>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let events = Arc::new(Capture::default());
    let kernel = kernel(yaml, &events);
    let mut gw = Gateway::new(Arc::clone(&kernel), "agent-1", "scripted");
    if let Some(m) = max {
        gw = gw.with_max_message_bytes(m);
    }
    let (cmd, log) = scripted(dir.path(), "s", opts);
    let gw = Arc::new(gw);
    Harness::over(
        |r, w| serve_stdio(gw, cmd, r, w),
        kernel,
        vec![log],
        events,
        dir,
    )
}

fn base(approval_timeout: &str) -> String {
    policy("mcp-test", BASE).replace("APPROVAL_TIMEOUT", approval_timeout)
}

async fn start(opts: &[&str]) -> Harness {
    let mut h = start_with(&base("5s"), opts, None).await;
    initialized(&mut h).await;
    h
}

/// The handshake, answered by the scripted server itself (passed through).
async fn initialized(h: &mut Harness) {
    let r = h.initialize().await;
    assert_eq!(r["result"]["serverInfo"]["name"], "scripted", "{r}");
}

// A single-threaded runtime, as `warden mcp` on stdio uses.
#[tokio::test(flavor = "current_thread")]
async fn allowed_call_reaches_the_server_and_comes_back() {
    let mut h = start(&[]).await;
    let r = h.call(1, "echo", json!({"text": "hello ✓"})).await;
    assert_eq!(r["result"].get("isError"), None, "{r}");
    assert_eq!(text(&r), r#"{"text": "hello \u2713"}"#);
    assert_eq!(h.tool_calls(0, "echo").len(), 1);
    // The call was decided and its outcome recorded.
    let events = h.events.0.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AuditEvent::Decision { tool: Some(t), .. } if t == "echo"))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AuditEvent::Outcome { status, .. } if status == "ok"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_call_never_reaches_the_server_and_tool_is_hidden() {
    let mut h = start(&[]).await;
    let tools = h.tools().await;
    assert!(!tools.contains(&"write_file".to_owned()), "{tools:?}");
    assert!(tools.contains(&"echo".to_owned()));
    let r = h
        .call(2, "write_file", json!({"path": "/etc/passwd"}))
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("writes are not allowed here"), "{r}");
    // Ping afterwards so any stray forward would have been logged by now.
    h.rpc(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}))
        .await;
    assert!(h.tool_calls(0, "write_file").is_empty());
}

// A single-threaded runtime, as `warden mcp` on stdio uses.
#[tokio::test(flavor = "current_thread")]
async fn escalation_waits_for_an_approver() {
    let mut h = start(&[]).await;
    let kernel = Arc::clone(&h.kernel);
    let approver = tokio::spawn(async move {
        loop {
            if let Some(p) = kernel.pending_approvals().into_iter().next() {
                assert_eq!(p.tool.as_deref(), Some("deploy"));
                kernel.resolve_approval(&p.id, "ops", true, None).unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let r = h.call(1, "deploy", json!({"env": "prod"})).await;
    approver.await.unwrap();
    assert_eq!(r["result"].get("isError"), None, "{r}");
    assert_eq!(h.tool_calls(0, "deploy").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_times_out_into_a_deny() {
    let mut h = start_with(&base("200ms"), &[], None).await;
    initialized(&mut h).await;
    let r = h.call(1, "deploy", json!({})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("approval:timeout"), "{r}");
    assert!(h.tool_calls(0, "deploy").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transform_rewrites_arguments_before_forwarding() {
    let mut h = start(&[]).await;
    let r = h
        .call(1, "echo", json!({"text": "x", "mode": "dangerous"}))
        .await;
    assert_eq!(text(&r), r#"{"mode": "safe", "text": "x"}"#, "{r}");
    let sent = h.tool_calls(0, "echo");
    assert_eq!(sent[0]["params"]["arguments"]["mode"], "safe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_redacted_or_denied_after_the_call() {
    let mut h = start(&[]).await;
    let r = h.call(1, "secret", json!({})).await;
    assert_eq!(
        r["result"]["structuredContent"],
        json!({"token": "[REDACTED]", "ok": true}),
        "{r}"
    );
    assert!(!r.to_string().contains("tok-123"));
    let r = h.call(3, "echo", json!({"text": "password=hunter2"})).await;
    assert_eq!(text(&r), "[REDACTED]", "{r}");
    let r = h.call(2, "echo", json!({"text": "LEAK"})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("the result carried a leak marker"), "{r}");
    assert!(!text(&r).contains("\"text\": \"LEAK\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rug_pull_is_blocked_and_audited() {
    let mut h = start(&["--rugpull"]).await;
    assert!(h.tools().await.contains(&"echo".to_owned()));
    assert_eq!(
        h.call(2, "echo", json!({"text": "a"})).await["result"].get("isError"),
        None
    );
    // The second listing carries a changed description.
    let tools = h.tools().await;
    assert!(!tools.contains(&"echo".to_owned()), "{tools:?}");
    let r = h.call(4, "echo", json!({"text": "b"})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("mcp:tool_changed"), "{r}");
    assert_eq!(h.tool_calls(0, "echo").len(), 1);
    let events = h.events.0.lock().unwrap();
    let changed: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, AuditEvent::McpToolChanged { tool, .. } if tool == "echo"))
        .collect();
    assert_eq!(changed.len(), 1, "audited once");
    drop(events);
    // The refused call itself is audited too (a deny decision naming why).
    assert_eq!(h.refusals("echo", "mcp:tool_changed"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_tool_names_are_rejected() {
    let mut h = start(&["--duplicate"]).await;
    let tools = h.tools().await;
    assert!(!tools.contains(&"dup".to_owned()), "{tools:?}");
    let r = h.call(2, "dup", json!({})).await;
    assert!(text(&r).contains("mcp:duplicate_tool"), "{r}");
    assert!(h.tool_calls(0, "dup").is_empty());
    let r = h.call(3, "resources/read", json!({})).await;
    assert!(text(&r).contains("reserved"), "{r}");
    assert_eq!(h.refusals("dup", "mcp:duplicate_tool"), 1);
    assert_eq!(h.refusals("resources/read", "mcp:unknown_tool"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_listing_are_checked_against_the_definitions() {
    // A stateless client calls straight away; the gateway lists (every page) first.
    let mut h = start(&["--paginate", "--duplicate"]).await;
    let r = h.call(1, "echo", json!({"text": "hi"})).await;
    assert_eq!(text(&r), r#"{"text": "hi"}"#, "{r}");
    let r = h.call(2, "dup", json!({})).await;
    assert!(text(&r).contains("mcp:duplicate_tool"), "{r}");
    let r = h.call(3, "nope", json!({})).await;
    assert!(text(&r).contains("mcp:unknown_tool"), "{r}");
    assert_eq!(h.refusals("nope", "mcp:unknown_tool"), 1);
    let lists = h
        .upstream(0)
        .into_iter()
        .filter(|m| m["method"] == "tools/list")
        .count();
    assert!(lists >= 7, "paginated listing: {lists}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversize_input_get_errors_and_are_not_forwarded() {
    let mut h = start_with(&base("5s"), &[], Some(4096)).await;
    initialized(&mut h).await;
    h.send_raw(b"{not json").await;
    assert_eq!(h.read().await["error"]["code"], -32700);
    h.send_raw(
        format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"ping","params":{{"x":"{}"}}}}"#,
            "a".repeat(10_000)
        )
        .as_bytes(),
    )
    .await;
    let r = h.read().await;
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("4096"));
    h.send_raw(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)
        .await;
    assert_eq!(h.read().await["error"]["code"], -32600);
    h.send_raw(br#"{"id":1,"method":"tools/call","params":{"name":"echo"}}"#)
        .await;
    assert_eq!(h.read().await["error"]["code"], -32600);
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": ["x"]}}))
        .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "echo", "arguments": {}, "argumentz": {"x": 1}}}))
        .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("argumentz")
    );
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": ""}}))
        .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": "warden-gw-1", "method": "ping"}))
        .await;
    assert_eq!(r["error"]["code"], -32600, "{r}");
    // A tools/call sent as a notification (no id) would skip the decision.
    h.send_raw(
        br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"write_file","arguments":{}}}"#,
    )
    .await;
    h.rpc(json!({"jsonrpc": "2.0", "id": 5, "method": "ping"}))
        .await;
    assert!(h.tool_calls(0, "write_file").is_empty());
    assert!(h.tool_calls(0, "echo").is_empty());
    assert_eq!(
        h.upstream(0)
            .iter()
            .filter(|m| m["method"] == "ping")
            .count(),
        1
    );
}

// A single-threaded runtime, as `warden mcp` on stdio uses.
#[tokio::test(flavor = "current_thread")]
async fn upstream_crash_is_an_error_then_the_server_restarts() {
    let mut h = start(&[]).await;
    let r = h.call(1, "crash", json!({})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("mcp:upstream_unavailable"), "{r}");
    // Within the backoff nothing is forwarded: an error, not an allow.
    let r = h.call(2, "echo", json!({"text": "during"})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("mcp:upstream_unavailable"), "{r}");
    tokio::time::sleep(warden_mcp::INITIAL_BACKOFF + Duration::from_millis(200)).await;
    let r = h.call(3, "echo", json!({"text": "after"})).await;
    assert_eq!(text(&r), r#"{"text": "after"}"#, "{r}");
    // The restarted server got the client's handshake replayed, then a listing.
    let log = h.upstream(0);
    let inits = log.iter().filter(|m| m["method"] == "initialize").count();
    assert_eq!(inits, 2);
    assert!(
        log.iter()
            .all(|m| m["params"]["arguments"]["text"] != "during")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_traffic_passes_through_unchanged() {
    let mut h = start(&[]).await;
    // Progress notifications from the server reach the client.
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "progress"}, "_meta": {"progressToken": "p1"}}}))
        .await;
    assert_eq!(text(&r), "done");
    assert!(
        h.notes.iter().any(
            |n| n["method"] == "notifications/progress" && n["params"]["progressToken"] == "p1"
        )
    );
    // A server-initiated request reaches the client; its answer reaches the server.
    h.send_raw(br#"{"jsonrpc":"2.0","id":2,"method":"sample_me"}"#)
        .await;
    let mut got_request = false;
    for _ in 0..2 {
        let m = h.read().await;
        if m["method"] == "sampling/createMessage" {
            got_request = true;
        }
    }
    assert!(got_request);
    let answer = br#"{"jsonrpc":"2.0","id":"srv-1","result":{"role":"assistant","content":{"type":"text","text":"ok"},"model":"m"}}"#;
    h.send_raw(answer).await;
    h.rpc(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}))
        .await;
    let raw = std::fs::read_to_string(&h.logs[0]).unwrap();
    assert!(
        raw.contains(std::str::from_utf8(answer).unwrap()),
        "byte-for-byte"
    );
    // Unknown methods: the server's own error comes back.
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 4, "method": "custom/thing"}))
        .await;
    assert_eq!(r["error"]["code"], -32601);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_and_prompts_pass_their_policy_points() {
    let mut h = start(&[]).await;
    let r = h
        .rpc(
            json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read",
            "params": {"uri": "file:///private/keys"}}),
        )
        .await;
    assert_eq!(
        r["error"]["code"],
        warden_mcp::jsonrpc::POLICY_DENIED,
        "{r}"
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("off limits")
    );
    let r = h
        .rpc(
            json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read",
            "params": {"uri": "file:///public/readme"}}),
        )
        .await;
    assert_eq!(
        r["result"]["contents"][0]["text"],
        "contents of file:///public/readme"
    );
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 3, "method": "prompts/get", "params": {"name": "p"}}))
        .await;
    assert_eq!(r["result"]["messages"][0]["role"], "user");
    let reads: Vec<_> = h
        .upstream(0)
        .into_iter()
        .filter(|m| m["method"] == "resources/read")
        .collect();
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0]["params"]["uri"], "file:///public/readme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_callable_criterion_is_sound() {
    let yaml = r#"
apiVersion: warden.dev/v1
kind: Policy
name: hide
default: deny
rules:
  - id: echo-small
    tools: [echo]
    when: size(args.text) < 5
    effect: allow
  - id: secret-never
    tools: [secret]
    effect: deny
    reason: never
  - id: deploy-cond-deny
    tools: [deploy]
    when: has(args.force)
    effect: deny
  - id: deploy-allow
    tools: [deploy]
    effect: allow
  # The default applies at post_tool_call too: results need a rule.
  - id: results
    points: [post_tool_call]
    effect: allow
"#;
    let mut h = start_with(yaml, &[], None).await;
    initialized(&mut h).await;
    let tools = h.tools().await;
    // echo: a conditional allow ranks first, so it stays (calls are checked).
    // secret: denied unconditionally. write_file, crash: only the deny default.
    // deploy: a conditional deny then an allow.
    assert_eq!(tools, vec!["echo".to_owned(), "deploy".to_owned()]);
    let r = h.call(2, "echo", json!({"text": "too long"})).await;
    assert_eq!(r["result"]["isError"], true);
    let r = h.call(3, "echo", json!({"text": "ok"})).await;
    assert_eq!(r["result"].get("isError"), None, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_2026_07_28_requests_need_no_handshake() {
    // No initialize: every request carries its protocol version in _meta.
    let mut h = start_with(&base("5s"), &[], None).await;
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "stateless", "version": "1"}});
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}))
        .await;
    assert_eq!(r["result"]["supportedVersions"][0], "2026-07-28", "{r}");
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "s"}, "_meta": meta}}))
        .await;
    assert_eq!(text(&r), r#"{"text": "s"}"#, "{r}");
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "write_file", "arguments": {}, "_meta": meta}}))
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    let log = h.upstream(0);
    assert!(log.iter().all(|m| m["method"] != "initialize"));
    // The gateway's own listing spoke the client's protocol version.
    let own = log.iter().find(|m| m["method"] == "tools/list").unwrap();
    assert_eq!(own["params"]["_meta"], meta);
    assert!(h.tool_calls(0, "write_file").is_empty());
}
