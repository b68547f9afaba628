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
from ._errors import AgentRunningError, BlockingRunError, ConfigurationError, StateFailedError
from ._executor import check_executors

if TYPE_CHECKING:
    from ._agent import Agent
    from ._result import RunResult
    from ._run import Run

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

    __slots__ = ("__weakref__", "_reported", "_run", "agent", "task")

    def __init__(self, agent: Agent, task: asyncio.Task[RunResult], run: Run | None = None) -> None:
        self.agent = agent
        self._run = run
        self.task = task
        self._reported = False
        task.add_done_callback(self._on_done)

    @property
    def run(self) -> Run:
        """The :class:`Run` this handle follows (for a task made from a coroutine, such as
        ``resume_latest``, the agent's latest run)."""
        run = self._run if self._run is not None else self.agent.latest_run
        if run is None:
            from ._run import Run

            run = Run(self.agent, run_id="not-started")
        return run

    def known_run(self) -> Run | None:
        """The run this handle was made for, or None when it will be known only once its task
        has begun (a handle around ``resume_latest``)."""
        return self._run

    # -- outcome --------------------------------------------------------------------------
    def __await__(self) -> Generator[Any, None, RunResult]:
        return self.wait().__await__()

    async def wait(self) -> RunResult:
        """The run's result, waited for without risking the run: cancelling the waiter (Stop on a
        cell doing ``await handle``) leaves the run going; ``handle.cancel()`` cancels it."""
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
            waiting = [r.prompt for r in self.run.pending_requests()]
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
            return self.run.status.value if self.run.active else "starting"
        if task.cancelled():
            return "cancelled"
        if task.exception() is not None:
            return "failed"
        return task.result().status.value

    @property
    def run_id(self) -> str:
        """The id of the run."""
        return self.run.run_id

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
            waiting = len(self.run.pending_requests())
            if waiting:
                extra = f" waiting_for_human={waiting}"
        elif not self.task.cancelled() and self.task.exception() is not None:
            exc = self.task.exception()
            extra = f" error={type(exc).__name__}: {exc}"
        return f"<RunHandle {self.agent.name!r} run={self.run.run_id[:8]} {self.status}{extra}>"


def start_background(agent: Agent, run_kwargs: dict[str, Any]) -> RunHandle:
    """``agent.start()``: a new run as a task on the running loop; its handle at once.

    Raises:
        AgentRunningError: no event loop is running (in a script use ``agent.run_sync()``).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise AgentRunningError(
            f"agent {agent.name!r}: start() needs a running event loop (a notebook cell, or "
            "inside `async def`); in a plain script use agent.run_sync() or asyncio.run(agent.run())"
        ) from None
    timeout = run_kwargs.pop("timeout", None)
    cleanup_timeout = run_kwargs.pop("cleanup_timeout", 10.0)
    unknown = sorted(set(run_kwargs) - {"start", "initial_context"})
    if unknown:
        raise ConfigurationError(
            f"start({unknown[0]}=...): unknown argument; start() takes what run() takes: timeout, "
            "cleanup_timeout, start, initial_context"
        )
    run, starts = agent.new_run(timeout, cleanup_timeout, run_kwargs.get("start"), run_kwargs.get("initial_context"))

    async def execute() -> RunResult:
        await check_executors(agent)
        return await run.execute(timeout, cleanup_timeout, starts)

    task = loop.create_task(execute(), name=f"fluffy:{agent.name}:{run.run_id[:8]}")
    handle = RunHandle(agent, task, run)
    hook = _hooks.run_started
    if hook is not None:
        try:
            hook(handle)
        except Exception:
            log.exception("fluffy_nb: the run_started hook failed")
    return handle


def run_blocking(agent: Agent, run_kwargs: dict[str, Any]) -> RunResult:
    """``agent.run_sync()``: run to the end and return the :class:`RunResult`, blocking the caller.

    Where no loop runs (scripts) this is ``asyncio.run(agent.run(...))``. Inside a running
    loop (a notebook cell) it nests with nest-asyncio; such a blocked loop cannot deliver a
    person's answer, so a state asking a person raises :class:`BlockingRunError` at once.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(agent.run(**run_kwargs))
    import nest_asyncio

    nest_asyncio.apply(loop)
    timeout = run_kwargs.pop("timeout", None)
    cleanup_timeout = run_kwargs.pop("cleanup_timeout", 10.0)
    run, starts = agent.new_run(timeout, cleanup_timeout, run_kwargs.get("start"), run_kwargs.get("initial_context"))
    run.blocking = True
    try:
        return loop.run_until_complete(run.execute(timeout, cleanup_timeout, starts))
    except StateFailedError as exc:
        if isinstance(exc.__cause__, BlockingRunError):
            raise exc.__cause__ from None
        raise


def blocking_error(agent: Agent, state: str, prompt: str) -> BlockingRunError:
    """The error raised when a ``run_sync`` inside a running loop asks a person."""
    return BlockingRunError(
        f"state {state!r} of agent {agent.name!r} asks a person ({prompt!r}), but agent.run_sync() "
        "blocks the running event loop, so no answer could ever arrive. Use `await agent.run()`, "
        "`handle = agent.start()` (then `await handle`), or the %%fluffy cell magic instead"
    )
