"""Sub-workflow clusters in the graph views: a state that is an agent, drawn as its own graph.

A state added as ``add_state("research", research_agent)`` is a cluster: collapsed (the
default) it is one node whose label counts the child's states by status, coloured while it runs
by the most pressing of its child's (a child waiting for a person shows so); expanded it is a
mermaid ``subgraph`` (or, in plotly, a framed group of nodes under the state) holding the
child's states, coloured by their own statuses, nested clusters drawn the same way.

Statuses of a child's states are keyed by their path (``research/search``): a live view's
tracker has them from the child's events, which the engine re-publishes on the parent's run
under that name; without a tracker they are read from each use's own child run of the parent's
latest run (``_subflow.child_runs``). ``_graphview`` calls the three functions here; nothing else changes there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from itertools import compress, repeat
from typing import Any

from ..engine._subflow import Subflow, child_runs
from ._layout import dominant_status, graph_layout, plotly_text, status_color, status_label

#: which clusters to draw expanded: True (all), False (none) or the state paths to open ("research", "a/b")
Expand = bool | Collection[str]


def child_agent(agent: Any, state: str) -> Any:
    """The child agent of ``state`` when that state is a sub-workflow, else None."""
    spec = agent.states.get(state)
    func = getattr(spec, "func", None)
    return func.child if isinstance(func, Subflow) else None


def subflow_states(agent: Any) -> list[str]:
    """The agent's states that are sub-workflows (one pass in C: every graph draw asks, and a
    10,000-state agent took ~1 ms as a Python loop)."""
    states = agent.states
    funcs = map(getattr, states.values(), repeat("func"), repeat(None))
    return list(compress(states, map(isinstance, funcs, repeat(Subflow))))


def cluster_paths(agent: Any) -> list[str]:
    """Every sub-workflow state of ``agent`` by path (``research``, ``research/verify``...), nested
    ones after their parent; each child agent is walked once on a path (agents nested in a cycle end)."""
    out: list[str] = []
    _walk(agent, "", out, frozenset())
    return out


def _walk(agent: Any, prefix: str, out: list[str], seen: frozenset[int]) -> None:
    seen = seen | {id(agent)}
    for state in subflow_states(agent):
        out.append(f"{prefix}{state}")
        child = child_agent(agent, state)
        if id(child) not in seen:
            _walk(child, f"{prefix}{state}/", out, seen)


def is_expanded(expand: Expand, path: str) -> bool:
    """Whether the cluster at ``path`` is drawn open: named, or an ancestor of a path named
    (``research/verify`` opens ``research`` too: a nested cluster is drawn inside its parent's)."""
    if isinstance(expand, bool):
        return expand
    inside = f"{path}/"
    return any(p == path or p.startswith(inside) for p in expand)


#: what a running sub-workflow state is coloured while its child runs: the first of these its child's
#: states have (a person to answer, a retry under way), so a collapsed cluster shows it
_LIVE_URGENCY = ("waiting_for_human", "retrying", "running", "blocked")


def with_child_statuses(agent: Any, status: Mapping[str, str]) -> dict[str, str]:
    """``status`` plus ``path/state`` entries for the states of every sub-workflow (nested ones too),
    taken from the child runs of the agent's latest run where ``status`` has none; a sub-workflow
    state that is running takes its child's most pressing live status (``_LIVE_URGENCY``)."""
    if not subflow_states(agent):  # every draw asks: a 10,000-state agent's statuses are not copied
        return status if isinstance(status, dict) else dict(status)
    out = dict(status)
    latest = getattr(agent, "latest_run", None)
    _child_statuses(agent, child_runs(latest) if latest is not None else {}, "", out)
    return out


def _child_statuses(agent: Any, runs: Mapping[str, Any], prefix: str, out: dict[str, str]) -> None:
    for state in subflow_states(agent):
        child = child_agent(agent, state)
        path = f"{prefix}{state}"
        mine = runs.get(path)  # this use's own child run (a child used twice has two)
        for name in child.states:
            key = f"{path}/{name}"
            if key not in out:
                meta = mine.metadata.get(name) if mine is not None else None
                out[key] = meta.status.value if meta is not None else "pending"
        _child_statuses(child, runs, f"{path}/", out)  # inner clusters first: theirs count here
        if out.get(path) == "running":
            live = {out[f"{path}/{name}"] for name in child.states}
            out[path] = next((s for s in _LIVE_URGENCY if s in live), "running")


def node_label(agent: Any, state: str, label: str, status: Mapping[str, str]) -> str:
    """A node's label: ``label``, or the collapsed cluster's when ``state`` is a sub-workflow."""
    return label if child_agent(agent, state) is None else collapsed_label(agent, state, status)


def collapsed_label(agent: Any, state: str, status: Mapping[str, str], path: str = "") -> str:
    """The label of a collapsed cluster: its name, the child agent and its states counted by status."""
    child = child_agent(agent, state)
    full = f"{path}{state}"
    counts = Counter(status.get(f"{full}/{name}", "pending") for name in child.states)
    text = ", ".join(f"{n} {status_label(s)}" for s, n in counts.most_common())
    return f"{state} [{child.name}: {text}]"


# -- mermaid ------------------------------------------------------------------------------------------
def mermaid_cluster(agent: Any, state: str, node_id: str, status: Mapping[str, str], expand: Expand,
                    text: Any, path: str = "", indent: str = "    ") -> tuple[list[str], set[str]]:
    """Mermaid lines for the sub-workflow ``state`` drawn as node ``node_id``: a ``subgraph`` of the
    child's states when expanded, one node otherwise; and the status classes the lines use.
    ``text`` makes a label safe (``_graphview._mermaid_text``)."""
    full = f"{path}{state}"
    child = child_agent(agent, state)
    if not is_expanded(expand, full):
        counts = Counter(status.get(f"{full}/{name}", "pending") for name in child.states)
        st = status.get(full, "pending") if full in status else dominant_status(counts)
        label = collapsed_label(agent, state, status, path)
        return [f'{indent}{node_id}[["{text(label)}"]]:::{st}'], {st}
    lines = [f'{indent}subgraph {node_id} ["{text(f"{state} - agent {child.name}")}"]', f"{indent}    direction LR"]
    used: set[str] = set()
    ids = {name: f"{node_id}_{i}" for i, name in enumerate(child.graph.nodes)}
    for name in child.graph.nodes:
        if child_agent(child, name) is not None:
            inner, inner_used = mermaid_cluster(child, name, ids[name], status, expand, text, f"{full}/",
                                                indent + "    ")
            lines.extend(inner)
            used |= inner_used
            continue
        st = status.get(f"{full}/{name}", "pending")
        used.add(st)
        lines.append(f'{indent}    {ids[name]}["{text(name)}"]:::{st}')
    for src, dst, _kind in child.graph.edge_list():
        if src in ids and dst in ids:
            lines.append(f"{indent}    {ids[src]} --> {ids[dst]}")
    lines.append(f"{indent}end")
    return lines, used


# -- plotly -------------------------------------------------------------------------------------------
def add_plotly_clusters(fig: Any, lay: Any, agent: Any, status: Mapping[str, str], expand: Expand) -> None:
    """Draw the expanded sub-workflows of ``agent`` under their nodes: a dashed frame holding the
    child's states (coloured by status) and its edges, an expanded nested cluster under its node
    in that frame the same way (smaller). Collapsed ones get their label in the hover."""
    if not expand:
        return
    for nid, node in lay.nodes.items():
        if node.is_group or child_agent(agent, nid) is None or not is_expanded(expand, nid):
            continue
        _plotly_cluster(fig, child_agent(agent, nid), nid, lay.position(nid), status, expand, 0.35, set())


def _plotly_cluster(fig: Any, child: Any, path: str, at: tuple[float, float], status: Mapping[str, str],
                    expand: Expand, scale: float, seen: set[int]) -> None:
    """The cluster of ``child`` (the sub-workflow at ``path``) drawn under the node at ``at``."""
    import plotly.graph_objects as go

    inner = graph_layout(child.graph)
    if not inner.nodes or id(child) in seen:  # (an agent nested in a cycle is drawn once on a path)
        return
    x0, y0 = at
    pts = {n: inner.position(n) for n in inner.nodes}
    min_x = min(p[0] for p in pts.values())
    max_y = max(p[1] for p in pts.values())
    drop = 0.6 * scale / 0.35
    placed = {n: (x0 + (x - min_x) * scale, y0 - drop - (max_y - y) * scale) for n, (x, y) in pts.items()}
    xs = [p[0] for p in placed.values()]
    ys = [p[1] for p in placed.values()]
    fig.add_shape(type="rect", x0=min(xs) - 0.15, x1=max(xs) + 0.15, y0=min(ys) - 0.2, y1=max(ys) + 0.25,
                  line={"dash": "dot", "color": "#888"}, fillcolor="rgba(200,200,200,0.12)", layer="below")
    ex: list[float | None] = []
    ey: list[float | None] = []
    for src, dst, _kind in child.graph.edge_list():
        if src in placed and dst in placed:
            ex.extend([placed[src][0], placed[dst][0], None])
            ey.extend([placed[src][1], placed[dst][1], None])
    fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", hoverinfo="skip", showlegend=False,
                             line={"color": "#999", "width": 1}))
    names = list(placed)
    statuses = [status.get(f"{path}/{n}", "pending") for n in names]
    low, right = min(ys) - 0.5, max(xs) + 0.3
    current = fig.layout.yaxis.range
    if current is not None and low < current[0]:
        fig.update_yaxes(range=[low, current[1]])
    across = fig.layout.xaxis.range
    if across is not None and right > across[1]:  # a cluster reaching past the graph is not cut off
        fig.update_xaxes(range=[across[0], right])
    hover = [collapsed_label(child, n, status, f"{path}/") if child_agent(child, n) is not None else n
             for n in names]
    fig.add_trace(go.Scatter(
        x=[placed[n][0] for n in names], y=[placed[n][1] for n in names], mode="markers+text",
        text=[plotly_text(n) for n in names], textposition="bottom center", showlegend=False,
        hovertext=[f"<b>{plotly_text(path)}/{plotly_text(h)}</b><br>status: {status_label(s)}"
                   for h, s in zip(hover, statuses, strict=True)], hoverinfo="text",
        marker={"size": 14, "color": [status_color(s) for s in statuses], "line": {"color": "#333", "width": 1}},
        textfont={"size": 10}, name=f"{path} (agent {child.name})",
    ))
    for n in names:
        grandchild = child_agent(child, n)
        if grandchild is not None and is_expanded(expand, f"{path}/{n}"):
            _plotly_cluster(fig, grandchild, f"{path}/{n}", placed[n], status, expand, scale * 0.6,
                            seen | {id(child)})


# -- live view ----------------------------------------------------------------------------------------
class ExpandToggle:
    """The "open sub-workflows" button of a live view (``button``), following the view's ``expand``.

    Turning it on opens what ``expand`` was last given (a list of paths, or every cluster when it
    was never given one); off closes them all; either redraws the graph at once. Setting
    ``view.expand`` later (the view calls :meth:`follow`) shows on the button, without a redraw."""

    def __init__(self, view: Any) -> None:
        import ipywidgets as widgets

        self.view = view
        #: what turning the button on opens: the ``expand`` last given, else every cluster
        self.opens: Expand = view.expand or True
        self._following = False
        self.button = widgets.ToggleButton(value=bool(view.expand), description="open sub-workflows",
                                           tooltip="draw each agent used as a state as a cluster of its own states")
        self.button.observe(self._clicked, names="value")

    def follow(self, expand: Expand) -> None:
        """The view's ``expand`` is now ``expand``: show it on the button (and remember a list to reopen)."""
        if expand:
            self.opens = expand
        self._following = True
        try:
            self.button.value = bool(expand)
        finally:
            self._following = False

    def _clicked(self, change: Mapping[str, Any]) -> None:
        if self._following:
            return
        self.view.expand = self.opens if change["new"] else False
        self.view.redraw_graph()


def expand_toggle(view: Any) -> ExpandToggle | None:
    """The "open sub-workflows" toggle of a live view's graph (None when the view's agent has no
    sub-workflow state)."""
    if not subflow_states(view.agent):
        return None
    return ExpandToggle(view)
