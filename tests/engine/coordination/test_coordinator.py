"""The coordinator: spec entry points, status shape, cleanup of leaked holds, in-state allocation."""

from __future__ import annotations

import asyncio

import pytest

from fluffy_nb.engine import Agent, CoordinationError, ManualClock, StateNotFoundError
from fluffy_nb.engine.coordination import (
    PrimitiveType,
    RateLimitStrategy,
    ResourceAllocation,
    create_coordinated_agent,
    enhance_agent,
)


def test_create_and_enhance_give_agents_with_a_coordinator():
    clock = ManualClock()
    agent = create_coordinated_agent("coordinated_workflow", max_concurrent=2, clock=clock)
    assert isinstance(agent, Agent)
    assert agent.max_concurrent == 2
    assert agent.coordinator.clock is clock
    plain = Agent("my_workflow")
    assert enhance_agent(plain) is plain
    assert plain.coordinator is plain.coordinator


async def test_status_has_the_spec_shape_for_primitives_limiters_and_detector():
    agent = create_coordinated_agent("status")
    agent.add_state_coordination("database_write", PrimitiveType.MUTEX, ttl=30.0)
    agent.add_state_coordination("heavy_process", PrimitiveType.SEMAPHORE, max_count=3)
    agent.add_state_coordination("gpu_task", PrimitiveType.QUOTA, quota_limit=16.0, ttl=3600.0)
    agent.add_state_rate_limit("api_call", max_rate=100.0, strategy=RateLimitStrategy.SLIDING_WINDOW,
                               window_size=60.0)
    status = await agent.get_coordination_status()
    for name in ("database_write", "heavy_process", "gpu_task"):
        entry = status["primitives"][name]
        assert {"state", "owners", "wait_count"} <= set(entry)
    assert status["primitives"]["heavy_process"]["state"] == "free"
    assert status["rate_limiters"]["api_call"]["available"] == 6000
    assert status["deadlock_detector"]["cycle_count"] == 0


async def test_cleanup_drops_a_hold_whose_state_finished_without_releasing():
    agent = create_coordinated_agent("leak")
    lock = agent.add_coordination("lock", PrimitiveType.MUTEX)

    async def forgetful(ctx):
        await lock.acquire(ctx.state_name)  # never released

    agent.add_state("forgetful", forgetful)
    await agent.run()
    assert lock.owners == ["forgetful"]
    assert agent.coordinator.cleanup() == 1
    assert lock.owners == []


async def test_resource_allocation_without_context_finds_the_primitive_by_name():
    agent = create_coordinated_agent("alloc")
    quota = agent.add_coordination("tokens_budget", PrimitiveType.QUOTA, quota_limit=50.0, ttl=60.0)
    async with ResourceAllocation("tokens_budget", 20.0) as alloc:
        assert alloc.primitive is quota
    assert quota.remaining == 30.0
    with pytest.raises(CoordinationError, match="no coordination primitive"):
        async with ResourceAllocation("no_such_budget", 1.0):
            pass


async def test_resource_allocation_holds_a_mutex_for_the_block():
    agent = create_coordinated_agent("alloc_mutex")
    lock = agent.add_coordination("printer", PrimitiveType.MUTEX)
    seen = []

    async def job(ctx):
        async with ResourceAllocation("printer", context=ctx):
            seen.append(lock.owners)

    agent.add_state("job", job)
    await asyncio.wait_for(agent.run(), 5)
    assert seen == [["job"]]
    assert lock.owners == []


def test_unknown_primitive_name_is_a_clear_error():
    agent = create_coordinated_agent("unknown")
    with pytest.raises(StateNotFoundError, match="no coordination primitive 'db'"):
        agent.coordination("db")


async def test_a_waiter_stuck_behind_a_leaked_hold_gets_it_within_cleanup_interval():
    clock = ManualClock()
    agent = create_coordinated_agent("leak_wait", clock=clock)
    agent.coordinator.cleanup_interval = 30.0
    lock = agent.add_coordination("lock", PrimitiveType.MUTEX)
    got_it_at: list[float] = []

    async def forgetful(ctx):
        await lock.acquire(ctx.state_name)  # never released
        return "patient"

    async def patient(ctx):
        async with lock.hold(ctx):
            got_it_at.append(clock.monotonic())

    agent.add_state("forgetful", forgetful)
    agent.add_state("patient", patient)
    run = asyncio.create_task(agent.run())
    await clock.wait_for_sleepers(1)
    assert lock.status()["waiters"] == ["patient"]
    for _ in range(30):
        await clock.advance(1.0)
    await asyncio.wait_for(run, 5)
    assert got_it_at == [30.0]
    assert agent.coordinator.cleaned == 1


async def test_cancelling_the_run_leaves_no_holder_and_no_waiter_behind():
    from fluffy_nb.engine import AgentStatus, ResourcePool, ResourceRequirements, ResourceType

    pool = ResourcePool(total_cpu=4)
    agent = create_coordinated_agent("cancel", resource_pool=pool)
    names = [f"w{i}" for i in range(6)]
    never = asyncio.Event()

    async def start(ctx):
        return list(names)

    async def work(ctx):
        await never.wait()

    agent.add_state("start", start)
    for n in names:
        agent.add_state(n, work, resources=ResourceRequirements(cpu_units=1, resource_types=ResourceType.CPU))
        agent.add_state_coordination(n, PrimitiveType.SEMAPHORE, max_count=2, name="db")
    sem = agent.coordination("db")
    run = asyncio.create_task(agent.run())
    for _ in range(1000):
        if sem.status()["wait_count"] == 2 and len(pool.get_waiting_states()) == 2:
            break
        await asyncio.sleep(0)
    assert len(sem.owners) == 2
    await agent.cancel_all()
    await asyncio.wait_for(run, 5)
    assert agent.status is AgentStatus.CANCELLED
    assert sem.owners == []
    assert sem.status()["wait_count"] == 0
    assert pool.get_state_allocations() == {}
    assert pool.get_waiting_states() == []
