//! The kill switch: stop an agent, a session, or everything.
//!
//! State lives in memory behind an atomic pointer (a check is a pointer load
//! and, only while something is killed, a hash lookup). With a data
//! directory it is also persisted to `killswitch.json`, written under an
//! exclusive file lock and replaced atomically (write + fsync + rename), so
//! several processes can share it: each kernel re-reads the file when its
//! modification stamp changes, checked by a background thread every
//! `poll` interval (default 10 ms) and on every explicit [`KillSwitch::refresh`].

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

/// File name of the persisted state inside the data directory.
pub const KILL_FILE: &str = "killswitch.json";

/// What to kill.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", content = "id", rename_all = "snake_case")]
pub enum KillTarget {
    /// Every action of every agent.
    All,
    /// One agent.
    Agent(String),
    /// One session.
    Session(String),
}

impl std::fmt::Display for KillTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KillTarget::All => f.write_str("all"),
            KillTarget::Agent(a) => write!(f, "agent `{a}`"),
            KillTarget::Session(s) => write!(f, "session `{s}`"),
        }
    }
}

/// One active kill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kill {
    /// Why.
    pub reason: String,
    /// When (Unix ms).
    pub at_ms: u64,
    /// Who, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Every active kill.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillState {
    /// Kill of everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Kill>,
    /// Killed agents.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agents: BTreeMap<String, Kill>,
    /// Killed sessions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sessions: BTreeMap<String, Kill>,
}

impl KillState {
    fn is_empty(&self) -> bool {
        self.all.is_none() && self.agents.is_empty() && self.sessions.is_empty()
    }

    /// The kill that stops `agent` in `session`, if any (everything first, then agent, then session).
    pub fn find(&self, agent: &str, session: Option<&str>) -> Option<(KillTarget, &Kill)> {
        if let Some(k) = &self.all {
            return Some((KillTarget::All, k));
        }
        if let Some(k) = self.agents.get(agent) {
            return Some((KillTarget::Agent(agent.to_owned()), k));
        }
        let s = session?;
        self.sessions
            .get(s)
            .map(|k| (KillTarget::Session(s.to_owned()), k))
    }

    fn set(&mut self, target: &KillTarget, kill: Kill) {
        match target {
            KillTarget::All => self.all = Some(kill),
            KillTarget::Agent(a) => {
                self.agents.insert(a.clone(), kill);
            }
            KillTarget::Session(s) => {
                self.sessions.insert(s.clone(), kill);
            }
        }
    }

    fn lift(&mut self, target: &KillTarget) -> bool {
        match target {
            KillTarget::All => self.all.take().is_some(),
            KillTarget::Agent(a) => self.agents.remove(a).is_some(),
            KillTarget::Session(s) => self.sessions.remove(s).is_some(),
        }
    }
}

/// Kill-switch errors.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// Reading or writing the state file failed.
    #[error("kill switch state {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The state file is not valid.
    #[error("kill switch state {} is corrupt: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An empty id or reason.
    #[error("{0}")]
    Invalid(&'static str),
}

struct Shared {
    state: ArcSwap<KillState>,
    /// Fast path: false while nothing is killed, so checks skip the state entirely.
    active: AtomicBool,
    file: Option<PathBuf>,
    /// Modification stamp of the file as last read.
    stamp: Mutex<Option<(SystemTime, u64)>>,
    /// Set when the file could not be read: decisions fail closed until it can.
    broken: AtomicBool,
    /// Told about changes another process made (this process's own changes are not reported).
    observer: ArcSwap<Option<Observer>>,
}

/// A change to the kill state made by another process, seen on refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillChange {
    /// A kill appeared.
    Killed(KillTarget, Kill),
    /// A kill disappeared.
    Lifted(KillTarget),
}

type Observer = Arc<dyn Fn(KillChange) + Send + Sync>;

fn diff(old: &KillState, new: &KillState) -> Vec<KillChange> {
    let mut out = Vec::new();
    match (&old.all, &new.all) {
        (None, Some(k)) => out.push(KillChange::Killed(KillTarget::All, k.clone())),
        (Some(_), None) => out.push(KillChange::Lifted(KillTarget::All)),
        (Some(a), Some(b)) if a != b => out.push(KillChange::Killed(KillTarget::All, b.clone())),
        _ => {}
    }
    let maps = [
        (
            &old.agents,
            &new.agents,
            KillTarget::Agent as fn(String) -> KillTarget,
        ),
        (
            &old.sessions,
            &new.sessions,
            KillTarget::Session as fn(String) -> KillTarget,
        ),
    ];
    for (o, n, make) in maps {
        for (id, k) in n {
            if o.get(id) != Some(k) {
                out.push(KillChange::Killed(make(id.clone()), k.clone()));
            }
        }
        for id in o.keys().filter(|id| !n.contains_key(*id)) {
            out.push(KillChange::Lifted(make(id.clone())));
        }
    }
    out
}

/// The kill switch. Cheap to clone (shared state).
#[derive(Clone)]
pub struct KillSwitch {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KillSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KillSwitch")
            .field("file", &self.shared.file)
            .finish_non_exhaustive()
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillCheck {
    /// Nothing stops the action.
    Clear,
    /// A kill applies.
    Killed(KillTarget, Kill),
    /// The persisted state could not be read: fail closed.
    Unknown(String),
}

impl KillSwitch {
    /// A kill switch that lives in this process only.
    pub fn in_memory() -> Self {
        KillSwitch {
            shared: Arc::new(Shared {
                state: ArcSwap::from_pointee(KillState::default()),
                active: AtomicBool::new(false),
                file: None,
                stamp: Mutex::new(None),
                broken: AtomicBool::new(false),
                observer: ArcSwap::from_pointee(None),
            }),
        }
    }

    /// Opens (or creates) the shared state in `data_dir` and starts a watcher
    /// thread that picks up changes made by other processes every `poll`.
    pub fn open(data_dir: &Path, poll: Duration) -> Result<Self, KillError> {
        std::fs::create_dir_all(data_dir).map_err(|source| KillError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let ks = KillSwitch {
            shared: Arc::new(Shared {
                state: ArcSwap::from_pointee(KillState::default()),
                active: AtomicBool::new(false),
                file: Some(data_dir.join(KILL_FILE)),
                stamp: Mutex::new(None),
                broken: AtomicBool::new(false),
                observer: ArcSwap::from_pointee(None),
            }),
        };
        ks.refresh()?;
        let weak: Weak<Shared> = Arc::downgrade(&ks.shared);
        std::thread::Builder::new()
            .name("warden-killswitch".into())
            .spawn(move || {
                while let Some(shared) = weak.upgrade() {
                    let ks = KillSwitch { shared };
                    // A failed read marks the switch broken (decisions deny) and is retried.
                    let _ = ks.refresh();
                    drop(ks);
                    std::thread::sleep(poll);
                }
            })
            .map_err(|source| KillError::Io {
                path: data_dir.to_path_buf(),
                source,
            })?;
        Ok(ks)
    }

    /// Registers a callback for kill changes made by other processes (the
    /// kernel audits them). Replaces any previous observer.
    pub fn observe(&self, f: impl Fn(KillChange) + Send + Sync + 'static) {
        self.shared.observer.store(Arc::new(Some(Arc::new(f))));
    }

    /// Checks an action's agent and session. Lock-free; no allocation unless a kill applies.
    pub fn check(&self, agent: &str, session: Option<&str>) -> KillCheck {
        if self.shared.broken.load(Ordering::Acquire) {
            return KillCheck::Unknown("the kill switch state file cannot be read".to_owned());
        }
        if !self.shared.active.load(Ordering::Acquire) {
            return KillCheck::Clear;
        }
        let state = self.shared.state.load();
        match state.find(agent, session) {
            Some((t, k)) => KillCheck::Killed(t, k.clone()),
            None => KillCheck::Clear,
        }
    }

    /// The current state.
    pub fn state(&self) -> Arc<KillState> {
        self.shared.state.load_full()
    }

    fn publish(&self, state: KillState) {
        let active = !state.is_empty();
        self.shared.state.store(Arc::new(state));
        self.shared.active.store(active, Ordering::Release);
    }

    /// Activates a kill; effective for the next decision on every thread of
    /// this process, and persisted for other processes.
    pub fn kill(
        &self,
        target: KillTarget,
        reason: &str,
        by: Option<&str>,
    ) -> Result<(), KillError> {
        if reason.trim().is_empty() {
            return Err(KillError::Invalid("a kill needs a reason"));
        }
        match &target {
            KillTarget::Agent(id) | KillTarget::Session(id) if id.is_empty() => {
                return Err(KillError::Invalid("empty agent or session id"));
            }
            _ => {}
        }
        let kill = Kill {
            reason: reason.to_owned(),
            at_ms: crate::now_ms(),
            by: by.map(str::to_owned),
        };
        self.update(|s| {
            s.set(&target, kill);
            true
        })
        .map(|_| ())
    }

    /// Lifts a kill; returns whether one was active.
    pub fn lift(&self, target: &KillTarget) -> Result<bool, KillError> {
        self.update(|s| s.lift(target))
    }

    /// Read-modify-write under the file lock (or in memory).
    fn update(&self, f: impl FnOnce(&mut KillState) -> bool) -> Result<bool, KillError> {
        let Some(path) = &self.shared.file else {
            let mut s = (*self.shared.state.load_full()).clone();
            let changed = f(&mut s);
            self.publish(s);
            return Ok(changed);
        };
        let io = |source| KillError::Io {
            path: path.clone(),
            source,
        };
        let lock_path = path.with_extension("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        lock.lock().map_err(io)?;
        // Held across the write so the watcher never mistakes our own change for another process's.
        let mut last = self
            .shared
            .stamp
            .lock()
            .map_err(|_| KillError::Invalid("kill switch lock poisoned"))?;
        let mut s = read_state(path)?;
        // Changes other processes made since our last read are reported before ours is applied.
        let external = diff(&self.shared.state.load_full(), &s);
        let changed = f(&mut s);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&s).map_err(|e| KillError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        {
            let mut t = File::create(&tmp).map_err(io)?;
            t.write_all(&bytes).map_err(io)?;
            t.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent() {
            // Make the rename durable too.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        self.shared.broken.store(false, Ordering::Release);
        *last = stamp(path);
        self.publish(s);
        drop(last);
        drop(lock);
        self.notify(external);
        Ok(changed)
    }

    fn notify(&self, changes: Vec<KillChange>) {
        if let Some(observer) = self.shared.observer.load().as_ref() {
            for c in changes {
                observer(c);
            }
        }
    }

    /// Re-reads the persisted state if the file changed since the last read.
    pub fn refresh(&self) -> Result<(), KillError> {
        let Some(path) = &self.shared.file else {
            return Ok(());
        };
        let now = stamp(path);
        let mut last = self
            .shared
            .stamp
            .lock()
            .map_err(|_| KillError::Invalid("kill switch lock poisoned"))?;
        if now.is_some() && *last == now && !self.shared.broken.load(Ordering::Acquire) {
            return Ok(());
        }
        match read_state(path) {
            Ok(s) => {
                *last = now;
                self.shared.broken.store(false, Ordering::Release);
                let old = self.shared.state.load_full();
                let changes = diff(&old, &s);
                self.publish(s);
                drop(last);
                self.notify(changes);
                Ok(())
            }
            Err(e) => {
                self.shared.broken.store(true, Ordering::Release);
                Err(e)
            }
        }
    }
}

/// (mtime, length + inode-ish) of the file: a change of either means re-read.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let extra = std::os::unix::fs::MetadataExt::ino(&m) ^ m.len().rotate_left(32);
    #[cfg(not(unix))]
    let extra = m.len();
    Some((m.modified().ok()?, extra))
}

fn read_state(path: &Path) -> Result<KillState, KillError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| KillError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KillState::default()),
        Err(source) => Err(KillError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn kill_and_lift_in_memory() {
        let ks = KillSwitch::in_memory();
        assert_eq!(ks.check("a", Some("s")), KillCheck::Clear);
        ks.kill(KillTarget::Session("s".into()), "leak", Some("ops"))
            .unwrap();
        assert!(matches!(
            ks.check("a", Some("s")),
            KillCheck::Killed(KillTarget::Session(_), _)
        ));
        assert_eq!(ks.check("a", Some("other")), KillCheck::Clear);
        assert_eq!(ks.check("a", None), KillCheck::Clear);
        ks.kill(KillTarget::All, "incident", None).unwrap();
        assert!(matches!(
            ks.check("zzz", None),
            KillCheck::Killed(KillTarget::All, _)
        ));
        assert!(ks.lift(&KillTarget::All).unwrap());
        assert!(!ks.lift(&KillTarget::All).unwrap());
        assert!(ks.lift(&KillTarget::Session("s".into())).unwrap());
        assert_eq!(ks.check("a", Some("s")), KillCheck::Clear);
        assert!(ks.kill(KillTarget::Agent("a".into()), " ", None).is_err());
        assert!(
            ks.kill(KillTarget::Agent(String::new()), "x", None)
                .is_err()
        );
    }

    #[test]
    fn persisted_state_is_shared_between_instances() {
        let dir = tempfile::tempdir().unwrap();
        let a = KillSwitch::open(dir.path(), Duration::from_millis(5)).unwrap();
        let b = KillSwitch::open(dir.path(), Duration::from_millis(5)).unwrap();
        a.kill(KillTarget::Agent("bot".into()), "runaway", Some("alice"))
            .unwrap();
        b.refresh().unwrap();
        match b.check("bot", None) {
            KillCheck::Killed(KillTarget::Agent(id), k) => {
                assert_eq!(id, "bot");
                assert_eq!(k.reason, "runaway");
                assert_eq!(k.by.as_deref(), Some("alice"));
            }
            other => panic!("{other:?}"),
        }
        b.lift(&KillTarget::Agent("bot".into())).unwrap();
        // The watcher thread of `a` picks the change up without an explicit refresh.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while a.check("bot", None) != KillCheck::Clear {
            assert!(
                std::time::Instant::now() < deadline,
                "watcher never saw the lift"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn observer_sees_changes_from_other_processes_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = KillSwitch::open(dir.path(), Duration::from_secs(3600)).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        a.observe(move |c| s2.lock().unwrap().push(c));
        a.kill(KillTarget::Agent("own".into()), "mine", None)
            .unwrap();
        a.refresh().unwrap();
        let b = KillSwitch::open(dir.path(), Duration::from_secs(3600)).unwrap();
        b.kill(KillTarget::Session("s".into()), "theirs", Some("bob"))
            .unwrap();
        b.lift(&KillTarget::Agent("own".into())).unwrap();
        a.refresh().unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen.iter().any(|c| matches!(c, KillChange::Killed(KillTarget::Session(s), k) if s == "s" && k.by.as_deref() == Some("bob"))));
        assert!(seen.contains(&KillChange::Lifted(KillTarget::Agent("own".into()))));
    }

    #[test]
    fn corrupt_state_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KillSwitch::open(dir.path(), Duration::from_secs(3600)).unwrap();
        std::fs::write(dir.path().join(KILL_FILE), "{not json").unwrap();
        assert!(ks.refresh().is_err());
        assert!(matches!(ks.check("a", None), KillCheck::Unknown(_)));
        std::fs::write(dir.path().join(KILL_FILE), "{}").unwrap();
        ks.refresh().unwrap();
        assert_eq!(ks.check("a", None), KillCheck::Clear);
    }
}
