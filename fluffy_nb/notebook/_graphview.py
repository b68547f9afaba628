"""The state graph drawn three ways, all offline: plotly, mermaid text, and inline SVG.

Nodes are coloured by status (the shared vocabulary in ``_layout``); edges are styled by how
they were found (from code, declared, dependency, seen at run time). Plotly is the rich view,
mermaid is for JupyterLab >= 4.1 and Markdown, and the SVG is the static snapshot that shows
in exported HTML, nbviewer and anywhere without JavaScript.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from ._clusters import Expand, add_plotly_clusters, child_agent, mermaid_cluster, node_label, with_child_statuses
from ._layout import (
    EDGE_STYLE,
    LIGHT_STATUSES,
    STATUS_STYLE,
    Layout,
    dominant_status,
    graph_layout,
    plotly_template,
    plotly_text,
    spread_back_edge,
    status_color,
    status_label,
    summary_note,
    template_json,
)
from ._mapview import map_counts, map_note
from ._waitview import add_wait_overlay, mermaid_wait_lines, svg_wait_overlay, wait_hover, wait_label

#: graphs with more drawn nodes than this get no plotly figure in an Agent's repr (mermaid/SVG still)
PLOTLY_REPR_LIMIT = 150


def agent_statuses(agent: Any, tracker: Any = None) -> dict[str, str]:
    """State -> display status, from a tracker when there is one, else the agent's metadata."""
    if tracker is not None:
        return tracker.status
    return {name: meta.status.value for name, meta in agent.state_metadata.items()}


def waits_of(tracker: Any) -> tuple[dict[str, Any], list[Any]]:
    """``(waits, deadlocks)`` a tracker knows (nothing without one)."""
    if tracker is None or not hasattr(tracker, "current_waits"):
        return {}, []
    return tracker.current_waits(), list(tracker.deadlocks)


def _node_status(lay: Layout, node_id: str, status: Mapping[str, str]) -> tuple[str, Counter[str]]:
    members = lay.nodes[node_id].members
    counts = Counter(map(status.get, members, repeat("pending")))  # C-speed: a group holds 10,000 states
    return dominant_status(counts), counts


def _counts_text(counts: Counter[str]) -> str:
    return ", ".join(f"{n:,} {status_label(s)}" for s, n in counts.most_common())


def _hover(agent: Any, name: str, status: str, where: str | None = None, wait: Any = None) -> str:
    meta = agent.state_metadata.get(name)
    lines = [f"<b>{plotly_text(name)}</b>", f"status: {status_label(status)}"]
    if where:
        lines.append(f"worker: {plotly_text(where)}")
    if wait is not None:
        lines.append(wait_hover(wait))
    if meta is not None:
        if meta.attempts:
            lines.append(f"attempts: {meta.attempts}, runs: {meta.runs}")
        if meta.last_duration is not None:
            lines.append(f"last run: {meta.last_duration:.3f}s")
        if meta.last_error:
            lines.append("error: " + plotly_text(meta.last_error[:200]))
    return "<br>".join(lines)


def _note_line(lay: Layout) -> str:
    note = summary_note(lay)
    return f"<br><i><span style='font-size:11px'>{plotly_text(note)}</span></i>" if note else ""


def graph_figure(agent: Any, tracker: Any = None, *, title: str | None = None, expand: Expand = False) -> Any:
    """A plotly figure of the agent's state graph, nodes coloured by status.

    Args:
        agent: The agent (its ``graph`` includes edges seen at run time).
        tracker: A :class:`RunTracker` for live statuses (default: the agent's metadata).
        title: Figure title (default: the agent's name and state count).
        expand: Sub-workflow states to draw open (True: all; default: each one node).

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go

    parts = _graph_parts(agent, tracker, title)
    fig = go.Figure(data=parts.traces)
    add_wait_overlay(fig, parts.lay, parts.waits, parts.deadlocks, parts.layout["annotations"], agent)
    fig.update_layout(**parts.layout)
    add_plotly_clusters(fig, parts.lay, agent, parts.status, expand)
    return fig


def graph_bundle(agent: Any, tracker: Any = None, *, expand: Expand = False) -> dict[str, Any]:
    """:func:`graph_figure` as a plotly MIME bundle (the live view's). Without waits, deadlocks or
    open sub-workflows it is built as plain JSON, the same as ``to_bundle(graph_figure(...))``
    without plotly's objects (~3 ms instead of ~15 ms for a summarised 10,000-state graph)."""
    from ._figures import to_bundle

    parts = _graph_parts(agent, tracker, None)
    if expand or parts.waits or parts.deadlocks:
        return to_bundle(graph_figure(agent, tracker, expand=expand))
    spec = {"data": parts.traces, "layout": {**parts.layout, "template": template_json()},
            "config": {"displaylogo": False, "responsive": True}}
    return {"application/vnd.plotly.v1+json": spec, "text/plain": f"<{parts.layout['title']['text']}>"}


@dataclass
class _GraphParts:
    """A graph figure as plain plotly JSON (traces, layout without template) and what it was drawn from."""

    traces: list[dict[str, Any]]
    layout: dict[str, Any]
    lay: Layout
    status: dict[str, str]
    waits: dict[str, Any]
    deadlocks: list[Any]


def _graph_parts(agent: Any, tracker: Any, title: str | None) -> _GraphParts:
    lay = graph_layout(agent.graph)
    status = with_child_statuses(agent, agent_statuses(agent, tracker))
    waits, deadlocks = waits_of(tracker)
    maps = map_counts(tracker)
    traces: list[dict[str, Any]] = []  # plain dicts, made into one figure at once (cheaper than add_trace each)
    # edges: one line trace per kind (dash shows the kind), arrowheads as short annotations on the last leg;
    # cycles (back edges) run in lanes under every node, edges that skip layers bend around the nodes between
    annotations = []
    lane_of = lay.back_lanes()
    lanes = len(lane_of)
    kinds_seen: set[str] = set()
    lines: dict[str, tuple[list[float | None], list[float | None]]] = {}
    for i, (src, dst, kind, back) in enumerate(lay.edges):
        kind = kind if kind in EDGE_STYLE else "code"
        colour = EDGE_STYLE[kind][1]
        kinds_seen.add(kind)
        x0, y0 = lay.position(src)
        if src == dst:
            pts = [(x0 + 0.12 * math.cos(t / 10 * 2 * math.pi), y0 + 0.35 + 0.2 * math.sin(t / 10 * 2 * math.pi))
                   for t in range(11)]
        elif back:  # climbs spread in the gap (layout units), entering just under the marker's centre
            pts = spread_back_edge(lay.back_route(src, dst, lane_of[i]), lane_of[i], lanes,
                                   step=min(0.08, 0.3 / lanes), drop=-0.06)
        else:
            pts = lay.route(src, dst)
        xs_, ys_ = lines.setdefault(kind, ([], []))
        xs_.extend([p[0] for p in pts] + [None])
        ys_.extend([p[1] for p in pts] + [None])
        if src != dst:
            (ax, ay), (bx, by) = pts[-2], pts[-1]
            frac = 0.6 if len(pts) == 2 else 0.0
            annotations.append({"x": bx, "y": by, "ax": ax + (bx - ax) * frac, "ay": ay + (by - ay) * frac,
                                "xref": "x", "yref": "y", "axref": "x", "ayref": "y", "showarrow": True,
                                "text": "", "arrowhead": 2, "arrowsize": 1.3, "arrowwidth": 1.5,
                                "arrowcolor": colour, "standoff": 14})
    for kind, (xs_, ys_) in lines.items():
        _, colour, dash = EDGE_STYLE[kind]
        traces.append({"type": "scatter", "x": xs_, "y": ys_, "mode": "lines", "hoverinfo": "skip", "showlegend": False,
                       "line": {"color": colour, "dash": dash, "width": 2 if kind == "runtime" else 1.5}})
    for kind in EDGE_STYLE:
        if kind in kinds_seen:
            label, colour, dash = EDGE_STYLE[kind]
            traces.append({"type": "scatter", "x": [None], "y": [None], "mode": "lines", "name": f"edge: {label}",
                           "line": {"color": colour, "dash": dash, "width": 2}, "legendgroup": "edges"})
    # nodes: one trace per status so the legend explains the colours
    by_status: dict[str, list[tuple[str, float, float, str, str]]] = {}
    for nid, node in lay.nodes.items():
        st, counts = _node_status(lay, nid, status)
        x, y = lay.position(nid)
        if node.is_group:
            text = f"{plotly_text(node.label)}<br>{_counts_text(counts)}"
            hover = f"<b>{plotly_text(node.label)}</b> (layer {node.layer})<br>{_counts_text(counts)}"
        else:
            text = plotly_text(node_label(agent, nid, node.label, status) + map_note(maps, nid))
            hover = _hover(agent, nid, st, getattr(tracker, "where", {}).get(nid), waits.get(nid))
        by_status.setdefault(st, []).append((nid, x, y, text, hover))
    for st in STATUS_STYLE:
        members = by_status.get(st)
        if not members:
            continue
        traces.append({
            "type": "scatter", "x": [p[1] for p in members], "y": [p[2] for p in members],
            "text": [p[3] for p in members], "hovertext": [p[4] for p in members], "hoverinfo": "text",
            "mode": "markers+text",
            # labels alternate above and below from layer to layer, so neighbours' labels do not touch
            "textposition": ["top center" if lay.nodes[p[0]].layer % 2 == 0 else "bottom center" for p in members],
            "name": status_label(st), "legendgroup": "status",
            "marker": {"size": [34 if lay.nodes[p[0]].is_group else 24 for p in members],
                       "symbol": ["square" if lay.nodes[p[0]].is_group else "circle" for p in members],
                       "color": status_color(st), "opacity": 1.0,
                       "line": {"color": "#999" if st == "skipped" else "#333", "width": 1}},
            "textfont": {"size": 12},
        })
    total = len(agent.graph.nodes)
    counts = Counter(map(status.get, agent.graph.nodes, repeat("pending")))
    xs = [lay.position(n)[0] for n in lay.nodes] or [0.0]
    ys = [lay.position(n)[1] for n in lay.nodes] or [0.0]
    height = int(min(640, max(220, 90 * max(1, lay.widest) + 120))) + (60 if deadlocks else 0) + 20 * lanes
    note = _note_line(lay)  # a summarised graph says so under its title
    layout = {
        "title": {"text": title if title is not None else
                  f"<b>{plotly_text(agent.name)}</b> - {total:,} states: {_counts_text(counts)}" + note,
                  "x": 0.01, "font": {"size": 15}},
        # the wait overlay appends its arrows and advice to this same list before the layout is set
        "showlegend": True, "annotations": annotations, "height": height, "template": plotly_template(),
        "margin": {"l": 20, "r": 20, "t": 70 if note else 50, "b": 70 if deadlocks else 20}, "hovermode": "closest",
        "legend": {"yanchor": "top", "y": 1.0, "xanchor": "left", "x": 1.01, "font": {"size": 11},
                   "tracegroupgap": 12},
        "xaxis": {"visible": False, "range": [min(xs) - 0.5 - 0.2 * bool(lanes), max(xs) + 0.5 + 0.2 * bool(lanes)]},
        "yaxis": {"visible": False, "range": [min(ys) - 0.9 - 0.3 * lanes, max(ys) + 0.7]},
    }
    return _GraphParts(traces, layout, lay, status, waits, deadlocks)


# -- mermaid -------------------------------------------------------------------------------
_MERMAID_NAMED = {'"': "#quot;", "<": "#lt;", ">": "#gt;"}
_MERMAID_PLAIN = frozenset(" _-.")


def _mermaid_text(text: str) -> str:
    """``text`` safe inside a quoted mermaid label: letters, digits, space and ``_-.`` stay, every
    other character becomes a mermaid entity code (``#quot;``, ``#35;``...).

    So no directive (``%%{init}%%``), markdown string (backticks), shape or link syntax
    (brackets, parentheses, ``|``, ``:::``) or HTML can survive in a label: mermaid decodes the
    codes only when it draws the text.
    """
    out = []
    for ch in text:
        if ch.isalnum() or ch in _MERMAID_PLAIN:
            out.append(ch)
        elif ch.isspace():
            out.append(" ")
        else:
            out.append(_MERMAID_NAMED.get(ch) or f"#{ord(ch)};")
    return "".join(out)


_MERMAID_ARROW = {"code": "-->", "declared": "-.->", "dependency": "-. depends .->", "runtime": "==>",
                  "error": "-. on error .->"}


def graph_mermaid(agent: Any, tracker: Any = None, *, direction: str = "LR", expand: Expand = False) -> str:
    """The state graph as mermaid ``flowchart`` text, statuses as classes.

    Node ids are generated (``n0``, ``n1``...) and labels are quoted with every character but
    letters, digits, space and ``_-.`` written as a mermaid entity code, so a state name can
    never add a directive, markdown, a link or a node of its own. A sub-workflow state is a
    ``subgraph`` of its child's states when ``expand`` names it (or is True), else one node.
    """
    lay = graph_layout(agent.graph)
    status = with_child_statuses(agent, agent_statuses(agent, tracker))
    waits, deadlocks = waits_of(tracker)
    maps = map_counts(tracker)
    ids = {nid: f"n{i}" for i, nid in enumerate(lay.nodes)}
    lines = [f"flowchart {direction}"]
    used: set[str] = set()
    for nid, node in lay.nodes.items():
        if not node.is_group and child_agent(agent, nid) is not None:
            cluster, cluster_used = mermaid_cluster(agent, nid, ids[nid], status, expand, _mermaid_text)
            lines.extend(cluster)
            used |= cluster_used
            continue
        st, counts = _node_status(lay, nid, status)
        used.add(st)
        label = node.label + map_note(maps, nid) if not node.is_group else f"{node.label}: {_counts_text(counts)}"
        wait = waits.get(nid)
        if wait is not None:
            label += f" · waits: {wait_label(wait.kind)}"
        shape = ('["', '"]') if not node.is_group else ('[["', '"]]')
        lines.append(f"    {ids[nid]}{shape[0]}{_mermaid_text(label)}{shape[1]}:::{st}")
    for src, dst, kind, _back in lay.edges:
        lines.append(f"    {ids[src]} {_MERMAID_ARROW.get(kind, '-->')} {ids[dst]}")
    lines.extend(mermaid_wait_lines(lay, ids, waits, deadlocks, len(lay.edges)))
    for st in STATUS_STYLE:
        if st in used:
            text_colour = "#000" if st in LIGHT_STATUSES else "#fff"
            stroke = "stroke:#888,stroke-dasharray:4 3" if st == "skipped" else "stroke:#333"
            lines.append(f"    classDef {st} fill:{status_color(st)},{stroke},color:{text_colour}")
    return "\n".join(lines)


def graph_markdown(agent: Any, tracker: Any = None, *, expand: Expand = False) -> str:
    """The mermaid graph as a fenced Markdown block (JupyterLab >= 4.1 draws it)."""
    return "```mermaid\n" + graph_mermaid(agent, tracker, expand=expand) + "\n```"


# -- SVG --------------------------------------------------------------------------------------
@dataclass
class SvgScene:
    """Where the SVG graph puts things, in pixels: each node's box (its label inside, as mermaid
    draws it) and each edge's polyline, ending on the boxes' borders."""

    width: int
    height: int
    boxes: dict[str, tuple[float, float, float, float]]  # node -> (x0, y0, x1, y1)
    edges: list[tuple[str, str, str, bool, list[tuple[float, float]]]]  # src, dst, kind, back, points

    def centre(self, nid: str) -> tuple[float, float]:
        """The centre of ``nid``'s box."""
        x0, y0, x1, y1 = self.boxes[nid]
        return (x0 + x1) / 2, (y0 + y1) / 2


#: pixels: a node box's height, the room between a column's widest box and the next column, a row
BOX_H, GAP_X, ROW = 24.0, 48.0, 56.0


def _label(agent: Any, lay: Layout, nid: str, status: Mapping[str, str], maps: dict[str, Any]) -> tuple[str, str]:
    node = lay.nodes[nid]
    st, counts = _node_status(lay, nid, status)
    if not node.is_group:
        # a mapped state keeps its counts whole, a sub-workflow its child's counts (``_clusters``)
        return st, node_label(agent, nid, node.label[:40], status)[:80] + map_note(maps, nid)
    return st, f"{node.label}: {_counts_text(counts)}"[:72]  # a summarised layer keeps its counts whole


def _text_width(text: str) -> float:
    """Pixels a 12 px sans-serif label takes (an upper bound: 7 px a character)."""
    return 7.0 * len(text) + 4.0


def svg_scene(agent: Any, tracker: Any = None) -> SvgScene:
    """Lay the graph out in pixels: columns as wide as their widest box plus a gap (so boxes never
    touch), forward edges slanting only in the gaps between columns (``_through_gaps``), and back
    edges routed in lanes under every node (``Layout.back_route``)."""
    lay = graph_layout(agent.graph)
    status = with_child_statuses(agent, agent_statuses(agent, tracker))
    maps = map_counts(tracker)
    widths = {n: _text_width(_label(agent, lay, n, status, maps)[1]) + 12.0 for n in lay.nodes}
    cols: dict[int, float] = {}
    for n, node in lay.nodes.items():
        cols[node.layer] = max(cols.get(node.layer, 0.0), widths[n])
    x_of: dict[int, float] = {}
    x = 12.0 + GAP_X / 2  # room on the left for a back edge into the first column
    for layer in sorted(cols):
        x_of[layer] = x + cols[layer] / 2
        x += cols[layer] + GAP_X
    top_y = max((lay.position(n)[1] for n in lay.nodes), default=0.0)

    def px(lx: float, ly: float) -> tuple[float, float]:
        """Layout units to pixels; half layers (the gaps) sit halfway between two columns."""
        base = math.floor(lx)
        frac = lx - base
        xa = x_of.get(base, x_of[max(x_of)] + (cols[max(cols)] / 2 + GAP_X / 2) * 2 * frac)
        if frac:
            nxt = x_of.get(base + 1)
            if nxt is None:
                xa = x_of.get(base, 0.0) + cols.get(base, 0.0) / 2 + GAP_X / 2
            elif base in x_of:
                xa = x_of[base] + cols[base] / 2 + GAP_X / 2
            else:
                xa = nxt - cols[base + 1] / 2 - GAP_X / 2
        return xa, 20.0 + BOX_H / 2 + (top_y - ly) * ROW

    boxes = {}
    for n in lay.nodes:
        cx, cy = px(*lay.position(n))
        boxes[n] = (cx - widths[n] / 2, cy - BOX_H / 2, cx + widths[n] / 2, cy + BOX_H / 2)
    edges = []
    lane_of = lay.back_lanes()
    step = min(8.0, (GAP_X - 16.0) / max(len(lane_of), 1))  # climbs spread across the gap between columns
    for i, (src, dst, kind, back) in enumerate(lay.edges):
        if src == dst:
            pts: list[tuple[float, float]] = []
        elif back:
            pts = _clip(spread_back_edge([px(*p) for p in lay.back_route(src, dst, lane_of[i])], lane_of[i],
                                         len(lane_of), step=step, drop=BOX_H / 4), boxes[src], boxes[dst])
        else:
            pts = _through_gaps(lay.route(src, dst), px, cols, x_of, boxes[src], boxes[dst])
        edges.append((src, dst, kind, back, pts))
    bottom = max([b[3] for b in boxes.values()] + [p[1] for e in edges for p in e[4]])
    right = max(b[2] for b in boxes.values())
    return SvgScene(int(right + 40), int(bottom + 16), boxes, edges)


def _through_gaps(route: list[tuple[float, float]], px: Any, cols: dict[int, float], x_of: dict[int, float],
                  src: tuple[float, float, float, float], dst: tuple[float, float, float, float]
                  ) -> list[tuple[float, float]]:
    """A forward edge in pixels that slants only in the gaps between columns: it leaves its source
    to the right, crosses a skipped column level (between that column's boxes), and enters its
    target from the left; boxes stand only inside columns, so the edge never runs through one."""
    (_, y0), (_, y1) = px(*route[0]), px(*route[-1])
    pts = [(src[2], y0), (x_of[int(route[0][0])] + cols[int(route[0][0])] / 2, y0)]
    for lx, ly in route[1:-1]:
        layer, y = int(lx), px(lx, ly)[1]
        pts += [(x_of[layer] - cols[layer] / 2, y), (x_of[layer] + cols[layer] / 2, y)]
    pts += [(x_of[int(route[-1][0])] - cols[int(route[-1][0])] / 2, y1), (dst[0], y1)]
    out = [pts[0]]
    for p in pts[1:]:
        if abs(p[0] - out[-1][0]) > 0.5 or abs(p[1] - out[-1][1]) > 0.5:
            out.append(p)
    return out


def _exit(inside: tuple[float, float], toward: tuple[float, float], box: tuple[float, float, float, float]
          ) -> tuple[float, float]:
    """Where the segment from ``inside`` (a box's centre) toward ``toward`` leaves ``box``."""
    (ax, ay), (bx, by) = inside, toward
    dx, dy = bx - ax, by - ay
    hw, hh = (box[2] - box[0]) / 2 + 2, (box[3] - box[1]) / 2 + 2
    t = min(hw / abs(dx) if dx else math.inf, hh / abs(dy) if dy else math.inf, 1.0)
    return ax + dx * t, ay + dy * t


def _clip(pts: list[tuple[float, float]], src: tuple[float, float, float, float],
          dst: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    """``pts`` (centre to centre) cut to start on the source box's border and end on the target's."""
    if len(pts) < 2:
        return pts
    pts = list(pts)
    pts[0] = _exit(pts[0], pts[1], src)
    pts[-1] = _exit(pts[-1], pts[-2], dst)
    return pts


def graph_svg(agent: Any, tracker: Any = None, *, width: int = 720) -> str:
    """A self-contained SVG of the graph (no JavaScript, no network): the static snapshot.

    ``width`` is kept for callers; the picture is as wide as its labels need (they never overlap).
    """
    lay = graph_layout(agent.graph)
    status = with_child_statuses(agent, agent_statuses(agent, tracker))
    if not lay.nodes:
        return ('<svg xmlns="http://www.w3.org/2000/svg" width="200" height="30">'
                '<text x="4" y="20">(no states)</text></svg>')
    scene = svg_scene(agent, tracker)
    height = scene.height
    note = summary_note(lay)
    full = height + 22 + (18 if note else 0)
    wide = max(scene.width, int(12 + 7 * len(note)))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{wide}" height="{full}" '
           f'viewBox="0 0 {wide} {full}" style="max-width:100%;height:auto" '
           'font-family="sans-serif" font-size="12">',
           '<defs><marker id="fa" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#666"/></marker></defs>']
    for src, _dst, kind, _back, pts in scene.edges:
        _, colour, dash = EDGE_STYLE.get(kind, EDGE_STYLE["code"])
        d = {"dash": ' stroke-dasharray="6,4"', "dot": ' stroke-dasharray="2,3"'}.get(dash, "")
        if not pts:  # a state that leads to itself: a loop on its box's right side
            _, y0, x1, y1 = scene.boxes[src]
            path = f"M {x1} {y0 + 5} C {x1 + 26} {y0 - 6}, {x1 + 26} {y1 + 6}, {x1} {y1 - 5}"
        else:
            path = "M " + " L ".join(f"{x:.1f} {y:.1f}" for x, y in pts)
        out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.5"{d} marker-end="url(#fa)"/>')
    maps = map_counts(tracker)
    for nid in lay.nodes:
        st, label = _label(agent, lay, nid, status, maps)
        x0, y0, x1, y1 = scene.boxes[nid]
        tip = html.escape(f"{label} ({status_label(st)})")
        stroke = 'stroke="#888" stroke-dasharray="4,3"' if st == "skipped" else 'stroke="#333"'
        rx = 3 if lay.nodes[nid].is_group else 11
        ink = "#000" if st in LIGHT_STATUSES else "#fff"
        out.append(f'<g><title>{tip}</title><rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" '
                   f'height="{y1 - y0:.1f}" rx="{rx}" fill="{status_color(st)}" {stroke}/>'
                   f'<text x="{(x0 + x1) / 2:.1f}" y="{y1 - 8:.1f}" text-anchor="middle" fill="{ink}">'
                   f"{html.escape(label)}</text></g>")
    out.extend(svg_wait_overlay(lay, scene.centre, *waits_of(tracker)))
    lx = 6.0
    present = set(status.values())
    for st in STATUS_STYLE:
        if st in present:
            stroke = 'stroke="#888" stroke-dasharray="2,2"' if st == "skipped" else 'stroke="#333"'
            out.append(f'<circle cx="{lx + 6}" cy="{height + 10}" r="5" fill="{status_color(st)}" {stroke}/>')
            out.append(f'<text x="{lx + 14}" y="{height + 14}">{html.escape(status_label(st))}</text>')
            lx += 22 + 7 * len(status_label(st))
    if note:
        out.append(f'<text x="6" y="{height + 32}" fill="#555" font-style="italic">{html.escape(note)}</text>')
    out.append("</svg>")
    return "".join(out)


def graph_text(agent: Any, tracker: Any = None, *, limit: int = 30) -> str:
    """A plain-text summary: one line per state with its status and where it leads."""
    status = with_child_statuses(agent, agent_statuses(agent, tracker))
    maps = map_counts(tracker)
    succ: dict[str, list[str]] = {}
    for src, dst, kind in agent.graph.edge_list():
        succ.setdefault(src, []).append(dst + ("*" if kind == "runtime" else ""))
    lines = []
    for i, name in enumerate(agent.graph.nodes):
        if i >= limit:
            lines.append(f"  ... and {len(agent.graph.nodes) - limit} more states")
            break
        nxt = ", ".join(succ.get(name, [])[:6]) or "(end)"
        if len(succ.get(name, [])) > 6:
            nxt += f", ... ({len(succ[name])})"
        label = node_label(agent, name, name, status)  # a sub-workflow: its child's states counted
        lines.append(f"  {label} [{status_label(status.get(name, 'pending'))}]{map_note(maps, name)} -> {nxt}")
    return "\n".join(lines)
