"""Checkpointing half of Agent: making, saving, loading checkpoints; history, restore, fork, resume.

Owns everything between a running agent and a checkpoint store: the snapshot of a run
(``_make_checkpoint``), where it goes (``_save_checkpoint``), periodic checkpoints, loading a
checkpoint back (``_load_checkpoint``/``_relaunch``), and the user-facing travel through
history: ``history``, ``restore``, ``fork``, ``diff``, ``resume_latest``.

Cost: a durable run snapshots after every finished state, on the event loop. The snapshot is
built without re-validation (``model_construct``: every field comes from the engine itself,
already JSON-checked), and the store decides how to write it (``SQLiteStore`` hands it to a
writer thread). Final checkpoints (pause, completion, failure, cancel, fork) are flushed, so
once ``run()`` returns its checkpoints are in the store.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from . import _hooks
from ._checkpoint import FORMAT_VERSION, Checkpoint, encode_shared, encode_typed_data
from ._errors import CheckpointError
from ._events import CheckpointSaved
from ._graph import Token
from ._history import CheckpointDiff, CheckpointHistory, diff_checkpoints
from ._status import AgentStatus, StateStatus
from ._typed import decode_typed

if TYPE_CHECKING:
    from ._agent import Agent
    from ._result import RunResult

_PENDING = StateStatus.PENDING
_FLUSHED_TRIGGERS = frozenset({"pause", "completion", "failure", "cancel", "fork"})
_ENDED = (AgentStatus.FAILED, AgentStatus.CANCELLED)


log = logging.getLogger("fluffy_nb")
_FIELDS = frozenset(Checkpoint.model_fields)


def _construct(**values: Any) -> Checkpoint:
    """``Checkpoint.model_construct`` for a complete set of fields, without its per-field work.

    Equivalent to ``model_construct`` when every field is given (asserted by the tests, which
    compare both), and about 15x cheaper: it runs after every state of a durable run.
    """
    cp = Checkpoint.__new__(Checkpoint)
    object.__setattr__(cp, "__dict__", values)
    object.__setattr__(cp, "__pydantic_fields_set__", set(_FIELDS))
    object.__setattr__(cp, "__pydantic_extra__", None)
    object.__setattr__(cp, "__pydantic_private__", None)
    return cp


class CheckpointMixin:
    """Checkpoint-making and restoring methods of :class:`Agent`."""

    # -- making and saving ---------------------------------------------------------------
    def _make_checkpoint(
        self: Agent, trigger: str, error: BaseException | None = None, metadata: dict[str, Any] | None = None
    ) -> Checkpoint:
        restored = self._restored
        if restored is not None and not self._run_active:
            # loaded but not relaunched yet: the frontier is still the checkpoint's
            frontier = list(restored.pending)
            joins = dict(restored.scheduler.get("joins", {}))
        else:
            frontier = [ex.state for ex in self._running_states.values()]
            frontier += [ex.state for _, ex in sorted(self.priority_queue)]
            frontier += [ex.state for ex in self._parked]
            joins = self._joins.snapshot()["joins"]
        self._sequence += 1
        status: dict[str, StateStatus] = {}
        attempts: dict[str, int] = {}
        for name, meta in self.state_metadata.items():  # one pass: this loop is most of the cost
            st = meta.status
            if st is not _PENDING:
                status[name] = st
            n = meta.attempts
            if n:
                attempts[name] = n
        # no validation: every value below is built here from engine data, already checked
        return _construct(
            format_version=FORMAT_VERSION,
            checkpoint_id=uuid.uuid4().hex,
            parent_id=self._last_checkpoint_id,
            agent_name=self.name,
            run_id=self.run_id or "not-started",
            timestamp=self.clock.time(),
            sequence=self._sequence,
            trigger=trigger,
            agent_status=self.status,
            state_status=status,
            completed_states=list(self.completed_states),
            completion_counts=dict(self.completion_counts),
            state_attempts=attempts,
            pending=frontier,
            scheduler={"joins": joins, "steps": self._steps},
            shared_state=encode_shared(self._shared),
            typed_data=encode_typed_data(self._typed),
            human_answers=list(self._human_answers),
            steps=self._steps,
            error=None if error is None else f"{type(error).__name__}: {error}",
            metadata=dict(metadata or {}),
        )

    def _save_checkpoint(
        self: Agent, trigger: str, error: BaseException | None = None, metadata: dict[str, Any] | None = None
    ) -> Checkpoint:
        try:
            cp = self._make_checkpoint(trigger, error, metadata)
            store = self.store
            if store is not None:
                store.put(cp)
                if trigger in _FLUSHED_TRIGGERS:
                    flush = getattr(store, "flush", None)
                    if flush is not None:
                        flush()
        except CheckpointError as exc:
            if trigger == "failure" and error is not None:
                # the run's own failure is what run() raises; the lost checkpoint is noted on it
                error.add_note(f"(its failure checkpoint could not be saved: {exc})")
                log.warning("fluffy_nb: failure checkpoint of %r not saved: %s", self.name, exc)
                return None  # type: ignore[return-value]
            if not (self._run_active and trigger in ("state", "interval")):
                raise
            # inside a state's completion or the interval task: raising here would lose the
            # error in a task and leave run() waiting; fail the run with it instead
            self._fail_run("checkpoint", CheckpointError(
                f"agent {self.name!r}: the {trigger} checkpoint could not be saved, so the run stopped "
                f"(durability was asked for): {exc}"
            ), wrap=False)
            return None  # type: ignore[return-value]  # only for state/interval: nobody reads it
        self._last_checkpoint_id = cp.checkpoint_id
        if self.events.active:
            self.events.publish(CheckpointSaved(self.name, self.run_id, self.clock.monotonic(), cp.checkpoint_id,
                                                trigger, len(cp.completed_states)))
        return cp

    async def _interval_checkpoints(self: Agent, seconds: float) -> None:
        while True:
            await self.clock.sleep(seconds)
            if self._run_active and not self._paused:  # a paused run has its pause checkpoint
                self._save_checkpoint("interval")

    # -- loading --------------------------------------------------------------------------
    def _load_checkpoint(self: Agent, cp: Checkpoint) -> None:
        typed = {k: decode_typed(k, v) for k, v in cp.typed_data.items()}  # may raise: before any change
        self._init_run_state()
        self.run_id = cp.run_id
        self._shared = dict(cp.shared_state)
        self._typed = typed
        self.completed_states = list(cp.completed_states)
        self._completed_set = set(cp.completed_states)
        self._ended = set(cp.completed_states)
        self.completion_counts = Counter(cp.completion_counts or dict.fromkeys(cp.completed_states, 1))
        self._human_answers = list(cp.human_answers)
        self._steps = cp.steps
        self._sequence = cp.sequence
        self._last_checkpoint_id = cp.checkpoint_id
        for name, meta in self.state_metadata.items():
            meta.reset()
            status = cp.state_status.get(name)
            if status is not None:
                meta.status = status
            meta.attempts = cp.state_attempts.get(name, 0)
        self.status = AgentStatus.PAUSED if cp.pending else cp.agent_status
        self._restored = cp

    def _relaunch(self: Agent, cp: Checkpoint) -> None:
        """Start the frontier of a restored checkpoint as branches of the root fan-out."""
        joins = dict(cp.scheduler.get("joins", {}))
        for name in cp.pending:
            if name in self._pending:
                continue
            token = self._joins.add_branch(name)
            self._start(name, token)
        root = self._joins.root
        for target, count in joins.items():
            if target in self.states:
                for _ in range(int(count)):
                    t = Token(-1, root, target)
                    root.joins.setdefault(target, []).append(t)
        if joins:
            self._joins._changed(root)

    def _restore_checked(self: Agent, checkpoint: Any, what: str) -> Checkpoint:
        """Validate ``checkpoint`` against this agent, then load it (nothing changes on error)."""
        self._require_idle(what)
        cp = self._resolve_checkpoint(checkpoint, what)
        self._collect_class_states()
        named = set(cp.pending) | set(cp.completed_states) | set(cp.state_status)
        missing = sorted(n for n in named if n not in self.states)
        if missing:
            raise CheckpointError(
                f"{what}: checkpoint {cp.checkpoint_id[:12]} of {cp.agent_name!r} names states {missing} "
                f"that agent {self.name!r} does not have; add them (same names, same functions) first"
            )
        self._load_checkpoint(cp)
        return cp

    def _resolve_checkpoint(self: Agent, checkpoint: Any, what: str) -> Checkpoint:
        if isinstance(checkpoint, Checkpoint):
            return checkpoint
        if isinstance(checkpoint, dict):
            return Checkpoint.from_dict(checkpoint)
        cid = getattr(checkpoint, "checkpoint_id", checkpoint)  # a history row
        if isinstance(cid, str):
            return self._require_store(what).get(cid)
        raise CheckpointError(
            f"{what}({checkpoint!r}): pass a Checkpoint, its to_dict(), a checkpoint id or a history row"
        )

    def _require_store(self: Agent, what: str) -> Any:
        if self.store is None:
            raise CheckpointError(
                f"{what}: agent {self.name!r} has no checkpoint store; create it with "
                "Agent(..., store=SQLiteStore('runs.db')) or MemoryStore()"
            )
        return self.store

    # -- history and time travel ---------------------------------------------------------
    def history(self: Agent, run_id: str | None = None) -> Any:
        """Every checkpoint of this agent in the store (or of one run), oldest first.

        In a notebook (``%load_ext fluffy_nb``) this is a pandas DataFrame, one row per
        checkpoint; elsewhere a :class:`CheckpointHistory` (a list of ``CheckpointInfo``).

        Args:
            run_id: Only this run's checkpoints (default: all runs of this agent).
        """
        factory = _hooks.history_frame
        if factory is not None:
            return factory(self, run_id=run_id)
        return self.history_records(run_id)

    def history_records(self: Agent, run_id: str | None = None) -> CheckpointHistory:
        """Like :meth:`history`, always as a :class:`CheckpointHistory` (no pandas)."""
        store = self._require_store("history")
        return CheckpointHistory(store.list(agent_name=self.name, run_id=run_id), agent_name=self.name,
                                 run_id=run_id)

    def restore(self: Agent, checkpoint: Any) -> Checkpoint:
        """Load a checkpoint (object, dict, id or history row) so ``run()``/``resume()`` continue it.

        The run keeps its run id: new checkpoints extend that run's history (numbered after
        its last stored checkpoint, with the restored checkpoint as parent).

        Raises:
            AgentRunningError: the agent is running.
            CheckpointError: unknown id, newer format, or states this agent does not have.
        """
        cp = self._restore_checked(checkpoint, "restore")
        self._continue_sequence(cp)
        return cp

    def _continue_sequence(self: Agent, cp: Checkpoint) -> None:
        """Number new checkpoints of a restored run after the run's last stored one."""
        if self.store is not None:
            rows = self.store.list(agent_name=cp.agent_name, run_id=cp.run_id)
            if rows:
                self._sequence = max(self._sequence, max(r.sequence for r in rows))

    def fork(self: Agent, checkpoint: Any) -> None:
        """Start a NEW run from a checkpoint; the original run's history stays as it was.

        The fork gets a fresh run id; its first checkpoint (trigger ``fork``) has the source
        checkpoint as parent, and ``metadata["forked_from"]`` names it. ``run()`` continues it.
        """
        cp = self._restore_checked(checkpoint, "fork")
        self.run_id = uuid.uuid4().hex
        self._sequence = 0
        self._last_checkpoint_id = cp.checkpoint_id
        if self.store is not None:
            self._save_checkpoint("fork", metadata={"forked_from": cp.checkpoint_id, "forked_from_run": cp.run_id})

    def diff(self: Agent, a: Any, b: Any) -> CheckpointDiff:
        """What changed from checkpoint ``a`` to ``b`` (objects, dicts, ids or history rows)."""
        return diff_checkpoints(self._resolve_checkpoint(a, "diff"), self._resolve_checkpoint(b, "diff"))

    async def resume_latest(self: Agent, store: Any = None, *, timeout: float | None = None) -> RunResult:
        """Continue this agent's latest run from ``store`` (default: its own) to the end.

        States the checkpoint records as completed are not run again. When the latest run
        ended in failure or cancellation, it continues from that run's last checkpoint that
        still had states in flight (so the failed state runs again).

        Raises:
            CheckpointError: no store, or no checkpoint of this agent in it.
        """
        from ._result import RunResult

        if store is not None and self.store is None:
            self.store = store
        store = store if store is not None else self._require_store("resume_latest")
        cp = await store.alatest(self.name)
        if cp is None:
            raise CheckpointError(
                f"resume_latest: {store!r} holds no checkpoint of agent {self.name!r}; run it first "
                "with Agent(..., store=store, durable=True)"
            )
        if cp.agent_status in _ENDED and not cp.pending:
            for info in reversed(await store.alist(self.name, cp.run_id)):
                if info.pending and info.agent_status not in ("failed", "cancelled"):
                    cp = await store.aget(info.checkpoint_id)
                    break
        self._restore_checked(cp, "resume_latest")
        self._continue_sequence(cp)
        if not cp.pending and cp.agent_status is AgentStatus.COMPLETED:
            self._restored = None  # nothing left to run; a later run() starts afresh
            return RunResult.from_agent(self)
        return await self.run(timeout=timeout)
