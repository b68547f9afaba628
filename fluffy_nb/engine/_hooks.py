"""Extension points the upper layers fill in, so the engine never imports them.

The notebook layer registers display renderers (``_repr_mimebundle_`` of engine objects)
and the top-level package the DataFrame builder behind ``CheckpointHistory.to_pandas()`` and
the in-memory store periodic checkpoints default to; the engine only looks here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: type -> function(obj, include, exclude) returning a MIME bundle, or None to fall back
renderers: dict[type, Callable[..., dict[str, Any] | None]] = {}

#: fn(history) -> DataFrame: what ``CheckpointHistory.to_pandas()`` uses (set by the top-level package)
to_pandas: Callable[[Any], Any] | None = None

#: observer(agent) called by ``Agent.run()`` just before its RunStarted event (monitors subscribe here)
run_observers: list[Callable[[Any], Any]] = []

#: called as fn() in the task of a state attempt about to run on a remote executor (Dask); each
#: returns a picklable context manager entered around the body on the worker (the trace context
#: of ``fluffy_nb.otel``), or None. After the body, ``obj.finished(info)`` is called, if it has one,
#: in the orchestrator with what the worker reported (``worker`` address, ``pid``)
remote_context: list[Callable[[], Any]] = []

#: called as fn(handle, exc) when a background run (agent.start()) fails; None: it is logged
background_error: Callable[[Any, BaseException], Any] | None = None

#: called as fn(handle) synchronously inside agent.start() (the notebook shows the run there)
run_started: Callable[[Any], Any] | None = None

#: fn() -> a new in-memory checkpoint store: where ``Agent(checkpoint_interval=...)`` without a
#: ``store=`` keeps its checkpoints so they can be restored (set by the top-level package)
memory_store: Callable[[], Any] | None = None

#: called as fn(agent) -> responder or None, to pick who answers human_in_the_loop when the
#: agent has no explicit responder (the notebook layer returns a widget responder in a kernel)
default_responder: Callable[[Any], Any] | None = None


def mimebundle(obj: Any, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """The richest registered bundle for ``obj``; ``text/plain`` repr when none applies."""
    for cls in type(obj).__mro__:
        render = renderers.get(cls)
        if render is not None:
            bundle = render(obj, include, exclude)
            if bundle:
                return bundle
    return {"text/plain": repr(obj)}
