//! Trust scores in `warden serve`, over real HTTP on loopback: a denial by
//! a policy rule lowers the agent's score, outcomes raise it, the tier
//! change flips a ring check; scores survive a restart; an operator's set
//! made while the server runs is not overwritten; a corrupt `trust.json`
//! stops startup with an error naming the file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpStream;
use warden_identity::{Tier, TrustBook, TrustConfig, now_secs};
use warden_server::RunningServer;

const POLICY: &str = r#"
apiVersion: warden.dev/v1
kind: Policy
name: trust-test
default: allow
rules:
  - id: no-secrets
    tools: [read_secrets]
    effect: deny
    reason: secrets are off limits
rings:
  tools:
    - tools: [deploy]
      ring: 2
    - tools: [search, read_secrets]
      ring: 3
"#;

async fn start(dir: &Path, refresh_ms: u64) -> Result<RunningServer, warden_server::ServerError> {
    let pdir = dir.join("policy");
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::write(pdir.join("p.yaml"), POLICY).unwrap();
    let mut config = common::config(&pdir, &dir.join("data"));
    config.watch = false;
    config.trust.refresh_ms = refresh_ms;
    RunningServer::start(config).await
}

async fn post(addr: SocketAddr, path: &str, body: Value) -> (StatusCode, Value) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "x")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn decide(addr: SocketAddr, agent: &str, tool: &str) -> Value {
    let (status, d) = post(addr, "/v1/decide", json!({"agent": agent, "tool": tool})).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    d
}

/// Decides an allowed call and reports its outcome.
async fn succeed(addr: SocketAddr, agent: &str) {
    let d = decide(addr, agent, "search").await;
    assert_eq!(d["verdict"], "allow", "{d}");
    let (status, body) = post(
        addr,
        "/v1/outcome",
        json!({"decision_id": d["decision_id"], "latency_us": 10}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

fn score(server: &RunningServer, agent: &str) -> f64 {
    server.trust().unwrap().score(agent, now_secs()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_move_scores_and_flip_rings_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 60_000).await.unwrap();
    let addr = server.local_addr();

    // The baseline (400, probationary) is ring 3: `deploy` needs ring 2.
    let d = decide(addr, "bot", "deploy").await;
    assert_eq!(d["verdict"], "deny", "{d}");
    assert_eq!(d["reasons"][0], "ring:insufficient", "{d}");
    assert_eq!(score(&server, "bot"), 400.0);

    // A denial by a rule is a violation: −10 %.
    let d = decide(addr, "bot", "read_secrets").await;
    assert_eq!(d["rule_ids"], json!(["no-secrets"]), "{d}");
    let after_violation = score(&server, "bot");
    assert!((after_violation - 360.0).abs() < 0.01, "{after_violation}");
    // A gate denial (ring) is not held against the agent.
    decide(addr, "bot", "deploy").await;
    assert_eq!(score(&server, "bot"), after_violation);

    // Successful outcomes raise it until the tier is standard: ring 2.
    let mut outcomes = 0;
    while server.trust().unwrap().tier("bot", now_secs()).unwrap() < Tier::Standard {
        succeed(addr, "bot").await;
        outcomes += 1;
        assert!(outcomes < 200, "score stuck at {}", score(&server, "bot"));
    }
    assert!(outcomes > 30, "{outcomes} outcomes");
    let d = decide(addr, "bot", "deploy").await;
    assert_eq!(d["verdict"], "allow", "{d}");
    // Another violation demotes it again.
    decide(addr, "bot", "read_secrets").await;
    let d = decide(addr, "bot", "deploy").await;
    assert_eq!(d["reasons"][0], "ring:insufficient", "{d}");

    // Shutdown saves; a new server on the same data directory sees the scores.
    let before = score(&server, "bot");
    server.shutdown().await.unwrap();
    let on_disk = TrustBook::open(&dir.path().join("data"), TrustConfig::default()).unwrap();
    let now = now_secs();
    assert!((on_disk.score("bot", now).unwrap() - before).abs() < 0.01);
    let again = start(dir.path(), 60_000).await.unwrap();
    assert!((score(&again, "bot") - before).abs() < 0.01);
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_set_while_running_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 50).await.unwrap();
    let addr = server.local_addr();
    let data = dir.path().join("data");
    let on_disk = |agent: &str| {
        TrustBook::open(&data, TrustConfig::default())
            .unwrap()
            .score(agent, now_secs())
            .unwrap()
    };
    let wait = async |what: &str, done: &dyn Fn() -> bool| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    decide(addr, "bot", "read_secrets").await; // 400 → 360
    wait("the server saves its signal", &|| on_disk("bot") < 370.0).await;
    // `warden trust set` does this: read-modify-write under the file lock.
    let operator = TrustBook::open(&data, TrustConfig::default()).unwrap();
    operator.set("bot", 950.0, now_secs()).unwrap();
    // The server's next sync re-reads the file instead of overwriting it.
    wait("the server sees the set score", &|| {
        score(&server, "bot") > 900.0
    })
    .await;
    let d = decide(addr, "bot", "deploy").await;
    assert_eq!(d["verdict"], "allow", "{d}");
    // Signals after the set apply on top of it.
    decide(addr, "bot", "read_secrets").await;
    server.shutdown().await.unwrap();
    let s = on_disk("bot");
    assert!((s - 855.0).abs() < 0.1, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_trust_file_stops_startup_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("trust.json"), "{\"version\":1,\"agents\":{\"a\":").unwrap();
    let e = start(dir.path(), 1000).await.unwrap_err().to_string();
    assert!(e.contains("trust.json"), "{e}");
    std::fs::write(
        data.join("trust.json"),
        "{\"version\":1,\"agents\":{\"a\":{\"score\":-3,\"at\":0}}}",
    )
    .unwrap();
    let e = start(dir.path(), 1000).await.unwrap_err().to_string();
    assert!(
        e.contains("trust.json") && e.contains("out of range"),
        "{e}"
    );
}
