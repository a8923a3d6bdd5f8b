//! `did:key` identifiers for Ed25519 keys (multicodec `0xed01` + base58btc
//! multibase), DID documents and JWK (RFC 8037 `OKP`/`Ed25519`).

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt;

use crate::{IdentityError, b64};

/// Multicodec varint prefix of an Ed25519 public key.
const ED25519_PUB: [u8; 2] = [0xed, 0x01];
/// Multicodec varint prefix of an X25519 public key.
const X25519_PUB: [u8; 2] = [0xec, 0x01];
/// `did:key:` plus `z` and 48 base58 characters is the only length an Ed25519 did:key has.
const MAX_DID_LEN: usize = 128;

/// A verified `did:key` naming one Ed25519 public key.
///
/// Only constructed from a valid, non-weak curve point, and only from the
/// canonical text form, so string equality is key equality.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Did {
    key: VerifyingKey,
    text: String,
}

impl fmt::Debug for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Did({})", self.text)
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Did {
    /// The did:key of a public key.
    ///
    /// # Errors
    /// [`IdentityError::Malformed`] for a small-order ("weak") key, which
    /// would let signatures verify for many messages.
    pub fn from_key(key: VerifyingKey) -> Result<Self, IdentityError> {
        if key.is_weak() {
            return Err(IdentityError::malformed("weak (small-order) Ed25519 key"));
        }
        let text = format!("did:key:{}", multikey(ED25519_PUB, key.as_bytes()));
        Ok(Did { key, text })
    }

    /// From the 32 raw public key bytes.
    ///
    /// # Errors
    /// When the bytes are not a valid, non-weak Ed25519 point.
    pub fn from_public_bytes(bytes: &[u8; 32]) -> Result<Self, IdentityError> {
        let key = VerifyingKey::from_bytes(bytes)
            .map_err(|e| IdentityError::malformed(format!("not an Ed25519 public key: {e}")))?;
        Self::from_key(key)
    }

    /// Parses `did:key:z6Mk...`. Rejects other methods and key types, DID
    /// URLs (`#fragment`, `?query`, paths) and non-canonical encodings.
    ///
    /// # Errors
    /// [`IdentityError::Malformed`] saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        if text.len() > MAX_DID_LEN {
            return Err(IdentityError::malformed("did too long"));
        }
        let Some(id) = text.strip_prefix("did:key:") else {
            return Err(IdentityError::malformed(format!(
                "{:?} is not a did:key",
                truncate(text)
            )));
        };
        if !id.starts_with('z') {
            return Err(IdentityError::malformed(
                "did:key must use base58btc multibase (prefix `z`)",
            ));
        }
        let (base, bytes) = multibase::decode(id)
            .map_err(|e| IdentityError::malformed(format!("did:key multibase: {e}")))?;
        if base != multibase::Base::Base58Btc {
            return Err(IdentityError::malformed("did:key must use base58btc"));
        }
        let Some(raw) = bytes.strip_prefix(&ED25519_PUB) else {
            return Err(IdentityError::malformed(
                "did:key is not an Ed25519 key (multicodec 0xed01)",
            ));
        };
        let raw: [u8; 32] = raw.try_into().map_err(|_| {
            IdentityError::malformed(format!("Ed25519 key must be 32 bytes, got {}", raw.len()))
        })?;
        let did = Self::from_public_bytes(&raw)?;
        // base58 has one encoding per byte string, but compare anyway: equal
        // text must mean equal key.
        if did.text != text {
            return Err(IdentityError::malformed("non-canonical did:key encoding"));
        }
        Ok(did)
    }

    /// The text form.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The multibase key part (`z6Mk...`), also the verification method fragment.
    #[must_use]
    pub fn fingerprint(&self) -> &str {
        &self.text["did:key:".len()..]
    }

    /// The public key.
    #[must_use]
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The public key in base58btc without multibase prefix (`publicKeyBase58`).
    #[must_use]
    pub fn public_key_base58(&self) -> String {
        // Base58Btc multibase is `z` + plain base58btc.
        multibase::encode(multibase::Base::Base58Btc, self.key.as_bytes())[1..].to_owned()
    }

    /// The X25519 key-agreement key derived from this key (birational map),
    /// as its multibase fingerprint `z6LS...`.
    #[must_use]
    pub fn x25519_fingerprint(&self) -> String {
        multikey(X25519_PUB, &self.key.to_montgomery().to_bytes())
    }

    /// The DID document the did:key method (W3C CCG) resolves this DID to:
    /// an `Ed25519VerificationKey2018` method used for authentication,
    /// assertion and capabilities, and the derived X25519 key agreement key.
    #[must_use]
    pub fn document(&self) -> Value {
        let id = self.as_str();
        let vm = format!("{id}#{}", self.fingerprint());
        let x = self.x25519_fingerprint();
        let ka = format!("{id}#{x}");
        let x_b58 = multibase::encode(
            multibase::Base::Base58Btc,
            self.key.to_montgomery().to_bytes(),
        )[1..]
            .to_owned();
        json!({
            "@context": [
                "https://www.w3.org/ns/did/v1",
                "https://w3id.org/security/suites/ed25519-2018/v1",
                "https://w3id.org/security/suites/x25519-2019/v1"
            ],
            "id": id,
            "verificationMethod": [
                {
                    "id": vm,
                    "type": "Ed25519VerificationKey2018",
                    "controller": id,
                    "publicKeyBase58": self.public_key_base58()
                },
                {
                    "id": ka,
                    "type": "X25519KeyAgreementKey2019",
                    "controller": id,
                    "publicKeyBase58": x_b58
                }
            ],
            "assertionMethod": [vm],
            "authentication": [vm],
            "capabilityInvocation": [vm],
            "capabilityDelegation": [vm],
            "keyAgreement": [ka]
        })
    }

    /// The public JWK (RFC 8037): `{"kty":"OKP","crv":"Ed25519","x":...,"kid":did}`.
    #[must_use]
    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: b64::encode(self.key.as_bytes()),
            d: None,
            kid: Some(self.text.clone()),
        }
    }

    /// Imports a public JWK (a private one is refused here: use `Identity::from_jwk`).
    ///
    /// # Errors
    /// A JWK that is not exactly an Ed25519 OKP key, or whose `kid` (if
    /// present) names another key.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, IdentityError> {
        if jwk.d.is_some() {
            return Err(IdentityError::malformed(
                "JWK holds a private key (`d`); expected a public key",
            ));
        }
        jwk.public_did()
    }
}

impl Serialize for Did {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Did {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Did::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Did {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Did::parse(s)
    }
}

/// An Ed25519 JSON Web Key (RFC 8037 §2). Unknown members are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// The private key (seed), base64url; only in private JWKs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    /// Key id; Warden writes the did:key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

impl Jwk {
    /// Checks `kty`/`crv`/`x` (and `kid` if present) and returns the DID of `x`.
    pub(crate) fn public_did(&self) -> Result<Did, IdentityError> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(IdentityError::malformed(format!(
                "JWK is kty {:?} crv {:?}; expected OKP Ed25519",
                self.kty, self.crv
            )));
        }
        let x = b64::decode_array::<32>(&self.x, "JWK x")?;
        let did = Did::from_public_bytes(&x)?;
        if let Some(kid) = &self.kid
            && kid.starts_with("did:")
            && kid != did.as_str()
        {
            return Err(IdentityError::malformed("JWK kid names another key than x"));
        }
        Ok(did)
    }
}

fn multikey(codec: [u8; 2], key: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(34);
    bytes.extend_from_slice(&codec);
    bytes.extend_from_slice(key);
    multibase::encode(multibase::Base::Base58Btc, bytes)
}

pub(crate) fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
