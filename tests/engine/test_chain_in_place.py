"""A chain with nobody watching steps in place (the inner loop of ``Scheduler._run_branch``): one task, no trip through
the event loop between states. What a user sees must be the same as when the general path
runs each step (a subscriber forces it): statuses, counts, order, and every control: cancel,
pause between states, max_steps, retries, failures, a state added or re-added between runs."""

from __future__ import annotations

import asyncio
import time

import pytest
from _wait import until

from fluffy_nb import Agent, AgentStatus, ManualClock, RetryPolicy, StateStatus
from fluffy_nb.engine._errors import MaxStepsExceededError, StateFailedError, StateNotFoundError


def chain(n: int, seen: list[tuple[str, asyncio.Task | None]] | None = None, name: str = "chain") -> Agent:
    agent = Agent(name, max_steps=n + 10)
    for i in range(n):
        nxt = f"s{i + 1}" if i + 1 < n else None

        async def step(ctx, nxt=nxt):
            if seen is not None:
                seen.append((ctx.state_name, asyncio.current_task()))
            ctx.set_state(ctx.state_name, ctx.attempt)
            return nxt

        agent.add_state(f"s{i}", step)
    return agent


def facts(result, run) -> dict:
    meta = {n: (m.status, m.attempts, m.runs, m.retries, m.failures, len(m.durations))
            for n, m in run.metadata.items()}
    return {"status": result.status, "completed": list(result.completed_states), "data": dict(result.shared_state),
            "steps": run.steps, "counts": dict(run.completion_counts), "meta": meta}


async def test_a_chain_runs_in_one_task_and_reads_the_same_as_the_watched_path():
    seen: list = []
    agent = chain(50, seen)
    quiet = await agent.run()
    quiet_facts = facts(quiet, agent.latest_run)
    assert len({id(task) for _, task in seen}) == 1  # every state awaited in the branch's task
    assert [n for n, _ in seen] == [f"s{i}" for i in range(50)]
    events: list = []
    unsubscribe = agent.events.subscribe(events.append)  # a subscriber: each step goes the general way
    try:
        watched = await agent.run()
    finally:
        unsubscribe()
    assert facts(watched, agent.latest_run) == quiet_facts
    assert quiet_facts["meta"]["s49"][:3] == (StateStatus.COMPLETED, 1, 1)
    assert sum(1 for e in events if type(e).__name__ == "StateFinished") == 50


def gated_chain(name: str, gate: asyncio.Event, entered: asyncio.Event, **agent_kwargs) -> Agent:
    """first -> slow (waits for ``gate``) -> after -> last, with nobody subscribed."""

    async def first(ctx):
        return "slow"

    async def slow(ctx):
        entered.set()
        await gate.wait()
        return "after"

    async def after(ctx):
        ctx.set_state("after_ran", True)
        return "last"

    async def last(ctx):
        return None

    agent = Agent(name, **agent_kwargs)
    for fn in (first, slow, after, last):
        agent.add_state(fn.__name__, fn)
    return agent


async def test_cancelling_the_running_state_of_a_quiet_chain_ends_its_branch():
    entered, gate = asyncio.Event(), asyncio.Event()
    agent = gated_chain("cancel_in_chain", gate, entered)
    run = asyncio.create_task(agent.run())
    await asyncio.wait_for(entered.wait(), 5)
    assert agent.cancel_state("slow") is True
    result = await asyncio.wait_for(run, 5)
    assert agent.state_metadata["slow"].status is StateStatus.CANCELLED
    assert result.completed_states == ["first"]
    assert "after_ran" not in result.shared_state


async def test_pause_of_a_quiet_chain_starts_nothing_until_resumed():
    entered, gate = asyncio.Event(), asyncio.Event()
    agent = gated_chain("pause_in_chain", gate, entered)
    run = asyncio.create_task(agent.run())
    await asyncio.wait_for(entered.wait(), 5)
    pausing = asyncio.create_task(agent.pause())
    await asyncio.sleep(0)
    gate.set()  # slow ends while the pause is asked: its next state must wait
    checkpoint = await asyncio.wait_for(pausing, 5)
    assert checkpoint.pending == ["after"]
    assert agent.status is AgentStatus.PAUSED
    assert agent.state_metadata["after"].status is StateStatus.READY
    assert "after_ran" not in agent.latest_run.shared
    await agent.resume()
    result = await asyncio.wait_for(run, 5)
    assert result.completed_states == ["first", "slow", "after", "last"]


async def test_max_steps_stops_a_quiet_loop_as_it_stops_a_watched_one():
    async def spin(ctx):
        ctx.set_state("n", ctx.get_state("n", 0) + 1)
        return "spin"

    agent = Agent("spinner", max_steps=25)
    agent.add_state("spin", spin)
    with pytest.raises(MaxStepsExceededError, match="max_steps"):
        await agent.run()
    quiet_n = agent.latest_run.shared["n"]
    events: list = []
    agent.events.subscribe(events.append)
    with pytest.raises(MaxStepsExceededError):
        await agent.run()
    assert quiet_n == agent.latest_run.shared["n"] == 25


async def test_a_retry_and_a_failure_inside_a_quiet_chain_behave_as_always():
    calls: list[str] = []

    async def a(ctx):
        return "flaky"

    async def flaky(ctx):
        calls.append(f"flaky{ctx.attempt}")
        if ctx.attempt == 1:
            raise RuntimeError("first try fails")
        return "broken"

    async def broken(ctx):
        raise ValueError("for good")

    agent = Agent("retry_in_chain")
    agent.add_state("a", a)
    agent.add_state("flaky", flaky, retry_policy=RetryPolicy(max_retries=1, initial_delay=0, jitter=False))
    agent.add_state("broken", broken)
    with pytest.raises(StateFailedError, match="broken"):
        await agent.run()
    meta = agent.state_metadata
    assert calls == ["flaky1", "flaky2"]
    assert (meta["flaky"].status, meta["flaky"].attempts, meta["flaky"].retries) == (StateStatus.COMPLETED, 2, 1)
    assert meta["broken"].status is StateStatus.FAILED


async def test_a_state_re_added_between_runs_runs_its_new_body():
    agent = chain(3)
    await agent.run()

    async def replaced(ctx):
        ctx.set_state("new_body", True)
        return "s2"

    agent.remove_state("s1")
    agent.add_state("s1", replaced)
    result = await agent.run()
    assert result.shared_state["new_body"] is True
    assert result.completed_states == ["s0", "s1", "s2"]


async def test_what_run_checks_once_per_definition_is_checked_again_after_a_change():
    agent = chain(2)
    await agent.run()

    async def risky(ctx):
        raise ValueError("boom")

    agent.add_state("risky", risky, on_error="ghost")  # names a state that does not exist
    with pytest.raises(StateNotFoundError, match="ghost"):
        await agent.run()
    agent.remove_state("risky")
    result = await agent.run()
    assert result.completed_states == ["s0", "s1"]

    async def lonely(ctx):
        ctx.set_state("lonely_ran", True)

    agent.add_state("lonely", lonely)  # nothing leads to it: a start state from the next run on
    result = await agent.run()
    assert result.shared_state.get("lonely_ran") is True


async def test_finished_at_is_when_the_last_execution_ended_even_when_executions_overlap():
    clock = ManualClock(start=0.0, wall_start=1000.0)
    items = ("long", "short", "late")
    entered = {p: asyncio.Event() for p in items}
    release = {p: asyncio.Event() for p in items}
    agent = Agent("overlap", clock=clock, max_concurrent=2)

    async def split(ctx):
        return ctx.map("w", list(items))

    async def w(ctx):
        entered[ctx.payload].set()
        await release[ctx.payload].wait()
        return "merge"

    async def merge(ctx):
        ctx.set_state("merged_at", clock.time())

    for fn in (split, w, merge):
        agent.add_state(fn.__name__, fn)
    run = asyncio.create_task(agent.run())
    await asyncio.wait_for(asyncio.gather(entered["long"].wait(), entered["short"].wait()), 5)
    await clock.advance(1)
    release["short"].set()
    await asyncio.wait_for(entered["late"].wait(), 5)  # "late" starts at 1001, after "long"
    await clock.advance(1)
    release["late"].set()
    await until(lambda: agent.state_metadata["w"].runs == 2, "late completed")
    await clock.advance(2)
    release["long"].set()  # the last to end: at 1004, having run 4 s
    result = await asyncio.wait_for(run, 5)
    meta = agent.state_metadata["w"]
    assert meta.finished_at == result.shared_state["merged_at"] == 1004.0
    assert meta.started_at == 1001.0  # the latest to start ...
    assert meta.last_duration == 4.0  # ... is not the one that ended last


async def test_a_child_run_does_not_make_run_forget_a_gate_on_a_state_that_does_not_exist():
    child = Agent("child")

    async def work(ctx):
        ctx.set_state("w", 1)

    child.add_state("work", work)
    child.add_state_rate_limit("ghost", max_rate=100.0)  # a misspelt state name
    with pytest.raises(StateNotFoundError, match="ghost"):
        await child.run()
    parent = Agent("parent")

    async def first(ctx):
        return "sub"

    parent.add_state("first", first)
    parent.add_state("sub", child)  # the child run checks only the gates of its own states
    await parent.run()
    with pytest.raises(StateNotFoundError, match="ghost"):
        await child.run()


async def test_each_run_of_a_state_keeps_its_duration_whether_it_ran_once_twice_or_never():
    clock = ManualClock()
    agent = Agent("durations", clock=clock)
    rounds = {"n": 0}

    async def work(ctx):
        rounds["n"] += 1
        await clock.advance(rounds["n"])  # the n-th run of work takes n seconds
        return "work" if rounds["n"] < 3 else "last"

    async def last(ctx):
        await clock.advance(0.5)
        return None

    async def never(ctx):
        return None

    agent.add_state("work", work, next=["work", "last"])
    agent.add_state("last", last)
    agent.add_state("never", never)
    await agent.run(start="work")
    meta = agent.state_metadata
    assert meta["work"].durations == [1.0, 2.0, 3.0]
    assert (meta["work"].runs, meta["work"].last_duration) == (3, 3.0)
    assert meta["last"].durations == [0.5]
    assert meta["never"].durations == []


async def test_a_fault_of_the_engine_itself_fails_the_run_with_a_named_error_instead_of_hanging(monkeypatch):
    from fluffy_nb.engine._state import StateMetadata

    def broken(self, duration, now):
        raise TypeError("bookkeeping broke")

    async def only(ctx):
        return None

    agent = Agent("faulty")
    agent.add_state("only", only)
    monkeypatch.setattr(StateMetadata, "complete", broken)  # a bug in the engine's own code, injected
    with pytest.raises(StateFailedError, match="fluffy_nb itself") as err:
        await asyncio.wait_for(agent.run(), 5)  # (the bound only turns a hang into a failure)
    assert isinstance(err.value.__cause__, TypeError)
    assert err.value.state == "only"
    assert agent.latest_run.status == AgentStatus.FAILED


async def test_a_quiet_chain_reaches_a_state_added_after_the_run_was_prepared():
    # agent.start() prepares the run (its metadata made then); a state added before the run
    # begins gets no metadata in it (add_state fills only live runs). The hop read
    # run.metadata[result] directly: KeyError in the branch task, and the run never ends.
    agent = Agent("prepared_then_added")

    async def x(ctx):
        return "y"

    async def y(ctx):
        return "later"  # names the state added below: an edge y -> later once it exists

    async def later(ctx):
        ctx.set_state("later_ran", True)

    agent.add_state("x", x)
    agent.add_state("y", y)
    handle = agent.start()
    agent.add_state("later", later)
    result = await asyncio.wait_for(handle, 5)
    assert result.status is AgentStatus.COMPLETED
    assert result.completed_states == ["x", "y", "later"]
    assert result.shared_state["later_ran"] is True


class _SteppingClock:
    """A Clock whose wall time steps (an NTP correction, a suspend) while monotonic time does not."""

    def __init__(self) -> None:
        self.skew = 0.0

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time() + self.skew

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def test_wall_times_of_a_quiet_chain_read_the_clock_as_the_watched_path_does():
    clock = _SteppingClock()
    agent = Agent("wall_step", clock=clock)

    async def x(ctx):
        return "y"

    async def y(ctx):
        clock.skew += 3600.0  # the wall clock steps an hour while y runs
        return "z"

    async def z(ctx):
        return None

    for f in (x, y, z):
        agent.add_state(f.__name__, f)
    t = time.time()
    await agent.run()
    meta = agent.latest_run.metadata
    assert meta["y"].finished_at - t > 3000  # y ended after the step (the watched path says so)
    assert meta["z"].started_at - t > 3000


async def test_a_restored_run_resumed_after_a_state_was_added_reaches_it_in_a_quiet_chain():
    # restore, add the state the chain now goes on to, resume (the restored run was made
    # before the state existed, and add_state fills only live runs' metadata)
    def build() -> tuple[Agent, dict]:
        agent = Agent("restore_then_add")
        box: dict = {}

        async def x(ctx):
            box["cp"] = ctx.agent.create_checkpoint()
            return "y"

        async def y(ctx):
            return "later" if ctx.get_state("use_later") else None

        agent.add_state("x", x)
        agent.add_state("y", y)
        return agent, box

    first, box = build()
    await first.run()
    agent, _ = build()
    await agent.restore_from_checkpoint(box["cp"])
    agent.set_state("use_later", True)

    async def later(ctx):
        ctx.set_state("later_ran", True)

    agent.add_state("later", later)
    result = await asyncio.wait_for(agent.resume(), 5)
    assert result.completed_states == ["x", "y", "later"]
