"""The counts of a payload fan-out (``ctx.map``/``Send``) on its node of the state graph.

A mapped state is one node however many items it runs; its label says how its branches stand
(``score · 37/100 done, 3 running, 1 failed``), read from the run's public snapshot
(``RunSnapshot.maps``).
"""

from __future__ import annotations

from typing import Any


def map_counts(tracker: Any) -> dict[str, Any]:
    """Mapped state -> its ``MapCounts`` in the run a tracker follows (empty without maps)."""
    run = getattr(tracker, "run", None)
    if run is None or not getattr(run, "maps", None):
        return {}
    return dict(run.snapshot().maps)


def map_note(counts: dict[str, Any], state: str) -> str:
    """`` · done/total done, N running, N failed`` for a mapped state, else ``""``."""
    c = counts.get(state)
    if c is None:
        return ""
    note = f" · {c.done:,}/{c.total:,} done"
    if c.running:
        note += f", {c.running:,} running"
    if c.failed:
        note += f", {c.failed:,} failed"
    return note
