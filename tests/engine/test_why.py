"""Why a state is not running: every kind of wait is named, with who holds what it needs."""

from __future__ import annotations

import asyncio
from typing import Any

from _flows import fan, holding, many_waits, noop
from _wait import until

from fluffy_nb import (
    Agent,
    ManualClock,
    PrimitiveType,
    ResourcePool,
    ResourceRequirements,
)
from fluffy_nb.engine._events import StateBlocked


async def waiting_reason(agent: Agent, state: str, **run_kwargs: Any) -> tuple[Any, Any]:
    handle = agent.start(**run_kwargs)
    await until(lambda: state in handle.run.snapshot().waits, f"{state} waits")
    return handle, handle.run.snapshot().waits[state]


async def test_a_state_waiting_for_cpu_names_the_shortfall_and_the_holder() -> None:
    gate = asyncio.Event()
    agent = Agent("cpu", resource_pool=ResourcePool(total_cpu=1))
    fan(agent, ["big", "small"])
    agent.add_state("big", holding(gate), resources=ResourceRequirements(cpu_units=1))
    agent.add_state("small", noop, resources=ResourceRequirements(cpu_units=1))
    blocked: list[StateBlocked] = []
    agent.events.subscribe(lambda e: blocked.append(e) if isinstance(e, StateBlocked) else None)
    handle, reason = await waiting_reason(agent, "small")
    assert reason.kind == "resource"
    assert "CPU 1 wanted, 0 free" in reason.detail
    assert reason.holders == ("big",)
    assert handle.run.why("small") == "small: waits for resources: CPU 1 wanted, 0 free (held by big)"
    assert (blocked[-1].state, blocked[-1].kind, blocked[-1].holders) == ("small", "resource", ("big",))
    gate.set()
    await handle


async def test_a_state_behind_a_mutex_names_the_holder() -> None:
    gate = asyncio.Event()
    agent = Agent("mutex")
    fan(agent, ["writer", "reader"])
    agent.add_state("writer", holding(gate))
    agent.add_state("reader", noop)
    agent.add_state_coordination("writer", PrimitiveType.MUTEX, name="db")
    agent.add_state_coordination("reader", PrimitiveType.MUTEX, name="db")
    handle, reason = await waiting_reason(agent, "reader")
    assert (reason.kind, reason.holders) == ("lock", ("writer",))
    assert "mutex 'db' held by ['writer']" in reason.detail
    gate.set()
    await handle


async def test_a_rate_limited_state_says_when_the_next_admission_comes() -> None:
    clock = ManualClock()
    agent = Agent("limited", clock=clock)
    agent.add_state("call", noop)
    agent.add_state_rate_limit("call", max_rate=0.5, burst_size=1)
    await agent.run()  # spends the one token
    handle, reason = await waiting_reason(agent, "call")
    assert reason.kind == "rate_limit"
    assert "next admission in 2.00s" in reason.detail
    await clock.advance(2.1)
    await asyncio.wait_for(handle, 5)


async def test_dependency_join_slot_retry_and_person_waits_are_named() -> None:
    agent, gate, clock = many_waits("go on?")
    handle = agent.start(start="start")
    await until(lambda: {"after", "queued", "ask", "flaky"} <= set(handle.run.snapshot().waits), "all wait")
    waits = handle.run.snapshot().waits
    assert waits["after"].kind == "dependency"
    assert waits["after"].detail == "dependencies: slow has not completed (running)"
    assert waits["queued"].kind == "slot"
    assert waits["ask"].kind == "person"
    assert waits["flaky"].kind == "retry"
    assert waits["flaky"].detail == "attempt 2 in 30.00s"
    text = handle.run.why()
    assert "after: dependencies: slow has not completed" in text
    agent.answer(agent.pending_requests()[0].request_id, "yes")
    await clock.advance(30)
    await until(lambda: "merge" in handle.run.snapshot().waits, "merge waits for slow")
    merge = handle.run.snapshot().waits["merge"]
    assert (merge.kind, merge.holders) == ("join", ("slow",))
    gate.set()
    result = await asyncio.wait_for(handle, 5)
    assert result.state_runs["merge"] == 1
    assert handle.run.why("merge") == "merge: not waiting (status completed)"
