"""Delta checkpoints: what a durable step writes, and folding deltas back into a full checkpoint.

A durable run checkpoints after every state. Writing the whole run each time made a step cost
grow with the workflow (every status, every context key, re-encoded and committed per state),
so a ``"state"`` checkpoint is a *delta* (``Checkpoint.delta``): only what changed since the
run's previous checkpoint, which is its ``parent_id``:

* ``state_status`` / ``state_attempts`` / ``completion_counts``: the entries that changed (a
  state back to PENDING or 0 attempts is written as such, and dropped again when folded);
* ``completed_states`` / ``human_answers``: the entries appended since the parent;
* ``shared_state``: the keys set since the parent, and every key holding a list, dict or other
  non-scalar (it may have changed in place), with ``removed_keys`` for keys deleted;
* ``typed_data``: all of it (typed objects may change in place; runs hold few);
* everything else (frontier, join counts, steps, status, error) in full: it is small.

A checkpoint is full once the deltas since the last full one add up to about its size (entries
counted), or after :data:`FULL_EVERY` deltas in a row, and for every other trigger (pause,
completion, failure, cancel, fork, interval, manual): writing the full ones then costs about as
much as the deltas between them, whatever the size of the run, chains stay bounded, and a run's
last checkpoint is full.

Stores hand out full checkpoints only: ``get`` folds a delta onto its parents (:func:`fold`),
so history, restore, fork, diff and resume see what they saw before. Folding is bounded like
any load of untrusted data: at most :data:`MAX_CHAIN` parents, no cycles, parents of the same
agent and run, and the folded result within the collection bounds of ``_bounds``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._bounds import MAX_STATES
from ._codec import encode_typed_context, encode_value
from ._errors import CheckpointError
from ._status import StateStatus

if TYPE_CHECKING:
    from ._checkpoint import Checkpoint, HumanAnswerRecord
    from ._run import Run

#: a full checkpoint after at most this many deltas in a row
FULL_EVERY = 500
#: the longest chain of deltas a load folds (a real store holds at most FULL_EVERY)
MAX_CHAIN = 1_000

_PENDING = StateStatus.PENDING
_SCALARS = frozenset({str, int, float, bool, type(None)})


class RoutedDict(dict):  # type: ignore[type-arg]
    """A dict whose every write goes through ``__setitem__`` and every removal through
    ``__delitem__``: a subclass that notes keys overrides those two (and ``pop``, which returns
    the value) and ``setdefault``, ``update``, ``popitem`` and ``clear`` note through them."""

    __slots__ = ()

    def setdefault(self, key: str, default: Any = None) -> Any:
        """``dict.setdefault``, through ``__setitem__``."""
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        """``dict.update``, through ``__setitem__``."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def popitem(self) -> tuple[str, Any]:
        """``dict.popitem`` (the last key), through ``__delitem__``."""
        if not self:
            raise KeyError("popitem(): dictionary is empty")
        key = next(reversed(self))
        value = dict.__getitem__(self, key)
        del self[key]
        return key, value

    def clear(self) -> None:
        """``dict.clear``, through ``__delitem__``."""
        for key in list(self):
            del self[key]


class TrackedDict(RoutedDict):
    """A run's context: a dict that notes the keys set and removed since the last checkpoint.

    Keys holding anything but a scalar are kept in ``mutable``: such a value may change in
    place (``ctx.get_state("log").append(x)``), so every delta writes them.
    """

    __slots__ = ("changed", "mutable", "removed")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changed: set[str] = set()
        self.removed: set[str] = set()
        self.mutable: set[str] = {k for k, v in self.items() if type(v) not in _SCALARS}

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, value)
        self.changed.add(key)
        self.removed.discard(key)
        if type(value) in _SCALARS:
            self.mutable.discard(key)
        else:
            self.mutable.add(key)

    def __delitem__(self, key: str) -> None:
        dict.__delitem__(self, key)
        self._gone(key)

    def _gone(self, key: str) -> None:
        self.removed.add(key)
        self.changed.discard(key)
        self.mutable.discard(key)

    def pop(self, key: str, *default: Any) -> Any:
        """``dict.pop``, noting the key removed."""
        if key in self:
            self._gone(key)
        return dict.pop(self, key, *default)

    def copy(self) -> dict[str, Any]:
        """A plain dict copy."""
        return dict(self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # copy, deepcopy and pickle rebuild it through __init__ (the default path sets items
        # on an object whose tracking sets do not exist yet)
        return (TrackedDict, (dict(self),))

    def mark_written(self) -> None:
        """The last checkpoint holds every key as it is now."""
        self.changed.clear()
        self.removed.clear()


class DeltaTracker:
    """Whether the next checkpoint of a run can be a delta, and what it holds.

    The run notes what changes between checkpoints: states whose status changed
    (``run.changed_states``, written by ``StateMetadata.status``), context keys set or removed
    (``run.shared``, a :class:`TrackedDict`); counters and lists that only grow are read from
    where the previous checkpoint left them.

    Args:
        run: The run being checkpointed.
    """

    __slots__ = ("answered", "completed", "deltas", "full_size", "last_answer", "run", "since_full")

    def __init__(self, run: Run) -> None:
        self.run = run
        self.deltas = -1  # no full checkpoint yet: the next one must be full
        self.full_size = self.since_full = 0  # entries in the last full one / in the deltas since
        self.completed = 0
        self.answered = 0  # human answers in the previous checkpoint, and the last of them
        self.last_answer: HumanAnswerRecord | None = None

    def wants_full(self, trigger: str) -> bool:
        """Whether the next checkpoint (of ``trigger``) is written in full."""
        if trigger != "state" or self.deltas < 0 or self.deltas >= FULL_EVERY or self.since_full >= self.full_size:
            return True
        run = self.run
        if not isinstance(run.shared, TrackedDict) or len(run.completed_states) < self.completed:
            return True  # replaced or shrunk behind the tracker's back: start again from a full one
        answers = run.human_answers
        n = self.answered
        # answers are appended; anything else (a list rebuilt) is written in full
        return len(answers) < n or (n > 0 and answers[n - 1] is not self.last_answer)

    def reset(self) -> None:
        """Forget the previous checkpoint (a load or a failed save): the next one is full."""
        self.deltas = -1

    def written(self, cp: Checkpoint) -> None:
        """``cp`` was stored: the next delta is against it."""
        run = self.run
        run.changed_states.clear()
        if isinstance(run.shared, TrackedDict):
            run.shared.mark_written()
        self.completed = len(run.completed_states)
        answers = run.human_answers  # noted, not copied: a step must not cost more as answers pile up
        self.answered = len(answers)
        self.last_answer = answers[-1] if answers else None
        size = (len(cp.state_status) + len(cp.state_attempts) + len(cp.completion_counts) + len(cp.completed_states)
                + len(cp.shared_state) + len(cp.typed_data) + len(cp.human_answers) + len(cp.pending) + 1)
        if cp.delta:
            self.deltas += 1
            self.since_full += size
        else:
            self.deltas, self.full_size, self.since_full = 0, size, 0
            run.track_changes()  # the deltas after this one read what changed since

    def changes(self) -> tuple[Any, ...]:
        """The collections of a delta against the previous checkpoint, encoded for JSON:
        ``(state_status, completed_states, completion_counts, state_attempts, shared_state,
        typed_data, human_answers, removed_keys)``.

        Raises:
            SerializationError: a changed context key holds a value a checkpoint cannot store.
        """
        run = self.run
        metadata, counts = run.metadata, run.completion_counts
        status: dict[str, StateStatus] = {}
        attempts: dict[str, int] = {}
        done: dict[str, int] = {}
        for name in run.changed_states:
            meta = metadata.get(name)
            if meta is not None:
                status[name] = meta.status
                attempts[name] = meta.attempts
            n = counts.get(name)
            if n is not None:
                done[name] = n
        shared = run.shared
        assert isinstance(shared, TrackedDict)
        mutable = shared.mutable
        # encoded as a durable step's checkpoint must be: a value JSON cannot hold raises, naming its key
        values = {k: encode_value(k, shared[k]) for k in (shared.changed | mutable if mutable else shared.changed)
                  if k in shared}
        completed = run.completed_states
        answers = run.human_answers
        typed = run.typed
        return (
            status,
            completed[self.completed:] if len(completed) > self.completed else [],
            done,
            attempts,
            values,
            encode_typed_context(typed, lenient=False)[0] if typed else {},  # all: they may change in place
            answers[self.answered:] if answers else [],
            sorted(shared.removed) if shared.removed else [],
        )


def fold(cp: Checkpoint, load: Callable[[str], Checkpoint], where: str) -> Checkpoint:
    """The full checkpoint that ``cp`` stands for: ``cp`` itself, or a delta applied to its parents.

    Args:
        cp: A checkpoint as stored (full or delta).
        load: Loads a stored checkpoint by id, as stored (no folding).
        where: What ``cp`` is, for errors (a store and an id).

    Raises:
        CheckpointError: a parent is missing, damaged, of another run, the chain is longer than
            :data:`MAX_CHAIN` or loops, or the folded checkpoint exceeds a bound.
    """
    if not cp.delta:
        return cp
    chain = [cp]
    seen = {cp.checkpoint_id}
    base = cp
    while base.delta:
        parent = base.parent_id
        if parent is None:
            raise CheckpointError(f"{where} cannot be loaded: it is a delta checkpoint without a parent")
        if parent in seen or len(chain) > MAX_CHAIN:
            raise CheckpointError(
                f"{where} cannot be loaded: its chain of delta checkpoints loops or is longer than {MAX_CHAIN:,}"
            )
        try:
            base = load(parent)
        except CheckpointError as exc:
            raise CheckpointError(
                f"{where} cannot be loaded: its parent {parent[:80]!r} does not load: {exc}") from None
        if base.run_id != cp.run_id or base.agent_name != cp.agent_name:
            raise CheckpointError(f"{where} cannot be loaded: its parent {parent[:80]!r} belongs to another run")
        seen.add(parent)
        chain.append(base)
    return _apply(base, reversed(chain[:-1]), where)


def _apply(base: Checkpoint, deltas: Any, where: str) -> Checkpoint:
    status = dict(base.state_status)
    attempts = dict(base.state_attempts)
    counts = dict(base.completion_counts)
    completed = list(base.completed_states)
    answers: list[HumanAnswerRecord] = list(base.human_answers)
    shared = dict(base.shared_state)
    typed = dict(base.typed_data)
    last = base
    for d in deltas:
        status.update(d.state_status)
        attempts.update(d.state_attempts)
        counts.update(d.completion_counts)
        completed += d.completed_states
        answers += d.human_answers
        shared.update(d.shared_state)
        typed = dict(d.typed_data)  # a delta holds every typed value (they may change in place)
        for k in d.removed_keys:
            shared.pop(k, None)
        if max(len(status), len(attempts), len(counts), len(completed), len(answers), len(typed)) > MAX_STATES:
            raise CheckpointError(
                f"{where} cannot be loaded: folded with its parents it has more than {MAX_STATES:,} entries"
            )
        last = d
    status = {k: v for k, v in status.items() if v is not _PENDING}
    attempts = {k: v for k, v in attempts.items() if v}
    return last.model_copy(update={
        "delta": False, "state_status": status, "state_attempts": attempts, "completion_counts": counts,
        "completed_states": completed, "human_answers": answers, "shared_state": shared, "typed_data": typed,
        "removed_keys": [], "completed_total": None,
    })
