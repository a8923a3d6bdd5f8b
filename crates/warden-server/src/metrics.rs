//! Prometheus metrics (`GET /metrics`, OpenMetrics text via `prometheus-client`).
//!
//! Label values that callers control (tool names) are bounded: after
//! [`MAX_TOOL_LABELS`] distinct tools, new ones are counted as `other`, so a
//! client inventing tool names cannot grow the series set without limit.

use dashmap::DashMap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use warden_core::Decision;
use warden_kernel::Kernel;

/// Distinct tool label values before new tools are reported as `other`.
pub const MAX_TOOL_LABELS: usize = 512;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    verdict: &'static str,
    point: &'static str,
    tool: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOnly {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    quota: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 µs … ~16 s in factors of 2: decisions are microseconds, approval waits seconds.
    Histogram::new(exponential_buckets(1e-6, 2.0, 25))
}

/// Every metric the sidecar exports.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    decision_seconds: Histogram,
    requests: Family<RouteLabels, Counter>,
    request_seconds: HistogramFamily<RouteOnly>,
    quota_denials: Family<QuotaLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    audit_backlog: Gauge,
    approvals_pending: Gauge,
    kills_active: Gauge,
    tools: DashMap<Arc<str>, ()>,
    other: Arc<str>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `warden_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("warden");
        let decisions = Family::<DecisionLabels, Counter>::default();
        let decision_seconds = latency_histogram();
        let requests = Family::<RouteLabels, Counter>::default();
        let request_seconds: HistogramFamily<RouteOnly> =
            Family::new_with_constructor(latency_histogram);
        let quota_denials = Family::<QuotaLabels, Counter>::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let audit_backlog = Gauge::default();
        let approvals_pending = Gauge::default();
        let kills_active = Gauge::default();
        registry.register(
            "decisions",
            "Decisions by verdict, intervention point and tool",
            decisions.clone(),
        );
        registry.register(
            "decision_seconds",
            "Time the kernel took to decide (stages, policy, audit hand-off)",
            decision_seconds.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_seconds",
            "HTTP request latency by route",
            request_seconds.clone(),
        );
        registry.register(
            "quota_denials",
            "Actions denied by a quota or budget, by quota id",
            quota_denials.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reload attempts by result",
            reloads.clone(),
        );
        registry.register(
            "audit_queue_depth",
            "Audit records handed to the writer but not yet durable",
            audit_backlog.clone(),
        );
        registry.register(
            "approvals_pending",
            "Escalations waiting for an approver",
            approvals_pending.clone(),
        );
        registry.register(
            "kill_switch_active",
            "Active kills (everything, agents and sessions)",
            kills_active.clone(),
        );
        Metrics {
            registry,
            decisions,
            decision_seconds,
            requests,
            request_seconds,
            quota_denials,
            reloads,
            audit_backlog,
            approvals_pending,
            kills_active,
            tools: DashMap::new(),
            other: Arc::from("other"),
        }
    }

    fn tool_label(&self, tool: Option<&str>) -> Arc<str> {
        let Some(tool) = tool else {
            return Arc::from("");
        };
        if let Some(e) = self.tools.get(tool) {
            return Arc::clone(e.key());
        }
        if self.tools.len() >= MAX_TOOL_LABELS {
            return Arc::clone(&self.other);
        }
        let key: Arc<str> = Arc::from(tool);
        self.tools.insert(Arc::clone(&key), ());
        key
    }

    /// Counts one decision.
    pub fn decision(&self, point: &'static str, tool: Option<&str>, d: &Decision, seconds: f64) {
        let labels = DecisionLabels {
            verdict: d.verdict.as_str(),
            point,
            tool: self.tool_label(tool),
        };
        self.decisions.get_or_create(&labels).inc();
        self.decision_seconds.observe(seconds);
        if d.verdict == warden_core::Verdict::Deny {
            // Quota ids come from the policy, so this label set is bounded by it.
            for r in &d.reasons {
                if let Some(id) = r.strip_prefix("quota:") {
                    self.quota_denials
                        .get_or_create(&QuotaLabels {
                            quota: Arc::from(id),
                        })
                        .inc();
                }
            }
        }
    }

    /// Counts one HTTP request.
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RouteLabels { route, status })
            .inc();
        self.request_seconds
            .get_or_create(&RouteOnly { route })
            .observe(seconds);
    }

    /// Counts one reload attempt.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "rejected" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Renders the OpenMetrics text, sampling the gauges from `kernel` first.
    pub fn render(&self, kernel: &Kernel) -> Result<String, std::fmt::Error> {
        let backlog = kernel.audit_backlog().unwrap_or(0);
        self.audit_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        let pending = kernel.pending_approvals().len();
        self.approvals_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        let state = kernel.kill_switch().state();
        let kills = usize::from(state.all.is_some()) + state.agents.len() + state.sessions.len();
        self.kills_active
            .set(i64::try_from(kills).unwrap_or(i64::MAX));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
