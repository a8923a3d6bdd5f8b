//! The kernel through its public API: every stage, concurrency, approvals, audit.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden_core::{Action, Verdict};
use warden_kernel::{AuditEvent, AuditSink, Kernel, Outcome};
use warden_policy::{PolicyHandle, PolicySet};
use warden_runtime::{Approvals, ChannelBackend, KillSwitch, KillTarget, Resolution, Usage};

const POLICY: &str = r#"apiVersion: warden.dev/v1
kind: Policy
name: kernel-test
default: allow
rules:
  - id: no-rm
    tools: [shell]
    when: args.cmd.contains("rm -rf")
    effect: deny
    reason: destructive shell
  - id: pay
    tools: [pay]
    effect: escalate
    approvers: [alice]
    timeout: 5s
quotas:
  - id: search-rate
    tools: [search]
    rate: 3/hour
  - id: llm-tokens
    tools: [llm]
    per: session
    tokens: 100
"#;

/// Collects records in memory (a test sink; production uses warden-audit).
#[derive(Default)]
struct Collect(Mutex<Vec<serde_json::Value>>);

impl AuditSink for Collect {
    fn append(&self, event: AuditEvent) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push(serde_json::to_value(&event).map_err(|e| e.to_string())?);
        Ok(())
    }
    fn flush(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A sink whose disk is full.
struct Broken;
impl AuditSink for Broken {
    fn append(&self, _: AuditEvent) -> Result<(), String> {
        Err("disk full".into())
    }
    fn flush(&self) -> Result<(), String> {
        Err("disk full".into())
    }
}

fn kernel_with(sink: Arc<dyn AuditSink>, approvals: Option<Approvals>) -> Kernel {
    let mut b =
        Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(POLICY).unwrap())).audit(sink);
    if let Some(a) = approvals {
        b = b.approvals(a);
    }
    b.build().unwrap()
}

fn act(agent: &str, tool: &str, args: serde_json::Value) -> Action {
    Action::tool_call(agent, tool)
        .unwrap()
        .with_session("s1")
        .with_args(args.as_object().unwrap().clone())
}

#[test]
fn policy_decides_and_every_decision_is_audited() {
    let sink = Arc::new(Collect::default());
    let k = kernel_with(sink.clone(), None);
    let d = k.decide(&act("a", "shell", json!({"cmd": "rm -rf /"})));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.rule_ids, ["no-rm"]);
    let d2 = k.decide(&act("a", "shell", json!({"cmd": "ls"})));
    assert_eq!(d2.verdict, Verdict::Allow);
    let recs = sink.0.lock().unwrap();
    assert_eq!(recs[0]["type"], "policy_loaded");
    assert_eq!(recs[1]["type"], "decision");
    assert_eq!(recs[1]["decision_id"], d.decision_id.as_str());
    assert_eq!(recs[1]["verdict"], "deny");
    assert!(
        recs[1]["action"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        recs[1]["action"].get("args").is_none(),
        "raw args are not recorded by default"
    );
    assert_ne!(recs[1]["action"]["digest"], recs[2]["action"]["digest"]);
}

#[test]
fn unwritable_audit_fails_closed() {
    let k = Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(POLICY).unwrap()))
        .build()
        .unwrap();
    assert_eq!(
        k.decide(&act("a", "read", json!({}))).verdict,
        Verdict::Allow,
        "no sink configured: fine"
    );
    let err = Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(POLICY).unwrap()))
        .audit(Arc::new(Broken))
        .build();
    assert!(
        err.is_err(),
        "a kernel whose audit log cannot take the policy record does not start"
    );
}

#[test]
fn kill_switch_stops_the_next_decision_on_every_thread() {
    let sink = Arc::new(Collect::default());
    let k = Arc::new(kernel_with(sink.clone(), None));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let denied_after_kill = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (k, stop, killed, denied) = (
                k.clone(),
                stop.clone(),
                killed.clone(),
                denied_after_kill.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let was_killed = killed.load(Ordering::Acquire);
                    let d = k.decide(&act("bot", "read", json!({})));
                    if was_killed {
                        // Once the kill returned, no decision may allow.
                        assert_eq!(d.verdict, Verdict::Deny);
                        assert_eq!(d.reasons[0], "killed:agent");
                        denied.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    k.kill(KillTarget::Agent("bot".into()), "runaway loop", Some("ops"))
        .unwrap();
    killed.store(true, Ordering::Release);
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::Release);
    for h in handles {
        h.join().unwrap();
    }
    assert!(denied_after_kill.load(Ordering::Relaxed) > 0);
    assert_eq!(
        k.decide(&act("other", "read", json!({}))).verdict,
        Verdict::Allow
    );
    assert!(
        k.unkill(KillTarget::Agent("bot".into()), Some("ops"))
            .unwrap()
    );
    assert_eq!(
        k.decide(&act("bot", "read", json!({}))).verdict,
        Verdict::Allow
    );
    let recs = sink.0.lock().unwrap();
    assert!(
        recs.iter()
            .any(|r| r["type"] == "kill" && r["reason"] == "runaway loop" && r["by"] == "ops")
    );
    assert!(recs.iter().any(|r| r["type"] == "unkill"));
}

#[test]
fn kill_all_and_sessions() {
    let k = kernel_with(Arc::new(Collect::default()), None);
    k.kill(KillTarget::Session("s1".into()), "leak", None)
        .unwrap();
    assert_eq!(
        k.decide(&act("a", "read", json!({}))).reasons[0],
        "killed:session"
    );
    let other = Action::tool_call("a", "read").unwrap().with_session("s2");
    assert_eq!(k.decide(&other).verdict, Verdict::Allow);
    k.kill(KillTarget::All, "incident", None).unwrap();
    assert_eq!(k.decide(&other).reasons[0], "killed:all");
}

#[test]
fn kill_state_from_another_process_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let ks = KillSwitch::open(dir.path(), Duration::from_millis(2)).unwrap();
    let k = Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(POLICY).unwrap()))
        .kill_switch(ks)
        .build()
        .unwrap();
    // "Another process": an independent handle on the same directory.
    let other = KillSwitch::open(dir.path(), Duration::from_secs(3600)).unwrap();
    other
        .kill(KillTarget::Agent("bot".into()), "remote", None)
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while k.decide(&act("bot", "read", json!({}))).verdict != Verdict::Deny {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn quotas_rate_limit_and_budgets() {
    let k = kernel_with(Arc::new(Collect::default()), None);
    for _ in 0..3 {
        assert_eq!(
            k.decide(&act("a", "search", json!({}))).verdict,
            Verdict::Allow
        );
    }
    let d = k.decide(&act("a", "search", json!({})));
    assert_eq!(
        (d.verdict, d.reasons[0].as_str()),
        (Verdict::Deny, "quota:search-rate")
    );
    assert_eq!(
        k.decide(&act("b", "search", json!({}))).verdict,
        Verdict::Allow
    );

    let d = k.decide(&act("a", "llm", json!({})));
    assert_eq!(d.verdict, Verdict::Allow);
    k.record_outcome(
        &d.decision_id,
        Outcome {
            usage: Usage {
                tokens: 100,
                cost: 0.0,
            },
            ..Outcome::default()
        },
    )
    .unwrap();
    let d = k.decide(&act("a", "llm", json!({})));
    assert_eq!(d.reasons[0], "quota:llm-tokens");
}

#[test]
fn approvals_resolve_and_time_out() {
    let sink = Arc::new(Collect::default());
    let (backend, rx) = ChannelBackend::new(16);
    let k = Arc::new(kernel_with(
        sink.clone(),
        Some(Approvals::new(Some(Arc::new(backend)))),
    ));
    let k2 = k.clone();
    let approver = std::thread::spawn(move || {
        let req = rx.recv().unwrap();
        assert_eq!(req.approvers, ["alice"]);
        assert!(k2.resolve_approval(&req.id, "mallory", true, None).is_err());
        k2.resolve_approval(&req.id, "alice", true, Some("looks fine".into()))
            .unwrap();
        let req = rx.recv().unwrap();
        k2.resolve_approval(&req.id, "alice", false, Some("no".into()))
            .unwrap();
    });
    let d = k.decide_and_wait(
        &act("a", "pay", json!({"amount": 5})),
        Duration::from_secs(5),
    );
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(
        d.reasons
            .iter()
            .any(|r| r == "approved by alice: looks fine")
    );
    let d = k.decide_and_wait(
        &act("a", "pay", json!({"amount": 6})),
        Duration::from_secs(5),
    );
    assert_eq!(
        (d.verdict, d.reasons[0].as_str()),
        (Verdict::Deny, "approval:denied")
    );
    approver.join().unwrap();
    // Nobody answers: the waiter's timeout is a deny.
    let d = k.decide_and_wait(&act("a", "pay", json!({})), Duration::from_millis(20));
    assert_eq!(
        (d.verdict, d.reasons[0].as_str()),
        (Verdict::Deny, "approval:timeout")
    );
    // A plain decide leaves it pending.
    let d = k.decide(&act("a", "pay", json!({})));
    assert_eq!(d.verdict, Verdict::Escalate);
    assert!(k.pending_approvals().iter().any(|p| p.id == d.decision_id));
    let recs = sink.0.lock().unwrap();
    let approvals: Vec<_> = recs.iter().filter(|r| r["type"] == "approval").collect();
    assert_eq!(approvals.len(), 3);
    assert_eq!(approvals[0]["resolution"]["resolution"], "approved");
    assert_eq!(approvals[0]["resolution"]["by"], "alice");
    assert_eq!(approvals[2]["resolution"]["resolution"], "timed_out");
    assert!(matches!(
        k.resolve_approval("nope", "alice", true, None),
        Err(warden_kernel::KernelError::Approval(_))
    ));
    let _ = Resolution::TimedOut;
}

#[test]
fn concurrent_decisions_are_all_recorded() {
    let sink = Arc::new(Collect::default());
    let k = Arc::new(kernel_with(sink.clone(), None));
    std::thread::scope(|s| {
        for t in 0..8 {
            let k = k.clone();
            s.spawn(move || {
                for i in 0..500 {
                    let d = k.decide(&act(
                        &format!("a{t}"),
                        "shell",
                        json!({"cmd": if i % 2 == 0 { "rm -rf x" } else { "ls" }}),
                    ));
                    assert_eq!(
                        d.verdict,
                        if i % 2 == 0 {
                            Verdict::Deny
                        } else {
                            Verdict::Allow
                        }
                    );
                }
            });
        }
    });
    let recs = sink.0.lock().unwrap();
    let ids: std::collections::HashSet<_> = recs
        .iter()
        .filter(|r| r["type"] == "decision")
        .map(|r| r["decision_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 4000, "every decision recorded once, ids unique");
}

#[test]
fn reload_keeps_budgets_and_records_the_new_policy() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.yaml");
    std::fs::write(&f, POLICY).unwrap();
    let sink = Arc::new(Collect::default());
    let k = Kernel::builder(PolicyHandle::load(&[&f]).unwrap())
        .audit(sink.clone())
        .build()
        .unwrap();
    for _ in 0..3 {
        k.decide(&act("a", "search", json!({})));
    }
    std::fs::write(&f, POLICY.replace("default: allow", "default: warn")).unwrap();
    let set = k.reload_policy().unwrap();
    assert_eq!(set.default_verdict(), Verdict::Warn);
    assert_eq!(
        k.decide(&act("a", "search", json!({}))).reasons[0],
        "quota:search-rate"
    );
    std::fs::write(&f, "broken: [").unwrap();
    assert!(k.reload_policy().is_err());
    assert_eq!(
        k.policy().default_verdict(),
        Verdict::Warn,
        "old policy kept"
    );
    assert_eq!(
        sink.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["type"] == "policy_loaded")
            .count(),
        2
    );
}
