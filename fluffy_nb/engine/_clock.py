"""Injectable time: the engine asks a Clock instead of calling time/asyncio directly.

Tests swap in :class:`ManualClock` to make timeouts, retries, rate limits and TTLs
deterministic without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """What the engine needs from time."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps shown to people)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``asyncio.sleep``."""

    # the functions themselves, not methods calling them: the engine reads the clock several
    # times per transition, and a Python frame per read was a measurable part of it
    monotonic = staticmethod(time.monotonic)
    """Seconds on the system monotonic clock."""

    time = staticmethod(time.time)
    """Wall-clock seconds since the epoch."""

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when told to, for deterministic tests.

    Example:
        >>> clock = ManualClock()
        >>> # in a test: task sleeping 5s wakes only after ``await clock.advance(5)``
    """

    def __init__(self, start: float = 0.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        """The current fake time."""
        return self._now

    def time(self) -> float:
        """The fake wall time (monotonic time plus a fixed offset)."""
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        """Wait until :meth:`advance` moves time past ``now + seconds``."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock right now."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def wait_for_sleepers(self, count: int = 1) -> None:
        """Yield to the loop until at least ``count`` tasks sleep on this clock."""
        for _ in range(10_000):
            if self.sleepers >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"expected {count} sleepers, have {self.sleepers}")

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in order, and let them run."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, when)
            if not fut.done():
                fut.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
        self._now = target
        for _ in range(5):
            await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now}, sleepers={self.sleepers})"
