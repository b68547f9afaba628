"""Deadlocks are reported with their cycle and end the wait, never hang."""

from __future__ import annotations

import asyncio

import pytest

from fluffy_nb.engine import Agent, DeadlockError, ManualClock, StateFailedError
from fluffy_nb.engine.coordination import DeadlockDetector, Mutex, PrimitiveType, Semaphore, create_coordinated_agent


def opposite_order_agent() -> Agent:
    """Two states taking the same two locks in opposite order, each pausing while holding one."""
    agent = create_coordinated_agent("bank")
    first = agent.add_coordination("accounts", PrimitiveType.MUTEX)
    second = agent.add_coordination("ledger", PrimitiveType.MUTEX)
    a_holds, b_holds = asyncio.Event(), asyncio.Event()

    async def start(ctx):
        return ["transfer", "audit"]

    async def transfer(ctx):
        async with first.hold(ctx):
            a_holds.set()
            await b_holds.wait()
            async with second.hold(ctx):
                return None

    async def audit(ctx):
        async with second.hold(ctx):
            b_holds.set()
            await a_holds.wait()
            async with first.hold(ctx):
                return None

    agent.add_state("start", start)
    agent.add_state("transfer", transfer)
    agent.add_state("audit", audit)
    return agent


async def test_two_states_holding_what_the_other_waits_for_are_reported_as_a_deadlock_with_the_cycle():
    agent = opposite_order_agent()
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(agent.run(), 5)  # the run ends: nobody is left hanging
    err = info.value.__cause__
    assert isinstance(err, DeadlockError)
    assert sorted(err.cycle) == ["audit", "transfer"]
    assert "'accounts'" in str(err)
    assert "'ledger'" in str(err)
    assert "same order" in str(err)
    status = await agent.get_coordination_status()
    detector = status["deadlock_detector"]
    assert detector["cycle_count"] == 1
    assert sorted(detector["cycles"][0]) == ["audit", "transfer"]
    assert status["primitives"]["accounts"]["owners"] == []
    assert status["primitives"]["ledger"]["owners"] == []


async def test_a_state_catching_the_deadlock_lets_the_other_finish():
    agent = create_coordinated_agent("retreat")
    first = agent.add_coordination("a", PrimitiveType.MUTEX)
    second = agent.add_coordination("b", PrimitiveType.MUTEX)
    a_holds, b_holds = asyncio.Event(), asyncio.Event()
    outcome: dict[str, str] = {}

    async def start(ctx):
        return ["left", "right"]

    async def take(ctx, mine, theirs, mine_set, theirs_set):
        try:
            async with mine.hold(ctx):
                mine_set.set()
                await theirs_set.wait()
                async with theirs.hold(ctx):
                    outcome[ctx.state_name] = "both"
        except DeadlockError as exc:
            outcome[ctx.state_name] = f"gave up: {sorted(exc.cycle)}"

    async def left(ctx):
        await take(ctx, first, second, a_holds, b_holds)

    async def right(ctx):
        await take(ctx, second, first, b_holds, a_holds)

    agent.add_state("start", start)
    agent.add_state("left", left)
    agent.add_state("right", right)
    await asyncio.wait_for(agent.run(), 5)
    assert sorted(outcome.values()) == ["both", "gave up: ['left', 'right']"]


async def test_taking_a_held_mutex_again_is_a_deadlock_of_one():
    agent = create_coordinated_agent("self")
    lock = agent.add_coordination("lock", PrimitiveType.MUTEX)

    async def twice(ctx):
        async with lock.hold(ctx), lock.hold(ctx):
            return None

    agent.add_state("twice", twice)
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(agent.run(), 5)
    assert info.value.__cause__.cycle == ["twice"]


async def test_waiting_for_a_running_holder_is_not_a_deadlock():
    detector = DeadlockDetector()
    m1, m2 = Mutex("m1"), Mutex("m2")
    m1.detector = m2.detector = detector
    assert m1.try_acquire("a")
    assert m2.try_acquire("b")
    waiting = asyncio.create_task(m1.acquire("b"))  # b waits for a, but a is not waiting: fine
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()
    assert detector.cycle_count == 0
    assert detector.wait_for_graph().has_edge("b", "a")
    m1.release("a")
    await asyncio.wait_for(waiting, 5)


async def test_a_ttl_hold_in_the_cycle_is_not_a_deadlock_because_it_expires():
    clock = ManualClock()
    detector = DeadlockDetector(clock, detection_interval=None)
    m1 = Mutex("m1", ttl=5.0, clock=clock)
    m2 = Mutex("m2", clock=clock)
    m1.detector = m2.detector = detector
    assert m1.try_acquire("a")
    assert m2.try_acquire("b")
    a_waits = asyncio.create_task(m2.acquire("a"))
    for _ in range(5):
        await asyncio.sleep(0)
    b_waits = asyncio.create_task(m1.acquire("b"))  # a cycle, but a's hold on m1 expires at t=5
    await clock.wait_for_sleepers(1)
    assert detector.cycle_count == 0
    await clock.advance(5.0)
    await asyncio.wait_for(b_waits, 5)
    assert m1.owners == ["b"]
    m2.release("b")
    await asyncio.wait_for(a_waits, 5)


async def test_semaphore_cycle_is_a_deadlock_only_when_every_holder_waits():
    detector = DeadlockDetector()
    sem = Semaphore("slots", 2)
    lock = Mutex("lock")
    sem.detector = lock.detector = detector
    assert sem.try_acquire("a")
    assert sem.try_acquire("b")
    assert lock.try_acquire("c")
    a_waits = asyncio.create_task(lock.acquire("a"))  # a waits for c
    c_waits = asyncio.create_task(sem.acquire("c"))  # c waits for a or b; b still runs
    for _ in range(5):
        await asyncio.sleep(0)
    assert detector.cycle_count == 0
    assert not c_waits.done()
    assert detector.detect()  # the graph has the a -> c -> a cycle, yet b can free a slot
    sem.release("b")
    await asyncio.wait_for(c_waits, 5)
    lock.release("c")
    await asyncio.wait_for(a_waits, 5)


async def test_detector_settings_and_status_are_reachable_as_in_the_spec():
    agent = create_coordinated_agent("cfg")
    agent.coordinator.deadlock_detector.detection_interval = 0.5
    agent.coordinator.deadlock_detector.max_cycles = 3
    agent.coordinator.cleanup_interval = 60.0
    status = await agent.get_coordination_status()
    assert status["deadlock_detector"]["cycle_count"] == 0
    assert status["deadlock_detector"]["detection_interval"] == 0.5
    assert repr(agent.coordinator.deadlock_detector).startswith("<DeadlockDetector cycles=0")
    assert agent.coordinator.deadlock_detector.statistics().cycle_count == 0
