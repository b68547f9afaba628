"""Quota: a budget consumed per use that refills every ``ttl`` seconds."""

from __future__ import annotations

import asyncio
from typing import Any

from .._clock import Clock
from .._errors import ConfigurationError, CoordinationError
from ._primitives import Primitive, PrimitiveStatistics, PrimitiveType, _check_positive


class Quota(Primitive):
    """A budget consumed per use that refills every ``ttl`` seconds.

    Each pass consumes ``amount`` (default 1 per state run; ``hold(ctx, 10.0)`` or
    ``ResourceAllocation(name, 10.0)`` consume 10). When the budget is spent, users wait for
    the next reset; without a ``ttl`` it never resets and the use fails at once.
    """

    kind = PrimitiveType.QUOTA
    is_budget = True
    """Consumed, never held: the engine passes it before the resource pool (see ``_runner``)."""

    def __init__(self, name: str, quota_limit: float, *, ttl: float | None = None, amount: float = 1.0,
                 wait_timeout: float | None = None, clock: Clock | None = None) -> None:
        super().__init__(name, clock=clock, wait_timeout=wait_timeout)
        self.quota_limit: float = _check_positive(f"Quota({name!r}, quota_limit)", quota_limit,
                                                  allow_none=False) or 0.0
        self.ttl = _check_positive(f"Quota({name!r}, ttl)", ttl)
        self.amount: float = _check_positive(f"Quota({name!r}, amount)", amount, allow_none=False) or 0.0
        if self.amount > self.quota_limit:
            raise ConfigurationError(f"Quota({name!r}): each use consumes amount={amount!r}, more than the whole "
                                     f"quota_limit={quota_limit!r}; lower amount or raise quota_limit")
        self.used = 0.0
        self._consumed_total = 0.0
        self._window_start = self.clock.monotonic()
        self._by_owner: dict[str, float] = {}
        self._queue = asyncio.Lock()
        self._waiting: list[str] = []

    def _roll(self) -> None:
        if self.ttl is None:
            return
        now = self.clock.monotonic()
        if now - self._window_start >= self.ttl:
            periods = int((now - self._window_start) // self.ttl)
            self._window_start += periods * self.ttl
            self.used = 0.0
            self._by_owner.clear()

    @property
    def remaining(self) -> float:
        """What is left of the budget in this period."""
        self._roll()
        return max(0.0, self.quota_limit - self.used)

    def _amount(self, amount: float | None) -> float:
        a = self.amount if amount is None else float(amount)
        if a > self.quota_limit:
            raise CoordinationError(f"quota {self.name!r}: asking for {a:g} but the whole quota_limit is "
                                    f"{self.quota_limit:g}; ask for less or raise quota_limit")
        return a

    def _consume(self, owner: str, a: float) -> None:
        self.used += a
        self._consumed_total += a
        self._by_owner[owner] = self._by_owner.get(owner, 0.0) + a
        self._acquisitions += 1

    def try_acquire(self, owner: str, amount: float | None = None) -> bool:
        """Consume ``amount`` if the budget has it and nobody waits; never waits."""
        a = self._amount(amount)
        self._roll()
        if self._queue.locked() or self.used + a > self.quota_limit + 1e-9:
            return False
        self._consume(owner, a)
        return True

    async def acquire(self, owner: str, amount: float | None = None) -> None:
        """Consume ``amount``, waiting (FIFO) for the next reset if the budget is spent.

        Raises:
            CoordinationError: the quota has no ttl (never resets), or ``wait_timeout`` passed.
        """
        if self.try_acquire(owner, amount):
            return
        a = self._amount(amount)
        clock = self.clock
        since = clock.monotonic()
        self._contended += 1
        self._waiting.append(owner)
        self._peak_waiting = max(self._peak_waiting, len(self._waiting))
        try:
            async with self._queue:
                while True:
                    self._roll()
                    if self.used + a <= self.quota_limit + 1e-9:
                        self._consume(owner, a)
                        break
                    if self.ttl is None:
                        raise CoordinationError(
                            f"{owner!r} needs {a:g} of quota {self.name!r} but only {self.remaining:g} of "
                            f"{self.quota_limit:g} is left and it never resets (no ttl); give it a ttl or a "
                            "larger quota_limit")
                    now = clock.monotonic()
                    wake = self._window_start + self.ttl
                    if self.wait_timeout is not None:
                        if now - since >= self.wait_timeout:
                            raise self._timeout_error(owner, now - since)
                        wake = min(wake, since + self.wait_timeout)
                    await clock.sleep(max(wake - now, 0.0))
        finally:
            self._waiting.remove(owner)
        self._waited(since)

    def release(self, owner: str) -> None:
        """Nothing is given back: a quota is consumed, and refills at the next reset."""

    def _why_blocked(self) -> str:
        return f"{self.used:g} of {self.quota_limit:g} already used this period"

    def _fix_hint(self) -> str:
        return "Raise quota_limit or wait_timeout, or use less per run"

    def status(self) -> dict[str, Any]:
        """State (available/exhausted), users this period, wait count, used and remaining."""
        remaining = self.remaining
        resets_in = None if self.ttl is None else max(0.0, self._window_start + self.ttl - self.clock.monotonic())
        return {
            "type": self.kind.value, "state": "exhausted" if remaining < self.amount else "available",
            "owners": list(self._by_owner), "wait_count": len(self._waiting), "waiters": list(self._waiting),
            "quota_limit": self.quota_limit, "used": self.used, "remaining": remaining, "resets_in": resets_in,
            "timeouts": self._timeouts,
        }

    def statistics(self) -> PrimitiveStatistics:
        """Counters since creation (or the last reset); ``consumed`` is the all-time total."""
        return PrimitiveStatistics(
            name=self.name, kind=self.kind.value, acquisitions=self._acquisitions, contended=self._contended,
            waiting=len(self._waiting), peak_waiting=self._peak_waiting, holders=len(self._by_owner),
            peak_holders=0, expirations=0, timeouts=self._timeouts, deadlocks=0, total_wait_time=self._wait_total,
            max_wait_time=self._wait_max, consumed=self._consumed_total,
        )

    def reset(self) -> None:
        """Refill the budget now and zero counters (waiters then proceed)."""
        self.used = 0.0
        self._consumed_total = 0.0
        self._by_owner.clear()
        self._window_start = self.clock.monotonic()
        self._reset_counters()

    def __repr__(self) -> str:
        ttl = "never resets" if self.ttl is None else f"resets every {self.ttl:g}s"
        return f"<Quota {self.name!r} used {self.used:g}/{self.quota_limit:g} ({ttl}) waiting={len(self._waiting)}>"
