//! Shared by the gateway tests: a client on an in-memory pipe in front of
//! `serve_stdio` or `serve_multi_stdio`, the scripted stdio server fixture
//! (tests/fixtures/scripted_server.py, logging what it receives), the policy
//! every suite starts from and an audit sink the tests read back.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use warden_core::Verdict;
use warden_kernel::{AuditEvent, AuditSink, Kernel};
use warden_mcp::{ServerCommand, UpstreamSpec, serve_multi_stdio};
use warden_policy::{PolicyHandle, PolicySet};

/// Every audit event, in order.
#[derive(Default)]
pub struct Capture(pub Mutex<Vec<AuditEvent>>);

impl AuditSink for Capture {
    fn append(&self, event: AuditEvent) -> Result<(), String> {
        self.0.lock().unwrap().push(event);
        Ok(())
    }
    fn flush(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A policy named `name` (default allow) whose first rule denies
/// `write_file`, which every suite checks never reaches a server, followed
/// by `rules` (YAML list items indented two spaces).
pub fn policy(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: warden.dev/v1\nkind: Policy\nname: {name}\ndefault: allow\nrules:\n  - id: no-writes\n    tools: [write_file]\n    effect: deny\n    reason: writes are not allowed here\n{rules}"
    )
}

/// Rules for the suites with an upstream named `web`: its `echo` may not
/// echo `blocked` (another server's `echo` may), scoped by `context.mcp.server`.
pub const WEB_NO_BLOCKED_ECHO: &str = r#"
  - id: web-no-blocked-echo
    tools: [echo]
    when: context.mcp.server == "web" && args.text == "blocked"
    effect: deny
    reason: the web server may not echo that
"#;

/// A kernel deciding by `policy` and auditing into `events`.
pub fn kernel(policy: &str, events: &Arc<Capture>) -> Arc<Kernel> {
    Arc::new(
        Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(policy).unwrap()))
            .audit(Arc::clone(events) as Arc<dyn AuditSink>)
            .build()
            .unwrap(),
    )
}

pub fn fixture() -> String {
    format!(
        "{}/tests/fixtures/scripted_server.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The scripted stdio server `name` (with `opts`), logging to `dir/name.log`.
pub fn scripted(dir: &Path, name: &str, opts: &[&str]) -> (ServerCommand, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let mut args = vec![fixture().into(), log.clone().into_os_string()];
    args.push(format!("--srv={name}").into());
    args.extend(opts.iter().map(Into::into));
    (ServerCommand::new("python3", args), log)
}

pub struct Harness {
    pub w: WriteHalf<DuplexStream>,
    pub r: BufReader<ReadHalf<DuplexStream>>,
    /// Message logs of the scripted upstreams, by upstream index.
    pub logs: Vec<PathBuf>,
    pub kernel: Arc<Kernel>,
    pub events: Arc<Capture>,
    /// Messages read while waiting for a response.
    pub notes: Vec<Value>,
    pub _dir: tempfile::TempDir,
}

impl Harness {
    /// Runs `serve_multi_stdio` for `specs` with a client on an in-memory pipe.
    pub fn connect(
        specs: Vec<UpstreamSpec>,
        logs: Vec<PathBuf>,
        events: Arc<Capture>,
        dir: tempfile::TempDir,
    ) -> Harness {
        let kernel = Arc::clone(specs[0].gateway.kernel());
        Harness::over(
            |r, w| serve_multi_stdio(specs, r, w),
            kernel,
            logs,
            events,
            dir,
        )
    }

    /// Runs the gateway `serve` starts on the far end of an in-memory pipe.
    pub fn over<F, Fut>(
        serve: F,
        kernel: Arc<Kernel>,
        logs: Vec<PathBuf>,
        events: Arc<Capture>,
        dir: tempfile::TempDir,
    ) -> Harness
    where
        F: FnOnce(ReadHalf<DuplexStream>, WriteHalf<DuplexStream>) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send,
    {
        let (client, gateway_side) = tokio::io::duplex(1 << 20);
        let (gr, gw_w) = tokio::io::split(gateway_side);
        tokio::spawn(serve(gr, gw_w));
        let (r, w) = tokio::io::split(client);
        Harness {
            w,
            r: BufReader::new(r),
            logs,
            kernel,
            events,
            notes: Vec::new(),
            _dir: dir,
        }
    }

    pub async fn send(&mut self, msg: Value) {
        self.send_raw(msg.to_string().as_bytes()).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
        self.w.write_all(b"\n").await.unwrap();
        self.w.flush().await.unwrap();
    }

    pub async fn read(&mut self) -> Value {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut line))
            .await
            .expect("no message from the gateway within 20 s")
            .unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Sends a request and returns its response (other messages go to `notes`).
    pub async fn rpc(&mut self, msg: Value) -> Value {
        let id = msg["id"].clone();
        self.send(msg).await;
        self.until_response(&id).await
    }

    pub async fn until_response(&mut self, id: &Value) -> Value {
        loop {
            let m = self.read().await;
            if m.get("id") == Some(id) && m.get("method").is_none() {
                return m;
            }
            self.notes.push(m);
        }
    }

    pub async fn initialize(&mut self) -> Value {
        let r = self
            .rpc(
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {"sampling": {}},
                "clientInfo": {"name": "test", "version": "1"}}}),
            )
            .await;
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        r
    }

    pub async fn list(&mut self, method: &str, key: &str, field: &str) -> Vec<String> {
        let r = self
            .rpc(json!({"jsonrpc": "2.0", "id": "list", "method": method, "params": {}}))
            .await;
        r["result"][key]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .map(|t| t[field].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn tools(&mut self) -> Vec<String> {
        self.list("tools/list", "tools", "name").await
    }

    /// Lists the tools, checks every one of `shown` is there and no
    /// `write_file` (denied by [`policy`]) under any prefix; returns the list.
    pub async fn shows(&mut self, shown: &[&str]) -> Vec<String> {
        let tools = self.tools().await;
        for t in shown {
            assert!(tools.iter().any(|n| n == t), "{t} missing: {tools:?}");
        }
        assert!(
            !tools.iter().any(|t| t.ends_with("write_file")),
            "{tools:?}"
        );
        tools
    }

    pub async fn call(&mut self, id: impl Into<Value>, tool: &str, args: Value) -> Value {
        let id: Value = id.into();
        self.rpc(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": args}}))
            .await
    }

    /// Messages scripted upstream `i` received.
    pub fn upstream(&self, i: usize) -> Vec<Value> {
        std::fs::read_to_string(&self.logs[i])
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn calls(&self, i: usize, method: &str) -> Vec<Value> {
        self.upstream(i)
            .into_iter()
            .filter(|m| m["method"] == method)
            .collect()
    }

    /// The `tools/call`s of `tool` scripted upstream `i` received.
    pub fn tool_calls(&self, i: usize, tool: &str) -> Vec<Value> {
        self.calls(i, "tools/call")
            .into_iter()
            .filter(|m| m["params"]["name"] == tool)
            .collect()
    }

    /// Deny decisions recorded for `tool` whose first reason is `reason`.
    pub fn refusals(&self, tool: &str, reason: &str) -> usize {
        self.events
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                matches!(e, AuditEvent::Decision { tool: Some(t), verdict: Verdict::Deny, reasons, .. }
                    if t == tool && reasons.first().is_some_and(|r| r == reason))
            })
            .count()
    }
}

/// The text of a `CallToolResult`'s first content item.
pub fn text(r: &Value) -> String {
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// An MCP request over HTTP to `url`: a JSON body (empty for `None`), both
/// answer types accepted, `Mcp-Session-Id` when `session` is given, plus
/// `headers`; answered (headers) within 20 s.
pub async fn mcp_request(
    http: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    method: Method,
    session: Option<&str>,
    body: &str,
    headers: &[(&str, &str)],
) -> hyper::Response<Incoming> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    tokio::time::timeout(
        Duration::from_secs(20),
        http.request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()),
    )
    .await
    .expect("no answer within 20 s")
    .unwrap()
}

/// One exchange with the gateway on a fresh client: status, headers, body.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, String) {
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = mcp_request(&client, url, method, None, body, headers).await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// A `tools/call` request for `tool` with `{"x": 1}`.
pub fn call(id: i64, tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": {"x": 1}}})
    .to_string()
}
