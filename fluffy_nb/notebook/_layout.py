"""Layered layout of a state graph, and the status vocabulary and plotly template every view shares.

The layout is a small Sugiyama-style pass over :class:`~fluffy_nb.engine._graph.StateGraph`:
back edges are left out of the layering (inside a cycle, an edge to a state no farther from the
start, in fewest hops, than its source is the loop's return, so siblings of a fan-out inside a
loop share a column); every state goes to the layer after its deepest predecessor (longest
path); states inside a layer are ordered by the barycentre of their predecessors (two sweeps).
Layers wider than ``max_per_layer`` collapse into one *group* node ("w0 … w9999 (10,000
states)"), so a huge fan-out stays one readable column, and the picture says it is summarised
(``summary_note``). Layouts are cached per graph version. Back edges run in lanes under every
node (``Layout.back_route``), one lane each, nested by target (``Layout.back_lanes``), with
climbs of their own in the gaps (``spread_back_edge``), for the SVG and the plotly graph alike.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: display status -> (label, fill colour); the order is the legend order
STATUS_STYLE: dict[str, tuple[str, str]] = {
    "pending": ("pending", "#d4d4d4"),
    "ready": ("ready", "#9ecae1"),
    "blocked": ("blocked", "#f2c94c"),
    "running": ("running", "#2f80ed"),
    "retrying": ("retrying", "#f2994a"),
    "waiting_for_human": ("waiting for a person", "#9b51e0"),
    "completed": ("done", "#27ae60"),
    "failed": ("failed", "#eb5757"),
    "timeout": ("timed out", "#a50f15"),
    "cancelled": ("cancelled", "#828282"),
    "skipped": ("skipped", "#f2f2f2"),  # not taken: the run completed without needing it (drawn dashed)
}

#: statuses drawn light: their labels are dark text
LIGHT_STATUSES = ("pending", "ready", "blocked", "skipped")

#: statuses a state ends in: the progress bar counts them as done
END_STATUSES = ("completed", "failed", "timeout", "cancelled", "skipped")

#: when a group holds states of several statuses, its colour is the most pressing one
STATUS_URGENCY = ["failed", "timeout", "waiting_for_human", "retrying", "running", "blocked", "ready",
                  "cancelled", "pending", "completed", "skipped"]

#: edge kind -> (label, colour, plotly dash)
EDGE_STYLE: dict[str, tuple[str, str, str]] = {
    "code": ("from code", "#7f8c8d", "solid"),
    "declared": ("declared next", "#7f8c8d", "dash"),
    "dependency": ("dependency", "#2d6cdf", "dot"),
    "runtime": ("seen at run time", "#e67e22", "solid"),
    "error": ("on error / timeout", "#c0392b", "dashdot"),
}


#: a small plotly template (white, light grid): plotly's named templates cost a deep copy per figure
TEMPLATE: dict[str, Any] = {"layout": {
    "paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"color": "#2a3f5f"},
    "xaxis": {"gridcolor": "#ebf0f8", "zerolinecolor": "#ebf0f8", "linecolor": "#ebf0f8"},
    "yaxis": {"gridcolor": "#ebf0f8", "zerolinecolor": "#ebf0f8", "linecolor": "#ebf0f8"},
}}


#: template parts no figure here uses (polar, 3-D, maps, colour scales): left out of the cached template
_UNUSED_TEMPLATE_LAYOUT = frozenset({"polar", "ternary", "scene", "geo", "coloraxis", "colorscale", "mapbox", "map"})
_templates: dict[Any, Any] = {}


def plotly_template() -> Any:
    """:data:`TEMPLATE` over plotly's default template, as ``update_layout(template=TEMPLATE)`` merges it,
    built once per default template and cut to the scatter and bar parts the views draw.

    Merging the dict costs ~10 ms per figure (a copy of plotly's whole default template); this
    ``Template`` costs ~3 ms and draws the same.
    """
    import plotly.graph_objects as go
    import plotly.io as pio

    key = pio.templates.default
    cached = _templates.get(key)
    if cached is None:
        merged = go.Figure().update_layout(template=TEMPLATE).layout.template.to_plotly_json()
        cached = go.layout.Template({
            "data": {k: v for k, v in merged.get("data", {}).items() if k in ("scatter", "bar")},
            "layout": {k: v for k, v in merged.get("layout", {}).items() if k not in _UNUSED_TEMPLATE_LAYOUT}})
        _templates[key] = cached
    return cached


def template_json() -> dict[str, Any]:
    """:func:`plotly_template` as plain JSON (a fresh copy), for figures built as dicts."""
    import json

    key = ("json", _template_key())
    text = _templates.get(key)
    if text is None:
        from plotly.utils import PlotlyJSONEncoder

        text = _templates[key] = json.dumps(plotly_template().to_plotly_json(), cls=PlotlyJSONEncoder)
    return dict(json.loads(text))


def _template_key() -> Any:
    import plotly.io as pio

    return pio.templates.default


def plotly_text(text: str) -> str:
    """``text`` as plotly shows it literally in labels and hover text.

    Plotly renders a subset of HTML in text (``<b>``, ``<br>``, ``<a href>``...) and decodes
    ``&amp;``, ``&lt;``, ``&gt;`` and numeric entities but not ``&quot;``: so ``&``, ``<`` and
    ``>`` are escaped and quotes are left as they are.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def status_label(status: str) -> str:
    """The words shown for a status key (``completed`` -> ``done``)."""
    return STATUS_STYLE.get(status, (status, ""))[0]


def status_color(status: str) -> str:
    """The fill colour of a status key."""
    return STATUS_STYLE.get(status, ("", "#bdbdbd"))[1]


def dominant_status(counts: Mapping[str, int]) -> str:
    """The most pressing status present in ``counts`` (a group's colour)."""
    for s in STATUS_URGENCY:
        if counts.get(s):
            return s
    return "pending"


@dataclass
class Node:
    """One drawn node: a state, or a group standing for a wide layer."""

    id: str
    label: str
    layer: int
    order: float
    members: tuple[str, ...]

    @property
    def is_group(self) -> bool:
        """Whether this node stands for several states."""
        return len(self.members) != 1 or self.members[0] != self.id


@dataclass
class Layout:
    """Positions of nodes and the edges between them (``back`` edges close a cycle)."""

    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str, str, bool]] = field(default_factory=list)  # src, dst, kind, back
    owner: dict[str, str] = field(default_factory=dict)  # state -> node id
    layers: int = 0
    widest: int = 0

    def position(self, node_id: str) -> tuple[float, float]:
        """``(x, y)``: x is the layer, y the place in the layer (centred on 0)."""
        n = self.nodes[node_id]
        return float(n.layer), -float(n.order)

    def route(self, src: str, dst: str) -> list[tuple[float, float]]:
        """Points of a forward edge; one that skips layers bends around the nodes in between."""
        (x0, y0), (x1, y1) = self.position(src), self.position(dst)
        points = [(x0, y0)]
        if x1 - x0 > 1:
            ys: dict[int, list[float]] = {}
            for nid in self.nodes:
                x, y = self.position(nid)
                ys.setdefault(int(x), []).append(y)
            for layer in range(int(x0) + 1, int(x1)):
                y = y0 + (y1 - y0) * (layer - x0) / (x1 - x0)
                taken = ys.get(layer, [])
                if any(abs(y - t) < 0.35 for t in taken):
                    gaps = [t + d for t in taken for d in (0.5, -0.5)
                            if all(abs(t + d - u) >= 0.35 for u in taken)]
                    y = min(gaps, key=lambda g: abs(g - y)) if gaps else y
                points.append((float(layer), y))
        points.append((x1, y1))
        return points


    def back_route(self, src: str, dst: str, lane: int = 0) -> list[tuple[float, float]]:
        """Points of a back edge (one closing a cycle), routed around every node as mermaid does:
        out of the source to the gap after its layer, down to a lane under the lowest node (one
        lane per back edge, so they never share a line), along it, and up through the gap before
        the target's layer into the target. Gaps between layers hold no nodes, so nothing is crossed."""
        (x0, y0), (x1, y1) = self.position(src), self.position(dst)
        low = min((self.position(n)[1] for n in self.nodes), default=0.0)
        lane_y = low - 0.8 - 0.3 * lane
        return [(x0, y0), (x0 + 0.5, y0), (x0 + 0.5, lane_y), (x1 - 0.5, lane_y), (x1 - 0.5, y1), (x1, y1)]

    def back_lanes(self) -> dict[int, int]:
        """The lane of each back edge (by its index in ``edges``; self-loops have none): the edge into
        the lowest target gets the innermost lane, so with :func:`spread_back_edge` a climb to a higher
        target passes beside every lower one's entry instead of crossing it."""
        backs = sorted((self.position(d)[1], -self.position(s)[1], i)
                       for i, (s, d, _kind, back) in enumerate(self.edges) if back and s != d)
        return {i: lane for lane, (*_, i) in enumerate(backs)}


def spread_back_edge(pts: list[tuple[float, float]], lane: int, lanes: int, *, step: float,
                     drop: float) -> list[tuple[float, float]]:
    """A back edge's six route points (:meth:`Layout.back_route`, in any units) moved so no two back
    edges share a line: its climbs stand ``step`` apart per lane across the gaps, nested by lane, and
    it leaves and enters its boxes ``drop`` off their centres, where forward edges do not run."""
    off = (lane - (lanes - 1) / 2) * step
    (x0, y0), (g0, _), (_, lane_y), (g1, _), (_, y1), (x1, _) = pts
    return [(x0, y0 + drop), (g0 + off, y0 + drop), (g0 + off, lane_y), (g1 - off, lane_y),
            (g1 - off, y1 + drop), (x1, y1 + drop)]


def _dfs_back_edges(nodes: list[str], succ: Mapping[str, Iterable[str]]) -> set[tuple[str, str]]:
    """Edges that point back to a node on the current DFS path (iterative DFS, roots in order)."""
    colour: dict[str, int] = {}
    back: set[tuple[str, str]] = set()
    for root in nodes:
        if root in colour:
            continue
        colour[root] = 1
        stack = [(root, iter(succ.get(root, ())))]
        while stack:
            node, it = stack[-1]
            for nxt in it:
                c = colour.get(nxt, 0)
                if c == 1:
                    back.add((node, nxt))
                elif c == 0:
                    colour[nxt] = 1
                    stack.append((nxt, iter(succ.get(nxt, ()))))
                    break
            else:
                colour[node] = 2
                stack.pop()
    return back


def _bfs_depths(names: list[str], succ: Mapping[str, Iterable[str]], starts: list[str]) -> dict[str, int]:
    """Fewest hops from the start states (nodes they do not reach: from the first such node)."""
    depth: dict[str, int] = {}
    for root in [*starts, *names]:
        if root in depth:
            continue
        depth[root] = 0
        frontier = [root]
        while frontier:
            nxt_frontier = []
            for n in frontier:
                for d in succ.get(n, ()):
                    if d not in depth:
                        depth[d] = depth[n] + 1
                        nxt_frontier.append(d)
            frontier = nxt_frontier
    return depth


def _components(names: list[str], succ: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Strongly connected component id of every node (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    comp: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    counter = 0
    for root in names:
        if root in index:
            continue
        work = [(root, iter(succ.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(succ.get(nxt, ()))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp[m] = index[node]
                        if m == node:
                            break
    return comp


def _back_edges(names: list[str], succ: Mapping[str, Iterable[str]], starts: list[str]) -> set[tuple[str, str]]:
    """The edges that close a cycle, chosen so a loop's *return* is the back edge.

    Inside a cycle (a strongly connected component), an edge going to a state no farther from
    the start than its source (fewest hops) is the loop going back; a plain DFS would instead
    cut whichever edge it happened to meet last (in a fan-out inside a loop that is a sibling's
    edge, pushing that sibling to the far right). Among edges between states equally far from
    the start, a DFS breaks what cycles remain. Edges outside cycles are never back edges.
    """
    depth = _bfs_depths(names, succ, starts)
    comp = _components(names, succ)
    back: set[tuple[str, str]] = set()
    level: dict[str, list[str]] = {}
    for s in names:
        for d in succ.get(s, ()):
            if comp[s] != comp[d]:
                continue
            if depth[d] < depth[s]:
                back.add((s, d))
            elif depth[d] == depth[s]:
                level.setdefault(s, []).append(d)
    if level:
        back |= _dfs_back_edges([n for n in names if n in level], level)
    return back


def compute_layout(nodes: Iterable[str], edges: Iterable[tuple[str, str, str]], *, max_per_layer: int = 12) -> Layout:
    """Lay out a graph left to right in layers.

    Args:
        nodes: State names in registration order (the first ones are the start states).
        edges: ``(src, dst, kind)`` triples.
        max_per_layer: Layers with more states than this collapse into one group node.

    Example:
        >>> lay = compute_layout(["a", "b", "c"], [("a", "b", "code"), ("b", "c", "code"), ("c", "a", "code")])
        >>> [lay.nodes[n].layer for n in "abc"], [e for e in lay.edges if e[3]]
        ([0, 1, 2], [('c', 'a', 'code', True)])
    """
    known = dict.fromkeys(nodes)
    edge_list = [(s, d, k) for s, d, k in edges]
    for s, d, _ in edge_list:
        known.setdefault(s)
        known.setdefault(d)
    names = list(known)
    succ: dict[str, list[str]] = {n: [] for n in names}
    for s, d, _ in edge_list:
        if s != d:
            succ[s].append(d)
    targets = {d for s, d, _ in edge_list if s != d}
    starts = [n for n in names if n not in targets] or names[:1]
    back = _back_edges(names, succ, starts)
    preds: dict[str, list[str]] = {n: [] for n in names}
    for s, d, _ in edge_list:
        if s != d and (s, d) not in back:
            preds[d].append(s)
    by_layer = _layers(names, succ, preds, back)
    pos = _positions(by_layer, preds, max_per_layer)
    return _assemble(by_layer, pos, edge_list, back, max_per_layer)


def _layers(names: list[str], succ: dict[str, list[str]], preds: dict[str, list[str]],
            back: set[tuple[str, str]]) -> dict[int, list[str]]:
    """Longest-path layering over the acyclic part (Kahn's order)."""
    indeg = {n: len(preds[n]) for n in names}
    layer = dict.fromkeys(names, 0)
    queue = [n for n in names if indeg[n] == 0]
    i = 0
    while i < len(queue):
        n = queue[i]
        i += 1
        for d in succ[n]:
            if (n, d) in back:
                continue
            layer[d] = max(layer[d], layer[n] + 1)
            indeg[d] -= 1
            if indeg[d] == 0:
                queue.append(d)
    by_layer: dict[int, list[str]] = {}
    for n in names:
        by_layer.setdefault(layer[n], []).append(n)
    return by_layer


def _positions(by_layer: dict[int, list[str]], preds: dict[str, list[str]], max_per_layer: int) -> dict[str, float]:
    """Barycentre ordering: place each node near the mean position of its predecessors. A layer
    that collapses into one group node stays in its own order, all at the group's place (0)."""
    pos: dict[str, float] = {}
    for lay_i in sorted(by_layer):
        members = by_layer[lay_i]
        if len(members) > max_per_layer:
            pos.update(dict.fromkeys(members, 0.0))
            continue
        if lay_i > 0 and len(members) > 1:
            index = {n: j for j, n in enumerate(members)}

            def key(n: str, index: dict[str, int] = index) -> tuple[float, int]:
                ps = [pos[p] for p in preds[n] if p in pos]
                return (sum(ps) / len(ps) if ps else float(index[n]), index[n])

            members.sort(key=key)
        for j, n in enumerate(members):
            pos[n] = j - (len(members) - 1) / 2
    return pos


def _assemble(by_layer: dict[int, list[str]], pos: dict[str, float], edge_list: list[tuple[str, str, str]],
              back: set[tuple[str, str]], max_per_layer: int) -> Layout:
    lay = Layout(layers=len(by_layer))
    for lay_i, members in sorted(by_layer.items()):
        if len(members) > max_per_layer:
            gid = f"group:{lay_i}"
            lay.nodes[gid] = Node(gid, group_label(members), lay_i, 0.0, tuple(members))
            for n in members:
                lay.owner[n] = gid
            lay.widest = max(lay.widest, 1)
        else:
            for n in members:
                lay.nodes[n] = Node(n, n, lay_i, pos[n], (n,))
                lay.owner[n] = n
            lay.widest = max(lay.widest, len(members))
    seen: set[tuple[str, str]] = set()
    for s, d, k in edge_list:
        a, b = lay.owner[s], lay.owner[d]
        if (a, b) in seen:
            continue
        seen.add((a, b))
        lay.edges.append((a, b, k, (s, d) in back or a == b))
    return lay


def group_label(members: list[str]) -> str:
    """A summarised layer's label: its first and last state and how many (``w0 … w9999 (10,000 states)``)."""
    first, last = members[0], members[-1]
    short = [name if len(name) <= 16 else name[:15] + "…" for name in (first, last)]
    return f"{short[0]} … {short[1]} ({len(members):,} states)"


def summary_note(lay: Layout) -> str:
    """What a picture says when it summarises: how many states its group nodes stand for ("" if none)."""
    groups = [node for node in lay.nodes.values() if node.is_group]
    if not groups:
        return ""
    states = sum(len(node.members) for node in groups)
    return (f"summarised: {states:,} states drawn as {len(groups)} node{'s' if len(groups) > 1 else ''} "
            "(a layer of more than 12 states is one node)")


_cache: weakref.WeakKeyDictionary[Any, tuple[int, int, Layout]] = weakref.WeakKeyDictionary()


def graph_layout(graph: Any, *, max_per_layer: int = 12) -> Layout:
    """The (cached) layout of an engine ``StateGraph``; recomputed when the graph changes."""
    hit = _cache.get(graph)
    if hit is not None and hit[0] == graph.version and hit[1] == max_per_layer:
        return hit[2]
    lay = compute_layout(list(graph.nodes), graph.edge_list(), max_per_layer=max_per_layer)
    _cache[graph] = (graph.version, max_per_layer, lay)
    return lay
