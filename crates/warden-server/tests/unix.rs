//! The sidecar API on a Unix-domain socket: the same router as TCP, the
//! socket's mode, stale-socket recovery, refusal to clobber anything else,
//! and removal on shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use warden_server::{Overrides, RunningServer, ServerConfig, ServerError};

const POLICY: &str = r#"
apiVersion: warden.dev/v1
kind: Policy
name: unix-test
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
"#;

fn config(dir: &Path, socket: &Path) -> ServerConfig {
    let policy = dir.join("p.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let mut c = common::config(&policy, &dir.join("data"));
    c.unix_socket = Some(socket.to_path_buf());
    c.watch = false;
    c
}

async fn post(socket: &Path, path: &str, body: &str) -> (u16, Value) {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post(path)
        .header("host", "x")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn socket_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("warden.sock")
}

#[tokio::test]
async fn decides_over_the_unix_socket_like_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let sock = socket_path(&dir);
    let server = RunningServer::start(config(dir.path(), &sock))
        .await
        .unwrap();
    assert_eq!(server.unix_socket(), Some(sock.as_path()));
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let (status, d) = post(
        &sock,
        "/v1/decide",
        r#"{"agent":"a","tool":"sql.query","args":{"query":"DROP TABLE t"}}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(d["verdict"], "deny");
    assert_eq!(d["rule_ids"][0], "drop");
    let (_, d) = post(
        &sock,
        "/v1/decide",
        r#"{"agent":"a","tool":"sql.query","args":{"query":"SELECT 1"}}"#,
    )
    .await;
    assert_eq!(d["verdict"], "allow");
    // Same validation as TCP: unknown fields are refused, never decided.
    let (status, e) = post(&sock, "/v1/decide", r#"{"agent":"a","tool":"x","bogus":1}"#).await;
    assert_eq!(status, 400, "{e}");
    // Admin endpoints still need the token on the socket.
    let (status, _) = post(&sock, "/v1/kill", r#"{"all":true,"reason":"r"}"#).await;
    assert_eq!(status, 401);

    // Decisions over the socket are audited like any other.
    let kernel = std::sync::Arc::clone(server.kernel());
    tokio::task::spawn_blocking(move || kernel.flush())
        .await
        .unwrap()
        .unwrap();
    server.shutdown().await.unwrap();
    assert!(!sock.exists(), "the socket file is removed on shutdown");
    let records = warden_audit::count(&dir.path().join("data")).unwrap();
    assert!(records >= 2, "{records} records");
}

#[tokio::test]
async fn a_stale_socket_is_replaced_but_a_live_one_or_a_file_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let sock = socket_path(&dir);
    // Stale: a socket file nobody listens on (a crashed server's).
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let server = RunningServer::start(config(dir.path(), &sock))
        .await
        .unwrap();
    let (status, _) = post(
        &sock,
        "/v1/decide",
        r#"{"agent":"a","tool":"sql.query","args":{"query":"SELECT 1"}}"#,
    )
    .await;
    assert_eq!(status, 200);

    // Live: a second server must not steal the first one's socket.
    let other = tempfile::tempdir().unwrap();
    let err = RunningServer::start(config(other.path(), &sock))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServerError::UnixSocket { reason, .. } if reason.contains("listening")),
        "{err}"
    );
    let (status, _) = post(
        &sock,
        "/v1/decide",
        r#"{"agent":"a","tool":"sql.query","args":{"query":"SELECT 1"}}"#,
    )
    .await;
    assert_eq!(status, 200, "the first server still answers");
    server.shutdown().await.unwrap();

    // Anything that is not a socket is never deleted.
    let file = dir.path().join("precious.txt");
    std::fs::write(&file, "keep me").unwrap();
    let err = RunningServer::start(config(dir.path(), &file))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn config_file_env_and_flag_set_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("warden.yaml");
    std::fs::write(&file, "unix_socket: run/w.sock\n").unwrap();
    let c = ServerConfig::resolve(Some(&file), |_| None, Overrides::default()).unwrap();
    assert_eq!(c.unix_socket, Some(dir.path().join("run/w.sock")));
    let c = ServerConfig::resolve(
        Some(&file),
        |k| (k == "WARDEN_UNIX_SOCKET").then(|| "/tmp/env.sock".to_owned()),
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.unix_socket, Some(PathBuf::from("/tmp/env.sock")));
    let c = ServerConfig::resolve(
        Some(&file),
        |_| None,
        Overrides {
            unix_socket: Some(PathBuf::from("/tmp/flag.sock")),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(c.unix_socket, Some(PathBuf::from("/tmp/flag.sock")));
    // A typo is an error with its position, not an ignored key.
    std::fs::write(&file, "unix_sockett: w.sock\n").unwrap();
    let err = ServerConfig::resolve(Some(&file), |_| None, Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("unix_sockett"), "{err}");
}
