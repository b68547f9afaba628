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
    ...     context.set_state("reply", "ok")
    ...     return None
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ._circuit import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerStatistics,
    CircuitOpenError,
    CircuitState,
    _maybe_await,
    _positive,
)
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


class BulkheadFullError(FluffyError, RuntimeError):
    """A bulkhead refused a call: all slots busy and the queue full (or the queue wait timed out)."""


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
        >>> async def charge(ctx):
        ...     ctx.set_state("charged", True)
        >>> agent = Agent("shop")
        >>> _ = agent.add_state("charge", payments.protect(charge))
        >>> asyncio.run(agent.run())["charged"]
        True
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
        >>> booked = []
        >>> def book(what):
        ...     return SagaStep(f"book_{what}", lambda ctx: booked.append(what), lambda ctx: booked.remove(what))
        >>> saga = Saga([book("flight"), book("hotel")])
        >>> agent = Agent("trip")
        >>> _ = agent.add_state("book_trip", saga.as_state())
        >>> _ = asyncio.run(agent.run())
        >>> booked
        ['flight', 'hotel']
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
        >>> async def premium(text):
        ...     raise ConnectionError("quota exceeded")
        >>> def basic(text):
        ...     return {"summary": text[:5]}
        >>> analyse = with_fallbacks(premium, basic, default={"error": "all agents failed"})
        >>> asyncio.run(analyse("hello world"))
        {'summary': 'hello'}
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
