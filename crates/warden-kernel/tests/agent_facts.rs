//! `agent.trust`, `agent.tier`, `agent.ring` in policy conditions, ring
//! state across reloads, and expiry of held ring slots — through the kernel.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{book, kernel};
use std::sync::Arc;
use std::time::Duration;
use warden_core::{Action, Point, Verdict};
use warden_identity::{Signal, TrustConfig, now_secs};
use warden_kernel::{Kernel, Outcome};
use warden_policy::{BASELINE_TRUST, PolicyHandle, PolicySet};
use warden_runtime::Resolution;

/// Each rule reports one fact through its reason; `probe` tools are ring 3.
const FACTS_POLICY: &str = r#"apiVersion: warden.dev/v1
kind: Policy
name: facts
default: deny
rules:
  - id: trusted-deploys
    tools: [deploy]
    when: agent.trust >= 700 && agent.tier in ['trusted', 'verified']
    effect: allow
    reason: trusted agent
  - id: ring-one-admin
    tools: [admin]
    when: agent.ring <= 1
    effect: allow
    reason: ring 1 or better
  - id: interpreted
    tools: [interp]
    when: agent.trust + 0 >= 500 && agent['tier'] == 'standard' && size(agent) == 4
    effect: allow
    reason: interpreter sees the facts
  - id: exact
    tools: [exact]
    when: agent.trust == 812 && agent.tier == 'trusted' && agent.ring == 1
    effect: allow
"#;

const RINGS: &str = r#"rings:
  agents: {root: 0}
  tools:
    - tools: ["shell.*"]
      ring: 0
      elevate: {approvers: [secops], ttl: 15m}
    - tools: [probe, deploy, admin, interp, exact, free]
      ring: 3
  quotas:
    - {ring: 2, concurrency: 2, rate: 5/hour}
"#;

fn verdict(k: &Kernel, agent: &str, tool: &str) -> Verdict {
    k.decide(&Action::tool_call(agent, tool).unwrap()).verdict
}

#[test]
fn baseline_matches_the_identity_default() {
    assert_eq!(f64::from(BASELINE_TRUST), TrustConfig::default().baseline);
}

#[test]
fn trust_and_tier_come_from_the_trust_book() {
    let trust = book(400.0);
    let k = kernel(FACTS_POLICY, Some(Arc::clone(&trust)));
    assert_eq!(verdict(&k, "bot", "deploy"), Verdict::Deny);
    trust.set("bot", 812.7, now_secs()).unwrap();
    // Same kernel, next decision: the facts are read per decision.
    assert_eq!(verdict(&k, "bot", "deploy"), Verdict::Allow);
    // Rounded down: 812.7 is 812; trusted maps to ring 1 without a rings: block.
    assert_eq!(verdict(&k, "bot", "exact"), Verdict::Allow);
    assert_eq!(verdict(&k, "bot", "admin"), Verdict::Allow);
    assert_eq!(verdict(&k, "other", "deploy"), Verdict::Deny);
    // Exactly at the threshold.
    trust.set("edge", 700.0, now_secs()).unwrap();
    assert_eq!(verdict(&k, "edge", "deploy"), Verdict::Allow);
    trust.set("edge", 699.99, now_secs()).unwrap();
    assert_eq!(verdict(&k, "edge", "deploy"), Verdict::Deny);
    // Falling trust changes the facts at once.
    trust.set("bot", 812.0, now_secs()).unwrap();
    for _ in 0..2 {
        trust
            .record("bot", Signal::PolicyViolation, &[], now_secs())
            .unwrap();
    }
    assert!(trust.score("bot", now_secs()).unwrap() < 700.0);
    assert_eq!(verdict(&k, "bot", "deploy"), Verdict::Deny);
    assert_eq!(
        verdict(&k, "bot", "admin"),
        Verdict::Deny,
        "standard: ring 2"
    );
}

#[test]
fn interpreter_sees_the_same_facts() {
    let trust = book(400.0);
    trust.set("bot", 650.0, now_secs()).unwrap();
    let k = kernel(FACTS_POLICY, Some(trust));
    assert_eq!(verdict(&k, "bot", "interp"), Verdict::Allow);
    assert_eq!(verdict(&k, "new", "interp"), Verdict::Deny);
}

#[test]
fn without_a_trust_book_agents_are_at_the_baseline() {
    let k = kernel(
        &FACTS_POLICY.replace(
            "  - id: exact",
            "  - id: baseline\n    tools: [probe]\n    when: agent.trust == 400 && agent.tier == 'probationary' && agent.ring == 3\n    effect: allow\n  - id: exact",
        ),
        None,
    );
    assert_eq!(verdict(&k, "bot", "probe"), Verdict::Allow);
    assert_eq!(verdict(&k, "bot", "deploy"), Verdict::Deny);
}

#[test]
fn the_caller_cannot_claim_facts() {
    let k = kernel(FACTS_POLICY, Some(book(400.0)));
    // Facts in the action's JSON are the caller's words, not the kernel's.
    let claimed: Action = serde_json::from_value(serde_json::json!({
        "point": "pre_tool_call",
        "agent": "bot",
        "tool": "deploy",
        "args": {"trust": 1000, "tier": "verified"},
        "context": {"agent": {"trust": 1000, "tier": "verified", "ring": 0}}
    }))
    .unwrap();
    assert_eq!(k.decide(&claimed).verdict, Verdict::Deny);
    // `agent` is a string: an object there is not an action at all.
    assert!(
        serde_json::from_value::<Action>(serde_json::json!({
            "point": "pre_tool_call",
            "agent": {"id": "bot", "trust": 1000},
            "tool": "deploy"
        }))
        .is_err()
    );
}

#[test]
fn agent_ring_is_the_ring_the_stage_computed() {
    let policy = format!("{FACTS_POLICY}{RINGS}");
    let trust = book(600.0); // standard: ring 2
    let k = kernel(&policy, Some(Arc::clone(&trust)));
    assert_eq!(verdict(&k, "bot", "admin"), Verdict::Deny);
    // A ring-0 grant shows as agent.ring 0.
    assert_eq!(verdict(&k, "root", "admin"), Verdict::Allow);
    // Elevation is per tool: agent.ring is 0 only for the elevated entry's tools.
    let d = k.decide(&Action::tool_call("bot", "shell.exec").unwrap());
    assert_eq!(d.verdict, Verdict::Escalate);
    assert!(matches!(
        k.resolve_approval(&d.decision_id, "secops", true, None)
            .unwrap(),
        Resolution::Approved { .. }
    ));
    assert_eq!(verdict(&k, "bot", "admin"), Verdict::Deny);
    // Demotion: probationary is ring 3, grants suspended, and agent.ring says so.
    trust.set("root", 450.0, now_secs()).unwrap();
    assert_eq!(verdict(&k, "root", "admin"), Verdict::Deny);
    // Without a tool (e.g. an input point) agent.ring is the base ring.
    let input = Action::new(Point::Input, "root".to_owned(), None).unwrap();
    let k2 = kernel(
        &format!(
            "apiVersion: warden.dev/v1\nkind: Policy\nname: i\ndefault: deny\nrules:\n  - id: r\n    points: [input]\n    when: agent.ring == 0\n    effect: allow\n{RINGS}"
        ),
        Some(book(600.0)),
    );
    assert_eq!(k2.decide(&input).verdict, Verdict::Allow);
}

#[test]
fn reload_keeps_slots_counters_and_elevations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    let policy = format!("{FACTS_POLICY}{RINGS}").replace("default: deny", "default: allow");
    std::fs::write(&path, &policy).unwrap();
    let k = Kernel::builder(PolicyHandle::load(&[&path]).unwrap())
        .trust(book(600.0))
        .build()
        .unwrap();
    let held = k.decide(&Action::tool_call("bot", "x").unwrap());
    assert_eq!(held.verdict, Verdict::Allow);
    let d = k.decide(&Action::tool_call("bot", "shell.exec").unwrap());
    k.resolve_approval(&d.decision_id, "secops", true, None)
        .unwrap();
    // A reload of a changed file (an unrelated rule added).
    std::fs::write(
        &path,
        policy.replace(
            "rules:\n",
            "rules:\n  - id: extra\n    tools: [nothing]\n    effect: deny\n",
        ),
    )
    .unwrap();
    k.reload_policy().unwrap();
    // The elevation survived.
    assert_eq!(verdict(&k, "bot", "shell.ls"), Verdict::Allow);
    // The slot of the call in flight still counts: one more fits, not two.
    let second = k.decide(&Action::tool_call("bot", "y").unwrap());
    assert_eq!(second.verdict, Verdict::Allow);
    let third = k.decide(&Action::tool_call("bot", "z").unwrap());
    assert_eq!(third.reasons[0], "ring:concurrency");
    // Its outcome, reported after the reload, frees it in the new book.
    k.record_outcome(&held.decision_id, Outcome::default())
        .unwrap();
    let fourth = k.decide(&Action::tool_call("bot", "z").unwrap());
    assert_eq!(fourth.verdict, Verdict::Allow);
    k.record_outcome(&fourth.decision_id, Outcome::default())
        .unwrap();
    k.record_outcome(&second.decision_id, Outcome::default())
        .unwrap();
    // The rate counter carried over: 5/hour, and 4 ring-2 calls were counted
    // so far (one before the reload; the one refused for concurrency counts).
    assert_eq!(verdict(&k, "bot", "w"), Verdict::Allow);
    assert_eq!(
        k.decide(&Action::tool_call("bot", "w").unwrap()).reasons[0],
        "ring:rate"
    );
    // The shell.* entry removed: its elevation goes with it.
    std::fs::write(
        &path,
        policy.replace(
            "    - tools: [\"shell.*\"]\n      ring: 0\n      elevate: {approvers: [secops], ttl: 15m}\n",
            "",
        ),
    )
    .unwrap();
    k.reload_policy().unwrap();
    std::fs::write(&path, &policy).unwrap();
    k.reload_policy().unwrap();
    assert_eq!(verdict(&k, "bot", "shell.ls"), Verdict::Escalate);
}

#[test]
fn unreported_outcomes_release_slots_after_the_slot_ttl() {
    let policy = format!("{FACTS_POLICY}{RINGS}").replace("default: deny", "default: allow");
    let k = Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(&policy).unwrap()))
        .trust(book(600.0))
        .slot_ttl(Duration::from_millis(100))
        .build()
        .unwrap();
    let long = Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(&policy).unwrap()))
        .trust(book(600.0))
        .build()
        .unwrap();
    for k in [&k, &long] {
        // Two calls whose outcomes never come.
        assert_eq!(verdict(k, "bot", "a"), Verdict::Allow);
        assert_eq!(verdict(k, "bot", "b"), Verdict::Allow);
        assert_eq!(k.held_ring_slots(), 2);
        assert_eq!(
            k.decide(&Action::tool_call("bot", "c").unwrap()).reasons[0],
            "ring:concurrency"
        );
    }
    // Past the TTL and the sweep interval (1 s), the next decision frees them.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(verdict(&k, "bot", "c"), Verdict::Allow);
    assert_eq!(k.held_ring_slots(), 1);
    // The default TTL (10 minutes) keeps them.
    assert_eq!(
        long.decide(&Action::tool_call("bot", "c").unwrap()).reasons[0],
        "ring:concurrency"
    );
    assert_eq!(long.held_ring_slots(), 2);
}
