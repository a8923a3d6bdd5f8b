//! The policy language through the public API: semantics, combining, and every load-error path.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::path::PathBuf;
use warden_core::{Action, Obligation, Point, Verdict};
use warden_policy::{Limits, Outcome, PolicyError, PolicyHandle, PolicySet, Source};

const HEAD: &str = "apiVersion: warden.dev/v1\nkind: Policy\nname: t\n";

fn set(body: &str) -> PolicySet {
    PolicySet::from_yaml(&format!("{HEAD}{body}")).unwrap_or_else(|e| panic!("{e}"))
}

fn err(body: &str) -> String {
    PolicySet::from_yaml(&format!("{HEAD}{body}"))
        .unwrap_err()
        .to_string()
}

fn act(tool: &str, args: serde_json::Value) -> Action {
    Action::tool_call("bot", tool)
        .unwrap()
        .with_args(args.as_object().unwrap().clone())
}

fn verdict(s: &PolicySet, a: &Action) -> Verdict {
    s.evaluate(a).verdict
}

#[test]
fn default_applies_when_nothing_matches() {
    let s = set("default: deny\nrules:\n  - id: r\n    tools: [read]\n    effect: allow\n");
    assert_eq!(verdict(&s, &act("write", json!({}))), Verdict::Deny);
    assert_eq!(verdict(&s, &act("read", json!({}))), Verdict::Allow);
    let d = s.decide(&act("write", json!({})));
    assert!(d.rule_ids.is_empty());
    assert!(d.reasons[0].contains("default is deny"), "{:?}", d.reasons);
    assert!(d.policy_hash.starts_with("sha256:") && d.policy_hash.len() == 71);
}

#[test]
fn priority_wins_then_restrictiveness() {
    let s = set("default: allow
rules:
  - id: low-deny
    tools: [t]
    effect: deny
    priority: 1
  - id: high-allow
    tools: [t]
    effect: allow
    priority: 10
  - id: tie-warn
    tools: [u]
    effect: warn
  - id: tie-escalate
    tools: [u]
    effect: escalate
    approvers: [ops]
    timeout: 30s
  - id: tie-deny
    tools: [u]
    effect: deny
");
    let d = s.decide(&act("t", json!({})));
    assert_eq!(
        (d.verdict, d.rule_ids.clone()),
        (Verdict::Allow, vec!["high-allow".to_owned()])
    );
    let d = s.decide(&act("u", json!({})));
    assert_eq!(
        (d.verdict, d.rule_ids.clone()),
        (Verdict::Deny, vec!["tie-deny".to_owned()])
    );
}

#[test]
fn escalate_and_transform_carry_obligations() {
    let s = set(r#"default: allow
rules:
  - id: pay
    tools: [payments.send]
    when: args.amount > 100
    effect: escalate
    approvers: [finance]
    timeout: 5m
  - id: scrub
    tools: [http.post]
    effect: transform
    transform:
      redact: [args.headers.authorization]
      replace: {args.timeout: 10}
"#);
    let d = s.decide(&act("payments.send", json!({"amount": 500})));
    assert_eq!(d.verdict, Verdict::Escalate);
    assert_eq!(
        d.obligations,
        vec![Obligation::Approval {
            approvers: vec!["finance".into()],
            timeout_ms: 300_000
        }]
    );
    assert_eq!(
        verdict(&s, &act("payments.send", json!({"amount": 5}))),
        Verdict::Allow
    );
    let mut a = act(
        "http.post",
        json!({"headers": {"authorization": "Bearer s3cret"}, "timeout": 900}),
    );
    let d = s.decide(&a);
    assert_eq!(d.verdict, Verdict::Transform);
    for o in &d.obligations {
        o.apply(&mut a).unwrap();
    }
    assert_eq!(
        json!(a.args),
        json!({"headers": {"authorization": "[REDACTED]"}, "timeout": 10})
    );
}

#[test]
fn globs_points_and_agents() {
    let s = set(r#"default: allow
rules:
  - id: shell
    tools: ["shell.*", "exec"]
    agents: ["intern-*"]
    effect: deny
  - id: model
    points: [pre_model_call]
    tools: ["gpt-*"]
    effect: warn
  - id: startup
    points: [agent_startup]
    agents: [rogue]
    effect: deny
"#);
    let intern = |tool: &str| Action::tool_call("intern-7", tool).unwrap();
    assert_eq!(verdict(&s, &intern("shell.run")), Verdict::Deny);
    assert_eq!(verdict(&s, &intern("exec")), Verdict::Deny);
    assert_eq!(
        verdict(&s, &act("shell.run", json!({}))),
        Verdict::Allow,
        "other agents unaffected"
    );
    let m = Action::new(Point::PreModelCall, "bot", Some("gpt-5".into())).unwrap();
    assert_eq!(verdict(&s, &m), Verdict::Warn);
    assert_eq!(
        verdict(&s, &act("gpt-5", json!({}))),
        Verdict::Allow,
        "rule is for pre_model_call only"
    );
    let st = Action::new(Point::AgentStartup, "rogue", None).unwrap();
    assert_eq!(verdict(&s, &st), Verdict::Deny);
    let st = Action::new(Point::AgentStartup, "good", None).unwrap();
    assert_eq!(verdict(&s, &st), Verdict::Allow);
}

#[test]
fn condition_errors_deny_unless_skipped() {
    let s = set("default: allow
rules:
  - id: strict
    tools: [a]
    when: args.amount > 10
    effect: warn
  - id: lenient
    tools: [b]
    when: args.amount > 10
    effect: warn
    on_error: skip
  - id: not-bool
    tools: [c]
    when: args.amount
    effect: allow
");
    let e = s.evaluate(&act("a", json!({})));
    assert_eq!(e.verdict, Verdict::Deny);
    assert!(matches!(e.outcome, Outcome::Failed { .. }));
    let d = s.decide(&act("a", json!({"amount": "lots"})));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.reasons[0], "runtime_error:evaluation_error");
    assert!(d.reasons[1].starts_with("rule `strict`"), "{:?}", d.reasons);
    assert_eq!(
        verdict(&s, &act("b", json!({}))),
        Verdict::Allow,
        "skipped, default applies"
    );
    assert_eq!(verdict(&s, &act("b", json!({"amount": 11}))), Verdict::Warn);
    assert_eq!(verdict(&s, &act("c", json!({"amount": 1}))), Verdict::Deny);
}

#[test]
fn cost_budget_and_deadline_fail_closed() {
    let s = set("default: allow
rules:
  - id: quadratic
    tools: [t]
    when: args.xs.exists(a, args.xs.exists(b, a == b + 1000000))
    effect: warn
");
    let small = act("t", json!({"xs": [1, 2, 3]}));
    assert_eq!(
        verdict(&s, &small),
        Verdict::Allow,
        "{:?}",
        s.decide(&small).reasons
    );
    let big: Vec<i64> = (0..20_000).collect();
    let huge = act("t", json!({ "xs": big }));
    let d = s.decide(&huge);
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.reasons[0], "runtime_error:budget_exceeded");
    // A zero deadline: any condition evaluation is over time.
    let s = s.with_limits(Limits {
        deadline: std::time::Duration::ZERO,
        ..Limits::default()
    });
    let d = s.decide(&small);
    assert_eq!(d.reasons[0], "runtime_error:budget_exceeded");
}

#[test]
fn unicode_and_hostile_args_never_panic_or_allow_by_accident() {
    let s = set(r#"default: deny
rules:
  - id: ok
    tools: [echo]
    when: args.text.size() < 100 && !args.text.contains("rm -rf")
    effect: allow
"#);
    assert_eq!(
        verdict(&s, &act("echo", json!({"text": "héllo ✓ \u{202e}"}))),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&s, &act("echo", json!({"text": "x; rm -rf /"}))),
        Verdict::Deny
    );
    assert_eq!(verdict(&s, &act("echo", json!({"text": 5}))), Verdict::Deny);
    // Lookalike tool name (Cyrillic е) does not hit the `echo` rule: default deny.
    assert_eq!(
        verdict(&s, &act("\u{0435}cho", json!({"text": "hi"}))),
        Verdict::Deny
    );
    let deep = (0..2000).fold(json!(1), |acc, _| serde_json::Value::Array(vec![acc]));
    let mut args = serde_json::Map::new();
    args.insert("text".into(), deep);
    let d = s.decide(&Action::tool_call("bot", "echo").unwrap().with_args(args));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.reasons[0], "runtime_error:invalid_action");
}

#[test]
fn load_errors_name_line_and_field() {
    let cases: &[(&str, &str)] = &[
        ("rules: []\n", "missing required field `default`"),
        ("default: maybe\n", "unknown default verdict `maybe`"),
        (
            "default: allow\nrules:\n  - id: a\n    effect: allow\n    colour: red\n",
            "unknown field `colour`",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    effect: block\n",
            "rules[0].effect: unknown verdict `block`",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    effect: allow\n  - id: a\n    effect: deny\n",
            "duplicate rule id `a`",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    tools: [\"x[\"]\n    effect: allow\n",
            "rules[0].tools[0]: invalid glob",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    when: args.x ==\n    effect: allow\n",
            "rules[0].when: CEL does not compile",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    when: argz.x == 1\n    effect: allow\n",
            "unknown variable `argz`",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    effect: escalate\n",
            "must list at least one approver",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    effect: escalate\n    approvers: [x]\n",
            "must set a timeout",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    effect: escalate\n    approvers: [x]\n    timeout: 5 minutes\n",
            "invalid duration",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    effect: deny\n    approvers: [x]\n",
            "only an escalate rule",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    effect: transform\n",
            "must say what to rewrite",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    effect: transform\n    transform: {redact: [password]}\n",
            "invalid obligation path",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    points: [pre_tool]\n    effect: allow\n",
            "unknown point `pre_tool`",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    tools: []\n    effect: allow\n",
            "empty list",
        ),
        (
            "default: allow\nrules:\n  - id: a\n    effect: allow\n    on_error: ignore\n",
            "expected deny or skip",
        ),
        ("default: allow\ndefault: deny\n", "duplicate"),
        (
            "default: allow\nrules:\n  - id: \"a b\"\n    effect: allow\n",
            "no whitespace",
        ),
        ("default: allow\nrules: {\n", ""),
    ];
    for (body, want) in cases {
        let e = err(body);
        assert!(e.starts_with("<inline>:"), "no file in `{e}`");
        assert!(e.contains(want), "`{e}` should contain `{want}`");
    }
    // Line and column point at the offending rule field.
    let e =
        err("default: allow\nrules:\n  - id: a\n    effect: allow\n  - id: b\n    effect: nope\n");
    assert!(e.starts_with("<inline>:9:13:"), "{e}");
}

#[test]
fn wrong_documents_rejected() {
    let e = PolicySet::from_yaml("apiVersion: v2\nkind: Policy\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("apiVersion"), "{e}");
    let e = PolicySet::from_yaml("apiVersion: warden.dev/v1\nkind: Rules\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("kind"), "{e}");
    let e = PolicySet::from_yaml("").unwrap_err().to_string();
    assert!(!e.is_empty());
    assert!(matches!(
        PolicySet::from_sources(&[]),
        Err(PolicyError::NoPolicy(_))
    ));
    assert!(matches!(
        PolicySet::load::<PathBuf>(&[]),
        Err(PolicyError::NoPolicy(_))
    ));
}

#[test]
fn files_and_directories_compose() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(
        p.join("a.yaml"),
        format!("{HEAD}default: allow\nrules:\n  - id: a\n    tools: [x]\n    effect: deny\n"),
    )
    .unwrap();
    std::fs::create_dir(p.join("sub")).unwrap();
    std::fs::write(
        p.join("sub/b.yml"),
        "apiVersion: warden.dev/v1\nkind: Policy\nname: b\ndefault: warn\nrules:\n  - id: b\n    tools: [y]\n    effect: allow\n",
    )
    .unwrap();
    std::fs::write(p.join("notes.txt"), "ignored").unwrap();
    std::fs::write(p.join("cases_test.yaml"), "not even parsed by load").unwrap();
    let s = PolicySet::load(&[p]).unwrap();
    assert_eq!(s.names(), ["t", "b"]);
    assert_eq!(
        s.default_verdict(),
        Verdict::Warn,
        "most restrictive default wins"
    );
    assert_eq!(verdict(&s, &act("x", json!({}))), Verdict::Deny);
    assert_eq!(verdict(&s, &act("y", json!({}))), Verdict::Allow);
    assert_eq!(verdict(&s, &act("z", json!({}))), Verdict::Warn);

    // Same id in two files: error names both.
    std::fs::write(
        p.join("c.yaml"),
        format!("{HEAD}default: allow\nrules:\n  - id: a\n    effect: allow\n"),
    )
    .unwrap();
    let e = PolicySet::load(&[p]).unwrap_err().to_string();
    assert!(
        e.contains("duplicate rule id `a`") && e.contains("a.yaml"),
        "{e}"
    );

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        PolicySet::load(&[empty.path()]),
        Err(PolicyError::NoPolicy(_))
    ));
    assert!(matches!(
        PolicySet::load(&[p.join("missing.yaml")]),
        Err(PolicyError::Io { .. })
    ));
}

#[test]
fn hash_tracks_content() {
    let src = |t: &str| Source {
        label: "x.yaml".into(),
        text: t.to_owned(),
    };
    let a = PolicySet::from_sources(&[src(&format!("{HEAD}default: allow\n"))]).unwrap();
    let b = PolicySet::from_sources(&[src(&format!("{HEAD}default: allow\n"))]).unwrap();
    let c = PolicySet::from_sources(&[src(&format!("{HEAD}default: deny\n"))]).unwrap();
    assert_eq!(a.hash(), b.hash());
    assert_ne!(a.hash(), c.hash());
}

#[test]
fn reload_swaps_atomically_and_keeps_old_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.yaml");
    std::fs::write(&f, format!("{HEAD}default: allow\n")).unwrap();
    let h = PolicyHandle::load(&[&f]).unwrap();
    let a = act("t", json!({}));
    assert_eq!(h.current().evaluate(&a).verdict, Verdict::Allow);
    std::fs::write(&f, format!("{HEAD}default: deny\n")).unwrap();
    h.reload().unwrap();
    assert_eq!(h.current().evaluate(&a).verdict, Verdict::Deny);
    std::fs::write(&f, format!("{HEAD}default: nonsense\n")).unwrap();
    assert!(h.reload().is_err());
    assert_eq!(
        h.current().evaluate(&a).verdict,
        Verdict::Deny,
        "old set kept"
    );

    // Readers on other threads always see a complete set.
    std::fs::write(&f, format!("{HEAD}default: allow\n")).unwrap();
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                for _ in 0..2000 {
                    let v = h.guard().evaluate(&a).verdict;
                    assert!(v == Verdict::Allow || v == Verdict::Deny);
                }
            });
        }
        for _ in 0..50 {
            h.reload().unwrap();
        }
    });
}

#[test]
fn quotas_compile_and_match() {
    let s = set(r#"default: allow
quotas:
  - id: search-rate
    tools: ["search.*"]
    per: agent
    rate: 10/minute
    burst: 2
  - id: session-budget
    per: session
    calls: 100
    tokens: 5000
    cost: 2.5
"#);
    let q = s.quotas();
    assert_eq!(q.len(), 2);
    assert!(q[0].applies(&act("search.web", json!({}))));
    assert!(!q[0].applies(&act("fs.read", json!({}))));
    assert_eq!(q[1].scope, warden_policy::QuotaScope::Session);
    assert_eq!(q[1].calls, Some(100));
    for (body, want) in [
        ("default: allow\nquotas:\n  - id: q\n", "needs `rate`"),
        (
            "default: allow\nquotas:\n  - id: q\n    per: planet\n    calls: 1\n",
            "unknown scope `planet`",
        ),
        (
            "default: allow\nquotas:\n  - id: q\n    rate: 5/eon\n",
            "quotas[0].rate",
        ),
        (
            "default: allow\nquotas:\n  - id: q\n    calls: 1\n    burst: 3\n",
            "`burst` needs a `rate`",
        ),
        (
            "default: allow\nquotas:\n  - id: q\n    cost: -1\n",
            "non-negative",
        ),
        (
            "default: allow\nquotas:\n  - id: q\n    calls: 1\n  - id: q\n    calls: 2\n",
            "duplicate quota id `q`",
        ),
        (
            "default: allow\nquotas:\n  - id: q\n    calls: 1\n    colour: red\n",
            "unknown field `colour`",
        ),
    ] {
        let e = err(body);
        assert!(e.contains(want), "`{e}` should contain `{want}`");
    }
}
