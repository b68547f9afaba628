"""Placement, options, timeouts and construction, on an in-process cluster (real scheduler and
workers on the test's loop) and, for adaptivity, a ``LocalCluster`` that starts empty."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from distributed import Client, Scheduler, Worker

from fluffy_nb import Agent, ConfigurationError, ResourceRequirements
from fluffy_nb.distributed import DaskExecutor
from fluffy_nb.engine._events import StatePlaced

_LIVE: dict[int, Any] = {}


class Shared:
    """Pickles as a reference: in-process workers use the very object (an Event), not a copy."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        _LIVE[id(obj)] = obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (_shared, (id(self.obj),))


def _shared(key: int) -> Shared:
    return Shared(_LIVE[key])


@dataclass
class Cluster:
    scheduler: Scheduler
    workers: list[Worker]
    client: Client
    executor: DaskExecutor


@pytest.fixture
async def two() -> AsyncIterator[Cluster]:
    """Two one-thread workers named "w0" and "w1"."""
    async with Scheduler(host="127.0.0.1", port=0, dashboard=False) as s:
        workers = [Worker(s.address, nthreads=1, name=f"w{i}", host="127.0.0.1", dashboard=False) for i in range(2)]
        await asyncio.gather(*workers)
        try:
            async with Client(s.address, asynchronous=True) as client:
                executor = DaskExecutor(client)
                yield Cluster(s, workers, client, executor)
                await executor.close()
        finally:
            await asyncio.gather(*(w.close() for w in workers))


def _where(ctx: Any) -> None:
    from distributed import get_worker

    worker = get_worker()
    task = worker.state.tasks[worker.get_current_task()]
    ctx.set_state(ctx.state_name, {"worker": worker.name, "annotations": dict(task.annotations or {})})


async def test_worker_restrictions_and_annotations_pass_through_to_dask(two: Cluster) -> None:
    agent = Agent("placed", executor=two.executor)
    agent.add_state("pinned", _where, remote=True, workers=two.workers[1].address)
    agent.add_state("tagged", _where, remote=True, annotations={"team": "ml"})
    seen: list[StatePlaced] = []
    agent.events.subscribe(lambda e: seen.append(e) if isinstance(e, StatePlaced) else None)
    await agent.run(start=["pinned", "tagged"])
    assert agent.get_state("pinned")["worker"] == "w1"
    assert agent.get_state("tagged")["annotations"]["team"] == "ml"
    assert {(e.state, e.where) for e in seen} >= {("pinned", two.workers[1].address)}
    assert len(seen) == 2


async def test_misspelled_or_misplaced_options_are_refused_at_add_state(two: Cluster) -> None:
    agent = Agent("typo", executor=two.executor)
    with pytest.raises(ConfigurationError, match="remot"):
        agent.add_state("a", _where, remot=True)
    with pytest.raises(ConfigurationError, match="workers"):
        agent.add_state("b", _where, workers=["w1"])  # a local state: Dask options mean nothing
    agent.add_state("c", _where, remote=True, annotations="ml")
    with pytest.raises(ConfigurationError, match="annotations"):
        await agent.run()


async def test_a_gpu_request_asks_only_for_the_gpu_not_an_implicit_cpu(two: Cluster) -> None:
    executor = two.executor
    await executor
    agent = Agent("gpu_only", executor=executor)
    agent.add_state("train", _where, remote=True, resources=ResourceRequirements(gpu_units=1))
    agent.add_state("big", _where, remote=True, resources=ResourceRequirements(cpu_units=3))
    assert executor.request_of(agent.states["train"]) == {"GPU": 1.0}
    assert executor.request_of(agent.states["big"]) == {}  # no worker meters CPU here


async def test_a_timeout_counts_run_time_on_the_worker_not_time_queued(two: Cluster) -> None:
    release = Shared(threading.Event())
    agent = Agent("queued", executor=two.executor)
    seen = {"blocker": asyncio.Event()}
    agent.events.subscribe(lambda e: seen["blocker"].set() if isinstance(e, StatePlaced)
                           and e.state == "blocker" else None)

    def blocker(ctx: Any) -> None:
        release.obj.wait(10)

    async def unblock(ctx: Any) -> None:
        await seen["blocker"].wait()
        await asyncio.sleep(0.6)  # "quick" waits in the queue behind blocker for longer than its timeout
        release.obj.set()

    agent.add_state("blocker", blocker, remote=True, workers="w0")
    agent.add_state("quick", _where, remote=True, workers="w0", timeout=0.4)
    agent.add_state("unblock", unblock)
    try:
        await agent.run(start=["blocker", "unblock", "quick"])
    finally:
        release.obj.set()
    assert agent.get_state("quick")["worker"] == "w0"
    assert agent.state_metadata["quick"].attempts == 1


async def test_a_synchronous_client_is_accepted_and_close_restores_the_scheduler_setting(two: Cluster) -> None:
    before = two.scheduler.allowed_failures
    sync_client = await asyncio.to_thread(Client, two.scheduler.address)
    try:
        executor = DaskExecutor(sync_client)
        agent = Agent("sync", executor=executor)
        agent.add_state("work", _where, remote=True)
        await agent.run()
        assert agent.get_state("work")["worker"] in ("w0", "w1")
        assert two.scheduler.allowed_failures == 0
        assert executor.statistics().n_workers == 2
        await executor.close()
        assert two.scheduler.allowed_failures == before
        assert sync_client.status == "running"  # the user's client is the user's
    finally:
        await asyncio.to_thread(sync_client.close)


async def test_from_address_passes_client_options_and_leaks_nothing_when_it_fails(two: Cluster) -> None:
    executor = DaskExecutor.from_address(two.scheduler.address, name="remote", timeout=5)
    async with executor:
        assert executor.client.status == "running"
        assert executor.name == "remote"
    assert executor.client.status == "closed"

    gc.collect()
    before = {id(c) for c in list(Client._instances) if c.status != "closed"}
    broken = DaskExecutor.from_address("tcp://127.0.0.1:1", timeout=0.5)
    with pytest.raises(OSError, match="connect"):
        await broken
    left = [c for c in list(Client._instances) if c.status != "closed" and id(c) not in before]
    assert left == []


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_an_adaptive_cluster_from_zero_workers_runs_gpu_and_cpu_states() -> None:
    executor = DaskExecutor.local(1, adapt={"minimum": 0, "maximum": 1, "interval": "200ms"},
                                  resources={"GPU": 1}, processes=False)
    async with executor:
        assert executor.statistics().n_workers == 0
        agent = Agent("adaptive", executor=executor)
        agent.add_state("train", _where, remote=True, resources=ResourceRequirements(gpu_units=1))
        agent.add_state("prep", _where, remote=True)
        await agent.run(start=["train", "prep"])
        assert agent.get_state("train") is not None
        assert agent.get_state("prep") is not None
        assert executor.statistics().completed == 2


async def test_the_live_views_timeline_and_graph_hover_name_the_worker_of_each_state(two: Cluster) -> None:
    from fluffy_nb.notebook import RunTracker
    from fluffy_nb.notebook._figures import timeline_figure
    from fluffy_nb.notebook._graphview import graph_figure

    agent = Agent("seen", executor=two.executor)
    agent.add_state("pinned", _where, remote=True, workers="w1")
    tracker = RunTracker(agent)
    await agent.run()
    address = two.workers[1].address
    assert tracker.where == {"pinned": address}
    assert [s.where for s in tracker.spans] == [address]
    timeline_hover = [t for trace in timeline_figure(tracker).data for t in (trace.hovertext or ())]
    assert any(f"on worker {address}" in t for t in timeline_hover)
    graph_hover = [t for trace in graph_figure(agent, tracker).data for t in (trace.hovertext or ())]
    assert any(f"worker: {address}" in t for t in graph_hover)
    tracker.close()


def test_requests_carry_only_declared_amounts_or_the_narrowed_types() -> None:
    from fluffy_nb import ResourceType
    from fluffy_nb.distributed._resources import DEFAULT_RESOURCE_NAMES, requested

    def ask(**kw: Any) -> dict[str, float]:
        return requested(ResourceRequirements(**kw), DEFAULT_RESOURCE_NAMES)

    assert ask(gpu_units=1) == {"GPU": 1.0}
    assert ask(gpu_units=1, memory_mb=4096) == {"GPU": 1.0, "MEMORY_MB": 4096.0}
    assert ask(cpu_units=1) == {}  # the default amount: nothing declared
    assert ask(cpu_units=1, resource_types=ResourceType.CPU) == {"CPU": 1.0}  # narrowed: meant
