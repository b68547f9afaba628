"""Timeline (Gantt) and resource-usage figures of a run, from a :class:`RunTracker`.

The timeline shows one bar per state attempt, so overlapping bars are parallel work; past
``GANTT_LIMIT`` attempts it switches to a step chart of how many states ran at once (what a
Gantt of 10,000 bars would say anyway, at a fraction of the bytes). The resource figure plots
measured process and system CPU and memory against the CPU the running states *declared*.
"""

from __future__ import annotations

from typing import Any

from ._layout import plotly_template, plotly_text, status_color, template_json
from ._static import nice_top
from ._waitview import WAIT_STYLE, wait_style

#: more attempts than this (or more distinct states than GANTT_ROWS) -> concurrency chart
GANTT_LIMIT = 400
GANTT_ROWS = 40

_OUTCOMES = {
    "completed": ("done", status_color("completed")),
    "running": ("running", status_color("running")),
    "retried": ("failed, retried", status_color("retrying")),
    "failed": ("failed", status_color("failed")),
    "timeout": ("timed out", status_color("timeout")),
    "cancelled": ("cancelled", status_color("cancelled")),
}


def _now(tracker: Any) -> float:
    return tracker.duration if tracker.duration is not None else tracker.elapsed()


def timeline_figure(tracker: Any, *, height: int | None = None) -> Any:
    """A Gantt chart of the run's state attempts (or a concurrency chart for huge runs).

    Args:
        tracker: The run's :class:`RunTracker`.
        height: Figure height in pixels (default: from the number of rows).
    """
    import plotly.graph_objects as go

    spans = list(tracker.spans)
    waits = list(getattr(tracker, "wait_spans", ()))
    now = _now(tracker)
    fig = go.Figure()
    # rows are needed only for bars: a huge run's concurrency chart never names its 10,000 states
    if _bars(spans, waits):
        rows = _rows(spans, waits)
        # plotly draws a subset of HTML in tick labels (<b>, <br>, <a href>): the escaped name shows as
        # written (escaping is one-to-one, so two names never share a row)
        shown = {name: plotly_text(name) for name in rows}
        for outcome, (label, colour) in _OUTCOMES.items():
            mine = [s for s in spans if s.outcome == outcome]
            if not mine:
                continue
            ends = [s.end if s.end is not None else now for s in mine]
            fig.add_trace(go.Bar(
                orientation="h", y=[shown[s.state] for s in mine], base=[s.start for s in mine],
                x=[max(e - s.start, 1e-4) for s, e in zip(mine, ends, strict=True)], name=label,
                marker={"color": colour, "line": {"color": "#333", "width": 0.5}},
                hovertext=[f"{plotly_text(s.state)}{_payload(s)} attempt {s.attempt}: {label}"
                           f"<br>{s.start:.3f}s -> {e:.3f}s"
                           + (f"<br>waited for a person {s.waited:.1f}s" if s.waited else "")
                           + (f"<br>on worker {plotly_text(s.where)}" if s.where else "")
                           for s, e in zip(mine, ends, strict=True)],
                hoverinfo="text",
            ))
        _add_instant_ticks(fig, spans, now, shown)
        _add_wait_bars(fig, waits, now, shown)
        fig.update_layout(barmode="overlay", bargap=0.25)
        fig.update_yaxes(categoryorder="array", categoryarray=[shown[r] for r in reversed(rows)], title=None)
        h = height or int(min(560, 110 + 28 * max(1, len(rows))))
        title = f"timeline - {len(spans)} state runs, up to {_max_parallel(spans, now)} at once"
        fig.update_layout(_common_layout(title, h))
        return fig
    spec = _concurrency_spec(spans, waits, now, height)
    return go.Figure(data=spec["data"], layout={**spec["layout"], "template": plotly_template()})


def _payload(span: Any) -> str:
    """`` payload 3`` for a map branch's span (which of the state's overlapping bars it is), else ``""``."""
    return "" if span.payload is None else f" payload {span.payload}"


def _common_layout(title: str, height: int) -> dict[str, Any]:
    return {
        "title": {"text": title, "x": 0.01, "font": {"size": 14}}, "height": height, "template": plotly_template(),
        # the legend stands right of the plot: above it, a narrow window (1000 px) made it cover the title
        "margin": {"l": 10, "r": 10, "t": 40, "b": 40}, "legend": {"orientation": "v", "y": 1.0, "yanchor": "top",
                                                                   "x": 1.01, "xanchor": "left"},
        "xaxis": {"title": {"text": "seconds since start"}, "rangemode": "tozero"},
    }


def _concurrency_spec(spans: list[Any], waits: list[Any], now: float, height: int | None) -> dict[str, Any]:
    """The huge run's timeline as plain plotly JSON (no template): how many ran at once, how many
    had finished, how many waited. Plain dicts: plotly's objects cost ~20 ms for these three lines."""
    xs, ys, done_x, done_y = _concurrency(spans, now)
    data: list[dict[str, Any]] = [
        {"type": "scatter", "x": xs, "y": ys, "mode": "lines", "fill": "tozeroy", "name": "running at once",
         "line": {"shape": "hv", "color": status_color("running")}},
        {"type": "scatter", "x": done_x, "y": done_y, "mode": "lines", "yaxis": "y2", "name": "finished (total)",
         "line": {"color": status_color("completed"), "width": 2}}]
    if waits:  # how many states waited at once (any reason): a queue building up shows here
        wx, wy, _, _ = _concurrency(waits, now)
        data.append({"type": "scatter", "x": wx, "y": wy, "mode": "lines", "yaxis": "y2",
                     "name": "waiting at once (right axis)",
                     "line": {"shape": "hv", "color": wait_style("resource")[1], "dash": "dot"}})
    title = f"timeline - {len(spans):,} state runs (too many for bars): up to {max(ys) if ys else 0:,} at once"
    layout = _common_layout(title, height or 260)
    del layout["template"]
    layout["yaxis"] = {"title": {"text": "running"}, "rangemode": "tozero"}
    layout["yaxis2"] = {"overlaying": "y", "side": "right", "rangemode": "tozero",
                        "title": {"text": "finished / waiting" if waits else "finished"}}
    return {"data": data, "layout": layout}


def timeline_bundle(tracker: Any) -> dict[str, Any]:
    """:func:`timeline_figure` as a plotly MIME bundle; a huge run's chart is built as plain JSON
    (what ``to_bundle(timeline_figure(tracker))`` gives, ~2 ms instead of ~10 ms at 10,000 states)."""
    spans = tracker.spans  # not listed: a large run's spans are made as they are read (``_trackruns.SpanLog``)
    waits = list(getattr(tracker, "wait_spans", ()))
    if not _bars(spans, waits):
        spec = _concurrency_spec(spans, waits, _now(tracker), None)
        spec["layout"]["template"] = template_json()
        spec["config"] = {"displaylogo": False, "responsive": True}
        return {"application/vnd.plotly.v1+json": spec, "text/plain": f"<{spec['layout']['title']['text']}>"}
    return to_bundle(timeline_figure(tracker))


def _bars(spans: list[Any], waits: list[Any]) -> bool:
    """Whether the timeline draws one bar per attempt (few attempts on few rows) or the concurrency chart."""
    return len(spans) + len(waits) <= GANTT_LIMIT and len(_rows(spans, waits)) <= GANTT_ROWS


def _add_instant_ticks(fig: Any, spans: list[Any], now: float, shown: dict[str, str]) -> None:
    """Attempts too short to see as a bar (under 0.5% of the run) also show as a vertical tick."""
    import plotly.graph_objects as go

    tiny = [s for s in spans if (s.end if s.end is not None else now) - s.start < 0.005 * max(now, 1e-9)]
    if not tiny:
        return
    fig.add_trace(go.Scatter(
        x=[s.start for s in tiny], y=[shown[s.state] for s in tiny], mode="markers", showlegend=False,
        name="took no time",
        marker={"symbol": "line-ns", "size": 16, "line": {"width": 3,
                "color": [_OUTCOMES.get(s.outcome, ("", "#999"))[1] for s in tiny]}},
        hovertext=[f"{plotly_text(s.state)}{_payload(s)} attempt {s.attempt}: took no time ({s.start:.3f}s)"
                   for s in tiny],
        hoverinfo="text"))


def _rows(spans: list[Any], waits: list[Any]) -> list[str]:
    """States in the order they first ran or waited."""
    if not waits:
        return list(dict.fromkeys(s.state for s in spans))
    first: dict[str, float] = {}
    for item in [*spans, *waits]:
        if item.start < first.get(item.state, float("inf")):
            first[item.state] = item.start
    return sorted(first, key=first.__getitem__)


def _add_wait_bars(fig: Any, waits: list[Any], now: float, shown: dict[str, str]) -> None:
    """One hatched bar per wait, one trace (legend entry) per reason, coloured as on the graph."""
    import plotly.graph_objects as go

    for kind in WAIT_STYLE:
        mine = [w for w in waits if w.kind == kind]
        if not mine:
            continue
        label, colour = wait_style(kind)[:2]
        ends = [w.end if w.end is not None else now for w in mine]
        hover = []
        for w, e in zip(mine, ends, strict=True):
            held = f"<br>held by {plotly_text(', '.join(w.holders[:6]))}" if w.holders else ""
            hover.append(f"{plotly_text(w.state)} waited for {plotly_text(label)} {e - w.start:.2f}s<br>"
                         f"{plotly_text(w.detail[:200])}{held}")
        fig.add_trace(go.Bar(
            orientation="h", y=[shown[w.state] for w in mine], base=[w.start for w in mine],
            x=[max(e - w.start, 1e-4) for w, e in zip(mine, ends, strict=True)],
            name="waiting for a person" if kind == "person" else f"waiting: {label}", legendgroup="waits",
            marker={"color": colour, "line": {"color": "#333", "width": 0.5},
                    "pattern": {"shape": "/", "fgcolor": "#ffffff", "size": 6}},
            hovertext=hover, hoverinfo="text", width=0.5,
        ))


def _max_parallel(spans: list[Any], now: float) -> int:
    _, ys, _, _ = _concurrency(spans, now)
    return max(ys) if ys else 0


def _concurrency(spans: list[Any], now: float) -> tuple[list[float], list[int], list[float], list[int]]:
    """A step chart of how many ``spans`` ran at once (``xs, ys``) and how many had finished
    (``done_x, done_y``); past 600 spans, 400 time buckets each showing the most that ran at once in it."""
    starts = [s.start for s in spans]
    ends = [s.end if s.end is not None else now for s in spans]
    if len(spans) > 600:  # too many steps for the wire: buckets, counted in numpy (10,000 spans: ~2 ms)
        return _bucketed(starts, ends)
    points = sorted([*((t, 1) for t in starts), *((t, -1) for t in ends)])
    xs: list[float] = [0.0]
    ys: list[int] = [0]
    done_x: list[float] = [0.0]
    done_y: list[int] = [0]
    level = finished = 0
    for t, d in points:  # exact steps
        level += d
        finished += d < 0
        xs.append(t)
        ys.append(level)
        done_x.append(t)
        done_y.append(finished)
    return xs, ys, done_x, done_y


def _bucketed(starts: list[float], ends: list[float], buckets: int = 400
              ) -> tuple[list[float], list[int], list[float], list[int]]:
    """:func:`_concurrency` in ``buckets`` equal slices of the run: per slice, the most that ran at
    once in it (or what ran on from before) and how many had finished by its end."""
    import numpy as np

    times = np.array(starts + ends, dtype=float)
    steps = np.concatenate([np.ones(len(starts), dtype=np.int64), -np.ones(len(ends), dtype=np.int64)])
    order = np.lexsort((steps, times))  # by time; at one time, ends before starts
    times, steps = times[order], steps[order]
    level = np.cumsum(steps)
    finished = np.cumsum(steps < 0)
    end = max(float(times[-1]), 1e-9)
    width = end / buckets
    slot = np.minimum((times / width).astype(np.int64), buckets - 1)
    last = int(slot[-1])
    peak = np.zeros(last + 1, dtype=np.int64)
    np.maximum.at(peak, slot, level)
    slices = np.arange(last + 1)
    before = np.searchsorted(slot, slices, side="left") - 1  # the last point of an earlier slice
    carried = np.where(before >= 0, level[np.maximum(before, 0)], 0)
    upto = np.searchsorted(slot, slices, side="right") - 1
    done = np.where(upto >= 0, finished[np.maximum(upto, 0)], 0)
    xs = [0.0, *(slices * width).tolist()]
    ys = [0, *np.maximum(peak, carried).tolist()]
    done_x = [0.0, *((slices[:-1] + 1) * width).tolist(), end]
    return xs, ys, done_x, [0, *done.tolist()]


def declared_cpu(agent: Any, running: tuple[str, ...]) -> float:
    """CPU percent the running states asked for (``cpu_units`` x 100, psutil's scale)."""
    total = 0.0
    for name in running:
        spec = agent.states.get(name)
        if spec is not None and spec.resources is not None:
            total += spec.resources.cpu_units * 100.0
    return total


def steady_samples(samples: list[Any]) -> list[Any]:
    """Drop samples taken < 50 ms after the previous one: CPU percent over such a sliver is noise
    (a sampler's final sample at the end of a run reads 1000%+ on a busy machine)."""
    out: list[Any] = []
    for s in samples:
        if out and s.time - out[-1].time < 0.05:
            continue
        out.append(s)
    return out


def resource_figure(tracker: Any, *, height: int = 320) -> Any:
    """Measured CPU and memory over the run, beside the CPU the running states declared."""
    import plotly.graph_objects as go

    samples = steady_samples(list(tracker.samples))
    t0 = tracker.t0 if tracker.t0 is not None else (samples[0].time if samples else 0.0)
    x = [s.time - t0 for s in samples]
    fig = go.Figure()
    # memory first (light, right axis), so the CPU lines are drawn on top of it
    mem = [s.process_memory_mb for s in samples]
    fig.add_trace(go.Scatter(x=x, y=mem, name="process memory (MB, lower chart)", yaxis="y2", mode="lines",
                             fill="tozeroy",
                             line={"color": "rgba(155,81,224,0.6)", "width": 1}, fillcolor="rgba(155,81,224,0.08)"))
    fig.add_trace(go.Scatter(x=x, y=[s.system_cpu for s in samples], name="system CPU %", mode="lines",
                             line={"color": "#828282", "dash": "dash"}))
    if any(spec.resources is not None for spec in tracker.agent.states.values()):
        fig.add_trace(go.Scatter(x=x, y=[declared_cpu(tracker.agent, s.running) for s in samples], mode="lines",
                                 name="declared CPU % (running states)",
                                 line={"color": "#f2994a", "dash": "dot", "width": 2.5, "shape": "hv"}))
    fig.add_trace(go.Scatter(x=x, y=[s.process_cpu for s in samples], name="process CPU %", mode="lines",
                             line={"color": "#2f80ed", "width": 2.5}))
    ngpu = max((len(s.gpu) for s in samples), default=0)
    for g in range(ngpu):
        fig.add_trace(go.Scatter(x=x, y=[s.gpu[g] if g < len(s.gpu) else None for s in samples], mode="lines",
                                 name=f"GPU {g} %", line={"color": "#27ae60"}))
    last = samples[-1] if samples else None
    title = "resources" if last is None else (
        f"resources - now: process {last.process_cpu:.0f}% CPU, {last.process_memory_mb:.0f} MB;<br>"
        f"system {last.system_cpu:.0f}% CPU, {last.system_memory_percent:.0f}% memory")
    # CPU above, memory below on its own axis: one scale each, round ticks, the unit in each title
    cpu_top, cpu_step = nice_top(max([100.0, *(v for t in fig.data if t.yaxis != "y2" for v in t.y
                                               if v is not None)]) * 1.05)
    mem_top, mem_step = nice_top(max(mem, default=1.0) * 1.1, 3)
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 14}}, height=height + 60, template=plotly_template(),
        margin={"l": 10, "r": 10, "t": 60, "b": 40},
        legend={"orientation": "v", "y": 1.0, "yanchor": "top", "x": 1.01, "xanchor": "left"},
        xaxis={"title": {"text": "seconds since start", "standoff": 4}, "rangemode": "tozero", "anchor": "y2"},
        yaxis={"title": "CPU (% of one core)", "domain": [0.42, 1.0], "range": [0, cpu_top], "dtick": cpu_step,
               "tickformat": ",.0f"},
        yaxis2={"title": {"text": "memory (MB)", "font": {"color": "#7b3fb0"}}, "domain": [0.0, 0.3],
                "range": [0, mem_top], "dtick": mem_step, "tickformat": ",.0f", "showgrid": True},
    )
    if len(samples) == 1:  # a lone point draws no line: show it as a dot
        fig.update_traces(mode="lines+markers")
    if not samples:
        fig.add_annotation(text="no samples yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def declared_vs_measured(tracker: Any) -> list[dict[str, Any]]:
    """Per state: what it declared (CPU units, memory MB) and what was measured while it ran.

    Measured numbers come from the samples taken while the state was running; concurrent
    states share the process, so a sample counts for each of them (``shared`` says how often).
    """
    acc: dict[str, list[float]] = {}
    for s in tracker.samples:
        for name in s.running:
            a = acc.setdefault(name, [0, 0, 0.0, 0.0])
            a[0] += 1
            a[1] += len(s.running) > 1
            a[2] += s.process_cpu
            a[3] = max(a[3], s.process_memory_mb)
    rows = []
    for name, spec in tracker.agent.states.items():
        res = spec.resources
        n, shared, cpu, mem = acc.get(name, (0, 0, 0.0, 0.0))
        if res is None and not n:
            continue
        rows.append({
            "state": name,
            "declared_cpu": None if res is None else res.cpu_units,
            "measured_cpu": cpu / n / 100.0 if n else None,
            "declared_memory_mb": None if res is None else res.memory_mb,
            "measured_peak_memory_mb": mem if n else None,
            "samples": int(n), "shared": int(shared),
        })
    return rows


def to_bundle(fig: Any) -> dict[str, Any]:
    """A figure as a plotly MIME bundle (what JupyterLab's plotly renderer draws), no JavaScript."""
    import json

    import plotly.io as pio

    data = json.loads(pio.to_json(fig, validate=False, engine="json"))
    data.setdefault("config", {"displaylogo": False, "responsive": True})
    title = data["layout"].get("title", {}).get("text", "figure")
    return {"application/vnd.plotly.v1+json": data, "text/plain": f"<{title}>"}
