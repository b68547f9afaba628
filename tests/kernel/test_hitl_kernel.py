"""Human in the loop through a real Jupyter kernel: the test plays the browser.

Every widget interaction is one ``comm_msg`` exactly as the JupyterLab widget manager sends
it, sent one at a time, each followed by waiting for the kernel to report idle for it.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(90)]

SETUP = """
from fluffy_nb import Agent
from fluffy_nb.notebook._hitl_form import WidgetResponder, install
events = []
def make_agent(**ask):
    agent = Agent("approval", responder=WidgetResponder())
    agent.events.subscribe(lambda e: events.append(type(e).__name__))
    async def review(ctx):
        ctx.set_state("decision", await ctx.human_in_the_loop("Approve the <b>deploy</b>?", **ask))
    agent.add_state("review", review)
    return agent
"""


def test_background_run_is_answered_through_the_widget_form(kernel):
    kernel.run(SETUP)
    cell = kernel.submit('agent = make_agent()\nhandle = agent.start()\nprint("started")')
    assert kernel.reply(cell)["content"]["status"] == "ok"  # the cell returns at once

    text = kernel.wait_widget("TextModel", placeholder="your answer")
    submit = kernel.wait_widget("ButtonModel", description="Submit")
    [(_, header)] = [w for w in kernel.widgets("HTMLModel") if "Approve" in w[1]["value"]]
    assert "&lt;b&gt;deploy&lt;/b&gt;" in header["value"]
    assert "<b>deploy</b>" not in header["value"]
    display = kernel.wait_for(lambda m: m["msg_type"] == "display_data"
                              and "application/vnd.jupyter.widget-view+json" in m["content"]["data"])
    assert display["parent_header"]["msg_id"] == cell  # the forms show under the cell that started the run

    kernel.set_value(text, value="ship it")
    assert kernel.run("print(agent.pending_requests()[0].is_open, handle.done())").split() == ["True", "False"]
    kernel.click(submit)
    out = kernel.run('result = await handle\nprint(result["decision"], handle.status)\nprint(events)')
    first, second = out.splitlines()
    assert first == "ship it completed"
    assert "HumanRequested" in second
    assert "HumanAnswered" in second


VALIDATED = """
def must_say_yes(value):
    if not value.startswith("yes"):
        raise ValueError(f"{value!r} rejected: the answer has to start with yes")
    return True
install()
agent = make_agent(validator=must_say_yes)
agent.responder = None  # auto-selected: widgets inside a kernel
handle = agent.start()
"""


def test_validator_rejects_the_first_answer_and_the_form_says_why(kernel):
    kernel.run(SETUP)
    kernel.run(VALIDATED)
    text = kernel.wait_widget("TextModel", placeholder="your answer")
    submit = kernel.wait_widget("ButtonModel", description="Submit")

    kernel.set_value(text, value="nope")
    kernel.click(submit)
    [(message, state)] = [w for w in kernel.widgets("HTMLModel") if "rejected" in w[1]["value"]]
    assert "nope" in state["value"]
    assert kernel.run("print(handle.done(), agent.pending_requests()[0].rejection is not None)").split() == [
        "False", "True"]

    fresh = kernel.widgets("TextModel", placeholder="your answer")[-1][0]
    assert fresh != text  # the form offers a fresh input (see HumanForm.renew_fields)
    # the message is shown by ONE update of the form's children, which also swaps the old field's
    # box for the fresh one's: a browser cannot draw the message while the old field is still there
    [shown] = [u["children"] for u in (m["content"]["data"]["state"] for m in kernel.iopub
               if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update")
               if f"IPY_MODEL_{message}" in u.get("children", [])]
    boxes = dict(kernel.widgets("BoxModel"))
    inside = [child for ref in shown for child in boxes.get(ref.removeprefix("IPY_MODEL_"), {}).get("children", [])]
    assert f"IPY_MODEL_{fresh}" in inside
    assert f"IPY_MODEL_{text}" not in inside
    kernel.set_value(fresh, value="yes, ship")
    kernel.click(submit)
    out = kernel.run('print((await handle)["decision"])\nprint(events)')
    assert out.splitlines()[0] == "yes, ship"
    assert "HumanRejected" in out.splitlines()[1]


def test_text_typed_into_the_old_field_while_it_is_swapped_after_a_rejection_is_submitted(kernel):
    kernel.run(SETUP)
    kernel.run(VALIDATED)
    text = kernel.wait_widget("TextModel", placeholder="your answer")
    submit = kernel.wait_widget("ButtonModel", description="Submit")
    kernel.set_value(text, value="nope")
    kernel.click(submit)
    fresh = kernel.widgets("TextModel", placeholder="your answer")[-1][0]
    assert fresh != text  # swapped
    # the person typed into the old field just before it disappeared: its sync arrives after the swap
    kernel.set_value(text, value="yes, typed during the swap")
    assert {"value": "yes, typed during the swap"} in kernel.updates_to(fresh)  # the new field shows it
    kernel.click(submit)
    out = kernel.run('import asyncio\nprint((await asyncio.wait_for(handle, 5))["decision"])')
    assert out.strip() == "yes, typed during the swap"


def test_choice_buttons_answer_with_one_click(kernel):
    kernel.run(SETUP)
    kernel.run('agent = make_agent(choices=["approve", "reject"])\nhandle = agent.start()')
    reject = kernel.wait_widget("ButtonModel", description="reject")
    kernel.click(reject)
    assert kernel.run('print((await handle)["decision"])').strip() == "reject"


def test_blocking_await_is_answered_while_the_cell_is_busy(kernel):
    kernel.run(SETUP)
    cell = kernel.submit('agent = make_agent()\nresult = await agent.run()\nprint("answer:", result["decision"])')
    text = kernel.wait_widget("TextModel", placeholder="your answer")
    submit = kernel.wait_widget("ButtonModel", description="Submit")
    kernel.set_value(text, value="from a busy cell", busy=True)  # ipykernel 7.4 delivers it while the cell awaits
    kernel.click(submit, wait=False)  # no idle to wait for: the cell's own reply is the next step
    reply = kernel.reply(cell)
    assert reply["content"]["status"] == "ok", reply["content"]
    kernel.wait_idle(cell)
    assert kernel.stdout(cell).strip() == "answer: from a busy cell"


def test_stop_button_cancels_a_waiting_prompt_cleanly(kernel):
    kernel.run(SETUP)
    cell = kernel.submit('agent = make_agent()\nresult = await agent.run()')
    kernel.wait_widget("ButtonModel", description="Submit")
    kernel.km.interrupt_kernel()
    reply = kernel.reply(cell)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] in ("KeyboardInterrupt", "CancelledError")
    kernel.wait_idle(cell)
    out = kernel.run("print(agent.status.value, len(agent.pending_requests()))\nprint(events)")
    first, second = out.splitlines()
    assert first == "cancelled 0"
    assert "HumanWithdrawn" in second
    assert "HumanAnswered" not in second
    # the kernel is still usable and the agent asks again in a new run
    before = len(kernel.widgets("ButtonModel", description="Submit"))
    kernel.run("handle = agent.start()")
    kernel.wait_for(lambda m: len(kernel.widgets("ButtonModel", description="Submit")) > before, what="a new form")
    assert kernel.run("print(len(agent.pending_requests()))\nhandle.cancel()").strip() == "1"


def test_load_ext_picks_widget_forms_inside_the_live_view(kernel):
    kernel.run("%load_ext fluffy_nb")
    kernel.run('''
from fluffy_nb import Agent
agent = Agent("approval")  # no responder: chosen for the environment
async def review(ctx):
    ctx.set_state("decision", await ctx.human_in_the_loop("Approve?", choices=["yes", "no"]))
agent.add_state("review", review)
handle = agent.start()
''')
    kernel.click(kernel.wait_widget("ButtonModel", description="yes"))
    out = kernel.run('r = await handle\nprint(r["decision"], type(agent.human.responder()).__name__)')
    assert out.split() == ["yes", "WidgetResponder"]


def test_blocking_run_rejected_answer_is_corrected_while_the_cell_is_busy(kernel):
    kernel.run(SETUP)
    kernel.run(VALIDATED.replace("install()", "").replace("agent.responder = None", "")
               .replace("handle = agent.start()", ""))
    cell = kernel.submit('result = await agent.run()\nprint("answer:", result["decision"])')
    text = kernel.wait_widget("TextModel", placeholder="your answer")
    submit = kernel.wait_widget("ButtonModel", description="Submit")
    kernel.set_value(text, value="nope", busy=True)
    # the frontend holds back a second sync of the same model: the cell never acknowledges the first
    assert kernel.set_value(text, value="yes via the old field", busy=True) is None
    kernel.click(submit, wait=False)
    kernel.wait_for(lambda m: m["msg_type"] == "comm_open" and "rejected" in str(
        m["content"]["data"]["state"].get("value", "")), what="the rejection message")
    fresh = kernel.widgets("TextModel", placeholder="your answer")[-1][0]
    assert fresh != text
    kernel.set_value(fresh, value="yes, ship", busy=True)  # a fresh model: its first sync goes through
    kernel.click(submit, wait=False)
    assert kernel.reply(cell)["content"]["status"] == "ok"
    kernel.wait_idle(cell)
    assert kernel.stdout(cell).strip() == "answer: yes, ship"


def test_run_sync_in_a_cell_runs_plain_workflows_and_refuses_to_wait_for_a_person(kernel):
    out = kernel.run('''
from fluffy_nb import Agent, BlockingRunError
plain = Agent("plain")
async def step(ctx):
    ctx.set_state("x", 42)
plain.add_state("step", step)
print(plain.run_sync()["x"])
asking = Agent("asking")
async def ask(ctx):
    await ctx.human_in_the_loop("Approve?")
asking.add_state("ask", ask)
try:
    asking.run_sync()
except BlockingRunError as exc:
    print("refused:", "agent.start()" in str(exc))
''')
    assert out.split() == ["42", "refused:", "True"]
