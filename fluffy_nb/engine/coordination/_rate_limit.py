"""Rate limiters: token bucket, sliding window, leaky bucket and fixed window.

A limiter is a gate (``try_acquire(owner)``, ``await acquire(owner)``, ``release(owner)``):
each state run takes one admission. Waiters are served first come, first served, and
sleep on the injectable clock exactly until their admission is due.

``max_rate`` is always admissions per second. For the window strategies the limit per
window is ``max_rate * window_size`` (``max_rate=100, window_size=60`` allows 6000 a minute).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .._clock import Clock, SystemClock
from .._errors import ConfigurationError


class RateLimitStrategy(str, Enum):
    """How a rate limit counts admissions."""

    TOKEN_BUCKET = "token_bucket"
    """Tokens refill at ``max_rate``/s up to ``burst_size``; each run takes one."""
    SLIDING_WINDOW = "sliding_window"
    """At most ``max_rate * window_size`` runs in any ``window_size`` seconds."""
    LEAKY_BUCKET = "leaky_bucket"
    """Runs leave at a steady ``max_rate``/s; up to ``burst_size`` may go back to back."""
    FIXED_WINDOW = "fixed_window"
    """At most ``max_rate * window_size`` runs per window; the count resets at window edges."""


@dataclass(frozen=True, slots=True)
class RateLimiterStatistics:
    """Counters of one rate limiter."""

    name: str
    strategy: str
    max_rate: float
    admitted: int
    admitted_at_once: int
    delayed: int
    waiting: int
    total_delay: float
    max_delay: float


class RateLimiter:
    """Admit at most ``max_rate`` runs per second (see :class:`RateLimitStrategy`).

    Args:
        name: Its name (usually the state's).
        max_rate: Admissions per second.
        strategy: How to count.
        burst_size: Token/leaky bucket capacity (default: one second's worth, at least 1,
            for the token bucket; 1 for the leaky bucket, i.e. evenly spaced).
        window_size: Window length in seconds for the window strategies.
        clock: Time source (the agent's clock).
    """

    is_budget = True
    """Consumed, never held: the engine passes it before the resource pool (see ``_runner``)."""

    def __init__(self, name: str, max_rate: float, strategy: RateLimitStrategy = RateLimitStrategy.TOKEN_BUCKET,
                 burst_size: float | None = None, window_size: float = 1.0, *, clock: Clock | None = None) -> None:
        if isinstance(max_rate, bool) or not isinstance(max_rate, (int, float)) or not max_rate > 0:
            raise ConfigurationError(f"rate limit {name!r}: max_rate={max_rate!r} must be a number > 0 (per second)")
        if isinstance(window_size, bool) or not isinstance(window_size, (int, float)) or not window_size > 0:
            raise ConfigurationError(f"rate limit {name!r}: window_size={window_size!r} must be seconds > 0")
        if burst_size is not None and (isinstance(burst_size, bool) or not isinstance(burst_size, (int, float))
                                       or burst_size < 1):
            raise ConfigurationError(f"rate limit {name!r}: burst_size={burst_size!r} must be a number >= 1 or None")
        try:
            strategy = RateLimitStrategy(strategy)
        except ValueError:
            raise ConfigurationError(f"rate limit {name!r}: strategy={strategy!r} is not one of "
                                     f"{[s.name for s in RateLimitStrategy]}") from None
        self.name = name
        self.max_rate = float(max_rate)
        self.strategy = strategy
        self.window_size = float(window_size)
        self.clock: Clock = clock or SystemClock()
        if strategy is RateLimitStrategy.TOKEN_BUCKET:
            self.burst_size = float(burst_size) if burst_size is not None else max(1.0, self.max_rate)
        elif strategy is RateLimitStrategy.LEAKY_BUCKET:
            self.burst_size = float(burst_size) if burst_size is not None else 1.0
        else:
            self.burst_size = float(burst_size) if burst_size is not None else 0.0
        self.limit = max(1, math.floor(self.max_rate * self.window_size + 1e-9))
        self._queue = asyncio.Lock()
        self._waiting = 0
        self.reset()

    def reset(self) -> None:
        """Back to a fresh limiter (full bucket, empty windows) with zeroed counters."""
        now = self.clock.monotonic()
        self._tokens = self.burst_size  # token bucket
        self._stamp = now
        self._level = 0.0  # leaky bucket: queued work, drains at max_rate
        self._log: deque[float] = deque()  # sliding window admissions
        self._window = math.floor(now / self.window_size)  # fixed window index
        self._count = 0
        self._admitted = self._at_once = self._delayed = 0
        self._delay_total = self._delay_max = 0.0

    # -- the four strategies: _wait(now) is 0 when one admission may pass now ---------------------
    def _refresh(self, now: float) -> None:
        s = self.strategy
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        if s is RateLimitStrategy.TOKEN_BUCKET:
            self._tokens = min(self.burst_size, self._tokens + elapsed * self.max_rate)
        elif s is RateLimitStrategy.LEAKY_BUCKET:
            self._level = max(0.0, self._level - elapsed * self.max_rate)
        elif s is RateLimitStrategy.SLIDING_WINDOW:
            edge = now - self.window_size
            log = self._log
            while log and log[0] <= edge + 1e-12:
                log.popleft()
        else:
            w = math.floor(now / self.window_size + 1e-9)
            if w != self._window:
                self._window, self._count = w, 0

    def _wait(self, now: float) -> float:
        s = self.strategy
        if s is RateLimitStrategy.TOKEN_BUCKET:
            return 0.0 if self._tokens >= 1.0 - 1e-9 else (1.0 - self._tokens) / self.max_rate
        if s is RateLimitStrategy.LEAKY_BUCKET:
            over = self._level + 1.0 - self.burst_size
            return 0.0 if over <= 1e-9 else over / self.max_rate
        if s is RateLimitStrategy.SLIDING_WINDOW:
            return 0.0 if len(self._log) < self.limit else self._log[0] + self.window_size - now
        return 0.0 if self._count < self.limit else (self._window + 1) * self.window_size - now

    def _take(self, now: float) -> None:
        s = self.strategy
        if s is RateLimitStrategy.TOKEN_BUCKET:
            self._tokens -= 1.0
        elif s is RateLimitStrategy.LEAKY_BUCKET:
            self._level += 1.0
        elif s is RateLimitStrategy.SLIDING_WINDOW:
            self._log.append(now)
        else:
            self._count += 1
        self._admitted += 1

    # -- gate protocol ----------------------------------------------------------------------------
    def try_acquire(self, owner: str = "") -> bool:
        """Admit one run now if the rate allows and nobody waits; never waits."""
        if self._waiting:
            return False
        now = self.clock.monotonic()
        if self.strategy is RateLimitStrategy.TOKEN_BUCKET:  # the common case, inlined
            tokens = self._tokens + (now - self._stamp) * self.max_rate
            self._tokens = tokens = tokens if tokens < self.burst_size else self.burst_size
            self._stamp = now
            if tokens < 1.0 - 1e-9:
                return False
            self._tokens = tokens - 1.0
            self._admitted += 1
            self._at_once += 1
            return True
        self._refresh(now)
        if self._wait(now) > 0.0:
            return False
        self._take(now)
        self._at_once += 1
        return True

    async def acquire(self, owner: str = "") -> None:
        """Wait (first come, first served) until one run may pass, then admit it."""
        if self.try_acquire(owner):
            return
        clock = self.clock
        since = clock.monotonic()
        self._waiting += 1
        try:
            async with self._queue:
                while True:
                    now = clock.monotonic()
                    self._refresh(now)
                    delay = self._wait(now)
                    if delay <= 0.0:
                        self._take(now)
                        break
                    await clock.sleep(delay + 1e-9)
        finally:
            self._waiting -= 1
        waited = clock.monotonic() - since
        self._delayed += 1
        self._delay_total += waited
        self._delay_max = max(self._delay_max, waited)

    def release(self, owner: str = "") -> None:
        """Nothing to give back: an admission is spent once taken."""

    # -- inspection ---------------------------------------------------------------------------------
    def next_admission_in(self) -> float:
        """Seconds until the next admission could pass (0.0: one could pass now)."""
        now = self.clock.monotonic()
        self._refresh(now)
        return max(0.0, self._wait(now))

    def available(self) -> float:
        """Admissions that could pass right now without waiting."""
        now = self.clock.monotonic()
        self._refresh(now)
        s = self.strategy
        if s is RateLimitStrategy.TOKEN_BUCKET:
            return math.floor(self._tokens + 1e-9)
        if s is RateLimitStrategy.LEAKY_BUCKET:
            return max(0, math.floor(self.burst_size - self._level + 1e-9))
        if s is RateLimitStrategy.SLIDING_WINDOW:
            return self.limit - len(self._log)
        return self.limit - self._count

    def status(self) -> dict[str, Any]:
        """What ``get_coordination_status()["rate_limiters"][name]`` shows."""
        return {
            "strategy": self.strategy.value, "max_rate": self.max_rate, "burst_size": self.burst_size,
            "window_size": self.window_size, "available": self.available(), "wait_count": self._waiting,
            "admitted": self._admitted, "delayed": self._delayed,
        }

    def statistics(self) -> RateLimiterStatistics:
        """Counters since creation (or the last reset)."""
        return RateLimiterStatistics(
            name=self.name, strategy=self.strategy.value, max_rate=self.max_rate, admitted=self._admitted,
            admitted_at_once=self._at_once, delayed=self._delayed, waiting=self._waiting,
            total_delay=self._delay_total, max_delay=self._delay_max,
        )

    def __repr__(self) -> str:
        extra = (f" burst={self.burst_size:g}" if self.strategy in (RateLimitStrategy.TOKEN_BUCKET,
                                                                    RateLimitStrategy.LEAKY_BUCKET)
                 else f" window={self.window_size:g}s")
        return (f"<RateLimiter {self.name!r} {self.strategy.name} {self.max_rate:g}/s{extra} "
                f"admitted={self._admitted} waiting={self._waiting}>")
