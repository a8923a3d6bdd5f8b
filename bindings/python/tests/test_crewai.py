"""CrewAI: warden.crewai.WardenHooks on CrewAI's before/after tool-call hooks,
driven by a scripted BaseLLM subclass (no network, no real LLM)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

pytest.importorskip("crewai")

from crewai import Agent, Crew, Task  # noqa: E402
from crewai.hooks import get_after_tool_call_hooks, get_before_tool_call_hooks  # noqa: E402
from crewai.llms.base_llm import BaseLLM  # noqa: E402
from crewai.tools import tool  # noqa: E402

import warden  # noqa: E402
from conftest import approve_when_pending, decisions, outcomes  # noqa: E402
from warden.crewai import WardenHooks  # noqa: E402


class ScriptedLLM(BaseLLM):
    """Returns scripted native tool calls (OpenAI shape), then a final answer."""

    turns: list[Any] = []
    seen: list[Any] = []

    def call(self, messages: Any, tools: Any = None, callbacks: Any = None, available_functions: Any = None, from_task: Any = None, from_agent: Any = None, response_model: Any = None) -> Any:
        self.seen.append(json.loads(json.dumps(messages, default=str)))
        return self.turns.pop(0)

    def supports_function_calling(self) -> bool:
        return True

    def supports_stop_words(self) -> bool:
        return False

    def get_context_window_size(self) -> int:
        return 128_000


def call(name: str, args: dict[str, Any], call_id: str) -> list[dict[str, Any]]:
    return [{"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]


def make_tools(ran: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    @tool("get_weather")
    def get_weather(city: str) -> str:
        """Weather for a city."""
        ran.append(("get_weather", {"city": city}))
        return f"sunny in {city}"

    @tool("delete_file")
    def delete_file(path: str) -> str:
        """Delete a file."""
        ran.append(("delete_file", {"path": path}))
        return "deleted"

    @tool("issue_refund")
    def issue_refund(order: str, amount: float) -> str:
        """Refund an order."""
        ran.append(("issue_refund", {"order": order, "amount": amount}))
        return f"refunded {order}"

    @tool("call_api")
    def call_api(url: str, api_key: str) -> str:
        """Call an API."""
        ran.append(("call_api", {"url": url, "api_key": api_key}))
        return "200 OK"

    @tool("lookup_user")
    def lookup_user(uid: int) -> dict:
        """Look a user up."""
        ran.append(("lookup_user", {"uid": uid}))
        return {"name": "Ada", "ssn": "123-45-6789"}

    return [get_weather, delete_file, issue_refund, call_api, lookup_user]


def tool_results(messages: list[Any]) -> dict[str, str]:
    return {m["tool_call_id"]: m["content"] for m in messages if isinstance(m, dict) and m.get("role") == "tool"}


def test_four_verdicts_with_tool_hooks(kernel: warden.Kernel) -> None:
    ran: list[tuple[str, dict[str, Any]]] = []
    llm = ScriptedLLM(model="scripted")
    llm.turns = [
        call("get_weather", {"city": "Oslo"}, "c1"),
        call("delete_file", {"path": "/data/x"}, "c2"),
        call("issue_refund", {"order": "o-7", "amount": 40.0}, "c3"),
        call("call_api", {"url": "https://api.example", "api_key": "sk-live-1"}, "c4"),
        call("lookup_user", {"uid": 1}, "c5"),
        "all done",
    ]
    llm.seen = []
    agent = Agent(role="crew-bot", goal="help", backstory="a test agent", llm=llm, tools=make_tools(ran), verbose=False, max_iter=10)
    task = Task(description="do the five things", expected_output="a summary", agent=agent)
    crew = Crew(agents=[agent], tasks=[task], verbose=False)
    approver = approve_when_pending(kernel, "issue_refund")
    with WardenHooks(kernel) as hooks:
        assert hooks.before_tool_call in get_before_tool_call_hooks()
        result = crew.kickoff()
    approver.join(5)
    assert hooks.before_tool_call not in get_before_tool_call_hooks()
    assert hooks.after_tool_call not in get_after_tool_call_hooks()

    assert "all done" in str(result)
    assert ran == [
        ("get_weather", {"city": "Oslo"}),
        ("issue_refund", {"order": "o-7", "amount": 40.0}),
        ("call_api", {"url": "https://api.example", "api_key": "[REDACTED]"}),
        ("lookup_user", {"uid": 1}),
    ]
    seen = tool_results(llm.seen[-1])
    assert "sunny in Oslo" in seen["c1"]
    assert "deleting files is not allowed" in seen["c2"] and "blocked by hook" not in seen["c2"]
    assert "refunded o-7" in seen["c3"]
    assert "200 OK" in seen["c4"]
    assert "[REDACTED]" in seen["c5"] and "123-45-6789" not in json.dumps(llm.seen)

    pre = {r["tool"]: r for r in decisions(kernel) if r["point"] == "pre_tool_call"}
    assert {t: r["verdict"] for t, r in pre.items()} == {
        "get_weather": "allow",
        "delete_file": "deny",
        "issue_refund": "escalate",
        "call_api": "transform",
        "lookup_user": "allow",
    }
    assert all(r["agent"] == "crew-bot" and r["session"] == str(crew.id) for r in pre.values())
    approvals = [r for r in kernel.audit_records() if r["type"] == "approval"]
    assert approvals[0]["decision_id"] == pre["issue_refund"]["decision_id"]
    assert approvals[0]["resolution"]["resolution"] == "approved"
    outs = outcomes(kernel)
    assert pre["delete_file"]["decision_id"] not in outs
    for t in ("get_weather", "issue_refund", "call_api", "lookup_user"):
        assert outs[pre[t]["decision_id"]]["status"] == "ok"
    post = {r["tool"]: r["verdict"] for r in decisions(kernel) if r["point"] == "post_tool_call"}
    assert post["lookup_user"] == "transform"
    kernel.audit_verify()


def test_failing_tool_outcome_and_denied_escalation(kernel: warden.Kernel) -> None:
    ran: list[tuple[str, dict[str, Any]]] = []

    @tool("get_weather")
    def broken(city: str) -> str:
        """Weather for a city (broken)."""
        raise RuntimeError("upstream down")

    llm = ScriptedLLM(model="scripted")
    llm.turns = [
        call("get_weather", {"city": "Oslo"}, "c1"),
        call("issue_refund", {"order": "o-1", "amount": 1.0}, "c2"),
        "finished",
    ]
    llm.seen = []
    tools = [broken, make_tools(ran)[2]]
    agent = Agent(role="crew-bot", goal="g", backstory="b", llm=llm, tools=tools, verbose=False, max_iter=5)
    crew = Crew(agents=[agent], tasks=[Task(description="d", expected_output="e", agent=agent)], verbose=False)
    approver = approve_when_pending(kernel, "issue_refund", approve=False)
    with WardenHooks(kernel, agent="explicit", session="s-crew"):
        crew.kickoff()
    approver.join(5)
    assert ran == []
    seen = tool_results(llm.seen[-1])
    assert "approval:denied" in seen["c2"]
    pre = {r["tool"]: r for r in decisions(kernel) if r["point"] == "pre_tool_call"}
    assert pre["get_weather"]["agent"] == "explicit" and pre["get_weather"]["session"] == "s-crew"
    out = outcomes(kernel)[pre["get_weather"]["decision_id"]]
    assert out["status"] == "error" and "upstream down" in out["error"]
