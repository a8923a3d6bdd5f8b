//! `warden id` and `warden delegate` end to end through the built binary.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::warden;

fn ok(args: &[&str], stdin: &str) -> String {
    let out = warden(args, stdin);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn refused(args: &[&str], stdin: &str) -> String {
    let out = warden(args, stdin);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

fn new_key(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name).to_str().unwrap().to_owned();
    let out = ok(&["id", "new", "--key", &path], "");
    let did = out.lines().last().unwrap().to_owned();
    (path, did)
}

#[test]
fn id_new_show_export() {
    let dir = tempfile::tempdir().unwrap();
    let (key, did) = new_key(dir.path(), "a.key");
    assert!(did.starts_with("did:key:z6Mk"), "{did}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(ok(&["id", "show", "--key", &key], ""), did);
    let jwk: serde_json::Value =
        serde_json::from_str(&ok(&["id", "export", "--key", &key, "--format", "jwk"], "")).unwrap();
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert!(
        jwk.get("d").is_none(),
        "export never includes the private key"
    );
    let doc: serde_json::Value = serde_json::from_str(&ok(
        &["id", "export", "--key", &key, "--format", "did-doc"],
        "",
    ))
    .unwrap();
    assert_eq!(doc["id"], did.as_str());
    // Existing file is not overwritten; a world-readable key is refused.
    assert_eq!(
        warden(&["id", "new", "--key", &key], "").status.code(),
        Some(2)
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = warden(&["id", "show", "--key", &key], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

#[test]
fn sign_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (key, did) = new_key(dir.path(), "a.key");
    let token = ok(
        &["id", "sign", "--key", &key, "--aud", "svc", "--ttl", "60"],
        r#"{"task": "ünïcode", "n": 1}"#,
    );
    assert_eq!(token.matches('.').count(), 2);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["id", "verify", "--aud", "svc"], &token)).unwrap();
    assert_eq!(v["iss"], did.as_str());
    assert_eq!(v["payload"], serde_json::json!({"task": "ünïcode", "n": 1}));
    assert!(refused(&["id", "verify", "--aud", "other"], &token).contains("identity:audience"));
    let mut tampered = token.clone();
    tampered.insert(token.find('.').unwrap() + 3, 'x');
    assert!(!refused(&["id", "verify", "--aud", "svc"], &tampered).is_empty());
    assert!(
        refused(&["id", "verify", "--aud", "svc"], "not a token").contains("identity:malformed")
    );
    // A lifetime over the verifier's bound.
    let long = ok(
        &["id", "sign", "--key", &key, "--aud", "svc", "--ttl", "7200"],
        "{}",
    );
    assert!(refused(&["id", "verify", "--aud", "svc"], &long).contains("lifetime"));
    // Payload that is not JSON: invalid input.
    assert_eq!(
        warden(&["id", "sign", "--key", &key, "--aud", "svc"], "{nope")
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn delegate_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let (root_key, root) = new_key(dir.path(), "root.key");
    let (mid_key, mid) = new_key(dir.path(), "mid.key");
    let (_, leaf) = new_key(dir.path(), "leaf.key");
    let t1 = ok(
        &[
            "delegate",
            "--key",
            &root_key,
            "--to",
            &mid,
            "--tools",
            "fs.*,net.get",
            "--expires",
            "600",
        ],
        "",
    );
    ok(
        &["delegate", "check", "--token", &t1, "--tool", "fs.read"],
        "",
    );
    assert!(
        refused(
            &["delegate", "check", "--token", &t1, "--tool", "shell"],
            ""
        )
        .contains("identity:scope")
    );
    // Wider than the proof: refused, nothing printed.
    for wider in ["*", "fs.*,shell", "f*"] {
        let out = warden(
            &[
                "delegate",
                "--key",
                &mid_key,
                "--to",
                &leaf,
                "--tools",
                wider,
                "--expires",
                "60",
                "--proof",
                &t1,
            ],
            "",
        );
        assert_eq!(out.status.code(), Some(1), "{wider}");
        assert!(out.stdout.is_empty());
    }
    assert_eq!(
        warden(
            &[
                "delegate",
                "--key",
                &mid_key,
                "--to",
                &leaf,
                "--tools",
                "fs.read",
                "--expires",
                "6000",
                "--proof",
                &t1
            ],
            ""
        )
        .status
        .code(),
        Some(1),
        "outlives its proof"
    );
    // The root cannot extend someone else's chain.
    assert_eq!(
        warden(
            &[
                "delegate",
                "--key",
                &root_key,
                "--to",
                &leaf,
                "--tools",
                "fs.read",
                "--expires",
                "60",
                "--proof",
                &t1
            ],
            ""
        )
        .status
        .code(),
        Some(1)
    );
    let t2 = ok(
        &[
            "delegate",
            "--key",
            &mid_key,
            "--to",
            &leaf,
            "--tools",
            "fs.read",
            "--expires",
            "60",
            "--proof",
            &t1,
        ],
        "",
    );
    let info: serde_json::Value = serde_json::from_str(&ok(
        &[
            "delegate", "check", "--token", &t2, "--tool", "fs.read", "--root", &root,
        ],
        "",
    ))
    .unwrap();
    assert_eq!(
        (info["holder"].as_str(), info["depth"].as_u64()),
        (Some(leaf.as_str()), Some(2))
    );
    assert!(
        refused(
            &["delegate", "check", "--token", &t2, "--tool", "fs.write"],
            ""
        )
        .contains("identity:scope")
    );
    assert!(
        refused(
            &[
                "delegate", "check", "--token", &t2, "--tool", "fs.read", "--root", &mid
            ],
            ""
        )
        .contains("identity:untrusted_root")
    );
    // Any broken link fails the whole check.
    let mut broken = t2.clone();
    let at = broken.len() - 5;
    broken.replace_range(at..at + 1, if &t2[at..at + 1] == "A" { "B" } else { "A" });
    assert_eq!(
        warden(
            &["delegate", "check", "--token", &broken, "--tool", "fs.read"],
            ""
        )
        .status
        .code(),
        Some(1)
    );
    // Points narrow.
    let t3 = ok(
        &[
            "delegate",
            "--key",
            &root_key,
            "--to",
            &mid,
            "--tools",
            "fs.read",
            "--points",
            "output",
            "--expires",
            "60",
        ],
        "",
    );
    assert!(
        refused(
            &["delegate", "check", "--token", &t3, "--tool", "fs.read"],
            ""
        )
        .contains("identity:scope")
    );
    ok(
        &[
            "delegate", "check", "--token", &t3, "--tool", "fs.read", "--point", "output",
        ],
        "",
    );
}

#[test]
fn trust_show_and_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_eq!(ok(&["trust", "show", "--data-dir", d], ""), "");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["trust", "show", "--data-dir", d, "--agent", "a"], "")).unwrap();
    assert_eq!(
        (v["score"].as_f64(), v["tier"].as_str()),
        (Some(400.0), Some("probationary"))
    );
    ok(
        &[
            "trust",
            "set",
            "--data-dir",
            d,
            "--agent",
            "a",
            "--score",
            "950",
        ],
        "",
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["trust", "show", "--data-dir", d], "")).unwrap();
    assert_eq!(
        (v["agent"].as_str(), v["tier"].as_str()),
        (Some("a"), Some("verified"))
    );
    assert_eq!(
        warden(
            &[
                "trust",
                "set",
                "--data-dir",
                d,
                "--agent",
                "a",
                "--score",
                "1001"
            ],
            ""
        )
        .status
        .code(),
        Some(2)
    );
    std::fs::write(dir.path().join("trust.json"), "junk").unwrap();
    assert_eq!(
        warden(&["trust", "show", "--data-dir", d], "")
            .status
            .code(),
        Some(2)
    );
}
