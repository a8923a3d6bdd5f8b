//! The decision API with caller identity: the HTTP handshake issues session
//! credentials; decisions without a valid one are denied with `identity:` reasons.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use warden_identity::handshake::answer_challenge;
use warden_identity::{Did, Identity};
use warden_server::{AnchorConfig, IdentityConfig, RunningServer};

const POLICY: &str = "apiVersion: warden.dev/v1\nkind: Policy\nname: id\ndefault: deny\nrules:\n  - id: sql\n    tools: [\"sql.*\", \"tool.*\"]\n    effect: allow\n";

async fn call(
    addr: std::net::SocketAddr,
    path: &str,
    body: Value,
    auth: Option<&str>,
) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::post(path)
        .header("host", "x")
        .header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", format!("Bearer {a}"));
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            hyper::Request::get(path)
                .header("host", "x")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn start(dir: &tempfile::TempDir, identity: Option<IdentityConfig>) -> RunningServer {
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let mut config = common::config(&policy, &dir.path().join("data"));
    config.watch = false;
    config.identity = identity;
    RunningServer::start(config).await.unwrap()
}

/// Runs the two-step handshake; returns the credential or the error answer.
async fn handshake(
    addr: std::net::SocketAddr,
    agent: &Identity,
    server: &Did,
) -> Result<String, (u16, Value)> {
    let (status, c) = call(
        addr,
        "/v1/identity/challenge",
        json!({"hello": agent.did().as_str()}),
        None,
    )
    .await;
    if status != 200 {
        return Err((status, c));
    }
    let (response, signer) =
        answer_challenge(agent, c["challenge"].as_str().unwrap(), Some(server), None).unwrap();
    assert_eq!(&signer, server);
    let (status, s) = call(
        addr,
        "/v1/identity/session",
        json!({"response": response}),
        None,
    )
    .await;
    if status != 200 {
        return Err((status, s));
    }
    assert_eq!(s["agent"], agent.did().as_str());
    Ok(s["session"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_from_the_http_handshake_authenticate_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Identity::generate().unwrap();
    let stranger = Identity::generate().unwrap();
    let server = start(
        &dir,
        Some(IdentityConfig {
            key: None,
            anchors: vec![AnchorConfig {
                did: agent.did().to_string(),
                tools: Some(vec!["sql.*".to_owned()]),
                points: None,
                budget: None,
            }],
            session_ttl_secs: None,
            skew_secs: None,
        }),
    )
    .await;
    let addr = server.local_addr();
    let (status, info) = get(addr, "/v1/identity").await;
    assert_eq!(status, 200);
    let server_did = Did::parse(info["did"].as_str().unwrap()).unwrap();
    assert_eq!(Some(server_did.to_string()), server.identity_did());
    // The key persists in the data directory, private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("data/identity.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }

    let credential = handshake(addr, &agent, &server_did).await.unwrap();
    let me = agent.did().as_str();
    let decide = |body: Value, auth: Option<String>| async move {
        let (status, d) = call(addr, "/v1/decide", body, auth.as_deref()).await;
        assert_eq!(status, 200, "{d}");
        d
    };
    // In the body and as a bearer token.
    let d = decide(
        json!({"agent": me, "tool": "sql.query", "credential": credential}),
        None,
    )
    .await;
    assert_eq!(d["verdict"], "allow", "{d}");
    let d = decide(
        json!({"agent": me, "tool": "sql.query"}),
        Some(credential.clone()),
    )
    .await;
    assert_eq!(d["verdict"], "allow", "{d}");
    // The credential never reaches the audit log.
    server.kernel().flush().unwrap();
    let log = std::fs::read_dir(dir.path().join("data/audit")).unwrap();
    for f in log {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(&credential));
    }

    let reason = |d: &Value| d["reasons"][0].as_str().unwrap_or_default().to_owned();
    // No credential, someone else's credential, outside the anchor's scope, garbage.
    let d = decide(json!({"agent": me, "tool": "sql.query"}), None).await;
    assert_eq!(d["verdict"], "deny");
    assert!(reason(&d).starts_with("identity:missing"), "{d}");
    let d = decide(
        json!({"agent": stranger.did().as_str(), "tool": "sql.query", "credential": credential}),
        None,
    )
    .await;
    assert_eq!(d["verdict"], "deny");
    assert!(reason(&d).starts_with("identity:"), "{d}");
    let d = decide(
        json!({"agent": me, "tool": "tool.x", "credential": credential}),
        None,
    )
    .await;
    assert_eq!(d["verdict"], "deny");
    assert!(reason(&d).starts_with("identity:scope"), "{d}");
    // Change one character of the MAC to one it is not, away from the last
    // (whose low bits base64 may ignore).
    let at = credential.len() - 8;
    let swap = if &credential[at..=at] == "A" {
        "B"
    } else {
        "A"
    };
    let forged = format!("{}{swap}{}", &credential[..at], &credential[at + 1..]);
    assert_ne!(forged, credential);
    let d = decide(
        json!({"agent": me, "tool": "sql.query", "credential": forged}),
        None,
    )
    .await;
    assert_eq!(d["verdict"], "deny", "{d}");

    // A stranger completes the protocol but is no anchor: no session.
    let (status, e) = handshake(addr, &stranger, &server_did).await.unwrap_err();
    assert_eq!(status, 403, "{e}");
    // Malformed hello; a response replayed against a consumed challenge.
    let (status, _) = call(
        addr,
        "/v1/identity/challenge",
        json!({"hello": "did:web:example.com"}),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (_, c) = call(addr, "/v1/identity/challenge", json!({"hello": me}), None).await;
    let (response, _) = answer_challenge(
        &agent,
        c["challenge"].as_str().unwrap(),
        Some(&server_did),
        None,
    )
    .unwrap();
    let (status, _) = call(
        addr,
        "/v1/identity/session",
        json!({"response": response}),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, e) = call(
        addr,
        "/v1/identity/session",
        json!({"response": response}),
        None,
    )
    .await;
    assert_eq!(status, 403, "{e}");
    // A response for another sidecar (wrong audience) is refused.
    let other = Identity::generate().unwrap();
    let (_, c) = call(addr, "/v1/identity/challenge", json!({"hello": me}), None).await;
    let nonce_claims = warden_identity::jws::verify_signature(c["challenge"].as_str().unwrap())
        .unwrap()
        .1;
    let wrong = warden_identity::jws::sign(
        &agent,
        &warden_identity::Claims::new(
            &agent,
            other.did().as_str(),
            30,
            warden_identity::now_secs(),
        )
        .unwrap()
        .with_payload(nonce_claims.payload.unwrap()),
    )
    .unwrap();
    let (status, e) = call(
        addr,
        "/v1/identity/session",
        json!({"response": wrong}),
        None,
    )
    .await;
    assert_eq!(status, 403, "{e}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_identity_the_endpoints_say_so_and_bad_anchors_fail_startup() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None).await;
    let (status, e) = get(server.local_addr(), "/v1/identity").await;
    assert_eq!(status, 404);
    assert_eq!(e["error"], "identity_disabled");
    server.shutdown().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let mut config = common::config(&policy, &dir.path().join("data"));
    config.identity = Some(IdentityConfig {
        key: None,
        anchors: vec![AnchorConfig {
            did: "did:key:not-a-key".to_owned(),
            tools: None,
            points: None,
            budget: None,
        }],
        session_ttl_secs: None,
        skew_secs: None,
    });
    let e = RunningServer::start(config).await.unwrap_err().to_string();
    assert!(e.contains("identity.anchors[0].did"), "{e}");
}
