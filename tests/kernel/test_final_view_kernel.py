"""What a person sees at the end, through a real kernel: ``await agent.run()`` gets the live view,
the end is drawn before the cell finishes (so the saved notebook keeps it), ``--run`` shows the
result once, and a run that only waits for a person leaves the kernel idle."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]

README_FIRST = """
from fluffy_nb import Agent
agent = Agent("hello_workflow")
async def process_data(context):
    context.set_state("greeting", "Hello, World!")
    return "format_output"
async def format_output(context):
    return None
agent.add_state("process_data", process_data)
agent.add_state("format_output", format_output)
result = await agent.run()
result
"""


def _mine(msg_id):
    return lambda m: m["parent_header"].get("msg_id") == msg_id


def test_await_agent_run_shows_the_live_view_and_ends_it_before_the_cell_ends(kernel):
    kernel.run("%load_ext fluffy_nb")
    cell = kernel.submit(README_FIRST)
    kernel.reply(cell)
    kernel.wait_idle(cell)
    mine = [m for m in kernel.iopub if _mine(cell)(m)]
    kinds = [m["msg_type"] for m in mine]
    view = next(m for m in mine if m["msg_type"] == "display_data"
                and "application/vnd.jupyter.widget-view+json" in m["content"]["data"])
    display_id = view["content"]["transient"]["display_id"]
    [end] = [m for m in mine if m["msg_type"] == "update_display_data"
             and m["content"]["transient"]["display_id"] == display_id]
    # the end replaced the widget by the static picture, before the cell's result: nbclient saves it
    assert set(end["content"]["data"]) == {"text/plain", "text/html"}
    assert "hello_workflow: completed · 2/2 states" in end["content"]["data"]["text/html"]
    assert kinds.index("update_display_data") < kinds.index("execute_result")
    result = next(m for m in mine if m["msg_type"] == "execute_result")
    assert "RunResult" in result["content"]["data"]["text/plain"]
    assert "RunResult of hello_workflow" not in end["content"]["data"]["text/html"]  # shown once, by the cell


def test_run_magic_shows_the_result_once_and_the_final_picture_before_the_cell_ends(kernel):
    kernel.run("%load_ext fluffy_nb")
    cell = kernel.submit('%%fluffy demo --run\nasync def only(ctx):\n    ctx.set_state("n", 1)\n')
    kernel.reply(cell)
    kernel.wait_idle(cell)
    mine = [m for m in kernel.iopub if _mine(cell)(m)]
    results = [m for m in mine if m["msg_type"] in ("execute_result", "display_data", "update_display_data")
               and "RunResult" in str(m["content"]["data"])]
    assert [m["msg_type"] for m in results] == ["execute_result"]  # not a second copy in the view
    [end] = [m for m in mine if m["msg_type"] == "update_display_data"]
    assert "demo: completed · 1/1 states" in end["content"]["data"]["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" not in end["content"]["data"]


WAITING = """
%load_ext fluffy_nb
import os, psutil
from fluffy_nb import Agent
agent = Agent("patient")
async def ask(ctx):
    ctx.set_state("answer", await ctx.human_in_the_loop("Go on?", choices=["yes", "no"]))
agent.add_state("ask", ask)
handle = agent.start()
print(os.getpid())
"""


def test_a_run_waiting_ten_seconds_for_a_person_costs_the_kernel_under_a_fifth_of_a_second(kernel):
    psutil = pytest.importorskip("psutil")
    pid = int(kernel.run(WAITING).strip())
    kernel.wait_widget("AnyModel")  # the question's form is open: from now on the run only waits
    kernel.wait_for(lambda m: m["msg_type"] == "comm_msg" and "waiting for a person"
                    in str(m["content"]["data"].get("state", {}).get("value", "")), what="the waiting header")
    # the question is drawn once (graph, timeline, resources: ~0.15 s of plotly on this machine);
    # that is the change being shown, not the waiting. Measure from when the pictures show it and
    # no picture has been drawn for 2 s (whether the resources area holds its chart or its "too
    # short" note depends on how many samples came before the question: either way it stays put)
    kernel.wait_for(lambda m: m["msg_type"] == "comm_msg" and "status: waiting for a person"
                    in str(m["content"]["data"].get("state", {}).get("outputs", "")), what="the graph of the question")
    quiet_since = time.monotonic()
    deadline = quiet_since + 20.0
    while time.monotonic() - quiet_since < 2.0:
        assert time.monotonic() < deadline, "the view kept drawing pictures while the run only waited for a person"
        msg = kernel.pump(0.1)
        if msg is not None and msg["msg_type"] == "comm_msg" and "outputs" in msg["content"]["data"].get("state", {}):
            quiet_since = time.monotonic()  # a picture was drawn: wait for the quiet again
    proc = psutil.Process(pid)
    before = proc.cpu_times()
    start = time.monotonic()
    while time.monotonic() - start < 10.0:  # the test plays the browser, taking every message the kernel sends
        kernel.pump(0.2)
    after = proc.cpu_times()
    spent = (after.user - before.user) + (after.system - before.system)
    assert spent < 0.2, f"the kernel spent {spent:.2f} s CPU in 10 s of waiting for a person"
    kernel.run("handle.cancel()")


def test_the_defining_cells_graph_is_redrawn_as_the_run_ended(kernel):
    kernel.run("%load_ext fluffy_nb")
    define = kernel.submit('%%fluffy review\nasync def draft(ctx):\n    return "review"\n'
                           'async def review(ctx):\n    return "publish" if ctx.get_state("ok", True) else "revise"\n'
                           'async def revise(ctx):\n    return "review"\nasync def publish(ctx):\n    return None\n')
    kernel.reply(define)
    kernel.wait_idle(define)
    graph = next(m for m in kernel.iopub if _mine(define)(m) and m["msg_type"] == "display_data")
    assert "4 states, status idle" in graph["content"]["data"]["text/html"]
    display_id = graph["content"]["transient"]["display_id"]
    run = kernel.submit("await review.run()")
    kernel.reply(run)
    kernel.wait_idle(run)
    [redrawn] = [m for m in kernel.iopub if m["msg_type"] == "update_display_data"
                 and m["content"]["transient"]["display_id"] == display_id]
    page = redrawn["content"]["data"]["text/html"]
    assert "latest run: review: completed · 4/4 states" in page
    assert "revise (skipped)" in page


def test_a_child_agent_run_inside_a_state_gets_no_view_of_its_own(kernel):
    kernel.run("%load_ext fluffy_nb")
    cell = kernel.submit(
        "from fluffy_nb import Agent\nchild = Agent('child')\nasync def c(ctx):\n    return None\n"
        "child.add_state('c', c)\nparent = Agent('parent')\nasync def p(ctx):\n    await child.run()\n"
        "parent.add_state('p', p)\nawait parent.run()\n")
    kernel.reply(cell)
    kernel.wait_idle(cell)
    views = [m for m in kernel.iopub if _mine(cell)(m) and m["msg_type"] == "display_data"
             and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]]
    assert len(views) == 1
    assert views[0]["content"]["data"]["text/plain"].startswith("parent:")


def test_an_agent_shown_as_a_cells_result_is_redrawn_as_its_run_ended(kernel):
    kernel.run("%load_ext fluffy_nb")
    define = kernel.submit(README_FIRST.replace("result = await agent.run()\nresult\n", "agent\n"))
    kernel.reply(define)
    kernel.wait_idle(define)
    [shown] = [m for m in kernel.iopub if _mine(define)(m) and m["msg_type"] in ("display_data", "execute_result")]
    assert "2 states, status idle" in shown["content"]["data"]["text/html"]
    display_id = shown["content"]["transient"]["display_id"]  # a display the run's end can find
    run = kernel.submit("await agent.run()")
    kernel.reply(run)
    kernel.wait_idle(run)
    [redrawn] = [m for m in kernel.iopub if m["msg_type"] == "update_display_data"
                 and m["content"]["transient"]["display_id"] == display_id]
    assert "latest run: hello_workflow: completed · 2/2 states" in redrawn["content"]["data"]["text/html"]
