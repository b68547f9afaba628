"""Coordination: rate limiters, mutex/semaphore/barrier/lease/quota, deadlock detection.

(Filled in by issue 5.)
"""

__all__: list[str] = []
