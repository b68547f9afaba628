"""What a cell shows when the notebook's Stop button interrupts a run: one readable line.

Stop (a kernel interrupt) cancels the task of the cell. A cell that waits for a run ends with
``CancelledError`` (or ``KeyboardInterrupt``) raised from deep inside the engine; IPython would
show the engine's frames. :func:`install` registers an IPython custom exception handler
(``shell.set_custom_exc``) that recognises a fluffy wait in the traceback and shows one line:

* ``await agent.run()`` or a ``%%fluffy NAME --run`` cell: the run was cancelled (its open
  questions withdrawn); the line says whether a checkpoint was kept.
* ``await handle`` of a background run: only the waiting stopped (``RunHandle`` awaits are
  shielded); the line says the run goes on and how to cancel it.

Any other interruption is shown exactly as IPython would.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from ..engine._agent import Agent
from ..engine._handle import RunHandle
from ._magics import BlockingRun

_EXCEPTIONS = (asyncio.CancelledError, KeyboardInterrupt)


class RunInterrupted(Exception):
    """Shown for an interrupted fluffy wait: IPython renders it as its one line, no traceback."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


def _waited_for(tb: TracebackType | None) -> tuple[str, Any] | None:
    """("run", agent) when the cell awaited a run itself, ("handle", handle) for a background run."""
    blocking = BlockingRun.wait.__code__
    shielded = RunHandle.wait.__code__
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self")
        if frame.f_code is shielded and isinstance(owner, RunHandle):
            return "handle", owner
        if frame.f_code is blocking and isinstance(owner, BlockingRun):
            return "run", owner.handle.agent
        if isinstance(owner, Agent) and frame.f_code.co_name == "run":
            return "run", owner
        tb = tb.tb_next
    return None


def _was_waiting_for_a_person(agent: Agent) -> bool:
    """Whether the interruption withdrew a question of the agent's latest run."""
    area = agent.__dict__.get("_fluffy_forms_area")
    prefix = (agent.run_id or "run")[:8]
    forms = getattr(area, "forms", {})
    return any(rid.startswith(prefix) and form.status == "withdrawn" for rid, form in forms.items())


def interrupt_message(tb: TracebackType | None) -> str | None:
    """The one line for an interrupted fluffy wait, or None when the traceback is not one."""
    found = _waited_for(tb)
    if found is None:
        return None
    kind, obj = found
    if kind == "handle":
        name = obj.agent.name
        return (f"stopped waiting for run {name!r}; the run goes on in the background "
                f"(`{name}.handle.cancel()` cancels it)")
    agent = obj
    name = agent.name
    what = "interrupted while waiting for a person" if _was_waiting_for_a_person(agent) else "interrupted"
    if agent.store is not None:
        kept = f"its checkpoint is kept (`await {name}.resume_latest()` continues it)"
    else:
        kept = "it had no checkpoint store, so a new run starts from the beginning"
    return f"run {name!r} {what}; {kept}"


def _handler(shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType | None,
             tb_offset: int | None = None) -> list[str] | None:
    # IPython calls this from run_code and shows nothing itself: show the line, or the usual traceback
    line = interrupt_message(tb)
    if line is None:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset, running_compiled_code=True)
        return None
    shell.showtraceback((RunInterrupted, RunInterrupted(line), None))
    return [line]


def install(shell: Any) -> None:
    """Show interrupted fluffy waits as one line (leaves a handler someone else set alone)."""
    if getattr(shell, "custom_exceptions", ()) in ((), _EXCEPTIONS):
        shell.set_custom_exc(_EXCEPTIONS, _handler)


def uninstall(shell: Any) -> None:
    """Undo :func:`install`."""
    if getattr(shell, "custom_exceptions", ()) == _EXCEPTIONS:
        shell.set_custom_exc((), None)
