"""The class-based style of patterns-puffinflow-advanced.rst: @state methods, StateBuilder, dynamic states."""

from __future__ import annotations

import asyncio
from typing import Callable, List  # noqa: UP035 - the spec's spelling

import pytest

from fluffy_nb import (
    Agent,
    AgentStatus,
    Context,
    RetryPolicy,
    StateBuilder,
    StateFailedError,
    StateStatus,
    state,
)


class ValidationError(Exception):
    pass


async def complex_processing(data):
    await asyncio.sleep(0)
    return data.upper()


# -- spec: Custom State Builders -------------------------------------------------------------------
class CustomStateBuilder(StateBuilder):
    def __init__(self, validation_rules=None):
        super().__init__()
        self.validation_rules = validation_rules or []

    def with_validation(self, rule):
        """Add validation rule to the state."""
        self.validation_rules.append(rule)
        return self

    def with_timeout(self, seconds):
        """Add timeout to the state."""
        self.timeout = seconds
        return self

    def build(self, func):
        """Build the state with custom logic."""

        async def wrapper(agent_self, ctx: Context):
            for rule in self.validation_rules:
                if not rule(ctx):
                    raise ValidationError(f"Validation failed: {rule.__name__}")
            if hasattr(self, "timeout"):
                return await asyncio.wait_for(func(agent_self, ctx), self.timeout)
            else:
                return await func(agent_self, ctx)

        return state(func=wrapper, **self.kwargs)


class AdvancedAgent(Agent):
    @CustomStateBuilder().with_validation(lambda ctx: hasattr(ctx, "input_data")).with_timeout(30).build
    async def validated_processing(self, ctx: Context) -> None:
        """Processing with validation and timeout."""
        ctx.result = await complex_processing(ctx.input_data)


async def test_custom_state_builder_validates_then_processes():
    agent = AdvancedAgent()
    assert agent.name == "AdvancedAgent"
    assert list(agent.states) == ["validated_processing"]
    agent.set_state("input_data", "payload")
    result = await agent.run()
    assert result.get_state("result") == "PAYLOAD"
    assert agent.status is AgentStatus.COMPLETED


async def test_custom_state_builder_validation_failure_fails_the_run():
    agent = AdvancedAgent()
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(agent.run(), 5)
    assert isinstance(info.value.__cause__, ValidationError)
    assert "validated_processing" in str(info.value)


# -- spec: Dynamic State Registration -------------------------------------------------------------
class DynamicAgent(Agent):
    def __init__(self):
        super().__init__()
        self.dynamic_states = {}

    def register_dynamic_state(self, name: str, func, dependencies=None):
        """Register a state dynamically."""

        @state(depends_on=dependencies or [])
        async def dynamic_state(self, ctx: Context):
            return await func(self, ctx)

        setattr(self, name, dynamic_state.__get__(self, type(self)))
        self.dynamic_states[name] = dynamic_state

    async def execute_dynamic_workflow(self, workflow_definition):
        """Execute a workflow defined at runtime."""
        for step in workflow_definition:
            if step["name"] not in self.dynamic_states:
                self.register_dynamic_state(step["name"], step["function"], step.get("dependencies"))
        return await self.run()


async def test_dynamic_agent_runs_the_workflow_defined_at_runtime():
    async def custom_processing(agent, ctx):
        ctx.custom_result = "Dynamic processing complete"

    agent = DynamicAgent()
    workflow = [{"name": "dynamic_step", "function": custom_processing, "dependencies": []}]
    result = await agent.execute_dynamic_workflow(workflow)
    assert result.get_state("custom_result") == "Dynamic processing complete"
    assert agent.completed_states == ["dynamic_step"]


async def test_dynamic_agent_honours_dependencies_between_registered_steps():
    order = []

    def step(name):
        async def run(agent, ctx):
            await asyncio.sleep(0)
            order.append(name)

        return run

    agent = DynamicAgent()
    result = await agent.execute_dynamic_workflow(
        [
            {"name": "report", "function": step("report"), "dependencies": ["load", "clean"]},
            {"name": "clean", "function": step("clean"), "dependencies": ["load"]},
            {"name": "load", "function": step("load")},
        ]
    )
    assert order == ["load", "clean", "report"]
    assert result.status is AgentStatus.COMPLETED


# -- spec: Saga --------------------------------------------------------------------------------------
class SagaStep:
    def __init__(self, name: str, action: Callable, compensation: Callable):
        self.name = name
        self.action = action
        self.compensation = compensation
        self.executed = False
        self.compensated = False


class SagaOrchestrator(Agent):
    def __init__(self, saga_steps: List[SagaStep]):  # noqa: UP006
        super().__init__()
        self.saga_steps = saga_steps
        self.executed_steps = []

    @state
    async def execute_saga(self, ctx: Context) -> None:
        try:
            for step in self.saga_steps:
                await step.action(ctx)
                step.executed = True
                self.executed_steps.append(step)
            ctx.saga_completed = True
        except Exception as e:
            await self.compensate_saga(ctx, e)
            raise

    async def compensate_saga(self, ctx: Context, original_error: Exception):
        ctx.saga_failed = True
        ctx.original_error = str(original_error)
        for step in reversed(self.executed_steps):
            if step.executed and not step.compensated:
                await step.compensation(ctx)
                step.compensated = True


@pytest.mark.parametrize("hotel_fails", [False, True])
async def test_saga_compensates_completed_steps_when_a_later_one_fails(hotel_fails):
    log = []

    async def book_flight(ctx: Context):
        ctx.flight_booking = {"id": "F1"}
        log.append("book_flight")

    async def cancel_flight(ctx: Context):
        log.append(f"cancel_flight {ctx.flight_booking['id']}")

    async def book_hotel(ctx: Context):
        if hotel_fails:
            raise RuntimeError("no rooms")
        ctx.hotel_booking = {"id": "H1"}
        log.append("book_hotel")

    async def cancel_hotel(ctx: Context):
        log.append("cancel_hotel")

    travel_saga = SagaOrchestrator(
        [SagaStep("book_flight", book_flight, cancel_flight), SagaStep("book_hotel", book_hotel, cancel_hotel)]
    )
    if hotel_fails:
        with pytest.raises(StateFailedError) as info:
            await asyncio.wait_for(travel_saga.run(), 5)
        assert str(info.value.__cause__) == "no rooms"
        assert log == ["book_flight", "cancel_flight F1"]
        assert travel_saga.get_state("saga_failed") is True
        assert travel_saga.get_state("original_error") == "no rooms"
    else:
        result = await travel_saga.run()
        assert log == ["book_flight", "book_hotel"]
        assert result.get_state("saga_completed") is True
    assert "compensate_saga" not in travel_saga.states


# -- @state and StateBuilder on methods ---------------------------------------------------------------
class Pipeline(Agent):
    @state
    async def load(self, ctx):
        ctx.set_state("rows", [3, 1, 2])
        self.loaded_by = self.name
        return "sort"

    @StateBuilder().with_retry(max_retries=2, initial_delay=0, jitter=False).with_timeout(5).build
    async def sort(self, ctx):
        if ctx.attempt == 1:
            raise ConnectionError("flaky")
        ctx.set_state("rows", sorted(ctx.get_state("rows")))
        return ["report", "archive"]

    @state(depends_on=["sort"], priority=3)
    async def report(self, ctx):
        return None

    @state(next=["report"])
    async def archive(self, ctx):
        return None

    async def helper(self, ctx):  # not a state
        return None


async def test_state_methods_are_collected_with_their_options():
    agent = Pipeline("pipe")
    assert set(agent.states) == {"load", "sort", "report", "archive"}
    sort = agent.states["sort"]
    assert isinstance(sort.retry_policy, RetryPolicy)
    assert sort.retry_policy.max_retries == 2
    assert sort.timeout == 5
    assert agent.states["report"].priority == 3
    assert "sort" in agent.states["report"].dependencies
    assert ("archive", "report") in {(s, d) for s, d, _ in agent.graph.edge_list()}
    result = await agent.run()
    assert result.get_state("rows") == [1, 2, 3]
    assert agent.loaded_by == "pipe"
    assert agent.state_metadata["sort"].attempts == 2
    assert result.state_runs["report"] == 1  # named by sort, by archive and gated by sort: runs once
    assert agent.state_metadata["report"].status is StateStatus.COMPLETED


async def test_two_instances_of_one_class_do_not_share_state():
    a, b = Pipeline("a"), Pipeline("b")
    await a.run()
    assert b.status is AgentStatus.IDLE
    assert b.completed_states == []
    assert a.states["load"].func.__self__ is a
    assert b.states["load"].func.__self__ is b


def test_state_decorator_on_a_plain_function_passes_its_options_to_add_state():
    @state(timeout=3, max_retries=1)
    async def fetch(ctx):
        return None

    agent = Agent("plain")
    spec = agent.add_state(fetch)
    assert spec.name == "fetch"
    assert spec.timeout == 3
    assert spec.retry_policy.max_retries == 1
