"""fluffy_nb.notebook: the Jupyter layer (magics, live views, widget human-in-the-loop forms).

Importing it registers the rich displays of engine objects (``engine._hooks.renderers``) and
the history-frame factory (``agent.history()`` returns a DataFrame). ``%load_ext fluffy_nb``
also registers the magics, the ``%%fluffy ... --run`` input transformer, the live view of
``agent.start()`` runs, the background-error display, the widget human-in-the-loop responder,
an Agent's display that each run's end redraws, and the resending of final pictures at the end
of a cell (``_finals``).
"""

from __future__ import annotations

from typing import Any

from ._display import register as _register_displays
from ._explorer import Explorer, explore
from ._figures import resource_figure, timeline_figure
from ._graphview import graph_figure, graph_markdown, graph_mermaid, graph_svg
from ._history import diff_rows, fork_row, history_frame, restore_row, state_metrics_frame
from ._liveview import LiveView, view_of
from ._magics import FluffyMagics, start_run
from ._runs import compare_runs, store_runs_frame
from ._tracker import RunTracker

__all__ = [
    "Explorer",
    "FluffyMagics",
    "LiveView",
    "RunTracker",
    "compare_runs",
    "diff_rows",
    "explore",
    "fork_row",
    "graph_figure",
    "graph_markdown",
    "graph_mermaid",
    "graph_svg",
    "history_frame",
    "load_ipython_extension",
    "resource_figure",
    "restore_row",
    "start_run",
    "state_metrics_frame",
    "store_runs_frame",
    "timeline_figure",
    "unload_ipython_extension",
    "view_of",
]

_register_displays()


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext fluffy_nb``: magics, transformer, live views of background runs, widget forms."""
    from ..engine._agent import Agent
    from . import _hooks_impl, _interrupt
    from ._display import show_agent
    from ._finals import resend
    from ._magics import await_blocking_runs

    ipython.register_magics(FluffyMagics)
    if await_blocking_runs not in ipython.input_transformers_post:
        ipython.input_transformers_post.append(await_blocking_runs)
    _hooks_impl.install()
    _interrupt.install(ipython)
    if resend not in ipython.events.callbacks["post_run_cell"]:
        ipython.events.register("post_run_cell", resend)
    ipython.display_formatter.ipython_display_formatter.for_type(Agent, show_agent)
    try:
        from ._hitl_form import install as _install_forms
    except ImportError:  # the widget responder is optional
        return
    _install_forms()


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext fluffy_nb``: remove what :func:`load_ipython_extension` added."""
    from ..engine._agent import Agent
    from . import _hooks_impl, _interrupt
    from ._finals import resend
    from ._magics import await_blocking_runs

    if await_blocking_runs in ipython.input_transformers_post:
        ipython.input_transformers_post.remove(await_blocking_runs)
    magics = ipython.magics_manager.magics
    for kind in ("line", "cell"):
        magics[kind].pop("fluffy", None)
    _hooks_impl.uninstall()
    _interrupt.uninstall(ipython)
    if resend in ipython.events.callbacks["post_run_cell"]:
        ipython.events.unregister("post_run_cell", resend)
    ipython.display_formatter.ipython_display_formatter.type_printers.pop(Agent, None)
