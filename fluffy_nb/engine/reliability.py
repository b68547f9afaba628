"""Reliability building blocks users port from the patterns docs: circuit breaker, bulkhead, saga.

- :class:`CircuitBreaker` stops calling something that keeps failing (CLOSED -> OPEN), lets a few
  trial calls through after ``recovery_timeout`` (HALF_OPEN), and closes again when they succeed.
- :class:`Bulkhead` caps how many calls run at once and how many may queue; past the queue it
  rejects at once instead of letting work pile up.
- :class:`Saga` runs steps in order and, when one fails, runs the compensations of the steps
  that completed, newest first, then re-raises the original error.
- :func:`with_fallbacks` is graceful degradation: try the premium call, then the basic one...

Each works as ``async with``, as ``await x.call(fn, *args)``, or wraps a state function
(``breaker.protect(state_func)``); each has ``statistics()`` and a readable ``repr``. Time comes from
an injectable clock, so tests use ``ManualClock``.

Example:
    >>> breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=30)
    >>> @breaker.protect
    ... async def call_api(context):
    ...     context.set_state("reply", await fetch())
    ...     return "parse"
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ._clock import Clock, SystemClock
from ._errors import ConfigurationError, FluffyError

__all__ = [
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadStatistics",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerStatistics",
    "CircuitOpenError",
    "CircuitState",
    "Saga",
    "SagaStatistics",
    "SagaStep",
    "with_fallbacks",
]

log = logging.getLogger("fluffy_nb")


class CircuitOpenError(FluffyError, RuntimeError):
    """A circuit breaker refused a call because it is open (or its half-open trials are taken)."""

    def __init__(self, message: str, breaker: str, retry_in: float) -> None:
        super().__init__(message)
        self.breaker = breaker
        self.retry_in = retry_in


class BulkheadFullError(FluffyError, RuntimeError):
    """A bulkhead refused a call: all slots busy and the queue full (or the queue wait timed out)."""


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


# -- bulkhead -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BulkheadStatistics:
    """A bulkhead's occupancy and counters."""

    name: str
    active: int
    waiting: int
    max_concurrent: int
    max_queue: int
    accepted: int
    rejected: int
    peak_active: int


class Bulkhead:
    """At most ``max_concurrent`` calls at once; ``max_queue`` more may wait (first come, first served).

    A call arriving when all slots are busy and the queue is full fails at once with
    :class:`BulkheadFullError`, so one overloaded dependency cannot tie up every task.

    Args:
        max_concurrent: Calls allowed to run at the same time.
        max_queue: Calls allowed to wait for a slot (0: reject whenever all slots are busy).
        queue_timeout: Seconds a queued call waits before it is rejected (None: as long as it takes).
        name: Shown in errors and ``repr``.

    Example:
        >>> payments = Bulkhead(max_concurrent=2, max_queue=10, name="payments")
        >>> agent.add_state("charge", payments.protect(charge))
    """

    def __init__(self, max_concurrent: int, max_queue: int = 0, *, queue_timeout: float | None = None,
                 name: str | None = None) -> None:
        self.max_concurrent = _positive("Bulkhead(max_concurrent)", max_concurrent, integer=True)
        self.max_queue = _positive("Bulkhead(max_queue)", max_queue, integer=True, zero=True)
        self.queue_timeout = None if queue_timeout is None else float(
            _positive("Bulkhead(queue_timeout)", queue_timeout, zero=True))
        self.name = name or "bulkhead"
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._accepted = self._rejected = self._peak = 0

    @property
    def active(self) -> int:
        """Calls holding a slot now."""
        return self._active

    @property
    def waiting(self) -> int:
        """Calls queued for a slot now."""
        return sum(1 for f in self._waiters if not f.done())

    def _take(self) -> None:
        self._active += 1
        self._accepted += 1
        self._peak = max(self._peak, self._active)

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if there is room; else raise BulkheadFullError."""
        if self._active < self.max_concurrent and not self.waiting:
            self._take()
            return
        if self.waiting >= self.max_queue:
            self._rejected += 1
            raise BulkheadFullError(
                f"bulkhead {self.name!r} is full: {self._active}/{self.max_concurrent} running and "
                f"{self.waiting}/{self.max_queue} queued; retry later, or raise max_concurrent/max_queue"
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            if self.queue_timeout is None:
                await fut
            else:
                await asyncio.wait_for(asyncio.shield(fut), self.queue_timeout)
        except BaseException as exc:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed to us as we gave up: pass it on
            else:
                fut.cancel()
            if isinstance(exc, TimeoutError):
                self._rejected += 1
                raise BulkheadFullError(
                    f"bulkhead {self.name!r}: waited {self.queue_timeout}s in the queue without getting one "
                    f"of its {self.max_concurrent} slot(s); raise queue_timeout or max_concurrent"
                ) from None
            raise

    def release(self) -> None:
        """Give a slot back (to the first queued call, if any)."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                self._accepted += 1  # the slot passes on; active stays the same
                fut.set_result(None)
                return
        self._active -= 1

    async def __aenter__(self) -> Bulkhead:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> bool:
        self.release()
        return False

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` (sync or async) inside the bulkhead."""
        async with self:
            return await _maybe_await(fn(*args, **kwargs))

    def protect(self, func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        """Wrap a (state) function so every call goes through the bulkhead."""

        @functools.wraps(func)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            return await self.call(func, *args, **kwargs)

        return guarded

    def statistics(self) -> BulkheadStatistics:
        """A frozen snapshot of occupancy and counters."""
        return BulkheadStatistics(self.name, self._active, self.waiting, self.max_concurrent, self.max_queue,
                                  self._accepted, self._rejected, self._peak)

    def __repr__(self) -> str:
        return (f"<Bulkhead {self.name!r} active={self._active}/{self.max_concurrent} "
                f"waiting={self.waiting}/{self.max_queue} rejected={self._rejected}>")


# -- saga -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SagaStatistics:
    """What the last run of a :class:`Saga` did."""

    name: str
    steps: tuple[str, ...]
    completed: tuple[str, ...]
    failed_step: str | None
    compensated: tuple[str, ...]
    compensation_errors: tuple[tuple[str, str], ...]


@dataclass
class SagaStep:
    """One step of a :class:`Saga`: ``action(*args)`` and the ``compensation(*args)`` that undoes it."""

    name: str
    action: Callable[..., Any]
    compensation: Callable[..., Any] | None = None
    executed: bool = False
    compensated: bool = False


class Saga:
    """Run steps in order; on failure undo the completed ones (newest first) and re-raise.

    Every action and compensation is called with the arguments given to :meth:`run` (typically the
    state's ``context``); sync and async functions both work. A compensation that fails is logged,
    recorded in ``compensation_errors`` and does not stop the others. The original error is
    re-raised with a note listing what was compensated. One run at a time per Saga object.

    Example:
        >>> saga = Saga([SagaStep("book_flight", book_flight, cancel_flight),
        ...              SagaStep("book_hotel", book_hotel, cancel_hotel)])
        >>> agent.add_state("book_trip", saga.as_state(next_state="confirm"))
    """

    def __init__(self, steps: Iterable[SagaStep] = (), name: str | None = None) -> None:
        self.steps: list[SagaStep] = []
        self.name = name or "saga"
        self.completed: list[str] = []
        self.compensated: list[str] = []
        self.compensation_errors: dict[str, BaseException] = {}
        self.failed_step: str | None = None
        for step in steps:
            if not isinstance(step, SagaStep):
                raise ConfigurationError(f"Saga(steps=...): {step!r} is not a SagaStep(name, action, compensation)")
            self._append(step)

    def _append(self, step: SagaStep) -> None:
        if any(s.name == step.name for s in self.steps):
            raise ConfigurationError(f"saga {self.name!r} already has a step {step.name!r}; step names must differ")
        if not callable(step.action) or (step.compensation is not None and not callable(step.compensation)):
            raise ConfigurationError(f"saga step {step.name!r}: action and compensation must be callables")
        self.steps.append(step)

    def add_step(self, name: str, action: Callable[..., Any],
                 compensation: Callable[..., Any] | None = None) -> Saga:
        """Append a step; returns the saga (chainable)."""
        self._append(SagaStep(name, action, compensation))
        return self

    async def run(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Run every step; returns ``{step name: action result}``.

        Raises:
            Exception: the failing step's own error, after compensating the completed steps.
        """
        self.completed, self.compensated, self.compensation_errors = [], [], {}
        self.failed_step = None
        for step in self.steps:
            step.executed = step.compensated = False
        results: dict[str, Any] = {}
        done: list[SagaStep] = []
        for step in self.steps:
            try:
                results[step.name] = await _maybe_await(step.action(*args, **kwargs))
            except (Exception, asyncio.CancelledError) as exc:
                self.failed_step = step.name
                await self._compensate(done, args, kwargs)
                undone = ", ".join(self.compensated) or "nothing"
                broken = f"; compensation failed for {sorted(self.compensation_errors)}" \
                    if self.compensation_errors else ""
                exc.add_note(f"saga {self.name!r} failed at step {step.name!r}; compensated: {undone}{broken}")
                raise
            step.executed = True
            done.append(step)
            self.completed.append(step.name)
        return results

    async def _compensate(self, done: list[SagaStep], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        for step in reversed(done):
            if step.compensation is None:
                continue
            try:
                await _maybe_await(step.compensation(*args, **kwargs))
            except Exception as exc:
                log.warning("fluffy_nb saga %r: compensation of step %r failed: %s", self.name, step.name, exc)
                self.compensation_errors[step.name] = exc
                continue
            step.compensated = True
            self.compensated.append(step.name)

    def as_state(self, next_state: str | list[str] | None = None) -> Callable[..., Awaitable[Any]]:
        """A state function ``async def (context)`` that runs the saga, then returns ``next_state``."""

        async def run_saga(context: Any) -> Any:
            await self.run(context)
            return next_state

        run_saga.__name__ = run_saga.__qualname__ = self.name.replace(" ", "_")
        return run_saga

    def statistics(self) -> SagaStatistics:
        """The last run: completed, compensated, failed step and failed compensations."""
        return SagaStatistics(
            self.name, tuple(s.name for s in self.steps), tuple(self.completed), self.failed_step,
            tuple(self.compensated),
            tuple((k, f"{type(v).__name__}: {v}") for k, v in self.compensation_errors.items()),
        )

    def __repr__(self) -> str:
        tail = f" failed_at={self.failed_step!r} compensated={self.compensated}" if self.failed_step else ""
        return f"<Saga {self.name!r} steps={[s.name for s in self.steps]} completed={self.completed}{tail}>"


# -- graceful degradation ---------------------------------------------------------------------------
def with_fallbacks(*funcs: Callable[..., Any], default: Any = ...,
                   exceptions: type[BaseException] | tuple[type[BaseException], ...] = Exception) -> Any:
    """An async function trying ``funcs`` in order with the same arguments; the first success wins.

    Args:
        funcs: The premium implementation first, then cheaper fallbacks (sync or async).
        default: Returned when every function failed (omit it to re-raise the last error, with
            notes naming every failure).
        exceptions: Which errors move on to the next function (others propagate at once).

    Example:
        >>> analyse = with_fallbacks(premium_agent, basic_agent, default={"error": "all agents failed"})
        >>> result = await analyse(text)
    """
    if not funcs or not all(callable(f) for f in funcs):
        raise ConfigurationError("with_fallbacks(*funcs): pass one or more callables, the preferred one first")

    async def degrading(*args: Any, **kwargs: Any) -> Any:
        errors: list[tuple[str, BaseException]] = []
        for fn in funcs:
            try:
                return await _maybe_await(fn(*args, **kwargs))
            except exceptions as exc:
                errors.append((getattr(fn, "__name__", repr(fn)), exc))
        if default is not ...:
            return default
        last = errors[-1][1]
        for name, err in errors:
            last.add_note(f"with_fallbacks: {name} failed: {type(err).__name__}: {err}")
        raise last

    degrading.__name__ = degrading.__qualname__ = getattr(funcs[0], "__name__", "with_fallbacks")
    return degrading
