//! The log's Ed25519 signing key (`<data_dir>/audit.key`) and its public half
//! (`<data_dir>/audit.pub`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::AuditError;
use crate::merkle::Hash;

/// File name of the private key inside the data directory.
pub const KEY_FILE: &str = "audit.key";
/// File name of the public key inside the data directory.
pub const PUBLIC_KEY_FILE: &str = "audit.pub";

/// An Ed25519 public key that signs tree heads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeyFile {
    algorithm: String,
    key_id: String,
    public_key: String,
}

impl PublicKey {
    /// From the 32 raw key bytes.
    ///
    /// # Errors
    /// When the bytes are not a valid Ed25519 point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, String> {
        VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    /// From 64 hex characters.
    ///
    /// # Errors
    /// When the text is not a valid hex-encoded Ed25519 public key.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|e| e.to_string())?;
        Self::from_bytes(&bytes)
    }

    /// The 32 raw key bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Lower-case hex of the key bytes.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// The key id carried by every STH: lower-case hex SHA-256 of the 32 raw
    /// public key bytes.
    #[must_use]
    pub fn key_id(&self) -> String {
        Hash::digest(self.0.as_bytes()).to_hex()
    }

    /// Reads a public key file as written to `<data_dir>/audit.pub`: JSON
    /// `{"algorithm":"Ed25519","key_id":"…","public_key":"<hex>"}`, or a bare
    /// hex key.
    ///
    /// # Errors
    /// I/O errors and [`AuditError::Key`] for malformed content.
    pub fn read_file(path: &Path) -> Result<Self, AuditError> {
        let text = fs::read_to_string(path).map_err(AuditError::io("read", path))?;
        let bad = |reason: String| AuditError::Key {
            path: path.to_path_buf(),
            reason,
        };
        let trimmed = text.trim();
        if !trimmed.starts_with('{') {
            return Self::from_hex(trimmed).map_err(bad);
        }
        let file: PublicKeyFile = serde_json::from_str(trimmed).map_err(|e| bad(e.to_string()))?;
        if file.algorithm != "Ed25519" {
            return Err(bad(format!("unsupported algorithm {:?}", file.algorithm)));
        }
        let key = Self::from_hex(&file.public_key).map_err(bad)?;
        if key.key_id() != file.key_id {
            return Err(bad("key_id does not match public_key".into()));
        }
        Ok(key)
    }

    /// Reads `<data_dir>/audit.pub`.
    ///
    /// # Errors
    /// As [`PublicKey::read_file`].
    pub fn load(data_dir: &Path) -> Result<Self, AuditError> {
        Self::read_file(&data_dir.join(PUBLIC_KEY_FILE))
    }

    /// Checks an Ed25519 signature over `message` (strict verification).
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sig = Signature::from_bytes(signature);
        self.0.verify_strict(message, &sig).is_ok()
    }

    fn file_contents(&self) -> Result<Vec<u8>, AuditError> {
        let file = PublicKeyFile {
            algorithm: "Ed25519".into(),
            key_id: self.key_id(),
            public_key: self.to_hex(),
        };
        let mut out = serde_json_canonicalizer::to_vec(&file).map_err(|e| AuditError::Key {
            path: PathBuf::from(PUBLIC_KEY_FILE),
            reason: e.to_string(),
        })?;
        out.push(b'\n');
        Ok(out)
    }
}

/// The private signing key, loaded from or created in the data directory.
pub(crate) struct LogKey {
    signing: SigningKey,
    public: PublicKey,
    key_id: String,
}

impl LogKey {
    pub(crate) fn public(&self) -> PublicKey {
        self.public
    }

    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    fn from_signing(signing: SigningKey) -> Self {
        let public = PublicKey(signing.verifying_key());
        let key_id = public.key_id();
        Self {
            signing,
            public,
            key_id,
        }
    }

    /// Loads `audit.key`, creating it (and `audit.pub`) on first use.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Self, AuditError> {
        fs::create_dir_all(data_dir).map_err(AuditError::io("create directory", data_dir))?;
        let path = data_dir.join(KEY_FILE);
        let key = match read_key_file(&path)? {
            Some(key) => key,
            None => create_key_file(data_dir, &path)?,
        };
        key.ensure_public_file(data_dir)?;
        Ok(key)
    }

    fn ensure_public_file(&self, data_dir: &Path) -> Result<(), AuditError> {
        let path = data_dir.join(PUBLIC_KEY_FILE);
        if path.exists() {
            let existing = PublicKey::read_file(&path)?;
            if existing != self.public {
                return Err(AuditError::Key {
                    path,
                    reason: format!(
                        "holds key {} but {KEY_FILE} is key {}; refusing to continue with a replaced key",
                        existing.key_id(),
                        self.key_id
                    ),
                });
            }
            return Ok(());
        }
        let contents = self.public.file_contents()?;
        let tmp = data_dir.join(format!("{PUBLIC_KEY_FILE}.{}.tmp", std::process::id()));
        write_new_file(&tmp, &contents, 0o644)?;
        fs::rename(&tmp, &path).map_err(AuditError::io("rename", &path))?;
        sync_dir(data_dir)
    }
}

fn read_key_file(path: &Path) -> Result<Option<LogKey>, AuditError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::io("read", path)(e)),
    };
    check_private_mode(path)?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|e| AuditError::Key {
        path: path.to_path_buf(),
        reason: format!("expected 64 hex characters (an Ed25519 seed): {e}"),
    })?;
    Ok(Some(LogKey::from_signing(SigningKey::from_bytes(&seed))))
}

#[cfg(unix)]
fn check_private_mode(path: &Path) -> Result<(), AuditError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(AuditError::io("stat", path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(AuditError::KeyPermissions {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(_path: &Path) -> Result<(), AuditError> {
    Ok(())
}

fn create_key_file(data_dir: &Path, path: &Path) -> Result<LogKey, AuditError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| AuditError::Key {
        path: path.to_path_buf(),
        reason: format!("no randomness for key generation: {e}"),
    })?;
    let key = LogKey::from_signing(SigningKey::from_bytes(&seed));
    let mut contents = hex::encode(seed).into_bytes();
    contents.push(b'\n');
    let tmp = data_dir.join(format!("{KEY_FILE}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    write_new_file(&tmp, &contents, 0o600)?;
    // hard_link fails if the target exists: an atomic create-if-absent, so two
    // processes racing on first open end up with the same key.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(data_dir)?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key_file(path)?.ok_or_else(|| AuditError::Key {
                path: path.to_path_buf(),
                reason: "disappeared while being created".into(),
            })
        }
        Err(e) => Err(AuditError::io("link", path)(e)),
    }
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), AuditError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file: File = options.open(path).map_err(AuditError::io("create", path))?;
    file.write_all(contents)
        .map_err(AuditError::io("write", path))?;
    file.sync_all().map_err(AuditError::io("fsync", path))
}

/// fsyncs a directory so that entries created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(AuditError::io("fsync directory", dir))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
