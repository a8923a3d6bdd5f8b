//! `warden mcp --config gateway.yaml`: named upstream servers and the
//! gateway's options in one file. Unknown keys are errors naming the file,
//! line and column (a misspelt `prefix` must not silently expose a name).
//! `${VAR}` references in a `url` server's `headers` are expanded when the
//! file is loaded: a missing variable is an error then, not at the first call.

use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// A gateway configuration that cannot be used.
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
    /// Malformed YAML, an unknown key or an ill-typed value (the message
    /// has the line and column), or a value that breaks a rule (the message
    /// names the field).
    #[error("{path}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
}

/// Audit durability (`sync` or `batched`), as for `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigDurability {
    /// Each decision waits for its record to reach the disk.
    Sync,
    /// Records are queued and flushed in batches.
    Batched,
}

/// The gateway file. Relative paths are relative to the file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Policy files or directories (`--policy`).
    #[serde(default)]
    pub policy: Vec<PathBuf>,
    /// Kill switch, audit log and tool pins (`--data-dir`).
    pub data_dir: Option<PathBuf>,
    /// Audit durability with `data_dir` (`--durability`).
    pub durability: Option<ConfigDurability>,
    /// The agent id calls are decided for (`--agent`).
    pub agent: Option<String>,
    /// Largest message accepted from either side (`--max-message-bytes`).
    pub max_message_bytes: Option<usize>,
    /// Longest wait for an approver (`--approval-wait-secs`).
    pub approval_wait_secs: Option<u64>,
    /// Where an HTTP gateway listens (`--listen`): a single `url` server
    /// without `prefix` is proxied there; several servers (or a prefix) are
    /// served there by the multi-upstream gateway. Not for a single stdio server.
    pub listen: Option<String>,
    /// With `listen` and several servers: sessions at once (`--max-sessions`).
    pub max_sessions: Option<usize>,
    /// With `listen` and several servers: seconds a session may stay idle
    /// before it is closed (`--session-idle-secs`).
    pub session_idle_secs: Option<u64>,
    /// Also serve the sidecar API here (`--api`; needs `data_dir`).
    pub api: Option<String>,
    /// With `listen`: the file holding the bearer token clients must send
    /// (`--token-file`; `WARDEN_MCP_TOKEN` wins when set).
    pub token_file: Option<PathBuf>,
    /// The upstream servers, in order (at least one).
    pub servers: Vec<UpstreamConfig>,
}

/// One named upstream: a stdio `command` or a Streamable HTTP `url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Unique name: the pins' and `context.mcp.server`'s label.
    pub name: String,
    /// The stdio server's program.
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables set for it (on top of the gateway's own).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Its working directory.
    pub cwd: Option<PathBuf>,
    /// A Streamable HTTP server's `http://` or `https://` URL (instead of `command`).
    pub url: Option<String>,
    /// With `url`: headers sent on every request to the server (e.g.
    /// `Authorization`), `${VAR}` references expanded at load.
    #[serde(default)]
    pub headers: UpstreamHeaders,
    /// With an `https://` `url`: a PEM bundle of CA certificates trusted
    /// for this server besides the Mozilla roots.
    pub ca_cert: Option<PathBuf>,
    /// Prefix of this server's tool and prompt names as the client sees them.
    #[serde(default)]
    pub prefix: String,
}

/// A `url` server's request headers (name → value, values already
/// expanded). `Debug` shows the names only: values are secrets.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct UpstreamHeaders(BTreeMap<String, String>);

impl std::fmt::Debug for UpstreamHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl UpstreamHeaders {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The headers as (name, value), by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl GatewayConfig {
    /// Reads and checks `path`, expanding `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks `text`, read from `path` (which names errors and
    /// anchors relative paths), expanding `${VAR}` from the process environment.
    pub fn parse(text: &str, path: &Path) -> Result<GatewayConfig, ConfigError> {
        Self::parse_with_env(text, path, |k| std::env::var(k).ok())
    }

    /// [`GatewayConfig::parse`] with `env` giving the variables `${VAR}`
    /// references name.
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<GatewayConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut c: GatewayConfig = serde_saphyr::from_str_with_options(
            text,
            serde_saphyr::options! { with_snippet: false },
        )
        .map_err(|e| invalid(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        c.policy.iter_mut().for_each(rel);
        if let Some(d) = &mut c.data_dir {
            rel(d);
        }
        if let Some(t) = &mut c.token_file {
            rel(t);
        }
        if c.servers.is_empty() {
            return Err(invalid("`servers` needs at least one server".to_owned()));
        }
        let mut names = HashSet::new();
        for (i, s) in c.servers.iter_mut().enumerate() {
            let field = |f: &str| format!("servers[{i}].{f}");
            let ok_name = !s.name.is_empty()
                && s.name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
            if !ok_name {
                return Err(invalid(format!(
                    "{}: `{}` must be non-empty letters, digits, `-`, `_` or `.`",
                    field("name"),
                    s.name
                )));
            }
            if !names.insert(s.name.clone()) {
                return Err(invalid(format!(
                    "{}: `{}` names two servers",
                    field("name"),
                    s.name
                )));
            }
            match (&s.command, &s.url) {
                (Some(c), None) if !c.is_empty() => {
                    for (key, set) in [
                        ("headers", !s.headers.is_empty()),
                        ("ca_cert", s.ca_cert.is_some()),
                    ] {
                        if set {
                            return Err(invalid(format!(
                                "{}: `{key}` belongs to a `url` server (`{}` is a `command` server)",
                                field(key),
                                s.name
                            )));
                        }
                    }
                }
                (None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => {
                    if !s.args.is_empty() || !s.env.is_empty() || s.cwd.is_some() {
                        return Err(invalid(format!(
                            "{}: `args`, `env` and `cwd` belong to a `command` server",
                            field("url")
                        )));
                    }
                    if s.ca_cert.is_some() && !u.starts_with("https://") {
                        return Err(invalid(format!(
                            "{}: `ca_cert` applies to an https:// `url`",
                            field("ca_cert")
                        )));
                    }
                    s.headers = expand_headers(&s.headers, &env).map_err(|(h, e)| {
                        invalid(format!(
                            "{} (server `{}`): {e}",
                            field(&format!("headers.{h}")),
                            s.name
                        ))
                    })?;
                }
                (None, Some(u)) => {
                    return Err(invalid(format!(
                        "{}: `{u}` must be an http:// or https:// URL",
                        field("url")
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "servers[{i}] (`{}`): needs exactly one of a non-empty `command` or `url`",
                        s.name
                    )));
                }
            }
            if let Some(d) = &mut s.cwd {
                rel(d);
            }
            if let Some(d) = &mut s.ca_cert {
                rel(d);
            }
        }
        if c.listen.is_some() && !c.is_multi() && c.servers.iter().all(|s| s.url.is_none()) {
            return Err(invalid(
                "`listen` does not apply to a single stdio server without `prefix` (it is served on stdio)"
                    .to_owned(),
            ));
        }
        if c.listen.is_none() && c.token_file.is_some() {
            return Err(invalid(
                "`token_file` applies with `listen` only (clients of an HTTP gateway)".to_owned(),
            ));
        }
        if c.listen.is_none() && (c.max_sessions.is_some() || c.session_idle_secs.is_some()) {
            return Err(invalid(
                "`max_sessions` and `session_idle_secs` apply with `listen` only".to_owned(),
            ));
        }
        if c.max_sessions == Some(0) || c.session_idle_secs == Some(0) {
            return Err(invalid(
                "`max_sessions` and `session_idle_secs` must be at least 1".to_owned(),
            ));
        }
        Ok(c)
    }

    /// Whether this file runs the multi-upstream gateway (more than one
    /// server, or a prefix) rather than the single-upstream pass-through.
    pub fn is_multi(&self) -> bool {
        self.servers.len() > 1 || self.servers.iter().any(|s| !s.prefix.is_empty())
    }
}

/// `headers` with `${VAR}` expanded and every header checked; the error
/// names the header (never the value).
fn expand_headers(
    headers: &UpstreamHeaders,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<UpstreamHeaders, (String, String)> {
    let mut out = BTreeMap::new();
    let mut seen = HashSet::new();
    for (name, value) in headers.iter() {
        let fail = |e: String| (name.to_owned(), e);
        let value = crate::upstream_client::expand_env(value, env).map_err(fail)?;
        crate::upstream_client::checked_header(name, &value).map_err(fail)?;
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(fail(
                "the same header is given twice (names ignore case)".to_owned(),
            ));
        }
        out.insert(name.to_owned(), value);
    }
    Ok(UpstreamHeaders(out))
}

impl UpstreamConfig {
    /// How the multi-upstream gateway reaches this server. Errors: a server
    /// with neither `command` nor `url` (which [`GatewayConfig::parse`]
    /// refuses), an unusable `ca_cert` or header.
    pub fn transport(&self) -> Result<crate::UpstreamTransport, crate::McpError> {
        if let Some(cmd) = self.server_command() {
            return Ok(crate::UpstreamTransport::Stdio(cmd));
        }
        match self.http_target()? {
            Some(target) => Ok(crate::UpstreamTransport::Http(target)),
            None => Err(crate::McpError::Upstream(format!(
                "server `{}` has neither `command` nor `url`",
                self.name
            ))),
        }
    }

    /// The HTTP endpoint of a `url` server, with its `ca_cert` loaded and
    /// its `headers` set (`None` for a `command` server). Errors name the server.
    pub fn http_target(&self) -> Result<Option<crate::HttpTarget>, crate::McpError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let named = |e: crate::McpError| {
            let why = match e {
                crate::McpError::Upstream(why) => why,
                other => other.to_string(),
            };
            crate::McpError::Upstream(format!("server `{}`: {why}", self.name))
        };
        let mut target = crate::HttpTarget::new(url).map_err(named)?;
        if let Some(ca) = &self.ca_cert {
            target = target.with_ca_cert(ca).map_err(named)?;
        }
        for (name, value) in self.headers.iter() {
            target = target.with_header(name, value).map_err(named)?;
        }
        Ok(Some(target))
    }

    /// The stdio command (`None` for a `url` server).
    pub fn server_command(&self) -> Option<crate::ServerCommand> {
        let program = self.command.as_ref()?;
        let mut cmd =
            crate::ServerCommand::new(program, self.args.iter().map(Into::into).collect());
        cmd.env = self.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
        cmd.cwd.clone_from(&self.cwd);
        Some(cmd)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<GatewayConfig, String> {
        GatewayConfig::parse(text, Path::new("/etc/warden/gateway.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn full_file_parses_with_relative_paths() {
        let c = parse(
            "policy: [policies]\ndata_dir: data\nagent: a\ndurability: batched\nservers:\n  - name: fs\n    command: npx\n    args: [-y, pkg]\n    env: {A: b}\n    cwd: work\n    prefix: fs_\n  - name: web\n    command: ./web\n",
        )
        .unwrap();
        assert_eq!(c.policy, vec![PathBuf::from("/etc/warden/policies")]);
        assert_eq!(c.data_dir, Some(PathBuf::from("/etc/warden/data")));
        assert_eq!(c.durability, Some(ConfigDurability::Batched));
        assert!(c.is_multi());
        let cmd = c.servers[0].server_command().unwrap();
        assert_eq!(cmd.cwd, Some(PathBuf::from("/etc/warden/work")));
        assert_eq!(cmd.env, vec![("A".into(), "b".into())]);
    }

    #[test]
    fn unknown_keys_name_file_line_and_column() {
        let e = parse("servers:\n  - name: fs\n    command: x\n    prefx: fs_\n").unwrap_err();
        assert!(e.contains("gateway.yaml"), "{e}");
        assert!(e.contains("prefx"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        assert!(e.contains("column"), "{e}");
        let e = parse("servers: []\nlisten2: x\n").unwrap_err();
        assert!(e.contains("listen2") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_servers_are_refused() {
        for (bad, needle) in [
            ("servers: []\n", "at least one"),
            ("policy: [p]\n", "servers"),
            (
                "servers:\n  - name: a\n    command: x\n  - name: a\n    command: y\n",
                "servers[1].name",
            ),
            (
                "servers:\n  - name: 'a b'\n    command: x\n",
                "servers[0].name",
            ),
            ("servers:\n  - name: a\n", "exactly one"),
            (
                "servers:\n  - name: a\n    command: x\n    url: http://h/mcp\n",
                "exactly one",
            ),
            ("servers:\n  - name: a\n    url: ftp://h/mcp\n", "https://"),
            (
                "servers:\n  - name: a\n    command: x\n    headers: {X-Key: v}\n",
                "servers[0].headers",
            ),
            (
                "servers:\n  - name: a\n    command: x\n    ca_cert: ca.pem\n",
                "servers[0].ca_cert",
            ),
            (
                "servers:\n  - name: a\n    url: http://h/mcp\n    ca_cert: ca.pem\n",
                "https://",
            ),
            (
                "servers:\n  - name: a\n    url: https://h/mcp\n    headers: {Mcp-Session-Id: v}\n",
                "servers[0].headers.Mcp-Session-Id",
            ),
            (
                "servers:\n  - name: a\n    url: https://h/mcp\n    headers: {Host: v}\n",
                "set by the gateway",
            ),
            (
                "servers:\n  - name: a\n    url: https://h/mcp\n    headers: {X-A: v, x-a: w}\n",
                "twice",
            ),
            (
                "token_file: t\nservers:\n  - name: a\n    command: x\n",
                "with `listen` only",
            ),
            (
                "servers:\n  - name: a\n    url: http://h/mcp\n    args: [x]\n",
                "belong to",
            ),
            (
                "listen: 127.0.0.1:1\nservers:\n  - name: a\n    command: x\n",
                "listen",
            ),
            (
                "max_sessions: 2\nservers:\n  - name: a\n    command: x\n  - name: b\n    command: y\n",
                "with `listen` only",
            ),
            (
                "listen: 127.0.0.1:1\nmax_sessions: 0\nservers:\n  - name: a\n    command: x\n  - name: b\n    command: y\n",
                "at least 1",
            ),
            (
                "durability: fast\nservers:\n  - name: a\n    command: x\n",
                "line 1",
            ),
            (
                "servers:\n  - name: a\n    command: x\n    args: x\n",
                "line 4",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("../../../docs/mcp.md");
        let start = doc.find("# gateway.yaml").unwrap();
        let block = &doc[start..];
        let example = &block[..block.find("```").unwrap()];
        let c = parse(example).unwrap();
        assert_eq!(c.servers.len(), 3);
        assert!(c.is_multi());
        assert_eq!(c.servers[1].prefix, "ev_");
        assert!(matches!(
            c.servers[2].transport(),
            Ok(crate::UpstreamTransport::Http(_))
        ));
        assert_eq!(c.agent.as_deref(), Some("my-agent"));
        assert_eq!(c.api.as_deref(), Some("127.0.0.1:9000"));
        // The HTTPS example: headers expanded, paths anchored at the file.
        let start = doc.find("# remote.yaml").unwrap();
        let block = &doc[start..];
        let example = &block[..block.find("```").unwrap()];
        let env = |k: &str| (k == "REMOTE_MCP_TOKEN").then(|| "r-tok".to_owned());
        let c = GatewayConfig::parse_with_env(example, Path::new("/etc/warden/remote.yaml"), env)
            .unwrap();
        assert_eq!(c.servers.len(), 3);
        assert_eq!(
            c.token_file,
            Some(PathBuf::from("/etc/warden/secrets/mcp.token"))
        );
        let remote: Vec<_> = c.servers[1].headers.iter().collect();
        assert_eq!(remote[0], ("Authorization", "Bearer r-tok"));
        assert_eq!(
            c.servers[2].ca_cert,
            Some(PathBuf::from("/etc/warden/certs/corp-ca.pem"))
        );
        assert!(matches!(
            c.servers[1].transport(),
            Ok(crate::UpstreamTransport::Http(t)) if t.header_names().count() == 2
        ));
        // Without the variable the file does not load.
        assert!(GatewayConfig::parse_with_env(example, Path::new("/r.yaml"), |_| None).is_err());
    }

    #[test]
    fn url_servers_mix_with_command_servers_in_multi_mode() {
        let c = parse(
            "servers:\n  - name: web\n    url: http://127.0.0.1:1/mcp\n  - name: fs\n    command: x\n",
        )
        .unwrap();
        assert!(c.is_multi());
        assert!(matches!(
            c.servers[0].transport(),
            Ok(crate::UpstreamTransport::Http(u)) if u.url() == "http://127.0.0.1:1/mcp"
        ));
        assert!(matches!(
            c.servers[1].transport(),
            Ok(crate::UpstreamTransport::Stdio(_))
        ));
        let c = parse("servers:\n  - name: web\n    url: http://127.0.0.1:1/mcp\n    prefix: w_\n")
            .unwrap();
        assert!(c.is_multi());
    }

    #[test]
    fn one_server_without_prefix_is_the_single_gateway() {
        let c = parse(
            "servers:\n  - name: web\n    url: http://127.0.0.1:1/mcp\nlisten: 127.0.0.1:2\n",
        )
        .unwrap();
        assert!(!c.is_multi());
        assert!(c.servers[0].server_command().is_none());
    }

    #[test]
    fn several_servers_may_listen_with_session_limits() {
        let c = parse(
            "listen: 127.0.0.1:2\nmax_sessions: 8\nsession_idle_secs: 60\nservers:\n  - name: a\n    command: x\n  - name: web\n    url: http://127.0.0.1:1/mcp\n",
        )
        .unwrap();
        assert!(c.is_multi());
        assert_eq!(c.max_sessions, Some(8));
        assert_eq!(c.session_idle_secs, Some(60));
        // A prefix makes a single stdio server a multi gateway, which may listen.
        let c =
            parse("listen: 127.0.0.1:2\nservers:\n  - name: a\n    command: x\n    prefix: a_\n")
                .unwrap();
        assert!(c.is_multi());
    }

    fn env(name: &str) -> Option<String> {
        (name == "API_TOKEN").then(|| "tok-987".to_owned())
    }

    #[test]
    fn https_servers_take_headers_from_the_environment_and_a_ca() {
        let text = "listen: 127.0.0.1:2\ntoken_file: secrets/token\nservers:\n  - name: remote\n    url: https://mcp.example.com/mcp\n    ca_cert: certs/ca.pem\n    headers:\n      Authorization: Bearer ${API_TOKEN}\n      X-Team: blue\n";
        let path = Path::new("/etc/warden/gateway.yaml");
        let c = GatewayConfig::parse_with_env(text, path, env).unwrap();
        let s = &c.servers[0];
        assert_eq!(
            c.token_file,
            Some(PathBuf::from("/etc/warden/secrets/token"))
        );
        assert_eq!(s.ca_cert, Some(PathBuf::from("/etc/warden/certs/ca.pem")));
        let headers: Vec<_> = s.headers.iter().collect();
        assert_eq!(
            headers,
            vec![("Authorization", "Bearer tok-987"), ("X-Team", "blue")]
        );
        // Values never show in Debug output.
        let shown = format!("{c:?}");
        assert!(
            shown.contains("Authorization") && !shown.contains("tok-987"),
            "{shown}"
        );
        // The CA file does not exist: the endpoint cannot be made, naming the server.
        let e = s.transport().unwrap_err().to_string();
        assert!(e.contains("`remote`") && e.contains("ca.pem"), "{e}");
    }

    #[test]
    fn a_missing_variable_names_the_server_and_header() {
        let text = "servers:\n  - name: remote\n    url: https://h/mcp\n    headers:\n      Authorization: Bearer ${NOT_SET_ANYWHERE}\n";
        let e = GatewayConfig::parse_with_env(text, Path::new("/g.yaml"), env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/g.yaml"), "{e}");
        assert!(e.contains("servers[0].headers.Authorization"), "{e}");
        assert!(
            e.contains("`remote`") && e.contains("NOT_SET_ANYWHERE"),
            "{e}"
        );
    }
}
