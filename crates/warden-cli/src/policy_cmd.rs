//! `warden policy lint|test|explain`.

use crate::check::{KernelDecider, assumed_trust, read_action};
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use warden_policy::{Outcome, PolicySet, PolicySource, RuleResult, SourceResult, lint, testing};

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Strictly validate policies (Warden rules, Rego and Cedar sources) and
    /// warn about rules that can never decide.
    Lint {
        /// Policy files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Exit 1 when there are warnings.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Run policy unit tests (`*_test.yaml` cases and Rego `test_` rules); prints `N passed, M failed`.
    Test {
        /// Test files or directories containing them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print every case, not only failures.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Show which rules were considered for an action, which matched, and why the verdict won.
    Explain {
        /// Policy files or directories.
        #[arg(long = "policy", short = 'p', required = true, num_args = 1..)]
        policy: Vec<PathBuf>,
        /// File with the Action JSON; `-` or omitted reads stdin.
        #[arg(long)]
        action: Option<PathBuf>,
        /// Assume the agent has this trust score (0-1000) instead of the baseline (400).
        #[arg(long)]
        trust: Option<u16>,
        /// Assume the agent is in this tier (untrusted, probationary, standard, trusted, verified).
        #[arg(long)]
        tier: Option<String>,
    },
}

pub(crate) fn run(cmd: PolicyCommand) -> Result<u8> {
    match cmd {
        PolicyCommand::Lint {
            paths,
            deny_warnings,
        } => {
            let set = PolicySet::load(&paths)?;
            let findings = lint::lint(&set);
            for f in &findings {
                println!("{f}");
            }
            println!(
                "{} rules{} from {} policies, default {}: {} warnings",
                set.rules().len(),
                sources_summary(&set),
                set.names().len(),
                set.default_verdict(),
                findings.len()
            );
            Ok(u8::from(deny_warnings && !findings.is_empty()))
        }
        PolicyCommand::Test { paths, verbose } => {
            // Cases are decided like the kernel: trust tiers, ring stage, policy.
            let report = testing::run_with(&paths, &KernelDecider)?;
            for c in &report.cases {
                match &c.failure {
                    Some(f) => println!("FAIL {} ({}): {f}", c.name, c.origin),
                    None if verbose => println!("ok   {}", c.name),
                    None => {}
                }
            }
            println!("{} passed, {} failed", report.passed(), report.failed());
            Ok(u8::from(report.failed() > 0))
        }
        PolicyCommand::Explain {
            policy,
            action,
            trust,
            tier,
        } => {
            let set = PolicySet::load(&policy)?;
            let action = read_action(action.as_deref())?;
            let assumed = testing::AssumedFacts { trust, tier };
            let book = if assumed == testing::AssumedFacts::default() {
                None
            } else {
                Some(assumed_trust(&action.agent, &assumed).map_err(anyhow::Error::msg)?)
            };
            println!(
                "action: point={} agent={} tool={}",
                action.point,
                action.agent,
                action.tool().unwrap_or("-")
            );
            println!(
                "policy: {} ({} rules, default {}, {})",
                set.names().join(", "),
                set.rules().len(),
                set.default_verdict(),
                set.hash()
            );
            let facts = match warden_kernel::Kernel::preview_ring(&set, &action, book) {
                Ok(facts) => facts,
                Err(d) => {
                    println!(
                        "ring stage: STOP -> {}: {}",
                        d.verdict,
                        d.reasons.join("; ")
                    );
                    println!(
                        "verdict: {} because the ring stage stopped the action before the policy",
                        d.verdict
                    );
                    println!("decision: {}", serde_json::to_string(&d)?);
                    return Ok(crate::check::exit_code(d.verdict));
                }
            };
            println!(
                "agent facts: trust={} tier={} ring={}{}",
                facts.trust(),
                facts.tier(),
                facts.ring(),
                match (set.rings(), action.tool()) {
                    (Some(r), Some(tool)) if action.point == warden_core::Point::PreToolCall => {
                        format!(
                            "; ring stage: pass (tool `{tool}` requires ring {})",
                            r.tool_ring(tool)
                        )
                    }
                    (Some(_), _) => {
                        "; ring stage: not applicable (only pre_tool_call calls are ring-checked)"
                            .to_owned()
                    }
                    (None, _) => "; no rings: block".to_owned(),
                }
            );
            let ex = set.explain_with(&action, &facts);
            println!(
                "considered {} rules in rank order (priority, then deny > escalate > warn > transform > allow); {} excluded by point/tool index",
                ex.traces.len(),
                ex.not_considered
            );
            for t in &ex.traces {
                let what = match &t.result {
                    RuleResult::AgentMismatch => "skip: agent not listed".to_owned(),
                    RuleResult::ToolMismatch => "skip: tool glob does not match".to_owned(),
                    RuleResult::ConditionFalse => "no match: condition false".to_owned(),
                    RuleResult::Matched => format!("MATCH -> {}", t.rule.effect),
                    RuleResult::Error {
                        message,
                        skipped: true,
                    } => format!("error (on_error: skip): {message}"),
                    RuleResult::Error {
                        message,
                        skipped: false,
                    } => format!("ERROR -> deny: {message}"),
                    RuleResult::OverBudget => "ERROR -> deny: over the CEL cost budget".to_owned(),
                };
                println!(
                    "  [priority {:>4}] {:<32} {what}   ({})",
                    t.rule.priority, t.rule.id, t.rule.origin
                );
            }
            for t in &ex.sources {
                let what = match &t.result {
                    SourceResult::Decided {
                        verdict,
                        reasons,
                        rule_ids,
                        ..
                    } => {
                        let by = match t.source {
                            PolicySource::Cedar(_) => format!(" by {}", rule_ids.join(", ")),
                            PolicySource::Rego(_) => String::new(),
                        };
                        if reasons.is_empty() {
                            format!("DECIDED -> {verdict}{by}")
                        } else {
                            format!("DECIDED -> {verdict}{by}: {}", reasons.join("; "))
                        }
                    }
                    SourceResult::Undefined => match t.source {
                        PolicySource::Rego(_) => "undefined: no decision".to_owned(),
                        PolicySource::Cedar(_) => "no applicable policy: no decision".to_owned(),
                    },
                    SourceResult::Error { kind, message } => {
                        format!("ERROR -> deny ({kind}): {message}")
                    }
                };
                let detail = match t.source {
                    PolicySource::Rego(r) => format!("query {}", r.query()),
                    PolicySource::Cedar(c) => format!(
                        "{} policies{}",
                        c.policies().len(),
                        if c.has_schema() {
                            ", schema-validated"
                        } else {
                            ", no schema"
                        }
                    ),
                };
                println!(
                    "  {:<46} {what}   ({}, {detail})",
                    format!("[{}] {}", t.source.kind(), t.source.id()),
                    t.source.origin(),
                );
            }
            let d = set.to_decision(&ex.evaluation);
            let why = match &ex.evaluation.outcome {
                Outcome::Rule(r) => format!("rule `{}` is the highest-ranked matching rule", r.id),
                Outcome::Default => format!(
                    "no rule matched, so the policy default applies ({})",
                    set.default_origin()
                ),
                Outcome::Failed { kind, .. } => format!("evaluation failed closed ({kind})"),
                Outcome::Sources { rule, sources } => {
                    let mut who: Vec<String> =
                        rule.iter().map(|r| format!("rule `{}`", r.id)).collect();
                    who.extend(sources.iter().map(|d| match d.source {
                        PolicySource::Cedar(_) => {
                            format!("`{}` (policies {})", d.source.id(), d.rule_ids.join(", "))
                        }
                        PolicySource::Rego(_) => format!("`{}`", d.source.id()),
                    }));
                    format!(
                        "{} gave the most restrictive verdict (deny overrides across sources)",
                        who.join(" and ")
                    )
                }
            };
            println!("verdict: {} because {why}", d.verdict);
            println!("decision: {}", serde_json::to_string(&d)?);
            Ok(crate::check::exit_code(d.verdict))
        }
    }
}

/// `, 1 Rego source, 1 Cedar source (5 policies)` — empty without sources.
fn sources_summary(set: &PolicySet) -> String {
    let rego = set
        .sources()
        .iter()
        .filter(|s| s.as_rego().is_some())
        .count();
    let cedar: Vec<usize> = set
        .sources()
        .iter()
        .filter_map(PolicySource::as_cedar)
        .map(|c| c.policies().len())
        .collect();
    let mut out = String::new();
    if rego > 0 {
        out.push_str(&format!(
            ", {rego} Rego source{}",
            if rego == 1 { "" } else { "s" }
        ));
    }
    if !cedar.is_empty() {
        out.push_str(&format!(
            ", {} Cedar source{} ({} policies)",
            cedar.len(),
            if cedar.len() == 1 { "" } else { "s" },
            cedar.iter().sum::<usize>()
        ));
    }
    out
}
