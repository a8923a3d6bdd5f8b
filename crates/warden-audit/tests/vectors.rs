//! RFC 6962 known-answer tests and property tests for the Merkle code.
//!
//! Vectors: the 8-leaf set used by certificate-transparency and
//! transparency-dev/merkle (`testonly/constants.go`: leaf inputs, all node
//! hashes and the roots for sizes 0..=8; `proof/verify_test.go` and
//! `testonly/reference_test.go`: inclusion and consistency proofs, and the
//! corruption probes every verifier must reject).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use warden_audit::merkle::{
    Frontier, Hash, consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash,
    root_from_leaves,
};
use warden_audit::{ProofError, verify_consistency, verify_inclusion};

const LEAF_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Roots for sizes 1..=8.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Node hashes of all complete subtrees, by level.
const LEVEL0: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
];
const LEVEL1: [&str; 4] = [
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
];
const LEVEL2: [&str; 2] = [
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
];

/// (index, size, proof)
const INCLUSION: &[(u64, u64, &[&str])] = &[
    (0, 1, &[]),
    (
        0,
        2,
        &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
    ),
    (
        1,
        2,
        &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

/// (old size, new size, proof)
const CONSISTENCY: &[(u64, u64, &[&str])] = &[
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn h(s: &str) -> Hash {
    Hash::from_hex(s).unwrap()
}

fn hs(list: &[&str]) -> Vec<Hash> {
    list.iter().map(|s| h(s)).collect()
}

fn vector_leaves() -> Vec<Hash> {
    LEAF_INPUTS
        .iter()
        .map(|x| leaf_hash(&hex::decode(x).unwrap()))
        .collect()
}

#[test]
fn empty_tree_root() {
    assert_eq!(
        empty_root(),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(root_from_leaves(&[]), empty_root());
    assert_eq!(Frontier::new().root(), empty_root());
}

#[test]
fn leaf_and_node_hashes() {
    let leaves = vector_leaves();
    assert_eq!(leaves, hs(&LEVEL0));
    let level1: Vec<Hash> = leaves.chunks(2).map(|c| node_hash(&c[0], &c[1])).collect();
    assert_eq!(level1, hs(&LEVEL1));
    let level2: Vec<Hash> = level1.chunks(2).map(|c| node_hash(&c[0], &c[1])).collect();
    assert_eq!(level2, hs(&LEVEL2));
}

#[test]
fn roots_for_every_size() {
    let leaves = vector_leaves();
    let mut frontier = Frontier::new();
    for (i, want) in ROOTS.iter().enumerate() {
        frontier.push(leaves[i]);
        assert_eq!(
            root_from_leaves(&leaves[..=i]),
            h(want),
            "recursive, size {}",
            i + 1
        );
        assert_eq!(frontier.root(), h(want), "frontier, size {}", i + 1);
    }
}

#[test]
fn inclusion_vectors() {
    let leaves = vector_leaves();
    for &(index, size, want) in INCLUSION {
        let proof = inclusion_proof(&leaves[..size as usize], index).unwrap();
        assert_eq!(proof, hs(want), "proof for {index} in {size}");
        let root = h(ROOTS[size as usize - 1]);
        verify_inclusion(&leaves[index as usize], index, size, &proof, &root).unwrap();
    }
}

#[test]
fn consistency_vectors() {
    let leaves = vector_leaves();
    for &(old, new, want) in CONSISTENCY {
        let proof = consistency_proof(&leaves[..new as usize], old).unwrap();
        assert_eq!(proof, hs(want), "proof {old} -> {new}");
        let (r1, r2) = (h(ROOTS[old as usize - 1]), h(ROOTS[new as usize - 1]));
        verify_consistency(old, new, &r1, &r2, &proof).unwrap();
    }
}

/// The corruption probes of transparency-dev's verifier tests.
#[test]
fn inclusion_rejects_corruptions() {
    let leaves = vector_leaves();
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for &(index, size, want) in INCLUSION {
        let proof = hs(want);
        let root = h(ROOTS[size as usize - 1]);
        let leaf = leaves[index as usize];
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>, String)> = vec![
            (
                index.wrapping_sub(1),
                size,
                root,
                leaf,
                proof.clone(),
                "index - 1".into(),
            ),
            (
                index + 1,
                size,
                root,
                leaf,
                proof.clone(),
                "index + 1".into(),
            ),
            (
                index ^ 2,
                size,
                root,
                leaf,
                proof.clone(),
                "index ^ 2".into(),
            ),
            (
                index,
                size * 2,
                root,
                leaf,
                proof.clone(),
                "size * 2".into(),
            ),
            (
                index,
                size / 2,
                root,
                leaf,
                proof.clone(),
                "size / 2".into(),
            ),
            (index, size, root, some, proof.clone(), "wrong leaf".into()),
            (
                index,
                size,
                empty_root(),
                leaf,
                proof.clone(),
                "empty root".into(),
            ),
            (index, size, some, leaf, proof.clone(), "random root".into()),
            (
                index,
                size,
                root,
                leaf,
                [proof.clone(), vec![root]].concat(),
                "trailing root".into(),
            ),
            (
                index,
                size,
                root,
                leaf,
                [vec![root], proof.clone()].concat(),
                "preceding root".into(),
            ),
        ];
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i].0[0] ^= 8;
            probes.push((
                index,
                size,
                root,
                leaf,
                p,
                format!("flipped bit in proof[{i}]"),
            ));
        }
        if !proof.is_empty() {
            probes.push((
                index,
                size,
                root,
                leaf,
                proof[..proof.len() - 1].to_vec(),
                "removed node".into(),
            ));
        }
        if proof.len() > 1 {
            let mut p = vec![proof[0], some];
            p.extend_from_slice(&proof[1..]);
            probes.push((index, size, root, leaf, p, "inserted node".into()));
        }
        for (i, s, r, l, p, desc) in probes {
            // `size / 2` may coincidentally describe the same tree shape only
            // when the root also matches, which these vectors exclude.
            assert!(
                verify_inclusion(&l, i, s, &p, &r).is_err(),
                "accepted corrupted inclusion proof ({desc}) for {index} in {size}"
            );
        }
    }
}

#[test]
fn consistency_rejects_corruptions() {
    for &(old, new, want) in CONSISTENCY {
        let proof = hs(want);
        if proof.is_empty() {
            continue;
        }
        let (r1, r2) = (h(ROOTS[old as usize - 1]), h(ROOTS[new as usize - 1]));
        let wrong = Hash::digest(b"WrongRoot");
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>, String)> = vec![
            (old - 1, new, r1, r2, proof.clone(), "old - 1".into()),
            (old + 1, new, r1, r2, proof.clone(), "old + 1".into()),
            (old ^ 2, new, r1, r2, proof.clone(), "old ^ 2".into()),
            (old, new * 2, r1, r2, proof.clone(), "new * 2".into()),
            (old, new / 2, r1, r2, proof.clone(), "new / 2".into()),
            (old, new, wrong, r2, proof.clone(), "wrong root1".into()),
            (old, new, r1, wrong, proof.clone(), "wrong root2".into()),
            (old, new, r2, r1, proof.clone(), "swapped roots".into()),
            (old, new, r1, r2, vec![], "empty proof".into()),
            (
                old,
                new,
                r1,
                r2,
                [proof.clone(), vec![r1]].concat(),
                "trailing root1".into(),
            ),
            (
                old,
                new,
                r1,
                r2,
                [proof.clone(), vec![r2]].concat(),
                "trailing root2".into(),
            ),
            (
                old,
                new,
                r1,
                r2,
                [vec![r1], proof.clone()].concat(),
                "preceding root1".into(),
            ),
            (
                old,
                new,
                r1,
                r2,
                [vec![r2], proof.clone()].concat(),
                "preceding root2".into(),
            ),
            (
                old,
                new,
                r1,
                r2,
                [vec![proof[0]], proof.clone()].concat(),
                "preceding proof[0]".into(),
            ),
            (
                old,
                new,
                r1,
                r2,
                proof[..proof.len() - 1].to_vec(),
                "truncated".into(),
            ),
        ];
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i].0[0] ^= 16;
            probes.push((old, new, r1, r2, p, format!("flipped bit in proof[{i}]")));
        }
        for (o, n, a, b, p, desc) in probes {
            assert!(
                verify_consistency(o, n, &a, &b, &p).is_err(),
                "accepted corrupted consistency proof ({desc}) for {old} -> {new}"
            );
        }
    }
}

#[test]
fn consistency_degenerate_cases() {
    let (a, b) = (Hash::digest(b"1"), Hash::digest(b"2"));
    let e = empty_root();
    assert!(verify_consistency(0, 0, &a, &b, &[]).is_err());
    assert!(verify_consistency(1, 1, &a, &b, &[]).is_err());
    assert!(verify_consistency(0, 0, &a, &a, &[]).is_ok());
    assert!(verify_consistency(0, 1, &a, &b, &[]).is_ok());
    assert!(verify_consistency(1, 1, &b, &b, &[]).is_ok());
    assert!(matches!(
        verify_consistency(1, 0, &a, &b, &[]),
        Err(ProofError::SizesOutOfOrder { .. })
    ));
    assert!(verify_consistency(2, 1, &a, &b, &[]).is_err());
    assert!(verify_consistency(1, 2, &a, &b, &[]).is_err());
    assert!(verify_consistency(0, 0, &e, &e, &[e]).is_err());
    assert!(verify_consistency(0, 1, &e, &e, &[e]).is_err());
    assert!(verify_consistency(1, 1, &e, &e, &[e]).is_err());
}

#[test]
fn inclusion_degenerate_cases() {
    let some = Hash::digest(b"x");
    for (i, s) in [(0, 0), (1, 0), (2, 1)] {
        assert!(matches!(
            verify_inclusion(&some, i, s, &[], &empty_root()),
            Err(ProofError::IndexOutOfRange { .. })
        ));
    }
    let leaf = leaf_hash(b"data");
    assert!(verify_inclusion(&leaf, 0, 1, &[], &leaf).is_ok());
    assert!(verify_inclusion(&leaf, 0, 1, &[], &some).is_err());
}

// ---- An independent, literal transcription of the RFC 6962 definitions ----

fn ref_mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node_hash(&ref_mth(&leaves[..k]), &ref_mth(&leaves[k..]))
        }
    }
}

fn ref_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return vec![];
    }
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    if m < k {
        let mut p = ref_path(m, &leaves[..k]);
        p.push(ref_mth(&leaves[k..]));
        p
    } else {
        let mut p = ref_path(m - k, &leaves[k..]);
        p.push(ref_mth(&leaves[..k]));
        p
    }
}

fn ref_subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b { vec![] } else { vec![ref_mth(leaves)] };
    }
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    if m <= k {
        let mut p = ref_subproof(m, &leaves[..k], b);
        p.push(ref_mth(&leaves[k..]));
        p
    } else {
        let mut p = ref_subproof(m - k, &leaves[k..], false);
        p.push(ref_mth(&leaves[..k]));
        p
    }
}

fn numbered_leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
        .collect()
}

#[test]
fn all_proofs_up_to_64_match_reference_and_verify() {
    let leaves = numbered_leaves(64);
    for n in 1..=64usize {
        let l = &leaves[..n];
        let root = ref_mth(l);
        assert_eq!(root_from_leaves(l), root);
        for i in 0..n {
            let p = inclusion_proof(l, i as u64).unwrap();
            assert_eq!(p, ref_path(i, l), "inclusion {i} in {n}");
            verify_inclusion(&l[i], i as u64, n as u64, &p, &root).unwrap();
        }
        for m in 1..=n {
            let p = consistency_proof(l, m as u64).unwrap();
            assert_eq!(p, ref_subproof(m, l, true), "consistency {m} -> {n}");
            verify_consistency(m as u64, n as u64, &ref_mth(&l[..m]), &root, &p).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inclusion_verifies_and_rejects_wrong_roots(size in 1usize..600, seed in any::<u64>(), flip in 0usize..32) {
        let leaves = numbered_leaves(size);
        let index = (seed % size as u64) as usize;
        let root = root_from_leaves(&leaves);
        let proof = inclusion_proof(&leaves, index as u64).unwrap();
        prop_assert!(verify_inclusion(&leaves[index], index as u64, size as u64, &proof, &root).is_ok());
        let mut bad = root;
        bad.0[flip] ^= 1;
        prop_assert!(verify_inclusion(&leaves[index], index as u64, size as u64, &proof, &bad).is_err());
        let other = leaf_hash(b"not in the tree");
        prop_assert!(verify_inclusion(&other, index as u64, size as u64, &proof, &root).is_err());
    }

    #[test]
    fn consistency_verifies_and_rejects_wrong_roots(new in 1usize..600, seed in any::<u64>(), flip in 0usize..32) {
        let leaves = numbered_leaves(new);
        let old = 1 + (seed % new as u64) as usize;
        let old_root = root_from_leaves(&leaves[..old]);
        let new_root = root_from_leaves(&leaves);
        let proof = consistency_proof(&leaves, old as u64).unwrap();
        prop_assert!(verify_consistency(old as u64, new as u64, &old_root, &new_root, &proof).is_ok());
        let mut bad_old = old_root;
        bad_old.0[flip] ^= 1;
        let mut bad_new = new_root;
        bad_new.0[flip] ^= 1;
        prop_assert!(verify_consistency(old as u64, new as u64, &bad_old, &new_root, &proof).is_err());
        prop_assert!(verify_consistency(old as u64, new as u64, &old_root, &bad_new, &proof).is_err());
    }

    #[test]
    fn frontier_equals_recursive_root(size in 0usize..2000) {
        let leaves = numbered_leaves(size);
        let mut f = Frontier::new();
        for l in &leaves {
            f.push(*l);
        }
        prop_assert_eq!(f.size(), size as u64);
        prop_assert_eq!(f.root(), root_from_leaves(&leaves));
    }
}
