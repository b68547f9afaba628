"""The static picture of a run: what a live view leaves in the saved notebook.

A live view ends as plain ``text/html`` (inline SVG, no JavaScript, no CDN) and ``text/plain``,
so nbconvert's HTML, GitHub and nbviewer show the finished run as it was in the browser:
header, progress, the graph coloured by status, the timeline, a usage table with one row per
state that ran, the latency table, the answers people gave (one line each), and the result or
the error. Everything a user wrote (state names, prompts, answers, errors) is escaped.
"""

from __future__ import annotations

import html
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection
from itertools import accumulate, compress, islice, pairwise, repeat
from operator import attrgetter, is_not
from typing import Any

from ._layout import status_color
from ._waitview import WAIT_STYLE, wait_style

_waited_of = attrgetter("waited")

#: timeline outcome -> colour (as on the interactive timeline)
_OUTCOME_COLOUR = {"completed": status_color("completed"), "running": status_color("running"),
                   "retried": status_color("retrying"), "failed": status_color("failed"),
                   "timeout": status_color("timeout"), "cancelled": status_color("cancelled")}
_OUTCOME_LABEL = {"completed": "done", "running": "running", "retried": "failed, retried", "failed": "failed",
                  "timeout": "timed out", "cancelled": "cancelled"}
#: rows drawn at most in the static timeline (a huge run says how many more)
SVG_ROWS = 40


def nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks over ``span``.

    Example:
        >>> nice_step(10.0), nice_step(0.37), nice_step(421.0)
        (2.0, 0.1, 100.0)
    """
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if raw <= m * power:
            return round(m * power, 12)
    return round(10.0 * power, 12)


def nice_top(value: float, ticks: int = 4) -> tuple[float, float]:
    """``(top, step)``: an axis top at or above ``value`` that round ticks reach exactly."""
    step = nice_step(max(value, 1e-9), ticks)
    return step * max(1, math.ceil(value / step - 1e-9)), step


def timeline_svg(tracker: Any, *, width: int = 720) -> str:
    """The run's state attempts as an inline SVG: a row per state, a bar per attempt, waits hatched
    lighter, attempts that took no time as ticks, seconds since start along a round-ticked axis."""
    spans = list(tracker.spans)
    waits = list(getattr(tracker, "wait_spans", ()))
    if not spans and not waits:
        return ""
    end = tracker.duration if tracker.duration is not None else tracker.elapsed()
    rows = list(dict.fromkeys([s.state for s in sorted([*spans, *waits], key=lambda s: s.start)]))
    more = len(rows) - SVG_ROWS
    rows = rows[:SVG_ROWS]
    label_w = min(180, 12 + 7 * max(len(r[:24]) for r in rows))
    plot_w = width - label_w - 20
    span_s = max(end, max((s.end or s.start for s in spans), default=0.0), 1e-3)
    step = nice_step(span_s)
    top = step * math.ceil(span_s / step - 1e-9)

    def x(t: float) -> float:
        return label_w + plot_w * max(0.0, t) / top

    row_h = 20
    height = 30 + row_h * len(rows) + 34
    title = f"timeline: {len(spans)} state runs{'' if more <= 0 else f' ({more} more states not drawn)'}"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" style="max-width:100%;height:auto" font-family="sans-serif" '
           f'font-size="11"><text x="4" y="14" font-size="13">{html.escape(title)}</text>']
    out.append(_timeline_legend(spans, {w.kind for w in waits}, 24.0 + 7.5 * len(title), width))
    index = {r: i for i, r in enumerate(rows)}
    base = 24
    for r, i in index.items():
        y = base + i * row_h
        out.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{html.escape(r[:24])}</text>')
    for w in waits:
        if w.state in index:
            y = base + index[w.state] * row_h
            colour = wait_style(w.kind)[1]
            x0, x1 = x(w.start), x(w.end if w.end is not None else end)
            out.append(f'<rect x="{x0:.1f}" y="{y + 6}" width="{max(x1 - x0, 2):.1f}" height="8" fill="{colour}" '
                       f'fill-opacity="0.45"><title>{html.escape(w.state)} waited: {html.escape(w.kind)}'
                       "</title></rect>")
    for s in spans:
        if s.state not in index:
            continue
        y = base + index[s.state] * row_h
        colour = _OUTCOME_COLOUR.get(s.outcome, "#999")
        x0, x1 = x(s.start), x(s.end if s.end is not None else end)
        which = "" if s.payload is None else f" payload {s.payload}"
        tip = f"{html.escape(s.state)}{which} attempt {s.attempt}: {html.escape(s.outcome)} {s.start:.3f}s"
        if x1 - x0 < 2:  # took (almost) no time: a tick, so it still shows
            out.append(f'<line x1="{x0:.1f}" y1="{y + 2}" x2="{x0:.1f}" y2="{y + 18}" stroke="{colour}" '
                       f'stroke-width="3"><title>{tip}</title></line>')
        else:
            out.append(f'<rect x="{x0:.1f}" y="{y + 3}" width="{x1 - x0:.1f}" height="14" fill="{colour}" '
                       f'stroke="#333" stroke-width="0.5"><title>{tip}</title></rect>')
    axis_y = base + len(rows) * row_h + 4
    out.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" stroke="#999"/>')
    t = 0.0
    while t <= top + 1e-9:
        out.append(f'<text x="{x(t):.1f}" y="{axis_y + 14}" text-anchor="middle">{t:g}</text>')
        t = round(t + step, 12)
    out.append(f'<text x="{label_w + plot_w / 2:.0f}" y="{axis_y + 28}" text-anchor="middle">seconds since start'
               "</text></svg>")
    return "".join(out)


def _timeline_legend(spans: list[Any], wait_kinds: set[str], lx: float, width: float) -> str:
    """The outcomes present and the reasons waited for (each in its bar's colour, "waited: rate
    limit"), as coloured squares with their words, from ``lx`` on; reasons that would run past
    ``width`` are counted instead (each bar's tooltip names its reason)."""
    out = []
    for outcome, label in _OUTCOME_LABEL.items():
        if any(s.outcome == outcome for s in spans):
            out.append(f'<rect x="{lx:.0f}" y="5" width="10" height="10" fill="{_OUTCOME_COLOUR[outcome]}"/>'
                       f'<text x="{lx + 14:.0f}" y="14">{label}</text>')
            lx += 24 + 7 * len(label)
    styles = {wait_style(k) for k in wait_kinds}  # an unknown kind is drawn (and named) as "blocked"
    ordered = sorted(styles, key=list(WAIT_STYLE.values()).index)
    for i, (label, colour, *_) in enumerate(ordered):
        text = label if i else f"waited: {label}"
        if lx + 24 + 7 * len(text) + 110 > width and i < len(ordered) - 1:
            out.append(f'<text x="{lx:.0f}" y="14">+{len(ordered) - i} more reasons</text>')
            break
        out.append(f'<rect x="{lx:.0f}" y="7" width="10" height="6" fill="{colour}" fill-opacity="0.45"/>'
                   f'<text x="{lx + 14:.0f}" y="14">{html.escape(text)}</text>')
        lx += 24 + 7 * len(text)
    return "".join(out)


def state_usage(tracker: Any, only: Collection[str] | None = None) -> list[dict[str, Any]]:
    """One row per state that ran: its runs, time, time waiting for a person, and its own share
    of the measured process CPU and memory change while it ran, beside what it declared.

    Each resource sample measures the process over the window since the previous one (the first:
    since the run began). A window's CPU and memory change go to the state runs inside it in
    proportion to their time in it; when several states overlap, their shares add up to the
    window's whole, so concurrent states do not each claim the process. A state run entirely
    between two samples still gets the rate of its window (``None`` only when no sample window
    covers it). ``only``: rows for these states alone (the few a table shows).
    """
    end = tracker.duration if tracker.duration is not None else tracker.elapsed()
    spans = tracker.spans
    states, starts, ends = span_columns(spans, end)
    chosen = list(spans) if only is None else list(compress(spans, map(only.__contains__, states)))
    ran: dict[str, list[float]] = {}  # state -> [runs, seconds, waited seconds]
    for s in chosen:
        acc = ran.setdefault(s.state, [0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += max(0.0, (s.end if s.end is not None else end) - s.start)
        acc[2] += s.waited
    shares = _sample_shares(tracker, (starts, ends), chosen, end)
    rows = []
    for name, (runs, seconds, waited) in ran.items():
        spec = tracker.agent.states.get(name)
        res = getattr(spec, "resources", None)
        cpu_s, inside, rate, mb, n = shares.get(name, (0.0, 0.0, 0.0, 0.0, 0))
        rows.append({"state": name, "runs": int(runs), "seconds": seconds, "waited_s": waited,
                     "cpu_cores": (cpu_s / inside if inside > 0 else rate) if n else None,
                     "memory_change_mb": mb if n else None, "samples": int(n),
                     "declared_cpu": None if res is None else res.cpu_units,
                     "declared_memory_mb": None if res is None else res.memory_mb})
    return rows


def span_columns(spans: Any, now: float) -> tuple[list[str], list[float], list[float]]:
    """The state, start and end (``now`` while open) of each of ``spans`` (a tracker's), as lists."""
    if hasattr(spans, "columns"):
        return spans.columns(now)  # type: ignore[no-any-return]
    listed = list(spans)
    return ([s.state for s in listed], [s.start for s in listed],
            [now if s.end is None else s.end for s in listed])


def _busy_time(starts: list[float], ends: list[float]) -> Callable[[float], float]:
    """``F(t)``: the seconds of state runs (all states, overlapping ones each counted) before ``t``,
    from sorted starts and ends and their running sums (``O(log n)`` per call, built in C)."""
    starts, ends = sorted(starts), sorted(ends)
    start_sums, end_sums = [0.0, *accumulate(starts)], [0.0, *accumulate(ends)]

    def before(t: float) -> float:
        i, j = bisect_right(starts, t), bisect_right(ends, t)
        return (t * i - start_sums[i]) - (t * j - end_sums[j])

    return before


def _sample_shares(tracker: Any, bounds: tuple[list[float], list[float]], chosen: list[Any],
                   end: float) -> dict[str, tuple[float, float, float, float, int]]:
    """Per state of ``chosen`` spans: (CPU seconds, seconds inside sample windows, the cores rate
    of its last window, memory change in MB, windows it was in), from the tracker's samples;
    ``bounds``: every span's starts and ends (all states share a window's measure)."""
    t0 = tracker.t0
    samples = list(tracker.samples)
    if t0 is None or not samples or not chosen:
        return {}
    times = [s.time - t0 for s in samples]  # window k: (times[k-1], times[k]], the first from 0
    window_starts = [0.0, *times[:-1]]
    cores = [s.process_cpu / 100.0 for s in samples]
    grown = [0.0, *(b.process_memory_mb - a.process_memory_mb for a, b in pairwise(samples))]
    busy_before = _busy_time(*bounds)
    out: dict[str, list[float]] = {}
    for s in chosen:
        a, b = s.start, s.end if s.end is not None else end
        k = bisect_left(times, a)
        while k < len(times) and window_starts[k] <= b:
            length = times[k] - window_starts[k]
            if length > 0:
                busy = busy_before(times[k]) - busy_before(window_starts[k])
                part = 1.0 / max(busy, length)  # concurrent runs split the window; one alone keeps its time's worth
                overlap = max(0.0, min(b, times[k]) - max(a, window_starts[k]))
                acc = out.setdefault(s.state, [0.0, 0.0, 0.0, 0.0, 0])
                acc[0] += cores[k] * length * overlap * part
                acc[1] += overlap
                acc[2] = cores[k] * length * part
                acc[3] += grown[k] * overlap * part
                acc[4] += 1
            if times[k] >= b:
                break
            k += 1
    return {state: (v[0], v[1], v[2], v[3], int(v[4])) for state, v in out.items()}


def usage_table_html(tracker: Any, *, limit: int = 30) -> str:
    """:func:`state_usage` as an escaped HTML table (empty before any state ran): the first ``limit``
    states that ran, in the order they first ran (rows are made for those alone: a 10,000-state
    run costs one pass over its attempts)."""
    spans = tracker.spans
    ran = dict.fromkeys(span_columns(spans, 0.0)[0])  # the passes over 10,000 spans and states run in C
    rows = state_usage(tracker, only=set(islice(ran, limit)))
    if not rows:
        return ""

    def fmt(v: Any, spec: str, none: str = "") -> str:
        return none if v is None else format(v, spec)

    states = tracker.agent.states
    declared = any(map(is_not, map(getattr, states.values(), repeat("resources"), repeat(None)), repeat(None))) and any(
        res is not None and (res.cpu_units is not None or res.memory_mb is not None)
        for res in (getattr(states.get(name), "resources", None) for name in ran))
    waited = any(map(_waited_of, spans))
    head = ["state", "runs", "time (s)"] + (["waited for a person (s)"] if waited else []) + [
        "CPU (cores, its share)", "memory change (MB)"] + (["declared CPU (cores)", "declared memory (MB)"]
                                                          if declared else [])
    body = []
    for r in rows[:limit]:
        cells = [html.escape(r["state"]), str(r["runs"]), f"{r['seconds']:.3f}"]
        cells += [fmt(r["waited_s"] or None, ".1f")] if waited else []
        cells += [fmt(r["cpu_cores"], ".2f", "unsampled"), fmt(r["memory_change_mb"], "+.1f")]
        cells += [fmt(r["declared_cpu"], ".2f"), fmt(r["declared_memory_mb"], ".0f")] if declared else []
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    more = f"<div>... {len(ran) - limit} more states</div>" if len(ran) > limit else ""
    note = ""
    if any(r["cpu_cores"] is None for r in rows[:limit]):
        note = ('<div style="color:#777;font-size:11px">unsampled: no resource sample window covers the '
                "state's runs (a sample is taken every 0.5 s by default, and at the run's end)</div>")
    return ('<table style="font-size:12px"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + f"</tr></thead><tbody>{''.join(body)}</tbody></table>{more}{note}")


def forms_records_html(agent: Any) -> str:
    """The agent's human-in-the-loop forms as one-line records (escaped), for the static picture."""
    try:
        from ._hitl_form import FormsArea
    except ImportError:  # the widget forms are optional
        return ""
    area = FormsArea.of(agent)
    return "" if area is None else area.records_html()
