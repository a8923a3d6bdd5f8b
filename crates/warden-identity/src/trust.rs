//! Trust scores 0–1000 in five tiers, moved by signals from decisions and
//! outcomes, decaying toward a baseline, propagated (bounded) to delegators,
//! persisted in the data directory. The formula is defended in `docs/trust.md`.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

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
    fn weight(&self, s: Signal) -> f64 {
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
}

fn clamp(s: f64) -> f64 {
    if s.is_nan() {
        0.0
    } else {
        s.clamp(0.0, MAX_SCORE)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    score: f64,
    at: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    version: u32,
    agents: HashMap<String, Entry>,
}

/// Scores per agent. `Send + Sync`.
#[derive(Debug)]
pub struct TrustBook {
    config: TrustConfig,
    entries: RwLock<HashMap<String, Entry>>,
    path: Option<PathBuf>,
}

impl TrustBook {
    /// An in-memory book.
    #[must_use]
    pub fn in_memory(config: TrustConfig) -> Self {
        TrustBook {
            config,
            entries: RwLock::new(HashMap::new()),
            path: None,
        }
    }

    /// Opens (or starts) the book persisted as `dir/trust.json`.
    ///
    /// # Errors
    /// An unreadable or corrupt file (fail closed: never silently reset scores).
    pub fn open(dir: &Path, config: TrustConfig) -> Result<Self, IdentityError> {
        let path = dir.join(TRUST_FILE);
        let bad = |reason: String| IdentityError::KeyFile {
            path: path.clone(),
            reason,
        };
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let file: TrustFile =
                    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
                if file.version != 1 {
                    return Err(bad(format!("unsupported version {}", file.version)));
                }
                if file
                    .agents
                    .values()
                    .any(|e| !(0.0..=MAX_SCORE).contains(&e.score))
                {
                    return Err(bad("score out of range".into()));
                }
                file.agents
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(bad(e.to_string())),
        };
        Ok(TrustBook {
            config,
            entries: RwLock::new(entries),
            path: Some(path),
        })
    }

    /// The formula's parameters.
    #[must_use]
    pub fn config(&self) -> &TrustConfig {
        &self.config
    }

    /// The agent's score at `now` (the baseline for an unknown agent).
    ///
    /// # Errors
    /// A poisoned lock.
    pub fn score(&self, agent: &str, now: u64) -> Result<f64, IdentityError> {
        let entries = self.entries.read().map_err(|_| poisoned())?;
        Ok(entries.get(agent).map_or(self.config.baseline, |e| {
            self.config.decayed(e.score, e.at, now)
        }))
    }

    /// The agent's tier at `now`.
    ///
    /// # Errors
    /// A poisoned lock.
    pub fn tier(&self, agent: &str, now: u64) -> Result<Tier, IdentityError> {
        self.score(agent, now).map(Tier::of)
    }

    /// Records a signal for `agent` at `now`. A penalty also reaches its
    /// `delegators` (nearest first), scaled by `propagation^k` for the k-th,
    /// at most `propagation_depth` of them; rewards do not propagate.
    /// Returns the agent's new score.
    ///
    /// # Errors
    /// A poisoned lock.
    pub fn record(
        &self,
        agent: &str,
        signal: Signal,
        delegators: &[&str],
        now: u64,
    ) -> Result<f64, IdentityError> {
        let w = self.config.weight(signal);
        let mut entries = self.entries.write().map_err(|_| poisoned())?;
        let new = self.bump(&mut entries, agent, w, now);
        if w < 0.0 {
            let mut scale = 1.0;
            for d in delegators.iter().take(self.config.propagation_depth) {
                scale *= self.config.propagation;
                self.bump(&mut entries, d, w * scale, now);
            }
        }
        Ok(new)
    }

    fn bump(&self, entries: &mut HashMap<String, Entry>, agent: &str, w: f64, now: u64) -> f64 {
        let current = entries.get(agent).map_or(self.config.baseline, |e| {
            self.config.decayed(e.score, e.at, now)
        });
        let score = TrustConfig::apply(current, w);
        entries.insert(agent.to_owned(), Entry { score, at: now });
        score
    }

    /// Sets a score (an operator's decision), anchored at `now`.
    ///
    /// # Errors
    /// A score outside 0–1000, a poisoned lock.
    pub fn set(&self, agent: &str, score: f64, now: u64) -> Result<(), IdentityError> {
        if !(0.0..=MAX_SCORE).contains(&score) {
            return Err(IdentityError::malformed(
                "trust score must be within 0..=1000",
            ));
        }
        self.entries
            .write()
            .map_err(|_| poisoned())?
            .insert(agent.to_owned(), Entry { score, at: now });
        Ok(())
    }

    /// Every known agent with its score and tier at `now`, sorted by agent.
    ///
    /// # Errors
    /// A poisoned lock.
    pub fn list(&self, now: u64) -> Result<Vec<(String, f64, Tier)>, IdentityError> {
        let entries = self.entries.read().map_err(|_| poisoned())?;
        let mut out: Vec<_> = entries
            .iter()
            .map(|(a, e)| {
                let s = self.config.decayed(e.score, e.at, now);
                (a.clone(), s, Tier::of(s))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Writes the book to its file (atomically: temp file, fsync, rename).
    /// A no-op for an in-memory book.
    ///
    /// # Errors
    /// I/O failures.
    pub fn save(&self) -> Result<(), IdentityError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bad = |e: std::io::Error| IdentityError::KeyFile {
            path: path.clone(),
            reason: e.to_string(),
        };
        let file = TrustFile {
            version: 1,
            agents: self.entries.read().map_err(|_| poisoned())?.clone(),
        };
        let text = serde_json::to_vec_pretty(&file).map_err(IdentityError::malformed)?;
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(bad)?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(bad)?;
        std::fs::rename(&tmp, path).map_err(bad)
    }
}

fn poisoned() -> IdentityError {
    IdentityError::Internal("trust book lock poisoned".into())
}
