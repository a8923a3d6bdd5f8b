//! `TrustFeed` through the public kernel API: which decisions, outcomes and
//! approvals move scores, that the kernel's audit records still reach the
//! wrapped sink, and that concurrent deciders lose no signal.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use warden_core::{Action, Verdict};
use warden_identity::{TrustBook, TrustConfig, now_secs};
use warden_kernel::{AuditEvent, AuditSink, Kernel, Outcome};
use warden_policy::{PolicyHandle, PolicySet};
use warden_runtime::KillTarget;

const POLICY: &str = r#"apiVersion: warden.dev/v1
kind: Policy
name: feed-test
default: deny
rules:
  - id: no-secrets
    tools: [read_secrets]
    effect: deny
  - id: pay
    tools: [pay]
    effect: escalate
    approvers: [alice]
    timeout: 30s
  - id: ok
    tools: [search]
    effect: allow
"#;

#[derive(Default)]
struct Collect(Mutex<Vec<String>>);

impl AuditSink for Collect {
    fn append(&self, event: AuditEvent) -> Result<(), String> {
        let kind = serde_json::to_value(&event).unwrap()["type"]
            .as_str()
            .unwrap()
            .to_owned();
        self.0.lock().unwrap().push(kind);
        Ok(())
    }
    fn flush(&self) -> Result<(), String> {
        Ok(())
    }
}

fn kernel() -> (Kernel, Arc<TrustBook>, Arc<Collect>) {
    let book = Arc::new(TrustBook::in_memory(TrustConfig::default()));
    let sink = Arc::new(Collect::default());
    let k = Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(POLICY).unwrap()))
        .audit(Arc::clone(&sink) as Arc<dyn AuditSink>)
        .trust_feed(Arc::clone(&book), None)
        .build()
        .unwrap();
    (k, book, sink)
}

fn call(agent: &str, tool: &str) -> Action {
    Action::tool_call(agent, tool).unwrap()
}

fn score(book: &TrustBook, agent: &str) -> f64 {
    book.score(agent, now_secs()).unwrap()
}

#[test]
fn which_events_are_signals() {
    let (k, book, sink) = kernel();
    // Violation by a rule: −10 %.
    assert_eq!(k.decide(&call("a", "read_secrets")).verdict, Verdict::Deny);
    assert!((score(&book, "a") - 360.0).abs() < 0.01);
    // The policy default and the kill switch are not held against the agent.
    assert_eq!(k.decide(&call("b", "unknown")).verdict, Verdict::Deny);
    k.kill(KillTarget::Agent("c".into()), "test", None).unwrap();
    assert_eq!(k.decide(&call("c", "search")).verdict, Verdict::Deny);
    assert_eq!(score(&book, "b"), 400.0);
    assert_eq!(score(&book, "c"), 400.0);
    // Outcomes: success raises, error lowers; a second outcome for the same
    // decision, or one for an unknown id, scores nothing.
    let d = k.decide(&call("d", "search"));
    k.record_outcome(&d.decision_id, Outcome::default())
        .unwrap();
    let up = score(&book, "d");
    assert!(up > 400.0);
    k.record_outcome(&d.decision_id, Outcome::default())
        .unwrap();
    k.record_outcome("not-a-decision", Outcome::default())
        .unwrap();
    assert_eq!(score(&book, "d"), up);
    let d = k.decide(&call("d", "search"));
    k.record_outcome(
        &d.decision_id,
        Outcome {
            error: Some("boom".into()),
            ..Outcome::default()
        },
    )
    .unwrap();
    assert!(score(&book, "d") < up);
    // Approvals: granted raises, denied lowers.
    let d = k.decide(&call("e", "pay"));
    assert_eq!(d.verdict, Verdict::Escalate);
    k.resolve_approval(&d.decision_id, "alice", true, None)
        .unwrap();
    let granted = score(&book, "e");
    assert!(granted > 400.0);
    // The approved action's outcome still scores.
    k.record_outcome(&d.decision_id, Outcome::default())
        .unwrap();
    assert!(score(&book, "e") > granted);
    let d = k.decide(&call("f", "pay"));
    k.resolve_approval(&d.decision_id, "alice", false, None)
        .unwrap();
    assert!(score(&book, "f") < 400.0);
    // Every record still reached the wrapped sink.
    let kinds = sink.0.lock().unwrap().clone();
    assert_eq!(kinds.iter().filter(|k| *k == "decision").count(), 7);
    assert_eq!(kinds.iter().filter(|k| *k == "outcome").count(), 5);
    assert_eq!(kinds.iter().filter(|k| *k == "approval").count(), 2);
}

#[test]
fn concurrent_deciders_lose_no_signal() {
    let (k, book, _) = kernel();
    let (threads, per_thread) = (4, 100);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per_thread {
                    let d = k.decide(&call("busy", "search"));
                    k.record_outcome(&d.decision_id, Outcome::default())
                        .unwrap();
                }
            });
        }
    });
    // Every success applied once (all within the same second or two: the
    // decay over that is far below the tolerance).
    let c = TrustConfig::default();
    let expect =
        (0..threads * per_thread).fold(c.baseline, |s, _| TrustConfig::apply(s, c.success));
    assert!(
        (score(&book, "busy") - expect).abs() < 0.05,
        "{}",
        score(&book, "busy")
    );
}
