"""Human-in-the-loop protocol (engine side): requests, answers, replay, and responders.

``await context.human_in_the_loop(prompt, ...)`` lands in :meth:`HumanLoop.ask`: it opens a
:class:`HumanRequest`, publishes ``HumanRequested``, hands the request to the agent's
*responder* and waits (polling every 0.25 s, so a kernel interrupt cancels it) until an
answer is accepted, the timeout passes, or the state is cancelled (``HumanWithdrawn``).

An answer arrives through :meth:`HumanLoop.answer` (``agent.answer(request_id, value)``,
``request.answer(value)``) from anywhere on the loop. It is checked against ``choices``, the
pydantic ``schema`` and the ``validator``; a rejected answer publishes ``HumanRejected``,
keeps the request open and asks the responder again with ``request.rejection`` set.

Accepted answers are recorded as :class:`HumanAnswerRecord` in the asking run's
``human_answers``, so checkpoints carry them; a restored run replays them by (state, position of the question in
that state's execution) instead of asking again. When a state completes, its records stop
being replayable, so a state that runs again in a loop asks again.

Responders (who answers) are small objects with ``on_request(request)`` and, optionally,
``attach(agent)`` (called once before the first request) and ``on_closed(request)`` (called
when a request is answered, withdrawn or timed out). The engine's own (scripted, console,
programmatic) live in ``_responders.py``; the widget responder in ``fluffy_nb.notebook``.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from . import _hooks
from ._answers import Rejected, check_answer, check_args
from ._errors import FluffyError, HumanInputError, HumanTimeoutError
from ._events import HumanAnswered, HumanRejected, HumanRequested, HumanWithdrawn
from ._status import StateStatus

if TYPE_CHECKING:
    from ._agent import Agent
    from ._checkpoint import HumanAnswerRecord
    from ._context import Context
    from ._run import Run

POLL_SECONDS = 0.25
_TIMED_OUT: Any = object()


@dataclass(eq=False)
class HumanRequest:
    """An open question to a person.

    ``status`` is ``open``, then ``answered``, ``timed_out`` or ``withdrawn``; ``rejection``
    holds the reason the last answer was rejected (None before any rejection).
    """

    request_id: str
    state: str
    prompt: str
    run_id: str = ""
    timeout: float | None = None
    default: Any = None
    choices: tuple[str, ...] | None = None
    schema: type | None = field(default=None, repr=False)
    validator: Callable[[Any], Any] | None = field(default=None, repr=False)
    sequence: int = 0
    asked_at: float = 0.0
    deadline: float | None = field(default=None, repr=False)
    status: str = "open"
    rejection: str | None = None
    tries: int = 0
    value: Any = field(default=None, repr=False)
    source: str | None = None
    payload_index: int | None = None  # the map payload of the branch that asks; None for a plain state
    future: asyncio.Future[Any] = field(default=None, repr=False)  # type: ignore[arg-type]
    _loop: HumanLoop | None = field(default=None, repr=False)
    _run: Run | None = field(default=None, repr=False)

    @property
    def is_open(self) -> bool:
        """Whether the request still waits for an answer."""
        return self.status == "open"

    def answer(self, value: Any, *, source: str = "person") -> bool:
        """Answer this request; True if accepted, False if rejected (see ``rejection``)."""
        assert self._loop is not None, "request is not attached to an agent"
        return self._loop.answer(self.request_id, value, source=source)

    def fail(self, error: BaseException) -> None:
        """Make the asking state raise ``error`` (a responder that cannot answer)."""
        assert self._loop is not None, "request is not attached to an agent"
        self._loop.fail(self.request_id, error)

    def remaining(self) -> float | None:
        """Seconds left before the timeout (None without a timeout)."""
        if self.deadline is None or self._loop is None:
            return None
        return max(0.0, self.deadline - self._loop.clock.monotonic())


@runtime_checkable
class Responder(Protocol):
    """Who answers human-in-the-loop requests.

    ``on_request(request)`` is called (on the event loop, never inside ``ask``) when a request
    opens and again after each rejected answer; it must not block: start a task or thread,
    or show a form, and answer later with ``request.answer(value)``. Optional methods:
    ``attach(agent)`` once before the first request, ``on_closed(request)`` when a request is
    answered, times out or is withdrawn.
    """

    def on_request(self, request: HumanRequest) -> None: ...


@dataclass(frozen=True)
class HumanLoopStatistics:
    """Counts of one agent's human-in-the-loop traffic."""

    asked: int
    answered: int
    rejected: int
    timed_out: int
    withdrawn: int
    replayed: int
    open: int


class HumanLoop:
    """Open requests of one agent's runs and the machinery to answer them.

    Args:
        agent: The agent whose runs ask (its responder and clock are used).
    """

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._open: dict[str, HumanRequest] = {}
        self._ids = itertools.count(1)
        self._seq: weakref.WeakKeyDictionary[asyncio.Task[Any], list[int]] = weakref.WeakKeyDictionary()
        self._waiting: Counter[tuple[str, str]] = Counter()  # (run id, state) -> open questions
        self._attached: Any = None
        self._auto: Any = None
        self._counts = dict.fromkeys(("asked", "answered", "rejected", "timed_out", "withdrawn", "replayed"), 0)

    @property
    def clock(self) -> Any:
        """The agent's clock (read each time: tests may swap it)."""
        return self._agent.clock

    # -- inspection -------------------------------------------------------------------------
    def pending(self, run_id: str | None = None) -> list[HumanRequest]:
        """Requests waiting for an answer (of one run, or of all), oldest first."""
        if run_id is None:
            return list(self._open.values())
        return [r for r in self._open.values() if r.run_id == run_id]

    def asks(self, run_id: str, state: str, payload_index: int | None = None) -> bool:
        """Whether ``state`` of run ``run_id`` (its map branch ``payload_index``) waits for an answer."""
        return any(r.run_id == run_id and r.state == state and r.payload_index == payload_index
                   for r in self._open.values())

    def get(self, request_id: str) -> HumanRequest | None:
        """The open request with this id, or None."""
        return self._open.get(request_id)

    def statistics(self) -> HumanLoopStatistics:
        """How many requests were asked, answered, rejected, timed out, withdrawn, replayed."""
        return HumanLoopStatistics(**self._counts, open=len(self._open))

    def __repr__(self) -> str:
        c = self._counts
        return (f"<HumanLoop agent={self._agent.name!r} open={len(self._open)} asked={c['asked']} "
                f"answered={c['answered']} rejected={c['rejected']}>")

    # -- responders --------------------------------------------------------------------------
    def responder(self) -> Any:
        """The responder in charge: ``Agent(responder=...)``, else chosen for the environment.

        A notebook kernel gets widgets (through ``_hooks.default_responder``, which the notebook
        layer registers), a terminal gets :class:`ConsoleResponder`, anything else
        :class:`ProgrammaticResponder` (answer with ``agent.answer``).
        """
        chosen = self._agent.responder
        if chosen is None:
            if self._auto is None:
                hook = _hooks.default_responder
                auto = hook(self._agent) if hook is not None else None
                if auto is None:
                    from ._responders import ConsoleResponder, ProgrammaticResponder

                    stdin = sys.stdin
                    tty = stdin is not None and hasattr(stdin, "isatty") and _isatty(stdin)
                    auto = ConsoleResponder() if tty else ProgrammaticResponder()
                self._auto = auto
            chosen = self._auto
        if chosen is not self._attached:
            attach = getattr(chosen, "attach", None)
            if attach is not None:
                attach(self._agent)
            self._attached = chosen
        return chosen

    def _deliver(self, req: HumanRequest) -> None:
        if not req.is_open:
            return
        try:
            self.responder().on_request(req)
        except Exception as exc:  # a broken responder must fail the question, not hang it
            self.fail(req.request_id, HumanInputError(
                f"state {req.state!r}: the responder failed on {req.prompt!r}: {type(exc).__name__}: {exc}"
            ))

    def _closed(self, req: HumanRequest) -> None:
        on_closed = getattr(self._attached, "on_closed", None)
        if on_closed is not None:
            try:
                on_closed(req)
            except Exception:
                pass

    # -- answering ---------------------------------------------------------------------------
    def answer(self, request_id: str, value: Any, *, source: str = "person") -> bool:
        """Answer an open request; True if accepted, False if rejected (the person is asked again).

        Safe to call from another thread: the answer is handed to the event loop of the asking
        state, and this call returns once it was checked there.

        Raises:
            HumanInputError: no open request has this id (answered, withdrawn or unknown).
        """
        req = self._open.get(request_id)
        if req is not None and req.future is not None:
            loop = req.future.get_loop()
            if not _on_loop(loop):
                return asyncio.run_coroutine_threadsafe(self._answer_on_loop(request_id, value, source),
                                                        loop).result(timeout=30)
        return self._answer_here(request_id, value, source)

    async def _answer_on_loop(self, request_id: str, value: Any, source: str) -> bool:
        return self._answer_here(request_id, value, source)

    def _answer_here(self, request_id: str, value: Any, source: str) -> bool:
        req = self._open.get(request_id)
        if req is None or not req.is_open or req.future.done():
            open_ids = sorted(self._open)
            raise HumanInputError(
                f"answer({request_id!r}): no open request with that id (open: {open_ids}); "
                "it was answered, withdrawn or timed out, or the id is wrong"
            )
        req.tries += 1
        try:
            value = check_answer(req, value)
        except Rejected as rej:
            self._reject(req, value, str(rej))
            return False
        self._accept(req, value, source)
        return True

    def fail(self, request_id: str, error: BaseException) -> None:
        """Make the state waiting on ``request_id`` raise ``error``."""
        req = self._open.get(request_id)
        if req is not None and not req.future.done():
            req.future.set_exception(error)

    def _reject(self, req: HumanRequest, value: Any, message: str) -> None:
        agent = self._agent
        req.rejection = message
        self._counts["rejected"] += 1
        if agent.events.active:
            agent.events.publish(HumanRejected(agent.name, req.run_id, agent.clock.monotonic(), req.state,
                                               req.request_id, value, message))
        req.future.get_loop().call_soon(self._deliver, req)

    def _accept(self, req: HumanRequest, value: Any, source: str) -> None:
        agent = self._agent
        req.status, req.value, req.source = "answered", value, source
        self._counts["answered"] += 1
        self._record(req, value, source)
        req.future.set_result(value)
        if agent.events.active:
            now = agent.clock.monotonic()
            agent.events.publish(HumanAnswered(agent.name, req.run_id, now, req.state, req.request_id, value,
                                               source, agent.clock.time() - req.asked_at))
        self._closed(req)

    def _record(self, req: HumanRequest, value: Any, source: str) -> None:
        from ._checkpoint import HumanAnswerRecord, check_json_value  # pydantic on first answer only

        stored, replayable = value, True
        if hasattr(value, "model_dump"):
            stored = value.model_dump(mode="json")
        try:
            stored = check_json_value(f"answer to {req.prompt!r}", stored)
        except FluffyError:
            stored, replayable = repr(value), False
        run = req._run
        if run is None:
            return
        run.human_answers.append(HumanAnswerRecord(
            request_id=req.request_id, state=req.state, sequence=req.sequence, payload=req.payload_index,
            prompt=req.prompt,
            value=stored, source=source, asked_at=req.asked_at, answered_at=self._agent.clock.time(),
            replayable=replayable,
        ))

    def state_completed(self, run: Run, state: str) -> None:
        """A state of ``run`` finished: its answers are history now, a later run of it asks again.

        A map branch's answers are history once that branch (its payload) is done: the other
        branches of the map still running keep theirs for a restore to replay."""
        answers = run.human_answers
        if any(r.state == state and r.replayable for r in answers):
            m = run.maps.get(state)

            def finished(r: HumanAnswerRecord) -> bool:
                return r.payload is None or m is None or m.is_done(r.payload)

            run.human_answers = [
                r.model_copy(update={"replayable": False}) if r.state == state and r.replayable and finished(r)
                else r for r in answers
            ]

    # -- asking ------------------------------------------------------------------------------
    def _next_sequence(self, ctx: Context) -> int:
        task = asyncio.current_task()
        if task is None:
            return 0
        slot = self._seq.get(task)
        if slot is None or slot[0] != ctx.attempt:
            slot = [ctx.attempt, 0]
            self._seq[task] = slot
        seq = slot[1]
        slot[1] += 1
        return seq

    def _replay(self, run: Run, state: str, sequence: int, payload: int | None) -> HumanAnswerRecord | None:
        """The recorded answer to question ``sequence`` of ``state`` (of map payload ``payload``)."""
        for rec in reversed(run.human_answers):
            if rec.replayable and rec.state == state and rec.sequence == sequence and rec.payload == payload:
                return rec
        return None

    async def ask(
        self,
        ctx: Context,
        prompt: str,
        *,
        timeout: float | None,
        validator: Callable[[Any], Any] | None,
        default: Any,
        choices: Sequence[str] | None,
        schema: type | None,
    ) -> Any:
        """Create a request, hand it to the responder, and wait for an accepted answer.

        An answer is checked in this order: it must be one of ``choices``; with a ``schema`` a
        mapping is validated into the pydantic model (errors reject it with pydantic's
        message); then ``validator(value)`` is called with that value. The validator rejects
        by returning a falsy value (``False``, ``None`` as ``re.fullmatch`` does when nothing
        matches, ``0``, ``""``; a generic message is shown) or by raising an exception (its
        message, or its type name when empty, is shown). A truthy return value accepts (a
        match object, ``True``, any non-empty string): to show a message, raise
        ``ValueError(message)``. The validator is a plain function: an ``async def`` one is
        refused with a :class:`ConfigurationError` (its coroutine would be truthy, accepting
        every answer). A :class:`FluffyError` raised by the
        validator is no rejection: it propagates to whoever answered (``agent.answer`` raises).
        """
        run = ctx.run
        state = ctx.state_name
        check_args(state, prompt, timeout, validator, choices, schema, default)
        if run is None:
            raise HumanInputError(
                f"human_in_the_loop({prompt!r}) was called on a context that belongs to no run; call it "
                "from a state function, on the context the state receives"
            )
        if run.blocking:
            from ._handle import blocking_error

            raise blocking_error(self._agent, state, str(prompt))
        seq = self._next_sequence(ctx)
        payload = ctx.payload_index  # each branch of a map is asked (and replayed) its own questions
        replay = self._replay(run, state, seq, payload)
        if replay is not None:
            return self._replayed(run, replay, schema)
        req = self._open_request(run, state, str(prompt), timeout, default, choices, schema, validator, seq)
        req.payload_index = payload
        meta = run.meta(state)
        self._waiting[(run.run_id, state)] += 1
        meta.status = StateStatus.WAITING_FOR_HUMAN
        if run.paused:  # a pause waiting for its running states need not wait for a person
            run.scheduler.idle_while_paused()
        try:
            value = await self._wait(req)
        except BaseException:
            self._withdraw(req, "withdrawn")
            raise
        finally:
            self._open.pop(req.request_id, None)
            key = (run.run_id, state)
            self._waiting[key] -= 1
            if not self._waiting[key]:  # several questions of one state at once: running when all answered
                del self._waiting[key]
                if meta.status is StateStatus.WAITING_FOR_HUMAN:
                    meta.status = StateStatus.RUNNING
        if value is _TIMED_OUT:
            return self._timed_out(req)
        return value

    def _replayed(self, run: Run, replay: HumanAnswerRecord, schema: type | None) -> Any:
        self._counts["replayed"] += 1
        value = replay.value
        if schema is not None and isinstance(value, Mapping):
            value = schema.model_validate(dict(value))  # type: ignore[attr-defined]
        if run.events.active:
            run.events.publish(HumanAnswered(run.name, run.run_id, run.clock.monotonic(), replay.state,
                                             replay.request_id, value, "replay", 0.0))
        return value

    def _open_request(self, run: Run, state: str, prompt: str, timeout: float | None, default: Any,
                      choices: Sequence[str] | None, schema: type | None, validator: Any, seq: int) -> HumanRequest:
        loop = asyncio.get_running_loop()
        clock = self.clock
        rid = f"{run.run_id[:8]}-{next(self._ids)}"
        req = HumanRequest(
            rid, state, prompt, run.run_id, timeout, default, tuple(choices) if choices is not None else None,
            schema, validator, seq, clock.time(), None if timeout is None else clock.monotonic() + timeout,
            future=loop.create_future(), _loop=self, _run=run,
        )
        self._open[rid] = req
        self._counts["asked"] += 1
        if run.events.active:
            run.events.publish(HumanRequested(run.name, run.run_id, clock.monotonic(), state, rid, prompt,
                                              req.choices, timeout, default))
        loop.call_soon(self._deliver, req)
        return req

    def _timed_out(self, req: HumanRequest) -> Any:
        default = req.default
        if default is None:
            self._withdraw(req, "timed_out")
            raise HumanTimeoutError(
                f"state {req.state!r}: nobody answered {req.prompt!r} within {req.timeout}s and there is no "
                "default; pass default=... to continue without an answer, or a longer timeout"
            )
        req.status, req.value, req.source = "answered", default, "default"
        self._counts["answered"] += 1
        self._record(req, default, "default")
        bus = self._agent.events
        if bus.active:
            bus.publish(HumanAnswered(self._agent.name, req.run_id, self.clock.monotonic(), req.state,
                                      req.request_id, default, "default", self.clock.time() - req.asked_at))
        self._closed(req)
        return default

    async def _wait(self, req: HumanRequest) -> Any:
        fut = req.future
        timer = None
        if req.timeout is not None:
            timer = asyncio.get_running_loop().create_task(self.clock.sleep(req.timeout))
        waiting: set[asyncio.Future[Any]] = {fut} if timer is None else {fut, timer}
        try:
            while True:
                await asyncio.wait(waiting, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
                if fut.done():
                    return fut.result()
                if timer is not None and timer.done():
                    return _TIMED_OUT
        finally:
            if timer is not None:
                timer.cancel()

    def _withdraw(self, req: HumanRequest, status: str) -> None:
        if req.status != "open":
            return
        req.status = status
        self._counts["timed_out" if status == "timed_out" else "withdrawn"] += 1
        if not req.future.done():
            req.future.cancel()
        agent = self._agent
        if agent.events.active:
            agent.events.publish(HumanWithdrawn(agent.name, req.run_id, agent.clock.monotonic(), req.state,
                                                req.request_id))
        self._closed(req)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (ValueError, OSError):
        return False


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the calling thread is the one running ``loop``."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return not loop.is_running()  # another thread while the loop runs: hand the answer over


# the responders live in ``_responders.py``; importable from here too
from ._responders import ConsoleResponder, ProgrammaticResponder, ScriptedResponder  # noqa: E402

__all__ = [
    "ConsoleResponder",
    "HumanLoop",
    "HumanLoopStatistics",
    "HumanRequest",
    "ProgrammaticResponder",
    "Responder",
    "ScriptedResponder",
]
