"""The picture a finished run leaves: every state accounted for, and a static snapshot that exports."""

from __future__ import annotations

import asyncio

import pytest

from fluffy_nb import Agent, StateFailedError
from fluffy_nb.notebook import LiveView, graph_mermaid, graph_svg


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
