//! RFC 6962 Merkle tree hashing, the compact right frontier, audit paths and
//! consistency proofs, and their verifiers (RFC 6962 §2.1, verification as in
//! RFC 9162 §2.1.3.2 and §2.1.4.2).
//!
//! ```
//! use warden_audit::merkle::{inclusion_proof, leaf_hash, root_from_leaves, verify_inclusion};
//!
//! let leaves: Vec<_> = [b"a", b"b", b"c"].iter().map(|d| leaf_hash(*d)).collect();
//! let root = root_from_leaves(&leaves);
//! let proof = inclusion_proof(&leaves, 2).unwrap();
//! assert!(verify_inclusion(&leaves[2], 2, 3, &proof, &root).is_ok());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
///
/// Displayed, parsed and serialised as 64 lower-case hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The raw 32 bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex form (64 characters).
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    ///
    /// # Errors
    /// [`HashParseError`] when the text is not exactly 32 hex-encoded bytes.
    pub fn from_hex(text: &str) -> Result<Self, HashParseError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|_| HashParseError)?;
        Ok(Self(out))
    }

    /// SHA-256 of `data` (no domain-separation prefix).
    #[must_use]
    pub fn digest(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl FromStr for Hash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// The text was not 64 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected a SHA-256 hash as 64 hex characters")]
pub struct HashParseError;

/// `SHA-256(0x00 || data)`: the RFC 6962 leaf hash.
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    Hash(h.finalize().into())
}

/// `SHA-256(0x01 || left || right)`: the RFC 6962 interior node hash.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The root of the empty tree: `SHA-256("")`.
#[must_use]
pub fn empty_root() -> Hash {
    Hash::digest(b"")
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The right frontier ("compact range") of a growing tree: the roots of the
/// complete subtrees that make up the first `size` leaves, largest first.
///
/// Appending is amortised O(1) hashes and worst case O(log n); computing the
/// root is O(log n). Memory is O(log n).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves appended so far.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Rebuilds a frontier from its size and its subtree roots (largest
    /// first), as returned by [`Frontier::nodes`]. `None` when the number of
    /// nodes does not match the size (one per set bit).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (nodes.len() == size.count_ones() as usize).then_some(Self { size, nodes })
    }

    /// The roots of the complete subtrees making up the tree, largest first.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends one leaf hash (see [`leaf_hash`]).
    pub fn push(&mut self, leaf: Hash) {
        self.push_at_level(0, leaf);
    }

    /// Appends the root of a complete subtree of `2^level` leaves.
    ///
    /// Only valid when the current size is a multiple of `2^level`; returns
    /// `false` (and changes nothing) otherwise.
    pub(crate) fn push_subtree(&mut self, level: u32, root: Hash) -> bool {
        if level >= 64 || self.size & ((1u64 << level) - 1) != 0 {
            return false;
        }
        self.push_at_level(level, root);
        true
    }

    fn push_at_level(&mut self, level: u32, hash: Hash) {
        let mut acc = hash;
        let mut lvl = level;
        while lvl < 64 && self.size & (1u64 << lvl) != 0 {
            match self.nodes.pop() {
                Some(left) => acc = node_hash(&left, &acc),
                None => break,
            }
            lvl += 1;
        }
        self.nodes.push(acc);
        self.size = self.size.wrapping_add(1u64 << level);
    }

    /// The Merkle tree hash of all leaves appended so far.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// An inclusion proof (RFC 6962 audit path) for the leaf at `leaf_index` in
/// the tree of `tree_size` leaves. Serialised with hex hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Zero-based position of the leaf.
    pub leaf_index: u64,
    /// Size of the tree the proof is relative to.
    pub tree_size: u64,
    /// Sibling hashes from the leaf up to the root.
    pub audit_path: Vec<Hash>,
}

impl InclusionProof {
    /// Checks the proof for `leaf` (a leaf hash) against `root`.
    ///
    /// # Errors
    /// See [`verify_inclusion`].
    pub fn verify(&self, leaf: &Hash, root: &Hash) -> Result<(), ProofError> {
        verify_inclusion(
            leaf,
            self.leaf_index,
            self.tree_size,
            &self.audit_path,
            root,
        )
    }
}

/// A consistency proof (RFC 6962 §2.1.2) that the tree of `old_size` leaves is
/// a prefix of the tree of `new_size` leaves. Serialised with hex hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// Size of the older tree.
    pub old_size: u64,
    /// Size of the newer tree.
    pub new_size: u64,
    /// The proof nodes, in RFC 6962 order.
    pub path: Vec<Hash>,
}

impl ConsistencyProof {
    /// Checks the proof against the two roots.
    ///
    /// # Errors
    /// See [`verify_consistency`].
    pub fn verify(&self, old_root: &Hash, new_root: &Hash) -> Result<(), ProofError> {
        verify_consistency(self.old_size, self.new_size, old_root, new_root, &self.path)
    }
}

/// Why a proof failed to verify or could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// Requested index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The older size is larger than the newer one.
    #[error("old size {old_size} is larger than new size {new_size}")]
    SizesOutOfOrder {
        /// Older size.
        old_size: u64,
        /// Newer size.
        new_size: u64,
    },
    /// The proof has the wrong number of nodes for these sizes.
    #[error("proof has {actual} nodes, expected {expected}")]
    WrongLength {
        /// Number of nodes expected for the sizes.
        expected: usize,
        /// Number of nodes given.
        actual: usize,
    },
    /// The hashes recomputed from the proof do not match the given root(s).
    #[error("proof does not match the root hash")]
    RootMismatch,
}

/// Something that can produce the Merkle tree hash of a leaf range. Ranges are
/// always those of the RFC 6962 recursion: `[start, end)` with `start` aligned.
pub(crate) trait SubtreeSource {
    type Error;
    fn subtree_root(&mut self, start: u64, end: u64) -> Result<Hash, Self::Error>;
}

/// Audit path of `index` inside `[start, end)`, deepest node first.
pub(crate) fn build_inclusion<S: SubtreeSource>(
    src: &mut S,
    index: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if index < start + k {
        build_inclusion(src, index, start, start + k, out)?;
        out.push(src.subtree_root(start + k, end)?);
    } else {
        build_inclusion(src, index, start + k, end, out)?;
        out.push(src.subtree_root(start, start + k)?);
    }
    Ok(())
}

/// RFC 6962 `SUBPROOF(m, D[start:end], complete)`.
pub(crate) fn build_consistency<S: SubtreeSource>(
    src: &mut S,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if m == 0 {
        return Ok(());
    }
    if m == n {
        if !complete {
            out.push(src.subtree_root(start, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        build_consistency(src, m, start, start + k, complete, out)?;
        out.push(src.subtree_root(start + k, end)?);
    } else {
        build_consistency(src, m - k, start + k, end, false, out)?;
        out.push(src.subtree_root(start, start + k)?);
    }
    Ok(())
}

/// Merkle tree hash of a slice of leaf hashes (RFC 6962 `MTH`), recursively.
#[must_use]
pub fn root_from_leaves(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = usize::try_from(split_point(n as u64)).unwrap_or(n / 2);
            let (left, right) = leaves.split_at(k);
            node_hash(&root_from_leaves(left), &root_from_leaves(right))
        }
    }
}

struct SliceSource<'a>(&'a [Hash]);

impl SubtreeSource for SliceSource<'_> {
    type Error = std::convert::Infallible;
    fn subtree_root(&mut self, start: u64, end: u64) -> Result<Hash, Self::Error> {
        let (s, e) = (start as usize, end as usize);
        Ok(root_from_leaves(self.0.get(s..e).unwrap_or(&[])))
    }
}

/// The audit path for `index` in the tree whose leaf hashes are `leaves`.
///
/// # Errors
/// [`ProofError::IndexOutOfRange`] when `index >= leaves.len()`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    let Ok(()) = build_inclusion(&mut SliceSource(leaves), index, 0, size, &mut out);
    Ok(out)
}

/// The consistency proof from the first `old_size` leaves to all of `leaves`.
///
/// # Errors
/// [`ProofError::SizesOutOfOrder`] when `old_size > leaves.len()`.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    let new_size = leaves.len() as u64;
    if old_size > new_size {
        return Err(ProofError::SizesOutOfOrder { old_size, new_size });
    }
    let mut out = Vec::new();
    let Ok(()) = build_consistency(
        &mut SliceSource(leaves),
        old_size,
        0,
        new_size,
        true,
        &mut out,
    );
    Ok(out)
}

/// Number of nodes in an inclusion proof for `index` in a tree of `size`.
fn inclusion_len(index: u64, size: u64) -> usize {
    // Inner part: levels where the paths to `index` and to `size - 1` differ;
    // border part: set bits of `index` above that.
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    inner + border
}

/// Recomputes the root from an audit path (RFC 9162 §2.1.3.2).
fn root_from_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            actual: proof.len(),
        });
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::RootMismatch);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::RootMismatch);
    }
    Ok(r)
}

/// Verifies an RFC 6962 audit path: that `leaf` (a leaf hash, see
/// [`leaf_hash`]) is at `index` in the tree of `size` leaves whose root is
/// `root`.
///
/// # Errors
/// [`ProofError::IndexOutOfRange`], [`ProofError::WrongLength`] or
/// [`ProofError::RootMismatch`].
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion(leaf, index, size, proof)?;
    if computed == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Verifies an RFC 6962 consistency proof (RFC 9162 §2.1.4.2): that the tree
/// of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root`.
///
/// Conventions for the degenerate cases: `old_size == new_size` requires an
/// empty proof and equal roots; `old_size == 0` requires an empty proof (the
/// empty tree is a prefix of every tree).
///
/// # Errors
/// [`ProofError::SizesOutOfOrder`], [`ProofError::WrongLength`] or
/// [`ProofError::RootMismatch`].
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesOutOfOrder { old_size, new_size });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                expected: 0,
                actual: proof.len(),
            });
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old_size == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength {
                expected: 0,
                actual: proof.len(),
            })
        };
    }
    // Expected length: levels below the common prefix, plus the border nodes.
    let shift = old_size.trailing_zeros();
    let inner = (64 - ((old_size - 1) ^ (new_size - 1)).leading_zeros()) as usize;
    let inner_from_shift = inner.saturating_sub(shift as usize);
    let border = ((old_size - 1) >> inner).count_ones() as usize;
    let start_extra = usize::from(old_size != 1u64 << shift);
    let expected = start_extra + inner_from_shift + border;
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            actual: proof.len(),
        });
    }

    let mut nodes: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        nodes.push(*old_root);
    }
    nodes.extend_from_slice(proof);
    let mut iter = nodes.iter();
    let Some(first) = iter.next() else {
        return Err(ProofError::RootMismatch);
    };
    let mut f_n = old_size - 1;
    let mut s_n = new_size - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut f_r = *first;
    let mut s_r = *first;
    for c in iter {
        if s_n == 0 {
            return Err(ProofError::RootMismatch);
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n == 0 && f_r == *old_root && s_r == *new_root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn frontier_matches_recursive_root() {
        let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut f = Frontier::new();
        assert_eq!(f.root(), empty_root());
        for (i, l) in leaves.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.root(), root_from_leaves(&leaves[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn frontier_from_subtrees() {
        let leaves: Vec<Hash> = (0u32..100).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut f = Frontier::new();
        assert!(f.push_subtree(5, root_from_leaves(&leaves[..32])));
        assert!(f.push_subtree(5, root_from_leaves(&leaves[32..64])));
        assert!(f.push_subtree(5, root_from_leaves(&leaves[64..96])));
        let mut g = Frontier::new();
        for l in &leaves[..96] {
            g.push(*l);
        }
        for l in &leaves[96..] {
            f.push(*l);
            g.push(*l);
        }
        assert_eq!(f.root(), g.root());
        assert_eq!(f.root(), root_from_leaves(&leaves));
        let mut h = Frontier::new();
        h.push(leaves[0]);
        assert!(!h.push_subtree(1, leaves[1]));
    }

    #[test]
    fn expected_lengths_match_generated() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        for n in 1..=70u64 {
            let l = &leaves[..n as usize];
            for i in 0..n {
                assert_eq!(inclusion_proof(l, i).unwrap().len(), inclusion_len(i, n));
            }
        }
    }
}
