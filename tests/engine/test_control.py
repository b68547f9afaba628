"""Execution control: run/state timeouts, cleanup, pause/resume, cancel_state, cancel_all, statuses."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import pytest
from _wait import until as wait_until

from fluffy_nb import (
    Agent,
    AgentRunningError,
    AgentStatus,
    Checkpoint,
    RetryPolicy,
    RunTimeoutError,
    StateFailedError,
    StateNotFoundError,
    StateStatus,
    StateTimeoutError,
)
from fluffy_nb.engine._events import StateCancelled, StateStarted

until = partial(wait_until, limit=1000)


async def forever(ctx):
    await asyncio.Event().wait()


async def done(ctx):
    return None


async def started(log, state):
    """Wait until ``state`` has started (according to the event log)."""
    for _ in range(1000):
        if log.of(StateStarted, state):
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{state} never started")


# -- timeouts --------------------------------------------------------------------------------
async def test_run_timeout_cancels_running_states_and_lets_them_clean_up():
    cleaned = asyncio.Event()

    async def stuck(ctx):
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    agent = Agent("timeout")
    agent.add_state("stuck", stuck)
    with pytest.raises(RunTimeoutError, match="stuck") as info:
        await agent.run(timeout=0.05)
    assert "timeout=0.05" in str(info.value)
    assert cleaned.is_set()
    assert agent.status is AgentStatus.FAILED
    assert agent.state_metadata["stuck"].status is StateStatus.CANCELLED
    assert agent.latest_run.scheduler.running == {}


async def test_cleanup_timeout_bounds_how_long_cleanup_may_take(caplog):
    cleanup_forever = asyncio.Event()

    async def stubborn(ctx):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await cleanup_forever.wait()  # a cleanup that never finishes
            raise

    agent = Agent("cleanup")
    agent.add_state("stubborn", stubborn)
    with caplog.at_level(logging.WARNING, logger="fluffy_nb"), pytest.raises(RunTimeoutError):
        await asyncio.wait_for(agent.run(timeout=0.02, cleanup_timeout=0.02), 5)
    assert "did not finish cleanup" in caplog.text
    cleanup_forever.set()  # let the stubborn task end
    await asyncio.sleep(0)


async def test_state_timeout_marks_the_state_timeout_and_chains_state_timeout_error(record):
    agent = Agent("state_timeout")
    agent.add_state("slow", forever, timeout=0.02)
    log = record(agent)
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(agent.run(), 5)
    assert isinstance(info.value.__cause__, StateTimeoutError)
    assert "0.02" in str(info.value.__cause__)
    assert agent.state_metadata["slow"].status is StateStatus.TIMEOUT
    assert log.kinds("slow")[-1] == "StateFailed"
    assert log[-2].timed_out is True


async def test_state_timeout_is_retried_by_its_retry_policy():
    calls = []

    async def slow_then_fast(ctx):
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            await asyncio.Event().wait()
        return None

    agent = Agent("timeout_retry")
    agent.add_state(
        "s", slow_then_fast, timeout=0.02, retry_policy=RetryPolicy(max_retries=1, initial_delay=0, jitter=False)
    )
    await asyncio.wait_for(agent.run(), 5)
    assert calls == [1, 2]
    assert agent.state_metadata["s"].status is StateStatus.COMPLETED


# -- pause / resume ---------------------------------------------------------------------------------
async def test_pause_lets_running_states_finish_starts_nothing_new_and_returns_a_checkpoint(record):
    gate = asyncio.Event()

    async def a(ctx):
        await gate.wait()
        ctx.set_state("a_done", True)
        return "b"

    async def b(ctx):
        return None

    agent = Agent("pausing")
    agent.add_state("a", a)
    agent.add_state("b", b)
    log = record(agent)
    run = asyncio.create_task(agent.run())
    await started(log, "a")
    pausing = asyncio.create_task(agent.pause())
    await asyncio.sleep(0)
    assert not pausing.done()  # waits for a to finish
    gate.set()
    checkpoint = await asyncio.wait_for(pausing, 5)

    assert isinstance(checkpoint, Checkpoint)
    assert checkpoint.trigger == "pause"
    assert checkpoint.pending == ["b"]
    assert checkpoint.completed_states == ["a"]
    assert agent.status is AgentStatus.PAUSED
    assert agent.state_metadata["b"].status is StateStatus.READY
    assert len(agent.priority_queue) == 1
    assert not agent.latest_run.scheduler.running
    for _ in range(20):
        await asyncio.sleep(0)
    assert not log.of(StateStarted, "b")
    assert not run.done()

    assert await agent.resume() is None  # resuming a live run returns at once
    result = await asyncio.wait_for(run, 5)
    assert result.status is AgentStatus.COMPLETED
    assert result.completed_states == ["a", "b"]


async def test_pause_with_timeout_requeues_busy_states_and_resume_reruns_them(record):
    runs = []

    async def busy(ctx):
        runs.append(ctx.attempt)
        if len(runs) == 1:
            await asyncio.Event().wait()
        return None

    agent = Agent("pause_timeout")
    agent.add_state("busy", busy)
    log = record(agent)
    run = asyncio.create_task(agent.run())
    await started(log, "busy")
    checkpoint = await asyncio.wait_for(agent.pause(timeout=0.02), 5)
    assert checkpoint.pending == ["busy"]
    assert agent.state_metadata["busy"].status is StateStatus.READY
    await agent.resume()
    await asyncio.wait_for(run, 5)
    assert len(runs) == 2
    assert agent.status is AgentStatus.COMPLETED


async def test_pause_when_not_running_is_refused():
    agent = Agent("idle")
    agent.add_state("a", done)
    with pytest.raises(AgentRunningError, match="not running"):
        await agent.pause()


# -- cancellation --------------------------------------------------------------------------------
async def test_cancel_state_cancels_one_running_state_and_the_run_goes_on(record):
    cleaned = []

    async def fan(ctx):
        return ["victim", "other"]

    async def victim(ctx):
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("victim")

    async def other(ctx):
        return "after"

    agent = Agent("cancel_one")
    agent.add_state("fan", fan)
    agent.add_state("victim", victim)
    agent.add_state("other", other)
    agent.add_state("after", done)
    log = record(agent)
    run = asyncio.create_task(agent.run())
    await started(log, "victim")
    assert agent.cancel_state("victim") is True
    result = await asyncio.wait_for(run, 5)
    assert cleaned == ["victim"]
    assert agent.state_metadata["victim"].status is StateStatus.CANCELLED
    assert log.of(StateCancelled, "victim")[0].reason == "cancel_state"
    assert result.status is AgentStatus.COMPLETED
    assert set(result.completed_states) == {"fan", "other", "after"}


async def test_cancel_state_of_a_queued_state_means_it_never_runs(record):
    gate = asyncio.Event()

    async def fan(ctx):
        return ["first", "queued"]

    async def first(ctx):
        await gate.wait()
        return None

    agent = Agent("cancel_queued", max_concurrent=1)
    agent.add_state("fan", fan)
    agent.add_state("first", first)
    agent.add_state("queued", done)
    log = record(agent)
    run = asyncio.create_task(agent.run())
    await started(log, "first")
    assert agent.state_metadata["queued"].status is StateStatus.READY
    assert [ex.state for _, ex in agent.priority_queue] == ["queued"]
    assert agent.cancel_state("queued") is True
    assert agent.state_metadata["queued"].status is StateStatus.CANCELLED
    gate.set()
    await asyncio.wait_for(run, 5)
    assert not log.of(StateStarted, "queued")
    assert agent.status is AgentStatus.COMPLETED


def test_cancel_state_of_an_unknown_state():
    with pytest.raises(StateNotFoundError, match="'ghost'"):
        Agent("x").cancel_state("ghost")


async def test_cancel_all_ends_the_run_cancelled_and_starts_nothing_more(record):
    async def fan(ctx):
        return ["quick", "slow"]

    async def quick(ctx):
        return "join"

    agent = Agent("cancel_all")
    agent.add_state("fan", fan)
    agent.add_state("quick", quick)
    agent.add_state("slow", forever, next=["join"])
    agent.add_state("join", done)
    log = record(agent)
    run = asyncio.create_task(agent.run())
    await started(log, "slow")
    await until(lambda: agent.state_metadata["quick"].status is StateStatus.COMPLETED)
    await agent.cancel_all()
    result = await asyncio.wait_for(run, 5)
    for _ in range(10):
        await asyncio.sleep(0)
    assert result.status is AgentStatus.CANCELLED
    assert agent.status is AgentStatus.CANCELLED
    assert agent.state_metadata["slow"].status is StateStatus.CANCELLED
    assert not log.of(StateStarted, "join"), "a join started after cancel_all"
    assert agent.latest_run.scheduler.running == {}
    assert log[-1].status == "cancelled"


async def test_cancelling_the_run_task_cancels_its_states():
    cleaned = asyncio.Event()

    async def stuck(ctx):
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    agent = Agent("outer_cancel")
    agent.add_state("stuck", stuck)
    run = asyncio.create_task(agent.run())
    for _ in range(5):
        await asyncio.sleep(0)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert cleaned.is_set()
    assert agent.status is AgentStatus.CANCELLED


# -- statuses ----------------------------------------------------------------------------------------
async def test_statuses_are_true_at_each_moment(record):
    """READY while waiting for a slot, RUNNING inside, RETRYING between attempts, then COMPLETED."""
    gate = asyncio.Event()
    seen = {}

    async def fan(ctx):
        return ["holder", "waiter"]

    async def holder(ctx):
        seen["waiter_while_queued"] = agent.state_metadata["waiter"].status
        seen["metrics"] = {"running": len(agent.latest_run.scheduler.running), "pending": len(agent.priority_queue)}
        await gate.wait()
        return None

    async def waiter(ctx):
        seen["waiter_inside"] = agent.state_metadata["waiter"].status
        if ctx.attempt == 1:
            raise ValueError("once")
        return None

    agent = Agent("statuses", max_concurrent=1)
    agent.add_state("fan", fan)
    agent.add_state("holder", holder)
    agent.add_state("waiter", waiter, retry_policy=RetryPolicy(max_retries=1, initial_delay=0, jitter=False))
    at_retry = []
    agent.events.subscribe(
        lambda e: (
            at_retry.append(agent.state_metadata["waiter"].status) if type(e).__name__ == "StateRetrying" else None
        )
    )
    run = asyncio.create_task(agent.run())
    await until(lambda: "metrics" in seen)
    assert agent.status is AgentStatus.RUNNING
    gate.set()
    await asyncio.wait_for(run, 5)
    assert seen["waiter_while_queued"] is StateStatus.READY
    assert seen["metrics"] == {"running": 1, "pending": 1}
    assert seen["waiter_inside"] is StateStatus.RUNNING
    assert at_retry == [StateStatus.RETRYING]
    assert agent.state_metadata["waiter"].status is StateStatus.COMPLETED
    assert agent.state_metadata["waiter"].retries == 1


async def test_queued_and_blocked_states_are_cancelled_when_the_run_fails(record):
    async def fan(ctx):
        return ["boom", "queued"]

    async def boom(ctx):
        raise ValueError("boom")

    agent = Agent("fail_clears", max_concurrent=1)
    agent.add_state("fan", fan)
    agent.add_state("boom", boom)
    agent.add_state("queued", done)
    agent.add_state("after", done, dependencies=["queued"])
    log = record(agent)
    with pytest.raises(StateFailedError):
        await asyncio.wait_for(agent.run(), 5)
    statuses = {n: m.status for n, m in agent.state_metadata.items()}
    assert statuses == {
        "fan": StateStatus.COMPLETED,
        "boom": StateStatus.FAILED,
        "queued": StateStatus.CANCELLED,
        "after": StateStatus.CANCELLED,
    }
    assert log.kinds("queued") == ["StateScheduled", "StateCancelled"]
    assert log.kinds("after") == ["StateScheduled", "StateBlocked", "StateCancelled"]


async def test_every_event_finds_the_status_it_announces():
    """An observer reading agent.state_metadata when an event arrives sees the status it describes."""
    from fluffy_nb.engine import _events as ev

    expected = {
        ev.StateStarted: {StateStatus.RUNNING},
        ev.StateFinished: {StateStatus.COMPLETED},
        ev.StateRetrying: {StateStatus.RETRYING},
        ev.StateBlocked: {StateStatus.BLOCKED},
        ev.StateCancelled: {StateStatus.CANCELLED},
    }
    violations = []
    kinds_seen = set()

    async def fan(ctx):
        return ["flaky", "victim", "gated", "slow"]

    async def flaky(ctx):
        if ctx.attempt < 2:
            raise ConnectionError("once")
        return None

    async def victim(ctx):
        agent.cancel_state("victim")
        await asyncio.sleep(0)

    async def slow(ctx):
        await asyncio.Event().wait()

    agent = Agent("invariants")
    agent.add_state("fan", fan)
    agent.add_state("flaky", flaky, retry_policy=RetryPolicy(max_retries=1, initial_delay=0, jitter=False))
    agent.add_state("victim", victim)
    agent.add_state("gated", done, dependencies=["flaky"])
    agent.add_state("slow", slow, timeout=0.05)

    def check(event):
        kinds_seen.add(type(event))
        if isinstance(event, ev.RunStarted):
            ok = agent.status is AgentStatus.RUNNING
        elif isinstance(event, ev.RunFinished):
            ok = agent.status.value == event.status
        elif isinstance(event, ev.StateFailed):
            status = agent.state_metadata[event.state].status
            ok = status is (
                (StateStatus.TIMEOUT if event.timed_out else StateStatus.FAILED)
                if event.final
                else StateStatus.RETRYING
            )
        elif type(event) in expected:
            ok = agent.state_metadata[event.state].status in expected[type(event)]
        else:
            return
        if not ok:
            violations.append((event, agent.status, {n: m.status for n, m in agent.state_metadata.items()}))

    agent.events.subscribe(check)
    with pytest.raises(StateFailedError):
        await asyncio.wait_for(agent.run(), 5)
    assert violations == []
    assert {ev.StateRetrying, ev.StateBlocked, ev.StateCancelled, ev.StateFailed, ev.RunFinished} <= kinds_seen
    assert agent.state_metadata["slow"].status is StateStatus.TIMEOUT
    assert agent.state_metadata["gated"].status is StateStatus.COMPLETED


async def test_pause_checkpoint_holds_what_a_fresh_agent_needs_to_finish_the_run():
    import json

    def build(log):
        async def load(ctx):
            log.append("load")
            ctx.set_state("rows", [3, 1, 2])
            return "sort"

        async def sort(ctx):
            log.append("sort")
            ctx.set_state("rows", sorted(ctx.get_state("rows")))
            return None

        agent = Agent("resumable")
        agent.add_state("load", load)
        agent.add_state("sort", sort)
        return agent

    first_log: list[str] = []
    agent = build(first_log)
    run = asyncio.create_task(agent.run())
    await asyncio.sleep(0)
    checkpoint = await agent.pause()
    assert first_log == ["load"]
    saved = json.dumps(checkpoint.to_dict())  # JSON only
    await agent.cancel_all()
    await run

    second_log: list[str] = []
    fresh = build(second_log)
    await fresh.restore_from_checkpoint(Checkpoint.from_dict(json.loads(saved)))
    result = await asyncio.wait_for(fresh.run(), 5)
    assert second_log == ["sort"]  # load is not run again
    assert result.get_state("rows") == [1, 2, 3]
    assert result.completed_states == ["load", "sort"]


async def test_cancelling_one_branch_lets_the_join_run_with_the_others(record):
    async def fan(ctx):
        return ["victim", "other"]

    async def other(ctx):
        return "join"

    agent = Agent("cancel_branch")
    agent.add_state("fan", fan)
    agent.add_state("victim", forever, next=["join"])
    agent.add_state("other", other)
    agent.add_state("join", done)
    log = record(agent)
    run = asyncio.create_task(agent.run())
    await started(log, "victim")
    await until(lambda: agent.state_metadata["other"].status is StateStatus.COMPLETED)
    assert not log.of(StateStarted, "join")  # still waiting for victim's branch
    agent.cancel_state("victim")
    result = await asyncio.wait_for(run, 5)
    assert result.state_runs["join"] == 1
    assert result.status is AgentStatus.COMPLETED
