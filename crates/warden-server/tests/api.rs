//! The sidecar over real HTTP on loopback: decisions, errors, admin auth,
//! kill switch, approvals, outcomes, audit proofs, metrics, hot reload,
//! slow clients, shutdown and the OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use warden_server::{Limits, Overrides, RunningServer, ServerConfig};

const TOKEN: &str = "test-admin-token-0123456789";

const POLICY: &str = r#"
apiVersion: warden.dev/v1
kind: Policy
name: sidecar-test
default: deny
rules:
  - id: drop
    tools: [sql.query]
    when: args.query.contains("DROP")
    effect: deny
    reason: no DROP
  - id: sql
    tools: [sql.query]
    effect: allow
  - id: pay
    tools: [payments.send]
    effect: escalate
    approvers: [alice]
    timeout: 30s
    reason: payments need alice
  - id: creds
    tools: [http.get]
    effect: transform
    transform:
      redact: [args.token]
    reason: tokens are injected by the gateway
  - id: anything-else
    tools: ["tool.*"]
    effect: allow
"#;

struct Harness {
    server: Option<RunningServer>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Harness {
    fn policy_dir(&self) -> PathBuf {
        self.dir.path().join("policy")
    }
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    fn kernel(&self) -> &warden_kernel::Kernel {
        self.server.as_ref().unwrap().kernel()
    }
    async fn stop(mut self) -> tempfile::TempDir {
        self.server.take().unwrap().shutdown().await.unwrap();
        self.dir
    }
}

async fn start_with(limits: Limits) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("policy");
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::write(pdir.join("p.yaml"), POLICY).unwrap();
    let mut config = common::config(&pdir, &dir.path().join("data"));
    config.limits = limits;
    let server = RunningServer::start(config).await.unwrap();
    let addr = server.local_addr();
    Harness {
        server: Some(server),
        addr,
        dir,
    }
}

async fn start() -> Harness {
    start_with(Limits::default()).await
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "x");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        content_type,
        body,
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
const AUTH: (&str, &str) = ("authorization", "Bearer test-admin-token-0123456789");

async fn post(addr: SocketAddr, path: &str, body: Value, admin: bool) -> Reply {
    let headers: &[(&str, &str)] = if admin { &[JSON, AUTH] } else { &[JSON] };
    send(addr, "POST", path, headers, body.to_string().into_bytes()).await
}

async fn get(addr: SocketAddr, path: &str, admin: bool) -> Reply {
    let headers: &[(&str, &str)] = if admin { &[AUTH] } else { &[] };
    send(addr, "GET", path, headers, Vec::new()).await
}

async fn decide(addr: SocketAddr, action: Value) -> Value {
    let r = post(addr, "/v1/decide", action, false).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decides_like_the_kernel_in_the_wire_form() {
    let h = start().await;
    let allow = decide(
        h.addr,
        json!({"agent": "a", "tool": "sql.query", "args": {"query": "SELECT 1"}}),
    )
    .await;
    assert_eq!(allow["verdict"], "allow");
    assert_eq!(allow["rule_ids"], json!(["sql"]));
    let deny = decide(
        h.addr,
        json!({"agent": "a", "tool": "sql.query", "args": {"query": "DROP TABLE t"}}),
    )
    .await;
    assert_eq!(deny["verdict"], "deny");
    assert_eq!(deny["reasons"], json!(["no DROP"]));
    // The same Decision type round-trips: the API speaks the wire form.
    let d: warden_core::Decision = serde_json::from_value(deny.clone()).unwrap();
    assert_eq!(d.policy_hash, h.kernel().policy().hash());
    assert_ne!(allow["decision_id"], deny["decision_id"]);
    let transform = decide(
        h.addr,
        json!({"agent": "a", "tool": "http.get", "args": {"url": "u", "token": "secret"}}),
    )
    .await;
    assert_eq!(transform["verdict"], "transform");
    assert_eq!(
        transform["obligations"],
        json!([{"type": "redact", "path": "args.token"}])
    );
    // No rule: the policy default (deny).
    let none = decide(h.addr, json!({"agent": "a", "tool": "rm"})).await;
    assert_eq!(none["verdict"], "deny");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_named_errors_and_never_a_decision() {
    let h = start_with(Limits {
        max_body_bytes: 4096,
        ..Limits::default()
    })
    .await;
    type Case<'a> = (Vec<u8>, &'a [(&'a str, &'a str)], StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            b"{not json".to_vec(),
            &[JSON],
            StatusCode::BAD_REQUEST,
            "invalid_action",
        ),
        (
            br#"{"agent":"a","tool":"t","argz":{}}"#.to_vec(),
            &[JSON],
            StatusCode::BAD_REQUEST,
            "invalid_action",
        ),
        (
            br#"{"agent":"","tool":"t"}"#.to_vec(),
            &[JSON],
            StatusCode::BAD_REQUEST,
            "invalid_action",
        ),
        (
            br#"{"agent":"a"}"#.to_vec(),
            &[JSON],
            StatusCode::BAD_REQUEST,
            "invalid_action",
        ),
        (
            br#"[]"#.to_vec(),
            &[JSON],
            StatusCode::BAD_REQUEST,
            "invalid_action",
        ),
        (
            Vec::new(),
            &[JSON],
            StatusCode::BAD_REQUEST,
            "invalid_action",
        ),
        (
            br#"{"agent":"a","tool":"t"}"#.to_vec(),
            &[("content-type", "text/plain")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            br#"{"agent":"a","tool":"t"}"#.to_vec(),
            &[],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            format!(
                r#"{{"agent":"a","tool":"t","args":{{"x":"{}"}}}}"#,
                "x".repeat(10_000)
            )
            .into_bytes(),
            &[JSON],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (body, headers, status, code) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let r = send(h.addr, "POST", "/v1/decide", headers, body).await;
        assert_eq!(r.status, status, "{shown}: {}", r.text());
        assert_eq!(r.content_type, "application/json", "{shown}");
        let v = r.json();
        assert_eq!(v["error"], code, "{shown}");
        assert!(v.get("verdict").is_none(), "an error is never a decision");
    }
    // The unknown field is named.
    let r = send(
        h.addr,
        "POST",
        "/v1/decide",
        &[JSON],
        br#"{"agent":"a","tool":"t","argz":{}}"#.to_vec(),
    )
    .await;
    assert!(
        r.json()["message"].as_str().unwrap().contains("argz"),
        "{}",
        r.text()
    );
    // Unknown query parameters are refused too (a typo in wait_ms must not silently not wait).
    let r = send(
        h.addr,
        "POST",
        "/v1/decide?wiat_ms=5",
        &[JSON],
        br#"{"agent":"a","tool":"t"}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = get(h.addr, "/v1/nope", false).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "not_found");
    let r = get(h.addr, "/v1/decide", false).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    // Nothing was decided, so nothing but the policy load is in the log.
    let dir = h.stop().await;
    let decisions = warden_audit::records(&dir.path().join("data"), 0)
        .unwrap()
        .map(|r| r.unwrap().json().unwrap())
        .filter(|v| v["type"] == "decision")
        .count();
    assert_eq!(decisions, 0, "rejected requests leave no decision records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_the_token_and_kills_apply_to_the_next_decision() {
    let h = start().await;
    let act = json!({"agent": "bot", "tool": "sql.query", "args": {"query": "SELECT 1"}});
    for (path, body) in [
        ("/v1/kill", json!({"agent": "bot", "reason": "r"})),
        ("/v1/unkill", json!({"agent": "bot"})),
        ("/v1/reload", json!({})),
        (
            "/v1/approvals/x",
            json!({"approve": true, "approver": "alice"}),
        ),
    ] {
        let r = post(h.addr, path, body.clone(), false).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        let r = send(
            h.addr,
            "POST",
            path,
            &[JSON, ("authorization", "Bearer wrong-token-0123456789")],
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(
        get(h.addr, "/v1/approvals", false).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(h.addr, "/v1/kill", false).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Nothing got killed by the refused requests.
    assert_eq!(decide(h.addr, act.clone()).await["verdict"], "allow");

    for bad in [
        json!({"reason": "no target"}),
        json!({"agent": "bot", "session": "s", "reason": "two targets"}),
        json!({"agent": "bot"}),
        json!({"agent": "bot", "reason": "  "}),
        json!({"agent": "bot", "reason": "r", "extra": 1}),
    ] {
        let r = post(h.addr, "/v1/kill", bad.clone(), true).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = post(
        h.addr,
        "/v1/kill",
        json!({"agent": "bot", "reason": "runaway loop", "by": "oncall"}),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["agents"]["bot"]["reason"], "runaway loop");
    let d = decide(h.addr, act.clone()).await;
    assert_eq!(d["verdict"], "deny");
    assert!(
        d["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("killed:agent"),
        "{d}"
    );
    // Other agents are unaffected.
    let other = json!({"agent": "other", "tool": "sql.query", "args": {"query": "SELECT 1"}});
    assert_eq!(decide(h.addr, other).await["verdict"], "allow");
    assert_eq!(
        get(h.addr, "/v1/kill", true).await.json()["agents"]["bot"]["by"],
        "oncall"
    );
    let r = post(
        h.addr,
        "/v1/unkill",
        json!({"agent": "bot", "by": "oncall"}),
        true,
    )
    .await;
    assert_eq!(r.json(), json!({"lifted": true}));
    assert_eq!(decide(h.addr, act.clone()).await["verdict"], "allow");
    let r = post(h.addr, "/v1/unkill", json!({"agent": "bot"}), true).await;
    assert_eq!(r.json(), json!({"lifted": false}));
    // Kill everything.
    post(
        h.addr,
        "/v1/kill",
        json!({"all": true, "reason": "incident"}),
        true,
    )
    .await;
    assert_eq!(decide(h.addr, act.clone()).await["verdict"], "deny");
    post(h.addr, "/v1/unkill", json!({"all": true}), true).await;
    assert_eq!(decide(h.addr, act).await["verdict"], "allow");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalations_wait_for_an_approver_and_time_out_into_deny() {
    let h = start().await;
    let addr = h.addr;
    let pay = json!({"agent": "billing", "tool": "payments.send", "args": {"amount": 5}});
    // Without waiting, the caller gets the escalate verdict and an approval obligation.
    let d = decide(addr, pay.clone()).await;
    assert_eq!(d["verdict"], "escalate");
    assert_eq!(d["obligations"][0]["type"], "approval");

    // With wait_ms, the request waits for the approver.
    let waiting = tokio::spawn({
        let pay = pay.clone();
        async move { post(addr, "/v1/decide?wait_ms=20000", pay, false).await }
    });
    let id = loop {
        let list = get(addr, "/v1/approvals", true).await.json();
        let ids: Vec<String> = list["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .filter(|i| i != d["decision_id"].as_str().unwrap())
            .collect();
        if let Some(i) = ids.first() {
            break i.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Only a listed approver may answer; an empty approver is refused.
    let r = post(
        addr,
        &format!("/v1/approvals/{id}"),
        json!({"approve": true, "approver": "mallory"}),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let r = post(
        addr,
        &format!("/v1/approvals/{id}"),
        json!({"approve": true, "approver": " "}),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = post(
        addr,
        &format!("/v1/approvals/{id}"),
        json!({"approve": true, "approver": "alice", "reason": "expected invoice"}),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["resolution"], "approved");
    let answered = waiting.await.unwrap().json();
    assert_eq!(answered["verdict"], "allow", "{answered}");
    assert_eq!(answered["decision_id"].as_str().unwrap(), id);
    // A second answer conflicts; an unknown id is 404.
    let r = post(
        addr,
        &format!("/v1/approvals/{id}"),
        json!({"approve": false, "approver": "alice"}),
        true,
    )
    .await;
    assert!(
        r.status == StatusCode::CONFLICT || r.status == StatusCode::NOT_FOUND,
        "a resolved approval cannot be answered again: {}",
        r.status
    );
    let r = post(
        addr,
        "/v1/approvals/nope",
        json!({"approve": true, "approver": "alice"}),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A denial and a timeout both end in deny.
    let waiting = tokio::spawn({
        let pay = pay.clone();
        async move { post(addr, "/v1/decide?wait_ms=20000", pay, false).await }
    });
    let id = loop {
        let list = get(addr, "/v1/approvals", true).await.json();
        let found = list["approvals"].as_array().unwrap().iter().find_map(|a| {
            let i = a["id"].as_str().unwrap();
            (i != d["decision_id"].as_str().unwrap()).then(|| i.to_owned())
        });
        if let Some(i) = found {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    post(
        addr,
        &format!("/v1/approvals/{id}"),
        json!({"approve": false, "approver": "alice"}),
        true,
    )
    .await;
    assert_eq!(waiting.await.unwrap().json()["verdict"], "deny");
    let timed_out = post(addr, "/v1/decide?wait_ms=200", pay, false)
        .await
        .json();
    assert_eq!(timed_out["verdict"], "deny", "{timed_out}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_and_decisions_are_in_the_audit_log_with_proofs() {
    let h = start().await;
    let d = decide(h.addr, json!({"agent": "a", "tool": "tool.x"})).await;
    let r = post(
        h.addr,
        "/v1/outcome",
        json!({"decision_id": d["decision_id"], "latency_us": 1500, "tokens": 10, "cost": 0.01}),
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    for bad in [
        json!({"latency_us": 1}),
        json!({"decision_id": "x", "cost": -1.0}),
        json!({"decision_id": "x", "unknown": 1}),
    ] {
        let r = post(h.addr, "/v1/outcome", bad.clone(), false).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let head = get(h.addr, "/v1/audit/head", false).await;
    assert_eq!(head.status, StatusCode::OK, "{}", head.text());
    let head = head.json();
    let size = head["size"].as_u64().unwrap();
    assert!(size >= 2, "{head}");
    // Find the decision record and prove it.
    let mut proven = false;
    for i in 0..size {
        let p = get(h.addr, &format!("/v1/audit/proof/{i}"), false).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.text());
        let p = p.json();
        assert_eq!(p["index"], i);
        assert!(p["sth"]["size"].as_u64().unwrap() > i);
        if p["record"]["decision_id"] == d["decision_id"] {
            proven = true;
        }
    }
    assert!(proven, "the decision's record has an inclusion proof");
    let r = get(h.addr, &format!("/v1/audit/proof/{}", size + 100), false).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = get(h.addr, "/v1/audit/proof/minus-one", false).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let dir = h.stop().await;
    let report = warden_audit::verify(
        &dir.path().join("data"),
        &warden_audit::VerifyOptions::default(),
    )
    .unwrap();
    assert_eq!(
        report.unsigned_records, 0,
        "shutdown signs the tail: {report:?}"
    );
    assert!(report.records >= size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_decisions_and_bound_tool_labels() {
    let h = start().await;
    decide(
        h.addr,
        json!({"agent": "a", "tool": "sql.query", "args": {"query": "DROP x"}}),
    )
    .await;
    for i in 0..(warden_server::MAX_TOOL_LABELS + 20) {
        decide(h.addr, json!({"agent": "a", "tool": format!("tool.{i}")})).await;
    }
    let m = get(h.addr, "/metrics", false).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.content_type.starts_with("application/openmetrics-text"));
    let text = m.text();
    let line = text
        .lines()
        .find(|l| l.starts_with("warden_decisions_total{") && l.contains("tool=\"sql.query\""))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("verdict=\"deny\"") && line.ends_with(" 1"),
        "{line}"
    );
    assert!(
        text.contains("tool=\"other\""),
        "label cardinality is bounded"
    );
    let series = text
        .lines()
        .filter(|l| l.starts_with("warden_decisions_total{"))
        .count();
    assert!(series <= warden_server::MAX_TOOL_LABELS + 1, "{series}");
    for name in [
        "warden_decision_seconds_bucket",
        "warden_http_requests_total{",
        "warden_audit_queue_depth",
        "warden_approvals_pending",
        "warden_kill_switch_active",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    h.stop().await;
}

/// Polls `f` until it returns true (a file watcher reacts asynchronously).
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_good_policies_and_keeps_the_old_one_on_errors() {
    let h = start().await;
    let addr = h.addr;
    let act = json!({"agent": "a", "tool": "sql.query", "args": {"query": "SELECT 1"}});
    assert_eq!(decide(addr, act.clone()).await["verdict"], "allow");
    let file = h.policy_dir().join("p.yaml");
    // A broken edit: rejected, the old policy keeps deciding.
    std::fs::write(
        &file,
        POLICY.replace("effect: allow\n  - id: pay", "effect: alow\n  - id: pay"),
    )
    .unwrap();
    let r = post(addr, "/v1/reload", json!({}), true).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let msg = r.json()["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("p.yaml") && msg.contains("alow"), "{msg}");
    eventually("the watcher rejects the broken file", async || {
        get(addr, "/metrics", false)
            .await
            .text()
            .contains("result=\"rejected\"")
    })
    .await;
    assert_eq!(decide(addr, act.clone()).await["verdict"], "allow");
    // A good edit is picked up by the watcher without a signal.
    std::fs::write(
        &file,
        POLICY.replace(
            "  - id: sql\n    tools: [sql.query]\n    effect: allow",
            "  - id: sql\n    tools: [sql.query]\n    effect: warn",
        ),
    )
    .unwrap();
    eventually("the watcher loads the new policy", async || {
        decide(addr, act.clone()).await["verdict"] == "warn"
    })
    .await;
    let ready = get(addr, "/readyz", false).await.json();
    assert_eq!(
        ready["policy_hash"].as_str().unwrap(),
        h.kernel().policy().hash()
    );
    // Deleting every policy file is also an error, never "no policy".
    std::fs::remove_file(&file).unwrap();
    let r = post(addr, "/v1/reload", json!({}), true).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(decide(addr, act).await["verdict"], "warn");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let h = start_with(Limits {
        header_timeout_ms: 300,
        request_timeout_ms: 400,
        ..Limits::default()
    })
    .await;
    // Headers that never finish: the connection is closed.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"POST /v1/decide HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "server kept a half-sent request open");
    // A body that never finishes: 408, and no decision.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"POST /v1/decide HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"agent\":")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "server kept a half-sent body open");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // The server still answers others.
    assert_eq!(get(h.addr, "/healthz", false).await.status, StatusCode::OK);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_all_get_decisions_and_every_one_is_audited() {
    let h = start().await;
    let addr = h.addr;
    let mut tasks = Vec::new();
    for t in 0..16 {
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut ids = Vec::new();
            for i in 0..50 {
                let body = json!({"agent": format!("a{t}"), "tool": "sql.query", "args": {"query": format!("SELECT {i}")}});
                let req = Request::post("/v1/decide")
                    .header("host", "x")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .unwrap();
                let resp = sender.send_request(req).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                let v: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
                assert_eq!(v["verdict"], "allow");
                ids.push(v["decision_id"].as_str().unwrap().to_owned());
            }
            ids
        }));
    }
    let mut all = std::collections::HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(all.insert(id), "decision ids are unique");
        }
    }
    assert_eq!(all.len(), 800);
    let data = h.data_dir();
    let _kept = h.stop().await;
    // Shutdown flushed: every returned decision is in the log.
    let recorded: std::collections::HashSet<String> = warden_audit::records(&data, 0)
        .unwrap()
        .map(|r| r.unwrap().json().unwrap())
        .filter_map(|v| v["decision_id"].as_str().map(str::to_owned))
        .collect();
    let missing = all.difference(&recorded).count();
    assert_eq!(missing, 0, "{} recorded of {}", recorded.len(), all.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_exactly_the_served_routes() {
    let h = start().await;
    let r = get(h.addr, "/openapi.json", false).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    documented.sort();
    let mut served: Vec<(String, String)> = warden_server::ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
    // Every listed route is really routed (not 404/405), with or without auth.
    for (method, path) in &served {
        let path = path.replace("{id}", "x").replace("{index}", "0");
        let r = send(
            h.addr,
            &method.to_uppercase(),
            &path,
            &[JSON, AUTH],
            b"{}".to_vec(),
        )
        .await;
        assert!(
            r.status != StatusCode::NOT_FOUND || r.json()["error"] != "not_found",
            "{method} {path} is not routed"
        );
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    // Every $ref resolves.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    // The Decision schema lists the fields a real Decision has.
    let d = decide(h.addr, json!({"agent": "a", "tool": "tool.x"})).await;
    let mut fields: Vec<&String> = d.as_object().unwrap().keys().collect();
    fields.sort();
    let mut required: Vec<String> = doc["components"]["schemas"]["Decision"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    required.sort();
    assert_eq!(fields, required.iter().collect::<Vec<_>>());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_without_a_valid_policy_and_drains_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: warden.dev/v1\nkind: Policy\nname: x\n").unwrap();
    for policy in [bad, dir.path().join("missing")] {
        let config = common::config(&policy, &dir.path().join("data"));
        let e = RunningServer::start(config).await.unwrap_err().to_string();
        assert!(
            e.contains(&policy.file_name().unwrap().to_string_lossy().into_owned()),
            "{e}"
        );
    }
    // A weak admin token from the environment is a startup error, not an open admin API.
    let mut weak = ServerConfig::resolve(
        None,
        |k| (k == "WARDEN_ADMIN_TOKEN").then(|| "short".to_owned()),
        Overrides {
            listen: Some("127.0.0.1:0".to_owned()),
            data_dir: Some(dir.path().join("data1")),
            ..Overrides::default()
        },
    )
    .unwrap();
    weak.watch = false;
    let e = RunningServer::start(weak).await.unwrap_err().to_string();
    assert!(e.contains("WARDEN_ADMIN_TOKEN"), "{e}");
    // The built-in pack serves with no policy configured.
    let config = ServerConfig::resolve(
        None,
        |_| None,
        Overrides {
            listen: Some("127.0.0.1:0".to_owned()),
            data_dir: Some(dir.path().join("data2")),
            ..Overrides::default()
        },
    )
    .unwrap();
    let server = RunningServer::start(config).await.unwrap();
    let addr = server.local_addr();
    let d = decide(
        addr,
        serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/actions/drop-table.json"
            ))
            .unwrap(),
        )
        .unwrap(),
    )
    .await;
    assert_eq!(d["verdict"], "deny");
    let ready = get(addr, "/readyz", false).await.json();
    assert_eq!(ready["ready"], true);
    assert!(ready["policy"].as_str().unwrap().contains("builtin"));
    // The generated admin token works.
    let token = std::fs::read_to_string(dir.path().join("data2/admin.token")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    let r = send(
        addr,
        "GET",
        "/v1/kill",
        &[("authorization", &auth)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    server.shutdown().await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "stopped listening");
    assert!(Path::new(&dir.path().join("data2/audit")).exists());
}

/// An embedding runtime may be current-thread (as `warden mcp --api`'s is);
/// sync durability must still answer there.
#[tokio::test(flavor = "current_thread")]
async fn sync_durability_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("policy");
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::write(pdir.join("p.yaml"), POLICY).unwrap();
    let mut config = ServerConfig::resolve(
        None,
        |_| None,
        Overrides {
            listen: Some("127.0.0.1:0".to_owned()),
            unix_socket: None,
            policy: vec![pdir],
            data_dir: Some(dir.path().join("data")),
            durability: Some(warden_audit::Durability::Sync),
        },
    )
    .unwrap();
    config.admin_token = Some(TOKEN.to_owned());
    config.watch = false;
    let server = RunningServer::start(config).await.unwrap();
    let d = decide(
        server.local_addr(),
        json!({"agent": "a", "tool": "sql.query", "args": {"query": "SELECT 1"}}),
    )
    .await;
    assert_eq!(d["verdict"], "allow");
    server.shutdown().await.unwrap();
}
