//! Rego (regorus) as a policy source: contract, combining, errors, concurrency, equivalence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use warden_core::{Action, Verdict};
use warden_policy::workloads::{action_for, rego_n};
use warden_policy::{Outcome, PolicyError, PolicySet, Source, SourceResult};

fn policy(default: &str, rules: &str) -> String {
    format!(
        "apiVersion: warden.dev/v1\nkind: Policy\nname: t\ndefault: {default}\nrego:\n  modules: [p.rego]\n  query: data.warden.verdict\n{rules}"
    )
}

fn set_with(default: &str, rules: &str, module: &str) -> Result<PolicySet, PolicyError> {
    PolicySet::from_sources(&[
        Source {
            label: PathBuf::from("t/policy.yaml"),
            text: policy(default, rules),
        },
        Source {
            label: PathBuf::from("t/p.rego"),
            text: module.to_owned(),
        },
    ])
    .map(relaxed)
}

fn set(module: &str) -> PolicySet {
    set_with("allow", "", module).unwrap()
}

/// The wall-clock deadline is real: on a loaded machine with unoptimised
/// code a preempted thread can exceed the default 50 ms. Tests that compare
/// verdicts use a generous one.
fn relaxed(set: PolicySet) -> PolicySet {
    let limits = warden_policy::Limits {
        deadline: std::time::Duration::from_secs(30),
        ..set.limits()
    };
    set.with_limits(limits)
}

fn call(tool: &str) -> Action {
    action_for(tool).unwrap()
}

#[test]
fn string_verdict_decides() {
    let s = set("package warden\nverdict := \"deny\" if input.tool == \"shell\"\n");
    let d = s.decide(&call("shell"));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.rule_ids, vec!["rego:p.rego".to_owned()]);
    assert_eq!(s.decide(&call("other")).verdict, Verdict::Allow);
}

#[test]
fn allow_overrides_default_deny() {
    let s = set_with(
        "deny",
        "",
        "package warden\nverdict := \"allow\" if input.tool == \"read\"\n",
    )
    .unwrap();
    assert_eq!(s.decide(&call("read")).verdict, Verdict::Allow);
    assert!(matches!(
        s.evaluate(&call("read")).outcome,
        Outcome::Sources { .. }
    ));
    let e = s.evaluate(&call("write"));
    assert_eq!(e.verdict, Verdict::Deny);
    assert!(matches!(e.outcome, Outcome::Default));
}

#[test]
fn object_result_carries_reasons() {
    let s = set(
        "package warden\nverdict := {\"verdict\": \"warn\", \"reasons\": [\"big amount\", input.args.currency]} if input.args.amount > 1000\n",
    );
    let d = s.decide(&call("pay"));
    assert_eq!(d.verdict, Verdict::Warn);
    assert_eq!(d.reasons, vec!["big amount".to_owned(), "EUR".to_owned()]);
}

#[test]
fn boolean_result() {
    let s = set_with(
        "warn",
        "",
        "package warden\ndefault verdict := false\nverdict if input.agent == \"bench-agent\"\n",
    )
    .unwrap();
    assert_eq!(s.decide(&call("x")).verdict, Verdict::Allow);
    let other = Action::tool_call("someone", "x").unwrap();
    assert_eq!(s.decide(&other).verdict, Verdict::Deny);
}

#[test]
fn undefined_means_default() {
    let s = set_with("warn", "", "package warden\nverdict := \"deny\" if false\n").unwrap();
    let e = s.evaluate(&call("x"));
    assert_eq!(e.verdict, Verdict::Warn);
    assert!(matches!(e.outcome, Outcome::Default));
}

#[test]
fn input_is_the_wire_form() {
    let s = set(
        "package warden\nverdict := \"deny\" if {\n  input.point == \"pre_tool_call\"\n  input.args.amount == 5000\n  input.agent == \"bench-agent\"\n}\n",
    );
    assert_eq!(s.decide(&call("x")).verdict, Verdict::Deny);
}

#[test]
fn deny_overrides_across_sources() {
    let rules = "rules:\n  - id: allow-all\n    effect: allow\n  - id: warn-x\n    tools: [x]\n    effect: warn\n    priority: 10\n";
    // Rego deny beats a Warden allow.
    let s = set_with(
        "allow",
        rules,
        "package warden\nverdict := \"deny\" if input.tool == \"y\"\n",
    )
    .unwrap();
    let d = s.decide(&call("y"));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.rule_ids, vec!["rego:p.rego".to_owned()]);
    // Warden warn beats a Rego allow.
    let s = set_with(
        "allow",
        rules,
        "package warden\nverdict := \"allow\" if input.tool == \"x\"\n",
    )
    .unwrap();
    let d = s.decide(&call("x"));
    assert_eq!(d.verdict, Verdict::Warn);
    assert_eq!(d.rule_ids, vec!["warn-x".to_owned()]);
    // Both deny: both are reported.
    let s = set_with(
        "allow",
        "rules:\n  - id: deny-z\n    tools: [z]\n    effect: warn\n",
        "package warden\nverdict := \"warn\" if input.tool == \"z\"\n",
    )
    .unwrap();
    let d = s.decide(&call("z"));
    assert_eq!(d.verdict, Verdict::Warn);
    assert_eq!(
        d.rule_ids,
        vec!["deny-z".to_owned(), "rego:p.rego".to_owned()]
    );
}

fn assert_eval_error(module: &str, needle: &str) {
    let s = set(module);
    let d = s.decide(&call("x"));
    assert_eq!(d.verdict, Verdict::Deny, "{module}");
    assert_eq!(d.reasons[0], "runtime_error:evaluation_error", "{d:?}");
    assert!(d.reasons[1].contains("rego:p.rego"), "{d:?}");
    assert!(d.reasons[1].contains(needle), "{d:?}");
}

#[test]
fn ill_typed_results_deny() {
    assert_eval_error("package warden\nverdict := 42\n", "42");
    assert_eval_error("package warden\nverdict := \"maybe\"\n", "unknown verdict");
    assert_eval_error("package warden\nverdict := \"escalate\"\n", "escalate");
    assert_eval_error(
        "package warden\nverdict := {\"reasons\": [\"r\"]}\n",
        "no string `verdict`",
    );
    assert_eval_error(
        "package warden\nverdict := {\"verdict\": \"deny\", \"extra\": 1}\n",
        "unexpected key",
    );
}

#[test]
fn engine_error_denies() {
    // Conflicting values for a complete rule are a runtime error in Rego.
    assert_eval_error(
        "package warden\nverdict := \"deny\" if input.agent\nverdict := \"allow\" if input.tool\n",
        "",
    );
}

#[test]
fn deadline_denies_with_budget_exceeded() {
    let s = set(
        "package warden\nverdict := \"deny\" if {\n  n := count([x | some x in numbers.range(1, 2000000); x % 7 == 0])\n  n > 0\n}\n",
    )
    .with_limits(warden_policy::Limits {
        cel_cost_budget: 10_000_000,
        deadline: std::time::Duration::from_millis(1),
    });
    let d = s.decide(&call("x"));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.reasons[0], "runtime_error:budget_exceeded", "{d:?}");
}

#[test]
fn syntax_error_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy("deny", "")).unwrap();
    std::fs::write(
        dir.path().join("p.rego"),
        "package warden\n\nverdict := \"deny\" if {\n  input.tool ==\n}\n",
    )
    .unwrap();
    let err = PolicySet::load(&[dir.path()]).unwrap_err();
    match &err {
        PolicyError::Invalid { origin, .. } => {
            assert!(origin.file.ends_with("p.rego"), "{err}");
            assert!(origin.line >= 4, "{err}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn missing_module_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy("deny", "")).unwrap();
    let err = PolicySet::load(&[dir.path()]).unwrap_err();
    assert!(matches!(err, PolicyError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("p.rego"), "{err}");
}

#[test]
fn bad_query_is_a_load_error() {
    let src = |q: &str| {
        PolicySet::from_sources(&[
            Source {
                label: PathBuf::from("t/policy.yaml"),
                text: format!(
                    "apiVersion: warden.dev/v1\nkind: Policy\nname: t\ndefault: deny\nrego:\n  modules: [p.rego]\n  query: {q}\n"
                ),
            },
            Source {
                label: PathBuf::from("t/p.rego"),
                text: "package warden\nverdict := \"deny\"\n".to_owned(),
            },
        ])
    };
    for q in [
        "input.tool",
        "\"data.warden.verdict + 1\"",
        "data.nope.verdict",
    ] {
        let err = src(q).unwrap_err();
        assert!(err.to_string().contains("rego.query"), "{q}: {err}");
    }
    assert!(src("data.warden.verdict").is_ok());
}

#[test]
fn unknown_key_in_rego_block_rejected() {
    let err = PolicySet::from_yaml(
        "apiVersion: warden.dev/v1\nkind: Policy\nname: t\ndefault: deny\nrego:\n  modules: [p.rego]\n  query: data.x.y\n  querry: 1\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("querry"), "{err}");
}

#[test]
fn data_documents_are_loaded() {
    let s = PolicySet::from_sources(&[
        Source {
            label: PathBuf::from("t/policy.yaml"),
            text: "apiVersion: warden.dev/v1\nkind: Policy\nname: t\ndefault: allow\nrego:\n  modules: [p.rego]\n  data: [d.json]\n  query: data.warden.verdict\n".to_owned(),
        },
        Source {
            label: PathBuf::from("t/p.rego"),
            text: "package warden\nverdict := \"deny\" if input.tool in data.blocked\n".to_owned(),
        },
        Source {
            label: PathBuf::from("t/d.json"),
            text: "{\"blocked\": [\"rm\"]}".to_owned(),
        },
    ])
    .unwrap();
    assert_eq!(s.decide(&call("rm")).verdict, Verdict::Deny);
    assert_eq!(s.decide(&call("ls")).verdict, Verdict::Allow);
}

#[test]
fn explain_shows_rego_results() {
    let s = set("package warden\nverdict := \"deny\" if input.tool == \"shell\"\n");
    let ex = s.explain(&call("shell"));
    assert_eq!(ex.sources.len(), 1);
    assert_eq!(ex.sources[0].source.id(), "rego:p.rego");
    assert!(matches!(
        ex.sources[0].result,
        SourceResult::Decided {
            verdict: Verdict::Deny,
            ..
        }
    ));
    assert!(matches!(
        s.explain(&call("ls")).sources[0].result,
        SourceResult::Undefined
    ));
}

#[test]
fn concurrent_evaluation() {
    let s = std::sync::Arc::new(relaxed(rego_n(100).unwrap()));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let s = std::sync::Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..300 {
                    let k = (i * 7 + t) % 130;
                    let v = s.evaluate(&call(&format!("action_{k}")));
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

// The YAML-vs-Rego-vs-Cedar equivalence property test over 10 000 actions
// lives in tests/cedar.rs (`yaml_rego_and_cedar_agree`).

#[test]
fn documented_example_passes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/rego");
    let report = warden_policy::testing::run(&[dir]).unwrap();
    assert!(report.passed() >= 5, "{report:?}");
    assert_eq!(report.failed(), 0, "{report:?}");
}

#[test]
fn rego_test_rules_run_like_opa_test() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "apiVersion: warden.dev/v1\nkind: Policy\nname: t\ndefault: deny\nrego:\n  modules: [p.rego, p_test.rego]\n  query: data.warden.verdict\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.rego"),
        "package warden\nverdict := \"deny\" if input.tool == \"shell\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p_test.rego"),
        "package warden_test\n\nimport data.warden\n\n\
         test_shell_denied if warden.verdict == \"deny\" with input as {\"tool\": \"shell\"}\n\n\
         test_ls_undefined if not warden.verdict with input as {\"tool\": \"ls\"}\n\n\
         test_wrong if warden.verdict == \"allow\" with input as {\"tool\": \"shell\"}\n\n\
         test_value := 42\n\n\
         test_conflict := 1 if true\ntest_conflict := 2 if true\n\n\
         helper := false\n",
    )
    .unwrap();
    let report = warden_policy::testing::run(&[dir.path().to_path_buf()]).unwrap();
    let by_name = |n: &str| {
        report
            .cases
            .iter()
            .find(|c| c.name == format!("rego data.warden_test.{n}"))
            .unwrap_or_else(|| panic!("{n}: {report:?}"))
    };
    assert!(by_name("test_shell_denied").failure.is_none(), "{report:?}");
    assert!(by_name("test_ls_undefined").failure.is_none(), "{report:?}");
    let wrong = by_name("test_wrong");
    assert!(
        wrong.failure.as_deref().unwrap().contains("undefined"),
        "{wrong:?}"
    );
    assert!(wrong.origin.file.ends_with("p_test.rego"), "{wrong:?}");
    assert_eq!(wrong.origin.line, 9, "{wrong:?}");
    assert!(
        by_name("test_value")
            .failure
            .as_deref()
            .unwrap()
            .contains("42")
    );
    assert!(
        by_name("test_conflict")
            .failure
            .as_deref()
            .unwrap()
            .contains("error")
    );
    // Non-test rules are not run; each test once.
    assert_eq!(report.cases.len(), 5, "{report:?}");
    assert_eq!(report.passed(), 2);

    // Policies with neither YAML cases nor Rego tests: nothing was tested.
    std::fs::write(
        dir.path().join("p_test.rego"),
        "package warden_test\nhelper := true\n",
    )
    .unwrap();
    let err = warden_policy::testing::run(&[dir.path().to_path_buf()]).unwrap_err();
    assert!(err.to_string().contains("no test files"), "{err}");
}

#[test]
fn documented_rego_tests_example_passes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/rego-tests");
    let report = warden_policy::testing::run(&[dir]).unwrap();
    let rego_tests = report
        .cases
        .iter()
        .filter(|c| c.name.starts_with("rego data."))
        .count();
    assert_eq!(rego_tests, 4, "{report:?}");
    assert_eq!(report.failed(), 0, "{report:?}");
}
