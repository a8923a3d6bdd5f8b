//! The identity stage through `Kernel::decide`: forgery, replay, expiry,
//! wrong audience, widened delegation and revoked keys are denied with
//! precise reasons; sessions from a real handshake are accepted.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::sync::Arc;
use warden_core::{Action, Point, Verdict};
use warden_identity::{
    ChainLimits, Claims, Gate, GateConfig, Identity, PointSet, Scope, delegate, handshake,
    invocation_payload, jws, now_secs,
};
use warden_kernel::{IdentityStage, Kernel};
use warden_policy::{PolicyHandle, PolicySet};

const POLICY: &str = r#"apiVersion: warden.dev/v1
kind: Policy
name: identity-test
default: allow
rules:
  - id: no-delete
    tools: [fs.delete]
    effect: deny
    reason: never delete
  - id: pay
    tools: [fs.pay]
    effect: escalate
    approvers: [alice]
    timeout: 5s
"#;

struct World {
    kernel: Kernel,
    gate: Arc<Gate>,
    server: Identity,
    root: Identity,
}

fn world_with(config: impl FnOnce(&mut GateConfig)) -> World {
    let server = Identity::generate().unwrap();
    let mut cfg = GateConfig::new(server.did().as_str());
    config(&mut cfg);
    let gate = Arc::new(Gate::new(cfg));
    let root = Identity::generate().unwrap();
    gate.add_anchor(root.did(), Scope::tools(&["fs.*", "net.*"]).unwrap())
        .unwrap();
    let kernel = Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(POLICY).unwrap()))
        .stage(Box::new(IdentityStage::new(Arc::clone(&gate))))
        .build()
        .unwrap();
    World {
        kernel,
        gate,
        server,
        root,
    }
}

fn world() -> World {
    world_with(|_| {})
}

/// An invocation envelope by `signer` for `tool`, to `aud`, issued at `iat`.
fn envelope_at(signer: &Identity, aud: &str, tool: &str, iat: u64, proof: Option<&str>) -> String {
    let mut c = Claims::new(signer, aud, 60, iat)
        .unwrap()
        .with_payload(invocation_payload(Point::PreToolCall, Some(tool)));
    if let Some(p) = proof {
        c = c.with_proof(p);
    }
    jws::sign(signer, &c).unwrap()
}

fn envelope(w: &World, signer: &Identity, tool: &str, proof: Option<&str>) -> String {
    envelope_at(signer, w.server.did().as_str(), tool, now_secs(), proof)
}

fn call(w: &World, agent: &Identity, tool: &str, credential: Option<String>) -> (Verdict, String) {
    let mut a = Action::tool_call(agent.did().as_str(), tool).unwrap();
    a.credential = credential;
    let d = w.kernel.decide(&a);
    (d.verdict, d.reasons.first().cloned().unwrap_or_default())
}

fn denied(w: &World, agent: &Identity, tool: &str, credential: Option<String>) -> String {
    let (v, reason) = call(w, agent, tool, credential);
    assert_eq!(v, Verdict::Deny, "{reason}");
    reason
}

fn delegated(w: &World, child: &Identity, globs: &[&str]) -> String {
    delegate(
        &w.root,
        child.did(),
        Scope::tools(globs).unwrap(),
        600,
        None,
        &ChainLimits::default(),
        now_secs(),
    )
    .unwrap()
}

#[test]
fn anchor_envelope_allows_and_policy_still_applies() {
    let w = world();
    let root = &w.root;
    assert_eq!(
        call(
            &w,
            root,
            "fs.read",
            Some(envelope(&w, root, "fs.read", None))
        )
        .0,
        Verdict::Allow
    );
    // Identity passes; the policy still denies.
    let (v, r) = call(
        &w,
        root,
        "fs.delete",
        Some(envelope(&w, root, "fs.delete", None)),
    );
    assert_eq!((v, r.as_str()), (Verdict::Deny, "never delete"));
    // Outside the anchor's own scope.
    assert_eq!(
        denied(&w, root, "shell", Some(envelope(&w, root, "shell", None))),
        "identity:scope"
    );
}

#[test]
fn missing_and_malformed_credentials() {
    let w = world();
    assert_eq!(denied(&w, &w.root, "fs.read", None), "identity:missing");
    assert_eq!(
        denied(&w, &w.root, "fs.read", Some("hello".into())),
        "identity:malformed"
    );
    assert_eq!(
        denied(&w, &w.root, "fs.read", Some(String::new())),
        "identity:malformed"
    );
    assert_eq!(
        denied(&w, &w.root, "fs.read", Some("x".repeat(100_000))),
        "identity:malformed"
    );
}

#[test]
fn forgery_is_denied() {
    let w = world();
    let mallory = Identity::generate().unwrap();
    let t = envelope(&w, &w.root, "fs.read", None);
    // Claims swapped for mallory's, signature kept.
    let m = envelope(&w, &mallory, "fs.read", None);
    let parts: Vec<&str> = t.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], m.split('.').nth(1).unwrap(), parts[2]);
    assert_eq!(
        denied(&w, &w.root, "fs.read", Some(forged)),
        "identity:bad_signature"
    );
    // Signed by mallory but claiming to be root: kid is root's key, the signature is not.
    let mut sig_swapped: Vec<&str> = t.split('.').collect();
    let msig = m.split('.').nth(2).unwrap();
    sig_swapped[2] = msig;
    assert_eq!(
        denied(&w, &w.root, "fs.read", Some(sig_swapped.join("."))),
        "identity:bad_signature"
    );
    // An untrusted key signing for itself.
    assert_eq!(
        denied(&w, &mallory, "fs.read", Some(m)),
        "identity:untrusted_root"
    );
    // Root's valid envelope used for an action by someone else.
    let t2 = envelope(&w, &w.root, "fs.read", None);
    assert_eq!(
        denied(&w, &mallory, "fs.read", Some(t2)),
        "identity:agent_mismatch"
    );
    // An envelope for fs.read used for net.get.
    let t3 = envelope(&w, &w.root, "fs.read", None);
    assert_eq!(denied(&w, &w.root, "net.get", Some(t3)), "identity:binding");
}

#[test]
fn replay_expiry_and_audience() {
    let w = world();
    let t = envelope(&w, &w.root, "fs.read", None);
    assert_eq!(
        call(&w, &w.root, "fs.read", Some(t.clone())).0,
        Verdict::Allow
    );
    assert_eq!(denied(&w, &w.root, "fs.read", Some(t)), "identity:replayed");
    let old = envelope_at(
        &w.root,
        w.server.did().as_str(),
        "fs.read",
        now_secs() - 1000,
        None,
    );
    assert_eq!(
        denied(&w, &w.root, "fs.read", Some(old)),
        "identity:expired"
    );
    let future = envelope_at(
        &w.root,
        w.server.did().as_str(),
        "fs.read",
        now_secs() + 1000,
        None,
    );
    assert_eq!(
        denied(&w, &w.root, "fs.read", Some(future)),
        "identity:not_yet_valid"
    );
    let elsewhere = envelope_at(
        &w.root,
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
        "fs.read",
        now_secs(),
        None,
    );
    assert_eq!(
        denied(&w, &w.root, "fs.read", Some(elsewhere)),
        "identity:audience"
    );
}

#[test]
fn delegation_narrows_through_the_kernel() {
    let w = world();
    let child = Identity::generate().unwrap();
    let grant = delegated(&w, &child, &["fs.read"]);
    assert_eq!(
        call(
            &w,
            &child,
            "fs.read",
            Some(envelope(&w, &child, "fs.read", Some(&grant)))
        )
        .0,
        Verdict::Allow
    );
    assert_eq!(
        denied(
            &w,
            &child,
            "fs.write",
            Some(envelope(&w, &child, "fs.write", Some(&grant)))
        ),
        "identity:scope"
    );
    // A widened link signed by the child, bypassing `delegate`'s own check.
    let grandchild = Identity::generate().unwrap();
    let mut c = Claims::new(&child, grandchild.did().as_str(), 60, now_secs())
        .unwrap()
        .with_proof(&grant);
    c.cap = Some(Scope::tools(&["*"]).unwrap());
    let widened = jws::sign(&child, &c).unwrap();
    assert_eq!(
        denied(
            &w,
            &grandchild,
            "net.get",
            Some(envelope(&w, &grandchild, "net.get", Some(&widened)))
        ),
        "identity:scope"
    );
    // A root delegating more than it is trusted with.
    let greedy = delegate(
        &w.root,
        child.did(),
        Scope::everything(),
        600,
        None,
        &ChainLimits::default(),
        now_secs(),
    )
    .unwrap();
    assert_eq!(
        denied(
            &w,
            &child,
            "fs.read",
            Some(envelope(&w, &child, "fs.read", Some(&greedy)))
        ),
        "identity:scope"
    );
    // A chain rooted in an untrusted key.
    let stranger = Identity::generate().unwrap();
    let rogue = delegate(
        &stranger,
        child.did(),
        Scope::tools(&["fs.read"]).unwrap(),
        600,
        None,
        &ChainLimits::default(),
        now_secs(),
    )
    .unwrap();
    assert_eq!(
        denied(
            &w,
            &child,
            "fs.read",
            Some(envelope(&w, &child, "fs.read", Some(&rogue)))
        ),
        "identity:untrusted_root"
    );
    // Someone else presenting the child's grant as their own.
    assert_eq!(
        denied(
            &w,
            &grandchild,
            "fs.read",
            Some(envelope(&w, &grandchild, "fs.read", Some(&grant)))
        ),
        "identity:chain"
    );
    // Points narrow too.
    let mut at_output = Scope::tools(&["fs.read"]).unwrap();
    at_output.points = PointSet::of(&[Point::Output]);
    let g = delegate(
        &w.root,
        child.did(),
        at_output,
        600,
        None,
        &ChainLimits::default(),
        now_secs(),
    )
    .unwrap();
    assert_eq!(
        denied(
            &w,
            &child,
            "fs.read",
            Some(envelope(&w, &child, "fs.read", Some(&g)))
        ),
        "identity:scope"
    );
}

#[test]
fn revoked_keys_are_denied() {
    let w = world();
    let (mid, leaf) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let g1 = delegated(&w, &mid, &["fs.*"]);
    let g2 = delegate(
        &mid,
        leaf.did(),
        Scope::tools(&["fs.read"]).unwrap(),
        300,
        Some(&g1),
        &ChainLimits::default(),
        now_secs(),
    )
    .unwrap();
    assert_eq!(
        call(
            &w,
            &leaf,
            "fs.read",
            Some(envelope(&w, &leaf, "fs.read", Some(&g2)))
        )
        .0,
        Verdict::Allow
    );
    w.gate.revoke(mid.did()).unwrap();
    assert_eq!(
        denied(
            &w,
            &leaf,
            "fs.read",
            Some(envelope(&w, &leaf, "fs.read", Some(&g2)))
        ),
        "identity:revoked"
    );
    assert_eq!(
        denied(
            &w,
            &mid,
            "fs.read",
            Some(envelope(&w, &mid, "fs.read", Some(&g1)))
        ),
        "identity:revoked"
    );
    w.gate.revoke(w.root.did()).unwrap();
    assert_eq!(
        denied(
            &w,
            &w.root,
            "fs.read",
            Some(envelope(&w, &w.root, "fs.read", None))
        ),
        "identity:revoked"
    );
}

#[test]
fn rotation_moves_trust_to_the_new_key() {
    let w = world();
    let new = Identity::generate().unwrap();
    let st = w.root.rotate_to(new.did(), now_secs()).unwrap();
    // A statement for another successor does not rotate.
    let other = Identity::generate().unwrap();
    assert!(w.gate.rotate(&st, w.root.did(), other.did()).is_err());
    assert_eq!(
        call(
            &w,
            &w.root,
            "fs.read",
            Some(envelope(&w, &w.root, "fs.read", None))
        )
        .0,
        Verdict::Allow
    );
    w.gate.rotate(&st, w.root.did(), new.did()).unwrap();
    assert_eq!(
        denied(
            &w,
            &w.root,
            "fs.read",
            Some(envelope(&w, &w.root, "fs.read", None))
        ),
        "identity:revoked"
    );
    assert_eq!(
        call(
            &w,
            &new,
            "fs.read",
            Some(envelope(&w, &new, "fs.read", None))
        )
        .0,
        Verdict::Allow
    );
}

#[test]
fn budget_counts_calls() {
    let w = world();
    let child = Identity::generate().unwrap();
    let mut scope = Scope::tools(&["fs.read"]).unwrap();
    scope.budget = Some(2);
    let g = delegate(
        &w.root,
        child.did(),
        scope,
        600,
        None,
        &ChainLimits::default(),
        now_secs(),
    )
    .unwrap();
    for _ in 0..2 {
        assert_eq!(
            call(
                &w,
                &child,
                "fs.read",
                Some(envelope(&w, &child, "fs.read", Some(&g)))
            )
            .0,
            Verdict::Allow
        );
    }
    assert_eq!(
        denied(
            &w,
            &child,
            "fs.read",
            Some(envelope(&w, &child, "fs.read", Some(&g)))
        ),
        "identity:budget"
    );
}

/// Runs a handshake between `agent` and the world's server over a socket pair.
fn session(w: &World, agent: &Identity, proof: Option<&str>) -> Result<String, String> {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let server_did = w.server.did().clone();
    std::thread::scope(|s| {
        let client = s.spawn(|| handshake::connect(a, agent, Some(&server_did), proof));
        let served = handshake::serve(b, &w.server, &w.gate);
        let client = client.join().unwrap();
        match (served, client) {
            (Ok(g), Ok(c)) => {
                assert_eq!(g.credential, c.credential);
                Ok(c.credential)
            }
            (Err(e), _) => Err(e.reason().to_owned()),
            (_, Err(e)) => Err(e.to_string()),
        }
    })
}

#[test]
fn session_credentials_from_a_handshake() {
    let w = world();
    let child = Identity::generate().unwrap();
    let grant = delegated(&w, &child, &["fs.read", "net.get"]);
    let cred = session(&w, &child, Some(&grant)).unwrap();
    assert!(cred.starts_with("wsc1."));
    // Reusable (no replay cache on this path), scoped, bound to the agent.
    for _ in 0..3 {
        assert_eq!(
            call(&w, &child, "fs.read", Some(cred.clone())).0,
            Verdict::Allow
        );
    }
    assert_eq!(
        denied(&w, &child, "fs.write", Some(cred.clone())),
        "identity:scope"
    );
    assert_eq!(
        denied(&w, &w.root, "fs.read", Some(cred.clone())),
        "identity:agent_mismatch"
    );
    // Tampered or unknown credentials.
    let mut bytes = cred.clone().into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        denied(
            &w,
            &child,
            "fs.read",
            Some(String::from_utf8(bytes).unwrap())
        ),
        "identity:session"
    );
    assert_eq!(
        denied(&w, &child, "fs.read", Some("wsc1.short".into())),
        "identity:session"
    );
    // Revoking the delegating root ends the session.
    let other = Identity::generate().unwrap();
    let other_cred = session(&w, &other, Some(&delegated(&w, &other, &["fs.read"]))).unwrap();
    w.gate.revoke(w.root.did()).unwrap();
    assert_eq!(
        denied(&w, &child, "fs.read", Some(cred)),
        "identity:session"
    );
    assert_eq!(
        denied(&w, &other, "fs.read", Some(other_cred)),
        "identity:session"
    );
    // And no new session can be opened under it.
    let again = session(&w, &child, Some(&grant)).unwrap_err();
    assert_eq!(again, "identity:revoked");
}

#[test]
fn handshake_refusals() {
    let w = world();
    // An untrusted agent gets no session.
    let stranger = Identity::generate().unwrap();
    assert_eq!(
        session(&w, &stranger, None).unwrap_err(),
        "identity:untrusted_root"
    );
    // Pinning the wrong server fails on the client side.
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let wrong = Identity::generate().unwrap();
    std::thread::scope(|s| {
        let server = s.spawn(|| handshake::serve(b, &w.server, &w.gate));
        let e = handshake::connect(a, &w.root, Some(wrong.did()), None).unwrap_err();
        assert_eq!(e.reason(), "identity:handshake");
        assert!(server.join().unwrap().is_err());
    });
    // A response for another challenge (a replayed response) is refused.
    let nonce_reply = jws::sign(
        &w.root,
        &Claims::new(&w.root, w.server.did().as_str(), 30, now_secs())
            .unwrap()
            .with_payload(json!({"nonce": "old"})),
    )
    .unwrap();
    assert_eq!(
        w.gate
            .open_session(&nonce_reply, "new", now_secs())
            .unwrap_err()
            .reason(),
        "identity:handshake"
    );
}

#[test]
fn sessions_expire() {
    let w = world_with(|c| c.session_ttl_secs = 0);
    let cred = session(&w, &w.root, None).unwrap();
    assert_eq!(
        denied(&w, &w.root, "fs.read", Some(cred)),
        "identity:expired"
    );
}

#[test]
fn concurrent_replays_admit_exactly_one() {
    let w = world();
    let t = envelope(&w, &w.root, "fs.read", None);
    let cred = session(&w, &w.root, None).unwrap();
    let (allowed, session_ok) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let once = usize::from(
                        call(&w, &w.root, "fs.read", Some(t.clone())).0 == Verdict::Allow,
                    );
                    let many = (0..50)
                        .filter(|_| {
                            call(&w, &w.root, "fs.read", Some(cred.clone())).0 == Verdict::Allow
                        })
                        .count();
                    (once, many)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    assert_eq!(allowed, 1);
    assert_eq!(session_ok, 400);
}

#[test]
fn trust_is_fed_by_decisions_and_outcomes_and_enforced() {
    use warden_identity::{Tier, TrustBook, TrustConfig};
    use warden_kernel::{Outcome, TrustFeed};
    let server = Identity::generate().unwrap();
    let book = Arc::new(TrustBook::in_memory(TrustConfig::default()));
    let gate = Arc::new(
        Gate::new(GateConfig::new(server.did().as_str()))
            .with_trust(Arc::clone(&book), Tier::Probationary),
    );
    let root = Identity::generate().unwrap();
    gate.add_anchor(root.did(), Scope::tools(&["fs.*"]).unwrap())
        .unwrap();
    let kernel = Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(POLICY).unwrap()))
        .stage(Box::new(IdentityStage::new(Arc::clone(&gate))))
        .audit(Arc::new(TrustFeed::new(
            Arc::clone(&book),
            None,
            Some(Arc::clone(&gate)),
        )))
        .build()
        .unwrap();
    let w = World {
        kernel,
        gate,
        server,
        root,
    };
    let child = Identity::generate().unwrap();
    let grant = delegated(&w, &child, &["fs.*"]);
    let now = now_secs();
    let (c, r) = (child.did().to_string(), w.root.did().to_string());
    // A success reported after an allowed call raises the score.
    let mut a = Action::tool_call(&c, "fs.read").unwrap();
    a.credential = Some(envelope(&w, &child, "fs.read", Some(&grant)));
    let d = w.kernel.decide(&a);
    assert_eq!(d.verdict, Verdict::Allow);
    w.kernel
        .record_outcome(&d.decision_id, Outcome::default())
        .unwrap();
    assert!(book.score(&c, now).unwrap() > 400.0);
    // Forged requests in the child's name do not touch its score.
    let before = book.score(&c, now).unwrap();
    assert_eq!(
        denied(&w, &child, "fs.read", Some("x.y.z".into())),
        "identity:malformed"
    );
    assert_eq!(book.score(&c, now).unwrap(), before);
    // Policy violations lower it, and half as much its delegator's.
    let mut n = 0;
    while book.tier(&c, now_secs()).unwrap() >= Tier::Probationary {
        let reason = denied(
            &w,
            &child,
            "fs.delete",
            Some(envelope(&w, &child, "fs.delete", Some(&grant))),
        );
        assert_eq!(reason, "never delete");
        n += 1;
        assert!(n < 20, "score never fell");
    }
    assert!(
        book.score(&r, now_secs()).unwrap() < 400.0,
        "penalty propagated to the delegator"
    );
    assert!(book.score(&r, now_secs()).unwrap() > book.score(&c, now_secs()).unwrap());
    // Approvals: granted raises, denied lowers (root is still above the minimum tier).
    let pay = |approve: bool| {
        let mut a = Action::tool_call(&r, "fs.pay").unwrap();
        a.credential = Some(envelope(&w, &w.root, "fs.pay", None));
        let d = w.kernel.decide(&a);
        assert_eq!(d.verdict, Verdict::Escalate);
        let before = book.score(&r, now_secs()).unwrap();
        w.kernel
            .resolve_approval(&d.decision_id, "alice", approve, None)
            .unwrap();
        book.score(&r, now_secs()).unwrap() - before
    };
    assert!(pay(true) > 0.0);
    assert!(pay(false) < 0.0);
    // Now below the required tier: denied by the identity stage.
    assert_eq!(
        denied(
            &w,
            &child,
            "fs.read",
            Some(envelope(&w, &child, "fs.read", Some(&grant)))
        ),
        "identity:trust"
    );
}

#[test]
fn look_alike_tools_and_audit_never_sees_the_credential() {
    use std::sync::Mutex;
    use warden_kernel::{AuditEvent, AuditSink};
    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);
    impl AuditSink for Collect {
        fn append(&self, event: AuditEvent) -> Result<(), String> {
            self.0
                .lock()
                .unwrap()
                .push(serde_json::to_string(&event).unwrap());
            Ok(())
        }
        fn flush(&self) -> Result<(), String> {
            Ok(())
        }
    }
    let server = Identity::generate().unwrap();
    let gate = Arc::new(Gate::new(GateConfig::new(server.did().as_str())));
    let root = Identity::generate().unwrap();
    gate.add_anchor(root.did(), Scope::tools(&["fs.*", "pay"]).unwrap())
        .unwrap();
    let sink = Arc::new(Collect::default());
    let kernel = Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(POLICY).unwrap()))
        .stage(Box::new(IdentityStage::new(Arc::clone(&gate))))
        .audit(Arc::clone(&sink) as Arc<dyn AuditSink>)
        .build()
        .unwrap();
    let w = World {
        kernel,
        gate,
        server,
        root,
    };
    // Cyrillic `а` in "pаy": a different tool, outside the scope.
    let lookalike = "p\u{430}y";
    assert_eq!(
        denied(
            &w,
            &w.root,
            lookalike,
            Some(envelope(&w, &w.root, lookalike, None))
        ),
        "identity:scope"
    );
    let cred = session(&w, &w.root, None).unwrap();
    assert_eq!(
        call(&w, &w.root, "pay", Some(cred.clone())).0,
        Verdict::Allow
    );
    let records = sink.0.lock().unwrap();
    assert!(records.len() >= 3);
    assert!(
        records
            .iter()
            .all(|r| !r.contains(&cred) && !r.contains("wsc1.")),
        "credential leaked into audit"
    );
    assert!(records.iter().any(|r| r.contains("identity:scope")));
}
