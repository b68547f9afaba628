"""Human in the loop through a real Jupyter kernel: the test plays the browser.

A form is an anywidget: the browser keeps what the person types and sends it inside ONE
``comm_msg`` ``{"method": "custom", "content": {"event": "submit", ...}}``, exactly what
``model.send`` does. Nothing is waited for by sleeping: every step waits for a message.
"""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(90)]

SETUP = """
%load_ext fluffy_nb
from fluffy_nb import Agent
from fluffy_nb.notebook._hitl_form import WidgetResponder
from pydantic import BaseModel, Field
events = []
def must_say_yes(value):
    if not value.startswith("yes"):
        raise ValueError(f"{value!r} rejected: the answer has to start with yes")
    return True
class Shipment(BaseModel):
    destination: str
    crates: int = Field(ge=1, description="how many crates")
def make_agent(name="approval", **ask):
    agent = Agent(name, responder=WidgetResponder())
    agent.events.subscribe(lambda e: events.append(type(e).__name__))
    async def review(ctx):
        ctx.set_state("decision", await ctx.human_in_the_loop("Approve the <b>deploy</b>?", **ask))
    agent.add_state("review", review)
    return agent
"""

FORM = "AnyModel"


def submit(kernel, form: str, *, wait: bool = True, **values):
    """The browser's one submit message of a text or schema form."""
    return kernel.send_custom(form, {"event": "submit", "values": values}, wait=wait)


def test_background_run_is_answered_by_one_submit_message(kernel):
    kernel.run(SETUP)
    cell = kernel.submit('agent = make_agent()\nhandle = agent.start()\nprint("started")')
    assert kernel.reply(cell)["content"]["status"] == "ok"  # the cell returns at once
    form = kernel.wait_widget(FORM, status="open")
    state = kernel.state_of(form)
    assert state["spec"]["prompt"] == "Approve the <b>deploy</b>?"  # text; the front end shows it with textContent
    assert "innerHTML" not in state["_esm"]
    display = kernel.wait_for(lambda m: m["msg_type"] == "display_data"
                              and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]
                              and m["parent_header"].get("msg_id") == cell)
    assert display  # the forms show under the cell that started the run
    submit(kernel, form, answer="ship it")
    assert kernel.wait_state(form, status="answered")["record"].startswith("✓ review: Approve the <b>deploy</b>?")
    out = kernel.run('result = await handle\nprint(result["decision"], handle.status)\nprint(events)')
    first, second = out.splitlines()
    assert first == "ship it completed"
    assert "HumanAnswered" in second


def test_rejection_shows_the_message_and_the_answer_typed_next_is_accepted(kernel):
    kernel.run(SETUP)
    kernel.run("agent = make_agent(validator=must_say_yes)\nhandle = agent.start()")
    form = kernel.wait_widget(FORM, status="open")
    submit(kernel, form, answer="nope")
    state = kernel.wait_state(form, tries=1)
    assert "'nope' rejected: the answer has to start with yes" in state["message"]
    assert state["values"] == {"answer": "nope"}
    assert state["status"] == "open"
    submit(kernel, form, answer="yes, ship")
    out = kernel.run('print((await handle)["decision"])\nprint(events)')
    assert out.splitlines()[0] == "yes, ship"
    assert "HumanRejected" in out.splitlines()[1]


def test_blocking_run_takes_a_corrected_answer_while_the_cell_is_busy(kernel):
    """The lost-answer case: a cell awaits the run, so the kernel never reports idle in between."""
    kernel.run(SETUP)
    cell = kernel.submit('agent = make_agent(validator=must_say_yes)\nresult = await agent.run()\n'
                         'print("answer:", result["decision"])')
    form = kernel.wait_widget(FORM, status="open")
    submit(kernel, form, answer="nope", wait=False)
    kernel.wait_state(form, tries=1)  # the rejection arrives while the cell is still busy
    submit(kernel, form, answer="yes, typed after the rejection", wait=False)
    reply = kernel.reply(cell)
    assert reply["content"]["status"] == "ok", reply["content"]
    kernel.wait_idle(cell)
    assert kernel.stdout(cell).strip() == "answer: yes, typed after the rejection"


def test_choice_is_one_message(kernel):
    kernel.run(SETUP)
    kernel.run('agent = make_agent(choices=["approve", "reject"])\nhandle = agent.start()')
    form = kernel.wait_widget(FORM, status="open")
    assert kernel.state_of(form)["spec"]["choices"] == ["approve", "reject"]
    kernel.send_custom(form, {"event": "submit", "choice": 1})
    assert kernel.run('print((await handle)["decision"])').strip() == "reject"


def test_schema_form_shows_a_pydantic_error_beside_its_field(kernel):
    kernel.run(SETUP)
    kernel.run("agent = make_agent(schema=Shipment)\nhandle = agent.start()")
    form = kernel.wait_widget(FORM, status="open")
    fields = {f["name"]: f for f in kernel.state_of(form)["spec"]["fields"]}
    assert fields["crates"]["hint"] == "how many crates; ≥ 1; required"
    submit(kernel, form, destination="Oslo", crates="0")
    state = kernel.wait_state(form, tries=1)
    assert list(state["errors"]) == ["crates"]
    assert "greater than or equal to 1" in state["errors"]["crates"]
    assert state["values"] == {"destination": "Oslo", "crates": "0"}
    submit(kernel, form, destination="Oslo", crates="12")
    out = kernel.run('print((await handle)["decision"])')
    assert out.strip() == "destination='Oslo' crates=12"


def interrupt(kernel, cell: str) -> tuple[dict, float, list[str]]:
    """Press Stop on ``cell``: (its reply, seconds until the reply, the error's traceback lines)."""
    t0 = time.monotonic()
    kernel.km.interrupt_kernel()
    reply = kernel.reply(cell)
    took = time.monotonic() - t0
    kernel.wait_idle(cell)
    [error] = [m for m in kernel.iopub if m["msg_type"] == "error" and m["parent_header"].get("msg_id") == cell]
    return reply, took, error["content"]["traceback"]


@pytest.mark.parametrize("code", [
    "orders = make_agent('orders')\nresult = await orders.run()",
    "%%fluffy orders --run\nasync def review(ctx):\n    await ctx.human_in_the_loop('Approve?')\n",
])
def test_stop_while_a_form_waits_withdraws_it_and_says_so_in_one_line(kernel, code):
    kernel.run(SETUP)
    cell = kernel.submit(code)
    form = kernel.wait_widget(FORM, status="open")
    reply, took, traceback = interrupt(kernel, cell)
    assert reply["content"]["status"] == "error"
    assert traceback == ["run 'orders' interrupted while waiting for a person; it had no checkpoint store, "
                         "so a new run starts from the beginning"]
    assert took < 5.0  # answered at once, not after the form's wait (a bound that only a hang breaks)
    assert kernel.state_of(form)["status"] == "withdrawn"
    assert kernel.run("print(orders.status.value, len(orders.pending_requests()))").strip() == "cancelled 0"


def test_stop_on_a_cell_awaiting_a_background_run_stops_the_waiting_not_the_run(kernel):
    kernel.run(SETUP)
    kernel.run("agent = make_agent('bg')\nhandle = agent.start()")
    form = kernel.wait_widget(FORM, status="open")
    cell = kernel.submit('print("waiting", flush=True)\nawait handle')
    kernel.wait_for(lambda m: m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == cell,
                    what="the cell awaiting the run")
    _, took, traceback = interrupt(kernel, cell)
    assert traceback == ["stopped waiting for run 'bg'; the run goes on in the background "
                         "(`bg.handle.cancel()` cancels it)"]
    assert took < 5.0  # answered at once, not after the form's wait (a bound that only a hang breaks)
    assert kernel.state_of(form)["status"] == "open"  # still waiting for the person
    submit(kernel, form, answer="after the stop")
    assert kernel.run('print((await handle)["decision"])').strip() == "after the stop"


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
    form = kernel.wait_widget(FORM, status="open")
    kernel.send_custom(form, {"event": "submit", "choice": 0})
    out = kernel.run('r = await handle\nprint(r["decision"], type(agent.human.responder()).__name__)')
    assert out.split() == ["yes", "WidgetResponder"]


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


def test_submits_sent_on_a_subshell_answer_on_the_runs_loop(kernel):
    """JupyterLab and Notebook 7 send widget messages on a kernel subshell (ipykernel >= 7)."""
    kernel.run(SETUP)
    kernel.run("agent = make_agent(validator=must_say_yes)\nhandle = agent.start()")
    form = kernel.wait_widget(FORM, status="open")
    request = kernel.kc.session.msg("create_subshell_request", {})
    kernel.kc.control_channel.send(request)
    reply = kernel.kc.get_control_msg(timeout=20)
    subshell = reply["content"].get("subshell_id")
    if reply["content"].get("status") != "ok" or not subshell:
        pytest.skip(f"this ipykernel has no subshells: {reply['content']}")

    def on_subshell(values: dict, submit_id: str) -> None:
        content = {"event": "submit", "id": submit_id, "values": values}
        msg = kernel.kc.session.msg("comm_msg", {"comm_id": form, "data": {"method": "custom", "content": content}})
        msg["header"]["subshell_id"] = subshell
        kernel.kc.shell_channel.send(msg)

    on_subshell({"answer": "nope"}, "s1")
    kernel.wait_state(form, tries=1)
    on_subshell({"answer": "yes, from a subshell"}, "s2")
    kernel.wait_state(form, status="answered")
    # the form answered in the run's context: what it sent back names no subshell, so the
    # kernel keeps routing this comm's messages to the main shell
    sent = [m for m in kernel.iopub if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == form]
    assert [m["content"]["data"]["content"] for m in sent if m["content"]["data"].get("method") == "custom"] == [
        {"ack": "s1"}, {"ack": "s2"}]
    assert all(not m["parent_header"].get("subshell_id") for m in sent)
    assert kernel.run('print((await handle)["decision"])').strip() == "yes, from a subshell"
