"""What a RunTracker reads off the run it follows instead of taking an event for every state.

:class:`RunReading` is a part of :class:`~fluffy_nb.notebook._tracker.RunTracker` (its base,
beside ``_trackwaits.WaitTracking``); it keeps to the attributes declared below. The tracker
does not subscribe to ``StateStarted``/``StateFinished``: the engine then builds neither (its
``EventBus.stepwise`` stays False) and steps a quiet chain in place, so a watched run goes at
the speed of an unwatched one. Whenever the tracker is read (``status``, ``spans``,
``version``, ``refresh()``...) and once when the run ends, :meth:`RunReading._pull` compares
each state's status and attempt count with what it saw last, in passes that run in C (about
0.5 ms for 10,000 states), and brings the states that changed up to date from their
``StateMetadata``:

* the status is the engine's own;
* each run a state completed is a span: it ended at its ``finishes`` entry and took its
  ``durations`` entry (a loop that ran ten times since the last read gets ten spans), or, for
  the run an open span stood for, from that span's start;
* an attempt in flight is an open span from ``started_at``;
* a wait the events began (blocked, a dependency...) ends when the state's next attempt starts.

What happens rarely stays an event (a failure, a retry, a cancel, a person's question and
answer, a remote placement): its handler first pulls its own state up to date
(:meth:`RunReading._pull_state`), so the span it closes or annotates exists, then acts.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import compress, islice, repeat
from operator import add, and_, attrgetter, eq, is_, is_not, itemgetter, le, ne, neg, not_, or_, sub
from time import perf_counter
from typing import Any

from ..engine._state import read_status
from ..engine._status import StateStatus

#: a status enum member -> its text (a dict lookup, not the enum's slow ``.value``)
STATUS_TEXT: dict[Any, str] = {member: member.value for member in StateStatus}
_attempts_of = attrgetter("attempts")
_runs_of = attrgetter("runs")
_last_duration_of = attrgetter("last_duration")
_finished_at_of = attrgetter("finished_at")
_COMPLETED = StateStatus.COMPLETED
#: seconds within which a read scans the states again only if the run moved: its steps, or the
#: executions it has pending or running (a state that begins leaves ``pending``), changed, or a
#: state waits to retry (its next attempt begins with none of them moving). Reads in one redraw
#: cost O(1); a view's ticks (0.1 s and more apart) each scan once, so nothing stays unseen
_RESCAN = 0.02
# finished runs kept as flat entries before they are folded into per-state durations (each capped
# at 10,000), so a run of millions of states holds a bounded amount of them
_FOLD_AT = 20_000
#: statuses of a state with an attempt in flight
IN_FLIGHT = frozenset({StateStatus.RUNNING, StateStatus.WAITING_FOR_HUMAN})


@dataclass(slots=True)
class Span:
    """One attempt of one state on the timeline (times in seconds since the run started)."""

    state: str
    attempt: int
    start: float
    end: float | None = None
    outcome: str = "running"  # running, completed, failed, retried, cancelled, timeout
    waited: float = 0.0  # seconds of it spent waiting for a person
    waits: list[list[float | None]] | None = None  # [asked, answered] times while it waited
    where: str | None = None  # the remote worker that ran it (a Dask worker address)
    payload: int | None = None  # the payload index of the map branch it ran (None: not a map branch)


class RanSpan(tuple[Any, ...]):
    """A span that tells only that a state ran once, from ``start`` to ``end`` (a map's branch:
    for ``payload``, a fourth item only in a log that holds map branches): what :class:`SpanLog`
    keeps as columns, read. The fields of a :class:`Span` (``attempt`` 1, ``outcome``
    "completed", no waits, no worker), read-only; made in C from the columns
    (a tenth of a :class:`Span`'s cost: a redraw passes over a 10,000-state run's spans five times)."""

    __slots__ = ()
    state = property(itemgetter(0), doc="The state that ran.")
    start = property(itemgetter(1), doc="When it began (seconds since the run started).")
    end = property(itemgetter(2), doc="When it ended (seconds since the run started).")
    attempt = 1
    outcome = "completed"
    waited = 0.0
    waits = None
    where = None
    @property
    def payload(self) -> int | None:
        """The payload index of the map branch it ran (None: not a branch)."""
        return self[3] if len(self) > 3 else None

    def __repr__(self) -> str:
        return f"RanSpan(state={self.state!r}, start={self.start!r}, end={self.end!r}, payload={self.payload!r})"


class SpanLog:
    """The spans of a run (the timeline's), in start order, at most ``maxlen`` (the oldest dropped).

    A span that tells only that a state ran once, start to end (most of a large run's: those
    :meth:`RunReading._ran_once` finds), is kept as columns (state, start, end), without an
    object of its own, and read as a :class:`RanSpan` as the log is iterated, one at a time:
    10,000 objects that stay, made at once when a run ends, set off a full pass of the garbage
    collector (about 70 ms at 10,000 states here, half of the run itself), while the ones a pass
    over the log makes are freed as it goes. A ``RanSpan`` is read-only; the tracker changes
    only the spans it keeps as :class:`Span` objects (open ones, retries...).
    ``len()``, ``bool()``, iteration and ``list()`` read it as the deque of spans it replaces.
    """

    __slots__ = ("_ends", "_objs", "_payloads", "_starts", "_states", "maxlen")

    def __init__(self, maxlen: int | None = None) -> None:
        self.maxlen = maxlen
        self._objs: deque[Span | None] = deque(maxlen=maxlen)  # the span, or None: made from the columns
        self._states: deque[str] = deque(maxlen=maxlen)
        self._starts: deque[float] = deque(maxlen=maxlen)
        self._ends: deque[float] = deque(maxlen=maxlen)  # (a span object's own are its, not these)
        # a map branch's payload index (None: not one); no column until a map's branch is added
        # (a 10,000-state run without maps read 4-tuples five times per redraw for nothing)
        self._payloads: deque[int | None] | None = None

    def __len__(self) -> int:
        return len(self._objs)

    def __iter__(self) -> Iterator[Span | RanSpan]:
        payloads = self._payloads
        ran = map(RanSpan, zip(self._states, self._starts, self._ends, strict=True) if payloads is None
                  else zip(self._states, self._starts, self._ends, payloads, strict=True))
        if not any(self._objs):
            return ran  # (a large run's usual log: all in C)
        return self._mixed(ran)

    def _mixed(self, ran: Iterator[RanSpan]) -> Iterator[Span | RanSpan]:
        for obj, record in zip(self._objs, ran, strict=True):
            yield record if obj is None else obj

    def __repr__(self) -> str:
        return f"<SpanLog of {len(self)} spans>"

    def columns(self, now: float) -> tuple[list[str], list[float], list[float]]:
        """Each span's state, start and end (``now`` for one still open), in log order, as three
        lists read in C (a usage table weighs a 10,000-state run's spans without reading each)."""
        states, starts, ends = list(self._states), list(self._starts), list(self._ends)
        if any(self._objs):
            for i, obj in enumerate(self._objs):
                if obj is not None:  # (its own times: the tracker may have closed it since)
                    starts[i] = obj.start
                    ends[i] = now if obj.end is None else obj.end
        return states, starts, ends

    def append(self, span: Span) -> None:
        """Add ``span`` (an object kept as it is: the tracker may close it later), in start order."""
        self.add([span], [], [], [])  # (its payload is its own)

    def clear(self) -> None:
        """Drop every span (a new run begins)."""
        for column in (self._objs, self._states, self._starts, self._ends):
            column.clear()
        self._payloads = None

    def add(self, made: list[Span], states: list[str], starts: list[float], ends: list[float],
            payloads: list[int] | None = None) -> None:
        """Add the spans ``made`` and the completed runs ``states`` (from ``starts`` to ``ends``; the
        runs of a map's branches: of ``payloads``).

        The log stays in start order whatever order they come in (a failure's span is added
        when its event comes, the runs that ended before it at the next read): ties keep the
        order they were added in, but a sub-workflow's state (``research/search``) comes after
        the parent's state it runs in, and runs given as columns come before spans ``made``."""
        if payloads is not None and self._payloads is None:  # the first map branches: the column begins
            self._payloads = deque(repeat(None, len(self._objs)), maxlen=self.maxlen)
        column = self._payloads
        tail = self._starts[-1] if self._starts else None
        if not made and states and all(map(le, starts, islice(starts, 1, None))) and (
                tail is None or tail < starts[0] or (tail == starts[0] and "/" not in self._states[-1])):
            self._objs.extend(repeat(None, len(states)))  # columns alone, after the rest (a large run's usual read)
            self._states.extend(states)
            self._starts.extend(starts)
            self._ends.extend(ends)
            if column is not None:
                column.extend(repeat(None, len(states)) if payloads is None else payloads)
            return
        entries: list[tuple[Span | None, str, float, float, int | None]] = list(zip(
            repeat(None), states, starts, ends, repeat(None) if payloads is None else payloads))
        entries += [(span, span.state, span.start, span.start if span.end is None else span.end, None)
                    for span in made]
        if not entries:
            return
        low = min(entry[2] for entry in entries)
        back = []  # what the log holds after the earliest of these (few: the spans events added since the last read)
        while self._starts and self._starts[-1] >= low:
            back.append((self._objs.pop(), self._states.pop(), self._starts.pop(), self._ends.pop(),
                         None if column is None else column.pop()))
        for obj, state, start, end, payload in sorted([*reversed(back), *entries], key=_start_then_depth):
            self._objs.append(obj)
            self._states.append(state)
            self._starts.append(start)
            self._ends.append(end)
            if column is not None:
                column.append(payload)


def _start_then_depth(entry: tuple[Any, str, float, float, Any]) -> tuple[float, int]:
    return entry[2], entry[1].count("/")


class RunReading:
    """The part of a run tracker that reads the followed run's metadata (see the module docstring)."""

    t0: float | None
    _status: dict[str, str]
    _spans: SpanLog
    _open: dict[str, Span]
    _version: int
    open_waits: dict[str, Any]
    completed_runs: int
    _ran: list[str]
    _took: list[float]
    _durations: dict[str, list[float]]
    _folded: int
    _spanned: dict[str, int]
    _attempt: dict[str, int]
    _runs_seen: dict[str, int]
    # (``_trackwaits.WaitTracking``'s, beside this in RunTracker's bases)
    _rel: Callable[[float], float]
    _end_wait: Callable[..., None]
    # (``_trackbranches.BranchReading``'s: a mapped state's spans)
    _read_branches_from: Callable[[Any], None]
    _maps_moved: Callable[[Any], list[str]]
    _pull_branches: Callable[[str, Any, list[Span]], int]
    _map_of: Callable[[str], Any]
    _pull_mapped: Callable[[str, Any, StateStatus, Any, int, list[Span]], int | None]
    _end_branch_attempt: Callable[[str, int, float, str], None]

    def _read_from(self, run: Any) -> None:
        """Read ``run`` from now on, taking what it has done so far as seen (at its start, or when
        a view attaches to it while it runs: what ran before is not drawn as spans)."""
        metas = run.metadata
        self._pulled = run
        self._names = list(metas)
        self._metas = values = list(metas.values())
        self._seen_status = list(map(read_status, values))
        self._seen_attempts = list(map(_attempts_of, values))
        # (a fresh run has no completed state: 10,000 states make no dict)
        ran = run.steps or run.completed_states  # (a restored run's states may have run before)
        self._runs_seen: dict[str, int] = {m.name: m.runs for m in values if m.runs} if ran else {}
        # state -> its attempts that have a span (or ran before): one more in the metadata is one in flight
        self._spanned: dict[str, int] = {m.name: m.attempts for m in values if m.attempts} if ran else {}
        self._attempt: dict[str, int] = {}  # state -> the number of its next attempt, after a retry
        self._moved: tuple[int, ...] = ()  # (steps, pending, running, states) at the last scan
        self._scanned = 0.0  # perf_counter() at the last scan
        clock = run.clock
        self._shift = clock.time() - clock.monotonic()  # wall time - monotonic time: metadata holds wall times
        self._read_branches_from(run)

    def _stop_reading(self) -> None:
        self._pulled = None

    def _pull(self) -> None:
        """Bring the states of the run read that changed since the last pull up to date."""
        run = getattr(self, "_pulled", None)
        if run is None:
            return
        metas, values = run.metadata, self._metas
        sched, now = run.scheduler, perf_counter()
        moved = (run.steps, len(sched.pending), len(sched.running), len(metas))
        if moved == self._moved and not self._attempt and now - self._scanned < _RESCAN:
            return  # read again at once (a view reads several times per redraw): nothing moved
        self._moved, self._scanned = moved, now
        if len(metas) != len(values):  # states added to the run (its dict only grows)
            added = len(metas) - len(values)
            self._names = list(metas)
            self._metas = values = list(metas.values())
            self._seen_status += [StateStatus.PENDING] * added
            self._seen_attempts += [0] * added
        statuses = list(map(read_status, values))
        attempts = list(map(_attempts_of, values))
        seen_status, seen_attempts = self._seen_status, self._seen_attempts
        if statuses == seen_status and attempts == seen_attempts:
            if run.maps:  # (a branch of a map may begin or end with its state's metadata as it was)
                self._pull_maps(run)
            return
        changed = list(compress(range(len(values)), map(or_, map(is_not, statuses, seen_status),
                                                        map(ne, attempts, seen_attempts))))
        self._seen_status, self._seen_attempts = statuses, attempts
        if len(changed) == len(values):  # (every state changed: a large run's first or last read)
            names, metas = self._names, values
        else:
            names = list(map(self._names.__getitem__, changed))
            metas = list(map(values.__getitem__, changed))
            statuses = list(map(statuses.__getitem__, changed))
        self._status.update(zip(names, map(STATUS_TEXT.__getitem__, statuses), strict=True))
        # the usual change, read in C for 10,000 states at once: a state completed one run, and
        # nothing about it is open (a span, a wait, a retry); the others one by one
        runs = self._runs_seen
        once = list(map(and_, map(is_, statuses, repeat(_COMPLETED)), map(eq, map(_runs_of, metas), map(
            add, map(runs.get, names, repeat(0)), repeat(1)) if runs else repeat(1))))
        if self._open or self.open_waits or self._attempt or run.maps:  # (a mapped state's spans are its map's)
            busy = self._open.keys() | self.open_waits.keys() | self._attempt.keys() | run.maps.keys()
            once = list(map(and_, once, map(not_, map(busy.__contains__, names))))
        made: list[Span] = []
        for j in compress(range(len(names)), map(not_, once)):
            self._pull_one(names[j], metas[j], statuses[j], made)
        names, metas = list(compress(names, once)), list(compress(metas, once))
        self._spans.add(made, names, *self._ran_once(names, metas))
        if run.maps:
            self._pull_maps(run)
        self._version += 1

    def _pull_maps(self, run: Any) -> None:
        """Bring the mapped states whose branches moved since the last read up to date."""
        moved = self._maps_moved(run)
        if moved:
            made: list[Span] = []
            for name in moved:
                meta = run.metadata[name]
                self._pull_one(name, meta, read_status(meta), made)
            self._spans.add(made, [], [], [])
            self._version += 1

    def _ran_once(self, names: list[str], metas: list[Any]) -> tuple[list[float], list[float]]:
        """The states ``names`` (their metadata ``metas``) each completed one run since the last
        read, with no span open: the starts and ends of their spans, from their ``last_duration``
        and ``finished_at`` (made into :class:`Span` objects only as the log is read)."""
        if not names:
            return [], []
        took = list(map(_last_duration_of, metas))
        ends = list(map(sub, map(_finished_at_of, metas), repeat(self._shift + (self.t0 or 0.0))))
        self._runs_seen.update(zip(names, map(_runs_of, metas), strict=True))
        spanned = self._spanned  # (a state not in it has as many attempts spanned as runs seen: _unspanned)
        for name in spanned.keys() & names:
            spanned[name] = metas[names.index(name)].attempts
        self._ran += names
        self._took += took
        self.completed_runs += len(names)
        self._fold_if_long()
        return list(map(sub, ends, took)), ends

    def _pull_state(self, state: str) -> None:
        """Bring ``state`` up to date before an event about it is handled (a later :meth:`_pull`
        sees it as changed again and finds nothing new)."""
        run = getattr(self, "_pulled", None)
        meta = None if run is None else run.metadata.get(state)
        if meta is not None:
            made: list[Span] = []
            self._pull_one(state, meta, read_status(meta), made)
            self._spans.add(made, [], [], [])

    def _pull_one(self, name: str, meta: Any, st: StateStatus, made: list[Span]) -> None:
        """``name``'s status and spans from ``meta`` (its status ``st``); new spans go to ``made``."""
        self._status[name] = STATUS_TEXT[st]
        runs = meta.runs
        done = runs - self._runs_seen.get(name, 0)
        m = self._map_of(name)
        if m is not None:  # its branches' spans are read off its map (and their runs counted)
            left = self._pull_mapped(name, meta, st, m, done, made)
            if left is None:
                return
            done = left
        spanned = self._spanned_of(name)
        if done > 0:
            self._runs_seen[name] = runs
            spanned = self._completed(name, meta, done, made, spanned)
        if st in IN_FLIGHT and meta.attempts > spanned:
            self._begin_span(name, meta, made)

    def _count_runs(self, name: str, meta: Any, done: int) -> None:
        """``name`` completed ``done`` more runs (their spans drawn elsewhere): their durations."""
        took = [meta.last_duration] if done == 1 else meta.durations[-done:]
        self._ran += [name] * len(took)
        self._took += took
        self.completed_runs += done
        self._fold_if_long()

    def _spanned_of(self, name: str) -> int:
        """How many attempts of ``name`` have a span (or ran before it was read): without an entry
        of its own (most states of a large run: ``_ran_once`` writes none), as many as its runs seen."""
        spanned = self._spanned.get(name)
        return self._runs_seen.get(name, 0) if spanned is None else spanned

    def _begin_span(self, name: str, meta: Any, made: list[Span]) -> Span:
        """The open span of ``name``'s attempt in flight (its metadata ``meta``), from ``started_at``."""
        self._spanned[name] = meta.attempts
        span = Span(name, self._attempt.get(name, 1), meta.started_at - self._shift - (self.t0 or 0.0))
        self._open[name] = span
        made.append(span)
        self._attempt_began(name, span.start)
        return span

    def _unspanned(self, name: str) -> Any:
        """``name``'s metadata when an attempt of it began that has no span yet (else None)."""
        run = getattr(self, "_pulled", None)
        meta = None if run is None else run.metadata.get(name)
        if meta is None or meta.started_at is None or meta.attempts <= self._spanned_of(name):
            return None
        return meta

    def _completed(self, name: str, meta: Any, done: int, made: list[Span], spanned: int) -> int:
        """``name`` completed ``done`` more runs: each is a span (the open one, if any, is the
        first); ``spanned`` attempts of it had one before. Returns how many have one now."""
        base = self._shift + (self.t0 or 0.0)
        if done == 1:  # (the common case, without making the two lists)
            took, ends = [meta.last_duration], [meta.finished_at]
        else:
            took, ends = meta.durations[-done:], meta.finishes[-done:]
            n = min(len(took), len(ends))  # runs beyond the 10,000 kept, or before a restored checkpoint: lost
            took, ends = took[len(took) - n:], ends[len(ends) - n:]
        attempt = self._attempt.pop(name, 1)
        span = self._open.pop(name, None)
        spanned = self._spanned[name] = spanned + done - (span is not None)
        first = True
        for seconds, end in zip(took, ends, strict=True):
            end -= base
            if first and span is not None:
                span.end, span.outcome = max(end, span.start), "completed"
            else:
                made.append(Span(name, attempt if first else 1, end - seconds, end, "completed"))
            first = False
            self._ran.append(name)
            self._took.append(seconds)
        if took:
            self._attempt_began(name, ends[0] - base - took[0] if span is None else span.start)
        self.completed_runs += done
        self._fold_if_long()
        return spanned

    def _attempt_began(self, name: str, start: float) -> None:
        """An attempt of ``name`` began at ``start`` (seconds since the run started): a wait the
        events opened before it (not a person's: that one begins inside an attempt) ends there."""
        wait = self.open_waits.get(name)
        if wait is not None and wait.kind != "person" and wait.start <= start:
            self._end_wait(name, start + (self.t0 or 0.0))

    # -- durations -------------------------------------------------------------------------------
    @property
    def durations(self) -> dict[str, list[float]]:
        """Seconds of each finished run of each state in this run (at most 10,000 per state)."""
        self._pull()
        return self._folded_durations()

    @durations.setter
    def durations(self, value: dict[str, list[float]]) -> None:
        self._durations, self._folded = value, len(self._ran)

    def _folded_durations(self) -> dict[str, list[float]]:
        ran, took, out = self._ran, self._took, self._durations
        if not out and not self._folded and len(set(ran)) == len(ran):  # each state ran once so far (a fan-out)
            out.update(zip(ran, map(list, zip(took)), strict=True))  # in C: ~1 ms for 10,000 states, not ~5
            self._folded = len(ran)
        for i in range(self._folded, len(ran)):
            runs = out.get(ran[i])
            if runs is None:
                out[ran[i]] = [took[i]]
            elif len(runs) < 10_000:
                runs.append(took[i])
        self._folded = len(ran)
        return out

    def _fold_if_long(self) -> None:
        """Move the flat entries into ``durations`` and drop them, once there are many."""
        if len(self._ran) >= _FOLD_AT:
            self._folded_durations()
            del self._ran[:], self._took[:]
            self._folded = 0

    def slowest(self, limit: int) -> tuple[dict[str, list[float]], int]:
        """The durations of the ``limit`` states with the slowest p95 in this run (or more), and
        how many states finished: what the live view's latency table shows.

        When each state ran once (a fan-out) they are ranked straight from the finish order
        (in C: ~1 ms for 10,000 states), without making a list per state.
        """
        self._pull()
        ran, took = self._ran, self._took
        if not self._durations and len(set(ran)) == len(ran):
            top = heapq.nsmallest(limit, zip(map(neg, took), ran, strict=True))  # slowest first, ties by name
            return {state: [-minus] for minus, state in top}, len(ran)
        durations = self.durations
        return durations, sum(1 for runs in durations.values() if runs)

    def _end_attempt(self, state: str, t: float, outcome: str, began: float | None,
                     payload: int | None = None) -> None:
        """The attempt of ``state`` in flight ended at ``t`` (clock time) with ``outcome``: its open
        span closes, or, when it began since the last read (no span yet), one is made from
        ``began`` (clock time; None: from its metadata's ``started_at``). For a mapped state, the
        span of branch ``payload`` closes (None: the map tells how its branches ended)."""
        if payload is not None or self._map_of(state) is not None:  # (a map's branch: the map tells how it ended)
            if payload is not None:
                self._end_branch_attempt(state, payload, t, outcome)
            return
        span = self._open.pop(state, None)
        if span is not None:
            span.end, span.outcome = max(self._rel(t), span.start), outcome
            return
        meta = self._unspanned(state)
        if meta is None:
            return
        self._spanned[state] = meta.attempts
        start = self._rel(began) if began is not None else self._rel(meta.started_at - self._shift)
        self._spans.append(Span(state, self._attempt.get(state, 1), start, max(self._rel(t), start), outcome))
        self._attempt_began(state, start)
