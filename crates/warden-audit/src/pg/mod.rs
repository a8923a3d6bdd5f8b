//! The PostgreSQL store (cargo feature `postgres`): one audit log shared by
//! many writers — the stateless sidecars of a deployment — with the same
//! guarantees as the file store.
//!
//! * [`PgAuditLog`] appends: a bounded queue per handle, one writer thread,
//!   one transaction per batch (group commit) serialised across all writers
//!   by a transaction-scoped advisory lock keyed by the schema. Each writer
//!   signs tree heads with its own Ed25519 key, registered in the log's
//!   `keys` table.
//! * [`pg_verify`] re-derives everything from the stored record bytes and
//!   names the first bad position; [`pg_prove_inclusion`] and
//!   [`pg_prove_consistency`] return the same bundles as the file store.
//!
//! Schema, multi-writer design and guarantees: `docs/audit.md`, section
//! "PostgreSQL store".

mod db;
mod read;
mod writer;

pub use read::{PgVerifyReport, execute_sql, pg_prove_consistency, pg_prove_inclusion, pg_verify};
pub use writer::PgAuditLog;
