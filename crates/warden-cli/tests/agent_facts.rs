//! Rings and agent facts in the policy tools: `warden check`, `warden policy test`, `warden policy explain`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Output;

use std::path::Path;

const POLICY: &str = r#"apiVersion: warden.dev/v1
kind: Policy
name: facts
default: allow
rules:
  - id: deploy-needs-trust
    tools: [deploy]
    when: agent.trust < 700
    effect: deny
    reason: deploys need trust 700
rings:
  tools:
    - tools: [deploy, search]
      ring: 3
    - tools: ["shell.*"]
      ring: 0
      elevate: {approvers: [secops], ttl: 5m}
"#;

use common::warden;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn setup(test: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
    std::fs::write(
        dir.path().join("p_test.yaml"),
        format!("apiVersion: warden.dev/v1\nkind: PolicyTest\ncases:\n{test}"),
    )
    .unwrap();
    dir
}

fn run_tests(dir: &Path) -> Output {
    warden(&["policy", "test", dir.to_str().unwrap()], "")
}

#[test]
fn check_applies_the_ring_stage() {
    let dir = setup("");
    let p = dir.path().join("p.yaml");
    let out = warden(
        &["check", "--policy", p.to_str().unwrap()],
        r#"{"agent": "bot", "tool": "shell.exec"}"#,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("ring:insufficient"), "{}", text(&out));
    let out = warden(
        &["check", "--policy", p.to_str().unwrap()],
        r#"{"agent": "bot", "tool": "unlisted"}"#,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "default tool ring 2: {}",
        text(&out)
    );
    let out = warden(
        &["check", "--policy", p.to_str().unwrap()],
        r#"{"agent": "bot", "tool": "search"}"#,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn check_with_data_dir_reads_the_trust_book() {
    let dir = setup("");
    let p = dir.path().join("p.yaml");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let action = r#"{"agent": "bot", "tool": "deploy"}"#;
    let args = [
        "check",
        "--policy",
        p.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let out = warden(&args, action);
    assert_eq!(out.status.code(), Some(1), "baseline 400: {}", text(&out));
    let set = warden(
        &[
            "trust",
            "set",
            "--data-dir",
            data.to_str().unwrap(),
            "--agent",
            "bot",
            "--score",
            "850",
        ],
        "",
    );
    assert!(set.status.success(), "{}", text(&set));
    let out = warden(&args, action);
    assert_eq!(out.status.code(), Some(0), "trust 850: {}", text(&out));
}

#[test]
fn policy_test_assumes_agent_facts() {
    let dir = setup(
        r#"  - name: baseline is denied
    action: {agent: bot, tool: deploy}
    expect: deny
    rule: deploy-needs-trust
  - name: trusted is allowed
    action: {agent: bot, tool: deploy}
    agent_facts: {trust: 820}
    expect: allow
  - name: a tier alone is its lowest score
    action: {agent: bot, tool: deploy}
    agent_facts: {tier: trusted}
    expect: allow
  - name: ring stage first
    action: {agent: bot, tool: shell.exec}
    agent_facts: {tier: verified}
    expect: escalate
    reason_contains: "ring:insufficient"
"#,
    );
    let out = run_tests(dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("4 passed, 0 failed"), "{}", text(&out));
}

#[test]
fn bad_agent_facts_are_errors_naming_the_line() {
    for (facts, want) in [
        ("{trsut: 820}", "unknown field `trsut`"),
        ("{trust: 1001}", "out of range"),
        ("{tier: godlike}", "unknown tier `godlike`"),
        (
            "{trust: 820, tier: standard}",
            "is in tier `trusted`, not `standard`",
        ),
        ("{}", "give `trust`"),
        ("{trust: -1}", "p_test.yaml:6:"),
    ] {
        let dir = setup(&format!(
            "  - name: c\n    action: {{agent: bot, tool: deploy}}\n    agent_facts: {facts}\n    expect: allow\n"
        ));
        let out = run_tests(dir.path());
        assert_eq!(out.status.code(), Some(2), "{facts}: {}", text(&out));
        let t = text(&out);
        assert!(t.contains(want), "{facts}: {t}");
        assert!(t.contains("p_test.yaml:"), "{facts}: {t}");
    }
}

#[test]
fn unknown_agent_keys_are_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, POLICY.replace("agent.trust < 700", "agent.trsut < 700")).unwrap();
    let out = warden(
        &["check", "--policy", p.to_str().unwrap()],
        r#"{"agent": "bot", "tool": "deploy"}"#,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("p.yaml:"), "{t}");
    assert!(t.contains("unknown key `agent.trsut`"), "{t}");
}

#[test]
fn explain_shows_facts_and_ring_stage() {
    let dir = setup("");
    let p = dir.path().join("p.yaml");
    let deploy = r#"{"agent": "bot", "tool": "deploy"}"#;
    let out = warden(&["policy", "explain", "-p", p.to_str().unwrap()], deploy);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("agent facts: trust=400 tier=probationary ring=3"),
        "{t}"
    );
    assert!(t.contains("ring stage: pass"), "{t}");
    let out = warden(
        &[
            "policy",
            "explain",
            "-p",
            p.to_str().unwrap(),
            "--trust",
            "750",
        ],
        deploy,
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("trust=750 tier=trusted ring=1"), "{t}");
    let out = warden(
        &[
            "policy",
            "explain",
            "-p",
            p.to_str().unwrap(),
            "--tier",
            "verified",
        ],
        r#"{"agent": "bot", "tool": "shell.exec"}"#,
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("ring stage: STOP -> escalate"), "{t}");
    let out = warden(
        &[
            "policy",
            "explain",
            "-p",
            p.to_str().unwrap(),
            "--tier",
            "nope",
        ],
        deploy,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
