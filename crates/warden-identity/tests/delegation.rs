//! Delegation chains: signing, narrowing, expiry, depth, caching, and a
//! property test that no sequence of delegations widens scope.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::json;
use warden_core::Point;
use warden_identity::{
    ChainCache, ChainLimits, Claims, Glob, Identity, IdentityError, PointSet, Scope, delegate, jws,
    verify_chain,
};

const NOW: u64 = 1_800_000_000;
const L: ChainLimits = ChainLimits {
    max_depth: 8,
    skew_secs: 30,
};

fn id(n: u8) -> Identity {
    Identity::from_seed(&[n; 32]).unwrap()
}

fn tools(globs: &[&str]) -> Scope {
    Scope::tools(globs).unwrap()
}

/// Signs a delegation token directly, skipping `delegate`'s own checks (as a malicious issuer would).
fn raw_delegation(
    issuer: &Identity,
    to: &Identity,
    scope: Scope,
    ttl: u64,
    proof: Option<&str>,
) -> String {
    let mut c = Claims::new(issuer, to.did().as_str(), ttl, NOW).unwrap();
    c.cap = Some(scope);
    if let Some(p) = proof {
        c = c.with_proof(p);
    }
    jws::sign(issuer, &c).unwrap()
}

#[test]
fn three_link_chain() {
    let (root, a, b, c) = (id(1), id(2), id(3), id(4));
    let t1 = delegate(
        &root,
        a.did(),
        tools(&["fs.*", "net.get"]),
        3600,
        None,
        &L,
        NOW,
    )
    .unwrap();
    let t2 = delegate(&a, b.did(), tools(&["fs.read*"]), 1800, Some(&t1), &L, NOW).unwrap();
    let mut narrow = tools(&["fs.read"]);
    narrow.points = PointSet::of(&[Point::PreToolCall]);
    narrow.budget = Some(5);
    let t3 = delegate(&b, c.did(), narrow.clone(), 600, Some(&t2), &L, NOW).unwrap();
    let chain = verify_chain(&t3, &L, NOW).unwrap();
    assert_eq!(&chain.root, root.did());
    assert_eq!(&chain.holder, c.did());
    assert_eq!(chain.scope, narrow);
    assert_eq!(chain.depth(), 3);
    assert_eq!(chain.expires, NOW + 600);
    assert_eq!(
        chain.issuers,
        vec![root.did().clone(), a.did().clone(), b.did().clone()]
    );
    assert_eq!(chain.budgets.len(), 1);
    assert!(chain.scope.permits(Point::PreToolCall, Some("fs.read")));
    assert!(!chain.scope.permits(Point::PreToolCall, Some("fs.write")));
}

#[test]
fn delegate_refuses_to_widen() {
    let (root, a, b) = (id(1), id(2), id(3));
    let t1 = delegate(&root, a.did(), tools(&["fs.*"]), 3600, None, &L, NOW).unwrap();
    for wider in [&["*"][..], &["f*"], &["fs.*", "net.get"], &["net.get"]] {
        let e = delegate(&a, b.did(), tools(wider), 60, Some(&t1), &L, NOW).unwrap_err();
        assert_eq!(e.reason(), "identity:scope", "{wider:?}: {e}");
    }
    // Longer than the proof.
    let e = delegate(&a, b.did(), tools(&["fs.read"]), 7200, Some(&t1), &L, NOW).unwrap_err();
    assert_eq!(e.reason(), "identity:scope");
    // Not the holder of the proof.
    let e = delegate(&b, a.did(), tools(&["fs.read"]), 60, Some(&t1), &L, NOW).unwrap_err();
    assert_eq!(e.reason(), "identity:chain");
    // Budgets and points narrow too.
    let mut parent = tools(&["fs.*"]);
    parent.budget = Some(10);
    parent.points = PointSet::of(&[Point::PreToolCall]);
    let t = delegate(&root, a.did(), parent, 3600, None, &L, NOW).unwrap();
    let mut child = tools(&["fs.read"]);
    child.points = PointSet::of(&[Point::PreToolCall]);
    assert!(
        delegate(&a, b.did(), child.clone(), 60, Some(&t), &L, NOW).is_err(),
        "unlimited under 10"
    );
    child.budget = Some(11);
    assert!(delegate(&a, b.did(), child.clone(), 60, Some(&t), &L, NOW).is_err());
    child.budget = Some(10);
    child.points = PointSet::ALL;
    assert!(delegate(&a, b.did(), child.clone(), 60, Some(&t), &L, NOW).is_err());
    child.points = PointSet::of(&[Point::PreToolCall]);
    delegate(&a, b.did(), child, 60, Some(&t), &L, NOW).unwrap();
}

#[test]
fn hand_made_widening_is_caught_by_verification() {
    let (root, a, b) = (id(1), id(2), id(3));
    let t1 = delegate(&root, a.did(), tools(&["fs.*"]), 3600, None, &L, NOW).unwrap();
    let widened = raw_delegation(&a, &b, tools(&["*"]), 60, Some(&t1));
    assert_eq!(
        verify_chain(&widened, &L, NOW).unwrap_err().reason(),
        "identity:scope"
    );
    let longer = raw_delegation(&a, &b, tools(&["fs.read"]), 7200, Some(&t1));
    assert_eq!(
        verify_chain(&longer, &L, NOW).unwrap_err().reason(),
        "identity:scope"
    );
    // A link signed by someone other than the previous holder.
    let stolen = raw_delegation(&b, &b, tools(&["fs.read"]), 60, Some(&t1));
    assert_eq!(
        verify_chain(&stolen, &L, NOW).unwrap_err().reason(),
        "identity:chain"
    );
    // A tampered proof inside an otherwise valid token.
    let mut parts: Vec<String> = t1.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    let bad_proof = raw_delegation(&a, &b, tools(&["fs.read"]), 60, Some(&parts.join(".")));
    assert!(verify_chain(&bad_proof, &L, NOW).is_err());
    // An envelope is not a delegation.
    let envelope = jws::sign(
        &a,
        &Claims::new(&a, b.did().as_str(), 60, NOW)
            .unwrap()
            .with_payload(json!({})),
    )
    .unwrap();
    assert_eq!(
        verify_chain(&envelope, &L, NOW).unwrap_err().reason(),
        "identity:chain"
    );
}

#[test]
fn expiry_and_depth() {
    let ids: Vec<Identity> = (1..=10).map(id).collect();
    let mut token = delegate(&ids[0], ids[1].did(), tools(&["*"]), 3600, None, &L, NOW).unwrap();
    for i in 1..8 {
        token = delegate(
            &ids[i],
            ids[i + 1].did(),
            tools(&["*"]),
            3600 - i as u64,
            Some(&token),
            &L,
            NOW,
        )
        .unwrap();
    }
    assert_eq!(verify_chain(&token, &L, NOW).unwrap().depth(), 8);
    let e = delegate(
        &ids[8],
        ids[9].did(),
        tools(&["*"]),
        60,
        Some(&token),
        &L,
        NOW,
    )
    .unwrap_err();
    assert_eq!(e.reason(), "identity:chain");
    let nine = raw_delegation(&ids[8], &ids[9], tools(&["*"]), 60, Some(&token));
    assert_eq!(
        verify_chain(&nine, &L, NOW).unwrap_err().reason(),
        "identity:chain"
    );
    // Expired chain.
    assert_eq!(
        verify_chain(&token, &L, NOW + 4000).unwrap_err().reason(),
        "identity:expired"
    );
}

#[test]
fn cache_rechecks_time() {
    let (root, a) = (id(1), id(2));
    let t = delegate(&root, a.did(), tools(&["fs.*"]), 60, None, &L, NOW).unwrap();
    let cache = ChainCache::new(L, 16);
    let first = cache.get_or_verify(&t, NOW).unwrap();
    let again = cache.get_or_verify(&t, NOW + 1).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &again),
        "second lookup is a cache hit"
    );
    assert_eq!(cache.len(), 1);
    assert_eq!(
        cache.get_or_verify(&t, NOW + 100).unwrap_err().reason(),
        "identity:expired"
    );
    // Garbage is never cached.
    assert!(cache.get_or_verify("x.y.z", NOW).is_err());
    assert_eq!(cache.len(), 1);
}

fn glob_strategy() -> impl Strategy<Value = String> {
    // Small alphabet so that covering relations actually occur.
    proptest::collection::vec(
        prop_oneof![Just("a"), Just("b"), Just("."), Just("*")],
        1..6,
    )
    .prop_map(|parts| parts.concat())
}

fn scope_strategy() -> impl Strategy<Value = Scope> {
    (
        proptest::collection::vec(glob_strategy(), 1..4),
        0u16..(1 << 9),
        proptest::option::of(0u64..20),
    )
        .prop_map(|(globs, bits, budget)| Scope {
            tools: globs.into_iter().map(|g| Glob::new(g).unwrap()).collect(),
            points: PointSet::of(
                &Point::ALL
                    .into_iter()
                    .filter(|p| bits & (1 << p.index()) != 0)
                    .collect::<Vec<_>>(),
            ),
            budget,
        })
}

fn tool_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![Just("a"), Just("b"), Just("."), Just("c")],
        0..7,
    )
    .prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Whatever scopes each delegate asks for, the final verified scope never
    /// permits a (point, tool) the root did not, never has a larger budget,
    /// and each accepted step was within its parent.
    #[test]
    fn no_sequence_of_delegations_widens(
        requests in proptest::collection::vec(scope_strategy(), 1..5),
        probes in proptest::collection::vec((0usize..9, tool_strategy()), 32),
    ) {
        let ids: Vec<Identity> = (1..=6).map(id).collect();
        let root_scope = tools(&["a*", "b.a"]);
        let mut token = delegate(&ids[0], ids[1].did(), root_scope.clone(), 3600, None, &L, NOW).unwrap();
        let mut holder = 1;
        for want in requests {
            let next = holder + 1;
            match delegate(&ids[holder], ids[next].did(), want.clone(), 60, Some(&token), &L, NOW) {
                Ok(t) => { token = t; holder = next; }
                Err(e) => prop_assert_eq!(e.reason(), "identity:scope"),
            }
            // A malicious issuer skipping `delegate` gets nothing wider either.
            let raw = raw_delegation(&ids[holder], &ids[5], want, 60, Some(&token));
            if let Ok(chain) = verify_chain(&raw, &L, NOW) {
                for (p, tool) in &probes {
                    let point = Point::ALL[*p];
                    if chain.scope.permits(point, Some(tool)) {
                        prop_assert!(root_scope.permits(point, Some(tool)), "{tool} at {point} escaped the root scope");
                    }
                }
            }
        }
        let chain = verify_chain(&token, &L, NOW).unwrap();
        for (p, tool) in &probes {
            let point = Point::ALL[*p];
            if chain.scope.permits(point, Some(tool)) {
                prop_assert!(root_scope.permits(point, Some(tool)));
            }
        }
    }

    /// `covers` is sound: if a parent glob covers a child glob, every tool the
    /// child matches, the parent matches.
    #[test]
    fn glob_cover_is_sound(parent in glob_strategy(), child in glob_strategy(), tools in proptest::collection::vec(tool_strategy(), 64)) {
        let (p, c) = (Glob::new(parent).unwrap(), Glob::new(child).unwrap());
        if p.covers(&c) {
            for t in &tools {
                if c.matches(t) {
                    prop_assert!(p.matches(t), "{} covers {} but not {}", p, c, t);
                }
            }
        }
    }
}

#[test]
fn bad_tool_glob_in_token_is_refused() {
    let (root, a) = (id(1), id(2));
    let mut c = Claims::new(&root, a.did().as_str(), 60, NOW).unwrap();
    c.cap = Some(tools(&["fs.*"]));
    let mut v = serde_json::to_value(&c).unwrap();
    v["cap"]["tools"] = json!(["fs.[rw]*"]);
    // Re-sign the altered claims as the root would.
    use base64::Engine as _;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!(
        "{}.{}",
        b.encode(
            serde_json::to_vec(&json!({"alg":"EdDSA","kid":root.did().as_str(),"typ":"JWT"}))
                .unwrap()
        ),
        b.encode(serde_json::to_vec(&v).unwrap())
    );
    let t = format!("{input}.{}", b.encode(root.sign(input.as_bytes())));
    let e: IdentityError = verify_chain(&t, &L, NOW).unwrap_err();
    assert_eq!(e.reason(), "identity:malformed");
}
