//! Warden's MCP gateway: a [`Kernel`](warden_kernel::Kernel) between an MCP
//! client and an MCP server.
//!
//! Every `tools/call` is decided at `pre_tool_call` before the server sees
//! it (deny → an `isError` tool result naming the policy reasons; escalate →
//! held until an approver answers or the approval times out; transform →
//! rewritten arguments) and its result at `post_tool_call` before the client
//! sees it (redactions applied, deny → an `isError` result). `tools/list`
//! hides tools the agent may never call, pins each definition on first sight
//! and blocks a tool whose definition later changes (audited as
//! [`AuditEvent::McpToolChanged`](warden_kernel::AuditEvent::McpToolChanged)).
//! `resources/read` and `prompts/get` pass the same two points as the tools
//! `resources/read` and `prompts/get`. Everything else is forwarded
//! byte-for-byte. Calls the gateway refuses itself (unknown, reserved,
//! duplicate or changed tools, an unavailable upstream) are audited as deny
//! decisions ([`Gateway::refuse`]).
//!
//! [`serve_multi_stdio`] puts one endpoint in front of several named stdio
//! or Streamable HTTP servers (`warden mcp --config`, [`GatewayConfig`],
//! [`UpstreamTransport`]): lists aggregated,
//! requests routed by tool, prompt or resource with ids mapped both ways,
//! names offered twice refused. [`serve_multi_http`] serves the same hub over
//! Streamable HTTP, one hub per client session (`--listen`, [`ListenLimits`]),
//! deciding under the `Mcp-Session-Id` it issued; its GET stream numbers its
//! events and replays them to a client that reconnects with
//! `Last-Event-ID`, and an HTTP upstream's GET stream is resumed the same way.
//!
//! HTTP upstreams may be `http://` or `https://` ([`HttpTarget`]: rustls,
//! certificates always verified, an extra CA bundle and request headers per
//! upstream), and the HTTP gateway requires a bearer token from its clients
//! unless it listens on loopback only ([`ClientAuth`]).
//! docs/mcp.md has the full mapping.

mod auth;
mod calls;
mod config;
mod conn;
mod error;
mod gate;
mod http;
pub mod jsonrpc;
mod listen;
mod multi;
mod pins;
mod slot;
mod sse;
mod upstream_client;
mod upstream_http;

pub use auth::{ClientAuth, MIN_TOKEN_LEN, TOKEN_ENV};
pub use config::{ConfigDurability, ConfigError, GatewayConfig, UpstreamConfig};
pub use conn::{ServerCommand, serve_own_stdio, serve_stdio};
pub use error::McpError;
pub use gate::{
    DEFAULT_AGENT, DEFAULT_APPROVAL_WAIT, DEFAULT_MAX_MESSAGE_BYTES, Gated, Gateway,
    REASON_DUPLICATE_TOOL, REASON_TOOL_CHANGED, REASON_UNKNOWN_TOOL, REASON_UPSTREAM_DOWN,
    RESERVED_TOOLS, post_args,
};
pub use http::{HEADER_MISMATCH, serve_http};
pub use listen::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SESSIONS, DEFAULT_REPLAY_BYTES, DEFAULT_REPLAY_EVENTS,
    LISTEN_PATH, ListenLimits, SERVER_BUSY, serve_multi_http,
};
pub use multi::{
    REASON_AMBIGUOUS, REASON_UNKNOWN_PROMPT, REASON_UNKNOWN_RESOURCE, UpstreamSpec,
    UpstreamTransport, serve_multi_own_stdio, serve_multi_stdio,
};
pub use pins::{PIN_FILE, PinCheck, PinStore, tool_digest};
pub use slot::{INITIAL_BACKOFF, MAX_BACKOFF};
pub use upstream_client::{HttpTarget, MANAGED_HEADERS, expand_env};
