"""RemoteKernel against a real `warden serve` subprocess, and fail-closed
behaviour when the server is absent or answers garbage."""

from __future__ import annotations

import http.server
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import warden
from conftest import POLICY

REPO = Path(__file__).resolve().parents[3]
TOKEN = "py-test-admin-token-0123456789"


def warden_bin() -> Path:
    path = Path(os.environ.get("WARDEN_BIN", REPO / "target/debug/warden"))
    if not path.exists():
        if os.environ.get("WARDEN_REQUIRE_SERVER"):
            pytest.fail(f"WARDEN_BIN {path} does not exist")
        pytest.skip(f"{path} not built (cargo build -p warden-cli)")
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    env = dict(os.environ, WARDEN_ADMIN_TOKEN=TOKEN)
    proc = subprocess.Popen(
        [str(warden_bin()), "serve", "--listen", "127.0.0.1:0", "-p", str(POLICY), "--data-dir", str(tmp_path / "srv")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        assert url, "warden serve did not start"
        # Keep draining its output so it never blocks on a full pipe.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_same_interface_over_http(server: str) -> None:
    k = warden.RemoteKernel(server, token=TOKEN)
    assert k.healthy()
    ok = k.decide({"agent": "a", "tool": "get_weather", "args": {"city": "Oslo"}})
    assert ok.verdict == "allow" and ok.policy_hash.startswith("sha256:")
    no = k.decide({"agent": "a", "tool": "delete_file", "args": {"path": "/x"}})
    assert no.verdict == "deny" and no.reasons == ["deleting files is not allowed"]
    k.record_outcome(ok.decision_id, latency_s=0.01, tokens=3)
    tr = k.decide({"agent": "a", "tool": "call_api", "args": {"api_key": "k"}})
    assert tr.verdict == "transform" and tr.apply({"agent": "a", "tool": "call_api", "args": {"api_key": "k"}})["args"] == {"api_key": "[REDACTED]"}

    # Escalation: the server waits; an approver answers through the admin API.
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(d=k.decide_and_wait({"agent": "a", "tool": "issue_refund"}, timeout=20)))
    t.start()
    for _ in range(2000):
        pending = k.pending_approvals()
        if pending:
            break
        threading.Event().wait(0.005)
    assert pending and pending[0]["tool"] == "issue_refund"
    with pytest.raises(warden.ApprovalError, match="403"):
        k.resolve_approval(pending[0]["id"], True, "mallory")
    assert k.resolve_approval(pending[0]["id"], True, "finance")["resolution"] == "approved"
    t.join(20)
    assert result["d"].verdict == "allow" and result["d"].decision_id == pending[0]["id"]

    k.kill(agent="rogue", reason="incident", by="alice")
    assert k.decide({"agent": "rogue", "tool": "get_weather"}).reasons[0] == "killed:agent"
    assert k.unkill(agent="rogue") is True
    with pytest.raises(ValueError):
        k.kill(reason="x")
    head = k.audit_head()
    assert head is not None and head["size"] >= 6

    # govern() works unchanged on a RemoteKernel.
    @warden.govern(kernel=k)
    def delete_file(path: str) -> None:
        raise AssertionError("must not run")

    with pytest.raises(warden.GovernanceDenied):
        delete_file("/")


def start_serve(args: list[str]) -> subprocess.Popen[str]:
    """`warden serve` with `args`, returned once it prints where it listens."""
    env = dict(os.environ, WARDEN_ADMIN_TOKEN=TOKEN)
    proc = subprocess.Popen([str(warden_bin()), "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "unix:" in line:
            break
    else:
        raise AssertionError("warden serve did not start")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc


def test_unix_socket_keep_alive_and_server_restart(tmp_path: Path) -> None:
    sock = tmp_path / "w.sock"
    args = ["--listen", "127.0.0.1:0", "--unix-socket", str(sock), "-p", str(POLICY)]
    proc = start_serve([*args, "--data-dir", str(tmp_path / "a")])
    try:
        k = warden.RemoteKernel(f"unix://{sock}", token=TOKEN)
        assert k.healthy()
        assert k.decide({"agent": "a", "tool": "get_weather"}).verdict == "allow"
        first = k._local.conn.sock  # noqa: SLF001 - checks the connection is kept
        assert k.decide({"agent": "a", "tool": "delete_file", "args": {"path": "/"}}).verdict == "deny"
        assert k._local.conn.sock is first  # noqa: SLF001
        k.kill(agent="rogue", reason="incident")
        assert k.decide({"agent": "rogue", "tool": "get_weather"}).reasons[0] == "killed:agent"
    finally:
        proc.terminate()
        proc.wait(10)
    assert not sock.exists()
    # The kept connection is dead now: with no server the decision is a deny...
    d = k.decide({"agent": "a", "tool": "get_weather"})
    assert d.verdict == "deny" and d.reasons[0] == "runtime_error:internal"
    # ...and once a server is back on the socket, calls go through again.
    proc = start_serve([*args, "--data-dir", str(tmp_path / "b")])
    try:
        assert k.decide({"agent": "a", "tool": "get_weather"}).verdict == "allow"
        assert k.decide({"agent": "rogue", "tool": "get_weather"}).verdict == "allow"  # b has no kill
    finally:
        proc.terminate()
        proc.wait(10)


def test_url_forms_are_checked() -> None:
    for bad in ["ftp://x", "unix://relative.sock", "unix:relative.sock", "127.0.0.1:8080"]:
        with pytest.raises(ValueError):
            warden.RemoteKernel(bad)
    assert repr(warden.RemoteKernel("unix:///run/w.sock")) == "RemoteKernel('unix:///run/w.sock')"


def test_admin_calls_need_the_token(server: str) -> None:
    k = warden.RemoteKernel(server)
    with pytest.raises(warden.ApprovalError, match="401"):
        k.pending_approvals()
    with pytest.raises(warden.WardenError, match="401"):
        k.kill(all=True, reason="x")
    assert k.decide({"agent": "a", "tool": "get_weather"}).verdict == "allow"


def test_server_side_invalid_action_is_a_deny(server: str) -> None:
    k = warden.RemoteKernel(server)
    d = k.decide({"agent": "a", "tool": "t", "tools": "typo"})
    assert d.verdict == "deny" and d.reasons[0] == "runtime_error:internal" and "invalid_action" in d.reasons[1]
    with pytest.raises(warden.InvalidAction):
        k.decide({"agent": "a", "tool": "t", "args": {"x": float("nan")}})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_fails_closed() -> None:
    k = warden.RemoteKernel(f"http://127.0.0.1:{free_port()}", timeout=1)
    d = k.decide({"agent": "a", "tool": "get_weather"})
    assert d.verdict == "deny" and d.reasons[0] == "runtime_error:internal" and not d.proceeds
    assert not k.healthy()

    @warden.govern(kernel=k)
    def get_weather(city: str) -> str:
        raise AssertionError("must not run")

    with pytest.raises(warden.GovernanceDenied, match="runtime_error:internal"):
        get_weather("x")
    with pytest.raises(ValueError):
        warden.RemoteKernel("ftp://x")


@pytest.mark.parametrize(
    "status, body",
    [
        (200, b"not json"),
        (200, b'{"verdict": "allow"}'),
        (200, b'{"verdict":"allow","reasons":[],"rule_ids":[],"obligations":[],"policy_hash":"h","decision_id":"d","extra":{"x":1}}'),
        (500, b'{"error":"internal","message":"boom"}'),
        (302, b""),
        (200, b'{"verdict":"yes","reasons":[],"rule_ids":[],"obligations":[],"policy_hash":"h","decision_id":"d"}'),
    ],
)
def test_garbage_answers_fail_closed(status: int, body: bytes) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        d = warden.RemoteKernel(f"http://127.0.0.1:{srv.server_address[1]}").decide({"agent": "a", "tool": "t"})
    finally:
        srv.shutdown()
    # Unknown extra fields in a Decision are tolerated by serde (forward compatible), so that
    # one answer is a valid allow; everything else must be a deny.
    if b'"extra"' in body:
        assert d.verdict == "allow"
    else:
        assert d.verdict == "deny" and d.reasons[0] == "runtime_error:internal"


async def test_async_paths_with_a_remote_kernel(server: str) -> None:
    k = warden.RemoteKernel(server)
    ran = []

    @warden.govern(kernel=k)
    async def lookup_user(uid: int) -> dict[str, Any]:
        ran.append(uid)
        return {"name": "Ada", "ssn": "1"}

    @warden.govern(kernel=k)
    async def delete_file(path: str) -> None:
        ran.append(path)

    assert await lookup_user(3) == {"name": "Ada", "ssn": "[REDACTED]"}
    with pytest.raises(warden.GovernanceDenied):
        await delete_file("/")
    assert ran == [3]
    down = warden.RemoteKernel(f"http://127.0.0.1:{free_port()}", timeout=1)
    with pytest.raises(warden.GovernanceDenied, match="runtime_error:internal"):
        await warden.govern(lookup_user.__wrapped__, kernel=down)(4)
    assert ran == [3]
