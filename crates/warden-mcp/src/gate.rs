//! The policy side of the gateway: MCP operations as Warden actions.

use crate::pins::{PinCheck, PinStore, tool_digest};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use warden_core::{Action, Decision, Point, Verdict};
use warden_kernel::{AuditEvent, Kernel, Outcome};
use warden_policy::RuleResult;

/// Default agent id of `warden mcp` when `--agent` is not given.
pub const DEFAULT_AGENT: &str = "mcp-client";
/// Default cap on how long an escalated call waits for an approver (the
/// rule's own `timeout_ms` applies when shorter).
pub const DEFAULT_APPROVAL_WAIT: Duration = Duration::from_secs(600);
/// Largest message accepted from either side, in bytes (MCP's reference
/// SDKs accept similar sizes; larger messages get a JSON-RPC error).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Reason of a call blocked because the tool's definition changed since it was pinned.
pub const REASON_TOOL_CHANGED: &str = "mcp:tool_changed";
/// Reason of a call blocked because two tools share the name.
pub const REASON_DUPLICATE_TOOL: &str = "mcp:duplicate_tool";
/// Reason of a call to a tool the server does not list.
pub const REASON_UNKNOWN_TOOL: &str = "mcp:unknown_tool";
/// Reason of a call that failed because the upstream server is down.
pub const REASON_UPSTREAM_DOWN: &str = "mcp:upstream_unavailable";

/// Tool names the gateway uses for resource and prompt actions; a server
/// tool with one of these names is blocked so it cannot borrow their rules.
pub const RESERVED_TOOLS: [&str; 2] = ["resources/read", "prompts/get"];

/// The outcome of a gated request.
#[derive(Debug, Clone, PartialEq)]
pub enum Gated {
    /// Forward, with these (possibly transformed) arguments.
    Proceed {
        /// Arguments after transform obligations.
        args: Map<String, Value>,
        /// The decision, for the outcome record.
        decision_id: String,
    },
    /// Do not forward; tell the client why.
    Deny {
        /// The decision id (empty when no decision was taken).
        decision_id: String,
        /// Why.
        reasons: Vec<String>,
    },
}

impl Gated {
    /// The human-readable denial text the client (and the model) sees.
    pub fn deny_text(reasons: &[String]) -> String {
        format!("Warden denied this call: {}", reasons.join("; "))
    }
}

/// Policy, pins and audit shared by every connection of one gateway.
pub struct Gateway {
    kernel: Arc<Kernel>,
    agent: String,
    server: String,
    pins: Arc<PinStore>,
    approval_wait: Duration,
    max_message_bytes: usize,
    /// `tool digest` pairs already audited as changed (a client re-listing
    /// must not flood the log with the same rug-pull).
    audited: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("agent", &self.agent)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway deciding with `kernel` for `agent`, fronting the server
    /// labelled `server` (the label keys tool pins and appears in the action
    /// context). Pins live in memory until [`Gateway::with_pins`].
    pub fn new(kernel: Arc<Kernel>, agent: impl Into<String>, server: impl Into<String>) -> Self {
        Gateway {
            kernel,
            agent: agent.into(),
            server: server.into(),
            pins: Arc::new(PinStore::in_memory()),
            approval_wait: DEFAULT_APPROVAL_WAIT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            audited: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Uses this pin store.
    #[must_use]
    pub fn with_pins(self, pins: PinStore) -> Self {
        self.with_shared_pins(Arc::new(pins))
    }

    /// Uses this pin store, shared with other gateways (the upstreams of
    /// one multi-upstream gateway share one pin file, keyed by server label).
    #[must_use]
    pub fn with_shared_pins(mut self, pins: Arc<PinStore>) -> Self {
        self.pins = pins;
        self
    }

    /// The server label (pins, `context.mcp.server`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Caps the wait for an approver.
    #[must_use]
    pub fn with_approval_wait(mut self, wait: Duration) -> Self {
        self.approval_wait = wait;
        self
    }

    /// Limits message size.
    #[must_use]
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// The kernel.
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// The agent id actions are decided for.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The largest accepted message.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    fn action(
        &self,
        point: Point,
        session: &str,
        tool: &str,
        method: &str,
        args: Map<String, Value>,
    ) -> Result<Action, String> {
        let mut context = Map::new();
        context.insert(
            "mcp".to_owned(),
            json!({"server": self.server, "method": method}),
        );
        Action::new(point, self.agent.clone(), Some(tool.to_owned()))
            .map(|a| {
                a.with_session(session)
                    .with_args(args)
                    .with_context(context)
            })
            .map_err(|e| e.to_string())
    }

    /// Whether any decision at `point` could escalate: a rule with effect
    /// `escalate` applies there, or a Rego/Cedar source (which may return
    /// any verdict) is loaded. When not, requests are decided in place
    /// without a task hand-off.
    pub fn can_escalate(&self, point: Point) -> bool {
        let set = self.kernel.policy();
        !set.sources().is_empty()
            || set
                .rules()
                .iter()
                .any(|r| r.effect == Verdict::Escalate && r.applies_at(point))
    }

    /// Whether deciding this request could wait for an approver (the policy
    /// escalates it now; the kernel re-decides, so a reload in between only
    /// moves a decision between the inline and the blocking path).
    pub fn may_wait(
        &self,
        point: Point,
        session: &str,
        tool: &str,
        method: &str,
        args: Map<String, Value>,
    ) -> bool {
        match self.action(point, session, tool, method, args) {
            Ok(a) => self.kernel.policy().evaluate(&a).verdict == Verdict::Escalate,
            Err(_) => false,
        }
    }

    /// Decides a request before it reaches the server (blocks while an
    /// escalation waits for an approver: call from a blocking context).
    pub fn before(
        &self,
        session: &str,
        tool: &str,
        method: &str,
        args: Map<String, Value>,
    ) -> Gated {
        let action = match self.action(Point::PreToolCall, session, tool, method, args) {
            Ok(a) => a,
            Err(e) => {
                return Gated::Deny {
                    decision_id: String::new(),
                    reasons: vec!["runtime_error:invalid_action".to_owned(), e],
                };
            }
        };
        let decision = self.kernel.decide_and_wait(&action, self.approval_wait);
        match apply(decision, action) {
            Ok((decision, action)) => Gated::Proceed {
                args: action.args,
                decision_id: decision.decision_id,
            },
            Err(deny) => deny,
        }
    }

    /// Decides a server's result before the client sees it: `Ok` carries the
    /// result after redaction obligations, `Err` the denial.
    pub fn after(
        &self,
        session: &str,
        tool: &str,
        method: &str,
        result: Value,
    ) -> Result<Value, Gated> {
        let output = result_text(&result);
        let args = post_args(result);
        let action = self
            .action(Point::PostToolCall, session, tool, method, args)
            .map_err(|e| Gated::Deny {
                decision_id: String::new(),
                reasons: vec!["runtime_error:invalid_action".to_owned(), e],
            })?;
        let decision = self.kernel.decide_and_wait(&action, self.approval_wait);
        let (_, mut action) = apply(decision, action)?;
        let mut result = action.args.remove("result").unwrap_or(Value::Null);
        let redacted = action.args.remove("output").and_then(|v| match v {
            Value::String(s) if Some(&s) != output.as_ref() => Some(s),
            _ => None,
        });
        if let (Some(text), Some(obj)) = (redacted, result.as_object_mut()) {
            // The flattened text was rewritten: it replaces the textual content.
            let key = if method == "resources/read" {
                "contents"
            } else {
                "content"
            };
            obj.insert(key.to_owned(), json!([{"type": "text", "text": text}]));
        }
        Ok(result)
    }

    /// Audits a request the gateway refuses before any policy decision (an
    /// unknown, reserved, duplicate or changed tool, an unreachable
    /// upstream): a `deny` decision record at `pre_tool_call` with these
    /// reasons and no rule, so `warden audit tail` shows every call the
    /// agent attempted. Arguments are recorded as a digest. Returns the
    /// record's decision id (the refusal stands even if it cannot be written).
    pub fn refuse(
        &self,
        session: &str,
        tool: &str,
        method: &str,
        args: Map<String, Value>,
        reasons: &[String],
    ) -> String {
        let decision_id = Decision::new_id();
        let mut context = Map::new();
        context.insert(
            "mcp".to_owned(),
            json!({"server": self.server, "method": method}),
        );
        let event = AuditEvent::Decision {
            action: warden_kernel::ActionBody {
                args,
                context,
                raw: false,
            },
            agent: self.agent.clone(),
            decision_id: decision_id.clone(),
            obligations: Vec::new(),
            point: Point::PreToolCall,
            policy_hash: self.kernel.policy().hash().to_owned(),
            reasons: reasons.to_vec(),
            rule_ids: Vec::new(),
            session: Some(session.to_owned()),
            tool: Some(tool.to_owned()),
            ts_ms: warden_runtime::now_ms(),
            kind: warden_kernel::DecisionTag::Decision,
            verdict: Verdict::Deny,
        };
        if let Err(e) = self.kernel.record_event(event) {
            eprintln!("warden mcp: refusal of `{tool}` not audited: {e}");
        }
        decision_id
    }

    /// Records how a forwarded request went.
    pub fn outcome(&self, decision_id: &str, error: Option<String>, latency: Duration) {
        if decision_id.is_empty() {
            return;
        }
        let outcome = Outcome {
            error,
            latency,
            ..Outcome::default()
        };
        if let Err(e) = self.kernel.record_outcome(decision_id, outcome) {
            eprintln!("warden mcp: outcome of {decision_id} not recorded: {e}");
        }
    }

    /// Whether policy denies every call of `tool` by this agent, whatever its
    /// arguments: walking the candidate rules in evaluation order, each one
    /// that can apply (its tool and agent filters admit the call) must be a
    /// `deny`, until one without a condition is reached — or, if none is, the
    /// policy default must be `deny` with no Rego or Cedar source able to override it.
    /// Returns the reasons a call would get. Anything else (a conditional
    /// non-deny rule, Rego or Cedar deciding the default) shows the tool: its calls
    /// are still checked one by one.
    pub fn never_callable(&self, session: &str, tool: &str) -> Option<Vec<String>> {
        let action = self
            .action(Point::PreToolCall, session, tool, "tools/call", Map::new())
            .ok()?;
        let set = self.kernel.policy();
        let explanation = set.explain(&action);
        for trace in &explanation.traces {
            match trace.result {
                RuleResult::ToolMismatch | RuleResult::AgentMismatch => continue,
                _ if trace.rule.effect != Verdict::Deny => return None,
                _ if trace.rule.condition_source().is_none() => {
                    return Some(vec![trace.rule.reason.clone()]);
                }
                _ => continue,
            }
        }
        (set.default_verdict() == Verdict::Deny && set.sources().is_empty())
            .then(|| vec![format!("no rule allows `{tool}`; policy default is deny")])
    }

    /// Pins `tool` on first sight; a changed definition is audited and
    /// reported as `Err(reasons)`. An unhashable definition is refused too.
    pub fn pin(&self, tool: &Map<String, Value>) -> Result<(), Vec<String>> {
        let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
        let digest = tool_digest(tool).map_err(|e| vec![REASON_TOOL_CHANGED.to_owned(), e])?;
        match self.pins.check(&self.server, name, &digest) {
            Ok(PinCheck::New | PinCheck::Same) => Ok(()),
            Ok(PinCheck::Changed { pinned }) => {
                let first = self
                    .audited
                    .lock()
                    .map(|mut a| a.insert(format!("{name} {digest}")))
                    .unwrap_or(true);
                // Recorded in the kernel's own audit log (none: not audited).
                if first
                    && let Err(e) = self.kernel.record_event(AuditEvent::McpToolChanged {
                        ts_ms: warden_runtime::now_ms(),
                        server: self.server.clone(),
                        tool: name.to_owned(),
                        pinned: pinned.clone(),
                        seen: digest.clone(),
                    })
                {
                    eprintln!("warden mcp: rug-pull of `{name}` not audited: {e}");
                }
                Err(vec![
                    REASON_TOOL_CHANGED.to_owned(),
                    format!(
                        "the definition of tool `{name}` changed since it was pinned ({pinned}, now {digest})"
                    ),
                ])
            }
            Err(e) => Err(vec![REASON_TOOL_CHANGED.to_owned(), e.to_string()]),
        }
    }
}

/// The `post_tool_call` arguments for a result: `{"result": <result>,
/// "output": <its text parts joined>}` (`output` only when there is text).
pub fn post_args(result: Value) -> Map<String, Value> {
    let mut args = Map::new();
    if let Some(text) = result_text(&result) {
        args.insert("output".to_owned(), Value::String(text));
    }
    args.insert("result".to_owned(), result);
    args
}

/// The text parts of a tool, resource or prompt result joined by newlines
/// (`args.output` at `post_tool_call`, where text scanners such as the
/// default pack's secret rule look), or `None` when it has none.
fn result_text(result: &Value) -> Option<String> {
    let items = ["content", "contents", "messages"]
        .iter()
        .find_map(|k| result.get(*k).and_then(Value::as_array))?;
    let texts: Vec<&str> = items
        .iter()
        .filter_map(|i| {
            i.get("text")
                .or_else(|| i.get("content").and_then(|c| c.get("text")))
                .and_then(Value::as_str)
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join("\n"))
}

/// Applies a decision: proceeding verdicts run their redact/replace
/// obligations on the action; anything else (or an obligation that cannot
/// be applied) is a denial.
fn apply(decision: Decision, mut action: Action) -> Result<(Decision, Action), Gated> {
    if !decision.verdict.proceeds() {
        return Err(Gated::Deny {
            decision_id: decision.decision_id,
            reasons: decision.reasons,
        });
    }
    for o in &decision.obligations {
        if let Err(e) = o.apply(&mut action) {
            return Err(Gated::Deny {
                decision_id: decision.decision_id.clone(),
                reasons: vec![
                    "runtime_error:internal".to_owned(),
                    format!("obligation could not be applied: {e}"),
                ],
            });
        }
    }
    Ok((decision, action))
}
