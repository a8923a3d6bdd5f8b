//! Warden agent identity.
//!
//! - [`Identity`] / [`Did`]: Ed25519 keys named by `did:key`, DID documents,
//!   JWK import/export, key files (mode 0600), [rotation statements](verify_rotation).
//! - [`jws`]: strict compact JWS/JWT with EdDSA (RFC 7515/7519/8037) and an
//!   [`EnvelopeVerifier`] with clock skew and a bounded [`ReplayCache`].
//! - [`delegation`]: UCAN-like chains whose scope can only narrow.
//! - [`Gate`]: what a kernel consults per action — signed invocation
//!   envelopes, delegation chains, session credentials from a
//!   [`handshake`], revocation, call budgets and a minimum [`Tier`].
//! - [`trust`]: trust scores 0–1000 in five tiers (`docs/trust.md`).
//!
//! See `docs/identity.md`.

mod b64;
pub mod delegation;
mod did;
mod error;
pub mod gate;
pub mod handshake;
pub mod jws;
mod key;
mod replay;
mod scope;
pub mod trust;
#[cfg(feature = "postgres")]
pub mod trust_pg;

pub use delegation::{ChainCache, ChainLimits, VerifiedChain, delegate, verify_chain};
pub use did::{Did, Jwk};
pub use error::{IdentityError, now_secs};
pub use gate::{Gate, GateConfig, Request, SessionGrant, invocation_payload};
pub use jws::{Claims, EnvelopeVerifier, Validation};
pub use key::{Identity, ROTATION_TYPE, Rotation, verify_rotation};
pub use replay::ReplayCache;
pub use scope::{Glob, PointSet, Scope};
pub use trust::{FileStore, Signal, Tier, TrustBook, TrustConfig, TrustStore};
