//! `warden policy test`: policy unit tests written next to the policies.
//!
//! A test file is YAML named `*_test.yaml`:
//!
//! ```yaml
//! apiVersion: warden.dev/v1
//! kind: PolicyTest
//! name: default pack
//! policies: [./]          # optional; relative to this file; default: its directory
//! cases:
//!   - name: drop table is denied
//!     action: {agent: bot, tool: sql.query, args: {query: "DROP TABLE users"}}
//!     expect: deny
//!     rule: deny-destructive-sql    # optional: must be among the decision's rule_ids
//!     reason_contains: destructive   # optional
//!     obligations: []                # optional: the exact obligation list
//!     agent_facts: {trust: 820}      # optional: assume this trust score and/or tier
//! ```
//!
//! `agent_facts` takes `trust` (0–1000) and/or `tier` (`untrusted` …
//! `verified`; with both, they must agree). Without it the agent is one the
//! trust book has never seen (trust 400, `probationary`). Whoever runs the
//! cases supplies a [`Decider`]: `warden policy test` decides like the
//! kernel (trust tiers, the ring stage of the `rings:` block, then the
//! policy); [`run`] evaluates the policy alone.
//!
//! The same cases cover Rego and Cedar sources (the decision is the
//! combined one). Besides, every `test_*` rule in the modules of a `rego:`
//! block of the loaded policies runs like `opa test`: it passes when it
//! evaluates to `true`.

use crate::engines::PolicySource;
use crate::error::{Origin, PolicyError};
use crate::facts::MAX_TRUST;
use crate::load::expand;
use crate::rings::TIER_NAMES;
use crate::set::PolicySet;
use crate::source::{CaseDoc, Document, parse_document, read_source};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use warden_core::{Action, Decision, Verdict};

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// `file:line:col` of the case.
    pub origin: Origin,
    /// Case name.
    pub name: String,
    /// `None` when it passed, else what differed.
    pub failure: Option<String>,
}

/// All results of a run.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// Per case, in file order.
    pub cases: Vec<CaseResult>,
}

impl TestReport {
    /// Passed cases.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.failure.is_none()).count()
    }

    /// Failed cases.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }
}

/// Agent facts a case assumes (`agent_facts:`) instead of an agent the
/// trust book has never seen. Checked when the file loads: `trust` at most
/// 1000, `tier` a tier name, at least one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssumedFacts {
    /// Trust score, 0–1000.
    #[serde(default)]
    pub trust: Option<u16>,
    /// Tier name (`untrusted`, `probationary`, `standard`, `trusted`, `verified`).
    #[serde(default)]
    pub tier: Option<String>,
}

impl AssumedFacts {
    fn validate(&self) -> Result<(), String> {
        if self.trust.is_none() && self.tier.is_none() {
            return Err("give `trust` (0-1000) and/or `tier`".to_owned());
        }
        if let Some(t) = self.trust
            && t > MAX_TRUST
        {
            return Err(format!("trust {t} is out of range (0-{MAX_TRUST})"));
        }
        if let Some(t) = &self.tier
            && !TIER_NAMES.contains(&t.as_str())
        {
            return Err(format!(
                "unknown tier `{t}` (expected one of: {})",
                TIER_NAMES.join(", ")
            ));
        }
        Ok(())
    }
}

/// Decides the action of a test case.
pub trait Decider {
    /// The decision for `action` under `set`, assuming `facts` (`None`: the
    /// baseline). `Err` when the assumption cannot be applied: the case is
    /// then a load error, not a failure.
    fn decide(
        &self,
        set: &PolicySet,
        action: &Action,
        facts: Option<&AssumedFacts>,
    ) -> Result<Decision, String>;
}

/// The policy alone, with [`PolicySet::decide`]: no ring stage, and no
/// `agent_facts` (tiers come from `warden-identity`, which this crate does
/// not know); `warden policy test` uses the kernel's decider instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyOnly;

impl Decider for PolicyOnly {
    fn decide(
        &self,
        set: &PolicySet,
        action: &Action,
        facts: Option<&AssumedFacts>,
    ) -> Result<Decision, String> {
        match facts {
            None => Ok(set.decide(action)),
            Some(_) => Err(
                "agent_facts need the kernel's trust tiers: run the suite with `warden policy test`"
                    .to_owned(),
            ),
        }
    }
}

/// Finds test files under `paths` and runs them with the policy alone
/// ([`PolicyOnly`]). Policy load errors and malformed test files are errors
/// (not failed cases): nothing was tested.
pub fn run(paths: &[PathBuf]) -> Result<TestReport, PolicyError> {
    run_with(paths, &PolicyOnly)
}

/// Like [`run`], deciding each case with `decider`.
pub fn run_with(paths: &[PathBuf], decider: &dyn Decider) -> Result<TestReport, PolicyError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(expand(std::slice::from_ref(p), true)?);
        } else {
            files.push(p.clone());
        }
    }
    let mut cache: HashMap<Vec<PathBuf>, PolicySet> = HashMap::new();
    let mut report = TestReport::default();
    let no_files = || {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        PolicyError::NoPolicy(format!(
            "no test files (*_test.yaml) or Rego `test_` rules under {}",
            shown.join(", ")
        ))
    };
    if files.is_empty() {
        // No YAML suites: the paths may still hold policies whose Rego
        // modules carry `test_` rules.
        let set = PolicySet::load(paths).map_err(|_| no_files())?;
        cache.insert(paths.to_vec(), set);
    }
    for file in files {
        run_file(&file, &mut cache, &mut report, decider)?;
    }
    run_rego_tests(&cache, &mut report);
    if report.cases.is_empty() {
        return Err(no_files());
    }
    Ok(report)
}

/// Runs the `test_` rules of every Rego source of the loaded sets, once per
/// source (a source loaded by several suites is tested once).
fn run_rego_tests(cache: &HashMap<Vec<PathBuf>, PolicySet>, report: &mut TestReport) {
    let mut sets: Vec<(&Vec<PathBuf>, &PolicySet)> = cache.iter().collect();
    sets.sort_by(|a, b| a.0.cmp(b.0));
    let mut done: Vec<&Origin> = Vec::new();
    for (_, set) in sets {
        for rego in set.sources().iter().filter_map(PolicySource::as_rego) {
            if done.contains(&rego.origin()) {
                continue;
            }
            done.push(rego.origin());
            for t in rego.run_tests(REGO_TEST_DEADLINE) {
                report.cases.push(CaseResult {
                    origin: t.origin,
                    name: format!("rego {}", t.name),
                    failure: t.failure,
                });
            }
        }
    }
}

/// Wall-clock bound for one Rego test rule (tests may do more work than a decision).
const REGO_TEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

fn run_file(
    file: &Path,
    cache: &mut HashMap<Vec<PathBuf>, PolicySet>,
    report: &mut TestReport,
    decider: &dyn Decider,
) -> Result<(), PolicyError> {
    let text = read_source(file)?;
    let Document::Test(doc) = parse_document(file, &text)? else {
        return Err(PolicyError::invalid(
            Origin::new(file, 1, 1),
            "kind",
            "not a PolicyTest file",
        ));
    };
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let policies: Vec<PathBuf> = if doc.policies.is_empty() {
        vec![dir.clone()]
    } else {
        doc.policies.iter().map(|p| dir.join(p)).collect()
    };
    if !cache.contains_key(&policies) {
        let set = PolicySet::load(&policies)?;
        cache.insert(policies.clone(), set);
    }
    let Some(set) = cache.get(&policies) else {
        return Err(PolicyError::NoPolicy("policy cache".to_owned()));
    };
    for case in doc.cases {
        let origin = Origin::at(file, case.referenced);
        let case = case.value;
        let facts = match &case.agent_facts {
            Some(f) => {
                let at = Origin::at(file, f.referenced);
                f.value
                    .validate()
                    .map_err(|m| PolicyError::invalid(at.clone(), "agent_facts", m))?;
                Some((at, &f.value))
            }
            None => None,
        };
        let failure = check_case(
            set,
            &case,
            &case.expect.value,
            facts.as_ref().map(|(_, f)| *f),
            decider,
        )
        .map_err(|(field, m)| {
            let at = match (field, &facts) {
                ("agent_facts", Some((at, _))) => at.clone(),
                _ => Origin::at(file, case.expect.referenced),
            };
            PolicyError::invalid(at, field, m)
        })?;
        report.cases.push(CaseResult {
            origin,
            name: case.name,
            failure,
        });
    }
    Ok(())
}

/// `Ok(None)` passed, `Ok(Some(why))` failed, `Err((field, why))` the case is malformed.
fn check_case(
    set: &PolicySet,
    case: &CaseDoc,
    expect: &str,
    facts: Option<&AssumedFacts>,
    decider: &dyn Decider,
) -> Result<Option<String>, (&'static str, String)> {
    let (action, rule, reason_contains) = (
        &case.action,
        case.rule.as_deref(),
        case.reason_contains.as_deref(),
    );
    let expect: Verdict = expect.parse().map_err(|e| ("expect", e))?;
    let action: Action = match serde_json::from_value(action.clone()) {
        Ok(a) => a,
        Err(e) => return Ok(Some(format!("invalid action: {e}"))),
    };
    let d = decider
        .decide(set, &action, facts)
        .map_err(|e| ("agent_facts", e))?;
    let mut problems = Vec::new();
    if d.verdict != expect {
        problems.push(format!(
            "expected {expect}, got {} ({})",
            d.verdict,
            d.reasons.join("; ")
        ));
    }
    if let Some(r) = rule
        && !d.rule_ids.iter().any(|id| id == r)
    {
        problems.push(format!(
            "expected rule `{r}`, got [{}]",
            d.rule_ids.join(", ")
        ));
    }
    if let Some(s) = reason_contains
        && !d.reasons.iter().any(|x| x.contains(s))
    {
        problems.push(format!(
            "no reason contains `{s}` (reasons: {})",
            d.reasons.join("; ")
        ));
    }
    if let Some(want) = &case.obligations
        && *want != d.obligations
    {
        problems.push(format!(
            "expected obligations {}, got {}",
            serde_json::to_string(want).unwrap_or_default(),
            serde_json::to_string(&d.obligations).unwrap_or_default()
        ));
    }
    Ok((!problems.is_empty()).then(|| problems.join("; ")))
}
