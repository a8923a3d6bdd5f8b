//! `warden policy lint|test|explain` and `warden check` over Rego and Cedar
//! sources (the shipped docs/examples directories).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Output;

use std::path::PathBuf;

use common::warden;

fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/examples")
        .join(name)
        .display()
        .to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn lint_counts_cedar_and_rego_sources() {
    let out = warden(&["policy", "lint", &example("cedar")], "");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains("1 rules, 1 Cedar source (5 policies) from 1 policies"),
        "{}",
        stdout(&out)
    );
    let out = warden(&["policy", "lint", &example("rego")], "");
    assert!(stdout(&out).contains("1 Rego source"), "{}", stdout(&out));
}

#[test]
fn lint_warns_about_cedar_policies_that_never_apply() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "apiVersion: warden.dev/v1\nkind: Policy\nname: n\ndefault: deny\ncedar:\n  policies: [p.cedar]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.cedar"),
        "@id(\"users\")\npermit(principal == User::\"x\", action, resource);\n",
    )
    .unwrap();
    let d = dir.path().display().to_string();
    let out = warden(&["policy", "lint", "--deny-warnings", &d], "");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let s = stdout(&out);
    assert!(s.contains("warning[never-applies]: rule `users`"), "{s}");
    assert!(s.contains("warning[unvalidated]"), "{s}");
    assert!(s.contains("p.cedar:1:1"), "{s}");
}

#[test]
fn broken_cedar_file_is_a_load_error_with_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "apiVersion: warden.dev/v1\nkind: Policy\nname: n\ndefault: deny\ncedar:\n  policies: [p.cedar]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.cedar"),
        "permit(principal, action, resource);\n\nforbid(principal, action resource);\n",
    )
    .unwrap();
    let d = dir.path().display().to_string();
    let out = warden(&["check", "-p", &d], r#"{"agent":"a","tool":"t"}"#);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("p.cedar:3:"), "{err}");
}

#[test]
fn test_command_runs_cedar_cases_and_rego_test_rules() {
    let out = warden(&["policy", "test", &example("cedar")], "");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains("8 passed, 0 failed"),
        "{}",
        stdout(&out)
    );
    let out = warden(&["policy", "test", "-v", &example("rego-tests")], "");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let s = stdout(&out);
    assert!(
        s.contains("ok   rego data.warden_test.test_blocked_host_denied"),
        "{s}"
    );
    assert!(s.contains("5 passed, 0 failed"), "{s}");
}

#[test]
fn explain_and_check_show_cedar_results() {
    let action = r#"{"agent":"bot","tool":"fs.read","args":{"path":"/etc/shadow"}}"#;
    let out = warden(&["policy", "explain", "-p", &example("cedar")], action);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let s = stdout(&out);
    assert!(
        s.contains("[cedar] cedar:agents.cedar") && s.contains("DECIDED -> deny by no-etc"),
        "{s}"
    );
    assert!(s.contains("deny overrides across sources"), "{s}");
    let out = warden(
        &["policy", "explain", "-p", &example("cedar")],
        r#"{"agent":"bot","tool":"fs.read","args":{"path":"/tmp/x"}}"#,
    );
    assert!(
        stdout(&out).contains("no applicable policy: no decision"),
        "{}",
        stdout(&out)
    );
    // Escalate from Cedar: exit 3 and the approval obligation.
    let out = warden(
        &["check", "-p", &example("cedar")],
        r#"{"agent":"payer","tool":"payments.send","args":{"amount":20000,"currency":"EUR"}}"#,
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let d: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(d["rule_ids"][0], "large-payment");
    assert_eq!(d["obligations"][0]["approvers"][1], "secops");
}
