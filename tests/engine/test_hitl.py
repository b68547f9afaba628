"""Human in the loop, engine side: responders, validation, timeouts, withdrawal, replay."""

from __future__ import annotations

import asyncio
import re
import sys
import threading

import pytest
from pydantic import BaseModel

from fluffy_nb import (
    Agent,
    Checkpoint,
    FluffyError,
    HumanInputError,
    HumanTimeoutError,
    ManualClock,
    StateFailedError,
    StateStatus,
)
from fluffy_nb.engine import _hooks
from fluffy_nb.engine._events import (
    HumanAnswered,
    HumanRejected,
    HumanRequested,
    HumanWithdrawn,
    StateFinished,
)
from fluffy_nb.engine._hitl import ConsoleResponder, ProgrammaticResponder, ScriptedResponder


class Order(BaseModel):
    item: str
    quantity: int


def asking_agent(responder, **ask):
    agent = Agent("review", responder=responder)

    async def approve(ctx):
        ctx.set_state("answer", await ctx.human_in_the_loop("Approve?", **ask))

    agent.add_state("approve", approve)
    return agent


# -- scripted -------------------------------------------------------------------------------------
async def test_scripted_list_answers_questions_in_order_and_records_them():
    agent = Agent("two", responder=ScriptedResponder(["alice", "42"]))

    async def ask(ctx):
        ctx.set_state("name", await ctx.human_in_the_loop("Name?"))
        ctx.set_state("age", await ctx.human_in_the_loop("Age?"))

    agent.add_state("ask", ask)
    result = await agent.run()
    assert (result["name"], result["age"]) == ("alice", "42")
    records = agent.create_checkpoint().human_answers
    assert [(r.prompt, r.value, r.source, r.sequence) for r in records] == [
        ("Name?", "alice", "script", 0),
        ("Age?", "42", "script", 1),
    ]
    assert all(r.answered_at >= r.asked_at for r in records)


async def test_validator_rejection_is_announced_and_the_person_is_asked_again(record):
    responder = ScriptedResponder({"Approve?": ["maybe", "yes"]})
    agent = asking_agent(responder, validator=lambda v: v in ("yes", "no"))
    log = record(agent)
    result = await agent.run()
    assert result["answer"] == "yes"
    [rejected] = log.of(HumanRejected)
    assert rejected.value == "maybe"
    assert "rejected" in rejected.message
    assert len(responder.asked) == 2
    assert responder.asked[1].rejection == rejected.message
    assert [e.value for e in log.of(HumanAnswered)] == ["yes"]


async def test_validator_that_raises_shows_its_message():
    def positive(value):
        if int(value) <= 0:
            raise ValueError("must be a positive number")
        return True

    responder = ProgrammaticResponder()
    agent = asking_agent(responder, validator=positive)
    handle = agent.start()
    request = await responder.next_request()
    assert agent.answer(request.request_id, "-3") is False
    assert request.rejection == "must be a positive number"
    again = await responder.next_request()
    assert again is request
    assert agent.answer(request.request_id, "3") is True
    assert (await handle)["answer"] == "3"


async def test_validator_returning_none_like_re_fullmatch_rejects_the_answer():
    """A validator that returns a falsy value rejects: ``re.fullmatch`` returns None on no match."""
    responder = ScriptedResponder({"Approve?": ["maybe", "yes"]})
    agent = asking_agent(responder, validator=lambda v: re.fullmatch(r"yes|no", v))
    result = await agent.run()
    assert result["answer"] == "yes"
    assert len(responder.asked) == 2
    assert "rejected by the validator" in (responder.asked[1].rejection or "")


async def test_an_async_validator_is_refused_instead_of_accepting_every_answer():
    """A coroutine is truthy: awaited nowhere, an async validator would let "maybe" through."""

    async def is_yes(answer):
        return answer == "yes"

    responder = ScriptedResponder({"Approve?": ["maybe", "yes"]})
    agent = asking_agent(responder, validator=is_yes)
    with pytest.raises(StateFailedError) as info:
        await agent.run()
    assert "validator=" in str(info.value)
    assert "plain function returning True/False" in str(info.value)
    assert responder.asked == []  # refused when asked, before anyone answers

    hidden = asking_agent(ProgrammaticResponder(), validator=lambda answer: is_yes(answer))  # async inside
    handle = hidden.start()
    request = await hidden.responder.next_request()
    with pytest.raises(FluffyError, match="returned an awaitable"):
        hidden.answer(request.request_id, "maybe")
    assert hidden.pending_requests() == [request]  # "maybe" was not taken as the answer
    await hidden.cancel_all()
    await asyncio.gather(handle, return_exceptions=True)


async def test_choices_reject_answers_outside_them():
    responder = ProgrammaticResponder()
    agent = asking_agent(responder, choices=["approve", "reject"])
    handle = agent.start()
    request = await responder.next_request()
    assert request.choices == ("approve", "reject")
    assert agent.answer(request.request_id, "whatever") is False
    assert "not one of the choices" in request.rejection
    assert agent.answer(request.request_id, "reject") is True
    assert (await handle)["answer"] == "reject"


async def test_schema_answer_is_validated_into_the_model():
    responder = ScriptedResponder({"Approve?": [{"item": "pen", "quantity": "many"}, {"item": "pen", "quantity": "3"}]})
    agent = asking_agent(responder, schema=Order)
    result = await agent.run()
    assert result["answer"] == Order(item="pen", quantity=3)
    assert "quantity" in responder.asked[1].rejection
    assert agent.latest_run.human_answers[0].value == {"item": "pen", "quantity": 3}


async def test_rejected_script_answer_without_another_fails_clearly():
    agent = asking_agent(ScriptedResponder({"Approve?": "maybe"}), choices=["yes", "no"])
    with pytest.raises(StateFailedError) as info:
        await agent.run()
    assert isinstance(info.value.__cause__, HumanInputError)
    assert "maybe" in str(info.value.__cause__)


async def test_scripted_responder_without_an_answer_fails_the_state():
    agent = asking_agent(ScriptedResponder({"Other?": "x"}))
    with pytest.raises(StateFailedError) as info:
        await agent.run()
    assert "no answer for 'Approve?'" in str(info.value.__cause__)


async def test_answering_an_unknown_request_raises_naming_it():
    agent = Agent("idle")
    with pytest.raises(HumanInputError, match="nope"):
        agent.answer("nope", 1)


async def test_guide_example_validated_score_rejects_then_accepts():
    agent = Agent("guide", responder=ScriptedResponder(["abc", "150", "75"]))

    async def get_user_input(ctx):
        score = await ctx.human_in_the_loop(
            prompt="Enter score (0-100):",
            timeout=60,
            validator=lambda x: x.isdigit() and 0 <= int(x) <= 100,
            default="50",
        )
        ctx.set_state("user_score", int(score))

    agent.add_state("get_user_input", get_user_input)
    assert (await agent.run())["user_score"] == 75
    assert agent.human.statistics().rejected == 2


async def test_state_asking_two_questions_at_once_waits_until_both_are_answered():
    responder = ProgrammaticResponder()
    agent = Agent("both", responder=responder)

    async def ask(ctx):
        a, b = await asyncio.gather(ctx.human_in_the_loop("A?"), ctx.human_in_the_loop("B?"))
        ctx.set_state("both", [a, b])

    agent.add_state("ask", ask)
    handle = agent.start()
    first, second = await responder.next_request(), await responder.next_request()
    first.answer("a")
    for _ in range(1_000):  # yield to the loop until the first question's wait has fully returned
        if len(agent.pending_requests()) <= 1:
            break
        await asyncio.sleep(0)
    else:
        pytest.fail("the first question's wait never returned")
    assert agent.state_metadata["ask"].status is StateStatus.WAITING_FOR_HUMAN
    second.answer("b")
    assert (await handle)["both"] == ["a", "b"]


# -- timeouts -----------------------------------------------------------------------------------
async def test_timeout_uses_the_default(record):
    clock = ManualClock()
    agent = asking_agent(ProgrammaticResponder(), timeout=30, default="auto-approved")
    agent.clock = clock
    log = record(agent)
    handle = agent.start()
    await clock.wait_for_sleepers()
    assert agent.pending_requests()[0].remaining() == 30
    await clock.advance(29)
    assert not handle.done()
    await clock.advance(1)
    result = await handle
    assert result["answer"] == "auto-approved"
    [answered] = log.of(HumanAnswered)
    assert answered.source == "default"
    assert agent.create_checkpoint().human_answers[0].source == "default"


async def test_timeout_without_default_raises_human_timeout_error(record):
    clock = ManualClock()
    agent = asking_agent(ProgrammaticResponder(), timeout=5)
    agent.clock = clock
    log = record(agent)
    handle = agent.start()
    await clock.wait_for_sleepers()
    await clock.advance(5)
    with pytest.raises(StateFailedError) as info:
        await handle
    assert isinstance(info.value.__cause__, HumanTimeoutError)
    assert "Approve?" in str(info.value.__cause__)
    assert "default" in str(info.value.__cause__)
    assert len(log.of(HumanWithdrawn)) == 1
    assert agent.pending_requests() == []


# -- waiting, cancellation, parallel progress ---------------------------------------------------
async def test_state_is_waiting_for_human_while_asked_then_running_again():
    responder = ProgrammaticResponder()
    agent = Agent("status", responder=responder)
    seen = []

    async def ask(ctx):
        await ctx.human_in_the_loop("Go?")
        seen.append(agent.state_metadata["ask"].status)

    agent.add_state("ask", ask)
    handle = agent.start()
    request = await responder.next_request()
    assert agent.state_metadata["ask"].status is StateStatus.WAITING_FOR_HUMAN
    request.answer("go")
    await handle
    assert seen == [StateStatus.RUNNING]


async def test_cancelling_the_state_withdraws_its_request(record):
    responder = ProgrammaticResponder()
    agent = asking_agent(responder)
    log = record(agent)
    handle = agent.start()
    request = await responder.next_request()
    assert agent.cancel_state("approve")
    await handle
    assert request.status == "withdrawn"
    assert [e.request_id for e in log.of(HumanWithdrawn)] == [request.request_id]
    assert agent.pending_requests() == []
    with pytest.raises(HumanInputError):
        agent.answer(request.request_id, "late")


async def test_cancelling_the_run_withdraws_open_requests(record):
    responder = ProgrammaticResponder()
    agent = asking_agent(responder)
    log = record(agent)
    handle = agent.start()
    await responder.next_request()
    handle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handle
    assert handle.status == "cancelled"
    assert len(log.of(HumanWithdrawn)) == 1
    assert agent.pending_requests() == []


async def test_parallel_state_keeps_working_while_another_waits_for_a_person(record):
    responder = ProgrammaticResponder()
    agent = Agent("parallel", responder=responder)
    worker_done = asyncio.Event()

    async def fan(ctx):
        return ["ask", "work"]

    async def ask(ctx):
        ctx.set_state("answer", await ctx.human_in_the_loop("Ship it?"))

    async def work(ctx):
        for i in range(50):
            ctx.set_state("progress", i)
            await asyncio.sleep(0)

    agent.add_state("fan", fan)
    agent.add_state("ask", ask)
    agent.add_state("work", work)
    agent.events.subscribe(lambda e: isinstance(e, StateFinished) and e.state == "work" and worker_done.set())
    log = record(agent)
    handle = agent.start()
    request = await responder.next_request()
    await worker_done.wait()
    assert request.is_open
    assert agent.state_metadata["ask"].status is StateStatus.WAITING_FOR_HUMAN
    assert agent.get_state("progress") == 49
    request.answer("yes")
    result = await handle
    assert result["answer"] == "yes"
    order = [(type(e).__name__, getattr(e, "state", "")) for e in log if isinstance(e, (StateFinished, HumanAnswered))]
    assert order.index(("StateFinished", "work")) < order.index(("HumanAnswered", "ask"))


async def test_pause_returns_while_a_state_waits_for_a_person_and_the_answer_still_counts():
    """pause() lets running states finish; one waiting for a person is left waiting (its form stays
    open) instead of holding the pause until someone answers, which could be never."""
    responder = ProgrammaticResponder()
    agent = Agent("paused", responder=responder)
    started: list[str] = []

    async def fan(ctx):
        return ["ask", "work"]

    async def ask(ctx):
        ctx.set_state("answer", await ctx.human_in_the_loop("Ship it?"))
        return "after"

    async def work(ctx):
        await asyncio.sleep(0)

    async def after(ctx):
        started.append("after")

    for name, func in [("fan", fan), ("ask", ask), ("work", work), ("after", after)]:
        agent.add_state(name, func)
    handle = agent.start()
    request = await responder.next_request()
    checkpoint = await asyncio.wait_for(agent.pause(), 5)  # before: waited for the answer
    assert agent.status.value == "paused"
    assert checkpoint is not None
    assert checkpoint.pending == ["ask"]  # restored, it asks again
    assert request.is_open
    request.answer("yes")
    for _ in range(20):  # the answer lands and ``ask`` ends; nothing new starts while paused
        await asyncio.sleep(0)
    assert agent.state_metadata["ask"].status is StateStatus.COMPLETED
    assert started == []
    await agent.resume()
    result = await handle
    assert result["answer"] == "yes"
    assert started == ["after"]


async def test_pause_of_a_run_whose_only_state_waits_for_a_person_returns_at_once():
    responder = ProgrammaticResponder()
    agent = asking_agent(responder)
    handle = agent.start()
    request = await responder.next_request()
    await asyncio.wait_for(agent.pause(), 5)
    assert agent.status.value == "paused"
    request.answer("ok")
    await agent.resume()
    assert (await handle)["answer"] == "ok"


async def test_pause_in_a_map_waits_for_each_branch_but_not_for_one_asking_a_person():
    """Idle is judged per branch: one branch of a map asking a person does not make its busy
    sibling idle (found by a reviewer: pause returned with work in flight), and once only the
    asking branch is left the pause returns (it had waited for the answer)."""
    responder = ProgrammaticResponder()
    agent = Agent("pm", responder=responder)
    gate, asked = asyncio.Event(), asyncio.Event()

    async def split(ctx):
        return ctx.map("work", [0, 1])

    async def work(ctx):
        if ctx.payload == 0:
            asked.set()
            ctx.set_result(await ctx.human_in_the_loop("ok?"))
            return None
        await asked.wait()
        await gate.wait()
        ctx.set_result("worked")
        return None

    agent.add_state("split", split, next=["work"])
    agent.add_state("work", work)
    handle = agent.start()
    request = await responder.next_request()
    pausing = asyncio.ensure_future(agent.pause())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not pausing.done()  # branch 1 still works
    gate.set()  # branch 1 ends: only the branch waiting for a person is left
    checkpoint = await asyncio.wait_for(pausing, 5)
    assert checkpoint is not None
    assert agent.status.value == "paused"
    request.answer("yes")
    await agent.resume()
    await asyncio.wait_for(handle, 5)
    assert agent.latest_run.maps["work"].snapshot().done == 2


# -- checkpoints and replay ---------------------------------------------------------------------
def two_questions(agent: Agent, asked: list[str]) -> None:
    async def ask(ctx):
        first = await ctx.human_in_the_loop("First?")
        asked.append("between")
        second = await ctx.human_in_the_loop("Second?")
        ctx.set_state("answers", [first, second])

    agent.add_state("ask", ask)


async def test_restored_run_replays_recorded_answers_instead_of_asking_again():
    responder = ProgrammaticResponder()
    first_run = Agent("replay", responder=responder)
    two_questions(first_run, [])
    handle = first_run.start()
    (await responder.next_request()).answer("one")
    second = await responder.next_request()
    assert second.prompt == "Second?"
    checkpoint = Checkpoint.from_json(first_run.create_checkpoint().to_json())
    handle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handle
    assert [r.value for r in checkpoint.human_answers] == ["one"]
    assert checkpoint.pending == ["ask"]

    script = ScriptedResponder({"Second?": "two"})
    restored = Agent("replay", responder=script)
    two_questions(restored, [])
    await restored.restore_from_checkpoint(checkpoint)
    result = await restored.run()
    assert result["answers"] == ["one", "two"]
    assert [r.prompt for r in script.asked] == ["Second?"]


async def test_state_run_again_in_a_loop_asks_again():
    script = ScriptedResponder(["a", "b"])
    agent = Agent("loop", responder=script)

    async def ask(ctx):
        got = [*ctx.get_state("got", []), await ctx.human_in_the_loop("Again?")]
        ctx.set_state("got", got)
        return "ask" if len(got) < 2 else None

    agent.add_state("ask", ask)
    result = await agent.run()
    assert result["got"] == ["a", "b"]
    assert len(script.asked) == 2
    assert not any(r.replayable for r in agent.create_checkpoint().human_answers)


# -- console ------------------------------------------------------------------------------------
async def test_console_reads_off_the_loop_so_other_states_keep_running():
    typed = threading.Event()
    lines: list[str] = []
    prompts: list[str] = []

    def fake_input(prompt: str) -> str:
        prompts.append(prompt)
        assert typed.wait(10), "test never released the console"
        return "2"

    agent = Agent("console", responder=ConsoleResponder(input=fake_input, output=lines.append))
    other_done = asyncio.Event()

    async def fan(ctx):
        return ["ask", "other"]

    async def ask(ctx):
        ctx.set_state("answer", await ctx.human_in_the_loop("Deploy <now>?", choices=["no", "yes"]))

    async def other(ctx):
        await asyncio.sleep(0)
        other_done.set()

    for name, fn in (("fan", fan), ("ask", ask), ("other", other)):
        agent.add_state(name, fn)
    handle = agent.start()
    await other_done.wait()  # finished while the console thread is blocked in input()
    assert agent.pending_requests()
    typed.set()
    result = await handle
    assert result["answer"] == "yes"
    assert "Deploy <now>?" in prompts[0]
    assert "2) yes" in prompts[0]


async def test_console_reports_rejection_and_asks_again():
    answers = iter(["0", "7"])
    lines: list[str] = []
    agent = asking_agent(ConsoleResponder(input=lambda _p: next(answers), output=lines.append),
                         validator=lambda v: int(v) > 5)
    result = await agent.run()
    assert result["answer"] == "7"
    assert any("rejected" in line for line in lines)


async def test_console_asks_schema_fields_one_by_one():
    answers = iter(["pen", "3"])
    agent = asking_agent(ConsoleResponder(input=lambda _p: next(answers), output=lambda _l: None), schema=Order)
    assert (await agent.run())["answer"] == Order(item="pen", quantity=3)


# -- choosing the responder ---------------------------------------------------------------------
async def test_explicit_responder_wins_over_the_environment(monkeypatch):
    monkeypatch.setattr(_hooks, "default_responder", lambda agent: pytest.fail("hook must not be asked"))
    agent = asking_agent(ScriptedResponder(["ok"]))
    assert (await agent.run())["answer"] == "ok"


async def test_registered_hook_picks_the_responder(monkeypatch):
    chosen = ScriptedResponder(["from hook"])
    monkeypatch.setattr(_hooks, "default_responder", lambda agent: chosen)
    agent = asking_agent(None)
    assert (await agent.run())["answer"] == "from hook"
    assert agent.human.responder() is chosen


def test_terminal_gets_console_and_no_terminal_gets_programmatic(monkeypatch):
    monkeypatch.setattr(_hooks, "default_responder", None)

    class Tty:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.setattr(sys, "stdin", Tty(True))
    assert isinstance(Agent("t").human.responder(), ConsoleResponder)
    monkeypatch.setattr(sys, "stdin", Tty(False))
    assert isinstance(Agent("n").human.responder(), ProgrammaticResponder)


async def test_request_event_carries_what_a_form_needs(record):
    agent = asking_agent(ScriptedResponder(["yes"]), choices=["yes", "no"], timeout=60, default="no")
    log = record(agent)
    await agent.run()
    [requested] = log.of(HumanRequested)
    assert (requested.prompt, requested.choices, requested.timeout, requested.default) == (
        "Approve?", ("yes", "no"), 60, "no"
    )
    stats = agent.human.statistics()
    assert (stats.asked, stats.answered, stats.open) == (1, 1, 0)
