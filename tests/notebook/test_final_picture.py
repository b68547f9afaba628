"""The picture a finished run leaves: every state accounted for, and a static snapshot that exports."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from fluffy_nb import Agent, ManualClock, StateFailedError
from fluffy_nb.notebook import LiveView, graph_mermaid, graph_svg
from fluffy_nb.notebook._figures import resource_figure, timeline_bundle, timeline_figure, to_bundle
from fluffy_nb.notebook._graphview import graph_bundle, graph_figure
from fluffy_nb.notebook._static import state_usage, timeline_svg, usage_table_html
from fluffy_nb.notebook._tracker import RunTracker, Span
from tests._wait import until


def review_agent(*, fail: bool = False) -> Agent:
    """Notebook 06's shape: draft -> review -> (publish | revise); the review approves (or fails)."""
    agent = Agent("review")

    async def draft(ctx):
        return "review"

    async def review(ctx):
        if fail:
            raise ValueError("bad draft")
        return "publish" if ctx.get_state("approved", True) else "revise"

    async def revise(ctx):
        return "review"

    async def publish(ctx):
        return None

    for name, fn in (("draft", draft), ("review", review), ("revise", revise), ("publish", publish)):
        agent.add_state(name, fn)
    return agent


async def finished_view(agent: Agent) -> LiveView:
    view = LiveView(agent)
    view.attach(agent.start())
    await agent.handle
    await asyncio.sleep(0)  # the done-callback draws the end
    return view


async def test_a_state_a_completed_run_never_needed_reads_skipped_and_progress_reaches_the_end():
    view = await finished_view(review_agent())
    tr = view.tracker
    assert tr.status["revise"] == "skipped"
    assert tr.progress() == (4, 4)
    assert tr.summary().startswith("review: completed · 4/4 states")
    assert "1 skipped" in tr.summary()
    assert (view.progress.value, view.progress.max) == (4, 4)
    svg = graph_svg(view.agent, tr)
    assert 'stroke-dasharray="4,3"' in svg  # the skipped node is drawn dashed
    assert "revise (skipped)" in svg
    assert "classDef skipped" in graph_mermaid(view.agent, tr)
    assert "1 skipped" in view.snapshot_html()


async def test_states_left_by_a_failed_run_stay_pending_not_skipped():
    agent = review_agent(fail=True)
    view = LiveView(agent)
    view.attach(agent.start())
    with pytest.raises(StateFailedError):
        await agent.handle
    await asyncio.sleep(0)
    assert view.tracker.status["publish"] == "pending"
    assert view.tracker.progress() == (2, 4)  # draft done, review failed


class FakeDisplay:
    """What ``display(view, display_id=True)`` returns, recording what the view's display becomes."""

    def __init__(self) -> None:
        self.updates: list[tuple[dict, dict]] = []

    def update(self, obj, **kwargs):
        self.updates.append((obj, kwargs))


async def test_the_view_ends_as_a_static_picture_of_the_finished_run_without_a_widget():
    agent = review_agent()
    view = LiveView(agent)
    view._display = shown = FakeDisplay()  # as LiveView.display() sets it in a kernel
    view.attach(agent.start())
    await agent.handle
    await asyncio.sleep(0)
    [(bundle, kwargs)] = shown.updates
    assert kwargs == {"raw": True}
    assert set(bundle) == {"text/plain", "text/html"}  # no widget view: nothing needs JavaScript or a CDN
    assert bundle["text/plain"].startswith("review: completed · 4/4 states")
    page = bundle["text/html"]
    assert "review: completed · 4/4 states" in page
    assert page.count("<svg") == 2  # the graph and the timeline
    assert "timeline: 3 state runs" in page
    assert "RunResult of review" in page  # the result, shown once at the end
    assert "<script" not in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def two_span_tracker():
    """A tracker's timeline: ``slow`` ran 2 s, then ``instant`` took no time at all."""
    spans = [Span("slow", 1, 0.0, 2.0, "completed"), Span("instant", 1, 2.0, 2.0, "completed")]
    return SimpleNamespace(spans=spans, wait_spans=[], duration=2.0, elapsed=lambda: 2.0)


def test_the_timeline_legend_names_each_reason_waited_for_in_the_colour_of_its_bars():
    from fluffy_nb.notebook._trackwaits import WaitSpan
    from fluffy_nb.notebook._waitview import wait_style

    tracker = two_span_tracker()
    tracker.wait_spans = [WaitSpan("slow", "rate_limit", 0.0, 0.5), WaitSpan("instant", "person", 0.5, 2.0)]
    svg = timeline_svg(tracker)
    for kind, text in (("rate_limit", "waited: rate limit"), ("person", "a person")):
        colour = wait_style(kind)[1]
        assert f'fill="{colour}" fill-opacity="0.45"><title>' in svg  # the bars
        assert any(f'fill="{colour}" fill-opacity="0.45"/>' in part and f">{text}</text>" in part
                   for part in svg.split("<rect")[1:]), f"no {colour} swatch named {text!r}"  # the legend


def test_a_state_that_took_no_time_shows_as_a_tick_on_both_timelines():
    tracker = two_span_tracker()
    svg = timeline_svg(tracker)
    [tick] = svg.split("<line")[1:-1]  # one tick, then the axis line
    assert "instant attempt 1" in tick
    assert 'stroke-width="3"' in tick
    assert ">0.5<" in svg
    assert ">2<" in svg
    fig = timeline_figure(tracker)
    [marks] = [t for t in fig.data if t.type == "scatter"]
    assert list(marks.y) == ["instant"]
    assert list(marks.x) == [2.0]
    assert marks.marker.symbol == "line-ns"


def test_the_timeline_legend_sits_right_of_the_plot_never_over_the_title():
    layout = timeline_figure(two_span_tracker()).layout
    assert layout.title.x < 0.1  # the title at the left, above the plot
    assert layout.legend.orientation == "v"
    assert layout.legend.x > 1
    assert layout.legend.xanchor == "left"


async def test_usage_table_has_one_row_per_state_that_ran_with_its_own_figures():
    """Each sample window's CPU and memory change go to the state runs inside it by their time
    there; runs sharing a window split it; a run between two samples still gets figures."""
    from fluffy_nb.engine._events import ResourceSample

    clock = ManualClock()
    agent = Agent("usage", clock=clock)
    tracker = RunTracker(agent)  # no live view: no real sampler, the samples are the test's
    t0: list[float] = []

    def sample(at: float, cpu: float, mb: float) -> None:
        agent.events.publish(ResourceSample(agent.name, agent.run_id, t0[0] + at, cpu, mb, 20.0, 40.0))

    async def load(ctx):  # 0 -> 1.0 s alone: windows (0, 0.5] at 80 % and (0.5, 1.0] at 60 %, +20 MB
        t0.append(clock.monotonic())
        await clock.advance(0.5)
        sample(0.5, 80.0, 130.0)
        await clock.advance(0.5)
        sample(1.0, 60.0, 150.0)
        return ["parse", "index"]

    async def parse(ctx):  # 1.0 -> 1.25 s beside index in the window (1.0, 1.5] at 90 %, +30 MB
        await clock.sleep(0.25)

    async def index(ctx):  # 1.0 -> 1.5 s
        await clock.sleep(0.5)
        sample(1.5, 90.0, 180.0)

    agent.add_state("load", load)
    agent.add_state("parse", parse, next=["never"])  # (a route it does not take)
    agent.add_state("index", index)

    async def never(ctx):  # not reached: no row
        return None

    agent.add_state("never", never)
    handle = agent.start()
    await clock.wait_for_sleepers(2)  # parse and index both asleep
    await clock.advance(0.25)
    await clock.advance(0.25)
    await handle
    rows = {r["state"]: r for r in state_usage(tracker)}
    assert set(rows) == {"load", "parse", "index"}  # every state that ran, none that did not
    assert rows["load"]["runs"] == 1
    assert rows["load"]["seconds"] == pytest.approx(1.0)
    assert rows["load"]["cpu_cores"] == pytest.approx(0.7)  # (0.8 * 0.5 + 0.6 * 0.5) / 1.0 s
    assert rows["load"]["memory_change_mb"] == pytest.approx(20.0)  # the first window has no baseline
    # (1.0, 1.5]: 0.45 CPU-s and +30 MB over 0.75 s of runs: parse 0.25 s of it, index 0.5 s
    assert rows["parse"]["cpu_cores"] == pytest.approx(0.45 / 0.75)
    assert rows["index"]["cpu_cores"] == pytest.approx(0.45 / 0.75)
    assert rows["parse"]["memory_change_mb"] == pytest.approx(10.0)
    assert rows["index"]["memory_change_mb"] == pytest.approx(20.0)
    table = usage_table_html(tracker)
    assert table.count("<tr>") == 4  # header + one row per state
    assert "CPU (cores, its share)" in table
    assert "memory change (MB)" in table
    assert "unsampled" not in table
    tracker.close()


def test_resources_chart_has_round_ticks_units_and_memory_on_its_own_axis():
    from fluffy_nb.engine._events import ResourceSample

    samples = [ResourceSample("a", "r", t, cpu, mb, 30.0, 40.0, ("s",))
               for t, cpu, mb in ((0.0, 35.0, 42.1), (0.5, 90.0, 84.2), (1.0, 20.0, 126.3))]
    tracker = SimpleNamespace(samples=samples, t0=0.0, agent=Agent("a"))
    layout = resource_figure(tracker).layout
    assert layout.yaxis.title.text == "CPU (% of one core)"
    assert layout.yaxis2.title.text == "memory (MB)"
    assert layout.yaxis2.overlaying is None  # its own scale, below the CPU chart, not over it
    assert layout.yaxis2.domain[1] < layout.yaxis.domain[0]
    assert layout.yaxis2.dtick == 50
    assert layout.yaxis2.range == (0, 150)
    assert layout.yaxis.dtick == 50
    assert layout.yaxis.range == (0, 150)
    memory = next(t for t in resource_figure(tracker).data if t.yaxis == "y2")
    assert "MB" in memory.name


async def test_a_forms_area_shown_on_its_own_becomes_one_line_records_once_answered():
    from fluffy_nb.engine._events import HumanRequested
    from fluffy_nb.notebook._hitl_form import WidgetResponder

    responder = WidgetResponder(display=False)
    agent = Agent("forms", responder=responder)

    async def approve(ctx):
        ctx.set_state("answer", await ctx.human_in_the_loop("Ship <it>?", choices=["yes", "no"]))

    agent.add_state("approve", approve)
    asked = asyncio.Event()
    agent.events.subscribe(lambda e: isinstance(e, HumanRequested) and asked.set())
    handle = agent.start()
    await asked.wait()
    await asyncio.sleep(0)  # the responder is handed the request on the next loop iteration
    area = responder.area
    area.display_handle = shown = FakeDisplay()  # as the responder's display(area, display_id=True) sets it
    [form] = area.open_forms()
    assert form.submit({"event": "submit", "choice": 0}) is True  # the browser clicking "yes"
    await handle
    [(bundle, kwargs)] = shown.updates
    assert kwargs == {"raw": True}
    assert bundle["text/plain"].startswith("✓ approve: Ship <it>? → ")  # not "<FormsArea ... open=1>"
    assert "Ship &lt;it&gt;?" in bundle["text/html"]
    assert 'class="fluffy-form-record fluffy-ok"' in bundle["text/html"]  # as the widget's record reads


def fan_out_agent(n: int, *, untaken: tuple[str, ...] = ()) -> Agent:
    """``dispatch`` names ``n`` workers; the ``untaken`` ones it leaves out (a completed run skips them)."""
    agent = Agent("fan")
    names = [f"w{i}" for i in range(n)]
    taken = [name for name in names if name not in untaken]

    async def dispatch(ctx):
        return taken

    async def work(ctx):
        return None

    agent.add_state("dispatch", dispatch, next=names)
    for name in names:
        agent.add_state(name, work)
    return agent


def node_texts(fig) -> list[str]:
    return [text for trace in fig.data if trace.mode == "markers+text" for text in trace.text]


async def test_a_2000_state_fan_out_is_one_summarised_node_with_its_counts_live_and_exported():
    view = await finished_view(fan_out_agent(2000, untaken=("w5", "w1999")))
    tr = view.tracker
    fig = graph_figure(view.agent, tr)
    assert node_texts(fig) == ["dispatch", "w0 … w1999 (2,000 states)<br>1,998 done, 2 skipped"]
    assert "summarised: 2,000 states drawn as 1 node" in fig.layout.title.text
    assert graph_bundle(view.agent, tr) == to_bundle(fig)  # the live view's plain-JSON graph is this figure
    svg = graph_svg(view.agent, tr)
    assert svg.count("<g><title>") == 2  # two boxes, not 2,001
    exported = view.final_bundle()["text/html"]
    assert "w0 … w1999 (2,000 states): 1,998 done, 2 skipped" in exported
    assert "summarised: 2,000 states drawn as 1 node" in exported
    timeline = timeline_figure(tr)
    assert "too many for bars" in timeline.layout.title.text
    assert max(len(trace.x) for trace in timeline.data) <= 402  # bounded: 400 time buckets, not 2,000 rows
    assert max(timeline.data[1].y) == 1 + 1998  # the finished line counts dispatch and every worker that ran
    assert timeline.layout.yaxis.title.text == "running"
    assert timeline_bundle(tr) == to_bundle(timeline)  # the live view's plain-JSON chart is the same figure


async def test_a_small_graph_is_drawn_state_by_state_without_a_summary_note():
    view = await finished_view(review_agent())
    fig = graph_figure(view.agent, view.tracker)
    assert sorted(node_texts(fig)) == ["draft", "publish", "review", "revise"]
    assert fig.layout.title.text == "<b>review</b> - 4 states: 3 done, 1 skipped"
    assert fig.layout.margin.t == 50
    assert graph_bundle(view.agent, view.tracker) == to_bundle(fig)
    svg = graph_svg(view.agent, view.tracker)
    assert "summarised" not in svg
    assert svg.count("<g><title>") == 4


def test_a_timeline_legend_of_every_wait_reason_stays_inside_the_picture():
    import re

    from fluffy_nb.notebook._trackwaits import WaitSpan
    from fluffy_nb.notebook._waitview import WAIT_STYLE

    tracker = two_span_tracker()
    tracker.wait_spans = [WaitSpan("slow", kind, 0.0, 0.5) for kind in WAIT_STYLE]
    svg = timeline_svg(tracker, width=720)
    legend = re.findall(r'<text x="(\d+)" y="14">([^<]*)</text>', svg)
    assert legend[-1][1].endswith("more reasons")
    assert all(int(x) + 7 * len(text) <= 720 for x, text in legend)


async def test_every_branch_of_a_mapped_state_ends_on_the_finished_timeline():
    agent = Agent("batch")
    release = asyncio.Event()

    async def split(ctx):
        return ctx.map("score", list(range(5)))

    async def score(ctx):
        await release.wait()  # all five branches are inside score at once

    async def report(ctx):
        return None

    agent.add_state("split", split, next=["score"])
    agent.add_state("score", score, next=["report"])
    agent.add_state("report", report)
    view = LiveView(agent)
    handle = agent.start()
    view.attach(handle)
    await until(lambda: "score" in handle.run.maps and handle.run.maps["score"].snapshot().running == 5)
    release.set()
    await handle
    await asyncio.sleep(0)
    scores = [s for s in view.tracker.spans if s.state == "score"]
    assert [s.outcome for s in scores] == ["completed"] * 5  # notebook 11's batch kept 126 of 200 "running"
    assert all(s.end is not None for s in scores)


async def test_a_view_following_await_run_draws_the_runs_last_resource_sample():
    """``await agent.run()`` in a cell: its view draws the end from inside the RunFinished event,
    where the sampler's last sample would reach the bus only after the view had drawn and left
    (the usage table of notebook 07's first run read "unsampled" on every row)."""
    from fluffy_nb.engine import _hooks

    agent = Agent("sampled")

    async def step(ctx):
        return None

    agent.add_state("step", step)
    views: list[LiveView] = []

    def observe(observed):  # what the notebook's run observer does in a kernel (on_run_begun)
        if observed is agent:
            views.append(LiveView(agent, show_result=False).follow_run(agent.latest_run))

    _hooks.run_observers.append(observe)
    try:
        await agent.run()
    finally:
        _hooks.run_observers.remove(observe)
    [view] = views
    assert view.finished
    assert len(view.tracker.samples) >= 1
    [row] = state_usage(view.tracker)
    assert row["cpu_cores"] is not None
    assert "unsampled" not in view.usage.value



class _SteppedClock:
    """A clock that moves only when told to (synchronously, unlike ManualClock.advance)."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + 1_700_000_000.0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


async def test_the_views_own_set_up_is_not_the_runs_time_and_its_timeline_opens_on_the_first_state():
    """In a kernel the view of ``await agent.run()`` is made as the run begins (a run observer):
    its widgets and first picture took 6-240 ms in the teaching notebooks, counted as the run's
    time, and every timeline opened on that gap before the first state."""
    from fluffy_nb.engine import _hooks

    clock = _SteppedClock()
    agent = Agent("set_up", clock=clock)

    async def first(ctx):
        clock.now += 0.5
        return "second"

    async def second(ctx):
        clock.now += 0.25

    agent.add_state("first", first)
    agent.add_state("second", second)
    views: list[LiveView] = []

    def observe(observed):  # what the notebook's run observer does in a kernel (on_run_begun)
        if observed is agent:
            views.append(LiveView(agent, show_result=False).follow_run(agent.latest_run))
            clock.now += 5.0  # a slow set-up, as on a kernel's first run (imports, widgets)

    _hooks.run_observers.append(observe)
    try:
        result = await agent.run()
    finally:
        _hooks.run_observers.remove(observe)
    [view] = views
    assert result.duration == pytest.approx(0.75)
    spans = {s.state: (s.start, s.end) for s in view.tracker.spans}
    assert spans["first"] == pytest.approx((0.0, 0.5))
    assert spans["second"] == pytest.approx((0.5, 0.75))
