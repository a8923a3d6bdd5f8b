//! The `warden` binary end to end: exit codes, output forms, error messages.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

const POLICY: &str = r#"apiVersion: warden.dev/v1
kind: Policy
name: cli
default: deny
rules:
  - id: read
    tools: [fs.read]
    effect: allow
  - id: shout
    tools: [say]
    effect: warn
  - id: pay
    tools: [pay]
    effect: escalate
    approvers: [finance]
    timeout: 1m
  - id: bad-cond
    tools: [broken]
    when: args.n > 1
    effect: allow
"#;

use common::warden;

fn policy_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, POLICY).unwrap();
    (dir, p)
}

fn check(policy: &Path, action: &str) -> (i32, serde_json::Value, String) {
    let out = warden(&["check", "--policy", policy.to_str().unwrap()], action);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json = stdout
        .lines()
        .next()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap(),
        json,
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn check_exit_codes_follow_verdicts() {
    let (_d, p) = policy_dir();
    let cases = [
        (r#"{"agent":"a","tool":"fs.read"}"#, 0, "allow"),
        (r#"{"agent":"a","tool":"say"}"#, 0, "warn"),
        (r#"{"agent":"a","tool":"rm"}"#, 1, "deny"),
        (r#"{"agent":"a","tool":"pay"}"#, 3, "escalate"),
        (r#"{"agent":"a","tool":"broken","args":{}}"#, 1, "deny"),
    ];
    for (action, code, verdict) in cases {
        let (c, d, err) = check(&p, action);
        assert_eq!(c, code, "{action}: {err}");
        assert_eq!(d["verdict"], verdict);
        assert!(d["decision_id"].as_str().unwrap().len() == 36);
        assert!(d["policy_hash"].as_str().unwrap().starts_with("sha256:"));
    }
    let (_, d, _) = check(&p, r#"{"agent":"a","tool":"broken","args":{}}"#);
    assert_eq!(d["reasons"][0], "runtime_error:evaluation_error");
    let (_, d, _) = check(&p, r#"{"agent":"a","tool":"pay"}"#);
    assert_eq!(d["obligations"][0]["type"], "approval");
    assert_eq!(d["obligations"][0]["timeout_ms"], 60000);
}

#[test]
fn check_reads_action_file() {
    let (d, p) = policy_dir();
    let a = d.path().join("a.json");
    std::fs::write(&a, r#"{"agent":"a","tool":"fs.read"}"#).unwrap();
    let out = warden(
        &[
            "check",
            "-p",
            p.to_str().unwrap(),
            "--action",
            a.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn invalid_input_exits_2_with_message() {
    let (_d, p) = policy_dir();
    for (action, want) in [
        ("not json", "invalid action"),
        (
            r#"{"agent":"a","tool":"x","extra":1}"#,
            "unknown field `extra`",
        ),
        (r#"{"agent":"a"}"#, "tool"),
        ("", "invalid action"),
    ] {
        let (c, _, err) = check(&p, action);
        assert_eq!(c, 2, "{action}");
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn broken_or_missing_policy_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: warden.dev/v1\nkind: Policy\nname: x\ndefault: allow\nrules:\n  - id: a\n    effect: allow\n    whne: tool == 'x'\n").unwrap();
    let (c, _, err) = check(&bad, r#"{"agent":"a","tool":"x"}"#);
    assert_eq!(c, 2);
    assert!(err.contains("bad.yaml:") && err.contains("whne"), "{err}");
    let (c, _, err) = check(&dir.path().join("nope.yaml"), r#"{"agent":"a","tool":"x"}"#);
    assert_eq!(c, 2);
    assert!(err.contains("nope.yaml"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let (c, _, err) = check(empty.path(), r#"{"agent":"a","tool":"x"}"#);
    assert_eq!(c, 2);
    assert!(err.contains("no policy"), "{err}");
    let out = warden(&["check"], r#"{"agent":"a","tool":"x"}"#);
    assert_eq!(out.status.code(), Some(2), "no --policy is a usage error");
}

#[test]
fn policy_test_reports_and_fails() {
    let (d, _p) = policy_dir();
    let t = d.path().join("cli_test.yaml");
    std::fs::write(
        &t,
        r#"apiVersion: warden.dev/v1
kind: PolicyTest
cases:
  - name: read ok
    action: {agent: a, tool: fs.read}
    expect: allow
    rule: read
  - name: wrong on purpose
    action: {agent: a, tool: rm}
    expect: allow
"#,
    )
    .unwrap();
    let out = warden(&["policy", "test", d.path().to_str().unwrap()], "");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.lines().last().unwrap() == "1 passed, 1 failed",
        "{stdout}"
    );
    assert!(stdout.contains("FAIL wrong on purpose"), "{stdout}");
}

#[test]
fn policy_lint_warns_about_shadowed_rules() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(
        &p,
        "apiVersion: warden.dev/v1\nkind: Policy\nname: x\ndefault: allow\nrules:\n  - id: all-db\n    tools: [\"db.*\"]\n    effect: deny\n    priority: 5\n  - id: one-db\n    tools: [db.read]\n    effect: allow\n  - id: never\n    when: 'false'\n    effect: deny\n",
    )
    .unwrap();
    let out = warden(&["policy", "lint", p.to_str().unwrap()], "");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.contains("warning[shadowed]: rule `one-db`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning[never-matches]: rule `never`"),
        "{stdout}"
    );
    let out = warden(
        &["policy", "lint", "--deny-warnings", p.to_str().unwrap()],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn policy_explain_shows_every_candidate() {
    let (_d, p) = policy_dir();
    let out = warden(
        &["policy", "explain", "--policy", p.to_str().unwrap()],
        r#"{"agent":"a","tool":"fs.read"}"#,
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("MATCH -> allow"), "{stdout}");
    assert!(
        stdout.contains("verdict: allow because rule `read`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 excluded by point/tool index"),
        "{stdout}"
    );
}

#[test]
fn bench_prints_json_lines() {
    let out = warden(&["bench", "policy", "--json", "--time-ms", "5"], "");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let names: Vec<String> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["median_ns"].as_f64().unwrap() > 0.0);
            assert!(v["p99_ns"].as_f64().unwrap() >= v["median_ns"].as_f64().unwrap());
            v["workload"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(names.contains(&"policy-1000/match-last".to_owned()));
    assert!(names.contains(&"policy-cel".to_owned()));
    assert!(names.contains(&"rego-100/match-last".to_owned()));
    assert!(names.contains(&"cedar-100/match-last".to_owned()));
    assert_eq!(names.len(), 13);
}

#[test]
fn bench_mcp_prints_direct_single_and_multi_gateway_lines() {
    let out = warden(&["bench", "mcp", "--json", "--time-ms", "5"], "");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|v| v["workload"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "mcp/tools-call/direct",
            "mcp/tools-call/gateway",
            "mcp/tools-call",
            "mcp/tools-call-multi/gateway",
            "mcp/tools-call-multi",
        ]
    );
    for v in &lines {
        // At least 1000 answered calls each, whatever the time budget.
        assert!(v["samples"].as_u64().unwrap() >= 1000, "{v}");
        let (median, p99, p999) = (
            v["median_ns"].as_f64().unwrap(),
            v["p99_ns"].as_f64().unwrap(),
            v["p999_ns"].as_f64().unwrap(),
        );
        if v["workload"].as_str().unwrap().ends_with("/gateway")
            || v["workload"] == "mcp/tools-call/direct"
        {
            assert!(median > 0.0 && p99 >= median && p999 >= p99, "{v}");
        } else {
            // Differences to the direct round trip: the same line shape plus why.
            assert!(v["note"].as_str().unwrap().contains("minus direct"), "{v}");
        }
    }
}

#[test]
fn kill_unkill_and_audit_through_the_cli() {
    let (d, p) = policy_dir();
    let data = d.path().join("data");
    let data_s = data.to_str().unwrap();
    let p_s = p.to_str().unwrap();
    let action = r#"{"agent":"bot","tool":"fs.read"}"#;
    let out = warden(&["check", "-p", p_s, "--data-dir", data_s], action);
    assert_eq!(out.status.code(), Some(0));
    let out = warden(
        &[
            "kill",
            "--agent",
            "bot",
            "--reason",
            "incident 7",
            "--by",
            "alice",
            "--data-dir",
            data_s,
        ],
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = warden(&["check", "-p", p_s, "--data-dir", data_s], action);
    assert_eq!(out.status.code(), Some(1));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["reasons"][0], "killed:agent");
    assert!(d["reasons"][1].as_str().unwrap().contains("incident 7"));
    let out = warden(
        &["check", "-p", p_s, "--data-dir", data_s],
        r#"{"agent":"other","tool":"fs.read"}"#,
    );
    assert_eq!(out.status.code(), Some(0), "other agents unaffected");
    assert_eq!(
        warden(&["unkill", "--agent", "bot", "--data-dir", data_s], "")
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        warden(&["unkill", "--agent", "bot", "--data-dir", data_s], "")
            .status
            .code(),
        Some(1),
        "nothing to lift"
    );
    assert_eq!(
        warden(&["check", "-p", p_s, "--data-dir", data_s], action)
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        warden(
            &[
                "kill",
                "--agent",
                "x",
                "--session",
                "y",
                "--reason",
                "r",
                "--data-dir",
                data_s
            ],
            ""
        )
        .status
        .code(),
        Some(2),
        "one target only"
    );

    let out = warden(&["audit", "verify", "--data-dir", data_s], "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 4 checks × (policy_loaded + decision) + kill + unkill.
    assert_eq!(report["records"], 10);
    let out = warden(&["audit", "export", "--data-dir", data_s], "");
    let kinds: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["record"]["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "decision").count(), 4);
    assert!(kinds.contains(&"kill".to_owned()) && kinds.contains(&"unkill".to_owned()));
    let out = warden(
        &["audit", "prove", "--index", "3", "--data-dir", data_s],
        "",
    );
    assert_eq!(out.status.code(), Some(0));
    let proof: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(proof["index"], 3);

    // Tamper with a record: verify names the problem and exits 1.
    let seg = std::fs::read_dir(data.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment file");
    let mut bytes = std::fs::read(&seg).unwrap();
    let pos = bytes.windows(8).position(|w| w == b"decision").unwrap();
    bytes[pos] ^= 0x20;
    std::fs::write(&seg, bytes).unwrap();
    let out = warden(&["audit", "verify", "--data-dir", data_s], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FAILED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
