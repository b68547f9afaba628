"""Per-state latency: p50/p95/p99 as a DataFrame (``%fluffy metrics``) and as the live view's table.

Percentiles interpolate linearly between closest ranks, like the engine's ``MetricAggregation``.
"""

from __future__ import annotations

import heapq
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from ..engine._subflow import Subflow, nested_metadata

COLUMNS = ["runs", "attempts", "retries", "failures", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms"]


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted values (NaN when empty)."""
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _row(state: str, values: Iterable[float]) -> dict[str, Any] | None:
    ms = sorted(v * 1000.0 for v in values)
    if not ms:
        return None
    return {"state": state, "runs": len(ms), "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95),
            "p99_ms": percentile(ms, 99), "mean_ms": sum(ms) / len(ms), "max_ms": ms[-1]}


def latency_rows(durations: Mapping[str, Sequence[float]], limit: int | None = None) -> list[dict[str, Any]]:
    """One row per state that finished at least once: ``state, runs, p50_ms, p95_ms, p99_ms,
    mean_ms, max_ms``; slowest (by p95) first; only the ``limit`` slowest when given."""
    if limit is not None:  # the live view: rank by p95 alone, build rows for the few it shows
        ranked = []  # (-p95, state): the smallest are the slowest, ties by name, compared without a key call
        for state, values in durations.items():
            if len(values) == 1:  # the common case in a fan-out: its p95 is its one value
                ranked.append((-values[0], state))
            elif values:
                ranked.append((-percentile(sorted(values), 95), state))
        top = heapq.nsmallest(limit, ranked)
        return [r for _, state in top if (r := _row(state, durations[state])) is not None]
    rows = [r for state, values in durations.items() if (r := _row(state, values)) is not None]
    rows.sort(key=lambda r: (-float(r["p95_ms"]), str(r["state"])))
    return rows


def metrics_frame(agent: Any) -> pd.DataFrame:
    """Per-state latency of the agent's latest run, slowest p95 first, indexed by state.

    Columns: ``runs``, ``attempts``, ``retries``, ``failures`` (int) and ``p50_ms``, ``p95_ms``,
    ``p99_ms``, ``mean_ms``, ``max_ms`` (float, milliseconds of finished runs; NaN if none).
    States that never ran are left out. The states of its sub-workflows' runs have rows too,
    named by path (``research/search``).
    """
    metas = agent.state_metadata
    latest = getattr(agent, "latest_run", None)
    if latest is not None and any(isinstance(s.func, Subflow) for s in agent.states.values()):
        metas = {**metas, **nested_metadata(latest)}
    by_state = {r["state"]: r for r in latency_rows({n: m.durations for n, m in metas.items()})}
    records = []
    for name, meta in metas.items():
        if not meta.attempts:
            continue
        row = by_state.get(name, {})
        records.append({"state": name, "runs": meta.runs, "attempts": meta.attempts, "retries": meta.retries,
                        "failures": meta.failures,
                        **{c: row.get(c, math.nan) for c in COLUMNS[4:]}})
    frame = pd.DataFrame(records, columns=["state", *COLUMNS]).set_index("state")
    for col in COLUMNS[:4]:
        frame[col] = frame[col].astype("int64")
    for col in COLUMNS[4:]:
        frame[col] = frame[col].astype("float64")
    return frame.sort_values("p95_ms", ascending=False, na_position="last", kind="stable")


def latency_table_html(durations: Mapping[str, Sequence[float]], limit: int = 10, *,
                       finished: int | None = None) -> str:
    """The ``limit`` slowest states (by p95) as an escaped HTML table; empty when nothing finished.

    ``finished``: how many states finished, when ``durations`` holds only the slowest of them
    (``RunTracker.slowest``); by default, those in ``durations`` with a duration.
    """
    rows = latency_rows(durations, limit + 1)  # one more tells whether there are more
    if not rows:
        return ""
    hidden = (len([values for values in durations.values() if values]) if finished is None else finished) - limit
    body = "".join(
        f"<tr><td>{html.escape(r['state'])}</td><td>{r['runs']}</td><td>{r['p50_ms']:.1f}</td>"
        f"<td>{r['p95_ms']:.1f}</td><td>{r['p99_ms']:.1f}</td><td>{r['max_ms']:.1f}</td></tr>"
        for r in rows[:limit])
    more = f"<div>... {hidden} more states</div>" if hidden > 0 else ""
    return ('<table style="font-size:12px"><caption style="text-align:left">slowest states (ms)</caption>'
            "<thead><tr><th>state</th><th>runs</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr></thead>"
            f"<tbody>{body}</tbody></table>{more}")
