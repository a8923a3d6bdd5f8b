//! `warden serve`: Warden's sidecar.
//!
//! Agents that are not written in Rust reach the kernel over HTTP: `POST
//! /v1/decide` takes an Action in its JSON wire form and answers with the
//! Decision wire form (docs/wire-format.md), through the same kernel
//! (kill switch → identity → ring → quotas → policy → escalation → audit) the
//! library and CLI use. Admin endpoints (kill switch, approvals, reload) need
//! a bearer token; metrics are Prometheus/OpenMetrics text; the API is
//! described by the OpenAPI document at `/openapi.json`. See docs/server.md.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use warden_server::{Overrides, RunningServer, ServerConfig};
//! let config = ServerConfig::resolve(None, |k| std::env::var(k).ok(), Overrides::default())?;
//! let server = RunningServer::start(config).await?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

mod api;
mod auth;
mod config;
mod identity;
mod metrics;
mod pack;
mod reload;
mod serve;
mod store;

pub use api::{OPENAPI, ROUTES};
pub use auth::{AdminAuth, AuthError, MIN_TOKEN_LEN, TokenSource};
pub use config::{
    AuditStore, ConfigError, DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, Limits,
    Overrides, ServerConfig, TrustSettings, TrustStoreKind, parse_durability,
};
pub use identity::{
    AnchorConfig, IdentityConfig, IdentityService, IdentitySetupError, MAX_PENDING_CHALLENGES,
};
pub use metrics::{MAX_TOOL_LABELS, Metrics};
pub use pack::default_pack;
pub use reload::{DEBOUNCE, PolicySource, ReloadError, Reloader};
pub use serve::{DRAIN, MAX_CONNECTIONS, RunningServer, ServerError, open_trust};
pub use store::StoreError;
