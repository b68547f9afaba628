"""What the spec promises about resources and coordination, tested in the spec's own words (issue 17).

Each test quotes the guide (``/work/shared/spec/fluffy-agent-flow-guide.md``) it holds fluffy_nb to.
"""

from __future__ import annotations

import asyncio

import psutil
import pytest
from _wait import until

from fluffy_nb.engine import (
    Agent,
    CoordinationConflictError,
    ManualClock,
    Priority,
    ResourceError,
    ResourcePool,
    ResourceRequirements,
    ResourceType,
    StateNotFoundError,
    StateStatus,
)
from fluffy_nb.engine._events import StateBlocked
from fluffy_nb.engine.coordination import PrimitiveType, RateLimitStrategy, ResourceAllocation

# -- "Intelligent Resource Management: Automatic CPU, memory, and GPU allocation" ------------------


async def test_a_plain_agent_admits_states_against_a_pool_sized_from_the_machine(capsys):
    cores = float(psutil.cpu_count(logical=True) or 1)
    agent = Agent("plain")
    first_holds, release = asyncio.Event(), asyncio.Event()
    order = []

    async def start(ctx):
        return ["train_model", "evaluate"]

    async def train_model(ctx):
        order.append("train_model")
        first_holds.set()
        await release.wait()

    async def evaluate(ctx):
        order.append("evaluate")

    # each asks for every core of the machine: they cannot run at the same time
    everything = ResourceRequirements(cpu_units=cores, resource_types=ResourceType.CPU)
    agent.add_state("start", start)
    agent.add_state("train_model", train_model, resources=everything)
    agent.add_state("evaluate", evaluate, resources=everything)
    task = asyncio.create_task(agent.run())
    await first_holds.wait()
    await until(lambda: agent.state_metadata["evaluate"].status is StateStatus.BLOCKED, "evaluate waits for CPU")

    # the guide's "Resource Usage Monitoring" block, verbatim
    # Get resource usage stats
    stats = agent.resource_pool.get_usage_stats()
    print(f"CPU Usage: {stats[ResourceType.CPU].current_usage}")
    print(f"Memory Usage: {stats[ResourceType.MEMORY].current_usage}")

    # Get allocations by state
    allocations = agent.resource_pool.get_state_allocations()
    waiting_states = agent.resource_pool.get_waiting_states()

    assert capsys.readouterr().out == f"CPU Usage: {cores}\nMemory Usage: 0.0\n"
    assert allocations == {"train_model": {ResourceType.CPU: cores}}
    assert waiting_states == ["evaluate"]
    assert agent.resource_pool.totals[ResourceType.CPU] == cores
    assert agent.resource_pool.totals[ResourceType.MEMORY] == pytest.approx(psutil.virtual_memory().total / 2**20)
    release.set()
    await task
    assert order == ["train_model", "evaluate"]


async def test_more_than_the_machine_has_is_refused_saying_how_to_size_the_default_pool():
    agent = Agent("too_big")

    async def train_model(ctx):
        return None

    assert agent.resource_pool.sized_from_machine  # the default pool
    ask = float(psutil.cpu_count(logical=True) or 1) + 1
    agent.add_state("train_model", train_model, resources=ResourceRequirements(cpu_units=ask))
    with pytest.raises(ResourceError) as info:
        await agent.run()
    text = str(info.value)
    assert "'train_model'" in text
    assert "sized from this machine" in text
    assert "resource_pool=None" in text



async def test_the_spec_monitoring_block_runs_on_a_plain_agent_before_any_run(capsys):
    agent = Agent("plain")
    stats = agent.resource_pool.get_usage_stats()
    print(f"CPU Usage: {stats[ResourceType.CPU].current_usage}")
    print(f"Memory Usage: {stats[ResourceType.MEMORY].current_usage}")
    allocations = agent.resource_pool.get_state_allocations()
    waiting_states = agent.resource_pool.get_waiting_states()
    assert capsys.readouterr().out == "CPU Usage: 0.0\nMemory Usage: 0.0\n"
    assert (allocations, waiting_states) == ({}, [])


async def test_resource_pool_none_opts_out_and_states_without_requirements_never_make_the_pool():
    no_pool = Agent("no_pool", resource_pool=None)
    huge = ResourceRequirements(cpu_units=10_000.0, resource_types=ResourceType.CPU)
    ran = []

    async def work(ctx):
        ran.append(ctx.state_name)

    no_pool.add_state("work", work, resources=huge)
    await no_pool.run()
    assert ran == ["work"]
    assert no_pool.resource_pool is None

    plain = Agent("plain")
    plain.add_state("work", work)
    await plain.run()
    assert plain.active_resource_pool is None  # never made: nothing asked for resources


def test_resource_pool_takes_a_pool_machine_or_none_only():
    from fluffy_nb.engine import ConfigurationError

    with pytest.raises(ConfigurationError, match="resource_pool='big'"):
        Agent("x", resource_pool="big")  # type: ignore[arg-type]
    pool = ResourcePool(total_cpu=2)
    assert Agent("x", resource_pool=pool).resource_pool is pool



# -- "ResourcePool(..., enable_preemption=True, ...)": nothing else is asked of the states -------------


def spec_pool() -> ResourcePool:
    """The guide's "Resource Pool Configuration" block."""
    # Create custom resource pool
    return ResourcePool(
        total_cpu=8.0,
        total_memory=16384,  # 16GB
        total_io=100.0,
        total_network=100.0,
        total_gpu=2.0,
        enable_preemption=True,
        enable_quotas=True
    )


async def test_enable_preemption_alone_preempts_a_running_lower_priority_state():
    agent = Agent("my_workflow", resource_pool=spec_pool())
    starts: list[str] = []
    batch_running, urgent_done = asyncio.Event(), asyncio.Event()

    async def start(ctx):
        return ["batch", "trigger"]

    async def batch(ctx):
        starts.append("batch")
        batch_running.set()
        if not urgent_done.is_set():
            await asyncio.Event().wait()  # holds all 8 CPUs until it is preempted

    async def trigger(ctx):
        await batch_running.wait()
        return "urgent"

    async def urgent(ctx):
        starts.append("urgent")
        urgent_done.set()

    agent.add_state("start", start)
    agent.add_state("batch", batch, resources=ResourceRequirements(cpu_units=8.0, priority=Priority.LOW))
    agent.add_state("trigger", trigger)
    agent.add_state("urgent", urgent, resources=ResourceRequirements(cpu_units=8.0, priority=Priority.HIGH))
    await asyncio.wait_for(agent.run(), 10)
    assert starts == ["batch", "urgent", "batch"]  # preempted, requeued, ran again after urgent
    assert agent.resource_pool.statistics().preemptions == 1
    assert agent.state_metadata["batch"].status is StateStatus.COMPLETED


async def test_preemptible_false_opts_a_state_out_of_preemption():
    agent = Agent("my_workflow", resource_pool=spec_pool())
    order: list[str] = []
    batch_running, let_go = asyncio.Event(), asyncio.Event()

    async def start(ctx):
        return ["batch", "trigger"]

    async def batch(ctx):
        order.append("batch")
        batch_running.set()
        await let_go.wait()

    async def trigger(ctx):
        await batch_running.wait()
        return "urgent"

    async def urgent(ctx):
        order.append("urgent")

    agent.add_state("start", start)
    agent.add_state("batch", batch, resources=ResourceRequirements(cpu_units=8.0, priority=Priority.LOW,
                                                                    preemptible=False))
    agent.add_state("trigger", trigger)
    agent.add_state("urgent", urgent, resources=ResourceRequirements(cpu_units=8.0, priority=Priority.HIGH))
    task = asyncio.create_task(agent.run())
    await until(lambda: agent.resource_pool.get_waiting_states() == ["urgent"], "urgent waits for the CPUs")
    let_go.set()
    await asyncio.wait_for(task, 10)
    assert order == ["batch", "urgent"]
    assert agent.resource_pool.statistics().preemptions == 0


# -- "io_weight=1.0,  # I/O priority" / "network_weight=1.0,  # Network priority" ------------------------


async def test_io_and_network_weights_are_priorities_not_capacities():
    agent = Agent("io_bound")  # default pool: total_io=100, total_network=100
    n = 150
    started, all_in = [0], asyncio.Event()

    async def start(ctx):
        return [f"fetch_{i}" for i in range(n)]

    async def fetch(ctx):
        started[0] += 1
        if started[0] == n:
            all_in.set()
        await all_in.wait()  # finishes only once all 150 run at the same time

    agent.add_state("start", start)
    weights_only = ResourceRequirements(cpu_units=0, memory_mb=0, io_weight=1.0, network_weight=1.0)
    for i in range(n):
        agent.add_state(f"fetch_{i}", fetch, resources=weights_only)
    await asyncio.wait_for(agent.run(), 10)
    assert started[0] == n
    assert agent.resource_pool.get_usage_stats()[ResourceType.IO].peak_usage == n


async def test_within_a_priority_level_more_io_weight_is_admitted_first():
    agent = Agent("io_order", resource_pool=ResourcePool(total_cpu=1, aging_interval=None))
    admitted: list[str] = []
    holder_in, let_go = asyncio.Event(), asyncio.Event()
    weights = {"light": 1.0, "heavy": 5.0, "medium": 3.0}

    async def start(ctx):
        return ["holder", "light", "heavy", "medium"]  # literal: the graph is read from the code

    async def holder(ctx):
        holder_in.set()
        await let_go.wait()

    async def job(ctx):
        admitted.append(ctx.state_name)

    agent.add_state("start", start)
    agent.add_state("holder", holder, resources=ResourceRequirements(cpu_units=1))
    for name, w in weights.items():
        agent.add_state(name, job, resources=ResourceRequirements(cpu_units=1, io_weight=w))
    task = asyncio.create_task(agent.run())
    await holder_in.wait()
    await until(lambda: len(agent.resource_pool.get_waiting_states()) == 3, "three jobs wait for the CPU")
    assert agent.resource_pool.get_waiting_states() == ["heavy", "medium", "light"]
    let_go.set()
    await asyncio.wait_for(task, 10)
    assert admitted == ["heavy", "medium", "light"]


# -- "Resource Quotas": add_state_coordination(..., PrimitiveType.QUOTA, quota_limit=16.0, ttl=3600.0) ------


async def test_spec_quota_limits_runs_per_period_and_a_state_waiting_on_it_holds_back_no_one():
    clock = ManualClock()
    agent = Agent("quotas", resource_pool=ResourcePool(total_cpu=1, enable_quotas=True), clock=clock)
    # Add quota management
    agent.add_state_coordination(
        "gpu_task",
        PrimitiveType.QUOTA,
        quota_limit=16.0,  # Total GPU memory limit
        ttl=3600.0        # Reset quota hourly
    )
    runs = {"gpu_task": 0, "report": 0}

    async def start(ctx):
        return ["gpu_task"]

    async def train_model(ctx):
        runs["gpu_task"] += 1
        if runs["gpu_task"] == 16:
            return ["gpu_task", "report"]  # the 17th run waits for the hourly reset
        if runs["gpu_task"] < 16:
            return "gpu_task"
        return None

    async def report(ctx):
        runs["report"] += 1

    agent.add_state("start", start)
    same = ResourceRequirements(cpu_units=1, resource_types=ResourceType.CPU, priority=Priority.NORMAL)
    agent.add_state("gpu_task", train_model, resources=same)
    agent.add_state("report", report, resources=same)
    task = asyncio.create_task(agent.run())
    # the unrelated state of equal priority runs although gpu_task waits (it holds no CPU meanwhile)
    await until(lambda: runs["report"] == 1, "report runs while gpu_task waits for its quota")
    assert runs["gpu_task"] == 16
    assert agent.state_metadata["gpu_task"].status is StateStatus.BLOCKED
    assert agent.resource_pool.get_state_allocations() == {}
    await clock.wait_for_sleepers(1)
    await clock.advance(3600.0)
    await asyncio.wait_for(task, 10)
    assert runs == {"gpu_task": 17, "report": 1}


async def test_the_spec_shared_resource_quota_is_consumed_in_state():
    agent = Agent("pools")
    # Manage shared resource pool
    agent.add_state_coordination(
        "shared_resource",
        PrimitiveType.QUOTA,
        quota_limit=100.0,
        ttl=60.0
    )

    async def use_resource(context):
        # Get resource allocation
        allocation = 10.0
        async with ResourceAllocation("shared_resource", allocation):
            # Use resource...
            pass
        return None

    agent.add_state("use_resource", use_resource)
    await agent.run()
    assert agent.coordination("shared_resource").remaining == 90.0

    typo = Agent("typo")  # a quota under a name no state has and no state's code names: a misspelt state
    typo.add_state_coordination("gpu_tsk", PrimitiveType.QUOTA, quota_limit=16.0, ttl=3600.0)
    typo.add_state("gpu_task", use_resource)
    with pytest.raises(StateNotFoundError, match="gpu_tsk"):
        await typo.run()


async def test_pool_quota_waiter_does_not_hold_back_unrelated_states_of_equal_priority(record):
    pool = ResourcePool(total_cpu=4, enable_quotas=True, aging_interval=None)
    pool.set_quota("gpu_", ResourceType.CPU, 1)
    agent = Agent("quota_queue", resource_pool=pool)
    log = record(agent)
    first_in, let_go = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    async def start(ctx):
        return ["gpu_a", "gpu_b", "etl"]

    async def gpu_a(ctx):
        ran.append("gpu_a")
        first_in.set()
        await let_go.wait()

    async def other(ctx):
        ran.append(ctx.state_name)

    one = ResourceRequirements(cpu_units=1, resource_types=ResourceType.CPU)
    agent.add_state("start", start)
    agent.add_state("gpu_a", gpu_a, resources=one)
    agent.add_state("gpu_b", other, resources=one)  # over the gpu_ quota while gpu_a runs
    agent.add_state("etl", other, resources=one)  # unrelated, same priority, fits
    task = asyncio.create_task(agent.run())
    await first_in.wait()
    await until(lambda: "etl" in ran, "etl runs past gpu_b, which waits on its quota")
    assert pool.get_waiting_states() == ["gpu_b"]
    assert log.of(StateBlocked, "etl") == []  # admitted at once, never queued behind gpu_b
    assert len(log.of(StateBlocked, "gpu_b")) == 1
    let_go.set()
    await asyncio.wait_for(task, 10)
    assert ran == ["gpu_a", "etl", "gpu_b"]


# -- "Add rate limit to specific state": one API's limit shared by the states that call it -------------


async def test_a_rate_limit_is_shared_across_states_by_name():
    clock = ManualClock()
    agent = Agent("shared_rate", clock=clock)
    callers = ["search_0", "search_1", "search_2", "lookup_0", "lookup_1", "lookup_2"]
    admitted: list[tuple[str, float]] = []

    async def start(ctx):
        return ["search_0", "search_1", "search_2", "lookup_0", "lookup_1", "lookup_2"]

    async def api_call(ctx):
        admitted.append((ctx.state_name, clock.monotonic()))

    agent.add_state("start", start)
    limiters = set()
    for state in callers:
        agent.add_state(state, api_call)
        limiters.add(agent.add_state_rate_limit(
            state,
            max_rate=10.0,          # 10 calls per second
            strategy=RateLimitStrategy.TOKEN_BUCKET,
            burst_size=5,           # Allow bursts of 5 calls
            name="search_api",
        ))
    assert len(limiters) == 1  # identical options: one limiter
    task = asyncio.create_task(agent.run())
    await clock.wait_for_sleepers(1)
    assert len(admitted) == 5  # the burst of 5 is shared by all six callers, not 5 each
    await clock.advance(0.1 + 1e-6)  # one token comes back every 0.1 s
    await until(lambda: len(admitted) == 6, f"the sixth call passes after 0.1 s (admitted: {admitted})")
    await asyncio.wait_for(task, 10)
    assert [t for _, t in admitted] == [0.0] * 5 + [pytest.approx(0.1, abs=1e-5)]
    assert agent.coordinator.rate_limiters["search_api"].statistics().admitted == 6


def test_a_shared_primitive_registered_again_with_other_options_raises_naming_both():
    agent = Agent("conflicts")
    agent.add_state_coordination("writer_a", PrimitiveType.MUTEX, ttl=30.0, name="database_write")
    same = agent.add_state_coordination("writer_b", PrimitiveType.MUTEX, ttl=30.0, name="database_write")
    assert agent.add_state_coordination("writer_c", PrimitiveType.MUTEX, name="database_write") is same
    with pytest.raises(CoordinationConflictError) as info:
        agent.add_state_coordination("writer_d", PrimitiveType.MUTEX, ttl=30.0, wait_timeout=0.2,
                                     name="database_write")
    msg = str(info.value)
    assert "'database_write'" in msg
    assert "'writer_d'" in msg
    assert "ttl=30.0, wait_timeout=None" in msg  # what it has
    assert "ttl=30.0, wait_timeout=0.2" in msg  # what was asked
    assert info.value.existing == {"ttl": 30.0, "wait_timeout": None}
    assert info.value.requested == {"ttl": 30.0, "wait_timeout": 0.2}

    agent.add_state_rate_limit("api_a", max_rate=10.0, burst_size=5, name="api")
    with pytest.raises(CoordinationConflictError, match=r"max_rate=10.0.*max_rate=20.0"):
        agent.add_state_rate_limit("api_b", max_rate=20.0, burst_size=5, name="api")
    with pytest.raises(CoordinationConflictError, match="SLIDING_WINDOW"):
        agent.add_state_rate_limit("api_b", max_rate=10.0, burst_size=5, name="api",
                                   strategy=RateLimitStrategy.SLIDING_WINDOW)
