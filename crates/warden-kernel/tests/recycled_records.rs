//! Decision records are rebuilt in place from spent ones (the audit log hands
//! them back for reuse): nothing of an earlier decision may leak into a later
//! record — a session, a tool, arguments, reasons or rule ids that the new
//! decision does not have.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use warden_audit::Durability;
use warden_core::{Action, Decision};
use warden_kernel::{ArgsMode, Kernel};
use warden_policy::{PolicyHandle, PolicySet};

const POLICY: &str = "apiVersion: warden.dev/v1\nkind: Policy\nname: recycled\ndefault: allow\nrules:\n  - id: no-rm\n    tools: [rm]\n    effect: deny\n    reason: destructive\n";

/// A different shape of action for every `i`: with and without session,
/// tool names of different lengths, argument maps that grow and shrink,
/// unicode and escapes, context present or not.
fn action(thread: u64, i: u64) -> Action {
    let tool = match i % 4 {
        0 => "rm",
        1 => "ls",
        2 => "a-much-longer-tool-name-\u{e9}",
        _ => "x",
    };
    let mut a = Action::tool_call(format!("agent-{thread}-{}", i % 3), tool).unwrap();
    if !i.is_multiple_of(3) {
        a = a.with_session(format!("s{}", i % 5));
    }
    let args = match i % 5 {
        0 => json!({}),
        1 => json!({"i": i}),
        2 => {
            json!({"i": i, "text": "line\n\"quoted\" \u{1F600}", "nested": {"z": [1, 2.5, null], "a": true}})
        }
        3 => json!({"big": "x".repeat((i % 7 * 300) as usize)}),
        _ => json!({"i": i, "f": 1e21, "neg": -0.0}),
    };
    a = a.with_args(args.as_object().unwrap().clone());
    if i.is_multiple_of(2) {
        a.context
            .insert("trace".into(), Value::from(format!("t{i}")));
    }
    a
}

fn digest(a: &Action) -> String {
    let both = json!({"args": a.args, "context": a.context});
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(
            serde_json_canonicalizer::to_vec(&both).unwrap()
        ))
    )
}

fn check(dir: &Path, expected: &HashMap<String, (Action, Decision)>, raw: bool) {
    let mut seen = 0;
    for r in warden_audit::records(dir, 0).unwrap() {
        let r = r.unwrap();
        let v = r.json().unwrap();
        if v["type"] != "decision" {
            continue;
        }
        seen += 1;
        let id = v["decision_id"].as_str().unwrap();
        let (a, d) = &expected[id];
        let mut want = json!({
            "type": "decision",
            "decision_id": d.decision_id,
            "ts_ms": v["ts_ms"],
            "policy_hash": d.policy_hash,
            "point": a.point,
            "agent": a.agent,
            "verdict": d.verdict,
            "reasons": d.reasons,
            "rule_ids": d.rule_ids,
            "obligations": d.obligations,
            "action": {"digest": digest(a)},
        });
        if let Some(s) = &a.session {
            want["session"] = json!(s);
        }
        if let Some(t) = a.tool() {
            want["tool"] = json!(t);
        }
        if raw {
            want["action"]["args"] = Value::Object(a.args.clone());
            want["action"]["context"] = Value::Object(a.context.clone());
        }
        // Byte for byte: the leaf is the reference canonical form of exactly
        // this decision's record.
        assert_eq!(
            String::from_utf8(r.bytes.clone()).unwrap(),
            String::from_utf8(serde_json_canonicalizer::to_vec(&want).unwrap()).unwrap(),
            "record of {id}"
        );
    }
    assert_eq!(seen, expected.len());
}

fn run(mode: ArgsMode, durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = HashMap::new();
    {
        let k = Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(POLICY).unwrap()))
            .args_mode(mode)
            .data_dir(dir.path(), durability)
            .unwrap()
            .build()
            .unwrap();
        let per_thread = if durability == Durability::Sync {
            150
        } else {
            3000
        };
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..3u64)
                .map(|t| {
                    let k = &k;
                    s.spawn(move || {
                        (0..per_thread)
                            .map(|i| {
                                let a = action(t, i);
                                let d = k.decide(&a);
                                (d.decision_id.clone(), (a, d))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                expected.extend(h.join().unwrap());
            }
        });
        k.flush().unwrap();
    }
    assert!(
        warden_audit::verify(dir.path(), &Default::default())
            .unwrap()
            .records
            > 0
    );
    check(dir.path(), &expected, mode == ArgsMode::Raw);
}

#[test]
fn reused_records_carry_only_their_own_decision_hashed() {
    run(ArgsMode::Digest, Durability::Batched);
}

#[test]
fn reused_records_carry_only_their_own_decision_raw() {
    run(ArgsMode::Raw, Durability::Batched);
}

#[test]
fn reused_records_carry_only_their_own_decision_sync() {
    run(ArgsMode::Digest, Durability::Sync);
}
