//! Known-answer tests against published vectors.
//!
//! - did:key: W3C CCG did-method-key test vectors,
//!   `test-vectors/ed25519-x25519.json` of github.com/w3c-ccg/did-method-key
//!   (seeds 0..4, their did:key, `publicKeyBase58`, X25519 key agreement
//!   keys, and the full DID document of seed 0).
//! - JWK and EdDSA JWS: RFC 8037 Appendix A.1–A.4.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use warden_identity::{Did, Identity, IdentityError, Jwk, jws};

/// (seed byte, did:key, publicKeyBase58, X25519 fingerprint, X25519 publicKeyBase58)
const W3C: [(u8, &str, &str, &str, &str); 5] = [
    (
        0,
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
        "4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS",
        "z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW",
        "7By6kV2t2d188odEM4ExAve1UithKT6dLva4dwsDT3ak",
    ),
    (
        1,
        "did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG",
        "6ASf5EcmmEHTgDJ4X4ZT5vT6iHVJBXPg5AN5YoTCpGWt",
        "z6LSrHyXiPBhUbvPUtyUCdf32sniiMGPTAesgHrtEa4FePtr",
        "FcoNC5NqP9CePWbhfz95iHaEsCjGkZUioK9Ck7Qiw286",
    ),
    (
        2,
        "did:key:z6MknGc3ocHs3zdPiJbnaaqDi58NGb4pk1Sp9WxWufuXSdxf",
        "8pM1DN3RiT8vbom5u1sNryaNT1nyL8CTTW3b5PwWXRBH",
        "z6LSkkqoZRC34AEpbkhZCqLDcHQVAxuLpQ7kC8XCXMVUfvjE",
        "A5fe37PAxhX5WNKngBpGHhC1KpNE7nwbK9oX2tqwxYxU",
    ),
    (
        3,
        "did:key:z6MkvqoYXQfDDJRv8L4wKzxYeuKyVZBfi9Qo6Ro8MiLH3kDQ",
        "HPYVwAQmskwT1qEEeRzhoomyfyupJGASQQtCXSNG8XS2",
        "z6LSiUo6AEDat8Ze4nQzDo67SGuHLLwsUGkxndHGUjsywHow",
        "7ocvdvQinfqtyQ3Dh9aA7ggoVCQkmfaoueZazHETDv3B",
    ),
    (
        4,
        "did:key:z6MkwW6aqMnjgrhJXFUko3NnZPGzVpkNzhYK7yEhnsibmLwL",
        "J3qYF7YJMKCqQke47UQwiHizgFUXapHxRxKmxbkar89x",
        "z6LSrGb3qm4xMCEBjvwkLb2WEcXfTM94Tu1RyGCbT5wbg8i9",
        "FbQtKTG6FjWSeYZyowWYv2KBcCbwmHqH6HUuxdJ4xkwP",
    ),
];

fn seed(last: u8) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[31] = last;
    s
}

#[test]
fn w3c_did_key_vectors() {
    for (n, did, b58, x_fp, _) in W3C {
        let id = Identity::from_seed(&seed(n)).unwrap();
        assert_eq!(id.did().as_str(), did, "seed {n}");
        assert_eq!(id.did().public_key_base58(), b58, "seed {n}");
        assert_eq!(id.did().x25519_fingerprint(), x_fp, "seed {n}");
        let parsed = Did::parse(did).unwrap();
        assert_eq!(&parsed, id.did());
    }
}

#[test]
fn w3c_did_document_vector() {
    let (_, did, b58, x_fp, x_b58) = W3C[0];
    let vm = format!("{did}#{}", &did["did:key:".len()..]);
    let ka = format!("{did}#{x_fp}");
    let expected = json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/suites/ed25519-2018/v1",
            "https://w3id.org/security/suites/x25519-2019/v1"
        ],
        "id": did,
        "verificationMethod": [
            {"id": vm, "type": "Ed25519VerificationKey2018", "controller": did, "publicKeyBase58": b58},
            {"id": ka, "type": "X25519KeyAgreementKey2019", "controller": did, "publicKeyBase58": x_b58}
        ],
        "assertionMethod": [vm],
        "authentication": [vm],
        "capabilityInvocation": [vm],
        "capabilityDelegation": [vm],
        "keyAgreement": [ka]
    });
    assert_eq!(Did::parse(did).unwrap().document(), expected);
}

#[test]
fn did_parse_rejects() {
    let good = W3C[0].1;
    let cases = [
        ("did:web:example.com", "not a did:key"),
        (&good.replace("did:key:z", "did:key:f"), "base58btc"),
        (&format!("{good}#{}", &good[8..]), "fragment"),
        (&good[..good.len() - 3], "truncated"),
        (&good.replace('W', "0"), "base58 alphabet has no 0"),
        (
            &format!("did:key:{}", W3C[0].3),
            "x25519 key is not ed25519",
        ),
        (&format!("{good}{}", "1".repeat(100)), "too long"),
        (
            "DID:KEY:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
            "case",
        ),
        ("", "empty"),
    ];
    for (text, why) in cases {
        let e = Did::parse(text).unwrap_err();
        assert_eq!(e.reason(), "identity:malformed", "{why}: {e}");
    }
    // A valid point that is small-order (the identity element) is refused.
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    assert!(Did::from_public_bytes(&identity_point).is_err());
}

// RFC 8037 A.1 key.
const RFC_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

#[test]
fn rfc8037_jwk_and_signature() {
    let jwk = Jwk {
        kty: "OKP".into(),
        crv: "Ed25519".into(),
        x: RFC_X.into(),
        d: Some(RFC_D.into()),
        kid: None,
    };
    let id = Identity::from_jwk(&jwk).unwrap();
    assert_eq!(id.did().jwk().x, RFC_X);
    // A.4: the signature over `{"alg":"EdDSA"}` . "Example of Ed25519 signing".
    let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    let expected =
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    let sig = id.sign(input.as_bytes());
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig),
        expected
    );
    // Warden requires `kid` (the signer's did:key), so the bare RFC token is refused, for the header.
    let e = jws::verify_signature(&format!("{input}.{expected}")).unwrap_err();
    assert_eq!(e.reason(), "identity:algorithm", "{e}");
    // Public import: x only.
    let public = Jwk {
        d: None,
        ..jwk.clone()
    };
    assert_eq!(&Did::from_jwk(&public).unwrap(), id.did());
    assert!(
        Did::from_jwk(&jwk).is_err(),
        "a private JWK is not a public key"
    );
    // Inconsistent halves.
    let mut wrong = jwk.clone();
    wrong.x = Identity::from_seed(&seed(9)).unwrap().did().jwk().x;
    assert!(matches!(
        Identity::from_jwk(&wrong),
        Err(IdentityError::Malformed(_))
    ));
    let mut wrong_crv = public;
    wrong_crv.crv = "X25519".into();
    assert!(Did::from_jwk(&wrong_crv).is_err());
    // Unknown members are refused.
    assert!(
        serde_json::from_str::<Jwk>(&format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC_X}","alg":"none"}}"#
        ))
        .is_err()
    );
}
