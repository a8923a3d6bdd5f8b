//! Client authentication of the HTTP gateway (`--listen`): a bearer token.
//!
//! The token comes from [`TOKEN_ENV`] or a token file (content trimmed; on
//! Unix a file others may read is refused). Requests without
//! `Authorization: Bearer <token>` get 401 with `WWW-Authenticate: Bearer`.
//! Only the token's SHA-256 digest is kept, and digests are compared in
//! constant time. Without a token the gateway serves loopback addresses
//! only, unless told explicitly to serve without ([`ClientAuth::insecure_no_auth`]).

use crate::McpError;
use crate::http::rpc_error;
use crate::jsonrpc::INVALID_REQUEST;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::middleware::Next;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use warden_token::{BearerToken, TokenError};

pub use warden_token::MIN_TOKEN_LEN;

/// The environment variable holding the client token.
pub const TOKEN_ENV: &str = "WARDEN_MCP_TOKEN";

/// Who may use the HTTP gateway.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// The required token (its digest only); `None`: no token.
    token: Option<BearerToken>,
    /// Without a token, serve non-loopback addresses too.
    insecure: bool,
}

fn refused(source: &str, e: TokenError) -> McpError {
    McpError::Auth(format!("client token from {source}: {e}"))
}

impl ClientAuth {
    /// No token: the gateway may listen on loopback addresses only.
    pub fn loopback_only() -> ClientAuth {
        ClientAuth {
            token: None,
            insecure: false,
        }
    }

    /// No token, on any address: anyone who can reach the gateway can use
    /// every upstream through it (`--insecure-no-auth`).
    pub fn insecure_no_auth() -> ClientAuth {
        ClientAuth {
            token: None,
            insecure: true,
        }
    }

    /// Requires `token` (from `source`, named in errors: e.g. [`TOKEN_ENV`]).
    pub fn token(token: &str, source: &str) -> Result<ClientAuth, McpError> {
        Ok(ClientAuth {
            token: Some(BearerToken::new(token).map_err(|e| refused(source, e))?),
            insecure: false,
        })
    }

    /// Requires the token in the file `path` (trimmed). On Unix the file
    /// must not be readable by every user (`chmod 600`).
    pub fn token_file(path: &Path) -> Result<ClientAuth, McpError> {
        Ok(ClientAuth {
            token: Some(
                BearerToken::from_file(path)
                    .map_err(|e| refused(&path.display().to_string(), e))?,
            ),
            insecure: false,
        })
    }

    /// The token from `env_token` (the value of [`TOKEN_ENV`], if set),
    /// else from `file`, else none: [`ClientAuth::insecure_no_auth`] when
    /// `insecure`, else [`ClientAuth::loopback_only`]. A token set both ways
    /// is taken from the environment, as the sidecar's admin token is.
    pub fn resolve(
        env_token: Option<&str>,
        file: Option<&Path>,
        insecure: bool,
    ) -> Result<ClientAuth, McpError> {
        match (env_token, file) {
            (Some(t), _) => ClientAuth::token(t, TOKEN_ENV),
            (None, Some(path)) => ClientAuth::token_file(path),
            (None, None) if insecure => Ok(ClientAuth::insecure_no_auth()),
            (None, None) => Ok(ClientAuth::loopback_only()),
        }
    }

    /// Whether requests must carry the token.
    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether the gateway may serve on `addr`: always with a token or
    /// with [`ClientAuth::insecure_no_auth`], else on loopback only (the
    /// error says how to set a token).
    pub fn check_listener(&self, addr: SocketAddr) -> Result<(), McpError> {
        if self.token.is_some() || self.insecure || addr.ip().to_canonical().is_loopback() {
            return Ok(());
        }
        Err(McpError::Auth(format!(
            "refusing to serve MCP on {addr} without client authentication: set a token \
             ({MIN_TOKEN_LEN}+ characters) in the {TOKEN_ENV} environment variable or in a \
             file named by --token-file (`token_file:` in the gateway file); clients then send \
             `Authorization: Bearer <token>`. To serve without one anyway, pass --insecure-no-auth"
        )))
    }

    /// `Ok` when no token is required or `headers` carry it; else why not.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        token
            .check(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
            .map_err(|r| r.as_str())
    }
}

/// The 401 answer: `WWW-Authenticate: Bearer` and a JSON-RPC error.
fn unauthorized(why: &str) -> Response<Body> {
    let mut r = rpc_error(
        StatusCode::UNAUTHORIZED,
        &Value::Null,
        INVALID_REQUEST,
        &format!("unauthorized: {why}"),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"warden-mcp\""),
    );
    r
}

/// Middleware: refuses requests without the token; the token is the
/// gateway's, so its `Authorization` header is never passed upstream.
pub(crate) async fn require(
    State(auth): State<Arc<ClientAuth>>,
    mut req: Request,
    next: Next,
) -> Response<Body> {
    if let Err(why) = auth.check(req.headers()) {
        return unauthorized(why);
    }
    if auth.requires_token() {
        req.headers_mut().remove(header::AUTHORIZATION);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn bearer(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let a = ClientAuth::token(TOKEN, TOKEN_ENV).unwrap();
        assert!(a.check(&bearer(&format!("Bearer {TOKEN}"))).is_ok());
        assert!(a.check(&bearer(&format!("bearer {TOKEN}"))).is_ok());
        assert!(a.check(&HeaderMap::new()).is_err());
        assert!(a.check(&bearer("Bearer 0123456789abcdef-tokeN")).is_err());
        assert!(
            a.check(&bearer("Bearer 0123456789abcdef-token-and-more"))
                .is_err()
        );
        assert!(a.check(&bearer("Bearer 0123")).is_err());
        assert!(a.check(&bearer("Bearer ")).is_err());
        assert!(a.check(&bearer(&format!("Basic {TOKEN}"))).is_err());
        assert!(a.check(&bearer(TOKEN)).is_err());
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        );
        assert!(a.check(&h).is_err());
        // Debug never shows the token or its digest.
        assert!(!format!("{a:?}").contains(TOKEN));
    }

    #[test]
    fn weak_tokens_are_refused() {
        assert!(ClientAuth::token("short", TOKEN_ENV).is_err());
        assert!(ClientAuth::token("sixteen chars with spaces", TOKEN_ENV).is_err());
        assert!(ClientAuth::token("", TOKEN_ENV).is_err());
        let e = ClientAuth::resolve(Some(""), None, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains(TOKEN_ENV), "{e}");
    }

    #[test]
    fn token_files_are_trimmed_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, format!("  {TOKEN}\n")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = ClientAuth::token_file(&p).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let a = ClientAuth::resolve(None, Some(&p), false).unwrap();
        assert!(a.check(&bearer(&format!("Bearer {TOKEN}"))).is_ok());
        // The environment wins over the file.
        let a = ClientAuth::resolve(Some("another-token-1234567"), Some(&p), false).unwrap();
        assert!(a.check(&bearer(&format!("Bearer {TOKEN}"))).is_err());
        assert!(ClientAuth::token_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn tokenless_gateways_listen_on_loopback_only() {
        let open = ClientAuth::loopback_only();
        assert!(open.check(&HeaderMap::new()).is_ok());
        for ok in [
            "127.0.0.1:1",
            "[::1]:1",
            "127.8.9.10:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(open.check_listener(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for bad in ["0.0.0.0:1", "[::]:1", "10.0.0.1:1", "[::ffff:10.0.0.1]:1"] {
            let e = open
                .check_listener(bad.parse().unwrap())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(TOKEN_ENV) && e.contains("--insecure-no-auth"),
                "{e}"
            );
        }
        let any: SocketAddr = "0.0.0.0:1".parse().unwrap();
        assert!(ClientAuth::insecure_no_auth().check_listener(any).is_ok());
        assert!(
            ClientAuth::token(TOKEN, TOKEN_ENV)
                .unwrap()
                .check_listener(any)
                .is_ok()
        );
    }
}
