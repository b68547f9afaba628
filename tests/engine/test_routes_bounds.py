"""Routes within bounds: what a run keeps of its routed failures, max_steps, cancellation, a
route's checkpoint that could not be saved, and a forged note read back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fluffy_nb import Agent, AgentStatus, CheckpointError, MaxStepsExceededError, MemoryStore, StateFailedError
from fluffy_nb.engine._routes import rebuilt


@pytest.mark.parametrize("durable", [None, False, True], ids=["no-store", "store", "durable"])
async def test_a_routed_failure_is_kept_only_while_its_state_runs(durable: bool | None) -> None:
    # each route used to add its failure (traceback, frames) to scheduler.routed for good
    # unless a checkpoint was saved: 20,000 routes without a store held 220 MB
    held: list[int] = []

    async def primary(ctx: Any) -> str | None:
        n = ctx.get_state("n", 0)
        ctx.set_state("n", n + 1)
        if n >= 300:
            return None
        raise ConnectionError(f"try {n}")

    async def fallback(ctx: Any) -> str:
        held.append(len(agent.latest_run.scheduler.routed or {}))  # type: ignore[union-attr]
        return "primary"

    store = None if durable is None else MemoryStore()
    agent = Agent("loop_routes", store=store, durable=bool(durable), max_steps=10_000)
    agent.add_state("primary", primary, on_error="fallback")
    agent.add_state("fallback", fallback)
    result = await agent.run(start="primary")
    assert result.status is AgentStatus.COMPLETED
    assert len(held) == 300
    assert set(held) == {1}  # the one in flight, never the earlier ones
    assert not agent.latest_run.scheduler.routed  # type: ignore[union-attr]


async def test_a_run_without_routes_keeps_no_routed_record() -> None:
    async def a(ctx: Any) -> str:
        return "b"

    async def b(ctx: Any) -> None:
        return None

    agent = Agent("plain_chain")
    agent.add_state("a", a, on_error="b")
    agent.add_state("b", b)
    await agent.run(start="a")
    assert agent.latest_run.scheduler.routed is None  # type: ignore[union-attr]


@pytest.mark.parametrize("with_store", [False, True])
async def test_a_state_routing_its_failure_to_itself_stops_at_max_steps(with_store: bool) -> None:
    laps: list[int] = []

    async def flaky(ctx: Any) -> None:
        laps.append(1)
        raise ConnectionError("down")

    store = MemoryStore() if with_store else None
    agent = Agent("self_route", store=store, max_steps=40)
    agent.add_state("flaky", flaky, on_error="flaky")
    with pytest.raises(MaxStepsExceededError, match=r"max_steps.*'flaky'.*routed to 'flaky'"):
        await asyncio.wait_for(agent.run(), 10)
    assert len(laps) == 40
    if store is not None:  # one route row per lap, no more
        assert sum(r.trigger == "route" for r in store.list()) == 39


async def test_a_route_to_a_fallback_and_back_counts_both_states_as_steps() -> None:
    async def primary(ctx: Any) -> None:
        raise ConnectionError("down")

    async def fallback(ctx: Any) -> str:
        return "primary"

    agent = Agent("ladder_loop", max_steps=30)
    agent.add_state("primary", primary, on_error="fallback")
    agent.add_state("fallback", fallback)
    with pytest.raises(MaxStepsExceededError):
        await agent.run(start="primary")
    assert agent.latest_run.steps == 30  # type: ignore[union-attr]


async def test_no_route_is_taken_while_the_run_is_cancelled() -> None:
    waiting = asyncio.Event()
    ran: list[str] = []

    async def worker(ctx: Any) -> None:
        try:
            waiting.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ValueError("cleanup failed") from None

    async def fallback(ctx: Any) -> None:
        ran.append("fallback")

    store = MemoryStore()
    agent = Agent("cancel_routes", store=store, durable=True)
    agent.add_state("worker", worker, on_error="fallback")
    agent.add_state("fallback", fallback)
    task = asyncio.ensure_future(agent.run(start="worker"))
    await waiting.wait()
    await agent.cancel_all()
    result = await task
    assert result.status is AgentStatus.CANCELLED
    assert ran == []
    assert "route" not in [r.trigger for r in store.list()]


async def test_no_route_is_taken_for_a_state_cancelled_on_its_own() -> None:
    waiting = asyncio.Event()
    ran: list[str] = []

    async def fan(ctx: Any) -> list[str]:
        return ["worker", "boss"]

    async def worker(ctx: Any) -> None:
        try:
            waiting.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ValueError("cleanup failed") from None

    async def boss(ctx: Any) -> None:
        await waiting.wait()
        agent.cancel_state("worker")

    async def fallback(ctx: Any) -> None:
        ran.append("fallback")

    agent = Agent("cancel_state_routes")
    agent.add_state("fan", fan)
    agent.add_state("worker", worker, on_error="fallback")
    agent.add_state("boss", boss)
    agent.add_state("fallback", fallback)
    # its cleanup's error is the state's failure, as without on_error; the fallback never starts
    with pytest.raises(StateFailedError, match=r"'worker'.*cleanup failed"):
        await asyncio.wait_for(agent.run(start="fan"), 10)
    assert ran == []


class _FlakyStore(MemoryStore):
    """A store whose next ``fail_next`` puts raise, as a locked database does."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = 0

    def put(self, checkpoint: Any) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("database is locked")
        super().put(checkpoint)


@pytest.mark.parametrize("durable", [False, True])
async def test_a_route_checkpoint_the_store_refuses_fails_the_run_saying_why(durable: bool) -> None:
    store = _FlakyStore()

    async def s1(ctx: Any) -> None:
        store.fail_next = 1  # the route's checkpoint
        raise ConnectionError("model overloaded")

    async def fb(ctx: Any) -> None:
        return None

    agent = Agent("flaky_route", store=store, durable=durable)
    agent.add_state("s1", s1, on_error="fb")
    agent.add_state("fb", fb)
    with pytest.raises(CheckpointError, match="route checkpoint could not be saved") as info:
        await agent.run(start="s1")
    text = str(info.value)
    assert "database is locked" in text
    assert ("durability was asked for" in text) is durable
    assert ("history in the store would have a hole" in text) is not durable


async def test_a_non_durable_interval_checkpoint_the_store_refuses_says_the_same() -> None:
    store = _FlakyStore()
    store.fail_next = 1
    gate = asyncio.Event()

    async def slow(ctx: Any) -> None:
        await gate.wait()

    agent = Agent("flaky_interval", store=store, checkpoint_interval=0.001)
    agent.add_state("slow", slow)
    with pytest.raises(CheckpointError, match=r"interval checkpoint could not be saved.*would have a hole"):
        await asyncio.wait_for(agent.run(), 10)


def test_a_forged_note_with_long_arguments_is_refused_naming_the_state() -> None:
    note = {"from": "primary", "type": "ConnectionError", "message": "down", "args": ["x" * 4001]}
    with pytest.raises(CheckpointError, match=r"'fallback'.*args"):
        rebuilt("fallback", note)
    split = {**note, "args": ["x" * 2000, "y" * 2001]}  # the writer bounds them together
    with pytest.raises(CheckpointError, match="'fallback'"):
        rebuilt("fallback", split)
    fine = {**note, "args": ["x" * 2000, "y" * 2000]}
    assert rebuilt("fallback", fine).args == ("x" * 2000, "y" * 2000)
