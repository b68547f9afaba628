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
for any state. The map is read only while it is live (branches to run, or unseen ends): a run
of the state after its map ended is a plain one (:mod:`._trackruns`). A branch in flight when
the tracker begins reading opens from its start (from then, if its map was not timed yet); a
map replaced by a new one of its state (a loop) is first brought up to date as it ended. The
tracker's close stops the timing once nobody else watches. :class:`BranchReading` is a base of
:class:`~fluffy_nb.notebook._tracker.RunTracker` beside ``_trackruns.RunReading``, whose reads
call in here for mapped states only.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from itertools import compress, repeat
from operator import eq, ne, or_
from typing import Any

from ..engine._map import NO_TIME
from ._trackruns import IN_FLIGHT, Span

# a payload's status in its map (``_map``'s): what its branch's span ends as, once it has an end
_RUNNING, _DONE = 1, 2  # (``_map``'s status of a payload in flight, with its result)
# (running with an end: it failed and its failure's route runs for its payload now)
_ENDED_AS = {0: "cancelled", 1: "failed", 2: "completed", 3: "failed"}


class BranchReading:
    """The part of a run tracker that draws a map's branches (see the module docstring)."""

    t0: float | None
    _shift: float
    # (``_trackruns.RunReading``'s, beside this in RunTracker's bases)
    _open: dict[str, Span]
    _runs_seen: dict[str, int]
    _spanned: dict[str, int]
    _count_runs: Callable[[str, Any, int], None]
    _attempt: dict[str, int]
    _rel: Callable[[float], float]
    _pulled: Any
    _branch_open: dict[str, dict[int, Span]]  # mapped state -> payload index -> its open span
    _branch_seen: dict[str, tuple[Any, bytes, array[float]]]  # state -> (map, statuses, starts) last read
    _branch_tries: dict[str, dict[int, int]]  # mapped state -> payload index -> attempts seen
    _spans: Any  # (``_trackruns.SpanLog``)

    def _read_branches_from(self, run: Any) -> None:
        """Start reading the maps of ``run`` (what their branches did so far taken as seen). A
        branch in flight now is an open span from its start, or from now when it began before its
        map was timed (a view attached after the map began: its times begin now)."""
        self._branch_open, self._branch_tries, self._branch_seen = {}, {}, {}
        made: list[Span] = []
        for name, m in run.maps.items():
            m.time_branches(run.clock)
            self._branch_seen[name] = (m, bytes(m.status), m.starts[:])
            if m.counts[_RUNNING]:
                self._open_in_flight(name, m, self._rel(run.clock.monotonic()), made)
        if made:
            self._spans.add(made, [], [], [])

    def _open_in_flight(self, name: str, m: Any, now: float, made: list[Span]) -> None:
        """Open a span for each branch of map ``m`` (of ``name``) running now, from its start (``now``:
        not timed); a branch whose state's attempt has ended (its failure's route runs) has none."""
        starts, ends, base = m.starts, m.ends, self._shift + (self.t0 or 0.0)
        opened = self._branch_open.setdefault(name, {})
        tries = self._branch_tries.setdefault(name, {})
        for i in compress(range(len(m.status)), map(eq, m.status, repeat(_RUNNING))):
            if ends[i] == NO_TIME:
                tries[i] = 1
                span = opened[i] = Span(name, 1, now if starts[i] == NO_TIME else starts[i] - base, payload=i)
                made.append(span)

    def _stop_timing(self, run: Any) -> None:
        """This tracker stopped watching ``run``: when nobody else subscribes to its events, its maps'
        branches are not timed any more (the engine times them only while someone watches)."""
        if run is not None and not run.events.active:
            for m in run.maps.values():
                m.time_branches(None)

    def _maps_moved(self, run: Any) -> list[str]:
        """The mapped states of ``run`` a branch of which began or ended since the last read."""
        seen = self._branch_seen
        out = []
        for name, m in run.maps.items():
            last = seen.get(name)
            if last is None or last[0] is not m or last[1] != m.status or last[2] != m.starts:
                out.append(name)
        return out

    def _pull_mapped(self, name: str, meta: Any, st: Any, m: Any, done: int, made: list[Span]) -> int | None:
        """Read the branches of ``name``'s map ``m`` (``done``: its runs since the last read). Returns
        how many of those runs are plain ones, drawn from the metadata as any state's (None: the map
        still runs, and every run and attempt of ``name`` is its branches')."""
        branches = self._pull_branches(name, m, made)
        live = m.in_flight()
        taken = done if live else min(branches, done)  # (a branch completed by its route: that state's run)
        if taken > 0:
            self._runs_seen[name] = self._runs_seen.get(name, 0) + taken
            self._count_runs(name, meta, taken)
        # every attempt so far was a branch's but, once the map ended, one of a plain run in flight
        self._spanned[name] = meta.attempts - (not live and st in IN_FLIGHT and name not in self._open)
        return None if live else done - taken

    def _map_of(self, name: str) -> Any:
        """The payload map of ``name`` in the run read while its spans are read off it (a map with
        branches to run or unseen; None: not mapped, or run as a plain state since)."""
        run = getattr(self, "_pulled", None)
        m = run.maps.get(name) if run is not None and run.maps else None
        return m if m is not None and self._map_live(name, m) else None

    def _pull_branches(self, name: str, m: Any, made: list[Span]) -> int:
        """Bring the spans of map ``m``'s branches (of state ``name``) up to date; new ones go to
        ``made``. Returns how many branches completed since the last read (their runs)."""
        last = self._branch_seen.get(name)
        done = 0
        if last is not None and last[0] is not m:  # a new map of this state (a loop maps it again)
            done = self._pull_branches(name, last[0], made)  # the old one's last branches first, as they ended
            self._cut_left(name, m)
            last = None
        status, starts, ends = m.status, m.starts, m.ends
        n = len(status)
        old_status: bytes
        old_starts: Any
        if last is None:
            old_status, old_starts = bytes(n), array("d", (NO_TIME,)) * n
        else:
            old_status, old_starts = last[1], last[2]
        self._branch_seen[name] = (m, bytes(status), starts[:])
        self._attempt.pop(name, None)  # (a retry's number is counted per branch here)
        opened = self._branch_open.setdefault(name, {})
        tries = self._branch_tries.setdefault(name, {})
        base = self._shift + (self.t0 or 0.0)
        ran: list[tuple[float, float, int]] = []  # (start, end, payload) of branches begun and completed unseen
        for i in compress(range(n), map(or_, map(ne, status, old_status), map(ne, starts, old_starts))):
            span = opened.get(i)
            start, end = starts[i], ends[i]
            done += status[i] == _DONE and old_status[i] != _DONE
            if start != NO_TIME and start != old_starts[i]:  # an attempt began since the last read
                if span is None and end != NO_TIME and status[i] == _DONE and not tries.get(i):
                    ran.append((start - base, max(end, start) - base, i))  # (most of a large map's, at its end)
                    continue
                span = self._began(name, i, start - base, span, made)
            if span is not None and end != NO_TIME:
                span.end, span.outcome = max(end - base, span.start), _ENDED_AS[status[i]]
                del opened[i]
                if span.outcome == "cancelled":  # (run again after a pause: attempt 1, as the engine counts)
                    tries[i] = 0
        if ran:
            ran.sort()
            self._spans.add([], [name] * len(ran), [r[0] for r in ran], [r[1] for r in ran], [r[2] for r in ran])
        return done

    def _cut_left(self, name: str, m: Any) -> None:
        """Map ``m`` of ``name`` replaced the one read so far, whose branches were all brought up to
        date: one still open (its end not timed) was cut short when ``m`` began."""
        opened = self._branch_open.get(name)
        if opened:
            timed = [s for s in m.starts if s != NO_TIME]
            cut = min(timed) - self._shift - (self.t0 or 0.0) if timed else None
            for span in opened.values():
                span.end, span.outcome = span.start if cut is None else max(cut, span.start), "cancelled"
            opened.clear()
        self._branch_tries[name] = {}

    def _map_live(self, name: str, m: Any) -> bool:
        """Whether the spans of ``name`` are read off its map ``m``: it has branches to run, or some
        this tracker has not seen end (else a run of ``name`` is a plain one, drawn from its metadata)."""
        if m.in_flight() or self._branch_open.get(name):
            return True
        last = self._branch_seen.get(name)
        return last is None or last[0] is not m or last[1] != m.status

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
