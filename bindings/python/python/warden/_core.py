"""Shared enforcement logic for ``govern()`` and the framework adapters.

Every adapter maps its framework's concepts onto one Action (see
``docs/python.md``) and then calls the same three steps:

1. :func:`check` — decide (waiting for an approver on ``escalate``) and turn
   the decision into "proceed with these arguments" or :class:`GovernanceDenied`;
2. run the tool, then :func:`record` the outcome (success/error, latency);
3. :func:`check_result` — decide at ``post_tool_call`` on the result and apply
   its redactions (or withhold it on deny).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from warden._warden import Decision, InvalidAction, Kernel, WardenError

#: Nesting below which ``to_jsonable`` stops descending and uses ``str()``.
MAX_DEPTH = 32
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


class GovernanceDenied(WardenError):
    """Raised when Warden does not let an action proceed.

    Attributes:
        decision: the final :class:`warden.Decision` (``verdict`` is ``deny``,
            or ``escalate`` from a server that gave up waiting).
        reasons: the decision's reasons (what the policy said).
    """

    def __init__(self, decision: Decision, message: str | None = None) -> None:
        self.decision = decision
        self.reasons = list(decision.reasons)
        super().__init__(message or denial_text(decision))


def denial_text(decision: Decision) -> str:
    """The text an agent (or model) is shown for a denied action."""
    reasons = "; ".join(decision.reasons) or "no reason given"
    return f"Denied by Warden policy ({decision.verdict}): {reasons} [decision {decision.decision_id}]"


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """Converts arguments and results to the JSON data model, never failing.

    The rule (documented in docs/python.md):

    * ``str``, ``bool``, ``None``, 64-bit ``int`` and finite ``float`` pass through;
    * other ``int`` and non-finite ``float`` become ``str(value)``;
    * mappings become dicts with ``str(key)`` keys; lists, tuples, sets and
      frozensets become lists (sets in iteration order);
    * ``bytes`` become their UTF-8 text (invalid bytes replaced);
    * pydantic models become ``model_dump(mode="json")``; dataclass instances
      their fields;
    * anything else, and anything nested deeper than ``MAX_DEPTH``, becomes
      ``str(value)`` (``repr`` if ``str`` raises).
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _UINT64_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _depth >= MAX_DEPTH:
        return _str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, _depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            return to_jsonable(dump(mode="json"), _depth + 1)
        except Exception:  # noqa: BLE001 - fall back to str(), never crash
            return _str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name, None), _depth + 1)
            for f in dataclasses.fields(value)
        }
    return _str(value)


def _str(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001
        return repr(value)


def build_action(
    *,
    point: str,
    agent: str,
    tool: str | None,
    args: Mapping[str, Any] | None,
    session: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An Action dict in the JSON wire form. Values are converted lazily:
    :func:`check` decides on the :func:`to_jsonable` form only if the
    native conversion rejects them."""
    action: dict[str, Any] = {"point": point, "agent": agent}
    if tool is not None:
        action["tool"] = tool
    if session:
        action["session"] = session
    if args:
        action["args"] = args if type(args) is dict else dict(args)
    if context:
        action["context"] = context if type(context) is dict else dict(context)
    return action


def _jsonable_action(action: dict[str, Any]) -> dict[str, Any]:
    out = dict(action)
    for key in ("args", "context"):
        if key in out:
            out[key] = to_jsonable(out[key])
    return out


def _decide(decide: Callable[..., Decision], action: dict[str, Any], *extra: Any) -> tuple[Decision, dict[str, Any]]:
    """Decides ``action`` as built (the native conversion accepts JSON data as
    is, which is the common case and the fast one); if it holds values that
    are not JSON, decides its :func:`to_jsonable` form instead — the same
    document the conversion rule defines, so the outcome is identical."""
    try:
        return decide(action, *extra), action
    except InvalidAction:
        converted = _jsonable_action(action)
        return decide(converted, *extra), converted


def _allowed(decision: Decision, original: dict[str, Any], decided: dict[str, Any]) -> tuple[Decision, dict[str, Any]]:
    if not decision.proceeds:
        raise GovernanceDenied(decision)
    if decision.verdict == "transform":
        return decision, decision.apply(decided)
    return decision, original


def check(kernel: Any, action: dict[str, Any], wait_timeout: float | None = None) -> tuple[Decision, dict[str, Any]]:
    """Decides ``action`` (waiting for an approver on escalate) and returns the
    decision with the action to execute: ``action`` itself, or — after a
    ``transform`` — a new dict in JSON form with the obligations applied
    (test with ``is`` whether it was rewritten). Raises
    :class:`GovernanceDenied` unless it may proceed."""
    decision, decided = _decide(kernel.decide_and_wait, action, wait_timeout)
    return _allowed(decision, action, decided)


async def acheck(kernel: Any, action: dict[str, Any], wait_timeout: float | None = None) -> tuple[Decision, dict[str, Any]]:
    """:func:`check` without blocking the event loop: the (possibly long)
    wait for an approver runs in the default thread executor."""
    loop = asyncio.get_running_loop()
    decision, decided = await loop.run_in_executor(
        None, functools.partial(_decide, kernel.decide_and_wait, action, wait_timeout)
    )
    return _allowed(decision, action, decided)


async def off_loop(kernel: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """Runs ``fn(*args)`` for an async caller: inline for the in-process
    :class:`warden.Kernel` (microseconds, never blocks), in the default
    thread executor for anything else (a ``RemoteKernel`` does network I/O)."""
    if isinstance(kernel, Kernel):
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))


def record(kernel: Any, decision: Decision, started: float, error: BaseException | None = None) -> None:
    """Records the outcome of an executed action (latency since ``started``,
    a ``time.perf_counter()`` value)."""
    kernel.record_outcome(
        decision.decision_id,
        error=None if error is None else f"{type(error).__name__}: {error}",
        latency_s=max(time.perf_counter() - started, 0.0),
    )


def check_result(kernel: Any, pre: dict[str, Any], result: Any) -> Any:
    """Decides at ``post_tool_call`` on ``{"result": <result>}`` (its JSON form).

    Returns ``result`` unchanged unless a ``transform`` rewrote it, in which
    case the rewritten JSON form is returned (obligation paths are
    ``args.result``, ``args.result.<key>``...). Raises
    :class:`GovernanceDenied` if the result may not be released (a post-call
    escalation is not waited for: the result is withheld).
    """
    action = dict(pre)
    action["point"] = "post_tool_call"
    action["args"] = {"result": result}
    decision, action = _decide(kernel.decide, action)
    if not decision.proceeds:
        raise GovernanceDenied(decision)
    if decision.verdict != "transform":
        return result
    return decision.apply(action).get("args", {}).get("result")
