"""Responders: who answers human-in-the-loop requests (engine side, no Jupyter imports).

A responder has ``on_request(request)`` (see ``_hitl.Responder``), optionally ``attach(agent)``
and ``on_closed(request)``. Here: :class:`ProgrammaticResponder` (services and tests:
``next_request()`` + ``agent.answer``), :class:`ScriptedResponder` (a list or mapping of
answers, for tests, demos and nbval) and :class:`ConsoleResponder` (terminals: ``input()`` in a
daemon thread, so other states keep running). The widget responder is in ``fluffy_nb.notebook``.
"""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import HumanInputError

if TYPE_CHECKING:
    from ._hitl import HumanRequest

_MISSING: Any = object()


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ProgrammaticResponder:
    """Answers come from code: ``agent.answer(request_id, value)`` (services, tests).

    Also queues every request it is handed, so a service can ``await next_request()``.
    """

    def __init__(self) -> None:
        self.requests: list[HumanRequest] = []
        self._queue: asyncio.Queue[HumanRequest] | None = None

    def on_request(self, request: HumanRequest) -> None:
        """Queue the request (again after a rejection)."""
        self.requests.append(request)
        if self._queue is None:
            self._queue = asyncio.Queue()
        self._queue.put_nowait(request)

    async def next_request(self) -> HumanRequest:
        """The next request handed to this responder (waits for one)."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        return await self._queue.get()

    def __repr__(self) -> str:
        return f"ProgrammaticResponder(handed={len(self.requests)})"


class ScriptedResponder:
    """Answers from a script: a list (in order) or a mapping prompt -> answer.

    A mapping value may be a list (successive answers to the same prompt, e.g. after a
    rejection); any answer may be a callable ``fn(request) -> value``. When the script has no
    answer, the asking state raises :class:`HumanInputError` (or ``default`` is used).

    Example:
        >>> responder = ScriptedResponder({"Approve?": "yes"})
        >>> # agent = Agent("review", responder=responder)
    """

    def __init__(self, answers: Sequence[Any] | Mapping[str, Any], *, default: Any = _MISSING,
                 source: str = "script") -> None:
        self._mapping = isinstance(answers, Mapping)
        if self._mapping:
            self._answers: dict[str, list[Any]] = {
                k: list(v) if isinstance(v, list) else [v] for k, v in answers.items()  # type: ignore[union-attr]
            }
        else:
            self._queue = list(answers)
        self._default = default
        self.source = source
        self.asked: list[HumanRequest] = []
        self._given: dict[str, Any] = {}

    def on_request(self, request: HumanRequest) -> None:
        """Answer at once from the script."""
        self.asked.append(request)
        value = self._next(request)
        if request.rejection is not None and value is self._given.get(request.request_id, _MISSING):
            request.fail(HumanInputError(
                f"ScriptedResponder: the scripted answer {_short(value)} to {request.prompt!r} was rejected "
                f"({request.rejection}) and the script has no other answer"
            ))
            return
        self._given[request.request_id] = value
        if value is _MISSING:
            request.fail(HumanInputError(
                f"ScriptedResponder has no answer for {request.prompt!r} (state {request.state!r}); "
                "add one to the script"
            ))
            return
        if callable(value):
            value = value(request)
        request.answer(value, source=self.source)

    def _next(self, request: HumanRequest) -> Any:
        if self._mapping:
            queue = self._answers.get(request.prompt)
            if queue:
                return queue.pop(0) if len(queue) > 1 else queue[0]
            return self._default
        if self._queue:
            return self._queue.pop(0)
        return self._default

    def __repr__(self) -> str:
        left = sum(len(v) for v in self._answers.values()) if self._mapping else len(self._queue)
        return f"ScriptedResponder(asked={len(self.asked)}, scripted={left})"


class ConsoleResponder:
    """Asks in the terminal. ``input()`` runs in a daemon thread, so other states keep running.

    Questions are asked one at a time, in order. ``choices`` accept the text or its number;
    a ``schema`` is asked field by field (empty keeps the field's default); an empty answer
    uses the request's default when it has one.

    Args:
        input: Reads one line given a prompt (default: ``builtins.input``).
        output: Writes one line (default: ``print`` to stdout).
    """

    def __init__(self, input: Callable[[str], str] | None = None,
                 output: Callable[[str], Any] | None = None) -> None:
        self._input = input or builtins.input
        self._output = output or (lambda line: print(line, flush=True))
        self._lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def on_request(self, request: HumanRequest) -> None:
        """Queue the question for the console."""
        task = asyncio.get_running_loop().create_task(self._ask(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, text: str) -> str:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()

        def work() -> None:
            try:
                line = self._input(text)
            except BaseException as exc:  # EOFError, KeyboardInterrupt in the thread
                loop.call_soon_threadsafe(settle, None, exc)
                return
            loop.call_soon_threadsafe(settle, line, None)

        def settle(line: str | None, error: BaseException | None) -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(line or "")

        threading.Thread(target=work, name="fluffy-console-input", daemon=True).start()
        return await fut

    async def _ask(self, req: HumanRequest) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not req.is_open:
                return
            if req.rejection:
                self._output(f"  rejected: {req.rejection}")
            try:
                value = await (self._read_fields(req) if req.schema is not None else self._read_answer(req))
            except EOFError:
                if req.is_open:
                    req.fail(HumanInputError(f"state {req.state!r}: the console closed before {req.prompt!r} "
                                             "was answered"))
                return
            if req.is_open and not req.future.done():
                req.answer(value)

    @staticmethod
    def _heading(req: HumanRequest) -> str:
        head = f"[{req.state}] {req.prompt}"
        if req.choices:
            head += "  " + " ".join(f"{i}) {c}" for i, c in enumerate(req.choices, 1))
        if req.default is not None:
            head += f"  (default: {req.default!r})"
        return head

    async def _read_fields(self, req: HumanRequest) -> dict[str, Any]:
        self._output(self._heading(req))
        value: dict[str, Any] = {}
        for name in req.schema.model_fields:  # type: ignore[union-attr]
            raw = await self._read(f"  {name}: ")
            if raw.strip():
                value[name] = raw.strip()
        return value

    async def _read_answer(self, req: HumanRequest) -> Any:
        raw = (await self._read(self._heading(req) + "\n> ")).strip()
        if not raw and req.default is not None:
            return req.default
        if req.choices and raw.isdigit() and 1 <= int(raw) <= len(req.choices):
            return req.choices[int(raw) - 1]
        return raw

    def __repr__(self) -> str:
        return f"ConsoleResponder(asking={len(self._tasks)})"
