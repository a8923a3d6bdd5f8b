//! The YAML documents as written: strict serde types with source locations.
//!
//! Every struct rejects unknown keys; duplicate keys are rejected by the
//! parser. Semantic checks (globs, CEL, verdict-specific fields) happen in
//! `compile`, which turns these into the compiled form.

use crate::error::{Origin, PolicyError};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::path::Path;

/// API version of Warden's own policy and test files.
pub const WARDEN_API_VERSION: &str = "warden.dev/v1";
/// API version of AGT policy files, imported unchanged.
pub const AGT_API_VERSION: &str = "governance.toolkit/v1";

/// Largest policy or test file accepted, so a hostile file cannot exhaust memory.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024 * 1024;

/// Just enough of a document to know which schema to parse it with.
#[derive(Deserialize)]
struct Header {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
}

/// Which schema a document follows.
pub(crate) enum Document {
    /// `warden.dev/v1`, `kind: Policy`.
    Policy(Box<PolicyDoc>),
    /// `governance.toolkit/v1` (boxed: much larger than the others).
    Agt(Box<AgtDoc>),
    /// `warden.dev/v1`, `kind: PolicyTest`.
    Test(TestDoc),
}

/// A Warden policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyDoc {
    #[serde(rename = "apiVersion")]
    pub _api_version: String,
    #[serde(rename = "kind")]
    pub _kind: Option<String>,
    pub name: Spanned<String>,
    #[serde(default, rename = "description")]
    pub _description: Option<String>,
    pub default: Option<Spanned<String>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RuleDoc>>,
    #[serde(default)]
    pub quotas: Vec<Spanned<QuotaDoc>>,
    #[serde(default)]
    pub rego: Option<Spanned<RegoDoc>>,
    #[serde(default)]
    pub cedar: Option<Spanned<CedarDoc>>,
    #[serde(default)]
    pub rings: Option<Spanned<RingsDoc>>,
}

/// A `rings:` block: execution rings (see `rings.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RingsDoc {
    #[serde(default)]
    pub default_tool_ring: Option<Spanned<u8>>,
    #[serde(default)]
    pub tiers: BTreeMap<String, Spanned<u8>>,
    #[serde(default)]
    pub agents: BTreeMap<String, Spanned<u8>>,
    #[serde(default)]
    pub tools: Vec<Spanned<RingToolDoc>>,
    #[serde(default)]
    pub quotas: Vec<Spanned<RingQuotaDoc>>,
}

/// One tool catalogue entry of a `rings:` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RingToolDoc {
    pub tools: Spanned<Vec<String>>,
    pub ring: Spanned<u8>,
    #[serde(default)]
    pub elevate: Option<Spanned<ElevateDoc>>,
}

/// How a ring denial for a catalogue entry's tools may be escalated.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ElevateDoc {
    pub approvers: Vec<String>,
    pub ttl: Spanned<String>,
}

/// Limits of one ring.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RingQuotaDoc {
    pub ring: Spanned<u8>,
    #[serde(default)]
    pub rate: Option<Spanned<String>>,
    #[serde(default)]
    pub concurrency: Option<Spanned<u32>>,
}

/// A `cedar:` block: `.cedar` policy files, an optional schema and entities
/// document (paths relative to the policy file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CedarDoc {
    pub policies: Vec<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub entities: Option<String>,
}

/// A `rego:` block: Rego modules and data (paths relative to the policy file) and the query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegoDoc {
    pub modules: Vec<String>,
    #[serde(default)]
    pub data: Vec<String>,
    pub query: String,
}

/// One quota: a rate limit and/or budgets, counted per scope key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotaDoc {
    pub id: Spanned<String>,
    #[serde(default, rename = "description")]
    pub _description: Option<String>,
    #[serde(default)]
    pub points: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub tools: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub agents: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub per: Option<Spanned<String>>,
    #[serde(default)]
    pub rate: Option<Spanned<String>>,
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub calls: Option<u64>,
    #[serde(default)]
    pub tokens: Option<u64>,
    #[serde(default)]
    pub cost: Option<f64>,
}

/// One Warden rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleDoc {
    pub id: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub points: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub tools: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub agents: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    pub effect: Spanned<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub on_error: Option<Spanned<String>>,
    #[serde(default)]
    pub approvers: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub transform: Option<Spanned<TransformDoc>>,
}

/// What a `transform` rule rewrites.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransformDoc {
    #[serde(default)]
    pub redact: Vec<String>,
    #[serde(default)]
    pub replace: BTreeMap<String, serde_json::Value>,
}

/// An AGT `governance.toolkit/v1` policy file (the fields of AGT's reference Python engine).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgtDoc {
    #[serde(rename = "apiVersion")]
    pub _api_version: String,
    #[serde(default, rename = "version")]
    pub _version: Option<serde_json::Value>,
    pub name: Spanned<String>,
    #[serde(default, rename = "description")]
    pub _description: Option<String>,
    #[serde(default)]
    pub extends: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub scope: Option<Spanned<String>>,
    #[serde(default, rename = "created_at")]
    pub _created_at: Option<serde_json::Value>,
    #[serde(default, rename = "updated_at")]
    pub _updated_at: Option<serde_json::Value>,
    #[serde(default)]
    pub default_action: Option<Spanned<String>>,
    #[serde(default)]
    pub rules: Vec<Spanned<AgtRuleDoc>>,
}

/// One AGT rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgtRuleDoc {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub stage: Option<Spanned<String>>,
    pub condition: Spanned<String>,
    #[serde(default)]
    pub action: Option<Spanned<String>>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default)]
    pub limit: Option<Spanned<String>>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A `kind: PolicyTest` file: cases run by `warden policy test`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestDoc {
    #[serde(rename = "apiVersion")]
    pub _api_version: String,
    #[serde(rename = "kind")]
    pub _kind: String,
    #[serde(default, rename = "name")]
    pub _name: Option<String>,
    /// Policy paths relative to the test file; default: the test file's directory.
    #[serde(default)]
    pub policies: Vec<String>,
    pub cases: Vec<Spanned<CaseDoc>>,
}

/// One test case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaseDoc {
    pub name: String,
    pub action: serde_json::Value,
    pub expect: Spanned<String>,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub reason_contains: Option<String>,
    #[serde(default)]
    pub obligations: Option<Vec<warden_core::Obligation>>,
    /// Agent facts to assume (trust score and/or tier) instead of the baseline.
    #[serde(default)]
    pub agent_facts: Option<Spanned<crate::testing::AssumedFacts>>,
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! { with_snippet: false }
}

fn yaml_error(file: &Path, e: &serde_saphyr::Error) -> PolicyError {
    let origin = e
        .location()
        .map(|l| Origin::at(file, l))
        .unwrap_or_else(|| Origin::new(file, 0, 0));
    let message = e.to_string();
    // serde-saphyr appends its own location; ours is already in the prefix.
    let message = message
        .split_once(" at line ")
        .map(|(m, _)| m.to_owned())
        .unwrap_or(message);
    // Drop hints addressed to programmers using the YAML library, not to policy authors.
    let message = message
        .split_once(", set DuplicateKeyPolicy")
        .or_else(|| message.split_once("; use from_str_multiple"))
        .map(|(m, _)| m.to_owned())
        .unwrap_or(message);
    let message = match message.as_str() {
        "multiple YAML documents detected" => {
            "one policy per file: split the `---` documents into separate files".to_owned()
        }
        m if m.starts_with("invalid i64") => format!("{m}: expected a whole number"),
        _ => message,
    };
    PolicyError::invalid(origin, "document", message)
}

/// Reads a file, refusing oversized input.
pub(crate) fn read_source(path: &Path) -> Result<String, PolicyError> {
    let io = |source| PolicyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > MAX_SOURCE_BYTES as u64 {
        return Err(PolicyError::invalid(
            Origin::new(path, 0, 0),
            "document",
            format!(
                "file is {} bytes; the limit is {MAX_SOURCE_BYTES}",
                meta.len()
            ),
        ));
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Parses one document, choosing the schema from `apiVersion` and `kind`.
pub(crate) fn parse_document(file: &Path, text: &str) -> Result<Document, PolicyError> {
    let header: Header =
        serde_saphyr::from_str_with_options(text, options()).map_err(|e| yaml_error(file, &e))?;
    let doc_origin = Origin::new(file, 1, 1);
    match (header.api_version.as_deref(), header.kind.as_deref()) {
        (Some(WARDEN_API_VERSION), Some("Policy")) => {
            serde_saphyr::from_str_with_options(text, options())
                .map(|d| Document::Policy(Box::new(d)))
                .map_err(|e| yaml_error(file, &e))
        }
        (Some(WARDEN_API_VERSION), Some("PolicyTest")) => {
            serde_saphyr::from_str_with_options(text, options())
                .map(Document::Test)
                .map_err(|e| yaml_error(file, &e))
        }
        (Some(WARDEN_API_VERSION), other) => Err(PolicyError::invalid(
            doc_origin,
            "kind",
            format!(
                "expected `Policy` or `PolicyTest`, found {}",
                describe(other)
            ),
        )),
        (Some(AGT_API_VERSION), _) => serde_saphyr::from_str_with_options(text, options())
            .map(|d| Document::Agt(Box::new(d)))
            .map_err(|e| yaml_error(file, &e)),
        (other, _) => Err(PolicyError::invalid(
            doc_origin,
            "apiVersion",
            format!(
                "expected `{WARDEN_API_VERSION}` or `{AGT_API_VERSION}`, found {}",
                describe(other)
            ),
        )),
    }
}

fn describe(v: Option<&str>) -> String {
    v.map(|s| format!("`{s}`"))
        .unwrap_or_else(|| "nothing".to_owned())
}
