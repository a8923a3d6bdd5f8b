//! Streamable HTTP body helpers shared by the HTTP gateway (http.rs) and the
//! multi-upstream gateway's HTTP client (upstream_http.rs): content types and
//! the server-sent-events framing MCP uses.

use axum::http::HeaderMap;
use serde_json::Value;

/// Whether the body is an SSE stream.
pub(crate) fn is_sse(headers: &HeaderMap) -> bool {
    content_type_is(headers, "text/event-stream")
}

/// Whether the body is one JSON document.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    content_type_is(headers, "application/json")
}

fn content_type_is(headers: &HeaderMap, mime: &str) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(mime))
}

/// Splits an SSE byte stream into whole events (each with its blank-line terminator).
#[derive(Default)]
pub(crate) struct SseSplitter {
    /// Bytes of the event not yet terminated.
    pub(crate) buf: Vec<u8>,
}

impl SseSplitter {
    /// Adds `data` and returns the events it completed.
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            let end = find(&self.buf, b"\n\n")
                .map(|i| i + 2)
                .into_iter()
                .chain(find(&self.buf, b"\r\n\r\n").map(|i| i + 4))
                .min();
            let Some(end) = end else { return out };
            out.push(self.buf.drain(..end).collect());
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The JSON message an SSE event carries in its `data:` lines, if any.
pub(crate) fn event_json(event: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(event).ok()?;
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}

/// What an SSE event says besides its data: its `id` field (`Some("")`
/// resets the last event id; an id holding NUL is ignored, as browsers do)
/// and its `retry` field (the reconnection time in milliseconds; ignored
/// unless all ASCII digits).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct EventMeta {
    pub(crate) id: Option<String>,
    pub(crate) retry: Option<u64>,
}

/// The `id` and `retry` fields of `event` (the last of each wins).
pub(crate) fn event_meta(event: &[u8]) -> EventMeta {
    let mut meta = EventMeta::default();
    let text = String::from_utf8_lossy(event);
    for l in text.lines() {
        if l.starts_with(':') {
            continue;
        }
        let (field, value) = match l.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (l, ""),
        };
        match field {
            "id" if !value.contains('\0') => meta.id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                meta.retry = value.parse().ok();
            }
            _ => {}
        }
    }
    meta
}

/// The event with its data replaced by `msg` (other fields kept).
pub(crate) fn event_with(event: &[u8], msg: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(event);
    let mut out = Vec::with_capacity(msg.len() + 64);
    for l in text.lines() {
        if !l.is_empty() && !l.starts_with("data:") {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        }
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(msg.strip_suffix(b"\n").unwrap_or(msg));
    out.extend_from_slice(b"\n\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn splits_events_across_chunks_and_line_endings() {
        let mut s = SseSplitter::default();
        assert!(s.push(b"event: message\ndata: {\"a\"").is_empty());
        let events = s.push(b":1}\n\ndata: {\"b\":2}\r\n\r\ndata: partial");
        assert_eq!(events.len(), 2);
        assert_eq!(event_json(&events[0]), Some(serde_json::json!({"a": 1})));
        assert_eq!(event_json(&events[1]), Some(serde_json::json!({"b": 2})));
        assert_eq!(s.buf, b"data: partial");
        assert_eq!(event_json(b"event: ping\n\n"), None);
        assert_eq!(
            event_with(b"id: 7\nevent: message\ndata: {}\n\n", b"{\"x\":1}\n"),
            b"id: 7\nevent: message\ndata: {\"x\":1}\n\n"
        );
    }

    #[test]
    fn ids_and_retry_fields_are_read_like_a_browser_does() {
        let m = event_meta(b"id: s-4\nretry: 2500\nevent: message\ndata: {}\n\n");
        assert_eq!(m.id.as_deref(), Some("s-4"));
        assert_eq!(m.retry, Some(2500));
        // No space after the colon; the last field wins; CRLF lines.
        let m = event_meta(b"id:a\r\nid:b\r\nretry:10\r\n\r\n");
        assert_eq!(m.id.as_deref(), Some("b"));
        assert_eq!(m.retry, Some(10));
        // A bare `id` resets; a NUL id and a non-numeric retry are ignored;
        // comments are not fields.
        assert_eq!(event_meta(b"id\n\n").id.as_deref(), Some(""));
        let m = event_meta(b"id: x\0y\nretry: 1s\n: id: 9\ndata: {}\n\n");
        assert_eq!(m, EventMeta::default());
        assert_eq!(event_meta(b"retry: -5\n\n").retry, None);
        assert_eq!(
            event_meta(b"retry: 99999999999999999999999\n\n").retry,
            None
        );
    }
}
