"""What a RunTracker reads off a payload map's branches: one span per branch attempt.

The branches of a map (``ctx.map``/``Send``) run one state many times at once and share its one
``StateMetadata``, whose ``started_at`` is only the latest branch's. So a mapped state's spans
are not read from its metadata (:mod:`._trackruns` does that for the other states) but from its
map (``run.maps[state]``, ``_map.PayloadMap``): each payload's status and the wall times its
latest attempt began (``starts``) and ended (``ends``, also when it was cut short; the engine
times them while someone watches the run, as a tracker does). At a read, the payloads whose
status or start changed since the last read are brought up to date (found in passes in C, as
the states are): a branch in flight is an open span from its own start; a branch that ended
closes its span at its own end, ``completed``, ``failed`` or ``cancelled`` (a cancelled branch
goes back to pending, with an end); one that began and completed unseen (most of a large map's,
read at its end) is kept as columns (``SpanLog``), with no span object. A failed attempt (an
event naming its payload) closes its branch's span. Durations still come from the metadata, as
for any state. :class:`BranchReading` is a base of
:class:`~fluffy_nb.notebook._tracker.RunTracker` beside ``_trackruns.RunReading``, whose reads
call in here for mapped states only.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from itertools import compress
from operator import ne, or_
from typing import Any

from ..engine._map import NO_TIME
from ._trackruns import Span

# a payload's status in its map (``_map``'s): what its branch's span ends as, once it has an end
_DONE = 2  # (``_map``'s status of a payload with its result)
# (running with an end: it failed and its failure's route runs for its payload now)
_ENDED_AS = {0: "cancelled", 1: "failed", 2: "completed", 3: "failed"}


class BranchReading:
    """The part of a run tracker that draws a map's branches (see the module docstring)."""

    t0: float | None
    _shift: float
    _attempt: dict[str, int]
    _rel: Callable[[float], float]
    _pulled: Any
    _branch_open: dict[str, dict[int, Span]]  # mapped state -> payload index -> its open span
    _branch_seen: dict[str, tuple[Any, bytes, array[float]]]  # state -> (map, statuses, starts) last read
    _branch_tries: dict[str, dict[int, int]]  # mapped state -> payload index -> attempts seen
    _spans: Any  # (``_trackruns.SpanLog``)

    def _read_branches_from(self, run: Any) -> None:
        """Start reading the maps of ``run`` (those it has so far taken as seen)."""
        self._branch_open, self._branch_tries = {}, {}
        for m in run.maps.values():  # (a map that began before the view watched: timed from now on)
            m.time_branches(run.clock)
        self._branch_seen = {name: (m, bytes(m.status), m.starts[:]) for name, m in run.maps.items()}

    def _maps_moved(self, run: Any) -> list[str]:
        """The mapped states of ``run`` a branch of which began or ended since the last read."""
        seen = self._branch_seen
        out = []
        for name, m in run.maps.items():
            last = seen.get(name)
            if last is None or last[0] is not m or last[1] != m.status or last[2] != m.starts:
                out.append(name)
        return out

    def _pull_branches(self, name: str, m: Any, made: list[Span]) -> None:
        """Bring the spans of map ``m``'s branches (of state ``name``) up to date; new ones go to ``made``."""
        last = self._branch_seen.get(name)
        status, starts, ends = m.status, m.starts, m.ends
        n = len(status)
        old_status: bytes
        old_starts: Any
        if last is None or last[0] is not m:  # a new map of this state (a loop maps it again)
            old_status, old_starts = bytes(n), array("d", (NO_TIME,)) * n
            self._branch_tries[name] = {}
        else:
            old_status, old_starts = last[1], last[2]
        self._branch_seen[name] = (m, bytes(status), starts[:])
        self._attempt.pop(name, None)  # (a retry's number is counted per branch here)
        opened = self._branch_open.setdefault(name, {})
        tries = self._branch_tries.setdefault(name, {})
        base = self._shift + (self.t0 or 0.0)
        ran: list[tuple[float, float]] = []  # (start, end) of the branches that began and completed unseen
        for i in compress(range(n), map(or_, map(ne, status, old_status), map(ne, starts, old_starts))):
            span = opened.get(i)
            start, end = starts[i], ends[i]
            if start != NO_TIME and start != old_starts[i]:  # an attempt began since the last read
                if span is None and end != NO_TIME and status[i] == _DONE and not tries.get(i):
                    ran.append((start - base, max(end, start) - base))  # (most of a large map's, at its end)
                    continue
                span = self._began(name, i, start - base, span, made)
            if span is not None and end != NO_TIME:
                span.end, span.outcome = max(end - base, span.start), _ENDED_AS[status[i]]
                del opened[i]
                if span.outcome == "cancelled":  # (run again after a pause: attempt 1, as the engine counts)
                    tries[i] = 0
        if ran:
            ran.sort()
            self._spans.add([], [name] * len(ran), [r[0] for r in ran], [r[1] for r in ran])

    def _began(self, name: str, i: int, start: float, span: Span | None, made: list[Span]) -> Span:
        """An attempt of payload ``i``'s branch of ``name`` began at ``start`` (``span``: the one
        before, still open, was cut short unseen: requeued, it ended as this began)."""
        tries = self._branch_tries[name]
        if span is not None:
            span.end, span.outcome = max(start, span.start), "cancelled"
            tries[i] = 0
        tries[i] = tries.get(i, 0) + 1
        span = self._branch_open[name][i] = Span(name, tries[i], start, payload=i)
        made.append(span)
        return span

    def _end_branch_attempt(self, state: str, index: int, t: float, outcome: str) -> None:
        """The attempt of payload ``index``'s branch of mapped ``state`` in flight ended at ``t``
        (clock time) with ``outcome`` (a failure's event): its open span closes."""
        span = self._branch_open.get(state, {}).pop(index, None)
        if span is not None:
            span.end, span.outcome = max(self._rel(t), span.start), outcome

    def _end_branches(self, end: float) -> None:
        """The run ended at ``end`` (seconds since its start): branches still open were cut short."""
        for opened in self._branch_open.values():
            for span in opened.values():
                span.end, span.outcome = end, "cancelled"
            opened.clear()
