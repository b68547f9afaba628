"""fluffy_nb: the Fluffy Agent Flow workflow engine, built for Jupyter.

``from fluffy_nb import Agent, Context, StateResult`` gives the engine; ``%load_ext fluffy_nb``
adds the ``%%fluffy`` magic and live views in a notebook.
"""

from __future__ import annotations

from functools import partial as _partial
from typing import TYPE_CHECKING, Any

from . import engine as _engine
from .engine import __all__ as _engine_all
from .engine import _hooks
from .engine.coordination import *  # noqa: F403
from .engine.coordination import __all__ as _coordination_all
from .engine.monitoring import *  # noqa: F403
from .engine.monitoring import __all__ as _monitoring_all
from .engine.reliability import *  # noqa: F403
from .engine.reliability import __all__ as _reliability_all
from .store import *  # noqa: F403
from .store import __all__ as _store_all
from .store._memory import INTERVAL_KEEP_LAST as _INTERVAL_KEEP_LAST

if TYPE_CHECKING:
    from .engine import *  # noqa: F403 - the engine's public API is ours
else:  # a star import would read the lazy names too, importing pydantic with the package
    globals().update({n: getattr(_engine, n) for n in _engine_all if n not in _engine.LAZY_EXPORTS})

__version__ = "0.1.0"


def _history_to_pandas(history: Any) -> Any:
    """``CheckpointHistory.to_pandas()``: the notebook layer builds it, imported on first use."""
    from .notebook._history import history_frame

    return history_frame(history)


# The top-level package sits above both layers, so it may wire them: the engine asks this
# hook for DataFrames and never imports pandas itself.
if _hooks.to_pandas is None:
    _hooks.to_pandas = _history_to_pandas
# checkpoint_interval without store= (the spec's only form) keeps its checkpoints here
if _hooks.memory_store is None:
    _hooks.memory_store = _partial(MemoryStore, keep_last=_INTERVAL_KEEP_LAST)  # noqa: F405 - from .store

__all__ = [
    *_engine_all,
    *_coordination_all,
    *_monitoring_all,
    *_store_all,
    *_reliability_all,
    "DaskExecutor",  # noqa: F405 - resolved lazily by __getattr__ below
    "__version__", "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    """``fluffy_nb.DaskExecutor`` without importing dask, ``Checkpoint`` without pydantic, until used."""
    if name in _engine.LAZY_EXPORTS:
        return getattr(_engine, name)
    if name == "DaskExecutor":
        from .distributed import DaskExecutor

        return DaskExecutor
    raise AttributeError(f"module 'fluffy_nb' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext fluffy_nb``: register the magics and display formatters."""
    from .notebook import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext fluffy_nb``."""
    from .notebook import unload_ipython_extension as _unload

    _unload(ipython)
