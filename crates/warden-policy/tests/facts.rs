//! Agent facts through the public policy API: `evaluate_with`, the baseline
//! of `evaluate`, load errors for unknown `agent` keys, and test cases that
//! assume facts.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use warden_core::{Action, Verdict};
use warden_policy::testing::{self, AssumedFacts, Decider};
use warden_policy::{AgentFacts, PolicySet, Ring};

const POLICY: &str = r#"apiVersion: warden.dev/v1
kind: Policy
name: facts
default: deny
rules:
  - id: trusted
    when: agent.trust >= 700 && agent.tier != 'verified'
    effect: allow
  - id: ring-zero
    when: agent.ring == 0
    effect: warn
"#;

fn call() -> Action {
    Action::tool_call("bot", "t").unwrap()
}

#[test]
fn evaluate_with_uses_the_given_facts() {
    let set = PolicySet::from_yaml(POLICY).unwrap();
    assert!(set.uses_agent_facts());
    assert_eq!(set.evaluate(&call()).verdict, Verdict::Deny);
    let trusted = AgentFacts::new(700, "trusted", Ring::new(1).unwrap()).unwrap();
    assert_eq!(set.evaluate_with(&call(), &trusted).verdict, Verdict::Allow);
    let root = AgentFacts::new(950, "verified", Ring::ZERO).unwrap();
    let d = set.decide_with(&call(), &root);
    assert_eq!(
        (d.verdict, d.rule_ids),
        (Verdict::Warn, vec!["ring-zero".to_owned()])
    );
    let ex = set.explain_with(&call(), &root);
    assert_eq!(ex.evaluation.verdict, Verdict::Warn);
    let plain = PolicySet::from_yaml(
        &POLICY
            .replace(
                "agent.trust >= 700 && agent.tier != 'verified'",
                "agent.id == 'bot'",
            )
            .replace("agent.ring == 0", "tool == 'x'"),
    )
    .unwrap();
    assert!(!plain.uses_agent_facts());
}

#[test]
fn baseline_facts_follow_the_rings_block() {
    let set = PolicySet::from_yaml(POLICY).unwrap();
    assert_eq!(set.baseline_facts("bot"), AgentFacts::BASELINE);
    let with_rings =
        format!("{POLICY}rings:\n  tiers: {{probationary: 2}}\n  agents: {{root: 0}}\n");
    let set = PolicySet::from_yaml(&with_rings).unwrap();
    assert_eq!(set.baseline_facts("bot").ring(), Ring::new(2).unwrap());
    assert_eq!(set.baseline_facts("root").ring(), Ring::ZERO);
    // `evaluate` (no kernel) sees the grant of the baseline tier.
    let root = Action::tool_call("root", "t").unwrap();
    assert_eq!(set.evaluate(&root).verdict, Verdict::Warn);
}

#[test]
fn unknown_agent_keys_name_file_and_line() {
    let bad = POLICY.replace("agent.ring == 0", "agent.rnig == 0");
    let e = PolicySet::from_yaml(&bad).unwrap_err().to_string();
    assert!(e.contains("<inline>:10:11: rules[1].when"), "{e}");
    assert!(e.contains("unknown key `agent.rnig`"), "{e}");
}

fn suite(cases: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
    std::fs::write(
        dir.path().join("p_test.yaml"),
        format!("apiVersion: warden.dev/v1\nkind: PolicyTest\ncases:\n{cases}"),
    )
    .unwrap();
    dir
}

/// A decider that maps an assumed trust score straight to facts.
struct Fixed;

impl Decider for Fixed {
    fn decide(
        &self,
        set: &PolicySet,
        action: &Action,
        facts: Option<&AssumedFacts>,
    ) -> Result<warden_core::Decision, String> {
        let f = match facts.and_then(|f| f.trust) {
            Some(t) => AgentFacts::new(t, "trusted", Ring::new(1).unwrap()).ok_or("range")?,
            None => AgentFacts::BASELINE,
        };
        Ok(set.decide_with(action, &f))
    }
}

#[test]
fn test_cases_assume_facts_through_the_decider() {
    let dir = suite(
        "  - name: a\n    action: {agent: bot, tool: t}\n    agent_facts: {trust: 800}\n    expect: allow\n  - name: b\n    action: {agent: bot, tool: t}\n    expect: deny\n",
    );
    let report = testing::run_with(&[dir.path().to_path_buf()], &Fixed).unwrap();
    assert_eq!((report.passed(), report.failed()), (2, 0));
    // The policy-only runner refuses assumptions it cannot make, naming the place.
    let e = testing::run(&[dir.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("p_test.yaml:6:"), "{e}");
    assert!(e.contains("agent_facts"), "{e}");
    let dir = suite(
        "  - name: a\n    action: {agent: bot, tool: t}\n    agent_facts: {trust: 800, ring: 0}\n    expect: allow\n",
    );
    let e = testing::run_with(&[dir.path().to_path_buf()], &Fixed)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `ring`"), "{e}");
}
