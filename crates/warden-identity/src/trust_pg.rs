//! [`PgTrustStore`] (cargo feature `postgres`): one trust table shared by
//! every process of a deployment (e.g. replicas of `warden serve`).
//!
//! Table `<schema>.trust (agent TEXT PRIMARY KEY, score DOUBLE PRECISION,
//! at BIGINT)`, created on first use under a transaction-scoped advisory
//! lock. Each agent's queued signals are applied in their own transaction:
//! the row is locked (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`
//! creates it at the baseline if needed and locks it either way), the new
//! anchor is computed in Rust with [`TrustConfig::step`] and written back, so
//! concurrent writers serialise per agent and no signal is lost. An
//! operator's set is one upsert: it replaces whatever is committed at that
//! moment, and signals committed later apply on top of it.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row, SqlSafeStr, SqlStr};

use crate::IdentityError;
use crate::trust::{Anchor, ApplyFailure, Batch, Snapshot, TrustConfig, TrustStore};

/// The default schema of the trust table.
pub const DEFAULT_TRUST_SCHEMA: &str = "warden_trust";

/// Trust scores in PostgreSQL. `Send + Sync`; calls are synchronous (a
/// private single-threaded runtime drives sqlx) and safe from async code.
pub struct PgTrustStore {
    url: String,
    table: String,
    sql: Statements,
    /// `Some` until dropped (see `Drop`).
    runtime: Option<tokio::runtime::Runtime>,
    /// One connection, reopened after an error.
    conn: Mutex<Option<PgConnection>>,
}

impl std::fmt::Debug for PgTrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTrustStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

struct Statements {
    ddl: SqlStr,
    lock_row: SqlStr,
    update: SqlStr,
    upsert: SqlStr,
    all: SqlStr,
}

fn sql(text: String) -> SqlStr {
    AssertSqlSafe(text).into_sql_str()
}

fn db(context: &str, e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Internal(format!("trust store (PostgreSQL): {context}: {e}"))
}

/// A plain lower-case SQL identifier, so it can be spliced into SQL text.
fn validate_schema(schema: &str) -> Result<(), IdentityError> {
    let mut chars = schema.chars();
    let ok = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(IdentityError::malformed(format!(
            "trust schema name {schema:?}: must be 1..=63 characters of [a-z0-9_], start with a letter or '_', and not start with 'pg_'"
        )))
    }
}

/// Advisory lock key for creating a schema's table (any fixed value per schema).
fn lock_key(schema: &str) -> i64 {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(format!("warden-trust/pg/v1\0{schema}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&h[..8]);
    i64::from_be_bytes(first)
}

impl PgTrustStore {
    /// Connects to `url` and creates `<schema>.trust` if missing.
    ///
    /// # Errors
    /// A bad schema name or URL, an unreachable database, a failing DDL.
    pub fn open(url: &str, schema: &str) -> Result<Self, IdentityError> {
        validate_schema(schema)?;
        let s = format!("\"{schema}\"");
        let key = lock_key(schema);
        let sql = Statements {
            ddl: sql(format!(
                "BEGIN; SELECT pg_advisory_xact_lock({key}); \
                 CREATE SCHEMA IF NOT EXISTS {s}; \
                 CREATE TABLE IF NOT EXISTS {s}.trust ( \
                     agent TEXT PRIMARY KEY, \
                     score DOUBLE PRECISION NOT NULL CHECK (score >= 0 AND score <= 1000), \
                     at BIGINT NOT NULL CHECK (at >= 0)); \
                 COMMIT"
            )),
            lock_row: sql(format!(
                "INSERT INTO {s}.trust (agent, score, at) VALUES ($1, $2, 0) \
                 ON CONFLICT (agent) DO UPDATE SET agent = EXCLUDED.agent \
                 RETURNING score, at"
            )),
            update: sql(format!(
                "UPDATE {s}.trust SET score = $2, at = $3 WHERE agent = $1"
            )),
            upsert: sql(format!(
                "INSERT INTO {s}.trust (agent, score, at) VALUES ($1, $2, $3) \
                 ON CONFLICT (agent) DO UPDATE SET score = EXCLUDED.score, at = EXCLUDED.at"
            )),
            all: sql(format!("SELECT agent, score, at FROM {s}.trust")),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| db("start the tokio runtime", e))?;
        let store = PgTrustStore {
            url: url.to_owned(),
            table: format!("{schema}.trust"),
            sql,
            runtime: Some(runtime),
            conn: Mutex::new(None),
        };
        store.with_conn(async |conn| {
            sqlx::raw_sql(store.sql.ddl.clone())
                .execute(&mut *conn)
                .await
                .map(|_| ())
                .map_err(|e| db("create the trust table", e))
        })?;
        Ok(store)
    }

    /// The table, `schema.trust`.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Runs `f` with the connection (opened on demand) on the private
    /// runtime, on a helper thread when called from inside another runtime
    /// (where blocking on this one would panic). A failed call drops the
    /// connection so the next one reconnects.
    fn with_conn<T: Send>(
        &self,
        f: impl AsyncFnOnce(&mut PgConnection) -> Result<T, IdentityError> + Send,
    ) -> Result<T, IdentityError> {
        let run = || {
            let mut guard = self.conn.lock().map_err(|_| {
                IdentityError::Internal("trust store connection lock poisoned".into())
            })?;
            let runtime = self
                .runtime
                .as_ref()
                .ok_or_else(|| IdentityError::Internal("trust store: runtime gone".into()))?;
            let result = runtime.block_on(async {
                if guard.is_none() {
                    let options = PgConnectOptions::from_str(&self.url)
                        .map_err(|e| db("parse connection URL", e))?
                        .application_name("warden-trust");
                    *guard = Some(
                        options
                            .connect()
                            .await
                            .map_err(|e| db("connect to PostgreSQL", e))?,
                    );
                }
                match guard.as_mut() {
                    Some(conn) => f(conn).await,
                    None => Err(IdentityError::Internal("trust store: no connection".into())),
                }
            });
            if result.is_err() {
                *guard = None;
            }
            result
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return run();
        }
        std::thread::scope(|scope| scope.spawn(run).join())
            .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    }
}

impl Drop for PgTrustStore {
    fn drop(&mut self) {
        // The last reference may go away inside an async context (a server
        // shutting down), where dropping a runtime normally panics.
        if let Ok(mut conn) = self.conn.lock() {
            drop(conn.take());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl TrustStore for PgTrustStore {
    fn apply(&self, config: &TrustConfig, batch: &Batch) -> Result<Snapshot, ApplyFailure> {
        let applied = std::sync::atomic::AtomicUsize::new(0);
        let store = self;
        let result = self.with_conn(async |conn| {
            for (agent, deltas) in batch {
                let mut tx = conn.begin().await.map_err(|e| db("begin", e))?;
                let row = sqlx::query(store.sql.lock_row.clone())
                    .bind(agent)
                    .bind(config.baseline)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| db("lock the agent's row", e))?;
                let mut anchor = anchor_of(&store.table, agent, &row)?;
                for d in deltas {
                    anchor = config.step(Some(anchor), *d);
                }
                let at = i64::try_from(anchor.at)
                    .map_err(|_| db("write", format!("time {} out of range", anchor.at)))?;
                sqlx::query(store.sql.update.clone())
                    .bind(agent)
                    .bind(anchor.score)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db("update the agent's row", e))?;
                tx.commit().await.map_err(|e| db("commit", e))?;
                applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let rows = sqlx::query(store.sql.all.clone())
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| db("read the trust table", e))?;
            let mut out = HashMap::with_capacity(rows.len());
            for row in &rows {
                let agent: String = row
                    .try_get("agent")
                    .map_err(|e| db("read trust.agent", e))?;
                let anchor = anchor_of(&store.table, &agent, row)?;
                out.insert(agent, anchor);
            }
            Ok(out)
        });
        result.map_err(|error| ApplyFailure {
            applied: applied.load(std::sync::atomic::Ordering::Relaxed),
            error,
        })
    }

    fn set(&self, agent: &str, anchor: Anchor) -> Result<(), IdentityError> {
        if !anchor.is_valid() {
            return Err(IdentityError::malformed(
                "trust score must be within 0..=1000",
            ));
        }
        let at = i64::try_from(anchor.at)
            .map_err(|_| IdentityError::malformed(format!("time {} out of range", anchor.at)))?;
        self.with_conn(async |conn| {
            sqlx::query(self.sql.upsert.clone())
                .bind(agent)
                .bind(anchor.score)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map(|_| ())
                .map_err(|e| db("set the agent's score", e))
        })
    }

    fn location(&self) -> String {
        format!("PostgreSQL table {}", self.table)
    }
}

/// A row's anchor, checked (fail closed on a value no writer could store).
fn anchor_of(
    table: &str,
    agent: &str,
    row: &sqlx::postgres::PgRow,
) -> Result<Anchor, IdentityError> {
    let score: f64 = row.try_get("score").map_err(|e| db("read score", e))?;
    let at: i64 = row.try_get("at").map_err(|e| db("read at", e))?;
    let anchor = Anchor {
        score,
        at: u64::try_from(at)
            .map_err(|_| db(table, format!("agent {agent:?}: negative time {at}")))?,
    };
    if !anchor.is_valid() {
        return Err(db(
            table,
            format!("agent {agent:?}: score {score} out of range"),
        ));
    }
    Ok(anchor)
}
