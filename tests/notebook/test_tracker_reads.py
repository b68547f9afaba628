"""A view reads its run off the run itself, not from an event per state (``_trackruns``): what it
shows must be as exact as the events made it. Loops and retries between two reads, statuses and
open spans at a redraw tick in the middle of a run, a sub-flow's child states, and the engine's
quiet paths kept while a view watches."""

from __future__ import annotations

import asyncio

import pytest
from _wait import until

from fluffy_nb import Agent, ManualClock, RetryPolicy
from fluffy_nb.engine._errors import StateFailedError
from fluffy_nb.engine._events import StateFailed, StateFinished, StateStarted
from fluffy_nb.notebook import LiveView
from fluffy_nb.notebook._figures import _rows
from fluffy_nb.notebook._tracker import RunTracker


async def test_a_loop_that_ran_five_times_between_two_reads_shows_five_spans_with_their_own_times():
    clock = ManualClock()
    agent = Agent("loop", clock=clock)

    async def spin(ctx):
        await clock.advance(1.0 + ctx.get_state("n", 0))  # run k (from 0) takes 1 + k seconds
        n = ctx.get_state("n", 0) + 1
        ctx.set_state("n", n)
        return "spin" if n < 5 else "done"

    async def done(ctx):
        await clock.advance(0.5)

    agent.add_state("spin", spin, next=["spin", "done"])
    agent.add_state("done", done)
    tracker = RunTracker(agent)
    await agent.run()  # nothing reads the tracker while it runs: every run is found at the end
    spans = [(s.state, s.attempt, s.start, s.end, s.outcome) for s in tracker.spans]
    assert spans == [("spin", 1, 0.0, 1.0, "completed"), ("spin", 1, 1.0, 3.0, "completed"),
                     ("spin", 1, 3.0, 6.0, "completed"), ("spin", 1, 6.0, 10.0, "completed"),
                     ("spin", 1, 10.0, 15.0, "completed"), ("done", 1, 15.0, 15.5, "completed")]
    assert tracker.durations["spin"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert tracker.completed_runs == 6
    assert tracker.status == {"spin": "completed", "done": "completed"}
    meta = agent.latest_run.metadata["spin"]
    assert [f - clock.time() + 15.5 for f in meta.finishes] == [1.0, 3.0, 6.0, 10.0, 15.0]  # end of each run


async def test_a_loop_read_while_it_runs_keeps_one_span_per_run_and_the_running_one_open():
    clock = ManualClock()
    agent = Agent("loop", clock=clock)
    gate, entered = asyncio.Event(), asyncio.Event()

    async def spin(ctx):
        n = ctx.get_state("n", 0) + 1
        ctx.set_state("n", n)
        await clock.advance(1.0)
        if n == 3:
            entered.set()
            await gate.wait()  # the third run holds here while the view reads
        return "spin" if n < 4 else None

    agent.add_state("spin", spin, next=["spin"])
    view = LiveView(agent, interval=60)  # draws only when asked here
    handle = agent.start()
    view.attach(handle)
    await entered.wait()
    view.redraw(force=True)  # a redraw tick in the middle of the run
    tracker = view.tracker
    assert tracker.status["spin"] == "running"
    assert [(s.start, s.end, s.outcome) for s in tracker.spans] == [
        (0.0, 1.0, "completed"), (1.0, 2.0, "completed"), (2.0, None, "running")]
    gate.set()
    await handle
    assert [(s.start, s.end, s.outcome) for s in tracker.spans] == [
        (0.0, 1.0, "completed"), (1.0, 2.0, "completed"), (2.0, 3.0, "completed"), (3.0, 4.0, "completed")]
    assert tracker.completed_runs == 4
    view.close()


async def test_a_retried_state_shows_each_attempt_with_its_outcome_and_times():
    clock = ManualClock()
    agent = Agent("retry", clock=clock)

    async def flaky(ctx):
        await clock.advance(float(ctx.attempt))  # attempt k takes k seconds
        if ctx.attempt < 3:
            raise ValueError(f"attempt {ctx.attempt}")
        return "after"

    async def after(ctx):
        await clock.advance(1.0)

    agent.add_state("flaky", flaky, retry_policy=RetryPolicy(max_retries=2, initial_delay=0.0, jitter=False))
    agent.add_state("after", after)
    tracker = RunTracker(agent)
    await agent.run()
    assert [(s.state, s.attempt, s.start, s.end, s.outcome) for s in tracker.spans] == [
        ("flaky", 1, 0.0, 1.0, "retried"), ("flaky", 2, 1.0, 3.0, "retried"), ("flaky", 3, 3.0, 6.0, "completed"),
        ("after", 1, 6.0, 7.0, "completed")]
    assert tracker.retries == 2
    assert tracker.failures == 0
    assert tracker.status == {"flaky": "completed", "after": "completed"}


async def test_a_state_that_fails_for_good_and_one_cut_short_show_as_they_ended():
    clock = ManualClock()
    agent = Agent("bad", clock=clock)
    entered = asyncio.Event()

    async def first(ctx):
        return ["broken", "slow"]

    async def broken(ctx):
        await entered.wait()
        await clock.advance(2.0)
        raise ValueError("no")

    async def slow(ctx):
        entered.set()
        await asyncio.Event().wait()  # never ends: cancelled when the run fails

    for fn in (first, broken, slow):
        agent.add_state(fn.__name__, fn)
    tracker = RunTracker(agent)
    with pytest.raises(StateFailedError):
        await agent.run()
    assert tracker.run_status == "failed"
    outcomes = {s.state: (s.start, s.end, s.outcome) for s in tracker.spans}
    assert outcomes == {"first": (0.0, 0.0, "completed"), "broken": (0.0, 2.0, "failed"),
                        "slow": (0.0, 2.0, "cancelled")}
    assert tracker.status == {"first": "completed", "broken": "failed", "slow": "cancelled"}


async def test_statuses_and_open_spans_at_a_redraw_tick_mid_run_are_the_engines():
    agent = Agent("mid")
    slow_gate, next_gate = asyncio.Event(), asyncio.Event()
    slow_in, next_in = asyncio.Event(), asyncio.Event()

    async def first(ctx):
        return ["slow", "quick"]

    async def slow(ctx):
        slow_in.set()
        await slow_gate.wait()

    async def quick(ctx):
        return "after_quick"

    async def after_quick(ctx):  # runs once quick has completed: the barrier the test waits at
        next_in.set()
        await next_gate.wait()

    for fn in (first, slow, after_quick):
        agent.add_state(fn.__name__, fn)
    agent.add_state("quick", quick, next=["after_quick", "unused"])  # it could go on to unused, and does not
    agent.add_state("unused", after_quick)
    view = LiveView(agent, interval=60)
    handle = agent.start()
    view.attach(handle)
    await slow_in.wait()
    await next_in.wait()
    assert not agent.events.stepwise  # the engine builds no per-state event for the view
    version = view.tracker.version
    view.redraw(force=True)
    tracker = view.tracker
    assert tracker.status == {"first": "completed", "slow": "running", "quick": "completed",
                              "after_quick": "running", "unused": "pending"}
    assert {s.state: s.outcome for s in tracker.spans} == {"first": "completed", "slow": "running",
                                                          "quick": "completed", "after_quick": "running"}
    assert view.progress.value == 2
    assert view.progress.max == 5
    assert "2 running" in view.header.value
    slow_gate.set()
    await until(lambda: tracker.status["slow"] == "completed", "slow read as completed")
    assert tracker.version != version  # what moved shows: a view comparing versions redraws
    next_gate.set()
    await handle
    assert tracker.status == {"first": "completed", "slow": "completed", "quick": "completed",
                              "after_quick": "completed", "unused": "skipped"}
    assert {s.outcome for s in tracker.spans} == {"completed"}
    assert len(tracker.spans) == 4
    view.close()


async def test_a_sub_flows_child_states_show_under_its_name():
    child = Agent("child")

    async def x(ctx):
        return "y"

    async def y(ctx):
        return None

    child.add_state("x", x)
    child.add_state("y", y)
    parent = Agent("parent")

    async def start(ctx):
        return "sub"

    parent.add_state("start", start)
    parent.add_state("sub", child)
    tracker = RunTracker(parent)
    await parent.run()
    assert tracker.status["sub/x"] == tracker.status["sub/y"] == "completed"
    assert tracker.status["start"] == tracker.status["sub"] == "completed"
    assert {s.state for s in tracker.spans} >= {"start", "sub", "sub/x", "sub/y"}
    assert {s.outcome for s in tracker.spans} == {"completed"}
    tracker.close()


async def test_only_a_reader_of_per_state_events_takes_a_chain_off_its_quiet_path():
    agent = Agent("bus")
    bus = agent.events
    leave = bus.subscribe(lambda e: None, types=(StateFailed,))
    assert bus.active
    assert not bus.stepwise
    seen: list = []

    async def a(ctx):
        seen.append(asyncio.current_task())
        return "b"

    async def b(ctx):
        seen.append(asyncio.current_task())

    agent.add_state("a", a)
    agent.add_state("b", b)
    tracker = RunTracker(agent)
    await agent.run()
    assert seen[0] is seen[1]  # b was awaited in a's task: the quiet hop
    assert [s.state for s in tracker.spans] == ["a", "b"]
    for kind in (StateStarted, StateFinished):
        reader = bus.subscribe(lambda e: None, types=(kind,))
        assert bus.stepwise
        reader()
        assert not bus.stepwise
    everything = bus.subscribe(lambda e: None)  # no types: every event, those of each state too
    assert bus.stepwise
    everything()
    leave()
    tracker.close()
    assert not bus.active
    assert not bus.stepwise


async def test_spans_stay_in_start_order_when_a_failure_event_arrives_between_reads():
    """The timeline's rows follow the spans' order: the state that ran first is the first row."""
    clock = ManualClock()
    agent = Agent("bad", clock=clock)

    async def first(ctx):
        await clock.advance(1)
        return "broken"

    async def broken(ctx):
        await clock.advance(2)
        raise ValueError("no")

    agent.add_state("first", first, next=["broken"])
    agent.add_state("broken", broken)
    tracker = RunTracker(agent)
    try:
        await agent.run()
    except StateFailedError:
        pass
    starts = [s.start for s in tracker.spans]
    assert starts == sorted(starts)  # broken's span is added by its failure event, first's at the next read
    assert _rows(list(tracker.spans), []) == ["first", "broken"]


async def test_a_sub_flows_child_states_come_after_the_parent_state_that_ran_before_them():
    clock = ManualClock()
    child = Agent("child", clock=clock)

    async def c1(ctx):
        await clock.advance(1)

    child.add_state("c1", c1)
    agent = Agent("parent", clock=clock)

    async def p0(ctx):
        await clock.advance(1)
        return "research"

    agent.add_state("p0", p0, next=["research"])
    agent.add_state("research", child)
    tracker = RunTracker(agent)
    await agent.run()
    assert _rows(list(tracker.spans), []) == ["p0", "research", "research/c1"]  # child spans come by events
