//! `warden mcp --listen`: client authentication (a bearer token from
//! WARDEN_MCP_TOKEN or --token-file), the refusal to serve a non-loopback
//! address without one, and start-up errors for upstream headers and CAs.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{http_exchange, listening};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const POLICY: &str =
    "apiVersion: warden.dev/v1\nkind: Policy\nname: auth\ndefault: allow\nrules: []\n";
const TOKEN: &str = "cli-test-token-0123456789";

fn fixture() -> String {
    format!(
        "{}/../warden-mcp/tests/fixtures/scripted_server.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `warden mcp ARGS` in `dir` with a clean token environment plus `env`.
fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.arg("mcp")
        .args(args)
        .current_dir(dir)
        .env_remove("WARDEN_MCP_TOKEN")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs to completion (expected to refuse to start).
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(dir, args, env).output().unwrap()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
    std::fs::write(
        dir.path().join("gateway.yaml"),
        format!(
            "policy: [p.yaml]\nservers:\n  - name: a\n    command: python3\n    args: [{f}, a.log, --srv=a]\n  - name: b\n    command: python3\n    args: [{f}, b.log, --srv=b]\n    prefix: b_\n",
            f = fixture()
        ),
    )
    .unwrap();
    dir
}

fn refused(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {err}");
    for n in needles {
        assert!(err.contains(n), "no `{n}` in: {err}");
    }
}

#[test]
fn a_non_loopback_listener_without_a_token_refuses_to_start() {
    let dir = setup();
    let d = dir.path();
    let single = [
        "--policy",
        "p.yaml",
        "--upstream",
        "http://127.0.0.1:9/mcp",
        "--listen",
        "0.0.0.0:0",
    ];
    refused(
        &run(d, &single, &[]),
        &["WARDEN_MCP_TOKEN", "--token-file", "--insecure-no-auth"],
    );
    let multi = ["--config", "gateway.yaml", "--listen", "0.0.0.0:0"];
    refused(
        &run(d, &multi, &[]),
        &["WARDEN_MCP_TOKEN", "--insecure-no-auth"],
    );
    // A token too short is refused rather than used.
    refused(
        &run(d, &multi, &[("WARDEN_MCP_TOKEN", "short")]),
        &["WARDEN_MCP_TOKEN", "16"],
    );
    // --insecure-no-auth opts out: it starts.
    let gw = listening(&mut command(
        d,
        &[&multi[..], &["--insecure-no-auth"]].concat(),
        &[],
    ));
    assert!(gw.line.contains("no client token"), "{}", gw.line);
}

#[test]
fn token_files_must_be_private_and_flags_need_an_http_gateway() {
    let dir = setup();
    let d = dir.path();
    let token = d.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let args = [
            "--config",
            "gateway.yaml",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            "token",
        ];
        refused(&run(d, &args, &[]), &["token", "chmod 600"]);
    }
    // On stdio there is no client to authenticate: the flags are mistakes.
    refused(
        &run(
            d,
            &["--config", "gateway.yaml", "--token-file", "token"],
            &[],
        ),
        &["--listen"],
    );
}

#[test]
fn upstream_headers_with_a_missing_variable_or_a_managed_name_refuse_to_start() {
    let dir = setup();
    let d = dir.path();
    let args = |header: &'static str| {
        vec![
            "--policy",
            "p.yaml",
            "--upstream",
            "https://127.0.0.1:9/mcp",
            "--listen",
            "127.0.0.1:0",
            "--upstream-header",
            header,
        ]
    };
    refused(
        &run(
            d,
            &args("Authorization: Bearer ${WARDEN_TEST_SURELY_UNSET}"),
            &[],
        ),
        &["Authorization", "WARDEN_TEST_SURELY_UNSET"],
    );
    let out = run(d, &args("Mcp-Session-Id: abc"), &[]);
    refused(&out, &["Mcp-Session-Id"]);
    refused(&run(d, &args("no colon here"), &[]), &["Name: value"]);
    // A set variable expands, and the value is never printed.
    let out = run(
        d,
        &[
            &args("Authorization: Bearer ${WARDEN_TEST_UP_TOKEN}")[..],
            &["--upstream-ca", "missing-ca.pem"],
        ]
        .concat(),
        &[("WARDEN_TEST_UP_TOKEN", "very-secret-value")],
    );
    refused(&out, &["missing-ca.pem"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("very-secret-value"));
    // The gateway file: the error names the file, server and header.
    std::fs::write(
        d.join("remote.yaml"),
        "policy: [p.yaml]\nlisten: 127.0.0.1:0\nservers:\n  - name: remote\n    url: https://127.0.0.1:9/mcp\n    headers:\n      Authorization: Bearer ${WARDEN_TEST_SURELY_UNSET}\n",
    )
    .unwrap();
    refused(
        &run(d, &["--config", "remote.yaml"], &[]),
        &[
            "remote.yaml",
            "servers[0].headers.Authorization",
            "`remote`",
            "WARDEN_TEST_SURELY_UNSET",
        ],
    );
}

#[test]
fn with_a_token_only_clients_that_send_it_are_served() {
    let dir = setup();
    let d = dir.path();
    let gw = listening(&mut command(
        d,
        &["--config", "gateway.yaml", "--listen", "127.0.0.1:0"],
        &[("WARDEN_MCP_TOKEN", TOKEN)],
    ));
    assert!(
        gw.line.contains("bearer token") && !gw.line.contains(TOKEN),
        "{}",
        gw.line
    );
    let addr = gw.addr();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "cli-test", "version": "1"}}})
    .to_string();
    let wrong_same_length = format!("Bearer {}X", &TOKEN[..TOKEN.len() - 1]);
    for auth in [
        None,
        Some("Bearer nope"),
        Some(wrong_same_length.as_str()),
        Some("Bearer cli-test-token-0123456789-longer"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let (status, h, body) = http_exchange(&addr, "POST", &headers, &init);
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert!(
            h.iter()
                .any(|(k, v)| k == "www-authenticate" && v.starts_with("Bearer")),
            "{h:?}"
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"]["message"].is_string(), "{body}");
        let (status, _, _) = http_exchange(&addr, "DELETE", &headers, "");
        assert_eq!(status, 401);
    }
    let bearer = format!("Bearer {TOKEN}");
    let (status, h, body) = http_exchange(&addr, "POST", &[("authorization", &bearer)], &init);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("warden-mcp-gateway"), "{body}");
    let sid = h
        .iter()
        .find(|(k, _)| k == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "b_echo", "arguments": {"text": "authorized"}}})
    .to_string();
    let (status, _, body) = http_exchange(
        &addr,
        "POST",
        &[("authorization", &bearer), ("mcp-session-id", &sid)],
        &call,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("authorized"), "{body}");
    // Without the token the session is out of reach, too.
    let (status, _, _) = http_exchange(&addr, "POST", &[("mcp-session-id", &sid)], &call);
    assert_eq!(status, 401);
}
