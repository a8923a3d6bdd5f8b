//! `warden serve` with the PostgreSQL audit store (feature `postgres`; needs
//! the local PostgreSQL that scripts/services.sh starts).
#![cfg(feature = "postgres")]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use warden_audit::pg::{execute_sql, pg_verify};
use warden_server::{AuditStore, RunningServer};

const URL: &str = "postgres://root@127.0.0.1:5432/test";

async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "x")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_go_to_postgres_with_heads_and_proofs() {
    let schema = format!(
        "warden_server_test_{}_{}",
        std::process::id(),
        warden_core::Decision::new_id().replace('-', "")[20..].to_owned()
    );
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, "apiVersion: warden.dev/v1\nkind: Policy\nname: pg\ndefault: allow\nrules:\n  - id: no-rm\n    tools: [rm]\n    effect: deny\n").unwrap();
    let mut config = common::config(&policy, &dir.path().join("data"));
    config.audit = AuditStore::Postgres {
        url: URL.to_owned(),
        schema: schema.clone(),
    };
    let server = RunningServer::start(config).await.unwrap();
    let addr = server.local_addr();
    let mut ids = Vec::new();
    for tool in ["ls", "rm", "ls"] {
        let (status, d) = call(
            addr,
            "POST",
            "/v1/decide",
            Some(json!({"agent": "a", "tool": tool})),
        )
        .await;
        assert_eq!(status, 200, "{d}");
        assert_eq!(d["verdict"], if tool == "rm" { "deny" } else { "allow" });
        ids.push(d["decision_id"].as_str().unwrap().to_owned());
    }
    let (status, head) = call(addr, "GET", "/v1/audit/head", None).await;
    assert_eq!(status, 200, "{head}");
    let size = head["size"].as_u64().unwrap();
    assert!(size >= 4, "policy load + 3 decisions: {head}");
    let mut proven = 0;
    for i in 0..size {
        let (status, p) = call(addr, "GET", &format!("/v1/audit/proof/{i}"), None).await;
        assert_eq!(status, 200, "{p}");
        if ids
            .iter()
            .any(|id| p["record"]["decision_id"] == *id.as_str())
        {
            proven += 1;
        }
    }
    assert_eq!(proven, 3);
    let (status, _) = call(addr, "GET", &format!("/v1/audit/proof/{}", size + 10), None).await;
    assert_eq!(status, 404);
    server.shutdown().await.unwrap();
    let report = tokio::task::spawn_blocking({
        let schema = schema.clone();
        move || pg_verify(URL, &schema, None)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(report.records, size);
    tokio::task::spawn_blocking(move || execute_sql(URL, &format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap()
        .unwrap();
}
