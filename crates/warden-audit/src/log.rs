//! The writer: [`AuditLog`] hands records to a background thread over a
//! bounded queue; the thread canonicalises, hashes, frames and appends them,
//! fsyncs in groups and signs tree heads.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::canonical::Canonicalizer;
use crate::error::{AuditError, Violation};
use crate::handoff::{QueueState, Shared, enqueue, refusal, wait, wait_timeout};
use crate::keys::{LogKey, PublicKey};
use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::sth::{SignedTreeHead, now_ms};
use crate::store::{
    self, AUDIT_DIR, FRAME_HEADER_LEN, LOCK_FILE, MAX_RECORD_LEN, STH_FILE, Snapshot,
    create_segment, open_append, seal_frame, segment_path, write_index,
};

/// When `append` returns relative to the record reaching the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `append` returns once the record is queued. The writer writes it to
    /// its segment file within about a millisecond and fsyncs written
    /// records at least every [`AuditConfig::fsync_interval`]. A crash of
    /// the process loses at most the records not yet written, a crash of the
    /// machine those not yet fsynced (use [`AuditLog::flush`] for a
    /// durability point).
    #[default]
    Batched,
    /// `append` returns only after the batch holding the record is fsynced.
    /// Concurrent appenders share one fsync (group commit).
    Sync,
}

/// Writer settings. `Default` gives batched durability with an fsync at
/// least every 10 ms, a 65 536-record queue, an STH every 10 000 records or
/// 1 s, and 65 536-record segments.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Durability mode.
    pub durability: Durability,
    /// Capacity of the queue between callers and the writer thread; a full
    /// queue blocks callers (back-pressure, records are never dropped).
    pub queue_capacity: usize,
    /// Sign a tree head once this many records were written since the last
    /// one (0: only on the timer, flush and close).
    pub sth_every_records: u64,
    /// Sign a tree head when records are unsigned for this long
    /// (`Duration::ZERO`: only on the count, flush and close).
    pub sth_interval: Duration,
    /// Records per segment file as a power of two (1..=30). Fixed when the
    /// log is created; an existing log keeps its own value.
    pub segment_bits: u32,
    /// [`Durability::Batched`] only: the longest a written record waits for
    /// its fsync (`Duration::ZERO`: an fsync after every batch). Each fsync
    /// costs the writer CPU and the machine I/O completion interrupts, which
    /// land on whatever thread is running, deciding threads included; a
    /// tree head is always signed over fsynced records only. `Sync` mode
    /// fsyncs every batch whatever this says; the PostgreSQL log commits
    /// every batch.
    pub fsync_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Batched,
            queue_capacity: 65_536,
            sth_every_records: 10_000,
            sth_interval: Duration::from_secs(1),
            segment_bits: 16,
            fsync_interval: DEFAULT_FSYNC_INTERVAL,
        }
    }
}

impl<R> QueueState<Entry<R>> for State<R> {
    fn queue(&mut self) -> &mut Vec<Entry<R>> {
        &mut self.queue
    }
    fn refusal(&self) -> Option<AuditError> {
        refusal(&self.failed, self.closing)
    }
    fn full_waiters(&mut self) -> &mut usize {
        &mut self.full_waiters
    }
    fn take_idle(&mut self) -> bool {
        if self.lingering && self.queue.len() >= self.linger_wake {
            // A lingering writer is woken early only for a large backlog.
            self.lingering = false;
            return true;
        }
        std::mem::take(&mut self.writer_idle)
    }
}

/// [`AuditConfig::fsync_interval`] by default: bounds what a machine crash
/// can take from a batched log to 10 ms of records, at a tenth of the fsyncs
/// (and their interrupts) of syncing every 1 ms batch.
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_millis(10);

/// How long a batched-mode writer waits for more records after a batch
/// before going idle. While it lingers, appenders do not wake it (no system
/// call on the caller's path): it picks up whatever arrived when the time is
/// up, or earlier once the queue holds a quarter of its capacity. Bounds the
/// extra delay before a batched record reaches the disk.
const BATCH_LINGER: Duration = Duration::from_millis(1);

/// A batch at least this long, found waiting as soon as the previous one was
/// written, means the writer is behind: until it catches up (lingers or
/// idles), batched appenders encode their own records (see
/// [`Entry::Encoded`]).
const HELP_MIN_BATCH: usize = 512;

/// Spent records (and encoded-record buffers) a bin keeps for appenders
/// beyond one batch; the writer frees the rest.
const MAX_RECYCLED: usize = 2048;

/// Encoded-record buffers larger than this are freed after use rather than
/// recycled, so one huge record does not pin its memory on a thread.
const MAX_RECYCLED_BUF: usize = 64 * 1024;

/// A queued record.
enum Entry<R> {
    /// As appended: the writer canonicalises and hashes it.
    Raw(R),
    /// Canonicalised and leaf-hashed by its appender, so the writer only
    /// frames and writes it. Appenders do this in `Sync` mode (they wait for
    /// the disk anyway) and in `Batched` mode while the writer is behind:
    /// the serial part of the log shrinks to framing, the Merkle frontier and
    /// the `write`, so throughput is no longer bounded by one writer core,
    /// while callers of a writer that keeps up still pay only a queue push.
    Encoded {
        /// The record's RFC 8785 canonical JSON.
        bytes: Vec<u8>,
        /// Its RFC 6962 leaf hash.
        leaf: Hash,
    },
}

thread_local! {
    /// An appender's canonicaliser and the buffer its next encoded record
    /// goes into (handed back by the writer, see `State::spent_bufs`).
    static ENCODER: std::cell::RefCell<(Canonicalizer, Vec<u8>)> =
        std::cell::RefCell::new((Canonicalizer::new(), Vec::new()));
}

/// Encodes `record` on the calling thread; `None` when it cannot be (an
/// error or an oversize record: the writer then meets and reports it exactly
/// as for a record it encodes itself).
fn encode_here<R: Serialize>(record: &R) -> Option<Entry<R>> {
    ENCODER
        .try_with(|cell| {
            let mut enc = cell.try_borrow_mut().ok()?;
            let (canon, next) = &mut *enc;
            let mut bytes = std::mem::take(next);
            bytes.clear();
            if canon.write(record, &mut bytes).is_err() || bytes.len() > MAX_RECORD_LEN {
                bytes.clear();
                *next = bytes;
                return None;
            }
            let leaf = leaf_hash(&bytes);
            Some(Entry::Encoded { bytes, leaf })
        })
        .ok()
        .flatten()
}

/// Gives this thread's encoder a spent buffer for its next record.
fn keep_buffer(buf: Vec<u8>) {
    let _ = ENCODER.try_with(|cell| {
        if let Ok(mut enc) = cell.try_borrow_mut()
            && enc.1.capacity() == 0
        {
            enc.1 = buf;
        }
    });
}

struct State<R> {
    queue: Vec<Entry<R>>,
    /// Records already written, handed to appenders for reuse (see
    /// [`AuditLog::append_recycling`]).
    recycled: Vec<R>,
    /// Buffers of written [`Entry::Encoded`] records, for appenders' next ones.
    spent_bufs: Vec<Vec<u8>>,
    /// Some appender reuses records: keep written ones in `recycled`.
    recycling: bool,
    /// Index the next appended record gets.
    next_index: u64,
    /// Records `< durable` are fsynced.
    durable: u64,
    /// Size of the latest STH.
    signed: u64,
    latest_sth: Option<SignedTreeHead>,
    /// A flush wants an STH covering this size.
    sign_request: u64,
    closing: bool,
    writer_idle: bool,
    /// The batched writer is lingering (see [`BATCH_LINGER`]).
    lingering: bool,
    /// Queue length at which appenders wake a lingering writer.
    linger_wake: usize,
    full_waiters: usize,
    /// Flushers waiting on `progress`.
    durable_waiters: usize,
    /// `Sync` appenders waiting for their record, in index order: the writer
    /// unparks exactly those its fsync covered (a shared condition variable
    /// would wake every waiter, most of them to sleep again, and all of
    /// them would then queue on the mutex).
    sync_waiters: VecDeque<(u64, Thread)>,
    failed: Option<Arc<AuditError>>,
}

/// `Sync` appenders whose records are durable but who are not yet woken.
/// The writer unparks the first [`RELAY_FAN_OUT`] of a batch's appenders
/// itself and leaves the rest here; every woken appender unparks the next
/// ones before returning. Waking 64 threads one by one took the writer
/// ~200 µs per batch, all of it before its next fsync could start; relayed,
/// the wake-ups fan out over the appenders' own threads.
#[derive(Default)]
struct Relay(std::sync::Mutex<VecDeque<Thread>>);

/// How many relayed appenders each woken one (and the writer) unparks.
const RELAY_FAN_OUT: usize = 2;

/// Longest a `Sync` appender sleeps before checking its record by itself.
const RELAY_BACKSTOP: Duration = Duration::from_millis(20);

impl Relay {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Thread>> {
        // A queue of thread handles: consistent whatever panicked.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Unparks up to [`RELAY_FAN_OUT`] waiting appenders.
    fn pass_on(&self) {
        let mut next: [Option<Thread>; RELAY_FAN_OUT] = Default::default();
        {
            let mut q = self.lock();
            if q.is_empty() {
                return;
            }
            for slot in &mut next {
                *slot = q.pop_front();
            }
        }
        for t in next.into_iter().flatten() {
            t.unpark();
        }
    }
}

/// Moves `spent` into the recycle bin `bin`: all of it into an empty bin
/// (keeping the batch's allocation), else up to [`MAX_RECYCLED`] in all.
fn top_up<T>(bin: &mut Vec<T>, spent: &mut Vec<T>) {
    if bin.is_empty() {
        std::mem::swap(bin, spent);
    } else {
        let room = MAX_RECYCLED.saturating_sub(bin.len()).min(spent.len());
        bin.extend(spent.drain(..room));
    }
}

/// Unparks every `Sync` appender in `st` (the writer failed or stopped).
fn unpark_all<R>(st: &mut State<R>) {
    for (_, t) in st.sync_waiters.drain(..) {
        t.unpark();
    }
}

/// The append side of the audit log.
///
/// Cheap to share behind an `Arc`; `append` may be called from many threads.
/// Records are serialised (RFC 8785 canonical JSON) on the writer thread, so
/// callers pay only for a queue push — except in `Sync` mode and while the
/// writer is behind, when each appender serialises and hashes its own record
/// so the work spreads over every appending thread.
///
/// ```
/// use warden_audit::{AuditConfig, AuditLog, Durability};
///
/// #[derive(serde::Serialize)]
/// struct Event { kind: &'static str, n: u32 }
///
/// let dir = tempfile::tempdir().unwrap();
/// let cfg = AuditConfig { durability: Durability::Sync, ..AuditConfig::default() };
/// let log = AuditLog::open(dir.path(), cfg).unwrap();
/// let index = log.append(Event { kind: "decision", n: 1 }).unwrap();
/// assert_eq!(index, 0);
/// let sth = log.flush().unwrap().unwrap();
/// assert_eq!(sth.size, 1);
/// log.close().unwrap();
/// assert!(warden_audit::verify(dir.path(), &Default::default()).is_ok());
/// ```
pub struct AuditLog<R: Serialize + Send + 'static> {
    shared: Arc<Shared<State<R>>>,
    thread: Option<JoinHandle<()>>,
    durability: Durability,
    capacity: usize,
    public_key: PublicKey,
    data_dir: PathBuf,
    /// Set by the writer while it is behind (see [`HELP_MIN_BATCH`]).
    behind: Arc<AtomicBool>,
    /// Durable `Sync` appenders still to be woken.
    relay: Arc<Relay>,
}

impl<R: Serialize + Send + 'static> std::fmt::Debug for AuditLog<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("data_dir", &self.data_dir)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl<R: Serialize + Send + 'static> AuditLog<R> {
    /// Opens (creating on first use) the log in `<data_dir>/audit/`, with the
    /// signing key `<data_dir>/audit.key` (created, mode 0600, on first use)
    /// and its public half `<data_dir>/audit.pub`.
    ///
    /// Recovery: a partial frame at the end of the last segment (a crash
    /// mid-append) is moved aside to `<segment>.torn-<unix ms>` and truncated
    /// away; records after the last STH are signed immediately.
    ///
    /// # Errors
    /// I/O errors, [`AuditError::Locked`] if another writer has the log open,
    /// key problems, and [`AuditError::Integrity`] when the data on disk
    /// contradicts its signed tree heads (the log refuses to extend a
    /// tampered history; run `verify` for the full picture).
    pub fn open(data_dir: &Path, config: AuditConfig) -> Result<Self, AuditError> {
        let dir = data_dir.join(AUDIT_DIR);
        fs::create_dir_all(&dir).map_err(AuditError::io("create directory", &dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(AuditError::io("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(AuditError::Locked(dir)),
            Err(fs::TryLockError::Error(e)) => return Err(AuditError::io("lock", &lock_path)(e)),
        }
        let key = LogKey::load_or_create(data_dir)?;
        let bits = config.segment_bits.clamp(1, 30);
        let behind = Arc::new(AtomicBool::new(false));
        let relay = Arc::new(Relay::default());
        let writer = Writer::recover(
            dir,
            key,
            bits,
            lock,
            &config,
            Arc::clone(&behind),
            Arc::clone(&relay),
        )?;

        let state = State {
            queue: Vec::with_capacity(config.queue_capacity.clamp(1, 1 << 20)),
            recycled: Vec::new(),
            spent_bufs: Vec::new(),
            recycling: false,
            next_index: writer.frontier.size(),
            durable: writer.frontier.size(),
            signed: writer.signed,
            latest_sth: writer.latest_sth.clone(),
            sign_request: 0,
            closing: false,
            writer_idle: false,
            lingering: false,
            linger_wake: (config.queue_capacity.max(1) / 4).max(1),
            full_waiters: 0,
            durable_waiters: 0,
            sync_waiters: VecDeque::new(),
            failed: None,
        };
        let shared = Arc::new(Shared::new(state));
        let public_key = writer.key.public();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("warden-audit-writer".into())
            .spawn(move || {
                let dir = writer.dir.clone();
                let run = std::panic::AssertUnwindSafe(|| writer.run(&thread_shared));
                if std::panic::catch_unwind(run).is_err() {
                    // Never leave callers waiting on a dead writer.
                    let mut st = thread_shared.lock();
                    st.failed.get_or_insert_with(|| {
                        Arc::new(AuditError::Io {
                            context: "audit writer thread panicked writing",
                            path: dir,
                            source: std::io::Error::other("writer thread panicked"),
                        })
                    });
                    unpark_all(&mut st);
                    thread_shared.space.notify_all();
                    thread_shared.progress.notify_all();
                }
            })
            .map_err(AuditError::io("spawn writer thread", data_dir))?;
        Ok(Self {
            shared,
            thread: Some(thread),
            durability: config.durability,
            capacity: config.queue_capacity.max(1),
            public_key,
            data_dir: data_dir.to_path_buf(),
            behind,
            relay,
        })
    }

    /// Appends a record and returns its index (its leaf position).
    ///
    /// Blocks while the queue is full. With [`Durability::Sync`] it also
    /// blocks until the record is fsynced.
    ///
    /// # Errors
    /// [`AuditError::WriterFailed`] once the writer has failed (the record is
    /// not logged), [`AuditError::Closed`] after close.
    pub fn append(&self, record: R) -> Result<u64, AuditError> {
        self.append_inner(record, None)
    }

    /// As [`AuditLog::append`], and when `spare` is empty fills it with a
    /// record the writer has finished with, so the caller can overwrite it
    /// (`clone_from`) for its next record instead of allocating a new one.
    ///
    /// Why: records are built on the callers' threads and written on the
    /// writer's; freed there, every record's memory crosses threads, which
    /// with the system allocator costs more than building the record.
    /// Reusing spent records keeps allocation and freeing on the caller.
    ///
    /// # Errors
    /// As [`AuditLog::append`].
    pub fn append_recycling(&self, record: R, spare: &mut Option<R>) -> Result<u64, AuditError> {
        self.append_inner(record, Some(spare))
    }

    fn append_inner(&self, record: R, spare: Option<&mut Option<R>>) -> Result<u64, AuditError> {
        let shared = &*self.shared;
        let helping = self.durability == Durability::Sync || self.behind.load(Ordering::Relaxed);
        // An encoded record stays with its appender: it is the caller's next
        // spare, or freed here on the thread that built it.
        let (entry, kept) = match helping.then(|| encode_here(&record)).flatten() {
            Some(encoded) => (encoded, Some(record)),
            None => (Entry::Raw(record), None),
        };
        let (mut st, _) = enqueue(shared, self.capacity, entry)?;
        let index = st.next_index;
        st.next_index += 1;
        let buf = if helping { st.spent_bufs.pop() } else { None };
        if let Some(spare) = spare {
            st.recycling = true;
            if spare.is_none() {
                *spare = match kept {
                    Some(record) => Some(record),
                    None => st.recycled.pop(),
                };
            }
        }
        if let Some(buf) = buf {
            keep_buffer(buf);
        }
        if self.durability == Durability::Sync && st.durable <= index {
            st.sync_waiters.push_back((index, std::thread::current()));
            drop(st);
            let waited = self.wait_durable(index);
            // Woken (or done): wake the next durable appenders in turn.
            self.relay.pass_on();
            return waited.map(|()| index);
        }
        Ok(index)
    }

    /// Parks until record `index` is durable or the writer failed.
    fn wait_durable(&self, index: u64) -> Result<(), AuditError> {
        let shared = &*self.shared;
        loop {
            // A stale unpark token only costs one more turn of the loop. The
            // timeout is a backstop for the relay: an appender that returned
            // early (a spurious wake-up) passes on before the writer filled
            // the relay, so in principle a chain can end with waiters left in
            // it; they then wake on their own, late but never stuck.
            std::thread::park_timeout(RELAY_BACKSTOP);
            if shared.durable.load(Ordering::Acquire) > index {
                return Ok(());
            }
            let st = shared.lock();
            if st.durable > index {
                return Ok(());
            }
            if let Some(e) = &st.failed {
                return Err(AuditError::WriterFailed(Arc::clone(e)));
            }
        }
    }

    /// Waits until every record appended before the call is fsynced and
    /// covered by a signed tree head; returns that head (`None` for a log
    /// that has never held a record).
    ///
    /// # Errors
    /// [`AuditError::WriterFailed`] if the writer failed, [`AuditError::Closed`].
    pub fn flush(&self) -> Result<Option<SignedTreeHead>, AuditError> {
        let shared = &*self.shared;
        let mut st = shared.lock();
        let target = st.next_index;
        if st.sign_request < target {
            st.sign_request = target;
        }
        loop {
            if let Some(e) = &st.failed {
                return Err(AuditError::WriterFailed(Arc::clone(e)));
            }
            if st.signed >= target {
                return Ok(st.latest_sth.clone());
            }
            if st.writer_idle || st.lingering {
                st.writer_idle = false;
                st.lingering = false;
                shared.work.notify_one();
            }
            st.durable_waiters += 1;
            st = wait(&shared.progress, st);
            st.durable_waiters -= 1;
        }
    }

    /// Flushes, signs a final tree head and stops the writer thread.
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
            st.lingering = false;
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

    /// The public key that verifies this log's tree heads.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// Number of records appended (queued or durable).
    #[must_use]
    pub fn len(&self) -> u64 {
        self.shared.lock().next_index
    }

    /// Whether no record was ever appended.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of records known to be fsynced.
    #[must_use]
    pub fn durable_len(&self) -> u64 {
        self.shared.lock().durable
    }

    /// The latest signed tree head.
    #[must_use]
    pub fn latest_sth(&self) -> Option<SignedTreeHead> {
        self.shared.lock().latest_sth.clone()
    }

    /// The data directory this log lives in.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl<R: Serialize + Send + 'static> Drop for AuditLog<R> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.shutdown();
        }
    }
}

/// State owned by the writer thread.
struct Writer {
    dir: PathBuf,
    key: LogKey,
    bits: u32,
    frontier: Frontier,
    /// Records fsynced.
    durable: u64,
    /// Leaf hashes of the active segment.
    seg_leaves: Vec<Hash>,
    seg_base: u64,
    seg_file: Option<File>,
    sth_file: File,
    signed: u64,
    latest_sth: Option<SignedTreeHead>,
    last_sth_at: Instant,
    sth_every_records: u64,
    sth_interval: Duration,
    /// [`BATCH_LINGER`] in batched mode, zero in sync mode.
    linger: Duration,
    /// Longest wait of a written record for its fsync: the configured
    /// interval in batched mode, zero (every batch) in sync mode.
    fsync_interval: Duration,
    /// When the segment was last fsynced.
    last_fsync: Instant,
    /// Tells batched appenders to encode their own records.
    behind: Arc<AtomicBool>,
    /// Where the writer leaves durable appenders for each other to wake.
    relay: Arc<Relay>,
    buf: Vec<u8>,
    canon: Canonicalizer,
    /// Scratch for the appenders [`Writer::publish`] unparks.
    woken: std::cell::RefCell<Vec<Thread>>,
    _lock: File,
}

impl Writer {
    fn recover(
        dir: PathBuf,
        key: LogKey,
        bits: u32,
        lock: File,
        config: &AuditConfig,
        behind: Arc<AtomicBool>,
        relay: Arc<Relay>,
    ) -> Result<Self, AuditError> {
        let public = key.public();
        // Signed tree heads: drop a torn last line, check the latest one.
        let (lines, torn_sth) = store::read_sth_file(&dir)?;
        let sth_path = dir.join(STH_FILE);
        if let Some(offset) = torn_sth {
            preserve_and_truncate(&sth_path, offset)?;
        }
        let mut latest: Option<SignedTreeHead> = None;
        let mut latest_position = 0;
        for line in lines {
            match line.parsed {
                Ok(sth) => {
                    latest = Some(sth);
                    latest_position = line.position;
                }
                Err(reason) => {
                    return Err(AuditError::Integrity(Violation::SthMalformed {
                        sth_position: line.position,
                        reason,
                    }));
                }
            }
        }
        if let Some(sth) = &latest {
            sth.verify(&public).map_err(|e| {
                AuditError::Integrity(match e {
                    crate::sth::SthError::WrongKey { found, expected } => Violation::SthWrongKey {
                        sth_position: latest_position,
                        key_id: found,
                        expected,
                    },
                    _ => Violation::SthBadSignature {
                        sth_position: latest_position,
                    },
                })
            })?;
        }
        let signed = latest.as_ref().map_or(0, |s| s.size);

        let mut snap = Snapshot::load(&dir, bits)?;
        if let Some(torn) = snap.torn.clone() {
            if torn.index < signed {
                return Err(AuditError::Integrity(Violation::RecordCorrupt {
                    index: torn.index,
                    segment: torn.segment,
                    offset: torn.offset,
                    reason: torn.reason,
                }));
            }
            preserve_and_truncate(&torn.segment, torn.offset)?;
            snap.torn = None;
        }
        if snap.size < signed {
            return Err(AuditError::Integrity(Violation::Truncated {
                records: snap.size,
                sth_position: latest_position,
                sth_size: signed,
            }));
        }
        if let Some(sth) = &latest {
            let computed = snap.root_at(sth.size)?;
            if computed != sth.root {
                return Err(AuditError::Integrity(Violation::SthRootMismatch {
                    sth_position: latest_position,
                    size: sth.size,
                    signed: sth.root,
                    computed,
                    first_suspect: 0,
                }));
            }
        }

        let bits = snap.bits;
        let seg_len = 1u64 << bits;
        let mut frontier = Frontier::new();
        let mut seg_leaves = Vec::new();
        let mut seg_base = 0;
        let mut seg_file = None;
        let nsegs = snap.segments.len();
        for (i, seg) in snap.segments.iter_mut().enumerate() {
            let is_last = i + 1 == nsegs;
            if seg.count == seg_len {
                if !seg.indexed {
                    let leaves = seg.leaves.take().unwrap_or_default();
                    write_index(&dir, bits, seg.base, &leaves)?;
                }
                if let Some(root) = seg.root {
                    frontier.push_subtree(bits, root);
                }
                seg_base = seg.base + seg_len;
            } else if is_last {
                for l in seg.leaves.take().unwrap_or_default() {
                    frontier.push(l);
                    seg_leaves.push(l);
                }
                seg_base = seg.base;
                seg_file = Some(open_append(&segment_path(&dir, seg.base))?);
            }
        }
        let sth_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&sth_path)
            .map_err(AuditError::io("open", &sth_path))?;
        let mut writer = Self {
            dir,
            key,
            bits,
            durable: frontier.size(),
            frontier,
            seg_leaves,
            seg_base,
            seg_file,
            sth_file,
            signed,
            latest_sth: latest,
            last_sth_at: Instant::now(),
            sth_every_records: config.sth_every_records,
            sth_interval: config.sth_interval,
            linger: match config.durability {
                Durability::Batched => BATCH_LINGER,
                Durability::Sync => Duration::ZERO,
            },
            fsync_interval: match config.durability {
                Durability::Batched => config.fsync_interval,
                Durability::Sync => Duration::ZERO,
            },
            last_fsync: Instant::now(),
            behind,
            relay,
            buf: Vec::with_capacity(1 << 16),
            canon: Canonicalizer::new(),
            woken: std::cell::RefCell::new(Vec::new()),
            _lock: lock,
        };
        if writer.seg_file.is_none() {
            writer.seg_file = Some(create_segment(&writer.dir, bits, writer.seg_base)?);
        }
        if writer.frontier.size() > writer.signed {
            writer.sign()?;
        }
        Ok(writer)
    }

    fn run<R: Serialize>(mut self, shared: &Shared<State<R>>) {
        let mut batch: Vec<Entry<R>> = Vec::new();
        let mut spent: Vec<R> = Vec::new();
        let mut bufs: Vec<Vec<u8>> = Vec::new();
        loop {
            let (closing, sign_request) = {
                let mut st = shared.lock();
                let mut lingered = false;
                loop {
                    if !st.queue.is_empty() || st.closing || st.sign_request > self.signed {
                        break;
                    }
                    let sync_due_in = self.sync_due_in();
                    if sync_due_in == Some(Duration::ZERO) {
                        break;
                    }
                    let unsigned = self.frontier.size() > self.signed;
                    let sth_due_in = if unsigned && self.sth_interval > Duration::ZERO {
                        let elapsed = self.last_sth_at.elapsed();
                        if elapsed >= self.sth_interval {
                            break;
                        }
                        Some(self.sth_interval - elapsed)
                    } else {
                        None
                    };
                    // Wake for whichever comes first: the tree head or the fsync.
                    let due_in = match (sth_due_in, sync_due_in) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    if !lingered && self.linger > Duration::ZERO {
                        // Batched: let records gather without appenders
                        // paying for a wake-up; idle only if none came.
                        lingered = true;
                        st.lingering = true;
                        self.behind.store(false, Ordering::Relaxed);
                        let d = due_in.map_or(self.linger, |w| w.min(self.linger));
                        st = wait_timeout(&shared.work, st, d);
                        st.lingering = false;
                        continue;
                    }
                    st.writer_idle = true;
                    self.behind.store(false, Ordering::Relaxed);
                    st = match due_in {
                        Some(d) => wait_timeout(&shared.work, st, d),
                        None => wait(&shared.work, st),
                    };
                }
                st.writer_idle = false;
                std::mem::swap(&mut st.queue, &mut batch);
                // Behind: a large batch was already waiting when the last one
                // was done. (A batch gathered while lingering only shows how
                // many arrive per linger, which the writer keeps up with.)
                self.behind.store(
                    !lingered && batch.len() >= HELP_MIN_BATCH,
                    Ordering::Relaxed,
                );
                if st.full_waiters > 0 {
                    shared.space.notify_all();
                }
                (st.closing, st.sign_request)
            };

            let mut failure = self.write_batch(&batch).err();
            // A failing writer still makes durable what it wrote before the
            // failure (the records appenders were told were appended).
            if (failure.is_some() || self.sync_due_in() == Some(Duration::ZERO))
                && let Err(e) = self.sync()
            {
                failure.get_or_insert(e);
            }
            for entry in batch.drain(..) {
                match entry {
                    Entry::Raw(record) => spent.push(record),
                    Entry::Encoded { bytes, .. } if bytes.capacity() <= MAX_RECYCLED_BUF => {
                        bufs.push(bytes);
                    }
                    Entry::Encoded { .. } => {}
                }
            }
            // Publish durability first, so sync appenders do not wait for
            // the tree head signature and its fsync.
            let go_on = self.publish(shared, &mut failure, false, &mut spent, &mut bufs);
            // Records and buffers not handed to appenders are freed here.
            spent.clear();
            bufs.clear();
            if !go_on {
                return;
            }
            let size = self.frontier.size();
            let due_count =
                self.sth_every_records > 0 && size - self.signed >= self.sth_every_records;
            let due_time = self.sth_interval > Duration::ZERO
                && self.last_sth_at.elapsed() >= self.sth_interval;
            let requested = sign_request > self.signed;
            if (due_count || due_time || requested || closing) && size > self.signed {
                failure = self.sign().err();
            }
            if !self.publish(shared, &mut failure, closing, &mut spent, &mut bufs) {
                return;
            }
        }
    }

    /// Publishes progress to callers. Returns false when the thread must stop
    /// (failure, or `closing` and nothing left to do).
    /// Written records in `spent` go to the recycle bin when appenders reuse
    /// records: all of them into an empty bin, else as many as fit under
    /// [`MAX_RECYCLED`] (so the bin holds at most one batch or that many);
    /// the writer frees the rest. Buffers of encoded records in `bufs` go
    /// to their bin the same way. Topping the bin up rather than filling it
    /// only when empty matters: appenders take one spare per record, as
    /// fast as the writer returns them, so a bin refilled only when empty is
    /// found non-empty about every other batch, and then a whole batch is
    /// freed on the writer's thread while the appenders allocate afresh on
    /// theirs — cross-thread frees, the cost recycling exists to avoid.
    fn publish<R>(
        &self,
        shared: &Shared<State<R>>,
        failure: &mut Option<AuditError>,
        closing: bool,
        spent: &mut Vec<R>,
        bufs: &mut Vec<Vec<u8>>,
    ) -> bool {
        let mut st = shared.lock();
        if !st.closing {
            if st.recycling {
                top_up(&mut st.recycled, spent);
            }
            top_up(&mut st.spent_bufs, bufs);
        }
        st.durable = self.durable;
        shared.durable.store(self.durable, Ordering::Release);
        st.signed = self.signed;
        st.latest_sth.clone_from(&self.latest_sth);
        if let Some(e) = failure.take() {
            st.failed = Some(Arc::new(e));
        }
        if st.failed.is_some() {
            // Everyone blocked must see the failure.
            unpark_all(&mut st);
            shared.space.notify_all();
            shared.progress.notify_all();
            return false;
        }
        if st.durable_waiters > 0 {
            shared.progress.notify_all();
        }
        let mut woken = std::mem::take(&mut *self.woken.borrow_mut());
        while let Some((index, _)) = st.sync_waiters.front()
            && *index < st.durable
        {
            if let Some((_, t)) = st.sync_waiters.pop_front() {
                woken.push(t);
            }
        }
        let go_on = !(closing && st.queue.is_empty());
        // Unparked after the lock is released, so the woken do not queue on it.
        drop(st);
        if woken.len() > RELAY_FAN_OUT {
            self.relay.lock().extend(woken.drain(RELAY_FAN_OUT..));
        }
        for t in woken.drain(..) {
            t.unpark();
        }
        *self.woken.borrow_mut() = woken;
        go_on
    }

    /// Serialises, frames and appends a batch to the active segment.
    fn write_batch<R: Serialize>(&mut self, batch: &[Entry<R>]) -> Result<(), AuditError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        let mut pending_error = None;
        for entry in batch {
            let index = self.frontier.size();
            let start = self.buf.len();
            self.buf.resize(start + FRAME_HEADER_LEN, 0);
            let record = match entry {
                Entry::Encoded { bytes, leaf } => {
                    // Checked by its appender: canonical and within the limit.
                    self.buf.extend_from_slice(bytes);
                    seal_frame(&mut self.buf, start, index);
                    self.push_leaf(*leaf)?;
                    continue;
                }
                Entry::Raw(record) => record,
            };
            if let Err(reason) = self.canon.write(record, &mut self.buf) {
                self.buf.truncate(start);
                pending_error = Some(AuditError::Record { index, reason });
                break;
            }
            let len = self.buf.len() - start - FRAME_HEADER_LEN;
            if len > MAX_RECORD_LEN {
                self.buf.truncate(start);
                pending_error = Some(AuditError::Record {
                    index,
                    reason: format!(
                        "canonical form is {len} bytes, more than the {MAX_RECORD_LEN} allowed"
                    ),
                });
                break;
            }
            seal_frame(&mut self.buf, start, index);
            let leaf = leaf_hash(&self.buf[start + FRAME_HEADER_LEN..]);
            self.push_leaf(leaf)?;
        }
        self.write_out()?;
        match pending_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Adds a framed record's leaf; at a segment's end writes the buffered
    /// frames out and starts the next segment.
    fn push_leaf(&mut self, leaf: Hash) -> Result<(), AuditError> {
        self.frontier.push(leaf);
        self.seg_leaves.push(leaf);
        if self.seg_leaves.len() as u64 == 1u64 << self.bits {
            self.write_out()?;
            self.sync()?;
            self.seal_segment()?;
        }
        Ok(())
    }

    /// Writes the buffered frames to the active segment (fsynced later, see
    /// [`Writer::sync_due_in`]).
    fn write_out(&mut self) -> Result<(), AuditError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = segment_path(&self.dir, self.seg_base);
        let file = self.seg_file.as_mut().ok_or_else(|| {
            AuditError::io("write", &path)(std::io::Error::other("no open segment"))
        })?;
        file.write_all(&self.buf)
            .map_err(AuditError::io("write", &path))?;
        self.buf.clear();
        Ok(())
    }

    /// How long until written records must be fsynced: `None` when all are,
    /// zero when it is time (always, in sync mode).
    fn sync_due_in(&self) -> Option<Duration> {
        (self.durable < self.frontier.size()).then(|| {
            self.fsync_interval
                .saturating_sub(self.last_fsync.elapsed())
        })
    }

    /// Fsyncs the active segment, making every written record durable.
    fn sync(&mut self) -> Result<(), AuditError> {
        if self.durable == self.frontier.size() {
            return Ok(());
        }
        let path = segment_path(&self.dir, self.seg_base);
        let file = self.seg_file.as_mut().ok_or_else(|| {
            AuditError::io("fsync", &path)(std::io::Error::other("no open segment"))
        })?;
        file.sync_data().map_err(AuditError::io("fsync", &path))?;
        self.durable = self.frontier.size();
        self.last_fsync = Instant::now();
        Ok(())
    }

    /// Writes the index of the full active segment and starts the next one.
    fn seal_segment(&mut self) -> Result<(), AuditError> {
        write_index(&self.dir, self.bits, self.seg_base, &self.seg_leaves)?;
        self.seg_leaves.clear();
        self.seg_base += 1u64 << self.bits;
        self.seg_file = None;
        self.seg_file = Some(create_segment(&self.dir, self.bits, self.seg_base)?);
        Ok(())
    }

    /// Signs the current tree and appends the STH (fsynced), after making
    /// the records it covers durable: a tree head must never outlive them.
    fn sign(&mut self) -> Result<(), AuditError> {
        self.sync()?;
        let size = self.frontier.size();
        let sth = SignedTreeHead::sign(&self.key, size, self.frontier.root(), now_ms());
        let mut line = sth.to_canonical_json();
        line.push(b'\n');
        let path = self.dir.join(STH_FILE);
        self.sth_file
            .write_all(&line)
            .map_err(AuditError::io("write", &path))?;
        self.sth_file
            .sync_data()
            .map_err(AuditError::io("fsync", &path))?;
        self.signed = size;
        self.latest_sth = Some(sth);
        self.last_sth_at = Instant::now();
        Ok(())
    }
}

/// Copies the bytes from `offset` to the end into `<path>.torn-<ms>` (for
/// forensics), then truncates the file at `offset` and fsyncs it.
fn preserve_and_truncate(path: &Path, offset: u64) -> Result<(), AuditError> {
    let data = fs::read(path).map_err(AuditError::io("read", path))?;
    let start = usize::try_from(offset)
        .unwrap_or(data.len())
        .min(data.len());
    let tail = &data[start..];
    if !tail.is_empty() {
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".torn-{}", now_ms()));
        let aside = PathBuf::from(aside);
        fs::write(&aside, tail).map_err(AuditError::io("write", &aside))?;
    }
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(AuditError::io("open", path))?;
    f.set_len(offset)
        .map_err(AuditError::io("truncate", path))?;
    f.sync_all().map_err(AuditError::io("fsync", path))?;
    if let Some(parent) = path.parent() {
        crate::keys::sync_dir(parent)?;
    }
    Ok(())
}
