//! [`PgAuditLog`]: the append side of the PostgreSQL store.
//!
//! The caller-facing half (bounded queue, condition variables, failure
//! propagation) mirrors `AuditLog` in `log.rs`, copied rather than shared
//! because that file is the file store's and indexes are assigned
//! differently here: by the database transaction that commits a batch, not
//! at queue time, since several writers extend the same log.

use std::path::Path;
use std::sync::{Arc, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use super::db::{
    self, Head, INSERT_CHUNK_BYTES, Sql, SthRow, db_err, frontier_bytes, registered_key, to_i64,
};
use crate::canonical::Canonicalizer;
use crate::error::{AuditError, Violation};
use crate::handoff::{QueueState, Shared, enqueue, refusal, wait};
use crate::keys::{LogKey, PublicKey};
use crate::log::{AuditConfig, Durability};
use crate::merkle::{Hash, leaf_hash};
use crate::read::sth_violation;
use crate::sth::{SignedTreeHead, now_ms};
use crate::store::MAX_RECORD_LEN;

/// Where the records of one batch ended up, set once its transaction is
/// over.
#[derive(Debug, Default)]
struct BatchSlot {
    outcome: OnceLock<BatchOutcome>,
}

#[derive(Clone, Copy, Debug)]
struct BatchOutcome {
    /// Index of the batch's first record.
    start: u64,
    /// How many of the batch's records were committed (all, unless the
    /// writer failed).
    written: usize,
}

/// A queued record's batch slot and its position in the batch.
type SlotRef = (Arc<BatchSlot>, usize);

impl<R> QueueState<R> for State<R> {
    fn queue(&mut self) -> &mut Vec<R> {
        &mut self.queue
    }
    fn refusal(&self) -> Option<AuditError> {
        refusal(&self.failed, self.closing)
    }
    fn full_waiters(&mut self) -> &mut usize {
        &mut self.full_waiters
    }
    fn take_idle(&mut self) -> bool {
        std::mem::take(&mut self.writer_idle)
    }
}

struct State<R> {
    queue: Vec<R>,
    /// The slot of the records now in `queue`.
    slot: Arc<BatchSlot>,
    /// Flush requests made / served (generations).
    flush_requested: u64,
    flush_done: u64,
    latest_sth: Option<SignedTreeHead>,
    /// Records this handle committed.
    committed: u64,
    closing: bool,
    writer_idle: bool,
    full_waiters: usize,
    progress_waiters: usize,
    failed: Option<Arc<AuditError>>,
}

/// The append side of an audit log stored in PostgreSQL, shared by any
/// number of writers (threads, processes, hosts), each with its own Ed25519
/// key.
///
/// Same contract as [`AuditLog`](crate::AuditLog): records go over a bounded
/// queue (a full queue blocks, nothing is dropped) to one writer thread per
/// handle, which commits everything queued as **one transaction** (group
/// commit) holding the log's advisory lock, assigns the indexes, extends the
/// Merkle tree and signs tree heads. The API is synchronous; the writer
/// thread drives sqlx on a private single-threaded tokio runtime.
///
/// Indexes are assigned when a batch commits, because other writers append
/// to the same log: [`append`](Self::append) therefore waits for its batch's
/// transaction in both durability modes, while [`submit`](Self::submit)
/// returns as soon as the record is queued in [`Durability::Batched`] mode.
///
/// ```no_run
/// use warden_audit::{AuditConfig, Durability, pg::PgAuditLog};
///
/// #[derive(serde::Serialize)]
/// struct Event { kind: &'static str }
///
/// let log = PgAuditLog::open(
///     "postgres://root@127.0.0.1:5432/test",
///     "audit",
///     std::path::Path::new("/var/lib/warden"),
///     AuditConfig { durability: Durability::Sync, ..AuditConfig::default() },
/// )?;
/// let index = log.append(Event { kind: "decision" })?;
/// let sth = log.flush()?.expect("signed");
/// assert!(sth.size > index);
/// log.close()?;
/// # Ok::<(), warden_audit::AuditError>(())
/// ```
pub struct PgAuditLog<R: Serialize + Send + 'static> {
    shared: Arc<Shared<State<R>>>,
    thread: Option<JoinHandle<()>>,
    durability: Durability,
    capacity: usize,
    public_key: PublicKey,
    schema: String,
}

impl<R: Serialize + Send + 'static> std::fmt::Debug for PgAuditLog<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAuditLog")
            .field("schema", &self.schema)
            .field("durability", &self.durability)
            .field("key_id", &self.public_key.key_id())
            .finish_non_exhaustive()
    }
}

impl<R: Serialize + Send + 'static> PgAuditLog<R> {
    /// Connects to `url` and opens the log in `schema`, creating the schema
    /// and its tables on first use, with the signing key
    /// `<key_dir>/audit.key` (created, mode 0600, on first use, exactly as
    /// the file store does) registered in the log's `keys` table.
    ///
    /// Checks on open (cheap, independent of the log's length): the latest
    /// STH is signed by a registered key, the records table ends where the
    /// head says, and the head's root matches the latest STH when it covers
    /// every record. Records left unsigned (a writer that crashed) are
    /// signed at once. [`AuditConfig::segment_bits`] does not apply.
    ///
    /// # Errors
    /// [`AuditError::Database`] for connection or SQL failures and an
    /// unusable schema name, key-file errors as for the file store, and
    /// [`AuditError::Integrity`] when the checks above fail (a writer does
    /// not extend a tampered log; run [`pg_verify`](super::pg_verify)).
    pub fn open(
        url: &str,
        schema: &str,
        key_dir: &Path,
        config: AuditConfig,
    ) -> Result<Self, AuditError> {
        db::validate_schema(schema)?;
        let key = LogKey::load_or_create(key_dir)?;
        let sql = Sql::new(schema);
        let (rt, conn, head, latest) = db::off_runtime(|| {
            let rt = db::runtime()?;
            let (conn, head, latest) = rt.block_on(async {
                let mut conn = db::connect(url, true).await?;
                let (head, latest) = open_log(&mut conn, &sql, &key).await?;
                Ok::<_, AuditError>((conn, head, latest))
            })?;
            Ok::<_, AuditError>((rt, conn, head, latest))
        })?;

        let shared = Arc::new(Shared::new(State {
            queue: Vec::with_capacity(config.queue_capacity.clamp(1, 1 << 16)),
            slot: Arc::new(BatchSlot::default()),
            flush_requested: 0,
            flush_done: 0,
            latest_sth: latest.clone(),
            committed: 0,
            closing: false,
            writer_idle: false,
            full_waiters: 0,
            progress_waiters: 0,
            failed: None,
        }));
        let public_key = key.public();
        let writer = Writer {
            rt,
            conn: Some(conn),
            sql,
            key,
            durability: config.durability,
            sth_every_records: config.sth_every_records,
            sth_interval: config.sth_interval,
            my_end: 0,
            unsigned_since: None,
            canon: Canonicalizer::new(),
            known_signed: head.signed_size,
        };
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("warden-audit-pg-writer".into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| writer.run(&thread_shared));
                if std::panic::catch_unwind(run).is_err() {
                    let mut st = thread_shared.lock();
                    st.failed.get_or_insert_with(|| {
                        Arc::new(AuditError::Database {
                            context: "audit writer thread".into(),
                            source: "panicked".into(),
                        })
                    });
                    thread_shared.space.notify_all();
                    thread_shared.progress.notify_all();
                }
            })
            .map_err(|e| AuditError::Database {
                context: "spawn the writer thread".into(),
                source: Box::new(e),
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
            durability: config.durability,
            capacity: config.queue_capacity.max(1),
            public_key,
            schema: schema.to_owned(),
        })
    }

    /// Queues a record, blocking while the queue is full. Returns the
    /// record's slot when the caller must wait for its batch.
    fn enqueue(
        &self,
        record: R,
        want_slot: bool,
    ) -> Result<(MutexGuard<'_, State<R>>, Option<SlotRef>), AuditError> {
        let (st, position) = enqueue(&self.shared, self.capacity, record)?;
        let slot = want_slot.then(|| (Arc::clone(&st.slot), position));
        Ok((st, slot))
    }

    /// Waits until the batch holding the record at `position` of `slot` is
    /// over; returns the record's index.
    fn wait_batch(
        &self,
        mut st: MutexGuard<'_, State<R>>,
        slot: &BatchSlot,
        position: usize,
    ) -> Result<u64, AuditError> {
        let shared = &*self.shared;
        loop {
            if let Some(outcome) = slot.outcome.get() {
                if position < outcome.written {
                    return Ok(outcome.start + position as u64);
                }
                return Err(match &st.failed {
                    Some(e) => AuditError::WriterFailed(Arc::clone(e)),
                    None => AuditError::Closed,
                });
            }
            if let Some(e) = &st.failed {
                return Err(AuditError::WriterFailed(Arc::clone(e)));
            }
            st.progress_waiters += 1;
            st = wait(&shared.progress, st);
            st.progress_waiters -= 1;
        }
    }

    /// Appends a record and returns its index (its leaf position in the
    /// shared log).
    ///
    /// Blocks while the queue is full, then until the transaction of the
    /// batch holding the record has committed — with
    /// [`Durability::Sync`], a commit the server has flushed to its WAL;
    /// with [`Durability::Batched`], an asynchronous commit
    /// (`synchronous_commit = off`). Concurrent appenders share each
    /// transaction. Use [`submit`](Self::submit) to hand records over
    /// without waiting for their index.
    ///
    /// # Errors
    /// [`AuditError::WriterFailed`] once the writer has failed (this record
    /// is then not logged), [`AuditError::Closed`] after close.
    pub fn append(&self, record: R) -> Result<u64, AuditError> {
        let (st, slot) = self.enqueue(record, true)?;
        match slot {
            Some((slot, position)) => self.wait_batch(st, &slot, position),
            None => Err(AuditError::Closed),
        }
    }

    /// Hands a record over without learning its index.
    ///
    /// With [`Durability::Batched`] it returns once the record is queued
    /// (blocking only while the queue is full), exactly like the file
    /// store's batched `append`; with [`Durability::Sync`] it returns once
    /// the record's transaction has committed durably, like
    /// [`append`](Self::append).
    ///
    /// # Errors
    /// As [`append`](Self::append). A batched record whose transaction later
    /// fails is reported by every later call.
    pub fn submit(&self, record: R) -> Result<(), AuditError> {
        let sync = self.durability == Durability::Sync;
        let (st, slot) = self.enqueue(record, sync)?;
        match slot {
            Some((slot, position)) => self.wait_batch(st, &slot, position).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Waits until every record this handle took before the call is
    /// committed and covered by a signed tree head, and returns the latest
    /// tree head (signed by this writer or another one; `None` when the log
    /// has none yet, i.e. nobody ever appended).
    ///
    /// # Errors
    /// [`AuditError::WriterFailed`] if the writer failed,
    /// [`AuditError::Closed`].
    pub fn flush(&self) -> Result<Option<SignedTreeHead>, AuditError> {
        let shared = &*self.shared;
        let mut st = shared.lock();
        if st.closing {
            return Err(AuditError::Closed);
        }
        st.flush_requested += 1;
        let generation = st.flush_requested;
        loop {
            if let Some(e) = &st.failed {
                return Err(AuditError::WriterFailed(Arc::clone(e)));
            }
            if st.flush_done >= generation {
                return Ok(st.latest_sth.clone());
            }
            if st.writer_idle {
                st.writer_idle = false;
                shared.work.notify_one();
            }
            st.progress_waiters += 1;
            st = wait(&shared.progress, st);
            st.progress_waiters -= 1;
        }
    }

    /// Commits what is queued, signs a final tree head covering this
    /// handle's records, stops the writer thread and closes its connection.
    ///
    /// # Errors
    /// The writer's failure, if it failed at any point.
    pub fn close(mut self) -> Result<(), AuditError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), AuditError> {
        {
            let mut st = self.shared.lock();
            st.closing = true;
            st.writer_idle = false;
            self.shared.work.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let st = self.shared.lock();
        match &st.failed {
            Some(e) => Err(AuditError::WriterFailed(Arc::clone(e))),
            None => Ok(()),
        }
    }

    /// The public key that verifies the tree heads this writer signs.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The schema holding the log.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The durability mode.
    #[must_use]
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Records this handle has committed so far.
    #[must_use]
    pub fn committed(&self) -> u64 {
        self.shared.lock().committed
    }

    /// The latest signed tree head this writer has seen (its own or one it
    /// read from the log).
    #[must_use]
    pub fn latest_sth(&self) -> Option<SignedTreeHead> {
        self.shared.lock().latest_sth.clone()
    }
}

impl<R: Serialize + Send + 'static> Drop for PgAuditLog<R> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.shutdown();
        }
    }
}

/// Creates the tables if needed, registers `key`, checks the head and signs
/// records left unsigned. Returns the head and the latest STH.
async fn open_log(
    conn: &mut PgConnection,
    sql: &Sql,
    key: &LogKey,
) -> Result<(Head, Option<SignedTreeHead>), AuditError> {
    let mut tx = conn.begin().await.map_err(db_err("begin"))?;
    sqlx::query(sql.lock.clone())
        .bind(sql.lock_key)
        .execute(&mut *tx)
        .await
        .map_err(db_err("take the log's advisory lock"))?;
    let present: bool = sqlx::query(sql.head_exists.clone())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err("look for the log's tables"))?
        .try_get("present")
        .map_err(db_err("look for the log's tables"))?;
    if !present {
        sqlx::raw_sql(sql.ddl.clone())
            .execute(&mut *tx)
            .await
            .map_err(db_err("create the log's tables"))?;
    }
    let public = key.public();
    sqlx::query(sql.register_key.clone())
        .bind(key.key_id())
        .bind(public.to_hex())
        .execute(&mut *tx)
        .await
        .map_err(db_err("register the signing key"))?;
    if registered_key(&mut tx, sql, key.key_id()).await? != Some(public) {
        return Err(Violation::KeyInvalid {
            key_id: key.key_id().to_owned(),
            reason: "the registered public key is not this writer's".into(),
        }
        .into());
    }

    let row = sqlx::query(sql.head_for_update.clone())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err("read the log head"))?;
    let mut head = Head::from_row(&row)?;
    let frontier = head.frontier()?;

    // The records table must end where the head says.
    let max: Option<i64> = sqlx::query(sql.max_idx.clone())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err("read the last record index"))?
        .try_get("m")
        .map_err(db_err("read the last record index"))?;
    let present_end = max.map_or(0, |m| u64::try_from(m).map_or(0, |m| m + 1));
    if present_end != head.size {
        return Err(Violation::HeadMismatch {
            records: present_end,
            head_size: head.size,
            reason: "the records table does not end where the head says".into(),
        }
        .into());
    }

    let mut latest = None;
    if head.sth_count > 0 {
        let position = head.sth_count - 1;
        let row = sqlx::query(sql.sth_at.clone())
            .bind(to_i64(position, "sths.pos")?)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("read the latest signed tree head"))?
            .ok_or(Violation::SthMalformed {
                sth_position: position,
                reason: "missing (the head counts it)".into(),
            })?;
        let sth = SthRow::from_row(&row)?.parse(position)?;
        let signer = registered_key(&mut tx, sql, &sth.key_id)
            .await?
            .ok_or_else(|| Violation::SthWrongKey {
                sth_position: position,
                key_id: sth.key_id.clone(),
                expected: format!("a key registered in {}.keys", sql.schema),
            })?;
        sth.verify(&signer)
            .map_err(|e| sth_violation(position, e))?;
        if sth.size != head.signed_size {
            return Err(Violation::HeadMismatch {
                records: head.size,
                head_size: head.size,
                reason: format!(
                    "head says the latest tree head has size {}, it has {}",
                    head.signed_size, sth.size
                ),
            }
            .into());
        }
        if sth.size == head.size && sth.root != frontier.root() {
            return Err(Violation::SthRootMismatch {
                sth_position: position,
                size: sth.size,
                signed: sth.root,
                computed: frontier.root(),
                first_suspect: 0,
            }
            .into());
        }
        latest = Some(sth);
    }
    if head.size > head.signed_size {
        let sth = insert_sth(&mut tx, sql, key, &head, frontier.root()).await?;
        head.signed_size = head.size;
        head.sth_count += 1;
        latest = Some(sth);
        write_head(&mut tx, sql, &head, &frontier_bytes(&frontier)).await?;
    }
    tx.commit().await.map_err(db_err("commit"))?;
    Ok((head, latest))
}

/// Signs the tree of `head.size` leaves with root `root` and inserts the STH
/// at position `head.sth_count` (the caller updates the head).
async fn insert_sth(
    conn: &mut PgConnection,
    sql: &Sql,
    key: &LogKey,
    head: &Head,
    root: Hash,
) -> Result<SignedTreeHead, AuditError> {
    let sth = SignedTreeHead::sign(key, head.size, root, now_ms());
    let (signature, json) = sth_row(&sth)?;
    sqlx::query(sql.insert_sth.clone())
        .bind(to_i64(head.sth_count, "sths.pos")?)
        .bind(to_i64(sth.size, "sths.size")?)
        .bind(&sth.root.0[..])
        .bind(to_i64(sth.timestamp, "sths.timestamp_ms")?)
        .bind(&sth.key_id)
        .bind(signature)
        .bind(json)
        .execute(&mut *conn)
        .await
        .map_err(db_err("insert a signed tree head"))?;
    Ok(sth)
}

async fn write_head(
    conn: &mut PgConnection,
    sql: &Sql,
    head: &Head,
    frontier: &[u8],
) -> Result<(), AuditError> {
    sqlx::query(sql.update_head.clone())
        .bind(to_i64(head.size, "head.size")?)
        .bind(frontier)
        .bind(to_i64(head.signed_size, "head.signed_size")?)
        .bind(to_i64(head.sth_count, "head.sth_count")?)
        .execute(&mut *conn)
        .await
        .map_err(db_err("update the log head"))?;
    Ok(())
}

/// One record, serialised.
struct Entry {
    leaf: Hash,
    bytes: Vec<u8>,
}

/// What a batch transaction did.
struct Committed {
    start: u64,
    written: usize,
    /// Size of the latest STH in the log after the transaction.
    signed_size: u64,
    /// The latest STH, when this transaction signed one or a flush asked.
    latest: Option<SignedTreeHead>,
}

/// State owned by the writer thread.
struct Writer {
    rt: tokio::runtime::Runtime,
    conn: Option<PgConnection>,
    sql: Sql,
    key: LogKey,
    durability: Durability,
    sth_every_records: u64,
    sth_interval: Duration,
    /// One past the highest index this writer committed.
    my_end: u64,
    /// Since when some of this writer's records are not covered by an STH.
    unsigned_since: Option<Instant>,
    canon: Canonicalizer,
    /// The log's signed size as of this writer's last transaction.
    known_signed: u64,
}

impl Writer {
    fn run<R: Serialize>(mut self, shared: &Shared<State<R>>) {
        let mut batch: Vec<R> = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        loop {
            let (slot, flush_generation, flush_pending, closing) = {
                let mut st = shared.lock();
                loop {
                    if !st.queue.is_empty() || st.closing || st.flush_requested > st.flush_done {
                        break;
                    }
                    match self.unsigned_since {
                        Some(since) if self.sth_interval > Duration::ZERO => {
                            let elapsed = since.elapsed();
                            if elapsed >= self.sth_interval {
                                break;
                            }
                            st.writer_idle = true;
                            st = shared
                                .work
                                .wait_timeout(st, self.sth_interval - elapsed)
                                .map(|(g, _)| g)
                                .unwrap_or_else(|e| e.into_inner().0);
                        }
                        _ => {
                            st.writer_idle = true;
                            st = wait(&shared.work, st);
                        }
                    }
                }
                st.writer_idle = false;
                std::mem::swap(&mut st.queue, &mut batch);
                let slot = std::mem::take(&mut st.slot);
                if st.full_waiters > 0 {
                    shared.space.notify_all();
                }
                (
                    slot,
                    st.flush_requested,
                    st.flush_requested > st.flush_done,
                    st.closing,
                )
            };

            // Serialise outside the transaction; stop at the first record
            // that cannot be logged (the ones before it are still written).
            entries.clear();
            let mut bad_record: Option<(usize, String)> = None;
            for (i, record) in batch.drain(..).enumerate() {
                let mut bytes = Vec::new();
                if let Err(reason) = self.canon.write(&record, &mut bytes) {
                    bad_record = Some((i, reason));
                    break;
                }
                if bytes.len() > MAX_RECORD_LEN {
                    bad_record = Some((
                        i,
                        format!(
                            "canonical form is {} bytes, more than the {MAX_RECORD_LEN} allowed",
                            bytes.len()
                        ),
                    ));
                    break;
                }
                entries.push(Entry {
                    leaf: leaf_hash(&bytes),
                    bytes,
                });
            }
            batch.clear();

            let force = closing || flush_pending || bad_record.is_some();
            let time_due = self.sth_interval > Duration::ZERO
                && self
                    .unsigned_since
                    .is_some_and(|t| t.elapsed() >= self.sth_interval);
            let result = self.commit(&entries, force, time_due);

            let mut st = shared.lock();
            let mut stop = closing;
            match result {
                Ok(done) => {
                    let _ = slot.outcome.set(BatchOutcome {
                        start: done.start,
                        written: done.written,
                    });
                    st.committed += done.written as u64;
                    if let Some(sth) = done.latest {
                        st.latest_sth = Some(sth);
                    }
                    if force {
                        st.flush_done = st.flush_done.max(flush_generation);
                    }
                    if let Some((i, reason)) = bad_record {
                        st.failed = Some(Arc::new(AuditError::Record {
                            index: done.start + i as u64,
                            reason,
                        }));
                    }
                }
                Err(e) => {
                    let _ = slot.outcome.set(BatchOutcome {
                        start: 0,
                        written: 0,
                    });
                    st.failed = Some(Arc::new(e));
                }
            }
            if st.failed.is_some() {
                shared.space.notify_all();
                stop = true;
            }
            if st.progress_waiters > 0 || stop {
                shared.progress.notify_all();
            }
            if stop {
                drop(st);
                if let Some(conn) = self.conn.take() {
                    let _ = self.rt.block_on(conn.close());
                }
                return;
            }
        }
    }

    /// Runs one batch transaction.
    fn commit(
        &mut self,
        entries: &[Entry],
        force: bool,
        time_due: bool,
    ) -> Result<Committed, AuditError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(AuditError::Closed);
        };
        let result = self.rt.block_on(commit_batch(
            conn,
            &self.sql,
            &self.key,
            self.durability,
            entries,
            Signing {
                force,
                time_due,
                every: self.sth_every_records,
                my_end: self.my_end,
            },
        ))?;
        if result.written > 0 {
            self.my_end = result.start + result.written as u64;
        }
        self.known_signed = result.signed_size;
        if self.known_signed >= self.my_end {
            self.unsigned_since = None;
        } else if self.unsigned_since.is_none() {
            self.unsigned_since = Some(Instant::now());
        }
        Ok(result)
    }
}

/// When a batch transaction signs a tree head.
#[derive(Clone, Copy)]
struct Signing {
    /// A flush or close wants this writer's records covered.
    force: bool,
    /// This writer's records have been unsigned for the STH interval.
    time_due: bool,
    /// Sign once this many records are unsigned in the log (0: never).
    every: u64,
    /// One past this writer's highest index before this batch.
    my_end: u64,
}

/// One batch transaction in three round trips: (1) `BEGIN`, the advisory
/// lock and the head (with the latest STH) in one simple-protocol message;
/// (2) the records, the new head and the STH if one is due in one
/// statement; (3) `COMMIT`. Everything the STH needs (the new root) is
/// known after (1), so nothing else has to wait for the server.
async fn commit_batch(
    conn: &mut PgConnection,
    sql: &Sql,
    key: &LogKey,
    durability: Durability,
    entries: &[Entry],
    signing: Signing,
) -> Result<Committed, AuditError> {
    // Batched mode commits asynchronously, except for flush and close: they
    // are durability points (and a synchronous commit also makes every
    // asynchronous one before it durable).
    let async_commit = durability == Durability::Batched && !signing.force;
    let begin = if async_commit {
        sql.begin_async_commit.clone()
    } else {
        sql.begin.clone()
    };
    let rows = sqlx::raw_sql(begin)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err("begin, lock the log and read its head"))?;
    let row = rows
        .iter()
        .find(|r| r.try_column("sth_count").is_ok())
        .ok_or_else(|| db::bad_value("read the log head", "no head row".into()))?;
    let mut head = Head::from_row(row)?;
    let latest_json: Option<String> = row
        .try_get("latest_sth_json")
        .map_err(db_err("read the latest signed tree head"))?;
    let mut frontier = head.frontier()?;
    let start = head.size;

    // All chunks but the last are plain inserts; the last one goes with the
    // head update (and the STH).
    let mut chunks: Vec<&[Entry]> = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let mut bytes_in_chunk = 0;
        let mut end = i;
        while end < entries.len() && (end == i || bytes_in_chunk < INSERT_CHUNK_BYTES) {
            bytes_in_chunk += entries[end].bytes.len();
            end += 1;
        }
        chunks.push(&entries[i..end]);
        i = end;
    }
    let last = chunks.pop().unwrap_or(&[]);
    let mut first = start;
    for chunk in chunks {
        let (leaves, bytes) = columns(chunk);
        sqlx::query(sql.insert_records.clone())
            .bind(to_i64(first, "records.idx")?)
            .bind(leaves)
            .bind(bytes)
            .execute(&mut *conn)
            .await
            .map_err(db_err("insert records"))?;
        first += chunk.len() as u64;
    }

    for e in entries {
        frontier.push(e.leaf);
    }
    head.size = frontier.size();
    let my_end = if entries.is_empty() {
        signing.my_end
    } else {
        head.size
    };
    let count_due = signing.every > 0 && head.size - head.signed_size >= signing.every;
    let mine_unsigned = head.signed_size < my_end;
    let sign = head.size > head.signed_size
        && (count_due || ((signing.force || signing.time_due) && mine_unsigned));

    let mut latest = None;
    let sth_position = head.sth_count;
    if sign {
        head.signed_size = head.size;
        head.sth_count += 1;
    }
    if sign || !entries.is_empty() {
        let (leaves, bytes) = columns(last);
        let query = if sign {
            sql.append_and_sign.clone()
        } else {
            sql.append.clone()
        };
        let mut query = sqlx::query(query)
            .bind(to_i64(first, "records.idx")?)
            .bind(leaves)
            .bind(bytes)
            .bind(to_i64(head.size, "head.size")?)
            .bind(frontier_bytes(&frontier))
            .bind(to_i64(head.signed_size, "head.signed_size")?)
            .bind(to_i64(head.sth_count, "head.sth_count")?);
        if sign {
            let sth = SignedTreeHead::sign(key, head.size, frontier.root(), now_ms());
            let row = sth_row(&sth)?;
            query = query
                .bind(to_i64(sth_position, "sths.pos")?)
                .bind(to_i64(sth.size, "sths.size")?)
                .bind(sth.root.0.to_vec())
                .bind(to_i64(sth.timestamp, "sths.timestamp_ms")?)
                .bind(sth.key_id.clone())
                .bind(row.0)
                .bind(row.1);
            latest = Some(sth);
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(db_err("insert records and update the log head"))?;
    }
    if !sign
        && signing.force
        && let Some(json) = latest_json
    {
        latest = Some(serde_json::from_str::<SignedTreeHead>(&json).map_err(|e| {
            Violation::SthMalformed {
                sth_position: sth_position.saturating_sub(1),
                reason: e.to_string(),
            }
        })?);
    }
    // A signed tree head is never lost in a database crash once its
    // transaction has returned: anyone may have seen it.
    let commit = if async_commit && sign {
        sql.commit_sync.clone()
    } else {
        sql.commit.clone()
    };
    sqlx::raw_sql(commit)
        .execute(&mut *conn)
        .await
        .map_err(db_err("commit"))?;
    Ok(Committed {
        start,
        written: entries.len(),
        signed_size: head.signed_size,
        latest,
    })
}

/// The `leaf_hash` and `bytes` columns of a chunk of records.
fn columns(chunk: &[Entry]) -> (Vec<&[u8]>, Vec<&[u8]>) {
    chunk
        .iter()
        .map(|e| (&e.leaf.0[..], e.bytes.as_slice()))
        .unzip()
}

/// The signature bytes and canonical JSON of an STH, for its row.
fn sth_row(sth: &SignedTreeHead) -> Result<(Vec<u8>, String), AuditError> {
    let json = String::from_utf8(sth.to_canonical_json())
        .map_err(|e| db::bad_value("sign a tree head", e.to_string()))?;
    let signature = hex::decode(&sth.signature)
        .map_err(|e| db::bad_value("sign a tree head", e.to_string()))?;
    Ok((signature, json))
}
