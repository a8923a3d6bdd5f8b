"""The native Kernel/Decision API through its public Python surface."""

from __future__ import annotations

import math
import re
import threading
import time
from pathlib import Path

import pytest

import warden
from conftest import POLICY, approve_when_pending, decisions

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_allow_and_deny_carry_the_wire_fields(kernel: warden.Kernel) -> None:
    ok = kernel.decide({"agent": "a", "tool": "get_weather", "args": {"city": "Zürich"}})
    assert ok.verdict == "allow" and ok.proceeds
    assert ok.rule_ids == [] and UUID7.match(ok.decision_id)
    assert ok.policy_hash == kernel.policy_hash and ok.policy_hash.startswith("sha256:")
    no = kernel.decide({"agent": "a", "tool": "delete_file", "args": {"path": "/etc"}})
    assert no.verdict == "deny" and not no.proceeds
    assert no.reasons == ["deleting files is not allowed"] and no.rule_ids == ["no-delete"]
    assert no.decision_id != ok.decision_id
    assert no.to_dict()["verdict"] == "deny"
    assert '"verdict":"deny"' in no.to_json()
    assert "deny" in repr(no)


def test_conditions_see_the_arguments(kernel: warden.Kernel) -> None:
    assert kernel.decide({"agent": "a", "tool": "transfer", "args": {"amount": 10}}).verdict == "allow"
    assert kernel.decide({"agent": "a", "tool": "transfer", "args": {"amount": 5000}}).verdict == "deny"
    # A missing field is an evaluation error: deny, never allow.
    d = kernel.decide({"agent": "a", "tool": "transfer"})
    assert d.verdict == "deny" and d.reasons[0] == "runtime_error:evaluation_error"


@pytest.mark.parametrize(
    "action, needle",
    [
        ({"agent": "a", "tool": "t", "tools": "x"}, "unknown field `tools`"),
        ({"tool": "t"}, "agent"),
        ({"agent": "", "tool": "t"}, "agent"),
        ({"agent": "a"}, "tool"),
        ({"agent": "a", "tool": "t", "point": "pre_tool"}, "pre_tool"),
        ({"agent": "a", "tool": "t", "args": [1, 2]}, "invalid"),
        ({"agent": "a", "tool": "t", "args": {1: "x"}}, "keys must be strings"),
        ({"agent": "a", "tool": "t", "args": {"x": math.nan}}, "NaN"),
        ({"agent": "a", "tool": "t", "args": {"x": math.inf}}, "NaN"),
        ({"agent": "a", "tool": "t", "args": {"x": 2**64}}, "64 bits"),
        ({"agent": "a", "tool": "t", "args": {"x": -(2**63) - 1}}, "64 bits"),
        ({"agent": "a", "tool": "t", "args": {"x": {1, 2}}}, "`set` is not JSON"),
        ({"agent": "a", "tool": "t", "args": {"x": b"bytes"}}, "`bytes` is not JSON"),
        ({"agent": "a", "tool": "t", "args": {"x": "\ud800"}}, "Unicode"),
        ({"agent": 7, "tool": "t"}, "invalid"),
        ([("agent", "a")], "invalid"),
        ("not a dict", "invalid"),
    ],
)
def test_invalid_actions_raise_never_allow(kernel: warden.Kernel, action: object, needle: str) -> None:
    with pytest.raises(warden.InvalidAction) as e:
        kernel.decide(action)  # type: ignore[arg-type]
    assert needle in str(e.value)
    assert isinstance(e.value, ValueError) and isinstance(e.value, warden.WardenError)


def test_nesting_and_cycles_are_rejected(kernel: warden.Kernel) -> None:
    deep: dict = {}
    cur = deep
    for _ in range(500):
        cur["x"] = {}
        cur = cur["x"]
    with pytest.raises(warden.InvalidAction, match="nested deeper"):
        kernel.decide({"agent": "a", "tool": "t", "args": deep})
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(warden.InvalidAction, match="nested deeper"):
        kernel.decide({"agent": "a", "tool": "t", "args": loop})
    # 70 levels convert, but the kernel looks at most 64 deep: deny, not allow.
    deep = {}
    cur = deep
    for _ in range(70):
        cur["x"] = {}
        cur = cur["x"]
    d = kernel.decide({"agent": "a", "tool": "transfer", "args": {"amount": 1, "n": deep}})
    assert d.verdict == "deny" and d.reasons[0] == "runtime_error:invalid_action"


def test_values_round_trip_exactly(kernel: warden.Kernel) -> None:
    args = {
        "i": -(2**63),
        "u": 2**64 - 1,
        "f": 1.5,
        "b": True,
        "n": None,
        "s": "e\u0301 \u202e rtl \u0000 nul",
        "l": [1, "two", [3.0]],
        "t": (1, 2),
        "nested": {"k": {"v": False}},
    }
    d = kernel.decide({"agent": "a", "tool": "tagged", "args": args})
    assert d.verdict == "transform"
    out = d.apply({"agent": "a", "tool": "tagged", "args": args})
    expected = dict(args, t=[1, 2], origin="warden")
    assert out["args"] == expected
    assert type(out["args"]["b"]) is bool and type(out["args"]["i"]) is int
    assert out["point"] == "pre_tool_call" and out["agent"] == "a"


def test_decide_json_matches_decide(kernel: warden.Kernel) -> None:
    a = kernel.decide_json('{"agent":"a","tool":"delete_file"}')
    assert a.verdict == "deny" and a.rule_ids == ["no-delete"]
    with pytest.raises(warden.InvalidAction):
        kernel.decide_json('{"agent":"a","tool":"t","extra":1}')
    with pytest.raises(warden.InvalidAction):
        kernel.decide_json("{not json")


def test_transform_apply_redacts(kernel: warden.Kernel) -> None:
    action = {"agent": "a", "tool": "call_api", "args": {"url": "https://x", "api_key": "sk-123"}}
    d = kernel.decide(action)
    assert d.verdict == "transform" and d.proceeds
    assert d.obligations == [{"type": "redact", "path": "args.api_key"}]
    out = d.apply(action)
    assert out["args"] == {"url": "https://x", "api_key": "[REDACTED]"}
    assert action["args"]["api_key"] == "sk-123"  # input untouched


def test_escalate_then_approved_from_another_thread(kernel: warden.Kernel) -> None:
    t = approve_when_pending(kernel, "issue_refund")
    d = kernel.decide_and_wait({"agent": "a", "tool": "issue_refund", "args": {"amount": 5}})
    t.join(5)
    assert d.verdict == "allow" and d.reasons[-1] == "approved by finance: checked"
    req = t.result["request"]  # type: ignore[attr-defined]
    assert req["id"] == d.decision_id and req["approvers"] == ["finance"]
    assert req["deadline_ms"] - req["created_ms"] == 30_000
    assert t.result["resolution"] == {"resolution": "approved", "by": "finance", "reason": "checked"}  # type: ignore[attr-defined]
    assert kernel.pending_approvals() == []


def test_escalate_denied_and_timed_out(kernel: warden.Kernel) -> None:
    t = approve_when_pending(kernel, "issue_refund", approve=False)
    d = kernel.decide_and_wait({"agent": "a", "tool": "issue_refund"})
    t.join(5)
    assert d.verdict == "deny" and d.reasons[0] == "approval:denied"
    d = kernel.decide_and_wait({"agent": "a", "tool": "issue_refund"}, timeout=0.05)
    assert d.verdict == "deny" and d.reasons[0] == "approval:timeout"
    with pytest.raises(ValueError):
        kernel.decide_and_wait({"agent": "a", "tool": "issue_refund"}, timeout=-1)
    with pytest.raises(ValueError):
        kernel.decide_and_wait({"agent": "a", "tool": "issue_refund"}, timeout=math.nan)


def test_only_listed_approvers_resolve(kernel: warden.Kernel) -> None:
    d = kernel.decide({"agent": "a", "tool": "issue_refund"})
    assert d.verdict == "escalate" and d.obligations[0]["type"] == "approval"
    with pytest.raises(warden.ApprovalError, match="may not resolve"):
        kernel.resolve_approval(d.decision_id, True, "mallory")
    with pytest.raises(warden.ApprovalError, match="no pending approval"):
        kernel.resolve_approval("nope", True, "finance")
    assert kernel.resolve_approval(d.decision_id, True, "finance")["resolution"] == "approved"
    with pytest.raises(warden.ApprovalError):
        kernel.resolve_approval(d.decision_id, True, "finance")


def test_gil_is_released_while_deciding_and_waiting(kernel: warden.Kernel) -> None:
    """A waiting decide_and_wait must not hold the GIL: other Python threads
    keep deciding and the approver thread gets to run."""
    stop = threading.Event()
    counts = [0] * 4

    def hammer(i: int) -> None:
        while True:
            assert kernel.decide({"agent": f"w{i}", "tool": "get_weather"}).verdict == "allow"
            counts[i] += 1
            if stop.is_set():
                return

    workers = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    approver = approve_when_pending(kernel, "issue_refund")
    d = kernel.decide_and_wait({"agent": "a", "tool": "issue_refund"}, timeout=20)
    stop.set()
    for w in workers:
        w.join()
    approver.join(5)
    # Held GIL: the approver thread could not run and this would be approval:timeout.
    assert d.verdict == "allow"
    assert all(c > 0 for c in counts)
    kernel.flush()
    assert len(decisions(kernel)) == sum(counts) + 1


def test_kill_switch(kernel: warden.Kernel) -> None:
    kernel.kill(agent="rogue", reason="incident 42", by="alice")
    d = kernel.decide({"agent": "rogue", "tool": "get_weather"})
    assert d.verdict == "deny" and d.reasons[0] == "killed:agent" and "incident 42" in d.reasons[1]
    assert kernel.decide({"agent": "other", "tool": "get_weather"}).verdict == "allow"
    assert kernel.unkill(agent="rogue", by="alice") is True
    assert kernel.unkill(agent="rogue") is False
    assert kernel.decide({"agent": "rogue", "tool": "get_weather"}).verdict == "allow"
    kernel.kill(session="s1", reason="r")
    assert kernel.decide({"agent": "x", "session": "s1", "tool": "get_weather"}).reasons[0] == "killed:session"
    kernel.kill(all=True, reason="stop")
    assert kernel.decide({"agent": "x", "tool": "get_weather"}).reasons[0] == "killed:all"
    kernel.unkill(all=True)
    for bad in ({}, {"agent": "a", "session": "s"}, {"agent": "a", "all": True}, {"agent": ""}):
        with pytest.raises(ValueError):
            kernel.kill(reason="r", **bad)
    types = [r["type"] for r in kernel.audit_records()]
    assert types.count("kill") == 3 and types.count("unkill") == 3


def test_outcomes_and_audit_log(kernel: warden.Kernel, data_dir: Path) -> None:
    d = kernel.decide({"agent": "a", "tool": "get_weather", "args": {"city": "Oslo"}})
    kernel.record_outcome(d.decision_id, latency_s=0.25, tokens=12, cost=0.5, output_digest="sha256:00")
    kernel.record_outcome(d.decision_id, error="boom")
    with pytest.raises(ValueError):
        kernel.record_outcome(d.decision_id, latency_s=-1)
    with pytest.raises(ValueError):
        kernel.record_outcome(d.decision_id, cost=math.inf)
    records = kernel.audit_records()
    assert records[0]["type"] == "policy_loaded" and records[0]["policy_hash"] == kernel.policy_hash
    dec = [r for r in records if r["type"] == "decision"]
    assert dec[-1]["decision_id"] == d.decision_id and dec[-1]["verdict"] == "allow"
    assert dec[-1]["action"]["args"] == {"city": "Oslo"}  # args_mode="raw"
    outs = [r for r in records if r["type"] == "outcome"]
    assert outs[0]["status"] == "ok" and outs[0]["latency_ms"] == 250 and outs[0]["tokens"] == 12
    assert outs[1]["status"] == "error" and outs[1]["error"] == "boom"
    head = kernel.audit_head()
    assert head is not None and head["size"] == len(records)
    report = kernel.audit_verify()
    assert report["records"] == len(records) and report["unsigned_records"] == 0
    assert kernel.audit_records(start=len(records) - 1) == records[-1:]


def test_audit_verify_detects_tampering(kernel: warden.Kernel, data_dir: Path) -> None:
    kernel.decide({"agent": "a", "tool": "delete_file"})
    kernel.flush()
    segment = sorted((data_dir / "audit").glob("*.seg"))[0]
    raw = bytearray(segment.read_bytes())
    i = raw.find(b"delete_file")
    assert i > 0
    raw[i] = ord("D")
    segment.write_bytes(bytes(raw))
    with pytest.raises(warden.AuditError):
        kernel.audit_verify()


def test_digest_mode_keeps_arguments_out_of_the_log(tmp_path: Path) -> None:
    k = warden.Kernel([POLICY], data_dir=tmp_path / "d")
    k.decide({"agent": "a", "tool": "call_api", "args": {"api_key": "sk-secret"}})
    rec = [r for r in k.audit_records() if r["type"] == "decision"][0]
    assert set(rec["action"]) == {"digest"} and rec["action"]["digest"].startswith("sha256:")
    assert "sk-secret" not in str(k.audit_records())


def test_kernel_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        warden.Kernel(POLICY, data_dir=tmp_path, durability="fast")
    with pytest.raises(ValueError, match="args_mode"):
        warden.Kernel(POLICY, args_mode="all")
    with pytest.raises(warden.PolicyError):
        warden.Kernel(tmp_path / "missing")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: warden.dev/v1\nkind: Policy\nname: x\nrules: []\n")  # no default
    with pytest.raises(warden.PolicyError, match="default"):
        warden.Kernel(bad)
    with pytest.raises(ValueError):
        warden.Kernel([])
    with pytest.raises(warden.AuditError, match="no data_dir"):
        warden.Kernel(POLICY).audit_head()
    # Without a data dir nothing is audited, decisions still work.
    assert warden.Kernel(str(POLICY)).decide({"agent": "a", "tool": "delete_file"}).verdict == "deny"


def test_a_data_dir_has_one_writer(kernel: warden.Kernel, data_dir: Path) -> None:
    with pytest.raises(warden.WardenError, match="lock"):
        warden.Kernel(POLICY, data_dir=data_dir)


def test_sync_durability_and_reload(tmp_path: Path) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text("apiVersion: warden.dev/v1\nkind: Policy\nname: p\ndefault: allow\n")
    k = warden.Kernel(pol, data_dir=tmp_path / "d", durability="sync")
    h1 = k.policy_hash
    assert k.decide({"agent": "a", "tool": "x"}).verdict == "allow"
    pol.write_text("apiVersion: warden.dev/v1\nkind: Policy\nname: p\ndefault: deny\n")
    assert k.reload_policy() != h1
    assert k.decide({"agent": "a", "tool": "x"}).verdict == "deny"
    pol.write_text("not: [valid")
    with pytest.raises(warden.PolicyError):
        k.reload_policy()
    assert k.decide({"agent": "a", "tool": "x"}).verdict == "deny"  # old policy stays


def test_decision_from_wire_and_deny() -> None:
    d = warden.Decision.from_wire(
        {"verdict": "escalate", "reasons": ["r"], "rule_ids": ["x"], "obligations": [], "policy_hash": "sha256:1", "decision_id": "id"}
    )
    assert d.verdict == "escalate" and not d.proceeds
    with pytest.raises(ValueError):
        warden.Decision.from_wire({"verdict": "maybe"})
    with pytest.raises(ValueError):
        warden.Decision.from_wire("[]")
    dn = warden.Decision.deny(["runtime_error:internal", "x"])
    assert dn.verdict == "deny" and dn.reasons[0] == "runtime_error:internal"


def test_huge_and_unicode_inputs(kernel: warden.Kernel) -> None:
    big = {"agent": "a", "tool": "get_weather", "args": {"rows": list(range(200_000)), "blob": "x" * 5_000_000}}
    assert kernel.decide(big).verdict == "allow"
    # Names are compared exactly: a homoglyph is not the denied tool, and the
    # audit log records the exact code points.
    tricky = "d\u0435lete_file"  # Cyrillic е: neither `delete_file` nor `delete_*`
    d = kernel.decide({"agent": "\u202eagent", "tool": tricky})
    assert d.verdict == "allow"
    assert kernel.decide({"agent": "a", "tool": "delete_\u00e9"}).verdict == "deny"  # glob delete_*
    rec = [r for r in decisions(kernel) if r["decision_id"] == d.decision_id][0]
    assert rec["tool"] == tricky and rec["agent"] == "\u202eagent"


def test_many_threads_share_one_kernel(kernel: warden.Kernel) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(300):
                tool = "delete_file" if j % 3 == 0 else "get_weather"
                d = kernel.decide({"agent": f"t{i}", "session": f"s{i}", "tool": tool, "args": {"j": j}})
                assert d.verdict == ("deny" if j % 3 == 0 else "allow")
                kernel.record_outcome(d.decision_id, latency_s=0.001)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    recs = decisions(kernel)
    assert len(recs) == 8 * 300 and len({r["decision_id"] for r in recs}) == 8 * 300
    kernel.audit_verify()
