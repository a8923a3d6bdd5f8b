//! Tool definitions pinned on first sight: a later change (a rug-pull) is detected.

use crate::McpError;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The pin file inside a data directory.
pub const PIN_FILE: &str = "mcp-tool-pins.json";

/// The definition fields a pin covers: what the model reads and what shapes the call.
const PINNED_FIELDS: [&str; 6] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// `sha256:<hex>` over the RFC 8785 canonical JSON of the tool's name, title,
/// description, inputSchema, outputSchema and annotations (those present).
pub fn tool_digest(tool: &Map<String, Value>) -> Result<String, String> {
    let pinned: Map<String, Value> = PINNED_FIELDS
        .iter()
        .filter_map(|k| tool.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    let mut bytes = Vec::with_capacity(256);
    warden_audit::to_canonical_json(&pinned, &mut bytes).map_err(|e| e.to_string())?;
    Ok(format!("sha256:{}", hex::encode(Sha256::digest(&bytes))))
}

/// What a pin check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    /// First sight: pinned now.
    New,
    /// Same definition as pinned.
    Same,
    /// The definition changed; the pin is kept (a rug-pull never re-pins).
    Changed {
        /// The pinned digest.
        pinned: String,
    },
}

/// Pins per server label and tool name; persisted when given a data directory.
#[derive(Debug)]
pub struct PinStore {
    path: Option<PathBuf>,
    pins: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

impl PinStore {
    /// Pins that live only as long as the process.
    pub fn in_memory() -> Self {
        PinStore {
            path: None,
            pins: Mutex::new(BTreeMap::new()),
        }
    }

    /// Pins kept in `dir/mcp-tool-pins.json` (created on first pin). An
    /// unreadable or corrupt file is an error: starting without the pins
    /// would silently accept changed tools.
    pub fn open(dir: &Path) -> Result<Self, McpError> {
        let path = dir.join(PIN_FILE);
        let err = |message: String| McpError::Pins {
            path: path.clone(),
            message,
        };
        let pins = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(err(e.to_string())),
        };
        Ok(PinStore {
            path: Some(path),
            pins: Mutex::new(pins),
        })
    }

    /// Checks `digest` against the pin of `server`/`tool`, pinning it on first sight.
    pub fn check(&self, server: &str, tool: &str, digest: &str) -> Result<PinCheck, McpError> {
        let mut pins = self.pins.lock().map_err(|_| McpError::Pins {
            path: self.path.clone().unwrap_or_default(),
            message: "lock poisoned".to_owned(),
        })?;
        let tools = pins.entry(server.to_owned()).or_default();
        match tools.get(tool) {
            Some(p) if p == digest => return Ok(PinCheck::Same),
            Some(p) => {
                return Ok(PinCheck::Changed { pinned: p.clone() });
            }
            None => {}
        }
        tools.insert(tool.to_owned(), digest.to_owned());
        if let Some(path) = &self.path {
            let err = |e: std::io::Error| McpError::Pins {
                path: path.clone(),
                message: e.to_string(),
            };
            let bytes = serde_json::to_vec_pretty(&*pins).map_err(|e| McpError::Pins {
                path: path.clone(),
                message: e.to_string(),
            })?;
            // Write-then-rename: a crash never leaves a torn pin file.
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, bytes).map_err(err)?;
            std::fs::rename(&tmp, path).map_err(err)?;
        }
        Ok(PinCheck::New)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn tool(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn digest_covers_definition_not_key_order() {
        let a = tool(
            json!({"name": "t", "description": "d", "inputSchema": {"type": "object", "properties": {"a": {}, "b": {}}}}),
        );
        let b = tool(
            json!({"inputSchema": {"properties": {"b": {}, "a": {}}, "type": "object"}, "description": "d", "name": "t"}),
        );
        assert_eq!(tool_digest(&a).unwrap(), tool_digest(&b).unwrap());
        let c = tool(json!({"name": "t", "description": "d ", "inputSchema": {"type": "object"}}));
        assert_ne!(tool_digest(&a).unwrap(), tool_digest(&c).unwrap());
        // Fields outside the pinned set (icons, _meta) do not count.
        let mut d = a.clone();
        d.insert("_meta".into(), json!({"x": 1}));
        assert_eq!(tool_digest(&a).unwrap(), tool_digest(&d).unwrap());
    }

    #[test]
    fn persists_and_detects_change() {
        let dir = tempfile::tempdir().unwrap();
        let s = PinStore::open(dir.path()).unwrap();
        assert_eq!(s.check("srv", "t", "sha256:1").unwrap(), PinCheck::New);
        assert_eq!(s.check("srv", "t", "sha256:1").unwrap(), PinCheck::Same);
        assert_eq!(s.check("other", "t", "sha256:2").unwrap(), PinCheck::New);
        drop(s);
        let s = PinStore::open(dir.path()).unwrap();
        assert_eq!(
            s.check("srv", "t", "sha256:2").unwrap(),
            PinCheck::Changed {
                pinned: "sha256:1".into()
            }
        );
        // A change never replaces the pin.
        assert!(matches!(
            s.check("srv", "t", "sha256:2").unwrap(),
            PinCheck::Changed { .. }
        ));
    }

    #[test]
    fn corrupt_file_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PIN_FILE), b"{not json").unwrap();
        assert!(PinStore::open(dir.path()).is_err());
    }
}
