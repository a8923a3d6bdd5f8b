//! Property tests: rules for other tools never change a decision; evaluation never panics.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::Value;
use warden_core::Action;
use warden_policy::PolicySet;

const BASE: &str = r#"apiVersion: warden.dev/v1
kind: Policy
name: base
default: deny
rules:
  - id: read-ok
    tools: [fs.read]
    when: '!args.path.startsWith("/etc")'
    effect: allow
  - id: sql
    tools: ["sql.*"]
    when: 'has(args.query) && args.query.matches("(?i)drop")'
    effect: deny
    priority: 5
  - id: sql-ok
    tools: ["sql.*"]
    effect: allow
  - id: sized
    tools: [upload]
    when: 'args.items.all(i, i.size < 10)'
    effect: warn
    on_error: skip
"#;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}|path|query|items|size", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn args() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::btree_map("path|query|items|size|[a-z]{1,5}", json_value(), 0..5)
        .prop_map(|m| m.into_iter().collect())
}

fn tool() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("fs.read".to_owned()),
        Just("sql.exec".to_owned()),
        Just("upload".to_owned()),
        "[a-z.]{1,10}",
    ]
}

fn extra_rules(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let effect = ["allow", "deny", "warn"][i % 3];
        s.push_str(&format!(
            "  - id: other_{i}\n    tools: [unrelated_{i}, \"zz_*_{i}\"]\n    when: args.size > {i}\n    effect: {effect}\n    priority: {}\n",
            (i as i64) * 7 - 50
        ));
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn rules_for_other_tools_never_change_a_decision(tool in tool(), args in args(), n in 1usize..40) {
        prop_assume!(!tool.starts_with("unrelated_") && !tool.starts_with("zz_"));
        let base = PolicySet::from_yaml(BASE).unwrap();
        let bigger = PolicySet::from_yaml(&format!("{BASE}{}", extra_rules(n))).unwrap();
        let action = Action::tool_call("agent", tool).unwrap().with_args(args);
        let a = base.decide(&action);
        let b = bigger.decide(&action);
        prop_assert_eq!(a.verdict, b.verdict);
        prop_assert_eq!(a.rule_ids, b.rule_ids);
        prop_assert_eq!(a.reasons, b.reasons);
    }

    #[test]
    fn evaluation_never_panics_on_arbitrary_args(tool in tool(), args in args(), ctx in args()) {
        let set = PolicySet::from_yaml(BASE).unwrap();
        let action = Action::tool_call("agent", tool).unwrap().with_args(args).with_context(ctx);
        let _ = set.decide(&action);
        let _ = set.explain(&action);
    }

    #[test]
    fn explain_agrees_with_evaluate(tool in tool(), args in args()) {
        let set = PolicySet::from_yaml(&format!("{BASE}{}", extra_rules(5))).unwrap();
        let action = Action::tool_call("agent", tool).unwrap().with_args(args);
        prop_assert_eq!(set.explain(&action).evaluation.verdict, set.evaluate(&action).verdict);
    }
}
