//! HTTPS upstreams, upstream request headers and client authentication on
//! the HTTP gateway, over real sockets: an in-test MCP server behind rustls
//! (a CA and server certificate generated per test with rcgen) fronted by
//! the single-upstream proxy (`serve_http`) and the multi-upstream gateway
//! (`serve_multi_http`, set up from a gateway file). The server records the
//! method and headers of every request it gets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use common::{Capture, call, kernel, policy, send};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use warden_mcp::{
    ClientAuth, Gateway, GatewayConfig, HttpTarget, ListenLimits, McpError, PinStore, UpstreamSpec,
    serve_http, serve_multi_http,
};

/// The gateway's own client token in these tests.
const GW_TOKEN: &str = "gateway-token-0123456789";

/// What the HTTPS upstream saw: (method, headers) per request.
#[derive(Default)]
struct Seen(Mutex<Vec<(Method, HeaderMap)>>);

impl Seen {
    fn all(&self) -> Vec<(Method, HeaderMap)> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

async fn upstream(
    State(seen): State<Arc<Seen>>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    seen.0.lock().unwrap().push((method.clone(), headers));
    match method {
        Method::GET => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
        Method::DELETE => return StatusCode::OK.into_response(),
        _ => {}
    }
    let msg: Value = serde_json::from_str(&body).unwrap();
    let id = msg["id"].clone();
    if id.is_null() {
        return StatusCode::ACCEPTED.into_response();
    }
    let result = match msg["method"].as_str().unwrap_or("") {
        "initialize" => json!({"protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}}, "serverInfo": {"name": "tls-up", "version": "1"}}),
        "tools/list" => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
        "tools/call" => json!({"content": [{"type": "text",
            "text": format!("echo {}", msg["params"]["arguments"])}]}),
        _ => json!({}),
    };
    let out = json!({"jsonrpc": "2.0", "id": id, "result": result});
    (
        [
            ("content-type", "application/json"),
            ("mcp-session-id", "up-session-1"),
        ],
        out.to_string(),
    )
        .into_response()
}

/// A test CA (PEM) and a server certificate it issued for `names`.
struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "warden test CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    }
}

/// The MCP server over HTTPS on a free loopback port: its URL (by IP) and what it saw.
async fn https_upstream(pki: &Pki) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .route(
            "/mcp",
            axum::routing::post(upstream).get(upstream).delete(upstream),
        )
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&pki.server));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("https://127.0.0.1:{port}/mcp"), seen)
}

fn write_ca(dir: &Path, pki: &Pki) -> std::path::PathBuf {
    let path = dir.join("ca.pem");
    std::fs::write(&path, &pki.ca_pem).unwrap();
    path
}

fn gateway(label: &str) -> Arc<Gateway> {
    let k = kernel(&policy("tls-test", ""), &Arc::new(Capture::default()));
    Arc::new(Gateway::new(k, "agent-1", label))
}

fn initialize() -> String {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "tls-test", "version": "1"}}})
    .to_string()
}

/// Requests without the right bearer token get 401, `WWW-Authenticate:
/// Bearer` and a JSON-RPC error, whatever the method; the upstream sees none.
async fn assert_refused_without_token(url: &str, seen: &Seen) {
    let before = seen.count();
    let same_length_wrong = "gateway-token-0123456780";
    assert_eq!(same_length_wrong.len(), GW_TOKEN.len());
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong")],
        vec![("authorization", "Bearer gateway-token-0123456789-and-more")],
        vec![("authorization", "Bearer gateway-token-012345678")],
        vec![("authorization", "Bearer gateway-token-0123456780")],
        vec![("authorization", "Basic Z2F0ZXdheS10b2tlbg==")],
        vec![("authorization", GW_TOKEN)],
        vec![("authorization", "Bearer ")],
    ] {
        for method in [Method::POST, Method::GET, Method::DELETE] {
            let (status, h, body) = send(method.clone(), url, &headers, &call(1, "echo")).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {headers:?}: {body}"
            );
            let challenge = h.get("www-authenticate").unwrap().to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["jsonrpc"], "2.0", "{body}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("unauthorized"),
                "{body}"
            );
        }
    }
    assert_eq!(
        seen.count(),
        before,
        "a refused request reached the upstream"
    );
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_proxy_reaches_an_https_upstream_with_its_ca_headers_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&["127.0.0.1"]);
    let (up_url, seen) = https_upstream(&pki).await;
    let target = HttpTarget::new(&up_url)
        .unwrap()
        .with_ca_cert(&write_ca(dir.path(), &pki))
        .unwrap()
        .with_header("Authorization", "Bearer upstream-secret")
        .unwrap()
        .with_header("X-Team", "blue")
        .unwrap();
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", front.local_addr().unwrap());
    let auth = ClientAuth::token(GW_TOKEN, "test").unwrap();
    tokio::spawn(serve_http(gateway("tls"), target, front, auth));
    let bearer = format!("Bearer {GW_TOKEN}");
    let ok = [("authorization", bearer.as_str())];

    let (status, _, body) = send(Method::POST, &url, &ok, &call(1, "echo")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["result"]["content"][0]["text"], r#"echo {"x":1}"#,
        "{body}"
    );
    // The scheme is case-insensitive.
    let lower = format!("bearer {GW_TOKEN}");
    let (status, _, body) = send(
        Method::POST,
        &url,
        &[("authorization", &lower)],
        &call(2, "echo"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = send(Method::GET, &url, &ok, "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _, _) = send(Method::DELETE, &url, &[ok[0], ("mcp-session-id", "s1")], "").await;
    assert_eq!(status, StatusCode::OK);

    let all = seen.all();
    // tools/list (the gateway's own), two calls, the GET and the DELETE.
    let methods: Vec<&Method> = all.iter().map(|(m, _)| m).collect();
    assert!(
        methods.contains(&&Method::GET) && methods.contains(&&Method::DELETE),
        "{methods:?}"
    );
    assert!(
        all.iter().filter(|(m, _)| m == Method::POST).count() >= 3,
        "{methods:?}"
    );
    for (method, h) in &all {
        // The configured header replaces the client's: the gateway token never leaves.
        assert_eq!(
            header(h, "authorization"),
            Some("Bearer upstream-secret"),
            "{method}"
        );
        assert_eq!(h.get_all("authorization").iter().count(), 1, "{method}");
        assert_eq!(header(h, "x-team"), Some("blue"), "{method}");
    }
    assert_eq!(header(&all.last().unwrap().1, "mcp-session-id"), Some("s1"));

    assert_refused_without_token(&url, &seen).await;

    // Without a configured Authorization, the client's (the gateway's token)
    // is still not passed on.
    let target = HttpTarget::new(&up_url)
        .unwrap()
        .with_ca_cert(&write_ca(dir.path(), &pki))
        .unwrap();
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", front.local_addr().unwrap());
    let auth = ClientAuth::token(GW_TOKEN, "test").unwrap();
    tokio::spawn(serve_http(gateway("tls"), target, front, auth));
    let before = seen.count();
    let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}).to_string();
    let (status, _, body) = send(Method::POST, &url, &ok, &ping).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let all = seen.all();
    assert_eq!(all.len(), before + 1);
    assert_eq!(header(&all[before].1, "authorization"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_or_misnamed_certificate_is_a_tls_error_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    // Signed by a CA the gateway does not trust.
    let pki_a = pki(&["127.0.0.1"]);
    let (untrusted, seen_a) = https_upstream(&pki_a).await;
    // Trusted CA, but the certificate names another host.
    let pki_b = pki(&["mcp.internal.example"]);
    let (misnamed, seen_b) = https_upstream(&pki_b).await;
    let targets = [
        HttpTarget::new(&untrusted).unwrap(),
        HttpTarget::new(&misnamed)
            .unwrap()
            .with_ca_cert(&write_ca(dir.path(), &pki_b))
            .unwrap(),
    ];
    for (target, needle) in targets
        .into_iter()
        .zip(["UnknownIssuer", "not valid for name"])
    {
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", front.local_addr().unwrap());
        tokio::spawn(serve_http(
            gateway("tls"),
            target,
            front,
            ClientAuth::loopback_only(),
        ));
        // A decided call: refused as an isError result naming the TLS failure.
        let (status, _, body) = send(Method::POST, &url, &[], &call(1, "echo")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["result"]["isError"], true, "{body}");
        assert!(
            body.contains("TLS handshake") && body.contains(needle),
            "{body}"
        );
        // A forwarded request: a JSON-RPC error, 502.
        let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}).to_string();
        let (status, _, body) = send(Method::POST, &url, &[], &ping).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("TLS handshake"),
            "{body}"
        );
        let (status, _, body) = send(Method::GET, &url, &[], "").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert!(body.contains("TLS handshake"), "{body}");
    }
    assert_eq!(
        seen_a.count() + seen_b.count(),
        0,
        "a request passed a failed handshake"
    );
}

/// The multi gateway from a gateway file: one https server (prefixed)
/// with its CA and an `Authorization` header from the environment.
fn multi_specs(dir: &Path, url: &str, ca: Option<&Path>) -> Result<Vec<UpstreamSpec>, McpError> {
    let ca_line = ca.map_or(String::new(), |p| format!("    ca_cert: {}\n", p.display()));
    let text = format!(
        "listen: 127.0.0.1:0\nservers:\n  - name: web\n    url: {url}\n    prefix: w_\n{ca_line}    headers:\n      Authorization: Bearer ${{UP_TOKEN}}\n      X-Team: ${{TEAM}}-team\n"
    );
    let env = |k: &str| match k {
        "UP_TOKEN" => Some("from-env-42".to_owned()),
        "TEAM" => Some("red".to_owned()),
        _ => None,
    };
    let c = GatewayConfig::parse_with_env(&text, &dir.join("gateway.yaml"), env).unwrap();
    let k = kernel(&policy("tls-test", ""), &Arc::new(Capture::default()));
    let pins = Arc::new(PinStore::in_memory());
    c.servers
        .iter()
        .map(|s| {
            Ok(UpstreamSpec {
                gateway: Arc::new(
                    Gateway::new(Arc::clone(&k), "agent-1", &s.name)
                        .with_shared_pins(Arc::clone(&pins)),
                ),
                transport: s.transport()?,
                prefix: s.prefix.clone(),
            })
        })
        .collect()
}

async fn serve_multi(specs: Vec<UpstreamSpec>, auth: ClientAuth) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(serve_multi_http(
        specs,
        listener,
        ListenLimits::default(),
        auth,
        std::future::pending(),
    ));
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_gateway_reaches_an_https_upstream_with_expanded_headers_and_a_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&["127.0.0.1"]);
    let (up_url, seen) = https_upstream(&pki).await;
    let specs = multi_specs(dir.path(), &up_url, Some(&write_ca(dir.path(), &pki))).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{GW_TOKEN}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let url = serve_multi(specs, ClientAuth::token_file(&token_file).unwrap()).await;
    let bearer = format!("Bearer {GW_TOKEN}");
    let (status, h, body) = send(
        Method::POST,
        &url,
        &[("authorization", &bearer)],
        &initialize(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sid = header(&h, "mcp-session-id").unwrap().to_owned();
    let with = [
        ("authorization", bearer.as_str()),
        ("mcp-session-id", sid.as_str()),
    ];
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    let (status, _, _) = send(Method::POST, &url, &with, &note).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, body) = send(Method::POST, &url, &with, &call(1, "w_echo")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#"echo {\"x\":1}"#), "{body}");
    assert!(!body.contains("isError"), "{body}");

    assert_refused_without_token(&url, &seen).await;

    let (status, _, _) = send(Method::DELETE, &url, &with, "").await;
    assert!(status.is_success(), "{status}");
    // The upstream session ends with a DELETE of its own.
    for _ in 0..100 {
        if seen.all().iter().any(|(m, _)| m == Method::DELETE) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let all = seen.all();
    let methods: Vec<&Method> = all.iter().map(|(m, _)| m).collect();
    for m in [Method::POST, Method::GET, Method::DELETE] {
        assert!(methods.contains(&&m), "no {m} in {methods:?}");
    }
    for (method, h) in &all {
        assert_eq!(
            header(h, "authorization"),
            Some("Bearer from-env-42"),
            "{method}"
        );
        assert_eq!(header(h, "x-team"), Some("red-team"), "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_gateway_without_the_ca_refuses_calls_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&["127.0.0.1"]);
    let (up_url, seen) = https_upstream(&pki).await;
    let specs = multi_specs(dir.path(), &up_url, None).unwrap();
    let url = serve_multi(specs, ClientAuth::loopback_only()).await;
    // The session cannot start: a JSON-RPC error naming the TLS failure.
    let (status, h, body) = send(Method::POST, &url, &[], &initialize()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(h.get("mcp-session-id").is_none(), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        message.contains("TLS handshake") && message.contains("UnknownIssuer"),
        "{body}"
    );
    // A stateless call (no session) is refused, not passed.
    let (status, _, body) = send(Method::POST, &url, &[], &call(1, "w_echo")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let refused = v["result"]["isError"] == true || v.get("error").is_some();
    assert!(refused, "{body}");
    assert!(!body.contains("echo {"), "{body}");
    assert_eq!(seen.count(), 0, "a request passed a failed handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ca_file_or_variable_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let e = multi_specs(dir.path(), "https://127.0.0.1:1/mcp", Some(&missing))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`web`") && e.contains("nope.pem"), "{e}");
    let text = "servers:\n  - name: web\n    url: https://h/mcp\n    headers:\n      Authorization: Bearer ${UNSET_FOR_SURE}\n";
    let e = GatewayConfig::parse_with_env(text, &dir.path().join("g.yaml"), |_| None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("headers.Authorization") && e.contains("UNSET_FOR_SURE"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_listeners_need_a_token_or_an_explicit_opt_out() {
    let any = || async { tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap() };
    let target = HttpTarget::new("http://127.0.0.1:1/mcp").unwrap();
    let e = serve_http(
        gateway("x"),
        target.clone(),
        any().await,
        ClientAuth::loopback_only(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, McpError::Auth(_)), "{e}");
    assert!(e.to_string().contains("WARDEN_MCP_TOKEN"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let specs = multi_specs(dir.path(), "http://127.0.0.1:1/mcp", None).unwrap();
    let e = serve_multi_http(
        specs,
        any().await,
        ListenLimits::default(),
        ClientAuth::loopback_only(),
        std::future::ready(()),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("--insecure-no-auth"), "{e}");
    // With a token, or told to, it serves (stopped at once here).
    for auth in [
        ClientAuth::token(GW_TOKEN, "test").unwrap(),
        ClientAuth::insecure_no_auth(),
    ] {
        let specs = multi_specs(dir.path(), "http://127.0.0.1:1/mcp", None).unwrap();
        serve_multi_http(
            specs,
            any().await,
            ListenLimits::default(),
            auth,
            std::future::ready(()),
        )
        .await
        .unwrap();
    }
}
