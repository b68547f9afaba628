"""The run loop: sequencing, concurrency, loops, max_concurrent, events, results."""

from __future__ import annotations

import asyncio
import time

from fluffy_nb import Agent, AgentStatus, Context, RunResult, StateStatus
from fluffy_nb.engine._events import RunFinished, RunStarted, StateFinished, StateScheduled, StateStarted


async def test_list_return_runs_states_concurrently():
    both_running = asyncio.Event()
    running = set()

    async def start(ctx):
        return ["a", "b"]

    async def meet(ctx):
        running.add(ctx.state_name)
        if len(running) == 2:
            both_running.set()
        await asyncio.wait_for(both_running.wait(), 2)  # only passes if the other runs meanwhile
        return None

    agent = Agent("meet")
    agent.add_state("start", start)
    agent.add_state("a", meet)
    agent.add_state("b", meet)
    await agent.run()
    assert running == {"a", "b"}


async def test_retry_loop_really_reruns_the_state():
    attempts: list[int] = []

    async def draft(ctx):
        n = ctx.get_state("drafts", 0) + 1
        ctx.set_state("drafts", n)
        attempts.append(n)
        return "check"

    async def check(ctx):
        return "draft" if ctx.get_state("drafts") < 3 else "done"

    async def done(ctx):
        return None

    agent = Agent("loop")
    for f in (draft, check, done):
        agent.add_state(f.__name__, f)
    result = await agent.run()
    assert attempts == [1, 2, 3]
    assert result.state_runs == {"draft": 3, "check": 3, "done": 1}
    assert agent.state_metadata["draft"].runs == 3
    assert agent.completed_states == ["draft", "check", "done"]  # each listed once


async def test_max_concurrent_is_never_exceeded_as_seen_by_the_states():
    running = 0
    peak = 0
    release = asyncio.Event()

    async def fan(ctx):
        return [f"w{i}" for i in range(8)]

    async def worker(ctx):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 3:
            release.set()
        await release.wait()
        await asyncio.sleep(0)
        running -= 1
        return None

    agent = Agent("limited", max_concurrent=3)
    agent.add_state("fan", fan)
    for i in range(8):
        agent.add_state(f"w{i}", worker)
    result = await asyncio.wait_for(agent.run(), 5)
    assert peak == 3
    assert sum(result.state_runs.values()) == 9


async def test_sync_state_functions_work_too():
    def step(ctx):
        ctx.set_state("x", 1)
        return "after"

    async def after(ctx):
        return None

    agent = Agent("sync")
    agent.add_state("step", step)
    agent.add_state("after", after)
    await agent.run()
    assert agent.get_state("x") == 1
    assert agent.completed_states == ["step", "after"]


async def test_every_state_emits_scheduled_started_finished_in_order(record):
    async def a(ctx):
        return ["b", "c"]

    async def b(ctx):
        return None

    async def c(ctx):
        return None

    agent = Agent("events")
    for f in (a, b, c):
        agent.add_state(f.__name__, f)
    log = record(agent)
    await agent.run()
    for name in "abc":
        assert log.kinds(name) == ["StateScheduled", "StateStarted", "StateFinished"]
    assert isinstance(log[0], RunStarted)
    assert isinstance(log[-1], RunFinished)
    assert log[-1].status == "completed"
    assert log.of(StateFinished, "a")[0].next_states == ("b", "c")


async def test_thousand_wide_fan_out_loses_and_reorders_no_event(record):
    n = 1000

    async def fan(ctx):
        return [f"w{i}" for i in range(n)]

    async def worker(ctx):
        await asyncio.sleep(0)
        return None

    agent = Agent("wide_events")
    agent.add_state("fan", fan)
    for i in range(n):
        agent.add_state(f"w{i}", worker)
    log = record(agent)
    await agent.run()
    per_state: dict[str, list[str]] = {}
    for e in log:
        if isinstance(e, (StateScheduled, StateStarted, StateFinished)):
            per_state.setdefault(e.state, []).append(type(e).__name__)
    assert len(per_state) == n + 1
    assert all(k == ["StateScheduled", "StateStarted", "StateFinished"] for k in per_state.values())
    times = [e.time for e in log]
    assert times == sorted(times)


async def test_unsubscribed_observer_gets_nothing_more(record):
    agent = Agent("unsub")

    async def a(ctx):
        return None

    agent.add_state("a", a)
    seen = []
    unsubscribe = agent.events.subscribe(seen.append)
    await agent.run()
    count = len(seen)
    assert count > 0
    unsubscribe()
    await agent.run()
    assert len(seen) == count
    assert agent.events.active is False


async def test_a_raising_subscriber_does_not_break_the_run(caplog):
    agent = Agent("bad_observer")

    async def a(ctx):
        return None

    agent.add_state("a", a)

    def broken(event):
        raise RuntimeError("observer bug")

    agent.events.subscribe(broken)
    result = await agent.run()
    assert result.status is AgentStatus.COMPLETED
    assert "observer bug" in caplog.text


async def test_run_returns_a_result_and_a_second_run_starts_fresh():
    async def count(ctx):
        ctx.set_state("n", ctx.get_state("n", 0) + 1)
        return None

    agent = Agent("twice")
    agent.set_state("n", 10)  # set before run: an input of every run
    agent.add_state("count", count)
    first = await agent.run()
    second = await agent.run()
    assert isinstance(first, RunResult)
    assert first.status is AgentStatus.COMPLETED
    assert first["n"] == 11
    assert second.get_state("n") == 11
    assert first.run_id != second.run_id
    assert agent.state_metadata["count"].runs == 1


async def test_run_with_start_and_initial_context():
    order = []

    async def a(ctx):
        order.append("a")
        return "b"

    async def b(ctx):
        order.append(("b", ctx.get_state("seed")))
        return None

    agent = Agent("start")
    agent.add_state("a", a)
    agent.add_state("b", b)
    await agent.run(start="b", initial_context={"seed": 7})
    assert order == [("b", 7)]


async def test_start_states_are_those_nothing_leads_to_in_add_order():
    order = []

    def mk(name, target=None):
        async def f(ctx):
            order.append(name)
            return target

        return f

    agent = Agent("starts")
    agent.add_state("b_target", mk("b_target"))
    agent.add_state("first", mk("first", "b_target"), next=["b_target"])
    agent.add_state("second", mk("second"))
    agent.add_state("needs", mk("needs"), dependencies=["second"])
    result = await agent.run()
    assert order.index("first") < order.index("second")  # start states begin in add order
    assert order.index("first") < order.index("b_target")  # first's branch goes on in place
    assert set(result.state_runs) == {"first", "second", "b_target", "needs"}


async def test_state_statuses_and_agent_status_while_running(record):
    seen = {}

    async def a(ctx):
        seen["agent"] = agent.status
        seen["a"] = agent.state_metadata["a"].status
        return "b"

    async def b(ctx):
        seen["a_later"] = agent.state_metadata["a"].status
        return None

    agent = Agent("status")
    agent.add_state("a", a)
    agent.add_state("b", b)
    statuses_at_events = []
    agent.events.subscribe(
        lambda e: statuses_at_events.append(
            (type(e).__name__, getattr(e, "state", None), agent.state_metadata["b"].status)
        )
    )
    await agent.run()
    assert seen == {"agent": AgentStatus.RUNNING, "a": StateStatus.RUNNING, "a_later": StateStatus.COMPLETED}
    b_seen = [(k, st) for k, s, st in statuses_at_events if s == "b"]
    assert b_seen == [
        ("StateScheduled", StateStatus.PENDING),
        ("StateStarted", StateStatus.RUNNING),
        ("StateFinished", StateStatus.COMPLETED),
    ]
    assert agent.status is AgentStatus.COMPLETED


async def test_no_subscriber_run_of_a_long_chain_is_quick_enough_to_not_hang():
    n = 2000
    agent = Agent("chain")

    for i in range(n):
        nxt = f"s{i + 1}" if i + 1 < n else None

        async def step(ctx: Context, nxt=nxt):
            return nxt

        agent.add_state(f"s{i}", step)
    t0 = time.perf_counter()
    result = await agent.run(start="s0")
    assert result.steps == n
    assert time.perf_counter() - t0 < 10  # generous: this is a hang guard, not a benchmark


async def test_event_published_by_a_subscriber_reaches_everyone_in_one_order():
    """A subscriber that acts on an event (cancels a queued state) must not reorder others' view."""

    async def fan(ctx):
        return ["holder", "queued"]

    async def holder(ctx):
        return None

    agent = Agent("reentrant", max_concurrent=1)
    agent.add_state("fan", fan)
    agent.add_state("holder", holder)
    agent.add_state("queued", holder)
    first: list[str] = []
    second: list[str] = []

    def actor(event):
        first.append(f"{type(event).__name__}:{getattr(event, 'state', '')}")
        if isinstance(event, StateStarted) and event.state == "holder":
            agent.cancel_state("queued")  # publishes StateCancelled from inside this callback

    agent.events.subscribe(actor)
    agent.events.subscribe(lambda e: second.append(f"{type(e).__name__}:{getattr(e, 'state', '')}"))
    await asyncio.wait_for(agent.run(), 5)
    assert first == second
    assert first.index("StateStarted:holder") < first.index("StateCancelled:queued")


def test_nested_publish_is_delivered_after_the_current_event():
    from fluffy_nb import EventBus
    from fluffy_nb.engine._events import StateAdded

    bus = EventBus()
    a: list[str] = []
    b: list[str] = []

    def first(event):
        a.append(event.state)
        if event.state == "outer":
            bus.publish(StateAdded("x", "r", 0.0, "inner"))

    bus.subscribe(first)
    bus.subscribe(lambda e: b.append(e.state))
    bus.publish(StateAdded("x", "r", 0.0, "outer"))
    assert a == ["outer", "inner"]
    assert b == ["outer", "inner"]


async def test_states_named_by_an_f_string_are_not_start_states():
    """return [f"chunk_{i}" ...] leaves "chunk_" in the code: chunk_0.. wait for the fan-out."""
    order = []

    async def split(ctx):
        order.append("split")
        return [f"chunk_{i}" for i in range(3)]

    async def chunk(ctx):
        order.append(ctx.state_name)
        return None

    agent = Agent("fstrings")
    for i in range(3):
        agent.add_state(f"chunk_{i}", chunk)
    agent.add_state("split", split)
    await agent.run()
    assert order[0] == "split"
    assert sorted(order[1:]) == ["chunk_0", "chunk_1", "chunk_2"]


async def test_a_thousand_wide_fan_out_has_all_thousand_running_at_once_then_joins_once():
    n = 1000
    started = 0
    all_in = asyncio.Event()

    async def fan(ctx):
        return [f"w{i}" for i in range(n)]

    async def work(ctx):
        nonlocal started
        started += 1
        if started == n:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 10)  # passes only if every branch is in flight at once
        return "join"

    async def join(ctx):
        ctx.set_state("joins", ctx.get_state("joins", 0) + 1)

    agent = Agent("wide", max_steps=n + 10)
    agent.add_state("fan", fan)
    for i in range(n):
        agent.add_state(f"w{i}", work)
    agent.add_state("join", join)
    result = await agent.run()
    assert result.shared_state["joins"] == 1
    assert len(result.completed_states) == n + 2


async def test_fan_out_branches_are_made_by_the_loops_task_factory_when_one_is_set():
    loop = asyncio.get_running_loop()
    made: list[str] = []

    def factory(loop, coro, **kwargs):
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def fan(ctx):
        return ["a", "b", "c"]

    async def leaf(ctx):
        return None

    agent = Agent("factory")
    agent.add_state("fan", fan)
    for name in "abc":
        agent.add_state(name, leaf)
    loop.set_task_factory(factory)
    try:
        result = await agent.run()
    finally:
        loop.set_task_factory(None)
    assert result.state_runs == {"fan": 1, "a": 1, "b": 1, "c": 1}
    assert sum(1 for name in made if name.endswith("_branch")) >= 2  # a, b, c: the first may go on in fan's task
