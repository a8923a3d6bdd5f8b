"""LangChain 1.x create_agent + WardenMiddleware, LangGraph ToolNode and the
BaseTool wrapper, driven by a scripted fake chat model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain")

from langchain.agents import create_agent  # noqa: E402
from langchain_core.messages import AIMessage, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langgraph.graph import END, START, MessagesState, StateGraph  # noqa: E402
from langgraph.prebuilt import ToolNode  # noqa: E402

import warden  # noqa: E402
from conftest import approve_when_pending, decisions, outcomes  # noqa: E402
from scripted import script, tool_call  # noqa: E402
from warden.langchain import WardenMiddleware, govern_tool, tool_call_wrapper  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def make_tools(ran: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    @tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        ran.append(("get_weather", {"city": city}))
        return f"sunny in {city}"

    @tool
    def delete_file(path: str) -> str:
        """Delete a file."""
        ran.append(("delete_file", {"path": path}))
        return "deleted"

    @tool
    def issue_refund(order: str, amount: float) -> str:
        """Refund an order."""
        ran.append(("issue_refund", {"order": order, "amount": amount}))
        return f"refunded {order}"

    @tool
    def call_api(url: str, api_key: str) -> str:
        """Call an API."""
        ran.append(("call_api", {"url": url, "api_key": api_key}))
        return "200 OK"

    return [get_weather, delete_file, issue_refund, call_api]


def by_id(messages: list[Any]) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_four_verdicts_through_create_agent(kernel: warden.Kernel, mode: str) -> None:
    ran: list[tuple[str, dict[str, Any]]] = []
    model = script(
        tool_call("get_weather", {"city": "Oslo"}, "c1"),
        tool_call("delete_file", {"path": "/data/x"}, "c2"),
        tool_call("issue_refund", {"order": "o-7", "amount": 40.0}, "c3"),
        tool_call("call_api", {"url": "https://api.example", "api_key": "sk-live-1"}, "c4"),
        "all done",
    )
    agent = create_agent(model, tools=make_tools(ran), middleware=[WardenMiddleware(kernel, agent="lc-bot")], name="lc-bot")
    approver = approve_when_pending(kernel, "issue_refund")
    config = {"configurable": {"thread_id": "thread-9"}}
    if mode == "sync":
        result = agent.invoke({"messages": [("user", "go")]}, config)
    else:
        result = await agent.ainvoke({"messages": [("user", "go")]}, config)
    approver.join(5)

    # Which tools ran, with which arguments.
    assert ran == [
        ("get_weather", {"city": "Oslo"}),
        ("issue_refund", {"order": "o-7", "amount": 40.0}),
        ("call_api", {"url": "https://api.example", "api_key": "[REDACTED]"}),
    ]
    msgs = by_id(result["messages"])
    assert msgs["c1"].content == "sunny in Oslo"
    assert msgs["c2"].status == "error" and "deleting files is not allowed" in msgs["c2"].content
    assert msgs["c3"].content == "refunded o-7"
    assert msgs["c4"].content == "200 OK"
    assert result["messages"][-1].content == "all done"

    # What the model saw on its last turn: the denial reason in place of the tool output.
    last_seen = by_id(model.seen[-1])
    assert "deleting files is not allowed" in last_seen["c2"].content
    assert last_seen["c3"].content == "refunded o-7"
    assert len(model.seen) == 5

    # The audit log has all four, with the verdicts and the session.
    pre = {r["tool"]: r for r in decisions(kernel) if r["point"] == "pre_tool_call"}
    assert {t: r["verdict"] for t, r in pre.items()} == {
        "get_weather": "allow",
        "delete_file": "deny",
        "issue_refund": "escalate",
        "call_api": "transform",
    }
    assert all(r["agent"] == "lc-bot" and r["session"] == "thread-9" for r in pre.values())
    assert pre["call_api"]["action"]["args"]["api_key"] == "sk-live-1"  # the request as the model made it
    approvals = [r for r in kernel.audit_records() if r["type"] == "approval"]
    assert approvals[0]["decision_id"] == pre["issue_refund"]["decision_id"]
    assert approvals[0]["resolution"] == {"resolution": "approved", "by": "finance", "reason": "checked"}
    outs = outcomes(kernel)
    assert pre["delete_file"]["decision_id"] not in outs
    for t in ("get_weather", "issue_refund", "call_api"):
        assert outs[pre[t]["decision_id"]]["status"] == "ok"
    models = [r for r in decisions(kernel) if r["point"] in ("pre_model_call", "post_model_call")]
    assert len(models) == 10 and {r["verdict"] for r in models} == {"allow"}
    kernel.audit_verify()


def test_denied_model_call_stops_the_agent(kernel: warden.Kernel) -> None:
    ran: list[tuple[str, dict[str, Any]]] = []
    model = script(tool_call("get_weather", {"city": "Oslo"}, "c1"), "never")
    agent = create_agent(model, tools=make_tools(ran), middleware=[WardenMiddleware(kernel, agent="exfil-bot")])
    result = agent.invoke({"messages": [("user", "go")]})
    assert model.seen == [] and ran == []
    last = result["messages"][-1]
    assert isinstance(last, AIMessage) and "this agent may not call models" in last.content
    assert not last.tool_calls


def test_tool_results_are_redacted_for_the_model(kernel: warden.Kernel) -> None:
    @tool
    def lookup_user(uid: int) -> dict[str, Any]:
        """Look a user up."""
        return {"name": "Ada", "ssn": "123-45-6789"}

    model = script(tool_call("lookup_user", {"uid": 1}, "c1"), "ok")
    agent = create_agent(model, tools=[lookup_user], middleware=[WardenMiddleware(kernel)])
    agent.invoke({"messages": [("user", "go")]})
    seen = by_id(model.seen[-1])["c1"].content
    assert "123-45-6789" not in seen and "[REDACTED]" in seen and "Ada" in seen


def test_toolnode_wrapper(kernel: warden.Kernel) -> None:
    ran: list[tuple[str, dict[str, Any]]] = []
    node = ToolNode(make_tools(ran), wrap_tool_call=tool_call_wrapper(kernel, agent="graph", session="s-2"))
    state = {"messages": [AIMessage(content="", tool_calls=[
        {"name": "delete_file", "args": {"path": "/x"}, "id": "d1", "type": "tool_call"},
        {"name": "call_api", "args": {"url": "u", "api_key": "k"}, "id": "d2", "type": "tool_call"},
    ])]}
    graph = StateGraph(MessagesState)
    graph.add_node("tools", node)
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    out = by_id(graph.compile().invoke(state)["messages"])
    assert "deleting files is not allowed" in out["d1"].content and out["d1"].status == "error"
    assert out["d2"].content == "200 OK"
    assert ran == [("call_api", {"url": "u", "api_key": "[REDACTED]"})]
    sessions = {r["session"] for r in decisions(kernel)}
    assert sessions == {"s-2"}


def test_plain_basetool_wrapper(kernel: warden.Kernel) -> None:
    ran: list[tuple[str, dict[str, Any]]] = []
    tools = {t.name: govern_tool(t, kernel, agent="plain") for t in make_tools(ran)}
    assert tools["delete_file"].name == "delete_file"
    assert tools["delete_file"].args == make_tools([])[1].args
    assert "deleting files is not allowed" in tools["delete_file"].invoke({"path": "/x"})
    assert tools["get_weather"].invoke({"city": "Rome"}) == "sunny in Rome"
    assert tools["call_api"].invoke({"url": "u", "api_key": "k"}) == "200 OK"
    assert ran == [("get_weather", {"city": "Rome"}), ("call_api", {"url": "u", "api_key": "[REDACTED]"})]


def test_readme_example(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("readme_langchain", REPO / "bindings/python/examples/readme_langchain.py")
    assert spec and spec.loader
    example = importlib.util.module_from_spec(spec)
    sys.modules["readme_langchain"] = example
    spec.loader.exec_module(example)
    model = script(tool_call("delete_file", {"path": "/etc/passwd"}, "c1"), "I could not delete it.")
    result = example.run(model, policy=str(REPO / "policies/default"))
    denial = by_id(result["messages"])["c1"]
    assert denial.status == "error" and "writes to system paths" in denial.content
    assert result["messages"][-1].content == "I could not delete it."


def test_readme_shows_the_tested_example() -> None:
    # The README's Python example is this file, verbatim: what users copy is what CI runs.
    example = (REPO / "bindings/python/examples/readme_langchain.py").read_text()
    assert example.strip() in (REPO / "README.md").read_text()
