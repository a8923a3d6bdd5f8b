//! Keys, key files, rotation and signed envelopes through the public API.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::json;
use warden_identity::{
    Claims, EnvelopeVerifier, Identity, IdentityError, Validation, jws, verify_rotation,
};

const NOW: u64 = 1_800_000_000;

fn id(n: u8) -> Identity {
    Identity::from_seed(&[n; 32]).unwrap()
}

fn verifier() -> EnvelopeVerifier {
    EnvelopeVerifier::new(Validation::new("svc"), 1000)
}

fn token(signer: &Identity, aud: &str, ttl: u64, now: u64) -> String {
    jws::sign(
        signer,
        &Claims::new(signer, aud, ttl, now)
            .unwrap()
            .with_payload(json!({"x": 1})),
    )
    .unwrap()
}

/// Re-signs arbitrary header/claims JSON with `signer`, as an attacker with a key could.
fn forge(signer: &Identity, header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(header).unwrap()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    );
    let sig = signer.sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig))
}

fn claims_json(signer: &Identity) -> serde_json::Value {
    json!({"iss": signer.did().as_str(), "aud": "svc", "jti": "j1", "iat": NOW, "nbf": NOW, "exp": NOW + 60})
}

#[test]
fn key_file_round_trip_and_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.key");
    let a = Identity::generate().unwrap();
    a.save(&path).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(Identity::load(&path).unwrap().did(), a.did());
    // Never overwritten.
    assert!(matches!(
        Identity::generate().unwrap().save(&path),
        Err(IdentityError::KeyFile { .. })
    ));
    for mode in [0o640, 0o604, 0o660, 0o666] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = Identity::load(&path).unwrap_err();
        assert!(
            matches!(e, IdentityError::KeyPermissions { .. }),
            "{mode:o}: {e}"
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    Identity::load(&path).unwrap();
    // Garbage and a public-only JWK are refused.
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, serde_json::to_string(&a.did().jwk()).unwrap()).unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        Identity::load(&bad),
        Err(IdentityError::KeyFile { .. })
    ));
    // The Debug form does not leak the secret.
    let d = a.private_jwk().d.unwrap();
    assert!(!format!("{a:?}").contains(&d));
}

#[test]
fn rotation_statement_is_checked_exactly() {
    let (old, new, other) = (id(1), id(2), id(3));
    let st = old.rotate_to(new.did(), NOW).unwrap();
    let r = verify_rotation(&st, old.did(), new.did()).unwrap();
    assert_eq!(
        (r.old, r.new, r.issued_at),
        (old.did().clone(), new.did().clone(), NOW)
    );
    // Wrong successor or predecessor.
    assert_eq!(
        verify_rotation(&st, old.did(), other.did())
            .unwrap_err()
            .reason(),
        "identity:rotation"
    );
    assert_eq!(
        verify_rotation(&st, other.did(), new.did())
            .unwrap_err()
            .reason(),
        "identity:rotation"
    );
    // Signed by the new key claiming to be the old one's rotation.
    let by_new = new.rotate_to(new.did(), NOW).unwrap();
    assert!(verify_rotation(&by_new, old.did(), new.did()).is_err());
    // Tampered payload.
    let mut parts: Vec<String> = st.split('.').map(str::to_owned).collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
    claims["sub"] = json!(other.did().as_str());
    parts[1] = B64.encode(serde_json::to_vec(&claims).unwrap());
    assert_eq!(
        verify_rotation(&parts.join("."), old.did(), new.did())
            .unwrap_err()
            .reason(),
        "identity:bad_signature"
    );
    // An ordinary JWT is not a rotation statement, and a rotation statement is not a JWT.
    let jwt = forge(
        &old,
        &json!({"alg":"EdDSA","kid": old.did().as_str(),"typ":"JWT"}),
        &json!({"iss": old.did().as_str(), "sub": new.did().as_str(), "purpose": "warden-key-rotation", "jti": "x", "iat": NOW}),
    );
    assert!(verify_rotation(&jwt, old.did(), new.did()).is_err());
    assert_eq!(
        jws::verify_signature(&st).unwrap_err().reason(),
        "identity:algorithm"
    );
}

#[test]
fn envelope_round_trip() {
    let a = id(1);
    let t = token(&a, "svc", 60, NOW);
    let (signer, claims) = verifier().verify(&t, NOW).unwrap();
    assert_eq!(&signer, a.did());
    assert_eq!(claims.payload, Some(json!({"x": 1})));
    assert_eq!(claims.iss, a.did().as_str());
}

#[test]
fn forgery_is_refused() {
    let (a, b) = (id(1), id(2));
    let t = token(&a, "svc", 60, NOW);
    let parts: Vec<&str> = t.split('.').collect();
    // Payload swapped for another signer's payload.
    let other = token(&b, "svc", 60, NOW);
    let other_payload = other.split('.').nth(1).unwrap();
    let e = verifier()
        .verify(&format!("{}.{}.{}", parts[0], other_payload, parts[2]), NOW)
        .unwrap_err();
    assert_eq!(e.reason(), "identity:bad_signature");
    // Flipped signature bit.
    let mut sig = B64.decode(parts[2]).unwrap();
    sig[5] ^= 1;
    let e = verifier()
        .verify(
            &format!("{}.{}.{}", parts[0], parts[1], B64.encode(sig)),
            NOW,
        )
        .unwrap_err();
    assert_eq!(e.reason(), "identity:bad_signature");
    // Signed by b, claiming a's kid.
    let forged = forge(
        &b,
        &json!({"alg":"EdDSA","kid": a.did().as_str()}),
        &claims_json(&a),
    );
    assert_eq!(
        verifier().verify(&forged, NOW).unwrap_err().reason(),
        "identity:bad_signature"
    );
    // Signed by b with b's kid but a as iss.
    let forged = forge(
        &b,
        &json!({"alg":"EdDSA","kid": b.did().as_str()}),
        &claims_json(&a),
    );
    assert_eq!(
        verifier().verify(&forged, NOW).unwrap_err().reason(),
        "identity:malformed"
    );
}

#[test]
fn headers_other_than_eddsa_are_refused() {
    let a = id(1);
    let kid = a.did().as_str();
    let c = claims_json(&a);
    for header in [
        json!({"alg":"none","kid":kid}),
        json!({"alg":"HS256","kid":kid}),
        json!({"alg":"RS256","kid":kid}),
        json!({"alg":"ES256","kid":kid}),
        json!({"alg":"eddsa","kid":kid}),
        json!({"alg":["EdDSA"],"kid":kid}),
        json!({"kid":kid}),
        json!({"alg":"EdDSA","kid":kid,"crit":["exp"]}),
        json!({"alg":"EdDSA","kid":kid,"jku":"https://evil"}),
        json!({"alg":"EdDSA","kid":kid,"jwk":a.did().jwk()}),
        json!({"alg":"EdDSA","kid":kid,"typ":"JOSE+JSON"}),
        json!({"alg":"EdDSA"}),
    ] {
        let e = verifier().verify(&forge(&a, &header, &c), NOW).unwrap_err();
        assert_eq!(e.reason(), "identity:algorithm", "{header}: {e}");
    }
    // alg none with an empty signature.
    let h = B64.encode(serde_json::to_vec(&json!({"alg":"none","kid":kid})).unwrap());
    let p = B64.encode(serde_json::to_vec(&c).unwrap());
    assert_eq!(
        verifier()
            .verify(&format!("{h}.{p}."), NOW)
            .unwrap_err()
            .reason(),
        "identity:algorithm"
    );
    // Duplicate alg (JSON with "none" then "EdDSA") is not a valid header.
    let dup = format!(r#"{{"alg":"none","alg":"EdDSA","kid":"{kid}"}}"#);
    let input = format!("{}.{p}", B64.encode(dup));
    let t = format!("{input}.{}", B64.encode(a.sign(input.as_bytes())));
    assert_eq!(
        verifier().verify(&t, NOW).unwrap_err().reason(),
        "identity:algorithm"
    );
}

#[test]
fn encoding_is_strict() {
    let a = id(1);
    let t = token(&a, "svc", 60, NOW);
    let v = verifier();
    let cases = [
        format!("{t}="),
        format!("{t}.x"),
        t.replacen('.', "..", 1),
        // A standard-alphabet character (the random token may hold no `-` to swap).
        format!("{}+", &t[..t.len() - 1]),
        format!(" {t}"),
        "a.b".to_owned(),
        String::new(),
        format!("{}.{}", t, "A".repeat(70_000)),
    ];
    for case in cases {
        let e = v.verify(&case, NOW).unwrap_err();
        assert!(
            ["identity:malformed", "identity:bad_signature"].contains(&e.reason()),
            "{}: {e}",
            &case[..case.len().min(40)]
        );
    }
    // Unknown claim.
    let mut c = claims_json(&a);
    c["admin"] = json!(true);
    let e = v
        .verify(
            &forge(&a, &json!({"alg":"EdDSA","kid":a.did().as_str()}), &c),
            NOW,
        )
        .unwrap_err();
    assert_eq!(e.reason(), "identity:malformed");
    // aud as an array is not accepted (one audience per token).
    let mut c = claims_json(&a);
    c["aud"] = json!(["svc"]);
    assert!(
        v.verify(
            &forge(&a, &json!({"alg":"EdDSA","kid":a.did().as_str()}), &c),
            NOW
        )
        .is_err()
    );
}

#[test]
fn audience_time_and_skew() {
    let a = id(1);
    let v = verifier();
    assert_eq!(
        v.verify(&token(&a, "other", 60, NOW), NOW)
            .unwrap_err()
            .reason(),
        "identity:audience"
    );
    // Expired: exp = NOW+60, skew 30.
    let t = token(&a, "svc", 60, NOW);
    assert_eq!(
        v.verify(&t, NOW + 90).unwrap_err().reason(),
        "identity:expired"
    );
    assert!(
        matches!(v.verify(&t, NOW + 200), Err(IdentityError::Expired { exp, now }) if exp == NOW + 60 && now == NOW + 200)
    );
    // Within skew after exp: accepted.
    verifier().verify(&t, NOW + 89).unwrap();
    // Issued 20 s in the future (clock skew): accepted; 31 s: refused.
    verifier()
        .verify(&token(&a, "svc", 60, NOW + 20), NOW)
        .unwrap();
    assert_eq!(
        verifier()
            .verify(&token(&a, "svc", 60, NOW + 31), NOW)
            .unwrap_err()
            .reason(),
        "identity:not_yet_valid"
    );
    // Longer than the lifetime bound.
    assert_eq!(
        verifier()
            .verify(&token(&a, "svc", 3600, NOW), NOW)
            .unwrap_err()
            .reason(),
        "identity:malformed"
    );
    // exp before nbf.
    let mut c = claims_json(&a);
    c["exp"] = json!(NOW - 1);
    let e = verifier()
        .verify(
            &forge(&a, &json!({"alg":"EdDSA","kid":a.did().as_str()}), &c),
            NOW,
        )
        .unwrap_err();
    assert_eq!(e.reason(), "identity:malformed");
}

#[test]
fn replay_is_refused() {
    let a = id(1);
    let v = verifier();
    let t = token(&a, "svc", 60, NOW);
    v.verify(&t, NOW).unwrap();
    assert_eq!(
        v.verify(&t, NOW + 1).unwrap_err().reason(),
        "identity:replayed"
    );
    // A failed token does not consume its jti.
    let late = token(&a, "svc", 60, NOW);
    assert!(v.verify(&late, NOW + 1000).is_err());
    v.verify(&late, NOW + 1).unwrap();
    // Full cache of live entries: fail closed.
    let small = EnvelopeVerifier::new(Validation::new("svc"), 2);
    small.verify(&token(&a, "svc", 60, NOW), NOW).unwrap();
    small.verify(&token(&a, "svc", 60, NOW), NOW).unwrap();
    assert_eq!(
        small
            .verify(&token(&a, "svc", 60, NOW), NOW)
            .unwrap_err()
            .reason(),
        "identity:replay_cache_full"
    );
    // Once those expire, room again.
    small
        .verify(&token(&a, "svc", 60, NOW + 100), NOW + 100)
        .unwrap();
    // Batch: same answers as one by one.
    let fresh = token(&a, "svc", 60, NOW);
    let r = v.verify_batch(&[&fresh, &fresh, "junk"], NOW);
    assert!(r[0].is_ok());
    assert_eq!(r[1].as_ref().unwrap_err().reason(), "identity:replayed");
    assert_eq!(r[2].as_ref().unwrap_err().reason(), "identity:malformed");
}

#[test]
fn iss_must_be_the_signer_when_signing() {
    let (a, b) = (id(1), id(2));
    let c = Claims::new(&a, "svc", 60, NOW).unwrap();
    assert!(jws::sign(&b, &c).is_err());
}
