"""Why states wait, as the live view shows it: reasons, badges, "waits for" edges, wait segments
on the timeline, deadlock cycles and the coordination panel. Real runs, no frontend."""

from __future__ import annotations

import asyncio
from typing import Any

from _flows import fan, holding, many_waits, noop
from _wait import until

from fluffy_nb import (
    Agent,
    DeadlockError,
    ManualClock,
    PrimitiveType,
    Priority,
    ResourcePool,
    ResourceRequirements,
    StateFailedError,
)
from fluffy_nb.notebook import LiveView, graph_figure, graph_mermaid, graph_svg, timeline_figure
from fluffy_nb.notebook._coordpanel import coordination_html
from fluffy_nb.notebook._waitview import DEADLOCK_COLOUR, wait_color


def traces(fig: Any) -> dict[str, Any]:
    return {t.name: t for t in fig.data if t.name}


async def watch_until_waiting(agent: Agent, state: str, **run_kwargs: Any) -> tuple[LiveView, Any]:
    view = LiveView(agent)
    handle = agent.start(**run_kwargs)
    view.attach(handle)
    await until(lambda: state in view.tracker.current_waits(), f"{state} waits")
    return view, handle


async def test_a_state_waiting_for_cpu_shows_the_reason_a_badge_and_a_waits_for_edge_to_the_holder() -> None:
    gate = asyncio.Event()
    agent = Agent("cpu", resource_pool=ResourcePool(total_cpu=1))
    fan(agent, ["big", "small"])
    agent.add_state("big", holding(gate), resources=ResourceRequirements(cpu_units=1))
    agent.add_state("small", noop, resources=ResourceRequirements(cpu_units=1))
    view, handle = await watch_until_waiting(agent, "small")
    data = view.why_data()["waits"]["small"]
    assert (data["kind"], data["holders"]) == ("resource", ["big"])
    assert "CPU 1 wanted, 0 free" in data["detail"]
    fig = graph_figure(agent, view.tracker)
    shown = traces(fig)
    badge = shown["waiting: resources"]
    assert list(badge.customdata) == ["small"]
    assert "CPU 1 wanted, 0 free" in badge.hovertext[0]
    edge = shown["waits for (resources)"]
    assert edge.line.dash == "dash"
    assert edge.line.color == wait_color("resource")
    assert "<b>small</b> waits for <b>big</b>" in shown["waits for (resources) detail"].hovertext[0]
    node_hover = next(h for t in fig.data if t.name == "blocked" for h in t.hovertext)
    assert "waits for resources" in node_hover
    view.redraw(force=True)
    assert "small: resources (held by big)" in view.header.value
    assert "waits#58; resources" in graph_mermaid(agent, view.tracker)  # mermaid entity codes (issue 18)
    assert "small: waits for resources" in graph_svg(agent, view.tracker)
    gate.set()
    await handle
    segments = [(w.state, w.kind, w.holders, w.end is not None) for w in view.tracker.wait_spans]
    assert segments == [("small", "resource", ("big",), True)]  # the wait ended when small started
    bars = traces(timeline_figure(view.tracker))
    assert list(bars["waiting: resources"].y) == ["small"]
    assert bars["waiting: resources"].marker.color == wait_color("resource")


async def test_a_state_behind_a_mutex_held_by_another_names_the_lock_and_its_holder() -> None:
    gate = asyncio.Event()
    agent = Agent("mutex")
    fan(agent, ["writer", "reader"])
    agent.add_state("writer", holding(gate))
    agent.add_state("reader", noop)
    agent.add_state_coordination("writer", PrimitiveType.MUTEX, name="db")
    agent.add_state_coordination("reader", PrimitiveType.MUTEX, name="db")
    view, handle = await watch_until_waiting(agent, "reader")
    data = view.why_data()["waits"]["reader"]
    assert (data["kind"], data["holders"]) == ("lock", ["writer"])
    assert "mutex 'db' held by ['writer']" in data["detail"]
    assert "waiting: lock" in traces(graph_figure(agent, view.tracker))
    panel = coordination_html(agent, view.tracker)
    assert "<b>db</b>" in panel
    assert "1 of 1 held" in panel
    assert "writer" in panel
    assert "reader" in panel
    gate.set()
    await handle
    assert "waiting: lock" in traces(timeline_figure(view.tracker))


async def test_a_rate_limited_state_shows_the_token_wait_and_the_limiter_in_the_panel() -> None:
    clock = ManualClock()
    agent = Agent("limited", clock=clock)
    agent.add_state("call", noop)
    agent.add_state_rate_limit("call", max_rate=0.5, burst_size=1)
    await agent.run()  # spends the one token
    view, handle = await watch_until_waiting(agent, "call")
    data = view.why_data()["waits"]["call"]
    assert data["kind"] == "rate_limit"
    assert "next admission in 2.00s" in data["detail"]
    assert "waiting: rate limit" in traces(graph_figure(agent, view.tracker))
    panel = coordination_html(agent)
    assert "rate limiters" in panel
    assert "token_bucket" in panel
    await clock.advance(2.1)
    await asyncio.wait_for(handle, 5)
    assert "waiting: rate limit" in traces(timeline_figure(view.tracker))


async def test_dependency_join_slot_retry_and_person_waits_each_show_their_reason() -> None:
    agent, gate, clock = many_waits("go <on>?")
    view = LiveView(agent)
    handle = agent.start(start="start")
    view.attach(handle)
    await until(lambda: {"after", "queued", "ask", "flaky"} <= set(view.tracker.current_waits()), "all wait")
    waits = view.why_data()["waits"]
    assert (waits["after"]["kind"], waits["after"]["holders"]) == ("dependency", ["slow"])
    assert waits["queued"]["kind"] == "slot"
    assert waits["ask"]["kind"] == "person"
    assert "go <on>?" in waits["ask"]["detail"]
    assert waits["flaky"]["kind"] == "retry"
    fig = graph_figure(agent, view.tracker)
    names = traces(fig)
    for label in ("dependency", "a free slot", "a person", "retry delay"):
        assert f"waiting: {label}" in names
    assert "go &lt;on&gt;?" in names["waiting: a person"].hovertext[0]  # user text is escaped
    assert "waits for (dependency)" in names  # after -> slow
    assert "waits for (a free slot)" not in names  # a slot is held by every running state: no edges
    agent.answer(agent.pending_requests()[0].request_id, "yes")
    await clock.advance(30)
    await until(lambda: "merge" in view.tracker.current_waits(), "merge waits for slow")
    assert view.why_data()["waits"]["merge"]["holders"] == ["slow"]
    assert "waits for (join)" in traces(graph_figure(agent, view.tracker))
    gate.set()
    await asyncio.wait_for(handle, 5)
    kinds = {w.kind for w in view.tracker.wait_spans}
    assert {"dependency", "person"} <= kinds
    bars = traces(timeline_figure(view.tracker))
    assert {"waiting: dependency", "waiting for a person"} <= set(bars)
    assert bars["waiting: dependency"].marker.color != bars["waiting for a person"].marker.color


def ring_of_three() -> Agent:
    """Three states, each holding its own lock and then taking the next one's: a cycle of three."""
    agent = Agent("ring")
    names = ["alpha", "beta", "gamma"]
    locks = [agent.add_coordination(f"lock_{n}", PrimitiveType.MUTEX) for n in names]
    holds = {n: asyncio.Event() for n in names}
    fan(agent, names)
    for i, name in enumerate(names):
        mine, theirs, nxt = locks[i], locks[(i + 1) % 3], names[(i + 1) % 3]

        async def body(ctx: Any, mine: Any = mine, theirs: Any = theirs, me: str = name, nxt: str = nxt) -> None:
            async with mine.hold(ctx):
                holds[me].set()
                await holds[nxt].wait()
                async with theirs.hold(ctx):
                    return None

        agent.add_state(name, body)
    return agent


async def test_a_deadlock_of_three_states_is_a_red_cycle_naming_all_three_with_advice() -> None:
    agent = ring_of_three()
    view = LiveView(agent)
    handle = agent.start()
    view.attach(handle)
    done = asyncio.Event()
    handle.add_done_callback(lambda h: done.set())
    await asyncio.wait_for(done.wait(), 5)
    assert isinstance(handle.exception(), StateFailedError)
    await asyncio.sleep(0)  # the done-callback draws the end
    [deadlock] = view.why_data()["deadlocks"]
    assert sorted(deadlock["cycle"]) == ["alpha", "beta", "gamma"]
    assert deadlock["victim"] in deadlock["cycle"]
    assert f"agent.cancel_state({deadlock['victim']!r})" in deadlock["advice"]
    assert "same order" in deadlock["advice"]
    assert len(deadlock["edges"]) == 3
    fig = graph_figure(agent, view.tracker)
    shown = traces(fig)
    assert shown["deadlock cycle"].line.color == DEADLOCK_COLOUR
    ring = shown["in a deadlock"]
    assert sorted(ring.text) == ["alpha", "beta", "gamma"]
    assert ring.marker.color == DEADLOCK_COLOUR
    assert any("deadlock: " in (a.text or "") for a in fig.layout.annotations)
    assert "deadlock:" in view.header.value
    assert graph_mermaid(agent, view.tracker).count("== deadlock ==>") == 3
    assert graph_svg(agent, view.tracker).count(f'stroke="{DEADLOCK_COLOUR}" stroke-width="3.5"') == 3
    assert "deadlocks detected: 1" in coordination_html(agent)


async def test_states_waiting_inside_their_body_for_a_held_lock_show_the_holder() -> None:
    agent = Agent("inside")
    lock = agent.add_coordination("files", PrimitiveType.MUTEX)
    gate = asyncio.Event()

    async def owner(ctx: Any) -> None:
        async with lock.hold(ctx):
            await gate.wait()

    async def other(ctx: Any) -> None:
        async with lock.hold(ctx):
            return None

    fan(agent, ["owner", "other"])
    agent.add_state("owner", owner)
    agent.add_state("other", other)
    view, handle = await watch_until_waiting(agent, "other")
    data = view.why_data()["waits"]["other"]
    assert (data["kind"], data["holders"]) == ("lock", ["owner"])
    gate.set()
    await handle


async def test_the_coordination_panel_is_collapsed_and_builds_nothing_until_opened() -> None:
    gate = asyncio.Event()
    pool = ResourcePool(total_cpu=1)
    agent = Agent("queue", resource_pool=pool)
    names = ["hog", "low", "high", "normal"]
    fan(agent, names)
    agent.add_state("hog", holding(gate), resources=ResourceRequirements(cpu_units=1, priority=Priority.CRITICAL))
    for name, prio in (("low", Priority.LOW), ("high", Priority.HIGH), ("normal", Priority.NORMAL)):
        agent.add_state(name, noop, resources=ResourceRequirements(cpu_units=1, priority=prio))
    view, handle = await watch_until_waiting(agent, "low")
    await until(lambda: len(pool.get_waiting_states()) == 3, "three wait")
    panel = view.coordination
    assert panel.widget.selected_index is None  # collapsed by default
    view.redraw(force=True)
    assert panel.renders == 0  # nobody looks: nothing built
    panel.widget.selected_index = 0  # a person opens it
    assert panel.renders == 1
    text = panel.content.value
    assert text.index("<b>high</b>") < text.index("<b>normal</b>") < text.index("<b>low</b>")  # admission order
    assert "<b>hog</b>" in text  # holds the CPU
    assert "resource pool" in panel.widget.get_title(0)
    gate.set()
    await handle


async def test_user_text_in_state_names_and_reasons_is_escaped() -> None:
    gate = asyncio.Event()
    agent = Agent("esc", resource_pool=ResourcePool(total_cpu=1))
    fan(agent, ["<b>hog</b>", "<i>small</i>"])
    agent.add_state("<b>hog</b>", holding(gate), resources=ResourceRequirements(cpu_units=1))
    agent.add_state("<i>small</i>", noop, resources=ResourceRequirements(cpu_units=1))
    view, handle = await watch_until_waiting(agent, "<i>small</i>")
    view.redraw(force=True)
    assert "<i>small</i>" not in view.header.value
    assert "&lt;i&gt;small&lt;/i&gt;" in view.header.value
    fig = graph_figure(agent, view.tracker)
    hover = " ".join(h for t in fig.data if t.hovertext is not None for h in t.hovertext)
    assert "<i>" not in hover
    assert "&lt;b&gt;hog&lt;/b&gt;" in hover
    assert "<i>small" not in view.snapshot_html()
    gate.set()
    await handle


async def test_a_deadlock_a_state_caught_still_shows_on_the_view_after_the_run() -> None:
    agent = Agent("caught")
    first = agent.add_coordination("a", PrimitiveType.MUTEX)
    second = agent.add_coordination("b", PrimitiveType.MUTEX)
    a_holds, b_holds = asyncio.Event(), asyncio.Event()

    async def take(ctx: Any, mine: Any, theirs: Any, mine_set: asyncio.Event, theirs_set: asyncio.Event) -> None:
        try:
            async with mine.hold(ctx):
                mine_set.set()
                await theirs_set.wait()
                async with theirs.hold(ctx):
                    return None
        except DeadlockError:
            return None  # gives up quietly: no failure event

    async def left(ctx: Any) -> None:
        await take(ctx, first, second, a_holds, b_holds)

    async def right(ctx: Any) -> None:
        await take(ctx, second, first, b_holds, a_holds)

    fan(agent, ["left", "right"])
    agent.add_state("left", left)
    agent.add_state("right", right)
    view = LiveView(agent)
    handle = agent.start()
    view.attach(handle)
    await asyncio.wait_for(handle, 5)
    [deadlock] = view.why_data()["deadlocks"]
    assert sorted(deadlock["cycle"]) == ["left", "right"]


async def test_barrier_and_quota_waits_show_arrivals_and_the_budget() -> None:
    clock = ManualClock()
    agent = Agent("gates", clock=clock)
    late_go = asyncio.Event()

    async def late(ctx: Any) -> str:
        await late_go.wait()
        return "c2"

    fan(agent, ["c0", "c1", "late", "call0", "call1"])
    agent.add_state("late", late)
    for n in ["c0", "c1", "c2"]:
        agent.add_state(n, noop)
        agent.add_state_coordination(n, PrimitiveType.BARRIER, max_count=3, name="merge")
    for n in ["call0", "call1"]:
        agent.add_state(n, noop)
        agent.add_state_coordination(n, PrimitiveType.QUOTA, quota_limit=1, ttl=60.0, name="api")
    view = LiveView(agent)
    handle = agent.start()
    view.attach(handle)
    await until(lambda: {"c0", "c1"} <= set(view.tracker.current_waits())
                and {"call0", "call1"} & set(view.tracker.current_waits()), "barrier and quota waits")
    waits = view.why_data()["waits"]
    assert waits["c0"]["kind"] == "barrier"
    assert "barrier 'merge'" in waits["c0"]["detail"]
    [quota_waiter] = [s for s in ("call0", "call1") if s in waits]
    assert waits[quota_waiter]["kind"] == "quota"
    assert "0 of 1.0 left, resets in 60.0s" in waits[quota_waiter]["detail"]
    names = traces(graph_figure(agent, view.tracker))
    assert {"waiting: barrier", "waiting: quota"} <= set(names)
    panel = coordination_html(agent)
    assert "<b>merge</b>" in panel
    assert "<b>api</b>" in panel
    late_go.set()
    await clock.advance(60.0)
    await asyncio.wait_for(handle, 5)
    bars = traces(timeline_figure(view.tracker))
    assert {"waiting: barrier", "waiting: quota"} <= set(bars)


async def test_states_queued_behind_a_paused_run_say_so() -> None:
    gate = asyncio.Event()
    agent = Agent("pausing", max_concurrent=1)
    fan(agent, ["first", "second"])
    agent.add_state("first", holding(gate))
    agent.add_state("second", noop)
    view, handle = await watch_until_waiting(agent, "second")
    assert view.why_data()["waits"]["second"]["kind"] == "slot"
    pausing = asyncio.ensure_future(agent.pause())
    await until(lambda: view.why_data()["waits"].get("second", {}).get("kind") == "paused", "paused")
    assert "waiting: paused" in traces(graph_figure(agent, view.tracker))
    gate.set()
    await asyncio.wait_for(pausing, 5)
    handle.cancel()


async def test_a_run_too_big_for_bars_shows_how_many_waited_at_once() -> None:
    from fluffy_nb.notebook import RunTracker
    from fluffy_nb.notebook._figures import GANTT_LIMIT

    agent = Agent("queue_up", resource_pool=ResourcePool(total_cpu=2))
    names = [f"w{i}" for i in range(GANTT_LIMIT + 10)]
    fan(agent, names)

    async def step(ctx: Any) -> None:
        await asyncio.sleep(0)  # hold the CPU across a turn of the loop, so the others queue up

    for name in names:
        agent.add_state(name, step, resources=ResourceRequirements(cpu_units=1, memory_mb=0))
    tracker = RunTracker(agent)
    await agent.run()
    fig = timeline_figure(tracker)
    assert "too many for bars" in fig.layout.title.text
    waiting = traces(fig)["waiting at once (right axis)"]
    assert max(waiting.y) >= GANTT_LIMIT  # nearly all queued behind two CPUs at one moment
    assert waiting.y[-1] == 0


async def test_many_states_waiting_inside_one_group_node_draw_one_edge_and_one_badge() -> None:
    gate = asyncio.Event()
    agent = Agent("crowd", resource_pool=ResourcePool(total_cpu=1))
    crowd = [f"job{i}" for i in range(30)]  # more than a layer shows: one group node

    async def spread(ctx: Any) -> list[str]:
        return crowd

    fan(agent, ["hog", "spread"])
    agent.add_state("hog", holding(gate), resources=ResourceRequirements(cpu_units=1))
    agent.add_state("spread", spread, next=crowd)
    for name in crowd:
        agent.add_state(name, noop, resources=ResourceRequirements(cpu_units=1))
    view = LiveView(agent)
    handle = agent.start()
    view.attach(handle)
    await until(lambda: len(view.tracker.current_waits()) == 30, "the crowd waits")
    shown = traces(graph_figure(agent, view.tracker))
    assert len(shown["waits for (resources)"].x) == 4  # one curve: start, middle, end, gap
    assert len(shown["waiting: resources"].x) == 1
    assert graph_mermaid(agent, view.tracker).count("-. waits for .->") == 1
    gate.set()
    await handle
