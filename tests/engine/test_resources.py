"""ResourcePool: states wait for what they asked, by priority, with aging, preemption and quotas."""

from __future__ import annotations

import asyncio

import psutil
import pytest
from _wait import until

from fluffy_nb.engine import (
    Agent,
    ConfigurationError,
    ManualClock,
    Priority,
    ResourceError,
    ResourcePool,
    ResourceRequirements,
    ResourceType,
    StateFailedError,
    StateStatus,
)
from fluffy_nb.engine._events import StateBlocked, StateFinished, StateStarted


def cpu(units: float, priority: Priority = Priority.NORMAL, preemptible: bool = False) -> ResourceRequirements:
    """A request for CPU only (so other resource types never interfere)."""
    return ResourceRequirements(cpu_units=units, resource_types=ResourceType.CPU, priority=priority,
                                preemptible=preemptible)




async def test_request_larger_than_pool_fails_at_run_start_naming_state_resource_and_total():
    ran = []
    agent = Agent("big", resource_pool=ResourcePool(total_cpu=2))

    async def train(ctx):
        ran.append("train")

    agent.add_state("train", train, resources=cpu(4))
    with pytest.raises(ResourceError) as info:
        await agent.run()
    msg = str(info.value)
    assert "'train'" in msg
    assert "4" in msg
    assert "CPU" in msg
    assert "only 2" in msg
    assert ran == []


async def test_cpu_request_that_does_not_fit_waits_blocked_then_runs_when_holder_finishes(record):
    pool = ResourcePool(total_cpu=2)
    agent = Agent("fit", resource_pool=pool)
    log = record(agent)
    release = asyncio.Event()

    async def start(ctx):
        return ["holder", "waiter"]

    async def holder(ctx):
        await release.wait()

    async def waiter(ctx):
        return None

    agent.add_state("start", start)
    agent.add_state("holder", holder, resources=cpu(2))
    agent.add_state("waiter", waiter, resources=cpu(1.5))
    run = asyncio.create_task(agent.run())
    await until(lambda: pool.get_waiting_states() == ["waiter"], "waiter queued for the pool")
    assert agent.state_metadata["waiter"].status is StateStatus.BLOCKED
    assert log.of(StateBlocked, "waiter")
    assert not log.of(StateStarted, "waiter")
    assert pool.get_usage_stats()[ResourceType.CPU].current_usage == 2.0
    assert pool.get_state_allocations() == {"holder": {ResourceType.CPU: 2.0}}

    release.set()
    await asyncio.wait_for(run, 5)
    order = [(type(e).__name__, e.state) for e in log if isinstance(e, (StateStarted, StateFinished))]
    assert order.index(("StateFinished", "holder")) < order.index(("StateStarted", "waiter"))
    assert agent.state_metadata["waiter"].status is StateStatus.COMPLETED
    stats = pool.get_usage_stats()[ResourceType.CPU]
    assert (stats.current_usage, stats.peak_usage, stats.available) == (0.0, 2.0, 2.0)
    assert pool.statistics().waited == 1


async def test_waiting_states_are_admitted_highest_priority_first():
    pool = ResourcePool(total_cpu=1, aging_interval=None)
    agent = Agent("prio", resource_pool=pool)
    release = asyncio.Event()
    order: list[str] = []

    async def start(ctx):
        return ["holder", "low", "normal", "high"]

    async def holder(ctx):
        await release.wait()

    async def work(ctx):
        order.append(ctx.state_name)

    agent.add_state("start", start)
    agent.add_state("holder", holder, resources=cpu(1))
    agent.add_state("low", work, resources=cpu(1, Priority.LOW))
    agent.add_state("normal", work, resources=cpu(1, Priority.NORMAL))
    agent.add_state("high", work, resources=cpu(1, Priority.HIGH))
    run = asyncio.create_task(agent.run())
    await until(lambda: len(pool.get_waiting_states()) == 3, "three waiters")
    assert pool.get_waiting_states() == ["high", "normal", "low"]
    release.set()
    await asyncio.wait_for(run, 5)
    assert order == ["high", "normal", "low"]


async def test_aging_lets_a_long_waiting_low_priority_state_go_before_a_new_high_one():
    clock = ManualClock()
    pool = ResourcePool(total_cpu=1, aging_interval=1.0, clock=clock)
    admitted: list[str] = []

    async def take(owner: str, priority: Priority) -> None:
        await pool.acquire(owner, cpu(1, priority))
        admitted.append(owner)

    assert pool.try_acquire("holder", cpu(1))
    low = asyncio.create_task(take("low", Priority.LOW))
    await until(lambda: pool.get_waiting_states() == ["low"], "low waits")
    await clock.advance(5.0)  # low has aged to an effective priority of 0 + 5
    high = asyncio.create_task(take("high", Priority.HIGH))
    await until(lambda: len(pool.get_waiting_states()) == 2, "high waits too")
    assert pool.get_waiting_states() == ["low", "high"]
    pool.release("holder")
    await until(lambda: admitted == ["low"], "low admitted first")
    pool.release("low")
    await asyncio.wait_for(asyncio.gather(low, high), 5)
    assert admitted == ["low", "high"]


async def test_without_aging_a_new_high_priority_state_goes_first():
    pool = ResourcePool(total_cpu=1, aging_interval=None)
    admitted: list[str] = []

    async def take(owner: str, priority: Priority) -> None:
        await pool.acquire(owner, cpu(1, priority))
        admitted.append(owner)
        pool.release(owner)

    assert pool.try_acquire("holder", cpu(1))
    tasks = [asyncio.create_task(take("low", Priority.LOW))]
    await until(lambda: len(pool.get_waiting_states()) == 1, "low waits")
    tasks.append(asyncio.create_task(take("high", Priority.HIGH)))
    await until(lambda: len(pool.get_waiting_states()) == 2, "high waits")
    pool.release("holder")
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert admitted == ["high", "low"]


def _preemption_agent(enable: bool):
    pool = ResourcePool(total_cpu=1, enable_preemption=enable, aging_interval=None)
    agent = Agent("preempt", resource_pool=pool)
    seen: dict[str, list] = {"batch_starts": [], "urgent_saw_batch_running": []}
    batch_running = asyncio.Event()
    batch_may_finish = asyncio.Event()
    urgent_done = asyncio.Event()

    async def start(ctx):
        return ["batch", "trigger"]

    running: list[bool] = [False]

    async def batch(ctx):
        seen["batch_starts"].append(ctx.attempt)
        running[0] = True
        batch_running.set()
        try:
            if not urgent_done.is_set():
                await batch_may_finish.wait()
        finally:
            running[0] = False

    async def trigger(ctx):
        await batch_running.wait()
        return "urgent"

    async def urgent(ctx):
        seen["urgent_saw_batch_running"].append(running[0])  # (no state names here: they join the graph)
        urgent_done.set()

    agent.add_state("start", start)
    agent.add_state("batch", batch, resources=cpu(1, Priority.LOW, preemptible=True))
    agent.add_state("trigger", trigger)
    agent.add_state("urgent", urgent, resources=cpu(1, Priority.HIGH))
    return agent, pool, seen, batch_may_finish


async def test_waiting_high_priority_state_preempts_a_preemptible_low_one_which_is_requeued():
    agent, pool, seen, _ = _preemption_agent(enable=True)
    await asyncio.wait_for(agent.run(), 5)
    assert len(seen["batch_starts"]) == 2  # cancelled once, then ran again to the end
    assert seen["urgent_saw_batch_running"] == [False]
    assert pool.statistics().preemptions == 1
    assert agent.state_metadata["batch"].status is StateStatus.COMPLETED
    assert agent.state_metadata["urgent"].status is StateStatus.COMPLETED


async def test_without_preemption_the_high_priority_state_waits_for_the_holder():
    agent, pool, seen, batch_may_finish = _preemption_agent(enable=False)
    run = asyncio.create_task(agent.run())
    await until(lambda: pool.get_waiting_states() == ["urgent"], "urgent waits")
    assert agent.state_metadata["batch"].status is StateStatus.RUNNING
    assert agent.state_metadata["urgent"].status is StateStatus.BLOCKED
    batch_may_finish.set()
    await asyncio.wait_for(run, 5)
    assert len(seen["batch_starts"]) == 1
    assert pool.statistics().preemptions == 0


async def test_group_quota_caps_what_matching_states_hold_at_once():
    pool = ResourcePool(total_cpu=8, enable_quotas=True)
    pool.set_quota("chunk_", ResourceType.CPU, 2)
    agent = Agent("quota", resource_pool=pool)
    inside, peak = 0, 0
    gate = asyncio.Event()

    async def start(ctx):
        return [f"chunk_{i}" for i in range(5)]

    async def chunk(ctx):
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await gate.wait()
        inside -= 1

    agent.add_state("start", start)
    for i in range(5):
        agent.add_state(f"chunk_{i}", chunk, resources=cpu(1))
    run = asyncio.create_task(agent.run())
    await until(lambda: len(pool.get_waiting_states()) == 3, "three chunks over quota wait")
    assert inside == 2
    assert pool.get_usage_stats()[ResourceType.CPU].available == 6.0  # the pool had room; the quota did not
    gate.set()
    await asyncio.wait_for(run, 5)
    assert peak == 2
    assert agent.completion_counts["chunk_4"] == 1


async def test_request_larger_than_its_quota_fails_at_run_start():
    pool = ResourcePool(total_cpu=8, enable_quotas=True)
    pool.set_quota("gpu_job", ResourceType.CPU, 2)
    agent = Agent("q", resource_pool=pool)
    agent.add_state("gpu_job", lambda ctx: None, resources=cpu(3))
    with pytest.raises(ResourceError, match="quota 'gpu_job' allows only 2"):
        await agent.run()


def test_set_quota_needs_quotas_enabled_and_one_resource_type():
    with pytest.raises(ConfigurationError, match="enable_quotas"):
        ResourcePool().set_quota("x", ResourceType.CPU, 1)
    with pytest.raises(ConfigurationError, match="one ResourceType"):
        ResourcePool(enable_quotas=True).set_quota("x", ResourceType.ALL, 1)


async def test_a_failing_state_gives_its_resources_back():
    pool = ResourcePool(total_cpu=1)
    agent = Agent("fail", resource_pool=pool)

    async def boom(ctx):
        raise RuntimeError("boom")

    agent.add_state("boom", boom, resources=cpu(1))
    with pytest.raises(StateFailedError):
        await agent.run()
    assert pool.get_state_allocations() == {}
    assert pool.get_usage_stats()[ResourceType.CPU].current_usage == 0.0


async def test_cancelled_waiter_leaves_the_queue_and_the_next_one_is_admitted():
    pool = ResourcePool(total_cpu=1, aging_interval=None)
    assert pool.try_acquire("holder", cpu(1))
    first = asyncio.create_task(pool.acquire("first", cpu(1)))
    second = asyncio.create_task(pool.acquire("second", cpu(1)))
    await until(lambda: len(pool.get_waiting_states()) == 2, "two waiters")
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert pool.get_waiting_states() == ["second"]
    assert pool.statistics().waiting == 1
    assert "waiting=1" in repr(pool)
    pool.release("holder")
    await asyncio.wait_for(second, 5)
    assert list(pool.get_state_allocations()) == ["second"]


def test_pool_from_machine_matches_psutil_and_reads_well():
    pool = ResourcePool.from_machine(total_io=50)
    stats = pool.get_usage_stats()
    assert stats[ResourceType.CPU].total == float(psutil.cpu_count(logical=True))
    assert stats[ResourceType.MEMORY].total == pytest.approx(psutil.virtual_memory().total / 2**20, rel=0.01)
    assert stats[ResourceType.IO].total == 50
    assert "CPU=0/" in repr(pool)
    assert "waiting=0" in repr(pool)
    s = pool.statistics()
    assert (s.admitted, s.waiting, s.preemptions) == (0, 0, 0)


def test_bad_pool_and_requirement_values_are_rejected():
    with pytest.raises(ConfigurationError, match="total_cpu"):
        ResourcePool(total_cpu=-1)
    with pytest.raises(ConfigurationError, match="memory_mb"):
        ResourceRequirements(memory_mb=-5)
