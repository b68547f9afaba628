"""The run explorer in a real Jupyter kernel: the test plays the browser.

The slider is moved with the ``update`` message a browser's widget manager sends, buttons are
clicked with ``custom`` click messages, the edit form's field is typed into with an ``update``,
one message at a time, each acknowledged (idle) before the next.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(90)]

PIPELINE = '''%%fluffy pipe --store {path} --durable --run --no-live
async def ask(ctx):
    ctx.set_state("answer", "Paris is in <Germany>")  # the fake LLM's bad answer
    return "check"

async def check(ctx):
    ctx.set_state("ok", "France" in ctx.get_state("answer"))
    return "report"

async def report(ctx):
    ctx.set_state("report", ("OK: " if ctx.get_state("ok") else "WRONG: ") + ctx.get_state("answer"))
'''


def _html_updates(kernel, comm_id):
    return [u["value"] for u in kernel.updates_to(comm_id) if "value" in u]


def _html_widget(kernel, dom_class):
    [(comm_id, _)] = [w for w in kernel.widgets("HTMLModel") if dom_class in w[1]["_dom_classes"]]
    return comm_id


def test_slider_and_edit_and_fork_through_comm_messages(kernel, tmp_path):
    kernel.run("%load_ext fluffy_nb")
    kernel.run(PIPELINE.format(path=tmp_path / "runs.db"))
    kernel.run("ex = %fluffy explore pipe\ndisplay(ex)")
    slider = kernel.wait_widget("IntSliderModel", description="checkpoint")
    graph = _html_widget(kernel, "fluffy-explorer-graph")
    details = _html_widget(kernel, "fluffy-explorer-details")

    kernel.set_value(slider, value=0)  # the browser moves the slider to the first checkpoint
    svg = _html_updates(kernel, graph)[-1]
    assert "<title>ask (done)</title>" in svg
    assert "<title>report (pending)</title>" in svg
    shown = _html_updates(kernel, details)[-1]
    assert "<b>checkpoint 0</b>" in shown
    assert "Paris is in &lt;Germany&gt;" in shown  # user text escaped
    assert "<Germany>" not in shown
    assert 'background:#c8e6c9"><td><code>answer</code>' in shown  # new since the run began

    kernel.set_value(slider, value=1)
    shown = _html_updates(kernel, details)[-1]
    assert "<b>checkpoint 1</b>" in shown
    assert 'background:#c8e6c9"><td><code>ok</code>' in shown
    assert "<title>check (done)</title>" in _html_updates(kernel, graph)[-1]
    kernel.set_value(slider, value=0)

    kernel.click(kernel.wait_widget("ButtonModel", description="edit and fork"))
    field = kernel.wait_widget("TextModel", description="answer")
    kernel.set_value(field, value="Paris is in France")  # not JSON: used as the string
    kernel.click(kernel.wait_widget("ButtonModel", description="fork with these values"))
    out = kernel.run(
        "h = ex.handles[-1]\nr = await h\nprint(r['report'])\n"
        "print(h.run.parent_run_id == ex.run_id)\n"
        "first = pipe.history(r.run_id)[0]\n"
        "source = pipe.store.get(first.checkpoint_id).metadata['forked_from']\n"
        "print(first.trigger, source == ex.rows[0].checkpoint_id)\n"
        "print(len(ex.started.children))"
    )
    assert out.splitlines() == ["OK: Paris is in France", "True", "fork True", "1"]
    messages = _html_updates(kernel, _html_widget(kernel, "fluffy-explorer-message"))
    assert any("started</b> fork" in m for m in messages)
    assert "completed</b> fork" in messages[-1]
    assert "of checkpoint 0 with answer = &quot;Paris is in France&quot;" in messages[-1]


def test_step_buttons_and_fork_button_through_comm_messages(kernel, tmp_path):
    kernel.run("%load_ext fluffy_nb")
    kernel.run(PIPELINE.format(path=tmp_path / "runs.db"))
    kernel.run("ex = %fluffy explore pipe\ndisplay(ex)")
    slider = kernel.wait_widget("IntSliderModel", description="checkpoint")
    kernel.click(kernel.wait_widget("ButtonModel", description="prev"))
    kernel.click(kernel.wait_widget("ButtonModel", description="prev"))
    assert kernel.updates_to(slider)[-1]["value"] == 1  # the kernel moved the browser's slider
    kernel.click(kernel.wait_widget("ButtonModel", description="fork from here"))
    out = kernel.run("r = await ex.handles[-1]\nprint(r['report'])\nprint(ex.index)")
    assert out.splitlines() == ["WRONG: Paris is in <Germany>", "1"]


RECORD = """
import asyncio, sys
from fluffy_nb import Agent, SQLiteStore
agent = Agent("pipe", store=SQLiteStore(sys.argv[1]), durable=True)
async def ask(ctx):
    ctx.set_state("answer", "Paris is in <Germany>")
    return "check"
async def check(ctx):
    ctx.set_state("ok", "France" in ctx.get_state("answer"))
    return "report"
async def report(ctx):
    ctx.set_state("report", ("OK: " if ctx.get_state("ok") else "WRONG: ") + ctx.get_state("answer"))
for f in (ask, check, report):
    agent.add_state(f.__name__, f)
asyncio.run(agent.run())
agent.store.close()
"""


def test_a_run_recorded_by_another_process_is_explored_and_forked_from_the_store(kernel, tmp_path):
    path = tmp_path / "runs.db"
    subprocess.run([sys.executable, "-c", RECORD, str(path)], check=True, timeout=60)
    kernel.run("%load_ext fluffy_nb")
    # the same states, defined but not run in this kernel
    kernel.run(PIPELINE.format(path=path).replace(" --durable --run --no-live", ""))
    kernel.run("ex = %fluffy explore pipe\ndisplay(ex)")
    slider = kernel.wait_widget("IntSliderModel", description="checkpoint")
    kernel.set_value(slider, value=0)
    kernel.click(kernel.wait_widget("ButtonModel", description="edit and fork"))
    kernel.set_value(kernel.wait_widget("TextModel", description="answer"), value='"Paris is in France"')
    kernel.click(kernel.wait_widget("ButtonModel", description="fork with these values"))
    out = kernel.run("r = await ex.handles[-1]\nprint(r['report'])\n"
                     "print(len(pipe.runs), len(pipe.store.runs('pipe')))")
    assert out.splitlines() == ["OK: Paris is in France", "1 2"]  # in memory: only the fork
