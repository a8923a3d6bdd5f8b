//! Bearer-token authentication of the admin endpoints (kill, approvals, reload).
//!
//! The token comes from `WARDEN_ADMIN_TOKEN`, from `admin_token_file`, or is
//! generated on first start into `<data_dir>/admin.token` (mode 0600), so the
//! admin API is never open by default and a local operator can still reach it.

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Shortest token accepted from configuration.
pub const MIN_TOKEN_LEN: usize = 16;

/// Where the admin token came from (printed at startup, never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `WARDEN_ADMIN_TOKEN`.
    Environment,
    /// A configured or generated file.
    File(PathBuf),
}

/// Checks `Authorization: Bearer <token>` against the admin token.
#[derive(Clone)]
pub struct AdminAuth {
    // Only the digest is kept: comparing digests does not leak the token's bytes through timing.
    digest: [u8; 32],
    source: TokenSource,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The admin token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Reading or writing the token file failed.
    #[error("admin token {path}: {source}")]
    Io {
        /// The token file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token is too short or not printable.
    #[error("admin token {0}: needs at least {MIN_TOKEN_LEN} printable ASCII characters")]
    Weak(String),
    /// The OS random generator failed.
    #[error("generating the admin token: {0}")]
    Random(String),
    /// The token file may be read by every user on the machine.
    #[error("admin token {path}: readable by every user (mode {mode:o}); `chmod 600` it")]
    Exposed {
        /// The token file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Refuses a token file every user may read (a token anyone on the
/// machine can read guards nothing), as `warden mcp` does for its own.
fn refuse_exposed(path: &Path) -> Result<(), AuthError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|source| AuthError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o004 != 0 {
            return Err(AuthError::Exposed {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
    }
    let _ = path;
    Ok(())
}

fn valid(token: &str) -> bool {
    token.len() >= MIN_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic())
}

impl AdminAuth {
    /// Uses `token` directly (from the environment).
    pub fn from_token(token: &str) -> Result<Self, AuthError> {
        if !valid(token) {
            return Err(AuthError::Weak("WARDEN_ADMIN_TOKEN".to_owned()));
        }
        Ok(AdminAuth {
            digest: digest(token),
            source: TokenSource::Environment,
        })
    }

    /// Reads the token from `path`, generating it first if the file does not exist.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let io = |source| AuthError::Io {
            path: path.to_path_buf(),
            source,
        };
        let token = match std::fs::read_to_string(path) {
            Ok(t) => {
                refuse_exposed(path)?;
                t.trim().to_owned()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
                let token = hex::encode(bytes);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                let mut f = create_private(path).map_err(io)?;
                f.write_all(format!("{token}\n").as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
                token
            }
            Err(e) => return Err(io(e)),
        };
        if !valid(&token) {
            return Err(AuthError::Weak(path.display().to_string()));
        }
        Ok(AdminAuth {
            digest: digest(&token),
            source: TokenSource::File(path.to_path_buf()),
        })
    }

    /// Where the token came from.
    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    /// `Ok` when the request carries the admin token; the message says what is wrong otherwise.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or("admin endpoint: send `authorization: Bearer <admin token>`")?;
        let value = value
            .to_str()
            .map_err(|_| "authorization header is not ASCII")?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or("authorization must use the Bearer scheme")?;
        if digest(token.trim()) == self.digest {
            Ok(())
        } else {
            Err("wrong admin token")
        }
    }
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
        assert!(matches!(AdminAuth::from_file(&p), Err(AuthError::Weak(_))));
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
            matches!(&err, AuthError::Exposed { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        // Group-readable (a shared secrets group) is the operator's choice.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(AdminAuth::from_file(&p).is_ok());
    }
}
