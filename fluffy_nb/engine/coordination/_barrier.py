"""Barrier: hold arrivals until ``max_count`` have arrived, then release them all at once."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .._clock import Clock
from .._errors import ConfigurationError, CoordinationError
from ._primitives import Primitive, PrimitiveStatistics, PrimitiveType, _race, _Waiter


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
    is_budget = True
    """Passed before the resource pool, as quotas are: passing holds nothing, and a state waiting
    here for the others must hold no CPU they need to arrive (with fewer CPUs than ``max_count``
    the arrivals holding them waited for the rest forever)."""

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
