"""Widget forms for human-in-the-loop requests, driven like a person would (no kernel needed)."""

from __future__ import annotations

import asyncio
from typing import Literal

import ipywidgets as widgets
import pytest
from pydantic import BaseModel

from fluffy_nb import Agent, ManualClock
from fluffy_nb.engine import _hooks
from fluffy_nb.engine._errors import FluffyWarning
from fluffy_nb.engine._events import HumanRequested
from fluffy_nb.notebook import _hitl_form
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


def html_of(widget: widgets.Widget) -> str:
    out = []
    for child in getattr(widget, "children", ()):
        out.append(html_of(child))
    if isinstance(widget, widgets.HTML):
        out.append(widget.value)
    return "\n".join(out)


async def test_prompt_with_script_renders_as_text():
    agent, responder = agent_asking('<script>alert("x")</script> & go?')
    handle = agent.start()
    form = await first_form(agent, responder)
    shown = html_of(form)
    assert "<script>" not in shown
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; go?" in shown
    handle.cancel()


async def test_text_form_submit_answers_the_state_and_collapses_to_a_record():
    agent, responder = agent_asking()
    handle = agent.start()
    form = await first_form(agent, responder)
    assert form.fields["answer"].continuous_update is False
    form.fields["answer"].value = "ship <it>"
    form.submit.click()
    result = await handle
    assert result["answer"] == "ship <it>"
    assert form.closed
    assert len(form.children) == 1
    assert "ship &lt;it&gt;" in form.children[0].value
    assert "Approve?" in form.children[0].value


async def test_choices_are_buttons_and_one_click_answers():
    agent, responder = agent_asking(choices=["approve", "reject"])
    handle = agent.start()
    form = await first_form(agent, responder)
    assert form.submit is None
    assert [b.description for b in form.choice_buttons] == ["approve", "reject"]
    form.choice_buttons[1].click()
    assert (await handle)["answer"] == "reject"


async def test_validator_rejection_shows_its_message_and_the_form_stays_open():
    def long_enough(value):
        if len(value) < 5:
            raise ValueError("at least 5 characters, please")
        return True

    agent, responder = agent_asking(validator=long_enough)
    handle = agent.start()
    form = await first_form(agent, responder)
    form.fields["answer"].value = "no"
    form.submit.click()
    assert "at least 5 characters, please" in form.message.value
    assert not form.closed
    assert not handle.done()
    form.fields["answer"].value = "absolutely"
    form.submit.click()
    assert (await handle)["answer"] == "absolutely"


async def test_schema_form_has_one_widget_per_field_validated_by_pydantic():
    agent, responder = agent_asking("Where to?", schema=Shipment)
    handle = agent.start()
    form = await first_form(agent, responder)
    assert list(form.fields) == ["destination", "crates", "express", "carrier"]
    assert isinstance(form.fields["express"], widgets.Checkbox)
    assert isinstance(form.fields["carrier"], widgets.Dropdown)
    form.fields["destination"].value = "Oslo"
    form.fields["crates"].value = "a dozen"
    form.submit.click()
    assert "crates" in form.message.value
    assert not form.closed
    form.fields["crates"].value = "12"
    form.fields["express"].value = True
    form.submit.click()
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
        form.fields["answer"].value = form.request.prompt.lower()
        form.submit.click()
    result = await handle
    assert (result["left"], result["right"]) == ("left?", "right?")
    assert responder.area.open_forms() == []


async def test_countdown_shows_time_left_and_the_default_then_records_it():
    clock = ManualClock()
    agent, responder = agent_asking(timeout=30, default="auto")
    agent.clock = clock
    handle = agent.start()
    form = await first_form(agent, responder)
    assert "30 s left" in form.countdown.value
    assert "auto" in form.countdown.value
    await clock.wait_for_sleepers()
    await clock.advance(30)
    assert (await handle)["answer"] == "auto"
    assert form.closed
    assert "default" in form.children[0].value


async def test_cancelled_state_collapses_its_form_as_withdrawn():
    agent, responder = agent_asking()
    handle = agent.start()
    form = await first_form(agent, responder)
    agent.cancel_state("approve")
    await handle
    assert form.closed
    assert "withdrawn" in form.children[0].value
    form.submit.click()  # a late click does nothing


async def test_responder_displays_the_forms_area_once(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
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
        form.fields["answer"].value = "x"
        form.submit.click()
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
    form.fields["answer"].value = "ok"
    form.submit.click()
    assert (await task)["answer"] == "ok"


async def test_background_run_on_an_old_ipykernel_does_not_warn(monkeypatch, recwarn):
    import ipykernel

    monkeypatch.setattr(ipykernel, "__version__", "6.29.5")
    agent, responder = agent_asking()
    handle = agent.start()
    form = await first_form(agent, responder)
    form.fields["answer"].value = "ok"
    form.submit.click()
    await handle
    assert not [w for w in recwarn if issubclass(w.category, FluffyWarning)]


@pytest.fixture(autouse=True)
def _close_widgets():
    yield
    widgets.Widget.close_all()


@pytest.fixture(autouse=True)
def _redraw_at_once(monkeypatch):
    """Forms collapse on the next loop turns instead of REDRAW_DELAY later (tests await the run)."""
    monkeypatch.setattr(_hitl_form, "REDRAW_DELAY", 0.0)


async def test_rejection_offers_fresh_inputs_holding_the_rejected_values():
    agent, responder = agent_asking("Where to?", schema=Shipment)
    handle = agent.start()
    form = await first_form(agent, responder)
    old = dict(form.fields)
    old["destination"].value = "Oslo"
    old["crates"].value = "lots"
    form.submit.click()
    # the edited fields are new widget models (the frontend syncs them again); the others kept theirs
    assert [n for n in old if form.fields[n] is not old[n]] == ["destination", "crates"]
    assert form.fields["destination"].value == "Oslo"
    assert form.fields["crates"].value == "lots"
    assert all(w in displayed(form) for w in form.fields.values())
    form.fields["crates"].value = "2"
    form.submit.click()
    assert (await handle)["answer"].crates == 2


async def test_blocking_run_renews_a_field_after_each_received_value():
    agent, responder = agent_asking()
    task = asyncio.ensure_future(agent.run())  # awaited by a (busy) cell, not agent.start()
    form = await first_form(agent, responder)
    assert form.fresh_after_sync
    first = form.fields["answer"]
    first.value = "draft"  # what a frontend sync does
    await asyncio.sleep(0)
    assert form.fields["answer"] is not first
    assert form.fields["answer"].value == "draft"
    form.fields["answer"].value = "final"
    form.submit.click()
    assert (await task)["answer"] == "final"


async def test_background_run_keeps_its_fields_while_typing():
    agent, responder = agent_asking()
    handle = agent.start()
    form = await first_form(agent, responder)
    first = form.fields["answer"]
    first.value = "draft"
    await asyncio.sleep(0)
    assert form.fields["answer"] is first
    handle.cancel()



async def test_form_collapses_only_after_the_waiting_state_has_resumed(monkeypatch):
    monkeypatch.setattr(_hitl_form, "REDRAW_DELAY", 0.02)
    responder = WidgetResponder(display=False)
    agent = Agent("order", responder=responder)
    seen_on_resume = []

    async def ask(ctx):
        await ctx.human_in_the_loop("Go?")
        seen_on_resume.append(responder.area.forms and next(iter(responder.area.forms.values())).closed)

    agent.add_state("ask", ask)
    handle = agent.start()
    form = await first_form(agent, responder)
    form.fields["answer"].value = "go"
    form.submit.click()
    await handle
    assert seen_on_resume == [False]  # the state ran on before any redraw
    for _ in range(400):  # then the form collapses (bounded wait for the 20 ms redraw timer)
        if form.closed:
            break
        await asyncio.sleep(0.005)
    assert form.closed


def displayed(widget: widgets.Widget) -> list[widgets.Widget]:
    """Every widget shown inside ``widget`` (itself included)."""
    out = [widget]
    for child in getattr(widget, "children", ()):
        out.extend(displayed(child))
    return out


async def test_prompt_newlines_are_shown_and_the_prompt_stays_escaped():
    agent, responder = agent_asking("Check the draft:\n  - tone\n  - <length>")
    handle = agent.start()
    form = await first_form(agent, responder)
    assert "white-space:pre-wrap" in form.header.value
    assert "Check the draft:\n  - tone\n  - &lt;length&gt;" in form.header.value
    handle.cancel()


async def test_rejection_message_arrives_in_one_update_with_the_fresh_field():
    # updates of different widgets may render in any order in the browser; one update of one
    # box's children cannot show the message while the old field is still there
    agent, responder = agent_asking(validator=lambda v: len(v) >= 3)
    handle = agent.start()
    form = await first_form(agent, responder)
    old, old_message = form.fields["answer"], form.message
    updates, form_children = [], form.children
    form.inputs.observe(lambda change: updates.append(change["new"]), names="children")
    old.value = "no"
    form.submit.click()
    assert form.children == form_children  # the submit button's view is not redrawn
    assert old_message.value == ""  # the message shown before is never changed in place
    [children] = updates
    shown = [w for child in children for w in displayed(child)]
    assert form.fields["answer"] in shown
    assert old not in shown
    assert form.message in shown
    assert "rejected" in form.message.value
    handle.cancel()


async def test_text_typed_into_the_replaced_field_after_a_rejection_is_what_submit_sends():
    agent, responder = agent_asking(validator=lambda v: len(v) >= 3)
    handle = agent.start()
    form = await first_form(agent, responder)
    old = form.fields["answer"]
    old.value = "no"
    form.submit.click()
    assert form.fields["answer"] is not old
    old.value = "typed while the field was swapped"  # the old widget's sync arrives after the swap
    assert form.fields["answer"].value == "typed while the field was swapped"  # shown in the new field too
    form.submit.click()  # read from the new field, whose own value sync is still unused
    assert form.request.status == "answered"
    assert (await handle)["answer"] == "typed while the field was swapped"


async def test_a_late_value_of_the_replaced_field_never_overwrites_what_was_typed_in_the_new_one():
    agent, responder = agent_asking(validator=lambda v: len(v) >= 3)
    handle = agent.start()
    form = await first_form(agent, responder)
    old = form.fields["answer"]
    old.value = "no"
    form.submit.click()
    form.fields["answer"].value = "typed in the new field"
    old.value = "stale"
    form.submit.click()
    assert (await handle)["answer"] == "typed in the new field"


async def test_blocking_renewal_of_one_field_leaves_the_field_being_typed_in_alone():
    agent, responder = agent_asking("Where to?", schema=Shipment)
    task = asyncio.ensure_future(agent.run())
    form = await first_form(agent, responder)
    crates, children = form.fields["crates"], form.children
    form.fields["destination"].value = "Oslo"  # the person tabs on to "crates": destination syncs
    await asyncio.sleep(0)
    assert form.fields["destination"].value == "Oslo"
    assert form.fields["crates"] is crates  # not recreated under the person's cursor
    assert form.children == children  # only destination's own slot changed: nothing else is redrawn
    crates.value = "3"
    form.submit.click()
    assert (await task)["answer"] == Shipment(destination="Oslo", crates=3)
    assert form.closed

