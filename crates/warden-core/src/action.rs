//! The request side of a decision: who wants to do what, where.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// An intervention point: where in the agent loop an action is checked.
///
/// The first eight are the ACS intervention points; `agent_message` covers
/// inter-agent traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Point {
    /// The agent process starts.
    AgentStartup,
    /// User or upstream input reaches the agent.
    Input,
    /// Before a model is called.
    PreModelCall,
    /// After a model answered.
    PostModelCall,
    /// Before a tool is called (the default point).
    PreToolCall,
    /// After a tool returned.
    PostToolCall,
    /// The agent emits output.
    Output,
    /// The agent process stops.
    AgentShutdown,
    /// A message from one agent to another.
    AgentMessage,
}

impl Point {
    /// Every point, in declaration order; `Point::ALL[p.index()] == p`.
    pub const ALL: [Point; 9] = [
        Point::AgentStartup,
        Point::Input,
        Point::PreModelCall,
        Point::PostModelCall,
        Point::PreToolCall,
        Point::PostToolCall,
        Point::Output,
        Point::AgentShutdown,
        Point::AgentMessage,
    ];

    /// Dense index of the point, for per-point tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The wire name (`pre_tool_call`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Point::AgentStartup => "agent_startup",
            Point::Input => "input",
            Point::PreModelCall => "pre_model_call",
            Point::PostModelCall => "post_model_call",
            Point::PreToolCall => "pre_tool_call",
            Point::PostToolCall => "post_tool_call",
            Point::Output => "output",
            Point::AgentShutdown => "agent_shutdown",
            Point::AgentMessage => "agent_message",
        }
    }

    /// Whether an action at this point must name a tool.
    pub const fn requires_tool(self) -> bool {
        matches!(self, Point::PreToolCall | Point::PostToolCall)
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Point {
    type Err = ActionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Point::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ActionError::UnknownPoint(s.to_owned()))
    }
}

/// Why an [`Action`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// `point` is not one of the nine intervention points.
    #[error("unknown intervention point `{0}`")]
    UnknownPoint(String),
    /// `agent` was empty.
    #[error("field `agent` must be a non-empty string")]
    EmptyAgent,
    /// A tool point without a `tool`.
    #[error("field `tool` is required at point `{0}`")]
    MissingTool(Point),
    /// `tool` was given but empty.
    #[error("field `tool` must be a non-empty string")]
    EmptyTool,
}

/// What an agent wants to do: the input of every decision.
///
/// Wire form (unknown fields are rejected):
/// `{"point": "pre_tool_call", "agent": "...", "session": "...", "tool": "...", "args": {...}, "context": {...}}`.
/// `point` defaults to `pre_tool_call`, `args` and `context` to `{}`; `tool`
/// is required at `pre_tool_call` and `post_tool_call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawAction")]
pub struct Action {
    /// Where in the agent loop this action is checked.
    pub point: Point,
    /// The acting agent's id (a did:key once identity is verified).
    pub agent: String,
    /// The session the action belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The tool (or model, or peer agent) the action targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<String>,
    /// Tool arguments.
    pub args: Map<String, Value>,
    /// Caller-supplied context (the AGT evaluation context lives here).
    pub context: Map<String, Value>,
    /// Proof of the agent's identity for the identity stage: a session
    /// credential from a handshake, or a signed invocation envelope (compact
    /// JWS). Absent from the wire form when `None`; never written to the
    /// audit log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl Action {
    /// Builds a validated action.
    pub fn new(
        point: Point,
        agent: impl Into<String>,
        tool: Option<String>,
    ) -> Result<Self, ActionError> {
        let agent = agent.into();
        if agent.is_empty() {
            return Err(ActionError::EmptyAgent);
        }
        match &tool {
            None if point.requires_tool() => return Err(ActionError::MissingTool(point)),
            Some(t) if t.is_empty() => return Err(ActionError::EmptyTool),
            _ => {}
        }
        Ok(Action {
            point,
            agent,
            session: None,
            tool,
            args: Map::new(),
            context: Map::new(),
            credential: None,
        })
    }

    /// Shorthand for a `pre_tool_call` action.
    pub fn tool_call(
        agent: impl Into<String>,
        tool: impl Into<String>,
    ) -> Result<Self, ActionError> {
        Action::new(Point::PreToolCall, agent, Some(tool.into()))
    }

    /// Sets the session id.
    #[must_use]
    pub fn with_session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// Sets the arguments.
    #[must_use]
    pub fn with_args(mut self, args: Map<String, Value>) -> Self {
        self.args = args;
        self
    }

    /// Sets the context.
    #[must_use]
    pub fn with_context(mut self, context: Map<String, Value>) -> Self {
        self.context = context;
        self
    }

    /// Sets the identity credential (session credential or signed envelope).
    #[must_use]
    pub fn with_credential(mut self, credential: impl Into<String>) -> Self {
        self.credential = Some(credential.into());
        self
    }

    /// The targeted tool, if any (always `Some` at tool points).
    pub fn tool(&self) -> Option<&str> {
        self.tool.as_deref()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    #[serde(default = "default_point")]
    point: Point,
    agent: String,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    args: Map<String, Value>,
    #[serde(default)]
    context: Map<String, Value>,
    #[serde(default)]
    credential: Option<String>,
}

fn default_point() -> Point {
    Point::PreToolCall
}

impl TryFrom<RawAction> for Action {
    type Error = ActionError;
    fn try_from(raw: RawAction) -> Result<Self, Self::Error> {
        let mut action = Action::new(raw.point, raw.agent, raw.tool)?;
        action.session = raw.session;
        action.args = raw.args;
        action.context = raw.context;
        action.credential = raw.credential;
        Ok(action)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(s: &str) -> Result<Action, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_apply() {
        let a = parse(r#"{"agent":"a","tool":"t"}"#).unwrap();
        assert_eq!(a.point, Point::PreToolCall);
        assert!(a.args.is_empty() && a.context.is_empty() && a.session.is_none());
    }

    #[test]
    fn unknown_field_rejected() {
        let e = parse(r#"{"agent":"a","tool":"t","tools":"x"}"#).unwrap_err();
        assert!(e.contains("unknown field `tools`"), "{e}");
    }

    #[test]
    fn tool_required_at_tool_points() {
        assert!(parse(r#"{"agent":"a"}"#).unwrap_err().contains("tool"));
        assert!(parse(r#"{"agent":"a","point":"post_tool_call"}"#).is_err());
        assert!(parse(r#"{"agent":"a","point":"input"}"#).is_ok());
    }

    #[test]
    fn bad_values_rejected() {
        assert!(parse(r#"{"agent":"","tool":"t"}"#).is_err());
        assert!(parse(r#"{"agent":"a","tool":""}"#).is_err());
        assert!(parse(r#"{"agent":"a","tool":"t","point":"pre_tool"}"#).is_err());
        assert!(parse(r#"{"agent":"a","tool":"t","args":[1]}"#).is_err());
        assert!(parse(r#"{"tool":"t"}"#).is_err());
    }

    #[test]
    fn credential_is_optional_and_round_trips() {
        let a = parse(r#"{"agent":"a","tool":"t"}"#).unwrap();
        assert!(a.credential.is_none());
        // Absent when None: existing wire JSON is unchanged.
        assert!(!serde_json::to_string(&a).unwrap().contains("credential"));
        let b = parse(r#"{"agent":"a","tool":"t","credential":"wsc1.x"}"#).unwrap();
        assert_eq!(b.credential.as_deref(), Some("wsc1.x"));
        let back: Action = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!(back, b);
        assert_eq!(a.with_credential("c").credential.as_deref(), Some("c"));
        assert!(parse(r#"{"agent":"a","tool":"t","credential":5}"#).is_err());
    }

    #[test]
    fn points_round_trip() {
        for p in Point::ALL {
            assert_eq!(p.as_str().parse::<Point>().unwrap(), p);
            assert_eq!(Point::ALL[p.index()], p);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
        }
    }
}
