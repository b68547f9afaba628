"""Runs as the STORE knows them: the run list of ``%fluffy runs NAME`` and two runs compared.

Everything here reads the agent's checkpoint store only, so a run recorded in another kernel
(yesterday, say) lists, compares and explores like one of this kernel's. A run's parent is
the ``forked_from_run`` its first checkpoint records (``agent.fork`` writes it).

Per-state durations: when the run is still in this kernel's memory they are the measured
ones; otherwise they are estimated from the checkpoints of a durable run (the gap between
the checkpoint where the state first shows as completed and the one before it, an upper
bound when states ran in parallel), and NaN when the store cannot tell (the first state of a
run: no checkpoint is taken before it).
"""

from __future__ import annotations

import html
import json
from typing import Any

import ipywidgets as widgets
import pandas as pd
from IPython.core.error import UsageError

from ..engine._checkpoint import Checkpoint
from ..engine._status import AgentStatus

RUN_COLUMNS = ["run_id", "status", "started", "duration_s", "checkpoints", "parent_run_id", "in_memory"]


def _store(agent: Any) -> Any:
    if agent.store is None:
        raise UsageError(f"agent {agent.name!r} has no checkpoint store, so it has no recorded runs; "
                         f"define it with %%fluffy {agent.name} --store runs.db --durable")
    return agent.store


def find_run_id(agent: Any, target: str | None = None) -> str:
    """The full id of the stored run of ``agent`` whose id starts with ``target`` (None or
    ``latest``: the run that started last).

    Raises:
        UsageError: no stored run matches, or several do.
    """
    runs = _store(agent).runs(agent.name)
    if not runs:
        raise UsageError(f"agent {agent.name!r} has no run in {agent.store!r} yet; run it first")
    if target in (None, "", "latest"):
        return str(runs[-1].run_id)
    found = [r.run_id for r in runs if r.run_id.startswith(str(target))]
    if len(found) != 1:
        known = ", ".join(r.run_id[:8] for r in runs[-12:])
        what = "no run" if not found else f"{len(found)} runs"
        raise UsageError(f"agent {agent.name!r} has {what} whose id starts with {target!r} in its store "
                         f"(runs: {known}); give more of the id, or 'latest'")
    return str(found[0])


def first_checkpoint(agent: Any, run_id: str) -> Checkpoint | None:
    """The first stored checkpoint of ``run_id`` (None if it has none)."""
    rows = _store(agent).list(agent_name=agent.name, run_id=run_id)
    return agent.store.get(rows[0].checkpoint_id) if rows else None


def parent_of(agent: Any, run_id: str) -> str | None:
    """The run ``run_id`` was forked from, as its first checkpoint records it."""
    cp = first_checkpoint(agent, run_id)
    parent = None if cp is None else cp.metadata.get("forked_from_run")
    return parent if isinstance(parent, str) else None


def store_runs_frame(agent: Any) -> pd.DataFrame:
    """Every run of ``agent`` in its store, oldest first.

    Columns: ``run_id``, ``status`` (categorical: the status in its last checkpoint),
    ``started`` (datetime64 UTC), ``duration_s`` (first to last checkpoint), ``checkpoints``,
    ``parent_run_id`` (the run it was forked from), ``in_memory`` (this kernel holds the Run).

    Example:
        >>> # store_runs_frame(agent).tail()
    """
    memory = {r.run_id for r in agent.runs}
    rows = [{"run_id": r.run_id, "status": r.last_status, "started": r.started,
             "duration_s": r.last_timestamp - r.started, "checkpoints": r.checkpoints,
             "parent_run_id": parent_of(agent, r.run_id), "in_memory": r.run_id in memory}
            for r in _store(agent).runs(agent.name)]
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    frame["status"] = pd.Categorical(frame["status"], categories=[s.value for s in AgentStatus])
    frame["started"] = pd.to_datetime(frame["started"].astype("float64"), unit="s", utc=True)
    frame["duration_s"] = frame["duration_s"].astype("float64")
    frame["checkpoints"] = frame["checkpoints"].astype("int64")
    frame["in_memory"] = frame["in_memory"].astype("bool")
    return frame


def state_durations(agent: Any, run_id: str) -> dict[str, float]:
    """Seconds per state of ``run_id``: measured if the run is in memory, else from checkpoints."""
    for run in agent.runs:
        if run.run_id == run_id and any(m.durations for m in run.metadata.values()):
            return {n: float(sum(m.durations)) for n, m in run.metadata.items() if m.durations}
    out: dict[str, float] = {}
    prev: Checkpoint | None = None
    for row in _store(agent).list(agent_name=agent.name, run_id=run_id):
        cp = agent.store.get(row.checkpoint_id)
        if prev is not None and cp.trigger == "state":
            for name in cp.completed_states:
                if name not in prev.completed_states and name not in out:
                    out[name] = cp.timestamp - prev.timestamp
        prev = cp
    return out


def _last(agent: Any, run_id: str) -> Checkpoint:
    return agent.store.get(_store(agent).list(agent_name=agent.name, run_id=run_id)[-1].checkpoint_id)


def _data(cp: Checkpoint) -> dict[str, Any]:
    return {**cp.shared_state, **{k: v.get("data") for k, v in cp.typed_data.items()}}


def compare_runs(agent: Any, run_a: str | None, run_b: str | None) -> pd.DataFrame:
    """Two stored runs side by side: per-state durations and statuses, and differing context keys.

    One row per fact: ``kind`` is ``duration_s`` (seconds, NaN when unknown), ``status`` (only
    states whose final status differs) or ``context`` (only keys whose final value differs;
    values as JSON text); ``key`` names the state or key; ``a`` and ``b`` are the two runs'
    values. ``frame.attrs["runs"]`` holds the two full run ids.

    Args:
        agent: The agent (its store holds both runs).
        run_a: Id (or prefix, or ``latest``) of the first run.
        run_b: Id (or prefix) of the second run.
    """
    ida, idb = find_run_id(agent, run_a), find_run_id(agent, run_b)
    la, lb = _last(agent, ida), _last(agent, idb)
    da, db = state_durations(agent, ida), state_durations(agent, idb)
    rows: list[tuple[str, str, Any, Any]] = []
    names = list(dict.fromkeys([*agent.states, *la.state_status, *lb.state_status]))
    rows += [("duration_s", n, da.get(n, float("nan")), db.get(n, float("nan"))) for n in names
             if n in da or n in db or n in la.state_status or n in lb.state_status]
    for n in names:
        sa, sb = la.state_status.get(n), lb.state_status.get(n)
        if sa != sb:
            rows.append(("status", n, sa.value if sa else "pending", sb.value if sb else "pending"))
    va, vb = _data(la), _data(lb)
    for key in dict.fromkeys([*va, *vb]):
        if va.get(key, ...) != vb.get(key, ...):
            rows.append(("context", key, _json(va, key), _json(vb, key)))
    frame = pd.DataFrame(rows, columns=["kind", "key", "a", "b"])
    frame["kind"] = pd.Categorical(frame["kind"], categories=["duration_s", "status", "context"])
    frame.attrs["runs"] = (ida, idb)
    return frame


def _json(values: dict[str, Any], key: str) -> str | None:
    return json.dumps(values[key], ensure_ascii=False) if key in values else None


class RunsBrowser:
    """What ``%fluffy runs NAME`` shows: the stored runs, a button to explore one, and a compare.

    Without a widget frontend it is the run table (``text/html``) and its text.

    Args:
        agent: The agent (with a store).
    """

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.frame = store_runs_frame(agent)
        ids = list(self.frame["run_id"])
        options = [(self._label(i), rid) for i, rid in enumerate(ids)]
        self.table = widgets.HTML(self.table_html())
        wide = widgets.Layout(width="420px")
        self.pick_a = widgets.Dropdown(options=options, value=ids[-1] if ids else None, description="run",
                                       layout=wide)
        self.pick_b = widgets.Dropdown(options=options, value=ids[-2] if len(ids) > 1 else None,
                                       description="compare to", layout=wide)
        self.explore_button = widgets.Button(description="explore", icon="search")
        self.compare_button = widgets.Button(description="compare", icon="columns")
        self.reload_button = widgets.Button(description="reload", icon="refresh")
        self.out = widgets.VBox([])
        self.explorer: Any = None
        self.comparison: pd.DataFrame | None = None
        self.explore_button.on_click(lambda _b: self.explore())
        self.compare_button.on_click(lambda _b: self.compare())
        self.reload_button.on_click(lambda _b: self.reload())
        self.widget = widgets.VBox([self.table, widgets.HBox([self.pick_a, self.explore_button, self.reload_button]),
                                    widgets.HBox([self.pick_b, self.compare_button]), self.out])

    def reload(self) -> None:
        """Read the store's runs again (new forks, runs of other kernels)."""
        self.frame = store_runs_frame(self.agent)
        ids = list(self.frame["run_id"])
        options = [(self._label(i), rid) for i, rid in enumerate(ids)]
        self.table.value = self.table_html()
        self.pick_a.options, self.pick_b.options = options, options
        self.pick_a.value = ids[-1] if ids else None
        self.pick_b.value = ids[-2] if len(ids) > 1 else None

    def table_html(self) -> str:
        """The run list as an HTML table for people: short ids, times to the second (escaped)."""
        shown = self.frame.copy()
        shown.insert(0, "#", range(len(shown)))
        shown["run_id"] = shown["run_id"].str[:12]
        shown["parent_run_id"] = [p[:12] if isinstance(p, str) else "" for p in shown["parent_run_id"]]
        shown["started"] = shown["started"].dt.strftime("%Y-%m-%d %H:%M:%S")
        shown["duration_s"] = shown["duration_s"].round(3)
        return str(shown.to_html(index=False, escape=True))

    def _label(self, i: int) -> str:
        row = self.frame.iloc[i]
        parent = f" (fork of {row.parent_run_id[:8]})" if isinstance(row.parent_run_id, str) else ""
        return f"{i}: {row.run_id[:8]} {row.status}{parent}"

    def explore(self, run_id: str | None = None) -> Any:
        """Open the explorer of ``run_id`` (default: the run picked) below the list."""
        from ._explorer import Explorer

        self.explorer = Explorer(self.agent, run_id or self.pick_a.value)
        self.out.children = (self.explorer.widget,)
        return self.explorer

    def compare(self, run_a: str | None = None, run_b: str | None = None) -> pd.DataFrame:
        """Compare two runs (default: the two picked) and show the table below the list."""
        self.comparison = compare_runs(self.agent, run_a or self.pick_a.value, run_b or self.pick_b.value)
        ida, idb = self.comparison.attrs["runs"]
        head = f"<b>a</b> = {html.escape(ida[:12])}, <b>b</b> = {html.escape(idb[:12])}"
        self.out.children = (widgets.HTML(head + self.comparison.to_html(index=False, escape=True)),)
        return self.comparison

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        data = dict(self.widget._repr_mimebundle_() or {})
        data["text/plain"] = f"<runs of {self.agent.name!r} in its store>\n{self.frame.to_string(index=False)}"
        data["text/html"] = self.table_html()
        return data
