//! External policy engines (Rego, Cedar) as sources of a [`PolicySet`](crate::PolicySet).
//!
//! Both kinds share one result type ([`SourceResult`]), one decision type
//! ([`SourceDecision`]) and one per-decision input cache ([`Inputs`]), so the
//! combining step in `set.rs` treats them alike: each source decides or
//! abstains; any failure is a deny with a reserved `runtime_error:` reason.

use crate::cedar::{CedarInputs, CedarSource};
use crate::condition::{MAX_INPUT_DEPTH, within_depth};
use crate::error::Origin;
use crate::rego::RegoSource;
use std::time::Duration;
use warden_core::{Action, Obligation, RuntimeError, Verdict};

/// A compiled non-YAML policy source (boxed: both are large and moved at load only).
#[derive(Debug)]
pub enum PolicySource {
    /// A `rego:` block (OPA Rego through regorus).
    Rego(Box<RegoSource>),
    /// A `cedar:` block (cedar-policy).
    Cedar(Box<CedarSource>),
}

impl PolicySource {
    /// The source's id: `rego:<first module>` or `cedar:<first policy file>`.
    pub fn id(&self) -> &str {
        match self {
            PolicySource::Rego(r) => r.id(),
            PolicySource::Cedar(c) => c.id(),
        }
    }

    /// Where the block was written.
    pub fn origin(&self) -> &Origin {
        match self {
            PolicySource::Rego(r) => r.origin(),
            PolicySource::Cedar(c) => c.origin(),
        }
    }

    /// `rego` or `cedar`.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicySource::Rego(_) => "rego",
            PolicySource::Cedar(_) => "cedar",
        }
    }

    /// The Rego source, if this is one.
    pub fn as_rego(&self) -> Option<&RegoSource> {
        match self {
            PolicySource::Rego(r) => Some(&**r),
            PolicySource::Cedar(_) => None,
        }
    }

    /// The Cedar source, if this is one.
    pub fn as_cedar(&self) -> Option<&CedarSource> {
        match self {
            PolicySource::Cedar(c) => Some(&**c),
            PolicySource::Rego(_) => None,
        }
    }

    /// Evaluates the source against the (lazily converted) action.
    pub(crate) fn eval(&self, inputs: &mut Inputs<'_>, deadline: Duration) -> SourceResult {
        if let Err(e) = inputs.checked() {
            return e;
        }
        match self {
            PolicySource::Rego(r) => match inputs.rego() {
                Ok(input) => r.eval(input, deadline),
                Err(e) => e,
            },
            PolicySource::Cedar(c) => c.eval(inputs.action, &mut inputs.cedar, deadline),
        }
    }
}

/// What one source made of an action.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceResult {
    /// The source decided.
    Decided {
        /// The verdict.
        verdict: Verdict,
        /// Reasons the source gave (may be empty for Rego).
        reasons: Vec<String>,
        /// Rule ids reported in the decision: the Rego source id, or the
        /// ids of the Cedar policies that determined the verdict.
        rule_ids: Vec<String>,
        /// Obligations (an approval for a Cedar `@verdict("escalate")`).
        obligations: Vec<Obligation>,
    },
    /// No decision: the Rego query was undefined, or no Cedar policy applied.
    Undefined,
    /// Evaluation failed (engine error, ill-typed result, limit hit,
    /// unrepresentable input): a deny.
    Error {
        /// The reserved reason.
        kind: RuntimeError,
        /// What went wrong.
        message: String,
    },
}

impl SourceResult {
    /// A decision without obligations, reported under `rule_id`.
    pub(crate) fn decided(verdict: Verdict, reasons: Vec<String>, rule_id: &str) -> Self {
        SourceResult::Decided {
            verdict,
            reasons,
            rule_ids: vec![rule_id.to_owned()],
            obligations: Vec::new(),
        }
    }

    /// An evaluation error.
    pub(crate) fn error(kind: RuntimeError, message: String) -> Self {
        SourceResult::Error { kind, message }
    }
}

/// One source's decision, as carried by an [`Outcome`](crate::Outcome).
#[derive(Debug, Clone)]
pub struct SourceDecision<'p> {
    /// The source.
    pub source: &'p PolicySource,
    /// Its verdict.
    pub verdict: Verdict,
    /// Its reasons.
    pub reasons: Vec<String>,
    /// Its rule ids (see [`SourceResult::Decided`]).
    pub rule_ids: Vec<String>,
    /// Its obligations.
    pub obligations: Vec<Obligation>,
}

/// One line of an explanation for a source.
#[derive(Debug, Clone)]
pub struct SourceTrace<'p> {
    /// The source.
    pub source: &'p PolicySource,
    /// What it returned.
    pub result: SourceResult,
}

/// The action in each engine's input form, converted at most once per
/// decision and only for the engines the set uses.
pub(crate) struct Inputs<'a> {
    action: &'a Action,
    checked: Option<Result<(), SourceResult>>,
    rego: Option<Result<regorus::Value, SourceResult>>,
    cedar: CedarInputs,
}

impl<'a> Inputs<'a> {
    pub(crate) fn new(action: &'a Action) -> Self {
        Inputs {
            action,
            checked: None,
            rego: None,
            cedar: CedarInputs::default(),
        }
    }

    /// The input-depth bound that Warden rules enforce holds for every engine.
    fn checked(&mut self) -> Result<(), SourceResult> {
        let action = self.action;
        self.checked
            .get_or_insert_with(|| {
                let deep = |m: &serde_json::Map<String, serde_json::Value>| {
                    !m.values().all(|v| within_depth(v, MAX_INPUT_DEPTH - 1))
                };
                if deep(&action.args) || deep(&action.context) {
                    Err(SourceResult::error(
                        RuntimeError::InvalidAction,
                        format!("args or context nest deeper than {MAX_INPUT_DEPTH} levels"),
                    ))
                } else {
                    Ok(())
                }
            })
            .clone()
    }

    fn rego(&mut self) -> Result<&regorus::Value, SourceResult> {
        let action = self.action;
        self.rego
            .get_or_insert_with(|| {
                crate::rego::input_of(action)
                    .map_err(|m| SourceResult::error(RuntimeError::InvalidAction, m))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Resolves a path named in a `rego:` or `cedar:` block (`origin`, field,
/// relative path) to the file's text.
pub(crate) type Resolve<'a> =
    dyn FnMut(&Origin, &str, &str) -> Result<String, crate::error::PolicyError> + 'a;

/// A path named in a policy file, resolved against that file's directory.
pub(crate) fn beside(origin: &Origin, rel: &str) -> std::path::PathBuf {
    origin
        .file
        .parent()
        .map(|d| d.join(rel))
        .unwrap_or_else(|| rel.into())
}
