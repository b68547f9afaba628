"""What the notebook layer plugs into ``engine._hooks`` while the extension is loaded.

* ``run_started``: ``handle = agent.start()`` in a cell shows a live view of the run under
  that cell (runs the ``%%fluffy`` magic starts are ``managed``: it shows its own view).
* ``run_observers``: ``await agent.run()`` in a cell shows the same live view under that cell.
* ``background_error``: a failing background run shows its error, with the traceback, in
  its live view; without one, under the cell that started it. Never only a log line.
"""

from __future__ import annotations

import contextlib
import traceback
import weakref
from collections.abc import Iterator
from typing import Any

from ..engine import _hooks

_managed: weakref.WeakSet[Any] = weakref.WeakSet()


@contextlib.contextmanager
def managed(agent: Any) -> Iterator[None]:
    """While inside, ``agent.start()`` does not get an automatic live view (the caller shows one)."""
    _managed.add(agent)
    try:
        yield
    finally:
        _managed.discard(agent)


def on_run_started(handle: Any) -> None:
    """``_hooks.run_started``: show a live view of a run started with ``agent.start()``."""
    agent = handle.agent
    if agent in _managed:
        return
    from ._liveview import LiveView

    LiveView(agent).display().attach(handle)


def on_run_begun(agent: Any) -> None:
    """``_hooks.run_observers``: ``await agent.run()`` in a cell shows the same live view as ``--run``.

    Runs that already have a view (``agent.start()``, the magics, ``%fluffy monitor``) are left
    alone; the cell's own output shows the RunResult, so the view does not repeat it.
    """
    from ._liveview import LiveView, view_of

    if agent in _managed or not _in_kernel() or _inside_a_state():
        return
    view = view_of(agent)
    if view is not None and view.handle is not None and not view.handle.done():
        return  # a background run's view follows this run already
    run = agent.latest_run
    if run is None or (view is not None and view.tracker.run is run and not view.finished):
        return
    LiveView(agent, show_result=False).display().follow_run(run)


def _inside_a_state() -> bool:
    """Whether this code runs in a state's body (a child agent's run): its parent's view shows it."""
    import asyncio

    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    coro = task.get_coro() if task is not None else None
    return getattr(coro, "__qualname__", "").endswith("Scheduler._branch")


def _in_kernel() -> bool:
    """Whether a Jupyter kernel (not plain IPython in a terminal) runs this code."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def on_background_error(handle: Any, exc: BaseException) -> None:
    """``_hooks.background_error``: show the failure in the run's view, or under its cell."""
    from ._liveview import view_of

    view = view_of(handle.agent)
    if view is not None and view.handle is handle:
        view.finish(exc)
        return
    from IPython.display import display

    text = "".join(traceback.format_exception(exc))
    display({"text/plain": f"background run of agent {handle.agent.name!r} failed:\n{text}"}, raw=True)


def install() -> None:
    """Plug in (``%load_ext fluffy_nb``)."""
    _hooks.run_started = on_run_started
    _hooks.background_error = on_background_error
    if on_run_begun not in _hooks.run_observers:
        _hooks.run_observers.append(on_run_begun)


def uninstall() -> None:
    """Unplug (``%unload_ext fluffy_nb``); leaves hooks others set alone."""
    if _hooks.run_started is on_run_started:
        _hooks.run_started = None
    if _hooks.background_error is on_background_error:
        _hooks.background_error = None
    if on_run_begun in _hooks.run_observers:
        _hooks.run_observers.remove(on_run_begun)
