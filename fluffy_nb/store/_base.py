"""The checkpoint-store protocol and the records stores answer with.

A store keeps :class:`~fluffy_nb.engine.Checkpoint` snapshots. Every store implements
:class:`CheckpointStore` (sync methods plus async twins), and one conformance suite
(``tests/store/test_conformance.py``) runs against each of them.

Ordering rule shared by every store: checkpoints are listed by the start of their run
(the earliest checkpoint timestamp of the run; ties broken by which run reached the store
first), then by ``sequence`` within the run, then by arrival. ``latest`` is the last entry
of that order.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..engine._checkpoint import Checkpoint


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """One row of a store's listing: what a checkpoint is, without its data.

    Attributes:
        checkpoint_id: The checkpoint's id (pass it to ``store.get`` or ``agent.restore``).
        parent_id: The checkpoint this one follows (None for the first of a run).
        agent_name: The agent that made it.
        run_id: The run it belongs to (a fork starts a new run).
        sequence: Its number within the run (1, 2, ...).
        timestamp: Wall-clock seconds when it was made.
        trigger: Why: ``state``, ``interval``, ``pause``, ``completion``, ``failure``, ``cancel``,
            ``fork`` or ``manual``.
        agent_status: The agent's status then (``running``, ``completed``...).
        completed_count: How many distinct states had completed.
        pending: States in flight (running, queued or waiting) then.
        size_bytes: Size of the stored JSON.
        error: The failure's text for ``failure`` checkpoints.
    """

    checkpoint_id: str
    parent_id: str | None
    agent_name: str
    run_id: str
    sequence: int
    timestamp: float
    trigger: str
    agent_status: str
    completed_count: int
    pending: tuple[str, ...]
    size_bytes: int
    error: str | None = None

    @classmethod
    def from_checkpoint(cls, cp: Checkpoint, size_bytes: int) -> CheckpointInfo:
        """The listing row of ``cp``."""
        return cls(
            checkpoint_id=cp.checkpoint_id,
            parent_id=cp.parent_id,
            agent_name=cp.agent_name,
            run_id=cp.run_id,
            sequence=cp.sequence,
            timestamp=cp.timestamp,
            trigger=cp.trigger,
            agent_status=cp.agent_status.value,
            completed_count=len(cp.completed_states),
            pending=tuple(cp.pending),
            size_bytes=size_bytes,
            error=cp.error,
        )


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run of an agent as a store knows it.

    Attributes:
        run_id: The run's id.
        agent_name: The agent that ran it.
        started: Timestamp of its first checkpoint.
        last_timestamp: Timestamp of its last checkpoint.
        checkpoints: How many checkpoints it has.
        last_status: The agent status in its last checkpoint (highest sequence).
    """

    run_id: str
    agent_name: str
    started: float
    last_timestamp: float
    checkpoints: int
    last_status: str


@runtime_checkable
class CheckpointStore(Protocol):
    """What the engine and the notebook layer need from a checkpoint store.

    ``put`` must return quickly (it is called on the event loop after each finished state of a
    durable run); a checkpoint ``put`` returned for is visible to ``get``/``list``/``latest`` of
    the same store object at once.
    """

    def put(self, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` (putting the same checkpoint id again is a no-op)."""
        ...

    def get(self, checkpoint_id: str) -> Checkpoint:
        """The checkpoint with that id; ``CheckpointError`` naming the id if there is none."""
        ...

    def list(self, agent_name: str | None = None, run_id: str | None = None) -> builtins.list[CheckpointInfo]:
        """Checkpoints (filtered), ordered by (run start, sequence)."""
        ...

    def latest(self, agent_name: str, run_id: str | None = None) -> Checkpoint | None:
        """The last checkpoint of ``agent_name`` (of its latest run, or of ``run_id``)."""
        ...

    def runs(self, agent_name: str | None = None) -> builtins.list[RunInfo]:
        """Runs (filtered by agent), ordered by start."""
        ...

    def close(self) -> None:
        """Write out anything pending and release resources."""
        ...

    async def aput(self, checkpoint: Checkpoint) -> None:
        """Async twin of :meth:`put`."""
        ...

    async def aget(self, checkpoint_id: str) -> Checkpoint:
        """Async twin of :meth:`get`."""
        ...

    async def alist(self, agent_name: str | None = None, run_id: str | None = None) -> builtins.list[CheckpointInfo]:
        """Async twin of :meth:`list`."""
        ...

    async def alatest(self, agent_name: str, run_id: str | None = None) -> Checkpoint | None:
        """Async twin of :meth:`latest`."""
        ...
