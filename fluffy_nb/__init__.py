"""fluffy_nb: the Fluffy Agent Flow workflow engine, built for Jupyter.

``from fluffy_nb import Agent, Context, StateResult`` gives the engine; ``%load_ext fluffy_nb``
adds the ``%%fluffy`` magic and live views in a notebook.
"""

from __future__ import annotations

from typing import Any

from .engine import *  # noqa: F403 - the engine's public API is ours
from .engine import __all__ as _engine_all
from .engine.coordination import *  # noqa: F403
from .engine.coordination import __all__ as _coordination_all
from .engine.monitoring import *  # noqa: F403
from .engine.monitoring import __all__ as _monitoring_all
from .store import *  # noqa: F403
from .store import __all__ as _store_all

__version__ = "0.1.0"

__all__ = [*_engine_all, *_coordination_all, *_monitoring_all, *_store_all, "__version__", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext fluffy_nb``: register the magics and display formatters."""
    from .notebook import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext fluffy_nb``."""
    from .notebook import unload_ipython_extension as _unload

    _unload(ipython)
