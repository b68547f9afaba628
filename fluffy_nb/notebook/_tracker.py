"""RunTracker: what the views know about one run, kept up to date from the run and its rarer events.

The tracker is the only event subscriber of a view, and it reads no event the engine makes for
every state (``StateScheduled``, ``StateStarted``, ``StateFinished``): statuses, spans and
durations are read off the run it follows when the tracker is read (a view's redraw, and once
at the run's end; its base ``_trackruns.RunReading`` does it, in O(changed states) work after a
pass in C), so a watched run costs the engine nothing per state and a quiet chain still steps
in place. What happens rarely (a failure, a retry, a cancel, a block, a person's question and
answer, a checkpoint, a resource sample, a remote placement, the run's start and end) comes as
events, each a few dict writes; nothing is drawn here. Views compare ``version`` with what they
last drew and redraw on their own ticker. The states of a child run (a sub-flow: ``parent/child``
names, not in the run's own metadata) come from the per-state events, subscribed only while the
agent has a sub-flow. Waits and deadlocks are kept by the base ``_trackwaits.WaitTracking``
(``WaitSpan`` and ``Deadlock`` are imported from there).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from ..engine._errors import DeadlockError
from ..engine._events import (
    CheckpointSaved,
    Event,
    HumanAnswered,
    HumanRequested,
    HumanWithdrawn,
    ResourceSample,
    RunFinished,
    RunStarted,
    StateAdded,
    StateBlocked,
    StateCancelled,
    StateFailed,
    StateFinished,
    StatePlaced,
    StateRetrying,
    StateScheduled,
    StateStarted,
)
from ..engine._state import read_status
from ..engine._status import StateStatus
from ..engine._subflow import Subflow
from ._layout import END_STATUSES
from ._trackbranches import BranchReading
from ._trackruns import STATUS_TEXT, RunReading, Span, SpanLog
from ._trackwaits import Deadlock, WaitSpan, WaitTracking

__all__ = ["Deadlock", "RunTracker", "Span", "WaitSpan"]

_STATUS_TEXT = STATUS_TEXT
_FRESH = frozenset({StateStatus.PENDING})
#: statuses of a state in flight: with no run going they read as ready (the run relaunches them)
_IN_FLIGHT = frozenset({"running", "retrying", "waiting_for_human"})


class RunTracker(WaitTracking, RunReading, BranchReading):
    """Collects statuses, spans, samples and checkpoints of an agent's runs.

    Args:
        agent: The agent to observe (subscribes to ``agent.events`` at once).
        max_spans: Spans kept for the timeline (oldest dropped beyond it).

    Example:
        >>> from fluffy_nb import Agent
        >>> agent = Agent("t")
        >>> tracker = RunTracker(agent)
        >>> tracker.counts()
        Counter()
        >>> tracker.close()
    """

    def __init__(self, agent: Any, *, max_spans: int = 20_000) -> None:
        self.agent = agent
        self._version = 0  # bumped by every event but resource samples (those bump samples_version)
        self.samples_version = 0
        self._status: dict[str, str] = {}
        self._spans = SpanLog(max_spans)
        self._open: dict[str, Span] = {}
        self.samples: deque[ResourceSample] = deque(maxlen=3600)
        self.checkpoints: list[CheckpointSaved] = []
        self.waiting: dict[str, HumanRequested] = {}
        self.wait_spans: deque[WaitSpan] = deque(maxlen=max_spans)  # every wait, by reason (the timeline's)
        self.open_waits: dict[str, WaitSpan] = {}  # state -> the wait it is in now (from events)
        self.deadlocks: list[Deadlock] = []  # detected in this run
        self.run_id = ""
        self.run_status = "idle"
        self.error: str | None = None
        self.exception: BaseException | None = None
        self.t0: float | None = None  # clock.monotonic() at run start
        self.wall0: float | None = None  # time.perf_counter() at run start (elapsed while running)
        self.duration: float | None = None
        self.attention = 0  # bumped by what a person should see at once: asks, failures, retries, the end
        self.completed_runs = 0
        self.retries = 0
        self.failures = 0
        self.run: Any = None  # the run followed (None: the agent's next run)
        self._pinned = False
        self._statuses_of: Any = None  # the run, not begun yet, whose statuses ``status`` holds
        # seconds of each finished run, per state (this run): kept as two flat lists, folded into
        # ``durations`` when read (10,000 one-item lists made at once cost the run's GC more than
        # the appends cost the events)
        self._ran: list[str] = []
        self._took: list[float] = []
        self._durations: dict[str, list[float]] = {}
        self._folded = 0
        self.where: dict[str, str] = {}  # state -> the worker its latest remote attempt ran on
        self._reset_statuses()
        self._pulled: Any = None  # the run whose metadata is read (``_trackruns``; set by _read_from)
        self._branch_open, self._branch_seen, self._branch_tries = {}, {}, {}  # (``_trackbranches``)
        self._spanned: dict[str, int] = {}
        self._attempt: dict[str, int] = {}
        self._handlers: dict[type, Callable[[Any], None]] = {
            RunStarted: self._run_started, RunFinished: self._run_finished, StateAdded: self._added,
            StateScheduled: self._scheduled, StateBlocked: self._blocked, StateStarted: self._on_started,
            StateFinished: self._on_finished, StateFailed: self._failed, StateRetrying: self._retrying,
            StateCancelled: self._cancelled, HumanRequested: self._asked, HumanAnswered: self._answered,
            HumanWithdrawn: self._withdrawn, CheckpointSaved: self._checkpoint, ResourceSample: self._sample,
            StatePlaced: self._placed,
        }
        self._sample_handler = self._handlers[ResourceSample]
        # the per-state events (a child run's states alone: the run's own are read off it) go
        # straight to their handlers, subscribed only while the agent has a sub-flow (_watch_children)
        self._hot: dict[type, Callable[[Any], None]] = {
            StateStarted: self._on_started, StateFinished: self._on_finished}
        bus = agent.events
        self._leave = [bus.subscribe(self.on_event, types=tuple(
            k for k in self._handlers if k not in self._hot and k is not StateScheduled))]
        self._children_watched = False
        self._watch_children()
        latest = getattr(agent, "latest_run", None)
        if latest is not None and latest.active:  # attached to a run already going
            self._take(latest)
        elif latest is not None and latest.restored_from is not None:  # a restored checkpoint waits to run
            self.run = latest
            self._status = self._agent_statuses(running=False)

    def _watch_children(self) -> None:
        """Subscribe to the per-state events once the agent has a sub-flow: its child runs' states
        are not in the run's own metadata (they reach the parent's bus as ``parent/child``)."""
        if self._children_watched or not any(isinstance(spec.func, Subflow) for spec in self.agent.states.values()):
            return
        self._children_watched = True
        bus = self.agent.events
        self._leave += [bus.subscribe(handler, types=(kind,)) for kind, handler in self._hot.items()]

    def _unsubscribe(self) -> None:
        for leave in self._leave:
            leave()
        self._leave = []

    # -- what the views read (each read brings the run's states up to date first) ----------------
    @property
    def status(self) -> dict[str, str]:
        """Each state's status word (``pending``, ``ready``, ``running``... ``skipped``), as of now."""
        self._pull()
        return self._status

    @status.setter
    def status(self, value: dict[str, str]) -> None:
        self._status = value

    @property
    def spans(self) -> SpanLog:
        """The run's state attempts, in start order (the timeline's), as of now."""
        self._pull()
        return self._spans

    @property
    def version(self) -> int:
        """A number that changes whenever what the views show changes (read it to know whether to redraw)."""
        self._pull()
        return self._version

    @version.setter
    def version(self, value: int) -> None:
        self._version = value

    def follow(self, run: Any) -> None:
        """Show ``run`` (from ``handle.run``) and ignore the agent's other runs."""
        self._pinned = True
        if run is not self.run:
            self._take(run)

    def _take(self, run: Any) -> None:
        self.run = run
        self.run_id = run.run_id
        if run.active:
            self.run_status = "running"
            self.t0 = run.started_at
            self.wall0 = time.perf_counter() - (self.agent.clock.monotonic() - run.started_at)
        self._status = self._agent_statuses(running=run.active)
        self._statuses_of = None if run.begun else run  # still true at its RunStarted if nothing ran
        if run.active:
            self._read_from(run)

    def _reset_statuses(self) -> None:
        self._status = {name: "pending" for name in self.agent.states}

    def _agent_statuses(self, *, running: bool) -> dict[str, str]:
        """Statuses as the agent knows them now (a restored checkpoint's completed states stay done).

        Without a run going (``running=False``) nothing runs yet: what the checkpoint recorded
        as in flight shows as ready (the run relaunches it).
        """
        agent = self.agent
        run = self.run if self.run is not None else getattr(agent, "latest_run", None)
        metas = run.metadata if run is not None else {}
        if not (run is not None and run.completed_states) and set(map(read_status, metas.values())) <= _FRESH:
            return dict.fromkeys(agent.states, "pending")  # a fresh run (10,000 states: ~0.5 ms, not ~3)
        completed = set(run.completed_states) if run is not None else set()
        status: dict[str, str] = {}
        text = _STATUS_TEXT  # an enum's ``.value`` costs ~0.4 us: 10,000 states are drawn at every run start
        for name in agent.states:
            meta = metas.get(name)
            st = "pending" if meta is None else text.get(meta.status) or meta.status.value
            if st == "pending":
                if name in completed:
                    st = "completed"
            elif not running and st in _IN_FLIGHT:
                st = "ready"
            status[name] = st
        return status

    def sync_from_agent(self) -> None:
        """Take statuses (and, with no run going, the run's status) from the agent as it is now.

        For a run that ended without events, e.g. ``resume_latest()`` of a run that had already
        completed.
        """
        run = self.run if self.run is not None else getattr(self.agent, "latest_run", None)
        running = bool(run is not None and run.active)
        self._pull()  # the spans of what ran since the last read, before the statuses are taken whole
        self._status = self._agent_statuses(running=running)
        if not running and run is not None:
            self.run_status = run.status.value
            self.mark_skipped()
        self._version += 1

    def close(self) -> None:
        """Stop observing the agent (the last view of a run to close stops its maps' branch timing)."""
        self._unsubscribe()
        self._stop_timing(self.run)

    # -- events ----------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Update from one engine event (the bus calls this): a few dict writes, nothing derived
        (counts, figures and tables are made when a view redraws)."""
        hot = self._hot.get(type(event))
        if hot is not None:
            hot(event)
            return
        handler = self._handlers.get(type(event))
        if handler is None or (event.run_id != self.run_id and not self._mine(event)):
            return
        handler(event)
        if handler is self._sample_handler:
            self.samples_version += 1  # a sample changes only the resources chart: no other redraw
        else:
            self._version += 1

    def _mine(self, event: Event) -> bool:
        """Whether ``event`` belongs to the run shown: a view shows one run of its agent."""
        if event.run_id == self.run_id or isinstance(event, StateAdded):
            return True
        if isinstance(event, RunStarted) and not self._pinned and self.run_status != "running":
            return True  # the agent's next run, once the one shown has ended
        return False

    @property
    def events_seen(self) -> int:
        """How many events the tracker has taken in."""
        return self._version + self.samples_version

    def _run_started(self, e: RunStarted) -> None:
        # the agent is set up for this run by now: all pending for a fresh run, the checkpoint's
        # statuses (completed states done) for a run continuing from a restored checkpoint
        runs = {r.run_id: r for r in getattr(self.agent, "runs", ())}
        run = self.run = runs.get(e.run_id, self.run)
        if not (run is not None and run is self._statuses_of and not run.steps and not run.completed_states):
            self._status = self._agent_statuses(running=False)  # (10,000 states: ~3 ms; attach made them)
        self._statuses_of = None
        self._spans.clear()
        self._open.clear()
        self.samples.clear()
        self.checkpoints.clear()
        self.waiting.clear()
        self.wait_spans.clear()
        self.open_waits.clear()
        self.deadlocks = []
        del self._ran[:], self._took[:]
        self.durations = {}
        self.run_id, self.run_status, self.error, self.exception = e.run_id, "running", None, None
        self.t0, self.wall0, self.duration = e.time, time.perf_counter(), None
        self.completed_runs = self.retries = self.failures = 0
        if run is not None:
            self._read_from(run)

    def _run_finished(self, e: RunFinished) -> None:
        self._pull()  # what ran since the last read: the picture of the end is whole
        self._stop_reading()
        self.attention += 1
        self.run_status, self.error, self.duration = e.status, e.error, e.duration
        end = self._rel(e.time)
        for span in self._open.values():
            span.end, span.outcome = end, "cancelled"
        self._open.clear()
        self._end_branches(end)
        self.waiting.clear()
        for state in list(self.open_waits):
            self._end_wait(state, e.time)
        self._find_deadlocks()  # also those a state caught (``except DeadlockError``): no failure event
        self.mark_skipped()

    def mark_skipped(self) -> None:
        """A completed run's states it never needed (still pending or ready) read as skipped.

        Only a completed run: after a failure or a cancel, what did not run was cut short, not
        skipped. The engine's statuses are left as they are; this is the picture's word.
        """
        if self.run_status != "completed":
            return
        status = self._status
        for state, st in status.items():
            if st in ("pending", "ready"):
                status[state] = "skipped"

    def _added(self, e: StateAdded) -> None:
        self._status.setdefault(e.state, "pending")
        self._watch_children()

    def _scheduled(self, e: StateScheduled) -> None:  # (passed to on_event by hand: not subscribed)
        self._status[e.state] = "ready"

    def refresh(self) -> None:
        """Bring statuses, spans and durations up to date with the run (views call it before they draw).

        No per-state event tells the tracker: the states that changed since the last read are
        found in one pass over the run's states in C (10,000 states: ~0.5 ms) and read
        (``_trackruns``). Reading ``status``, ``spans`` or ``version`` does the same.
        """
        self._pull()

    def _blocked(self, e: StateBlocked) -> None:
        self._pull_state(e.state)
        self._status[e.state] = "blocked"
        self._begin_wait(e.state, e.kind or "blocked", e.time, e.reason, e.holders)

    def _child(self, e: StateStarted | StateFinished) -> bool:
        """Whether ``e`` is about a state of a child run of the run shown (what its handlers read)."""
        run = self._pulled
        return e.run_id == self.run_id and (run is None or e.state not in run.metadata)

    def _on_started(self, e: StateStarted) -> None:
        if not self._child(e):
            return
        state = e.state
        self._status[state] = "running"
        if self.open_waits:
            self._end_wait(state, e.time)
        span = Span(state, e.attempt, e.time - (e.time if self.t0 is None else self.t0))
        self._open[state] = span
        self._spans.append(span)
        self._version += 1

    def _placed(self, e: StatePlaced) -> None:
        self._pull_state(e.state)
        self.where[e.state] = e.where
        span = self._open.get(e.state)
        if span is not None:
            span.where = e.where

    def _on_finished(self, e: StateFinished) -> None:
        if not self._child(e):
            return
        state = e.state
        self._status[state] = "completed"
        self.completed_runs += 1
        ran = self._ran
        ran.append(state)
        self._took.append(e.duration)
        self._fold_if_long()
        span = self._open.pop(state, None)
        if span is not None:
            span.end = e.time - (e.time if self.t0 is None else self.t0)
            span.outcome = "completed"
        self._version += 1

    def _failed(self, e: StateFailed) -> None:
        self._pull_state(e.state)
        self.attention += 1
        if e.final:
            self._status[e.state] = "timeout" if e.timed_out else "failed"
            self.failures += 1
            self._end_wait(e.state, e.time)
        if isinstance(e.exception, DeadlockError):
            self._note_deadlock(e.exception, e.state)
        outcome = ("timeout" if e.timed_out else "failed") if e.final else "retried"
        self._attempt[e.state] = e.attempt
        self._end_attempt(e.state, e.time, outcome, e.time - e.duration, e.payload)
        self._attempt.pop(e.state, None)

    def _retrying(self, e: StateRetrying) -> None:
        self._pull_state(e.state)
        self._status[e.state] = "retrying"
        self._attempt[e.state] = e.attempt  # the number of the attempt to come (its span's)
        self.retries += 1

    def _cancelled(self, e: StateCancelled) -> None:
        self._pull_state(e.state)
        self._status[e.state] = "cancelled"
        self._end_wait(e.state, e.time)
        self._end_attempt(e.state, e.time, "cancelled", None)

    def _asked(self, e: HumanRequested) -> None:
        self._pull_state(e.state)
        self.attention += 1
        self._status[e.state] = "waiting_for_human"
        self.waiting[e.request_id] = e
        self._begin_wait(e.state, "person", e.time, f"a person: {e.prompt!r}", ())
        span = self._open.get(e.state)
        if span is not None:
            if span.waits is None:
                span.waits = []
            span.waits.append([self._rel(e.time), None])

    def _answered(self, e: HumanAnswered) -> None:
        self._pull_state(e.state)
        asked = self.waiting.pop(e.request_id, None)
        self._end_wait(e.state, e.time, "person")
        if self._status.get(e.state) == "waiting_for_human":
            self._status[e.state] = "running"
        span = self._open.get(e.state)
        if span is not None and asked is not None:
            span.waited += max(0.0, e.time - asked.time)
            if span.waits and span.waits[-1][1] is None:
                span.waits[-1][1] = self._rel(e.time)

    def _withdrawn(self, e: HumanWithdrawn) -> None:
        self.waiting.pop(e.request_id, None)
        self._end_wait(e.state, e.time, "person")

    def _checkpoint(self, e: CheckpointSaved) -> None:
        self.checkpoints.append(e)

    def _sample(self, e: ResourceSample) -> None:
        self.samples.append(e)

    # -- queries ------------------------------------------------------------------------------
    def counts(self) -> Counter[str]:
        """How many states are in each status."""
        return Counter(self.status.values())

    def elapsed(self) -> float:
        """Seconds the run has taken so far (its duration once finished)."""
        if self.duration is not None:
            return self.duration
        if self.wall0 is None:
            return 0.0
        return time.perf_counter() - self.wall0

    @property
    def finished(self) -> bool:
        """Whether the run has ended."""
        return self.run_status in ("completed", "failed", "cancelled")

    def progress(self) -> tuple[int, int]:
        """``(done, known)``: states that reached an end status (skipped included), and states known so far."""
        c = self.counts()
        return sum(c[s] for s in END_STATUSES), len(self.status)

    def summary(self) -> str:
        """One line: status, progress, elapsed, what runs and waits."""
        c = self.counts()  # once: 10,000 statuses are counted at every redraw of a running view
        done, known = sum(c[s] for s in END_STATUSES), len(self.status)
        parts = [f"{self.agent.name}: {self.run_status}", f"{done}/{known} states",
                 f"{self.elapsed():.1f}s"]
        for key, label in (("running", "running"), ("retrying", "retrying"), ("blocked", "blocked"),
                           ("waiting_for_human", "waiting for a person"), ("failed", "failed"),
                           ("timeout", "timed out"), ("cancelled", "cancelled"), ("skipped", "skipped")):
            if c[key]:
                parts.append(f"{c[key]} {label}")
        if self.retries:
            parts.append(f"{self.retries} retries")
        return " · ".join(parts)

    def __repr__(self) -> str:
        return f"<RunTracker {self.summary()} events={self.events_seen}>"
