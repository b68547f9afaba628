"""Checking what a user registers: a state's function and options, and the agent's store.

Every misuse is a :class:`ConfigurationError` (or ``DuplicateStateError``) at the call that
made it, naming the state, the option and the fix, so nothing is silently ignored and
nothing fails later inside a run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError, DuplicateStateError, StateNotFoundError
from ._policies import RetryPolicy, StateSpec, check_timeout, normalize_dependencies
from ._reader import code_mentions, state_targets
from ._requirements import ResourceRequirements
from ._state import normalize_options, state_options
from ._status import Priority

if TYPE_CHECKING:
    from ._agent import Agent
    from ._graph import StateGraph

#: options ``add_state``/``@state`` accept
KNOWN_OPTIONS = frozenset({
    "resources", "dependencies", "retry_policy", "timeout", "priority", "max_retries", "next", "executor",
    "remote", "join", "name", "on_error", "on_timeout",
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
    from difflib import get_close_matches  # an error path: not worth importing with the engine

    close = get_close_matches(bad, sorted(KNOWN_OPTIONS | {"cpu", "memory", "gpu", "depends_on"}), n=1)
    if bad in ("retries", "retry", "max_retry"):
        close = ["max_retries"]
    hint = f"; did you mean {close[0]}=?" if close else ""
    raise ConfigurationError(
        f"add_state({name!r}, {bad}=...): unknown option{hint} Known options: {', '.join(sorted(KNOWN_OPTIONS))}"
    )


def _check_routes(name: str, opts: dict[str, Any]) -> None:
    on_timeout, on_error = opts.get("on_timeout"), opts.get("on_error")
    if on_timeout is not None and not (isinstance(on_timeout, str) and on_timeout):
        raise ConfigurationError(f"add_state({name!r}, on_timeout={on_timeout!r}): give the name of a state")
    if on_error is None or (isinstance(on_error, str) and on_error):
        return
    ok = isinstance(on_error, dict) and on_error and all(
        isinstance(target, str) and target and all(isinstance(k, type) and issubclass(k, BaseException)
                                                    for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        for kinds, target in on_error.items())
    if not ok:
        raise ConfigurationError(
            f"add_state({name!r}, on_error={on_error!r}): give a state name, or a dict of exception classes to "
            "state names, e.g. on_error={TimeoutError: 'retry_later', ValueError: 'fix_input'}"
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
    _check_routes(name, opts)
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
    from ._attempt import plain

    spec.inline = plain(spec)
    spec.routes = tuple(_route_targets(spec))
    spec.offloaded = executor is not None or bool(spec.options.get("remote"))
    spec.seal()
    return spec


def link_state(graph: StateGraph, states: dict[str, StateSpec], mentions: dict[str, set[str]],
               spec: StateSpec) -> set[str]:
    """Add ``spec`` to ``graph``: edges to the states its code names (and from those naming it),
    ``next=`` hints and dependencies. ``mentions`` maps a string to the states whose code has it.
    Returns the strings its code may return."""
    name = spec.name
    graph.add_node(name)
    strings = state_targets(spec.func)
    for target in strings:
        mentions.setdefault(target, set()).add(name)
        if target in states:
            graph.add_edge(name, target, "code")
    for other in mentions.get(name, ()):
        if other != name:
            graph.add_edge(other, name, "code")
    for target in spec.next_hint:
        graph.add_edge(name, target, "declared")
    for target in _route_targets(spec):
        graph.add_edge(name, target, "error")
    for dep in spec.dependencies:
        graph.add_edge(dep, name, "dependency")
    return strings


def definition_key(agent: Agent) -> tuple[Any, ...]:
    """What a check of ``agent``'s definition depends on: its states and gates (their version)
    and its graph. Equal keys: the result made for the first holds for the second."""
    return (agent.definition_version, agent.graph, agent.graph.version)


def check_definition(agent: Agent, gates: dict[str, list[Any]]) -> None:
    """What ``run()`` checks before anything runs: dependency names and cycles, names given to
    gates and ``next=``, and resource requests the pool can never grant. The checks of the
    definition itself are made once per version of it (a run of 1,000 states paid about 2 µs
    per state for them); the pool, which may change between runs, is asked every time."""
    key = definition_key(agent)
    cached = agent.definition_cache.get("checked")
    own = gates is agent.gate_map  # else a caller's own selection of gates (a child run): checked, never kept
    if not own or cached is None or cached[0] != key:
        _check_structure(agent, gates)
        cached = (key, [name for name, spec in agent.states.items() if spec.resources is not None])
        if own:
            agent.definition_cache["checked"] = cached
    from ._executor import state_executor

    states = agent.states
    local = [(name, states[name].resources) for name in cached[1] if state_executor(agent, states[name]) is None]
    pool = agent.resource_pool if local else None  # the default machine pool is made only when needed
    if pool is not None:
        for name, req in local:
            pool.check(name, req)
        from ._subflow import check_pool_holders

        check_pool_holders(agent, [name for name, _ in local])


def _check_structure(agent: Agent, gates: dict[str, list[Any]]) -> None:
    from ._deps import check_dependency_cycles

    check_dependency_cycles(agent)
    states = agent.states
    unknown = sorted(name for name, gs in gates.items()
                     if gs and name not in states and not _in_state_quota(agent, name, gs))
    if unknown:
        raise StateNotFoundError(
            f"agent {agent.name!r} has rate limits or coordination for {unknown}, but no state of "
            f"that name (known: {', '.join(sorted(states)[:12])}); fix the name or add the state"
        )
    for name, spec in states.items():
        for target in spec.routes:
            if target not in states:
                raise StateNotFoundError(
                    f"state {name!r} routes failures to {target!r} (on_error/on_timeout), which is not a state of "
                    f"agent {agent.name!r}; add it or fix the name"
                )
        for target in spec.next_hint:
            if target not in states:
                raise StateNotFoundError(
                    f"state {name!r} declares next={list(spec.next_hint)!r}, but {target!r} is not a state "
                    f"of agent {agent.name!r}; add it or fix the name"
                )


def _in_state_quota(agent: Agent, name: str, gates: list[Any]) -> bool:
    """A QUOTA under a name that is no state, which some state's code names: the spec's shared
    budget consumed in-state with ``ResourceAllocation(name, amount)``, not a misspelt state."""
    from .coordination._quota import Quota

    return (all(isinstance(g, Quota) for g in gates)
            and any(code_mentions(spec.func, name) for spec in agent.states.values()))


def _route_targets(spec: StateSpec) -> list[str]:
    on_error, on_timeout = spec.options.get("on_error"), spec.options.get("on_timeout")
    targets = [on_timeout] if on_timeout else []
    if isinstance(on_error, str):
        targets.append(on_error)
    elif isinstance(on_error, dict):
        targets.extend(on_error.values())
    return targets
