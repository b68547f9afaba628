"""Coordination primitives: the common base, Mutex, Semaphore and Lease (Barrier, Quota: own modules).

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
    is_budget = False
    """True for what is consumed or passed rather than held (quotas, barriers): passed before the
    resource pool, so a state waiting at it holds no resources."""

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

    def try_acquire(self, owner: str, *args: Any) -> bool:
        """Pass at once if possible; never waits."""
        raise NotImplementedError

    async def acquire(self, owner: str, *args: Any) -> None:
        """Wait until ``owner`` may pass."""
        raise NotImplementedError

    def release(self, owner: str) -> None:
        """Give back what ``owner`` holds (no-op if nothing)."""
        raise NotImplementedError

    def statistics(self) -> PrimitiveStatistics:
        """Counters since creation (or the last reset)."""
        raise NotImplementedError

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

    def deadlock_holders(self) -> list[str]:
        """Holders that will only let go when they finish (a TTL hold expires by itself)."""
        return [h[0] for h in self._holders if h[1] is None]

    def _grant(self, owner: str) -> None:
        holders = self._holders
        holders.append([owner, None if self.ttl is None else self.clock.monotonic() + self.ttl])
        self._acquisitions += 1
        if len(holders) > self._peak_holders:
            self._peak_holders = len(holders)

    def _admit_waiters(self) -> None:
        while self._waiters and len(self._holders) < self.max_count:
            w = self._waiters.popleft()
            if w.future.done():
                continue
            self._grant(w.owner)
            w.future.set_result(None)
            if self.detector is not None:
                # it holds now, though its task resumes later: a wait beginning before then must
                # not read it as still waiting (for what it holds) and report a deadlock
                self.detector.end_wait(w.owner)

    def expire(self) -> None:
        """Drop holds whose TTL has passed (waiters they blocked are admitted)."""
        self._expire()

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
            await self._wait_for_grant(w, owner)
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

    async def _wait_for_grant(self, w: _Waiter, owner: str) -> None:
        """Sleep until ``w`` is granted, waking for TTL expiries, the wait timeout and deadlock checks."""
        clock, detector = self.clock, self.detector
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
                return
            await _race(w.future, clock, min(wake) - clock.monotonic())
            if w.future.done():
                return
            self._expire()
            if w.future.done():
                return
            now = clock.monotonic()
            if deadline is not None and now >= deadline:
                raise self._timeout_error(owner, now - w.since)
            if detector is not None:
                detector.check(owner, self)

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
