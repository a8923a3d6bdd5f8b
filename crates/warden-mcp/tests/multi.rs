//! The multi-upstream gateway end to end: a client on an in-memory pipe,
//! `serve_multi_stdio`, and several scripted stdio MCP servers
//! (tests/fixtures/scripted_server.py), each logging what it receives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Capture, Harness, fixture, kernel, policy, scripted, text};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use warden_mcp::{Gateway, PinStore, ServerCommand, UpstreamSpec};

/// Rules after the shared `no-writes` ([`policy`]).
const RULES: &str = r#"
  - id: b-no-blocked-echo
    tools: [echo]
    when: context.mcp.server == "b" && args.text == "blocked"
    effect: deny
    reason: server b may not echo that
"#;

/// One upstream: name, gateway prefix, scripted-server options.
type Up<'a> = (&'a str, &'a str, &'a [&'a str]);

async fn start(ups: &[Up<'_>]) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let events = Arc::new(Capture::default());
    let kernel = kernel(&policy("multi-test", RULES), &events);
    let pins = Arc::new(PinStore::in_memory());
    let mut logs = Vec::new();
    let mut specs = Vec::new();
    for (name, prefix, opts) in ups {
        let (cmd, log) = scripted(dir.path(), name, opts);
        specs.push(UpstreamSpec {
            gateway: Arc::new(
                Gateway::new(Arc::clone(&kernel), "agent-1", *name)
                    .with_shared_pins(Arc::clone(&pins)),
            ),
            transport: cmd.into(),
            prefix: (*prefix).to_owned(),
        });
        logs.push(log);
    }
    Harness::connect(specs, logs, events, dir)
}

async fn started(ups: &[Up<'_>]) -> Harness {
    let mut h = start(ups).await;
    let r = h.initialize().await;
    assert_eq!(
        r["result"]["serverInfo"]["name"], "warden-mcp-gateway",
        "{r}"
    );
    h
}

#[tokio::test(flavor = "current_thread")]
async fn calls_are_routed_by_name_with_ids_mapped_and_policy_scoped_per_server() {
    let mut h = started(&[("a", "", &[]), ("b", "b_", &[])]).await;
    // Policy sees the server's own name: write_file is hidden on both.
    h.shows(&["echo", "b_echo", "secret", "b_secret"]).await;

    let r = h.call(json!("c-1"), "echo", json!({"text": "hi"})).await;
    assert_eq!(r["id"], "c-1");
    assert_eq!(text(&r), r#"{"text": "hi"}"#, "{r}");
    let r = h.call(json!(7), "b_echo", json!({"text": "hi b"})).await;
    assert_eq!(r["id"], 7);
    assert_eq!(text(&r), r#"{"text": "hi b"}"#, "{r}");
    let (a, b) = (h.calls(0, "tools/call"), h.calls(1, "tools/call"));
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(b.len(), 1, "{b:?}");
    // The server got its own tool name and a gateway id, never the client's.
    assert_eq!(b[0]["params"]["name"], "echo");
    for m in [&a[0], &b[0]] {
        assert!(m["id"].as_str().unwrap().starts_with("warden-gw-"), "{m}");
    }

    // `context.mcp.server` scopes the rule to server b.
    let r = h.call(json!(8), "b_echo", json!({"text": "blocked"})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("server b may not echo that"), "{r}");
    let r = h.call(json!(9), "echo", json!({"text": "blocked"})).await;
    assert_eq!(r["result"].get("isError"), None, "{r}");
    assert_eq!(h.calls(1, "tools/call").len(), 1);
    assert_eq!(h.calls(0, "tools/call").len(), 2);
    // Pings are the gateway's own; the servers never see the client's.
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 10, "method": "ping"}))
        .await;
    assert_eq!(r["result"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_names_across_upstreams_are_hidden_refused_and_audited() {
    let mut h = started(&[("a", "", &[]), ("c", "", &[])]).await;
    let tools = h.tools().await;
    assert!(!tools.contains(&"echo".to_owned()), "{tools:?}");
    let r = h.call(json!(1), "echo", json!({"text": "x"})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    let t = text(&r);
    assert!(
        t.contains("mcp:duplicate_tool") && t.contains("a, c"),
        "{t}"
    );
    assert!(h.calls(0, "tools/call").is_empty());
    assert!(h.calls(1, "tools/call").is_empty());
    assert_eq!(h.refusals("echo", "mcp:duplicate_tool"), 1);

    // Unknown and reserved names: refused and audited too.
    let r = h.call(json!(2), "nope", json!({})).await;
    assert!(text(&r).contains("mcp:unknown_tool"), "{r}");
    assert_eq!(h.refusals("nope", "mcp:unknown_tool"), 1);
    let r = h.call(json!(3), "prompts/get", json!({})).await;
    assert!(text(&r).contains("reserved"), "{r}");
    assert_eq!(h.refusals("prompts/get", "mcp:unknown_tool"), 1);

    // Prompts: the shared name is hidden and refused; unique ones route.
    let prompts = h.list("prompts/list", "prompts", "name").await;
    assert_eq!(prompts, vec!["a_prompt", "c_prompt"]);
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 4, "method": "prompts/get", "params": {"name": "greet"}}))
        .await;
    assert_eq!(r["error"]["code"], -32050, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mcp:duplicate_target")
    );
    assert_eq!(h.refusals("prompts/get", "mcp:duplicate_target"), 1);
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 5, "method": "prompts/get", "params": {"name": "c_prompt"}}))
        .await;
    assert_eq!(r["result"]["messages"][0]["content"]["text"], "hi", "{r}");
    assert_eq!(h.calls(1, "prompts/get").len(), 1);
    assert!(h.calls(0, "prompts/get").is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_crashed_upstream_answers_unavailable_while_the_others_work() {
    let mut h = started(&[("a", "", &[]), ("b", "b_", &[])]).await;
    h.tools().await;
    let r = h.call(json!(1), "b_crash", json!({})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("mcp:upstream_unavailable"), "{r}");
    // During the back-off: refused without reaching anything, audited.
    let r = h.call(json!(2), "b_echo", json!({"text": "x"})).await;
    assert!(text(&r).contains("mcp:upstream_unavailable"), "{r}");
    assert_eq!(h.refusals("echo", "mcp:upstream_unavailable"), 1);
    // The other upstream is unaffected.
    let r = h
        .call(json!(3), "echo", json!({"text": "still here"}))
        .await;
    assert_eq!(text(&r), r#"{"text": "still here"}"#, "{r}");
    // After the back-off the server restarts with the client's handshake replayed.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = h.call(json!(4), "b_echo", json!({"text": "back"})).await;
    assert_eq!(text(&r), r#"{"text": "back"}"#, "{r}");
    let inits = h.calls(1, "initialize");
    assert_eq!(inits.len(), 2, "{inits:?}");
    assert_eq!(inits[1]["params"]["clientInfo"]["name"], "test");
    assert_eq!(h.calls(1, "notifications/initialized").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_and_server_requests_reach_the_client_and_answers_the_right_server() {
    let mut h = started(&[("a", "", &["--notify"]), ("b", "b_", &["--notify"])]).await;
    h.tools().await;
    let r = h.call(json!(1), "echo", json!({"text": "notify"})).await;
    assert_eq!(text(&r), "notified");
    let r = h.call(json!(2), "b_echo", json!({"text": "notify"})).await;
    assert_eq!(text(&r), "notified");
    let logs: Vec<&Value> = h
        .notes
        .iter()
        .filter(|n| n["method"] == "notifications/message")
        .map(|n| &n["params"]["data"])
        .collect();
    assert_eq!(logs, [&json!("hello from a"), &json!("hello from b")]);
    assert_eq!(
        h.notes
            .iter()
            .filter(|n| n["method"] == "notifications/tools/list_changed")
            .count(),
        2
    );
    // After list_changed, a call re-lists first (pins checked again).
    let before = h.calls(0, "tools/list").len();
    h.call(json!(3), "echo", json!({"text": "again"})).await;
    assert_eq!(h.calls(0, "tools/list").len(), before + 1);

    // Both servers ask the client something with the same id (1); the
    // client sees two different ids and each answer reaches its server.
    h.send(json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "sample"}}}))
        .await;
    let ra = h.read().await;
    h.send(json!({"jsonrpc": "2.0", "id": 11, "method": "tools/call",
        "params": {"name": "b_echo", "arguments": {"text": "sample"}}}))
        .await;
    let rb = h.read().await;
    assert_eq!(ra["method"], "sampling/createMessage", "{ra}");
    assert_eq!(rb["method"], "sampling/createMessage", "{rb}");
    assert_ne!(ra["id"], rb["id"]);
    for (req, word) in [(&rb, "bee"), (&ra, "ay")] {
        h.send(json!({"jsonrpc": "2.0", "id": req["id"], "result": {
            "role": "assistant", "content": {"type": "text", "text": word}, "model": "m"}}))
            .await;
    }
    // The two results come in whatever order the servers answer.
    let (mut a, mut b) = (Value::Null, Value::Null);
    while a.is_null() || b.is_null() {
        let m = h.read().await;
        match &m["id"] {
            id if *id == json!(10) => a = m,
            id if *id == json!(11) => b = m,
            _ => h.notes.push(m),
        }
    }
    assert_eq!(text(&a), "sampled ay", "{a}");
    assert_eq!(text(&b), "sampled bee", "{b}");
    let answered = |i: usize| -> Vec<Value> {
        h.upstream(i)
            .into_iter()
            .filter(|m| m.get("method").is_none() && m["id"] == 1)
            .collect()
    };
    assert_eq!(answered(0).len(), 1);
    assert_eq!(answered(1).len(), 1);
    // An answer to an id nobody asked is dropped, not forwarded.
    h.send(json!({"jsonrpc": "2.0", "id": "warden-up-999", "result": {}}))
        .await;
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 12, "method": "ping"}))
        .await;
    assert_eq!(r["result"], json!({}));
}

#[tokio::test(flavor = "current_thread")]
async fn paginated_upstreams_are_listed_whole_even_before_any_listing() {
    let mut h = started(&[("a", "", &["--paginate"]), ("b", "b_", &["--paginate"])]).await;
    // A call before any tools/list: the gateway lists every page of both first.
    let r = h.call(json!(1), "b_deploy", json!({})).await;
    assert_eq!(r["result"].get("isError"), None, "{r}");
    assert_eq!(h.calls(1, "tools/list").len(), 5);
    let tools = h.tools().await;
    let mut expect: Vec<String> = ["echo", "secret", "deploy", "crash"]
        .iter()
        .flat_map(|t| [t.to_string(), format!("b_{t}")])
        .collect();
    expect.sort();
    let mut got = tools.clone();
    got.sort();
    assert_eq!(got, expect);
    // A client cursor is refused: the gateway answers on one page.
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"cursor": "1"}}))
        .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_route_by_listed_uri_or_template_and_unknown_uris_are_refused() {
    let mut h = started(&[("a", "", &[]), ("b", "b_", &[])]).await;
    let uris = h.list("resources/list", "resources", "uri").await;
    assert_eq!(uris, ["mem://a/one", "mem://b/one"]);
    let read = |id: i64, uri: &str| json!({"jsonrpc": "2.0", "id": id, "method": "resources/read", "params": {"uri": uri}});
    let r = h.rpc(read(1, "mem://b/one")).await;
    assert_eq!(
        r["result"]["contents"][0]["text"],
        "contents of mem://b/one"
    );
    assert_eq!(h.calls(1, "resources/read").len(), 1);
    assert!(h.calls(0, "resources/read").is_empty());
    // Not listed, but a template of a matches (templates are listed on demand).
    let r = h.rpc(read(2, "tmpl://a/42")).await;
    assert_eq!(
        r["result"]["contents"][0]["text"], "contents of tmpl://a/42",
        "{r}"
    );
    assert_eq!(h.calls(0, "resources/read").len(), 1);
    let r = h.rpc(read(3, "mem://nobody/x")).await;
    assert_eq!(r["error"]["code"], -32050, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mcp:unknown_resource")
    );
    assert_eq!(h.refusals("resources/read", "mcp:unknown_resource"), 1);
    // Subscriptions follow the same routing.
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 4, "method": "resources/subscribe", "params": {"uri": "mem://a/one"}}))
        .await;
    assert!(r.get("error").is_some() || r.get("result").is_some());
    assert_eq!(h.calls(0, "resources/subscribe").len(), 1);
    assert!(h.calls(1, "resources/subscribe").is_empty());
    // Prefixed prompts reach their server under its own name.
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 5, "method": "prompts/get", "params": {"name": "b_greet"}}))
        .await;
    assert_eq!(r["result"]["messages"][0]["content"]["text"], "hi", "{r}");
    assert_eq!(h.calls(1, "prompts/get")[0]["params"]["name"], "greet");
}

#[tokio::test(flavor = "current_thread")]
async fn initialize_merges_capabilities_and_refuses_mixed_versions() {
    let mut h = start(&[("a", "", &[]), ("b", "b_", &[])]).await;
    let r = h.initialize().await;
    assert_eq!(r["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(r["result"]["capabilities"]["tools"]["listChanged"], true);
    assert!(r["result"]["capabilities"].get("prompts").is_some());
    assert_eq!(h.calls(0, "initialize").len(), 1);
    assert_eq!(h.calls(1, "initialize").len(), 1);

    let mut h = start(&[("a", "", &[]), ("b", "", &["--version=2025-03-26"])]).await;
    let r = h.initialize().await;
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("`a`: 2025-06-18") && msg.contains("`b`: 2025-03-26"),
        "{r}"
    );
    // Unknown methods are refused by the gateway, not guessed at.
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 1, "method": "custom/thing"}))
        .await;
    assert_eq!(r["error"]["code"], -32601, "{r}");
}

#[tokio::test(flavor = "current_thread")]
async fn an_upstream_that_cannot_start_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let events = Arc::new(Capture::default());
    let kernel = kernel(&policy("multi-test", RULES), &events);
    let log = dir.path().join("a.log");
    let specs = vec![
        UpstreamSpec {
            gateway: Arc::new(Gateway::new(Arc::clone(&kernel), "x", "a")),
            transport: ServerCommand::new("python3", vec![fixture().into(), log.into_os_string()])
                .into(),
            prefix: String::new(),
        },
        UpstreamSpec {
            gateway: Arc::new(Gateway::new(Arc::clone(&kernel), "x", "gone")),
            transport: ServerCommand::new("/nonexistent/mcp-server", vec![]).into(),
            prefix: "g_".to_owned(),
        },
    ];
    let logs = vec![dir.path().join("a.log")];
    let mut h = Harness::connect(specs, logs, events, dir);
    let r = h.initialize().await;
    assert_eq!(
        r["result"]["serverInfo"]["name"], "warden-mcp-gateway",
        "{r}"
    );
    let r = h.call(json!(1), "echo", json!({"text": "ok"})).await;
    assert_eq!(text(&r), r#"{"text": "ok"}"#, "{r}");
}

#[tokio::test(flavor = "current_thread")]
async fn malformed_client_input_gets_errors_and_reaches_no_server() {
    let mut h = started(&[("a", "", &[]), ("b", "b_", &[])]).await;
    h.send_raw(b"{not json").await;
    assert_eq!(h.read().await["error"]["code"], -32700);
    h.send_raw(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)
        .await;
    assert_eq!(h.read().await["error"]["code"], -32600);
    h.send_raw(br#"{"jsonrpc":"1.0","id":2,"method":"ping"}"#)
        .await;
    assert_eq!(h.read().await["error"]["code"], -32600);
    // A tools/call without an id would run undecided on a lenient server: dropped.
    h.send_raw(br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#)
        .await;
    let bad = [
        json!({"name": "echo", "arguments": "x"}),
        json!({"name": "echo", "extra": 1}),
        json!({"name": ""}),
    ];
    for (i, params) in bad.into_iter().enumerate() {
        let r = h
            .rpc(json!({"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call", "params": params}))
            .await;
        assert!(
            r["error"]["code"] == -32602 || r["result"]["isError"] == true,
            "{r}"
        );
    }
    let r = h
        .rpc(json!({"jsonrpc": "2.0", "id": 20, "method": "ping"}))
        .await;
    assert_eq!(r["result"], json!({}));
    assert!(h.calls(0, "tools/call").is_empty());
    assert!(h.calls(1, "tools/call").is_empty());
}
