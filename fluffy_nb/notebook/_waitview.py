"""Why states wait, drawn on the state graph: badges, "waits for" edges and detected deadlocks.

The reasons come from the run (``engine._why``: a kind, a sentence, the states holding what a
state needs) through :meth:`RunTracker.current_waits`; deadlocks from the tracker's
``deadlocks``. Each kind has one style shared by the graph and the timeline: a label, a
colour, a plotly marker symbol (drawn as a shape, so it needs no emoji font) and a letter for
the SVG badge. Everything a user wrote (state names, reasons, prompts) is escaped.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Iterable, Mapping
from typing import Any

from ._layout import Layout, plotly_text

#: wait kind -> (label, colour, plotly marker symbol, one letter for the SVG badge). Shapes and letters,
#: not emoji: many Jupyter servers and browsers have no emoji font (a missing glyph shows as a box)
WAIT_STYLE: dict[str, tuple[str, str, str, str]] = {
    "resource": ("resources", "#e6a117", "square", "R"),
    "rate_limit": ("rate limit", "#17becf", "circle-dot", "T"),
    "lock": ("lock", "#8c564b", "octagon", "L"),
    "barrier": ("barrier", "#bcbd22", "bowtie", "B"),
    "quota": ("quota", "#e377c2", "triangle-up", "Q"),
    "dependency": ("dependency", "#1f77b4", "diamond", "D"),
    "join": ("join", "#393b79", "triangle-right", "J"),
    "person": ("a person", "#9b51e0", "star", "P"),
    "slot": ("a free slot", "#6baed6", "hourglass", "S"),
    "paused": ("paused", "#969696", "square-open", "="),
    "retry": ("retry delay", "#f2994a", "circle-x", "r"),
    "blocked": ("blocked", "#f2c94c", "hourglass", "?"),
}

#: kinds whose holders get a "waits for" edge (a free slot is held by every running state: no edges)
EDGE_KINDS = frozenset({"resource", "lock", "dependency", "join", "barrier", "quota", "blocked"})

DEADLOCK_COLOUR = "#d62728"


def wait_style(kind: str) -> tuple[str, str, str, str]:
    """The style of a wait kind (an unknown kind looks like ``blocked``)."""
    return WAIT_STYLE.get(kind, WAIT_STYLE["blocked"])


def wait_label(kind: str) -> str:
    """The words for a wait kind (``rate_limit`` -> ``rate limit``)."""
    return wait_style(kind)[0]


def wait_color(kind: str) -> str:
    """The colour of a wait kind (the same on the graph and the timeline)."""
    return wait_style(kind)[1]


def wait_sentence(reason: Any) -> str:
    """``reason`` in plain words: what it waits for and who holds it (not escaped)."""
    held = f" (held by {', '.join(reason.holders)})" if reason.holders and reason.kind != "lock" else ""
    return f"waits for {wait_label(reason.kind)}: {reason.detail}{held}"


def wait_hover(reason: Any) -> str:
    """Hover lines for a waiting node (plotly text: the names show as written)."""
    label = wait_label(reason.kind)
    # no colour here: plotly paints the hover box in the trace's colour, which would hide it
    lines = [f"<b>waits for {plotly_text(label)}</b>",
             plotly_text(reason.detail[:300])]
    if reason.holders:
        lines.append("held by: " + plotly_text(", ".join(reason.holders[:8]))
                     + (f" (+{len(reason.holders) - 8})" if len(reason.holders) > 8 else ""))
    return "<br>".join(lines)


def deadlock_advice(deadlock: Any, agent: Any = None) -> str:
    """What to do about a detected deadlock: which state to cancel, which primitive to change.

    Example:
        >>> from fluffy_nb.notebook._tracker import Deadlock
        >>> d = Deadlock(("a", "b"), (("a", "m2", "b"), ("b", "m1", "a")), "b")
        >>> deadlock_advice(d)  # doctest: +NORMALIZE_WHITESPACE
        "deadlock: a -> b -> a ('a' waits for 'm2' held by 'b'; 'b' waits for 'm1' held by 'a'). The engine
        failed 'b' to break it (cancel 'b' to do it yourself: agent.cancel_state('b')). To avoid it, take
        'm1', 'm2' in the same order in every state, or give one of them a ttl."
    """
    cycle = " -> ".join([*deadlock.cycle, deadlock.cycle[0]]) if deadlock.cycle else "?"
    how = "; ".join(f"{u!r} waits for {p!r} held by {v!r}" for u, p, v in deadlock.edges)
    prims = sorted({p for _, p, _ in deadlock.edges})
    text = (f"deadlock: {cycle}" + (f" ({how})" if how else "") + f". The engine failed {deadlock.victim!r} to "
            f"break it (cancel {deadlock.victim!r} to do it yourself: agent.cancel_state({deadlock.victim!r})).")
    if prims:
        text += f" To avoid it, take {', '.join(repr(p) for p in prims)} in the same order in every state"
        semaphores = _semaphores(agent, prims)
        if semaphores:
            text += ", raise " + ", ".join(f"{n!r}'s max_count (now {c})" for n, c in semaphores)
        text += ", or give one of them a ttl."
    return text


def _semaphores(agent: Any, names: Iterable[str]) -> list[tuple[str, int]]:
    coordinator = getattr(agent, "coordinator", None) if agent is not None else None
    prims = getattr(coordinator, "primitives", {}) or {}
    out = []
    for name in names:
        prim = prims.get(name)
        if prim is not None and getattr(getattr(prim, "kind", None), "value", "") == "semaphore":
            out.append((name, int(prim.max_count)))
    return out


# -- plotly ---------------------------------------------------------------------------------------
def _node_of(lay: Layout, state: str) -> str | None:
    return lay.owner.get(state)


def add_wait_overlay(fig: Any, lay: Layout, waits: Mapping[str, Any], deadlocks: list[Any],
                     annotations: list[dict[str, Any]], agent: Any = None) -> None:
    """Draw badges, "waits for" edges and deadlock cycles onto a graph figure (plotly).

    ``annotations`` receives arrowheads and the deadlock advice (the caller sets them all at once).
    """
    if waits:
        _add_wait_edges(fig, lay, waits, annotations)
        _add_badges(fig, lay, waits)
    for d in deadlocks[-3:]:
        _add_deadlock(fig, lay, d, annotations, agent)


def _bow(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """The middle point of a curved edge from ``a`` to ``b``: it bows to the right of the direction of
    travel, more for longer edges, so two opposite edges between the same nodes do not overlap and an
    edge inside a column curves around the nodes between its ends."""
    (x0, y0), (x1, y1) = a, b
    dx, dy = x1 - x0, y1 - y0
    length = max((dx * dx + dy * dy) ** 0.5, 1e-9)
    bend = 0.18 + 0.12 * length
    return (x0 + x1) / 2 + dy / length * bend, (y0 + y1) / 2 - dx / length * bend


def wait_edges(lay: Layout, waits: Mapping[str, Any]) -> list[tuple[str, str, str, str, Any]]:
    """``(src node, dst node, waiting state, holder, reason)`` of each "waits for" edge to draw: one
    per node pair and kind (thousands of states waiting inside one group node draw one edge)."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for state, reason in waits.items():
        src = lay.owner.get(state)
        if reason.kind not in EDGE_KINDS or src is None:
            continue
        for holder in reason.holders[:12]:
            dst = lay.owner.get(holder)
            key = (src, dst or "", reason.kind)
            if dst is None or dst == src or key in seen:
                continue
            seen.add(key)
            out.append((src, dst, state, holder, reason))
    return out


def _add_wait_edges(fig: Any, lay: Layout, waits: Mapping[str, Any], annotations: list[dict[str, Any]]) -> None:
    import plotly.graph_objects as go

    lines: dict[str, tuple[list[float | None], list[float | None]]] = {}
    mids: dict[str, list[tuple[float, float, str]]] = {}
    for src, dst, state, holder, reason in wait_edges(lay, waits):
        (x0, y0), (x1, y1) = lay.position(src), lay.position(dst)
        xm, ym = _bow((x0, y0), (x1, y1))
        xs, ys = lines.setdefault(reason.kind, ([], []))
        xs.extend([x0, xm, x1, None])
        ys.extend([y0, ym, y1, None])
        mids.setdefault(reason.kind, []).append(
            (xm, ym, f"<b>{plotly_text(state)}</b> waits for <b>{plotly_text(holder)}</b><br>"
                     + plotly_text(reason.detail[:200])))
        annotations.append({"x": x1, "y": y1, "ax": xm + 0.6 * (x1 - xm), "ay": ym + 0.6 * (y1 - ym),
                            "xref": "x", "yref": "y", "axref": "x",
                            "ayref": "y", "showarrow": True, "text": "", "arrowhead": 2, "arrowsize": 1.2,
                            "arrowwidth": 1.5, "arrowcolor": wait_color(reason.kind), "standoff": 14})
    for kind, (xs, ys) in lines.items():
        label, colour = wait_style(kind)[:2]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"waits for ({label})", legendgroup="waits",
                                 hoverinfo="skip",
                                 line={"color": colour, "dash": "dash", "width": 2, "shape": "spline"}))
        points = mids[kind]
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="markers",
                                 hovertext=[p[2] for p in points], hoverinfo="text", showlegend=False,
                                 name=f"waits for ({label}) detail",
                                 marker={"size": 8, "color": colour, "opacity": 0.5}))


def _add_badges(fig: Any, lay: Layout, waits: Mapping[str, Any]) -> None:
    import plotly.graph_objects as go

    by_kind: dict[str, list[tuple[float, float, str, str]]] = {}
    for state, reason in waits.items():
        nid = _node_of(lay, state)
        if nid is None:
            continue
        x, y = lay.position(nid)
        node = lay.nodes[nid]
        if node.is_group and any(p[2] == nid for p in by_kind.get(reason.kind, [])):
            continue  # one badge per kind on a group node
        by_kind.setdefault(reason.kind, []).append(
            (x + 0.13, y + 0.2, nid, f"<b>{plotly_text(state)}</b><br>{wait_hover(reason)}"))
    for kind in WAIT_STYLE:
        points = by_kind.get(kind)
        if not points:
            continue
        label, colour, symbol, _ = WAIT_STYLE[kind]
        fig.add_trace(go.Scatter(
            x=[p[0] for p in points], y=[p[1] for p in points], mode="markers", name=f"waiting: {label}",
            legendgroup="waits", customdata=[p[2] for p in points], hovertext=[p[3] for p in points],
            hoverinfo="text", marker={"symbol": symbol, "size": 14, "color": colour,
                                      "line": {"color": "#222", "width": 1}}))


def _add_deadlock(fig: Any, lay: Layout, deadlock: Any, annotations: list[dict[str, Any]], agent: Any) -> None:
    import plotly.graph_objects as go

    nodes = [n for n in (_node_of(lay, s) for s in deadlock.cycle) if n is not None]
    if not nodes:
        return
    xs: list[float | None] = []
    ys: list[float | None] = []
    for a, b in zip(nodes, [*nodes[1:], nodes[0]], strict=True):
        (x0, y0), (x1, y1) = lay.position(a), lay.position(b)
        xm, ym = _bow((x0, y0), (x1, y1))
        xs.extend([x0, xm, x1, None])
        ys.extend([y0, ym, y1, None])
        if a != b:  # the arrowhead sits on the last stretch of the curve, pointing into the node
            annotations.append({"x": x1, "y": y1, "ax": xm + 0.6 * (x1 - xm), "ay": ym + 0.6 * (y1 - ym),
                                "xref": "x", "yref": "y", "axref": "x", "ayref": "y", "showarrow": True,
                                "text": "", "arrowhead": 2, "arrowsize": 1.4, "arrowwidth": 2.5,
                                "arrowcolor": DEADLOCK_COLOUR, "standoff": 18})
    names = " -> ".join(plotly_text(s) for s in deadlock.cycle)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="deadlock cycle", legendgroup="deadlock",
                             hoverinfo="skip", line={"color": DEADLOCK_COLOUR, "width": 4, "shape": "spline"}))
    fig.add_trace(go.Scatter(
        x=[lay.position(n)[0] for n in nodes], y=[lay.position(n)[1] for n in nodes], mode="markers",
        name="in a deadlock", legendgroup="deadlock", text=list(deadlock.cycle),
        hovertext=[f"<b>{plotly_text(s)}</b>: in the deadlock {names}" for s in deadlock.cycle], hoverinfo="text",
        marker={"symbol": "circle-open", "size": 32, "color": DEADLOCK_COLOUR, "line": {"width": 3}}))
    advice = "<br>".join(plotly_text(line) for line in textwrap.wrap(deadlock_advice(deadlock, agent), 120))
    annotations.append({"text": f"<b>{advice}</b>",
                        "xref": "paper", "yref": "paper", "x": 0.0, "y": 0.0, "xanchor": "left", "yanchor": "top",
                        "showarrow": False, "align": "left", "font": {"color": DEADLOCK_COLOUR, "size": 12}})


# -- mermaid and SVG -------------------------------------------------------------------------------
def mermaid_wait_lines(lay: Layout, ids: Mapping[str, str], waits: Mapping[str, Any], deadlocks: list[Any],
                       first_link: int) -> list[str]:
    """Mermaid lines for "waits for" links (dashed, kind colour) and deadlock cycles (thick red)."""
    lines: list[str] = []
    styles: list[str] = []
    link = first_link
    for src, dst, _, _, reason in wait_edges(lay, waits):
        if src in ids and dst in ids:
            lines.append(f"    {ids[src]} -. waits for .-> {ids[dst]}")
            styles.append(f"    linkStyle {link} stroke:{wait_color(reason.kind)},stroke-dasharray:5 4")
            link += 1
    for d in deadlocks[-3:]:
        members = [ids[lay.owner[s]] for s in d.cycle if s in lay.owner and lay.owner[s] in ids]
        for a, b in zip(members, [*members[1:], *members[:1]], strict=True):
            lines.append(f"    {a} == deadlock ==> {b}")
            styles.append(f"    linkStyle {link} stroke:{DEADLOCK_COLOUR},stroke-width:4px")
            link += 1
        if members:
            lines.append(f"    class {','.join(dict.fromkeys(members))} deadlock")
    if any(d.cycle for d in deadlocks):
        lines.append(f"    classDef deadlock stroke:{DEADLOCK_COLOUR},stroke-width:4px")
    return lines + styles


def _shorten(a: tuple[float, float], b: tuple[float, float], by: float) -> tuple[tuple[float, float], ...]:
    """The segment ``a``-``b`` with ``by`` pixels cut off both ends (so it meets node rims, not centres)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = max((dx * dx + dy * dy) ** 0.5, 1e-9)
    ux, uy = dx / n * by, dy / n * by
    return (a[0] + ux, a[1] + uy), (b[0] - ux, b[1] - uy)


def _svg_curve(a: tuple[float, float], b: tuple[float, float]) -> str:
    """An SVG path from node ``a`` to node ``b`` (rim to rim), bowed to one side like :func:`_bow`."""
    (x0, y0), (x1, y1) = _shorten(a, b, 15.0)
    dx, dy = x1 - x0, y1 - y0
    length = max((dx * dx + dy * dy) ** 0.5, 1e-9)
    bend = 14 + 0.3 * length  # SVG y grows downwards: bow to the same side as the plotly curves
    cx, cy = (x0 + x1) / 2 - dy / length * bend, (y0 + y1) / 2 + dx / length * bend
    return f"M {x0:.1f} {y0:.1f} Q {cx:.1f} {cy:.1f} {x1:.1f} {y1:.1f}"


def svg_wait_overlay(lay: Layout, px: Any, waits: Mapping[str, Any], deadlocks: list[Any]) -> list[str]:
    """SVG elements: dashed "waits for" lines, a lettered badge per waiting node, red deadlock cycles."""
    out = [f'<path d="{_svg_curve(px(src), px(dst))}" fill="none" stroke="{wait_color(reason.kind)}" '
           'stroke-width="1.8" stroke-dasharray="5,4" marker-end="url(#fa)"/>'
           for src, dst, _, _, reason in wait_edges(lay, waits)]
    badged: set[tuple[str, str]] = set()
    for state, reason in waits.items():
        nid = lay.owner.get(state)
        if nid is None or (nid, reason.kind) in badged:
            continue
        badged.add((nid, reason.kind))
        x, y = px(nid)
        _, colour, _, letter = wait_style(reason.kind)
        tip = html.escape(f"{state}: {wait_sentence(reason)}")
        out.append(f'<g><title>{tip}</title><circle cx="{x + 13:.1f}" cy="{y - 11:.1f}" r="7" fill="{colour}" '
                   f'stroke="#222"/><text x="{x + 13:.1f}" y="{y - 7.5:.1f}" text-anchor="middle" font-size="9" '
                   f'fill="#fff" font-weight="bold">{html.escape(letter)}</text></g>')
    if deadlocks:
        out.append('<defs><marker id="fdl" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="11" '
                   'markerHeight="11" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
                   f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{DEADLOCK_COLOUR}"/></marker></defs>')
    for d in deadlocks[-3:]:
        members = [lay.owner[s] for s in d.cycle if s in lay.owner]
        for a, b in zip(members, [*members[1:], *members[:1]], strict=True):
            out.append(f'<path d="{_svg_curve(px(a), px(b))}" fill="none" stroke="{DEADLOCK_COLOUR}" '
                       'stroke-width="3.5" marker-end="url(#fdl)"><title>deadlock</title></path>')
        for m in dict.fromkeys(members):
            x, y = px(m)
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="17" fill="none" stroke="{DEADLOCK_COLOUR}" '
                       'stroke-width="3"/>')
    return out


def waits_html(tracker: Any, agent: Any) -> str:
    """What waits, at a glance (from the events: cheap enough for every redraw), and any deadlock."""
    out = []
    blocked = [w for w in tracker.open_waits.values() if w.kind != "person"]
    if blocked:
        shown = "; ".join(
            f'<span style="color:{wait_color(w.kind)}">&#9632;</span> {html.escape(w.state)}: '
            f"{html.escape(wait_label(w.kind))}"
            + (f" (held by {html.escape(', '.join(w.holders[:3]))})" if w.holders else "")
            for w in blocked[:4])
        more = f" and {len(blocked) - 4} more" if len(blocked) > 4 else ""
        out.append(f'<div style="color:#555">{len(blocked)} waiting - {shown}{more}</div>')
    for d in tracker.deadlocks[-2:]:
        out.append(f'<div style="color:{DEADLOCK_COLOUR}"><b>{html.escape(deadlock_advice(d, agent))}</b></div>')
    return "".join(out)
