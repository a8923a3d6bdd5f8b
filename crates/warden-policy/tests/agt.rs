//! AGT `governance.toolkit/v1` files load unchanged and decide with AGT's meaning.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::time::Duration;
use warden_core::{Action, Obligation, Point, Verdict};
use warden_policy::{PolicySet, RuleSource, Source};

const AGT: &str = r#"apiVersion: governance.toolkit/v1
version: "1.0"
name: agt-example
description: imported unchanged
agents: ["*"]
scope: global
created_at: 2026-01-01T00:00:00Z
default_action: allow
rules:
  - name: block-drops
    condition: "action.type in ['drop', 'delete']"
    action: deny
    priority: 100
  - name: big-transfer
    condition: "amount > 5000 and user.role != 'admin'"
    action: require_approval
    approvers: [finance]
    priority: 50
  - name: audit-search
    condition: "tool_name == 'search'"
    action: log
    limit: "100/hour"
  - name: disabled
    condition: "true_flag"
    action: deny
    enabled: false
  - name: output-check
    stage: pre_output
    condition: "contains_pii"
    action: warn
"#;

fn with_context(point: Point, ctx: serde_json::Value) -> Action {
    let tool = point.requires_tool().then(|| "any_tool".to_owned());
    Action::new(point, "agent-1", tool)
        .unwrap()
        .with_context(ctx.as_object().unwrap().clone())
}

fn set() -> PolicySet {
    PolicySet::from_yaml(AGT).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn agt_rules_decide_over_context() {
    let s = set();
    let v = |ctx| s.evaluate(&with_context(Point::PreToolCall, ctx)).verdict;
    assert_eq!(v(json!({"action": {"type": "drop"}})), Verdict::Deny);
    assert_eq!(v(json!({"action": {"type": "select"}})), Verdict::Allow);
    assert_eq!(
        v(json!({"amount": 9000, "user": {"role": "analyst"}})),
        Verdict::Escalate
    );
    assert_eq!(
        v(json!({"amount": 9000, "user": {"role": "admin"}})),
        Verdict::Allow
    );
    // AGT's missing-value semantics: no error, no match → default.
    assert_eq!(v(json!({})), Verdict::Allow);
    assert_eq!(
        v(json!({"true_flag": true})),
        Verdict::Allow,
        "disabled rule is left out"
    );
}

#[test]
fn agt_actions_map_to_verdicts_and_obligations() {
    let s = set();
    let d = s.decide(&with_context(
        Point::PreToolCall,
        json!({"amount": 6000.5, "user": {"role": "x"}}),
    ));
    assert_eq!(d.verdict, Verdict::Escalate);
    assert!(
        matches!(&d.obligations[0], Obligation::Approval { approvers, .. } if approvers == &["finance"])
    );
    let d = s.decide(&with_context(
        Point::PreToolCall,
        json!({"tool_name": "search"}),
    ));
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(
        d.obligations,
        vec![Obligation::AuditMark {
            label: "audit-search".into()
        }]
    );
    let rule = s.rules().iter().find(|r| r.id == "audit-search").unwrap();
    assert_eq!(rule.source, RuleSource::Agt);
    let limit = rule.limit.unwrap();
    assert_eq!((limit.count, limit.per), (100, Duration::from_secs(3600)));
}

#[test]
fn stages_map_to_points() {
    let s = set();
    let out = with_context(Point::Output, json!({"contains_pii": true}));
    assert_eq!(s.evaluate(&out).verdict, Verdict::Warn);
    let pre = with_context(Point::PreToolCall, json!({"contains_pii": true}));
    assert_eq!(
        s.evaluate(&pre).verdict,
        Verdict::Allow,
        "pre_output rule does not run at pre_tool_call"
    );
}

#[test]
fn missing_default_action_is_deny_like_agt() {
    let s =
        PolicySet::from_yaml("apiVersion: governance.toolkit/v1\nname: x\nrules: []\n").unwrap();
    assert_eq!(s.default_verdict(), Verdict::Deny);
}

#[test]
fn agent_lists_filter() {
    let s = PolicySet::from_yaml(
        "apiVersion: governance.toolkit/v1\nname: x\nagents: [bot-a]\ndefault_action: allow\nrules:\n  - name: r\n    condition: \"x == 'y'\"\n    action: deny\n",
    )
    .unwrap();
    let a = |agent: &str| {
        Action::tool_call(agent, "t")
            .unwrap()
            .with_context(json!({"x": "y"}).as_object().unwrap().clone())
    };
    assert_eq!(s.evaluate(&a("bot-a")).verdict, Verdict::Deny);
    assert_eq!(s.evaluate(&a("bot-b")).verdict, Verdict::Allow);
}

#[test]
fn agt_errors_name_the_field() {
    let head = "apiVersion: governance.toolkit/v1\nname: x\ndefault_action: allow\nrules:\n";
    for (rule, want) in [
        (
            "  - name: a\n    condition: \"x ==\"\n    action: deny\n",
            "rules[0].condition",
        ),
        (
            "  - name: a\n    condition: \"x == 'y'\"\n    action: block\n",
            "unknown action `block`",
        ),
        (
            "  - name: a\n    condition: \"x == 'y'\"\n    action: deny\n    limit: lots\n",
            "rules[0].limit",
        ),
        (
            "  - name: a\n    condition: \"x == 'y'\"\n    stage: later\n",
            "unknown stage `later`",
        ),
        (
            "  - name: a\n    condition: \"x == 'y'\"\n    typo: 1\n",
            "unknown field `typo`",
        ),
    ] {
        let e = PolicySet::from_yaml(&format!("{head}{rule}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("<inline>:5:")
                || e.starts_with("<inline>:6:")
                || e.starts_with("<inline>:7:")
                || e.starts_with("<inline>:8:"),
            "{e}"
        );
        assert!(e.contains(want), "`{e}` should contain `{want}`");
    }
    let e =
        PolicySet::from_yaml("apiVersion: governance.toolkit/v1\nname: x\nextends: base.yaml\n")
            .unwrap_err()
            .to_string();
    assert!(e.contains("extends"), "{e}");
}

#[test]
fn agt_and_warden_files_compose() {
    let warden = "apiVersion: warden.dev/v1\nkind: Policy\nname: w\ndefault: allow\nrules:\n  - id: no-shell\n    tools: [shell]\n    effect: deny\n";
    let s = PolicySet::from_sources(&[
        Source {
            label: "w.yaml".into(),
            text: warden.into(),
        },
        Source {
            label: "agt.yaml".into(),
            text: AGT.into(),
        },
    ])
    .unwrap();
    assert_eq!(
        s.evaluate(&Action::tool_call("a", "shell").unwrap())
            .verdict,
        Verdict::Deny
    );
    let drop = Action::tool_call("a", "db").unwrap().with_context(
        json!({"action": {"type": "delete"}})
            .as_object()
            .unwrap()
            .clone(),
    );
    assert_eq!(s.evaluate(&drop).verdict, Verdict::Deny);
    assert_eq!(
        s.evaluate(&Action::tool_call("a", "db").unwrap()).verdict,
        Verdict::Allow
    );
}
