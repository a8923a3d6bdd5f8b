//! Bearer tokens for Warden's HTTP doors: the sidecar's admin API and the
//! MCP gateway's `--listen` clients share one set of rules.
//!
//! - A token has at least [`MIN_TOKEN_LEN`] printable ASCII characters and
//!   no spaces.
//! - A token file is trimmed, and refused when every user on the machine may
//!   read it (a token anyone can read guards nothing).
//! - Only the token's SHA-256 digest is kept, and digests are compared in
//!   constant time, so a wrong guess learns nothing from timing.
//!
//! ```
//! use warden_token::{BearerToken, Refusal};
//!
//! let token = BearerToken::new("0123456789abcdef-token").unwrap();
//! assert!(token.check(Some(b"Bearer 0123456789abcdef-token")).is_ok());
//! assert_eq!(token.check(Some(b"Bearer guess")), Err(Refusal::Wrong));
//! assert_eq!(token.check(None), Err(Refusal::Missing));
//! ```

use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq as _;

/// Shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// A token could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Too short, or not printable ASCII without spaces.
    #[error("needs at least {MIN_TOKEN_LEN} printable ASCII characters without spaces")]
    Weak,
    /// The token file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The token file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token file may be read by every user.
    #[error("{} is readable by every user (mode {mode:o}): `chmod 600` it", path.display())]
    Exposed {
        /// The token file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Why a request's `Authorization` header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <token>` in ASCII.
    NotBearer,
    /// Another token.
    Wrong,
}

impl Refusal {
    /// A short explanation for the client.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "send `Authorization: Bearer <token>`",
            Refusal::NotBearer => "Authorization must be `Bearer <token>` in ASCII",
            Refusal::Wrong => "wrong token",
        }
    }
}

/// A required bearer token (its digest only).
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<set>)")
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl BearerToken {
    /// Requires `token`.
    ///
    /// # Errors
    /// [`TokenError::Weak`] for a short or non-printable token.
    pub fn new(token: &str) -> Result<BearerToken, TokenError> {
        if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Weak);
        }
        Ok(BearerToken {
            digest: digest(token),
        })
    }

    /// Requires the token in the file `path` (content trimmed).
    ///
    /// # Errors
    /// [`TokenError::Exposed`] when every user may read the file (Unix),
    /// [`TokenError::Io`], [`TokenError::Weak`].
    pub fn from_file(path: &Path) -> Result<BearerToken, TokenError> {
        let io = |source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
            if mode & 0o004 != 0 {
                return Err(TokenError::Exposed {
                    path: path.to_path_buf(),
                    mode: mode & 0o777,
                });
            }
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        BearerToken::new(text.trim())
    }

    /// Checks the raw value of a request's `Authorization` header (`None`
    /// when it has none): the scheme is case-insensitive `Bearer`.
    ///
    /// # Errors
    /// The [`Refusal`].
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), Refusal> {
        let value = authorization.ok_or(Refusal::Missing)?;
        let value = std::str::from_utf8(value).map_err(|_| Refusal::NotBearer)?;
        let (scheme, token) = value.split_once(' ').ok_or(Refusal::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Refusal::NotBearer);
        }
        // Digests have one length whatever the token's: the comparison takes
        // the same time for every wrong token.
        if bool::from(digest(token.trim()).ct_eq(&self.digest)) {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const T: &str = "0123456789abcdef-token";

    #[test]
    fn strength_rules() {
        assert!(BearerToken::new(T).is_ok());
        assert!(matches!(BearerToken::new("short"), Err(TokenError::Weak)));
        assert!(matches!(
            BearerToken::new("sixteen chars with spaces"),
            Err(TokenError::Weak)
        ));
        assert!(matches!(
            BearerToken::new("0123456789abcdé-token"),
            Err(TokenError::Weak)
        ));
    }

    #[test]
    fn headers_are_checked_exactly() {
        let t = BearerToken::new(T).unwrap();
        let ok = format!("Bearer {T}");
        assert_eq!(t.check(Some(ok.as_bytes())), Ok(()));
        assert_eq!(t.check(Some(format!("bearer {T}").as_bytes())), Ok(()));
        assert_eq!(t.check(None), Err(Refusal::Missing));
        assert_eq!(t.check(Some(b"")), Err(Refusal::NotBearer));
        assert_eq!(
            t.check(Some(format!("Basic {T}").as_bytes())),
            Err(Refusal::NotBearer)
        );
        assert_eq!(t.check(Some(T.as_bytes())), Err(Refusal::NotBearer));
        assert_eq!(t.check(Some(b"Bearer \xff\xfe")), Err(Refusal::NotBearer));
        // Same length, one character off; shorter; longer.
        let off = format!("Bearer {}X", &T[..T.len() - 1]);
        assert_eq!(t.check(Some(off.as_bytes())), Err(Refusal::Wrong));
        assert_eq!(
            t.check(Some(format!("Bearer {}", &T[1..]).as_bytes())),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            t.check(Some(format!("Bearer {T}x").as_bytes())),
            Err(Refusal::Wrong)
        );
    }

    #[cfg(unix)]
    #[test]
    fn token_files_are_trimmed_and_must_be_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, format!("{T}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = BearerToken::from_file(&p).unwrap();
        assert!(t.check(Some(format!("Bearer {T}").as_bytes())).is_ok());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(BearerToken::from_file(&p).is_ok());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = BearerToken::from_file(&p).unwrap_err();
        assert!(matches!(e, TokenError::Exposed { mode: 0o644, .. }), "{e}");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(matches!(
            BearerToken::from_file(&dir.path().join("missing")),
            Err(TokenError::Io { .. })
        ));
        std::fs::write(&p, "short\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(BearerToken::from_file(&p), Err(TokenError::Weak)));
    }
}
