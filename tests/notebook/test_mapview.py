"""A payload fan-out is one node of the live graph, labelled with its done/running/failed counts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fluffy_nb import Agent, StateFailedError
from fluffy_nb.notebook._graphview import graph_figure
from fluffy_nb.notebook._tracker import RunTracker
from tests._wait import until


async def test_the_mapped_state_is_one_node_whose_label_counts_its_branches_while_they_run() -> None:
    release = asyncio.Event()
    finished: list[int] = []

    async def split(ctx: Any) -> Any:
        return ctx.map("score", range(5))

    async def score(ctx: Any) -> str:
        if ctx.payload >= 2:
            await release.wait()
        if ctx.payload == 4:
            raise ValueError("item 4 is bad")
        finished.append(ctx.payload)
        return "merge"

    async def merge(ctx: Any) -> None:
        pass

    agent = Agent("mapview")
    agent.add_state("split", split)
    agent.add_state("score", score)
    agent.add_state("merge", merge)
    tracker = RunTracker(agent)
    task = asyncio.create_task(agent.run())
    await until(lambda: len(finished) == 2 and agent.latest_run is not None
                and agent.latest_run.snapshot().maps["score"].running == 3, "two done, three running")

    def score_labels() -> list[str]:
        fig = graph_figure(agent, tracker)
        texts = [t for trace in fig.data if trace.text is not None for t in trace.text]
        return [t for t in texts if t.startswith("score")]

    assert score_labels() == ["score · 2/5 done, 3 running"]
    release.set()
    with pytest.raises(StateFailedError, match="item 4 is bad"):
        await task
    assert score_labels() == ["score · 4/5 done, 1 failed"]
    tracker.close()


async def test_a_finished_views_static_picture_and_text_keep_the_maps_counts() -> None:
    from fluffy_nb.notebook import LiveView
    from fluffy_nb.notebook._graphview import graph_svg, graph_text

    async def split(ctx: Any) -> Any:
        return ctx.map("score", range(5))

    async def score(ctx: Any) -> str:
        if ctx.payload == 4:
            raise ValueError("item 4 is bad")
        return "merge"

    async def merge(ctx: Any) -> None:
        pass

    agent = Agent("mapstatic")
    for f in (split, score, merge):
        agent.add_state(f.__name__, f)
    view = LiveView(agent)
    handle = agent.start()
    view.attach(handle)
    with pytest.raises(StateFailedError):
        await handle
    assert "score [failed] · 4/5 done, 1 failed -> merge" in graph_text(agent, view.tracker)
    assert "score · 4/5 done, 1 failed</text>" in graph_svg(agent, view.tracker)
    assert "score [failed] · 4/5 done, 1 failed" in view._repr_mimebundle_()["text/plain"]
    view.close()
