//! Caller identity for the decision API: the sidecar's own did:key, trust
//! anchors from `warden.yaml`, and the challenge–response handshake over
//! HTTP that gives an agent a short-lived session credential.
//!
//! With an `identity:` block configured, the kernel runs the identity stage:
//! every `/v1/decide` must carry a credential (in the Action's `credential`
//! field or as `Authorization: Bearer wsc1…`) naming the action's agent, or
//! the answer is a deny with an `identity:` reason. The handshake is the
//! transport-neutral one of `warden_identity::handshake` in two requests:
//! `POST /v1/identity/challenge` then `POST /v1/identity/session`.

use dashmap::DashMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_core::Point;
use warden_identity::handshake::{PendingChallenge, issue_challenge, response_nonce};
use warden_identity::{
    Did, Gate, GateConfig, Glob, Identity, IdentityError, PointSet, Scope, SessionGrant, now_secs,
};

/// Challenges waiting for an answer, at most (a flood of hellos cannot grow memory).
pub const MAX_PENDING_CHALLENGES: usize = 65_536;

/// One trust anchor: a did:key allowed to act (and to delegate) within a scope.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorConfig {
    /// The agent's (or delegating operator's) did:key.
    pub did: String,
    /// Tool globs it may call (default: every tool).
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// Intervention points (default: every point).
    #[serde(default)]
    pub points: Option<Vec<Point>>,
    /// Most calls under this anchor (default: unlimited).
    #[serde(default)]
    pub budget: Option<u64>,
}

/// The `identity:` block of `warden.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The sidecar's key file (default `<data_dir>/identity.key`, generated
    /// with mode 0600 on first start).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Who may act.
    pub anchors: Vec<AnchorConfig>,
    /// Session credential lifetime in seconds (default 900).
    #[serde(default)]
    pub session_ttl_secs: Option<u64>,
    /// Clock skew tolerated on envelopes, seconds (default 30).
    #[serde(default)]
    pub skew_secs: Option<u64>,
}

/// Identity could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum IdentitySetupError {
    /// A key or anchor problem, naming the field.
    #[error("identity.{field}: {source}")]
    Invalid {
        /// e.g. `anchors[0].did`.
        field: String,
        /// Why.
        source: IdentityError,
    },
}

/// The sidecar's identity, the gate the kernel's identity stage consults,
/// and the challenges in flight.
pub struct IdentityService {
    server: Identity,
    gate: Arc<Gate>,
    pending: DashMap<String, PendingChallenge>,
}

impl std::fmt::Debug for IdentityService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityService")
            .field("did", &self.server.did().as_str())
            .finish_non_exhaustive()
    }
}

fn invalid(field: impl Into<String>) -> impl FnOnce(IdentityError) -> IdentitySetupError {
    let field = field.into();
    move |source| IdentitySetupError::Invalid { field, source }
}

fn load_or_create(path: &Path) -> Result<Identity, IdentitySetupError> {
    if path.exists() {
        return Identity::load(path).map_err(invalid("key"));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| IdentityError::KeyFile {
                path: parent.to_path_buf(),
                reason: e.to_string(),
            })
            .map_err(invalid("key"))?;
    }
    let id = Identity::generate().map_err(invalid("key"))?;
    id.save(path).map_err(invalid("key"))?;
    Ok(id)
}

impl IdentityService {
    /// Loads (or creates) the sidecar's key and builds the gate from the anchors.
    pub fn open(config: &IdentityConfig, data_dir: &Path) -> Result<Self, IdentitySetupError> {
        let key = config
            .key
            .clone()
            .unwrap_or_else(|| data_dir.join("identity.key"));
        let server = load_or_create(&key)?;
        let mut gate_config = GateConfig::new(server.did().as_str());
        if let Some(ttl) = config.session_ttl_secs {
            gate_config.session_ttl_secs = ttl;
        }
        if let Some(skew) = config.skew_secs {
            gate_config.skew_secs = skew;
        }
        let gate = Gate::new(gate_config);
        for (i, a) in config.anchors.iter().enumerate() {
            let did = Did::parse(&a.did).map_err(invalid(format!("anchors[{i}].did")))?;
            let tools = match &a.tools {
                None => vec![Glob::new("*").map_err(invalid(format!("anchors[{i}].tools")))?],
                Some(t) => t
                    .iter()
                    .map(|g| Glob::new(g.as_str()))
                    .collect::<Result<_, _>>()
                    .map_err(invalid(format!("anchors[{i}].tools")))?,
            };
            let scope = Scope {
                tools,
                points: a.points.as_deref().map_or(PointSet::ALL, PointSet::of),
                budget: a.budget,
            };
            scope.validate().map_err(invalid(format!("anchors[{i}]")))?;
            gate.add_anchor(&did, scope)
                .map_err(invalid(format!("anchors[{i}]")))?;
        }
        Ok(IdentityService {
            server,
            gate: Arc::new(gate),
            pending: DashMap::new(),
        })
    }

    /// The gate (shared with the kernel's identity stage).
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// The sidecar's did:key (the audience of responses; agents may pin it).
    pub fn did(&self) -> &Did {
        self.server.did()
    }

    /// Step 1: a challenge for the agent that says hello.
    pub fn challenge(&self, hello: &str) -> Result<String, IdentityError> {
        let agent = Did::parse(hello)?;
        let now = now_secs();
        if self.pending.len() >= MAX_PENDING_CHALLENGES {
            self.pending.retain(|_, p| !p.expired(now));
            if self.pending.len() >= MAX_PENDING_CHALLENGES {
                return Err(IdentityError::Handshake(
                    "too many unanswered challenges; retry later".to_owned(),
                ));
            }
        }
        let (challenge, pending) = issue_challenge(&self.server, &agent, now)?;
        self.pending.insert(pending.nonce().to_owned(), pending);
        Ok(challenge)
    }

    /// Step 2: the signed response answering a pending challenge → a session.
    /// Each challenge can be answered once, right or wrong.
    pub fn session(&self, response: &str) -> Result<SessionGrant, IdentityError> {
        let nonce = response_nonce(response)?;
        let (_, pending) = self.pending.remove(&nonce).ok_or_else(|| {
            IdentityError::Handshake(
                "no pending challenge with this nonce (unknown, answered or expired)".to_owned(),
            )
        })?;
        pending.answer(&self.gate, response, now_secs())
    }
}
