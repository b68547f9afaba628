"""Checking what a user registers: a state's function and options, and the agent's store.

Every misuse is a :class:`ConfigurationError` (or ``DuplicateStateError``) at the call that
made it, naming the state, the option and the fix, so nothing is silently ignored and
nothing fails later inside a run.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError, DuplicateStateError
from ._policies import RetryPolicy, StateSpec, check_timeout, normalize_dependencies
from ._resources import ResourceRequirements
from ._state import normalize_options, state_options
from ._status import Priority

if TYPE_CHECKING:
    from ._agent import Agent

#: options ``add_state``/``@state`` accept
KNOWN_OPTIONS = frozenset({
    "resources", "dependencies", "retry_policy", "timeout", "priority", "max_retries", "next", "executor",
    "remote", "join", "name",
})


def check_store(store: Any, durable: bool) -> Any:
    """Validate ``Agent(store=..., durable=...)``."""
    if isinstance(store, (str, bytes)) or hasattr(store, "__fspath__"):
        raise ConfigurationError(
            f"Agent(store={store!r}): that is a path, not a store; pass "
            f"SQLiteStore({store!r}) (from fluffy_nb import SQLiteStore) or MemoryStore()"
        )
    if store is not None and not all(callable(getattr(store, m, None)) for m in ("put", "get", "list")):
        raise ConfigurationError(
            f"Agent(store={store!r}): a store needs put(), get() and list(); use MemoryStore(), "
            "SQLiteStore(path), or implement the CheckpointStore protocol"
        )
    if durable and store is None:
        raise ConfigurationError(
            "Agent(durable=True) needs a store to write to; pass store=SQLiteStore('runs.db') or MemoryStore()"
        )
    return store


def _check_callable(name: str, func: Any) -> Callable[..., Any]:
    if not callable(func):
        raise ConfigurationError(
            f"add_state({name!r}, {func!r}): the state function must be callable, e.g. "
            "async def step(context): return None"
        )
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return func  # type: ignore[no-any-return]  # a builtin or C callable: the call will say
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params) or positional:
        required = [p for p in positional if p.default is p.empty]
        if len(required) <= 1:
            return func  # type: ignore[no-any-return]
        raise ConfigurationError(
            f"add_state({name!r}): {getattr(func, '__name__', func)!r} needs {len(required)} arguments "
            f"({', '.join(p.name for p in required)}), but a state is called with one (the context); "
            "give the others defaults"
        )
    raise ConfigurationError(
        f"add_state({name!r}): {getattr(func, '__name__', func)!r} takes no argument, but a state is called "
        f"with its context; define it as `async def {getattr(func, '__name__', 'step')}(context): ...`"
    )


def _executor_options(agent: Agent, opts: dict[str, Any]) -> frozenset[str]:
    """Options the state's executor reads from ``spec.options`` (its ``state_options``)."""
    executor = opts.get("executor")
    if executor is None and opts.get("remote"):
        executor = agent.executor
    if isinstance(executor, str):
        executor = agent.executor
    return frozenset(getattr(executor, "state_options", ()) or ())


def _unknown_options(name: str, opts: dict[str, Any], extra: frozenset[str] = frozenset()) -> None:
    unknown = sorted(set(opts) - KNOWN_OPTIONS - extra)
    if not unknown:
        return
    bad = unknown[0]
    close = difflib.get_close_matches(bad, sorted(KNOWN_OPTIONS | {"cpu", "memory", "gpu", "depends_on"}), n=1)
    if bad in ("retries", "retry", "max_retry"):
        close = ["max_retries"]
    hint = f"; did you mean {close[0]}=?" if close else ""
    raise ConfigurationError(
        f"add_state({name!r}, {bad}=...): unknown option{hint} Known options: {', '.join(sorted(KNOWN_OPTIONS))}"
    )


def _check_types(name: str, resources: Any, retry_policy: Any, priority: Any, next_: Any) -> None:
    if resources is not None and not isinstance(resources, ResourceRequirements):
        raise ConfigurationError(f"add_state({name!r}, resources={resources!r}): use ResourceRequirements(...)")
    if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
        raise ConfigurationError(f"add_state({name!r}, retry_policy={retry_policy!r}): use RetryPolicy(...)")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise ConfigurationError(f"add_state({name!r}, priority={priority!r}): use a Priority member or an int")
    if next_ is not None and not all(isinstance(n, str) and n for n in next_):
        raise ConfigurationError(f"add_state({name!r}, next={next_!r}): give a list of state names")


def build_spec(agent: Agent, name: Any, func: Callable[..., Any] | None, options: dict[str, Any]) -> StateSpec:
    """The :class:`StateSpec` for ``agent.add_state(name, func, **options)``, every option checked."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"add_state(name={name!r}): a state needs a non-empty string name")
    func = _check_callable(name, func)
    if name in agent.states:
        raise DuplicateStateError(
            f"agent {agent.name!r} already has a state {name!r}; pick another name or build a new Agent"
        )
    opts = {**(state_options(func) or {}), **normalize_options(options)}
    _unknown_options(name, opts, _executor_options(agent, opts))
    opts.pop("name", None)
    resources = opts.pop("resources", None)
    retry_policy = opts.pop("retry_policy", None)
    priority = opts.pop("priority", None)
    max_retries = opts.pop("max_retries", None)
    next_ = opts.pop("next", None)
    if isinstance(next_, str):
        next_ = [next_]
    _check_types(name, resources, retry_policy, priority, next_)
    if max_retries is not None and retry_policy is None:
        retry_policy = RetryPolicy(max_retries=max_retries, initial_delay=0.0, max_delay=0.0, jitter=False)
    timeout = opts.pop("timeout", None)
    if timeout is None and resources is not None:
        timeout = resources.timeout
    if priority is None:
        priority = int(resources.priority) if resources is not None else int(Priority.NORMAL)
    executor = opts.pop("executor", None)
    spec = StateSpec(
        name=name, func=func, resources=resources,
        dependencies=normalize_dependencies(name, opts.pop("dependencies", None)),
        retry_policy=retry_policy, timeout=check_timeout(f"add_state({name!r}, timeout)", timeout),
        priority=int(priority), max_retries=max_retries, next_hint=tuple(next_ or ()), options=opts,
    )
    spec.options["is_async"] = inspect.iscoroutinefunction(func) or (
        not inspect.isroutine(func) and inspect.iscoroutinefunction(type(func).__call__)
    )
    if executor is not None:
        spec.options["executor"] = executor
    return spec
