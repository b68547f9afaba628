"""The executor interface: which states go to an executor, and what the engine keeps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fluffy_nb import Agent, ResourceError, RetryPolicy, StateFailedError, StateTimeoutError
from fluffy_nb.engine._executor import Executor, LocalExecutor


class Recording:
    """An executor that runs bodies locally and remembers what it was asked to run."""

    name = "rec"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.checked: list[str] = []
        self.cancelled: list[str] = []
        self.block: asyncio.Event | None = None

    state_options = frozenset({"impossible"})  # the per-state option this executor reads

    async def check_state(self, spec: Any) -> None:
        self.checked.append(spec.name)
        if spec.options.get("impossible"):
            raise ResourceError(f"state {spec.name!r} can never run here")

    async def run_state(self, spec: Any, ctx: Any) -> Any:
        self.calls.append((spec.name, ctx.attempt))
        if self.block is not None:
            try:
                await self.block.wait()
            except asyncio.CancelledError:
                self.cancelled.append(spec.name)
                raise
        return await LocalExecutor().run_state(spec, ctx)


def test_both_executors_satisfy_the_protocol() -> None:
    assert isinstance(LocalExecutor(), Executor)
    assert isinstance(Recording(), Executor)


async def test_only_states_that_opt_in_run_on_the_agents_executor() -> None:
    rec = Recording()
    agent = Agent("optin", executor=rec)

    async def a(ctx: Any) -> str:
        return "b"

    def b(ctx: Any) -> str:
        ctx.set_state("b", True)
        return "c"

    async def c(ctx: Any) -> None:
        ctx.set_state("c", True)

    agent.add_state("a", a)
    agent.add_state("b", b, remote=True)
    agent.add_state("c", c, executor="rec")
    await agent.run()
    assert rec.calls == [("b", 1), ("c", 1)]
    assert rec.checked == ["b", "c"]
    assert agent.get_state("b") is True
    assert agent.get_state("c") is True


async def test_a_state_can_name_an_executor_instance_directly() -> None:
    local = LocalExecutor()
    agent = Agent("direct")

    def work(ctx: Any) -> None:
        ctx.set_state("ran", ctx.state_name)

    agent.add_state("work", work, executor=local)
    await agent.run()
    assert agent.get_state("ran") == "work"


async def test_check_state_failing_stops_the_run_before_any_state_runs() -> None:
    rec = Recording()
    ran: list[str] = []
    agent = Agent("check", executor=rec)
    agent.add_state("local", lambda ctx: ran.append("local"))
    agent.add_state("gpu", lambda ctx: None, remote=True, impossible=True)
    with pytest.raises(ResourceError, match="'gpu' can never run here"):
        await agent.run(start=["local", "gpu"])
    assert ran == []
    assert rec.calls == []


async def test_retries_and_timeouts_stay_the_engines() -> None:
    rec = Recording()
    rec.block = asyncio.Event()
    agent = Agent("timeouts", executor=rec)
    agent.add_state("slow", lambda ctx: None, remote=True, timeout=0.05,
                    retry_policy=RetryPolicy(max_retries=1, initial_delay=0, jitter=False))
    with pytest.raises(StateFailedError) as info:
        await agent.run()
    assert isinstance(info.value.__cause__, StateTimeoutError)
    assert rec.calls == [("slow", 1), ("slow", 2)]
    assert rec.cancelled == ["slow", "slow"]  # the executor's await was cancelled each time


async def test_a_remote_states_resources_are_not_taken_from_the_local_pool() -> None:
    from fluffy_nb import ResourcePool, ResourceRequirements

    rec = Recording()
    agent = Agent("pools", executor=rec, resource_pool=ResourcePool(total_gpu=0))
    agent.add_state("train", lambda ctx: None, remote=True, resources=ResourceRequirements(gpu_units=1))
    await agent.run()
    assert rec.calls == [("train", 1)]

    local = Agent("local-gpu", resource_pool=ResourcePool(total_gpu=0))
    local.add_state("train", lambda ctx: None, resources=ResourceRequirements(gpu_units=1))
    with pytest.raises(ResourceError, match="'train' asks for 1 GPU"):
        await local.run()
