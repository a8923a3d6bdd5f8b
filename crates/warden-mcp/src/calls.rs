//! Transport-independent handling of intercepted requests: the tool book
//! (what the server listed, pinned and screened), request targets, denials.

use crate::gate::{Gated, Gateway, REASON_DUPLICATE_TOOL, REASON_UNKNOWN_TOOL, RESERVED_TOOLS};
use crate::jsonrpc::{POLICY_DENIED, error_line, line, result_line, tool_error};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use warden_core::Point;

/// `tools/call` parameters the gateway understands; others are refused
/// rather than forwarded unchecked.
const CALL_PARAMS: [&str; 5] = ["name", "arguments", "_meta", "task", "inputResponses"];

/// The methods the gateway decides.
pub(crate) const INTERCEPTED: [&str; 3] = ["tools/call", "resources/read", "prompts/get"];

/// A tool as last listed by the server.
enum Known {
    Callable,
    Blocked(Vec<String>),
}

/// What the server listed on one connection or session.
#[derive(Default)]
pub(crate) struct ToolBook {
    known: HashMap<String, Known>,
    /// Names seen so far in the current (possibly paginated) listing.
    listing: HashSet<String>,
}

impl ToolBook {
    /// Forgets the definitions: the next call lists (and re-checks pins) first.
    pub(crate) fn clear(&mut self) {
        self.known.clear();
    }

    pub(crate) fn is_listed(&self, tool: &str) -> bool {
        self.known.contains_key(tool)
    }

    /// Whether a listed tool may be called (policy still decides the call).
    pub(crate) fn check(&self, tool: &str) -> Result<(), Vec<String>> {
        match self.known.get(tool) {
            Some(Known::Callable) => Ok(()),
            Some(Known::Blocked(reasons)) => Err(reasons.clone()),
            None => Err(vec![
                REASON_UNKNOWN_TOOL.to_owned(),
                format!("the server does not list a tool named `{tool}`"),
            ]),
        }
    }

    /// Pins, de-duplicates and filters one page of a `tools/list` result.
    pub(crate) fn screen(
        &mut self,
        gw: &Gateway,
        session: &str,
        mut result: Value,
        first_page: bool,
    ) -> Value {
        let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
            return result;
        };
        if first_page {
            self.listing.clear();
        }
        let mut on_page: HashMap<String, usize> = HashMap::new();
        for t in tools.iter() {
            if let Some(n) = t.get("name").and_then(Value::as_str) {
                *on_page.entry(n.to_owned()).or_default() += 1;
            }
        }
        let mut shown = Vec::with_capacity(tools.len());
        for t in tools.drain(..) {
            let Some(def) = t.as_object() else { continue };
            let Some(name) = def
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            else {
                continue;
            };
            let name = name.to_owned();
            let duplicate =
                on_page.get(&name).copied().unwrap_or(0) > 1 || !self.listing.insert(name.clone());
            let verdict = if duplicate {
                Known::Blocked(vec![
                    REASON_DUPLICATE_TOOL.to_owned(),
                    format!("more than one tool is named `{name}`; calls to it are refused"),
                ])
            } else if RESERVED_TOOLS.contains(&name.as_str()) {
                Known::Blocked(reserved(&name))
            } else {
                match gw.pin(def) {
                    Ok(()) => Known::Callable,
                    Err(reasons) => Known::Blocked(reasons),
                }
            };
            let show =
                matches!(verdict, Known::Callable) && gw.never_callable(session, &name).is_none();
            self.known.insert(name, verdict);
            if show {
                shown.push(t);
            }
        }
        *tools = shown;
        result
    }
}

/// Whether a client notification uses an MCP notification method: any other
/// method without an id (a `tools/call` sent as a notification, say) would
/// reach the server undecided, so it is not forwarded.
pub(crate) fn is_notification_method(msg: &Value) -> bool {
    msg.get("method")
        .and_then(Value::as_str)
        .is_some_and(|m| m.starts_with("notifications/"))
}

/// Checks one message from the client before any routing: `Ok` with the
/// parsed message when it may go on, `Err(Some(line))` with the JSON-RPC
/// error to answer (malformed JSON, a batch, not JSON-RPC), `Err(None)` when
/// it is dropped (a notification outside `notifications/*`, logged here).
pub(crate) fn screen_client(bytes: &[u8]) -> Result<Value, Option<Vec<u8>>> {
    use crate::jsonrpc::{INVALID_REQUEST, Kind, PARSE_ERROR, classify, error_line};
    let msg: Value = serde_json::from_slice(bytes).map_err(|e| {
        Some(error_line(
            &Value::Null,
            PARSE_ERROR,
            &format!("invalid JSON: {e}"),
        ))
    })?;
    if msg.is_array() {
        return Err(Some(error_line(
            &Value::Null,
            INVALID_REQUEST,
            "JSON-RPC batches are not part of MCP since 2025-06-18",
        )));
    }
    match classify(&msg) {
        Kind::Invalid(why) => {
            let id = msg
                .get("id")
                .filter(|i| i.is_string() || i.is_i64() || i.is_u64())
                .cloned()
                .unwrap_or(Value::Null);
            Err(Some(error_line(&id, INVALID_REQUEST, why)))
        }
        Kind::Notification if !is_notification_method(&msg) => {
            // A `tools/call` without an id would reach a lenient server undecided.
            eprintln!("warden mcp: dropped a client notification that is not `notifications/*`");
            Err(None)
        }
        _ => Ok(msg),
    }
}

/// Most pages of a list the gateway fetches itself before giving up (a
/// server whose cursor never ends would otherwise keep it listing forever).
pub(crate) const MAX_PAGES: usize = 1000;

/// Params of a list request the gateway sends itself: the page `cursor`
/// (none for the first) and the client's `_meta`, if any.
pub(crate) fn page_params(cursor: Option<&Value>, meta: Option<&Value>) -> Value {
    let mut params = serde_json::Map::new();
    if let Some(c) = cursor {
        params.insert("cursor".to_owned(), c.clone());
    }
    if let Some(m) = meta {
        params.insert("_meta".to_owned(), m.clone());
    }
    Value::Object(params)
}

/// The `nextCursor` of a list result (`None`: that was the last page).
pub(crate) fn next_cursor(result: &Value) -> Option<Value> {
    result.get("nextCursor").filter(|c| !c.is_null()).cloned()
}

/// Reasons for a server tool named like a gateway action.
pub(crate) fn reserved(tool: &str) -> Vec<String> {
    vec![
        REASON_UNKNOWN_TOOL.to_owned(),
        format!("`{tool}` is reserved for gateway actions"),
    ]
}

/// A denial in the shape the method's result allows (framed).
pub(crate) fn denial(id: &Value, method: &str, reasons: &[String]) -> Vec<u8> {
    let text = Gated::deny_text(reasons);
    if method == "tools/call" {
        result_line(id, tool_error(&text))
    } else {
        error_line(id, POLICY_DENIED, &text)
    }
}

/// Runs a decision: in place when it cannot wait for an approver (the
/// common, microsecond path: no thread hand-off), else on the blocking pool
/// (an escalation may wait minutes).
pub(crate) async fn decide<T: Send + 'static>(
    may_wait: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    if may_wait {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| e.to_string())
    } else {
        Ok(f())
    }
}

/// Decides an intercepted request for `tool` with `args` at
/// `pre_tool_call` and applies a transform to `msg`. `Ok((decision id,
/// whether msg was rewritten))` when it may go on as `msg` now is, else the
/// reasons to deny it with: a decision or rewrite that fails denies.
pub(crate) async fn before_call(
    gw: &Arc<Gateway>,
    session: &str,
    tool: &str,
    method: &'static str,
    args: Map<String, Value>,
    msg: &mut Value,
) -> Result<(String, bool), Vec<String>> {
    let may_wait = gw.may_wait(Point::PreToolCall, session, tool, method, args.clone());
    let (g, s, t, original) = (
        Arc::clone(gw),
        session.to_owned(),
        tool.to_owned(),
        args.clone(),
    );
    let gated = decide(may_wait, move || g.before(&s, &t, method, args))
        .await
        .unwrap_or_else(|e| Gated::Deny {
            decision_id: String::new(),
            reasons: vec!["runtime_error:internal".to_owned(), e],
        });
    match gated {
        Gated::Deny { reasons, .. } => Err(reasons),
        Gated::Proceed { args, decision_id } if args == original => Ok((decision_id, false)),
        Gated::Proceed { args, decision_id } => match rewrite(msg, method, args) {
            Ok(()) => Ok((decision_id, true)),
            Err(e) => Err(vec!["runtime_error:internal".to_owned(), e]),
        },
    }
}

/// A forwarded request the gateway decided, awaiting its result.
pub(crate) struct CallInfo {
    pub(crate) tool: String,
    pub(crate) method: &'static str,
    pub(crate) decision_id: String,
    pub(crate) started: std::time::Instant,
}

/// The server's answer to a decided request, checked at `post_tool_call`:
/// records the outcome and returns the framed message for the client
/// (redacted, or a denial).
pub(crate) async fn checked_result(
    gw: Arc<Gateway>,
    session: &str,
    msg: Value,
    id: &Value,
    call: CallInfo,
) -> Vec<u8> {
    let latency = call.started.elapsed();
    let Some(result) = msg.get("result").cloned() else {
        let err = msg.get("error").map(|e| e.to_string());
        gw.outcome(&call.decision_id, err, latency);
        return line(&msg);
    };
    let error = (result.get("isError") == Some(&Value::Bool(true)))
        .then(|| "the tool reported an error".to_owned());
    gw.outcome(&call.decision_id, error, latency);
    let session = session.to_owned();
    let (tool, method) = (call.tool, call.method);
    let may_wait = gw.may_wait(
        Point::PostToolCall,
        &session,
        &tool,
        method,
        crate::gate::post_args(result.clone()),
    );
    let checked = decide(may_wait, move || gw.after(&session, &tool, method, result))
        .await
        .unwrap_or_else(|e| {
            Err(Gated::Deny {
                decision_id: String::new(),
                reasons: vec!["runtime_error:internal".to_owned(), e],
            })
        });
    match checked {
        Ok(mut result) => {
            if method == "tools/call" {
                keep_call_result_shape(&mut result);
            }
            result_line(id, result)
        }
        Err(Gated::Deny { reasons, .. }) => denial(id, method, &reasons),
        Err(Gated::Proceed { .. }) => denial(id, method, &[]),
    }
}

/// The tool name and action arguments of an intercepted request.
pub(crate) fn call_target(
    msg: &Value,
    method: &str,
) -> Result<(String, Map<String, Value>), String> {
    let params = msg
        .get("params")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{method} needs a `params` object"))?;
    match method {
        "tools/call" => {
            if let Some(k) = params.keys().find(|k| !CALL_PARAMS.contains(&k.as_str())) {
                return Err(format!("unknown field `{k}` in tools/call params"));
            }
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or("tools/call needs a non-empty string `name`")?;
            let args = match params.get("arguments") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(a)) => a.clone(),
                Some(_) => return Err("tools/call `arguments` must be an object".to_owned()),
            };
            Ok((name.to_owned(), args))
        }
        "resources/read" => {
            let uri = params
                .get("uri")
                .and_then(Value::as_str)
                .ok_or("resources/read needs a string `uri`")?;
            let mut args = Map::new();
            args.insert("uri".to_owned(), Value::String(uri.to_owned()));
            Ok((method.to_owned(), args))
        }
        _ => {
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .ok_or("prompts/get needs a string `name`")?;
            let mut args = Map::new();
            args.insert("name".to_owned(), Value::String(name.to_owned()));
            match params.get("arguments") {
                None | Some(Value::Null) => {}
                Some(a @ Value::Object(_)) => {
                    args.insert("arguments".to_owned(), a.clone());
                }
                Some(_) => return Err("prompts/get `arguments` must be an object".to_owned()),
            }
            Ok((method.to_owned(), args))
        }
    }
}

/// Writes transformed arguments back into the request.
pub(crate) fn rewrite(
    msg: &mut Value,
    method: &str,
    mut args: Map<String, Value>,
) -> Result<(), String> {
    let params = msg
        .get_mut("params")
        .and_then(Value::as_object_mut)
        .ok_or("params vanished")?;
    match method {
        "tools/call" => {
            params.insert("arguments".to_owned(), Value::Object(args));
        }
        _ => {
            // resources/read: uri; prompts/get: name and arguments.
            for (k, v) in std::mem::take(&mut args) {
                if !v.is_string() && k != "arguments" {
                    return Err(format!("transform made `{k}` a non-string"));
                }
                params.insert(k, v);
            }
        }
    }
    Ok(())
}

/// A redaction of `content` replaces the array with a string; the client
/// still gets a valid `CallToolResult`.
pub(crate) fn keep_call_result_shape(result: &mut Value) {
    if let Some(obj) = result.as_object_mut()
        && obj.get("content").is_some_and(|c| !c.is_array())
    {
        let text = match obj.get("content") {
            Some(Value::String(s)) => s.clone(),
            _ => warden_core::REDACTED.to_owned(),
        };
        obj.insert(
            "content".to_owned(),
            json!([{"type": "text", "text": text}]),
        );
    }
}
