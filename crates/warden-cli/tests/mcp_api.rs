//! `warden mcp --api`: an approver answers escalated MCP tool calls through
//! the sidecar API served for the gateway's own kernel.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const POLICY: &str = "apiVersion: warden.dev/v1\nkind: Policy\nname: mcp-api\ndefault: allow\nrules:\n  - id: echo-needs-alice\n    tools: [echo]\n    effect: escalate\n    approvers: [alice]\n    timeout: 60s\n    reason: echo needs alice\n";

fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
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
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn escalated_tool_calls_wait_for_an_approver_on_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let data = dir.path().join("data");
    let warden = env!("CARGO_BIN_EXE_warden");
    let mut child = Command::new(warden)
        .args([
            "mcp",
            "--policy",
            policy.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .args(["--api", "127.0.0.1:0", "--", warden, "mcp", "--echo-server"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "gateway exited early"
        );
        if let Some(a) = line
            .trim()
            .split("on http://")
            .nth(1)
            .filter(|_| line.contains("API"))
        {
            break a.to_owned();
        }
    };
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
    });
    let token = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut send = move |v: Value| {
        stdin.write_all(format!("{v}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    };
    let answer = |id: i64| loop {
        let v = rx.recv_timeout(Duration::from_secs(30)).expect("no answer");
        if v["id"] == id {
            return v;
        }
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    );
    answer(1);
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));

    // Approved by alice: the call reaches the server and its result comes back.
    let approve = |approve: bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, list) = http(&addr, "GET", "/v1/approvals", &token, "");
            assert_eq!(status, 200, "{list}");
            if let Some(a) = list["approvals"].as_array().unwrap().first() {
                assert_eq!(a["tool"], "echo");
                let id = a["id"].as_str().unwrap().to_owned();
                let body = json!({"approve": approve, "approver": "alice"}).to_string();
                let (status, r) =
                    http(&addr, "POST", &format!("/v1/approvals/{id}"), &token, &body);
                assert_eq!(status, 200, "{r}");
                return;
            }
            assert!(Instant::now() < deadline, "no pending approval appeared");
            std::thread::sleep(Duration::from_millis(25));
        }
    };
    send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hello"}}}),
    );
    approve(true);
    let r = answer(2);
    assert_eq!(r["result"]["content"][0]["text"], "hello", "{r}");
    assert_ne!(r["result"]["isError"], true, "{r}");

    // Denied by alice: the model sees an error result naming the policy reason.
    send(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "again"}}}),
    );
    approve(false);
    let r = answer(3);
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("denied by alice"),
        "{r}"
    );

    drop(send);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Both approvals are in the verifiable log.
    let out = Command::new(warden)
        .args(["audit", "verify", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
