"""``warden.RemoteKernel``: the Kernel interface over HTTP to ``warden serve``.

Standard library only (``http.client``), over TCP (``http://``, ``https://``)
or a Unix-domain socket (``unix:///run/warden/warden.sock``, the server's
``unix_socket``). Each thread keeps one keep-alive connection. Fail closed: any network error, timeout,
non-2xx answer or malformed body from ``/v1/decide`` is a **deny** decision
(first reason ``runtime_error:internal``), so ``govern()`` and the adapters
raise/deny exactly as with an in-process kernel. Administrative calls
(approvals, kill switch) raise instead, since there is nothing to deny.

Not available remotely: ``audit_verify``/``audit_records`` (run
``warden audit verify`` where the log lives), ``flush`` and ``reload_policy``.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from warden._warden import ApprovalError, Decision, InvalidAction, WardenError

__all__ = ["RemoteKernel"]

#: Default wait requested from the server when ``decide_and_wait(timeout=None)``;
#: the server caps it by its ``limits.max_wait_ms`` and the rule's own timeout.
DEFAULT_WAIT_MS = 3_600_000


#: A kept-alive connection idle longer than this is replaced before use: the
#: server closes idle connections after its ``limits.header_timeout_ms``
#: (5 s by default), and a request must not race that close.
MAX_IDLE_S = 2.0


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix-domain socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _HttpError(Exception):
    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{status or 'no answer'} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class RemoteKernel:
    """A client of ``warden serve`` with the :class:`warden.Kernel` interface.

    Args:
        url: base URL, e.g. ``http://127.0.0.1:8080``.
        token: admin bearer token (approvals, kill switch) if the server
            requires one.
        timeout: seconds for each request (approval waits add their own wait).
    """

    def __init__(self, url: str = "http://127.0.0.1:8080", token: str | None = None, timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme == "unix":
            # unix:///path/to.sock (or unix:/path/to.sock)
            if not parsed.path.startswith("/") or parsed.netloc:
                raise ValueError(f"url must be unix:///absolute/path.sock, not {url!r}")
            self._unix: str | None = parsed.path
            self.url = f"unix://{parsed.path}"
        elif parsed.scheme in ("http", "https") and parsed.netloc:
            self._unix = None
            self.url = url.rstrip("/")
        else:
            raise ValueError(f"url must be http(s)://host:port or unix:///path.sock, not {url!r}")
        self._parsed = parsed
        self.token = token
        self.timeout = timeout
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"RemoteKernel({self.url!r})"

    # -- transport -----------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None, *, admin: bool = False, timeout: float | None = None, parse: bool = True) -> Any:
        data = None
        headers = {"accept": "application/json"}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body, allow_nan=False).encode()
            headers["content-type"] = "application/json"
        if admin and self.token:
            headers["authorization"] = f"Bearer {self.token}"
        status, raw = self._exchange(method, path, data, headers, timeout or self.timeout)
        if status >= 400:
            try:
                err = json.loads(raw)
                raise _HttpError(status, str(err.get("error", "http")), str(err.get("message", ""))) from None
            except (ValueError, AttributeError):
                raise _HttpError(status, "http", raw[:200].decode("utf-8", "replace")) from None
        if not 200 <= status < 300:
            raise _HttpError(status, "http", raw[:200].decode("utf-8", "replace"))
        if status == 204 or not raw or not parse:
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise _HttpError(status, "malformed", f"answer is not JSON: {e}") from None

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it was used before."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and time.monotonic() - self._local.used > MAX_IDLE_S:
            conn.close()
            conn = None
        if conn is not None:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn, True
        if self._unix is not None:
            conn = _UnixConnection(self._unix, timeout)
        elif self._parsed.scheme == "https":
            conn = http.client.HTTPSConnection(self._parsed.netloc, timeout=timeout)
        else:
            conn = http.client.HTTPConnection(self._parsed.netloc, timeout=timeout)
        self._local.conn = conn
        return conn, False

    def _exchange(self, method: str, path: str, data: bytes | None, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
        prefix = self._parsed.path.rstrip("/") if self._unix is None else ""
        for attempt in (0, 1):
            conn, reused = self._connection(timeout)
            try:
                conn.request(method, prefix + path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                self._local.used = time.monotonic()
                if resp.will_close:
                    self._drop(conn)
                return resp.status, raw
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self._drop(conn)
                # A kept-alive connection the server had already closed never
                # carried this request: send it once more on a fresh one.
                if reused and attempt == 0:
                    continue
                raise _HttpError(None, "unreachable", str(e)) from None
            except (OSError, TimeoutError, http.client.HTTPException) as e:
                self._drop(conn)
                raise _HttpError(None, "unreachable", str(e)) from None
        raise _HttpError(None, "unreachable", "no answer")

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    @staticmethod
    def _body(action: Mapping[str, Any]) -> bytes:
        try:
            return json.dumps(action, allow_nan=False, ensure_ascii=False).encode()
        except (TypeError, ValueError) as e:
            raise InvalidAction(f"invalid action: {e}") from None

    def _decide(self, action: Mapping[str, Any], query: str, timeout: float | None) -> Decision:
        body = self._body(action)
        try:
            answer = self._request("POST", "/v1/decide" + query, body, timeout=timeout)
            return Decision.from_wire(answer)
        except _HttpError as e:
            return Decision.deny(["runtime_error:internal", f"warden serve at {self.url}: {e}"])
        except ValueError as e:
            return Decision.deny(["runtime_error:internal", f"warden serve at {self.url}: malformed decision: {e}"])

    # -- the Kernel interface ------------------------------------------------

    def decide(self, action: Mapping[str, Any]) -> Decision:
        """``POST /v1/decide``; any failure is a deny decision (never an allow)."""
        return self._decide(action, "", None)

    def decide_and_wait(self, action: Mapping[str, Any], timeout: float | None = None) -> Decision:
        """``POST /v1/decide?wait_ms=N``: on escalate the server waits for an
        approver. An ``escalate`` still pending when the server stops waiting
        does not proceed (``govern()`` raises)."""
        if timeout is None:
            wait_ms = DEFAULT_WAIT_MS
        elif math.isfinite(timeout) and timeout >= 0:
            wait_ms = int(timeout * 1000)
        else:
            raise ValueError(f"timeout must be a non-negative number of seconds, not {timeout}")
        return self._decide(action, f"?wait_ms={wait_ms}", self.timeout + wait_ms / 1000)

    def record_outcome(self, decision_id: str, error: str | None = None, latency_s: float = 0.0, output_digest: str | None = None, tokens: int = 0, cost: float = 0.0) -> None:
        """``POST /v1/outcome``; raises :class:`warden.WardenError` if the server refuses."""
        if not (math.isfinite(latency_s) and latency_s >= 0):
            raise ValueError("latency_s must be a finite non-negative number")
        body = {
            "decision_id": decision_id,
            "error": error,
            "latency_us": int(latency_s * 1_000_000),
            "output_digest": output_digest,
            "tokens": int(tokens),
            "cost": float(cost),
        }
        try:
            self._request("POST", "/v1/outcome", body)
        except _HttpError as e:
            raise WardenError(f"warden serve: outcome not recorded: {e}") from None

    def pending_approvals(self) -> list[dict[str, Any]]:
        """``GET /v1/approvals`` (admin)."""
        try:
            return list(self._request("GET", "/v1/approvals", admin=True)["approvals"])
        except _HttpError as e:
            raise ApprovalError(f"warden serve: {e}") from None

    def resolve_approval(self, decision_id: str, approve: bool, approver: str, reason: str | None = None) -> dict[str, Any]:
        """``POST /v1/approvals/{id}`` (admin); raises :class:`warden.ApprovalError`."""
        path = "/v1/approvals/" + urllib.parse.quote(decision_id, safe="")
        try:
            return self._request("POST", path, {"approve": bool(approve), "approver": approver, "reason": reason}, admin=True)
        except _HttpError as e:
            raise ApprovalError(f"warden serve: {e}") from None

    @staticmethod
    def _target(agent: str | None, session: str | None, all: bool) -> dict[str, Any]:  # noqa: A002
        if sum((agent is not None, session is not None, bool(all))) != 1 or agent == "" or session == "":
            raise ValueError("give exactly one of agent=<id>, session=<id> or all=True")
        if agent is not None:
            return {"agent": agent}
        if session is not None:
            return {"session": session}
        return {"all": True}

    def kill(self, *, agent: str | None = None, session: str | None = None, all: bool = False, reason: str, by: str | None = None) -> None:  # noqa: A002
        """``POST /v1/kill`` (admin)."""
        body = {**self._target(agent, session, all), "reason": reason, "by": by}
        try:
            self._request("POST", "/v1/kill", body, admin=True)
        except _HttpError as e:
            raise WardenError(f"warden serve: kill failed: {e}") from None

    def unkill(self, *, agent: str | None = None, session: str | None = None, all: bool = False, by: str | None = None) -> bool:  # noqa: A002
        """``POST /v1/unkill`` (admin); returns whether a kill was active."""
        body = {**self._target(agent, session, all), "by": by}
        try:
            return bool(self._request("POST", "/v1/unkill", body, admin=True)["lifted"])
        except _HttpError as e:
            raise WardenError(f"warden serve: unkill failed: {e}") from None

    def audit_head(self) -> dict[str, Any] | None:
        """``GET /v1/audit/head``: the latest signed tree head (``None`` for an empty log)."""
        try:
            return self._request("GET", "/v1/audit/head")
        except _HttpError as e:
            if e.status == 404 and e.code == "empty_log":
                return None
            raise WardenError(f"warden serve: {e}") from None

    def healthy(self) -> bool:
        """``GET /healthz`` answers 200."""
        try:
            self._request("GET", "/healthz", timeout=min(self.timeout, 2.0), parse=False)
            return True
        except (_HttpError, ValueError):
            return False
