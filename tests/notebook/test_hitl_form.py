"""Human-in-the-loop forms, driven like the browser does: one submit message (no kernel needed)."""

from __future__ import annotations

import asyncio
from typing import Literal

import ipywidgets as widgets
import pytest
from pydantic import BaseModel, Field

from fluffy_nb import Agent, ManualClock
from fluffy_nb.engine import _hooks
from fluffy_nb.engine._errors import FluffyWarning
from fluffy_nb.engine._events import HumanRequested
from fluffy_nb.notebook._hitl_form import (
    FormsArea,
    HumanForm,
    WidgetResponder,
    install,
    notebook_responder,
    uninstall,
)


class Shipment(BaseModel):
    destination: str
    crates: int
    express: bool = False
    carrier: Literal["ups", "dhl"] = "dhl"
    weight: float = Field(20.0, ge=1, le=40, title="Weight (kg)", description="per crate")


def agent_asking(prompt: str = "Approve?", **ask) -> tuple[Agent, WidgetResponder]:
    responder = WidgetResponder(display=False)
    agent = Agent("forms", responder=responder)

    async def approve(ctx):
        ctx.set_state("answer", await ctx.human_in_the_loop(prompt, **ask))

    agent.add_state("approve", approve)
    return agent, responder


async def first_form(agent: Agent, responder: WidgetResponder) -> HumanForm:
    requested = asyncio.Event()
    agent.events.subscribe(lambda e: isinstance(e, HumanRequested) and requested.set())
    await requested.wait()
    for _ in range(3):  # the responder is handed the request on the next loop iteration
        if responder.area is not None and responder.area.open_forms():
            break
        await asyncio.sleep(0)
    return responder.area.open_forms()[0]


def typed(**values) -> dict:
    """The content of the browser's submit message for a text or schema form."""
    return {"event": "submit", "values": values}


def test_the_front_end_never_writes_html_and_never_syncs_a_value_on_its_own():
    js = HumanForm._esm
    for html_sink in ("innerHTML", "outerHTML", "insertAdjacentHTML"):
        assert html_sink not in js  # user text goes in as textContent
    for value_sync in ("save_changes", "model.set("):
        assert value_sync not in js  # values travel only inside model.send
    assert js.count("model.send(") == 1


async def test_a_resent_submit_message_is_acknowledged_but_answers_only_once():
    agent, responder = agent_asking(validator=lambda v: v.startswith("yes"))
    handle = agent.start()
    form = await first_form(agent, responder)
    acks = []
    form.send = lambda content, buffers=None: acks.append(content)  # what goes to the browser
    first = {"event": "submit", "id": "a1", "values": {"answer": "nope"}}
    form._handle_custom_msg(first, [])
    assert form.tries == 1
    form._handle_custom_msg(first, [])  # the browser sent it again before the ack arrived
    assert form.tries == 1  # not rejected twice
    assert acks == [{"ack": "a1"}, {"ack": "a1"}]
    form._handle_custom_msg({"event": "submit", "id": "a2", "values": {"answer": "yes"}}, [])
    form._handle_custom_msg(first, [])  # a stale copy arriving late changes nothing
    assert (await handle)["answer"] == "yes"


async def test_prompt_with_script_is_sent_as_text_for_the_browser_to_show_as_text():
    agent, responder = agent_asking('<script>alert("x")</script> & go?')
    handle = agent.start()
    form = await first_form(agent, responder)
    assert form.spec["prompt"] == '<script>alert("x")</script> & go?'
    handle.cancel()


async def test_text_form_submit_answers_the_state_and_collapses_to_a_record():
    agent, responder = agent_asking()
    handle = agent.start()
    form = await first_form(agent, responder)
    assert form.spec["kind"] == "text"
    assert [f["name"] for f in form.spec["fields"]] == ["answer"]
    assert form.submit(typed(answer="ship <it>")) is True
    assert form.closed  # at once, not after a redraw delay
    assert form.status == "answered"
    assert "ship <it>" in form.record
    assert "Approve?" in form.record
    assert "accepted" in form.record
    result = await handle
    assert result["answer"] == "ship <it>"


async def test_the_browsers_submit_message_is_handled_by_the_form():
    agent, responder = agent_asking()
    handle = agent.start()
    form = await first_form(agent, responder)
    form._handle_custom_msg(typed(answer="via the comm"), [])  # what ipywidgets does with a custom message
    assert (await handle)["answer"] == "via the comm"


async def test_choices_are_buttons_and_one_click_answers():
    agent, responder = agent_asking(choices=["approve", "reject"])
    handle = agent.start()
    form = await first_form(agent, responder)
    assert form.spec["kind"] == "choices"
    assert form.spec["choices"] == ["approve", "reject"]
    form.submit({"event": "submit", "choice": 1})
    assert (await handle)["answer"] == "reject"


async def test_a_choice_number_that_does_not_exist_is_refused_and_the_form_stays_open():
    agent, responder = agent_asking(choices=["approve", "reject"])
    handle = agent.start()
    form = await first_form(agent, responder)
    assert form.submit({"event": "submit", "choice": 7}) is False
    assert not form.closed
    assert "could not read" in form.message
    assert form.tries == 1
    handle.cancel()


async def test_validator_rejection_shows_its_message_and_the_form_stays_open():
    def long_enough(value):
        if len(value) < 5:
            raise ValueError("at least 5 characters, please")
        return True

    agent, responder = agent_asking(validator=long_enough)
    handle = agent.start()
    form = await first_form(agent, responder)
    assert form.submit(typed(answer="no")) is False
    assert "at least 5 characters, please" in form.message
    assert form.values == {"answer": "no"}  # drawn again with what was typed
    assert form.tries == 1  # the browser re-enables its submit button on this change
    assert not form.closed
    assert not handle.done()
    await asyncio.sleep(0)  # the engine hands the request to the responder again: no second rejection
    assert form.tries == 1
    assert form.submit(typed(answer="absolutely")) is True
    assert (await handle)["answer"] == "absolutely"


async def test_schema_form_has_one_widget_per_field_validated_by_pydantic():
    agent, responder = agent_asking("Where to?", schema=Shipment)
    handle = agent.start()
    form = await first_form(agent, responder)
    fields = {f["name"]: f for f in form.spec["fields"]}
    assert list(fields) == ["destination", "crates", "express", "carrier", "weight"]
    assert [fields[n]["kind"] for n in fields] == ["text", "number", "checkbox", "select", "number"]
    assert fields["carrier"]["options"] == ["ups", "dhl"]
    assert form.values["carrier"] == 1  # the default, as an option number
    assert fields["weight"]["title"] == "Weight (kg)"
    assert fields["weight"]["hint"] == "per crate; ≥ 1; ≤ 40; default 20.0"
    assert fields["destination"]["hint"] == "required"
    form.submit(typed(destination="Oslo", crates="a dozen", express=False, carrier=1, weight="50"))
    assert set(form.errors) == {"crates", "weight"}  # beside their fields
    assert "integer" in form.errors["crates"]
    assert "40" in form.errors["weight"]
    assert "crates" in form.message
    assert "weight" in form.message
    assert form.values["crates"] == "a dozen"
    assert not form.closed
    form.submit(typed(destination="Oslo", crates="12", express=True, carrier=1, weight=""))
    assert (await handle)["answer"] == Shipment(destination="Oslo", crates=12, express=True, carrier="dhl")


async def test_parallel_requests_show_as_separate_forms():
    responder = WidgetResponder(display=False)
    agent = Agent("many", responder=responder)
    both = asyncio.Event()
    asked = []

    def on_event(event):
        if isinstance(event, HumanRequested):
            asked.append(event)
            if len(asked) == 2:
                both.set()

    agent.events.subscribe(on_event)

    async def fan(ctx):
        return ["left", "right"]

    async def left(ctx):
        ctx.set_state("left", await ctx.human_in_the_loop("Left?"))

    async def right(ctx):
        ctx.set_state("right", await ctx.human_in_the_loop("Right?"))

    for name, fn in (("fan", fan), ("left", left), ("right", right)):
        agent.add_state(name, fn)
    handle = agent.start()
    await both.wait()
    await asyncio.sleep(0)
    forms = responder.area.open_forms()
    assert sorted(f.request.prompt for f in forms) == ["Left?", "Right?"]
    assert len(responder.area.children) == 2
    for form in forms:
        form.submit(typed(answer=form.request.prompt.lower()))
    result = await handle
    assert (result["left"], result["right"]) == ("left?", "right?")
    assert responder.area.open_forms() == []


async def test_countdown_shows_time_left_and_the_default_then_records_it():
    clock = ManualClock()
    agent, responder = agent_asking(timeout=30, default="auto")
    agent.clock = clock
    handle = agent.start()
    form = await first_form(agent, responder)
    assert "30 s left" in form.countdown
    assert "auto" in form.countdown
    await clock.wait_for_sleepers()
    await clock.advance(30)
    assert (await handle)["answer"] == "auto"
    assert form.closed
    assert "default" in form.record


async def test_cancelled_state_collapses_its_form_as_withdrawn():
    agent, responder = agent_asking()
    handle = agent.start()
    form = await first_form(agent, responder)
    agent.cancel_state("approve")
    await handle
    assert form.closed
    assert form.status == "withdrawn"
    assert "withdrawn" in form.record
    assert form.submit(typed(answer="late")) is None  # a late click does nothing


async def test_responder_displays_the_forms_area_once(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kwargs: shown.append(obj))
    responder = WidgetResponder()
    agent = Agent("display", responder=responder)

    async def ask(ctx):
        await ctx.human_in_the_loop("One?")
        await ctx.human_in_the_loop("Two?")

    agent.add_state("ask", ask)
    handle = agent.start()
    for prompt in ("One?", "Two?"):
        form = await first_form(agent, responder)
        assert form.request.prompt == prompt
        form.submit(typed(answer="x"))
    await handle
    assert shown == [responder.area]
    assert FormsArea.for_agent(agent) is responder.area


def test_outside_a_kernel_the_hook_leaves_the_choice_to_the_engine(monkeypatch):
    monkeypatch.setattr(_hooks, "default_responder", None)
    install()
    assert _hooks.default_responder is notebook_responder
    assert notebook_responder(Agent("plain")) is None
    uninstall()
    assert _hooks.default_responder is None


async def test_blocking_run_on_an_old_ipykernel_warns_and_points_to_the_background_mode(monkeypatch):
    import ipykernel

    monkeypatch.setattr(ipykernel, "__version__", "6.29.5")
    agent, responder = agent_asking()
    task = asyncio.ensure_future(agent.run())
    with pytest.warns(FluffyWarning, match="agent.start"):
        form = await first_form(agent, responder)
    form.submit(typed(answer="ok"))
    assert (await task)["answer"] == "ok"


async def test_background_run_on_an_old_ipykernel_does_not_warn(monkeypatch, recwarn):
    import ipykernel

    monkeypatch.setattr(ipykernel, "__version__", "6.29.5")
    agent, responder = agent_asking()
    handle = agent.start()
    form = await first_form(agent, responder)
    form.submit(typed(answer="ok"))
    await handle
    assert not [w for w in recwarn if issubclass(w.category, FluffyWarning)]




async def test_a_page_that_does_not_hear_the_form_gets_a_new_form_with_what_it_showed():
    # ipywidgets' JupyterLab manager can give a widget opened while it starts up a model the
    # kernel's messages never reach: the page then keeps resending a submit already answered
    agent, responder = agent_asking(validator=lambda v: v.startswith("yes"))
    handle = agent.start()
    old = await first_form(agent, responder)
    first = {"event": "submit", "id": "a1", "values": {"answer": "nope"}}
    old._handle_custom_msg(first, [])
    old._handle_custom_msg(first, [])  # one resend: maybe the ack was only slow
    assert responder.area.forms[old.request_id] is old
    old._handle_custom_msg(first, [])  # again: the page does not hear this widget
    new = responder.area.forms[old.request_id]
    assert new is not old
    assert old.comm is None  # closed
    assert list(responder.area.children) == [new]
    assert (new.values, new.message, new.tries) == ({"answer": "nope"}, old.message, 1)
    new._handle_custom_msg(first, [])  # a late copy to the new widget answers nothing
    assert new.tries == 1
    new._handle_custom_msg({"event": "submit", "id": "a2", "values": {"answer": "yes"}}, [])
    assert (await handle)["answer"] == "yes"


async def test_prompt_newlines_are_kept_for_the_browser():
    agent, responder = agent_asking("Check the draft:\n  - tone\n  - <length>")
    handle = agent.start()
    form = await first_form(agent, responder)
    assert form.spec["prompt"] == "Check the draft:\n  - tone\n  - <length>"
    handle.cancel()


async def test_the_record_is_sent_before_the_state_after_the_question_runs():
    responder = WidgetResponder(display=False)
    agent = Agent("order", responder=responder)
    seen_on_resume = []

    async def ask(ctx):
        await ctx.human_in_the_loop("Go?")
        seen_on_resume.append(next(iter(responder.area.forms.values())).status)

    agent.add_state("ask", ask)
    handle = agent.start()
    form = await first_form(agent, responder)
    form.submit(typed(answer="go"))
    await handle
    assert seen_on_resume == ["answered"]


async def test_a_rejection_from_code_shows_in_the_form_too():
    agent, responder = agent_asking(validator=lambda v: v == "yes")
    handle = agent.start()
    form = await first_form(agent, responder)
    assert agent.answer(form.request.request_id, "no") is False
    assert "rejected by the validator" in form.message
    assert form.tries == 1
    handle.cancel()


@pytest.fixture(autouse=True)
def _close_widgets():
    yield
    widgets.Widget.close_all()
