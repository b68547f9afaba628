"""Spec examples no other test ran as written (issue 17's second look), each quoting its block.

The blocks come from ``fluffy-agent-flow-guide.md`` and ``fluffy-agent-flow-features.md``; each test
runs the block as the spec prints it (undefined helpers filled in) and checks what a user of
that block relies on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass
from typing import List  # noqa: UP035 - the spec's spelling

from _wait import until

from fluffy_nb import (
    Agent,
    AgentStatus,
    Context,
    ManualClock,
    Priority,
    ResourcePool,
    ResourceRequirements,
    ResourceType,
    StateResult,
    TypedContextData,
    TypedDataError,
)
from fluffy_nb.engine.coordination import PrimitiveType


# -- guide, "Semaphore (Concurrent Access)": max_count=3  # Allow 3 concurrent executions ----------------
async def test_the_spec_semaphore_allows_3_concurrent_executions_across_runs_of_one_agent() -> None:
    """A plain state runs beside itself when the agent runs several times at once (or in a map,
    tests/engine/test_map.py): the semaphore belongs to the agent and admits three at a time."""
    agent = Agent("batches")
    inside = {"now": 0, "peak": 0}
    release = asyncio.Event()

    # Limit concurrent operations
    agent.add_state_coordination(
        "heavy_process",
        PrimitiveType.SEMAPHORE,
        max_count=3  # Allow 3 concurrent executions
    )

    async def process_batch(context: Context) -> StateResult:
        # Semaphore controls concurrency
        inside["now"] += 1
        inside["peak"] = max(inside["peak"], inside["now"])
        await release.wait()
        inside["now"] -= 1
        return None  # the spec's "next_state" is not part of this example

    agent.add_state("heavy_process", process_batch)
    handles = [agent.start() for _ in range(6)]
    await until(lambda: inside["now"] == 3, "three runs inside heavy_process")
    for _ in range(50):
        await asyncio.sleep(0)
    assert inside["now"] == 3  # the other three runs wait at the semaphore
    assert agent.coordination("heavy_process").statistics().waiting == 3
    release.set()
    await asyncio.gather(*handles)
    assert inside["peak"] == 3
    assert all(h.result().status is AgentStatus.COMPLETED for h in handles)


# -- features, "Checkpointing & Recovery": periodic checkpoints and "Get specific checkpoint data" ------
async def test_the_spec_checkpoint_data_of_a_periodic_checkpoint_is_plain_json_and_restores() -> None:
    clock, gate = ManualClock(), asyncio.Event()

    # Automatic periodic checkpointing
    agent = Agent(
        "my_workflow",
        checkpoint_interval=300,  # Checkpoint every 5 minutes
        clock=clock,
    )

    async def load(context: Context) -> StateResult:
        context.set_state("day", dt.date(2026, 11, 29))
        context.set_state("rows", 3)
        return "report"

    async def report(context: Context) -> StateResult:
        await gate.wait()
        return None

    agent.add_state("load", load)
    agent.add_state("report", report)
    handle = agent.start()
    await clock.wait_for_sleepers(1)
    await clock.advance(300)
    await until(lambda: len(agent.history()) == 1, "the five-minute checkpoint is kept")
    checkpoint = agent.store.get(agent.history()[0].checkpoint_id)

    # Get specific checkpoint data
    checkpoint_data = {
        "timestamp": checkpoint.timestamp,
        "agent_name": checkpoint.agent_name,
        "agent_status": checkpoint.agent_status,
        "completed_states": list(checkpoint.completed_states),
        "shared_state": checkpoint.shared_state
    }

    saved = json.loads(json.dumps(checkpoint_data))  # plain JSON, as the spec's file save needs
    assert saved["agent_name"] == "my_workflow"
    assert saved["agent_status"] == "running"
    assert saved["completed_states"] == ["load"]
    assert saved["shared_state"]["rows"] == 3
    assert saved["shared_state"]["day"] == {"$fluffy": "date", "v": "2026-11-29"}  # tagged, not a str
    gate.set()
    await handle
    new_agent = Agent("restored_workflow")
    await new_agent.restore_from_checkpoint(checkpoint)
    assert new_agent.get_state("day") == dt.date(2026, 11, 29)  # and the date comes back as a date


# -- guide, "Execution Configuration" --------------------------------------------------------------
async def test_the_spec_execution_configuration_block() -> None:
    inside = {"now": 0, "peak": 0}
    five_in = asyncio.Event()

    # Configure maximum concurrent states
    agent = Agent(
        "my_workflow",
        max_concurrent=5  # Max 5 states running at once
    )

    async def fan_out(context: Context) -> StateResult:
        return [f"work_{i}" for i in range(8)]

    async def work(context: Context) -> StateResult:
        inside["now"] += 1
        inside["peak"] = max(inside["peak"], inside["now"])
        if inside["now"] == 5:
            five_in.set()
        await five_in.wait()
        await asyncio.sleep(0)
        inside["now"] -= 1
        return None

    agent.add_state("fan_out", fan_out)
    for i in range(8):
        agent.add_state(f"work_{i}", work)

    # Run with timeout
    await agent.run(timeout=3600)  # 1 hour timeout
    assert inside["peak"] == 5

    # Run with cleanup handling
    result = await agent.run(cleanup_timeout=60)  # 1 minute cleanup
    assert result.status is AgentStatus.COMPLETED
    assert inside["peak"] == 5


# -- guide, "Resource Requirements" and "Resource Usage Monitoring", on the guide's pool ----------------
async def test_the_spec_resource_requirements_block_is_allocated_and_shown_while_the_state_runs(capsys) -> None:
    pool = ResourcePool(total_cpu=8.0, total_memory=16384, total_io=100.0, total_network=100.0, total_gpu=2.0,
                        enable_preemption=True, enable_quotas=True)
    agent = Agent("my_workflow", resource_pool=pool)
    running, release = asyncio.Event(), asyncio.Event()

    async def train_model(context: Context) -> StateResult:
        running.set()
        await release.wait()
        return None

    # Define detailed resource needs
    requirements = ResourceRequirements(
        cpu_units=2.0,        # CPU cores
        memory_mb=1024,       # Memory in MB
        io_weight=1.0,        # I/O priority
        network_weight=1.0,   # Network priority
        gpu_units=1.0,        # GPU units
        priority=Priority.HIGH,
        timeout=300,          # Timeout in seconds
        resource_types=ResourceType.ALL
    )

    # Add state with resources
    agent.add_state(
        "train_model",
        train_model,
        resources=requirements
    )
    handle = agent.start()
    await running.wait()

    # Get resource usage stats
    stats = agent.resource_pool.get_usage_stats()
    print(f"CPU Usage: {stats[ResourceType.CPU].current_usage}")
    print(f"Memory Usage: {stats[ResourceType.MEMORY].current_usage}")

    # Get allocations by state
    allocations = agent.resource_pool.get_state_allocations()
    waiting_states = agent.resource_pool.get_waiting_states()

    assert capsys.readouterr().out == "CPU Usage: 2.0\nMemory Usage: 1024.0\n"
    mine = allocations["train_model"]
    assert (mine[ResourceType.CPU], mine[ResourceType.MEMORY], mine[ResourceType.GPU]) == (2.0, 1024.0, 1.0)
    assert waiting_states == []
    assert agent.states["train_model"].timeout == 300  # the requirement's timeout is the state's
    release.set()
    await handle
    assert agent.resource_pool.get_state_allocations() == {}


# -- guide, "Coordination Monitoring" and "Resource Cleanup", run inside states ------------------------
async def test_the_spec_coordination_status_and_reset_run_inside_states(capsys) -> None:
    agent = Agent("coordinated_workflow")
    holding, printed = asyncio.Event(), asyncio.Event()
    # Add mutex for resource access
    agent.add_state_coordination(
        "database_write",
        PrimitiveType.MUTEX,
        ttl=30.0  # Auto-release after 30 seconds
    )

    async def start(context: Context) -> StateResult:
        return ["database_write", "monitor_coordination"]

    async def write_to_db(context: Context) -> StateResult:
        holding.set()
        await printed.wait()
        return None

    async def monitor_coordination(context: Context) -> StateResult:
        await holding.wait()
        status = await agent.get_coordination_status()

        # Check primitive states
        for name, state in status["primitives"].items():
            print(f"Primitive {name}: {state['state']}")
            print(f"Active owners: {len(state['owners'])}")
            print(f"Wait count: {state['wait_count']}")

        # Check deadlock detector
        detector = status["deadlock_detector"]
        print(f"Detected cycles: {detector['cycle_count']}")
        printed.set()
        return "cleanup_resources"

    # Manual cleanup
    async def cleanup_resources(context: Context) -> StateResult:
        await agent.reset_coordination()
        return None

    # Configure cleanup
    agent._coordinator.cleanup_interval = 60.0  # 1 minute
    for name, func in [("start", start), ("database_write", write_to_db),
                       ("monitor_coordination", monitor_coordination), ("cleanup_resources", cleanup_resources)]:
        agent.add_state(name, func)
    result = await agent.run()
    assert result.status is AgentStatus.COMPLETED
    out = capsys.readouterr().out
    assert "Primitive database_write: " in out
    assert "Active owners: 1\n" in out  # write_to_db holds it while the monitor looks
    assert "Detected cycles: 0\n" in out
    assert agent.coordination("database_write").statistics().holders == 0



# -- features, "Smart Context System": "Typed - Safe and powerful" ----------------------------------
@dataclass
class UserProfile(TypedContextData):
    name: str
    age: int
    scores: List[float]  # noqa: UP006 - the spec's spelling


async def test_the_spec_user_profile_refuses_an_update_of_the_wrong_type() -> None:
    refused: list[str] = []

    async def handle_user(context: Context) -> StateResult:
        # Type-safe storage
        profile = UserProfile(name="Alice", age=28, scores=[95.0, 87.5])
        context.set_typed("user", profile)

        # Type-safe updates
        context.update_typed("user", age=29)
        for bad in ({"age": "twenty-nine"}, {"scores": ["high"]}):
            try:
                context.update_typed("user", **bad)
            except TypedDataError as err:
                refused.append(str(err))
        return None

    agent = Agent("smart_context")
    agent.add_state("handle_user", handle_user)
    result = await agent.run()
    assert result.get_typed("user", UserProfile) == UserProfile(name="Alice", age=29, scores=[95.0, 87.5])
    assert len(refused) == 2
    assert "field 'age' of UserProfile must be int, got 'twenty-nine' (str)" in refused[0]
    assert "field 'scores' of UserProfile" in refused[1]
