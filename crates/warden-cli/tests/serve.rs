//! `warden serve` as a process: startup banner, decisions over HTTP, SIGHUP
//! reload, SIGTERM drain with a verifiable audit log, config errors.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("warden serve: listening on http://")
        .unwrap_or_else(|| panic!("unexpected banner: {first:?}"))
        .to_owned();
    // Keep draining stdout so the banner never blocks the server.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
    });
    (child, addr)
}

/// A minimal HTTP/1.1 client: one request per connection.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn verdict(addr: &str, action: &str) -> String {
    let (status, body) = http(addr, "POST", "/v1/decide", action);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["verdict"].as_str().unwrap().to_owned()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn serves_reloads_on_sighup_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    let write = |effect: &str| {
        std::fs::write(
            &policy,
            format!("apiVersion: warden.dev/v1\nkind: Policy\nname: t\ndefault: deny\nrules:\n  - id: r\n    tools: [t]\n    effect: {effect}\n"),
        )
        .unwrap()
    };
    write("allow");
    let data = dir.path().join("data");
    let (mut child, addr) = start(&[
        "--listen",
        "127.0.0.1:0",
        "--policy",
        policy.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--durability",
        "sync",
    ]);
    let action = r#"{"agent":"a","tool":"t"}"#;
    assert_eq!(verdict(&addr, action), "allow");
    // The watcher is on too, so either path may win; SIGHUP must work on its own.
    write("warn");
    signal(&child, "HUP");
    let deadline = Instant::now() + Duration::from_secs(15);
    while verdict(&addr, action) != "warn" {
        assert!(Instant::now() < deadline, "reload not seen");
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Everything answered is durable and the log verifies.
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["audit", "verify", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_config_and_policy_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("warden.yaml");
    std::fs::write(&cfg, "listen: 127.0.0.1:0\nlisten_port: 9\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warden.yaml") && err.contains("listen_port"),
        "{err}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: warden.dev/v1\nkind: Policy\nname: x\ndefault: maybe\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--policy",
            bad.to_str().unwrap(),
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml") && err.contains("maybe"), "{err}");
}
