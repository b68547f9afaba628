"""Final pictures that reach the saved notebook even when a later cell is running.

A run started in one cell (``agent.start()``, ``%%fluffy NAME --background``) usually ends while
another cell runs (``await handle``). ipykernel 7 stamps every message with the parent request of
the context that sent it, so the run's final ``update_display_data`` (the live view turned into its
static picture, the defining cell's graph redrawn, a forms area turned into its records) names the
cell that STARTED the run. JupyterLab applies it anyway; nbclient (``jupyter nbconvert --execute``,
papermill, nbval) reads only the messages of the cell it is executing and drops it, so the saved
notebook kept the starting snapshot ("idle · 0/N states") and a widget that needs a CDN.

:func:`update_final` sends such an update and remembers it with the request it was sent under;
:func:`resend` (IPython's ``post_run_cell`` event, registered by ``%load_ext fluffy_nb``) sends it
again from the cell now ending when that cell is a different request. An ``update_display_data``
replaces every output with its display id, whichever cell asked, so the starting cell's output
becomes the finished picture. :func:`forget` drops a remembered update a later live one replaced.
"""

from __future__ import annotations

from typing import Any

__all__ = ["forget", "resend", "update_final"]

#: display id -> (handle, what to show, update keyword arguments, request id it was sent under)
_pending: dict[str, tuple[Any, Any, dict[str, Any], str | None]] = {}


def _request_id() -> str | None:
    """The id of the request the current context's messages answer (None outside a kernel)."""
    from IPython import get_ipython

    get_parent = getattr(getattr(get_ipython(), "kernel", None), "get_parent", None)
    if get_parent is None:
        return None
    try:
        parent = get_parent()
    except Exception:  # a kernel whose get_parent needs a channel, or has no parent yet
        return None
    header = parent.get("header") if isinstance(parent, dict) else None
    return header.get("msg_id") if isinstance(header, dict) else None


def update_final(handle: Any, obj: Any, **kwargs: Any) -> None:
    """``handle.update(obj, **kwargs)`` now, and again from the next cell to end if that is a
    different request (see the module docstring)."""
    handle.update(obj, **kwargs)
    display_id = getattr(handle, "display_id", None)
    if display_id is not None:
        _pending[display_id] = (handle, obj, kwargs, _request_id())


def forget(handle: Any) -> None:
    """Do not resend ``handle``'s final update: a newer live display replaced it."""
    display_id = getattr(handle, "display_id", None)
    if display_id is not None:
        _pending.pop(display_id, None)


def resend(*_: Any) -> None:
    """Send each remembered final update again from the current cell, if it was sent under another
    request (the ``post_run_cell`` callback; the updates are then forgotten)."""
    if not _pending:
        return
    now = _request_id()
    updates = list(_pending.values())
    _pending.clear()
    if now is None:
        return
    for handle, obj, kwargs, sent_under in updates:
        if sent_under != now:
            handle.update(obj, **kwargs)
