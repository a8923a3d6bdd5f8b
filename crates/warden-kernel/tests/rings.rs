//! Execution rings through the public kernel API.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{book, kernel};
use std::sync::Arc;
use warden_core::{Action, Obligation, Point, Verdict};
use warden_identity::{Signal, now_secs};
use warden_kernel::{Kernel, Outcome};
use warden_policy::PolicyHandle;
use warden_runtime::Resolution;

const POLICY: &str = r#"apiVersion: warden.dev/v1
kind: Policy
name: rings-test
default: allow
rules:
  - id: no-secrets
    tools: [read_secrets]
    effect: deny
rings:
  agents: {root: 0}
  tools:
    - tools: ["shell.*"]
      ring: 0
      elevate: {approvers: [secops], ttl: 15m}
    - tools: [deploy]
      ring: 1
    - tools: [search, read_secrets]
      ring: 3
  quotas:
    - {ring: 2, concurrency: 2}
    - {ring: 1, rate: 3/hour}
"#;

fn call(agent: &str, tool: &str) -> Action {
    Action::tool_call(agent, tool).unwrap()
}

/// Verdict and first reason.
fn decide(k: &Kernel, agent: &str, tool: &str) -> (Verdict, String) {
    let d = k.decide(&call(agent, tool));
    (d.verdict, d.reasons.first().cloned().unwrap_or_default())
}

fn allowed(k: &Kernel, agent: &str, tool: &str) -> bool {
    decide(k, agent, tool).0 == Verdict::Allow
}

#[test]
fn no_rings_block_changes_nothing() {
    let k = kernel(
        "apiVersion: warden.dev/v1\nkind: Policy\nname: t\ndefault: allow\n",
        None,
    );
    assert!(allowed(&k, "bot", "shell.exec"));
}

#[test]
fn baseline_tier_without_trust_book_is_ring_3() {
    // Default baseline 400 = probationary = ring 3: only ring-3 tools.
    let k = kernel(POLICY, None);
    assert!(allowed(&k, "bot", "search"));
    let d = k.decide(&call("bot", "unknown.tool"));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.reasons[0], "ring:insufficient");
    assert!(d.reasons[1].contains("ring 3") && d.reasons[1].contains("ring 2"));
    // An explicit ring-0 grant is suspended for a ring-3 tier.
    assert_eq!(decide(&k, "root", "deploy").1, "ring:insufficient");
}

#[test]
fn grants_tiers_and_unknown_tool_default() {
    let k = kernel(POLICY, Some(book(950.0))); // verified: ring 1
    assert!(allowed(&k, "bot", "deploy"));
    assert!(allowed(&k, "root", "shell.exec"));
    // Unknown tool needs ring 2: ring 1 and 0 agents may call it.
    assert!(allowed(&k, "root", "mystery"));
    let k = kernel(POLICY, Some(book(600.0))); // standard: ring 2
    assert!(allowed(&k, "bot", "mystery"));
    assert_eq!(decide(&k, "bot", "deploy").1, "ring:insufficient");
    assert!(allowed(&k, "root", "deploy"));
    // The ring stage runs before the policy: a ring-sufficient call still meets the rules.
    assert_eq!(decide(&k, "bot", "read_secrets").0, Verdict::Deny);
    assert_eq!(
        k.decide(&call("bot", "read_secrets")).rule_ids,
        ["no-secrets"]
    );
}

#[test]
fn ring_rate_limit() {
    let k = kernel(POLICY, Some(book(950.0))); // ring 1: 3/hour
    for _ in 0..3 {
        assert!(allowed(&k, "bot", "deploy"));
    }
    assert_eq!(decide(&k, "bot", "deploy").1, "ring:rate");
    assert!(allowed(&k, "bot2", "deploy"));
}

#[test]
fn ring_concurrency_released_on_outcome() {
    let k = kernel(POLICY, Some(book(600.0))); // ring 2: 2 in flight
    let a = k.decide(&call("bot", "x"));
    let b = k.decide(&call("bot", "y"));
    assert_eq!((a.verdict, b.verdict), (Verdict::Allow, Verdict::Allow));
    assert_eq!(decide(&k, "bot", "z").1, "ring:concurrency");
    // Recording the outcome frees the slot.
    k.record_outcome(&a.decision_id, Outcome::default())
        .unwrap();
    let c = k.decide(&call("bot", "z"));
    assert_eq!(c.verdict, Verdict::Allow);
    assert_eq!(decide(&k, "bot", "w").1, "ring:concurrency");
    // Unknown decision ids and repeated outcomes free nothing twice.
    k.record_outcome(&a.decision_id, Outcome::default())
        .unwrap();
    k.record_outcome("no-such-id", Outcome::default()).unwrap();
    assert_eq!(decide(&k, "bot", "w").1, "ring:concurrency");
    k.record_outcome(&b.decision_id, Outcome::default())
        .unwrap();
    k.record_outcome(&c.decision_id, Outcome::default())
        .unwrap();
    assert!(allowed(&k, "bot", "w"));
}

#[test]
fn policy_denials_hold_no_concurrency_slot() {
    let k = kernel(POLICY, Some(book(600.0)));
    for _ in 0..10 {
        assert_eq!(decide(&k, "bot", "read_secrets").0, Verdict::Deny);
    }
    assert!(allowed(&k, "bot", "x"));
    assert!(allowed(&k, "bot", "x"));
}

#[test]
fn elevation_approved_allows_until_ttl_and_denied_stays_denied() {
    let k = kernel(POLICY, Some(book(600.0))); // ring 2
    let d = k.decide(&call("bot", "shell.exec"));
    assert_eq!(d.verdict, Verdict::Escalate);
    assert_eq!(d.reasons[0], "ring:insufficient");
    assert!(d.obligations.iter().any(|o| matches!(
        o,
        Obligation::Approval { approvers, .. } if approvers == &["secops".to_owned()]
    )));
    assert_eq!(k.pending_approvals().len(), 1);
    let r = k
        .resolve_approval(&d.decision_id, "secops", true, None)
        .unwrap();
    assert!(matches!(r, Resolution::Approved { .. }));
    // Elevated for that entry's tools only.
    assert!(allowed(&k, "bot", "shell.exec"));
    assert!(allowed(&k, "bot", "shell.ls"));
    assert_eq!(decide(&k, "bot", "deploy").1, "ring:insufficient");
    assert_eq!(decide(&k, "bot2", "shell.exec").0, Verdict::Escalate);
    // Expiry at the TTL is tested in warden-runtime's ring tests with an
    // explicit clock; the kernel reads the system clock.

    // Denied: stays denied and grants nothing.
    let d = k.decide(&call("bot3", "shell.exec"));
    assert_eq!(d.verdict, Verdict::Escalate);
    k.resolve_approval(&d.decision_id, "secops", false, None)
        .unwrap();
    assert_eq!(decide(&k, "bot3", "shell.exec").0, Verdict::Escalate);
    // Approving an already-resolved escalation fails and grants nothing.
    assert!(
        k.resolve_approval(&d.decision_id, "secops", true, None)
            .is_err()
    );
    assert_eq!(decide(&k, "bot3", "shell.exec").0, Verdict::Escalate);
}

#[test]
fn ring_denial_without_elevate_is_a_plain_deny() {
    let k = kernel(POLICY, Some(book(600.0)));
    let d = k.decide(&call("bot", "deploy"));
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(d.obligations.is_empty());
    assert!(k.pending_approvals().is_empty());
}

#[test]
fn demotion_when_trust_falls() {
    let book = book(750.0); // trusted: ring 1
    let k = kernel(POLICY, Some(Arc::clone(&book)));
    assert!(allowed(&k, "bot", "deploy"));
    book.record("bot", Signal::PolicyViolation, &[], now_secs())
        .unwrap(); // 675: standard, ring 2
    assert_eq!(decide(&k, "bot", "deploy").1, "ring:insufficient");
    let d = k.decide(&call("bot", "shell.exec"));
    k.resolve_approval(&d.decision_id, "secops", true, None)
        .unwrap();
    assert!(allowed(&k, "bot", "shell.exec"));
    for _ in 0..3 {
        book.record("bot", Signal::PolicyViolation, &[], now_secs())
            .unwrap();
    }
    // Below 500: probationary, ring 3; the elevation is suspended.
    assert!(book.score("bot", now_secs()).unwrap() < 500.0);
    assert_eq!(decide(&k, "bot", "shell.exec").1, "ring:insufficient");
    assert_eq!(decide(&k, "bot", "mystery").1, "ring:insufficient");
    assert!(allowed(&k, "bot", "search"));
    // A ring-0 grant is demoted too.
    let root = kernel(POLICY, Some(Arc::clone(&book)));
    assert!(allowed(&root, "root", "shell.exec"));
    for _ in 0..4 {
        book.record("root", Signal::PolicyViolation, &[], now_secs())
            .unwrap();
    }
    assert_eq!(decide(&root, "root", "shell.exec").1, "ring:insufficient");
}

#[test]
fn reload_swaps_the_ring_book() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, POLICY).unwrap();
    let k = Kernel::builder(PolicyHandle::load(&[&path]).unwrap())
        .trust(book(600.0))
        .build()
        .unwrap();
    assert_eq!(decide(&k, "bot", "deploy").1, "ring:insufficient");
    std::fs::write(&path, POLICY.replace("ring: 1\n", "ring: 2\n")).unwrap();
    k.reload_policy().unwrap();
    assert!(allowed(&k, "bot", "deploy"));
    // Rings removed: the stage does nothing.
    let cut = POLICY.find("rings:").unwrap();
    std::fs::write(&path, &POLICY[..cut]).unwrap();
    k.reload_policy().unwrap();
    assert!(allowed(&k, "bot", "shell.exec"));
    // A broken rings block keeps the old policy (no rings) in force.
    std::fs::write(&path, format!("{}rings:\n  bogus: 1\n", &POLICY[..cut])).unwrap();
    assert!(k.reload_policy().is_err());
    assert!(allowed(&k, "bot", "shell.exec"));
    // And back: rings enforced again.
    std::fs::write(&path, POLICY).unwrap();
    k.reload_policy().unwrap();
    assert_eq!(decide(&k, "bot", "shell.exec").0, Verdict::Escalate);
}

#[test]
fn only_pre_tool_call_is_ring_checked() {
    let k = kernel(POLICY, None); // ring 3
    assert_eq!(decide(&k, "bot", "shell.exec").1, "ring:insufficient");
    // The result of a call (post_tool_call) is not a new call: no ring check, no counting.
    let post = Action::new(
        Point::PostToolCall,
        "bot".to_owned(),
        Some("shell.exec".to_owned()),
    )
    .unwrap();
    assert_eq!(k.decide(&post).verdict, Verdict::Allow);
    let k = kernel(POLICY, Some(book(600.0))); // ring 2: 2 in flight
    for _ in 0..5 {
        assert_eq!(
            k.decide(
                &Action::new(Point::PostToolCall, "bot".to_owned(), Some("x".to_owned())).unwrap()
            )
            .verdict,
            Verdict::Allow
        );
    }
    assert!(allowed(&k, "bot", "x"));
    assert!(allowed(&k, "bot", "x"));
    assert_eq!(decide(&k, "bot", "x").1, "ring:concurrency");
}
