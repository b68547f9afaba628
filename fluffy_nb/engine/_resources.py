"""Resource requirements and the pool that admits states against them.

(Minimal admission; see issue 5 for priority ordering, preemption, quotas and sampling.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Flag, auto
from typing import Any

from ._errors import ConfigurationError, ResourceError
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
    """What one run of a state needs from the pool while it runs."""

    cpu_units: float = 1.0
    memory_mb: float = 100.0
    io_weight: float = 1.0
    network_weight: float = 1.0
    gpu_units: float = 0.0
    priority: Priority = Priority.NORMAL
    timeout: float | None = None
    resource_types: ResourceType = ResourceType.ALL
    preemptible: bool = False

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


class ResourcePool:
    """Finite amounts of CPU, memory, I/O, network and GPU that states are admitted against."""

    def __init__(
        self,
        total_cpu: float = 4.0,
        total_memory: float = 8192.0,
        total_io: float = 100.0,
        total_network: float = 100.0,
        total_gpu: float = 0.0,
        enable_preemption: bool = False,
        enable_quotas: bool = False,
    ) -> None:
        self.totals = {
            ResourceType.CPU: float(total_cpu),
            ResourceType.MEMORY: float(total_memory),
            ResourceType.IO: float(total_io),
            ResourceType.NETWORK: float(total_network),
            ResourceType.GPU: float(total_gpu),
        }
        self.used = dict.fromkeys(self.totals, 0.0)
        self.enable_preemption = enable_preemption
        self.enable_quotas = enable_quotas
        self._allocations: dict[str, dict[ResourceType, float]] = {}
        self._changed = asyncio.Event()

    def check(self, state: str, req: ResourceRequirements) -> None:
        """Raise ``ResourceError`` if ``req`` could never fit in this pool."""
        for rtype, amount in req.amounts().items():
            if amount > self.totals[rtype]:
                raise ResourceError(
                    f"state {state!r} asks for {amount:g} {rtype.name} but the pool has only "
                    f"{self.totals[rtype]:g}; lower the request or enlarge the ResourcePool"
                )

    def try_acquire(self, owner: str, req: ResourceRequirements) -> bool:
        """Take ``req`` for ``owner`` if it fits now; never waits."""
        amounts = req.amounts()
        if any(self.used[t] + a > self.totals[t] + 1e-9 for t, a in amounts.items()):
            return False
        for t, a in amounts.items():
            self.used[t] += a
        self._allocations[owner] = amounts
        return True

    async def acquire(self, owner: str, req: ResourceRequirements, priority: int = 1) -> None:
        """Wait until ``req`` fits, then take it for ``owner``."""
        while not self.try_acquire(owner, req):
            self._changed.clear()
            await self._changed.wait()

    def release(self, owner: str) -> None:
        """Give back what ``owner`` holds (no-op if nothing)."""
        amounts = self._allocations.pop(owner, None)
        if amounts:
            for t, a in amounts.items():
                self.used[t] -= a
            self._changed.set()

    def get_state_allocations(self) -> dict[str, dict[ResourceType, float]]:
        """What each running state holds."""
        return {k: dict(v) for k, v in self._allocations.items()}

    def bind_preemption(self, callback: Any) -> None:
        """Called by the agent: ``callback(owner)`` cancels and requeues a running state."""
        self._preempt = callback
