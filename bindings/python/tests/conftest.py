"""Shared fixtures: a kernel on the scenario policy with its own data directory."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import warden

POLICY = Path(__file__).parent / "policy"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def kernel(data_dir: Path) -> warden.Kernel:
    return warden.Kernel(POLICY, data_dir=data_dir, args_mode="raw")


def approve_when_pending(kernel: Any, tool: str, approve: bool = True, approver: str = "finance", timeout: float = 20.0) -> threading.Thread:
    """Starts a thread that resolves the first pending approval for `tool`."""
    result: dict[str, Any] = {}

    def run() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for req in kernel.pending_approvals():
                if req["tool"] == tool:
                    result["request"] = req
                    result["resolution"] = kernel.resolve_approval(req["id"], approve, approver, "checked")
                    return
            time.sleep(0.005)

    t = threading.Thread(target=run, daemon=True)
    t.result = result  # type: ignore[attr-defined]
    t.start()
    return t


def decisions(kernel: Any) -> list[dict[str, Any]]:
    """Decision records of the audit log, in order."""
    return [r for r in kernel.audit_records() if r["type"] == "decision"]


def outcomes(kernel: Any) -> dict[str, dict[str, Any]]:
    return {r["decision_id"]: r for r in kernel.audit_records() if r["type"] == "outcome"}
