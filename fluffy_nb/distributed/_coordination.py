"""Cluster-scope coordination: limits shared by every notebook and script using one cluster.

An agent's own primitives (``add_state_coordination``) live in its process. When several
notebooks share a cluster and a resource (one database, one licence server), the limit must
live where they all meet: the Dask scheduler. :class:`ClusterSemaphore` is an engine *gate*
(``agent.add_gate(state, gate)``) backed by ``distributed.Semaphore``, so at most
``max_leases`` runs of the gated states hold it at once across every client of the cluster.

Every acquisition is a round trip to the scheduler, so the state shows as BLOCKED briefly
even when a lease is free. A lease whose holder died (kernel killed) is freed by Dask after
``distributed.scheduler.locks.lease-timeout`` (30 s by default). Releases are sent in the
background; ``await gate.drain()`` waits for them (e.g. before a script exits).

Example:
    >>> db = executor.semaphore("warehouse-db", max_leases=2)  # doctest: +SKIP
    >>> agent.add_gate("load", db)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from distributed import Semaphore

from ..engine._errors import ConfigurationError, CoordinationError


@dataclass(frozen=True)
class ClusterSemaphoreStatistics:
    """What one gate object did (its own acquisitions; other clients are not counted)."""

    name: str
    max_leases: int
    held: int
    waiting: int
    acquisitions: int
    peak_held: int


class ClusterSemaphore:
    """At most ``max_leases`` holders across the whole Dask cluster (an engine gate).

    Args:
        client: An asynchronous ``distributed.Client``.
        name: The cluster-wide name; every gate of that name shares the leases.
        max_leases: Concurrent holders allowed (1: a cluster-wide mutex).
        wait_timeout: Give up waiting with ``CoordinationError`` after this many seconds.
    """

    def __init__(self, client: Any, name: str, max_leases: int = 1, wait_timeout: float | None = None) -> None:
        if isinstance(max_leases, bool) or not isinstance(max_leases, int) or max_leases < 1:
            raise ConfigurationError(f"ClusterSemaphore({name!r}, max_leases={max_leases!r}): must be >= 1")
        self.name = name
        self.max_leases = max_leases
        self.wait_timeout = wait_timeout
        self._sem = Semaphore(max_leases=max_leases, name=name, scheduler_rpc=client.scheduler, loop=client.loop)
        self._held: dict[str, int] = {}
        self._waiting = 0
        self._acquisitions = 0
        self._peak = 0
        self._releases: set[asyncio.Task[Any]] = set()

    def try_acquire(self, owner: str) -> bool:
        """Never succeeds without waiting: a lease is always a scheduler round trip."""
        return False

    async def acquire(self, owner: str) -> None:
        """Wait for a lease for ``owner``.

        Raises:
            CoordinationError: ``wait_timeout`` passed without a free lease.
        """
        self._waiting += 1
        try:
            await self._sem
            ok = await self._sem.acquire(timeout=self.wait_timeout)
        finally:
            self._waiting -= 1
        if not ok:
            raise CoordinationError(
                f"state {owner!r} waited {self.wait_timeout}s for cluster semaphore {self.name!r} "
                f"({self.max_leases} lease(s), all held elsewhere on the cluster); raise wait_timeout or max_leases"
            )
        self._held[owner] = self._held.get(owner, 0) + 1
        self._acquisitions += 1
        self._peak = max(self._peak, sum(self._held.values()))

    def release(self, owner: str) -> None:
        """Give ``owner``'s lease back (sent to the scheduler in the background)."""
        count = self._held.get(owner, 0)
        if count == 0:
            return
        if count == 1:
            del self._held[owner]
        else:
            self._held[owner] = count - 1
        task = asyncio.get_running_loop().create_task(self._sem.release())
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def drain(self) -> None:
        """Wait until every release has reached the scheduler."""
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)

    def statistics(self) -> ClusterSemaphoreStatistics:
        """This gate's holders, waiters and counts."""
        return ClusterSemaphoreStatistics(self.name, self.max_leases, sum(self._held.values()), self._waiting,
                                          self._acquisitions, self._peak)

    def __repr__(self) -> str:
        return (f"ClusterSemaphore({self.name!r}, max_leases={self.max_leases}, "
                f"held_here={sum(self._held.values())}, waiting_here={self._waiting})")
