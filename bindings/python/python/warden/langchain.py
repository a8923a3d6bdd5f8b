"""LangChain 1.x / LangGraph adapter (``pip install warden[langchain]``).

* :class:`WardenMiddleware` for ``langchain.agents.create_agent(...,
  middleware=[WardenMiddleware(kernel, agent="...")])``: governs every tool
  call (``wrap_tool_call``) and every model call (``wrap_model_call``).
* :func:`tool_call_wrapper` / :func:`atool_call_wrapper` for LangGraph's
  ``ToolNode(tools, wrap_tool_call=..., awrap_tool_call=...)``.
* :func:`govern_tool` wraps a plain ``BaseTool``.

A denied tool call does not run: the model receives a ``ToolMessage``
(``status="error"``) carrying the policy's reasons. A denied model call
returns an ``AIMessage`` with the reasons and no tool calls (the agent stops).
"""

from __future__ import annotations

import json
import time
from typing import Any

try:
    from langchain.agents.middleware import AgentMiddleware
    from langchain_core.messages import AIMessage, ToolMessage
    from langchain_core.tools import BaseTool, StructuredTool
except ImportError as e:  # pragma: no cover - depends on the installed extras
    raise ImportError(f"warden.langchain needs the framework: pip install 'warden[langchain]' ({e})") from e

from warden._core import (
    GovernanceDenied,
    acheck,
    build_action,
    check,
    check_result,
    denial_text,
    off_loop,
    record,
    to_jsonable,
)

__all__ = ["WardenMiddleware", "tool_call_wrapper", "atool_call_wrapper", "govern_tool"]


def _session_from_runtime(runtime: Any) -> str | None:
    """The LangGraph thread id (or run id) of the current execution."""
    info = getattr(runtime, "execution_info", None)
    for attr in ("thread_id", "run_id"):
        value = getattr(info, attr, None)
        if value:
            return str(value)
    config = getattr(runtime, "config", None)
    if isinstance(config, dict):
        configurable = config.get("configurable") or {}
        value = configurable.get("thread_id") or config.get("run_id")
        if value:
            return str(value)
    try:
        from langgraph.config import get_config

        config = get_config()
    except Exception:  # noqa: BLE001 - outside a runnable context
        return None
    value = (config.get("configurable") or {}).get("thread_id") or config.get("run_id")
    return str(value) if value else None


class _Gate:
    """The mapping from LangChain requests to Actions, shared by all entry points."""

    def __init__(self, kernel: Any, agent: str, session: str | None, context: dict[str, Any] | None, wait_timeout: float | None, check_results: bool) -> None:
        self.kernel = kernel
        self.agent = agent
        self.session = session
        self.context = context
        self.wait_timeout = wait_timeout
        self.check_results = check_results

    def tool_action(self, request: Any) -> dict[str, Any]:
        call = request.tool_call
        return build_action(
            point="pre_tool_call",
            agent=self.agent,
            tool=call["name"],
            args=call.get("args") or {},
            session=self.session or _session_from_runtime(getattr(request, "runtime", None)),
            context=self.context,
        )

    @staticmethod
    def denied(request: Any, err: GovernanceDenied) -> ToolMessage:
        call = request.tool_call
        return ToolMessage(
            content=str(err),
            tool_call_id=call.get("id") or "",
            name=call["name"],
            status="error",
        )

    @staticmethod
    def rewritten(request: Any, pre: dict[str, Any], allowed: dict[str, Any]) -> Any:
        if allowed is pre:
            return request
        call = dict(request.tool_call)
        call["args"] = allowed.get("args", {})
        return request.override(tool_call=call)

    def finish(self, request: Any, allowed: dict[str, Any], result: Any) -> Any:
        """post_tool_call on a ToolMessage's content."""
        if not self.check_results or not isinstance(result, ToolMessage):
            return result
        # LangChain stringifies structured tool output as JSON: decide on the
        # structure so policies can address `args.result.<key>`.
        value: Any = result.content
        if isinstance(value, str) and value[:1] in ("{", "["):
            try:
                value = json.loads(value)
            except ValueError:
                value = result.content
        try:
            checked = check_result(self.kernel, allowed, value)
        except GovernanceDenied as err:
            return self.denied(request, err)
        if checked is value:
            return result
        content = checked if isinstance(checked, str) else json.dumps(checked, ensure_ascii=False)
        return result.model_copy(update={"content": content})

    def wrap(self, request: Any, handler: Any) -> Any:
        pre = self.tool_action(request)
        try:
            decision, allowed = check(self.kernel, pre, self.wait_timeout)
        except GovernanceDenied as err:
            return self.denied(request, err)
        started = time.perf_counter()
        try:
            result = handler(self.rewritten(request, pre, allowed))
        except BaseException as e:
            record(self.kernel, decision, started, e)
            raise
        record(self.kernel, decision, started)
        return self.finish(request, allowed, result)

    async def awrap(self, request: Any, handler: Any) -> Any:
        pre = self.tool_action(request)
        try:
            decision, allowed = await acheck(self.kernel, pre, self.wait_timeout)
        except GovernanceDenied as err:
            return self.denied(request, err)
        started = time.perf_counter()
        try:
            result = await handler(self.rewritten(request, pre, allowed))
        except BaseException as e:
            await off_loop(self.kernel, record, self.kernel, decision, started, e)
            raise
        await off_loop(self.kernel, record, self.kernel, decision, started)
        return await off_loop(self.kernel, self.finish, request, allowed, result)


def _model_name(model: Any) -> str:
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def _message_json(m: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"role": getattr(m, "type", type(m).__name__), "content": to_jsonable(getattr(m, "content", ""))}
    calls = getattr(m, "tool_calls", None)
    if calls:
        out["tool_calls"] = [{"name": c.get("name"), "args": to_jsonable(c.get("args"))} for c in calls]
    return out


class WardenMiddleware(AgentMiddleware):
    """Governs a ``create_agent`` agent's tool and model calls.

    Args:
        kernel: a :class:`warden.Kernel` (or ``RemoteKernel``).
        agent: the Action's ``agent`` (the acting agent's id).
        session: the Action's ``session``; default: the LangGraph thread id
            (``config["configurable"]["thread_id"]``), else the run id.
        context: extra Action ``context`` for every call.
        wait_timeout: longest wait for an approver on ``escalate`` (seconds;
            default the rule's timeout).
        govern_model: also decide ``pre_model_call`` (args: ``messages``) and
            ``post_model_call`` (args: ``content``, ``tool_calls``) with the
            model name as ``tool``.
        check_results: decide ``post_tool_call`` on each tool result and apply
            its redactions.
    """

    def __init__(
        self,
        kernel: Any,
        *,
        agent: str = "default",
        session: str | None = None,
        context: dict[str, Any] | None = None,
        wait_timeout: float | None = None,
        govern_model: bool = True,
        check_results: bool = True,
    ) -> None:
        super().__init__()
        self._gate = _Gate(kernel, agent, session, context, wait_timeout, check_results)
        self._govern_model = govern_model

    @property
    def name(self) -> str:
        """Middleware name shown by LangChain."""
        return "WardenMiddleware"

    def wrap_tool_call(self, request: Any, handler: Any) -> Any:
        """Decides the tool call; a denied call returns a ToolMessage with the reasons."""
        return self._gate.wrap(request, handler)

    async def awrap_tool_call(self, request: Any, handler: Any) -> Any:
        """Async ``wrap_tool_call`` (approval waits run in a worker thread)."""
        return await self._gate.awrap(request, handler)

    def _model_action(self, point: str, request: Any, args: dict[str, Any]) -> dict[str, Any]:
        g = self._gate
        return build_action(
            point=point,
            agent=g.agent,
            tool=_model_name(request.model),
            args=args,
            session=g.session or _session_from_runtime(getattr(request, "runtime", None)),
            context=g.context,
        )

    def _pre_model(self, request: Any) -> AIMessage | None:
        action = self._model_action("pre_model_call", request, {"messages": [_message_json(m) for m in request.messages]})
        decision = self._gate.kernel.decide(action)
        if decision.proceeds:
            return None
        return AIMessage(content=denial_text(decision))

    def _post_model(self, request: Any, response: Any) -> Any:
        messages = getattr(response, "result", None)
        if messages is None and isinstance(response, AIMessage):
            messages = [response]
        ai = next((m for m in reversed(messages or []) if isinstance(m, AIMessage)), None)
        if ai is None:
            return response
        action = self._model_action("post_model_call", request, {
            "content": to_jsonable(ai.content),
            "tool_calls": [{"name": c.get("name"), "args": to_jsonable(c.get("args"))} for c in ai.tool_calls],
        })
        decision = self._gate.kernel.decide(action)
        if not decision.proceeds:
            return AIMessage(content=denial_text(decision))
        if decision.verdict == "transform":
            new = decision.apply(action).get("args", {})
            content = new.get("content", ai.content)
            if not isinstance(content, (str, list)):
                content = json.dumps(content, ensure_ascii=False)
            replaced = ai.model_copy(update={"content": content})
            if isinstance(response, AIMessage):
                return replaced
            response.result = [replaced if m is ai else m for m in response.result]
        return response

    def wrap_model_call(self, request: Any, handler: Any) -> Any:
        """Decides ``pre_model_call`` before and ``post_model_call`` after the model."""
        if not self._govern_model:
            return handler(request)
        blocked = self._pre_model(request)
        if blocked is not None:
            return blocked
        return self._post_model(request, handler(request))

    async def awrap_model_call(self, request: Any, handler: Any) -> Any:
        """Async ``wrap_model_call``."""
        if not self._govern_model:
            return await handler(request)
        kernel = self._gate.kernel
        blocked = await off_loop(kernel, self._pre_model, request)
        if blocked is not None:
            return blocked
        response = await handler(request)
        return await off_loop(kernel, self._post_model, request, response)


def tool_call_wrapper(kernel: Any, *, agent: str = "default", session: str | None = None, context: dict[str, Any] | None = None, wait_timeout: float | None = None, check_results: bool = True) -> Any:
    """A ``wrap_tool_call`` function for LangGraph's ``ToolNode(tools, wrap_tool_call=...)``,
    with the same behaviour as :class:`WardenMiddleware`'s tool side."""
    return _Gate(kernel, agent, session, context, wait_timeout, check_results).wrap


def atool_call_wrapper(kernel: Any, *, agent: str = "default", session: str | None = None, context: dict[str, Any] | None = None, wait_timeout: float | None = None, check_results: bool = True) -> Any:
    """The async counterpart of :func:`tool_call_wrapper` (``ToolNode(awrap_tool_call=...)``)."""
    return _Gate(kernel, agent, session, context, wait_timeout, check_results).awrap


def govern_tool(tool: BaseTool, kernel: Any, *, agent: str = "default", session: str | None = None, context: dict[str, Any] | None = None, wait_timeout: float | None = None, check_results: bool = True) -> BaseTool:
    """Wraps a plain ``BaseTool``: same name, description and argument schema;
    each call is decided first. A denied call returns the denial text as the
    tool's output (what the model sees) and the wrapped tool does not run."""

    def decide_and_run(**kwargs: Any) -> Any:
        pre = build_action(point="pre_tool_call", agent=agent, tool=tool.name, args=kwargs, session=session, context=context)
        try:
            decision, allowed = check(kernel, pre, wait_timeout)
        except GovernanceDenied as err:
            return str(err)
        args = kwargs if allowed is pre else allowed.get("args", {})
        started = time.perf_counter()
        try:
            result = tool.invoke(args)
        except BaseException as e:
            record(kernel, decision, started, e)
            raise
        record(kernel, decision, started)
        if not check_results:
            return result
        try:
            return check_result(kernel, allowed, result)
        except GovernanceDenied as err:
            return str(err)

    return StructuredTool.from_function(
        func=decide_and_run,
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        return_direct=tool.return_direct,
    )
