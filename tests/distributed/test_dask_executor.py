"""DaskExecutor logic against an in-process cluster (scheduler + workers on the test's loop).

gen_cluster style: a real Dask scheduler and real workers, in this process, so each test
starts in ~0.1 s. Pickling across processes, worker crashes and SIGINT live in
``test_dask_cluster.py`` (real worker processes).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from distributed import Client, Scheduler, Worker

from fluffy_nb import Agent, Priority, ResourceError, ResourceRequirements, RetryPolicy, state
from fluffy_nb.distributed import (
    DaskExecutor,
    RemoteHumanInputError,
    UnpicklableStateError,
)
from fluffy_nb.engine import StateFailedError, StateNotFoundError, StateTimeoutError

_LIVE: dict[int, Any] = {}


class Shared:
    """Wraps an object so it pickles as a reference: in-process workers use the very object
    (an Event, a list) instead of a copy. Only meaningful for this in-process cluster."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        _LIVE[id(obj)] = obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (_shared, (id(self.obj),))


def _shared(key: int) -> Shared:
    return Shared(_LIVE[key])


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (bounded) for a condition the cluster reaches on its own schedule."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - Dask's state has no event to await
            await asyncio.sleep(0.005)


@dataclass
class Cluster:
    scheduler: Scheduler
    workers: list[Worker]
    client: Client
    executor: DaskExecutor


async def _cluster(*worker_resources: dict[str, float] | None, nthreads: int = 2) -> AsyncIterator[Cluster]:
    async with Scheduler(host="127.0.0.1", port=0, dashboard=False, validate=True) as s:
        workers = [Worker(s.address, nthreads=nthreads, resources=r, host="127.0.0.1", dashboard=False)
                   for r in worker_resources]
        await asyncio.gather(*workers)
        try:
            async with Client(s.address, asynchronous=True) as client:
                yield Cluster(s, workers, client, DaskExecutor(client))
        finally:
            await asyncio.gather(*(w.close() for w in workers))


@pytest.fixture
async def plain() -> AsyncIterator[Cluster]:
    """One worker, two threads, no declared resources."""
    async for c in _cluster(None):
        yield c


@pytest.fixture
async def gpu() -> AsyncIterator[Cluster]:
    """A GPU worker (GPU=1, CPU=4) and a CPU-only worker (CPU=2)."""
    async for c in _cluster({"GPU": 1, "CPU": 4}, {"CPU": 2}):
        yield c


# -- the context crosses the wire and comes back as writes ------------------------------------
async def test_remote_writes_and_deletes_reach_the_live_context(plain: Cluster) -> None:
    def produce(ctx: Any) -> str:
        ctx.set_state("total", sum(ctx.get_state("numbers")))
        ctx.get_state("log").append("produce")  # in-place change of a snapshot value
        ctx.remove_state("scratch")
        return "consume"

    async def consume(ctx: Any) -> None:
        ctx.set_state("doubled", ctx.get_state("total") * 2)

    agent = Agent("wire", executor=plain.executor)
    agent.add_state("produce", produce, remote=True)
    agent.add_state("consume", consume, executor="dask")
    result = await agent.run(initial_context={"numbers": [1, 2, 3], "log": [], "scratch": 1})

    assert agent.get_state("total") == 6
    assert agent.get_state("doubled") == 12
    assert agent.get_state("log") == ["produce"]
    assert not agent.context.has_state("scratch")
    assert result is not None
    assert agent.completed_states == ["produce", "consume"]


@dataclass
class Point:
    x: int
    y: int


async def test_typed_data_written_remotely_is_the_same_class_in_the_orchestrator(plain: Cluster) -> None:
    def move(ctx: Any) -> None:
        p = ctx.get_typed("p", Point)
        ctx.set_typed("p", Point(p.x + 1, p.y))

    agent = Agent("typed", executor=plain.executor)
    agent.add_state("move", move, remote=True)

    async def seed(ctx: Any) -> str:
        ctx.set_typed("p", Point(1, 2))
        return "move"

    agent.add_state("seed", seed)
    await agent.run(start="seed")
    assert agent.context.get_typed("p", Point) == Point(2, 2)


async def test_the_body_sees_a_snapshot_so_orchestrator_writes_during_the_body_survive(plain: Cluster) -> None:
    release = Shared(threading.Event())
    started = asyncio.Event()
    notify = Shared(functools.partial(asyncio.get_running_loop().call_soon_threadsafe, started.set))

    def remote(ctx: Any) -> None:
        notify.obj()
        release.obj.wait(5)
        ctx.set_state("remote", ctx.get_state("local", "unseen"))

    async def local(ctx: Any) -> None:
        await started.wait()
        ctx.set_state("local", "written while remote ran")
        release.obj.set()

    agent = Agent("snap", executor=plain.executor)
    agent.add_state("remote", remote, remote=True)
    agent.add_state("local", local)
    await agent.run(start=["remote", "local"])
    assert agent.get_state("remote") == "unseen"
    assert agent.get_state("local") == "written while remote ran"


async def test_state_decorator_routes_the_body_to_the_named_executor(plain: Cluster) -> None:
    @state(executor="dask")
    def work(ctx: Any) -> None:
        from distributed import get_worker

        ctx.set_state("worker", get_worker().address)

    agent = Agent("deco", executor=plain.executor)
    agent.add_state("work", work)
    await agent.run()
    assert agent.get_state("worker") == plain.workers[0].address
    assert plain.executor.statistics().completed == 1


async def test_unknown_executor_name_is_a_clear_error(plain: Cluster) -> None:
    agent = Agent("named", executor=plain.executor)
    agent.add_state("work", lambda ctx: None, executor="ray")
    with pytest.raises(StateNotFoundError, match="executor 'ray'"):
        await agent.run()


# -- engine semantics stay the engine's --------------------------------------------------------
async def test_a_failing_body_is_retried_by_the_engine_policy_and_dask_runs_each_attempt_once(
    plain: Cluster,
) -> None:
    attempts = Shared([])

    def flaky(ctx: Any) -> None:
        attempts.obj.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ValueError(f"boom {ctx.attempt}")
        ctx.set_state("ok", True)

    agent = Agent("retry", executor=plain.executor)
    agent.add_state("flaky", flaky, remote=True,
                    retry_policy=RetryPolicy(max_retries=3, initial_delay=0, jitter=False))
    await agent.run()
    assert attempts.obj == [1, 2, 3]
    assert agent.get_state("ok") is True
    assert agent.state_metadata["flaky"].retries == 2
    stats = plain.executor.statistics()
    assert (stats.submitted, stats.failed, stats.completed, stats.in_flight) == (3, 2, 1, 0)


async def test_a_users_cluster_is_told_not_to_rerun_lost_tasks_and_keeps_its_sigint(plain: Cluster) -> None:
    assert plain.scheduler.allowed_failures > 0  # Dask's default: silently re-run up to N times
    agent = Agent("config", executor=plain.executor)
    agent.add_state("work", lambda ctx: None, remote=True)
    await agent.run()
    assert plain.scheduler.allowed_failures == 0
    assert "fluffy-ignore-sigint" not in plain.scheduler.worker_plugins  # only for DaskExecutor.local


async def test_a_body_error_fails_the_run_with_the_original_exception_chained(plain: Cluster) -> None:
    def broken(ctx: Any) -> None:
        raise KeyError("missing column")

    agent = Agent("fail", executor=plain.executor)
    agent.add_state("broken", broken, remote=True)
    with pytest.raises(StateFailedError, match="broken") as info:
        await agent.run()
    assert isinstance(info.value.__cause__, KeyError)


async def test_a_timeout_cancels_the_dask_future(plain: Cluster) -> None:
    release = Shared(threading.Event())

    def stuck(ctx: Any) -> None:
        release.obj.wait(10)  # a running Python body cannot be interrupted; it is abandoned

    agent = Agent("timeout", executor=plain.executor)
    agent.add_state("stuck", stuck, remote=True, timeout=0.3)
    try:
        with pytest.raises(StateFailedError) as info:
            await agent.run()
        assert isinstance(info.value.__cause__, StateTimeoutError)
        # the cancel travels on Dask's batched stream: wait for the scheduler to act on it
        await until(lambda: not any(str(k).startswith("fluffy-stuck") for k in plain.scheduler.tasks))
        assert plain.executor.statistics().cancelled == 1
    finally:
        release.obj.set()


async def test_futures_are_released_once_their_result_is_applied(plain: Cluster) -> None:
    def chunk(ctx: Any) -> None:
        ctx.set_state(f"chunk-{ctx.state_name}", 1)

    agent = Agent("release", executor=plain.executor)
    for i in range(5):
        agent.add_state(f"c{i}", chunk, remote=True)
    await agent.run(start=[f"c{i}" for i in range(5)])
    assert len(agent.context.keys()) == 5
    assert plain.client.futures == {}
    assert plain.executor.statistics().in_flight == 0


async def test_asking_a_person_from_a_remote_state_explains_why_not(plain: Cluster) -> None:
    async def ask(ctx: Any) -> None:
        await ctx.human_in_the_loop("ok?")

    agent = Agent("hitl", executor=plain.executor)
    agent.add_state("ask", ask, remote=True)
    with pytest.raises(StateFailedError) as info:
        await agent.run()
    assert isinstance(info.value.__cause__, RemoteHumanInputError)
    assert "ask" in str(info.value.__cause__)


# -- pickling errors name the culprit -------------------------------------------------------
async def test_an_unpicklable_capture_fails_before_the_run_naming_state_and_object(plain: Cluster) -> None:
    lock = threading.Lock()
    ran: list[str] = []

    def guarded(ctx: Any) -> None:
        with lock:
            ctx.set_state("x", 1)

    agent = Agent("pickle", executor=plain.executor)
    agent.add_state("first", lambda ctx: ran.append("first"))
    agent.add_state("guarded", guarded, remote=True)
    with pytest.raises(UnpicklableStateError, match=r"state 'guarded'.*closure variable 'lock'") as info:
        await agent.run(start=["first", "guarded"])
    assert info.value.captured == "closure variable 'lock'"
    assert ran == []


async def test_an_unpicklable_context_value_names_its_key(plain: Cluster) -> None:
    agent = Agent("ctxpickle", executor=plain.executor)
    agent.add_state("work", lambda ctx: None, remote=True)
    with pytest.raises(StateFailedError) as info:
        await agent.run(initial_context={"conn": threading.Lock(), "n": 1})
    cause = info.value.__cause__
    assert isinstance(cause, UnpicklableStateError)
    assert "context key 'conn'" in str(cause)


async def test_a_remote_write_that_cannot_travel_back_names_its_key(plain: Cluster) -> None:
    def opens(ctx: Any) -> None:
        import threading

        ctx.set_state("fine", 1)
        ctx.set_state("handle", threading.Lock())

    agent = Agent("backpickle", executor=plain.executor)
    agent.add_state("opens", opens, remote=True)
    with pytest.raises(StateFailedError) as info:
        await agent.run()
    cause = info.value.__cause__
    assert isinstance(cause, UnpicklableStateError)
    assert (cause.state, cause.captured) == ("opens", "context key 'handle'")
    assert agent.get_state("fine") is None  # nothing of a failed attempt is applied


async def test_a_method_state_of_an_agent_subclass_names_self_as_the_capture(plain: Cluster) -> None:
    class Pipeline(Agent):
        @state(executor="dask")
        def crunch(self, ctx: Any) -> None:
            return None

    agent = Pipeline("methods", executor=plain.executor)
    with pytest.raises(UnpicklableStateError, match="bound method's self"):
        await agent.run()


# -- resources ---------------------------------------------------------------------------------
async def test_gpu_states_run_on_the_gpu_worker_and_cpu_requests_map_to_declared_cpu(gpu: Cluster) -> None:
    def where(ctx: Any) -> None:
        from distributed import get_worker

        ctx.set_state(ctx.state_name, get_worker().address)

    agent = Agent("res", executor=gpu.executor)
    for i in range(3):
        agent.add_state(f"g{i}", where, remote=True, resources=ResourceRequirements(gpu_units=1, cpu_units=1))
    agent.add_state("big", where, remote=True, resources=ResourceRequirements(cpu_units=3))
    await agent.run(start=["g0", "g1", "g2", "big"])
    gpu_worker = gpu.workers[0].address
    assert {agent.get_state(f"g{i}") for i in range(3)} == {gpu_worker}
    assert agent.get_state("big") == gpu_worker  # only it declares CPU >= 3


async def test_a_request_no_worker_can_satisfy_fails_at_run_start(gpu: Cluster) -> None:
    ran: list[str] = []
    agent = Agent("impossible", executor=gpu.executor)
    agent.add_state("local", lambda ctx: ran.append("local"))
    agent.add_state("huge", lambda ctx: None, remote=True, resources=ResourceRequirements(gpu_units=2))
    with pytest.raises(ResourceError, match=r"state 'huge' asks Dask for \{'GPU': 2\}"):
        await agent.run(start=["local", "huge"])
    assert ran == []
    assert gpu.executor.statistics().submitted == 0


async def test_a_gpu_request_on_a_cluster_without_gpus_fails_fast(plain: Cluster) -> None:
    agent = Agent("nogpu", executor=plain.executor)
    agent.add_state("train", lambda ctx: None, remote=True, resources=ResourceRequirements(gpu_units=1))
    with pytest.raises(ResourceError, match="no worker could ever provide"):
        await agent.run()


async def test_higher_priority_states_start_first_when_the_worker_is_busy() -> None:
    clusters = _cluster(None, nthreads=1)
    c = await anext(clusters)
    try:
        order = Shared([])
        release = Shared(threading.Event())
        blocker_started = asyncio.Event()
        notify = Shared(functools.partial(asyncio.get_running_loop().call_soon_threadsafe, blocker_started.set))

        def blocker(ctx: Any) -> None:
            notify.obj()
            release.obj.wait(5)

        def record(ctx: Any) -> None:
            order.obj.append(ctx.state_name)

        async def unblock(ctx: Any) -> None:
            await blocker_started.wait()
            # blocker running, the two others waiting in the worker's ready queue
            await until(lambda: len(c.workers[0].state.tasks) == 3)
            release.obj.set()

        agent = Agent("prio", executor=c.executor)
        agent.add_state("blocker", blocker, remote=True)
        agent.add_state("low", record, remote=True, priority=int(Priority.LOW))
        agent.add_state("high", record, remote=True, priority=int(Priority.CRITICAL))
        agent.add_state("unblock", unblock)
        await agent.run(start=["blocker", "unblock", "low", "high"])
        assert order.obj == ["high", "low"]
    finally:
        await clusters.aclose()


# -- cluster-scope coordination -----------------------------------------------------------
async def test_a_cluster_semaphore_limits_states_of_two_clients_sharing_the_cluster(plain: Cluster) -> None:
    inside = {"now": 0, "peak": 0}

    async def write(ctx: Any) -> None:
        inside["now"] += 1
        inside["peak"] = max(inside["peak"], inside["now"])
        await asyncio.sleep(0.02)
        inside["now"] -= 1

    async with Client(plain.scheduler.address, asynchronous=True) as other:  # a second notebook
        agents = []
        for label, executor in (("first", plain.executor), ("second", DaskExecutor(other))):
            agent = Agent(label)
            gate = executor.semaphore("warehouse-db", max_leases=1)
            for i in range(3):
                agent.add_state(f"w{i}", write)
                agent.add_gate(f"w{i}", gate)
            agents.append((agent, gate))
        await asyncio.gather(*(a.run(start=["w0", "w1", "w2"]) for a, _ in agents))
        for _, gate in agents:
            await gate.drain()
    assert inside["peak"] == 1
    assert [g.statistics().acquisitions for _, g in agents] == [3, 3]
    assert all(g.statistics().held == 0 for _, g in agents)
