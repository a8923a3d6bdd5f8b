//! Read side of the PostgreSQL store: verification and proofs. Every
//! function reads one consistent snapshot (a `REPEATABLE READ READ ONLY`
//! transaction), so it may run while writers append.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Connection, Row};

use super::db::{
    self, Head, PAGE_ROWS, Sql, SthRow, db_err, frontier_bytes, hash_from, key_from_row,
    registered_key, to_i64,
};
use crate::error::{AuditError, Violation};
use crate::keys::PublicKey;
use crate::merkle::{
    ConsistencyProof, Frontier, Hash, InclusionProof, SubtreeSource, build_consistency,
    build_inclusion, leaf_hash,
};
use crate::read::sth_violation;
use crate::read::{ConsistencyBundle, InclusionBundle};
use crate::sth::SignedTreeHead;

/// Outcome of a successful [`pg_verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PgVerifyReport {
    /// Records in the log.
    pub records: u64,
    /// Root recomputed over all records.
    pub root: Hash,
    /// Signed tree heads checked.
    pub signed_tree_heads: u64,
    /// The latest STH (it covers `records - unsigned_records` records).
    pub latest_sth: Option<SignedTreeHead>,
    /// Records after the latest STH (not yet attested; their writer signs
    /// them within its STH interval, on flush or close).
    pub unsigned_records: u64,
    /// Key ids that signed at least one STH, in order of first use.
    pub signing_keys: Vec<String>,
}

/// A row of `records`.
struct RecordRow {
    idx: i64,
    leaf_hash: Vec<u8>,
    bytes: Vec<u8>,
}

impl RecordRow {
    fn from_row(row: &PgRow) -> Result<Self, AuditError> {
        Ok(Self {
            idx: row.try_get("idx").map_err(db_err("records.idx"))?,
            leaf_hash: row
                .try_get("leaf_hash")
                .map_err(db_err("records.leaf_hash"))?,
            bytes: row.try_get("bytes").map_err(db_err("records.bytes"))?,
        })
    }
}

/// A read-only snapshot of one log.
struct Session {
    rt: tokio::runtime::Runtime,
    conn: Option<PgConnection>,
    sql: Sql,
}

impl Session {
    fn open(url: &str, schema: &str) -> Result<Self, AuditError> {
        db::validate_schema(schema)?;
        let sql = Sql::new(schema);
        let rt = db::runtime()?;
        let conn = rt.block_on(async {
            let mut conn = db::connect(url, false).await?;
            sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut conn)
                .await
                .map_err(db_err("begin a snapshot"))?;
            let present: bool = sqlx::query(sql.head_exists.clone())
                .fetch_one(&mut conn)
                .await
                .map_err(db_err("look for the log's tables"))?
                .try_get("present")
                .map_err(db_err("look for the log's tables"))?;
            if !present {
                return Err(AuditError::Database {
                    context: format!("schema {schema:?}"),
                    source: "holds no warden audit log".into(),
                });
            }
            Ok(conn)
        })?;
        Ok(Self {
            rt,
            conn: Some(conn),
            sql,
        })
    }

    fn fetch_all(
        &mut self,
        context: &str,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<PgRow>, AuditError> {
        let rt = &self.rt;
        let conn = self.conn.as_mut().ok_or(AuditError::Closed)?;
        rt.block_on(query.fetch_all(conn)).map_err(db_err(context))
    }

    fn head(&mut self) -> Result<Head, AuditError> {
        let q = sqlx::query(self.sql.head.clone());
        let rows = self.fetch_all("read the log head", q)?;
        let row = rows
            .first()
            .ok_or_else(|| db::bad_value("read the log head", "the head row is missing".into()))?;
        Head::from_row(row)
    }

    /// Every registered key, each row checked.
    fn registered_keys(&mut self) -> Result<HashMap<String, PublicKey>, AuditError> {
        let q = sqlx::query(self.sql.all_keys.clone());
        let rows = self.fetch_all("read keys", q)?;
        let mut keys = HashMap::with_capacity(rows.len());
        for row in rows {
            let key_id: String = row.try_get("key_id").map_err(db_err("keys.key_id"))?;
            let public: String = row
                .try_get("public_key")
                .map_err(db_err("keys.public_key"))?;
            let key = key_from_row(&key_id, &public)?;
            keys.insert(key_id, key);
        }
        Ok(keys)
    }

    /// The registered key `key_id`, checked.
    fn registered_key(&mut self, key_id: &str) -> Result<Option<PublicKey>, AuditError> {
        let rt = &self.rt;
        let conn = self.conn.as_mut().ok_or(AuditError::Closed)?;
        rt.block_on(registered_key(conn, &self.sql, key_id))
    }

    fn sths_from(&mut self, pos: i64) -> Result<Vec<SthRow>, AuditError> {
        let q = sqlx::query(self.sql.sths_page.clone())
            .bind(pos)
            .bind(PAGE_ROWS);
        self.fetch_all("read signed tree heads", q)?
            .iter()
            .map(SthRow::from_row)
            .collect()
    }

    fn latest_sth_row(&mut self) -> Result<Option<SthRow>, AuditError> {
        let q = sqlx::query(self.sql.latest_sth.clone());
        let rows = self.fetch_all("read the latest signed tree head", q)?;
        rows.first().map(SthRow::from_row).transpose()
    }

    /// The newest STH row of exactly `size`.
    fn sth_of_size(&mut self, size: u64) -> Result<Option<SthRow>, AuditError> {
        let q = sqlx::query(self.sql.sth_of_size.clone()).bind(to_i64(size, "sths.size")?);
        let rows = self.fetch_all("read a signed tree head", q)?;
        rows.first().map(SthRow::from_row).transpose()
    }

    fn records_from(&mut self, idx: i64) -> Result<Vec<RecordRow>, AuditError> {
        let q = sqlx::query(self.sql.records_page.clone())
            .bind(idx)
            .bind(PAGE_ROWS);
        self.fetch_all("read records", q)?
            .iter()
            .map(RecordRow::from_row)
            .collect()
    }

    fn leaves(&mut self, from: i64, to: i64) -> Result<Vec<(i64, Vec<u8>)>, AuditError> {
        let q = sqlx::query(self.sql.leaves_page.clone())
            .bind(from)
            .bind(to)
            .bind(PAGE_ROWS * 4);
        self.fetch_all("read leaf hashes", q)?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get("idx").map_err(db_err("records.idx"))?,
                    row.try_get("leaf_hash")
                        .map_err(db_err("records.leaf_hash"))?,
                ))
            })
            .collect()
    }

    fn record_at(&mut self, idx: u64) -> Result<Option<RecordRow>, AuditError> {
        let q = sqlx::query(self.sql.record_at.clone()).bind(to_i64(idx, "records.idx")?);
        let rows = self.fetch_all("read a record", q)?;
        rows.first().map(RecordRow::from_row).transpose()
    }

    /// The latest STH, parsed and signature-checked against the registered
    /// keys, with its position.
    fn checked_latest_sth(&mut self) -> Result<Option<(u64, SignedTreeHead)>, AuditError> {
        let Some(row) = self.latest_sth_row()? else {
            return Ok(None);
        };
        self.check_sth_row(&row).map(Some)
    }

    fn check_sth_row(&mut self, row: &SthRow) -> Result<(u64, SignedTreeHead), AuditError> {
        let position = u64::try_from(row.pos).map_err(|_| Violation::SthMalformed {
            sth_position: 0,
            reason: format!("row with negative position {}", row.pos),
        })?;
        let sth = row.parse(position)?;
        let key = self
            .registered_key(&sth.key_id)?
            .ok_or_else(|| Violation::SthWrongKey {
                sth_position: position,
                key_id: sth.key_id.clone(),
                expected: format!("a key registered in {}.keys", self.sql.schema),
            })?;
        sth.verify(&key).map_err(|e| sth_violation(position, e))?;
        Ok((position, sth))
    }

    fn close(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = self.rt.block_on(async {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
                conn.close().await
            });
        }
    }

    fn records_table(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(&self.sql.records_table)
    }
}

/// The keys STH signatures are checked against.
struct KeySet {
    keys: HashMap<String, PublicKey>,
    /// What an unknown key id is reported against.
    expected: String,
}

/// Verifies the whole log in `schema`: every `keys` row (a valid key whose
/// SHA-256 is its id), every STH (contiguous positions, its columns equal to
/// its canonical JSON, signed by a registered key — or, when `trusted_keys`
/// is given, by one of those only — sizes never decreasing), every record
/// (contiguous indexes from 0, stored leaf hash equal to the one recomputed
/// from the bytes), every STH root against the tree recomputed from the
/// record bytes, no STH beyond the records, and the `head` row against
/// everything (size, frontier, latest STH, STH count).
///
/// Streams records and STHs in pages from one snapshot: memory is
/// independent of the log's length.
///
/// # Errors
/// [`AuditError::Integrity`] with the first [`Violation`] found (keys, then
/// STHs, then records in order, then truncation, then the head), or
/// [`AuditError::Database`].
pub fn pg_verify(
    url: &str,
    schema: &str,
    trusted_keys: Option<&[PublicKey]>,
) -> Result<PgVerifyReport, AuditError> {
    db::off_runtime(|| {
        let mut s = Session::open(url, schema)?;
        let result = verify_session(&mut s, trusted_keys);
        s.close();
        result
    })
}

fn verify_session(
    s: &mut Session,
    trusted_keys: Option<&[PublicKey]>,
) -> Result<PgVerifyReport, AuditError> {
    let registered = s.registered_keys()?;
    let keys = match trusted_keys {
        Some(trusted) => KeySet {
            keys: trusted.iter().map(|k| (k.key_id(), *k)).collect(),
            expected: format!(
                "one of the trusted keys {}",
                trusted
                    .iter()
                    .map(PublicKey::key_id)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        None => KeySet {
            keys: registered,
            expected: format!("a key registered in {}.keys", s.sql.schema),
        },
    };

    // Pass 1: every STH, in order.
    let mut count = 0u64;
    let mut latest: Option<SignedTreeHead> = None;
    let mut signing_keys: Vec<String> = Vec::new();
    loop {
        let rows = s.sths_from(to_i64(count, "sths.pos")?)?;
        let page_len = rows.len();
        for row in rows {
            check_position(row.pos, count)?;
            let sth = row.parse(count)?;
            let key = keys
                .keys
                .get(&sth.key_id)
                .ok_or_else(|| Violation::SthWrongKey {
                    sth_position: count,
                    key_id: sth.key_id.clone(),
                    expected: keys.expected.clone(),
                })?;
            sth.verify(key).map_err(|e| sth_violation(count, e))?;
            if let Some(prev) = &latest
                && sth.size < prev.size
            {
                return Err(Violation::SthSizeDecreased {
                    sth_position: count,
                    size: sth.size,
                    previous: prev.size,
                }
                .into());
            }
            if !signing_keys.contains(&sth.key_id) {
                signing_keys.push(sth.key_id.clone());
            }
            latest = Some(sth);
            count += 1;
        }
        if page_len < usize::try_from(PAGE_ROWS).unwrap_or(usize::MAX) {
            break;
        }
    }

    // Pass 2: records, with every STH root checked at its size.
    let mut sths = SthCursor::default();
    let mut frontier = Frontier::new();
    sths.check(s, &frontier)?;
    let table = s.records_table();
    let mut from = i64::MIN;
    loop {
        let rows = s.records_from(from)?;
        let page_len = rows.len();
        for RecordRow {
            idx,
            leaf_hash: stored_leaf,
            bytes,
        } in rows
        {
            let expected = frontier.size();
            if idx < 0 {
                return Err(Violation::RecordCorrupt {
                    index: expected,
                    segment: table,
                    offset: 0,
                    reason: format!("a row has the negative idx {idx}"),
                }
                .into());
            }
            let found = idx.unsigned_abs();
            if found != expected {
                return Err(Violation::RecordOutOfSequence {
                    index: expected,
                    found,
                }
                .into());
            }
            let leaf = leaf_hash(&bytes);
            if stored_leaf != leaf.0 {
                return Err(Violation::LeafHashMismatch {
                    index: expected,
                    index_file: table,
                }
                .into());
            }
            frontier.push(leaf);
            sths.check(s, &frontier)?;
            from = idx.saturating_add(1);
        }
        if page_len < usize::try_from(PAGE_ROWS).unwrap_or(usize::MAX) {
            break;
        }
    }
    let records = frontier.size();
    if let Some((position, size, _)) = sths.peek(s)? {
        return Err(Violation::Truncated {
            records,
            sth_position: position,
            sth_size: size,
        }
        .into());
    }

    // The head writers extend must describe exactly this.
    let head = s.head()?;
    let mismatch = |reason: String| -> AuditError {
        Violation::HeadMismatch {
            records,
            head_size: head.size,
            reason,
        }
        .into()
    };
    if head.size != records {
        return Err(mismatch(
            "records were added or removed after the last signed tree head, or the head was edited"
                .into(),
        ));
    }
    if head.frontier_bytes != frontier_bytes(&frontier) {
        return Err(mismatch(
            "its Merkle frontier differs from the tree recomputed from the records".into(),
        ));
    }
    if head.sth_count != count {
        return Err(mismatch(format!(
            "it counts {} signed tree heads, the table holds {count}",
            head.sth_count
        )));
    }
    let signed = latest.as_ref().map_or(0, |l| l.size);
    if head.signed_size != signed {
        return Err(mismatch(format!(
            "it says the latest tree head has size {}, it has {signed}",
            head.signed_size
        )));
    }
    Ok(PgVerifyReport {
        records,
        root: frontier.root(),
        signed_tree_heads: count,
        unsigned_records: records - signed,
        latest_sth: latest,
        signing_keys,
    })
}

/// STH rows must have positions 0, 1, 2, ...
fn check_position(pos: i64, expected: u64) -> Result<(), Violation> {
    if u64::try_from(pos).ok() == Some(expected) {
        return Ok(());
    }
    Err(Violation::SthMalformed {
        sth_position: expected,
        reason: if pos < 0 {
            format!("a row has the negative position {pos}")
        } else {
            format!(
                "missing: the next signed tree head is at position {pos} (signed tree heads deleted)"
            )
        },
    })
}

/// Walks the STHs (already checked in pass 1) by size during pass 2.
#[derive(Default)]
struct SthCursor {
    page: std::collections::VecDeque<(u64, u64, Vec<u8>)>,
    next_pos: u64,
    exhausted: bool,
    last_matched: u64,
}

impl SthCursor {
    fn peek(&mut self, s: &mut Session) -> Result<Option<(u64, u64, Hash)>, AuditError> {
        if self.page.is_empty() && !self.exhausted {
            let rows = s.sths_from(to_i64(self.next_pos, "sths.pos")?)?;
            if rows.len() < usize::try_from(PAGE_ROWS).unwrap_or(usize::MAX) {
                self.exhausted = true;
            }
            for row in rows {
                let (pos, size) = (row.pos.unsigned_abs(), row.size.unsigned_abs());
                self.page.push_back((pos, size, row.root));
                self.next_pos = pos + 1;
            }
        }
        Ok(self
            .page
            .front()
            .map(|(pos, size, root)| (*pos, *size, hash_from(root).unwrap_or_default())))
    }

    /// Checks every STH of exactly the frontier's size.
    fn check(&mut self, s: &mut Session, frontier: &Frontier) -> Result<(), AuditError> {
        while let Some((position, size, signed)) = self.peek(s)? {
            if size != frontier.size() {
                break;
            }
            let computed = frontier.root();
            if computed != signed {
                return Err(Violation::SthRootMismatch {
                    sth_position: position,
                    size,
                    signed,
                    computed,
                    first_suspect: self.last_matched,
                }
                .into());
            }
            self.last_matched = size;
            self.page.pop_front();
        }
        Ok(())
    }
}

/// Subtree roots from the stored leaf hashes (proofs are checked against
/// the signed root before they are returned, so a wrong stored hash shows).
struct Leaves<'a> {
    s: &'a mut Session,
    sth_position: u64,
    sth_size: u64,
}

impl SubtreeSource for Leaves<'_> {
    type Error = AuditError;

    fn subtree_root(&mut self, start: u64, end: u64) -> Result<Hash, AuditError> {
        let mut frontier = Frontier::new();
        let mut next = start;
        let table = self.s.records_table();
        while next < end {
            let rows = self
                .s
                .leaves(to_i64(next, "records.idx")?, to_i64(end, "records.idx")?)?;
            if rows.is_empty() {
                return Err(Violation::Truncated {
                    records: next,
                    sth_position: self.sth_position,
                    sth_size: self.sth_size,
                }
                .into());
            }
            for (idx, leaf) in rows {
                if idx.unsigned_abs() != next {
                    return Err(Violation::RecordOutOfSequence {
                        index: next,
                        found: idx.unsigned_abs(),
                    }
                    .into());
                }
                let leaf = hash_from(&leaf).ok_or_else(|| Violation::RecordCorrupt {
                    index: next,
                    segment: table.clone(),
                    offset: 0,
                    reason: format!("stored leaf hash is {} bytes", leaf.len()),
                })?;
                frontier.push(leaf);
                next += 1;
            }
        }
        Ok(frontier.root())
    }
}

/// Proves that record `index` is in the tree signed by the log's latest STH
/// (whose signature is checked against the registered keys). The proof is
/// checked against the STH before it is returned; the bundle is the same as
/// the file store's and is checked the same way.
///
/// Reads the leaf hashes of the whole signed tree once.
///
/// # Errors
/// [`AuditError::OutOfRange`] when no STH covers `index` yet;
/// [`AuditError::Integrity`] / [`AuditError::Proof`] when the data does not
/// match the STH; [`AuditError::Database`].
pub fn pg_prove_inclusion(
    url: &str,
    schema: &str,
    index: u64,
) -> Result<InclusionBundle, AuditError> {
    db::off_runtime(|| {
        let mut s = Session::open(url, schema)?;
        let result = prove_inclusion_session(&mut s, index);
        s.close();
        result
    })
}

fn prove_inclusion_session(s: &mut Session, index: u64) -> Result<InclusionBundle, AuditError> {
    let Some((position, sth)) = s.checked_latest_sth()? else {
        return Err(AuditError::OutOfRange(
            "the log has no signed tree head yet".into(),
        ));
    };
    if index >= sth.size {
        return Err(AuditError::OutOfRange(format!(
            "record {index} is not covered by the latest signed tree head (size {})",
            sth.size
        )));
    }
    let mut path = Vec::new();
    build_inclusion(
        &mut Leaves {
            s: &mut *s,
            sth_position: position,
            sth_size: sth.size,
        },
        index,
        0,
        sth.size,
        &mut path,
    )?;
    let proof = InclusionProof {
        leaf_index: index,
        tree_size: sth.size,
        audit_path: path,
    };
    let table = s.records_table();
    let RecordRow {
        leaf_hash: stored_leaf,
        bytes,
        ..
    } = s
        .record_at(index)?
        .ok_or_else(|| Violation::RecordCorrupt {
            index,
            segment: table.clone(),
            offset: 0,
            reason: "missing".into(),
        })?;
    let leaf = leaf_hash(&bytes);
    if stored_leaf != leaf.0 {
        return Err(Violation::LeafHashMismatch {
            index,
            index_file: table,
        }
        .into());
    }
    proof.verify(&leaf, &sth.root)?;
    let record = serde_json::from_slice(&bytes).map_err(|e| Violation::RecordCorrupt {
        index,
        segment: table,
        offset: 0,
        reason: format!("not JSON: {e}"),
    })?;
    Ok(InclusionBundle {
        index,
        record,
        leaf_hash: leaf,
        proof,
        sth,
    })
}

/// Proves that the first `old_size` records are a prefix of the first
/// `new_size` (`None`: the latest STH's size), which must be covered by the
/// latest STH. The STHs of exactly those sizes are included (and checked)
/// when there are such.
///
/// # Errors
/// [`AuditError::OutOfRange`] for sizes out of order or not yet signed;
/// [`AuditError::Integrity`] when the data does not match the STHs;
/// [`AuditError::Database`].
pub fn pg_prove_consistency(
    url: &str,
    schema: &str,
    old_size: u64,
    new_size: Option<u64>,
) -> Result<ConsistencyBundle, AuditError> {
    db::off_runtime(|| {
        let mut s = Session::open(url, schema)?;
        let result = prove_consistency_session(&mut s, old_size, new_size);
        s.close();
        result
    })
}

fn prove_consistency_session(
    s: &mut Session,
    old_size: u64,
    new_size: Option<u64>,
) -> Result<ConsistencyBundle, AuditError> {
    let latest = s.checked_latest_sth()?;
    let (position, signed) = latest.as_ref().map_or((0, 0), |(p, l)| (*p, l.size));
    let new_size = new_size.unwrap_or(signed);
    if old_size > new_size || new_size > signed {
        return Err(AuditError::OutOfRange(format!(
            "need old size {old_size} <= new size {new_size} <= latest signed size {signed}"
        )));
    }
    let mut leaves = Leaves {
        s: &mut *s,
        sth_position: position,
        sth_size: signed,
    };
    let old_root = leaves.subtree_root(0, old_size)?;
    let new_root = leaves.subtree_root(0, new_size)?;
    let mut path = Vec::new();
    build_consistency(&mut leaves, old_size, 0, new_size, true, &mut path)?;
    let proof = ConsistencyProof {
        old_size,
        new_size,
        path,
    };
    proof.verify(&old_root, &new_root)?;
    let mut sth_of = |size: u64, root: Hash| -> Result<Option<SignedTreeHead>, AuditError> {
        let Some(row) = s.sth_of_size(size)? else {
            return Ok(None);
        };
        let (position, sth) = s.check_sth_row(&row)?;
        if sth.root != root {
            return Err(Violation::SthRootMismatch {
                sth_position: position,
                size,
                signed: sth.root,
                computed: root,
                first_suspect: 0,
            }
            .into());
        }
        Ok(Some(sth))
    };
    let old_sth = sth_of(old_size, old_root)?;
    let new_sth = sth_of(new_size, new_root)?;
    Ok(ConsistencyBundle {
        proof,
        old_root,
        new_root,
        old_sth,
        new_sth,
    })
}

/// Test and administration helper: runs SQL text (simple query protocol,
/// several statements allowed) on a fresh connection and returns the number
/// of rows affected. Never pass it untrusted text.
///
/// # Errors
/// [`AuditError::Database`].
#[doc(hidden)]
pub fn execute_sql(url: &str, sql: &str) -> Result<u64, AuditError> {
    db::off_runtime(|| {
        let rt = db::runtime()?;
        rt.block_on(async {
            let mut conn = db::connect(url, false).await?;
            let done = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut conn)
                .await
                .map_err(db_err("execute SQL"));
            let _ = conn.close().await;
            done.map(|r| r.rows_affected())
        })
    })
}
