//! One error type; every variant maps to a machine-readable `identity:*` reason.

use std::path::PathBuf;

/// Why an identity, token, chain or credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No credential was presented where one is required.
    #[error("no credential presented")]
    Missing,
    /// The input is not well-formed (encoding, JSON shape, sizes, DID syntax).
    #[error("malformed: {0}")]
    Malformed(String),
    /// A JOSE header other than exactly `alg: EdDSA` (no `none`, no HMAC, no `crit`).
    #[error("rejected header: {0}")]
    Algorithm(String),
    /// The signature does not verify under the signer's key.
    #[error("signature does not verify for {0}")]
    BadSignature(String),
    /// Past `exp` (beyond the allowed clock skew).
    #[error("expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp` (seconds since the epoch).
        exp: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// Before `nbf` or issued in the future (beyond the allowed clock skew).
    #[error("not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The token's `nbf` or `iat`.
        nbf: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// `aud` is not an audience this verifier accepts.
    #[error("audience {0:?} is not accepted here")]
    Audience(String),
    /// The `(iss, jti)` pair was already accepted once.
    #[error("token {0:?} was already used")]
    Replayed(String),
    /// The replay cache is full of unexpired entries: refusing rather than forgetting.
    #[error("replay cache is full ({0} unexpired entries)")]
    ReplayCacheFull(usize),
    /// The action or delegation is outside the granted scope.
    #[error("outside the delegated scope: {0}")]
    Scope(String),
    /// A signed envelope was made for another action (point or tool).
    #[error("envelope does not match the action: {0}")]
    Binding(String),
    /// A key in the chain (or the signer) is revoked.
    #[error("key {0} is revoked")]
    Revoked(String),
    /// A delegation chain is broken (wrong signer for a link, too deep, not a delegation).
    #[error("delegation chain: {0}")]
    Chain(String),
    /// The chain's root (or a bare signer) is not a configured trust anchor.
    #[error("{0} is not a trust anchor")]
    UntrustedRoot(String),
    /// The credential belongs to another agent than the action names.
    #[error("credential is for {credential}, but the action is by {agent}")]
    AgentMismatch {
        /// Whom the credential identifies.
        credential: String,
        /// The action's `agent`.
        agent: String,
    },
    /// An unknown, expired or revoked session credential.
    #[error("session credential: {0}")]
    Session(String),
    /// The agent's trust tier is below the required one.
    #[error("trust too low: {0}")]
    Trust(String),
    /// A delegation's call budget is used up.
    #[error("call budget of {0} exhausted")]
    Budget(String),
    /// A key file could not be read or written.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A private key file readable by group or others.
    #[error(
        "key file {path} has mode {mode:o}: readable by group or others; run `chmod 600` on it"
    )]
    KeyPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key rotation statement does not say exactly what was expected.
    #[error("rotation statement: {0}")]
    Rotation(String),
    /// The handshake failed (I/O, protocol, timing).
    #[error("handshake: {0}")]
    Handshake(String),
    /// No randomness or a poisoned lock: fail closed.
    #[error("internal: {0}")]
    Internal(String),
}

impl IdentityError {
    /// The reserved-style reason for a deny, e.g. `identity:bad_signature`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            IdentityError::Missing => "identity:missing",
            IdentityError::Malformed(_) => "identity:malformed",
            IdentityError::Algorithm(_) => "identity:algorithm",
            IdentityError::BadSignature(_) => "identity:bad_signature",
            IdentityError::Expired { .. } => "identity:expired",
            IdentityError::NotYetValid { .. } => "identity:not_yet_valid",
            IdentityError::Audience(_) => "identity:audience",
            IdentityError::Replayed(_) => "identity:replayed",
            IdentityError::ReplayCacheFull(_) => "identity:replay_cache_full",
            IdentityError::Scope(_) => "identity:scope",
            IdentityError::Binding(_) => "identity:binding",
            IdentityError::Revoked(_) => "identity:revoked",
            IdentityError::Chain(_) => "identity:chain",
            IdentityError::UntrustedRoot(_) => "identity:untrusted_root",
            IdentityError::AgentMismatch { .. } => "identity:agent_mismatch",
            IdentityError::Session(_) => "identity:session",
            IdentityError::Budget(_) => "identity:budget",
            IdentityError::Trust(_) => "identity:trust",
            IdentityError::KeyFile { .. } | IdentityError::KeyPermissions { .. } => {
                "identity:key_file"
            }
            IdentityError::Rotation(_) => "identity:rotation",
            IdentityError::Handshake(_) => "identity:handshake",
            IdentityError::Internal(_) => "identity:internal",
        }
    }

    pub(crate) fn malformed(what: impl std::fmt::Display) -> Self {
        IdentityError::Malformed(what.to_string())
    }
}

/// Seconds since the Unix epoch (0 if the clock is before 1970, which makes
/// every token look not-yet-valid rather than valid).
#[must_use]
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Fills `N` random bytes from the OS.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], IdentityError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out)
        .map_err(|e| IdentityError::Internal(format!("no randomness: {e}")))?;
    Ok(out)
}
