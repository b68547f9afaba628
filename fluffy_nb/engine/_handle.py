"""Background runs: ``Agent.start()`` returns a :class:`RunHandle`; ``run_sync()`` for scripts.

In a notebook the default is a background run: ``agent.start()`` schedules ``agent.run()``
as a task on the running loop and returns at once, so the kernel stays idle and widget
messages (human-in-the-loop forms) flow on every ipykernel. A later cell awaits the handle.

A failing background run never ends as "Task exception was never retrieved": the handle
retrieves the outcome in a done-callback and reports a failure through
``_hooks.background_error`` (the notebook layer shows it in the run's output area), or logs it.

``run_sync()`` is the blocking twin for scripts: ``asyncio.run`` where no loop runs; inside a
running loop (a notebook cell) it nests with nest-asyncio for workflows that need no person,
and raises :class:`BlockingRunError` the moment such a run asks a person, instead of
deadlocking (a blocked loop can never deliver the click that would answer it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from . import _hooks
from ._errors import AgentRunningError, BlockingRunError, StateFailedError

if TYPE_CHECKING:
    from ._agent import Agent
    from ._result import RunResult

log = logging.getLogger("fluffy_nb")


class RunHandle:
    """A run of an agent going on in the background (from :meth:`Agent.start`).

    ``await handle`` returns the :class:`RunResult` (or raises the run's error). Cancelling
    the awaiting code (the notebook's Stop button on a cell doing ``await handle``) stops the
    waiting, not the run: the run is shielded. ``handle.cancel()`` cancels the run.

    Example:
        >>> # handle = agent.start()          # returns at once
        >>> # handle.done(), handle.status    # False, 'running'
        >>> # result = await handle           # later: the RunResult
    """

    __slots__ = ("__weakref__", "_reported", "agent", "task")

    def __init__(self, agent: Agent, task: asyncio.Task[RunResult]) -> None:
        self.agent = agent
        self.task = task
        self._reported = False
        task.add_done_callback(self._on_done)

    # -- outcome --------------------------------------------------------------------------
    def __await__(self) -> Generator[Any, None, RunResult]:
        return self._wait().__await__()

    async def _wait(self) -> RunResult:
        # shielded: a background run outlives whoever waits for it (Stop on `await handle`)
        return await asyncio.shield(self.task)

    def done(self) -> bool:
        """Whether the run has ended (completed, failed or cancelled)."""
        return self.task.done()

    def result(self) -> RunResult:
        """The :class:`RunResult` of a finished run.

        Raises:
            AgentRunningError: the run is still going (``await handle`` waits for it).
            asyncio.CancelledError: the run was cancelled.
            Exception: the run's own error (e.g. ``StateFailedError``).
        """
        if not self.task.done():
            waiting = [r.prompt for r in self.agent.pending_requests()]
            hint = f"; it waits for a person: {waiting!r}" if waiting else ""
            raise AgentRunningError(
                f"run of agent {self.agent.name!r} is still running (status {self.status!r}){hint}; "
                "`await handle` waits for it, `handle.done()` tells whether it has ended"
            )
        return self.task.result()

    def exception(self) -> BaseException | None:
        """The run's error, None if it completed (raises like :meth:`result` while running)."""
        if not self.task.done():
            self.result()
        if self.task.cancelled():
            return asyncio.CancelledError()
        return self.task.exception()

    def cancel(self) -> bool:
        """Cancel the run (open human requests are withdrawn); False if it had already ended."""
        return self.task.cancel()

    def add_done_callback(self, fn: Callable[[RunHandle], Any]) -> None:
        """Call ``fn(handle)`` once the run ends (at once, soon, if it has already ended)."""
        self.task.add_done_callback(lambda _task: fn(self))

    @property
    def status(self) -> str:
        """``running``/``paused`` while going, then ``completed``, ``failed`` or ``cancelled``."""
        task = self.task
        if not task.done():
            return self.agent.status.value if self.agent._run_active else "starting"
        if task.cancelled():
            return "cancelled"
        if task.exception() is not None:
            return "failed"
        return task.result().status.value

    @property
    def run_id(self) -> str:
        """The id of the run (empty until the run has begun)."""
        return self.agent.run_id

    def _on_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()  # retrieving it is what keeps asyncio from complaining
        if exc is None or self._reported:
            return
        self._reported = True
        hook = _hooks.background_error
        if hook is not None:
            try:
                hook(self, exc)
                return
            except Exception:
                log.exception("fluffy_nb: the background_error hook failed")
        log.error("fluffy_nb: background run of agent %r failed: %s: %s", self.agent.name,
                  type(exc).__name__, exc, exc_info=exc)

    # -- display --------------------------------------------------------------------------
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return _hooks.mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        extra = ""
        if not self.task.done():
            waiting = len(self.agent.pending_requests())
            if waiting:
                extra = f" waiting_for_human={waiting}"
        elif not self.task.cancelled() and self.task.exception() is not None:
            exc = self.task.exception()
            extra = f" error={type(exc).__name__}: {exc}"
        run = self.agent.run_id[:8] or "-"
        return f"<RunHandle {self.agent.name!r} run={run} {self.status}{extra}>"


class BackgroundMixin:
    """Background-run half of :class:`Agent`: :meth:`start` and :meth:`run_sync`."""

    _blocking_run: bool = False
    _handle: RunHandle | None = None

    def start(self: Agent, **run_kwargs: Any) -> RunHandle:  # type: ignore[misc]
        """Run in the background on the running loop; returns a :class:`RunHandle` at once.

        Takes the same arguments as :meth:`Agent.run`. In a notebook this is what keeps
        the kernel free to deliver widget clicks while states wait for a person.

        Raises:
            AgentRunningError: the agent is already running (await its handle instead), or
                no event loop is running (in a script use ``agent.run_sync()``).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise AgentRunningError(
                f"agent {self.name!r}: start() needs a running event loop (a notebook cell, or "
                "inside `async def`); in a plain script use agent.run_sync() or asyncio.run(agent.run())"
            ) from None
        current = self._handle
        if self._run_active or (current is not None and not current.done()):
            raise AgentRunningError(
                f"agent {self.name!r} is already running; `await` its handle (agent.handle) or "
                "cancel it before starting another run"
            )
        task = loop.create_task(self.run(**run_kwargs), name=f"fluffy:{self.name}")
        handle = RunHandle(self, task)
        self._handle = handle
        hook = _hooks.run_started
        if hook is not None:
            try:
                hook(handle)
            except Exception:
                log.exception("fluffy_nb: the run_started hook failed")
        return handle

    @property
    def handle(self) -> RunHandle | None:
        """The handle of the latest background run (None if :meth:`start` was never called)."""
        return self._handle

    def run_sync(self: Agent, **run_kwargs: Any) -> RunResult:  # type: ignore[misc]
        """Run to the end and return the :class:`RunResult`, blocking the caller.

        Where no loop runs (scripts) this is ``asyncio.run(agent.run(...))``. Inside a running
        loop (a notebook cell) it nests with nest-asyncio; such a blocked loop cannot deliver a
        person's answer, so a state asking a person raises :class:`BlockingRunError` at once.

        Raises:
            BlockingRunError: inside a running loop, a state asked a person.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(**run_kwargs))
        import nest_asyncio

        nest_asyncio.apply(loop)
        self._blocking_run = True
        try:
            return loop.run_until_complete(self.run(**run_kwargs))
        except StateFailedError as exc:
            if isinstance(exc.__cause__, BlockingRunError):
                raise exc.__cause__ from None
            raise
        finally:
            self._blocking_run = False


def blocking_error(agent: Agent, state: str, prompt: str) -> BlockingRunError:
    """The error raised when a ``run_sync`` inside a running loop asks a person."""
    return BlockingRunError(
        f"state {state!r} of agent {agent.name!r} asks a person ({prompt!r}), but agent.run_sync() "
        "blocks the running event loop, so no answer could ever arrive. Use `await agent.run()`, "
        "`handle = agent.start()` (then `await handle`), or the %%fluffy cell magic instead"
    )
