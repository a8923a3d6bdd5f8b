//! The HTTP routes: decisions, outcomes, approvals, kill switch, audit, health, metrics.
//!
//! Every error is a JSON body `{"error": "<code>", "message": "..."}` with a
//! 4xx/5xx status; clients must treat any non-2xx answer to `/v1/decide` as a
//! deny. Bodies are parsed by hand (not with axum's `Json` extractor) so that
//! malformed JSON, unknown fields and wrong content types get the same error
//! shape as everything else.

use crate::auth::AdminAuth;
use crate::metrics::Metrics;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use warden_audit::Durability;
use warden_core::Action;
use warden_kernel::{Kernel, Outcome};
use warden_runtime::{ApprovalError, KillTarget, Usage};

/// Every route the sidecar serves, as `(method, path)`; the OpenAPI document
/// must describe exactly these (a test holds them in sync).
pub const ROUTES: [(&str, &str); 18] = [
    ("post", "/v1/decide"),
    ("get", "/v1/identity"),
    ("post", "/v1/identity/challenge"),
    ("post", "/v1/identity/session"),
    ("post", "/v1/outcome"),
    ("get", "/v1/approvals"),
    ("post", "/v1/approvals/{id}"),
    ("get", "/v1/kill"),
    ("post", "/v1/kill"),
    ("post", "/v1/unkill"),
    ("post", "/v1/reload"),
    ("get", "/v1/audit/head"),
    ("get", "/v1/audit/proof/{index}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/"),
];

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Shared state of every handler.
pub struct AppState {
    /// The enforcement pipeline.
    pub kernel: Arc<Kernel>,
    /// Exported metrics.
    pub metrics: Arc<Metrics>,
    /// Admin bearer-token check.
    pub admin: AdminAuth,
    /// Request limits.
    pub limits: crate::config::Limits,
    /// Caller identity (handshake, gate), when configured.
    pub(crate) identity: Option<Arc<crate::identity::IdentityService>>,
    /// Read access to the audit store (head and proofs).
    pub(crate) audit: crate::store::AuditAccess,
    /// Audit durability: in `sync` mode a decision blocks on the disk.
    pub durability: Durability,
    /// Reloads the policy (paths, or none for the built-in pack).
    pub reloader: Arc<crate::reload::Reloader>,
    /// False once shutdown began: `/readyz` turns 503 so load balancers drain.
    pub ready: AtomicBool,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

type St = State<Arc<AppState>>;

/// An error answer: status, machine code and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody {
            error: self.code,
            message: &self.message,
        })
        .unwrap_or_default();
        let mut r = (self.status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"warden-admin\""),
            );
        }
        r
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut r = (status, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => ApiError::internal(format!("serialising the answer: {e}")).into_response(),
    }
}

/// Parses a JSON body strictly: `application/json` only (a browser cannot
/// send that cross-origin without a preflight), named errors otherwise.
fn parse_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    code: &'static str,
) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as `content-type: application/json`",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(code, e.to_string()))
}

/// Builds the router with its limits and middleware.
pub fn router(state: Arc<AppState>) -> Router {
    let admin = Router::new()
        .route("/v1/approvals", get(list_approvals))
        .route("/v1/approvals/{id}", post(resolve_approval))
        .route("/v1/kill", get(kill_state).post(kill))
        .route("/v1/unkill", post(unkill))
        .route("/v1/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_admin,
        ));
    Router::new()
        .route("/v1/decide", post(decide))
        .route("/v1/outcome", post(outcome))
        .route("/v1/identity", get(identity_info))
        .route("/v1/identity/challenge", post(identity_challenge))
        .route("/v1/identity/session", post(identity_session))
        .route("/v1/audit/head", get(audit_head))
        .route("/v1/audit/proof/{index}", get(audit_proof))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/", get(index))
        .merge(admin)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            observe_and_bound,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /openapi.json",
    )
}

fn route_label(path: Option<&str>) -> &'static str {
    path.and_then(|p| ROUTES.iter().find(|(_, r)| *r == p).map(|(_, r)| *r))
        .unwrap_or("unmatched")
}

/// Counts and times every request, and bounds its duration: the body must
/// arrive and the answer be ready within the request timeout (plus an
/// approval wait the caller asked for, itself capped).
async fn observe_and_bound(State(s): St, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = route_label(
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let wait = if route == "/v1/decide" {
        wait_ms_of(req.uri().query()).min(s.limits.max_wait_ms)
    } else {
        0
    };
    let limit = s.limits.request_timeout() + Duration::from_millis(wait);
    let response = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("request not completed within {} ms", limit.as_millis()),
        )
        .into_response(),
    };
    // Oversize bodies are rejected by axum's limit with a plain-text 413; give them our shape.
    let response = if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "request bodies are limited to {} bytes",
                s.limits.max_body_bytes
            ),
        )
        .into_response()
    } else {
        response
    };
    s.metrics.request(
        route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

fn wait_ms_of(query: Option<&str>) -> u64 {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("wait_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn require_admin(State(s): St, req: Request, next: Next) -> Response {
    match s.admin.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(why) => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why).into_response(),
    }
}

/// Query of `/v1/decide`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideQuery {
    /// On escalate, wait up to this long for an approver.
    #[serde(default)]
    wait_ms: Option<u64>,
}

async fn decide(
    State(s): St,
    Query(q): Query<DecideQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut action: Action = parse_body(&headers, &body, "invalid_action")?;
    // A session credential may also come as a bearer token; the body's wins.
    if action.credential.is_none()
        && let Some(c) =
            bearer(&headers).filter(|c| c.starts_with(warden_identity::gate::SESSION_PREFIX))
    {
        action.credential = Some(c.to_owned());
    }
    let start = Instant::now();
    let wait = q.wait_ms.unwrap_or(0).min(s.limits.max_wait_ms);
    let decision = if wait > 0 {
        let kernel = Arc::clone(&s.kernel);
        let action = action.clone();
        tokio::task::spawn_blocking(move || {
            kernel.decide_and_wait(&action, Duration::from_millis(wait))
        })
        .await
        .map_err(|e| ApiError::internal(format!("decision task: {e}")))?
    } else if s.durability == Durability::Sync {
        // The caller waits for the disk: keep the runtime's other tasks moving
        // (block_in_place needs a multi-thread runtime; an embedding one, such as
        // `warden mcp`'s, may be current-thread).
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            tokio::task::block_in_place(|| s.kernel.decide(&action))
        } else {
            let kernel = Arc::clone(&s.kernel);
            let action = action.clone();
            tokio::task::spawn_blocking(move || kernel.decide(&action))
                .await
                .map_err(|e| ApiError::internal(format!("decision task: {e}")))?
        }
    } else {
        s.kernel.decide(&action)
    };
    s.metrics.decision(
        action.point.as_str(),
        action.tool(),
        &decision,
        start.elapsed().as_secs_f64(),
    );
    Ok(json(StatusCode::OK, &decision))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn identity_of(s: &AppState) -> Result<&crate::identity::IdentityService, ApiError> {
    s.identity.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "identity_disabled",
            "this sidecar has no `identity:` configuration; decisions do not need credentials",
        )
    })
}

#[derive(Serialize)]
struct IdentityInfo {
    did: String,
    required: bool,
}

async fn identity_info(State(s): St) -> Result<Response, ApiError> {
    let id = identity_of(&s)?;
    Ok(json(
        StatusCode::OK,
        &IdentityInfo {
            did: id.did().to_string(),
            required: true,
        },
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hello {
    hello: String,
}

#[derive(Serialize)]
struct ChallengeBody {
    challenge: String,
}

fn identity_error(e: &warden_identity::IdentityError) -> ApiError {
    let status = match e {
        warden_identity::IdentityError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::FORBIDDEN,
    };
    ApiError::new(status, "identity", format!("{}: {e}", e.reason()))
}

async fn identity_challenge(
    State(s): St,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = identity_of(&s)?;
    let h: Hello = parse_body(&headers, &body, "invalid_hello")?;
    let challenge = id.challenge(&h.hello).map_err(|e| identity_error(&e))?;
    Ok(json(StatusCode::OK, &ChallengeBody { challenge }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseBody {
    response: String,
}

#[derive(Serialize)]
struct SessionBody {
    session: String,
    expires: u64,
    agent: String,
}

async fn identity_session(
    State(s): St,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = identity_of(&s)?;
    let r: ResponseBody = parse_body(&headers, &body, "invalid_response")?;
    let grant = id.session(&r.response).map_err(|e| identity_error(&e))?;
    Ok(json(
        StatusCode::OK,
        &SessionBody {
            session: grant.credential,
            expires: grant.expires,
            agent: grant.agent.to_string(),
        },
    ))
}

/// Body of `POST /v1/outcome`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeBody {
    decision_id: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    latency_us: u64,
    #[serde(default)]
    output_digest: Option<String>,
    #[serde(default)]
    tokens: u64,
    #[serde(default)]
    cost: f64,
}

async fn outcome(State(s): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let o: OutcomeBody = parse_body(&headers, &body, "invalid_outcome")?;
    if o.decision_id.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_outcome",
            "decision_id is empty",
        ));
    }
    if !o.cost.is_finite() || o.cost < 0.0 {
        return Err(ApiError::bad_request(
            "invalid_outcome",
            "cost must be a finite, non-negative number",
        ));
    }
    let outcome = Outcome {
        error: o.error,
        latency: Duration::from_micros(o.latency_us),
        output_digest: o.output_digest,
        usage: Usage {
            tokens: o.tokens,
            cost: o.cost,
        },
    };
    s.kernel
        .record_outcome(&o.decision_id, outcome)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize)]
struct ApprovalList {
    approvals: Vec<warden_runtime::ApprovalRequest>,
}

async fn list_approvals(State(s): St) -> Response {
    json(
        StatusCode::OK,
        &ApprovalList {
            approvals: s.kernel.pending_approvals(),
        },
    )
}

/// Body of `POST /v1/approvals/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalBody {
    approve: bool,
    approver: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn resolve_approval(
    State(s): St,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: ApprovalBody = parse_body(&headers, &body, "invalid_approval")?;
    if b.approver.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_approval",
            "approver is empty: approvals are audited with the approver's identity",
        ));
    }
    match s
        .kernel
        .resolve_approval(&id, &b.approver, b.approve, b.reason)
    {
        Ok(r) => Ok(json(StatusCode::OK, &r)),
        Err(warden_kernel::KernelError::Approval(e)) => Err(approval_error(e)),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

fn approval_error(e: ApprovalError) -> ApiError {
    let status = match &e {
        ApprovalError::NotFound(_) => StatusCode::NOT_FOUND,
        ApprovalError::AlreadyResolved(_) => StatusCode::CONFLICT,
        ApprovalError::Expired(_) => StatusCode::GONE,
        ApprovalError::NotAnApprover { .. } | ApprovalError::NoApprover => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, "approval", e.to_string())
}

/// Body of `POST /v1/kill` and `/v1/unkill`: exactly one target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KillBody {
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

impl KillBody {
    fn target(&self) -> Result<KillTarget, ApiError> {
        match (&self.agent, &self.session, self.all) {
            (Some(a), None, false) if !a.is_empty() => Ok(KillTarget::Agent(a.clone())),
            (None, Some(s), false) if !s.is_empty() => Ok(KillTarget::Session(s.clone())),
            (None, None, true) => Ok(KillTarget::All),
            _ => Err(ApiError::bad_request(
                "invalid_kill",
                "give exactly one of `agent`, `session` or `all: true`",
            )),
        }
    }
}

async fn kill_state(State(s): St) -> Response {
    json(StatusCode::OK, &*s.kernel.kill_switch().state())
}

async fn kill(State(s): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let b: KillBody = parse_body(&headers, &body, "invalid_kill")?;
    let target = b.target()?;
    let reason = b
        .reason
        .as_deref()
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("invalid_kill", "a kill needs a `reason`"))?;
    s.kernel
        .kill(target, reason, b.by.as_deref())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json(StatusCode::OK, &*s.kernel.kill_switch().state()))
}

#[derive(Serialize)]
struct Unkilled {
    lifted: bool,
}

async fn unkill(State(s): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let b: KillBody = parse_body(&headers, &body, "invalid_kill")?;
    let target = b.target()?;
    if b.reason.is_some() {
        return Err(ApiError::bad_request(
            "invalid_kill",
            "`reason` belongs to kills; lifting takes a target and `by`",
        ));
    }
    let lifted = s
        .kernel
        .unkill(target, b.by.as_deref())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json(StatusCode::OK, &Unkilled { lifted }))
}

async fn reload(State(s): St) -> Result<Response, ApiError> {
    let r = Arc::clone(&s.reloader);
    let outcome = tokio::task::spawn_blocking(move || r.reload("api"))
        .await
        .map_err(|e| ApiError::internal(format!("reload task: {e}")))?;
    match outcome {
        Ok(hash) => Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "policy_hash": hash }),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy_rejected",
            format!("{e}; the previous policy stays in force"),
        )),
    }
}

async fn audit_head(State(s): St) -> Result<Response, ApiError> {
    // The writer signs a head every N records or T ms; flush first so the head covers every decision returned so far.
    let st = Arc::clone(&s);
    let head = tokio::task::spawn_blocking(move || {
        st.kernel
            .flush()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        st.audit
            .head()
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::internal(format!("audit task: {e}")))??;
    match head {
        Some(h) => Ok(json(StatusCode::OK, &h)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "empty_log",
            "the audit log has no signed tree head yet",
        )),
    }
}

async fn audit_proof(State(s): St, Path(index): Path<String>) -> Result<Response, ApiError> {
    let index: u64 = index.parse().map_err(|_| {
        ApiError::bad_request("invalid_index", format!("`{index}` is not a record index"))
    })?;
    let st = Arc::clone(&s);
    let bundle = tokio::task::spawn_blocking(move || {
        st.kernel
            .flush()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        st.audit.prove(index).map_err(|e| match e {
            warden_audit::AuditError::OutOfRange(m) => {
                ApiError::new(StatusCode::NOT_FOUND, "out_of_range", m)
            }
            other => ApiError::internal(other.to_string()),
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("audit task: {e}")))??;
    Ok(json(StatusCode::OK, &bundle))
}

async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Serialize)]
struct Ready<'a> {
    ready: bool,
    policy_hash: &'a str,
    policy: &'a str,
}

async fn readyz(State(s): St) -> Response {
    let ready = s.ready.load(Ordering::Acquire);
    let set = s.kernel.policy();
    let label = s.reloader.label();
    json(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &Ready {
            ready,
            policy_hash: set.hash(),
            policy: &label,
        },
    )
}

async fn metrics(State(s): St) -> Result<Response, ApiError> {
    let text = s
        .metrics
        .render(&s.kernel)
        .map_err(|e| ApiError::internal(format!("metrics: {e}")))?;
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(r)
}

async fn openapi() -> Response {
    let mut r = OPENAPI.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn index() -> &'static str {
    "Warden decision API. POST an Action to /v1/decide; the API is described at /openapi.json.\n"
}
