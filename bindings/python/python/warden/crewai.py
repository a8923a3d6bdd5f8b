"""CrewAI adapter (``pip install warden[crewai]``), on CrewAI's tool-call hooks.

``WardenHooks(kernel).register()`` (or ``with WardenHooks(kernel):``) adds a
global ``before_tool_call`` and ``after_tool_call`` hook (``crewai.hooks``):

* before: decides ``pre_tool_call`` (waiting for an approver on
  ``escalate``); a denied call is blocked — the tool does not run — and
  ``transform`` obligations rewrite ``tool_input`` in place;
* after: replaces CrewAI's generic "blocked by hook" text with the policy's
  reasons (what the model sees), records the outcome of executed calls
  (error when CrewAI reports ``Error executing tool: ...``) and decides
  ``post_tool_call`` on the result (deny → reasons, transform → redacted JSON).

Both CrewAI tool paths (native function calling and ReAct) hand the same
``tool_input`` dict to the before and after hooks; the adapter pairs them by it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

try:
    from crewai.hooks import register_after_tool_call_hook, register_before_tool_call_hook
    from crewai.hooks import unregister_after_tool_call_hook, unregister_before_tool_call_hook
except ImportError as e:  # pragma: no cover - depends on the installed extras
    raise ImportError(f"warden.crewai needs the framework: pip install 'warden[crewai]' ({e})") from e

from warden._core import GovernanceDenied, build_action, check, check_result, record

__all__ = ["WardenHooks"]

_ERROR_PREFIX = "Error executing tool:"


def _session(ctx: Any) -> str | None:
    for owner in (getattr(ctx, "crew", None), getattr(ctx, "task", None)):
        value = getattr(owner, "id", None)
        if value:
            return str(value)
    return None


class WardenHooks:
    """CrewAI before/after tool-call hooks that enforce Warden decisions.

    Args:
        kernel: a :class:`warden.Kernel` (or ``RemoteKernel``).
        agent: the Action's ``agent``; default the CrewAI agent's ``role``.
        session: the Action's ``session``; default the crew's id (else the task's).
        context: extra Action ``context`` for every call.
        wait_timeout: longest wait for an approver on ``escalate`` (seconds).
        check_results: decide ``post_tool_call`` on each result.
    """

    def __init__(self, kernel: Any, *, agent: str | None = None, session: str | None = None, context: dict[str, Any] | None = None, wait_timeout: float | None = None, check_results: bool = True) -> None:
        self.kernel = kernel
        self.agent = agent
        self.session = session
        self.context = context
        self.wait_timeout = wait_timeout
        self.check_results = check_results
        # In-flight calls, by the identity of their tool_input dict.
        self._calls: dict[int, tuple[Any, Any, Any, float]] = {}
        self._lock = threading.Lock()

    def _action(self, ctx: Any) -> dict[str, Any]:
        return build_action(
            point="pre_tool_call",
            agent=self.agent or getattr(getattr(ctx, "agent", None), "role", None) or "default",
            tool=ctx.tool_name,
            args=ctx.tool_input,
            session=self.session or _session(ctx),
            context=self.context,
        )

    def before_tool_call(self, ctx: Any) -> bool | None:
        """The ``before_tool_call`` hook: ``False`` blocks the call."""
        pre = self._action(ctx)
        key = id(ctx.tool_input)
        try:
            decision, allowed = check(self.kernel, pre, self.wait_timeout)
        except GovernanceDenied as err:
            with self._lock:
                self._calls[key] = (err, None, None, 0.0)
            return False
        except Exception as err:  # noqa: BLE001 - fail closed on anything unexpected
            with self._lock:
                self._calls[key] = (_DecisionFailed(err), None, None, 0.0)
            return False
        if allowed is not pre:
            new_args = allowed.get("args", {})
            # CrewAI requires in-place changes.
            ctx.tool_input.clear()
            ctx.tool_input.update(new_args)
        with self._lock:
            self._calls[key] = (None, decision, allowed, time.perf_counter())
        return None

    def after_tool_call(self, ctx: Any) -> str | None:
        """The ``after_tool_call`` hook: returns the text the model sees."""
        with self._lock:
            entry = self._calls.pop(id(ctx.tool_input), None)
        if entry is None:
            return None
        denied, decision, allowed, started = entry
        if denied is not None:
            return str(denied)
        result = ctx.tool_result
        failed = isinstance(result, str) and result.startswith(_ERROR_PREFIX)
        record(self.kernel, decision, started, RuntimeError(result) if failed else None)
        if not self.check_results or failed:
            return None
        raw = ctx.raw_tool_result if ctx.raw_tool_result is not None else result
        try:
            checked = check_result(self.kernel, allowed, raw)
        except GovernanceDenied as err:
            return str(err)
        if checked is raw:
            return None
        return checked if isinstance(checked, str) else json.dumps(checked)

    def register(self) -> WardenHooks:
        """Registers both hooks globally (every crew and agent in the process)."""
        register_before_tool_call_hook(self.before_tool_call)
        register_after_tool_call_hook(self.after_tool_call)
        return self

    def unregister(self) -> None:
        """Removes both hooks."""
        unregister_before_tool_call_hook(self.before_tool_call)
        unregister_after_tool_call_hook(self.after_tool_call)

    def __enter__(self) -> WardenHooks:
        return self.register()

    def __exit__(self, *exc: Any) -> None:
        self.unregister()


class _DecisionFailed(Exception):
    """An internal failure while deciding, reported like a denial (fail closed)."""

    def __init__(self, err: BaseException) -> None:
        super().__init__(f"Denied by Warden: the decision failed ({type(err).__name__}: {err})")
