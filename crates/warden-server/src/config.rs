//! `warden.yaml`: the sidecar's configuration, with environment and flag overrides.
//!
//! Precedence, lowest to highest: built-in defaults, the config file, `WARDEN_*`
//! environment variables, command-line flags. Unknown keys are errors naming the
//! file, line and column: a misspelt `admin_token_file` must not silently leave
//! the admin API open or closed.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use warden_audit::Durability;

/// The address `warden serve` listens on when nothing else is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The data directory used when nothing else is configured (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "warden-data";
/// Largest request body accepted by default (an Action is rarely above a few KiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed or has unknown/ill-typed fields.
    #[error("{path}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field (from the file, the environment or a flag) has a bad value.
    #[error("{field}: {message}")]
    Value {
        /// Where the value came from, e.g. `listen` or `WARDEN_LISTEN`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Where audit records go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(tag = "store", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuditStore {
    /// Segment files in `<data_dir>/audit` (the embedded default).
    #[default]
    File,
    /// A PostgreSQL database (needs the `postgres` feature).
    Postgres {
        /// Connection URL, e.g. `postgres://127.0.0.1/warden`.
        url: String,
        /// Schema holding the log tables.
        #[serde(default = "default_schema")]
        schema: String,
    },
}

fn default_schema() -> String {
    "warden_audit".to_owned()
}

/// Where trust scores persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TrustStoreKind {
    /// `<data_dir>/trust.json` (the default).
    #[default]
    File,
    /// A PostgreSQL table shared by every replica (needs the `postgres` feature).
    Postgres,
}

/// The `trust:` block: where scores persist and how often this process
/// writes its signals there and re-reads what others wrote.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustSettings {
    /// `file` or `postgres`.
    pub store: TrustStoreKind,
    /// Connection URL (`postgres` only; env `WARDEN_TRUST_URL`).
    pub url: Option<String>,
    /// Schema of the `trust` table (`postgres` only).
    pub schema: String,
    /// Interval of the sync (apply queued signals, reload), ms
    /// (env `WARDEN_TRUST_REFRESH_MS`). Scores are also saved on shutdown.
    pub refresh_ms: u64,
}

impl Default for TrustSettings {
    fn default() -> Self {
        TrustSettings {
            store: TrustStoreKind::File,
            url: None,
            schema: "warden_trust".to_owned(),
            refresh_ms: 1000,
        }
    }
}

impl TrustSettings {
    /// The sync interval.
    pub fn refresh(&self) -> Duration {
        Duration::from_millis(self.refresh_ms)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, message: &str| {
            Err(ConfigError::Value {
                field: format!("trust.{field}"),
                message: message.to_owned(),
            })
        };
        match (self.store, &self.url) {
            (TrustStoreKind::Postgres, None) => {
                return bad("url", "`store: postgres` needs a connection URL");
            }
            (TrustStoreKind::File, Some(_)) => {
                return bad("url", "only meaningful with `store: postgres`");
            }
            _ => {}
        }
        if !(10..=3_600_000).contains(&self.refresh_ms) {
            return bad("refresh_ms", "must be within 10..=3600000");
        }
        Ok(())
    }
}

/// Request limits; every one exists so a slow or hostile client cannot hold resources.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body in bytes (larger → 413).
    pub max_body_bytes: usize,
    /// Time a client has to send its request headers (slowloris guard).
    pub header_timeout_ms: u64,
    /// Time a request may take end to end, body included (→ 408).
    pub request_timeout_ms: u64,
    /// Upper bound for `?wait_ms=` on `/v1/decide` (approval waits).
    pub max_wait_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            max_wait_ms: 300_000,
        }
    }
}

impl Limits {
    /// Header read timeout.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
    /// Whole-request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// The on-disk form of `warden.yaml`. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    unix_socket: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    policy: Option<Vec<PathBuf>>,
    durability: Option<String>,
    admin_token_file: Option<PathBuf>,
    watch: Option<bool>,
    audit: Option<AuditStore>,
    limits: Option<Limits>,
    identity: Option<crate::identity::IdentityConfig>,
    trust: Option<TrustSettings>,
}

/// The resolved configuration `warden serve` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Also serve the same API on this Unix-domain socket (same-host agents
    /// skip the TCP stack; see docs/server.md).
    pub unix_socket: Option<PathBuf>,
    /// Data directory: kill switch state, audit log (file store), keys, admin token.
    pub data_dir: PathBuf,
    /// Policy files/directories; empty means the built-in default pack.
    pub policy: Vec<PathBuf>,
    /// Audit durability.
    pub durability: Durability,
    /// File holding the admin bearer token; `None`: the token is read from
    /// `WARDEN_ADMIN_TOKEN`, or generated into `<data_dir>/admin.token`.
    pub admin_token_file: Option<PathBuf>,
    /// The admin token itself when given through the environment.
    pub admin_token: Option<String>,
    /// Reload policies when their files change (and on SIGHUP, always).
    pub watch: bool,
    /// Audit store.
    pub audit: AuditStore,
    /// Request limits.
    pub limits: Limits,
    /// Caller identity: when set, every decision needs a credential.
    pub identity: Option<crate::identity::IdentityConfig>,
    /// Trust scores: store and sync interval.
    pub trust: TrustSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            unix_socket: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            policy: Vec::new(),
            durability: Durability::Batched,
            admin_token_file: None,
            admin_token: None,
            watch: true,
            audit: AuditStore::File,
            limits: Limits::default(),
            identity: None,
            trust: TrustSettings::default(),
        }
    }
}

/// Command-line overrides (the flags scripts rely on).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--unix-socket`.
    pub unix_socket: Option<PathBuf>,
    /// `--policy` (repeatable; replaces the configured list).
    pub policy: Vec<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--durability`.
    pub durability: Option<Durability>,
}

fn parse_listen(field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|e| ConfigError::Value {
        field: field.to_owned(),
        message: format!("`{value}` is not HOST:PORT with a numeric host ({e})"),
    })
}

/// Parses `sync` / `batched`.
pub fn parse_durability(field: &str, value: &str) -> Result<Durability, ConfigError> {
    match value {
        "sync" => Ok(Durability::Sync),
        "batched" => Ok(Durability::Batched),
        other => Err(ConfigError::Value {
            field: field.to_owned(),
            message: format!("`{other}` is not one of `sync`, `batched`"),
        }),
    }
}

impl ServerConfig {
    /// Resolves the configuration: defaults, then `file` (if any), then the
    /// environment (`env` lookups, normally `std::env::var`), then `flags`.
    /// Relative paths in the file are relative to the file's directory.
    pub fn resolve(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: Overrides,
    ) -> Result<ServerConfig, ConfigError> {
        let mut c = ServerConfig::default();
        if let Some(path) = file {
            c.apply_file(path)?;
        }
        c.apply_env(env)?;
        c.apply_flags(flags)?;
        Ok(c)
    }

    fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // An empty file is a valid "all defaults" config.
        let f: FileConfig = if text.trim().is_empty() {
            FileConfig::default()
        } else {
            serde_saphyr::from_str_with_options(
                &text,
                serde_saphyr::options! { with_snippet: false },
            )
            .map_err(|e| ConfigError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        if let Some(l) = f.listen {
            self.listen = parse_listen("listen", &l)?;
        }
        if let Some(u) = f.unix_socket {
            self.unix_socket = Some(rel(u));
        }
        if let Some(d) = f.data_dir {
            self.data_dir = rel(d);
        }
        if let Some(p) = f.policy {
            self.policy = p.into_iter().map(rel).collect();
        }
        if let Some(d) = f.durability {
            self.durability = parse_durability("durability", &d)?;
        }
        if let Some(t) = f.admin_token_file {
            self.admin_token_file = Some(rel(t));
        }
        if let Some(w) = f.watch {
            self.watch = w;
        }
        if let Some(a) = f.audit {
            self.audit = a;
        }
        if let Some(l) = f.limits {
            self.limits = l;
        }
        if let Some(mut i) = f.identity {
            i.key = i.key.map(rel);
            self.identity = Some(i);
        }
        if let Some(t) = f.trust {
            self.trust = t;
        }
        self.check_limits()?;
        self.trust.check()
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(l) = env("WARDEN_LISTEN") {
            self.listen = parse_listen("WARDEN_LISTEN", &l)?;
        }
        if let Some(u) = env("WARDEN_UNIX_SOCKET") {
            self.unix_socket = Some(PathBuf::from(u));
        }
        if let Some(d) = env("WARDEN_DATA_DIR") {
            self.data_dir = PathBuf::from(d);
        }
        if let Some(p) = env("WARDEN_POLICY") {
            // Like PATH: a colon-separated list.
            self.policy = p
                .split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        if let Some(d) = env("WARDEN_DURABILITY") {
            self.durability = parse_durability("WARDEN_DURABILITY", &d)?;
        }
        if let Some(t) = env("WARDEN_ADMIN_TOKEN") {
            // Strength is checked where the token is used (AdminAuth::from_token).
            self.admin_token = Some(t);
        }
        if let Some(u) = env("WARDEN_AUDIT_URL") {
            let schema = match &self.audit {
                AuditStore::Postgres { schema, .. } => schema.clone(),
                AuditStore::File => default_schema(),
            };
            self.audit = AuditStore::Postgres { url: u, schema };
        }
        if let Some(u) = env("WARDEN_TRUST_URL") {
            self.trust.store = TrustStoreKind::Postgres;
            self.trust.url = Some(u);
        }
        if let Some(r) = env("WARDEN_TRUST_REFRESH_MS") {
            self.trust.refresh_ms = r.parse().map_err(|e| ConfigError::Value {
                field: "WARDEN_TRUST_REFRESH_MS".to_owned(),
                message: format!("`{r}` is not a number of milliseconds ({e})"),
            })?;
        }
        self.trust.check().map_err(|e| match e {
            ConfigError::Value { message, .. } => ConfigError::Value {
                field: "WARDEN_TRUST_*".to_owned(),
                message,
            },
            other => other,
        })
    }

    fn apply_flags(&mut self, flags: Overrides) -> Result<(), ConfigError> {
        if let Some(l) = flags.listen {
            self.listen = parse_listen("--listen", &l)?;
        }
        if let Some(u) = flags.unix_socket {
            self.unix_socket = Some(u);
        }
        if !flags.policy.is_empty() {
            self.policy = flags.policy;
        }
        if let Some(d) = flags.data_dir {
            self.data_dir = d;
        }
        if let Some(d) = flags.durability {
            self.durability = d;
        }
        Ok(())
    }

    fn check_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let bad = |field: &str, message: &str| {
            Err(ConfigError::Value {
                field: format!("limits.{field}"),
                message: message.to_owned(),
            })
        };
        if l.max_body_bytes < 1024 {
            return bad("max_body_bytes", "must be at least 1024");
        }
        if l.header_timeout_ms == 0 || l.request_timeout_ms == 0 {
            return bad("*_timeout_ms", "timeouts must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("warden.yaml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn defaults_without_anything() {
        let c = ServerConfig::resolve(None, no_env, Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.policy.is_empty());
        assert_eq!(c.durability, Durability::Batched);
        assert_eq!(c.audit, AuditStore::File);
    }

    #[test]
    fn file_then_env_then_flags() {
        let (dir, p) = write(
            "listen: 127.0.0.1:9000\npolicy: [pol]\ndata_dir: data\ndurability: sync\nlimits: {max_body_bytes: 4096}\n",
        );
        let c = ServerConfig::resolve(Some(&p), no_env, Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.policy, vec![dir.path().join("pol")]);
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.durability, Durability::Sync);
        assert_eq!(c.limits.max_body_bytes, 4096);
        // Unset limits keep their defaults.
        assert_eq!(c.limits.max_wait_ms, Limits::default().max_wait_ms);

        let env = |k: &str| match k {
            "WARDEN_LISTEN" => Some("127.0.0.1:9001".to_owned()),
            "WARDEN_POLICY" => Some("a:b".to_owned()),
            _ => None,
        };
        let c = ServerConfig::resolve(Some(&p), env, Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.policy, vec![PathBuf::from("a"), PathBuf::from("b")]);

        let flags = Overrides {
            listen: Some("127.0.0.1:9002".to_owned()),
            unix_socket: None,
            policy: vec![PathBuf::from("c")],
            data_dir: Some(PathBuf::from("d")),
            durability: Some(Durability::Batched),
        };
        let c = ServerConfig::resolve(Some(&p), env, flags).unwrap();
        assert_eq!(c.listen.port(), 9002);
        assert_eq!(c.policy, vec![PathBuf::from("c")]);
        assert_eq!(c.data_dir, PathBuf::from("d"));
        assert_eq!(c.durability, Durability::Batched);
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let (_d, p) = write("listen: 127.0.0.1:9000\nadmin_tokn_file: x\n");
        let e = ServerConfig::resolve(Some(&p), no_env, Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("warden.yaml"), "{e}");
        assert!(e.contains("admin_tokn_file"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_values_are_errors() {
        for text in [
            "listen: localhost\n",
            "durability: fast\n",
            "limits: {max_body_bytes: 10}\n",
            "audit: {store: s3}\n",
            "audit: {store: postgres}\n",
            "policy: 3\n",
            "listen: [\n",
        ] {
            let (_d, p) = write(text);
            assert!(
                ServerConfig::resolve(Some(&p), no_env, Overrides::default()).is_err(),
                "{text}"
            );
        }
        let flags = Overrides {
            listen: Some("nope".to_owned()),
            ..Overrides::default()
        };
        assert!(ServerConfig::resolve(None, no_env, flags).is_err());
    }

    #[test]
    fn identity_block_parses_strictly() {
        let (dir, p) = write(
            "identity:\n  key: id.key\n  anchors:\n    - did: did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp\n      tools: [\"fs.*\"]\n      points: [pre_tool_call]\n",
        );
        let c = ServerConfig::resolve(Some(&p), no_env, Overrides::default()).unwrap();
        let i = c.identity.unwrap();
        assert_eq!(i.key, Some(dir.path().join("id.key")));
        assert_eq!(i.anchors.len(), 1);
        let (_d, p) = write("identity:\n  anchors: []\n  requierd: true\n");
        assert!(ServerConfig::resolve(Some(&p), no_env, Overrides::default()).is_err());
        let (_d, p) = write("identity:\n  anchors:\n    - did: x\n      points: [nowhere]\n");
        assert!(ServerConfig::resolve(Some(&p), no_env, Overrides::default()).is_err());
    }

    #[test]
    fn trust_block_parses_strictly() {
        let c = ServerConfig::resolve(None, no_env, Overrides::default()).unwrap();
        assert_eq!(c.trust, TrustSettings::default());
        let (_d, p) = write(
            "trust: {store: postgres, url: 'postgres://127.0.0.1/test', schema: t1, refresh_ms: 250}\n",
        );
        let c = ServerConfig::resolve(Some(&p), no_env, Overrides::default()).unwrap();
        assert_eq!(c.trust.store, TrustStoreKind::Postgres);
        assert_eq!(c.trust.url.as_deref(), Some("postgres://127.0.0.1/test"));
        assert_eq!(c.trust.schema, "t1");
        assert_eq!(c.trust.refresh(), Duration::from_millis(250));
        for text in [
            "trust: {store: postgres}\n",
            "trust: {store: redis}\n",
            "trust: {url: 'postgres://x/y'}\n",
            "trust: {refresh_ms: 0}\n",
            "trust: {refresh: 5}\n",
        ] {
            let (_d, p) = write(text);
            let e = ServerConfig::resolve(Some(&p), no_env, Overrides::default()).unwrap_err();
            assert!(
                e.to_string().contains("trust") || e.to_string().contains("warden.yaml"),
                "{text}: {e}"
            );
        }
        let env = |k: &str| match k {
            "WARDEN_TRUST_URL" => Some("postgres://127.0.0.1/x".to_owned()),
            "WARDEN_TRUST_REFRESH_MS" => Some("5000".to_owned()),
            _ => None,
        };
        let c = ServerConfig::resolve(None, env, Overrides::default()).unwrap();
        assert_eq!(c.trust.store, TrustStoreKind::Postgres);
        assert_eq!(c.trust.refresh_ms, 5000);
        let env = |k: &str| (k == "WARDEN_TRUST_REFRESH_MS").then(|| "soon".to_owned());
        assert!(ServerConfig::resolve(None, env, Overrides::default()).is_err());
    }

    #[test]
    fn postgres_store_parses() {
        let (_d, p) = write("audit: {store: postgres, url: 'postgres://127.0.0.1/test'}\n");
        let c = ServerConfig::resolve(Some(&p), no_env, Overrides::default()).unwrap();
        assert_eq!(
            c.audit,
            AuditStore::Postgres {
                url: "postgres://127.0.0.1/test".to_owned(),
                schema: "warden_audit".to_owned()
            }
        );
    }
}
