"""What a RunTracker knows about waits: each state's open wait and every wait of the run (the
timeline's), deadlocks the engine detected and broke, and why each waiting state waits now.

:class:`WaitTracking` is a part of :class:`~fluffy_nb.notebook._tracker.RunTracker` (its base):
the tracker's event handlers call these methods; they keep to the attributes declared below.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from ..engine._errors import DeadlockError
from ..engine._why import WaitReason
from ..engine._why import waits as engine_waits


@dataclass(slots=True)
class WaitSpan:
    """One wait of one state on the timeline: ``kind`` as in ``engine._why`` (resource, rate_limit,
    lock, barrier, quota, dependency, person...), what it waited for and who held it."""

    state: str
    kind: str
    start: float
    end: float | None = None
    detail: str = ""
    holders: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Deadlock:
    """A deadlock the engine detected and broke: the states in the cycle, who waited for which
    primitive held by whom (``edges``: ``(waiter, primitive, holder)``), and the state failed to end it."""

    cycle: tuple[str, ...]
    edges: tuple[tuple[str, str, str], ...]
    victim: str
    message: str = ""


class WaitTracking:
    """The waits and deadlocks part of a run tracker (see the module docstring)."""

    agent: Any
    run: Any
    run_id: str
    t0: float | None
    _status: dict[str, str]
    open_waits: dict[str, WaitSpan]
    wait_spans: deque[WaitSpan]
    deadlocks: list[Deadlock]

    def _rel(self, t: float) -> float:
        return t - self.t0 if self.t0 is not None else 0.0

    def _begin_wait(self, state: str, kind: str, t: float, detail: str, holders: tuple[str, ...]) -> None:
        """``state`` waits for ``kind`` from ``t`` on (a wait of another kind ends here)."""
        current = self.open_waits.get(state)
        if current is not None:
            if current.kind == kind:
                current.detail, current.holders = detail, holders
                return
            self._end_wait(state, t)
        wait = WaitSpan(state, kind, self._rel(t), None, detail, tuple(holders))
        self.open_waits[state] = wait
        self.wait_spans.append(wait)

    def _end_wait(self, state: str, t: float, kind: str | None = None) -> None:
        wait = self.open_waits.get(state)
        if wait is not None and (kind is None or wait.kind == kind):
            del self.open_waits[state]
            wait.end = self._rel(t)

    def _note_deadlock(self, exc: DeadlockError, victim: str) -> None:
        cycle = tuple(exc.cycle)
        if any(set(d.cycle) == set(cycle) and d.victim == victim for d in self.deadlocks):
            return
        edges: tuple[tuple[str, str, str], ...] = ()
        for rec in reversed(self._detector_records()):
            if set(rec.cycle) == set(cycle):
                edges = tuple(rec.edges)
                break
        self.deadlocks.append(Deadlock(cycle, edges, victim, str(exc)))

    def _detector_records(self) -> list[Any]:
        coordinator = getattr(self.agent, "coordinator", None)
        detector = getattr(coordinator, "deadlock_detector", None)
        return list(detector.cycles) if detector is not None else []

    def _find_deadlocks(self) -> None:
        """Deadlocks of this run the events did not carry (a gate's wait fails without an event)."""
        t0 = self.t0 if self.t0 is not None else float("-inf")
        for rec in self._detector_records():
            if rec.at >= t0 and not any(set(d.cycle) == set(rec.cycle) for d in self.deadlocks):
                how = "; ".join(f"{u!r} waits for {p!r} held by {v!r}" for u, p, v in rec.edges)
                self.deadlocks.append(Deadlock(tuple(rec.cycle), tuple(rec.edges), rec.victim,
                                               f"deadlock: {' -> '.join([*rec.cycle, rec.cycle[0]])} ({how})"))

    def current_waits(self) -> dict[str, WaitReason]:
        """Why each waiting state waits, now: the run's own answer while it runs (``engine._why``:
        every kind, holders as they are now), else what the events said."""
        out = {s: WaitReason(s, w.kind, w.detail, w.holders, None if self.t0 is None else self.t0 + w.start)
               for s, w in self.open_waits.items()}
        run = self.run
        if run is not None and run.active and run.run_id == self.run_id:
            out.update(engine_waits(run))
            self._in_state_waits(out)
        return out

    def _in_state_waits(self, out: dict[str, WaitReason]) -> None:
        """States waiting inside their body for a primitive (``async with lock.hold(ctx)``)."""
        coordinator = getattr(self.agent, "coordinator", None)
        for prim in list(getattr(coordinator, "primitives", {}).values()):
            status = prim.status()
            if not status.get("wait_count"):
                continue
            owners = tuple(dict.fromkeys(o.split("#", 1)[0] for o in status.get("owners", ())))
            kind = str(status.get("type", "lock"))
            for waiter in status.get("waiters", ()):
                state = waiter.split("#", 1)[0]
                if state in self._status and state not in out:
                    reason_kind = kind if kind in ("barrier", "quota") else "lock"
                    out[state] = WaitReason(state, reason_kind, f"{kind} {prim.name!r} held by {list(owners)}",
                                            owners if reason_kind == "lock" else ())
