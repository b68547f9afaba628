"""A run's payload maps in its checkpoints: one record per map, and a restore that runs only
the unfinished payloads again.

:func:`checkpoint_maps` turns the live maps of a run (``_map.PayloadMap``) into
``MapRecord``s (the results of finished branches, the payloads of the others, the fan-out's
waiting joins and other branches) and the run's frontier without the maps' branches;
:func:`relaunch_maps` rebuilds the maps of a loaded checkpoint and starts their unfinished
payloads, the maps of one fan-out in one fan-out again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import _decode
from ._map import PayloadMap, launch

if TYPE_CHECKING:
    from ._checkpoint import MapRecord
    from ._graph import Token
    from ._run import Run
    from ._runner import Execution, Scheduler


def decode_value(value: Any, key: str = "map") -> Any:
    """A payload or result loaded from a checkpoint, decoded as context values are (``_codec``)."""
    return _decode.decode_value(key, value)


def checkpoint_maps(run: Run) -> tuple[list[str], dict[str, int], list[MapRecord]]:
    """The frontier and join counts of a live run without its maps' branches, and one record per
    map (what a restore needs to run only the unfinished payloads).

    A map's fan-out is recorded with its first map: the branches waiting at its joins and the
    states its other branches run (their own nested fan-outs go to the run's frontier, as nested
    fan-outs always do). Maps started by one return share a ``group`` number.
    """
    sched = run.scheduler
    live = sched.joins.groups
    owner: dict[int, PayloadMap] = {}  # live fan-out id -> the first map that started it
    for m in run.maps.values():
        g = m.group
        if g is not None and live.get(g.id) is g:
            owner.setdefault(g.id, m)
    frontier: list[str] = []
    queued: list[tuple[int, Execution]] = []
    others: dict[int, list[str]] = {}
    queue = [e for _, e in sched.queue if e.branch is None]  # a big map queues most of its branches
    for ex in (*sched.running.values(), *queue, *run.deps.parked):
        if ex.branch is not None:
            continue
        gid = ex.token.group.id
        if gid in owner:
            others.setdefault(gid, []).append(ex.state)
        elif ex.id in sched.running:
            frontier.append(ex.state)
        else:
            queued.append((-run.agent.states[ex.state].priority, ex))
    frontier += [ex.state for _, ex in sorted(queued)]
    joins: dict[str, int] = {}
    for group in (sched.joins.root, *live.values()):
        if group.id not in owner:
            for target, tokens in group.joins.items():
                joins[target] = joins.get(target, 0) + len(tokens)
    records = []
    for m in run.maps.values():
        gid = m.group.id if m.group is not None else 0
        first = m.group is not None and owner.get(gid) is m
        waiting = {t: len(v) for t, v in m.group.joins.items()} if first and m.group is not None else {}
        records.append(m.record(gid if gid in owner else 0, others.get(gid, []) if first else [], waiting))
    # one frontier entry per map with work left, so a checkpoint still says the run goes on
    # (resume_latest, a loaded run's status); relaunch_maps takes it back out
    frontier += [r.state for r in records if r.pending or r.others or r.waiting]
    return frontier, joins, records


def map_names(records: Iterable[MapRecord]) -> set[str]:
    """Every state the map records of a checkpoint name."""
    out: set[str] = set()
    for r in records:
        out.add(r.state)
        if r.source is not None:
            out.add(r.source)
        out.update(r.waiting)
        out.update(r.others)
    return out


def plain_frontier(pending: list[str], records: list[MapRecord]) -> list[str]:
    """``pending`` without the one entry each map with work left added to it."""
    out = list(pending)
    for r in records:
        if (r.pending or r.others or r.waiting) and r.state in out:
            out.remove(r.state)
    return out


def relaunch_maps(run: Run, records: list[MapRecord]) -> None:
    """Rebuild the maps of a restored checkpoint and start their unfinished payloads, the maps of
    one fan-out (same ``group``) in one fan-out again."""
    fanouts: dict[int, list[tuple[PayloadMap, MapRecord, list[int]]]] = {}
    for n, r in enumerate(records):
        m = PayloadMap(r.state, r.source, [None] * r.total, run.clock if run.events.active else None)
        for key, value in r.results.items():
            i = int(key)  # MapRecord checked every index
            m.restore_done(i, decode_value(value))
        todo = sorted(int(key) for key in r.pending)
        for i in todo:
            m.payloads[i] = decode_value(r.pending[str(i)])
        run.maps[r.state] = m
        if todo or r.waiting or r.others:
            fanouts.setdefault(r.group or -1 - n, []).append((m, r, todo))
    for members in fanouts.values():
        _relaunch_fanout(run.scheduler, members)


def _relaunch_fanout(sched: Scheduler, members: list[tuple[PayloadMap, MapRecord, list[int]]]) -> None:
    first = members[0][1]
    parent = sched.joins.add_branch(first.source or first.state)
    slots = [(m, i) for m, _, todo in members for i in todo]
    others = tuple(o for _, r, _ in members for o in r.others)
    waiting: dict[str, int] = {}
    for _, r, _ in members:
        for target, count in r.waiting.items():
            waiting[target] = waiting.get(target, 0) + count

    def start(token: Token, k: int) -> None:
        m, index = slots[k]
        launch(sched, token, m, index, m.state, None)

    group = sched.joins.fan_out(parent, others, [m.state for m, _ in slots], start, waiting=waiting)
    for m, _, _ in members:
        m.group = group
