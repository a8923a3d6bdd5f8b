"""``warden.govern``: put any Python callable behind the Warden kernel."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from warden._core import GovernanceDenied, acheck, build_action, check, check_result, off_loop, record, to_jsonable
from warden._warden import Decision, Kernel

F = TypeVar("F", bound=Callable[..., Any])

_MISSING = object()


def _kernel(kernel: Any, policy: Any) -> Any:
    if kernel is not None:
        return kernel
    if policy is None:
        raise ValueError("govern() needs kernel= (a warden.Kernel or RemoteKernel) or policy= (paths)")
    return Kernel(policy)


class _Signature:
    """What ``govern`` needs of ``fn``'s signature, computed once."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.sig = inspect.signature(fn)
        params = list(self.sig.parameters.values())
        self.skip = params[0].name if params and params[0].name in ("self", "cls") else None
        # Plain `def f(a, b=1)` signatures are bound without inspect (the common, hot case).
        self.simple = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        self.names = tuple(p.name for p in params)
        self.name_set = frozenset(self.names)
        self.defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


class _Call:
    """One call's arguments: as given, and as the Action's ``args``."""

    __slots__ = ("sig", "a", "kw", "bound", "named", "varkw", "args")

    def __init__(self, sig: _Signature, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
        self.sig = sig
        self.a = a
        self.kw = kw
        self.bound: inspect.BoundArguments | None = None
        self.varkw: str | None = None
        if sig.simple:
            named = None
            if not kw and len(a) == len(sig.names):
                named = dict(zip(sig.names, a))
            elif len(a) <= len(sig.names) and sig.name_set.issuperset(kw) and not kw.keys() & set(sig.names[: len(a)]):
                named = dict(sig.defaults)
                named.update(zip(sig.names, a))
                named.update(kw)
            if named is not None and len(named) == len(sig.names):
                self.named = named
                if sig.skip:
                    self.args = dict(named)
                    del self.args[sig.skip]
                else:
                    self.args = named
                return
        # Everything else (and every binding error, raised here as TypeError).
        self.bound = sig.sig.bind(*a, **kw)
        self.bound.apply_defaults()
        self.named = self.bound.arguments
        args: dict[str, Any] = {}
        for name, value in self.bound.arguments.items():
            if name == sig.skip:
                continue
            if sig.sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                # **kwargs are flattened so policies see `args.<key>` either way.
                self.varkw = name
                args.update(value)
            else:
                args[name] = value
        self.args = args

    def rewrite(self, decision: Decision, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        """Applies the values a transform changed (in their JSON form) to the call."""
        if self.bound is None:
            self.named = dict(self.named)
        for key, new in after.items():
            if before.get(key, _MISSING) == new:
                continue
            if key in self.named and key != self.varkw:
                self.named[key] = new
            elif self.varkw is not None:
                self.named[self.varkw][key] = new
            else:
                raise GovernanceDenied(
                    decision,
                    f"transform sets args.{key}, which the function does not accept: not calling it",
                )
        if self.bound is None:
            # A plain signature: every parameter can be passed by keyword.
            self.a, self.kw = (), self.named
        else:
            self.a, self.kw = self.bound.args, self.bound.kwargs


@overload
def govern(fn: F, **options: Any) -> F: ...
@overload
def govern(fn: None = None, **options: Any) -> Callable[[F], F]: ...


def govern(
    fn: Callable[..., Any] | None = None,
    *,
    kernel: Any = None,
    policy: Any = None,
    agent: str = "default",
    session: str | None = None,
    point: str = "pre_tool_call",
    tool: str | None = None,
    context: Mapping[str, Any] | None = None,
    wait_timeout: float | None = None,
    check_results: bool = True,
) -> Any:
    """Governs ``fn`` (sync or async): every call is decided by Warden first.

    Usable as ``govern(fn, kernel=k)`` or as a decorator ``@govern(kernel=k)``.

    Per call:

    * the Action is ``{"point": point, "agent": agent, "session": session,
      "tool": tool or fn.__name__, "args": <bound arguments>, "context": context}``;
      arguments are bound with ``inspect.signature`` (defaults applied,
      ``**kwargs`` flattened, a leading ``self``/``cls`` left out) and made
      JSON-able by the rule in :func:`warden._core.to_jsonable`;
    * ``deny`` raises :class:`GovernanceDenied` (``.decision``, ``.reasons``)
      and ``fn`` does not run; ``escalate`` waits for an approver (at most the
      rule's timeout, or ``wait_timeout`` seconds) — for async functions in a
      worker thread, never blocking the event loop — then runs or raises;
      ``transform`` calls ``fn`` with the rewritten values (only the
      arguments the transform changed are replaced, by their JSON form);
    * the outcome (success or the exception, latency) is recorded;
    * with ``check_results`` (default), the return value is decided at
      ``post_tool_call`` as ``args.result``: a deny raises
      :class:`GovernanceDenied` (the result is withheld), a transform returns
      the redacted JSON form of the result.

    Give ``kernel=`` (a :class:`warden.Kernel` or ``RemoteKernel``, shared) or
    ``policy=`` (paths; a kernel is built once, at decoration).
    """
    options = dict(
        kernel=kernel,
        policy=policy,
        agent=agent,
        session=session,
        point=point,
        tool=tool,
        context=context,
        wait_timeout=wait_timeout,
        check_results=check_results,
    )
    if fn is None:
        return lambda f: govern(f, **options)  # type: ignore[arg-type]
    k = _kernel(kernel, policy)
    name = tool or getattr(fn, "__name__", None) or type(fn).__name__
    sig = _Signature(fn)

    def action_for(call: _Call) -> dict[str, Any]:
        return build_action(point=point, agent=agent, tool=name, args=call.args, session=session, context=context)

    def prepare(call: _Call, decision: Decision, pre: dict[str, Any], allowed: dict[str, Any]) -> None:
        if allowed is not pre:
            call.rewrite(decision, to_jsonable(pre.get("args", {})), allowed.get("args", {}))

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def agoverned(*a: Any, **kw: Any) -> Any:
            call = _Call(sig, a, kw)
            pre = action_for(call)
            decision, allowed = await acheck(k, pre, wait_timeout)
            prepare(call, decision, pre, allowed)
            started = time.perf_counter()
            try:
                result = await fn(*call.a, **call.kw)
            except BaseException as e:
                await off_loop(k, record, k, decision, started, e)
                raise
            await off_loop(k, record, k, decision, started)
            return await off_loop(k, check_result, k, allowed, result) if check_results else result

        agoverned.__warden_kernel__ = k  # type: ignore[attr-defined]
        return agoverned

    @functools.wraps(fn)
    def governed(*a: Any, **kw: Any) -> Any:
        call = _Call(sig, a, kw)
        pre = action_for(call)
        decision, allowed = check(k, pre, wait_timeout)
        prepare(call, decision, pre, allowed)
        started = time.perf_counter()
        try:
            result = fn(*call.a, **call.kw)
        except BaseException as e:
            record(k, decision, started, e)
            raise
        record(k, decision, started)
        return check_result(k, allowed, result) if check_results else result

    governed.__warden_kernel__ = k  # type: ignore[attr-defined]
    return governed
