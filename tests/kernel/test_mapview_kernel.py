"""A payload map in a live view through a real Jupyter kernel (the test plays the browser): the
mapped state is one node of the graph, its label counting done/running/failed branches."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]

SETUP = """
import asyncio
%load_ext fluffy_nb
from fluffy_nb import Agent
release = asyncio.Event()
batch = Agent("batch")
async def split(ctx):
    return ctx.map("score", range(6))
async def score(ctx):
    if ctx.payload >= 2:
        await release.wait()
    if ctx.payload == 5:
        raise ValueError("item 5 is bad")
    ctx.set_result(ctx.payload)
    return "report"
async def report(ctx):
    ctx.set_state("scores", ctx.results("score"))
batch.add_state("split", split)
batch.add_state("score", score, on_error="rescue")
async def rescue(ctx):
    ctx.set_result(-1)
    return "report"
batch.add_state("rescue", rescue)
batch.add_state("report", report)
"""


def _graph_with(text):
    return lambda m: (m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update"
                      and "outputs" in m["content"]["data"]["state"] and text in str(m["content"]["data"]["state"]))


def test_the_live_views_graph_counts_the_maps_branches_while_they_run_and_at_the_end(kernel):
    kernel.run(SETUP)
    cell = kernel.submit("handle = batch.start()")
    kernel.wait_idle(cell)
    kernel.wait_for(_graph_with("score · 2/6 done, 4 running"), what="the map node counting 2 done, 4 running")
    kernel.run("release.set()\nresult = await handle\nprint(result['scores'])")
    kernel.wait_for(_graph_with("score · 6/6 done"), what="the map node's final count")
    assert "[0, 1, 2, 3, 4, -1]" in "".join(m["content"].get("text", "") for m in kernel.iopub
                                            if m["msg_type"] == "stream")
