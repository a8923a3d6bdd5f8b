//! Warden's tamper-evident audit log.
//!
//! * Every record is serialised to RFC 8785 canonical JSON and becomes one
//!   leaf of an RFC 6962 Merkle tree ([`merkle`]).
//! * Tree heads are signed with Ed25519 ([`SignedTreeHead`]) every N records,
//!   every T milliseconds, on [`AuditLog::flush`] and on close.
//! * Records live in append-only segment files under `<data_dir>/audit/`,
//!   written by one background thread with group commit ([`AuditLog`]);
//!   callers never block on I/O unless they ask for [`Durability::Sync`].
//! * [`verify`] re-derives everything from the bytes on disk and names the
//!   first bad position; [`prove_inclusion`] and [`prove_consistency`] give
//!   third-party-checkable proofs; [`tail`], [`records`] and [`export`]
//!   (JSON lines, CloudEvents) read the log.
//! * With the cargo feature `postgres`, the `pg` module stores the log in PostgreSQL,
//!   shared by many writers (one per sidecar), with the same guarantees.
//!
//! The user documentation, including the byte layout on disk, is
//! `docs/audit.md`.

mod canonical;
mod error;
mod handoff;
mod keys;
mod log;
pub mod merkle;
#[cfg(feature = "postgres")]
pub mod pg;
mod read;
mod sth;
mod store;

pub use canonical::{CanonicalJsonError, Canonicalizer, to_canonical_json};
pub use error::{AuditError, Violation};
pub use keys::{KEY_FILE, PUBLIC_KEY_FILE, PublicKey};
pub use log::{AuditConfig, AuditLog, Durability};
pub use merkle::{
    ConsistencyProof, Hash, InclusionProof, ProofError, verify_consistency, verify_inclusion,
};
pub use read::{
    ConsistencyBundle, ExportFormat, ExportOptions, InclusionBundle, LogReader, Records,
    StoredRecord, VerifyOptions, VerifyReport, count, export, prove_consistency, prove_inclusion,
    records, tail, verify,
};
pub use sth::{SignedTreeHead, SthError};
