"""What the notebook layer plugs into ``engine._hooks`` while the extension is loaded.

* ``run_started``: ``handle = agent.start()`` in a cell shows a live view of the run under
  that cell (runs the ``%%fluffy`` magic starts are ``managed``: it shows its own view).
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


def uninstall() -> None:
    """Unplug (``%unload_ext fluffy_nb``); leaves hooks others set alone."""
    if _hooks.run_started is on_run_started:
        _hooks.run_started = None
    if _hooks.background_error is on_background_error:
        _hooks.background_error = None
