//! Cedar (cedar-policy) as a policy source: request mapping, annotations,
//! combining, load errors with file/line, run-time errors, equivalence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use proptest::prelude::*;
use std::path::PathBuf;
use warden_core::{Action, Obligation, Point, Verdict};
use warden_policy::workloads::{action_for, cedar_n, policy_n, rego_n};
use warden_policy::{Outcome, PolicyError, PolicySet, Source, SourceResult};

const SCHEMA: &str = r#"
entity Agent = { trust: Long, teams: Set<String> };
entity Tool;
entity Point;
type Args = { amount?: Long, currency?: String, path?: String };
action "payments.send", "fs.read", "fs.write", "shell"
  appliesTo { principal: [Agent], resource: [Tool], context: { point: String, args: Args, context: {} } };
action "output"
  appliesTo { principal: [Agent], resource: [Point], context: { point: String, args: {}, context: {} } };
"#;

const ENTITIES: &str = r#"[
  {"uid": {"type": "Agent", "id": "alice"}, "attrs": {"trust": 900, "teams": ["payments"]}, "parents": []},
  {"uid": {"type": "Agent", "id": "mallory"}, "attrs": {"trust": 100, "teams": []}, "parents": []}
]"#;

fn block(schema: bool, entities: bool) -> String {
    let mut s = String::from("cedar:\n  policies: [p.cedar]\n");
    if schema {
        s.push_str("  schema: s.cedarschema\n");
    }
    if entities {
        s.push_str("  entities: e.json\n");
    }
    s
}

fn sources(default: &str, rules: &str, cedar: &str, schema: bool) -> Vec<Source> {
    let mut v = vec![
        Source {
            label: PathBuf::from("t/policy.yaml"),
            text: format!(
                "apiVersion: warden.dev/v1\nkind: Policy\nname: t\ndefault: {default}\n{}{rules}",
                block(schema, true)
            ),
        },
        Source {
            label: PathBuf::from("t/p.cedar"),
            text: cedar.to_owned(),
        },
        Source {
            label: PathBuf::from("t/e.json"),
            text: ENTITIES.to_owned(),
        },
    ];
    if schema {
        v.push(Source {
            label: PathBuf::from("t/s.cedarschema"),
            text: SCHEMA.to_owned(),
        });
    }
    v
}

/// Tests that compare verdicts use a generous deadline: unoptimised code on
/// a loaded machine can exceed the default 50 ms.
fn relaxed(set: PolicySet) -> PolicySet {
    let limits = warden_policy::Limits {
        deadline: std::time::Duration::from_secs(30),
        ..set.limits()
    };
    set.with_limits(limits)
}

fn load(default: &str, rules: &str, cedar: &str) -> Result<PolicySet, PolicyError> {
    PolicySet::from_sources(&sources(default, rules, cedar, true)).map(relaxed)
}

fn set(cedar: &str) -> PolicySet {
    load("allow", "", cedar).unwrap()
}

fn call(agent: &str, tool: &str, args: serde_json::Value) -> Action {
    let serde_json::Value::Object(args) = args else {
        panic!("args must be an object")
    };
    Action::tool_call(agent, tool).unwrap().with_args(args)
}

fn pay(agent: &str, amount: i64) -> Action {
    call(
        agent,
        "payments.send",
        serde_json::json!({"amount": amount, "currency": "EUR"}),
    )
}

#[test]
fn forbid_denies_with_policy_id_and_reason() {
    let s = set(
        "@id(\"big-payment\")\n@reason(\"payments over 1000 need a human\")\nforbid(principal, action == Action::\"payments.send\", resource)\nwhen { context.args has amount && context.args.amount > 1000 };\n",
    );
    let d = s.decide(&pay("alice", 5000));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.rule_ids, vec!["big-payment".to_owned()]);
    assert_eq!(
        d.reasons,
        vec!["payments over 1000 need a human".to_owned()]
    );
    // Not applicable: no decision from Cedar, the default applies.
    let e = s.evaluate(&pay("alice", 10));
    assert_eq!(e.verdict, Verdict::Allow);
    assert!(matches!(e.outcome, Outcome::Default));
}

#[test]
fn permit_allows_over_default_deny_and_unnamed_policy_gets_cedar_id() {
    let s = load(
        "deny",
        "",
        "permit(principal, action == Action::\"fs.read\", resource);\npermit(principal == Agent::\"alice\", action, resource == Tool::\"fs.write\");\n",
    )
    .unwrap();
    let d = s.decide(&call("bob", "fs.read", serde_json::json!({})));
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.rule_ids, vec!["policy0".to_owned()]);
    assert!(d.reasons[0].contains("policy0"), "{d:?}");
    let d = s.decide(&call("alice", "fs.write", serde_json::json!({})));
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.rule_ids, vec!["policy1".to_owned()]);
    assert_eq!(
        s.decide(&call("bob", "fs.write", serde_json::json!({})))
            .verdict,
        Verdict::Deny
    );
}

#[test]
fn entities_and_principal_attributes() {
    let s = load(
        "deny",
        "",
        "@id(\"trusted-pay\")\npermit(principal, action == Action::\"payments.send\", resource)\nwhen { principal.trust >= 500 && principal.teams.contains(\"payments\") };\n",
    )
    .unwrap();
    assert_eq!(s.decide(&pay("alice", 1)).verdict, Verdict::Allow);
    assert_eq!(s.decide(&pay("mallory", 1)).verdict, Verdict::Deny);
    // An agent missing from the entities has no attributes: an evaluation
    // error, which Warden turns into a deny (Cedar alone would skip the policy).
    let d = s.decide(&pay("stranger", 1));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.reasons[0], "runtime_error:evaluation_error", "{d:?}");
}

#[test]
fn request_mapping_at_non_tool_points() {
    let s = load(
        "allow",
        "",
        "@id(\"no-secrets-out\")\nforbid(principal, action == Action::\"output\", resource == Point::\"output\")\nwhen { context.point == \"output\" };\n",
    )
    .unwrap();
    let out = Action::new(Point::Output, "alice".to_owned(), None).unwrap();
    assert_eq!(s.decide(&out).verdict, Verdict::Deny);
    let input = Action::new(Point::Input, "alice".to_owned(), None).unwrap();
    assert_eq!(s.decide(&input).verdict, Verdict::Allow);
}

#[test]
fn verdict_annotations_warn_and_escalate() {
    let s = set(
        "@id(\"warn-write\")\n@verdict(\"warn\")\n@reason(\"writes are logged\")\npermit(principal, action == Action::\"fs.write\", resource);\n\
         @id(\"approve-pay\")\n@verdict(\"escalate\")\n@approvers(\"alice, secops\")\n@timeout(\"5m\")\npermit(principal, action == Action::\"payments.send\", resource);\n\
         @id(\"plain-pay\")\npermit(principal, action == Action::\"payments.send\", resource);\n",
    );
    let d = s.decide(&call("bob", "fs.write", serde_json::json!({})));
    assert_eq!(d.verdict, Verdict::Warn);
    assert_eq!(d.reasons, vec!["writes are logged".to_owned()]);
    // Escalate is the most restrictive permit: it wins over the plain permit
    // and carries its approval obligation.
    let d = s.decide(&pay("bob", 1));
    assert_eq!(d.verdict, Verdict::Escalate);
    assert_eq!(d.rule_ids, vec!["approve-pay".to_owned()]);
    assert_eq!(
        d.obligations,
        vec![Obligation::Approval {
            approvers: vec!["alice".to_owned(), "secops".to_owned()],
            timeout_ms: 300_000
        }]
    );
}

#[test]
fn forbid_overrides_permit_and_both_ids_reported() {
    let s = set(
        "@id(\"a\")\npermit(principal, action, resource);\n@id(\"b\")\nforbid(principal, action == Action::\"shell\", resource);\n@id(\"c\")\nforbid(principal, action, resource) when { context.args has path && context.args.path like \"/etc/*\" };\n",
    );
    let d = s.decide(&call(
        "alice",
        "shell",
        serde_json::json!({"path": "/etc/passwd"}),
    ));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.rule_ids, vec!["b".to_owned(), "c".to_owned()]);
    let d = s.decide(&call(
        "alice",
        "fs.read",
        serde_json::json!({"path": "/tmp/x"}),
    ));
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.rule_ids, vec!["a".to_owned()]);
}

#[test]
fn combines_with_warden_rules_and_rego() {
    // Warden warn beats a Cedar allow; a Cedar deny beats a Warden allow.
    let rules = "rules:\n  - id: warn-read\n    tools: [fs.read]\n    effect: warn\n  - id: allow-shell\n    tools: [shell]\n    effect: allow\n";
    let s = load(
        "allow",
        rules,
        "@id(\"read-ok\")\npermit(principal, action == Action::\"fs.read\", resource);\n@id(\"no-shell\")\nforbid(principal, action == Action::\"shell\", resource);\n",
    )
    .unwrap();
    let d = s.decide(&call("a", "fs.read", serde_json::json!({})));
    assert_eq!(d.verdict, Verdict::Warn);
    assert_eq!(d.rule_ids, vec!["warn-read".to_owned()]);
    let d = s.decide(&call("a", "shell", serde_json::json!({})));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.rule_ids, vec!["no-shell".to_owned()]);

    // All three kinds in one directory: most restrictive among deciders.
    let mut srcs = sources(
        "allow",
        "",
        "@id(\"read-ok\")\npermit(principal, action == Action::\"fs.read\", resource);\n",
        true,
    );
    srcs.push(Source {
        label: PathBuf::from("t/rego.yaml"),
        text: "apiVersion: warden.dev/v1\nkind: Policy\nname: r\ndefault: allow\nrego:\n  modules: [p.rego]\n  query: data.warden.verdict\n".to_owned(),
    });
    srcs.push(Source {
        label: PathBuf::from("t/p.rego"),
        text: "package warden\nverdict := \"deny\" if input.args.path == \"/secret\"\n".to_owned(),
    });
    let s = relaxed(PolicySet::from_sources(&srcs).unwrap());
    assert_eq!(s.sources().len(), 2);
    let d = s.decide(&call("a", "fs.read", serde_json::json!({"path": "/tmp"})));
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.rule_ids, vec!["read-ok".to_owned()]);
    let d = s.decide(&call(
        "a",
        "fs.read",
        serde_json::json!({"path": "/secret"}),
    ));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.rule_ids, vec!["rego:p.rego".to_owned()]);
}

fn assert_runtime_error(s: &PolicySet, a: &Action, kind: &str, needle: &str) {
    let d = s.decide(a);
    assert_eq!(d.verdict, Verdict::Deny, "{d:?}");
    assert_eq!(d.reasons[0], kind, "{d:?}");
    assert!(d.reasons[1].contains(needle), "{d:?}");
}

#[test]
fn unrepresentable_context_denies() {
    let s = set(
        "@id(\"x\")\nforbid(principal, action, resource) when { context.args has path && context.args.path == \"/x\" };\n",
    );
    let inv = "runtime_error:invalid_action";
    assert_runtime_error(
        &s,
        &call("a", "fs.read", serde_json::json!({"ratio": 0.5})),
        inv,
        "args.ratio",
    );
    assert_runtime_error(
        &s,
        &call("a", "fs.read", serde_json::json!({"n": u64::MAX})),
        inv,
        "64-bit integer",
    );
    assert_runtime_error(
        &s,
        &call("a", "fs.read", serde_json::json!({"xs": [1, null]})),
        inv,
        "null",
    );
    let mut deep = serde_json::json!(1);
    for _ in 0..100 {
        deep = serde_json::json!({ "d": deep });
    }
    assert_runtime_error(
        &s,
        &call("a", "fs.read", serde_json::json!({ "deep": deep })),
        inv,
        "deeper",
    );
    // A null attribute is left out rather than refused.
    assert_eq!(
        s.decide(&call("a", "fs.read", serde_json::json!({"path": null})))
            .verdict,
        Verdict::Allow
    );
}

#[test]
fn context_is_converted_only_for_policies_that_read_it() {
    let s = set(
        "@id(\"no-shell\")\nforbid(principal, action == Action::\"shell\", resource);\n@id(\"pay\")\nforbid(principal, action == Action::\"payments.send\", resource) when { context.args has amount && context.args.amount > 10 };\n",
    );
    let float = serde_json::json!({"ratio": 0.5, "amount": 1, "currency": "EUR"});
    // No applicable policy reads `context`: the float cannot matter.
    let d = s.decide(&call("a", "shell", float.clone()));
    assert_eq!(d.rule_ids, vec!["no-shell".to_owned()], "{d:?}");
    assert_eq!(
        s.decide(&call("a", "fs.write", float.clone())).verdict,
        Verdict::Allow
    );
    // One does: the conversion failure is a deny.
    assert_runtime_error(
        &s,
        &call("a", "payments.send", float),
        "runtime_error:invalid_action",
        "args.ratio",
    );
}

#[test]
fn entity_escapes_in_input_are_plain_data() {
    // `__entity` in args must not become an entity reference that a policy
    // comparing with `principal` could be fooled by.
    // (Without a schema: the test schema's `Args` has no `owner`.)
    let s = relaxed(
        PolicySet::from_sources(&sources(
            "deny",
            "",
            "@id(\"own\")\npermit(principal, action == Action::\"fs.write\", resource)\nwhen { context.args has owner && context.args.owner == principal };\n",
            false,
        ))
        .unwrap(),
    );
    let a = call(
        "mallory",
        "fs.write",
        serde_json::json!({"owner": {"__entity": {"type": "Agent", "id": "mallory"}}}),
    );
    assert_eq!(s.decide(&a).verdict, Verdict::Deny);
}

#[test]
fn evaluation_error_denies() {
    // Without a schema nothing stops reading an attribute the input lacks.
    let s = relaxed(
        PolicySet::from_sources(&sources(
            "allow",
            "",
            "@id(\"amt\")\nforbid(principal, action, resource) when { context.args.amount > 10 };\n",
            false,
        ))
        .unwrap(),
    );
    assert_runtime_error(
        &s,
        &call("a", "fs.read", serde_json::json!({})),
        "runtime_error:evaluation_error",
        "amount",
    );
    // Type error at run time: the attribute is a string.
    assert_runtime_error(
        &s,
        &call("a", "fs.read", serde_json::json!({"amount": "lots"})),
        "runtime_error:evaluation_error",
        "cedar:p.cedar",
    );
    // Overflow is an error too, not a wrap-around.
    let s = relaxed(
        PolicySet::from_sources(&sources(
            "allow",
            "",
            "@id(\"ovf\")\nforbid(principal, action, resource) when { context.args has amount && context.args.amount + 1 > 0 };\n",
            false,
        ))
        .unwrap(),
    );
    assert_runtime_error(
        &s,
        &call("a", "fs.read", serde_json::json!({"amount": i64::MAX})),
        "runtime_error:evaluation_error",
        "overflow",
    );
}

#[test]
fn deadline_exceeded_denies() {
    let s = set("@id(\"x\")\nforbid(principal, action == Action::\"shell\", resource);\n")
        .with_limits(warden_policy::Limits {
            cel_cost_budget: 10_000_000,
            deadline: std::time::Duration::ZERO,
        });
    assert_runtime_error(
        &s,
        &call("a", "shell", serde_json::json!({})),
        "runtime_error:budget_exceeded",
        "deadline",
    );
}

fn load_err(cedar: &str) -> PolicyError {
    load("deny", "", cedar).unwrap_err()
}

fn assert_at(err: &PolicyError, file: &str, line: u64, needle: &str) {
    match err {
        PolicyError::Invalid {
            origin, message, ..
        } => {
            assert!(origin.file.ends_with(file), "{err}");
            assert_eq!(origin.line, line, "{err}");
            assert!(origin.column >= 1, "{err}");
            assert!(
                message.contains(needle) || err.to_string().contains(needle),
                "{err}"
            );
        }
        other => panic!("{other}"),
    }
}

#[test]
fn syntax_error_names_file_line_and_column() {
    let err = load_err(
        "permit(principal, action, resource);\n\nforbid(principal, action == Action::\"shell\", resource)\nwhen { context.args.amount > };\n",
    );
    assert_at(&err, "p.cedar", 4, "");
}

#[test]
fn schema_violations_name_the_policy_line() {
    // Unknown attribute on a declared action's context.
    let err = load_err(
        "permit(principal, action, resource);\n@id(\"typo\")\nforbid(principal, action == Action::\"payments.send\", resource)\n  when { context.args.amonut > 1 };\n",
    );
    assert_at(&err, "p.cedar", 4, "typo");
    // Undeclared action.
    let err = load_err("forbid(principal, action == Action::\"rm-rf\", resource);\n");
    assert_at(&err, "p.cedar", 1, "rm-rf");
    // Wrong type.
    let err = load_err(
        "\n\nforbid(principal, action == Action::\"payments.send\", resource) when { context.args.currency > 3 };\n",
    );
    assert_at(&err, "p.cedar", 3, "");
}

#[test]
fn bad_schema_and_entities_are_load_errors() {
    let mut s = sources("deny", "", "permit(principal, action, resource);\n", true);
    s[3].text = "entity Agent;\n\naction \"x\" appliesTo { principal: [Nope] };\n".to_owned();
    let err = PolicySet::from_sources(&s).unwrap_err();
    assert!(err.to_string().contains("s.cedarschema"), "{err}");
    let mut s = sources("deny", "", "permit(principal, action, resource);\n", true);
    s[3].text = "entity Agent {\n".to_owned();
    let err = PolicySet::from_sources(&s).unwrap_err();
    match &err {
        PolicyError::Invalid { origin, .. } => {
            assert!(origin.file.ends_with("s.cedarschema"), "{err}");
            assert!(origin.line >= 1, "{err}");
        }
        other => panic!("{other}"),
    }
    // Entities that do not match the schema (trust must be a Long).
    let mut s = sources("deny", "", "permit(principal, action, resource);\n", true);
    s[2].text = r#"[{"uid": {"type": "Agent", "id": "a"}, "attrs": {"trust": "high", "teams": []}, "parents": []}]"#.to_owned();
    let err = PolicySet::from_sources(&s).unwrap_err();
    assert!(err.to_string().contains("e.json"), "{err}");
    assert!(err.to_string().contains("trust"), "{err}");
    // Entities that are not JSON.
    let mut s = sources("deny", "", "permit(principal, action, resource);\n", true);
    s[2].text = "[{".to_owned();
    let err = PolicySet::from_sources(&s).unwrap_err();
    assert!(err.to_string().contains("e.json"), "{err}");
}

#[test]
fn missing_files_are_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        format!(
            "apiVersion: warden.dev/v1\nkind: Policy\nname: t\ndefault: deny\n{}",
            block(true, true)
        ),
    )
    .unwrap();
    let err = PolicySet::load(&[dir.path()]).unwrap_err();
    assert!(err.to_string().contains("p.cedar"), "{err}");
    std::fs::write(
        dir.path().join("p.cedar"),
        "permit(principal, action, resource);",
    )
    .unwrap();
    let err = PolicySet::load(&[dir.path()]).unwrap_err();
    assert!(err.to_string().contains("s.cedarschema"), "{err}");
    std::fs::write(dir.path().join("s.cedarschema"), SCHEMA).unwrap();
    let err = PolicySet::load(&[dir.path()]).unwrap_err();
    assert!(err.to_string().contains("e.json"), "{err}");
    std::fs::write(dir.path().join("e.json"), ENTITIES).unwrap();
    let s = PolicySet::load(&[dir.path()]).unwrap();
    assert_eq!(s.sources()[0].id(), "cedar:p.cedar");
}

#[test]
fn annotation_errors_are_load_errors() {
    for (src, needle) in [
        (
            "@verdict(\"maybe\")\npermit(principal, action, resource);",
            "unknown verdict",
        ),
        (
            "@verdict(\"warn\")\nforbid(principal, action, resource);",
            "forbid",
        ),
        (
            "@verdict(\"deny\")\npermit(principal, action, resource);",
            "forbid",
        ),
        (
            "@verdict(\"escalate\")\n@timeout(\"5m\")\npermit(principal, action, resource);",
            "approvers",
        ),
        (
            "@verdict(\"escalate\")\n@approvers(\"a\")\npermit(principal, action, resource);",
            "timeout",
        ),
        (
            "@verdict(\"escalate\")\n@approvers(\" , \")\n@timeout(\"5m\")\npermit(principal, action, resource);",
            "approver",
        ),
        (
            "@verdict(\"escalate\")\n@approvers(\"a\")\n@timeout(\"soon\")\npermit(principal, action, resource);",
            "duration",
        ),
        (
            "@approvers(\"a\")\npermit(principal, action, resource);",
            "only an escalate",
        ),
        (
            "@id(\"has space\")\npermit(principal, action, resource);",
            "whitespace",
        ),
        (
            "@id(\"x\")\npermit(principal, action, resource);\n@id(\"x\")\nforbid(principal, action, resource);",
            "duplicate",
        ),
        (
            "permit(principal == ?principal, action, resource);",
            "template",
        ),
    ] {
        let err = load_err(src);
        assert!(err.to_string().contains(needle), "{src}: {err}");
        assert!(err.to_string().contains("p.cedar"), "{src}: {err}");
    }
    // Cedar ids share the rule-id namespace with Warden rules.
    let err = load(
        "deny",
        "rules:\n  - id: x\n    effect: allow\n",
        "@id(\"x\")\npermit(principal, action, resource);",
    )
    .unwrap_err();
    assert!(err.to_string().contains("duplicate rule id `x`"), "{err}");
    // Unknown keys in the block are rejected.
    let err = PolicySet::from_yaml(
        "apiVersion: warden.dev/v1\nkind: Policy\nname: t\ndefault: deny\ncedar:\n  policies: [p.cedar]\n  schemas: s\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("schemas"), "{err}");
}

#[test]
fn explain_and_warnings() {
    let s = load(
        "allow",
        "",
        "@id(\"no-shell\")\nforbid(principal, action == Action::\"shell\", resource);\n@id(\"users\")\npermit(principal is Agent, action, resource == Tool::\"fs.read\") when { false };\n",
    )
    .unwrap();
    let ex = s.explain(&call("a", "shell", serde_json::json!({})));
    assert_eq!(ex.sources.len(), 1);
    assert_eq!(ex.sources[0].source.kind(), "cedar");
    match &ex.sources[0].result {
        SourceResult::Decided {
            verdict, rule_ids, ..
        } => {
            assert_eq!(*verdict, Verdict::Deny);
            assert_eq!(rule_ids, &vec!["no-shell".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.explain(&call("a", "fs.read", serde_json::json!({})))
            .sources[0]
            .result,
        SourceResult::Undefined
    );
    let cedar = s.sources()[0].as_cedar().unwrap();
    assert!(cedar.has_schema());
    assert_eq!(cedar.policies().len(), 2);
    assert!(
        cedar
            .warnings()
            .iter()
            .any(|w| w.policy == "users" && w.code == "never-applies"),
        "{:?}",
        cedar.warnings()
    );
}

#[test]
fn concurrent_evaluation() {
    let s = std::sync::Arc::new(relaxed(cedar_n(100).unwrap()));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let s = std::sync::Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..300 {
                    let k = (i * 7 + t) % 130;
                    let v = s.evaluate(&action_for(&format!("action_{k}")).unwrap());
                    let want = if k >= 100 || k % 3 == 0 {
                        Verdict::Deny
                    } else {
                        Verdict::Allow
                    };
                    assert_eq!(v.verdict, want, "action_{k}: {:?}", v.outcome);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn tool() -> impl Strategy<Value = String> {
    prop_oneof![
        (0usize..=120).prop_map(|i| format!("action_{i}")),
        "[a-z_.]{1,12}",
        "action_[0-9]{1,4}",
        // Strings that only look like ids: quotes, escapes, unicode lookalikes.
        "action_[0-9]{1,2}[\"\\\\ \u{0430}\u{200b}]",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn yaml_rego_and_cedar_agree(t in tool()) {
        thread_local! {
            static SETS: (PolicySet, PolicySet, PolicySet) = (
                policy_n(100).unwrap(),
                relaxed(rego_n(100).unwrap()),
                relaxed(cedar_n(100).unwrap()),
            );
        }
        SETS.with(|(yaml, rego, cedar)| {
            let a = action_for(&t).unwrap();
            let y = yaml.decide(&a);
            let c = cedar.decide(&a);
            prop_assert_eq!(y.verdict, rego.evaluate(&a).verdict, "rego, tool {}", &t);
            prop_assert_eq!(y.verdict, c.verdict, "cedar, tool {}", &t);
            // The deciding rule is the same one, under the same id.
            prop_assert_eq!(&y.rule_ids, &c.rule_ids, "tool {}", &t);
            Ok(())
        })?;
    }
}

#[test]
fn documented_example_passes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/cedar");
    let report = warden_policy::testing::run(&[dir]).unwrap();
    assert!(report.passed() >= 6, "{report:?}");
    assert_eq!(report.failed(), 0, "{report:?}");
}

#[test]
fn json_schema_format_and_several_policy_files() {
    let schema = r#"{"": {
        "entityTypes": {"Agent": {}, "Tool": {}, "Point": {}},
        "actions": {"shell": {"appliesTo": {"principalTypes": ["Agent"], "resourceTypes": ["Tool"],
            "context": {"type": "Record", "attributes": {"point": {"type": "String"}}}}}}
    }}"#;
    let s = PolicySet::from_sources(&[
        Source {
            label: PathBuf::from("j/policy.yaml"),
            text: "apiVersion: warden.dev/v1\nkind: Policy\nname: j\ndefault: allow\ncedar:\n  policies: [a.cedar, b.cedar]\n  schema: s.json\n".to_owned(),
        },
        Source {
            label: PathBuf::from("j/a.cedar"),
            text: "permit(principal, action == Action::\"shell\", resource) when { context.point == \"pre_tool_call\" };\n".to_owned(),
        },
        Source {
            label: PathBuf::from("j/b.cedar"),
            text: "forbid(principal == Agent::\"mallory\", action == Action::\"shell\", resource);\n".to_owned(),
        },
        Source {
            label: PathBuf::from("j/s.json"),
            text: schema.to_owned(),
        },
    ])
    .map(relaxed)
    .unwrap();
    // Ids number the block's policies across files in order.
    let d = s.decide(&call("alice", "shell", serde_json::json!({})));
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.rule_ids, vec!["policy0".to_owned()]);
    let d = s.decide(&call("mallory", "shell", serde_json::json!({})));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.rule_ids, vec!["policy1".to_owned()]);
    // A type error against the JSON schema names the second file.
    let err = PolicySet::from_sources(&[
        Source {
            label: PathBuf::from("j/policy.yaml"),
            text: "apiVersion: warden.dev/v1\nkind: Policy\nname: j\ndefault: allow\ncedar:\n  policies: [a.cedar, b.cedar]\n  schema: s.json\n".to_owned(),
        },
        Source {
            label: PathBuf::from("j/a.cedar"),
            text: "permit(principal, action == Action::\"shell\", resource);\n".to_owned(),
        },
        Source {
            label: PathBuf::from("j/b.cedar"),
            text: "\nforbid(principal, action == Action::\"shell\", resource) when { context.point > 1 };\n".to_owned(),
        },
        Source {
            label: PathBuf::from("j/s.json"),
            text: schema.to_owned(),
        },
    ])
    .unwrap_err();
    assert_at(&err, "b.cedar", 2, "policy1");
}
