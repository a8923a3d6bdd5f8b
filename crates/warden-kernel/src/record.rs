//! What the kernel writes to the audit log, and the sink it writes to.

use serde::Serialize;
use sha2::{Digest, Sha256};
use warden_core::{Obligation, Point, Verdict};
use warden_runtime::{KillTarget, Resolution};

/// One audit record. Serialized as RFC 8785 canonical JSON by the audit log;
/// `type` tells the kinds apart.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// Decision records dominate; they travel boxed and are reused in place (see
// `AuditSink::append_recycling`), so the variant's size costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum AuditEvent {
    /// The outcome of an executed action.
    Outcome {
        /// The decision it follows.
        decision_id: String,
        /// Unix ms.
        ts_ms: u64,
        /// `ok` or `error`.
        status: String,
        /// Error message, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Execution latency.
        latency_ms: u64,
        /// Digest of the output, if the caller gave one.
        #[serde(skip_serializing_if = "Option::is_none")]
        output_digest: Option<String>,
        /// Tokens consumed.
        tokens: u64,
        /// Cost consumed.
        cost: f64,
    },
    /// An approval ended.
    Approval {
        /// The escalated decision.
        decision_id: String,
        /// Unix ms.
        ts_ms: u64,
        /// How it ended (approver identity included).
        resolution: Resolution,
    },
    /// A kill was activated.
    Kill {
        /// Unix ms.
        ts_ms: u64,
        /// What was killed.
        target: KillTarget,
        /// Why.
        reason: String,
        /// Who.
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A kill was lifted.
    Unkill {
        /// Unix ms.
        ts_ms: u64,
        /// What was released.
        target: KillTarget,
        /// Who.
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// An MCP server offered a tool whose definition differs from the one
    /// pinned on first sight (a rug-pull); the MCP gateway blocks the tool.
    McpToolChanged {
        /// `sha256:` digest of the pinned definition.
        pinned: String,
        /// `sha256:` digest of the definition now offered.
        seen: String,
        /// The upstream server's label.
        server: String,
        /// The tool.
        tool: String,
        /// Unix ms.
        ts_ms: u64,
    },
    /// A policy set was loaded or reloaded.
    PolicyLoaded {
        /// Unix ms.
        ts_ms: u64,
        /// Its hash.
        policy_hash: String,
        /// Its names.
        names: Vec<String>,
    },
    /// A decision. Fields are declared in RFC 8785 order, `type` included
    /// (`kind`): serde would write an enum's tag first, and the canonical
    /// writer would then re-sort every decision record (the commonest record
    /// by far). Hence `untagged` here, which serde requires to be the last variant.
    #[serde(untagged)]
    Decision {
        /// The arguments and context, hashed (`sha256:` over their canonical JSON)
        /// or raw, depending on [`ArgsMode`](crate::ArgsMode).
        action: ActionBody,
        /// Agent id.
        agent: String,
        /// Decision id (UUIDv7).
        decision_id: String,
        /// Obligations.
        obligations: Vec<Obligation>,
        /// Intervention point.
        point: Point,
        /// The policy set that decided.
        policy_hash: String,
        /// Reasons.
        reasons: Vec<String>,
        /// Deciding rules.
        rule_ids: Vec<String>,
        /// Session id.
        #[serde(skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        /// Tool.
        #[serde(skip_serializing_if = "Option::is_none")]
        tool: Option<String>,
        /// Unix ms.
        ts_ms: u64,
        /// The record kind, serialised as `"type": "decision"`.
        #[serde(rename = "type")]
        kind: DecisionTag,
        /// Verdict.
        verdict: Verdict,
    },
}

/// The `type` of a decision record: always `decision` (see
/// [`AuditEvent::Decision`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum DecisionTag {
    /// `"decision"`.
    #[default]
    #[serde(rename = "decision")]
    Decision,
}

/// The action's payload as recorded: by default only a digest, computed when
/// the record is serialized (on the audit writer thread, off the decision
/// path); raw arguments only if the kernel is configured to keep them.
#[derive(Debug, Clone)]
pub struct ActionBody {
    /// Arguments.
    pub args: serde_json::Map<String, serde_json::Value>,
    /// Context.
    pub context: serde_json::Map<String, serde_json::Value>,
    /// Keep them raw instead of hashing.
    pub raw: bool,
}

/// Length of `sha256:` and 64 hex digits.
const DIGEST_LEN: usize = 7 + 64;

thread_local! {
    /// Scratch for the digest's canonical bytes: the digest is computed for
    /// every decision record, on the audit writer thread.
    static DIGEST_SCRATCH: std::cell::RefCell<(warden_audit::Canonicalizer, Vec<u8>)> =
        std::cell::RefCell::new((warden_audit::Canonicalizer::new(), Vec::with_capacity(256)));
}

impl ActionBody {
    /// `sha256:<hex>` over the RFC 8785 canonical JSON of `{"args": ..., "context": ...}`.
    pub fn digest(&self) -> Result<String, String> {
        let mut out = [0u8; DIGEST_LEN];
        let s = self.digest_into(&mut out)?;
        Ok(s.to_owned())
    }

    /// [`ActionBody::digest`] into a stack buffer, reusing per-thread scratch.
    fn digest_into<'a>(&self, out: &'a mut [u8; DIGEST_LEN]) -> Result<&'a str, String> {
        #[derive(Serialize)]
        struct Both<'a> {
            args: &'a serde_json::Map<String, serde_json::Value>,
            context: &'a serde_json::Map<String, serde_json::Value>,
        }
        let both = Both {
            args: &self.args,
            context: &self.context,
        };
        let hash = DIGEST_SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                let (canon, bytes) = &mut *scratch;
                bytes.clear();
                canon.encode(&both, bytes).map_err(|e| e.to_string())?;
                Ok::<_, String>(Sha256::digest(bytes.as_slice()))
            }
            // Only if serialising the arguments re-entered this function.
            Err(_) => {
                let mut bytes = Vec::with_capacity(256);
                warden_audit::to_canonical_json(&both, &mut bytes).map_err(|e| e.to_string())?;
                Ok(Sha256::digest(&bytes))
            }
        })?;
        out[..7].copy_from_slice(b"sha256:");
        hex::encode_to_slice(hash, &mut out[7..]).map_err(|e| e.to_string())?;
        std::str::from_utf8(out).map_err(|e| e.to_string())
    }
}

impl Serialize for ActionBody {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(if self.raw { 3 } else { 1 }))?;
        if self.raw {
            m.serialize_entry("args", &self.args)?;
            m.serialize_entry("context", &self.context)?;
        }
        let mut buf = [0u8; DIGEST_LEN];
        let digest = self
            .digest_into(&mut buf)
            .map_err(serde::ser::Error::custom)?;
        m.serialize_entry("digest", digest)?;
        m.end()
    }
}

/// Where audit records go. Implementations must never drop a record: block
/// (back-pressure) or fail.
pub trait AuditSink: Send + Sync {
    /// Hands one record over; with synchronous durability, returns once it is durable.
    fn append(&self, event: AuditEvent) -> Result<(), String>;
    /// Waits until everything handed over is durable.
    fn flush(&self) -> Result<(), String>;
    /// Records handed over but not yet durable, when the sink can tell.
    fn backlog(&self) -> Option<u64> {
        None
    }
    /// As [`AuditSink::append`]; a sink that is done with earlier records may
    /// also put one in `spare` (when empty) for the caller to overwrite for
    /// its next record, sparing an allocation per field (and a free on
    /// another thread). Boxed, so handing a record over moves a pointer,
    /// not the record. The default just appends.
    fn append_recycling(
        &self,
        event: Box<AuditEvent>,
        spare: &mut Option<Box<AuditEvent>>,
    ) -> Result<(), String> {
        let _ = spare;
        self.append(*event)
    }
}

/// The kernel's file log holds boxed records, the unit
/// [`AuditSink::append_recycling`] hands back and forth.
impl AuditSink for warden_audit::AuditLog<Box<AuditEvent>> {
    fn append(&self, event: AuditEvent) -> Result<(), String> {
        warden_audit::AuditLog::append(self, Box::new(event))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn flush(&self) -> Result<(), String> {
        warden_audit::AuditLog::flush(self)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn backlog(&self) -> Option<u64> {
        Some(self.len().saturating_sub(self.durable_len()))
    }

    fn append_recycling(
        &self,
        event: Box<AuditEvent>,
        spare: &mut Option<Box<AuditEvent>>,
    ) -> Result<(), String> {
        warden_audit::AuditLog::append_recycling(self, event, spare)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Many sidecars sharing one PostgreSQL log. Batched mode hands the record
/// over without waiting for its index (which only exists once the shared
/// transaction commits); sync mode returns once it is committed.
#[cfg(feature = "postgres")]
impl AuditSink for warden_audit::pg::PgAuditLog<AuditEvent> {
    fn append(&self, event: AuditEvent) -> Result<(), String> {
        self.submit(event).map_err(|e| e.to_string())
    }

    fn flush(&self) -> Result<(), String> {
        warden_audit::pg::PgAuditLog::flush(self)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
