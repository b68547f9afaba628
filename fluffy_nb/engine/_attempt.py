"""One attempt of a state's body, for the scheduler (``_runner``): calling it (an executor, a
timeout), telling a cancel from a body's own CancelledError, which states may run inline
without those layers, what its return value names next, and where a failure for good is
routed (``on_timeout``/``on_error``)."""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any

from ._errors import InvalidStateResultError, StateFailedError, StateNotFoundError, StateTimeoutError

if TYPE_CHECKING:
    from ._agent import Agent
    from ._context import Context
    from ._policies import StateSpec


async def call_body(spec: StateSpec, ctx: Context, executor: Any) -> Any:
    """Await the body of ``spec`` (through ``executor`` when it has one), under its timeout."""
    if spec.timeout is None or getattr(executor, "times_out_itself", False):  # e.g. run time, not queue time
        return await _body(spec, ctx, executor)
    timer = asyncio.timeout(spec.timeout)
    try:
        async with timer:
            return await _body(spec, ctx, executor)
    except TimeoutError as exc:
        if not timer.expired():
            raise  # the body's own TimeoutError
        raise StateTimeoutError(
            f"state {spec.name!r} took longer than its timeout of {spec.timeout}s", spec.name
        ) from exc


async def _body(spec: StateSpec, ctx: Context, executor: Any) -> Any:
    if executor is not None:
        return await executor.run_state(spec, ctx)
    result = spec.func(ctx)
    if inspect.isawaitable(result):
        result = await result
    return result


def plain(spec: StateSpec) -> bool:
    """Whether ``spec`` runs without pool, dependencies, executor or timeout, as an async body."""
    opts = spec.options
    return (spec.resources is None and not spec.dependencies and spec.timeout is None and opts["is_async"]
            and opts.get("executor") is None and not opts.get("remote"))


def cancel_requested() -> bool:
    """Whether the current task was asked to cancel (vs. a body raising CancelledError itself)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def self_cancelled(state: str) -> StateFailedError:
    """The failure of a state whose body raised CancelledError although nothing cancelled it."""
    return StateFailedError(
        f"state {state!r} raised asyncio.CancelledError itself, although nothing cancelled it; "
        "raise an ordinary exception to fail the state, or return None to end its branch", state
    )


def error_route(spec: StateSpec, error: BaseException) -> str | None:
    """The state a failure of ``spec`` goes to: ``on_timeout`` for a timeout, else the first
    ``on_error`` entry whose exception class matches (or ``on_error`` itself when a name)."""
    opts = spec.options
    if isinstance(error, StateTimeoutError) and opts.get("on_timeout"):
        return str(opts["on_timeout"])
    route = opts.get("on_error")
    if isinstance(route, str):
        return route
    if isinstance(route, dict):
        cause = error.__cause__ if isinstance(error, StateTimeoutError) else error
        for kinds, target in route.items():
            if isinstance(error, kinds) or isinstance(cause, kinds):
                return str(target)
    return None


def next_states(agent: Agent, name: str, result: Any) -> tuple[str, ...]:
    """What state ``name`` of ``agent`` returning ``result`` names next: ``()`` for None, the
    names of a name or a list of names (repeats dropped), or a payload fan-out (``_map.Fanout``).

    Raises:
        InvalidStateResultError: ``result`` is none of those.
        StateNotFoundError: it names a state ``agent`` does not have.
    """
    if result is None:
        return ()
    if isinstance(result, str):
        names: tuple[str, ...] = (result,)
    elif isinstance(result, (list, tuple)) and all(isinstance(r, str) for r in result):
        names = tuple(dict.fromkeys(result))
    else:
        from ._map import fanout_of

        fan = fanout_of(agent, name, result)  # Send(...) entries: a payload fan-out
        if fan is not None:
            return fan
        raise InvalidStateResultError(
            f"state {name!r} returned {result!r} ({type(result).__name__}); a state must return "
            "the next state's name, a list of names to run in parallel, or None to end"
        )
    states = agent.states
    for n in names:
        if n not in states:
            known = ", ".join(sorted(states)[:12])
            raise StateNotFoundError(
                f"state {name!r} returned {n!r}, which is not a state of agent {agent.name!r} "
                f"(known: {known}); add it with agent.add_state({n!r}, func) or fix the name"
            )
    return names
