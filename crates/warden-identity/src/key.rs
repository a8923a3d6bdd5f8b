//! Private keys: generation, key files (a private JWK, mode 0600) and key
//! rotation statements.

use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::Path;

use crate::did::{Did, Jwk};
use crate::jws;
use crate::{IdentityError, b64, error::random};

/// Largest key file read: a private JWK is about 200 bytes.
const MAX_KEY_FILE: u64 = 4096;

/// An agent's private Ed25519 key and its did:key.
pub struct Identity {
    signing: SigningKey,
    did: Did,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "Identity({})", self.did)
    }
}

impl Identity {
    /// A fresh key from the OS random source.
    ///
    /// # Errors
    /// [`IdentityError::Internal`] when the OS has no randomness.
    pub fn generate() -> Result<Self, IdentityError> {
        Self::from_seed(&random::<32>()?)
    }

    /// The key with this 32-byte seed (RFC 8032 private key).
    ///
    /// # Errors
    /// Only if the derived public key were weak, which cannot happen for a
    /// correctly derived key; kept fallible so [`Did`] stays validated.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, IdentityError> {
        let signing = SigningKey::from_bytes(seed);
        let did = Did::from_key(signing.verifying_key())?;
        Ok(Identity { signing, did })
    }

    /// The did:key.
    #[must_use]
    pub fn did(&self) -> &Did {
        &self.did
    }

    /// Signs `message` (pure Ed25519).
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The private JWK (includes `d`; handle like the key itself).
    #[must_use]
    pub fn private_jwk(&self) -> Jwk {
        let mut jwk = self.did.jwk();
        jwk.d = Some(b64::encode(self.signing.as_bytes()));
        jwk
    }

    /// Imports a private JWK, checking that `x` is the public key of `d`.
    ///
    /// # Errors
    /// A JWK without `d`, of another key type, or with inconsistent halves.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, IdentityError> {
        let Some(d) = &jwk.d else {
            return Err(IdentityError::malformed("JWK has no private key `d`"));
        };
        let claimed = jwk.public_did()?;
        let me = Self::from_seed(&b64::decode_array::<32>(d, "JWK d")?)?;
        if me.did != claimed {
            return Err(IdentityError::malformed("JWK x is not the public key of d"));
        }
        Ok(me)
    }

    /// Writes the key as a private JWK to a new file with mode 0600 (refuses
    /// to overwrite an existing file).
    ///
    /// # Errors
    /// [`IdentityError::KeyFile`] on I/O failure or an existing file.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let bad = |reason: String| IdentityError::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let mut text =
            serde_json::to_string(&self.private_jwk()).map_err(|e| bad(e.to_string()))?;
        text.push('\n');
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| bad(e.to_string()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| bad(e.to_string()))
    }

    /// Reads a key file written by [`Identity::save`]. Refuses a file that
    /// group or others can read or write (the key may already be exposed).
    ///
    /// # Errors
    /// [`IdentityError::KeyPermissions`] for a too-open file,
    /// [`IdentityError::KeyFile`] for I/O errors and bad content.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let bad = |reason: String| IdentityError::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let meta = fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::KeyPermissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        if !meta.is_file() || meta.len() > MAX_KEY_FILE {
            return Err(bad(
                "not a key file (not a regular file, or too large)".into()
            ));
        }
        let text = fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let jwk: Jwk = serde_json::from_str(text.trim())
            .map_err(|e| bad(format!("not a private JWK: {e}")))?;
        Self::from_jwk(&jwk).map_err(|e| bad(e.to_string()))
    }

    /// A statement, signed by this (old) key, that `new` replaces it.
    ///
    /// # Errors
    /// Serialization or randomness failures.
    pub fn rotate_to(&self, new: &Did, now: u64) -> Result<String, IdentityError> {
        let claims = RotationClaims {
            iss: self.did.to_string(),
            sub: new.to_string(),
            purpose: ROTATION_PURPOSE.to_owned(),
            jti: b64::encode(&random::<16>()?),
            iat: now,
        };
        jws::sign_with_type(self, ROTATION_TYPE, &claims)
    }
}

/// JOSE `typ` of a rotation statement, so it can never pass as another token.
pub const ROTATION_TYPE: &str = "warden-rotation+jwt";
const ROTATION_PURPOSE: &str = "warden-key-rotation";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotationClaims {
    iss: String,
    sub: String,
    purpose: String,
    jti: String,
    iat: u64,
}

/// A verified key rotation: `old` vouched that `new` replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The retired key.
    pub old: Did,
    /// Its successor.
    pub new: Did,
    /// When the statement was made.
    pub issued_at: u64,
}

/// Verifies a rotation statement and checks that it says exactly
/// "`old` is replaced by `new`": signed by `old`, typed as a rotation, with
/// exactly the expected claims and purpose.
///
/// # Errors
/// [`IdentityError::Rotation`] (or the JWS error) when anything differs.
pub fn verify_rotation(statement: &str, old: &Did, new: &Did) -> Result<Rotation, IdentityError> {
    let decoded = jws::decode_verified(statement)?;
    if decoded.typ.as_deref() != Some(ROTATION_TYPE) {
        return Err(IdentityError::Rotation(format!(
            "typ is {:?}, not {ROTATION_TYPE}",
            decoded.typ
        )));
    }
    let claims: RotationClaims = serde_json::from_slice(&decoded.claims_json)
        .map_err(|e| IdentityError::Rotation(format!("claims: {e}")))?;
    if claims.purpose != ROTATION_PURPOSE {
        return Err(IdentityError::Rotation("wrong purpose".into()));
    }
    if decoded.signer != *old || claims.iss != old.as_str() {
        return Err(IdentityError::Rotation(format!(
            "signed by {}, expected the old key {old}",
            decoded.signer
        )));
    }
    if claims.sub != new.as_str() {
        return Err(IdentityError::Rotation(format!(
            "names {} as successor, expected {new}",
            claims.sub
        )));
    }
    if old == new {
        return Err(IdentityError::Rotation(
            "a key cannot replace itself".into(),
        ));
    }
    Ok(Rotation {
        old: old.clone(),
        new: new.clone(),
        issued_at: claims.iat,
    })
}
