"""Typed stubs for the native module ``warden._warden`` (src/lib.rs)."""

import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal

__version__: str

Verdict = Literal["allow", "warn", "deny", "escalate", "transform"]
StrPath = str | os.PathLike[str]

class WardenError(Exception):
    """Base class of every error raised by warden."""

class PolicyError(WardenError):
    """A policy could not be loaded or reloaded."""

class InvalidAction(WardenError, ValueError):
    """The action is not a valid wire-form Action."""

class ApprovalError(WardenError):
    """An approval could not be resolved."""

class AuditError(WardenError):
    """The audit log could not be read, verified or flushed."""

class Decision:
    """The answer for one action (the JSON wire form)."""

    @property
    def verdict(self) -> Verdict: ...
    @property
    def reasons(self) -> list[str]: ...
    @property
    def rule_ids(self) -> list[str]: ...
    @property
    def decision_id(self) -> str: ...
    @property
    def policy_hash(self) -> str: ...
    @property
    def obligations(self) -> list[dict[str, Any]]: ...
    @property
    def proceeds(self) -> bool: ...
    @staticmethod
    def from_wire(obj: Mapping[str, Any] | str) -> Decision: ...
    @staticmethod
    def deny(reasons: list[str], policy_hash: str = "") -> Decision: ...
    def apply(self, action: Mapping[str, Any]) -> dict[str, Any]: ...
    def to_dict(self) -> dict[str, Any]: ...
    def to_json(self) -> str: ...

class Kernel:
    """The Warden kernel in-process."""

    def __init__(
        self,
        policy: StrPath | Iterable[StrPath],
        data_dir: StrPath | None = None,
        durability: Literal["batched", "sync"] = "batched",
        args_mode: Literal["digest", "raw"] = "digest",
    ) -> None: ...
    @property
    def policy_hash(self) -> str: ...
    def decide(self, action: Mapping[str, Any]) -> Decision: ...
    def decide_json(self, action: str) -> Decision: ...
    def decide_and_wait(self, action: Mapping[str, Any], timeout: float | None = None) -> Decision: ...
    def record_outcome(
        self,
        decision_id: str,
        error: str | None = None,
        latency_s: float = 0.0,
        output_digest: str | None = None,
        tokens: int = 0,
        cost: float = 0.0,
    ) -> None: ...
    def pending_approvals(self) -> list[dict[str, Any]]: ...
    def resolve_approval(
        self, decision_id: str, approve: bool, approver: str, reason: str | None = None
    ) -> dict[str, Any]: ...
    def kill(
        self,
        *,
        agent: str | None = None,
        session: str | None = None,
        all: bool = False,
        reason: str,
        by: str | None = None,
    ) -> None: ...
    def unkill(
        self,
        *,
        agent: str | None = None,
        session: str | None = None,
        all: bool = False,
        by: str | None = None,
    ) -> bool: ...
    def reload_policy(self) -> str: ...
    def flush(self) -> None: ...
    def audit_head(self) -> dict[str, Any] | None: ...
    def audit_verify(self) -> dict[str, Any]: ...
    def audit_records(self, start: int = 0) -> list[dict[str, Any]]: ...
    def _rust_decide_loop(self, action: Mapping[str, Any], n: int) -> int: ...
