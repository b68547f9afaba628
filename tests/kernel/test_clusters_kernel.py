"""Sub-workflows through a real Jupyter kernel: the test plays the browser (fixtures in ``conftest.py``).

A parent whose state is a child agent runs under a live view; clicking the view's "open
sub-workflows" toggle (one widget ``update``, as JupyterLab sends it) redraws the graph with the
child's cluster open while the child runs.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]

SETUP = """
import asyncio
%load_ext fluffy_nb
from fluffy_nb import Agent
gate = asyncio.Event()
researcher = Agent("researcher")
async def search(ctx):
    return "summarise"
async def summarise(ctx):
    await gate.wait()
researcher.add_state("search", search)
researcher.add_state("summarise", summarise)
team = Agent("team")
async def plan(ctx):
    return "research"
team.add_state("plan", plan)
team.add_state("research", researcher)
"""

CLUSTER = "research (agent researcher)"


def _graph_update_with(text):
    return lambda m: (m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update"
                      and "outputs" in m["content"]["data"]["state"] and text in str(m["content"]["data"]["state"]))


def test_clicking_the_views_toggle_opens_the_childs_cluster_while_it_runs(kernel):
    kernel.run(SETUP)
    cell = kernel.submit("handle = team.start()")
    kernel.wait_idle(cell)
    toggle = kernel.wait_widget("ToggleButtonModel", description="open sub-workflows")
    kernel.wait_for(lambda m: m["msg_type"] == "comm_msg" and "research/summarise" in str(m["content"]),
                    what="the child's state in the view")
    assert not any(_graph_update_with(CLUSTER)(m) for m in kernel.iopub)  # collapsed by default
    kernel.set_value(toggle, value=True)  # the click
    kernel.wait_for(_graph_update_with(CLUSTER), what="the graph redrawn with the cluster open")
    kernel.run("gate.set()\nawait handle")
