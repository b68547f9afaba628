"""Checkpointer: making, saving and loading the checkpoints of one run.

Owns everything between a running run and a checkpoint store: the snapshot of a run
(``make``), where it goes (``save``), periodic checkpoints (``every``), and loading a
checkpoint back into a new run (``load``/``relaunch``). The user-facing travel through
history (``history``, ``restore``, ``fork``, ``diff``, ``resume_latest``) is ``_travel.py``.

Cost: a durable run checkpoints after every finished state, on the event loop. A ``"state"``
checkpoint is a delta against the run's previous one (``_delta``: changed statuses, counters
and context keys), with a full one once the deltas add up to its size and for every other trigger, so
a step writes about what it changed, not the whole run. The checkpoint is built without
re-validation (every field comes from the engine itself, already JSON-checked; a delta goes
straight into the model's ``__dict__``: validation is for what is loaded), and the store
decides how to write it (``SQLiteStore`` hands it to a writer thread). Final checkpoints
(pause, completion, failure, cancel, fork) are flushed, so
once ``run()`` returns its checkpoints are in the store.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from ._codec import encode_run_data, warn_not_saved
from ._decode import decode_context
from ._delta import DeltaTracker, TrackedDict
from ._errors import CheckpointError, SerializationError
from ._events import CheckpointSaved
from ._graph import Token
from ._maprecords import checkpoint_maps, plain_frontier, relaunch_maps
from ._routes import notes as route_notes
from ._routes import rebuilt
from ._state import started_facts
from ._status import AgentStatus
from ._typed import decode_typed

if TYPE_CHECKING:
    from ._checkpoint import Checkpoint
    from ._run import Run

_FLUSHED_TRIGGERS = frozenset({"pause", "completion", "failure", "cancel", "fork"})
#: a store refusing these for their data (SerializationError: too large) warns, and the run goes on
_LENIENT_STORE_TRIGGERS = frozenset({"interval", "pause", "completion"})
_MAX_JOIN_BRANCHES = 10_000  # branches a restored checkpoint may say wait at one join


log = logging.getLogger("fluffy_nb")


_ids: list[str] = []  # ids drawn ahead from os.urandom, taken with list.pop (atomic: threads never share one)
_IDS_AHEAD = 256


def new_checkpoint_id() -> str:
    """A new checkpoint id: 16 bytes of ``os.urandom`` as 32 hex digits (the shape of ``uuid4().hex``).

    Drawn 256 at a time: one ``getrandom`` system call per id was about a hundredth of a durable step.
    A forked child drops the ids its parent drew (``register_at_fork``), so the two never repeat one.
    """
    while True:
        try:
            return _ids.pop()
        except IndexError:  # drawn out (other threads may refill too: more ids, never the same one)
            hexed = os.urandom(16 * _IDS_AHEAD).hex()
            _ids.extend([hexed[i:i + 32] for i in range(0, 32 * _IDS_AHEAD, 32)])


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.clear)


_model: Any = None  # (Checkpoint, its field names, their set, FORMAT_VERSION), once the first checkpoint is made


def _checkpoint_model() -> Any:
    """The Checkpoint model, its fields and format version: imported (with pydantic) on first use,
    then read from a global (an import statement per durable step cost about as much as a field)."""
    global _model
    if _model is None:
        from ._checkpoint import FORMAT_VERSION, Checkpoint

        _model = (Checkpoint, tuple(Checkpoint.model_fields), set(Checkpoint.model_fields), FORMAT_VERSION)
    return _model


def _built(model: Any, field_set: set[str], values: dict[str, Any]) -> Checkpoint:
    """A Checkpoint whose ``__dict__`` is ``values`` (every field, in the model's order), unvalidated.

    Every built checkpoint shares one ``__pydantic_fields_set__``, the set of all fields: pydantic
    only ever adds a field's name to it (setting an attribute; ``model_copy`` copies it first), so
    it never changes, and a durable step no longer allocates a 27-name set (a 1 KB table) per state.
    """
    cp = model.__new__(model)
    object.__setattr__(cp, "__dict__", values)
    object.__setattr__(cp, "__pydantic_fields_set__", field_set)
    object.__setattr__(cp, "__pydantic_extra__", None)
    object.__setattr__(cp, "__pydantic_private__", None)
    return cp


class Checkpointer:
    """Makes and saves the checkpoints of one run, and loads one back into it.

    Args:
        run: The run it checkpoints.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.sequence = 0
        self.last_id: str | None = None
        self.tracker = DeltaTracker(run)
        self._made = False  # make() chose for the store: the next delta may follow it
        #: states in flight in the checkpoint this run was restored from -> their attempts there
        #: (``resumes_inside``); empty for a run that was not restored
        self.relaunched: dict[str, int] = {}

    # -- making and saving ---------------------------------------------------------------
    def make(self, trigger: str, error: BaseException | None = None,
             metadata: dict[str, Any] | None = None) -> Checkpoint:
        """A snapshot of the run now (not saved)."""
        run = self.run
        restored = run.restored_from
        loaded = restored is not None and not run.active  # loaded but not relaunched yet
        if loaded:  # the frontier is still the checkpoint's
            assert restored is not None
            frontier = list(restored.pending)
            joins = dict(restored.scheduler.get("joins", {}))
            maps = list(restored.maps)
        elif run.maps:  # payload fan-outs: their branches go in their own records
            frontier, joins, maps = checkpoint_maps(run)
        else:
            frontier, joins = self._frontier()
            maps = []
        routed = restored.metadata.get("routed") if loaded and restored is not None else (
            route_notes(run.scheduler) if run.scheduler.routed else None)
        if routed:  # states a failure was routed to, in flight: a restore gives them the error again
            metadata = {**(metadata or {}), "routed": routed}
        self.sequence += 1
        if run.store is not None and not loaded and not self.tracker.wants_full(trigger):
            self._made = True
            # what changed since the previous checkpoint of the run (its parent)
            return self._checkpoint(trigger, frontier, joins, maps, error, self.tracker.changes(),
                                    dict(metadata) if metadata else {}, delta=True)
        self._made = run.store is not None
        status, attempts = started_facts(run.metadata)  # one pass: most of a full checkpoint's cost
        shared, typed, metadata = encode_run_data(run.name, run.shared, run.typed, trigger, metadata)
        collections: tuple[Any, ...] = (status, list(run.completed_states), dict(run.completion_counts), attempts,
                                        shared, typed, list(run.human_answers), [])
        return self._checkpoint(trigger, frontier, joins, maps, error, collections, metadata, delta=False)

    def _frontier(self) -> tuple[list[str], dict[str, int]]:
        """The states running, queued and parked now, and the branches waiting at each join."""
        run = self.run
        sched = run.scheduler
        frontier = [ex.state for ex in sched.running.values()]
        if sched.queue:
            frontier += [ex.state for _, ex in sorted(sched.queue)]
        parked = run.deps.parked
        if parked:
            frontier += [ex.state for ex in parked]
        graph = sched.joins
        # no fan-out and nobody at a join (every chain, most steps): nothing to count
        joins = graph.snapshot()["joins"] if graph.groups or graph.root.joins else {}
        return frontier, joins

    def _checkpoint(self, trigger: str, frontier: list[str], joins: dict[str, int], maps: list[Any],
                    error: BaseException | None, collections: tuple[Any, ...], metadata: dict[str, Any],
                    delta: bool) -> Checkpoint:
        """The checkpoint of the run now, its collections given (all of them, or a delta's).

        Built straight into the model's ``__dict__`` (its field order, every field), without
        validation: this runs after every state of a durable run, and every value is the
        engine's own, already encoded and checked (validation is for what is loaded).
        """
        run = self.run
        status, completed, counts, attempts, shared, typed, answers, removed = collections
        steps = run.steps
        model = _checkpoint_model()
        return _built(model[0], model[2], {
            "format_version": model[3],
            "checkpoint_id": new_checkpoint_id(),
            "parent_id": self.last_id,
            "agent_name": run.name,
            "run_id": run.run_id,
            "timestamp": run.clock.time(),
            "sequence": self.sequence,
            "trigger": trigger,
            "agent_status": run.status,
            "state_status": status,
            "completed_states": completed,
            "completion_counts": counts,
            "state_attempts": attempts,
            "pending": frontier,
            "scheduler": {"joins": joins, "steps": steps},
            "shared_state": shared,
            "typed_data": typed,
            "human_answers": answers,
            "steps": steps,
            "error": None if error is None else f"{type(error).__name__}: {error}",
            "metadata": metadata,
            "parent_run_id": run.parent_run_id,
            "parent_state": run.parent_state,
            "maps": maps,  # a map's record is written whole: a durable map's steps grow with it (README)
            "delta": delta,
            "removed_keys": removed,
            "completed_total": len(run.completed_states) if delta else None,
        })

    def save(self, trigger: str, error: BaseException | None = None,
             metadata: dict[str, Any] | None = None) -> Checkpoint | None:
        """Make a checkpoint and put it in the agent's store (if any); publish CheckpointSaved.

        Returns None when a state or interval checkpoint could not be saved (the run then
        fails with the error) or a failure checkpoint was lost (noted on the run's error). An
        interval, pause or end checkpoint the store refuses for its data (too large for a store
        to load back) is returned unsaved with a ``FluffyWarning``: the run goes on.
        """
        run = self.run
        t0 = time.perf_counter()
        cp = None
        try:
            cp = self.make(trigger, error, metadata)
            store = run.store
            if store is not None:
                store.put(cp)
                if trigger in _FLUSHED_TRIGGERS:
                    flush = getattr(store, "flush", None)
                    if flush is not None:
                        flush()
        except Exception as exc:
            self.tracker.reset()  # the chain may have a hole: the next checkpoint is full
            if not isinstance(exc, CheckpointError):
                exc = CheckpointError(f"the store {run.agent.store!r} failed to save a checkpoint: "
                                      f"{type(exc).__name__}: {exc}")
            if cp is not None and isinstance(exc, SerializationError) and trigger in _LENIENT_STORE_TRIGGERS:
                # the data, not the store: a periodic, pause or end checkpoint never fails the run for it
                warn_not_saved(run.name, trigger, exc)
                return cp
            self._not_saved(trigger, error, exc)
            return None
        self.last_id = cp.checkpoint_id
        if self._made and store is not None:
            self.tracker.written(cp)  # the next delta is against this checkpoint
        self._made = False
        if run.events.active:
            run.events.publish(CheckpointSaved(run.name, run.run_id, run.clock.monotonic(), cp.checkpoint_id,
                                               trigger, cp.completed_count, time.perf_counter() - t0))
        return cp

    def _not_saved(self, trigger: str, error: BaseException | None, exc: Exception) -> None:
        run = self.run
        if trigger == "failure" and error is not None:
            # the run's own failure is what run() raises; the lost checkpoint is noted on it
            error.add_note(f"(its failure checkpoint could not be saved: {exc})")
            log.warning("fluffy_nb: failure checkpoint of %r not saved: %s", run.name, exc)
            return None
        if not (run.active and trigger in ("state", "interval", "route")):
            raise exc
        # inside a state's completion or the interval task: raising here would lose the
        # error in a task and leave the run waiting; fail the run with it instead
        # a run with a store keeps its history there whether or not it is durable: a hole in it
        # (a route's, an interval's) stops the run, saying why
        why = "durability was asked for" if run.durable else \
            "its history in the store would have a hole (fix the store, or run without one)"
        run.control.fail("checkpoint", CheckpointError(
            f"agent {run.name!r}: the {trigger} checkpoint could not be saved, so the run stopped ({why}): {exc}"
        ), wrap=False)
        return None

    async def every(self, seconds: float) -> None:
        """Checkpoint every ``seconds`` while the run is active and not paused."""
        run = self.run
        while True:
            await run.clock.sleep(seconds)
            if run.active and not run.scheduler.paused:  # a paused run has its pause checkpoint
                self.save("interval")
                if run.children:  # sub-workflows running now: their progress too
                    from ._subflow import checkpoint_children

                    checkpoint_children(run)

    # -- loading --------------------------------------------------------------------------
    def load(self, cp: Checkpoint) -> None:
        """Put ``cp``'s data, statuses and answers into this (not yet started) run."""
        run = self.run
        run.typed = {k: decode_typed(k, v) for k, v in cp.typed_data.items()}
        run.shared = TrackedDict(decode_context(cp.shared_state))
        run.completed_states = list(cp.completed_states)
        run.ended = set(cp.completed_states)
        # the states in completed_states, each counted at least once: the counts' keys are the run's
        # completed_set (a count of 0, or of a state not in the list, does not make a state completed)
        counts = cp.completion_counts
        run.completion_counts = {name: max(counts.get(name, 1), 1) for name in cp.completed_states}
        run.human_answers = list(cp.human_answers)
        run.steps = cp.steps
        self.sequence = cp.sequence
        self.last_id = cp.checkpoint_id
        self.tracker.reset()
        for name, meta in run.metadata.items():
            status = cp.state_status.get(name)
            if status is not None:
                meta.status = status
            meta.attempts = cp.state_attempts.get(name, 0)
        ended = cp.agent_status in (AgentStatus.COMPLETED, AgentStatus.FAILED, AgentStatus.CANCELLED)
        # loaded, not running: a run that had not ended waits (PAUSED) for run()/resume() to continue it
        run.status = cp.agent_status if ended and not cp.pending else AgentStatus.PAUSED
        run.restored_from = cp
        self.relaunched = {name: cp.state_attempts.get(name, 0) for name in cp.pending}

    def resumes_inside(self, state: str) -> bool:
        """Whether the attempt of ``state`` running now relaunches the one this run's restored
        checkpoint had in flight (the first attempt since the restore): a sub-workflow state then
        continues the child of that attempt. Any later entry (a retry, a route, a transition back)
        starts a fresh child, as it does in a run that was never restored."""
        before = self.relaunched.get(state)
        return before is not None and before == self.run.meta(state).attempts - 1

    def relaunch(self, cp: Checkpoint) -> None:
        """Start the frontier of a restored checkpoint as branches of the root fan-out."""
        sched = self.run.scheduler
        joins = dict(cp.scheduler.get("joins", {}))
        routed = cp.metadata.get("routed")
        if routed is not None and not isinstance(routed, dict):
            raise CheckpointError(f"checkpoint {cp.checkpoint_id[:12]}: metadata['routed'] is not a mapping")
        for name in plain_frontier(cp.pending, cp.maps) if cp.maps else cp.pending:
            if name in sched.pending:
                continue
            note = routed.get(name) if routed else None
            if note is None:
                sched.start(name, sched.joins.add_branch(name))
            else:  # a route's state: it reads its failure again
                sched.start_routed(name, sched.joins.add_branch(name), rebuilt(name, note), str(note.get("from")))
        root = sched.joins.root
        states = self.run.agent.states
        waiting = False
        for target, count in joins.items():
            if target in states:
                for _ in range(min(int(count), _MAX_JOIN_BRANCHES)):
                    root.joins.setdefault(target, []).append(Token(-1, root, target))
                    waiting = True
        if waiting:
            sched.joins.changed(root)
        if cp.maps:
            relaunch_maps(self.run, cp.maps)
