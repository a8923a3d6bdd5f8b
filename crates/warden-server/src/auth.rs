//! Bearer-token authentication of the admin endpoints (kill, approvals, reload).
//!
//! The token comes from `WARDEN_ADMIN_TOKEN`, from `admin_token_file`, or is
//! generated on first start into `<data_dir>/admin.token` (mode 0600), so the
//! admin API is never open by default and a local operator can still reach it.

use axum::http::{HeaderMap, header};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use warden_token::{BearerToken, Refusal, TokenError};

pub use warden_token::MIN_TOKEN_LEN;

/// Where the admin token came from (printed at startup, never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `WARDEN_ADMIN_TOKEN`.
    Environment,
    /// A configured or generated file.
    File(PathBuf),
}

/// Checks `Authorization: Bearer <token>` against the admin token (its
/// digest only, compared in constant time: `warden-token`).
#[derive(Debug, Clone)]
pub struct AdminAuth {
    token: BearerToken,
    source: TokenSource,
}

/// The admin token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token (from the named place) is weak, unreadable or readable by
    /// every user.
    #[error("admin token {from}: {source}")]
    Token {
        /// `WARDEN_ADMIN_TOKEN` or the file.
        from: String,
        /// Why.
        source: TokenError,
    },
    /// Writing the generated token file failed.
    #[error("admin token {path}: {source}")]
    Io {
        /// The token file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The OS random generator failed.
    #[error("generating the admin token: {0}")]
    Random(String),
}

impl AdminAuth {
    /// Uses `token` directly (from the environment).
    pub fn from_token(token: &str) -> Result<Self, AuthError> {
        let token = BearerToken::new(token).map_err(|source| AuthError::Token {
            from: "WARDEN_ADMIN_TOKEN".to_owned(),
            source,
        })?;
        Ok(AdminAuth {
            token,
            source: TokenSource::Environment,
        })
    }

    /// Reads the token from `path`, generating it first (mode 0600) if the
    /// file does not exist. An existing file every user may read is refused.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let io = |source| AuthError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                generate(path).map_err(|e| match e {
                    Generate::Io(e) => io(e),
                    Generate::Random(e) => AuthError::Random(e),
                })?
            }
            Err(e) => return Err(io(e)),
        }
        let token = BearerToken::from_file(path).map_err(|source| AuthError::Token {
            from: path.display().to_string(),
            source,
        })?;
        Ok(AdminAuth {
            token,
            source: TokenSource::File(path.to_path_buf()),
        })
    }

    /// Where the token came from.
    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    /// `Ok` when the request carries the admin token; the message says what is wrong otherwise.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let value = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        self.token.check(value).map_err(|r| match r {
            Refusal::Missing => "admin endpoint: send `authorization: Bearer <admin token>`",
            Refusal::NotBearer => "authorization must use the Bearer scheme",
            Refusal::Wrong => "wrong admin token",
        })
    }
}

/// Why a token could not be generated.
enum Generate {
    Io(std::io::Error),
    Random(String),
}

/// Writes a random 256-bit token to `path` (created, 0600). Another process
/// creating it first is fine: its token is then the one read.
fn generate(path: &Path) -> Result<(), Generate> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Generate::Random(e.to_string()))?;
    let token = hex::encode(bytes);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(Generate::Io)?;
    }
    let mut f = match create_private(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Generate::Io(e)),
    };
    f.write_all(format!("{token}\n").as_bytes())
        .map_err(Generate::Io)?;
    f.sync_all().map_err(Generate::Io)
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use axum::http::HeaderValue;

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        h
    }

    #[test]
    fn generated_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/admin.token");
        let a = AdminAuth::from_file(&p).unwrap();
        let token = std::fs::read_to_string(&p).unwrap().trim().to_owned();
        assert_eq!(token.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "token file must not be group/world readable"
            );
        }
        assert!(a.check(&bearer(&token)).is_ok());
        // A second start reads the same token.
        let b = AdminAuth::from_file(&p).unwrap();
        assert!(b.check(&bearer(&token)).is_ok());
    }

    #[test]
    fn rejects_missing_wrong_and_malformed() {
        let a = AdminAuth::from_token("0123456789abcdef-token").unwrap();
        assert!(a.check(&HeaderMap::new()).is_err());
        assert!(a.check(&bearer("0123456789abcdef-tokeN")).is_err());
        assert!(a.check(&bearer("")).is_err());
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic 0123456789abcdef-token"),
        );
        assert!(a.check(&h).is_err());
        assert!(a.check(&bearer("0123456789abcdef-token")).is_ok());
    }

    #[test]
    fn weak_tokens_are_refused() {
        assert!(AdminAuth::from_token("short").is_err());
        assert!(AdminAuth::from_token("sixteen chars with spaces").is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        private_file(&p, "abc\n");
        assert!(matches!(
            AdminAuth::from_file(&p),
            Err(AuthError::Token {
                source: TokenError::Weak,
                ..
            })
        ));
    }

    /// Writes `text` to `path` with mode 0600.
    fn private_file(path: &Path, text: &str) {
        let mut f = create_private(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_token_file_every_user_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin-token");
        private_file(&p, "0123456789abcdef-token\n");
        assert!(AdminAuth::from_file(&p).is_ok());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = AdminAuth::from_file(&p).unwrap_err();
        assert!(
            matches!(
                &err,
                AuthError::Token {
                    source: TokenError::Exposed { mode: 0o644, .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        // Group-readable (a shared secrets group) is the operator's choice.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(AdminAuth::from_file(&p).is_ok());
    }
}
