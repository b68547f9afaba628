"""A payload map's branches on the timeline: each branch its own span, mid-run and at the end.

The branches of a map share their state's one ``StateMetadata`` (its ``started_at`` is the
latest branch's), so a real tracker on a real run must read each branch's start and end off the
run's map. Times are a ``ManualClock``'s: a branch that begins or ends after ``advance(1)`` does
so at exactly 1.0 second, so every span's start and end is known.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fluffy_nb import Agent, ManualClock, RetryPolicy, StateFailedError
from fluffy_nb.notebook import LiveView
from fluffy_nb.notebook._figures import timeline_figure
from fluffy_nb.notebook._tracker import RunTracker
from tests._wait import until


class Gated:
    """A map of ``n`` payloads into ``score``, each branch waiting for its own gate, then ``merge``."""

    def __init__(self, n: int, *, max_concurrent: int | None = None, bad: int | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self.clock = ManualClock()
        self.gates = [asyncio.Event() for _ in range(n)]
        self.began: list[int] = []  # payload of each attempt begun, in order
        self.failed_once: set[int] = set()
        agent = self.agent = Agent("mapspans", clock=self.clock, max_concurrent=max_concurrent)

        async def split(ctx: Any) -> Any:
            return ctx.map("score", range(n))

        async def score(ctx: Any) -> str:
            self.began.append(ctx.payload)
            await self.gates[ctx.payload].wait()
            if ctx.payload == bad:
                raise ValueError(f"item {bad} is bad")
            if retry is not None and ctx.payload == 1 and 1 not in self.failed_once:
                self.failed_once.add(1)
                self.gates[1].clear()
                raise ConnectionError("flaky once")
            return "merge"

        async def merge(ctx: Any) -> None:
            pass

        agent.add_state("split", split)
        agent.add_state("score", score, retry_policy=retry)
        agent.add_state("merge", merge)

    async def release(self, *payloads: int) -> None:
        """Let ``payloads`` go on, and wait until their branches have completed."""
        for p in payloads:
            self.gates[p].set()
        m = self.run.maps["score"]
        await until(lambda: all(map(m.is_done, payloads)), f"payloads {payloads} completed")

    @property
    def run(self) -> Any:
        """The run going on."""
        run = self.agent.latest_run
        assert run is not None
        return run


def score_spans(tracker: RunTracker) -> list[tuple[int, float, float | None, str]]:
    """(attempt, start, end, outcome) of each span of ``score``, sorted (open spans last of equals)."""
    spans = [(s.attempt, s.start, s.end, s.outcome) for s in tracker.spans if s.state == "score"]
    return sorted(spans, key=lambda s: (s[1], s[2] is None, s[2] or 0.0, s[0], s[3]))


async def test_each_branch_of_a_map_in_flight_is_its_own_open_span_from_its_own_start() -> None:
    flow = Gated(8, max_concurrent=4)
    tracker = RunTracker(flow.agent)
    task = asyncio.create_task(flow.agent.run())
    await until(lambda: len(flow.began) == 4, "four branches in flight")
    assert score_spans(tracker) == [(1, 0.0, None, "running")] * 4  # was one span for the four
    await flow.clock.advance(1.0)
    await flow.release(0, 1)
    await until(lambda: len(flow.began) == 6, "two more branches began")
    assert score_spans(tracker) == [(1, 0.0, 1.0, "completed")] * 2 + [(1, 0.0, None, "running")] * 2 + [
        (1, 1.0, None, "running")] * 2
    hovers = [text for trace in timeline_figure(tracker).data for text in trace.hovertext or ()]
    assert any(text.startswith("score payload 4 attempt 1: ") for text in hovers)  # which bar is which
    await flow.clock.advance(1.0)
    await flow.release(2, 3)
    await until(lambda: len(flow.began) == 8, "the last two branches began")
    await flow.clock.advance(1.0)
    for gate in flow.gates:
        gate.set()
    await task
    assert score_spans(tracker) == [(1, 0.0, 1.0, "completed")] * 2 + [(1, 0.0, 2.0, "completed")] * 2 + [
        (1, 1.0, 3.0, "completed")] * 2 + [(1, 2.0, 3.0, "completed")] * 2
    tracker.close()


async def test_branches_cut_short_by_a_failed_branch_end_on_the_live_views_timeline_as_cancelled() -> None:
    flow = Gated(6, max_concurrent=4, bad=3)
    view = LiveView(flow.agent)
    handle = flow.agent.start()
    view.attach(handle)
    await until(lambda: len(flow.began) == 4, "four branches in flight")
    await flow.clock.advance(1.0)
    await flow.release(0)  # 4 begins at 1.0
    await until(lambda: len(flow.began) == 5, "payload 4 began")
    await flow.clock.advance(1.0)
    flow.gates[3].set()  # fails at 2.0: 1, 2 and 4 are cut short; 5 never began
    with pytest.raises(StateFailedError, match="item 3 is bad"):
        await handle
    await asyncio.sleep(0)  # the done-callback draws the end
    assert score_spans(view.tracker) == [(1, 0.0, 1.0, "completed"), (1, 0.0, 2.0, "cancelled"),
                                         (1, 0.0, 2.0, "cancelled"), (1, 0.0, 2.0, "failed"),
                                         (1, 1.0, 2.0, "cancelled")]
    view.close()


async def test_branches_cut_short_by_cancel_all_end_as_cancelled_at_the_cancel() -> None:
    flow = Gated(3)
    tracker = RunTracker(flow.agent)
    handle = flow.agent.start()
    await until(lambda: len(flow.began) == 3, "three branches in flight")
    await flow.clock.advance(1.0)
    await flow.release(0)
    await flow.clock.advance(1.0)
    await flow.agent.cancel_all()
    await handle
    assert handle.run.status.value == "cancelled"
    assert score_spans(tracker) == [(1, 0.0, 1.0, "completed"), (1, 0.0, 2.0, "cancelled"),
                                    (1, 0.0, 2.0, "cancelled")]
    tracker.close()


async def test_a_maps_end_picture_keeps_each_completion_retry_and_failure_read_between_them() -> None:
    # reads between completions (a view's redraws): a branch that completes while its state
    # already read "completed" (another branch's) is still drawn; a retry keeps its two spans
    flow = Gated(4, retry=RetryPolicy(max_retries=1, initial_delay=0.5, jitter=False), bad=3)
    tracker = RunTracker(flow.agent)
    task = asyncio.create_task(flow.agent.run())
    await until(lambda: len(flow.began) == 4, "four branches in flight")
    await flow.clock.advance(1.0)
    await flow.release(0)
    assert tracker.status["score"] == "completed"  # (the shared metadata's word, read here)
    await flow.clock.advance(1.0)
    await flow.release(2)  # completes while "score" reads completed already
    tracker.refresh()
    flow.gates[1].set()  # attempt 1 fails at 2.0; its retry waits 0.5 s
    await until(lambda: flow.run.metadata["score"].retries == 1, "payload 1 failed once")
    tracker.refresh()
    await flow.clock.advance(0.5)
    await until(lambda: flow.began.count(1) == 2, "payload 1's second attempt began")
    await flow.clock.advance(0.5)
    await flow.release(1)
    tracker.refresh()
    await flow.clock.advance(1.0)
    flow.gates[3].set()  # fails at 4.0, and again, for good, at 4.5
    await until(lambda: flow.run.metadata["score"].retries == 2, "payload 3 failed once")
    await flow.clock.advance(0.5)
    await until(lambda: flow.began.count(3) == 2, "payload 3's retry began")
    with pytest.raises(StateFailedError, match="item 3 is bad"):
        await task
    assert score_spans(tracker) == [
        (1, 0.0, 1.0, "completed"), (1, 0.0, 2.0, "completed"), (1, 0.0, 2.0, "retried"),
        (1, 0.0, 4.0, "retried"), (2, 2.5, 3.0, "completed"), (2, 4.5, 4.5, "failed")]
    assert sorted(tracker.durations["score"]) == [0.5, 1.0, 2.0]
    tracker.close()


async def test_branches_cut_short_by_a_pause_with_timeout_end_as_cancelled_and_rerun_after_resume() -> None:
    flow = Gated(4, max_concurrent=2)
    tracker = RunTracker(flow.agent)
    task = asyncio.create_task(flow.agent.run())
    await until(lambda: len(flow.began) == 2, "two branches in flight")
    await flow.clock.advance(1.0)
    await flow.agent.pause(timeout=0.05)  # (real seconds: the pause's own wait) the two are cut short at 1.0
    assert score_spans(tracker) == [(1, 0.0, 1.0, "cancelled")] * 2
    await flow.clock.advance(1.0)
    for gate in flow.gates:
        gate.set()
    await flow.agent.resume()
    await task
    assert score_spans(tracker) == [(1, 0.0, 1.0, "cancelled")] * 2 + [(1, 2.0, 2.0, "completed")] * 4
    tracker.close()


async def test_a_maps_branches_are_timed_only_while_a_view_watches_and_hold_no_times_unwatched() -> None:
    # an unwatched map keeps no per-branch times (16 bytes a payload, kept by the recent runs); a
    # view attached mid-map times it from then on; once the last view closes, timing stops
    flow = Gated(4)
    handle = flow.agent.start()
    await until(lambda: len(flow.began) == 4, "four branches in flight")
    m = flow.run.maps["score"]
    assert (m.clock, len(m.starts), len(m.ends)) == (None, 0, 0)
    first, second = RunTracker(flow.agent), RunTracker(flow.agent)
    first.follow(flow.run)
    second.follow(flow.run)
    assert m.clock is not None
    assert len(m.starts) == len(m.ends) == 4
    await flow.clock.advance(1.0)
    await flow.release(0)
    first.close()
    assert m.clock is not None  # the other view still watches
    await flow.release(1)
    second.close()
    assert m.clock is None
    await flow.clock.advance(1.0)
    await flow.release(2, 3)
    await handle
    wall0 = flow.clock.time() - flow.clock.monotonic()
    assert list(m.ends) == [wall0 + 1.0, wall0 + 1.0, float("-inf"), float("-inf")]  # not timed after


async def test_a_plain_run_of_a_mapped_state_that_fails_is_drawn_failed_once_its_map_ended() -> None:
    # split maps score x2 -> merge -> score (plain), which fails at 1.0: its span ends failed
    clock = ManualClock()
    agent = Agent("plainfail", clock=clock)
    gate = asyncio.Event()
    merged = asyncio.Event()

    async def split(ctx: Any) -> Any:
        return ctx.map("score", range(2))

    async def score(ctx: Any) -> Any:
        if getattr(ctx, "payload", None) is None:
            await gate.wait()
            raise ValueError("the plain run fails")
        return "merge"

    async def merge(ctx: Any) -> str:
        merged.set()
        return "score"

    for f in (split, score, merge):
        agent.add_state(f.__name__, f)
    tracker = RunTracker(agent)
    task = asyncio.create_task(agent.run())
    await merged.wait()
    await until(lambda: tracker.status.get("score") == "running", "the plain score runs")
    await clock.advance(1.0)
    gate.set()
    with pytest.raises(StateFailedError):
        await task
    assert (1, 0.0, 1.0, "failed") in score_spans(tracker)
    assert len(score_spans(tracker)) == 3  # the two branches and the plain run
    tracker.close()


async def test_a_second_view_attached_mid_map_draws_the_branches_in_flight_from_their_timed_starts() -> None:
    # a first view times the branches from 0.0; a second attaches at 1.0: its bars start at 0.0 too
    flow = Gated(2)
    first = RunTracker(flow.agent)
    handle = flow.agent.start()
    await until(lambda: len(flow.began) == 2, "two branches in flight")
    await flow.clock.advance(1.0)
    second = RunTracker(flow.agent)
    second.follow(flow.run)
    assert score_spans(second) == [(1, 0.0, None, "running")] * 2
    await flow.clock.advance(1.0)
    await flow.release(0, 1)
    await handle
    assert score_spans(second) == score_spans(first) == [(1, 0.0, 2.0, "completed")] * 2
    first.close()
    second.close()


async def test_branches_begun_and_completed_between_two_reads_keep_their_payload_in_the_hover() -> None:
    # nothing reads the tracker while the 3 branches run: at the end each is a compact span that
    # still names its payload (which of the state's overlapping bars is which)
    flow = Gated(3)
    tracker = RunTracker(flow.agent)
    handle = flow.agent.start()
    await until(lambda: len(flow.began) == 3, "three branches in flight")
    await flow.clock.advance(1.0)
    for gate in flow.gates:
        gate.set()
    await handle
    assert sorted(s.payload for s in tracker.spans if s.state == "score") == [0, 1, 2]
    hovers = [text for trace in timeline_figure(tracker).data for text in trace.hovertext or ()]
    assert sum(text.startswith("score payload 2 attempt 1: ") for text in hovers) == 1
    tracker.close()
