"""MemoryStore: checkpoints kept in this process (tests, notebooks that need no file).

It behaves exactly like the file-backed store: ``get`` returns a fresh checkpoint loaded
from JSON (so mutating it never changes what is stored), newer formats and damaged entries
raise ``CheckpointError``. The JSON is produced lazily, the first time an entry is read or
measured, so a durable run on a MemoryStore pays only for the snapshot.

Damaged entries follow the rule in ``_base``: ``get`` raises naming the entry, ``latest`` is
the newest entry that loads (a ``FluffyWarning`` names those skipped). ``aget``/``alatest``
load in a worker thread, so a large checkpoint never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..engine._delta import fold
from ..engine._errors import CheckpointError, ConfigurationError
from ._base import CheckpointInfo, RunInfo, check_matches_row, is_checkpoint, latest_good

if TYPE_CHECKING:
    from ..engine._checkpoint import Checkpoint


#: how many checkpoints per run the store made for ``Agent(checkpoint_interval=...)`` without a
#: ``store`` keeps (an interval checkpoint every few seconds must not fill memory over a long run)
INTERVAL_KEEP_LAST = 100


class _Entry:
    __slots__ = ("cp", "order", "text")

    def __init__(self, cp: Checkpoint, order: int) -> None:
        self.cp: Checkpoint | None = cp
        self.text: str | None = None
        self.order = order

    def json(self) -> str:
        if self.text is None:
            assert self.cp is not None
            self.text = self.cp.model_dump_json()
            self.cp = None
        return self.text


class MemoryStore:
    """Checkpoints in memory, gone when the process ends.

    Args:
        keep_last: Keep at most this many checkpoints per run, dropping the oldest (never one
            a kept delta checkpoint folds onto); None keeps all. The store that
            ``Agent(checkpoint_interval=...)`` makes when given no ``store`` keeps the last
            :data:`INTERVAL_KEEP_LAST`.

    Example:
        >>> store = MemoryStore()
        >>> # agent = Agent("etl", store=store, durable=True); await agent.run()
        >>> # store.list(agent_name="etl")
    """

    def __init__(self, keep_last: int | None = None) -> None:
        if keep_last is not None and (type(keep_last) is not int or keep_last < 1):
            raise ConfigurationError(f"MemoryStore(keep_last={keep_last!r}): pass a whole number >= 1, or None "
                                     "to keep every checkpoint")
        self.keep_last = keep_last
        self._entries: dict[str, _Entry] = {}
        self._meta: dict[str, CheckpointInfo] = {}
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._runs: dict[str, builtins.list[str]] = {}  # with keep_last: run id -> its ids, oldest first
        self._folds_onto: dict[str, str] = {}  # with keep_last: a stored delta's id -> its parent's
        self._needed: Counter[str] = Counter()  # with keep_last: ids stored deltas fold onto

    # -- sync -------------------------------------------------------------------------
    def put(self, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` (an id already stored is left as it is)."""
        if not is_checkpoint(checkpoint):  # pydantic loads with the first checkpoint
            raise CheckpointError(f"MemoryStore.put({checkpoint!r}): pass a Checkpoint")
        with self._lock:
            if checkpoint.checkpoint_id in self._entries:
                return
            self._entries[checkpoint.checkpoint_id] = _Entry(checkpoint, next(self._order))
            self._meta[checkpoint.checkpoint_id] = CheckpointInfo.from_checkpoint(checkpoint, -1)
            if self.keep_last is not None:
                self._bound(checkpoint)

    def _bound(self, cp: Checkpoint) -> None:
        """Drop the oldest checkpoints of ``cp``'s run beyond ``keep_last`` (under the lock)."""
        assert self.keep_last is not None
        if cp.delta and cp.parent_id is not None:
            self._folds_onto[cp.checkpoint_id] = cp.parent_id
            self._needed[cp.parent_id] += 1
        ids = self._runs.setdefault(cp.run_id, [])
        ids.append(cp.checkpoint_id)
        older = ids[:max(0, len(ids) - self.keep_last)]  # the newest keep_last always stay
        for cid in reversed(older):  # newest first: dropping a delta may free the parent before it
            if self._needed[cid]:
                continue
            ids.remove(cid)
            del self._entries[cid], self._meta[cid]
            parent = self._folds_onto.pop(cid, None)
            if parent is not None:
                self._needed[parent] -= 1
                if not self._needed[parent]:
                    del self._needed[parent]

    def get(self, checkpoint_id: str) -> Checkpoint:
        """The checkpoint with ``checkpoint_id`` (a fresh copy; a delta folded onto its parents).

        Raises:
            CheckpointError: no such checkpoint, or its data cannot be loaded (or, for a delta,
                its parents').
        """
        cp = self._stored(checkpoint_id)
        return fold(cp, self._stored, f"checkpoint {str(checkpoint_id)[:200]!r} in MemoryStore")

    def _stored(self, checkpoint_id: str) -> Checkpoint:
        """The checkpoint with ``checkpoint_id`` as stored (a delta stays a delta)."""
        with self._lock:
            entry = self._entries.get(checkpoint_id) if isinstance(checkpoint_id, str) else None
            if entry is None:
                raise CheckpointError(
                    f"MemoryStore has no checkpoint {str(checkpoint_id)[:200]!r}; list them with store.list()"
                )
            text = entry.json()
            info = self._meta[checkpoint_id]
        where = f"checkpoint {checkpoint_id[:200]!r} in MemoryStore"
        from ..engine._checkpoint import Checkpoint

        cp = Checkpoint.from_json(text, source=f"{where} cannot be loaded")
        return check_matches_row(cp, info, where)

    def list(self, agent_name: str | None = None, run_id: str | None = None) -> builtins.list[CheckpointInfo]:
        """Checkpoints, filtered by agent and/or run, ordered by (run start, sequence)."""
        with self._lock:
            rows = [
                (info, self._entries[cid]) for cid, info in self._meta.items()
                if (agent_name is None or info.agent_name == agent_name) and (run_id is None or info.run_id == run_id)
            ]
            starts: dict[str, tuple[float, int]] = {}
            for info, entry in rows:
                key = (info.timestamp, entry.order)
                old = starts.get(info.run_id)
                starts[info.run_id] = key if old is None else min(old, key)
            rows.sort(key=lambda r: (starts[r[0].run_id], r[0].sequence, r[1].order))
            out = []
            for info, entry in rows:
                if info.size_bytes < 0:
                    size = len(entry.json().encode())
                    info = _replace_size(info, size)
                    self._meta[info.checkpoint_id] = info
                out.append(info)
            return out

    def latest(self, agent_name: str, run_id: str | None = None) -> Checkpoint | None:
        """The last checkpoint of ``agent_name`` (of its latest run, or of ``run_id``) that loads, or None.

        Newer entries that are damaged are skipped with a ``FluffyWarning`` naming them.

        Raises:
            CheckpointError: there are checkpoints, but none of them loads.
        """
        infos = self.list(agent_name, run_id)
        return latest_good("MemoryStore", (i.checkpoint_id for i in reversed(infos)), self.get)

    def runs(self, agent_name: str | None = None) -> builtins.list[RunInfo]:
        """The runs in this store, ordered by start."""
        return runs_from_infos(self.list(agent_name))

    def flush(self) -> None:
        """Nothing to write out: puts are visible at once."""

    def close(self) -> None:
        """Nothing to release (the data stays readable)."""

    # -- async twins ------------------------------------------------------------------------
    async def aput(self, checkpoint: Checkpoint) -> None:
        """Async twin of :meth:`put`."""
        self.put(checkpoint)

    async def aget(self, checkpoint_id: str) -> Checkpoint:
        """Async twin of :meth:`get` (loads in a thread)."""
        return await asyncio.to_thread(self.get, checkpoint_id)

    async def alist(self, agent_name: str | None = None, run_id: str | None = None) -> builtins.list[CheckpointInfo]:
        """Async twin of :meth:`list`."""
        return self.list(agent_name, run_id)

    async def alatest(self, agent_name: str, run_id: str | None = None) -> Checkpoint | None:
        """Async twin of :meth:`latest` (loads in a thread)."""
        return await asyncio.to_thread(self.latest, agent_name, run_id)

    def statistics(self) -> dict[str, Any]:
        """How many checkpoints and runs are stored."""
        with self._lock:
            return {"checkpoints": len(self._entries), "runs": len({i.run_id for i in self._meta.values()})}

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        s = self.statistics()
        return f"MemoryStore(checkpoints={s['checkpoints']}, runs={s['runs']})"


def _replace_size(info: CheckpointInfo, size: int) -> CheckpointInfo:
    from dataclasses import replace

    return replace(info, size_bytes=size)


def runs_from_infos(infos: builtins.list[CheckpointInfo]) -> builtins.list[RunInfo]:
    """Group an ordered listing into runs (in order of first appearance)."""
    groups: dict[str, builtins.list[CheckpointInfo]] = {}
    for info in infos:
        groups.setdefault(info.run_id, []).append(info)
    return [
        RunInfo(
            run_id=rid,
            agent_name=rows[0].agent_name,
            started=min(r.timestamp for r in rows),
            last_timestamp=max(r.timestamp for r in rows),
            checkpoints=len(rows),
            last_status=rows[-1].agent_status,
        )
        for rid, rows in groups.items()
    ]
