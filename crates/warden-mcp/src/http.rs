//! Streamable HTTP: the gateway serves MCP over HTTP in front of an MCP
//! server reached over HTTP (`warden mcp --upstream http://... --listen ...`).
//!
//! Each POST carries one JSON-RPC message. Intercepted requests are decided
//! like on stdio; their answers (a JSON body or an SSE stream) are rewritten
//! as they pass, every other SSE event passing unchanged and in order.
//! Other messages, and GET/DELETE, are proxied as they are, except that a
//! JSON-RPC response appearing on a GET stream is dropped (answers to
//! decided requests must not bypass the post-call check).
//!
//! The upstream may be `http://` or `https://` ([`HttpTarget`]); its
//! configured headers replace the client's of the same names. With a client
//! token ([`ClientAuth`]) the client's `Authorization` header is the
//! gateway's and is not passed on.

use crate::McpError;
use crate::auth::ClientAuth;
use crate::calls::{
    CallInfo, INTERCEPTED, MAX_PAGES, ToolBook, call_target, checked_result, denial,
    is_notification_method, next_cursor, page_params, reserved,
};
use crate::conn::OWN_ID_PREFIX;
use crate::gate::{Gateway, REASON_UNKNOWN_TOOL, REASON_UPSTREAM_DOWN, RESERVED_TOOLS};
use crate::jsonrpc::{
    INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, Kind, PARSE_ERROR, classify, error_line,
    id_key, result_line, tool_error,
};
use crate::sse::{SseSplitter, event_json, event_with, is_json, is_sse};
use crate::upstream_client::{HttpTarget, UpstreamClient, describe};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// JSON-RPC error for a request whose `Mcp-Method`/`Mcp-Name` headers
/// disagree with its body (MCP 2026-07-28 `HeaderMismatch`).
pub const HEADER_MISMATCH: i64 = -32001;
/// Sessions whose tool books are kept; beyond it all are forgotten (calls
/// then re-list, so forgetting is safe).
const MAX_SESSIONS: usize = 10_000;
/// Headers not forwarded (hop-by-hop, or set by the HTTP client).
const HOP: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

struct Http {
    gw: Arc<Gateway>,
    upstream: HttpTarget,
    client: UpstreamClient,
    sessions: Mutex<HashMap<String, ToolBook>>,
    next_own: AtomicU64,
}

/// What to do with the answer to a forwarded request.
enum Post {
    List { first_page: bool },
    Call(CallInfo),
}

/// Serves Streamable HTTP on `listener` in front of the MCP endpoint
/// `upstream` (the gateway serves the same path), to clients `auth` admits.
/// Refuses to start when `auth` does not allow the listener's address
/// ([`ClientAuth::check_listener`]).
pub async fn serve_http(
    gw: Arc<Gateway>,
    upstream: HttpTarget,
    listener: tokio::net::TcpListener,
    auth: ClientAuth,
) -> Result<(), McpError> {
    auth.check_listener(listener.local_addr()?)?;
    let path = upstream.uri().path().to_owned();
    let client = upstream.client();
    let state = Arc::new(Http {
        gw,
        upstream,
        client,
        sessions: Mutex::new(HashMap::new()),
        next_own: AtomicU64::new(1),
    });
    let app = axum::Router::new()
        .route(&path, axum::routing::post(post).get(get).delete(delete))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            crate::auth::require,
        ));
    axum::serve(listener, app).await?;
    Ok(())
}

pub(crate) fn rpc_error(
    status: StatusCode,
    id: &Value,
    code: i64,
    message: &str,
) -> Response<Body> {
    json_response(status, error_line(id, code, message))
}

pub(crate) fn json_response(status: StatusCode, mut bytes: Vec<u8>) -> Response<Body> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn session_of(headers: &HeaderMap) -> String {
    headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// `Mcp-Method`/`Mcp-Name`, when present, must say what the body says: a
/// request is never routed by its headers alone.
fn headers_match(headers: &HeaderMap, msg: &Value) -> Result<(), String> {
    let header = |n: &str| headers.get(n).map(|v| v.to_str().unwrap_or("\u{0}"));
    let method = msg.get("method").and_then(Value::as_str);
    if let Some(h) = header("mcp-method")
        && Some(h) != method
    {
        return Err(format!("Mcp-Method `{h}` does not match the body's method"));
    }
    if let Some(h) = header("mcp-name") {
        let params = msg.get("params");
        let name = match method {
            Some("resources/read") => params.and_then(|p| p.get("uri")),
            _ => params.and_then(|p| p.get("name")),
        }
        .and_then(Value::as_str);
        if Some(h) != name {
            return Err(format!("Mcp-Name `{h}` does not match the body"));
        }
    }
    Ok(())
}

/// A POSTed message: at most `max` bytes (else 413), one JSON-RPC message
/// (not a batch), valid, and its `Mcp-Method`/`Mcp-Name` headers agreeing
/// with it; else the error response to send instead.
pub(crate) async fn read_post(
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<(Bytes, Value), Response<Body>> {
    let bytes = match Limited::new(body, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            let msg = format!("message exceeds the gateway limit of {max} bytes");
            return Err(rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &Value::Null,
                INVALID_REQUEST,
                &msg,
            ));
        }
    };
    let msg: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            let text = format!("invalid JSON: {e}");
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                PARSE_ERROR,
                &text,
            ));
        }
    };
    if msg.is_array() {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            INVALID_REQUEST,
            "JSON-RPC batches are not part of MCP since 2025-06-18",
        ));
    }
    if let Err(e) = headers_match(headers, &msg) {
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        return Err(rpc_error(StatusCode::BAD_REQUEST, &id, HEADER_MISMATCH, &e));
    }
    if let Kind::Invalid(why) = classify(&msg) {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            INVALID_REQUEST,
            why,
        ));
    }
    if matches!(classify(&msg), Kind::Notification) && !is_notification_method(&msg) {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            INVALID_REQUEST,
            "only `notifications/*` methods may be sent without an id",
        ));
    }
    Ok((bytes, msg))
}

async fn post(State(h): State<Arc<Http>>, headers: HeaderMap, body: Body) -> Response<Body> {
    let (bytes, msg) = match read_post(&headers, body, h.gw.max_message_bytes()).await {
        Ok(m) => m,
        Err(refused) => return refused,
    };
    match classify(&msg) {
        Kind::Request { id, method } => {
            let id = id.clone();
            if id.as_str().is_some_and(|s| s.starts_with(OWN_ID_PREFIX)) {
                let text = format!(
                    "request ids starting with `{OWN_ID_PREFIX}` are reserved by the gateway"
                );
                return rpc_error(StatusCode::BAD_REQUEST, &id, INVALID_REQUEST, &text);
            }
            if let Some(m) = INTERCEPTED.iter().find(|m| **m == method) {
                return h.call(headers, msg.clone(), id, m).await;
            }
            let post = (method == "tools/list").then(|| Post::List {
                first_page: msg
                    .get("params")
                    .and_then(|p| p.get("cursor"))
                    .is_none_or(Value::is_null),
            });
            h.forward(&headers, bytes, post, id).await
        }
        // Refused by read_post.
        Kind::Invalid(_) => rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            INVALID_REQUEST,
            "invalid message",
        ),
        Kind::Notification | Kind::Response { .. } => {
            h.forward(&headers, bytes, None, Value::Null).await
        }
    }
}

async fn get(State(h): State<Arc<Http>>, headers: HeaderMap) -> Response<Body> {
    let req = match h.request(Method::GET, &headers, Bytes::new()) {
        Ok(r) => r,
        Err(e) => return rpc_error(StatusCode::BAD_GATEWAY, &Value::Null, INTERNAL_ERROR, &e),
    };
    match h.client.request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            if !is_sse(&parts.headers) {
                return Response::from_parts(parts, Body::new(body));
            }
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            let (mut tx, chan) = http_body_util::channel::Channel::<Bytes, hyper::Error>::new(32);
            tokio::spawn(async move {
                let mut sse = SseSplitter::default();
                let mut body = body;
                while let Some(Ok(frame)) = body.frame().await {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    for event in sse.push(&data) {
                        // Responses belong on the POST that asked; never here.
                        let is_response = event_json(&event)
                            .is_some_and(|m| matches!(classify(&m), Kind::Response { .. }));
                        if !is_response && tx.send_data(Bytes::from(event)).await.is_err() {
                            return;
                        }
                    }
                }
            });
            Response::from_parts(parts, Body::new(chan))
        }
        Err(e) => rpc_error(
            StatusCode::BAD_GATEWAY,
            &Value::Null,
            INTERNAL_ERROR,
            &format!("{REASON_UPSTREAM_DOWN}: {}", describe(&e)),
        ),
    }
}

async fn delete(State(h): State<Arc<Http>>, headers: HeaderMap) -> Response<Body> {
    if let Ok(mut s) = h.sessions.lock() {
        s.remove(&session_of(&headers));
    }
    let req = match h.request(Method::DELETE, &headers, Bytes::new()) {
        Ok(r) => r,
        Err(e) => return rpc_error(StatusCode::BAD_GATEWAY, &Value::Null, INTERNAL_ERROR, &e),
    };
    match h.client.request(req).await {
        Ok(resp) => resp.map(Body::new),
        Err(e) => rpc_error(
            StatusCode::BAD_GATEWAY,
            &Value::Null,
            INTERNAL_ERROR,
            &format!("{REASON_UPSTREAM_DOWN}: {}", describe(&e)),
        ),
    }
}

impl Http {
    fn request(
        &self,
        method: Method,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, String> {
        self.upstream.request(method, body, |h| {
            for (k, v) in headers {
                if !HOP.contains(&k.as_str()) {
                    h.append(k.clone(), v.clone());
                }
            }
        })
    }

    fn with_book<T>(&self, session: &str, f: impl FnOnce(&mut ToolBook) -> T) -> T {
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if sessions.len() >= MAX_SESSIONS && !sessions.contains_key(session) {
            sessions.clear();
        }
        f(sessions.entry(session.to_owned()).or_default())
    }

    /// Forwards a POST; the answer passes through, or is rewritten when `post` says so.
    async fn forward(
        self: &Arc<Self>,
        headers: &HeaderMap,
        body: Bytes,
        post: Option<Post>,
        id: Value,
    ) -> Response<Body> {
        let req = match self.request(Method::POST, headers, body) {
            Ok(r) => r,
            Err(e) => return rpc_error(StatusCode::BAD_GATEWAY, &id, INTERNAL_ERROR, &e),
        };
        let resp = match self.client.request(req).await {
            Ok(r) => r,
            Err(e) => {
                let text = format!(
                    "{REASON_UPSTREAM_DOWN}: the MCP server is unreachable: {}",
                    describe(&e)
                );
                return match post {
                    Some(Post::Call(call)) => {
                        self.gw.outcome(
                            &call.decision_id,
                            Some(text.clone()),
                            call.started.elapsed(),
                        );
                        if call.method == "tools/call" {
                            json_response(StatusCode::OK, result_line(&id, tool_error(&text)))
                        } else {
                            rpc_error(StatusCode::BAD_GATEWAY, &id, INTERNAL_ERROR, &text)
                        }
                    }
                    _ => rpc_error(StatusCode::BAD_GATEWAY, &id, INTERNAL_ERROR, &text),
                };
            }
        };
        let Some(post) = post else {
            return resp.map(Body::new);
        };
        let session = session_of(headers);
        let (mut parts, body) = resp.into_parts();
        if is_json(&parts.headers) {
            let max = self.gw.max_message_bytes();
            let bytes = match Limited::new(body, max).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => return self.unanswered(post, &id, "oversize or broken answer"),
            };
            let Some(msg) = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .filter(|m| m.get("id") == Some(&id))
            else {
                return self.unanswered(post, &id, "the answer is not a response to the request");
            };
            let out = self.finish(&session, post, msg, &id).await;
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            let mut out = out;
            if out.last() == Some(&b'\n') {
                out.pop();
            }
            return Response::from_parts(parts, Body::from(out));
        }
        if !is_sse(&parts.headers) {
            // An error status without a JSON-RPC body: nothing was answered.
            if let Post::Call(call) = &post {
                let text = format!("upstream HTTP status {}", parts.status);
                self.gw
                    .outcome(&call.decision_id, Some(text), call.started.elapsed());
            }
            return Response::from_parts(parts, Body::new(body));
        }
        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
        let (mut tx, chan) = http_body_util::channel::Channel::<Bytes, hyper::Error>::new(32);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut sse = SseSplitter::default();
            let mut body = body;
            let mut post = Some(post);
            let max = me.gw.max_message_bytes();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if sse.buf.len() + data.len() > max {
                    break;
                }
                for event in sse.push(&data) {
                    let msg = event_json(&event).filter(|m| {
                        matches!(classify(m), Kind::Response { id: i } if id_key(i) == id_key(&id))
                    });
                    let out = match (msg, post.take()) {
                        (Some(msg), Some(p)) => {
                            let line = me.finish(&session, p, msg, &id).await;
                            event_with(&event, &line)
                        }
                        (msg, p) => {
                            post = p;
                            if msg.is_some() {
                                // A second answer to the same request: never forward it.
                                continue;
                            }
                            event
                        }
                    };
                    if tx.send_data(Bytes::from(out)).await.is_err() {
                        return;
                    }
                }
            }
            // The stream ended without the answer: say so rather than leave the client waiting.
            if let Some(p) = post {
                let text = format!(
                    "{REASON_UPSTREAM_DOWN}: the MCP server closed the stream before answering"
                );
                let line = match p {
                    Post::Call(call) => {
                        me.gw.outcome(
                            &call.decision_id,
                            Some(text.clone()),
                            call.started.elapsed(),
                        );
                        if call.method == "tools/call" {
                            result_line(&id, tool_error(&text))
                        } else {
                            error_line(&id, INTERNAL_ERROR, &text)
                        }
                    }
                    Post::List { .. } => error_line(&id, INTERNAL_ERROR, &text),
                };
                let _ = tx
                    .send_data(Bytes::from(event_with(b"event: message\n", &line)))
                    .await;
            }
        });
        Response::from_parts(parts, Body::new(chan))
    }

    fn unanswered(&self, post: Post, id: &Value, why: &str) -> Response<Body> {
        let text = format!("{REASON_UPSTREAM_DOWN}: {why}");
        match post {
            Post::Call(call) => {
                self.gw.outcome(
                    &call.decision_id,
                    Some(text.clone()),
                    call.started.elapsed(),
                );
                if call.method == "tools/call" {
                    json_response(StatusCode::OK, result_line(id, tool_error(&text)))
                } else {
                    rpc_error(StatusCode::BAD_GATEWAY, id, INTERNAL_ERROR, &text)
                }
            }
            Post::List { .. } => rpc_error(StatusCode::BAD_GATEWAY, id, INTERNAL_ERROR, &text),
        }
    }

    /// The answer the client gets for an intercepted request (framed).
    async fn finish(&self, session: &str, post: Post, msg: Value, id: &Value) -> Vec<u8> {
        match post {
            Post::Call(call) => checked_result(Arc::clone(&self.gw), session, msg, id, call).await,
            Post::List { first_page } => match msg.get("result") {
                Some(r) => {
                    let screened = self.with_book(session, |b| {
                        b.screen(&self.gw, session, r.clone(), first_page)
                    });
                    result_line(id, screened)
                }
                None => crate::jsonrpc::line(&msg),
            },
        }
    }

    async fn call(
        self: &Arc<Self>,
        mut headers: HeaderMap,
        mut msg: Value,
        id: Value,
        method: &'static str,
    ) -> Response<Body> {
        let deny = |reasons: &[String]| json_response(StatusCode::OK, denial(&id, method, reasons));
        let (tool, args) = match call_target(&msg, method) {
            Ok(t) => t,
            Err(e) => return json_response(StatusCode::OK, error_line(&id, INVALID_PARAMS, &e)),
        };
        let session = session_of(&headers);
        if method == "tools/call"
            && let Err(reasons) = self.check_tool(&headers, &session, &tool, &msg).await
        {
            self.gw.refuse(&session, &tool, method, args, &reasons);
            return deny(&reasons);
        }
        let (decision_id, rewritten) = match crate::calls::before_call(
            &self.gw, &session, &tool, method, args, &mut msg,
        )
        .await
        {
            Ok(d) => d,
            Err(reasons) => return deny(&reasons),
        };
        if rewritten {
            // Keep the routing header in step with a rewritten target.
            let target = match method {
                "resources/read" => msg["params"]["uri"].as_str(),
                _ => msg["params"]["name"].as_str(),
            };
            if headers.contains_key("mcp-name")
                && let Some(v) = target.and_then(|t| HeaderValue::from_str(t).ok())
            {
                headers.insert(HeaderName::from_static("mcp-name"), v);
            }
        }
        let body = Bytes::from(serde_json::to_vec(&msg).unwrap_or_default());
        let call = CallInfo {
            tool,
            method,
            decision_id,
            started: Instant::now(),
        };
        self.forward(&headers, body, Some(Post::Call(call)), id)
            .await
    }

    /// A tool must be listed by the server, unchanged since pinned and unique.
    async fn check_tool(
        &self,
        headers: &HeaderMap,
        session: &str,
        tool: &str,
        msg: &Value,
    ) -> Result<(), Vec<String>> {
        if RESERVED_TOOLS.contains(&tool) {
            return Err(reserved(tool));
        }
        if !self.with_book(session, |b| b.is_listed(tool)) {
            let meta = msg.get("params").and_then(|p| p.get("_meta")).cloned();
            self.list_all(headers, session, meta).await.map_err(|e| {
                vec![
                    REASON_UNKNOWN_TOOL.to_owned(),
                    format!("tool definitions could not be listed: {e}"),
                ]
            })?;
        }
        self.with_book(session, |b| b.check(tool))
    }

    /// Lists every page of the server's tools into the session's book, with
    /// the client's own headers (session, protocol version, credentials).
    async fn list_all(
        &self,
        headers: &HeaderMap,
        session: &str,
        meta: Option<Value>,
    ) -> Result<(), String> {
        let mut headers = headers.clone();
        headers.insert(
            HeaderName::from_static("mcp-method"),
            HeaderValue::from_static("tools/list"),
        );
        headers.remove("mcp-name");
        let mut cursor: Option<Value> = None;
        for page in 0..MAX_PAGES {
            let n = self.next_own.fetch_add(1, Ordering::Relaxed);
            let id = Value::String(format!("{OWN_ID_PREFIX}{n}"));
            let params = page_params(cursor.as_ref(), meta.as_ref());
            let body =
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
            let req = self.request(
                Method::POST,
                &headers,
                Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            )?;
            let resp = self.client.request(req).await.map_err(|e| describe(&e))?;
            let sse = is_sse(resp.headers());
            let max = self.gw.max_message_bytes();
            let bytes = Limited::new(resp.into_body(), max)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let msg = if sse {
                let mut split = SseSplitter::default();
                let mut events = split.push(&bytes);
                events.push(split.buf);
                events
                    .iter()
                    .filter_map(|e| event_json(e))
                    .find(|m| m.get("id") == Some(&id))
            } else {
                serde_json::from_slice::<Value>(&bytes).ok()
            }
            .ok_or("no answer to tools/list")?;
            let result = msg.get("result").cloned().ok_or_else(|| {
                format!(
                    "tools/list failed: {}",
                    msg.get("error").unwrap_or(&Value::Null)
                )
            })?;
            cursor = next_cursor(&result);
            self.with_book(session, |b| b.screen(&self.gw, session, result, page == 0));
            if cursor.is_none() {
                return Ok(());
            }
        }
        Err(format!("more than {MAX_PAGES} pages of tools"))
    }
}
