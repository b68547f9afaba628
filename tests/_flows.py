"""Small state builders the wait tests share (engine and notebook views of the same waits)."""

from __future__ import annotations

import asyncio
from typing import Any

from fluffy_nb import Agent, DependencyType, ManualClock, ProgrammaticResponder, RetryPolicy


def fan(agent: Agent, names: list[str]) -> None:
    """Add a ``start`` state that fans out to ``names``."""

    async def start(ctx: Any) -> list[str]:
        return list(names)

    agent.add_state("start", start, next=names)


def dispatching(agent: Agent, names: list[str]) -> None:
    """Add a ``dispatch`` state that fans out to ``names``, and each of them as a state that ends at once."""

    async def dispatch(ctx: Any) -> list[str]:
        return names

    agent.add_state("dispatch", dispatch)
    for name in names:
        agent.add_state(name, noop)


def holding(gate: asyncio.Event, then: str | None = None) -> Any:
    """A state body that waits for ``gate``, then goes on to ``then``."""

    async def body(ctx: Any) -> str | None:
        await gate.wait()
        return then

    return body


async def noop(ctx: Any) -> None:
    """A state that does nothing and ends its branch."""
    return None


def many_waits(prompt: str = "go on?") -> tuple[Agent, asyncio.Event, ManualClock]:
    """An agent whose states wait in every way at once: a dependency (``after`` on ``slow``), a
    join (``merge``), a free slot (``queued``, max_concurrent=3), a retry delay of 30 s
    (``flaky``) and a person (``ask``). ``gate`` lets ``slow`` finish; time is ``clock``."""
    gate = asyncio.Event()
    clock = ManualClock()
    agent = Agent("many", clock=clock, max_concurrent=3, responder=ProgrammaticResponder())

    async def ask(ctx: Any) -> None:
        await ctx.human_in_the_loop(prompt)

    async def flaky(ctx: Any) -> None:
        if ctx.attempt == 1:
            raise ConnectionError("busy")

    async def quick(ctx: Any) -> str:
        return "merge"

    fan(agent, ["slow", "quick", "ask", "flaky", "queued"])
    agent.add_state("slow", holding(gate, "merge"))
    agent.add_state("quick", quick)
    agent.add_state("merge", noop)
    agent.add_state("ask", ask)
    agent.add_state("flaky", flaky, retry_policy=RetryPolicy(max_retries=1, initial_delay=30, jitter=False))
    agent.add_state("queued", noop)
    agent.add_state("after", noop, dependencies={"slow": DependencyType.REQUIRED})
    return agent, gate, clock
