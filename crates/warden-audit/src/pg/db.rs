//! Schema names, SQL text, connections and the DDL of the PostgreSQL store.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{AssertSqlSafe, ConnectOptions, Row, SqlSafeStr, SqlStr};

use crate::error::{AuditError, Violation};
use crate::keys::PublicKey;
use crate::merkle::{Frontier, Hash};
use crate::sth::SignedTreeHead;

/// Version of the table layout, stored in `head.format`.
pub(crate) const FORMAT: i32 = 1;

/// Rows fetched per page when streaming records or tree heads.
pub(crate) const PAGE_ROWS: i64 = 4096;

/// Most bytes of record data sent in one `INSERT` statement.
pub(crate) const INSERT_CHUNK_BYTES: usize = 8 << 20;

/// Wraps a database error with what was being done.
pub(crate) fn db_err(context: &str) -> impl FnOnce(sqlx::Error) -> AuditError + '_ {
    move |e| AuditError::Database {
        context: context.to_owned(),
        source: Box::new(e),
    }
}

/// A database-side inconsistency that is not tampering evidence (a value
/// out of range for its type).
pub(crate) fn bad_value(context: &str, reason: String) -> AuditError {
    AuditError::Database {
        context: context.to_owned(),
        source: reason.into(),
    }
}

/// Checks that `schema` is a plain lower-case SQL identifier, so it can be
/// spliced into SQL text without quoting problems.
pub(crate) fn validate_schema(schema: &str) -> Result<(), AuditError> {
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
        Err(AuditError::Database {
            context: format!("schema name {schema:?}"),
            source: "must be 1..=63 characters of [a-z0-9_], start with a letter or '_', and not start with 'pg_'".into(),
        })
    }
}

/// The advisory lock key of a schema's log: the first 8 bytes of
/// SHA-256("warden-audit/pg/v1\0" || schema), big-endian.
pub(crate) fn lock_key(schema: &str) -> i64 {
    let mut data = b"warden-audit/pg/v1\0".to_vec();
    data.extend_from_slice(schema.as_bytes());
    let h = Hash::digest(&data);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.0[..8]);
    i64::from_be_bytes(first)
}

pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64, AuditError> {
    i64::try_from(v).map_err(|_| bad_value(what, format!("{v} does not fit a BIGINT")))
}

pub(crate) fn hash_from(bytes: &[u8]) -> Option<Hash> {
    <[u8; 32]>::try_from(bytes).ok().map(Hash)
}

/// The SQL text of every statement, with the schema spliced in.
pub(crate) struct Sql {
    pub(crate) schema: String,
    pub(crate) lock_key: i64,
    pub(crate) lock: SqlStr,
    pub(crate) begin: SqlStr,
    pub(crate) begin_async_commit: SqlStr,
    pub(crate) append: SqlStr,
    pub(crate) append_and_sign: SqlStr,
    pub(crate) commit: SqlStr,
    pub(crate) commit_sync: SqlStr,
    pub(crate) head_exists: SqlStr,
    pub(crate) ddl: SqlStr,
    pub(crate) register_key: SqlStr,
    pub(crate) key_by_id: SqlStr,
    pub(crate) all_keys: SqlStr,
    pub(crate) head_for_update: SqlStr,
    pub(crate) head: SqlStr,
    pub(crate) insert_records: SqlStr,
    pub(crate) update_head: SqlStr,
    pub(crate) insert_sth: SqlStr,
    pub(crate) sth_at: SqlStr,
    pub(crate) latest_sth: SqlStr,
    pub(crate) sth_of_size: SqlStr,
    pub(crate) sths_page: SqlStr,
    pub(crate) records_page: SqlStr,
    pub(crate) leaves_page: SqlStr,
    pub(crate) record_at: SqlStr,
    pub(crate) max_idx: SqlStr,
    /// `<schema>.records`, used as the "file" in violations.
    pub(crate) records_table: String,
}

fn sql(text: String) -> SqlStr {
    AssertSqlSafe(text).into_sql_str()
}

impl Sql {
    /// Builds the statements for `schema` (already validated).
    pub(crate) fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        let insert_records = format!(
            "INSERT INTO {s}.records (idx, leaf_hash, bytes) \
             SELECT $1::int8 + t.o - 1, t.l, t.b \
             FROM UNNEST($2::bytea[], $3::bytea[]) WITH ORDINALITY AS t(l, b, o)"
        );
        let update_head = format!(
            "UPDATE {s}.head SET size = $4, frontier = $5, signed_size = $6, sth_count = $7"
        );
        Self {
            schema: schema.to_owned(),
            lock_key: lock_key(schema),
            lock: sql("SELECT pg_advisory_xact_lock($1)".into()),
            begin: sql(begin(&s, lock_key(schema), false)),
            begin_async_commit: sql(begin(&s, lock_key(schema), true)),
            append: sql(format!("WITH ins AS ({insert_records}) {update_head}")),
            append_and_sign: sql(format!(
                "WITH ins AS ({insert_records}), \
                 sth AS (INSERT INTO {s}.sths (pos, size, root, timestamp_ms, key_id, signature, sth_json) \
                         VALUES ($8, $9, $10, $11, $12, $13, $14)) \
                 {update_head}"
            )),
            commit: sql("COMMIT".into()),
            commit_sync: sql("SET LOCAL synchronous_commit TO DEFAULT; COMMIT".into()),
            head_exists: sql(format!(
                "SELECT to_regclass('{s}.head') IS NOT NULL AS present"
            )),
            ddl: sql(ddl(&s)),
            register_key: sql(format!(
                "INSERT INTO {s}.keys (key_id, public_key) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING"
            )),
            key_by_id: sql(format!(
                "SELECT key_id, public_key FROM {s}.keys WHERE key_id = $1"
            )),
            all_keys: sql(format!(
                "SELECT key_id, public_key FROM {s}.keys ORDER BY key_id"
            )),
            head_for_update: sql(format!(
                "SELECT format, size, frontier, signed_size, sth_count FROM {s}.head FOR UPDATE"
            )),
            head: sql(format!(
                "SELECT format, size, frontier, signed_size, sth_count FROM {s}.head"
            )),
            insert_records: sql(insert_records),
            update_head: sql(format!(
                "UPDATE {s}.head SET size = $1, frontier = $2, signed_size = $3, sth_count = $4"
            )),
            insert_sth: sql(format!(
                "INSERT INTO {s}.sths (pos, size, root, timestamp_ms, key_id, signature, sth_json) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            )),
            sth_at: sql(format!(
                "SELECT pos, size, root, timestamp_ms, key_id, signature, sth_json FROM {s}.sths WHERE pos = $1"
            )),
            latest_sth: sql(format!(
                "SELECT pos, size, root, timestamp_ms, key_id, signature, sth_json FROM {s}.sths ORDER BY pos DESC LIMIT 1"
            )),
            sth_of_size: sql(format!(
                "SELECT pos, size, root, timestamp_ms, key_id, signature, sth_json FROM {s}.sths WHERE size = $1 ORDER BY pos DESC LIMIT 1"
            )),
            sths_page: sql(format!(
                "SELECT pos, size, root, timestamp_ms, key_id, signature, sth_json FROM {s}.sths \
                 WHERE pos >= $1 ORDER BY pos LIMIT $2"
            )),
            records_page: sql(format!(
                "SELECT idx, leaf_hash, bytes FROM {s}.records WHERE idx >= $1 ORDER BY idx LIMIT $2"
            )),
            leaves_page: sql(format!(
                "SELECT idx, leaf_hash FROM {s}.records WHERE idx >= $1 AND idx < $2 ORDER BY idx LIMIT $3"
            )),
            record_at: sql(format!(
                "SELECT idx, leaf_hash, bytes FROM {s}.records WHERE idx = $1"
            )),
            max_idx: sql(format!("SELECT max(idx) AS m FROM {s}.records")),
            records_table: format!("{schema}.records"),
        }
    }
}

/// First message of a batch transaction (simple protocol): `BEGIN`, the
/// advisory lock, and — in a later statement, so with a snapshot taken after
/// the previous holder committed — the head row with the latest STH.
fn begin(s: &str, lock_key: i64, async_commit: bool) -> String {
    format!(
        "BEGIN; SELECT pg_advisory_xact_lock({lock_key}); {}\
         SELECT h.format, h.size, h.frontier, h.signed_size, h.sth_count, \
                (SELECT t.sth_json FROM {s}.sths t WHERE t.pos = h.sth_count - 1) AS latest_sth_json \
         FROM {s}.head h FOR UPDATE OF h",
        if async_commit {
            "SET LOCAL synchronous_commit = off; "
        } else {
            ""
        }
    )
}

/// The tables, created together (under the advisory lock) by the first
/// writer. `head` is created last: its presence means the log exists.
fn ddl(s: &str) -> String {
    format!(
        r#"
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE {s}.records (
    idx        BIGINT PRIMARY KEY,
    leaf_hash  BYTEA NOT NULL,
    bytes      BYTEA NOT NULL
);
CREATE TABLE {s}.sths (
    pos          BIGINT PRIMARY KEY,
    size         BIGINT NOT NULL,
    root         BYTEA NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    key_id       TEXT NOT NULL,
    signature    BYTEA NOT NULL,
    sth_json     TEXT NOT NULL
);
CREATE TABLE {s}.keys (
    key_id      TEXT PRIMARY KEY,
    public_key  TEXT NOT NULL,
    first_seen  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE FUNCTION {s}.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'warden audit table %.% is append-only (% refused)',
        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP;
END
$fn$;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {s}.records
    FOR EACH ROW EXECUTE FUNCTION {s}.refuse_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {s}.records
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.refuse_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {s}.sths
    FOR EACH ROW EXECUTE FUNCTION {s}.refuse_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {s}.sths
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.refuse_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {s}.keys
    FOR EACH ROW EXECUTE FUNCTION {s}.refuse_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {s}.keys
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.refuse_change();
CREATE TABLE {s}.head (
    singleton    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    format       INTEGER NOT NULL,
    size         BIGINT NOT NULL,
    frontier     BYTEA NOT NULL,
    signed_size  BIGINT NOT NULL,
    sth_count    BIGINT NOT NULL
);
INSERT INTO {s}.head (format, size, frontier, signed_size, sth_count)
    VALUES ({FORMAT}, 0, ''::bytea, 0, 0);
"#
    )
}

/// Opens a connection for the audit log.
pub(crate) async fn connect(url: &str, writer: bool) -> Result<PgConnection, AuditError> {
    let mut options = PgConnectOptions::from_str(url)
        .map_err(db_err("parse connection URL"))?
        .application_name(if writer {
            "warden-audit-writer"
        } else {
            "warden-audit-reader"
        });
    if writer {
        // A writer that hangs inside a batch transaction holds the log's
        // advisory lock; have the server end it rather than stall every
        // other writer for ever.
        options = options.options([("idle_in_transaction_session_timeout", "60s")]);
    }
    options
        .connect()
        .await
        .map_err(db_err("connect to PostgreSQL"))
}

/// Runs `f` here, or on a helper thread when the caller is itself inside a
/// tokio runtime (where starting, blocking on or dropping another runtime
/// panics), so the synchronous API works from async code too.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| scope.spawn(f).join())
        .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

/// A single-threaded runtime to drive sqlx from synchronous code.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, AuditError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AuditError::Database {
            context: "start the tokio runtime".into(),
            source: Box::new(e),
        })
}

/// The `head` row.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub(crate) size: u64,
    pub(crate) frontier_bytes: Vec<u8>,
    pub(crate) signed_size: u64,
    pub(crate) sth_count: u64,
}

fn get_u64(row: &PgRow, column: &str) -> Result<u64, AuditError> {
    let v: i64 = row.try_get(column).map_err(db_err(column))?;
    u64::try_from(v).map_err(|_| bad_value(column, format!("negative value {v}")))
}

impl Head {
    pub(crate) fn from_row(row: &PgRow) -> Result<Self, AuditError> {
        let format: i32 = row.try_get("format").map_err(db_err("head.format"))?;
        if format != FORMAT {
            return Err(bad_value(
                "head.format",
                format!("table layout version {format}, this build reads {FORMAT}"),
            ));
        }
        Ok(Self {
            size: get_u64(row, "size")?,
            frontier_bytes: row.try_get("frontier").map_err(db_err("head.frontier"))?,
            signed_size: get_u64(row, "signed_size")?,
            sth_count: get_u64(row, "sth_count")?,
        })
    }

    /// The Merkle frontier writers extend.
    pub(crate) fn frontier(&self) -> Result<Frontier, AuditError> {
        let bad = |reason: String| {
            AuditError::Integrity(Violation::HeadMismatch {
                records: self.size,
                head_size: self.size,
                reason,
            })
        };
        if !self.frontier_bytes.len().is_multiple_of(32) {
            return Err(bad(format!(
                "frontier is {} bytes, not a multiple of 32",
                self.frontier_bytes.len()
            )));
        }
        let nodes = self
            .frontier_bytes
            .chunks_exact(32)
            .filter_map(hash_from)
            .collect();
        let frontier = Frontier::from_parts(self.size, nodes).ok_or_else(|| {
            bad(format!(
                "frontier holds {} subtree roots, a tree of {} leaves has {}",
                self.frontier_bytes.len() / 32,
                self.size,
                self.size.count_ones()
            ))
        })?;
        if self.signed_size > self.size {
            return Err(bad(format!(
                "signed size {} is beyond the size",
                self.signed_size
            )));
        }
        Ok(frontier)
    }
}

/// Serialises a frontier for `head.frontier`.
pub(crate) fn frontier_bytes(frontier: &Frontier) -> Vec<u8> {
    frontier.nodes().iter().flat_map(|h| h.0).collect()
}

/// A row of `sths`, before any check.
pub(crate) struct SthRow {
    pub(crate) pos: i64,
    pub(crate) size: i64,
    pub(crate) root: Vec<u8>,
    pub(crate) timestamp_ms: i64,
    pub(crate) key_id: String,
    pub(crate) signature: Vec<u8>,
    pub(crate) json: String,
}

impl SthRow {
    pub(crate) fn from_row(row: &PgRow) -> Result<Self, AuditError> {
        Ok(Self {
            pos: row.try_get("pos").map_err(db_err("sths.pos"))?,
            size: row.try_get("size").map_err(db_err("sths.size"))?,
            root: row.try_get("root").map_err(db_err("sths.root"))?,
            timestamp_ms: row
                .try_get("timestamp_ms")
                .map_err(db_err("sths.timestamp_ms"))?,
            key_id: row.try_get("key_id").map_err(db_err("sths.key_id"))?,
            signature: row.try_get("signature").map_err(db_err("sths.signature"))?,
            json: row.try_get("sth_json").map_err(db_err("sths.sth_json"))?,
        })
    }

    /// Parses `sth_json` and checks that the columns say the same.
    /// `position` is the position the row is expected at.
    pub(crate) fn parse(&self, position: u64) -> Result<SignedTreeHead, Violation> {
        let malformed = |reason: String| Violation::SthMalformed {
            sth_position: position,
            reason,
        };
        let sth: SignedTreeHead =
            serde_json::from_str(&self.json).map_err(|e| malformed(e.to_string()))?;
        let mut differs = Vec::new();
        if i64::try_from(sth.size).ok() != Some(self.size) {
            differs.push("size");
        }
        if self.root != sth.root.0 {
            differs.push("root");
        }
        if i64::try_from(sth.timestamp).ok() != Some(self.timestamp_ms) {
            differs.push("timestamp_ms");
        }
        if self.key_id != sth.key_id {
            differs.push("key_id");
        }
        if hex::encode(&self.signature) != sth.signature {
            differs.push("signature");
        }
        if !differs.is_empty() {
            return Err(malformed(format!(
                "column(s) {} disagree with sth_json",
                differs.join(", ")
            )));
        }
        Ok(sth)
    }
}

/// Checks a `keys` row: a valid Ed25519 key whose SHA-256 is its key id.
pub(crate) fn key_from_row(key_id: &str, public_hex: &str) -> Result<PublicKey, Violation> {
    let key = PublicKey::from_hex(public_hex).map_err(|reason| Violation::KeyInvalid {
        key_id: key_id.to_owned(),
        reason,
    })?;
    if key.key_id() != key_id {
        return Err(Violation::KeyInvalid {
            key_id: key_id.to_owned(),
            reason: format!("public key {public_hex} has key id {}", key.key_id()),
        });
    }
    Ok(key)
}

/// Reads the registered key with this id, checked.
pub(crate) async fn registered_key(
    conn: &mut PgConnection,
    sql: &Sql,
    key_id: &str,
) -> Result<Option<PublicKey>, AuditError> {
    let row = sqlx::query(sql.key_by_id.clone())
        .bind(key_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err("read keys"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let public: String = row
        .try_get("public_key")
        .map_err(db_err("keys.public_key"))?;
    Ok(Some(key_from_row(key_id, &public)?))
}
