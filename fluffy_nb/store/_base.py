"""The checkpoint-store protocol and the records stores answer with.

A store keeps :class:`~fluffy_nb.engine.Checkpoint` snapshots. Every store implements
:class:`CheckpointStore` (sync methods plus async twins), and one conformance suite
(``tests/store/test_conformance.py``) runs against each of them.

Ordering rule shared by every store: checkpoints are listed by the start of their run
(the earliest checkpoint timestamp of the run; ties broken by which run reached the store
first), then by ``sequence`` within the run, then by arrival. ``latest`` is the last entry
of that order.

Damaged rows (every stored byte is untrusted; a file may be copied, edited or truncated):

* ``list``/``runs`` validate each row's listing fields; a row whose listing is damaged is
  left out, and one :class:`~fluffy_nb.engine.FluffyWarning` per call names the rows left out
  (checkpoint id or row number) and what is wrong with each. The good rows are listed as usual.
* ``get(id)`` of a damaged row raises ``CheckpointError`` naming the row and what is wrong
  (bad JSON, too large or deep, a field out of bounds, data that contradicts its row).
* ``latest`` returns the newest checkpoint that loads, warning (``FluffyWarning``) about the
  newer rows it skipped; when rows exist but none loads it raises ``CheckpointError`` naming them.
"""

from __future__ import annotations

import builtins
import json
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ..engine._bounds import MAX_COUNT, MAX_NAME, MAX_STATES, load_json
from ..engine._errors import CheckpointError, FluffyWarning
from ..engine._status import AgentStatus

if TYPE_CHECKING:
    from ..engine._checkpoint import Checkpoint

T = TypeVar("T")
_STATUSES = frozenset(s.value for s in AgentStatus)
#: longest error text a listing row keeps (the checkpoint itself has the full text)
MAX_LISTED_ERROR = 100_000
#: longest ``pending`` column a listing row may hold, in characters
MAX_LISTED_PENDING = 4 * 1024 * 1024


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
        trigger: Why: ``state``, ``route`` (a failure sent on by ``on_error``/``on_timeout``; its
            ``error``), ``interval``, ``pause``, ``completion``, ``failure``, ``cancel``, ``fork`` or ``manual``.
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
            completed_count=cp.completed_count,
            pending=tuple(cp.pending),
            size_bytes=size_bytes,
            error=cp.error,
        )


def _name(value: Any, field: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not value and field == "checkpoint_id") or len(value) > MAX_NAME:
        raise CheckpointError(f"{field} is not a name of at most {MAX_NAME} characters")
    return value


def _whole(value: Any, field: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise CheckpointError(f"{field} is not a whole number >= 0")
    return value


def info_from_row(row: tuple[Any, ...]) -> CheckpointInfo:
    """A listing row (the 12 ``CheckpointInfo`` fields, ``pending`` as JSON text), validated.

    Raises:
        CheckpointError: saying which field is damaged (the caller names the row).
    """
    cid, parent, agent, run, seq, ts, trigger, status, completed, pending, size, error = row
    if type(ts) not in (int, float) or not math.isfinite(ts):
        raise CheckpointError("timestamp is not a finite number")
    if not isinstance(trigger, str) or len(trigger) > 64:
        raise CheckpointError("trigger is not a short text")
    if status not in _STATUSES:
        raise CheckpointError(f"agent_status {str(status)[:40]!r} is not a status")
    if error is not None and not isinstance(error, str):
        raise CheckpointError("error is not text")
    if not isinstance(pending, str):
        raise CheckpointError("pending is missing or longer than the listing allows")
    names = load_json(pending, "pending")
    if not isinstance(names, list) or len(names) > MAX_STATES or not all(
        isinstance(n, str) and len(n) <= MAX_NAME for n in names
    ):
        raise CheckpointError(f"pending is not a list of at most {MAX_STATES:,} state names")
    return CheckpointInfo(
        checkpoint_id=_name(cid, "checkpoint_id"), parent_id=_name(parent, "parent_id", optional=True),  # type: ignore[arg-type]
        agent_name=_name(agent, "agent_name"), run_id=_name(run, "run_id"),  # type: ignore[arg-type]
        sequence=_whole(seq, "sequence"), timestamp=float(ts), trigger=trigger, agent_status=status,
        completed_count=_whole(completed, "completed_count"), pending=tuple(names),
        size_bytes=_whole(size, "size_bytes"), error=error,
    )


def warn_bad_rows(store: str, doing: str, bad: Iterable[str]) -> None:
    """One ``FluffyWarning`` naming the damaged rows ``doing`` (listing, ...) left out."""
    bad = builtins.list(bad)
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.warn(f"{store}: {doing} skipped {len(bad)} damaged row(s): {shown}", FluffyWarning, stacklevel=3)


def latest_good(store: str, candidates: Iterable[T], get: Callable[[T], Checkpoint]) -> Checkpoint | None:
    """The first of ``candidates`` (rows, newest first) that ``get`` loads; warns about those skipped.

    Raises:
        CheckpointError: candidates exist but none loads (naming them).
    """
    bad: builtins.list[str] = []
    for cid in candidates:
        try:
            cp = get(cid)
        except CheckpointError as exc:
            bad.append(str(exc)[:500])
            continue
        warn_bad_rows(store, "latest", bad)
        return cp
    if bad:
        shown = "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(f"{store}: no checkpoint of the run loads ({len(bad)} damaged): {shown}")
    return None


def check_matches_row(cp: Checkpoint, info: CheckpointInfo | tuple[str, str, str], where: str) -> Checkpoint:
    """Raise unless ``cp`` is the checkpoint its row says it is (id, agent and run agree)."""
    cid, agent, run = ((info.checkpoint_id, info.agent_name, info.run_id) if isinstance(info, CheckpointInfo)
                       else info)
    for field, row_value, data_value in (("checkpoint_id", cid, cp.checkpoint_id),
                                         ("agent_name", agent, cp.agent_name), ("run_id", run, cp.run_id)):
        if row_value != data_value:
            raise CheckpointError(
                f"{where}: its data says {field} {data_value[:80]!r} but the row says {str(row_value)[:80]!r}; "
                "the row was altered or damaged"
            )
    return cp


def pending_json(names: Iterable[str]) -> str:
    """The ``pending`` listing column as stored: ``json.dumps(list(names))``, written once per durable step."""
    if type(names) is not builtins.list:
        names = builtins.list(names)
    if not names:
        return "[]"
    try:  # most durable steps: one or two names; what json.dumps writes, without its encoder's setup
        return "[" + ", ".join(map(_quoted, names)) + "]"
    except TypeError:  # a name that is not text (an unvalidated checkpoint): json.dumps says how it writes it
        return _encode_list(names)


_quoted = json.encoder.encode_basestring_ascii
_encode_list = json.JSONEncoder().encode  # json.dumps's own encoder, without its per-call argument checks
_checkpoint_model: Any = None


def is_checkpoint(value: Any) -> bool:
    """Whether ``value`` is a :class:`Checkpoint` (imported, with pydantic, on the first call only:
    ``put`` runs once per durable step)."""
    global _checkpoint_model
    if _checkpoint_model is None:
        from ..engine._checkpoint import Checkpoint

        _checkpoint_model = Checkpoint
    return isinstance(value, _checkpoint_model)


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
