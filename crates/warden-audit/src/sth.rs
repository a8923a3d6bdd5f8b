//! Signed tree heads.

use serde::{Deserialize, Serialize};

use crate::keys::{LogKey, PublicKey};
use crate::merkle::Hash;

/// A signed tree head (STH): the log's Ed25519 signature over the RFC 8785
/// canonical JSON of `{"root": "<hex>", "size": N, "timestamp": <unix ms>}`.
///
/// Stored (and serialised) as canonical JSON with two more members:
/// `key_id` (lower-case hex SHA-256 of the raw public key) and `signature`
/// (128 hex characters, the 64-byte Ed25519 signature).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTreeHead {
    /// Number of records (leaves) the head covers.
    pub size: u64,
    /// Merkle tree hash of the first `size` records.
    pub root: Hash,
    /// When the head was signed, milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Hex SHA-256 of the signing public key.
    pub key_id: String,
    /// Hex Ed25519 signature over [`SignedTreeHead::signed_message`].
    pub signature: String,
}

#[derive(Serialize)]
struct TreeHeadMessage<'a> {
    root: &'a Hash,
    size: u64,
    timestamp: u64,
}

/// Why an STH did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SthError {
    /// Signed with a different key.
    #[error("signed by key {found}, expected {expected}")]
    WrongKey {
        /// Key id in the STH.
        found: String,
        /// Key id of the key checked against.
        expected: String,
    },
    /// The signature is not 64 hex-encoded bytes.
    #[error("signature is not 128 hex characters")]
    MalformedSignature,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

impl SignedTreeHead {
    /// The exact bytes that are signed: canonical JSON of root, size and
    /// timestamp.
    #[must_use]
    pub fn signed_message(&self) -> Vec<u8> {
        message_bytes(&self.root, self.size, self.timestamp)
    }

    /// Checks key id and signature against `key`.
    ///
    /// # Errors
    /// [`SthError`] naming what is wrong.
    pub fn verify(&self, key: &PublicKey) -> Result<(), SthError> {
        let expected = key.key_id();
        if self.key_id != expected {
            return Err(SthError::WrongKey {
                found: self.key_id.clone(),
                expected,
            });
        }
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut sig)
            .map_err(|_| SthError::MalformedSignature)?;
        if key.verify(&self.signed_message(), &sig) {
            Ok(())
        } else {
            Err(SthError::BadSignature)
        }
    }

    /// Canonical JSON of the whole STH (one line of `sth.jsonl`, without the
    /// newline).
    #[must_use]
    pub fn to_canonical_json(&self) -> Vec<u8> {
        serde_json_canonicalizer::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn sign(key: &LogKey, size: u64, root: Hash, timestamp: u64) -> Self {
        let sig = key.sign(&message_bytes(&root, size, timestamp));
        Self {
            size,
            root,
            timestamp,
            key_id: key.key_id().to_owned(),
            signature: hex::encode(sig),
        }
    }
}

fn message_bytes(root: &Hash, size: u64, timestamp: u64) -> Vec<u8> {
    // Serialising three plain fields cannot fail; fall back to an empty
    // message (which never verifies) rather than panicking.
    serde_json_canonicalizer::to_vec(&TreeHeadMessage {
        root,
        size,
        timestamp,
    })
    .unwrap_or_default()
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
