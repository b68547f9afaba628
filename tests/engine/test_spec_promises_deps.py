"""What the spec promises about dependencies and restoring checkpoints, in its own words (issue 17).

Each test starts from a spec snippet (fluffy-agent-flow-guide.md / -features.md) and checks the
behaviour a user of that snippet relies on. Time is driven by a ManualClock and events, never slept.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from _wait import until

from fluffy_nb import (
    Agent,
    AgentStatus,
    Checkpoint,
    CheckpointError,
    Context,
    DependencyConfig,
    DependencyLifecycle,
    DependencyNotSatisfiedError,
    DependencyTimeoutError,
    DependencyType,
    ManualClock,
    StateFailedError,
    StateResult,
    StateStatus,
)
from fluffy_nb.engine._deps import CONDITION_POLL


# -- "Checkpointing & Recovery": restore into a new agent --------------------------------------------
def _workflow(gate: asyncio.Event, calls: list[str]) -> Agent:
    agent = Agent("my_workflow")

    async def fetch(context: Context) -> StateResult:
        calls.append("fetch")
        context.set_state("rows", [1, 2, 3])
        return "process"

    async def process(context: Context) -> StateResult:
        calls.append("process")
        await gate.wait()
        context.set_state("total", sum(context.get_state("rows")))
        return None

    agent.add_state("fetch", fetch)
    agent.add_state("process", process)
    return agent


def never_prepared(name: str, dependency: Any, clock: ManualClock | None = None) -> Agent:
    """start -> (nothing): ``prepare_data`` could run only if ``never_set`` were set, and
    ``final_step`` waits for it under ``dependency``."""

    async def start(context: Context) -> StateResult:
        if context.get_state("never_set"):
            return "prepare_data"  # the only way prepare_data would run: it never does
        return None

    async def prepare_data(context: Context) -> StateResult:
        return None

    async def final_step(context: Context) -> StateResult:
        return None

    agent = Agent(name, clock=clock)
    agent.add_state("start", start)
    agent.add_state("prepare_data", prepare_data)
    agent.add_state("final_step", final_step, dependencies={"prepare_data": dependency})
    return agent


async def test_the_spec_restore_snippet_restores_into_an_agent_with_no_states(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    gate, calls = asyncio.Event(), []
    agent = _workflow(gate, calls)
    handle = agent.start()
    await until(lambda: calls == ["fetch", "process"], "fetch done, process running")

    # -- the spec's snippet, verbatim ---------------------------------------------------------------
    # Create checkpoint
    checkpoint = agent.create_checkpoint()

    # Save checkpoint to file
    import json
    with open("workflow_state.json", "w") as f:  # noqa: ASYNC230 - the spec's own lines
        json.dump(checkpoint.to_dict(), f)

    # Create new agent and restore
    new_agent = Agent("restored_workflow")
    await new_agent.restore_from_checkpoint(checkpoint)
    # -- end of the snippet -------------------------------------------------------------------------

    gate.set()
    await handle
    # the data is there at once; the run waits (PAUSED) for its states to continue it
    assert new_agent.get_state("rows") == [1, 2, 3]
    assert new_agent.status is AgentStatus.PAUSED
    assert new_agent.create_checkpoint().completed_states == ["fetch"]
    # states come from code, never from the checkpoint: add them, then the run goes on where it stopped
    again = _workflow(gate, calls)
    for name, spec in again.states.items():
        new_agent.add_state(name, spec.func)
    result = await new_agent.run()
    assert result["total"] == 6
    assert calls == ["fetch", "process", "process"]  # fetch is not run again
    # and the file the snippet wrote restores the same way
    saved = Checkpoint.from_dict(json.loads(Path("workflow_state.json").read_text()))  # noqa: ASYNC240
    assert saved.completed_states == ["fetch"]


async def test_running_a_stateless_restore_before_adding_its_states_names_them() -> None:
    gate, calls = asyncio.Event(), []
    agent = _workflow(gate, calls)
    gate.set()
    await agent.run()
    new_agent = Agent("restored_workflow")
    await new_agent.restore_from_checkpoint(agent.create_checkpoint().to_dict())
    assert new_agent.get_state("total") == 6
    with pytest.raises(CheckpointError, match=r"names states \['fetch', 'process'\].*add them"):
        await new_agent.run()
    assert new_agent.prepared_run is not None  # still there: add the states and run again
    assert new_agent.prepared_run.metadata["process"].status is StateStatus.COMPLETED


# -- "Advanced Dependencies": condition, timeout ----------------------------------------------------
async def test_a_condition_that_becomes_true_starts_the_gated_state_promptly() -> None:
    """The spec's ``condition=lambda agent: agent.get_state("ready") == True``: the gated state
    starts when ``ready`` is set, not when some state happens to finish later."""
    order: list[str] = []
    release = asyncio.Event()

    async def prepare(context: Context) -> StateResult:
        return None

    async def producer(context: Context) -> StateResult:
        context.set_state("ready", True)
        order.append("ready set")
        await release.wait()  # keeps running long after the condition holds
        order.append("producer done")
        return None

    async def complex_step(context: Context) -> StateResult:
        order.append("complex_step")
        return None

    config = DependencyConfig(
        type=DependencyType.REQUIRED,
        lifecycle=DependencyLifecycle.ONCE,
        condition=lambda agent: agent.get_state("ready") == True,  # noqa: E712 - the spec's own words
        timeout=60,
    )
    agent = Agent("conditions", clock=ManualClock())  # time stands still: no timer can be what starts it
    agent.add_state("prepare", prepare)
    agent.add_state("producer", producer)
    agent.add_state("complex_step", complex_step, dependencies={"prepare": config})
    handle = agent.start()
    await until(lambda: "complex_step" in order, "complex_step started while producer still runs")
    assert order == ["ready set", "complex_step"]
    release.set()
    await handle
    assert order[-1] == "producer done"


async def test_a_condition_on_the_outside_world_is_rechecked_on_a_timer() -> None:
    clock, world, release = ManualClock(), {"file_arrived": False}, asyncio.Event()

    async def prepare(context: Context) -> StateResult:
        return None

    async def long_job(context: Context) -> StateResult:
        await release.wait()
        return None

    async def load_file(context: Context) -> StateResult:
        context.set_state("loaded", True)
        return None

    agent = Agent("outside", clock=clock)
    agent.add_state("prepare", prepare)
    agent.add_state("long_job", long_job)
    agent.add_state("load_file", load_file,
                    dependencies={"prepare": DependencyConfig(condition=lambda agent: world["file_arrived"])})
    handle = agent.start()
    await clock.wait_for_sleepers(1)
    await clock.advance(CONDITION_POLL * 3)
    assert agent.state_metadata["load_file"].status is StateStatus.BLOCKED
    world["file_arrived"] = True  # nothing in the run changed: only the timer can notice
    await clock.advance(CONDITION_POLL)
    await until(lambda: agent.get_state("loaded") is True, "load_file ran once the file arrived")
    assert not handle.done()  # long_job still runs
    release.set()
    await handle


async def test_a_dependency_timeout_fires_with_nothing_else_running() -> None:
    """``timeout=60  # 1 minute``: fires even when no other state keeps the run alive; the run
    fails with DependencyTimeoutError, not "completed" with the waiting state cancelled."""
    clock = ManualClock()

    agent = never_prepared("timeouts", DependencyConfig(timeout=60), clock=clock)
    handle = agent.start()
    await clock.wait_for_sleepers(1)
    await clock.advance(60)
    with pytest.raises(StateFailedError) as info:
        await handle
    assert isinstance(info.value.__cause__, DependencyTimeoutError)
    assert "'final_step'" in str(info.value.__cause__)
    assert "'prepare_data'" in str(info.value.__cause__)
    assert str(info.value).startswith("state 'final_step' did not start: ")  # not "failed after 1 attempt(s)"
    assert agent.status is AgentStatus.FAILED
    assert agent.state_metadata["final_step"].status is StateStatus.TIMEOUT


async def test_a_waiting_state_that_can_never_run_fails_the_run_with_a_typed_error() -> None:
    """``"prepare_data": DependencyType.REQUIRED  # Must complete first``: when nothing left can
    run prepare_data, final_step can never start, and the run says so instead of "completed"."""

    agent = never_prepared("never", DependencyType.REQUIRED, clock=None)
    with pytest.raises(DependencyNotSatisfiedError) as info:
        await agent.run()
    assert (info.value.state, info.value.dependency) == ("final_step", "prepare_data")
    assert "can never start" in str(info.value)
    assert agent.status is AgentStatus.FAILED


async def test_a_false_condition_with_a_timeout_waits_for_the_world_then_times_out() -> None:
    clock, world = ManualClock(), {"go": False}

    async def prepare(context: Context) -> StateResult:
        return None

    async def gated(context: Context) -> StateResult:
        context.set_state("ran", True)
        return None

    def build() -> Agent:
        agent = Agent("world", clock=clock)
        agent.add_state("prepare", prepare)
        agent.add_state("gated", gated,
                        dependencies={"prepare": DependencyConfig(condition=lambda a: world["go"], timeout=5)})
        return agent

    agent = build()
    handle = agent.start()
    await clock.wait_for_sleepers(1)
    await clock.advance(2)
    world["go"] = True
    await clock.advance(CONDITION_POLL)
    assert (await handle)["ran"] is True

    world["go"] = False
    agent = build()
    handle = agent.start()
    await until(lambda: agent.state_metadata["prepare"].status is StateStatus.COMPLETED, "prepare done")
    await clock.wait_for_sleepers(2)  # the condition's poll and its timeout, now that nothing else runs
    await clock.advance(4.9)
    assert not handle.done()
    await clock.advance(0.1)
    with pytest.raises(StateFailedError) as info:
        await handle
    assert isinstance(info.value.__cause__, DependencyTimeoutError)
    assert "condition" in str(info.value.__cause__)


# -- review item 9: a pause stops the clock of dependency timeouts ------------------------------------
async def test_time_spent_paused_does_not_count_against_a_dependency_timeout() -> None:
    """``DependencyConfig(timeout=60)``: a run paused at 30 s and left paused for an hour resumes with
    its 30 s left; the timeout fires only when they have passed while running."""
    clock = ManualClock()

    agent = never_prepared("paused_timeout", DependencyConfig(timeout=60), clock=clock)
    handle = agent.start()
    await clock.wait_for_sleepers(1)
    await clock.advance(30)
    await agent.pause()
    await clock.advance(3600)
    assert agent.status is AgentStatus.PAUSED
    assert not handle.done()
    assert await agent.resume() is None  # the paused run continues
    await clock.wait_for_sleepers(1)
    await clock.advance(29.9)
    assert not handle.done()
    await clock.advance(0.1)
    with pytest.raises(StateFailedError) as info:
        await handle
    assert isinstance(info.value.__cause__, DependencyTimeoutError)
    assert agent.state_metadata["final_step"].status is StateStatus.TIMEOUT


async def test_a_condition_set_while_paused_is_seen_on_resume_not_timed_out() -> None:
    """A condition given ``timeout=5`` waits; the run is paused past those 5 s and the user sets the
    value it waits for meanwhile: on resume the gated state runs and the run completes."""
    clock = ManualClock()

    async def prepare(context: Context) -> StateResult:
        return None

    async def gated(context: Context) -> StateResult:
        context.set_state("ran", True)
        return None

    agent = Agent("paused_condition", clock=clock)
    agent.add_state("prepare", prepare)
    agent.add_state("gated", gated, dependencies={"prepare": DependencyConfig(
        condition=lambda a: a.get_state("go", False), timeout=5)})
    handle = agent.start()
    await until(lambda: agent.state_metadata["prepare"].status is StateStatus.COMPLETED, "prepare done")
    await clock.wait_for_sleepers(2)  # the condition's poll and its timeout
    await clock.advance(4)
    await agent.pause()
    await clock.advance(60)
    assert agent.status is AgentStatus.PAUSED
    assert not handle.done()
    agent.set_state("go", True)
    await clock.advance(CONDITION_POLL)
    assert agent.status is AgentStatus.PAUSED
    assert agent.get_state("ran") is None
    assert await agent.resume() is None  # the paused run continues
    assert (await handle)["ran"] is True
    assert agent.status is AgentStatus.COMPLETED


async def test_a_condition_timeout_resumes_with_the_time_it_had_left() -> None:
    clock = ManualClock()

    async def prepare(context: Context) -> StateResult:
        return None

    async def gated(context: Context) -> StateResult:
        return None

    agent = Agent("paused_condition_timeout", clock=clock)
    agent.add_state("prepare", prepare)
    agent.add_state("gated", gated, dependencies={"prepare": DependencyConfig(
        condition=lambda a: a.get_state("go", False), timeout=5)})
    handle = agent.start()
    await until(lambda: agent.state_metadata["prepare"].status is StateStatus.COMPLETED, "prepare done")
    await clock.wait_for_sleepers(2)
    await clock.advance(4)
    await agent.pause()
    await clock.advance(60)
    assert not handle.done()
    await agent.resume()
    await clock.advance(0.9)
    assert not handle.done()
    await clock.advance(0.1)
    with pytest.raises(StateFailedError) as info:
        await handle
    assert isinstance(info.value.__cause__, DependencyTimeoutError)
    assert "condition" in str(info.value.__cause__)


async def test_a_state_that_starts_waiting_during_a_pause_gets_its_whole_timeout_after_resume() -> None:
    """A state reached while the run drains for a pause starts waiting for its dependency then:
    its ``timeout=10`` starts counting only when the run resumes."""
    clock, gate = ManualClock(), asyncio.Event()

    async def start(context: Context) -> StateResult:
        if context.get_state("never_set"):
            return "prepare_data"
        return "slow"

    async def slow(context: Context) -> StateResult:
        await gate.wait()
        return "final_step"

    async def prepare_data(context: Context) -> StateResult:
        return None

    async def final_step(context: Context) -> StateResult:
        return None

    agent = Agent("parked_while_paused", clock=clock)
    agent.add_state("start", start)
    agent.add_state("slow", slow)
    agent.add_state("prepare_data", prepare_data)
    agent.add_state("final_step", final_step, dependencies={"prepare_data": DependencyConfig(timeout=10)})
    handle = agent.start()
    await until(lambda: agent.state_metadata["slow"].status is StateStatus.RUNNING, "slow runs")
    pausing = asyncio.create_task(agent.pause())
    await asyncio.sleep(0)  # one loop turn: pause() has stopped starting states and waits for slow
    gate.set()  # slow ends during the pause; final_step starts waiting for prepare_data now
    await pausing
    await clock.advance(100)
    assert agent.status is AgentStatus.PAUSED
    assert not handle.done()
    assert await agent.resume() is None
    await clock.advance(9.9)
    assert not handle.done()
    await clock.advance(0.1)
    with pytest.raises(StateFailedError) as info:
        await handle
    assert isinstance(info.value.__cause__, DependencyTimeoutError)
