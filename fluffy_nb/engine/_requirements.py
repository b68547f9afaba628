"""What a state asks of a resource pool, and what a pool reports: :class:`ResourceType`,
:class:`ResourceRequirements`, :class:`UsageStats`, :class:`PoolStatistics`. The pool that
admits states against requirements is ``_resources.py``'s."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Flag, auto

from ._errors import ConfigurationError
from ._status import Priority


class ResourceType(Flag):
    """Kinds of resource a state can ask for."""

    NONE = 0
    CPU = auto()
    MEMORY = auto()
    IO = auto()
    NETWORK = auto()
    GPU = auto()
    ALL = CPU | MEMORY | IO | NETWORK | GPU


@dataclass(frozen=True)
class ResourceRequirements:
    """What one run of a state needs from the pool while it runs.

    Args:
        cpu_units: CPU cores.
        memory_mb: Memory in MB.
        io_weight: I/O priority: among waiting states of the same priority level, the one with
            more ``io_weight + network_weight`` is admitted first. A weight, not a capacity: it
            never makes a state wait (the pool's ``total_io`` only scales its usage stats).
        network_weight: Network priority (see ``io_weight``).
        gpu_units: GPUs.
        priority: Admission priority when states wait for the pool (higher first).
        timeout: Seconds one attempt of the state may take.
        resource_types: Which of the amounts above count (default: all).
        preemptible: A waiting state of higher priority may cancel and requeue this one when
            the pool has ``enable_preemption`` (default True, as in the spec, where
            ``enable_preemption=True`` alone preempts; False: never preempt this state).
    """

    cpu_units: float = 1.0
    memory_mb: float = 100.0
    io_weight: float = 1.0
    network_weight: float = 1.0
    gpu_units: float = 0.0
    priority: Priority = Priority.NORMAL
    timeout: float | None = None
    resource_types: ResourceType = ResourceType.ALL
    preemptible: bool = True

    def __post_init__(self) -> None:
        for name in ("cpu_units", "memory_mb", "io_weight", "network_weight", "gpu_units"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigurationError(f"ResourceRequirements({name}={v!r}): must be a number >= 0")

    def amounts(self) -> dict[ResourceType, float]:
        """The amount asked per resource type (only the types in ``resource_types``)."""
        all_amounts = {
            ResourceType.CPU: float(self.cpu_units),
            ResourceType.MEMORY: float(self.memory_mb),
            ResourceType.IO: float(self.io_weight),
            ResourceType.NETWORK: float(self.network_weight),
            ResourceType.GPU: float(self.gpu_units),
        }
        return {t: a for t, a in all_amounts.items() if t in self.resource_types and a > 0}


@dataclass(frozen=True, slots=True)
class UsageStats:
    """Usage of one resource type (``pool.get_usage_stats()[ResourceType.CPU]``)."""

    total: float
    current_usage: float
    peak_usage: float
    available: float
    utilization: float
    waiting: int
    """How many waiting states ask for this type."""


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """Counters of a :class:`ResourcePool` since it was made (or :meth:`ResourcePool.reset_statistics`)."""

    admitted: int
    admitted_at_once: int
    waited: int
    waiting: int
    running: int
    peak_waiting: int
    preemptions: int
    rejected: int
    total_wait_time: float
    max_wait_time: float
