//! `warden mcp --config gateway.yaml`: several named stdio servers behind one
//! gateway; a duplicated tool name is refused, and every refusal is in the
//! audit log that `warden audit tail` prints. A Streamable HTTP server
//! (tests/fixtures/http_server.py) mixes with a stdio one.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Killed, http_exchange, listening, warden};
use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};

const POLICY: &str = "apiVersion: warden.dev/v1\nkind: Policy\nname: multi\ndefault: allow\nrules:\n  - id: no-b-writes\n    tools: [write_file]\n    when: context.mcp.server == \"b\"\n    effect: deny\n    reason: server b is read-only\n";

fn fixture() -> String {
    format!(
        "{}/../warden-mcp/tests/fixtures/scripted_server.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

struct Client {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Client {
    /// `warden mcp --config DIR/gateway.yaml` on a pipe, initialized.
    fn start(d: &std::path::Path) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["mcp", "--config", d.join("gateway.yaml").to_str().unwrap()])
            .current_dir(d)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut c = Client { child, out };
        let r = c.rpc(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "cli-test", "version": "1"}}}),
        );
        assert_eq!(
            r["result"]["serverInfo"]["name"], "warden-mcp-gateway",
            "{r}"
        );
        assert_eq!(r["result"]["protocolVersion"], "2025-06-18", "{r}");
        let input = c.child.stdin.as_mut().unwrap();
        writeln!(
            input,
            "{}",
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        )
        .unwrap();
        c
    }

    fn tool_names(&mut self) -> Vec<String> {
        let r = self.rpc(json!({"jsonrpc": "2.0", "id": "list", "method": "tools/list"}));
        r["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    fn rpc(&mut self, msg: Value) -> Value {
        let id = msg["id"].clone();
        let input = self.child.stdin.as_mut().unwrap();
        writeln!(input, "{msg}").unwrap();
        input.flush().unwrap();
        loop {
            let mut line = String::new();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "gateway exited");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id && v.get("method").is_none() {
                return v;
            }
        }
    }
}

/// `warden audit tail -n 100` of the data directory `data`.
fn audit_tail(data: &std::path::Path) -> String {
    let tail = warden(
        &[
            "audit",
            "tail",
            "-n",
            "100",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        "",
    );
    assert!(tail.status.success());
    String::from_utf8(tail.stdout).unwrap()
}

fn text(r: &Value) -> &str {
    r["result"]["content"][0]["text"].as_str().unwrap_or("")
}

#[test]
fn config_file_gateway_routes_refuses_duplicates_and_audits_every_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.yaml"), POLICY).unwrap();
    let server = |name: &str, prefix: &str| {
        format!(
            "  - name: {name}\n    command: python3\n    args: [{}, {name}.log, --srv={name}]\n    cwd: .\n    env: {{WARDEN_TEST: '1'}}\n    prefix: '{prefix}'\n",
            fixture()
        )
    };
    let config = format!(
        "policy: [p.yaml]\ndata_dir: data\nagent: multi-agent\nservers:\n{}{}{}",
        server("a", ""),
        server("twin", ""),
        server("b", "b_")
    );
    std::fs::write(d.join("gateway.yaml"), config).unwrap();
    let mut c = Client::start(d);
    let names = c.tool_names();
    // a and twin offer the same tools: none of them is shown; b's are, prefixed.
    assert!(!names.iter().any(|n| n == "echo"), "{names:?}");
    assert!(names.iter().any(|n| n == "b_echo"), "{names:?}");
    // b's write_file is shown: the rule denying it has a condition.
    assert!(names.iter().any(|n| n == "b_write_file"), "{names:?}");
    let r = c.rpc(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "x"}}}));
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text(&r).contains("mcp:duplicate_tool"), "{r}");
    let r = c.rpc(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "b_echo", "arguments": {"text": "routed"}}}));
    assert_eq!(text(&r), r#"{"text": "routed"}"#, "{r}");
    let r = c.rpc(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "b_write_file", "arguments": {"path": "/x"}}}));
    assert!(text(&r).contains("server b is read-only"), "{r}");
    let r = c.rpc(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "missing", "arguments": {}}}));
    assert!(text(&r).contains("mcp:unknown_tool"), "{r}");
    drop(c.child.stdin.take());
    assert!(c.child.wait().unwrap().success());
    // Relative paths were resolved against the config file's directory.
    assert!(d.join("b.log").exists() && d.join("data").is_dir());
    let log = std::fs::read_to_string(d.join("b.log")).unwrap();
    assert!(log.contains("routed") && !log.contains("/x"), "{log}");
    assert!(
        !std::fs::read_to_string(d.join("a.log"))
            .unwrap()
            .contains("tools/call")
    );

    let records: Vec<Value> = audit_tail(&d.join("data"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let denied = |tool: &str, reason: &str| {
        records.iter().any(|r| {
            let s = r.to_string();
            s.contains(&format!("\"tool\":\"{tool}\""))
                && s.contains("\"verdict\":\"deny\"")
                && s.contains(reason)
        })
    };
    assert!(denied("echo", "mcp:duplicate_tool"), "{records:#?}");
    assert!(denied("missing", "mcp:unknown_tool"), "{records:#?}");
    assert!(
        denied("write_file", "server b is read-only"),
        "{records:#?}"
    );
}

#[test]
fn config_file_mixes_an_http_upstream_with_a_stdio_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut http = Killed(
        Command::new("python3")
            .arg(format!(
                "{}/../warden-mcp/tests/fixtures/http_server.py",
                env!("CARGO_MANIFEST_DIR")
            ))
            .arg(d.join("web.log"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut port = String::new();
    BufReader::new(http.0.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port: u16 = port.trim().parse().unwrap();
    std::fs::write(
        d.join("p.yaml"),
        "apiVersion: warden.dev/v1\nkind: Policy\nname: mixed\ndefault: allow\nrules:\n  - id: web-no-blocked\n    tools: [echo]\n    when: context.mcp.server == \"web\" && args.text == \"blocked\"\n    effect: deny\n    reason: the web server may not echo that\n",
    )
    .unwrap();
    let config = format!(
        "policy: [p.yaml]\nservers:\n  - name: a\n    command: python3\n    args: [{}, a.log]\n  - name: web\n    url: http://127.0.0.1:{port}/mcp\n    prefix: w_\n",
        fixture()
    );
    std::fs::write(d.join("gateway.yaml"), config).unwrap();
    let mut c = Client::start(d);
    let names = c.tool_names();
    assert!(
        names.iter().any(|n| n == "echo") && names.iter().any(|n| n == "w_echo"),
        "{names:?}"
    );
    let r = c.rpc(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "w_echo", "arguments": {"text": "over http"}}}));
    assert_eq!(text(&r), "http:over http", "{r}");
    let r = c.rpc(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "w_echo", "arguments": {"text": "blocked"}}}));
    assert!(text(&r).contains("the web server may not echo that"), "{r}");
    let r = c.rpc(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "blocked"}}}));
    assert_eq!(text(&r), r#"{"text": "blocked"}"#, "{r}");
    drop(c.child.stdin.take());
    assert!(c.child.wait().unwrap().success());

    let log: Vec<Value> = std::fs::read_to_string(d.join("web.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let calls: Vec<&Value> = log
        .iter()
        .filter(|e| e["msg"]["method"] == "tools/call")
        .collect();
    // Only the allowed call arrived, under the server's own name and the session.
    assert_eq!(calls.len(), 1, "{log:?}");
    assert_eq!(calls[0]["msg"]["params"]["name"], "echo");
    assert_eq!(calls[0]["session"], "py-1");
    assert!(
        log.iter()
            .any(|e| e["msg"]["method"] == "notifications/initialized")
    );
    // The gateway ended the session on its way out.
    assert_eq!(log.last().unwrap(), &json!({"delete": "py-1"}), "{log:?}");
}

#[test]
fn bad_gateway_files_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(
        &path,
        "policy: [p.yaml]\nservers:\n  - name: a\n    command: x\n    prefx: a_\n",
    )
    .unwrap();
    let out = warden(&["mcp", "--config", path.to_str().unwrap()], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gateway.yaml") && err.contains("prefx") && err.contains("line 5"),
        "{err}"
    );
    // Session limits need --listen.
    let multi = dir.path().join("multi.yaml");
    std::fs::write(
        &multi,
        "policy: [p.yaml]\nservers:\n  - name: a\n    command: x\n  - name: web\n    url: http://127.0.0.1:1/mcp\n",
    )
    .unwrap();
    let out = warden(
        &[
            "mcp",
            "--config",
            multi.to_str().unwrap(),
            "--max-sessions",
            "3",
        ],
        "",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--max-sessions"), "{err}");
    // The config file and a server command are mutually exclusive.
    let out = warden(&["mcp", "--config", path.to_str().unwrap(), "--", "x"], "");
    assert!(!out.status.success());
}

#[test]
fn several_servers_are_served_over_http_with_listen() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.yaml"), POLICY).unwrap();
    let config = format!(
        "policy: [p.yaml]\ndata_dir: data\nlisten: 127.0.0.1:0\nmax_sessions: 2\nservers:\n  - name: a\n    command: python3\n    args: [{f}, a.log, --srv=a]\n    cwd: .\n  - name: b\n    command: python3\n    args: [{f}, b.log, --srv=b]\n    cwd: .\n    prefix: b_\n",
        f = fixture()
    );
    std::fs::write(d.join("gateway.yaml"), config).unwrap();
    let mut gw = listening(
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["mcp", "--config", d.join("gateway.yaml").to_str().unwrap()])
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    );
    let addr = gw.addr();
    let post = |session: &str, msg: Value| {
        let headers: Vec<(&str, &str)> = match session {
            "" => vec![],
            s => vec![("mcp-session-id", s)],
        };
        http_exchange(&addr, "POST", &headers, &msg.to_string())
    };
    let (status, headers, body) = post(
        "",
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "cli-test", "version": "1"}}}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("warden-mcp-gateway"), "{body}");
    let sid = headers
        .iter()
        .find(|(k, _)| k == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .expect("no session id");
    let call = |id: i64, name: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": {"text": "over http", "path": "/x"}}})
    };
    let (_, _, body) = post(&sid, call(1, "b_echo"));
    let r: Value = serde_json::from_str(&body).unwrap();
    assert!(text(&r).contains("over http"), "{body}");
    let (_, _, body) = post(&sid, call(2, "b_write_file"));
    let r: Value = serde_json::from_str(&body).unwrap();
    assert!(text(&r).contains("server b is read-only"), "{body}");
    let (status, _, _) = http_exchange(&addr, "DELETE", &[("mcp-session-id", &sid)], "");
    assert_eq!(status, 204);
    let (status, _, _) = post(&sid, call(3, "echo"));
    assert_eq!(status, 404);
    // SIGTERM: the gateway closes what is left and exits cleanly.
    let _ = post(
        "",
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "cli-test", "version": "1"}}}),
    );
    let killed = Command::new("kill")
        .args(["-TERM", &gw.child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(gw.child.0.wait().unwrap().success());
    let log = std::fs::read_to_string(d.join("b.log")).unwrap();
    assert!(
        log.contains("over http") && !log.contains("write_file\""),
        "{log}"
    );
    let records = audit_tail(&d.join("data"));
    assert!(records.contains("server b is read-only"), "{records}");
}
