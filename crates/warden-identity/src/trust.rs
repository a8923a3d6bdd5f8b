//! Trust scores 0–1000 in five tiers, moved by signals from decisions and
//! outcomes, decaying toward a baseline, propagated (bounded) to delegators,
//! persisted in a [`TrustStore`]: the data directory's `trust.json`
//! ([`FileStore`]) or, with the `postgres` feature, a PostgreSQL table shared
//! by many processes (`PgTrustStore`). The formula is defended in `docs/trust.md`.
//!
//! Reads ([`TrustBook::score`], [`TrustBook::tier`]) come from memory: a
//! sharded map, so applying a signal to one agent never blocks reading
//! another. Signals change the in-memory view at once and are queued per
//! agent; [`TrustBook::save`] (periodically, see [`TrustBook::spawn_sync`])
//! applies the queued signals to the store, each agent's in order and
//! transactionally, computing every new score with [`TrustConfig::step`],
//! then reloads the view from the store, so what other processes and
//! operators wrote becomes visible.

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::IdentityError;

/// Highest score.
pub const MAX_SCORE: f64 = 1000.0;
/// File name of the persisted book inside a data directory.
pub const TRUST_FILE: &str = "trust.json";

/// Trust tiers: `untrusted` < 300 ≤ `probationary` < 500 ≤ `standard` < 700
/// ≤ `trusted` < 900 ≤ `verified`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Below 300.
    Untrusted,
    /// 300–499.
    Probationary,
    /// 500–699.
    Standard,
    /// 700–899.
    Trusted,
    /// 900 and above.
    Verified,
}

impl Tier {
    /// The tier of a score.
    #[must_use]
    pub fn of(score: f64) -> Tier {
        match score {
            s if s >= 900.0 => Tier::Verified,
            s if s >= 700.0 => Tier::Trusted,
            s if s >= 500.0 => Tier::Standard,
            s if s >= 300.0 => Tier::Probationary,
            _ => Tier::Untrusted,
        }
    }

    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Untrusted => "untrusted",
            Tier::Probationary => "probationary",
            Tier::Standard => "standard",
            Tier::Trusted => "trusted",
            Tier::Verified => "verified",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Tier {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Tier::Untrusted,
            Tier::Probationary,
            Tier::Standard,
            Tier::Trusted,
            Tier::Verified,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| IdentityError::malformed(format!("unknown tier {s:?}")))
    }
}

/// Something an agent did that moves its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// A call it made succeeded.
    Success,
    /// A call it made failed.
    Error,
    /// The policy denied one of its actions by a rule.
    PolicyViolation,
    /// A human approved one of its escalated actions.
    ApprovalGranted,
    /// A human refused one of its escalated actions.
    ApprovalDenied,
}

/// Parameters of the formula.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustConfig {
    /// Where scores start and decay to.
    pub baseline: f64,
    /// Half-life of the distance to the baseline, seconds.
    pub half_life_secs: f64,
    /// Weight of each signal (‰ of the remaining headroom, or of the score for negatives).
    pub success: f64,
    /// Weight of an error.
    pub error: f64,
    /// Weight of a policy violation.
    pub violation: f64,
    /// Weight of a granted approval.
    pub approval_granted: f64,
    /// Weight of a denied approval.
    pub approval_denied: f64,
    /// Factor applied per delegation step when a penalty propagates up.
    pub propagation: f64,
    /// How many delegators up a penalty reaches.
    pub propagation_depth: usize,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            baseline: 400.0,
            half_life_secs: 7.0 * 86_400.0,
            success: 5.0,
            error: -20.0,
            violation: -100.0,
            approval_granted: 20.0,
            approval_denied: -60.0,
            propagation: 0.5,
            propagation_depth: 3,
        }
    }
}

impl TrustConfig {
    /// The weight of a signal.
    #[must_use]
    pub fn weight(&self, s: Signal) -> f64 {
        match s {
            Signal::Success => self.success,
            Signal::Error => self.error,
            Signal::PolicyViolation => self.violation,
            Signal::ApprovalGranted => self.approval_granted,
            Signal::ApprovalDenied => self.approval_denied,
        }
    }

    /// The score at `now` of an entry anchored at `(score, at)`: exponential
    /// decay of the distance to the baseline. A pure function of the stored
    /// anchor, so reading twice gives the same value, and decaying in two
    /// steps equals decaying in one.
    #[must_use]
    pub fn decayed(&self, score: f64, at: u64, now: u64) -> f64 {
        let elapsed = now.saturating_sub(at) as f64;
        let factor = if self.half_life_secs > 0.0 {
            (-elapsed / self.half_life_secs).exp2()
        } else {
            0.0
        };
        clamp(self.baseline + (score - self.baseline) * factor)
    }

    /// One signal of weight `w` applied to `score`: gains take `w`‰ of the
    /// headroom to 1000, losses `|w|`‰ of the score.
    #[must_use]
    pub fn apply(score: f64, w: f64) -> f64 {
        let delta = if w >= 0.0 {
            w * (MAX_SCORE - score) / MAX_SCORE
        } else {
            w * score / MAX_SCORE
        };
        clamp(score + delta)
    }

    /// The anchor after applying `delta` to `anchor` (`None`: an agent not
    /// seen yet, at the baseline): decay to the delta's time, apply its
    /// weight, re-anchor. The one place a stored score changes, used alike by
    /// the in-memory view and by every store. An older delta (another
    /// process's clock, a late flush) decays nothing and keeps the anchor's time.
    #[must_use]
    pub fn step(&self, anchor: Option<Anchor>, delta: Delta) -> Anchor {
        let base = anchor.unwrap_or(Anchor {
            score: self.baseline,
            at: 0,
        });
        let decayed = self.decayed(base.score, base.at, delta.at);
        Anchor {
            score: TrustConfig::apply(decayed, delta.weight),
            at: base.at.max(delta.at),
        }
    }
}

fn clamp(s: f64) -> f64 {
    if s.is_nan() {
        0.0
    } else {
        s.clamp(0.0, MAX_SCORE)
    }
}

/// A stored score: its value and the time (Unix seconds) it was last changed.
/// Everything else is derived from it with [`TrustConfig::decayed`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// Score at `at`, 0–1000.
    pub score: f64,
    /// Unix seconds.
    pub at: u64,
}

impl Anchor {
    /// Whether the score is within 0–1000 (what every store checks on read).
    #[must_use]
    pub fn is_valid(&self) -> bool {
        (0.0..=MAX_SCORE).contains(&self.score)
    }
}

/// One signal as queued for the store: its weight and when it happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delta {
    /// Weight (‰), already scaled for propagation.
    pub weight: f64,
    /// Unix seconds.
    pub at: u64,
}

/// Each agent's queued deltas, in the order they happened.
pub type Batch = [(String, Vec<Delta>)];

/// Every stored anchor, by agent.
pub type Snapshot = HashMap<String, Anchor>;

/// A store that failed part-way through a batch.
#[derive(Debug)]
pub struct ApplyFailure {
    /// How many leading agents of the batch were applied (committed) anyway.
    pub applied: usize,
    /// Why the rest was not.
    pub error: IdentityError,
}

/// Where scores persist. Implementations must apply each agent's deltas in
/// order with [`TrustConfig::step`] (one formula everywhere), atomically with
/// respect to every other writer of the same store, and fail closed: an
/// unreadable or corrupt store is an error, never an empty book.
pub trait TrustStore: Send + Sync + fmt::Debug {
    /// Applies `batch` (possibly empty) and returns every stored anchor
    /// afterwards, including what other writers stored.
    ///
    /// # Errors
    /// The store failed; `applied` leading agents were committed before it did.
    fn apply(&self, config: &TrustConfig, batch: &Batch) -> Result<Snapshot, ApplyFailure>;

    /// Stores `anchor` for `agent` (an operator's decision), replacing what
    /// is stored at the moment it commits.
    ///
    /// # Errors
    /// The store failed.
    fn set(&self, agent: &str, anchor: Anchor) -> Result<(), IdentityError>;

    /// Where the store is, for messages (a path, a table).
    fn location(&self) -> String;
}

/// Most signals queued for the store before recording more fails (and the
/// decision or outcome that caused it fails closed): the store has been
/// unreachable for long enough that memory, not signals, would be lost.
pub const MAX_QUEUED_SIGNALS: usize = 1 << 20;

/// How often a server process applies queued signals and reloads the view
/// from the store unless configured otherwise.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// In-memory state of one agent.
#[derive(Debug)]
struct Slot {
    /// The store's anchor with `queued` applied on top.
    view: Anchor,
    /// Signals not yet in the store, oldest first.
    queued: Vec<Delta>,
}

/// Scores per agent. `Send + Sync`.
#[derive(Debug)]
pub struct TrustBook {
    config: TrustConfig,
    slots: DashMap<String, Slot>,
    store: Option<Box<dyn TrustStore>>,
    /// Deltas queued in all slots.
    queued: AtomicUsize,
    /// Serialises [`TrustBook::save`]s (never taken by reads or signals).
    syncing: Mutex<()>,
}

impl TrustBook {
    /// An in-memory book.
    #[must_use]
    pub fn in_memory(config: TrustConfig) -> Self {
        TrustBook {
            config,
            slots: DashMap::new(),
            store: None,
            queued: AtomicUsize::new(0),
            syncing: Mutex::new(()),
        }
    }

    /// Opens (or starts) the book persisted as `dir/trust.json`.
    ///
    /// # Errors
    /// An unreadable or corrupt file (fail closed: never silently reset scores).
    pub fn open(dir: &Path, config: TrustConfig) -> Result<Self, IdentityError> {
        TrustBook::with_store(Box::new(FileStore::new(dir)), config)
    }

    /// A book persisted in `store`, loaded from it now.
    ///
    /// # Errors
    /// The store is unreachable, unreadable or corrupt.
    pub fn with_store(
        store: Box<dyn TrustStore>,
        config: TrustConfig,
    ) -> Result<Self, IdentityError> {
        let snapshot = store.apply(&config, &[]).map_err(|f| f.error)?;
        let book = TrustBook {
            config,
            slots: DashMap::new(),
            store: Some(store),
            queued: AtomicUsize::new(0),
            syncing: Mutex::new(()),
        };
        book.install(snapshot);
        Ok(book)
    }

    /// The formula's parameters.
    #[must_use]
    pub fn config(&self) -> &TrustConfig {
        &self.config
    }

    /// Where the book persists (`None`: in memory only).
    #[must_use]
    pub fn location(&self) -> Option<String> {
        self.store.as_ref().map(|s| s.location())
    }

    /// Signals recorded but not yet in the store.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The agent's score at `now` (the baseline for an unknown agent).
    ///
    /// # Errors
    /// None today; kept fallible so a store-backed read can fail closed.
    pub fn score(&self, agent: &str, now: u64) -> Result<f64, IdentityError> {
        Ok(self.slots.get(agent).map_or(self.config.baseline, |s| {
            self.config.decayed(s.view.score, s.view.at, now)
        }))
    }

    /// The agent's tier at `now`.
    ///
    /// # Errors
    /// As [`TrustBook::score`].
    pub fn tier(&self, agent: &str, now: u64) -> Result<Tier, IdentityError> {
        self.score(agent, now).map(Tier::of)
    }

    /// Records a signal for `agent` at `now`. A penalty also reaches its
    /// `delegators` (nearest first), scaled by `propagation^k` for the k-th,
    /// at most `propagation_depth` of them; rewards do not propagate.
    /// Returns the agent's new score. Takes only the agent's (and each
    /// delegator's) shard of the map, one at a time.
    ///
    /// # Errors
    /// [`MAX_QUEUED_SIGNALS`] signals are waiting for an unreachable store.
    pub fn record(
        &self,
        agent: &str,
        signal: Signal,
        delegators: &[&str],
        now: u64,
    ) -> Result<f64, IdentityError> {
        let w = self.config.weight(signal);
        let propagated = if w < 0.0 {
            delegators.len().min(self.config.propagation_depth)
        } else {
            0
        };
        if self.store.is_some() {
            let n = 1 + propagated;
            let before = self.queued.fetch_add(n, Ordering::Relaxed);
            if before + n > MAX_QUEUED_SIGNALS {
                self.queued.fetch_sub(n, Ordering::Relaxed);
                return Err(IdentityError::Internal(format!(
                    "trust store {}: {before} signals not yet persisted; refusing more",
                    self.location().unwrap_or_default()
                )));
            }
        }
        let new = self.bump(agent, Delta { weight: w, at: now });
        let mut scale = 1.0;
        for d in delegators.iter().take(propagated) {
            scale *= self.config.propagation;
            self.bump(
                d,
                Delta {
                    weight: w * scale,
                    at: now,
                },
            );
        }
        Ok(new)
    }

    fn bump(&self, agent: &str, delta: Delta) -> f64 {
        let keep = self.store.is_some();
        let apply = |slot: &mut Slot| {
            slot.view = self.config.step(Some(slot.view), delta);
            if keep {
                slot.queued.push(delta);
            }
            slot.view.score
        };
        // `get_mut` first: no key allocation for an agent already known.
        if let Some(mut slot) = self.slots.get_mut(agent) {
            return apply(&mut slot);
        }
        let mut slot = self.slots.entry(agent.to_owned()).or_insert(Slot {
            view: Anchor {
                score: self.config.baseline,
                at: 0,
            },
            queued: Vec::new(),
        });
        apply(&mut slot)
    }

    /// Sets a score (an operator's decision), anchored at `now`. With a
    /// store, it is written through at once and replaces the stored score
    /// as of that moment; signals persisted afterwards (this process's
    /// queued ones included) apply on top of it.
    ///
    /// # Errors
    /// A score outside 0–1000, a failing store.
    pub fn set(&self, agent: &str, score: f64, now: u64) -> Result<(), IdentityError> {
        if !(0.0..=MAX_SCORE).contains(&score) {
            return Err(IdentityError::malformed(
                "trust score must be within 0..=1000",
            ));
        }
        let anchor = Anchor { score, at: now };
        if let Some(store) = &self.store {
            store.set(agent, anchor)?;
        }
        let mut slot = self.slots.entry(agent.to_owned()).or_insert(Slot {
            view: anchor,
            queued: Vec::new(),
        });
        slot.view = self.replay(anchor, &slot.queued);
        Ok(())
    }

    fn replay(&self, anchor: Anchor, queued: &[Delta]) -> Anchor {
        queued
            .iter()
            .fold(anchor, |a, d| self.config.step(Some(a), *d))
    }

    /// Every known agent with its score and tier at `now`, sorted by agent.
    ///
    /// # Errors
    /// As [`TrustBook::score`].
    pub fn list(&self, now: u64) -> Result<Vec<(String, f64, Tier)>, IdentityError> {
        let mut out: Vec<_> = self
            .slots
            .iter()
            .map(|s| {
                let score = self.config.decayed(s.view.score, s.view.at, now);
                (s.key().clone(), score, Tier::of(score))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Applies the queued signals to the store and reloads the view from it
    /// (what other processes and operators stored becomes visible). A no-op
    /// for an in-memory book. On failure the signals not stored stay queued
    /// for the next call.
    ///
    /// # Errors
    /// The store failed (unreachable, corrupt, I/O).
    pub fn save(&self) -> Result<(), IdentityError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let _one_at_a_time = self
            .syncing
            .lock()
            .map_err(|_| IdentityError::Internal("trust book sync lock poisoned".into()))?;
        let mut batch: Vec<(String, Vec<Delta>)> = Vec::new();
        for mut slot in self.slots.iter_mut() {
            if !slot.queued.is_empty() {
                let deltas = std::mem::take(&mut slot.queued);
                batch.push((slot.key().clone(), deltas));
            }
        }
        let count = |b: &Batch| b.iter().map(|(_, d)| d.len()).sum::<usize>();
        match store.apply(&self.config, &batch) {
            Ok(snapshot) => {
                self.queued.fetch_sub(count(&batch), Ordering::Relaxed);
                self.install(snapshot);
                Ok(())
            }
            Err(ApplyFailure { applied, error }) => {
                let applied = applied.min(batch.len());
                self.queued
                    .fetch_sub(count(&batch[..applied]), Ordering::Relaxed);
                // Put the rest back in front of anything recorded meanwhile.
                for (agent, mut deltas) in batch.drain(applied..) {
                    if let Some(mut slot) = self.slots.get_mut(&agent) {
                        deltas.append(&mut slot.queued);
                        slot.queued = deltas;
                    }
                }
                Err(error)
            }
        }
    }

    /// Replaces the view with the store's anchors, replaying the signals
    /// queued since the batch was taken on top of them.
    fn install(&self, snapshot: Snapshot) {
        self.slots
            .retain(|agent, slot| !slot.queued.is_empty() || snapshot.contains_key(agent));
        for (agent, anchor) in snapshot {
            match self.slots.get_mut(&agent) {
                Some(mut slot) => slot.view = self.replay(anchor, &slot.queued),
                None => {
                    self.slots.entry(agent).or_insert(Slot {
                        view: anchor,
                        queued: Vec::new(),
                    });
                }
            }
        }
    }

    /// Saves every `every` on a background thread until the returned handle
    /// is dropped, which saves a last time. `on_error` hears about failed
    /// saves (the signals stay queued and are retried).
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn spawn_sync(
        self: &Arc<Self>,
        every: Duration,
        on_error: impl Fn(&IdentityError) + Send + 'static,
    ) -> Result<SyncHandle, IdentityError> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let book = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("warden-trust-sync".into())
            .spawn(move || {
                loop {
                    let last = !matches!(
                        stopped.recv_timeout(every),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    );
                    if let Err(e) = book.save() {
                        on_error(&e);
                    }
                    if last {
                        return;
                    }
                }
            })
            .map_err(|e| IdentityError::Internal(format!("trust sync thread: {e}")))?;
        Ok(SyncHandle {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Stops a [`TrustBook::spawn_sync`] thread when dropped, after a last save.
#[derive(Debug)]
pub struct SyncHandle {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SyncHandle {
    /// Stops the thread after a last save and waits for it.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        self.finish();
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    version: u32,
    agents: HashMap<String, Anchor>,
}

/// `trust.json` in a data directory. Every change is read-modify-write under
/// an exclusive lock on `trust.json.lock` (so processes sharing the
/// directory and `warden trust set` never overwrite each other's changes)
/// and lands atomically (temporary file, fsync, rename).
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    lock: PathBuf,
}

impl FileStore {
    /// The store `dir/trust.json` (nothing is read until used).
    #[must_use]
    pub fn new(dir: &Path) -> Self {
        FileStore {
            path: dir.join(TRUST_FILE),
            lock: dir.join(format!("{TRUST_FILE}.lock")),
        }
    }

    fn bad(&self, reason: impl fmt::Display) -> IdentityError {
        IdentityError::KeyFile {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// Runs `f` on the file's contents under the lock, writing back what it
    /// returns if `Some`.
    fn locked(&self, f: impl FnOnce(&mut Snapshot) -> bool) -> Result<Snapshot, IdentityError> {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| self.bad(format!("lock file {}: {e}", self.lock.display())))?;
        lock.lock()
            .map_err(|e| self.bad(format!("locking {}: {e}", self.lock.display())))?;
        let mut agents = self.read()?;
        if f(&mut agents) {
            self.write(&agents)?;
        }
        // Dropping `lock` releases it.
        Ok(agents)
    }

    fn read(&self) -> Result<Snapshot, IdentityError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(e) => return Err(self.bad(e)),
        };
        let file: TrustFile = serde_json::from_str(&text).map_err(|e| self.bad(e))?;
        if file.version != 1 {
            return Err(self.bad(format!("unsupported version {}", file.version)));
        }
        if let Some((agent, _)) = file.agents.iter().find(|(_, a)| !a.is_valid()) {
            return Err(self.bad(format!("score of {agent:?} out of range")));
        }
        Ok(file.agents)
    }

    fn write(&self, agents: &Snapshot) -> Result<(), IdentityError> {
        let file = TrustFile {
            version: 1,
            agents: agents.clone(),
        };
        let text = serde_json::to_vec_pretty(&file).map_err(|e| self.bad(e))?;
        let tmp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(|e| self.bad(e))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(|e| self.bad(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.bad(e))
    }
}

impl TrustStore for FileStore {
    fn apply(&self, config: &TrustConfig, batch: &Batch) -> Result<Snapshot, ApplyFailure> {
        self.locked(|agents| {
            for (agent, deltas) in batch {
                let mut anchor = agents.get(agent).copied();
                for d in deltas {
                    anchor = Some(config.step(anchor, *d));
                }
                if let Some(a) = anchor {
                    agents.insert(agent.clone(), a);
                }
            }
            !batch.is_empty()
        })
        .map_err(|error| ApplyFailure { applied: 0, error })
    }

    fn set(&self, agent: &str, anchor: Anchor) -> Result<(), IdentityError> {
        self.locked(|agents| {
            agents.insert(agent.to_owned(), anchor);
            true
        })
        .map(|_| ())
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}
