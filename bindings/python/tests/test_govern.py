"""warden.govern on sync and async callables."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

import warden
from conftest import POLICY, approve_when_pending, decisions, outcomes


def test_allowed_call_runs_and_is_recorded(kernel: warden.Kernel) -> None:
    ran: list[Any] = []

    @warden.govern(kernel=kernel, agent="bot", session="s-1")
    def get_weather(city: str, unit: str = "C") -> str:
        ran.append((city, unit))
        return f"sunny in {city}"

    assert get_weather("Oslo") == "sunny in Oslo"
    assert ran == [("Oslo", "C")]
    assert get_weather.__name__ == "get_weather"
    recs = decisions(kernel)
    pre = recs[-2]
    assert pre["point"] == "pre_tool_call" and pre["tool"] == "get_weather"
    assert pre["agent"] == "bot" and pre["session"] == "s-1"
    assert pre["action"]["args"] == {"city": "Oslo", "unit": "C"}  # defaults applied
    assert recs[-1]["point"] == "post_tool_call" and recs[-1]["action"]["args"] == {"result": "sunny in Oslo"}
    out = outcomes(kernel)[pre["decision_id"]]
    assert out["status"] == "ok"


def test_denied_call_does_not_run(kernel: warden.Kernel) -> None:
    ran = []

    def delete_file(path: str) -> None:
        ran.append(path)

    governed = warden.govern(delete_file, kernel=kernel)
    with pytest.raises(warden.GovernanceDenied) as e:
        governed("/etc/passwd")
    assert ran == []
    assert e.value.reasons == ["deleting files is not allowed"]
    assert e.value.decision.verdict == "deny" and e.value.decision.rule_ids == ["no-delete"]
    assert "deleting files is not allowed" in str(e.value)
    assert isinstance(e.value, warden.WardenError)
    assert outcomes(kernel) == {}


def test_escalation_waits_for_an_approver(kernel: warden.Kernel) -> None:
    ran = []

    @warden.govern(kernel=kernel)
    def issue_refund(order: str, amount: float) -> str:
        ran.append(order)
        return "refunded"

    t = approve_when_pending(kernel, "issue_refund")
    assert issue_refund("o-1", 12.5) == "refunded"
    t.join(5)
    assert ran == ["o-1"]
    t = approve_when_pending(kernel, "issue_refund", approve=False)
    with pytest.raises(warden.GovernanceDenied) as e:
        issue_refund("o-2", 99)
    t.join(5)
    assert e.value.reasons[0] == "approval:denied" and ran == ["o-1"]
    quick = warden.govern(issue_refund.__wrapped__, kernel=kernel, wait_timeout=0.05)
    with pytest.raises(warden.GovernanceDenied, match="approval:timeout"):
        quick("o-3", 1)


def test_transform_rewrites_only_what_it_changed(kernel: warden.Kernel) -> None:
    seen = {}

    class Client:
        def __repr__(self) -> str:
            return "<client>"

    client = Client()

    @warden.govern(kernel=kernel)
    def call_api(url: str, api_key: str, client: Any = client, **headers: str) -> str:
        seen.update(url=url, api_key=api_key, client=client, headers=headers)
        return "ok"

    assert call_api("https://x", "sk-live-123", trace="t1") == "ok"
    assert seen["api_key"] == "[REDACTED]"
    assert seen["url"] == "https://x" and seen["headers"] == {"trace": "t1"}
    assert seen["client"] is client  # untouched non-JSON argument keeps its identity
    pre = [r for r in decisions(kernel) if r["tool"] == "call_api"][0]
    assert pre["verdict"] == "transform" and pre["action"]["args"]["client"] == "<client>"
    assert pre["action"]["args"]["trace"] == "t1"  # **kwargs flattened


def test_transform_adding_an_unknown_argument_fails_closed(kernel: warden.Kernel) -> None:
    ran = []

    @warden.govern(kernel=kernel)
    def tagged(x: int) -> int:
        ran.append(x)
        return x

    with pytest.raises(warden.GovernanceDenied, match="args.origin"):
        tagged(1)
    assert ran == []

    @warden.govern(kernel=kernel, tool="tagged")
    def tagged_kw(x: int, **extra: Any) -> Any:
        return extra

    assert tagged_kw(1) == {"origin": "warden"}


def test_results_are_checked_after_the_call(kernel: warden.Kernel) -> None:
    @warden.govern(kernel=kernel)
    def lookup_user(uid: int) -> dict[str, Any]:
        return {"name": "Ada", "ssn": "123-45-6789"}

    assert lookup_user(1) == {"name": "Ada", "ssn": "[REDACTED]"}

    calls = []

    @warden.govern(kernel=kernel)
    def read_secret(name: str) -> str:
        calls.append(name)
        return "hunter2"

    with pytest.raises(warden.GovernanceDenied, match="secret material"):
        read_secret("db")
    assert calls == ["db"]  # it ran (pre allowed) but its result is withheld

    @warden.govern(kernel=kernel, check_results=False)
    def lookup_user_raw(uid: int) -> dict[str, Any]:
        return {"ssn": "1"}

    assert lookup_user_raw(1) == {"ssn": "1"}


def test_exceptions_are_recorded_and_propagate(kernel: warden.Kernel) -> None:
    @warden.govern(kernel=kernel)
    def flaky() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        flaky()
    out = list(outcomes(kernel).values())
    assert len(out) == 1 and out[0]["status"] == "error" and out[0]["error"] == "KeyError: 'missing'"


@dataclasses.dataclass
class Point:
    x: int
    y: float


def test_non_json_arguments_never_crash(kernel: warden.Kernel) -> None:
    class Weird:
        def __str__(self) -> str:
            raise RuntimeError("no str")

    @warden.govern(kernel=kernel, check_results=False)
    def anything(*items: Any, **kw: Any) -> int:
        return len(items) + len(kw)

    loop: dict[str, Any] = {}
    loop["loop"] = loop
    n = anything(
        {1, 2}, b"\xff\xfe", 2**70, math.nan, Point(1, 2.0), Weird(), {3: "int key"}, loop, frozenset(),
        obj=object(), when=math.inf,
    )
    assert n == 11
    args = [r for r in decisions(kernel) if r["tool"] == "anything"][0]["action"]["args"]
    items = args["items"]
    assert items[0] == [1, 2] and items[1] == "\ufffd\ufffd" and items[2] == str(2**70)
    assert items[3] == "nan" and items[4] == {"x": 1, "y": 2.0}
    assert items[5].startswith("<") and items[6] == {"3": "int key"}
    assert args["when"] == "inf" and args["obj"].startswith("<object object")
    assert warden.to_jsonable(loop) is not None  # depth-limited, no recursion error


def test_methods_leave_self_out(kernel: warden.Kernel) -> None:
    class Svc:
        @warden.govern(kernel=kernel, tool="get_weather")
        def fetch(self, city: str) -> str:
            return city

    assert Svc().fetch("Rome") == "Rome"
    rec = [r for r in decisions(kernel) if r["point"] == "pre_tool_call"][-1]
    assert rec["action"]["args"] == {"city": "Rome"}


def test_govern_needs_a_kernel_or_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        warden.govern(lambda: None)
    f = warden.govern(lambda path: path, policy=POLICY, tool="delete_file")
    with pytest.raises(warden.GovernanceDenied):
        f("/")


def test_killed_agent_is_denied(kernel: warden.Kernel) -> None:
    @warden.govern(kernel=kernel, agent="rogue")
    def get_weather(city: str) -> str:
        return city

    kernel.kill(agent="rogue", reason="incident")
    with pytest.raises(warden.GovernanceDenied, match="killed:agent"):
        get_weather("x")


async def test_async_functions_are_governed(kernel: warden.Kernel) -> None:
    ran = []

    @warden.govern(kernel=kernel)
    async def delete_file(path: str) -> None:
        ran.append(path)

    @warden.govern(kernel=kernel)
    async def lookup_user(uid: int) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"ssn": "x", "id": uid}

    with pytest.raises(warden.GovernanceDenied):
        await delete_file("/")
    assert ran == []
    assert await lookup_user(7) == {"ssn": "[REDACTED]", "id": 7}


async def test_async_escalation_does_not_block_the_event_loop(kernel: warden.Kernel) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    @warden.govern(kernel=kernel)
    async def issue_refund(order: str) -> str:
        return order

    async def approver() -> None:
        # Resolve from the event loop itself: only possible if it is not blocked.
        while True:
            pending = kernel.pending_approvals()
            if pending and ticks > 20:
                kernel.resolve_approval(pending[0]["id"], True, "finance")
                return
            await asyncio.sleep(0.002)

    tick = asyncio.create_task(ticker())
    result, _ = await asyncio.wait_for(asyncio.gather(issue_refund("o-9"), approver()), 20)
    tick.cancel()
    assert result == "o-9" and ticks > 20


def test_binding_errors_raise_before_any_decision(kernel: warden.Kernel) -> None:
    @warden.govern(kernel=kernel)
    def get_weather(city: str, unit: str = "C") -> str:
        return city

    with pytest.raises(TypeError):
        get_weather()
    with pytest.raises(TypeError):
        get_weather("a", "b", "c")
    with pytest.raises(TypeError):
        get_weather("a", city="b")
    with pytest.raises(TypeError):
        get_weather("a", nope=1)
    assert decisions(kernel) == []
    assert get_weather(unit="F", city="Lima") == "Lima"
    assert decisions(kernel)[0]["action"]["args"] == {"city": "Lima", "unit": "F"}


def test_keyword_only_and_varargs_signatures(kernel: warden.Kernel) -> None:
    seen = {}

    @warden.govern(kernel=kernel, tool="call_api")
    def call(*urls: str, api_key: str, **rest: Any) -> None:
        seen.update(urls=urls, api_key=api_key, rest=rest)

    call("u1", "u2", api_key="sk", retries=3)
    assert seen == {"urls": ("u1", "u2"), "api_key": "[REDACTED]", "rest": {"retries": 3}}
    rec = decisions(kernel)[0]["action"]["args"]
    assert rec == {"urls": ["u1", "u2"], "api_key": "sk", "retries": 3}
