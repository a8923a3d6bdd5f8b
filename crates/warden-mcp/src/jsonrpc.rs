//! Just enough JSON-RPC 2.0 to route MCP messages: classify, answer, frame.

use serde_json::{Value, json};

/// Invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Not a valid JSON-RPC message (also: oversize messages and batches).
pub const INVALID_REQUEST: i64 = -32600;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// The gateway could not complete the request (upstream down, ...).
pub const INTERNAL_ERROR: i64 = -32603;
/// A `resources/read` or `prompts/get` denied by policy (these results have no
/// `isError` field, so the denial is a JSON-RPC error with this code).
pub const POLICY_DENIED: i64 = -32050;

/// What a parsed message is.
#[derive(Debug)]
pub(crate) enum Kind<'a> {
    /// A request: has `id` and `method`.
    Request { id: &'a Value, method: &'a str },
    /// A notification: `method`, no `id`.
    Notification,
    /// A response: `id` and `result` or `error`.
    Response { id: &'a Value },
    /// Not a JSON-RPC 2.0 message; the text says why.
    Invalid(&'static str),
}

/// Classifies one message (an object; batches are handled by the caller).
pub(crate) fn classify(v: &Value) -> Kind<'_> {
    let Some(obj) = v.as_object() else {
        return Kind::Invalid("a JSON-RPC message must be an object");
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Kind::Invalid("`jsonrpc` must be \"2.0\"");
    }
    let id = obj.get("id");
    if let Some(id) = id
        && !(id.is_string() || id.is_i64() || id.is_u64())
    {
        return Kind::Invalid("`id` must be a string or an integer");
    }
    match (obj.get("method"), id) {
        (Some(Value::String(method)), Some(id)) => {
            if obj.contains_key("result") || obj.contains_key("error") {
                return Kind::Invalid("a request cannot carry `result` or `error`");
            }
            Kind::Request { id, method }
        }
        (Some(Value::String(_)), None) => Kind::Notification,
        (Some(_), _) => Kind::Invalid("`method` must be a string"),
        (None, Some(id)) => match (obj.contains_key("result"), obj.contains_key("error")) {
            (true, false) | (false, true) => Kind::Response { id },
            _ => Kind::Invalid("a response carries exactly one of `result` and `error`"),
        },
        (None, None) => Kind::Invalid("neither a request, a notification nor a response"),
    }
}

/// A stable map key for an id (`1` and `"1"` stay distinct).
pub(crate) fn id_key(id: &Value) -> String {
    id.to_string()
}

/// A framed (newline-terminated) JSON-RPC error response.
pub(crate) fn error_line(id: &Value, code: i64, message: &str) -> Vec<u8> {
    line(&json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
}

/// A framed JSON-RPC success response.
pub(crate) fn result_line(id: &Value, result: Value) -> Vec<u8> {
    line(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// A `CallToolResult` with `isError: true`: the model sees why.
pub(crate) fn tool_error(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

/// Serializes `v` as one line.
pub(crate) fn line(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn classifies() {
        let k = |s: &str| format!("{:?}", classify(&serde_json::from_str(s).unwrap()));
        assert!(k(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).starts_with("Request"));
        assert!(k(r#"{"jsonrpc":"2.0","method":"x"}"#).starts_with("Notification"));
        assert!(k(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).starts_with("Response"));
        for bad in [
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":3}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#,
            r#"[1]"#,
        ] {
            assert!(k(bad).starts_with("Invalid"), "{bad}");
        }
    }

    #[test]
    fn ids_keep_their_type() {
        assert_ne!(id_key(&json!(1)), id_key(&json!("1")));
    }
}
