"""Checkpointing half of Agent: making, saving, loading checkpoints, and resuming.

Owns everything between a running agent and a checkpoint store: the snapshot of a run
(``_make_checkpoint``), where it goes (``_save_checkpoint``), periodic checkpoints, and
loading a checkpoint back (``_load_checkpoint``/``_relaunch``).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from ._checkpoint import Checkpoint, encode_shared, encode_typed_data
from ._events import CheckpointSaved
from ._graph import Token
from ._status import AgentStatus
from ._typed import decode_typed

if TYPE_CHECKING:
    from ._agent import Agent


class CheckpointMixin:
    """Checkpoint-making and restoring methods of :class:`Agent`."""

    def _make_checkpoint(self: Agent, trigger: str, error: BaseException | None = None) -> Checkpoint:
        frontier = [ex.state for ex in self._running_states.values()]
        frontier += [ex.state for _, ex in sorted(self.priority_queue)]
        frontier += [ex.state for ex in self._parked]
        self._sequence += 1
        return Checkpoint(
            parent_id=self._last_checkpoint_id,
            agent_name=self.name,
            run_id=self.run_id or "not-started",
            timestamp=self.clock.time(),
            sequence=self._sequence,
            trigger=trigger,
            agent_status=self.status,
            state_status={n: m.status for n, m in self.state_metadata.items()},
            completed_states=list(self.completed_states),
            completion_counts=dict(self.completion_counts),
            state_attempts={n: m.attempts for n, m in self.state_metadata.items() if m.attempts},
            pending=frontier,
            scheduler={"joins": self._joins.snapshot()["joins"], "steps": self._steps},
            shared_state=encode_shared(self._shared),
            typed_data=encode_typed_data(self._typed),
            human_answers=list(self._human_answers),
            steps=self._steps,
            error=None if error is None else f"{type(error).__name__}: {error}",
        )

    def _save_checkpoint(self: Agent, trigger: str, error: BaseException | None = None) -> Checkpoint:
        cp = self._make_checkpoint(trigger, error)
        self._last_checkpoint_id = cp.checkpoint_id
        if self.store is not None:
            self.store.put(cp)
        if self.events.active:
            self.events.publish(CheckpointSaved(self.name, self.run_id, self.clock.monotonic(), cp.checkpoint_id,
                                                trigger, len(cp.completed_states)))
        return cp

    async def _interval_checkpoints(self: Agent, seconds: float) -> None:
        while True:
            await self.clock.sleep(seconds)
            if self._run_active:
                self._save_checkpoint("interval")

    def _load_checkpoint(self: Agent, cp: Checkpoint) -> None:
        self._init_run_state()
        self.run_id = cp.run_id
        self._shared = dict(cp.shared_state)
        self._typed = {k: decode_typed(k, v) for k, v in cp.typed_data.items()}
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
