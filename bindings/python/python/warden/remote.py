"""``warden.RemoteKernel``: the Kernel interface over HTTP to ``warden serve``.

Standard library only (``urllib``). Fail closed: any network error, timeout,
non-2xx answer or malformed body from ``/v1/decide`` is a **deny** decision
(first reason ``runtime_error:internal``), so ``govern()`` and the adapters
raise/deny exactly as with an in-process kernel. Administrative calls
(approvals, kill switch) raise instead, since there is nothing to deny.

Not available remotely: ``audit_verify``/``audit_records`` (run
``warden audit verify`` where the log lives), ``flush`` and ``reload_policy``.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from warden._warden import ApprovalError, Decision, InvalidAction, WardenError

__all__ = ["RemoteKernel"]

#: Default wait requested from the server when ``decide_and_wait(timeout=None)``;
#: the server caps it by its ``limits.max_wait_ms`` and the rule's own timeout.
DEFAULT_WAIT_MS = 3_600_000


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
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"url must be http(s)://host:port, not {url!r}")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

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
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:  # noqa: S310 - scheme checked
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)
                raise _HttpError(e.code, str(err.get("error", "http")), str(err.get("message", ""))) from None
            except (ValueError, AttributeError):
                raise _HttpError(e.code, "http", raw[:200].decode("utf-8", "replace")) from None
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise _HttpError(None, "unreachable", str(getattr(e, "reason", e))) from None
        if not 200 <= status < 300:
            raise _HttpError(status, "http", raw[:200].decode("utf-8", "replace"))
        if status == 204 or not raw or not parse:
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise _HttpError(status, "malformed", f"answer is not JSON: {e}") from None

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
