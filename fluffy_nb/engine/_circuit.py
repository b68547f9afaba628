"""The circuit breaker: stop calling what keeps failing, try again after a pause.

Public through ``fluffy_nb.engine.reliability``; see :class:`CircuitBreaker`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ._clock import Clock, SystemClock
from ._errors import ConfigurationError, FluffyError

log = logging.getLogger("fluffy_nb")


class CircuitOpenError(FluffyError, RuntimeError):
    """A circuit breaker refused a call because it is open (or its half-open trials are taken)."""

    def __init__(self, message: str, breaker: str, retry_in: float) -> None:
        super().__init__(message)
        self.breaker = breaker
        self.retry_in = retry_in


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _positive(what: str, value: Any, *, integer: bool = False, zero: bool = False) -> Any:
    bad = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
    if bad or value < 0 or (value == 0 and not zero):
        kind = "a whole number" if integer else "a number"
        raise ConfigurationError(f"{what}={value!r}: must be {kind} {'>= 0' if zero else '> 0'}")
    return value


# -- circuit breaker ------------------------------------------------------------------------------
class CircuitState(StrEnum):
    """Where a breaker is: calls pass (closed), are refused (open), or trial calls pass (half_open)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class CircuitBreakerConfig:
    """Settings of a :class:`CircuitBreaker` (the sister framework's spelling)."""

    failure_threshold: int = 5
    recovery_timeout: float = 30.0
    half_open_max_calls: int = 1
    name: str | None = None


@dataclass(frozen=True)
class CircuitBreakerStatistics:
    """A breaker's state and counters."""

    name: str
    state: CircuitState
    consecutive_failures: int
    calls: int
    successes: int
    failures: int
    rejected: int
    times_opened: int
    half_open_in_flight: int
    retry_in: float


class CircuitBreaker:
    """Stop calling what keeps failing; try again after a pause.

    CLOSED: calls pass; ``failure_threshold`` failures in a row open the circuit. OPEN: calls
    fail fast with :class:`CircuitOpenError` until ``recovery_timeout`` seconds have passed.
    HALF_OPEN: up to ``half_open_max_calls`` trial calls pass at once; when that many succeed the
    circuit closes, any failure opens it again. Cancellation counts as neither.

    Args:
        failure_threshold: Consecutive failures that open the circuit (or a ``CircuitBreakerConfig``).
        recovery_timeout: Seconds the circuit stays open before trial calls are allowed.
        half_open_max_calls: Trial calls allowed (and successes needed) while half open.
        expected_exceptions: Only these count as failures; other exceptions pass through uncounted.
        name: Shown in errors and ``repr``.
        clock: Time source (tests use ``ManualClock``).

    Example:
        >>> breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=10)
        >>> async def fetch():
        ...     async with breaker:
        ...         return await http_get(url)
    """

    def __init__(
        self,
        failure_threshold: int | CircuitBreakerConfig = 5,
        recovery_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        *,
        expected_exceptions: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(failure_threshold, CircuitBreakerConfig):
            cfg = failure_threshold
            failure_threshold, recovery_timeout = cfg.failure_threshold, cfg.recovery_timeout
            half_open_max_calls, name = cfg.half_open_max_calls, name or cfg.name
        self.failure_threshold = _positive("CircuitBreaker(failure_threshold)", failure_threshold, integer=True)
        self.recovery_timeout = float(_positive("CircuitBreaker(recovery_timeout)", recovery_timeout, zero=True))
        self.half_open_max_calls = _positive("CircuitBreaker(half_open_max_calls)", half_open_max_calls,
                                             integer=True)
        self.expected_exceptions = expected_exceptions
        self.name = name or "circuit"
        self.clock: Clock = clock or SystemClock()
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._trials = 0
        self._trial_successes = 0
        self._calls = self._successes = self._failures = self._rejected = self._opened = 0
        self._entered: dict[Any, list[bool]] = {}  # task -> trial flags of its open ``async with`` blocks

    # -- state ------------------------------------------------------------------------------------
    @property
    def state(self) -> CircuitState:
        """The current state (an OPEN breaker past its recovery timeout reads HALF_OPEN)."""
        if self._state is CircuitState.OPEN and self.clock.monotonic() - self._opened_at >= self.recovery_timeout:
            self._state = CircuitState.HALF_OPEN
            self._trials = self._trial_successes = 0
        return self._state

    def is_open(self) -> bool:
        """True while calls are refused outright."""
        return self.state is CircuitState.OPEN

    def _open(self) -> None:
        self._state = CircuitState.OPEN
        self._opened_at = self.clock.monotonic()
        self._opened += 1
        self._trials = self._trial_successes = 0
        log.info("fluffy_nb circuit %r opened after %d consecutive failure(s)", self.name, self._consecutive)

    def reset(self) -> None:
        """Close the circuit and forget the failure streak."""
        self._state = CircuitState.CLOSED
        self._consecutive = self._trials = self._trial_successes = 0

    def _retry_in(self) -> float:
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self.recovery_timeout - (self.clock.monotonic() - self._opened_at))

    # -- admission and outcome -----------------------------------------------------------------------
    def _admit(self) -> bool:
        """Let one call in (True if it is a half-open trial) or raise CircuitOpenError."""
        state = self.state
        if state is CircuitState.CLOSED:
            self._calls += 1
            return False
        if state is CircuitState.HALF_OPEN and self._trials < self.half_open_max_calls:
            self._trials += 1
            self._calls += 1
            return True
        self._rejected += 1
        retry_in = self._retry_in()
        why = (f"open after {self._consecutive} consecutive failure(s); next trial in {retry_in:.3g}s"
               if state is CircuitState.OPEN else
               f"half open with all {self.half_open_max_calls} trial call(s) in flight")
        raise CircuitOpenError(
            f"circuit {self.name!r} refused the call: {why}. Handle CircuitOpenError (fallback, "
            "retry later) or tune failure_threshold/recovery_timeout", self.name, retry_in)

    def record_success(self, *, _trial: bool | None = None) -> None:
        """Count a successful call (a half-open trial success may close the circuit)."""
        self._successes += 1
        self._consecutive = 0
        trial = self._state is CircuitState.HALF_OPEN if _trial is None else _trial
        if trial and self._state is CircuitState.HALF_OPEN:
            self._trial_successes += 1
            self._trials = max(0, self._trials - 1)
            if self._trial_successes >= self.half_open_max_calls:
                self.reset()
        elif self._state is CircuitState.OPEN and _trial is None:
            self.reset()  # a manual success report (patterns-async-workflows style) closes it

    def record_failure(self, *, _trial: bool | None = None) -> None:
        """Count a failed call; opens the circuit at the threshold, or from half open at once."""
        self._failures += 1
        self._consecutive += 1
        if self._state is CircuitState.HALF_OPEN or (
            self._state is CircuitState.CLOSED and self._consecutive >= self.failure_threshold
        ):
            self._open()

    def _abandon(self, trial: bool) -> None:
        if trial and self._state is CircuitState.HALF_OPEN:
            self._trials = max(0, self._trials - 1)

    async def __aenter__(self) -> CircuitBreaker:
        trial = self._admit()
        self._entered.setdefault(asyncio.current_task(), []).append(trial)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        task = asyncio.current_task()
        stack = self._entered.get(task)
        trial = stack.pop() if stack else False
        if not stack:
            self._entered.pop(task, None)
        self._outcome(exc, trial)
        return False

    def _outcome(self, exc: BaseException | None, trial: bool) -> None:
        if exc is None:
            self.record_success(_trial=trial)
        elif isinstance(exc, self.expected_exceptions) and not isinstance(exc, asyncio.CancelledError):
            self.record_failure(_trial=trial)
        else:
            self._abandon(trial)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` (sync or async) through the breaker."""
        trial = self._admit()
        try:
            result = await _maybe_await(fn(*args, **kwargs))
        except BaseException as exc:
            self._outcome(exc, trial)
            raise
        self._outcome(None, trial)
        return result

    def protect(self, func: Callable[..., Any] | None = None, *, fallback: Callable[..., Any] | None = None) -> Any:
        """Wrap a (state) function so every call goes through the breaker.

        Args:
            func: The function; also usable as ``@breaker.protect`` or ``@breaker.protect(fallback=f)``.
            fallback: Called with the same arguments instead when the circuit refuses the call
                (graceful degradation); without it, :class:`CircuitOpenError` is raised.
        """
        if func is None:
            return lambda f: self.protect(f, fallback=fallback)

        @functools.wraps(func)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return await self.call(func, *args, **kwargs)
            except CircuitOpenError:
                if fallback is None:
                    raise
                return await _maybe_await(fallback(*args, **kwargs))

        return guarded

    def get_failure_rate(self) -> float:
        """Failed calls / finished calls so far (0.0 before any)."""
        done = self._successes + self._failures
        return self._failures / done if done else 0.0

    def statistics(self) -> CircuitBreakerStatistics:
        """A frozen snapshot of state and counters."""
        state = self.state
        return CircuitBreakerStatistics(self.name, state, self._consecutive, self._calls, self._successes,
                                        self._failures, self._rejected, self._opened,
                                        self._trials if state is CircuitState.HALF_OPEN else 0, self._retry_in())

    def __repr__(self) -> str:
        s = self.statistics()
        extra = f" retry_in={s.retry_in:.3g}s" if s.state is CircuitState.OPEN else ""
        return (f"<CircuitBreaker {s.name!r} {s.state.value} failures={s.consecutive_failures}/"
                f"{self.failure_threshold} calls={s.calls} rejected={s.rejected}{extra}>")
