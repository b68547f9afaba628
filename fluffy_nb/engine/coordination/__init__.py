"""Coordination: rate limiters, mutex/semaphore/barrier/lease/quota, deadlock detection.

Every :class:`~fluffy_nb.engine.Agent` has ``add_state_rate_limit``,
``add_state_coordination``, ``get_coordination_status`` and ``reset_coordination``;
``create_coordinated_agent``/``enhance_agent`` are the spec's entry points.

Example:
    >>> from fluffy_nb.engine.coordination import create_coordinated_agent, PrimitiveType
    >>> agent = create_coordinated_agent("etl")
    >>> _ = agent.add_state_coordination("heavy", PrimitiveType.SEMAPHORE, max_count=3)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._barrier import Barrier
    from ._coordinator import Coordinator, ResourceAllocation, create_coordinated_agent, enhance_agent
    from ._deadlock import DeadlockDetector, DeadlockRecord, DetectorStatistics
    from ._primitives import Lease, Mutex, Primitive, PrimitiveStatistics, PrimitiveType, Semaphore
    from ._quota import Quota
    from ._rate_limit import RateLimiter, RateLimiterStatistics, RateLimitStrategy

#: where each public name is defined: imported on first use, so ``import fluffy_nb`` does not pay for
#: the primitives, the rate limiter and the deadlock detector (their records are dataclasses, ~5-8 ms)
#: until an agent adds coordination or a name is read (a test checks this against ``__all__``)
_MODULES = {
    "Barrier": "_barrier",
    "Coordinator": "_coordinator", "ResourceAllocation": "_coordinator",
    "create_coordinated_agent": "_coordinator", "enhance_agent": "_coordinator",
    "DeadlockDetector": "_deadlock", "DeadlockRecord": "_deadlock", "DetectorStatistics": "_deadlock",
    "Lease": "_primitives", "Mutex": "_primitives", "Primitive": "_primitives",
    "PrimitiveStatistics": "_primitives", "PrimitiveType": "_primitives", "Semaphore": "_primitives",
    "Quota": "_quota",
    "RateLimiter": "_rate_limit", "RateLimiterStatistics": "_rate_limit", "RateLimitStrategy": "_rate_limit",
}


def __getattr__(name: str) -> Any:
    """The public names, each imported from its module on first use."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'fluffy_nb.engine.coordination' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Every public name, loaded or not."""
    return sorted({*globals(), *__all__})

__all__ = [
    "Barrier",
    "Coordinator",
    "DeadlockDetector",
    "DeadlockRecord",
    "DetectorStatistics",
    "Lease",
    "Mutex",
    "Primitive",
    "PrimitiveStatistics",
    "PrimitiveType",
    "Quota",
    "RateLimitStrategy",
    "RateLimiter",
    "RateLimiterStatistics",
    "ResourceAllocation",
    "Semaphore",
    "create_coordinated_agent",
    "enhance_agent",
]
