//! The verifier a kernel consults per action: trust anchors, revocations,
//! signed invocation envelopes, delegation chains, session credentials and
//! call budgets.

use dashmap::DashMap;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use warden_core::Point;

use crate::delegation::{ChainCache, ChainLimits};
use crate::did::{Did, truncate};
use crate::jws::{EnvelopeVerifier, Validation};
use crate::key::{Rotation, verify_rotation};
use crate::trust::{Tier, TrustBook};
use crate::{IdentityError, Scope, b64, error::random};

/// Prefix of a session credential.
pub const SESSION_PREFIX: &str = "wsc1.";

/// Settings of a [`Gate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
    /// The `aud` envelopes and handshake responses must carry (e.g. the
    /// sidecar's own did:key).
    pub audience: String,
    /// Clock skew tolerated on every time check, seconds.
    pub skew_secs: u64,
    /// Longest accepted envelope lifetime (`exp - iat`), seconds.
    pub max_envelope_lifetime_secs: u64,
    /// Lifetime of a session credential, seconds (never beyond its chain).
    pub session_ttl_secs: u64,
    /// Most links in a delegation chain.
    pub max_depth: usize,
    /// Replay cache capacity (unexpired envelopes).
    pub replay_capacity: usize,
    /// Verified-chain cache capacity.
    pub chain_cache_capacity: usize,
    /// Most live sessions.
    pub session_capacity: usize,
}

impl GateConfig {
    /// Defaults: 30 s skew, 5-minute envelopes, 15-minute sessions, depth 8,
    /// 1 Mi replay entries, 64 Ki chains, 64 Ki sessions.
    #[must_use]
    pub fn new(audience: impl Into<String>) -> Self {
        GateConfig {
            audience: audience.into(),
            skew_secs: 30,
            max_envelope_lifetime_secs: 300,
            session_ttl_secs: 900,
            max_depth: 8,
            replay_capacity: 1 << 20,
            chain_cache_capacity: 1 << 16,
            session_capacity: 1 << 16,
        }
    }
}

/// What an action asks for, as the gate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The acting agent (must be the credential's did:key).
    pub agent: &'a str,
    /// The intervention point.
    pub point: Point,
    /// The tool, if any.
    pub tool: Option<&'a str>,
}

/// What an invocation envelope's payload must say: the action it authorises.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Invocation {
    point: Point,
    #[serde(default)]
    tool: Option<String>,
}

/// The payload of an invocation envelope for this action.
#[must_use]
pub fn invocation_payload(point: Point, tool: Option<&str>) -> Value {
    serde_json::json!({ "point": point, "tool": tool })
}

/// The authority a signer acts with.
#[derive(Debug, Clone)]
struct Authority {
    scope: Arc<Scope>,
    budgets: Arc<[([u8; 32], u64)]>,
    issuers: Arc<[String]>,
    expires: u64,
}

struct Session {
    secret: [u8; 16],
    agent: String,
    authority: Authority,
    expires: u64,
}

/// A session credential issued after a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionGrant {
    /// The opaque credential (`wsc1.` + 43 characters): a bearer secret.
    pub credential: String,
    /// The authenticated agent.
    pub agent: Did,
    /// When it stops being accepted (seconds since the epoch).
    pub expires: u64,
}

/// Verifies credentials for actions. `Send + Sync`; share it with `Arc`.
pub struct Gate {
    config: GateConfig,
    anchors: RwLock<HashMap<String, Scope>>,
    revoked: RwLock<HashSet<String>>,
    envelopes: EnvelopeVerifier,
    chains: ChainCache,
    sessions: DashMap<[u8; 16], Arc<Session>, IdHash>,
    budgets: DashMap<[u8; 32], (AtomicU64, u64)>,
    /// Trust scores and the lowest tier admitted.
    trust: Option<(Arc<TrustBook>, Tier)>,
    /// Each agent's delegators, nearest first, from its latest chain (for
    /// propagating trust penalties).
    delegators: DashMap<String, Arc<[String]>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("audience", &self.config.audience)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate with no trust anchors (everything is refused until some are added).
    #[must_use]
    pub fn new(config: GateConfig) -> Self {
        let validation = Validation {
            audiences: vec![config.audience.clone()],
            skew_secs: config.skew_secs,
            max_lifetime_secs: config.max_envelope_lifetime_secs,
        };
        let limits = ChainLimits {
            max_depth: config.max_depth,
            skew_secs: config.skew_secs,
        };
        Gate {
            envelopes: EnvelopeVerifier::new(validation, config.replay_capacity),
            chains: ChainCache::new(limits, config.chain_cache_capacity),
            anchors: RwLock::new(HashMap::new()),
            revoked: RwLock::new(HashSet::new()),
            sessions: DashMap::with_hasher(IdHash),
            budgets: DashMap::new(),
            trust: None,
            delegators: DashMap::new(),
            config,
        }
    }

    /// Also refuses agents whose trust tier (in `book`, at decision time) is
    /// below `min_tier` (`identity:trust`).
    #[must_use]
    pub fn with_trust(mut self, book: Arc<TrustBook>, min_tier: Tier) -> Self {
        self.trust = Some((book, min_tier));
        self
    }

    /// The trust book, if any.
    #[must_use]
    pub fn trust(&self) -> Option<&Arc<TrustBook>> {
        self.trust.as_ref().map(|(b, _)| b)
    }

    /// The agent's delegators, nearest first, as of the last chain it used.
    #[must_use]
    pub fn delegators(&self, agent: &str) -> Arc<[String]> {
        self.delegators
            .get(agent)
            .map_or_else(|| Arc::from(Vec::new()), |d| Arc::clone(&d))
    }

    fn check_trust(&self, agent: &str, now: u64) -> Result<(), IdentityError> {
        let Some((book, min)) = &self.trust else {
            return Ok(());
        };
        let score = book.score(agent, now)?;
        let tier = Tier::of(score);
        if tier < *min {
            return Err(IdentityError::Trust(format!(
                "{} has trust {score:.0} ({tier}), below the required {min}",
                truncate(agent)
            )));
        }
        Ok(())
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// Trusts `did` to act — and to delegate — within `scope`.
    ///
    /// # Errors
    /// A poisoned lock.
    pub fn add_anchor(&self, did: &Did, scope: Scope) -> Result<(), IdentityError> {
        write(&self.anchors)?.insert(did.to_string(), scope);
        Ok(())
    }

    /// Revokes a key: it can no longer sign envelopes, open sessions or
    /// appear anywhere in a delegation chain. Its live sessions and those
    /// whose chain runs through it end now.
    ///
    /// # Errors
    /// A poisoned lock.
    pub fn revoke(&self, did: &Did) -> Result<(), IdentityError> {
        write(&self.revoked)?.insert(did.to_string());
        let d = did.as_str();
        self.sessions
            .retain(|_, s| s.agent != d && !s.authority.issuers.iter().any(|i| i == d));
        self.chains.clear();
        Ok(())
    }

    /// Applies a verified rotation statement: `new` takes over `old`'s
    /// anchor scope (if it had one) and `old` is revoked.
    ///
    /// # Errors
    /// As [`verify_rotation`], or if `old` is already revoked.
    pub fn rotate(&self, statement: &str, old: &Did, new: &Did) -> Result<Rotation, IdentityError> {
        let rotation = verify_rotation(statement, old, new)?;
        if read(&self.revoked)?.contains(old.as_str()) {
            return Err(IdentityError::Revoked(old.to_string()));
        }
        let scope = read(&self.anchors)?.get(old.as_str()).cloned();
        if let Some(scope) = scope {
            let mut anchors = write(&self.anchors)?;
            anchors.remove(old.as_str());
            anchors.insert(new.to_string(), scope);
        }
        self.revoke(old)?;
        Ok(rotation)
    }

    /// Checks `credential` for `request` at `now`: a session credential
    /// (`wsc1.…`, a lookup) or a signed invocation envelope (signature,
    /// audience, time, replay, binding to the action, authority).
    ///
    /// # Errors
    /// The first failed check; [`IdentityError::reason`] names it.
    pub fn authenticate(
        &self,
        credential: &str,
        request: &Request<'_>,
        now: u64,
    ) -> Result<(), IdentityError> {
        if let Some(body) = credential.strip_prefix(SESSION_PREFIX) {
            return self.check_session(body, request, now);
        }
        let (signer, claims) = self.envelopes.verify(credential, now)?;
        if signer.as_str() != request.agent {
            return Err(IdentityError::AgentMismatch {
                credential: signer.to_string(),
                agent: truncate(request.agent).to_owned(),
            });
        }
        let invocation: Invocation = claims
            .payload
            .clone()
            .ok_or_else(|| IdentityError::Binding("envelope has no payload".into()))
            .and_then(|p| {
                serde_json::from_value(p)
                    .map_err(|e| IdentityError::Binding(format!("payload: {e}")))
            })?;
        if invocation.point != request.point || invocation.tool.as_deref() != request.tool {
            return Err(IdentityError::Binding(format!(
                "signed for {} {:?}, used for {} {:?}",
                invocation.point, invocation.tool, request.point, request.tool
            )));
        }
        let authority = self.authority(&signer, &claims.prf, now)?;
        permit(&authority.scope, request)?;
        self.check_trust(request.agent, now)?;
        self.charge(&authority, now)
    }

    fn check_session(
        &self,
        body: &str,
        request: &Request<'_>,
        now: u64,
    ) -> Result<(), IdentityError> {
        let raw = b64::decode_array::<32>(body, "session credential")
            .map_err(|_| IdentityError::Session("malformed".into()))?;
        let (id, secret) = raw.split_at(16);
        let id: [u8; 16] = id
            .try_into()
            .map_err(|_| IdentityError::Session("malformed".into()))?;
        let expired = {
            // Everything under the shard's read guard: no Arc traffic per call.
            let Some(session) = self.sessions.get(&id) else {
                return Err(IdentityError::Session("unknown, ended or revoked".into()));
            };
            if !ct_eq(&session.secret, secret) {
                return Err(IdentityError::Session("unknown, ended or revoked".into()));
            }
            if now < session.expires {
                if session.agent != request.agent {
                    return Err(IdentityError::AgentMismatch {
                        credential: session.agent.clone(),
                        agent: truncate(request.agent).to_owned(),
                    });
                }
                permit(&session.authority.scope, request)?;
                self.check_trust(request.agent, now)?;
                return self.charge(&session.authority, now);
            }
            session.expires
        };
        self.sessions.remove(&id);
        Err(IdentityError::Expired { exp: expired, now })
    }

    /// Server side of a handshake: `response` must be an envelope from the
    /// agent to this gate's audience whose payload is exactly
    /// `{"nonce": <the challenge>}`, optionally with the agent's delegation
    /// token as `prf`. Issues a session credential bound to the agent and
    /// its authority, valid for the session TTL (never beyond its chain).
    ///
    /// # Errors
    /// Any envelope or authority failure; [`IdentityError::Handshake`] for a wrong nonce.
    pub fn open_session(
        &self,
        response: &str,
        nonce: &str,
        now: u64,
    ) -> Result<SessionGrant, IdentityError> {
        let (signer, claims) = self.envelopes.verify(response, now)?;
        if claims.payload != Some(serde_json::json!({ "nonce": nonce })) {
            return Err(IdentityError::Handshake(
                "response does not answer this challenge".into(),
            ));
        }
        let authority = self.authority(&signer, &claims.prf, now)?;
        self.check_trust(signer.as_str(), now)?;
        if self.sessions.len() >= self.config.session_capacity {
            self.sessions.retain(|_, s| s.expires > now);
            if self.sessions.len() >= self.config.session_capacity {
                return Err(IdentityError::Session("too many live sessions".into()));
            }
        }
        let raw = random::<32>()?;
        let (id, secret) = raw.split_at(16);
        let id: [u8; 16] = id
            .try_into()
            .map_err(|_| IdentityError::Internal("split".into()))?;
        let secret: [u8; 16] = secret
            .try_into()
            .map_err(|_| IdentityError::Internal("split".into()))?;
        let expires = now
            .saturating_add(self.config.session_ttl_secs)
            .min(authority.expires);
        self.sessions.insert(
            id,
            Arc::new(Session {
                secret,
                agent: signer.to_string(),
                authority,
                expires,
            }),
        );
        Ok(SessionGrant {
            credential: format!("{SESSION_PREFIX}{}", b64::encode(&raw)),
            agent: signer,
            expires,
        })
    }

    /// Ends a session early.
    pub fn end_session(&self, credential: &str) {
        if let Some(raw) = credential
            .strip_prefix(SESSION_PREFIX)
            .and_then(|b| b64::decode_array::<32>(b, "session").ok())
            && let Ok(id) = <[u8; 16]>::try_from(&raw[..16])
        {
            self.sessions.remove(&id);
        }
    }

    /// Live sessions.
    #[must_use]
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The authority `signer` acts with: its anchor scope, or the scope at
    /// the end of the delegation chain in `prf`, whose root must be an anchor
    /// and whose every key must be unrevoked.
    fn authority(
        &self,
        signer: &Did,
        prf: &[String],
        now: u64,
    ) -> Result<Authority, IdentityError> {
        let revoked = read(&self.revoked)?;
        if revoked.contains(signer.as_str()) {
            return Err(IdentityError::Revoked(signer.to_string()));
        }
        let anchors = read(&self.anchors)?;
        match prf {
            [] => {
                let scope = anchors
                    .get(signer.as_str())
                    .ok_or_else(|| IdentityError::UntrustedRoot(signer.to_string()))?;
                Ok(Authority {
                    scope: Arc::new(scope.clone()),
                    budgets: Arc::from(Vec::new()),
                    issuers: Arc::from(Vec::new()),
                    expires: u64::MAX,
                })
            }
            [token] => {
                let chain = self.chains.get_or_verify(token, now)?;
                if chain.holder != *signer {
                    return Err(IdentityError::Chain(format!(
                        "the chain delegates to {}, not to the signer {signer}",
                        chain.holder
                    )));
                }
                if let Some(bad) = chain.issuers.iter().find(|d| revoked.contains(d.as_str())) {
                    return Err(IdentityError::Revoked(bad.to_string()));
                }
                let anchor = anchors
                    .get(chain.root.as_str())
                    .ok_or_else(|| IdentityError::UntrustedRoot(chain.root.to_string()))?;
                chain.root_scope.check_within(anchor)?;
                if self.delegators.len() >= self.config.session_capacity {
                    self.delegators.clear();
                }
                self.delegators.insert(
                    signer.to_string(),
                    chain.issuers.iter().rev().map(Did::to_string).collect(),
                );
                Ok(Authority {
                    scope: Arc::new(chain.scope.clone()),
                    budgets: Arc::from(chain.budgets.clone()),
                    issuers: chain.issuers.iter().map(Did::to_string).collect(),
                    expires: chain.expires,
                })
            }
            _ => Err(IdentityError::Chain("at most one proof".into())),
        }
    }

    /// Counts one call against every budgeted link of the chain.
    fn charge(&self, authority: &Authority, now: u64) -> Result<(), IdentityError> {
        if authority.budgets.is_empty() {
            return Ok(());
        }
        if self.budgets.len() >= self.config.chain_cache_capacity {
            let skew = self.config.skew_secs;
            self.budgets
                .retain(|_, (_, exp)| exp.saturating_add(skew) > now);
        }
        for (hash, limit) in authority.budgets.iter() {
            let entry = self
                .budgets
                .entry(*hash)
                .or_insert_with(|| (AtomicU64::new(0), authority.expires));
            let used = entry.0.fetch_add(1, Ordering::Relaxed).saturating_add(1);
            if used > *limit {
                return Err(IdentityError::Budget(format!(
                    "{limit} calls (link {})",
                    &hex::encode(hash)[..12]
                )));
            }
        }
        Ok(())
    }
}

fn permit(scope: &Scope, request: &Request<'_>) -> Result<(), IdentityError> {
    if scope.permits(request.point, request.tool) {
        Ok(())
    } else {
        Err(IdentityError::Scope(format!(
            "{} at {} is not delegated",
            request.tool.map_or("(no tool)", truncate),
            request.point
        )))
    }
}

/// Constant-time equality, so a guessed session secret leaks no prefix length.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn read<T>(lock: &RwLock<T>) -> Result<std::sync::RwLockReadGuard<'_, T>, IdentityError> {
    lock.read()
        .map_err(|_| IdentityError::Internal("gate lock poisoned".into()))
}

fn write<T>(lock: &RwLock<T>) -> Result<std::sync::RwLockWriteGuard<'_, T>, IdentityError> {
    lock.write()
        .map_err(|_| IdentityError::Internal("gate lock poisoned".into()))
}

/// Session ids are 128 random bits from the OS: their first 64 bits are
/// already a uniform hash. Lookups of attacker-chosen ids never insert, so
/// this cannot be used to build collision chains.
#[derive(Debug, Clone, Copy, Default)]
struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

#[derive(Debug, Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Mixes in everything written (the array's bytes; also any length prefix).
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
    fn write_usize(&mut self, _len: usize) {
        // The length of a fixed-size id carries no information.
    }
}
