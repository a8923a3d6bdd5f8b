//! The benchmark workloads of DESIGN.md §6, shared by the criterion benches
//! and `warden bench policy`, so both measure exactly the same thing.

use crate::load::Source;
use crate::set::PolicySet;
use std::fmt::Write as _;
use std::path::PathBuf;
use warden_core::{Action, ActionError};

/// Rule counts of the `policy-N` workloads.
pub const POLICY_SIZES: [usize; 4] = [1, 10, 100, 1000];

/// `policy-N` source: rule *i* matches `tool == "action_i"`, deny if i % 3 == 0 else allow.
pub fn policy_n_yaml(n: usize) -> String {
    let mut s = String::from(
        "apiVersion: warden.dev/v1\nkind: Policy\nname: bench\ndefault: deny\nrules:\n",
    );
    for i in 0..n {
        let effect = if i % 3 == 0 { "deny" } else { "allow" };
        let _ = writeln!(
            s,
            "  - id: rule_{i}\n    tools: [action_{i}]\n    effect: {effect}"
        );
    }
    s
}

/// The compiled `policy-N` set.
pub fn policy_n(n: usize) -> Result<PolicySet, crate::PolicyError> {
    PolicySet::from_yaml(&policy_n_yaml(n))
}

/// The `policy-cel` source: one rule with a CEL condition over the arguments
/// among 100 unrelated rules.
pub fn policy_cel_yaml() -> String {
    let mut s = policy_n_yaml(100);
    s.push_str(
        "  - id: large_payment\n    tools: [payments.send]\n    when: args.amount > 1000 && args.currency == \"EUR\"\n    effect: deny\n",
    );
    s
}

/// `rego-N` module: the `policy-N` rules in Rego. Rule *i*: `input.tool ==
/// "action_i"` gives deny if i % 3 == 0 else allow; undefined when nothing
/// matches (the Warden `default: deny` then applies).
pub fn rego_n_module(n: usize) -> String {
    let mut s = String::from("package warden\n\n");
    for i in 0..n {
        let effect = if i % 3 == 0 { "deny" } else { "allow" };
        let _ = writeln!(s, "verdict := \"{effect}\" if input.tool == \"action_{i}\"");
    }
    s
}

/// The Warden policy file wrapping `rego_n_module` (as `bench.rego` beside it).
pub const REGO_N_POLICY: &str = "apiVersion: warden.dev/v1\nkind: Policy\nname: rego-bench\ndefault: deny\nrego:\n  modules: [bench.rego]\n  query: data.warden.verdict\n";

/// The compiled `rego-N` set (in-memory sources `rego-bench/policy.yaml` and `rego-bench/bench.rego`).
pub fn rego_n(n: usize) -> Result<PolicySet, crate::PolicyError> {
    PolicySet::from_sources(&[
        Source {
            label: PathBuf::from("rego-bench/policy.yaml"),
            text: REGO_N_POLICY.to_owned(),
        },
        Source {
            label: PathBuf::from("rego-bench/bench.rego"),
            text: rego_n_module(n),
        },
    ])
}

/// `cedar-N` policies: the `policy-N` rules in Cedar. Rule *i* is a
/// `forbid` if i % 3 == 0 else a `permit`, scoped to `Action::"action_i"`,
/// with `@id("rule_i")`; no applicable policy means no decision (the Warden
/// `default: deny` then applies).
pub fn cedar_n_policies(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let effect = if i % 3 == 0 { "forbid" } else { "permit" };
        let _ = writeln!(
            s,
            "@id(\"rule_{i}\")\n{effect}(principal, action == Action::\"action_{i}\", resource);"
        );
    }
    s
}

/// The schema the `cedar-N` policies are validated against: every
/// `action_i` applies to an `Agent` acting on a `Tool`.
pub fn cedar_n_schema(n: usize) -> String {
    let mut s = String::from("entity Agent;\nentity Tool;\nentity Point;\n");
    let names: Vec<String> = (0..n).map(|i| format!("\"action_{i}\"")).collect();
    let _ = writeln!(
        s,
        "action {} appliesTo {{ principal: [Agent], resource: [Tool], context: {{ point: String }} }};",
        names.join(", ")
    );
    s
}

/// The Warden policy file wrapping `cedar_n_policies` (as `bench.cedar`,
/// schema `bench.cedarschema` beside it).
pub const CEDAR_N_POLICY: &str = "apiVersion: warden.dev/v1\nkind: Policy\nname: cedar-bench\ndefault: deny\ncedar:\n  policies: [bench.cedar]\n  schema: bench.cedarschema\n";

/// The compiled `cedar-N` set (in-memory sources under `cedar-bench/`).
pub fn cedar_n(n: usize) -> Result<PolicySet, crate::PolicyError> {
    PolicySet::from_sources(&[
        Source {
            label: PathBuf::from("cedar-bench/policy.yaml"),
            text: CEDAR_N_POLICY.to_owned(),
        },
        Source {
            label: PathBuf::from("cedar-bench/bench.cedar"),
            text: cedar_n_policies(n),
        },
        Source {
            label: PathBuf::from("cedar-bench/bench.cedarschema"),
            text: cedar_n_schema(n),
        },
    ])
}

/// An action for `tool` with a small, typical argument object.
pub fn action_for(tool: &str) -> Result<Action, ActionError> {
    let mut args = serde_json::Map::new();
    args.insert("amount".into(), 5000.into());
    args.insert("currency".into(), "EUR".into());
    Ok(Action::tool_call("bench-agent", tool)?.with_args(args))
}

/// Why the workloads could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A policy did not compile.
    #[error(transparent)]
    Policy(#[from] crate::PolicyError),
    /// An action was invalid.
    #[error(transparent)]
    Action(#[from] ActionError),
}

/// One named workload: a set and the action to evaluate against it.
pub struct Workload {
    /// DESIGN.md §6 name, e.g. `policy-100/match-last`.
    pub name: String,
    /// The compiled set.
    pub set: PolicySet,
    /// The action.
    pub action: Action,
}

/// All policy workloads, in report order.
pub fn all() -> Result<Vec<Workload>, WorkloadError> {
    let mut out = Vec::new();
    for n in POLICY_SIZES {
        out.push(Workload {
            name: format!("policy-{n}/match-last"),
            set: policy_n(n)?,
            action: action_for(&format!("action_{}", n - 1))?,
        });
        out.push(Workload {
            name: format!("policy-{n}/no-match"),
            set: policy_n(n)?,
            action: action_for("unknown_tool")?,
        });
    }
    out.push(Workload {
        name: "policy-cel".to_owned(),
        set: PolicySet::from_yaml(&policy_cel_yaml())?,
        action: action_for("payments.send")?,
    });
    out.push(Workload {
        name: "rego-100/match-last".to_owned(),
        set: rego_n(100)?,
        action: action_for("action_99")?,
    });
    out.push(Workload {
        name: "rego-100/no-match".to_owned(),
        set: rego_n(100)?,
        action: action_for("unknown_tool")?,
    });
    out.push(Workload {
        name: "cedar-100/match-last".to_owned(),
        set: cedar_n(100)?,
        action: action_for("action_99")?,
    });
    out.push(Workload {
        name: "cedar-100/no-match".to_owned(),
        set: cedar_n(100)?,
        action: action_for("unknown_tool")?,
    });
    Ok(out)
}
