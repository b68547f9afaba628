"""Dependencies: REQUIRED, OPTIONAL, PARALLEL, SEQUENTIAL; ONCE/PERIODIC, condition, expiry, interval, timeout."""

from __future__ import annotations

import asyncio
import itertools
from functools import partial

import pytest
from _wait import until as wait_until

from fluffy_nb import (
    Agent,
    AgentStatus,
    DependencyConfig,
    DependencyLifecycle,
    DependencyNotSatisfiedError,
    DependencyTimeoutError,
    DependencyType,
    ManualClock,
    StateFailedError,
    StateStatus,
)
from fluffy_nb.engine._events import StateBlocked, StateStarted

until = partial(wait_until, limit=1000)


def recorder(order, name, gate=None, target=None):
    async def f(ctx):
        order.append(f"{name}:start")
        if gate is not None:
            await gate.wait()
        order.append(f"{name}:end")
        return target

    return f


async def test_required_dependency_blocks_until_it_completes(record):
    gate = asyncio.Event()
    order: list[str] = []
    agent = Agent("required")
    agent.add_state("dep", recorder(order, "dep", gate))
    agent.add_state("x", recorder(order, "x"), dependencies={"dep": DependencyType.REQUIRED})
    log = record(agent)
    run = asyncio.create_task(agent.run())
    await until(lambda: log.of(StateStarted, "dep"))
    assert agent.state_metadata["x"].status is StateStatus.BLOCKED
    assert "dep (required)" in log.of(StateBlocked, "x")[0].reason
    gate.set()
    await asyncio.wait_for(run, 5)
    assert order == ["dep:start", "dep:end", "x:start", "x:end"]


async def test_list_of_names_means_required():
    order: list[str] = []
    agent = Agent("list")
    agent.add_state("x", recorder(order, "x"), dependencies=["a", "b"])
    agent.add_state("a", recorder(order, "a"))
    agent.add_state("b", recorder(order, "b"))
    await agent.run()
    assert order[-2:] == ["x:start", "x:end"]


async def test_required_dependency_that_never_runs_fails_the_run_naming_state_and_dependency(record):
    async def start(ctx):
        if ctx.get_state("never_true"):
            return "untaken"
        return None

    agent = Agent("unsatisfied")
    agent.add_state("start", start)
    agent.add_state("untaken", recorder([], "untaken"))
    agent.add_state("x", recorder([], "x"), dependencies={"untaken": DependencyType.REQUIRED})
    with pytest.raises(DependencyNotSatisfiedError, match=r"'x' can never start.*'untaken' never completed") as info:
        await asyncio.wait_for(agent.run(), 5)
    assert (info.value.state, info.value.dependency) == ("x", "untaken")
    assert agent.status is AgentStatus.FAILED
    assert agent.state_metadata["x"].status is StateStatus.FAILED


async def test_optional_dependency_not_scheduled_does_not_wait():
    order: list[str] = []

    async def start(ctx):
        order.append("start")
        if ctx.get_state("never_true"):
            return "maybe"
        return None

    agent = Agent("optional_absent")
    agent.add_state("start", start)
    agent.add_state("maybe", recorder(order, "maybe"))
    agent.add_state("x", recorder(order, "x"), dependencies={"start": "required", "maybe": DependencyType.OPTIONAL})
    result = await asyncio.wait_for(agent.run(), 5)
    assert order == ["start", "x:start", "x:end"]
    assert result.status is AgentStatus.COMPLETED


async def test_optional_dependency_that_is_running_is_waited_for():
    gate = asyncio.Event()
    order: list[str] = []
    agent = Agent("optional_running")
    agent.add_state("maybe", recorder(order, "maybe", gate))
    agent.add_state("x", recorder(order, "x"), dependencies={"maybe": DependencyType.OPTIONAL})
    run = asyncio.create_task(agent.run())
    await until(lambda: "maybe:start" in order)
    assert agent.state_metadata["x"].status is StateStatus.BLOCKED
    gate.set()
    await asyncio.wait_for(run, 5)
    assert order == ["maybe:start", "maybe:end", "x:start", "x:end"]


async def test_parallel_dependency_is_started_alongside_and_not_waited_for():
    release_bg = asyncio.Event()
    order: list[str] = []

    async def x(ctx):
        order.append("x")
        release_bg.set()  # x runs while background is still running
        return None

    async def start(ctx):
        if ctx.get_state("never_true"):
            return "background"  # so background is no start state: only x's dependency starts it
        return None

    agent = Agent("parallel_dep")
    agent.add_state("start", start)
    agent.add_state("x", x, dependencies={"background": DependencyType.PARALLEL})
    agent.add_state("background", recorder(order, "background", release_bg))
    result = await asyncio.wait_for(agent.run(), 5)
    assert "x" in order
    assert order.index("x") < order.index("background:end")
    assert result.state_runs["background"] == 1
    assert agent.state_metadata["background"].status is StateStatus.COMPLETED


async def test_sequential_dependency_never_overlaps():
    gate = asyncio.Event()
    order: list[str] = []
    agent = Agent("sequential")
    agent.add_state("previous_step", recorder(order, "previous_step", gate))
    agent.add_state("x", recorder(order, "x"), dependencies={"previous_step": DependencyType.SEQUENTIAL})
    run = asyncio.create_task(agent.run())
    for _ in range(20):
        await asyncio.sleep(0)
    assert order == ["previous_step:start"]
    gate.set()
    await asyncio.wait_for(run, 5)
    assert order == ["previous_step:start", "previous_step:end", "x:start", "x:end"]


async def test_condition_gates_the_dependency():
    order: list[str] = []

    async def dep(ctx):
        order.append("dep")
        return "flip"

    async def flip(ctx):
        ctx.set_state("ready", True)
        order.append("flip")
        return None

    agent = Agent("condition")
    agent.add_state("dep", dep)
    agent.add_state("flip", flip)
    agent.add_state(
        "x",
        recorder(order, "x"),
        dependencies={"dep": DependencyConfig(condition=lambda agent: agent.get_state("ready") is True)},
    )
    await agent.run()
    assert order == ["dep", "flip", "x:start", "x:end"]


@pytest.mark.parametrize(("expiry", "runs"), [(5, False), (20, True)])
async def test_expired_completion_does_not_satisfy(expiry, runs):
    clock = ManualClock()
    order: list[str] = []

    async def dep(ctx):
        order.append("dep")
        return "slow"

    async def slow(ctx):
        await clock.sleep(10)  # the dependency's completion is now 10 s old
        ctx.set_state("go", True)
        return None

    agent = Agent("expiry", clock=clock)
    agent.add_state("dep", dep)
    agent.add_state("slow", slow)
    agent.add_state(
        "x",
        recorder(order, "x"),
        dependencies={"dep": DependencyConfig(expiry=expiry, condition=lambda a: a.get_state("go") is True)},
    )
    run = asyncio.create_task(agent.run())
    await clock.wait_for_sleepers(1)
    await clock.advance(10)
    if runs:
        await asyncio.wait_for(run, 5)
    else:  # expired, and nothing left could run dep again: the run fails instead of ending "completed"
        with pytest.raises(DependencyNotSatisfiedError, match=r"completion of 'dep' expired \(expiry=5s\)"):
            await asyncio.wait_for(run, 5)
    assert ("x:end" in order) is runs
    assert agent.state_metadata["x"].status is (StateStatus.COMPLETED if runs else StateStatus.FAILED)


async def test_dependency_timeout_fails_with_dependency_timeout_error():
    agent = Agent("dep_timeout")

    async def stuck(ctx):
        await asyncio.Event().wait()

    agent.add_state("dep", stuck)
    agent.add_state("x", recorder([], "x"), dependencies={"dep": DependencyConfig(timeout=0.02)})
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(agent.run(), 5)
    cause = info.value.__cause__
    assert isinstance(cause, DependencyTimeoutError)
    assert "'x'" in str(cause)
    assert "'dep'" in str(cause)
    assert "0.02" in str(cause)
    assert agent.state_metadata["x"].status is StateStatus.TIMEOUT
    assert agent.state_metadata["dep"].status is StateStatus.CANCELLED


@pytest.mark.parametrize(("lifecycle", "expected"), [(DependencyLifecycle.ONCE, 1), (DependencyLifecycle.PERIODIC, 3)])
async def test_once_runs_once_periodic_runs_after_each_completion(lifecycle, expected):
    async def tick(ctx):
        n = ctx.get_state("n", 0) + 1
        ctx.set_state("n", n)
        return "pause" if n < 3 else None

    async def pause(ctx):
        await asyncio.sleep(0)
        return "tick"

    seen: list[int] = []

    async def x(ctx):
        seen.append(ctx.get_state("n"))
        return None

    agent = Agent("lifecycle")
    agent.add_state("tick", tick)
    agent.add_state("pause", pause)
    agent.add_state("x", x, dependencies={"tick": DependencyConfig(lifecycle=lifecycle)})
    await asyncio.wait_for(agent.run(start="tick"), 5)
    assert len(seen) == expected
    assert seen[0] == 1


async def test_periodic_interval_limits_how_often_the_dependent_runs_but_drops_no_completion():
    clock = ManualClock()
    seen: list[tuple[float, int]] = []

    async def tick(ctx):
        n = ctx.get_state("n", 0) + 1
        ctx.set_state("n", n)
        return "wait" if n < 4 else None

    async def wait(ctx):
        await clock.sleep(100)  # ticks at t = 0, 100, 200, 300; interval 150
        return "tick"

    async def x(ctx):
        seen.append((clock.monotonic(), ctx.get_state("n")))
        return None

    agent = Agent("interval", clock=clock)
    agent.add_state("tick", tick)
    agent.add_state("wait", wait)
    agent.add_state(
        "x", x, dependencies={"tick": DependencyConfig(lifecycle=DependencyLifecycle.PERIODIC, interval=150)}
    )
    run = asyncio.create_task(agent.run(start="tick"))
    for _ in range(20):
        if run.done():
            break
        await clock.wait_for_sleepers(1)
        for _ in range(5):  # let states that became ready at this moment start before time moves
            await asyncio.sleep(0)
        await clock.advance(50)
    await asyncio.wait_for(run, 5)
    starts = [t for t, _ in seen]
    assert all(b - a >= 150 for a, b in itertools.pairwise(starts)), seen
    assert seen[0] == (0.0, 1)
    assert seen[1] == (150.0, 2)  # tick 2 came at t=100, too soon: x ran when the interval passed
    assert seen[-1][1] == 4  # the last completion is not dropped either


def test_dependency_spellings_and_bad_values():
    from fluffy_nb import ConfigurationError

    agent = Agent("spell")

    async def f(ctx):
        return None

    spec = agent.add_state("x", f, dependencies={"a": "optional", "b": DependencyType.SEQUENTIAL})
    assert spec.dependencies["a"].type is DependencyType.OPTIONAL
    assert spec.dependencies["b"].type is DependencyType.SEQUENTIAL
    with pytest.raises(ConfigurationError, match=r"'y'.*'a'"):
        agent.add_state("y", f, dependencies={"a": 3})
    with pytest.raises(ConfigurationError, match="DependencyType"):
        DependencyConfig(type="required")


async def test_dependency_timeout_runs_on_the_agents_clock():
    clock = ManualClock()

    async def stuck(ctx):
        await asyncio.Event().wait()

    agent = Agent("dep_timeout_clock", clock=clock)
    agent.add_state("dep", stuck)
    agent.add_state("x", recorder([], "x"), dependencies={"dep": DependencyConfig(timeout=60)})
    run = asyncio.create_task(agent.run())
    await clock.wait_for_sleepers(1)
    await clock.advance(59)
    assert not run.done()
    assert agent.state_metadata["x"].status is StateStatus.BLOCKED
    await clock.advance(1)
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(run, 5)
    assert isinstance(info.value.__cause__, DependencyTimeoutError)


async def test_a_completed_dependency_does_not_time_out_while_a_condition_waits():
    """timeout guards a dependency that never completes, not the condition that follows it."""
    clock = ManualClock()
    order: list[str] = []

    async def dep(ctx):
        return "later"

    async def later(ctx):
        await clock.sleep(100)  # well past the 60 s timeout
        ctx.set_state("ready", True)
        return None

    agent = Agent("dep_done_condition_waits", clock=clock)
    agent.add_state("dep", dep)
    agent.add_state("later", later)
    agent.add_state(
        "x",
        recorder(order, "x"),
        dependencies={"dep": DependencyConfig(timeout=60, condition=lambda a: a.get_state("ready") is True)},
    )
    run = asyncio.create_task(agent.run())
    await clock.wait_for_sleepers(1)
    assert clock.sleepers == 2  # `later` and x's condition poll: x's timeout ended when dep completed
    await clock.advance(100)
    await asyncio.wait_for(run, 5)
    assert order == ["x:start", "x:end"]


async def test_a_dependency_timeout_fires_when_nothing_else_keeps_the_run_alive():
    clock = ManualClock()

    async def start(ctx):
        if ctx.get_state("never_true"):
            return "untaken"
        return None

    agent = Agent("lone_timer", clock=clock)
    agent.add_state("start", start)
    agent.add_state("untaken", recorder([], "untaken"))
    agent.add_state("x", recorder([], "x"), dependencies={"untaken": DependencyConfig(timeout=5)})
    run = asyncio.create_task(agent.run())
    await clock.wait_for_sleepers(1)
    await clock.advance(4.9)
    assert not run.done()
    assert agent.state_metadata["x"].status is StateStatus.BLOCKED
    await clock.advance(0.1)
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(run, 5)
    assert isinstance(info.value.__cause__, DependencyTimeoutError)
    assert agent.state_metadata["x"].status is StateStatus.TIMEOUT
    assert agent.status is AgentStatus.FAILED
    assert clock.sleepers == 0  # no timer outlives the run
