//! The audit store behind the kernel, and read access to it for
//! `/v1/audit/head` and `/v1/audit/proof/{index}`.

use crate::config::{AuditStore, ServerConfig};
use std::path::PathBuf;
use warden_audit::{AuditError, InclusionBundle, SignedTreeHead};
use warden_kernel::{KernelBuilder, KernelError};

/// Read side of the configured store.
pub(crate) enum AuditAccess {
    /// Segment files in the data directory.
    File(PathBuf),
    /// A shared PostgreSQL log.
    #[cfg(feature = "postgres")]
    Postgres {
        url: String,
        schema: String,
        log: std::sync::Arc<warden_audit::pg::PgAuditLog<warden_kernel::AuditEvent>>,
    },
}

/// What opening the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The kernel part (kill switch, file log) failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The audit store failed to open.
    #[error("audit store: {0}")]
    Audit(String),
}

/// Wires the configured store (and the shared kill switch) into `builder`.
pub(crate) fn open(
    builder: KernelBuilder,
    config: &ServerConfig,
) -> Result<(KernelBuilder, AuditAccess), StoreError> {
    match &config.audit {
        AuditStore::File => Ok((
            builder.data_dir(&config.data_dir, config.durability)?,
            AuditAccess::File(config.data_dir.clone()),
        )),
        #[cfg(feature = "postgres")]
        AuditStore::Postgres { url, schema } => {
            // The signing key stays in the data directory, like the file store's.
            let log = warden_audit::pg::PgAuditLog::<warden_kernel::AuditEvent>::open(
                url,
                schema,
                &config.data_dir,
                warden_audit::AuditConfig {
                    durability: config.durability,
                    queue_capacity: 8192,
                    ..warden_audit::AuditConfig::default()
                },
            )
            .map_err(|e| StoreError::Audit(e.to_string()))?;
            let log = std::sync::Arc::new(log);
            let sink: std::sync::Arc<dyn warden_kernel::AuditSink> = log.clone();
            Ok((
                builder.kill_dir(&config.data_dir)?.audit(sink),
                AuditAccess::Postgres {
                    url: url.clone(),
                    schema: schema.clone(),
                    log,
                },
            ))
        }
        #[cfg(not(feature = "postgres"))]
        AuditStore::Postgres { .. } => Err(StoreError::Audit(
                "this binary was built without PostgreSQL support; rebuild with `--features postgres` or use `store: file`"
                    .to_owned(),
        )),
    }
}

impl AuditAccess {
    /// The latest signed tree head (call after flushing the kernel).
    pub(crate) fn head(&self) -> Result<Option<SignedTreeHead>, AuditError> {
        match self {
            AuditAccess::File(dir) => warden_audit::LogReader::open(dir)?.latest_sth(),
            #[cfg(feature = "postgres")]
            AuditAccess::Postgres { log, .. } => Ok(log.latest_sth()),
        }
    }

    /// Inclusion proof of record `index` against the latest STH.
    pub(crate) fn prove(&self, index: u64) -> Result<InclusionBundle, AuditError> {
        match self {
            AuditAccess::File(dir) => warden_audit::prove_inclusion(dir, index),
            #[cfg(feature = "postgres")]
            AuditAccess::Postgres { url, schema, .. } => {
                warden_audit::pg::pg_prove_inclusion(url, schema, index)
            }
        }
    }
}
