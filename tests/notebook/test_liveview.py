"""LiveView and RunTracker on real runs (no frontend: widgets build and update, nothing is sent)."""

from __future__ import annotations

import asyncio
import gc
import html
import time
import weakref

import ipywidgets
import pytest

from fluffy_nb import Agent, ResourceRequirements
from fluffy_nb.notebook import LiveView, RunTracker, _liveview
from fluffy_nb.notebook._figures import GANTT_LIMIT, declared_vs_measured, resource_figure, timeline_figure
from fluffy_nb.notebook._layout import plotly_text
from fluffy_nb.notebook._liveview import view_of
from tests._flows import dispatching
from tests._wait import until


def fan_out(n: int) -> Agent:
    agent = Agent(f"fan{n}")
    names = [f"w{i}" for i in range(n)]

    async def dispatch(ctx):
        return names

    async def work(ctx):
        return None

    agent.add_state("dispatch", dispatch)
    for name in names:
        agent.add_state(name, work)
    return agent


async def test_tracker_follows_statuses_spans_and_retries():
    agent = Agent("t")
    gate = asyncio.Event()

    async def first(ctx):
        return ["slow", "flaky"]

    async def slow(ctx):
        await gate.wait()

    async def flaky(ctx):
        if ctx.attempt < 2:
            raise ValueError("once")
        gate.set()

    agent.add_state("first", first)
    agent.add_state("slow", slow)
    agent.add_state("flaky", flaky, max_retries=1)
    tracker = RunTracker(agent)
    await agent.run()
    assert tracker.status == {"first": "completed", "slow": "completed", "flaky": "completed"}
    assert tracker.retries == 1
    outcomes = [(s.state, s.attempt, s.outcome) for s in tracker.spans]
    assert ("flaky", 1, "retried") in outcomes
    assert ("flaky", 2, "completed") in outcomes
    slow_span = next(s for s in tracker.spans if s.state == "slow")
    flaky_span = next(s for s in tracker.spans if s.state == "flaky" and s.attempt == 2)
    assert slow_span.start <= flaky_span.end <= slow_span.end  # they overlapped: parallel
    assert tracker.progress() == (3, 3)
    assert tracker.summary().startswith("t: completed · 3/3 states")


async def test_live_view_redraws_are_coalesced_on_a_large_run():
    agent = fan_out(3000)
    view = LiveView(agent, interval=0.05)
    started = time.perf_counter()
    handle = agent.start()
    view.attach(handle)
    await handle
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0)  # let the done-callback draw the final state
    assert not agent.events.stepwise  # the engine built no event per state for the view...
    spans = view.tracker.spans
    assert view.tracker.completed_runs == len(spans) == 3001  # ...yet it saw every state's run (off the run)...
    assert {s.outcome for s in spans} == {"completed"}
    assert view.redraws <= elapsed / 0.05 + 3  # ...but at most one redraw per tick, plus start and end
    assert view.progress.value == view.progress.max == 3001
    assert view.progress.bar_style == "success"
    assert "fan3000: completed" in view.header.value


async def test_failing_run_shows_error_with_traceback_in_the_view():
    agent = Agent("bad")

    async def step(ctx):
        raise ValueError("no <good>")

    agent.add_state("step", step)
    view = LiveView(agent)
    handle = agent.start()
    view.attach(handle)
    done = asyncio.Event()
    handle.add_done_callback(lambda h: done.set())
    await done.wait()
    await asyncio.sleep(0)
    [out] = view.result_out.outputs
    assert out["output_type"] == "error"
    assert out["ename"] == "StateFailedError"
    assert any("ValueError: no <good>" in line for line in out["traceback"])
    assert "no &lt;good&gt;" in view.header.value
    assert view.progress.bar_style == "danger"


async def test_static_snapshot_for_frontends_without_widgets():
    agent = fan_out(3)
    view = LiveView(agent)
    view.attach(agent.start())
    await agent.handle
    await asyncio.sleep(0)
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("fan3: completed · 4/4 states")
    html = bundle["text/html"]
    assert "<svg" in html
    assert "4 done" in html


async def test_timeline_switches_to_concurrency_chart_for_huge_runs():
    agent = fan_out(GANTT_LIMIT + 10)
    tracker = RunTracker(agent)
    await agent.run()
    fig = timeline_figure(tracker)
    assert "too many for bars" in fig.layout.title.text
    assert {t.name for t in fig.data} == {"running at once", "finished (total)"}
    small = fan_out(3)
    tracker = RunTracker(small)
    await small.run()
    fig = timeline_figure(tracker)
    # a bar per state (an attempt too short to see as a bar also gets a tick: how many do is timing)
    assert "too many for bars" not in (fig.layout.title.text or "")
    assert not {t.name for t in fig.data} & {"running at once", "finished (total)"}
    assert {y for t in fig.data if t.type == "bar" for y in t.y} == {"dispatch", "w0", "w1", "w2"}


async def test_resource_view_puts_declared_beside_measured():
    agent = Agent("res")
    gate = asyncio.Event()

    async def heavy(ctx):
        from fluffy_nb.engine._sampler import UsageSampler

        sampler = UsageSampler(agent, interval=60)  # samples now, and once more when closed
        sampler.sample()
        sampler.close()
        gate.set()

    agent.add_state("heavy", heavy, resources=ResourceRequirements(cpu_units=2, memory_mb=512))
    tracker = RunTracker(agent)
    await agent.run()
    assert gate.is_set()
    [row] = declared_vs_measured(tracker)
    assert row["state"] == "heavy"
    assert row["declared_cpu"] == 2
    assert row["declared_memory_mb"] == 512
    assert row["samples"] == len(tracker.samples) >= 1
    assert row["measured_peak_memory_mb"] > 0
    names = {t.name for t in resource_figure(tracker).data}
    assert {"process CPU %", "system CPU %", "declared CPU % (running states)",
            "process memory (MB, lower chart)"} <= names


async def test_person_wait_shows_in_statuses_timeline_and_the_embedded_forms():
    from fluffy_nb.engine._hitl import ProgrammaticResponder

    agent = Agent("ask", responder=ProgrammaticResponder())

    async def review(ctx):
        ctx.set_state("ok", await ctx.human_in_the_loop("Ship <it>?", choices=["yes", "no"]))

    agent.add_state("review", review)
    view = LiveView(agent)
    asked = asyncio.Event()
    agent.events.subscribe(lambda e: asked.set() if type(e).__name__ == "HumanRequested" else None)
    handle = agent.start()
    view.attach(handle)
    await asked.wait()
    assert view.tracker.status["review"] == "waiting_for_human"
    assert view.forms in view.widget.children  # the HITL forms area sits inside the view
    assert len(view.forms.children) == 1  # one form for the open request
    view.redraw(force=True)
    assert "waiting for a person" in view.header.value
    assert "Ship &lt;it&gt;?" in view.header.value
    [request] = agent.pending_requests()
    agent.answer(request.request_id, "yes")
    result = await handle
    assert result["ok"] == "yes"
    [span] = view.tracker.spans
    assert span.waits is not None
    assert span.waits[0][1] is not None  # the wait ended when the answer came
    names = {t.name for t in timeline_figure(view.tracker).data}
    assert "waiting for a person" in names


async def test_graph_is_redrawn_while_the_run_goes_not_only_at_the_end():
    agent = Agent("slow")
    gate = asyncio.Event()

    async def first(ctx):
        return "wait"

    async def wait(ctx):
        await gate.wait()

    agent.add_state("first", first)
    agent.add_state("wait", wait)
    view = LiveView(agent, interval=0.01, figure_interval=0.02)
    shows_running = asyncio.Event()

    def on_outputs(change):
        data = change["new"][0]["data"]["application/vnd.plotly.v1+json"]["data"]
        if any(t.get("name") == "running" and list(t.get("text", [])) == ["wait"] for t in data):
            shows_running.set()

    view.graph_out.observe(on_outputs, "outputs")
    handle = agent.start()
    view.attach(handle)
    await asyncio.wait_for(shows_running.wait(), timeout=10)
    assert not handle.done()  # seen while the run was still going
    gate.set()
    await handle


def crashing_chain(store, crash: dict[str, bool]) -> Agent:
    agent = Agent("article", store=store, durable=True)

    async def draft(ctx):
        return "edit"

    async def edit(ctx):
        if crash["now"]:
            raise RuntimeError("kernel died")
        return "publish"

    async def publish(ctx):
        return None

    for f in (draft, edit, publish):
        agent.add_state(f.__name__, f)
    return agent


async def test_view_of_a_resumed_run_shows_states_done_before_the_crash_as_done():
    from fluffy_nb import MemoryStore, StateFailedError
    from fluffy_nb.engine._handle import RunHandle

    store = MemoryStore()
    crash = {"now": True}
    with pytest.raises(StateFailedError):
        await crashing_chain(store, crash).run()
    crash["now"] = False
    survivor = crashing_chain(store, crash)  # a fresh agent, as after a kernel restart
    view = LiveView(survivor)
    handle = RunHandle(survivor, asyncio.get_running_loop().create_task(survivor.resume_latest()))
    view.attach(handle)
    await handle
    await asyncio.sleep(0)  # the done-callback draws the end
    assert [s.state for s in view.tracker.spans] == ["edit", "publish"]  # draft was not run again...
    assert view.tracker.status == dict.fromkeys(["draft", "edit", "publish"], "completed")  # ...yet shows done
    assert view.tracker.summary().startswith("article: completed · 3/3 states")
    assert view.progress.value == view.progress.max == 3


async def test_view_of_a_restored_checkpoint_starts_from_its_statuses():
    from fluffy_nb import MemoryStore

    store = MemoryStore()
    crash = {"now": False}
    await crashing_chain(store, crash).run()
    again = crashing_chain(store, crash)
    after_draft = next(row for row in again.history_records() if row.completed_count == 1)
    again.restore(after_draft.checkpoint_id)
    tracker = RunTracker(again)  # before the run: shows where it will continue from
    assert tracker.status["draft"] == "completed"
    assert tracker.status["publish"] == "pending"
    await again.run()
    assert tracker.status == dict.fromkeys(["draft", "edit", "publish"], "completed")
    assert tracker.progress() == (3, 3)


async def test_run_shorter_than_the_sampling_interval_shows_a_note_not_an_empty_chart():
    agent = Agent("quick")

    async def only(ctx):
        return None

    agent.add_state("only", only)
    view = LiveView(agent, sample_interval=60)  # the run ends long before a second sample
    view.attach(agent.start())
    await agent.handle
    await asyncio.sleep(0)
    assert len(view.tracker.samples) <= 1  # at most the sampler's final sample
    [out] = view.resources_out.outputs
    assert "application/vnd.plotly.v1+json" not in out["data"]
    assert "too short for a usage chart" in out["data"]["text/plain"]


async def test_resources_chart_appears_once_there_are_two_samples():
    from fluffy_nb.engine._events import ResourceSample

    agent = Agent("sampled")

    async def work(ctx):  # publish two samples 0.6 s apart, as a longer run's sampler does
        now = agent.clock.monotonic()
        for t in (now, now + 0.6):
            agent.events.publish(ResourceSample(agent.name, agent.run_id, t, 50.0, 100.0, 20.0, 40.0, ("work",)))

    agent.add_state("work", work)
    view = LiveView(agent, sample_interval=60)
    view.attach(agent.start())
    await agent.handle
    await asyncio.sleep(0)
    [out] = view.resources_out.outputs
    fig = out["data"]["application/vnd.plotly.v1+json"]
    cpu = next(t for t in fig["data"] if t["name"] == "process CPU %")
    assert cpu["y"][:2] == [50.0, 50.0]


async def finished_view_refs(agent: Agent) -> tuple[weakref.ref[Agent], weakref.ref[LiveView]]:
    view = LiveView(agent)
    view.attach(agent.start())
    await agent.handle
    await asyncio.sleep(0)  # the done-callback draws the end
    assert view_of(agent) is view
    await asyncio.wait({view._ticker})  # the end cancelled the redraw ticker: let it wind down
    return weakref.ref(agent), weakref.ref(view)


async def test_a_finished_view_does_not_keep_its_agent_alive(monkeypatch):
    # a forms slot that holds no agent: the view's own references only
    monkeypatch.setattr(_liveview, "_forms_area", lambda agent: ipywidgets.VBox([]))
    agent_ref, view_ref = await finished_view_refs(fan_out(2))
    gc.collect()
    assert view_ref() is None
    assert agent_ref() is None


async def test_an_agent_with_a_finished_view_and_its_forms_area_is_freed():
    agent_ref, view_ref = await finished_view_refs(fan_out(2))
    gc.collect()
    assert view_ref() is None
    assert agent_ref() is None


def test_the_header_links_the_executors_dashboard_when_it_has_one():
    class WithDashboard:  # any executor exposing dashboard_link, e.g. a DaskExecutor on a cluster with one
        name = "dask"
        dashboard_link = "http://127.0.0.1:8787/status"

    view = LiveView(Agent("linked", executor=WithDashboard()))
    assert '<a href="http://127.0.0.1:8787/status" target="_blank">Dask dashboard</a>' in view.snapshot_html()
    view.close()
    plain = LiveView(Agent("unlinked"))
    assert "Dask dashboard" not in plain.snapshot_html()
    plain.close()


async def test_timeline_rows_show_hostile_state_names_as_written():
    names = ["<b>bold</b>", "a & b", "x<br>y", 'say "hi"', "&lt;already&gt;"]
    agent = Agent("names")

    dispatching(agent, names)
    tracker = RunTracker(agent)
    await agent.run()
    fig = timeline_figure(tracker)
    rows = {y for trace in fig.data for y in trace.y}
    assert rows == {plotly_text(n) for n in ["dispatch", *names]}
    assert not any("<" in r or ">" in r for r in rows)  # plotly would draw a tag
    # plotly decodes &amp; &lt; &gt; in labels: what it shows is the name as written
    assert {html.unescape(r) for r in rows} == {"dispatch", *names}
    assert list(fig.layout.yaxis.categoryarray) == [plotly_text(n) for n in reversed(["dispatch", *names])]
    for trace in fig.data:
        assert not any("<b>bold" in h for h in trace.hovertext)


async def test_a_cell_awaiting_the_handle_resumes_with_the_end_drawn():
    agent = fan_out(20)
    view = LiveView(agent)
    handle = agent.start()
    view.attach(handle)
    await handle
    assert view.finished  # so a notebook executed by nbconvert saves the final picture with this cell
    assert "fan20: completed · 21/21 states" in view.header.value
    view.close()


async def test_tracker_keeps_every_run_of_a_state_and_starts_afresh_with_the_next_run():
    agent = Agent("loop")
    turns = []

    async def step(ctx):
        turns.append(1)
        return "step" if len(turns) % 3 else None

    agent.add_state("step", step)
    tracker = RunTracker(agent)
    await agent.run()
    assert len(tracker.durations["step"]) == 3
    assert tracker.completed_runs == 3
    await agent.run()
    await agent.run()
    assert len(tracker.durations["step"]) == 3  # this run's three, not nine
    assert [s.outcome for s in tracker.spans] == ["completed"] * 3
    tracker.close()
    assert not agent.events.active  # every subscription of the tracker left the bus


async def test_spans_read_while_states_run_are_completed_when_they_finish():
    agent = Agent("spans")
    gate = asyncio.Event()

    async def first(ctx):
        return ["slow", "quick"]

    async def slow(ctx):
        await gate.wait()

    async def quick(ctx):
        return None

    agent.add_state("first", first)
    agent.add_state("slow", slow)
    agent.add_state("quick", quick)
    tracker = RunTracker(agent)
    handle = agent.start()
    await until(lambda: tracker.status.get("quick") == "completed" and tracker.status.get("slow") == "running",
                "quick done while slow runs")
    assert {s.state: s.outcome for s in tracker.spans} == {"first": "completed", "slow": "running",
                                                          "quick": "completed"}
    gate.set()
    await handle
    spans = list(tracker.spans)
    assert [s.state for s in spans] == ["first", "slow", "quick"]  # each attempt once, in start order
    assert {s.outcome for s in spans} == {"completed"}
    assert all(s.end is not None and s.end >= s.start for s in spans)
    tracker.close()


async def test_a_view_shows_queued_states_as_ready_without_reading_scheduled_events():
    from fluffy_nb.engine._events import StateScheduled

    agent = Agent("queue", max_concurrent=1)
    gate = asyncio.Event()

    async def first(ctx):
        return ["a", "b"]

    async def work(ctx):
        await gate.wait()

    agent.add_state("first", first)
    agent.add_state("a", work)
    agent.add_state("b", work)
    view = LiveView(agent, interval=60)  # draws when asked here
    assert not agent.events.wants(StateScheduled)  # the engine need not build one per state for a view
    handle = agent.start()
    view.attach(handle)
    tracker = view.tracker  # (each read of its ``status`` is up to date: it reads the run)
    await until(lambda: "running" in (tracker.status.get("a"), tracker.status.get("b")), "a or b runs")
    view.redraw(force=True)
    assert sorted([view.tracker.status["a"], view.tracker.status["b"]]) == ["ready", "running"]  # one queued
    gate.set()
    await handle
    await asyncio.sleep(0)
    assert view.tracker.status == dict.fromkeys(["first", "a", "b"], "completed")
    view.close()
