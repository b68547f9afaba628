"""Coordination primitives: Mutex, Semaphore, Lease, Barrier and Quota.

Each primitive is a *gate* the engine understands (``try_acquire(owner) -> bool``,
``await acquire(owner)``, ``release(owner)``) and can also be held inside a state
(``async with primitive.hold(ctx): ...``). Waiting is FIFO; time (TTLs, wait timeouts,
quota resets) goes through an injectable clock so tests are deterministic. Waits on
Mutex/Semaphore/Lease are reported to a :class:`DeadlockDetector` when one is attached.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .._clock import Clock, SystemClock
from .._errors import ConfigurationError, CoordinationError


class PrimitiveType(str, Enum):
    """Kinds of coordination primitive ``add_state_coordination`` can attach to a state."""

    MUTEX = "mutex"
    SEMAPHORE = "semaphore"
    BARRIER = "barrier"
    LEASE = "lease"
    QUOTA = "quota"


@dataclass(frozen=True, slots=True)
class PrimitiveStatistics:
    """Counters of one primitive (fields that do not apply to a kind stay 0)."""

    name: str
    kind: str
    acquisitions: int
    contended: int
    waiting: int
    peak_waiting: int
    holders: int
    peak_holders: int
    expirations: int
    timeouts: int
    deadlocks: int
    total_wait_time: float
    max_wait_time: float
    consumed: float = 0.0


def _check_positive(what: str, value: Any, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{what}={value!r}: must be a number > 0" + (" or None" if allow_none else ""))
    return float(value)


async def _sleep_until(clock: Clock, deadline: float) -> None:
    await clock.sleep(max(deadline - clock.monotonic(), 0.0))


async def _race(fut: asyncio.Future[Any], clock: Clock, seconds: float) -> None:
    """Wait until ``fut`` is done or ``seconds`` passed on ``clock`` (whichever first)."""
    sleeper = asyncio.ensure_future(_sleep_until(clock, clock.monotonic() + seconds))
    try:
        await asyncio.wait({fut, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()


class Primitive:
    """Common parts: name, clock, counters, the ``hold`` context manager."""

    kind: PrimitiveType

    def __init__(self, name: str, *, clock: Clock | None = None, wait_timeout: float | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{type(self).__name__}(name={name!r}): needs a non-empty name")
        self.name = name
        self.clock: Clock = clock or SystemClock()
        self.wait_timeout = _check_positive(f"{type(self).__name__}({name!r}, wait_timeout)", wait_timeout)
        self.detector: Any = None
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._acquisitions = self._contended = self._peak_waiting = self._peak_holders = 0
        self._expirations = self._timeouts = self._deadlocks = 0
        self._wait_total = self._wait_max = 0.0

    def _waited(self, since: float) -> None:
        d = self.clock.monotonic() - since
        self._wait_total += d
        self._wait_max = max(self._wait_max, d)

    def _timeout_error(self, owner: str, waited: float) -> CoordinationError:
        self._timeouts += 1
        return CoordinationError(
            f"{owner!r} waited {waited:g}s for {self.kind.value} {self.name!r} (wait_timeout={self.wait_timeout:g}); "
            f"{self._why_blocked()}. {self._fix_hint()}"
        )

    def _why_blocked(self) -> str:
        return "it stayed unavailable"

    def _fix_hint(self) -> str:
        return "Raise wait_timeout or make the holders finish sooner"

    @contextlib.asynccontextmanager
    async def hold(self, ctx_or_owner: Any, *args: Any) -> AsyncIterator[None]:
        """Hold this primitive inside a state: ``async with prim.hold(ctx): ...``.

        ``ctx_or_owner`` is the state's Context (its state name is the owner) or an owner name.
        """
        owner = ctx_or_owner if isinstance(ctx_or_owner, str) else getattr(ctx_or_owner, "state_name", "")
        if not owner:
            raise ConfigurationError(f"{self.name!r}.hold({ctx_or_owner!r}): pass the state's context or a name")
        await self.acquire(owner, *args)
        try:
            yield
        finally:
            self.release(owner)

    def status(self) -> dict[str, Any]:
        """What ``get_coordination_status()["primitives"][name]`` shows."""
        raise NotImplementedError

    def reset(self) -> None:
        """Drop every holder, fail every waiter with ``CoordinationError``, zero counters."""
        raise NotImplementedError


class _Waiter:
    __slots__ = ("amount", "future", "owner", "since")

    def __init__(self, owner: str, future: asyncio.Future[None], since: float, amount: float = 1.0) -> None:
        self.owner = owner
        self.future = future
        self.since = since
        self.amount = amount


class Semaphore(Primitive):
    """At most ``max_count`` owners hold it at once; others wait first come, first served.

    Args:
        name: Its name (shown in status and errors).
        max_count: How many owners may hold it at once.
        ttl: A hold expires after this many seconds and the next waiter takes over
            (None: holds last until released).
        wait_timeout: A waiter gives up with ``CoordinationError`` after this many seconds.
        clock: Time source (the agent's clock).
    """

    kind = PrimitiveType.SEMAPHORE

    def __init__(self, name: str, max_count: int = 1, *, ttl: float | None = None,
                 wait_timeout: float | None = None, clock: Clock | None = None) -> None:
        super().__init__(name, clock=clock, wait_timeout=wait_timeout)
        if isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 1:
            raise ConfigurationError(f"{type(self).__name__}({name!r}, max_count={max_count!r}): "
                                     "must be a whole number >= 1")
        self.max_count = max_count
        self.ttl = _check_positive(f"{type(self).__name__}({name!r}, ttl)", ttl)
        self._holders: list[list[Any]] = []  # [owner, expires_at or None]
        self._waiters: deque[_Waiter] = deque()

    # -- holders ----------------------------------------------------------------------------
    @property
    def owners(self) -> list[str]:
        """Who holds it now (expired holds are dropped first)."""
        self._expire()
        return [h[0] for h in self._holders]

    def holds(self, owner: str) -> bool:
        """Whether ``owner`` holds it now (a lease may have expired)."""
        return owner in self.owners

    def _deadlock_holders(self) -> list[str]:
        """Holders that will only let go when they finish (a TTL hold expires by itself)."""
        return [h[0] for h in self._holders if h[1] is None]

    def _grant(self, owner: str) -> None:
        expires = None if self.ttl is None else self.clock.monotonic() + self.ttl
        self._holders.append([owner, expires])
        self._acquisitions += 1
        self._peak_holders = max(self._peak_holders, len(self._holders))

    def _admit_waiters(self) -> None:
        while self._waiters and len(self._holders) < self.max_count:
            w = self._waiters.popleft()
            if w.future.done():
                continue
            self._grant(w.owner)
            w.future.set_result(None)

    def _expire(self) -> None:
        if self.ttl is None or not self._holders:
            return
        now = self.clock.monotonic()
        keep = [h for h in self._holders if h[1] is None or h[1] > now]
        if len(keep) != len(self._holders):
            self._expirations += len(self._holders) - len(keep)
            self._holders = keep
            self._admit_waiters()

    # -- gate protocol ----------------------------------------------------------------------------
    def try_acquire(self, owner: str) -> bool:
        """Take it for ``owner`` if free and nobody waits; never waits."""
        if self.ttl is not None:
            self._expire()
        if self._waiters or len(self._holders) >= self.max_count:
            return False
        self._grant(owner)
        return True

    async def acquire(self, owner: str) -> None:
        """Wait (FIFO) until ``owner`` holds it.

        Raises:
            DeadlockError: waiting would close a cycle of owners waiting for each other.
            CoordinationError: ``wait_timeout`` passed.
        """
        if self.try_acquire(owner):
            return
        clock = self.clock
        w = _Waiter(owner, asyncio.get_running_loop().create_future(), clock.monotonic())
        self._waiters.append(w)
        self._contended += 1
        self._peak_waiting = max(self._peak_waiting, len(self._waiters))
        detector = self.detector
        try:
            if detector is not None:
                detector.begin_wait(owner, self)
            deadline = None if self.wait_timeout is None else w.since + self.wait_timeout
            while not w.future.done():
                wake = [h[1] for h in self._holders if h[1] is not None]
                if deadline is not None:
                    wake.append(deadline)
                interval = getattr(detector, "detection_interval", None)
                if interval:
                    wake.append(clock.monotonic() + interval)
                if not wake:
                    await asyncio.shield(w.future)
                    break
                await _race(w.future, clock, min(wake) - clock.monotonic())
                if w.future.done():
                    break
                self._expire()
                if w.future.done():
                    break
                now = clock.monotonic()
                if deadline is not None and now >= deadline:
                    raise self._timeout_error(owner, now - w.since)
                if detector is not None:
                    detector.check(owner, self)
        except BaseException as exc:
            if not w.future.done():
                w.future.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(w)
            elif not w.future.cancelled() and w.future.exception() is None:
                self.release(owner)  # granted just as we gave up
            if type(exc).__name__ == "DeadlockError":
                self._deadlocks += 1
            raise
        finally:
            if detector is not None:
                detector.end_wait(owner)
        w.future.result()  # raises CoordinationError if the primitive was reset meanwhile
        self._waited(w.since)

    def release(self, owner: str) -> None:
        """Let go of one hold of ``owner`` (no-op if it holds none, e.g. it expired)."""
        for i, h in enumerate(self._holders):
            if h[0] == owner:
                del self._holders[i]
                self._admit_waiters()
                return

    def renew(self, owner: str, ttl: float | None = None) -> bool:
        """Extend ``owner``'s hold by ``ttl`` (default: the primitive's ttl) from now.

        Returns False if ``owner`` no longer holds it (its lease expired and was taken).
        """
        self._expire()
        ttl = self.ttl if ttl is None else ttl
        for h in self._holders:
            if h[0] == owner:
                h[1] = None if ttl is None else self.clock.monotonic() + ttl
                return True
        return False

    # -- inspection ---------------------------------------------------------------------------------
    def _why_blocked(self) -> str:
        return f"held by {[h[0] for h in self._holders]}"

    def status(self) -> dict[str, Any]:
        """State (free/held/contended), owners, wait count, waiters and counters."""
        owners = self.owners
        state = "contended" if self._waiters else ("held" if owners else "free")
        now = self.clock.monotonic()
        return {
            "type": self.kind.value, "state": state, "owners": owners, "wait_count": len(self._waiters),
            "waiters": [w.owner for w in self._waiters], "max_count": self.max_count, "ttl": self.ttl,
            "expires_in": {h[0]: max(0.0, h[1] - now) for h in self._holders if h[1] is not None},
            "acquisitions": self._acquisitions, "expirations": self._expirations, "timeouts": self._timeouts,
        }

    def statistics(self) -> PrimitiveStatistics:
        """Counters since creation (or the last reset)."""
        return PrimitiveStatistics(
            name=self.name, kind=self.kind.value, acquisitions=self._acquisitions, contended=self._contended,
            waiting=len(self._waiters), peak_waiting=self._peak_waiting, holders=len(self._holders),
            peak_holders=self._peak_holders, expirations=self._expirations, timeouts=self._timeouts,
            deadlocks=self._deadlocks, total_wait_time=self._wait_total, max_wait_time=self._wait_max,
        )

    def reset(self) -> None:
        """Drop every holder, fail every waiter with ``CoordinationError``, zero counters."""
        self._holders.clear()
        while self._waiters:
            w = self._waiters.popleft()
            if not w.future.done():
                w.future.set_exception(CoordinationError(
                    f"{self.kind.value} {self.name!r} was reset while {w.owner!r} waited for it"))
        self._reset_counters()

    def __repr__(self) -> str:
        owners = [h[0] for h in self._holders]
        ttl = "" if self.ttl is None else f" ttl={self.ttl:g}s"
        return (f"<{type(self).__name__} {self.name!r} {len(owners)}/{self.max_count} held by {owners} "
                f"waiting={len(self._waiters)}{ttl}>")


class Mutex(Semaphore):
    """Exclusive access: one owner at a time (``ttl``: a hold is auto-released after that long)."""

    kind = PrimitiveType.MUTEX

    def __init__(self, name: str, *, ttl: float | None = None, wait_timeout: float | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(name, 1, ttl=ttl, wait_timeout=wait_timeout, clock=clock)


class Lease(Semaphore):
    """Time-limited exclusive access: the hold expires after ``ttl`` and the next waiter takes over.

    The holder can :meth:`renew` it while it still holds it, and check :meth:`holds`.
    """

    kind = PrimitiveType.LEASE

    def __init__(self, name: str, ttl: float = 60.0, *, wait_timeout: float | None = None,
                 clock: Clock | None = None) -> None:
        if ttl is None:
            raise ConfigurationError(f"Lease({name!r}, ttl=None): a lease needs a ttl in seconds")
        super().__init__(name, 1, ttl=ttl, wait_timeout=wait_timeout, clock=clock)


class Barrier(Primitive):
    """Holds arrivals until ``max_count`` have arrived, then releases them all at once.

    The barrier is cyclic: after releasing a group it waits for the next ``max_count``.
    A waiter gives up after ``wait_timeout`` seconds with ``CoordinationError``.

    Attached to states (``add_state_coordination``), an arrival is a *route into* one of
    them: when five parallel branches each return ``"merge_results"``, the engine joins them
    into one run of it, and that run passes once all five have arrived (the spec's
    barrier example). A run nobody routed to (a start state, an in-state ``hold``, a direct
    ``acquire``) counts as one arrival itself.
    """

    kind = PrimitiveType.BARRIER

    def __init__(self, name: str, max_count: int = 2, *, wait_timeout: float | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(name, clock=clock, wait_timeout=wait_timeout)
        if isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 1:
            raise ConfigurationError(f"Barrier({name!r}, max_count={max_count!r}): must be a whole number >= 1")
        self.max_count = max_count
        self._arrived: list[_Waiter] = []
        self.generation = 0
        self._count = 0  # arrivals counted toward the current group
        self._routed: dict[str, int] = {}  # state -> routes into it since its run last arrived
        self._outstanding: set[str] = set()  # routed states whose run has not arrived yet

    # -- routes (fed by the coordinator from StateFinished events) ------------------------------
    def route(self, state: str) -> None:
        """A finished state named ``state`` as next: one more arrival is on its way."""
        self._count += 1
        if any(w.owner.split("#", 1)[0] == state for w in self._arrived):
            if self._ready():  # the run waiting here absorbed this branch
                self._trip()
            return
        self._routed[state] = self._routed.get(state, 0) + 1
        self._outstanding.add(state)

    def new_run(self) -> None:
        """Forget route counts of an earlier run (called when the agent starts a run)."""
        self._count = len(self._arrived)
        self._routed.clear()
        self._outstanding.clear()

    def _ready(self) -> bool:
        return self._count >= self.max_count and not self._outstanding

    def _arrive(self, owner: str) -> int:
        state = owner.split("#", 1)[0]
        weight = 0 if self._routed.pop(state, 0) else 1
        self._count += weight
        self._outstanding.discard(state)
        return weight

    def _trip(self) -> None:
        group, self._arrived = self._arrived, []
        self._count = max(0, self._count - self.max_count)
        self.generation += 1
        self._acquisitions += len(group) + 1
        for w in group:
            if not w.future.done():
                w.future.set_result(None)

    def try_acquire(self, owner: str) -> bool:
        """Pass at once only if this arrival completes the group (releasing the others)."""
        state = owner.split("#", 1)[0]
        count = self._count + (0 if self._routed.get(state) else 1)
        if count >= self.max_count and not (self._outstanding - {state}):
            self._arrive(owner)
            self._trip()
            return True
        return False

    async def acquire(self, owner: str) -> None:
        """Arrive and wait until ``max_count`` have arrived.

        Raises:
            CoordinationError: ``wait_timeout`` passed before the group was complete.
        """
        if self.try_acquire(owner):
            return
        clock = self.clock
        w = _Waiter(owner, asyncio.get_running_loop().create_future(), clock.monotonic())
        w.amount = self._arrive(owner)
        self._arrived.append(w)
        self._contended += 1
        self._peak_waiting = max(self._peak_waiting, len(self._arrived))
        if self._ready():
            self._trip()
        try:
            if self.wait_timeout is None:
                await asyncio.shield(w.future)
            else:
                await _race(w.future, clock, self.wait_timeout)
                if not w.future.done():
                    raise self._timeout_error(owner, clock.monotonic() - w.since)
            w.future.result()
        except BaseException:
            if not w.future.done():
                w.future.cancel()
                with contextlib.suppress(ValueError):
                    self._arrived.remove(w)
                    self._count = max(0, self._count - int(w.amount))
            raise
        self._waited(w.since)

    def release(self, owner: str) -> None:
        """Nothing to give back: passing a barrier holds nothing."""

    def _why_blocked(self) -> str:
        return f"only {self._count} of {self.max_count} arrived"

    def _fix_hint(self) -> str:
        return f"Make sure {self.max_count} runs reach it, lower max_count, or raise wait_timeout"

    def status(self) -> dict[str, Any]:
        """State (open/waiting), arrivals waiting, generation and counters."""
        return {
            "type": self.kind.value, "state": "waiting" if self._arrived else "open",
            "owners": [w.owner for w in self._arrived], "wait_count": len(self._arrived),
            "arrived": self._count, "expected": sorted(self._outstanding), "max_count": self.max_count,
            "generation": self.generation, "timeouts": self._timeouts,
        }

    def statistics(self) -> PrimitiveStatistics:
        """Counters since creation (or the last reset)."""
        return PrimitiveStatistics(
            name=self.name, kind=self.kind.value, acquisitions=self._acquisitions, contended=self._contended,
            waiting=len(self._arrived), peak_waiting=self._peak_waiting, holders=0, peak_holders=0,
            expirations=0, timeouts=self._timeouts, deadlocks=0, total_wait_time=self._wait_total,
            max_wait_time=self._wait_max,
        )

    def reset(self) -> None:
        """Fail every waiting arrival with ``CoordinationError`` and start a fresh generation."""
        group, self._arrived = self._arrived, []
        for w in group:
            if not w.future.done():
                w.future.set_exception(CoordinationError(f"barrier {self.name!r} was reset while {w.owner!r} waited"))
        self.generation = 0
        self._count = 0
        self._routed.clear()
        self._outstanding.clear()
        self._reset_counters()

    def __repr__(self) -> str:
        return (f"<Barrier {self.name!r} {self._count}/{self.max_count} arrived "
                f"generation={self.generation}>")


class Quota(Primitive):
    """A budget consumed per use that refills every ``ttl`` seconds.

    Each pass consumes ``amount`` (default 1 per state run; ``hold(ctx, 10.0)`` or
    ``ResourceAllocation(name, 10.0)`` consume 10). When the budget is spent, users wait for
    the next reset; without a ``ttl`` it never resets and the use fails at once.
    """

    kind = PrimitiveType.QUOTA

    def __init__(self, name: str, quota_limit: float, *, ttl: float | None = None, amount: float = 1.0,
                 wait_timeout: float | None = None, clock: Clock | None = None) -> None:
        super().__init__(name, clock=clock, wait_timeout=wait_timeout)
        self.quota_limit = _check_positive(f"Quota({name!r}, quota_limit)", quota_limit, allow_none=False)
        self.ttl = _check_positive(f"Quota({name!r}, ttl)", ttl)
        self.amount = _check_positive(f"Quota({name!r}, amount)", amount, allow_none=False)
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
