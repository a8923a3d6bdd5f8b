//! `warden mcp --config gateway.yaml`: several named stdio servers behind one
//! gateway; a duplicated tool name is refused, and every refusal is in the
//! audit log that `warden audit tail` prints.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
    let warden = env!("CARGO_BIN_EXE_warden");
    let mut child = Command::new(warden)
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
    let r = c.rpc(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
    let names: Vec<&str> = r["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // a and twin offer the same tools: none of them is shown; b's are, prefixed.
    assert!(!names.contains(&"echo"), "{names:?}");
    assert!(names.contains(&"b_echo"), "{names:?}");
    // b's write_file is shown: the rule denying it has a condition.
    assert!(names.contains(&"b_write_file"), "{names:?}");
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

    let tail = Command::new(warden)
        .args(["audit", "tail", "-n", "100", "--data-dir"])
        .arg(d.join("data"))
        .output()
        .unwrap();
    assert!(tail.status.success());
    let records: Vec<Value> = String::from_utf8(tail.stdout)
        .unwrap()
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
fn bad_gateway_files_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(
        &path,
        "policy: [p.yaml]\nservers:\n  - name: a\n    command: x\n    prefx: a_\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["mcp", "--config", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gateway.yaml") && err.contains("prefx") && err.contains("line 5"),
        "{err}"
    );
    // The config file and a server command are mutually exclusive.
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["mcp", "--config", path.to_str().unwrap(), "--", "x"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
}
