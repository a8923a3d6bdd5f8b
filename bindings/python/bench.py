"""Per-call cost of the Python binding (bindings/python/bench.py).

Workloads, on the DESIGN.md §6 100-rule policy (rule i matches
``tool == "action_i"``, deny if i % 3 == 0) with a call that matches the last
rule (``action_98``, an allow; rules are indexed by tool so position does not matter; args ``{"amount": 12, "currency": "EUR"}``):

* ``rust-loop``: the kernel called from a Rust loop in the same process
  (``Kernel._rust_decide_loop``): the kernel's own cost, no Python;
* ``py/decide``: ``kernel.decide(dict)`` from Python (dict → Action, GIL
  released during the decision, Decision object back);
* ``py/decide_json``: ``kernel.decide_json(str)`` with a pre-serialised action;
* ``py/json+decide_json``: ``json.dumps`` per call + ``decide_json``;
* ``govern/noop`` and ``govern/noop-no-results``: a governed no-op function
  (``check_results`` on/off) minus the plain call;
* the same with the audit log (``data_dir``, batched durability): a single
  Python thread saturates the log writer, so this includes back-pressure.

Each figure is the median over ``--runs`` runs of the mean per-call time of a
run of ``--calls`` calls. Run: ``target/venv-py/bin/python bindings/python/bench.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import warden

ACTION = {"agent": "bench", "tool": "action_98", "args": {"amount": 12, "currency": "EUR"}}


def policy(dir: Path) -> Path:
    rules = "\n".join(
        f"  - id: r{i}\n    points: [pre_tool_call, post_tool_call]\n    tools: [action_{i}]\n    effect: {'deny' if i % 3 == 0 else 'allow'}" for i in range(100)
    )
    p = dir / "policy-100.yaml"
    p.write_text(f"apiVersion: warden.dev/v1\nkind: Policy\nname: bench\ndefault: deny\nrules:\n{rules}\n")
    return p


def measure(fn: Callable[[], Any], calls: int, runs: int) -> float:
    """Median over runs of the mean ns per call."""
    for _ in range(min(calls, 10_000)):
        fn()
    per_call = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter_ns() - start) / calls)
    return statistics.median(per_call)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="one JSON line per workload")
    a = ap.parse_args()

    results: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        pol = policy(Path(tmp))
        for label, data_dir in (("", None), (" +audit", Path(tmp) / "data")):
            k = warden.Kernel(pol, data_dir=data_dir, durability="batched")
            assert k.decide(ACTION).verdict == "allow"
            text = json.dumps(ACTION)
            rust = statistics.median(k._rust_decide_loop(ACTION, a.calls) / a.calls for _ in range(a.runs))
            results.append((f"rust-loop{label}", rust))
            results.append((f"py/decide{label}", measure(lambda: k.decide(ACTION), a.calls, a.runs)))
            results.append((f"py/decide_json{label}", measure(lambda: k.decide_json(text), a.calls, a.runs)))
            results.append((f"py/json+decide_json{label}", measure(lambda: k.decide_json(json.dumps(ACTION)), a.calls, a.runs)))

            def action_98(amount: int, currency: str) -> None:
                return None

            plain = measure(lambda: action_98(12, "EUR"), a.calls, a.runs)
            g = warden.govern(action_98, kernel=k, agent="bench")
            g_nr = warden.govern(action_98, kernel=k, agent="bench", check_results=False)
            results.append((f"govern/noop{label} (overhead)", measure(lambda: g(12, "EUR"), a.calls, a.runs) - plain))
            results.append((f"govern/noop-no-results{label} (overhead)", measure(lambda: g_nr(12, "EUR"), a.calls, a.runs) - plain))
            if data_dir is not None:
                k.flush()
            del k

    for name, ns in results:
        if a.json:
            print(json.dumps({"workload": name, "median_ns": round(ns)}))
        else:
            print(f"{name:42s} {ns / 1000:8.2f} µs")


if __name__ == "__main__":
    main()
