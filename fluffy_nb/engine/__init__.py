"""fluffy_nb.engine: the pure-asyncio Fluffy Agent Flow engine.

Layering: this package imports only the standard library, pydantic, psutil and networkx.
It never imports IPython, ipywidgets, plotly or pandas (a test enforces it); the notebook
layer observes the engine through its events and display hooks (``_hooks``).

Import cost: ``import fluffy_nb.engine`` loads neither pydantic nor networkx. The checkpoint
model (pydantic) is imported when the first checkpoint is made or loaded, or when one of
:data:`LAZY_EXPORTS` is first read from this package; networkx when deadlock detection
first runs (a test guards both). Coordination, run snapshots, checkpoint history and the standard
modules only some paths need (uuid, random, json, difflib) also load on first use, and the event
records are plain slotted classes rather than dataclasses (``tests/test_layering.py`` lists what must
stay unloaded).
"""

from typing import TYPE_CHECKING, Any

from ._agent import Agent, StateResult
from ._clock import Clock, ManualClock, SystemClock
from ._context import Context
from ._errors import (
    AgentRunningError,
    BlockingRunError,
    CheckpointError,
    ConfigurationError,
    CoordinationConflictError,
    CoordinationError,
    DeadlockError,
    DependencyCycleError,
    DependencyNotSatisfiedError,
    DependencyTimeoutError,
    DuplicateStateError,
    FluffyError,
    FluffyWarning,
    HumanInputError,
    HumanTimeoutError,
    InvalidStateResultError,
    MaxStepsExceededError,
    ResourceError,
    RoutedError,
    RunTimeoutError,
    SerializationError,
    StateFailedError,
    StateNotFoundError,
    StateTimeoutError,
    TypedDataError,
)
from ._events import EventBus
from ._executor import Executor, LocalExecutor
from ._handle import RunHandle
from ._hitl import HumanLoopStatistics, HumanRequest, Responder
from ._logging import disable_logging, enable_logging
from ._map import MapCounts, Send
from ._policies import DependencyConfig, DependencyLifecycle, DependencyType, RetryPolicy
from ._requirements import PoolStatistics, ResourceRequirements, ResourceType, UsageStats
from ._resources import ResourcePool
from ._responders import ConsoleResponder, ProgrammaticResponder, ScriptedResponder
from ._result import RunResult
from ._state import StateBuilder, StateMetadata, state
from ._status import AgentStatus, Priority, StateStatus
from ._typed import TypedContextData, register_type

if TYPE_CHECKING:
    from ._checkpoint import FORMAT_VERSION, Checkpoint, HumanAnswerRecord

#: public names defined with the pydantic checkpoint model, imported on first use
LAZY_EXPORTS = ("Checkpoint", "FORMAT_VERSION", "HumanAnswerRecord")


def __getattr__(name: str) -> Any:
    """``Checkpoint``, ``HumanAnswerRecord`` and ``FORMAT_VERSION``, importing pydantic on first use."""
    if name in LAZY_EXPORTS:
        from . import _checkpoint

        value = getattr(_checkpoint, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fluffy_nb.engine' has no attribute {name!r}")


__all__ = [
    "Agent",
    "AgentRunningError",
    "AgentStatus",
    "BlockingRunError",
    "Checkpoint",
    "CheckpointError",
    "Clock",
    "ConfigurationError",
    "ConsoleResponder",
    "Context",
    "CoordinationConflictError",
    "CoordinationError",
    "DeadlockError",
    "DependencyConfig",
    "DependencyCycleError",
    "DependencyLifecycle",
    "DependencyNotSatisfiedError",
    "DependencyTimeoutError",
    "DependencyType",
    "DuplicateStateError",
    "EventBus",
    "Executor",
    "FORMAT_VERSION",
    "FluffyError",
    "FluffyWarning",
    "HumanAnswerRecord",
    "HumanInputError",
    "HumanLoopStatistics",
    "HumanRequest",
    "HumanTimeoutError",
    "InvalidStateResultError",
    "LocalExecutor",
    "ManualClock",
    "MapCounts",
    "MaxStepsExceededError",
    "PoolStatistics",
    "Priority",
    "ProgrammaticResponder",
    "ResourceError",
    "ResourcePool",
    "ResourceRequirements",
    "ResourceType",
    "Responder",
    "RetryPolicy",
    "RoutedError",
    "RunHandle",
    "RunResult",
    "RunTimeoutError",
    "ScriptedResponder",
    "Send",
    "SerializationError",
    "StateBuilder",
    "StateFailedError",
    "StateMetadata",
    "StateNotFoundError",
    "StateResult",
    "StateStatus",
    "StateTimeoutError",
    "SystemClock",
    "TypedContextData",
    "TypedDataError",
    "UsageStats",
    "disable_logging",
    "enable_logging",
    "register_type",
    "state",
]
