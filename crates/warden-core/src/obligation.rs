//! Obligations: what the caller must do with an action before it proceeds.

use crate::action::Action;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The value a redacted field is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// One thing the caller must do before the action proceeds.
///
/// Wire form is internally tagged: `{"type": "redact", "path": "args.password"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Obligation {
    /// Hold the action until one of `approvers` approves; deny after `timeout_ms`.
    Approval {
        /// Who may approve (ids, groups or roles; the approval backend interprets them).
        approvers: Vec<String>,
        /// How long to wait before the escalation becomes a deny.
        timeout_ms: u64,
    },
    /// Replace the value at `path` with [`REDACTED`], if present.
    Redact {
        /// Dotted path rooted at `args` or `context`, e.g. `args.headers.authorization`.
        path: String,
    },
    /// Set the value at `path` (creating intermediate objects).
    Replace {
        /// Dotted path rooted at `args` or `context`.
        path: String,
        /// The new value.
        value: Value,
    },
    /// Record the action with an audit mark (AGT's `log` action).
    AuditMark {
        /// The rule that asked for the mark.
        label: String,
    },
}

/// Why an obligation could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObligationError {
    /// The path does not start with `args.` or `context.`, or has an empty segment.
    #[error(
        "invalid obligation path `{0}`: must be `args.<key>[.<key>...]` or `context.<key>[...]`"
    )]
    BadPath(String),
    /// A `replace` path runs through a value that is not an object.
    #[error("cannot set `{0}`: an intermediate value is not an object")]
    NotAnObject(String),
}

/// Splits `args.a.b` into the root map and its key segments.
pub(crate) fn split_path(path: &str) -> Result<(bool, Vec<&str>), ObligationError> {
    let bad = || ObligationError::BadPath(path.to_owned());
    let (root, rest) = path.split_once('.').ok_or_else(bad)?;
    let in_args = match root {
        "args" => true,
        "context" => false,
        _ => return Err(bad()),
    };
    let keys: Vec<&str> = rest.split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(bad());
    }
    Ok((in_args, keys))
}

impl Obligation {
    /// Checks that a path-based obligation names a valid path.
    pub fn validate(&self) -> Result<(), ObligationError> {
        match self {
            Obligation::Redact { path } | Obligation::Replace { path, .. } => {
                split_path(path).map(|_| ())
            }
            Obligation::Approval { .. } | Obligation::AuditMark { .. } => Ok(()),
        }
    }

    /// Applies a redact/replace obligation to `action` (others are no-ops here:
    /// approvals and audit marks are carried out by the kernel).
    pub fn apply(&self, action: &mut Action) -> Result<(), ObligationError> {
        match self {
            Obligation::Redact { path } => {
                let (in_args, keys) = split_path(path)?;
                let root = if in_args {
                    &mut action.args
                } else {
                    &mut action.context
                };
                if let Some(slot) = lookup_mut(root, &keys) {
                    *slot = Value::String(REDACTED.to_owned());
                }
                Ok(())
            }
            Obligation::Replace { path, value } => {
                let (in_args, keys) = split_path(path)?;
                let root = if in_args {
                    &mut action.args
                } else {
                    &mut action.context
                };
                set(root, &keys, value.clone())
                    .ok_or_else(|| ObligationError::NotAnObject(path.clone()))
            }
            Obligation::Approval { .. } | Obligation::AuditMark { .. } => Ok(()),
        }
    }
}

fn lookup_mut<'a>(root: &'a mut Map<String, Value>, keys: &[&str]) -> Option<&'a mut Value> {
    let (last, parents) = keys.split_last()?;
    let mut map = root;
    for k in parents {
        map = map.get_mut(*k)?.as_object_mut()?;
    }
    map.get_mut(*last)
}

fn set(root: &mut Map<String, Value>, keys: &[&str], value: Value) -> Option<()> {
    let (last, parents) = keys.split_last()?;
    let mut map = root;
    for k in parents {
        map = map
            .entry((*k).to_owned())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()?;
    }
    map.insert((*last).to_owned(), value);
    Some(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn action() -> Action {
        let args = json!({"password": "hunter2", "headers": {"authorization": "Bearer x"}, "n": 5});
        Action::tool_call("a", "t")
            .unwrap()
            .with_args(args.as_object().unwrap().clone())
    }

    #[test]
    fn redact_and_replace() {
        let mut a = action();
        Obligation::Redact {
            path: "args.password".into(),
        }
        .apply(&mut a)
        .unwrap();
        Obligation::Redact {
            path: "args.headers.authorization".into(),
        }
        .apply(&mut a)
        .unwrap();
        Obligation::Redact {
            path: "args.missing.deep".into(),
        }
        .apply(&mut a)
        .unwrap();
        Obligation::Replace {
            path: "args.n".into(),
            value: json!(1),
        }
        .apply(&mut a)
        .unwrap();
        Obligation::Replace {
            path: "context.x.y".into(),
            value: json!(true),
        }
        .apply(&mut a)
        .unwrap();
        assert_eq!(
            serde_json::Value::Object(a.args),
            json!({"password": REDACTED, "headers": {"authorization": REDACTED}, "n": 1})
        );
        assert_eq!(
            serde_json::Value::Object(a.context),
            json!({"x": {"y": true}})
        );
    }

    #[test]
    fn bad_paths() {
        let mut a = action();
        for p in ["password", "tool.x", "args.", "args..x", ""] {
            assert!(
                Obligation::Redact { path: p.into() }.apply(&mut a).is_err(),
                "{p}"
            );
        }
        let r = Obligation::Replace {
            path: "args.n.x".into(),
            value: json!(1),
        }
        .apply(&mut a);
        assert_eq!(r, Err(ObligationError::NotAnObject("args.n.x".into())));
    }

    #[test]
    fn wire_form() {
        let o = Obligation::Approval {
            approvers: vec!["ops".into()],
            timeout_ms: 300_000,
        };
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            json!({"type": "approval", "approvers": ["ops"], "timeout_ms": 300000})
        );
    }
}
