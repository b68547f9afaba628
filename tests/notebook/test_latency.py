"""Per-state latency: percentiles, the live view's table, and the metrics frame."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fluffy_nb import Agent
from fluffy_nb.notebook._latency import latency_rows, latency_table_html, metrics_frame, percentile
from fluffy_nb.notebook._liveview import LiveView
from tests._flows import dispatching


def test_percentiles_interpolate_like_the_engine_aggregation() -> None:
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0
    assert percentile([1.0], 99) == 1.0
    assert math.isnan(percentile([], 50))


def test_rows_are_slowest_p95_first_in_milliseconds() -> None:
    rows = latency_rows({"fast": [0.001, 0.002], "slow": [0.5], "never": []})
    assert [r["state"] for r in rows] == ["slow", "fast"]
    assert rows[0]["p95_ms"] == pytest.approx(500.0)
    assert rows[1]["p50_ms"] == pytest.approx(1.5)


def test_table_escapes_state_names_and_caps_its_rows() -> None:
    html = latency_table_html({f"<s{i}>": [i / 1000] for i in range(15)}, limit=10)
    assert "&lt;s14&gt;" in html
    assert "<s14>" not in html
    assert "5 more states" in html
    assert latency_table_html({}) == ""


async def test_live_view_shows_the_latency_table_of_its_run() -> None:
    agent = Agent("lat")

    async def one(ctx: Any) -> str:
        return "two"

    async def two(ctx: Any) -> None:
        return None

    agent.add_state("one", one)
    agent.add_state("two", two)
    view = LiveView(agent, graph=False)
    try:
        await agent.run()
        view.finish(None)
        assert "slowest states" in view.latency.value
        assert "slowest states" in view.snapshot_html()
        assert set(view.tracker.durations) == {"one", "two"}
    finally:
        view.close()


async def test_metrics_frame_leaves_out_states_that_never_ran() -> None:
    agent = Agent("partial")

    async def only(ctx: Any) -> None:
        return None

    agent.add_state("only", only)
    agent.add_state("unused", only)
    await agent.run(start="only")
    frame = metrics_frame(agent)
    assert list(frame.index) == ["only"]
    assert frame.loc["only", "runs"] == 1


async def test_the_views_latency_table_reads_the_same_from_the_slowest_states_alone() -> None:
    from fluffy_nb.notebook._tracker import RunTracker

    names = [f"w{i}" for i in range(15)]
    agent = Agent("fan")

    dispatching(agent, names)
    tracker = RunTracker(agent)
    await agent.run()
    slowest, finished = tracker.slowest(11)  # each state ran once: ranked from the finish order
    assert (len(slowest), finished) == (11, 16)
    assert latency_table_html(slowest, finished=finished) == latency_table_html(tracker.durations)
    assert "6 more states" in latency_table_html(slowest, finished=finished)

    loop = Agent("loop")
    turns: list[int] = []

    async def again(ctx: Any) -> str | None:
        turns.append(1)
        return "again" if len(turns) < 3 else None

    loop.add_state("again", again)
    looped = RunTracker(loop)
    await loop.run()
    slowest, finished = looped.slowest(11)  # a state that ran three times: from its three durations
    assert (len(slowest["again"]), finished) == (3, 1)


async def test_a_tracker_of_a_long_loop_keeps_every_duration_while_holding_a_bounded_backlog(monkeypatch) -> None:
    from fluffy_nb.notebook import _tracker, _trackruns

    monkeypatch.setattr(_trackruns, "_FOLD_AT", 100)  # fold often, so a short run shows it
    agent = Agent("loop", max_steps=2_000)

    async def spin(ctx: Any) -> str | None:
        n = ctx.get_state("n", 0) + 1
        ctx.set_state("n", n)
        return "spin" if n < 1_000 else None

    agent.add_state("spin", spin, next=["spin"])
    tracker = _tracker.RunTracker(agent)
    await agent.run()
    assert len(tracker._ran) < 100  # folded as it went: a long run holds no ever-growing list
    assert len(tracker.durations["spin"]) == 1_000
    slowest, finished = tracker.slowest(5)
    assert (finished, len(slowest["spin"])) == (1, 1_000)
    tracker.close()
