"""Where state bodies run: the ``Executor`` protocol and the default ``LocalExecutor``.

The engine stays the orchestrator whatever the executor: it decides when a state runs,
retries it, times it out, records statuses, events and checkpoints. An executor only runs
ONE attempt of a state's body and hands back what the body returned; anything the body
wrote must be visible in ``ctx`` when ``run_state`` returns (a remote executor applies the
writes it got back from the body to the live ``ctx`` before returning).

A state runs on an executor when it was added with ``executor=<Executor>``, or with
``executor="<name>"``/``remote=True`` and the agent has ``Agent(executor=...)`` of that
name; every other state runs on the event loop as usual.

Cancellation: the engine wraps ``run_state`` in ``asyncio.timeout`` for per-state timeouts
and cancels it on ``cancel_state``/``cancel_all``/run failure. ``run_state`` must let the
``CancelledError`` propagate (after releasing what it submitted).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._registration import definition_key

if TYPE_CHECKING:
    from ._agent import Agent
    from ._context import Context
    from ._policies import StateSpec


@runtime_checkable
class Executor(Protocol):
    """Runs one attempt of a state's body somewhere.

    Attributes:
        name: What ``executor="<name>"`` / ``@state(executor="<name>")`` refers to.

    Optional: ``async def check_state(spec) -> None`` is awaited for every state routed to
    the executor when ``run()`` starts, so a state that can never run there (a resource no
    worker has, a body that cannot be sent) fails before anything runs. ``state_options``
    (a set of names) lists the extra ``add_state`` options the executor reads from
    ``spec.options``; any other unknown option is refused at ``add_state``. With
    ``times_out_itself = True`` the engine does not wrap ``run_state`` in the state's timeout:
    the executor enforces ``spec.timeout`` itself (raising ``StateTimeoutError``), e.g. from
    when the body starts on a cluster rather than from when it was queued there.
    """

    name: str

    async def run_state(self, spec: StateSpec, ctx: Context) -> Any:
        """Run ``spec.func(ctx)`` once; return its result (next state(s) or None)."""
        ...


class LocalExecutor:
    """The default: run the body on the agent's event loop (sync bodies run inline).

    Example:
        >>> agent = Agent("demo", executor=LocalExecutor())
    """

    name = "local"

    async def run_state(self, spec: StateSpec, ctx: Context) -> Any:
        """Call the body and await it if it returned an awaitable."""
        result = spec.func(ctx)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return "LocalExecutor()"


def state_executor(agent: Agent, spec: StateSpec) -> Any:
    """The executor ``spec`` runs on (resolved), or None for the event loop."""
    executor = spec.options.get("executor")
    if executor is None and spec.options.get("remote"):
        executor = agent.executor
    if executor is None:
        return None
    return agent.resolve_executor(executor)


async def check_executors(agent: Agent) -> None:
    """Await ``check_state(spec)`` of each state's executor (when it has one) before a run."""
    key = definition_key(agent)
    cached = agent.definition_cache.get("executors")
    if cached is None or cached[0] != key:  # the states that may have an executor, once per definition
        cached = agent.definition_cache["executors"] = (key, [spec for spec in agent.states.values() if spec.offloaded])
    for spec in cached[1]:
        executor = state_executor(agent, spec)
        check = getattr(executor, "check_state", None)
        if check is not None:
            await check(spec)
