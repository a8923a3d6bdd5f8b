//! The HTTP client both HTTP paths use to reach an upstream MCP server
//! (`--upstream` in http.rs, `url:` servers in upstream_http.rs): `http://`
//! or `https://` (rustls with the `ring` provider; certificates always
//! verified against the Mozilla roots plus an optional CA bundle of the
//! upstream's own), and the extra request headers configured for it.

use crate::McpError;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Headers the gateway sets (or strips) itself on upstream requests: an
/// upstream's configured headers may not name them.
pub const MANAGED_HEADERS: [&str; 8] = [
    "mcp-session-id",
    "mcp-protocol-version",
    "content-type",
    "accept",
    "host",
    "content-length",
    "mcp-method",
    "mcp-name",
];

/// Hop-by-hop headers: meaningless (or harmful) as configured headers.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Longest wait for a TCP connection to the upstream.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client type of every upstream request.
pub(crate) type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One Streamable HTTP upstream endpoint, ready to connect to: its URL
/// (`http://` or `https://`), the TLS trust it is verified against and the
/// headers sent on every request to it (POST, the GET stream, DELETE).
///
/// Header values are secrets as far as the gateway knows: `Debug` shows the
/// header names only, and no error message carries a value.
#[derive(Clone)]
pub struct HttpTarget {
    url: String,
    uri: hyper::Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    ca_cert: Option<PathBuf>,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTarget")
            .field("url", &self.url)
            .field("headers", &self.header_names().collect::<Vec<_>>())
            .field("ca_cert", &self.ca_cert)
            .finish_non_exhaustive()
    }
}

impl HttpTarget {
    /// The endpoint at `url`, an `http://` or `https://` URL with a host;
    /// `https://` servers must present a certificate for that host issued
    /// under one of the Mozilla roots (see [`HttpTarget::with_ca_cert`]).
    pub fn new(url: &str) -> Result<HttpTarget, McpError> {
        let uri = upstream_uri(url).map_err(McpError::Upstream)?;
        Ok(HttpTarget {
            url: url.to_owned(),
            uri,
            headers: Vec::new(),
            ca_cert: None,
            tls: Arc::new(tls_config(&[]).map_err(McpError::Upstream)?),
        })
    }

    /// Also trusts the CA certificates in the PEM file `path` (for a
    /// server with a certificate from a private CA). Verification stays on:
    /// the certificate must still chain to a trusted root and name the host.
    pub fn with_ca_cert(mut self, path: &Path) -> Result<HttpTarget, McpError> {
        let err = |why: String| McpError::Upstream(format!("CA bundle {}: {why}", path.display()));
        let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("not a PEM certificate bundle: {e}")))?;
        if certs.is_empty() {
            return Err(err("no PEM certificate in it".to_owned()));
        }
        self.tls = Arc::new(tls_config(&certs).map_err(err)?);
        self.ca_cert = Some(path.to_path_buf());
        Ok(self)
    }

    /// Also sends `name: value` on every request to the upstream. Refused:
    /// an invalid name or value, a header the gateway manages
    /// ([`MANAGED_HEADERS`]) or a hop-by-hop header, and a name given twice.
    /// The error names the header, never the value.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<HttpTarget, McpError> {
        let (name, value) = checked_header(name, value).map_err(McpError::Upstream)?;
        if self.headers.iter().any(|(n, _)| *n == name) {
            return Err(McpError::Upstream(format!(
                "header `{name}` is given twice"
            )));
        }
        self.headers.push((name, value));
        Ok(self)
    }

    /// The endpoint URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The names of the configured headers (lowercase), in order.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(n, _)| n.as_str())
    }

    /// The extra CA bundle, if any.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    pub(crate) fn uri(&self) -> &hyper::Uri {
        &self.uri
    }

    /// A new client (its own connection pool) for this endpoint.
    pub(crate) fn client(&self) -> UpstreamClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
    }

    /// A request to this endpoint carrying `body`: the headers `set` puts
    /// on it, then the configured headers (replacing any of the same name).
    pub(crate) fn request(
        &self,
        method: hyper::Method,
        body: Bytes,
        set: impl FnOnce(&mut HeaderMap),
    ) -> Result<hyper::Request<Full<Bytes>>, String> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(self.uri.clone())
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let headers = req.headers_mut();
        set(headers);
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        Ok(req)
    }
}

/// `url` as an upstream endpoint: `http://` or `https://`, with a host.
pub(crate) fn upstream_uri(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("invalid upstream URL `{url}`: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!(
            "upstream `{url}` must be an http:// or https:// URL with a host"
        ));
    }
    Ok(uri)
}

/// The rustls client configuration: the Mozilla roots plus `extra`.
fn tls_config(extra: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A configured header, checked; the error names the header, never the value.
pub(crate) fn checked_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let parsed = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("`{name}` is not a valid HTTP header name"))?;
    if MANAGED_HEADERS.contains(&parsed.as_str()) || HOP_BY_HOP.contains(&parsed.as_str()) {
        return Err(format!(
            "header `{name}` is set by the gateway itself and cannot be configured"
        ));
    }
    let mut value = HeaderValue::from_str(value.trim()).map_err(|_| {
        format!(
            "the value of header `{name}` is not a valid HTTP header value (control characters?)"
        )
    })?;
    value.set_sensitive(true);
    Ok((parsed, value))
}

/// `value` with every `${NAME}` replaced by the variable `NAME` as `env`
/// gives it. A variable that is unset (or empty), an unterminated `${` and a
/// name that is not letters, digits and `_` are errors naming the variable.
pub fn expand_env(value: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("`${` without a closing `}`".to_owned());
        };
        let name = &after[..end];
        let ok = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(format!(
                "`${{{name}}}` is not an environment variable reference"
            ));
        }
        match env(name) {
            Some(v) if !v.is_empty() => out.push_str(&v),
            _ => {
                return Err(format!(
                    "environment variable `{name}` is not set (or empty)"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `e` and its sources, one clause each; a failed TLS handshake (bad or
/// untrusted certificate, wrong host) is named as such.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut tls = false;
    let mut source = Some(e);
    while let Some(s) = source {
        tls |= is_tls(s);
        if !std::ptr::addr_eq(s, e) {
            let clause = s.to_string();
            if !text.contains(&clause) {
                text.push_str(": ");
                text.push_str(&clause);
            }
        }
        source = s.source();
    }
    if tls {
        format!("TLS handshake with the upstream failed ({text})")
    } else {
        text
    }
}

/// Whether `e` is a rustls error, or an I/O error wrapping one (at any
/// depth: the TLS connector wraps the handshake's I/O error once more).
fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut e = e;
    for _ in 0..8 {
        if e.is::<rustls::Error>() {
            return true;
        }
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => e = inner,
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_references_expand_or_fail() {
        assert_eq!(expand_env("Bearer ${TOKEN}", env).unwrap(), "Bearer s3cret");
        assert_eq!(expand_env("${TOKEN}${TOKEN}", env).unwrap(), "s3crets3cret");
        assert_eq!(expand_env("a $TOKEN b", env).unwrap(), "a $TOKEN b");
        let e = expand_env("Bearer ${MISSING}", env).unwrap_err();
        assert!(e.contains("MISSING"), "{e}");
        assert!(expand_env("${EMPTY}", env).unwrap_err().contains("EMPTY"));
        assert!(expand_env("${TOKEN", env).is_err());
        assert!(expand_env("${}", env).is_err());
        assert!(expand_env("${A-B}", env).is_err());
        assert!(expand_env("${1A}", env).is_err());
    }

    #[test]
    fn managed_and_malformed_headers_are_refused() {
        for name in [
            "Mcp-Session-Id",
            "MCP-PROTOCOL-VERSION",
            "content-type",
            "Accept",
            "Host",
            "Content-Length",
            "Mcp-Method",
            "Mcp-Name",
            "Transfer-Encoding",
            "Connection",
        ] {
            let e = checked_header(name, "x").unwrap_err();
            assert!(e.contains(name) && e.contains("gateway"), "{e}");
        }
        assert!(checked_header("bad name", "x").is_err());
        assert!(checked_header("", "x").is_err());
        let e = checked_header("Authorization", "Bearer a\r\nX-Evil: 1").unwrap_err();
        assert!(!e.contains("Bearer") && !e.contains("Evil"), "{e}");
        let (n, v) = checked_header("X-Api-Key", "k").unwrap();
        assert_eq!(n.as_str(), "x-api-key");
        assert!(v.is_sensitive());
    }

    #[test]
    fn targets_accept_http_and_https_and_hide_values() {
        assert!(HttpTarget::new("https://mcp.example.com/mcp").is_ok());
        assert!(HttpTarget::new("http://127.0.0.1:1/mcp").is_ok());
        for bad in ["ftp://h/mcp", "/mcp", "https:///mcp", "not a url"] {
            assert!(HttpTarget::new(bad).is_err(), "{bad}");
        }
        let t = HttpTarget::new("https://h/mcp")
            .unwrap()
            .with_header("Authorization", "Bearer hunter2")
            .unwrap();
        let shown = format!("{t:?}");
        assert!(
            shown.contains("authorization") && !shown.contains("hunter2"),
            "{shown}"
        );
        let e = t.with_header("authorization", "x").unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn ca_bundles_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let t = HttpTarget::new("https://h/mcp").unwrap();
        let e = t.clone().with_ca_cert(&empty).unwrap_err().to_string();
        assert!(e.contains("empty.pem") && e.contains("no PEM"), "{e}");
        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(t.clone().with_ca_cert(&bad).is_err());
        let e = t
            .with_ca_cert(&dir.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
