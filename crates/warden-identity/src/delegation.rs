//! Delegation chains: UCAN-like JWTs (issuer = parent DID, audience = child
//! DID, `cap` = the delegated [`Scope`], `prf` = the parent's own token),
//! valid only if every link is signed by the holder of the previous one and
//! every scope and expiry is within its parent's.

use dashmap::DashMap;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

use crate::did::Did;
use crate::jws::{self, Claims, check_window, verify_signature};
use crate::key::Identity;
use crate::{IdentityError, Scope};

/// Bounds on chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainLimits {
    /// Most links in a chain (root token included).
    pub max_depth: usize,
    /// Clock skew tolerated on each link's `nbf`/`exp`.
    pub skew_secs: u64,
}

impl Default for ChainLimits {
    fn default() -> Self {
        ChainLimits {
            max_depth: 8,
            skew_secs: 30,
        }
    }
}

/// A chain whose every link verified, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedChain {
    /// The first issuer: whoever the verifier must trust.
    pub root: Did,
    /// The final audience: who may act under the chain.
    pub holder: Did,
    /// The root token's scope (checked against the root's own authority by the caller).
    pub root_scope: Scope,
    /// The final, narrowest scope.
    pub scope: Scope,
    /// Every issuer, root first (for revocation checks).
    pub issuers: Vec<Did>,
    /// Latest `nbf` of any link.
    pub not_before: u64,
    /// Earliest `exp` of any link.
    pub expires: u64,
    /// `(link hash, call budget)` of each link that limits calls, root first.
    pub budgets: Vec<([u8; 32], u64)>,
}

impl VerifiedChain {
    /// Number of links.
    #[must_use]
    pub fn depth(&self) -> usize {
        self.issuers.len()
    }

    /// Whether the chain is usable at `now` (cached chains are re-checked on every use).
    ///
    /// # Errors
    /// [`IdentityError::Expired`] or [`IdentityError::NotYetValid`].
    pub fn check_time(&self, now: u64, skew: u64) -> Result<(), IdentityError> {
        jws::check_bounds(self.not_before, self.expires, now, skew)
    }
}

/// SHA-256 of a token's text: the identity of a link (and, since a token
/// embeds its proofs, of the whole chain ending in it).
#[must_use]
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Issues a delegation token from `issuer` to `to` granting `scope` for
/// `ttl_secs`. With a `proof` (the issuer's own delegation token), refuses
/// anything wider than the proof: a glob, point or budget outside it, an
/// expiry after it, or a chain deeper than the limit.
///
/// # Errors
/// [`IdentityError::Scope`] for a widening, chain errors of the proof.
pub fn delegate(
    issuer: &Identity,
    to: &Did,
    scope: Scope,
    ttl_secs: u64,
    proof: Option<&str>,
    limits: &ChainLimits,
    now: u64,
) -> Result<String, IdentityError> {
    scope.validate()?;
    let mut claims = Claims::new(issuer, to.as_str(), ttl_secs, now)?;
    if let Some(proof) = proof {
        let parent = verify_chain(proof, limits, now)?;
        if parent.holder != *issuer.did() {
            return Err(IdentityError::Chain(format!(
                "the proof delegates to {}, not to the issuer {}",
                parent.holder,
                issuer.did()
            )));
        }
        scope.check_within(&parent.scope)?;
        if claims.exp > parent.expires {
            return Err(IdentityError::Scope(format!(
                "expiry {} is after the proof's {}",
                claims.exp, parent.expires
            )));
        }
        if parent.depth() >= limits.max_depth {
            return Err(IdentityError::Chain(format!(
                "the chain would be deeper than {}",
                limits.max_depth
            )));
        }
        claims = claims.with_proof(proof);
    }
    claims.cap = Some(scope);
    jws::sign(issuer, &claims)
}

/// Verifies a whole chain at `now`: every signature, every link's issuer
/// is the previous link's audience, every scope and expiry within its
/// parent's, every link currently valid, depth within the limit. Does not
/// decide whether the root is trusted (that is the caller's policy).
///
/// # Errors
/// The first failed check.
pub fn verify_chain(
    token: &str,
    limits: &ChainLimits,
    now: u64,
) -> Result<VerifiedChain, IdentityError> {
    // Leaf first, following `prf` down to the root.
    let mut links: Vec<([u8; 32], Claims)> = Vec::new();
    let mut current = token.to_owned();
    loop {
        if links.len() >= limits.max_depth {
            return Err(IdentityError::Chain(format!(
                "deeper than {} links",
                limits.max_depth
            )));
        }
        let (_, claims) = verify_signature(&current)?;
        if claims.cap.is_none() {
            return Err(IdentityError::Chain(
                "a link is not a delegation token (no `cap`)".into(),
            ));
        }
        if claims.payload.is_some() {
            return Err(IdentityError::Chain(
                "a delegation token carries no payload".into(),
            ));
        }
        if claims.prf.len() > 1 {
            return Err(IdentityError::Chain(
                "a link may have at most one proof".into(),
            ));
        }
        let next = claims.prf.first().cloned();
        links.push((token_hash(&current), claims));
        match next {
            Some(t) => current = t,
            None => break,
        }
    }
    links.reverse();
    let mut issuers = Vec::with_capacity(links.len());
    let mut budgets = Vec::new();
    let mut parent: Option<&Claims> = None;
    let (mut not_before, mut expires) = (0u64, u64::MAX);
    for (i, (hash, link)) in links.iter().enumerate() {
        let cap = link
            .cap
            .as_ref()
            .ok_or_else(|| IdentityError::Chain("missing cap".into()))?;
        cap.validate()?;
        Did::parse(&link.aud)
            .map_err(|e| IdentityError::Chain(format!("link {i} audience: {e}")))?;
        if let Some(p) = parent {
            if link.iss != p.aud {
                return Err(IdentityError::Chain(format!(
                    "link {i} is signed by {} but link {} delegated to {}",
                    link.iss,
                    i - 1,
                    p.aud
                )));
            }
            let pcap = p
                .cap
                .as_ref()
                .ok_or_else(|| IdentityError::Chain("missing cap".into()))?;
            cap.check_within(pcap)?;
            if link.exp > p.exp {
                return Err(IdentityError::Scope(format!(
                    "link {i} expires at {}, after its parent ({})",
                    link.exp, p.exp
                )));
            }
        }
        check_window(link, now, limits.skew_secs)?;
        issuers.push(Did::parse(&link.iss)?);
        if let Some(b) = cap.budget {
            budgets.push((*hash, b));
        }
        not_before = not_before.max(link.nbf);
        expires = expires.min(link.exp);
        parent = Some(link);
    }
    let (Some((_, root)), Some((_, leaf))) = (links.first(), links.last()) else {
        return Err(IdentityError::Chain("empty chain".into()));
    };
    let (Some(root_scope), Some(scope)) = (root.cap.clone(), leaf.cap.clone()) else {
        return Err(IdentityError::Chain("missing cap".into()));
    };
    Ok(VerifiedChain {
        root: Did::parse(&root.iss)?,
        holder: Did::parse(&leaf.aud)?,
        root_scope,
        scope,
        issuers,
        not_before,
        expires,
        budgets,
    })
}

/// Verified chains by hash of the leaf token (which embeds the whole chain),
/// so a chain is verified once and then only re-checked for time.
#[derive(Debug)]
pub struct ChainCache {
    map: DashMap<[u8; 32], Arc<VerifiedChain>>,
    capacity: usize,
    limits: ChainLimits,
}

impl ChainCache {
    /// A cache of up to `capacity` chains verified with `limits`.
    #[must_use]
    pub fn new(limits: ChainLimits, capacity: usize) -> Self {
        ChainCache {
            map: DashMap::new(),
            capacity,
            limits,
        }
    }

    /// The limits chains are verified with.
    #[must_use]
    pub fn limits(&self) -> &ChainLimits {
        &self.limits
    }

    /// The verified chain ending in `token`, from the cache (re-checked for
    /// time) or verified now and cached.
    ///
    /// # Errors
    /// As [`verify_chain`].
    pub fn get_or_verify(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Arc<VerifiedChain>, IdentityError> {
        let key = token_hash(token);
        let hit = self.map.get(&key).map(|c| Arc::clone(&c));
        if let Some(chain) = hit {
            chain.check_time(now, self.limits.skew_secs)?;
            return Ok(chain);
        }
        let chain = Arc::new(verify_chain(token, &self.limits, now)?);
        if self.map.len() >= self.capacity {
            let skew = self.limits.skew_secs;
            self.map.retain(|_, c| c.expires.saturating_add(skew) > now);
        }
        // A full cache of live chains just means verifying this one again next time.
        if self.map.len() < self.capacity {
            self.map.insert(key, Arc::clone(&chain));
        }
        Ok(chain)
    }

    /// Forgets every cached chain (e.g. after a revocation).
    pub fn clear(&self) {
        self.map.clear();
    }

    /// Chains held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none are held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
