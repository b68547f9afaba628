"""fluffy_nb: the Fluffy Agent Flow workflow engine, built for Jupyter.

``from fluffy_nb import Agent, Context, StateResult`` gives the engine; ``%load_ext fluffy_nb``
adds the ``%%fluffy`` magic and live views in a notebook.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import engine as _engine
from .engine import __all__ as _engine_all
from .engine import _hooks

if TYPE_CHECKING:
    from .engine import *  # noqa: F403 - the engine's public API is ours
    from .engine.coordination import *  # noqa: F403
    from .engine.monitoring import *  # noqa: F403
    from .engine.reliability import *  # noqa: F403
    from .store import *  # noqa: F403
else:  # a star import would read the lazy names too, importing pydantic with the package
    globals().update({n: getattr(_engine, n) for n in _engine_all if n not in _engine.LAZY_EXPORTS})

#: public names of modules imported on first use (``fluffy_nb.SQLiteStore`` imports the stores,
#: ``fluffy_nb.PrimitiveType`` the coordination primitives):
#: a notebook or script that never touches them does not pay for them at ``import fluffy_nb``
#: (each list is the module's ``__all__``, which a test checks)
LAZY_MODULES: dict[str, tuple[str, ...]] = {
    "fluffy_nb.engine.coordination": (
        "Barrier", "Coordinator", "DeadlockDetector", "DeadlockRecord", "DetectorStatistics", "Lease", "Mutex",
        "Primitive", "PrimitiveStatistics", "PrimitiveType", "Quota", "RateLimitStrategy", "RateLimiter",
        "RateLimiterStatistics", "ResourceAllocation", "Semaphore", "create_coordinated_agent", "enhance_agent"),
    "fluffy_nb.engine.monitoring": (
        "AgentMetrics", "MetricAggregation", "MetricType", "MonitorStatistics", "MonitoringError",
        "RealTimeMetrics", "SamplerStatistics", "UsageSampler", "agent_monitor", "current_monitor"),
    "fluffy_nb.engine.reliability": (
        "Bulkhead", "BulkheadFullError", "BulkheadStatistics", "CircuitBreaker", "CircuitBreakerConfig",
        "CircuitBreakerStatistics", "CircuitOpenError", "CircuitState", "Saga", "SagaStatistics", "SagaStep",
        "with_fallbacks"),
    "fluffy_nb.store": (
        "CheckpointDiff", "CheckpointHistory", "CheckpointInfo", "CheckpointStore", "MemoryStore", "RunInfo",
        "SQLiteStore", "diff_checkpoints"),
}
_LAZY_NAMES = {name: module for module, names in LAZY_MODULES.items() for name in names}

__version__ = "0.1.0"


def _history_to_pandas(history: Any) -> Any:
    """``CheckpointHistory.to_pandas()``: the notebook layer builds it, imported on first use."""
    from .notebook._history import history_frame

    return history_frame(history)


def _memory_store() -> Any:
    """A new ``MemoryStore`` keeping the last ``INTERVAL_KEEP_LAST`` checkpoints of each run (the
    stores are imported when the first one is needed)."""
    from .store import MemoryStore
    from .store._memory import INTERVAL_KEEP_LAST

    return MemoryStore(keep_last=INTERVAL_KEEP_LAST)


# The top-level package sits above both layers, so it may wire them: the engine asks this
# hook for DataFrames and never imports pandas itself.
if _hooks.to_pandas is None:
    _hooks.to_pandas = _history_to_pandas
# checkpoint_interval without store= (the spec's only form) keeps its checkpoints here
if _hooks.memory_store is None:
    _hooks.memory_store = _memory_store

__all__ = [
    *_engine_all,
    *(name for names in LAZY_MODULES.values() for name in names),
    "DaskExecutor",  # noqa: F405 - resolved lazily by __getattr__ below
    "__version__", "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    """The names of :data:`LAZY_MODULES`, ``Checkpoint`` (pydantic) and ``DaskExecutor`` (dask),
    imported on first use."""
    module = _LAZY_NAMES.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    if name in _engine.LAZY_EXPORTS:
        return getattr(_engine, name)
    if name == "DaskExecutor":
        from .distributed import DaskExecutor

        return DaskExecutor
    raise AttributeError(f"module 'fluffy_nb' has no attribute {name!r}")


def __dir__() -> list[str]:
    """Every public name, loaded or not (so tab completion offers the lazy ones)."""
    return sorted({*globals(), *__all__})


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext fluffy_nb``: register the magics and display formatters."""
    from .notebook import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext fluffy_nb``."""
    from .notebook import unload_ipython_extension as _unload

    _unload(ipython)
