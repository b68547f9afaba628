"""Coordination primitives govern real runs: semaphore, mutex, barrier, lease, quota."""

from __future__ import annotations

import asyncio

import pytest
from _wait import until

from fluffy_nb.engine import (
    Agent,
    ConfigurationError,
    CoordinationError,
    ManualClock,
    StateFailedError,
    StateStatus,
)
from fluffy_nb.engine._events import StateBlocked
from fluffy_nb.engine.coordination import (
    Barrier,
    Lease,
    Mutex,
    PrimitiveType,
    Quota,
    ResourceAllocation,
    Semaphore,
    create_coordinated_agent,
    enhance_agent,
)


def fan_out(agent: Agent, names: list[str]) -> None:
    """A start state that runs ``names`` in parallel."""

    async def start(ctx):
        return list(names)

    agent.add_state("start", start)


async def test_semaphore_never_exceeds_three_holders(record):
    agent = create_coordinated_agent("sem")
    log = record(agent)
    names = [f"w{i}" for i in range(12)]
    inside, peak = 0, 0
    let_go = asyncio.Event()

    async def work(ctx):
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await let_go.wait()
        for _ in range(3):
            await asyncio.sleep(0)
        inside -= 1

    fan_out(agent, names)
    for n in names:
        agent.add_state(n, work)
        agent.add_state_coordination(n, PrimitiveType.SEMAPHORE, max_count=3, name="heavy")
    run = asyncio.create_task(agent.run())
    await until(lambda: agent.coordination("heavy").status()["wait_count"] == 9, "nine wait")
    assert inside == 3
    status = (await agent.get_coordination_status())["primitives"]["heavy"]
    assert len(status["owners"]) == 3
    assert status["state"] == "contended"
    blocked = [n for n in names if agent.state_metadata[n].status is StateStatus.BLOCKED]
    assert len(blocked) == 9
    assert len(log.of(StateBlocked)) == 9
    let_go.set()
    await asyncio.wait_for(run, 5)
    assert peak == 3
    assert all(agent.completion_counts[n] == 1 for n in names)
    stats = agent.coordination("heavy").statistics()
    assert (stats.acquisitions, stats.peak_holders, stats.contended, stats.holders) == (12, 3, 9, 0)


async def test_mutex_serialises_states_sharing_it():
    agent = Agent("mutex")
    names = [f"writer{i}" for i in range(6)]
    inside, overlaps, order = 0, 0, []

    async def write(ctx):
        nonlocal inside, overlaps
        inside += 1
        overlaps += inside > 1
        order.append(ctx.state_name)
        for _ in range(5):  # give any other writer every chance to barge in
            await asyncio.sleep(0)
        inside -= 1

    fan_out(agent, names)
    for n in names:
        agent.add_state(n, write)
        agent.add_state_coordination(n, PrimitiveType.MUTEX, name="db")
    await asyncio.wait_for(agent.run(), 5)
    assert overlaps == 0
    assert sorted(order) == sorted(names)
    assert agent.coordination("db").statistics().peak_holders == 1


async def test_a_barrier_of_more_states_than_cpus_holds_no_cpu_while_it_waits():
    """Five states that each ask 1 CPU of a 2-CPU pool (every Agent() has a machine pool now) and
    meet at a barrier of 5: the first two held their CPU at the barrier, the other three waited
    for a CPU to arrive, and the run hung. The barrier is passed before the pool."""
    from fluffy_nb.engine import ResourcePool, ResourceRequirements

    agent = Agent("sync", resource_pool=ResourcePool(total_cpu=2))
    names = [f"chunk_{i}" for i in range(5)]
    ran: list[str] = []
    inside = {"now": 0, "peak": 0}

    async def start(ctx):
        return ["chunk_0", "chunk_1", "chunk_2", "chunk_3", "chunk_4"]

    async def chunk(ctx):
        inside["now"] += 1
        inside["peak"] = max(inside["peak"], inside["now"])
        for _ in range(3):
            await asyncio.sleep(0)
        inside["now"] -= 1
        ran.append(ctx.state_name)

    agent.add_state("start", start)
    for name in names:
        agent.add_state(name, chunk, resources=ResourceRequirements(cpu_units=1.0))
        agent.add_state_coordination(name, PrimitiveType.BARRIER, max_count=5, name="sync")
    await asyncio.wait_for(agent.run(), 10)
    assert sorted(ran) == names
    assert inside["peak"] == 2  # past the barrier, two at a time as the CPUs allow


async def test_barrier_releases_all_arrivals_at_once():
    agent = Agent("barrier")
    passed: list[str] = []
    late_go = asyncio.Event()

    async def chunk(ctx):
        passed.append(ctx.state_name)

    async def late(ctx):
        await late_go.wait()
        return "c3"

    fan_out(agent, ["c0", "c1", "c2", "late"])
    agent.add_state("late", late)
    for n in ["c0", "c1", "c2", "c3"]:
        agent.add_state(n, chunk)
        agent.add_state_coordination(n, PrimitiveType.BARRIER, max_count=4, name="merge")
    run = asyncio.create_task(agent.run())
    barrier = agent.coordination("merge")
    await until(lambda: barrier.status()["wait_count"] == 3, "three arrived")
    for _ in range(20):
        await asyncio.sleep(0)
    assert passed == []  # nobody passes before the fourth arrives
    late_go.set()
    await until(lambda: len(passed) == 4, "all four passed")
    assert barrier.generation == 1
    assert barrier.status()["wait_count"] == 0
    await asyncio.wait_for(run, 5)
    assert sorted(passed) == ["c0", "c1", "c2", "c3"]


def spec_barrier_agent(max_count: int, clock: ManualClock | None = None) -> tuple[Agent, list[str]]:
    """The spec's example: five parallel chunks each return "merge_results", guarded by a barrier."""
    agent = create_coordinated_agent("spec_barrier", clock=clock)
    order: list[str] = []
    agent.add_state_coordination("merge_results", PrimitiveType.BARRIER, max_count=max_count, wait_timeout=30.0)

    async def process_chunk(ctx):
        for _ in range(int(ctx.state_name[-1])):  # finish at different times
            await asyncio.sleep(0)
        order.append(ctx.state_name)
        return "merge_results"

    async def merge_results(ctx):
        order.append(ctx.state_name)

    fan_out(agent, [f"process_chunk_{i}" for i in range(5)])
    for i in range(5):
        agent.add_state(f"process_chunk_{i}", process_chunk)
    agent.add_state("merge_results", merge_results)
    return agent, order


async def test_spec_barrier_example_merges_once_after_all_five_chunks_arrive():
    agent, order = spec_barrier_agent(5)
    await asyncio.wait_for(agent.run(), 5)
    assert order[-1] == "merge_results"
    assert order.count("merge_results") == 1
    assert sorted(order[:-1]) == [f"process_chunk_{i}" for i in range(5)]
    assert agent.coordination("merge_results").generation == 1


async def test_barrier_expecting_more_arrivals_than_routes_times_out_naming_the_count():
    clock = ManualClock()
    agent, order = spec_barrier_agent(6, clock)
    run = asyncio.create_task(agent.run())
    await until(lambda: agent.coordination("merge_results").status()["wait_count"] == 1, "merge waits")
    assert "merge_results" not in order
    await clock.advance(30.0)
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(run, 5)
    assert "only 5 of 6 arrived" in str(info.value.__cause__)


async def test_barrier_wait_timeout_fails_the_run_with_coordination_error():
    clock = ManualClock()
    agent = Agent("barrier_timeout", clock=clock)
    fan_out(agent, ["a", "b"])
    for n in ["a", "b"]:
        agent.add_state(n, lambda ctx: None)
        agent.add_state_coordination(n, PrimitiveType.BARRIER, max_count=3, wait_timeout=5.0, name="sync")
    run = asyncio.create_task(agent.run())
    await until(lambda: agent.coordination("sync").status()["wait_count"] == 2, "two arrived")
    await clock.advance(4.9)
    assert not run.done()
    await clock.advance(0.2)
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(run, 5)
    cause = info.value.__cause__
    assert isinstance(cause, CoordinationError)
    assert "'sync'" in str(cause)
    assert "only 2 of 3 arrived" in str(cause)


async def test_lease_expires_after_ttl_and_is_taken_over():
    clock = ManualClock()
    agent = Agent("lease", clock=clock)
    finish_a = asyncio.Event()
    b_started_at: list[float] = []

    async def a(ctx):
        await finish_a.wait()

    async def b(ctx):
        b_started_at.append(clock.monotonic())

    fan_out(agent, ["a", "b"])
    agent.add_state("a", a)
    agent.add_state("b", b)
    lease = agent.add_state_coordination("a", PrimitiveType.LEASE, ttl=10.0, name="batch")
    agent.add_state_coordination("b", PrimitiveType.LEASE, ttl=10.0, name="batch")
    run = asyncio.create_task(agent.run())
    await until(lambda: lease.status()["wait_count"] == 1, "b waits for the lease")
    assert lease.owners == ["a"]
    await clock.advance(9.9)
    assert b_started_at == []
    assert agent.state_metadata["b"].status is StateStatus.BLOCKED
    await clock.advance(0.2)
    await until(lambda: b_started_at, "b took the lease over")
    assert b_started_at[0] == pytest.approx(10.0)
    assert agent.state_metadata["a"].status is StateStatus.RUNNING  # a still runs, without the lease
    assert not lease.holds("a")
    assert lease.statistics().expirations == 1
    finish_a.set()
    await asyncio.wait_for(run, 5)


async def test_lease_renewed_in_time_is_kept():
    clock = ManualClock()
    lease = Lease("job", ttl=10.0, clock=clock)
    assert lease.try_acquire("a")
    await clock.advance(8.0)
    assert lease.renew("a")
    await clock.advance(8.0)
    assert lease.holds("a")
    assert not lease.try_acquire("b")
    await clock.advance(2.5)
    assert not lease.holds("a")
    assert lease.try_acquire("b")
    assert not lease.renew("a")


async def test_mutex_ttl_auto_releases_a_forgotten_hold():
    clock = ManualClock()
    mutex = Mutex("db", ttl=30.0, clock=clock)
    assert mutex.try_acquire("stuck")
    waiter = asyncio.create_task(mutex.acquire("next"))
    await until(lambda: mutex.status()["wait_count"] == 1, "next waits")
    await clock.advance(30.0)
    await asyncio.wait_for(waiter, 5)
    assert mutex.owners == ["next"]


async def test_quota_admits_its_limit_then_waits_for_the_reset():
    clock = ManualClock()
    agent = Agent("quota", clock=clock)
    names = [f"call{i}" for i in range(5)]
    ran_at: list[float] = []

    async def call(ctx):
        ran_at.append(clock.monotonic())

    fan_out(agent, names)
    for n in names:
        agent.add_state(n, call)
        agent.add_state_coordination(n, PrimitiveType.QUOTA, quota_limit=3, ttl=60.0, name="api")
    run = asyncio.create_task(agent.run())
    quota = agent.coordination("api")
    await until(lambda: len(ran_at) == 3 and quota.status()["wait_count"] == 2, "three ran, two wait")
    assert quota.status()["state"] == "exhausted"
    assert quota.remaining == 0
    await clock.advance(59.0)
    assert len(ran_at) == 3
    await clock.advance(1.0)
    await asyncio.wait_for(run, 5)
    assert ran_at == [0.0, 0.0, 0.0, 60.0, 60.0]
    assert quota.statistics().consumed == 5


async def test_quota_without_ttl_fails_once_spent_instead_of_hanging():
    agent = Agent("quota_once")
    fan_out(agent, ["a", "b"])
    for n in ["a", "b"]:
        agent.add_state(n, lambda ctx: None)
        agent.add_state_coordination(n, PrimitiveType.QUOTA, quota_limit=1, name="once")
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(agent.run(), 5)
    assert "never resets" in str(info.value.__cause__)


async def test_resource_allocation_consumes_its_amount_of_a_quota_in_state():
    clock = ManualClock()
    agent = Agent("alloc", clock=clock)
    agent.add_coordination("shared_resource", PrimitiveType.QUOTA, quota_limit=100.0, ttl=60.0)
    used: list[float] = []

    async def use(ctx):
        for _ in range(10):
            async with ResourceAllocation("shared_resource", 10.0, ctx):
                used.append(clock.monotonic())
        async with ResourceAllocation("shared_resource", 10.0, ctx):  # the 11th waits for the reset
            used.append(clock.monotonic())

    agent.add_state("use", use)
    run = asyncio.create_task(agent.run())
    await until(lambda: len(used) == 10, "ten allocations")
    await clock.wait_for_sleepers(1)
    assert agent.coordination("shared_resource").remaining == 0
    await clock.advance(60.0)
    await asyncio.wait_for(run, 5)
    assert used[-1] == 60.0
    assert len(used) == 11


async def test_state_with_two_primitives_holds_both_while_it_runs():
    agent = Agent("two")
    seen = {}

    async def write(ctx):
        seen["db"] = agent.coordination("db").owners
        seen["cache"] = agent.coordination("cache").owners

    agent.add_state("write", write)
    agent.add_state_coordination("write", PrimitiveType.MUTEX, name="db")
    agent.add_state_coordination("write", PrimitiveType.SEMAPHORE, max_count=2, name="cache")
    await agent.run()
    assert seen == {"db": ["write"], "cache": ["write"]}
    assert agent.coordination("db").owners == []
    assert agent.coordination("cache").owners == []


async def test_reset_coordination_releases_holders_and_fails_waiters():
    agent = enhance_agent(Agent("reset"))
    mutex = agent.add_coordination("m", PrimitiveType.MUTEX)
    assert mutex.try_acquire("holder")
    waiter = asyncio.create_task(mutex.acquire("waiter"))
    await until(lambda: mutex.status()["wait_count"] == 1, "waiter queued")
    await agent.reset_coordination()
    with pytest.raises(CoordinationError, match="reset"):
        await waiter
    assert mutex.owners == []
    assert mutex.try_acquire("fresh")


async def test_wait_timeout_on_a_mutex_raises_coordination_error_naming_the_holder():
    clock = ManualClock()
    mutex = Mutex("db", wait_timeout=2.0, clock=clock)
    assert mutex.try_acquire("slow")
    waiter = asyncio.create_task(mutex.acquire("fast"))
    await until(lambda: mutex.status()["wait_count"] == 1, "fast waits")
    await clock.advance(2.0)
    with pytest.raises(CoordinationError, match=r"held by \['slow'\]"):
        await waiter
    assert mutex.status()["wait_count"] == 0
    assert mutex.statistics().timeouts == 1


def test_status_statistics_and_repr_read_well():
    clock = ManualClock()
    sem = Semaphore("pool", 2, clock=clock)
    sem.try_acquire("a")
    assert repr(sem) == "<Semaphore 'pool' 1/2 held by ['a'] waiting=0>"
    assert sem.status()["state"] == "held"
    barrier = Barrier("sync", 3, clock=clock)
    assert repr(barrier) == "<Barrier 'sync' 0/3 arrived generation=0>"
    quota = Quota("api", 10, ttl=60, clock=clock)
    quota.try_acquire("x", 4)
    assert repr(quota) == "<Quota 'api' used 4/10 (resets every 60s) waiting=0>"
    assert quota.status()["remaining"] == 6
    with pytest.raises(Exception, match=r"frozen|cannot assign"):
        sem.statistics().acquisitions = 5  # type: ignore[misc]


def test_bad_coordination_input_is_rejected_clearly():
    agent = Agent("bad")
    with pytest.raises(ConfigurationError, match="BARRIER needs max_count"):
        agent.add_state_coordination("x", PrimitiveType.BARRIER)
    with pytest.raises(ConfigurationError, match="QUOTA needs quota_limit"):
        agent.add_state_coordination("x", PrimitiveType.QUOTA)
    with pytest.raises(ConfigurationError, match="max_count=0"):
        agent.add_state_coordination("x", PrimitiveType.SEMAPHORE, max_count=0)
    agent.add_state_coordination("x", PrimitiveType.MUTEX, name="db")
    with pytest.raises(ConfigurationError, match="already a MUTEX"):
        agent.add_state_coordination("y", PrimitiveType.SEMAPHORE, name="db")
    with pytest.raises(ConfigurationError, match="ttl"):
        agent.add_state_coordination("z", PrimitiveType.LEASE, ttl=-1)
    agent.add_state_coordination("w1", PrimitiveType.SEMAPHORE, max_count=2, name="pool")
    agent.add_state_coordination("w2", PrimitiveType.SEMAPHORE, max_count=2, name="pool")  # same settings: shared
    with pytest.raises(ConfigurationError, match="already exists with max_count=2"):
        agent.add_state_coordination("w3", PrimitiveType.SEMAPHORE, max_count=5, name="pool")
    with pytest.raises(ConfigurationError, match="more than the whole"):
        agent.add_state_coordination("q", PrimitiveType.QUOTA, quota_limit=1, amount=2)


async def test_barrier_used_directly_counts_each_acquire_and_is_reusable():
    barrier = Barrier("sync", 3)
    passed: list[str] = []

    async def arrive(name: str) -> None:
        await barrier.acquire(name)
        passed.append(name)

    first = [asyncio.create_task(arrive(n)) for n in ("a", "b")]
    await until(lambda: barrier.status()["wait_count"] == 2, "two wait")
    assert passed == []
    await arrive("c")
    await asyncio.wait_for(asyncio.gather(*first), 5)
    assert sorted(passed) == ["a", "b", "c"]
    assert barrier.generation == 1
    assert not barrier.try_acquire("d")  # the next group starts empty
