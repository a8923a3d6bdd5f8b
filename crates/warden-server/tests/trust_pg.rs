//! Two `warden serve` replicas sharing one PostgreSQL trust table: a
//! violation decided by one lowers the agent's score on the other after a
//! refresh, and neither loses the other's signals. Needs the local
//! PostgreSQL (`WARDEN_TEST_PG_URL`, default `postgres://root@127.0.0.1:5432/test`).
#![cfg(feature = "postgres")]
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
use warden_identity::{TrustConfig, now_secs};
use warden_server::{RunningServer, TrustStoreKind};

fn url() -> String {
    std::env::var("WARDEN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

async fn start(dir: &Path, schema: &str) -> RunningServer {
    std::fs::create_dir_all(dir).unwrap();
    let policy = dir.join("p.yaml");
    std::fs::write(
        &policy,
        "apiVersion: warden.dev/v1\nkind: Policy\nname: t\ndefault: allow\nrules:\n  - id: no-rm\n    tools: [rm]\n    effect: deny\n",
    )
    .unwrap();
    let mut config = common::config(&policy, &dir.join("data"));
    config.watch = false;
    config.trust.store = TrustStoreKind::Postgres;
    config.trust.url = Some(url());
    config.trust.schema = schema.to_owned();
    config.trust.refresh_ms = 50;
    RunningServer::start(config).await.unwrap()
}

async fn decide(addr: SocketAddr, agent: &str, tool: &str) -> Value {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = json!({"agent": agent, "tool": tool}).to_string();
    let req = Request::builder()
        .method("POST")
        .uri("/v1/decide")
        .header("host", "x")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_scores_through_postgres() {
    let schema = format!(
        "warden_trust_srv_{}_{}",
        std::process::id(),
        warden_core::Decision::new_id().replace('-', "")[20..].to_owned()
    );
    let dir = tempfile::tempdir().unwrap();
    let a = start(&dir.path().join("a"), &schema).await;
    let b = start(&dir.path().join("b"), &schema).await;
    let violations = 5;
    for i in 0..violations {
        let server = if i % 2 == 0 { &a } else { &b };
        let d = decide(server.local_addr(), "bot", "rm").await;
        assert_eq!(d["rule_ids"], json!(["no-rm"]), "{d}");
    }
    // Each replica's view converges on every violation from both.
    let c = TrustConfig::default();
    let expect = (0..violations).fold(c.baseline, |s, _| TrustConfig::apply(s, c.violation));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for server in [&a, &b] {
        loop {
            let s = server.trust().unwrap().score("bot", now_secs()).unwrap();
            if (s - expect).abs() < 0.01 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{s} != {expect}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    warden_audit::pg::execute_sql(&url(), &format!("DROP SCHEMA \"{schema}\" CASCADE")).unwrap();
}
