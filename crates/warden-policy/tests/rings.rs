//! The `rings:` block through the public API: compiled values, defaults, combining, load errors.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;
use warden_policy::{PolicySet, RateLimit, Ring, Source, TIER_NAMES};

const HEAD: &str = "apiVersion: warden.dev/v1\nkind: Policy\nname: t\ndefault: allow\n";

fn set(body: &str) -> PolicySet {
    PolicySet::from_yaml(&format!("{HEAD}{body}")).unwrap_or_else(|e| panic!("{e}"))
}

fn err(body: &str) -> String {
    PolicySet::from_yaml(&format!("{HEAD}{body}"))
        .unwrap_err()
        .to_string()
}

fn r(n: u8) -> Ring {
    Ring::new(n).unwrap()
}

const FULL: &str = r#"rings:
  default_tool_ring: 1
  tiers: {standard: 3, verified: 2}
  agents:
    ops-root: 0
    "did:web:example.com:agents:bot": 1
  tools:
    - tools: ["shell.*", "k8s.delete"]
      ring: 0
      elevate: {approvers: [secops, oncall], ttl: 15m}
    - tools: ["shell.read"]
      ring: 2
    - tools: [search]
      ring: 3
  quotas:
    - ring: 2
      rate: 10/minute
      concurrency: 4
    - ring: 3
      concurrency: 1
"#;

#[test]
fn no_block_means_no_rings() {
    assert!(set("rules: []\n").rings().is_none());
}

#[test]
fn full_block_compiles() {
    let s = set(FULL);
    let rp = s.rings().unwrap();
    assert_eq!(rp.default_tool_ring(), r(1));
    // Overridden tiers and the documented defaults for the rest.
    assert_eq!(rp.tier_ring("standard"), Some(r(3)));
    assert_eq!(rp.tier_ring("verified"), Some(r(2)));
    assert_eq!(rp.tier_ring("trusted"), Some(r(1)));
    assert_eq!(rp.tier_ring("probationary"), Some(r(3)));
    assert_eq!(rp.tier_ring("untrusted"), Some(r(3)));
    assert_eq!(rp.tier_ring("Verified"), None);
    assert_eq!(rp.grant("ops-root"), Some(Ring::ZERO));
    assert_eq!(rp.grant("did:web:example.com:agents:bot"), Some(r(1)));
    assert_eq!(rp.grant("ops-roo"), None);
    // Cyrillic 'о' must not pick up the grant.
    assert_eq!(rp.grant("ops-r\u{43e}ot"), None);
    // First matching entry wins, in order written.
    assert_eq!(rp.tool_ring("shell.read"), Ring::ZERO);
    assert_eq!(rp.tool_ring("k8s.delete"), Ring::ZERO);
    assert_eq!(rp.tool_ring("search"), r(3));
    assert_eq!(rp.tool_ring("unknown.tool"), r(1));
    let e = rp
        .tool_entry("shell.exec")
        .unwrap()
        .elevate
        .as_ref()
        .unwrap();
    assert_eq!(e.approvers, ["secops", "oncall"]);
    assert_eq!(e.ttl, Duration::from_secs(900));
    assert!(rp.tool_entry("search").unwrap().elevate.is_none());
    let q2 = rp.quota(r(2)).unwrap();
    assert_eq!(
        q2.rate,
        Some(RateLimit {
            count: 10,
            per: Duration::from_secs(60)
        })
    );
    assert_eq!(q2.concurrency, Some(4));
    assert_eq!(rp.quota(r(3)).unwrap().concurrency, Some(1));
    assert!(rp.quota(r(3)).unwrap().rate.is_none());
    assert!(rp.quota(r(1)).is_none());
    assert!(rp.origin.line > 0);
}

#[test]
fn empty_block_uses_documented_defaults() {
    let rp = set("rings: {}\n").rings().cloned().unwrap();
    assert_eq!(rp.default_tool_ring(), r(2));
    let want = [3, 3, 2, 1, 1];
    for (tier, n) in TIER_NAMES.iter().zip(want) {
        assert_eq!(rp.tier_ring(tier), Some(r(n)), "{tier}");
    }
    assert_eq!(rp.tool_ring("anything"), r(2));
    assert!(rp.tools().is_empty());
}

#[test]
fn ring_ordering() {
    assert!(Ring::ZERO.satisfies(r(3)));
    assert!(r(2).satisfies(r(2)));
    assert!(!r(3).satisfies(r(2)));
    assert!(Ring::new(4).is_none());
    assert!(Ring::new(255).is_none());
    assert_eq!(Ring::LOWEST, r(3));
}

#[test]
fn load_errors_name_file_line_and_field() {
    let cases: &[(&str, &str)] = &[
        ("rings:\n  bogus: 1\n", "unknown field `bogus`"),
        (
            "rings:\n  default_tool_ring: 4\n",
            "rings.default_tool_ring: ring 4 does not exist",
        ),
        ("rings:\n  default_tool_ring: -1\n", "document"),
        (
            "rings:\n  tiers: {verified: 0}\n",
            "rings.tiers.verified: ring 0 is only given by an explicit grant",
        ),
        (
            "rings:\n  tiers: {gold: 1}\n",
            "rings.tiers.gold: unknown tier `gold`",
        ),
        ("rings:\n  agents: {\"bot*\": 1}\n", "globs are not allowed"),
        ("rings:\n  agents: {\"a b\": 1}\n", "no whitespace"),
        (
            "rings:\n  agents: {a: 9}\n",
            "rings.agents.a: ring 9 does not exist",
        ),
        ("rings:\n  agents: {a: 1, a: 2}\n", "duplicate"),
        (
            "rings:\n  tools:\n    - tools: []\n      ring: 1\n",
            "rings.tools[0].tools: empty list",
        ),
        (
            "rings:\n  tools:\n    - tools: [\"bad[\"]\n      ring: 1\n",
            "rings.tools[0].tools[0]: invalid glob",
        ),
        (
            "rings:\n  tools:\n    - tools: [x]\n",
            "missing field `ring`",
        ),
        (
            "rings:\n  tools:\n    - tools: [x]\n      ring: 1\n      extra: 1\n",
            "unknown field `extra`",
        ),
        (
            "rings:\n  tools:\n    - tools: [x]\n      ring: 1\n      elevate: {approvers: [], ttl: 5m}\n",
            "rings.tools[0].elevate.approvers",
        ),
        (
            "rings:\n  tools:\n    - tools: [x]\n      ring: 1\n      elevate: {approvers: [a], ttl: 0s}\n",
            "rings.tools[0].elevate.ttl: must be greater than zero",
        ),
        (
            "rings:\n  tools:\n    - tools: [x]\n      ring: 1\n      elevate: {approvers: [a], ttl: 25h}\n",
            "at most 24h",
        ),
        (
            "rings:\n  tools:\n    - tools: [x]\n      ring: 1\n      elevate: {approvers: [a], ttl: soon}\n",
            "invalid duration",
        ),
        (
            "rings:\n  tools:\n    - tools: [x]\n      ring: 1\n      elevate: {approvers: [a]}\n",
            "missing field `ttl`",
        ),
        (
            "rings:\n  quotas:\n    - ring: 1\n",
            "rings.quotas[0]: a ring quota needs `rate` or `concurrency`",
        ),
        (
            "rings:\n  quotas:\n    - ring: 1\n      concurrency: 0\n",
            "rings.quotas[0].concurrency: must be at least 1",
        ),
        (
            "rings:\n  quotas:\n    - ring: 1\n      rate: lots\n",
            "rings.quotas[0].rate: invalid limit",
        ),
        (
            "rings:\n  quotas:\n    - ring: 5\n      rate: 1/s\n",
            "rings.quotas[0].ring: ring 5 does not exist",
        ),
        (
            "rings:\n  quotas:\n    - {ring: 1, rate: 1/s}\n    - {ring: 1, concurrency: 2}\n",
            "rings.quotas[1].ring: ring 1 already has quotas",
        ),
    ];
    for (body, want) in cases {
        let e = err(body);
        assert!(e.contains(want), "{body:?}: {e}");
        assert!(e.starts_with("<inline>:"), "{body:?}: {e}");
    }
    // The line of the offending value is reported (HEAD has 4 lines).
    let e = err("rings:\n  agents:\n    a: 1\n    b: 7\n");
    assert!(e.starts_with("<inline>:8:"), "{e}");
}

#[test]
fn only_one_file_may_declare_rings() {
    let src = |name: &str, body: &str| Source {
        label: PathBuf::from(name),
        text: format!(
            "apiVersion: warden.dev/v1\nkind: Policy\nname: {name}\ndefault: allow\n{body}"
        ),
    };
    let ok = PolicySet::from_sources(&[
        src("a.yaml", "rings:\n  default_tool_ring: 3\n"),
        src("b.yaml", "rules: []\n"),
    ])
    .unwrap();
    assert_eq!(ok.rings().unwrap().default_tool_ring(), r(3));
    let e = PolicySet::from_sources(&[src("a.yaml", "rings: {}\n"), src("b.yaml", "rings: {}\n")])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("b.yaml:5:"), "{e}");
    assert!(
        e.contains("only one policy file may declare `rings:`"),
        "{e}"
    );
    assert!(e.contains("first declared at a.yaml:5"), "{e}");
}

#[test]
fn rings_change_the_policy_hash() {
    let a = set("rings:\n  default_tool_ring: 2\n");
    let b = set("rings:\n  default_tool_ring: 3\n");
    assert_ne!(a.hash(), b.hash());
}
