//! Compact JWS (RFC 7515) / JWT (RFC 7519) signed with EdDSA (RFC 8037),
//! verified strictly: the header is exactly `alg: EdDSA` plus `kid` (the
//! signer's did:key) and optionally `typ`; anything else is refused.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::did::{Did, truncate};
use crate::key::Identity;
use crate::replay::ReplayCache;
use crate::{IdentityError, b64, error::random};

/// Largest token accepted, in bytes (a delegation chain of the maximum
/// depth fits comfortably).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;
/// Longest accepted `jti`.
pub const MAX_JTI_LEN: usize = 128;
/// The JOSE `typ` Warden writes on envelopes and delegation tokens.
pub const JWT_TYPE: &str = "JWT";

/// The claims of an envelope or a delegation token. Unknown claims are
/// rejected, so a misspelt restriction can never be silently ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The signer's did:key (must equal the header `kid`).
    pub iss: String,
    /// The intended recipient: a service name, or the delegate's did:key.
    pub aud: String,
    /// Unique token id (nonce), the replay-cache key together with `iss`.
    pub jti: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expires at: not accepted at or after this time.
    pub exp: u64,
    /// Application payload (envelopes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Delegated capabilities (delegation tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<crate::Scope>,
    /// Proofs: the delegation token that authorises the signer (at most one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prf: Vec<String>,
}

impl Claims {
    /// Fresh claims from `identity` to `aud`, valid from `now` for `ttl_secs`,
    /// with a random 128-bit `jti`.
    ///
    /// # Errors
    /// No randomness.
    pub fn new(
        identity: &Identity,
        aud: impl Into<String>,
        ttl_secs: u64,
        now: u64,
    ) -> Result<Self, IdentityError> {
        Ok(Claims {
            iss: identity.did().to_string(),
            aud: aud.into(),
            jti: b64::encode(&random::<16>()?),
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl_secs),
            payload: None,
            cap: None,
            prf: Vec::new(),
        })
    }

    /// Sets the payload.
    #[must_use]
    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }

    /// Attaches a delegation token proving the signer's authority.
    #[must_use]
    pub fn with_proof(mut self, token: impl Into<String>) -> Self {
        self.prf = vec![token.into()];
        self
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

/// A token whose signature verified.
pub(crate) struct Decoded {
    pub(crate) signer: Did,
    pub(crate) typ: Option<String>,
    pub(crate) claims_json: Vec<u8>,
}

/// Signs `claims` (any JSON object) with a header of this `typ`.
pub(crate) fn sign_with_type<T: Serialize>(
    identity: &Identity,
    typ: &str,
    claims: &T,
) -> Result<String, IdentityError> {
    let header = Header {
        alg: "EdDSA".into(),
        kid: identity.did().to_string(),
        typ: Some(typ.to_owned()),
    };
    let header = serde_json::to_vec(&header).map_err(IdentityError::malformed)?;
    let claims = serde_json::to_vec(claims).map_err(IdentityError::malformed)?;
    let mut token = b64::encode(&header);
    token.push('.');
    token.push_str(&b64::encode(&claims));
    let signature = identity.sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64::encode(&signature));
    if token.len() > MAX_TOKEN_LEN {
        return Err(IdentityError::malformed(format!(
            "token would be {} bytes, over the {MAX_TOKEN_LEN}-byte limit",
            token.len()
        )));
    }
    Ok(token)
}

/// Signs claims as a compact JWS (`typ: JWT`). `claims.iss` must be the signer.
///
/// # Errors
/// [`IdentityError::Malformed`] when `iss` is not the signer or the token is too large.
pub fn sign(identity: &Identity, claims: &Claims) -> Result<String, IdentityError> {
    if claims.iss != identity.did().as_str() {
        return Err(IdentityError::malformed(
            "claims.iss must be the signer's did:key",
        ));
    }
    sign_with_type(identity, JWT_TYPE, claims)
}

/// Splits, decodes and verifies a compact JWS: size, exactly three
/// canonical base64url parts, a header of exactly `alg: EdDSA` + `kid`
/// (+ `typ`), and a strict Ed25519 signature by the `kid` key.
pub(crate) fn decode_verified(token: &str) -> Result<Decoded, IdentityError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(IdentityError::malformed(format!(
            "token is {} bytes, over the {MAX_TOKEN_LEN}-byte limit",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdentityError::malformed(
            "not a compact JWS (three dot-separated parts)",
        ));
    };
    let header_json = b64::decode(h, "JWS header")?;
    // First as a map, for precise reasons on the classic attacks.
    let map: serde_json::Map<String, Value> = serde_json::from_slice(&header_json)
        .map_err(|e| IdentityError::malformed(format!("JWS header: {e}")))?;
    if map.contains_key("crit") {
        return Err(IdentityError::Algorithm(
            "`crit` header parameters are not supported".into(),
        ));
    }
    match map.get("alg") {
        Some(Value::String(alg)) if alg == "EdDSA" => {}
        Some(other) => {
            return Err(IdentityError::Algorithm(format!(
                "alg {} is not accepted; only EdDSA",
                truncate(&other.to_string())
            )));
        }
        None => return Err(IdentityError::Algorithm("no alg".into())),
    }
    // Then strictly: unknown members (jwk, jku, x5u, b64, ...) and duplicates are errors.
    let header: Header = serde_json::from_slice(&header_json)
        .map_err(|e| IdentityError::Algorithm(format!("JWS header: {e}")))?;
    let signer = Did::parse(&header.kid)?;
    let signature = b64::decode_array::<64>(s, "JWS signature")?;
    let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
    signer
        .public_key()
        .verify_strict(
            signing_input,
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .map_err(|_| IdentityError::BadSignature(signer.to_string()))?;
    Ok(Decoded {
        signer,
        typ: header.typ,
        claims_json: b64::decode(p, "JWS payload")?,
    })
}

/// Verifies the signature and structure of a JWT (not its time, audience
/// or replay: see [`Validation`] and [`EnvelopeVerifier`]) and returns the
/// signer and claims.
///
/// # Errors
/// Malformed tokens, rejected headers, bad signatures, `iss` ≠ `kid`.
pub fn verify_signature(token: &str) -> Result<(Did, Claims), IdentityError> {
    let decoded = decode_verified(token)?;
    match decoded.typ.as_deref() {
        None | Some(JWT_TYPE) => {}
        Some(other) => {
            return Err(IdentityError::Algorithm(format!(
                "typ {:?} is not a JWT",
                truncate(other)
            )));
        }
    }
    let claims: Claims = serde_json::from_slice(&decoded.claims_json)
        .map_err(|e| IdentityError::malformed(format!("JWT claims: {e}")))?;
    if claims.iss != decoded.signer.as_str() {
        return Err(IdentityError::malformed("iss is not the signing key (kid)"));
    }
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(IdentityError::malformed(format!(
            "jti must be 1..={MAX_JTI_LEN} bytes"
        )));
    }
    if claims.exp < claims.nbf || claims.exp < claims.iat {
        return Err(IdentityError::malformed("exp before nbf or iat"));
    }
    Ok((decoded.signer, claims))
}

/// Time and audience rules for accepting a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// Accepted `aud` values (exact match).
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `nbf`, `iat` and `exp`, in seconds.
    pub skew_secs: u64,
    /// Longest accepted `exp - iat`; bounds how long a replay-cache entry lives.
    pub max_lifetime_secs: u64,
}

impl Validation {
    /// Accept `audience`, 30 s skew, 10-minute tokens.
    #[must_use]
    pub fn new(audience: impl Into<String>) -> Self {
        Validation {
            audiences: vec![audience.into()],
            skew_secs: 30,
            max_lifetime_secs: 600,
        }
    }

    /// Checks `nbf`, `iat`, `exp` and the lifetime bound against `now`.
    ///
    /// # Errors
    /// [`IdentityError::NotYetValid`], [`IdentityError::Expired`] or
    /// [`IdentityError::Malformed`] (lifetime too long).
    pub fn check_time(&self, claims: &Claims, now: u64) -> Result<(), IdentityError> {
        check_window(claims, now, self.skew_secs)?;
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime_secs {
            return Err(IdentityError::malformed(format!(
                "lifetime {} s exceeds the accepted {} s",
                claims.exp.saturating_sub(claims.iat),
                self.max_lifetime_secs
            )));
        }
        Ok(())
    }

    /// Checks `aud`.
    ///
    /// # Errors
    /// [`IdentityError::Audience`].
    pub fn check_audience(&self, claims: &Claims) -> Result<(), IdentityError> {
        if self.audiences.contains(&claims.aud) {
            Ok(())
        } else {
            Err(IdentityError::Audience(truncate(&claims.aud).to_owned()))
        }
    }
}

/// `nbf`/`iat`/`exp` against `now` with `skew`.
pub(crate) fn check_window(claims: &Claims, now: u64, skew: u64) -> Result<(), IdentityError> {
    // A token issued in the future is as not-yet-valid as one with a future nbf.
    check_bounds(claims.nbf.max(claims.iat), claims.exp, now, skew)
}

/// `not_before <= now + skew` and `now < expires + skew`.
pub(crate) fn check_bounds(
    not_before: u64,
    expires: u64,
    now: u64,
    skew: u64,
) -> Result<(), IdentityError> {
    if now.saturating_add(skew) < not_before {
        return Err(IdentityError::NotYetValid {
            nbf: not_before,
            now,
        });
    }
    if now >= expires.saturating_add(skew) {
        return Err(IdentityError::Expired { exp: expires, now });
    }
    Ok(())
}

/// Verifies one-shot signed envelopes: signature, header, audience, time,
/// and replay (each `(iss, jti)` is accepted once).
#[derive(Debug)]
pub struct EnvelopeVerifier {
    validation: Validation,
    replay: ReplayCache,
}

impl EnvelopeVerifier {
    /// A verifier with this validation and a replay cache of `replay_capacity` entries.
    #[must_use]
    pub fn new(validation: Validation, replay_capacity: usize) -> Self {
        EnvelopeVerifier {
            validation,
            replay: ReplayCache::new(replay_capacity),
        }
    }

    /// The validation rules.
    #[must_use]
    pub fn validation(&self) -> &Validation {
        &self.validation
    }

    /// Verifies `token` at `now`. The replay check comes last, so tokens that
    /// fail any other check never occupy the cache. Delegation tokens (with
    /// `cap`) are not envelopes and are refused.
    ///
    /// # Errors
    /// The first failed check.
    pub fn verify(&self, token: &str, now: u64) -> Result<(Did, Claims), IdentityError> {
        let (signer, claims) = verify_signature(token)?;
        if claims.cap.is_some() {
            return Err(IdentityError::malformed(
                "a delegation token is not an envelope",
            ));
        }
        self.validation.check_audience(&claims)?;
        self.validation.check_time(&claims, now)?;
        self.replay.check_and_insert(
            &claims.iss,
            &claims.jti,
            claims.exp.saturating_add(self.validation.skew_secs),
            now,
        )?;
        Ok((signer, claims))
    }

    /// Verifies many envelopes at `now` (e.g. a queue drained at once), one
    /// by one in order: the same answers as calling [`Self::verify`] on each
    /// (no batched signature verification).
    #[must_use]
    pub fn verify_batch(
        &self,
        tokens: &[&str],
        now: u64,
    ) -> Vec<Result<(Did, Claims), IdentityError>> {
        tokens.iter().map(|t| self.verify(t, now)).collect()
    }
}
