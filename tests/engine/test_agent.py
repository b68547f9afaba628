"""Agent: registering states, their options, metadata, removal, and the agent's face."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from fluffy_nb import (
    Agent,
    AgentRunningError,
    AgentStatus,
    ConfigurationError,
    Priority,
    ResourceRequirements,
    RetryPolicy,
    StateMetadata,
    StateNotFoundError,
    StateStatus,
)
from fluffy_nb.engine._policies import StateSpec


async def noop(ctx):
    return None


def test_add_state_returns_its_spec_and_creates_pending_metadata():
    agent = Agent("reg")
    spec = agent.add_state("a", noop, timeout=2, priority=Priority.HIGH)
    assert isinstance(spec, StateSpec)
    assert spec.name == "a"
    assert spec.timeout == 2.0
    assert spec.priority == 2
    assert isinstance(agent.state_metadata["a"], StateMetadata)
    assert agent.state_metadata["a"].status is StateStatus.PENDING
    assert agent.states["a"] is spec


async def test_a_state_spec_cannot_be_changed_after_add_state_and_the_error_says_what_to_do():
    """A timeout set on the spec after add_state used to be half seen: the state still ran in the
    quick inline path, which has no timeout. It is refused now, naming the way to change it."""
    agent = Agent("sealed")
    spec = agent.add_state("a", noop)
    with pytest.raises(ConfigurationError, match=r"StateSpec\('a'\)\.timeout = 0\.5.*remove_state\('a'\)"):
        spec.timeout = 0.5
    assert agent.states["a"].timeout is None
    copied = pickle.loads(pickle.dumps(spec))  # (a spec shipped to a worker stays fixed, and equal)
    assert copied == spec
    with pytest.raises(ConfigurationError, match="remove_state"):
        copied.priority = 3
    agent.remove_state("a")
    assert agent.add_state("a", noop, timeout=0.5).timeout == 0.5
    assert (await agent.run()).state_runs == {"a": 1}


def test_add_state_with_just_a_function_uses_its_name():
    agent = Agent("by_func")
    agent.add_state(noop)
    assert list(agent.states) == ["noop"]


def test_agent_without_a_name_is_named_after_its_class():
    class Crawler(Agent):
        pass

    assert Agent().name == "Agent"
    assert Crawler().name == "Crawler"


def test_max_retries_shorthand_builds_an_immediate_retry_policy():
    spec = Agent("mr").add_state("a", noop, max_retries=4)
    assert spec.retry_policy == RetryPolicy(max_retries=4, initial_delay=0.0, max_delay=0.0, jitter=False)


def test_resources_give_default_timeout_and_priority():
    req = ResourceRequirements(cpu_units=1.0, priority=Priority.CRITICAL, timeout=30)
    spec = Agent("res").add_state("a", noop, resources=req)
    assert spec.timeout == 30.0
    assert spec.priority == int(Priority.CRITICAL)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"resources": {"cpu": 1}}, "ResourceRequirements"), ({"retry_policy": 3}, "RetryPolicy")],
)
def test_add_state_rejects_wrongly_typed_options(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        Agent("bad").add_state("a", noop, **kwargs)


async def test_callable_object_with_async_call_is_awaited():
    class Step:
        async def __call__(self, ctx):
            ctx.set_state("called", True)
            return None

    agent = Agent("callable")
    agent.add_state("step", Step())
    await agent.run()
    assert agent.get_state("called") is True


async def test_remove_state_when_idle_and_refused_while_running():
    gate = asyncio.Event()

    async def wait(ctx):
        await gate.wait()
        return None

    agent = Agent("rm")
    agent.add_state("wait", wait)
    agent.add_state("extra", noop)
    agent.remove_state("extra")
    assert "extra" not in agent.states
    assert "extra" not in agent.state_metadata
    with pytest.raises(StateNotFoundError):
        agent.remove_state("extra")
    run = asyncio.create_task(agent.run())
    await asyncio.sleep(0)
    with pytest.raises(AgentRunningError, match="remove_state"):
        agent.remove_state("wait")
    gate.set()
    await run


async def test_states_can_be_added_while_running_and_run_in_the_same_run():
    async def grow(ctx):
        async def late(ctx):
            ctx.set_state("late", True)
            return None

        agent.add_state("late", late)
        return "late"

    agent = Agent("grow")
    agent.add_state("grow", grow)
    await agent.run()
    assert agent.get_state("late") is True
    assert agent.completed_states == ["grow", "late"]
    assert ("grow", "late") in {(s, d) for s, d, _ in agent.graph.edge_list()}


async def test_repr_shows_name_status_and_counts():
    agent = Agent("shown")
    agent.add_state("a", noop)
    assert repr(agent) == "<Agent 'shown' status=idle states=1 completed=0 running=0 runs_live=0>"
    result = await agent.run()
    assert "status=completed" in repr(agent)
    assert "completed=1" in repr(agent)
    assert "'shown' completed" in repr(result)
    assert agent.status is AgentStatus.COMPLETED
