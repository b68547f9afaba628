"""``%%fluffy`` through a real Jupyter kernel: the live view's widget messages arrive while the run goes.

The test plays the browser (fixtures in ``conftest.py``): it reads iopub, finds the view's
widgets from their ``comm_open`` messages and watches their ``comm_msg`` updates.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]

SETUP = """
import asyncio
%load_ext fluffy_nb
gate = asyncio.Event()
"""

WAITING_FLOW = """%%fluffy demo --background
async def fetch(ctx):
    ctx.set_state("rows", 3)
    return ["left", "right"]
async def left(ctx):
    await gate.wait()
    return "join"
async def right(ctx):
    return "join"
async def join(ctx):
    ctx.set_state("done", True)
"""


def _updates(kernel, comm_id):
    return [m for m in kernel.iopub if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
            and m["content"]["data"].get("method") == "update"]


def _header_with(kernel, text):
    return lambda m: (m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update"
                      and text in str(m["content"]["data"]["state"].get("value", "")))


def test_background_cell_returns_at_once_and_the_view_updates_during_the_run(kernel):
    kernel.run(SETUP)
    cell = kernel.submit(WAITING_FLOW)
    reply = kernel.reply(cell)
    assert reply["content"]["status"] == "ok"  # returned while `left` still waits for the gate
    kernel.wait_idle(cell)

    progress = kernel.wait_widget("IntProgressModel")
    view = kernel.wait_for(lambda m: m["msg_type"] == "display_data"
                           and "application/vnd.jupyter.widget-view+json" in m["content"]["data"])
    assert view["parent_header"]["msg_id"] == cell  # the view sits under the %%fluffy cell
    assert "<svg" in view["content"]["data"]["text/html"]
    shown = kernel.wait_for(lambda m: m["msg_type"] == "execute_result" and m["parent_header"]["msg_id"] == cell)
    assert "`await demo.handle`" in shown["content"]["data"]["text/plain"]  # the name the magic bound

    # while `left` waits: the header says running and the progress bar has moved (fetch, right ended)
    kernel.wait_for(_header_with(kernel, "demo: running"), what="a 'running' header update")
    kernel.wait_for(lambda m: m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == progress
                    and m["content"]["data"].get("state", {}).get("value") == 2, what="progress 2/4")
    assert kernel.run("print(demo.handle.done(), demo.status.value)").split() == ["False", "running"]
    during = len(_updates(kernel, progress))
    assert during >= 1

    out = kernel.run('gate.set()\nresult = await demo.handle\n'
                     'print(result["done"], result["rows"], demo.handle.status)')
    assert out.strip() == "True 3 completed"
    kernel.wait_for(_header_with(kernel, "demo: completed"), what="the final header")
    kernel.wait_for(lambda m: m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == progress
                    and m["content"]["data"].get("state", {}).get("value") == 4, what="progress 4/4")
    graphs = [m for m in kernel.iopub if m["msg_type"] == "comm_msg"
              and "application/vnd.plotly.v1+json" in str(m["content"]["data"].get("state", {}).get("outputs", ""))]
    assert graphs, "the graph figure is re-displayed into an Output widget"
    # the display is updated with a static snapshot of the finished run (for nbval / exported HTML)
    final = kernel.wait_for(lambda m: m["msg_type"] == "update_display_data", what="final snapshot")
    assert "demo: completed" in final["content"]["data"]["text/plain"]


def test_failing_background_run_shows_its_error_in_the_view(kernel):
    kernel.run(SETUP)
    cell = kernel.submit('%%fluffy broken --background\nasync def step(ctx):\n    raise ValueError("bad <input>")\n')
    assert kernel.reply(cell)["content"]["status"] == "ok"

    def error_output(m):
        outputs = m["content"]["data"].get("state", {}).get("outputs") if m["msg_type"] == "comm_msg" else None
        return bool(outputs) and outputs[0].get("output_type") == "error"

    msg = kernel.wait_for(error_output, what="the error in the view's result area")
    err = msg["content"]["data"]["state"]["outputs"][0]
    assert err["ename"] == "StateFailedError"
    assert "bad <input>" in err["evalue"]
    assert any("ValueError" in line for line in err["traceback"])
    kernel.wait_for(_header_with(kernel, "broken: failed"), what="a failed header")
    assert not [m for m in kernel.iopub if m["msg_type"] == "stream" and "never retrieved" in m["content"]["text"]]


def test_blocking_run_cell_shows_the_result(kernel):
    kernel.run(SETUP)
    cell = kernel.submit('%%fluffy quick --run\nasync def only(ctx):\n    ctx.set_state("x", 42)\n')
    reply = kernel.reply(cell)
    assert reply["content"]["status"] == "ok"
    result = kernel.wait_for(lambda m: m["msg_type"] == "execute_result" and m["parent_header"]["msg_id"] == cell)
    assert "RunResult 'quick' completed" in result["content"]["data"]["text/plain"]
    assert "42" in result["content"]["data"]["text/html"]


def test_ten_thousand_state_run_sends_a_bounded_number_of_widget_updates(kernel):
    kernel.run(SETUP)
    cell = kernel.submit(
        "%%fluffy fan --background --start dispatch\n"
        "from fluffy_nb import state\n"
        "async def dispatch(ctx):\n"
        "    return [f'w{i}' for i in range(10_000)]\n"
        "for i in range(10_000):\n"
        "    globals()[f'w{i}'] = state(name=f'w{i}')(lambda ctx: None)\n"
    )
    assert kernel.reply(cell, timeout=60)["content"]["status"] == "ok"
    out = kernel.run("r = await fan.handle\nprint(r.status.value, len(r.completed_states))", timeout=90)
    assert out.split() == ["completed", "10001"]
    kernel.wait_for(_header_with(kernel, "fan: completed"), timeout=60, what="the final header")
    updates = [m for m in kernel.iopub if m["msg_type"] == "comm_msg"
               and m["content"]["data"].get("method") == "update"]
    assert 3 <= len(updates) < 200, len(updates)
