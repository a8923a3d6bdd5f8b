//! Errors. I/O and usage problems are [`AuditError`] variants; evidence of
//! tampering or corruption found by verification is a [`Violation`] carried
//! in [`AuditError::Integrity`], with the exact position where it was found.

use std::path::PathBuf;
use std::sync::Arc;

use crate::merkle::{Hash, ProofError};

/// Everything that can go wrong opening, writing, reading or verifying a log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// An operating-system I/O error, with the file involved.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "fsync", ...).
        context: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another `AuditLog` in this one) has the log open
    /// for writing.
    #[error("audit log {0} is locked by another writer")]
    Locked(PathBuf),
    /// The signing key file is readable or writable by group or others.
    #[error(
        "signing key {path} has mode {mode:o}; it must not be accessible to group or others (chmod 600)"
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file could not be parsed, or `audit.pub` does not belong to
    /// `audit.key`.
    #[error("key file {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A record could not be serialised to RFC 8785 canonical JSON (for
    /// example a map with non-string keys, a non-finite float) or is too big.
    /// The log stops accepting records after this (see `docs/audit.md`).
    #[error("record {index} cannot be logged: {reason}")]
    Record {
        /// The index the record would have had.
        index: u64,
        /// Why it cannot be serialised.
        reason: String,
    },
    /// The writer thread stopped because of an earlier error; every later
    /// call reports it. Reopen the log to recover to its last durable state.
    #[error("audit writer failed: {0}")]
    WriterFailed(Arc<AuditError>),
    /// The log was closed.
    #[error("audit log is closed")]
    Closed,
    /// A proof or record was asked for a position the log does not have (or
    /// that no signed tree head covers yet).
    #[error("{0}")]
    OutOfRange(String),
    /// The on-disk data contradicts itself or its signatures: tampering or
    /// corruption, with its position.
    #[error("integrity violation: {0}")]
    Integrity(Violation),
    /// A proof could not be built.
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
    /// The PostgreSQL store (feature `postgres`) could not talk to the
    /// database, a statement failed, or the schema name is unusable.
    #[error("database: {context}: {source}")]
    Database {
        /// What was being done ("connect", "append batch", ...).
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl AuditError {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            context,
            path,
            source,
        }
    }

    /// The violation, when this error is evidence of tampering or corruption.
    #[must_use]
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Self::Integrity(v) => Some(v),
            Self::WriterFailed(inner) => inner.violation(),
            _ => None,
        }
    }
}

/// Evidence that the log on disk is not what was written and signed.
///
/// Record positions are zero-based leaf indices; STH positions are
/// zero-based line numbers in `audit/sth.jsonl` (the `pos` column of the
/// `sths` table in the PostgreSQL store, where "segment" and "index file"
/// name the `<schema>.records` table).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The bytes of record `index` do not match their frame checksum, or the
    /// frame itself is malformed (a flipped byte, a partial overwrite).
    #[error("record {index} is corrupt ({reason}) in {segment} at byte offset {offset}")]
    RecordCorrupt {
        /// Position of the damaged record.
        index: u64,
        /// Segment file.
        segment: PathBuf,
        /// Byte offset of the frame in the segment.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Position `index` holds the record written as number `found`: records
    /// were deleted, inserted or reordered there.
    #[error(
        "record sequence broken at position {index}: found record written as number {found} (records deleted, inserted or reordered)"
    )]
    RecordOutOfSequence {
        /// The position where the sequence breaks.
        index: u64,
        /// The sequence number stored in the record frame found there.
        found: u64,
    },
    /// The leaf hash recomputed from record `index` differs from the one
    /// sealed in its segment index: the record was rewritten (with a valid
    /// checksum) after its segment was sealed.
    #[error("record {index} does not match the leaf hash sealed in {index_file}")]
    LeafHashMismatch {
        /// Position of the record.
        index: u64,
        /// The segment index file.
        index_file: PathBuf,
    },
    /// A segment index file is damaged or disagrees with its segment.
    #[error("segment index {index_file} is corrupt: {reason}")]
    IndexCorrupt {
        /// The segment index file.
        index_file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A segment file is missing, misnamed or has a bad header.
    #[error("segment {segment} is invalid: {reason}")]
    SegmentInvalid {
        /// The segment file (or where it should be).
        segment: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A signed tree head covers more records than the log holds: records
    /// from `records` up to `sth_size` were removed (tail truncated).
    #[error(
        "log truncated: it holds {records} records but signed tree head {sth_position} covers {sth_size}; records {records}..{sth_size} are missing"
    )]
    Truncated {
        /// Records present (the first missing index).
        records: u64,
        /// Line of the STH in `sth.jsonl`.
        sth_position: u64,
        /// Size the STH signed.
        sth_size: u64,
    },
    /// An STH line is not a well-formed signed tree head.
    #[error("signed tree head {sth_position} is malformed: {reason}")]
    SthMalformed {
        /// Line in `sth.jsonl`.
        sth_position: u64,
        /// What is wrong.
        reason: String,
    },
    /// An STH was signed by another key than the log's.
    #[error("signed tree head {sth_position} names key {key_id}, not the log's key {expected}")]
    SthWrongKey {
        /// Line in `sth.jsonl`.
        sth_position: u64,
        /// Key id found in the STH.
        key_id: String,
        /// The log's key id.
        expected: String,
    },
    /// An STH signature does not verify (forged or altered STH).
    #[error("signed tree head {sth_position} has an invalid signature (forged or altered)")]
    SthBadSignature {
        /// Line in `sth.jsonl`.
        sth_position: u64,
    },
    /// STH sizes went backwards.
    #[error(
        "signed tree head {sth_position} has size {size}, smaller than the previous {previous}"
    )]
    SthSizeDecreased {
        /// Line in `sth.jsonl`.
        sth_position: u64,
        /// Its size.
        size: u64,
        /// The previous STH's size.
        previous: u64,
    },
    /// The root signed in an STH differs from the root recomputed from the
    /// records: at least one record in `first_suspect..size` was rewritten
    /// consistently (checksums and sequence numbers fixed up). Records before
    /// `first_suspect` match an earlier STH.
    #[error(
        "signed tree head {sth_position} (size {size}) root {signed} does not match the records (recomputed {computed}); a record in {first_suspect}..{size} was rewritten"
    )]
    SthRootMismatch {
        /// Line in `sth.jsonl`.
        sth_position: u64,
        /// Size the STH signed.
        size: u64,
        /// Root in the STH.
        signed: Hash,
        /// Root recomputed from the records.
        computed: Hash,
        /// Size of the last STH that matched (0 when none).
        first_suspect: u64,
    },
    /// A row of the PostgreSQL store's `keys` table is not a valid Ed25519
    /// public key, or its `key_id` is not the SHA-256 of that key: the key
    /// registry was altered.
    #[error("registered key {key_id} is invalid: {reason}")]
    KeyInvalid {
        /// The `key_id` of the row.
        key_id: String,
        /// What is wrong.
        reason: String,
    },
    /// The PostgreSQL store's `head` row (size and Merkle frontier that
    /// writers extend) disagrees with the records and signed tree heads:
    /// records were added or removed after the last signed tree head, or the
    /// head was edited.
    #[error("log head says {head_size} records, the table holds {records}: {reason}")]
    HeadMismatch {
        /// Records present.
        records: u64,
        /// Size recorded in the head row.
        head_size: u64,
        /// What disagrees.
        reason: String,
    },
}

impl Violation {
    /// The first record position known or suspected to be bad, when the
    /// violation is about records.
    #[must_use]
    pub fn first_bad_record(&self) -> Option<u64> {
        match self {
            Self::RecordCorrupt { index, .. }
            | Self::RecordOutOfSequence { index, .. }
            | Self::LeafHashMismatch { index, .. } => Some(*index),
            Self::Truncated { records, .. } => Some(*records),
            Self::SthRootMismatch { first_suspect, .. } => Some(*first_suspect),
            Self::HeadMismatch {
                records, head_size, ..
            } => (records != head_size).then(|| (*records).min(*head_size)),
            Self::KeyInvalid { .. }
            | Self::IndexCorrupt { .. }
            | Self::SegmentInvalid { .. }
            | Self::SthMalformed { .. }
            | Self::SthWrongKey { .. }
            | Self::SthBadSignature { .. }
            | Self::SthSizeDecreased { .. } => None,
        }
    }

    /// The STH line involved, when the violation is about a signed tree head.
    #[must_use]
    pub fn sth_position(&self) -> Option<u64> {
        match self {
            Self::Truncated { sth_position, .. }
            | Self::SthMalformed { sth_position, .. }
            | Self::SthWrongKey { sth_position, .. }
            | Self::SthBadSignature { sth_position, .. }
            | Self::SthSizeDecreased { sth_position, .. }
            | Self::SthRootMismatch { sth_position, .. } => Some(*sth_position),
            _ => None,
        }
    }
}

impl From<Violation> for AuditError {
    fn from(v: Violation) -> Self {
        Self::Integrity(v)
    }
}
