//! Trust scores: tiers, signals, idempotent decay, bounded propagation,
//! persistence, and the gate's minimum tier.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use std::sync::Arc;
use warden_core::Point;
use warden_identity::{
    Claims, Gate, GateConfig, Identity, Request, Scope, Signal, Tier, TrustBook, TrustConfig,
    invocation_payload, jws, now_secs,
};

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

#[test]
fn tiers_have_the_documented_bounds() {
    let cases = [
        (0.0, Tier::Untrusted),
        (299.9, Tier::Untrusted),
        (300.0, Tier::Probationary),
        (499.0, Tier::Probationary),
        (500.0, Tier::Standard),
        (699.99, Tier::Standard),
        (700.0, Tier::Trusted),
        (899.0, Tier::Trusted),
        (900.0, Tier::Verified),
        (1000.0, Tier::Verified),
    ];
    for (s, t) in cases {
        assert_eq!(Tier::of(s), t, "{s}");
        assert_eq!(t.as_str().parse::<Tier>().unwrap(), t);
    }
    assert!(Tier::Untrusted < Tier::Probationary && Tier::Trusted < Tier::Verified);
}

#[test]
fn signals_move_scores_asymmetrically() {
    let book = TrustBook::in_memory(TrustConfig::default());
    assert_eq!(book.score("a", T0).unwrap(), 400.0);
    let up = book.record("a", Signal::Success, &[], T0).unwrap();
    assert!(up > 400.0 && up < 404.0, "{up}");
    let down = book.record("a", Signal::PolicyViolation, &[], T0).unwrap();
    assert!(
        down < 400.0,
        "one violation undoes more than one success: {down}"
    );
    assert!(book.record("b", Signal::ApprovalGranted, &[], T0).unwrap() > 400.0);
    assert!(book.record("c", Signal::ApprovalDenied, &[], T0).unwrap() < 400.0);
    assert!(book.record("d", Signal::Error, &[], T0).unwrap() < 400.0);
    // Many successes approach but never pass 1000; many violations reach toward 0.
    for _ in 0..5000 {
        book.record("e", Signal::Success, &[], T0).unwrap();
        book.record("f", Signal::PolicyViolation, &[], T0).unwrap();
    }
    let e = book.score("e", T0).unwrap();
    assert!(e > 900.0 && e <= 1000.0, "{e}");
    assert!(book.score("f", T0).unwrap() < 1.0);
    assert_eq!(book.tier("f", T0).unwrap(), Tier::Untrusted);
}

#[test]
fn decay_is_idempotent_and_returns_to_baseline() {
    let book = TrustBook::in_memory(TrustConfig::default());
    book.set("a", 900.0, T0).unwrap();
    let once = book.score("a", T0 + 3 * DAY).unwrap();
    assert_eq!(
        once,
        book.score("a", T0 + 3 * DAY).unwrap(),
        "reading twice gives the same value"
    );
    // One half-life halves the distance to the baseline.
    let half = book.score("a", T0 + 7 * DAY).unwrap();
    assert!((half - 650.0).abs() < 1e-9, "{half}");
    assert!((book.score("a", T0 + 700 * DAY).unwrap() - 400.0).abs() < 1e-6);
    // Low scores recover toward the baseline too.
    book.set("b", 0.0, T0).unwrap();
    assert!((book.score("b", T0 + 7 * DAY).unwrap() - 200.0).abs() < 1e-9);
    // A clock going backwards does not un-decay or move the score.
    assert_eq!(book.score("a", T0 - DAY).unwrap(), 900.0);
    assert!(book.set("x", 1000.5, T0).is_err());
    assert!(book.set("x", -1.0, T0).is_err());
}

proptest! {
    /// Decaying in two steps equals decaying in one (so the stored anchor can
    /// be re-materialised at any time without changing the result).
    #[test]
    fn decay_composes(score in 0.0f64..=1000.0, a in 0u64..10_000_000, b in 0u64..10_000_000) {
        let c = TrustConfig::default();
        let two = c.decayed(c.decayed(score, 0, a), a, a + b);
        let one = c.decayed(score, 0, a + b);
        prop_assert!((two - one).abs() < 1e-6, "{two} vs {one}");
        prop_assert!((0.0..=1000.0).contains(&one));
    }

    /// Any signal sequence keeps scores within 0..=1000.
    #[test]
    fn scores_stay_in_range(signals in proptest::collection::vec(0usize..5, 0..200)) {
        let book = TrustBook::in_memory(TrustConfig::default());
        let all = [Signal::Success, Signal::Error, Signal::PolicyViolation, Signal::ApprovalGranted, Signal::ApprovalDenied];
        for (i, s) in signals.iter().enumerate() {
            let v = book.record("a", all[*s], &["p"], T0 + i as u64).unwrap();
            prop_assert!((0.0..=1000.0).contains(&v));
        }
    }
}

#[test]
fn penalties_propagate_bounded_rewards_do_not() {
    let book = TrustBook::in_memory(TrustConfig::default());
    let chain = ["parent", "grandparent", "great", "great-great"];
    book.record("child", Signal::Success, &chain, T0).unwrap();
    assert_eq!(
        book.score("parent", T0).unwrap(),
        400.0,
        "rewards stay with the agent"
    );
    book.record("child", Signal::PolicyViolation, &chain, T0)
        .unwrap();
    let child = 400.0 - book.score("child", T0).unwrap();
    let p = 400.0 - book.score("parent", T0).unwrap();
    let g = 400.0 - book.score("grandparent", T0).unwrap();
    let gg = 400.0 - book.score("great", T0).unwrap();
    assert!(
        child > p && p > g && g > gg && gg > 0.0,
        "{child} {p} {g} {gg}"
    );
    assert!((p - 20.0).abs() < 1e-9, "half the weight one step up: {p}");
    assert_eq!(book.score("great-great", T0).unwrap(), 400.0, "depth bound");
}

#[test]
fn persistence() {
    let dir = tempfile::tempdir().unwrap();
    let book = TrustBook::open(dir.path(), TrustConfig::default()).unwrap();
    book.set("a", 812.5, T0).unwrap();
    book.record("b", Signal::PolicyViolation, &[], T0).unwrap();
    book.save().unwrap();
    let again = TrustBook::open(dir.path(), TrustConfig::default()).unwrap();
    assert_eq!(again.score("a", T0).unwrap(), 812.5);
    assert_eq!(again.score("b", T0).unwrap(), book.score("b", T0).unwrap());
    assert_eq!(again.list(T0).unwrap().len(), 2);
    // A corrupt file is an error, never a silent reset.
    std::fs::write(
        dir.path().join("trust.json"),
        "{\"version\":1,\"agents\":{\"a\":{\"score\":5000,\"at\":0}}}",
    )
    .unwrap();
    assert!(TrustBook::open(dir.path(), TrustConfig::default()).is_err());
    std::fs::write(dir.path().join("trust.json"), "garbage").unwrap();
    assert!(TrustBook::open(dir.path(), TrustConfig::default()).is_err());
}

#[test]
fn gate_refuses_low_tiers() {
    let server = Identity::generate().unwrap();
    let book = Arc::new(TrustBook::in_memory(TrustConfig::default()));
    let gate = Gate::new(GateConfig::new(server.did().as_str()))
        .with_trust(Arc::clone(&book), Tier::Probationary);
    let agent = Identity::generate().unwrap();
    gate.add_anchor(agent.did(), Scope::tools(&["*"]).unwrap())
        .unwrap();
    let did = agent.did().to_string();
    let req = Request {
        agent: &did,
        point: Point::PreToolCall,
        tool: Some("x"),
    };
    let env = || {
        let c = Claims::new(&agent, server.did().as_str(), 60, now_secs())
            .unwrap()
            .with_payload(invocation_payload(Point::PreToolCall, Some("x")));
        jws::sign(&agent, &c).unwrap()
    };
    gate.authenticate(&env(), &req, now_secs()).unwrap();
    book.set(&did, 120.0, now_secs()).unwrap();
    assert_eq!(
        gate.authenticate(&env(), &req, now_secs())
            .unwrap_err()
            .reason(),
        "identity:trust"
    );
}
