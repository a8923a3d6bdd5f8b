//! The audit records' canonical form: the writer's fast serializer must give
//! exactly the bytes `serde_json_canonicalizer` gives for every record shape
//! (hashed and raw arguments, unicode, escapes, floats, nested values), since
//! those bytes are the Merkle leaves.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use warden_core::{Obligation, Point, Verdict};
use warden_kernel::{ActionBody, AuditEvent, DecisionTag};

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{0,12}",
        // Controls, quotes, backslashes, astral and private-use characters,
        // lone high code points: everything RFC 8785 treats specially.
        proptest::collection::vec(
            prop_oneof![
                Just('\u{0}'),
                Just('\u{1f}'),
                Just('"'),
                Just('\\'),
                Just('\n'),
                Just('\u{7f}'),
                Just('é'),
                Just('\u{2028}'),
                Just('\u{e000}'),
                Just('\u{fffd}'),
                Just('😀'),
                Just('\u{10ffff}'),
                any::<char>(),
                proptest::char::range('a', 'z'),
            ],
            0..40
        )
        .prop_map(|v| v.into_iter().collect()),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![Just(1e21), Just(1e-7), Just(-0.0), Just(5e-324), Just(0.1)]
            .prop_map(Value::from),
        any_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((any_string(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn any_map() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::vec((any_string(), any_json()), 0..6)
        .prop_map(|kv| kv.into_iter().collect())
}

fn any_verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        Just(Verdict::Allow),
        Just(Verdict::Transform),
        Just(Verdict::Warn),
        Just(Verdict::Escalate),
        Just(Verdict::Deny),
    ]
}

fn any_obligation() -> impl Strategy<Value = Obligation> {
    prop_oneof![
        (proptest::collection::vec(any_string(), 0..3), any::<u64>()).prop_map(
            |(approvers, timeout_ms)| Obligation::Approval {
                approvers,
                timeout_ms
            }
        ),
        any_string().prop_map(|path| Obligation::Redact { path }),
        (any_string(), any_json()).prop_map(|(path, value)| Obligation::Replace { path, value }),
        any_string().prop_map(|label| Obligation::AuditMark { label }),
    ]
}

prop_compose! {
    fn any_decision()(
        strings in proptest::collection::vec(any_string(), 4),
        session in proptest::option::of(any_string()),
        tool in proptest::option::of(any_string()),
        args in any_map(),
        context in any_map(),
        raw in any::<bool>(),
        verdict in any_verdict(),
        reasons in proptest::collection::vec(any_string(), 0..4),
        rule_ids in proptest::collection::vec(any_string(), 0..4),
        obligations in proptest::collection::vec(any_obligation(), 0..3),
        ts_ms in any::<u64>(),
    ) -> AuditEvent {
        AuditEvent::Decision {
            decision_id: strings[0].clone(),
            ts_ms,
            policy_hash: strings[1].clone(),
            point: Point::PreToolCall,
            agent: strings[2].clone(),
            session,
            tool,
            action: ActionBody { args, context, raw },
            kind: DecisionTag::Decision,
            verdict,
            reasons,
            rule_ids,
            obligations,
        }
    }
}

fn fast(event: &AuditEvent) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    warden_audit::to_canonical_json(event, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decision_records_match_the_reference(event in any_decision()) {
        let reference = serde_json_canonicalizer::to_vec(&event).unwrap();
        prop_assert_eq!(fast(&event).unwrap(), reference.clone());
        // A reused canonicalizer (the writer's) gives the same bytes twice.
        let mut canon = warden_audit::Canonicalizer::new();
        for _ in 0..2 {
            let mut out = b"prefix".to_vec();
            canon.encode(&event, &mut out).unwrap();
            prop_assert_eq!(&out[6..], reference.as_slice());
        }
    }

    #[test]
    fn the_digest_covers_args_and_context(args in any_map(), context in any_map()) {
        let body = ActionBody { args: args.clone(), context: context.clone(), raw: false };
        let both = serde_json::json!({ "args": args, "context": context });
        let expected = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(serde_json_canonicalizer::to_vec(&both).unwrap()))
        );
        prop_assert_eq!(body.digest().unwrap(), expected.clone());
        // The serialised record carries the same digest.
        let v: Value = serde_json::from_slice(&fast(&AuditEvent::Decision {
            decision_id: "d".into(), ts_ms: 1, policy_hash: "p".into(), point: Point::PreToolCall,
            agent: "a".into(), session: None, tool: None, action: body,
            kind: DecisionTag::Decision, verdict: Verdict::Allow, reasons: vec![], rule_ids: vec![], obligations: vec![],
        }).unwrap()).unwrap();
        prop_assert_eq!(v["action"]["digest"].as_str().unwrap(), expected.as_str());
    }

    #[test]
    fn other_records_match_the_reference(
        id in any_string(), text in proptest::option::of(any_string()), n in any::<u64>(),
        cost in any::<f64>().prop_filter("finite", |f| f.is_finite()),
        names in proptest::collection::vec(any_string(), 0..4),
    ) {
        let events = [
            AuditEvent::Outcome {
                decision_id: id.clone(), ts_ms: n, status: "ok".into(), error: text.clone(),
                latency_ms: n / 3, output_digest: text.clone(), tokens: n / 7, cost,
            },
            AuditEvent::PolicyLoaded { ts_ms: n, policy_hash: id.clone(), names },
            AuditEvent::McpToolChanged {
                ts_ms: n, server: id.clone(), tool: id.clone(),
                pinned: text.clone().unwrap_or_default(), seen: id,
            },
        ];
        for event in &events {
            prop_assert_eq!(fast(event).unwrap(), serde_json_canonicalizer::to_vec(event).unwrap());
        }
    }
}

#[test]
fn a_hashed_record_keeps_no_raw_arguments() {
    let mut args = Map::new();
    args.insert("card".into(), Value::from("4111 1111 1111 1111"));
    let event = AuditEvent::Decision {
        decision_id: "d".into(),
        ts_ms: 1,
        policy_hash: "sha256:00".into(),
        point: Point::PreToolCall,
        agent: "agent".into(),
        session: Some("s".into()),
        tool: Some("pay".into()),
        action: ActionBody {
            args,
            context: Map::new(),
            raw: false,
        },
        kind: DecisionTag::Decision,
        verdict: Verdict::Deny,
        reasons: vec!["r".into()],
        rule_ids: vec!["x".into()],
        obligations: vec![],
    };
    let text = String::from_utf8(fast(&event).unwrap()).unwrap();
    assert!(!text.contains("4111"), "{text}");
    assert!(
        text.starts_with(r#"{"action":{"digest":"sha256:"#),
        "{text}"
    );
    assert!(
        text.ends_with(r#""ts_ms":1,"type":"decision","verdict":"deny"}"#),
        "{text}"
    );
}
