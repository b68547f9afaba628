"""Cluster failures on a CLI-started cluster: clear errors in bounded time, and no wasted retries.

Each test starts ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 (``_dask_cli``),
joins them with ``DaskExecutor.from_address`` and kills processes for real (SIGKILL), as a
crash or a lost machine would. Bodies that must be "running" when the kill comes sleep far
longer than any test; the test waits for the state's ``StatePlaced`` event, never for time.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from _dask_cli import CliCluster, bounded

from fluffy_nb import Agent, Priority, ResourceError, ResourceRequirements, RetryPolicy
from fluffy_nb.distributed import DaskExecutor, SchedulerLostError, WorkerLostError, register_by_value
from fluffy_nb.engine import StateFailedError
from fluffy_nb.engine._events import StatePlaced

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]
register_by_value(sys.modules[__name__])  # the CLI workers cannot import this test module


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[CliCluster]:
    cluster = CliCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
async def connected(cli: CliCluster) -> AsyncIterator[tuple[CliCluster, DaskExecutor]]:
    await cli.start_scheduler()
    executor = DaskExecutor.from_address(cli.address, timeout=3)
    try:
        yield cli, executor
    finally:
        await asyncio.wait_for(executor.close(), 15)


def placed(agent: Agent) -> defaultdict[str, asyncio.Event]:
    """An Event per state, set when its body starts on a worker (``StatePlaced``)."""
    events: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def on_event(event: Any) -> None:
        if isinstance(event, StatePlaced):
            events[event.state].set()

    agent.events.subscribe(on_event)
    return events


async def wait_placed(events: defaultdict[str, asyncio.Event], state: str, agent_task: asyncio.Future[Any]) -> None:
    """Until ``state`` started on a worker; the run's own error if it ends first (bounded)."""
    waiter = asyncio.ensure_future(events[state].wait())
    done, _ = await asyncio.wait({waiter, agent_task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if agent_task in done:
        agent_task.result()
    assert events[state].is_set(), f"state {state!r} never started on a worker"


def _long(ctx: Any) -> None:
    import time

    time.sleep(120)  # "running" when the test kills something; its process dies with it


async def test_a_killed_scheduler_fails_the_run_with_scheduler_lost_within_10s_despite_retries(
    connected: tuple[CliCluster, DaskExecutor],
) -> None:
    cli, executor = connected
    cli.start_worker("w1")
    await executor
    await executor.client.wait_for_workers(1, timeout=30)
    agent = Agent("lost_scheduler", executor=executor)
    agent.add_state("work", _long, remote=True,
                    retry_policy=RetryPolicy(max_retries=3, initial_delay=0.1, jitter=False))
    seen = placed(agent)
    run = asyncio.ensure_future(agent.run())
    await wait_placed(seen, "work", run)
    killed = time.monotonic()
    cli.kill("scheduler")
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(run, 10)
    assert time.monotonic() - killed < 10
    assert isinstance(info.value.__cause__, SchedulerLostError)
    assert not isinstance(info.value.__cause__, WorkerLostError)
    assert "scheduler" in str(info.value.__cause__)
    assert executor.statistics().scheduler_lost >= 1


async def test_the_only_gpu_worker_killed_for_good_fails_with_a_resource_error_within_10s(
    connected: tuple[CliCluster, DaskExecutor],
) -> None:
    cli, executor = connected
    cli.start_worker("cpu", resources="CPU=2")
    cli.start_worker("gpu", resources="GPU=1,CPU=2")
    await executor
    await executor.client.wait_for_workers(2, timeout=30)
    agent = Agent("lost_gpu", executor=executor)
    agent.add_state("train", _long, remote=True, resources=ResourceRequirements(gpu_units=1),
                    retry_policy=RetryPolicy(max_retries=3, initial_delay=0.1, jitter=False,
                                             retry_on=(WorkerLostError,)))
    seen = placed(agent)
    run = asyncio.ensure_future(agent.run())
    await wait_placed(seen, "train", run)
    killed = time.monotonic()
    cli.kill("gpu")
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(run, 10)
    assert time.monotonic() - killed < 10
    cause = info.value.__cause__
    assert isinstance(cause, ResourceError)
    assert "{'GPU': 1}" in str(cause)
    assert "no worker could ever provide" in str(cause)
    meta = agent.state_metadata["train"]
    assert meta.retries == 1  # the lost attempt was retried once; the retry found no GPU left
    assert executor.statistics().n_workers == 1


def _where(ctx: Any) -> None:
    from distributed import get_worker

    ctx.set_state(ctx.state_name, [get_worker().name, ctx.attempt])


def _blocker(ctx: Any) -> None:
    if ctx.attempt == 1:
        _long(ctx)
    _where(ctx)


async def test_states_queued_on_a_killed_worker_run_elsewhere_without_using_a_retry(
    connected: tuple[CliCluster, DaskExecutor],
) -> None:
    cli, executor = connected
    cli.start_worker("a")
    await executor
    await executor.client.wait_for_workers(1, timeout=30)
    agent = Agent("requeue", executor=executor)
    seen = placed(agent)

    async def fan_out(ctx: Any) -> list[str]:
        await seen["blocker"].wait()  # the one thread of worker "a" is busy: q1, q2 queue behind it
        return ["q1", "q2"]

    agent.add_state("blocker", _blocker, remote=True, priority=int(Priority.HIGH),
                    retry_policy=RetryPolicy(max_retries=1, initial_delay=0, jitter=False,
                                             retry_on=(WorkerLostError,)))
    agent.add_state("fan_out", fan_out)
    agent.add_state("q1", _where, remote=True)
    agent.add_state("q2", _where, remote=True)
    run = asyncio.ensure_future(agent.run(start=["blocker", "fan_out"]))
    await wait_placed(seen, "blocker", run)

    def queued_on_a() -> bool:
        return sum(1 for name in executor.in_flight.values() if name in ("q1", "q2")) == 2

    await bounded(queued_on_a, "q1 and q2 submitted")
    async with asyncio.timeout(20):  # the submits travel on Dask's batched stream
        while sum(map(len, (await executor.client.processing()).values())) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # blocker running, q1 and q2 queued on worker "a"
    cli.kill("a")
    cli.start_worker("b")
    await asyncio.wait_for(run, 45)
    assert agent.get_state("q1") == ["b", 1]
    assert agent.get_state("q2") == ["b", 1]
    assert agent.get_state("blocker") == ["b", 2]
    for name in ("q1", "q2"):
        meta = agent.state_metadata[name]
        assert (meta.attempts, meta.retries) == (1, 0)
    assert agent.state_metadata["blocker"].retries == 1  # it had started: its loss used its retry
    stats = executor.statistics()
    assert stats.requeued == 2
    assert stats.workers_lost == 1
