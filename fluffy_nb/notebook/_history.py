"""Checkpoint history and per-state metrics as pandas DataFrames; restore, fork and diff by row.

:func:`history_frame` is what ``agent.history().to_pandas()`` returns (and how a history
shows in a notebook): one row per checkpoint, typed columns. The frame remembers the store it
came from, so :func:`restore_row`, :func:`fork_row` and :func:`diff_rows` take a row number.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from ..engine._checkpoint import Checkpoint
from ..engine._errors import CheckpointError, ConfigurationError
from ..engine._history import CheckpointHistory, diff_checkpoints
from ..engine._status import AgentStatus, StateStatus
from ..engine._subflow import Subflow, nested_metadata

#: the columns of a history frame, in order: what a person reads first, the long ids last
HISTORY_COLUMNS = ["sequence", "seconds", "timestamp", "trigger", "states", "status", "child", "keys_changed",
                   "completed", "pending", "error", "size_bytes", "checkpoint_id", "parent_id", "run_id"]
#: statuses a checkpoint names a state for, besides completing it (what the checkpoint is about)
_NOTABLE = frozenset({"failed", "timeout", "cancelled", "waiting_for_human"})
_TRIGGERS = ["manual", "pause", "interval", "state", "route", "failure", "completion", "cancel", "fork"]
#: more rows than this and ``keys_changed`` is not computed (it loads every checkpoint)
KEYS_CHANGED_LIMIT = 2000


def _child_path(agent_name: str | None, row_agent: str) -> str:
    """Which sub-workflow a row came from (``research``, ``research/deep``); "" for the agent's own."""
    if agent_name and row_agent.startswith(agent_name + "/"):
        return row_agent[len(agent_name) + 1:]
    return ""


class _Source:
    """Where a frame's checkpoints live; survives pandas' deep copies of ``attrs`` by identity."""

    __slots__ = ("agent_name", "full_ids", "store")

    def __init__(self, store: Any, agent_name: str | None, full_ids: dict[str, str] | None = None) -> None:
        self.store = store
        self.agent_name = agent_name
        self.full_ids = full_ids  # a frame showing short ids: short -> full checkpoint id

    def __deepcopy__(self, memo: Any) -> _Source:
        return self

    def __repr__(self) -> str:
        return f"<checkpoints of {self.agent_name or 'all agents'} in {self.store!r}>"


def _rows_and_store(source: Any, run_id: str | None) -> tuple[list[Any], Any, str | None]:
    from ..engine._agent import Agent

    if isinstance(source, Agent):
        history = source.history(run_id)
        return list(history), history.store, source.name
    if isinstance(source, CheckpointHistory):
        return [r for r in source if run_id is None or r.run_id == run_id], source.store, source.agent_name or None
    if hasattr(source, "list") and hasattr(source, "get"):
        return list(source.list(run_id=run_id)), source, None
    if isinstance(source, Iterable):
        items = list(source)
        if all(isinstance(c, Checkpoint) for c in items):
            from ..store._memory import MemoryStore

            mem = MemoryStore()
            for c in items:
                mem.put(c)
            return list(mem.list(run_id=run_id)), mem, None
        if all(hasattr(c, "checkpoint_id") and hasattr(c, "completed_count") for c in items):
            return [r for r in items if run_id is None or r.run_id == run_id], None, None
    raise ConfigurationError(
        f"history_frame({source!r}): pass an Agent with a store, a checkpoint store, or a list of "
        "Checkpoints / CheckpointInfo rows"
    )


def _changes(store: Any, rows: list[Any]) -> tuple[list[list[str] | None], list[list[str] | None]]:
    """Per row: the data keys that differ from the parent checkpoint, and the states it is about
    (those that completed since the parent, or failed, timed out, were cancelled or asked a person)."""
    if store is None or len(rows) > KEYS_CHANGED_LIMIT:
        return [None] * len(rows), [None] * len(rows)
    cache: dict[str, Checkpoint] = {}

    def load(cid: str | None) -> Checkpoint | None:
        if cid is None:
            return None
        if cid not in cache:
            try:
                cache[cid] = store.get(cid)
            except (CheckpointError, KeyError):
                return None
        return cache[cid]

    keys: list[list[str] | None] = []
    states: list[list[str] | None] = []
    for r in rows:
        cp = load(r.checkpoint_id)
        if cp is None:
            keys.append(None)
            states.append(None)
            continue
        parent = load(r.parent_id)
        now = {**cp.shared_state, **cp.typed_data}
        before = {} if parent is None else {**parent.shared_state, **parent.typed_data}
        keys.append(sorted(k for k in {*now, *before} if now.get(k, ...) != before.get(k, ...)))
        counts = {} if parent is None else parent.completion_counts
        was = {} if parent is None else parent.state_status
        states.append([s for s, st in cp.state_status.items()
                       if cp.completion_counts.get(s, 0) > counts.get(s, 0)
                       or (st.value in _NOTABLE and was.get(s) != st)])
    return keys, states


def history_frame(source: Any, run_id: str | None = None, **_filters: Any) -> pd.DataFrame:
    """One row per checkpoint, oldest first, with typed columns.

    Columns, what a person reads first: ``sequence`` (int), ``seconds`` (float: since the run's
    first checkpoint), ``timestamp`` (datetime64 in milliseconds, UTC), ``trigger`` (categorical),
    ``states`` (list: the states the checkpoint is about: completed since the parent, failed,
    cancelled or asking a person), ``status`` (categorical: the agent's status then),
    ``keys_changed`` (list: data keys that differ from the parent checkpoint), ``completed`` (int:
    states completed), ``pending`` (int: states in flight), ``error``, ``size_bytes`` (int); then
    the ids: ``checkpoint_id``, ``parent_id``, ``run_id``.

    Args:
        source: An Agent (its store, its checkpoints), a store (every agent), or a list of
            Checkpoints / ``CheckpointInfo`` rows.
        run_id: Only this run.

    Example:
        >>> # frame = history_frame(agent); restore_row(agent, frame, 3)
    """
    rows, store, agent_name = _rows_and_store(source, run_id)
    rows.sort(key=lambda r: (r.timestamp, r.sequence))
    first: dict[str, float] = {}
    for r in rows:
        first.setdefault(r.run_id, r.timestamp)
    keys, states = _changes(store, rows)
    stamps = pd.to_datetime(pd.Series([r.timestamp for r in rows], dtype="float64"), unit="s", utc=True)
    frame = pd.DataFrame({
        "checkpoint_id": pd.Series([r.checkpoint_id for r in rows], dtype="object"),
        "run_id": pd.Series([r.run_id for r in rows], dtype="object"),
        "sequence": pd.Series([r.sequence for r in rows], dtype="int64"),
        "seconds": pd.Series([round(r.timestamp - first[r.run_id], 3) for r in rows], dtype="float64"),
        "timestamp": stamps.dt.floor("ms").astype("datetime64[ms, UTC]"),
        "states": pd.Series(states, dtype="object"),
        "trigger": pd.Categorical([r.trigger for r in rows],
                                  categories=list(dict.fromkeys([*_TRIGGERS, *(r.trigger for r in rows)]))),
        "status": pd.Categorical([str(r.agent_status) for r in rows], categories=[s.value for s in AgentStatus]),
        "completed": pd.Series([r.completed_count for r in rows], dtype="int64"),
        "pending": pd.Series([len(r.pending) for r in rows], dtype="int64"),
        "keys_changed": pd.Series(keys, dtype="object"),
        "size_bytes": pd.Series([r.size_bytes for r in rows], dtype="int64"),
        "error": pd.Series([r.error for r in rows], dtype="object"),
        "parent_id": pd.Series([r.parent_id for r in rows], dtype="object"),
        "child": pd.Series([_child_path(agent_name, r.agent_name) for r in rows], dtype="object"),
    }, columns=HISTORY_COLUMNS)
    frame.attrs["fluffy_source"] = _Source(store, agent_name)
    return frame


#: characters of an id a shown frame keeps (``%fluffy restore NAME ID`` takes them)
SHORT_ID = 12


def with_short_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (a :func:`history_frame`) as a person reads it: its three id columns cut to
    :data:`SHORT_ID` characters (the full ids stay known to :func:`restore_row`, :func:`fork_row`
    and :func:`diff_rows` of this frame; ``%fluffy restore NAME ID`` takes a short id)."""
    shown = frame.copy()
    for column in ("checkpoint_id", "parent_id", "run_id"):
        shown[column] = frame[column].str[:SHORT_ID]
    source = frame.attrs.get("fluffy_source")
    full = dict(zip(shown["checkpoint_id"], frame["checkpoint_id"], strict=True))
    shown.attrs["fluffy_source"] = _Source(getattr(source, "store", None), getattr(source, "agent_name", None), full)
    return shown


def _checkpoint_at(frame: pd.DataFrame, i: int, agent: Any = None) -> Checkpoint:
    if not -len(frame) <= i < len(frame):
        raise CheckpointError(f"row {i} is not in this history frame (it has {len(frame)} rows: 0..{len(frame) - 1})")
    cid = frame["checkpoint_id"].iloc[i]
    source = frame.attrs.get("fluffy_source")
    cid = (getattr(source, "full_ids", None) or {}).get(cid, cid)
    store = getattr(source, "store", None) or getattr(agent, "store", None)
    if store is None:
        raise CheckpointError(f"row {i} ({cid[:12]}): this frame does not know its store; build it with "
                              "history_frame(agent) or history_frame(store)")
    return store.get(cid)


def restore_row(agent: Any, frame: pd.DataFrame, i: int) -> Checkpoint:
    """Restore ``agent`` to the checkpoint in row ``i``; ``agent.run()``/``resume()`` continue it."""
    return agent.restore(_checkpoint_at(frame, i, agent))


def fork_row(agent: Any, frame: pd.DataFrame, i: int) -> Checkpoint:
    """Fork a new run of ``agent`` from row ``i`` (the original run's history stays as it was)."""
    cp = _checkpoint_at(frame, i, agent)
    agent.fork(cp)
    return cp


def diff_rows(frame: pd.DataFrame, i: int, j: int) -> pd.DataFrame:
    """What changed from row ``i`` to row ``j``: one row per data key, status or completion change.

    Columns: ``change`` (added, removed, changed, status, completed), ``key``, ``before``, ``after``.
    """
    a, b = _checkpoint_at(frame, i), _checkpoint_at(frame, j)
    d = diff_checkpoints(a, b)
    da = {**a.shared_state, **a.typed_data}
    db = {**b.shared_state, **b.typed_data}
    records: list[tuple[str, str, Any, Any]] = []
    records += [("added", k, None, db[k]) for k in d.added]
    records += [("removed", k, da[k], None) for k in d.removed]
    records += [("changed", k, da[k], db[k]) for k in d.changed]
    records += [("status", s, old, new) for s, (old, new) in d.status_changes.items()]
    records += [("completed", s, False, True) for s in d.completed_added]
    records += [("completed", s, True, False) for s in d.completed_removed]
    out = pd.DataFrame(records, columns=["change", "key", "before", "after"])
    out["change"] = pd.Categorical(out["change"], categories=["added", "removed", "changed", "status", "completed"])
    out.attrs["diff"] = d
    return out


def runs_frame(agent: Any) -> pd.DataFrame:
    """The agent's recent runs, one row each (oldest first): id, status, timing, progress, open questions.

    Columns: ``run_id``, ``status`` (categorical), ``elapsed_s`` (float), ``steps``, ``completed``,
    ``running``, ``queued``, ``waiting_for_human`` (int), ``error``, ``parent_run_id``.
    """
    rows = []
    for run in agent.runs:
        snap = run.snapshot()
        rows.append({"run_id": snap.run_id, "status": snap.status, "elapsed_s": snap.elapsed, "steps": snap.steps,
                     "completed": len(snap.completed), "running": len(snap.running), "queued": len(snap.queued),
                     "waiting_for_human": len(snap.waiting_for_human), "error": snap.error,
                     "parent_run_id": snap.parent_run_id})
    columns = ["run_id", "status", "elapsed_s", "steps", "completed", "running", "queued", "waiting_for_human",
               "error", "parent_run_id"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["status"] = pd.Categorical(frame["status"], categories=[s.value for s in AgentStatus])
    frame["elapsed_s"] = frame["elapsed_s"].astype("float64")
    for col in ("steps", "completed", "running", "queued", "waiting_for_human"):
        frame[col] = frame[col].astype("int64")
    return frame


def state_metrics_frame(source: Any) -> pd.DataFrame:
    """Per-state metrics of one run (a ``Run``, or an agent: its latest run), indexed by state; the
    states of its sub-workflows' runs too, named by path (``research/search``).

    Columns: ``status`` (categorical), ``runs``, ``attempts``, ``retries``, ``failures`` (int),
    ``p50``/``p95``/``p99``/``mean``/``max`` duration in seconds (float, NaN if never finished),
    ``last_error``.
    """
    import numpy as np

    rows = []
    metadata = source.metadata if hasattr(source, "metadata") else source.state_metadata
    run = source if hasattr(source, "metadata") else getattr(source, "latest_run", None)
    if run is not None and any(isinstance(s.func, Subflow) for s in run.agent.states.values()):
        metadata = {**metadata, **nested_metadata(run)}  # its sub-workflows' states, named by path
    for name, meta in metadata.items():
        d = np.asarray(meta.durations, dtype="float64")
        q = np.percentile(d, [50, 95, 99]) if d.size else [np.nan] * 3
        rows.append({"state": name, "status": meta.status.value, "runs": meta.runs, "attempts": meta.attempts,
                     "retries": meta.retries, "failures": meta.failures, "p50": q[0], "p95": q[1], "p99": q[2],
                     "mean": d.mean() if d.size else np.nan, "max": d.max() if d.size else np.nan,
                     "last_error": meta.last_error})
    frame = pd.DataFrame(rows, columns=["state", "status", "runs", "attempts", "retries", "failures", "p50", "p95",
                                        "p99", "mean", "max", "last_error"]).set_index("state")
    frame["status"] = pd.Categorical(frame["status"], categories=[s.value for s in StateStatus])
    for col in ("runs", "attempts", "retries", "failures"):
        frame[col] = frame[col].astype("int64")
    for col in ("p50", "p95", "p99", "mean", "max"):
        frame[col] = frame[col].astype("float64")
    return frame
