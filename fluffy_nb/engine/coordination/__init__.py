"""Coordination: rate limiters, mutex/semaphore/barrier/lease/quota, deadlock detection.

Every :class:`~fluffy_nb.engine.Agent` has ``add_state_rate_limit``,
``add_state_coordination``, ``get_coordination_status`` and ``reset_coordination``;
``create_coordinated_agent``/``enhance_agent`` are the spec's entry points.

Example:
    >>> from fluffy_nb.engine.coordination import create_coordinated_agent, PrimitiveType
    >>> agent = create_coordinated_agent("etl")
    >>> _ = agent.add_state_coordination("heavy", PrimitiveType.SEMAPHORE, max_count=3)
"""

from ._barrier import Barrier
from ._coordinator import Coordinator, ResourceAllocation, create_coordinated_agent, enhance_agent
from ._deadlock import DeadlockDetector, DeadlockRecord, DetectorStatistics
from ._primitives import Lease, Mutex, Primitive, PrimitiveStatistics, PrimitiveType, Semaphore
from ._quota import Quota
from ._rate_limit import RateLimiter, RateLimiterStatistics, RateLimitStrategy

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
