"""Review 8 findings (failing on purpose): a map's branches on the timeline in three cases the
merge of ``mapview`` draws wrongly, each of which the code before it drew right."""

from __future__ import annotations

import asyncio
from typing import Any

from fluffy_nb import Agent, ManualClock
from fluffy_nb.notebook import LiveView
from fluffy_nb.notebook._tracker import RunTracker
from tests._wait import until
from tests.notebook.test_mapspans import Gated, score_spans


async def test_a_state_run_plainly_after_it_was_mapped_is_drawn() -> None:
    # split maps score x3 -> merge -> score (plain): the plain attempt has no span at all,
    # mid-run nor at the end, because run.maps keeps the finished map and the tracker reads
    # a mapped state's spans only off its map
    clock = ManualClock()
    agent = Agent("plainmap", clock=clock)
    gate = asyncio.Event()
    merges: list[int] = []

    async def split(ctx: Any) -> Any:
        return ctx.map("score", range(3))

    async def score(ctx: Any) -> Any:
        if getattr(ctx, "payload", None) is None:
            await gate.wait()
            return None
        return "merge"

    async def merge(ctx: Any) -> Any:
        merges.append(1)
        return "score" if len(merges) == 1 else None

    agent.add_state("split", split)
    agent.add_state("score", score)
    agent.add_state("merge", merge)
    tracker = RunTracker(agent)
    task = asyncio.create_task(agent.run())
    await until(lambda: tracker.status.get("score") == "running" and len(merges) == 1, "the plain score runs")
    await clock.advance(1.0)
    assert (1, 0.0, None, "running") in score_spans(tracker)
    gate.set()
    await task
    assert (1, 0.0, 1.0, "completed") in score_spans(tracker)
    tracker.close()


async def test_branches_in_flight_when_a_view_attaches_are_drawn_when_they_complete() -> None:
    flow = Gated(4)
    handle = flow.agent.start()
    await until(lambda: len(flow.began) == 4, "four branches in flight")
    await flow.clock.advance(1.0)
    view = LiveView(flow.agent)
    view.attach(handle)
    await flow.clock.advance(1.0)
    for gate in flow.gates:
        gate.set()
    await handle
    await asyncio.sleep(0)
    assert len(score_spans(view.tracker)) == 4  # none at all: their starts were not timed
    view.close()


async def test_a_maps_last_branch_completed_before_the_state_is_mapped_again_ends_completed() -> None:
    # split maps score x3, then (a loop) x1; payload 2 of the first map completes at 3.0 and
    # the second map begins before the next read: it is drawn cancelled at the run's end (5.0)
    clock = ManualClock()
    agent = Agent("loop", clock=clock)
    rounds: list[int] = []
    gates: dict[tuple[int, int], asyncio.Event] = {}

    async def split(ctx: Any) -> Any:
        return ctx.map("score", range(3 if not rounds else 1))

    async def score(ctx: Any) -> str:
        await gates.setdefault((len(rounds), ctx.payload), asyncio.Event()).wait()
        return "merge"

    async def merge(ctx: Any) -> Any:
        rounds.append(1)
        return "split" if len(rounds) < 2 else None

    agent.add_state("split", split)
    agent.add_state("score", score)
    agent.add_state("merge", merge)
    tracker = RunTracker(agent)
    task = asyncio.create_task(agent.run())
    for r, n in ((0, 3), (1, 1)):
        await until(lambda r=r, n=n: sum(k[0] == r for k in gates) == n, f"round {r} began")
        tracker.refresh()
        await clock.advance(1.0)
        for p in range(n):
            gates[(r, p)].set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            tracker.refresh()
            await clock.advance(1.0)
    await task
    assert score_spans(tracker) == [(1, 0.0, 1.0, "completed"), (1, 0.0, 2.0, "completed"),
                                    (1, 0.0, 3.0, "completed"), (1, 3.0, 5.0, "completed")]
    tracker.close()
