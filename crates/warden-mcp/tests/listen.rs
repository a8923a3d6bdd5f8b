//! The multi-upstream gateway served over Streamable HTTP
//! (`serve_multi_http`), driven by a real HTTP client (hyper) in front of a
//! scripted stdio server (each process records its pid) and the Python
//! Streamable HTTP fixture (tests/fixtures/http_server.py, which logs every
//! message with its upstream session and every DELETE).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Capture, WEB_NO_BLOCKED_ECHO, kernel, mcp_request, policy};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::io::BufRead as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use warden_mcp::{
    ClientAuth, Gateway, HEADER_MISMATCH, HttpTarget, ListenLimits, PinStore, SERVER_BUSY,
    ServerCommand, UpstreamSpec, UpstreamTransport, serve_multi_http,
};

/// A child process killed when the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Gw {
    url: String,
    http: Client<HttpConnector, Full<Bytes>>,
    dir: tempfile::TempDir,
    events: Arc<Capture>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<Result<(), warden_mcp::McpError>>,
    _web: Killed,
}

/// A response: status, session id header, content type, the JSON-RPC
/// messages it carried (one for JSON, every event for SSE).
struct Answer {
    status: StatusCode,
    session: Option<String>,
    sse: bool,
    msgs: Vec<Value>,
}

impl Answer {
    fn last(&self) -> &Value {
        self.msgs.last().expect("no message in the answer")
    }
}

fn text(r: &Value) -> String {
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The gateway on a free port in front of `a` (scripted stdio, pids in
/// DIR/pids, messages in DIR/a.log) and `web` (the Python HTTP fixture,
/// prefixed `w_`, log in DIR/web.log).
async fn gateway(limits: ListenLimits) -> Gw {
    let dir = tempfile::tempdir().unwrap();
    let mut web = std::process::Command::new("python3")
        .arg(format!(
            "{}/tests/fixtures/http_server.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(dir.path().join("web.log"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(web.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let web = Killed(web);
    let port: u16 = port.trim().parse().unwrap();
    let events = Arc::new(Capture::default());
    let kernel = kernel(&policy("listen-test", WEB_NO_BLOCKED_ECHO), &events);
    let pins = Arc::new(PinStore::in_memory());
    let gw = |name: &str| {
        Arc::new(
            Gateway::new(Arc::clone(&kernel), "agent-1", name).with_shared_pins(Arc::clone(&pins)),
        )
    };
    let stdio = ServerCommand::new(
        "sh",
        vec![
            "-c".into(),
            "echo $$ >> \"$0\"; exec python3 \"$@\"".into(),
            dir.path().join("pids").into_os_string(),
            common::fixture().into(),
            dir.path().join("a.log").into_os_string(),
            "--srv=a".into(),
            "--notify".into(),
        ],
    );
    let specs = vec![
        UpstreamSpec {
            gateway: gw("a"),
            transport: stdio.into(),
            prefix: String::new(),
        },
        UpstreamSpec {
            gateway: gw("web"),
            transport: UpstreamTransport::Http(
                HttpTarget::new(&format!("http://127.0.0.1:{port}/mcp")).unwrap(),
            ),
            prefix: "w_".to_owned(),
        },
    ];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(serve_multi_http(
        specs,
        listener,
        limits,
        ClientAuth::loopback_only(),
        async move {
            let _ = stopped.await;
        },
    ));
    Gw {
        url,
        http: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        dir,
        events,
        stop: Some(stop),
        served,
        _web: web,
    }
}

fn messages(body: &str, sse: bool) -> Vec<Value> {
    if !sse {
        return serde_json::from_str(body)
            .map(|v| vec![v])
            .unwrap_or_default();
    }
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            serde_json::from_str(&data.join("\n")).ok()
        })
        .collect()
}

impl Gw {
    async fn send(
        &self,
        method: Method,
        session: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let resp = mcp_request(&self.http, &self.url, method, session, &body, headers).await;
        let (parts, body) = resp.into_parts();
        let sse = parts
            .headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let bytes = tokio::time::timeout(Duration::from_secs(20), body.collect())
            .await
            .expect("body not finished within 20 s")
            .unwrap()
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Answer {
            status: parts.status,
            session: parts
                .headers
                .get("mcp-session-id")
                .map(|v| v.to_str().unwrap().to_owned()),
            sse,
            msgs: messages(&text, sse),
        }
    }

    async fn post(&self, session: Option<&str>, msg: Value) -> Answer {
        self.send(Method::POST, session, Some(&msg), &[]).await
    }

    /// A new session (initialized); its id.
    async fn session(&self) -> String {
        let a = self
            .post(
                None,
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "listen-test", "version": "1"}}}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.msgs);
        assert_eq!(
            a.last()["result"]["serverInfo"]["name"],
            "warden-mcp-gateway"
        );
        let sid = a
            .session
            .expect("no Mcp-Session-Id on the initialize answer");
        let note = self
            .post(
                Some(&sid),
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .await;
        assert_eq!(note.status, StatusCode::ACCEPTED);
        sid
    }

    async fn call(&self, sid: &str, id: i64, tool: &str, text: &str) -> Answer {
        self.post(
            Some(sid),
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": {"text": text}}}),
        )
        .await
    }

    async fn tools(&self, sid: &str) -> Vec<String> {
        let a = self
            .post(
                Some(sid),
                json!({"jsonrpc": "2.0", "id": "l", "method": "tools/list"}),
            )
            .await;
        a.last()["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{:?}", a.msgs))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    fn log(&self, name: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join(name))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Pids of the stdio server processes started so far, in order.
    fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.path().join("pids"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    }

    /// Upstream sessions the HTTP fixture saw a DELETE for.
    fn deleted(&self) -> Vec<String> {
        self.log("web.log")
            .iter()
            .filter_map(|e| e["delete"].as_str().map(str::to_owned))
            .collect()
    }

    /// The upstream session of the `tools/call`s with `text` the HTTP fixture received.
    fn web_session_of(&self, text: &str) -> Vec<String> {
        self.log("web.log")
            .iter()
            .filter(|e| {
                e["msg"]["method"] == "tools/call"
                    && e["msg"]["params"]["arguments"]["text"] == text
            })
            .map(|e| e["session"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits up to 10 s for `cond`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_route_deny_and_stay_isolated() {
    let g = gateway(ListenLimits::default()).await;
    let a = g.session().await;
    let b = g.session().await;
    assert_ne!(a, b);
    let tools = g.tools(&a).await;
    for t in ["echo", "secret", "w_echo"] {
        assert!(tools.iter().any(|n| n == t), "{t} missing: {tools:?}");
    }
    assert!(
        !tools.iter().any(|t| t.ends_with("write_file")),
        "{tools:?}"
    );

    // Routed by name, over each session's own upstream connections.
    let r = g.call(&a, 1, "w_echo", "from a").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.sse, "a plain answer is JSON");
    assert_eq!(r.last()["id"], 1);
    assert_eq!(text(r.last()), "http:from a", "{:?}", r.msgs);
    let r = g.call(&b, 1, "w_echo", "from b").await;
    assert_eq!(text(r.last()), "http:from b", "{:?}", r.msgs);
    let (sa, sb) = (g.web_session_of("from a"), g.web_session_of("from b"));
    assert_eq!(sa.len(), 1, "{sa:?}");
    assert_eq!(sb.len(), 1, "{sb:?}");
    assert_ne!(sa, sb, "two gateway sessions share an upstream session");
    let r = g.call(&a, 2, "echo", "stdio a").await;
    assert_eq!(text(r.last()), r#"{"text": "stdio a"}"#, "{:?}", r.msgs);
    assert_eq!(g.pids().len(), 2, "one stdio server per session");

    // Denied calls never reach an upstream, and the refusals are audited.
    let r = g.call(&a, 3, "w_echo", "blocked").await;
    assert_eq!(r.last()["result"]["isError"], true, "{:?}", r.msgs);
    assert!(text(r.last()).contains("the web server may not echo that"));
    let r = g.call(&b, 3, "write_file", "x").await;
    assert_eq!(r.last()["result"]["isError"], true, "{:?}", r.msgs);
    let r = g.call(&b, 4, "nope", "x").await;
    assert!(text(r.last()).contains("mcp:unknown_tool"), "{:?}", r.msgs);
    assert!(g.web_session_of("blocked").is_empty());
    assert!(
        !g.log("a.log")
            .iter()
            .any(|m| m["params"]["name"] == "write_file")
    );
    assert!(!g.events.0.lock().unwrap().is_empty());

    // Notifications before the answer with no GET stream open: the answer is an SSE stream.
    let r = g.call(&a, 5, "echo", "notify").await;
    assert!(r.sse, "{:?}", r.msgs);
    assert_eq!(r.msgs[0]["method"], "notifications/message", "{:?}", r.msgs);
    assert_eq!(text(r.last()), "notified");
    assert_eq!(r.last()["id"], 5);

    // A request for another session's id is unknown; so is a made-up session.
    let r = g
        .post(
            Some("nope"),
            json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Notifications and responses need a session.
    let r = g
        .post(
            None,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_stream_takes_what_is_not_an_answer() {
    let g = gateway(ListenLimits::default()).await;
    let a = g.session().await;
    let req = hyper::Request::get(&g.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &a)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = g.http.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.into_body();
    let r = g.call(&a, 1, "echo", "notify").await;
    assert!(
        !r.sse,
        "the notifications went to the GET stream: {:?}",
        r.msgs
    );
    assert_eq!(text(r.last()), "notified");
    let mut seen = String::new();
    while !seen.contains("notifications/message") {
        let frame = tokio::time::timeout(Duration::from_secs(10), stream.frame())
            .await
            .expect("nothing on the GET stream within 10 s")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(seen.contains("hello from a"), "{seen}");
    // Answers never go to the GET stream.
    assert!(!seen.contains("\"result\""), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_stops_only_that_sessions_upstreams() {
    let g = gateway(ListenLimits::default()).await;
    let a = g.session().await;
    let b = g.session().await;
    g.call(&a, 1, "w_echo", "a").await;
    g.call(&b, 1, "w_echo", "b").await;
    let pids = g.pids();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|p| alive(*p)));
    let web_a = g.web_session_of("a");

    let r = g.send(Method::DELETE, Some(&a), None, &[]).await;
    assert!(r.status.is_success(), "{}", r.status);
    // Its stdio server is gone and its HTTP upstream session deleted; b's are not.
    eventually("a's stdio server exits", || !alive(pids[0])).await;
    assert!(alive(pids[1]));
    assert_eq!(g.deleted(), web_a);
    let r = g.call(&a, 2, "echo", "after").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = g.call(&b, 2, "w_echo", "still b").await;
    assert_eq!(text(r.last()), "http:still b", "{:?}", r.msgs);
    let r = g.send(Method::DELETE, Some(&a), None, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cap_refuses_with_503_until_a_session_ends() {
    let g = gateway(ListenLimits {
        max_sessions: 1,
        ..ListenLimits::default()
    })
    .await;
    let a = g.session().await;
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "second", "version": "1"}}});
    let r = g.post(None, init.clone()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.last()["error"]["code"], SERVER_BUSY, "{:?}", r.msgs);
    assert!(r.session.is_none());
    // Stateless requests take a slot too.
    let r = g
        .post(
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        g.pids().len(),
        1,
        "no upstream was started for a refused session"
    );
    g.send(Method::DELETE, Some(&a), None, &[]).await;
    let r = g.post(None, init).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.msgs);
    assert!(r.session.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_requests_get_a_hub_of_their_own_and_headers_must_match() {
    let g = gateway(ListenLimits::default()).await;
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
    let call = |name: &str, text: &str| {
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": name, "arguments": {"text": text}, "_meta": meta}})
    };
    let r = g
        .send(
            Method::POST,
            None,
            Some(&call("echo", "s")),
            &[("mcp-method", "tools/call"), ("mcp-name", "w_echo")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.last()["error"]["code"], HEADER_MISMATCH, "{:?}", r.msgs);
    assert!(g.pids().is_empty(), "a mismatched request started nothing");

    let r = g
        .send(
            Method::POST,
            None,
            Some(&call("echo", "stateless")),
            &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.session.is_none());
    assert_eq!(text(r.last()), r#"{"text": "stateless"}"#, "{:?}", r.msgs);
    let r = g.post(None, call("write_file", "x")).await;
    assert_eq!(r.last()["result"]["isError"], true, "{:?}", r.msgs);
    // Each request's upstreams are stopped once it is answered.
    let pids = g.pids();
    assert_eq!(pids.len(), 2, "{pids:?}");
    eventually("the stateless hubs' servers exit", || {
        pids.iter().all(|p| !alive(*p))
    })
    .await;
    assert!(
        !g.log("a.log")
            .iter()
            .any(|m| m["params"]["name"] == "write_file")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_and_the_gateway_exit_stop_the_upstreams() {
    let mut g = gateway(ListenLimits {
        idle_timeout: Duration::from_secs(1),
        ..ListenLimits::default()
    })
    .await;
    let a = g.session().await;
    g.call(&a, 1, "w_echo", "idle").await;
    let first = g.pids();
    eventually("the idle session's server exits", || !alive(first[0])).await;
    let r = g.call(&a, 2, "echo", "late").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(g.deleted().len(), 1);

    let b = g.session().await;
    g.call(&b, 1, "w_echo", "exit").await;
    let pids = g.pids();
    g.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), &mut g.served)
        .await
        .expect("the gateway did not stop")
        .unwrap()
        .unwrap();
    assert!(!alive(pids[1]));
    assert_eq!(g.deleted().len(), 2, "{:?}", g.deleted());
}
