"""OpenAI Agents SDK: tool guardrails from warden.openai_agents, driven by a
custom Model that returns scripted tool calls (no network, no real LLM)."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("agents")

from agents import Agent, Model, ModelResponse, RunConfig, Runner, function_tool, set_tracing_disabled  # noqa: E402
from agents.usage import Usage  # noqa: E402
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText  # noqa: E402

import warden  # noqa: E402
from conftest import approve_when_pending, decisions, outcomes  # noqa: E402
from warden.openai_agents import govern_agent, govern_tool  # noqa: E402

set_tracing_disabled(True)


def call(name: str, args: dict[str, Any], call_id: str) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        type="function_call", call_id=call_id, name=name, arguments=json.dumps(args), id=f"fc_{call_id}", status="completed"
    )


def say(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id="msg_1", type="message", role="assistant", status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


class ScriptedModel(Model):
    """Returns one scripted output item per turn and records the model input."""

    def __init__(self, *turns: Any) -> None:
        self.turns = list(turns)
        self.seen: list[Any] = []

    async def get_response(self, system_instructions: Any, input: Any, model_settings: Any, tools: Any, output_schema: Any, handoffs: Any, tracing: Any, **kwargs: Any) -> ModelResponse:
        self.seen.append(input if isinstance(input, str) else [dict(i) if isinstance(i, dict) else i.model_dump() for i in input])
        return ModelResponse(output=[self.turns.pop(0)], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the scenario does not stream")


def make_tools(ran: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        ran.append(("get_weather", {"city": city}))
        return f"sunny in {city}"

    @function_tool
    def delete_file(path: str) -> str:
        """Delete a file."""
        ran.append(("delete_file", {"path": path}))
        return "deleted"

    @function_tool
    def issue_refund(order: str, amount: float) -> str:
        """Refund an order."""
        ran.append(("issue_refund", {"order": order, "amount": amount}))
        return f"refunded {order}"

    @function_tool
    def call_api(url: str, api_key: str) -> str:
        """Call an API."""
        ran.append(("call_api", {"url": url, "api_key": api_key}))
        return "200 OK"

    @function_tool
    def lookup_user(uid: int) -> dict:
        """Look a user up."""
        ran.append(("lookup_user", {"uid": uid}))
        return {"name": "Ada", "ssn": "123-45-6789"}

    return [get_weather, delete_file, issue_refund, call_api, lookup_user]


def outputs(items: list[Any]) -> dict[str, str]:
    return {i["call_id"]: i["output"] for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"}


async def test_four_verdicts_with_tool_guardrails(kernel: warden.Kernel) -> None:
    ran: list[tuple[str, dict[str, Any]]] = []
    model = ScriptedModel(
        call("get_weather", {"city": "Oslo"}, "c1"),
        call("delete_file", {"path": "/data/x"}, "c2"),
        call("issue_refund", {"order": "o-7", "amount": 40.0}, "c3"),
        call("call_api", {"url": "https://api.example", "api_key": "sk-live-1"}, "c4"),
        call("lookup_user", {"uid": 1}, "c5"),
        say("all done"),
    )
    agent = govern_agent(Agent(name="oa-bot", instructions="help", model=model, tools=make_tools(ran)), kernel)
    approver = approve_when_pending(kernel, "issue_refund")
    result = await Runner.run(agent, "go", run_config=RunConfig(group_id="conv-1", tracing_disabled=True))
    approver.join(5)

    assert result.final_output == "all done"
    assert ran == [
        ("get_weather", {"city": "Oslo"}),
        ("issue_refund", {"order": "o-7", "amount": 40.0}),
        ("call_api", {"url": "https://api.example", "api_key": "[REDACTED]"}),
        ("lookup_user", {"uid": 1}),
    ]
    seen = outputs(model.seen[-1])
    assert seen["c1"] == "sunny in Oslo"
    assert "deleting files is not allowed" in seen["c2"]
    assert seen["c3"] == "refunded o-7"
    assert seen["c4"] == "200 OK"
    assert json.loads(seen["c5"]) == {"name": "Ada", "ssn": "[REDACTED]"}
    assert "123-45-6789" not in json.dumps(model.seen)

    pre = {r["tool"]: r for r in decisions(kernel) if r["point"] == "pre_tool_call"}
    assert {t: r["verdict"] for t, r in pre.items()} == {
        "get_weather": "allow",
        "delete_file": "deny",
        "issue_refund": "escalate",
        "call_api": "transform",
        "lookup_user": "allow",
    }
    assert all(r["agent"] == "oa-bot" and r["session"] == "conv-1" for r in pre.values())
    post = {r["tool"]: r["verdict"] for r in decisions(kernel) if r["point"] == "post_tool_call"}
    assert post == {"get_weather": "allow", "issue_refund": "allow", "call_api": "allow", "lookup_user": "transform"}
    approvals = [r for r in kernel.audit_records() if r["type"] == "approval"]
    assert approvals[0]["decision_id"] == pre["issue_refund"]["decision_id"]
    assert approvals[0]["resolution"]["resolution"] == "approved"
    outs = outcomes(kernel)
    assert pre["delete_file"]["decision_id"] not in outs
    for t in ("get_weather", "issue_refund", "call_api", "lookup_user"):
        assert outs[pre[t]["decision_id"]]["status"] == "ok"
    guard = [r.output.behavior["type"] for r in result.tool_input_guardrail_results]
    assert guard.count("reject_content") == 1 and guard.count("allow") == 4
    kernel.audit_verify()


async def test_denied_escalation_and_original_tool_untouched(kernel: warden.Kernel) -> None:
    ran: list[tuple[str, dict[str, Any]]] = []
    tools = make_tools(ran)
    refund = tools[2]
    governed = govern_tool(refund, kernel, agent="other")
    assert refund.tool_input_guardrails in (None, []) and governed.tool_input_guardrails
    model = ScriptedModel(call("issue_refund", {"order": "o-1", "amount": 1.0}, "c1"), say("ok"))
    approver = approve_when_pending(kernel, "issue_refund", approve=False)
    await Runner.run(Agent(name="x", model=model, tools=[governed]), "go")
    approver.join(5)
    assert ran == []
    assert "approval:denied" in outputs(model.seen[-1])["c1"]
    rec = [r for r in decisions(kernel) if r["tool"] == "issue_refund"][0]
    assert rec["agent"] == "other"


async def test_invoker_without_a_decision_fails_closed(kernel: warden.Kernel) -> None:
    ran: list[tuple[str, dict[str, Any]]] = []
    governed = govern_tool(make_tools(ran)[0], kernel)

    class Ctx:
        tool_call_id = "never-decided"

    out = await governed.on_invoke_tool(Ctx(), json.dumps({"city": "x"}))
    assert "no decision" in out and ran == []
