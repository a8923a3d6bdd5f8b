"""OpenAI Agents SDK adapter (``pip install warden[openai-agents]``).

:func:`govern_tool` returns a governed copy of a ``FunctionTool`` (made with
``@function_tool``) that uses the SDK's own tool guardrails:

* a **tool input guardrail** decides ``pre_tool_call`` (waiting for an
  approver on ``escalate``, in a worker thread): a denied call is answered
  with ``reject_content`` — the tool never executes and the model sees the
  denial reasons as the tool's output;
* the tool's invoker applies ``transform`` obligations to the arguments and
  records the outcome (success/error, latency);
* a **tool output guardrail** decides ``post_tool_call`` on the result: a deny
  replaces the output with the reasons, a redaction replaces it with the
  redacted JSON (both through ``reject_content``).

:func:`govern_agent` governs every ``FunctionTool`` of an ``Agent``.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import threading
import time
from typing import Any

try:
    from agents import Agent, FunctionTool, ToolGuardrailFunctionOutput, ToolInputGuardrail, ToolOutputGuardrail
except ImportError as e:  # pragma: no cover - depends on the installed extras
    raise ImportError(f"warden.openai_agents needs the framework: pip install 'warden[openai-agents]' ({e})") from e

from warden._core import _decide, build_action, denial_text, off_loop, record
from warden._warden import WardenError

__all__ = ["govern_tool", "govern_agent"]


def _session(ctx: Any) -> str | None:
    run_config = getattr(ctx, "run_config", None)
    for attr in ("group_id", "trace_id"):
        value = getattr(run_config, attr, None)
        if value:
            return str(value)
    return None


class _Governor:
    def __init__(self, kernel: Any, tool: FunctionTool, agent: str | None, session: str | None, context: dict[str, Any] | None, wait_timeout: float | None, check_results: bool) -> None:
        self.kernel = kernel
        self.tool = tool
        self.agent = agent
        self.session = session
        self.context = context
        self.wait_timeout = wait_timeout
        self.check_results = check_results
        # Decisions between the input guardrail and the invocation, by tool call id.
        self.pending: dict[str, tuple[Any, dict[str, Any]]] = {}
        self.lock = threading.Lock()

    def action(self, point: str, ctx: Any, agent: Any, args: Any) -> dict[str, Any]:
        return build_action(
            point=point,
            agent=self.agent or getattr(agent, "name", None) or "default",
            tool=self.tool.name,
            args=args,
            session=self.session or _session(ctx),
            context=self.context,
        )

    async def input_guardrail(self, data: Any) -> ToolGuardrailFunctionOutput:
        ctx = data.context
        try:
            raw = json.loads(ctx.tool_arguments or "{}")
        except ValueError as e:
            return ToolGuardrailFunctionOutput.reject_content(f"Denied by Warden: tool arguments are not JSON ({e})")
        if not isinstance(raw, dict):
            return ToolGuardrailFunctionOutput.reject_content("Denied by Warden: tool arguments are not a JSON object")
        pre = self.action("pre_tool_call", ctx, data.agent, raw)
        loop = asyncio.get_running_loop()
        decision = await loop.run_in_executor(None, functools.partial(self.kernel.decide_and_wait, pre, self.wait_timeout))
        if not decision.proceeds:
            return ToolGuardrailFunctionOutput.reject_content(denial_text(decision), output_info=decision.to_dict())
        allowed = decision.apply(pre) if decision.verdict == "transform" else pre
        with self.lock:
            self.pending[ctx.tool_call_id] = (decision, allowed)
        return ToolGuardrailFunctionOutput.allow(output_info=decision.to_dict())

    async def output_guardrail(self, data: Any) -> ToolGuardrailFunctionOutput:
        if not self.check_results:
            return ToolGuardrailFunctionOutput.allow()
        post = self.action("post_tool_call", data.context, data.agent, {"result": data.output})
        try:
            decision, post = await off_loop(self.kernel, _decide, self.kernel.decide, post)
        except WardenError as e:
            return ToolGuardrailFunctionOutput.reject_content(f"Denied by Warden: the result check failed ({e})")
        if not decision.proceeds:
            return ToolGuardrailFunctionOutput.reject_content(denial_text(decision), output_info=decision.to_dict())
        if decision.verdict == "transform":
            result = decision.apply(post).get("args", {}).get("result")
            text = result if isinstance(result, str) else json.dumps(result)
            return ToolGuardrailFunctionOutput.reject_content(text, output_info=decision.to_dict())
        return ToolGuardrailFunctionOutput.allow(output_info=decision.to_dict())

    async def invoke(self, original: Any, ctx: Any, args_json: str) -> Any:
        with self.lock:
            entry = self.pending.pop(getattr(ctx, "tool_call_id", ""), None)
        if entry is None:
            # The input guardrail did not let this call through (or was removed): fail closed.
            return "Denied by Warden: no decision was made for this tool call"
        decision, allowed = entry
        if decision.verdict == "transform":
            args_json = json.dumps(allowed.get("args", {}))
        started = time.perf_counter()
        try:
            result = await original(ctx, args_json)
        except BaseException as e:
            await off_loop(self.kernel, record, self.kernel, decision, started, e)
            raise
        await off_loop(self.kernel, record, self.kernel, decision, started)
        return result


def govern_tool(
    tool: FunctionTool,
    kernel: Any,
    *,
    agent: str | None = None,
    session: str | None = None,
    context: dict[str, Any] | None = None,
    wait_timeout: float | None = None,
    check_results: bool = True,
) -> FunctionTool:
    """A governed copy of ``tool`` (the original is unchanged).

    ``agent`` defaults to the running ``Agent``'s name and ``session`` to the
    run's ``RunConfig.group_id`` (else its ``trace_id``).
    """
    g = _Governor(kernel, tool, agent, session, context, wait_timeout, check_results)
    governed = copy.copy(tool)
    original = tool.on_invoke_tool

    async def on_invoke_tool(ctx: Any, args_json: str) -> Any:
        return await g.invoke(original, ctx, args_json)

    governed.on_invoke_tool = on_invoke_tool
    governed.tool_input_guardrails = [
        *(tool.tool_input_guardrails or []),
        ToolInputGuardrail(guardrail_function=g.input_guardrail, name="warden_pre_tool_call"),
    ]
    governed.tool_output_guardrails = [
        *(tool.tool_output_guardrails or []),
        ToolOutputGuardrail(guardrail_function=g.output_guardrail, name="warden_post_tool_call"),
    ]
    return governed


def govern_agent(agent: Agent[Any], kernel: Any, **options: Any) -> Agent[Any]:
    """A copy of ``agent`` whose ``FunctionTool`` s are governed by :func:`govern_tool`
    (other tool kinds are left out: Warden cannot see their calls — pass them
    through explicitly if you accept that)."""
    tools = [govern_tool(t, kernel, **options) for t in agent.tools if isinstance(t, FunctionTool)]
    return agent.clone(tools=tools)

