"""Warden: fail-closed runtime governance for AI agents, in-process.

>>> import warden
>>> kernel = warden.Kernel("policies/default")            # compiled once
>>> d = kernel.decide({"agent": "bot", "tool": "search", "args": {"q": "x"}})
>>> d.verdict, d.reasons

* :class:`Kernel` — the Rust kernel (policies, kill switch, quotas,
  approvals, signed audit log); :class:`Decision` — its answer.
* :func:`govern` — put any sync/async callable behind the kernel.
* Adapters (optional extras): :mod:`warden.langchain`,
  :mod:`warden.openai_agents`, :mod:`warden.crewai`.
* :class:`RemoteKernel` — the same interface over HTTP to ``warden serve``.
"""

from warden._core import GovernanceDenied, to_jsonable
from warden._warden import (
    ApprovalError,
    AuditError,
    Decision,
    InvalidAction,
    Kernel,
    PolicyError,
    WardenError,
    __version__,
)
from warden.govern import govern
from warden.remote import RemoteKernel

__all__ = [
    "ApprovalError",
    "AuditError",
    "Decision",
    "GovernanceDenied",
    "InvalidAction",
    "Kernel",
    "PolicyError",
    "RemoteKernel",
    "WardenError",
    "__version__",
    "govern",
    "to_jsonable",
]
