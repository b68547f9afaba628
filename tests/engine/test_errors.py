"""Bad input and failures: each a clear typed FluffyError naming the culprit and the fix."""

from __future__ import annotations

import asyncio

import pytest

from fluffy_nb import (
    Agent,
    AgentStatus,
    ConfigurationError,
    DependencyConfig,
    DependencyCycleError,
    DependencyType,
    DuplicateStateError,
    FluffyError,
    InvalidStateResultError,
    MaxStepsExceededError,
    RetryPolicy,
    StateFailedError,
    StateNotFoundError,
    StateStatus,
)


async def done(ctx):
    return None


async def test_unknown_next_state_names_the_state_and_the_value():
    async def a(ctx):
        return "nowhere"

    agent = Agent("unknown")
    agent.add_state("a", a)
    with pytest.raises(StateNotFoundError) as info:
        await asyncio.wait_for(agent.run(), 5)
    msg = str(info.value)
    assert "'a'" in msg
    assert "'nowhere'" in msg
    assert "add_state" in msg
    assert agent.status is AgentStatus.FAILED
    assert agent.state_metadata["a"].status is StateStatus.FAILED


@pytest.mark.parametrize("bad", [42, ["ok", 3], {"a": 1}, b"bytes"])
async def test_wrong_return_type_names_the_state_and_the_value(bad):
    async def a(ctx):
        return bad

    agent = Agent("wrong")
    agent.add_state("a", a)
    agent.add_state("ok", done)
    with pytest.raises(InvalidStateResultError) as info:
        await asyncio.wait_for(agent.run(start="a"), 5)
    assert "'a'" in str(info.value)
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, FluffyError)


def test_duplicate_state_name_is_refused():
    agent = Agent("dup")
    agent.add_state("a", done)
    with pytest.raises(DuplicateStateError, match="'a'"):
        agent.add_state("a", done)


@pytest.mark.parametrize(("name", "func"), [("", done), (None, done), ("x", "not callable")])
def test_add_state_rejects_bad_name_or_function(name, func):
    with pytest.raises(ConfigurationError):
        Agent("bad").add_state(name, func)


async def test_dependency_cycle_is_reported_with_the_cycle():
    agent = Agent("cycle")
    agent.add_state("a", done, dependencies=["c"])
    agent.add_state("b", done, dependencies={"a": DependencyType.REQUIRED})
    agent.add_state("c", done, dependencies={"b": DependencyType.SEQUENTIAL})
    with pytest.raises(DependencyCycleError) as info:
        await agent.run()
    assert sorted(info.value.cycle) == ["a", "b", "c"]
    assert "->" in str(info.value)
    assert "remove one" in str(info.value)
    assert agent.status is AgentStatus.IDLE


async def test_parallel_dependencies_do_not_count_as_a_cycle():
    agent = Agent("par_cycle")
    agent.add_state("a", done, dependencies={"b": DependencyType.PARALLEL})
    agent.add_state("b", done, dependencies={"a": DependencyType.PARALLEL})
    result = await asyncio.wait_for(agent.run(), 5)
    assert set(result.completed_states) == {"a", "b"}


async def test_endless_loop_hits_max_steps():
    async def ping(ctx):
        return "pong"

    async def pong(ctx):
        return "ping"

    agent = Agent("endless", max_steps=50)
    agent.add_state("ping", ping)
    agent.add_state("pong", pong)
    with pytest.raises(MaxStepsExceededError, match="max_steps") as info:
        await asyncio.wait_for(agent.run(start="ping"), 5)
    assert "50" in str(info.value)
    assert agent.status is AgentStatus.FAILED
    assert sum(agent.completion_counts.values()) == 50


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"max_retries": True},
        {"initial_delay": -0.1},
        {"max_delay": -1},
        {"initial_delay": 5, "max_delay": 1},
        {"exponential_base": 0.5},
    ],
)
def test_invalid_retry_policy_values(kwargs):
    with pytest.raises(ConfigurationError) as info:
        RetryPolicy(**kwargs)
    assert next(iter(kwargs)) in str(info.value)


@pytest.mark.parametrize("bad", [-1, 0, -0.5, "10", True])
async def test_negative_or_bad_timeouts_are_refused_everywhere(bad):
    agent = Agent("timeouts")
    with pytest.raises(ConfigurationError, match="timeout"):
        agent.add_state("a", done, timeout=bad)
    agent.add_state("b", done)
    with pytest.raises(ConfigurationError, match="run\\(timeout\\)"):
        await agent.run(timeout=bad)
    with pytest.raises(ConfigurationError, match="cleanup_timeout"):
        await agent.run(cleanup_timeout=bad)
    with pytest.raises(ConfigurationError, match="timeout"):
        DependencyConfig(timeout=bad)
    assert agent.status is AgentStatus.IDLE


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_max_concurrent_and_max_steps(bad):
    with pytest.raises(ConfigurationError, match="max_concurrent"):
        Agent("x", max_concurrent=bad)
    with pytest.raises(ConfigurationError, match="max_steps"):
        Agent("x", max_steps=bad if bad != 2.5 else -1)


async def test_two_concurrent_runs_of_one_agent_are_independent():
    gate = asyncio.Event()

    async def wait(ctx):
        await gate.wait()
        ctx.set_state("seen", ctx.get_state("order"))
        return None

    agent = Agent("busy")
    agent.add_state("wait", wait)
    first = asyncio.create_task(agent.run(initial_context={"order": 1}))
    second = asyncio.create_task(agent.run(initial_context={"order": 2}))
    await asyncio.sleep(0)
    assert agent.live_runs_count() == 2
    gate.set()
    one, two = await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert (one["seen"], two["seen"]) == (1, 2)
    assert one.run_id != two.run_id
    assert one.status is two.status is AgentStatus.COMPLETED


async def test_failing_state_fails_the_run_with_the_original_exception_chained():
    other_cancelled = asyncio.Event()
    slow_started = asyncio.Event()

    async def start(ctx):
        return ["bad", "slow"]

    async def bad(ctx):
        await slow_started.wait()
        raise ZeroDivisionError("division by zero in bad")

    async def slow(ctx):
        try:
            slow_started.set()
            await asyncio.Event().wait()  # never finishes on its own
        finally:
            other_cancelled.set()

    agent = Agent("fails")
    agent.add_state("start", start)
    agent.add_state("bad", bad)
    agent.add_state("slow", slow)
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(agent.run(), 5)  # never a hang
    err = info.value
    assert isinstance(err.__cause__, ZeroDivisionError)
    assert err.state == "bad"
    assert "'bad'" in str(err)
    assert "ZeroDivisionError" in str(err)
    assert other_cancelled.is_set()
    assert agent.status is AgentStatus.FAILED
    assert agent.state_metadata["bad"].status is StateStatus.FAILED
    assert agent.state_metadata["slow"].status is StateStatus.CANCELLED
    assert "ZeroDivisionError" in agent.state_metadata["bad"].last_error


async def test_failure_while_siblings_are_still_queued_does_not_hang():
    """Siblings created but not yet started when the run fails are cleaned up too."""

    async def fan(ctx):
        return ["boom", "q1", "q2", "q3"]

    async def boom(ctx):
        raise RuntimeError("boom")

    agent = Agent("queued")
    agent.add_state("fan", fan)
    agent.add_state("boom", boom)
    for n in ("q1", "q2", "q3"):
        agent.add_state(n, done)
    with pytest.raises(StateFailedError):
        await asyncio.wait_for(agent.run(), 5)
    assert agent.latest_run.scheduler.running == {}


async def test_failure_after_retries_reports_the_attempt_count():
    async def flaky(ctx):
        raise ConnectionError("down")

    agent = Agent("retries")
    agent.add_state("flaky", flaky, max_retries=2)
    with pytest.raises(StateFailedError, match="after 3 attempt") as info:
        await asyncio.wait_for(agent.run(), 5)
    assert isinstance(info.value.__cause__, ConnectionError)
    assert agent.state_metadata["flaky"].attempts == 3


def test_every_error_is_a_fluffy_error():
    import fluffy_nb.engine._errors as errors

    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert all(
        issubclass(c, FluffyError) for c in classes if c.__module__ == errors.__name__ and c.__name__.endswith("Error")
    )


async def test_run_start_with_unknown_state():
    agent = Agent("start")
    agent.add_state("a", done)
    with pytest.raises(StateNotFoundError, match="'zzz'"):
        await agent.run(start="zzz")


async def test_dependency_on_an_unknown_state_is_refused_at_run():
    agent = Agent("typo")
    agent.add_state("prepare_data", done)
    agent.add_state("final_step", done, dependencies={"prepare_dta": DependencyType.REQUIRED})
    with pytest.raises(StateNotFoundError) as info:
        await asyncio.wait_for(agent.run(), 5)
    assert "'final_step'" in str(info.value)
    assert "'prepare_dta'" in str(info.value)
    assert agent.status is AgentStatus.IDLE
