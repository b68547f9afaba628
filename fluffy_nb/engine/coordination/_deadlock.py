"""Deadlock detection on the wait-for graph of owners (states) and the primitives they hold.

An edge ``A -> B`` means owner A waits for a primitive that B holds (without a TTL: a TTL
hold expires by itself, so it cannot deadlock). A deadlock is reported when an owner starts
to wait and every owner it (transitively) waits for is itself waiting: nobody in that
set can ever let go. Cycles can only close when a wait begins, so checking then is enough;
waiters also re-check every ``detection_interval`` seconds as a safety net.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._clock import Clock, SystemClock
from .._errors import DeadlockError

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True, slots=True)
class DeadlockRecord:
    """One detected deadlock: the owners in the cycle and who waits for what."""

    cycle: tuple[str, ...]
    edges: tuple[tuple[str, str, str], ...]
    """(waiter, primitive, holder) for each edge of the cycle."""
    victim: str
    at: float


@dataclass(frozen=True, slots=True)
class DetectorStatistics:
    """Counters of a :class:`DeadlockDetector`."""

    checks: int
    cycle_count: int
    waiting: int
    last_cycle: tuple[str, ...]


class DeadlockDetector:
    """Finds owners waiting for each other in a cycle and fails the one that closed it.

    Attributes:
        detection_interval: Seconds between re-checks of a waiting owner (None: only check
            when a wait begins, which already finds every cycle).
        max_cycles: How many detected cycles to keep for ``status()``.
    """

    def __init__(self, clock: Clock | None = None, *, detection_interval: float | None = 1.0,
                 max_cycles: int = 100) -> None:
        self.clock: Clock = clock or SystemClock()
        self.detection_interval = detection_interval
        self.max_cycles = max_cycles
        self._waits: dict[str, Any] = {}  # owner -> primitive it waits for
        self._cycles: deque[DeadlockRecord] = deque(maxlen=max(1, max_cycles))
        self.cycle_count = 0
        self._checks = 0

    # -- called by primitives --------------------------------------------------------------------
    def waiting_owners(self) -> set[str]:
        """Owners waiting for a primitive now."""
        return set(self._waits)

    def begin_wait(self, owner: str, primitive: Any) -> None:
        """Record that ``owner`` waits for ``primitive``; raise ``DeadlockError`` if that closes a cycle."""
        self._waits[owner] = primitive
        self.check(owner, primitive)

    def end_wait(self, owner: str) -> None:
        """``owner`` stopped waiting (it got the primitive, gave up or was cancelled)."""
        self._waits.pop(owner, None)

    def check(self, owner: str, primitive: Any) -> None:
        """Raise ``DeadlockError`` (and forget the wait) if ``owner`` can never get ``primitive``."""
        self._checks += 1
        graph = self._graph_from(owner)
        if graph is None:
            return
        try:
            import networkx as nx  # imported on the first check, not with the engine

            cycle_edges = nx.find_cycle(graph, source=owner)
        except nx.NetworkXNoCycle:
            return
        cycle = tuple(u for u, _ in cycle_edges)
        edges = tuple((u, graph.edges[u, v]["primitive"], v) for u, v in cycle_edges)
        self._record(DeadlockRecord(cycle, edges, owner, self.clock.monotonic()))
        self._waits.pop(owner, None)
        how = "; ".join(f"{u!r} waits for {p!r} held by {v!r}" for u, p, v in edges)
        raise DeadlockError(
            f"deadlock: {' -> '.join([*cycle, cycle[0]])} ({how}). {owner!r} gives up so the others can go on; "
            "take locks in the same order in every state, or give them a ttl", list(cycle)
        )

    def _graph_from(self, start: str) -> nx.DiGraph | None:
        """The wait-for graph reachable from ``start``, or None if some owner in it is free to run."""
        import networkx as nx

        graph = nx.DiGraph()
        todo, seen = [start], {start}
        while todo:
            node = todo.pop()
            prim = self._waits.get(node)
            if prim is None:
                return None  # this owner runs, so it will let go eventually
            holders = prim.deadlock_holders() if hasattr(prim, "deadlock_holders") else []
            if not holders or len(holders) < len(getattr(prim, "owners", holders)):
                return None  # free or TTL-held capacity: the wait will end
            for h in holders:
                graph.add_edge(node, h, primitive=prim.name)
                if h not in seen:
                    seen.add(h)
                    todo.append(h)
        return graph

    def _record(self, rec: DeadlockRecord) -> None:
        if self._cycles.maxlen != max(1, self.max_cycles):
            self._cycles = deque(self._cycles, maxlen=max(1, self.max_cycles))
        self._cycles.append(rec)
        self.cycle_count += 1

    # -- inspection --------------------------------------------------------------------------------
    def wait_for_graph(self) -> nx.DiGraph:
        """The current wait-for graph: owner -> owner, edges carry the ``primitive`` name."""
        import networkx as nx

        graph = nx.DiGraph()
        for owner, prim in self._waits.items():
            graph.add_node(owner)
            for h in getattr(prim, "owners", []):
                graph.add_edge(owner, h, primitive=prim.name)
        return graph

    def detect(self) -> list[list[str]]:
        """Every cycle in the current wait-for graph (a full scan; does not fail anyone)."""
        import networkx as nx

        return [list(c) for c in nx.simple_cycles(self.wait_for_graph())]

    @property
    def cycles(self) -> list[DeadlockRecord]:
        """The detected deadlocks kept (at most ``max_cycles``), oldest first."""
        return list(self._cycles)

    def status(self) -> dict[str, Any]:
        """What ``get_coordination_status()["deadlock_detector"]`` shows."""
        return {
            "cycle_count": self.cycle_count,
            "cycles": [list(r.cycle) for r in self._cycles],
            "details": [{"cycle": list(r.cycle), "victim": r.victim, "at": r.at,
                         "edges": [list(e) for e in r.edges]} for r in self._cycles],
            "waiting": {o: p.name for o, p in self._waits.items()},
            "current_cycles": self.detect(),
            "detection_interval": self.detection_interval,
            "max_cycles": self.max_cycles,
            "checks": self._checks,
        }

    def statistics(self) -> DetectorStatistics:
        """Counters: checks made, deadlocks found, owners waiting now, the last cycle."""
        last = self._cycles[-1].cycle if self._cycles else ()
        return DetectorStatistics(self._checks, self.cycle_count, len(self._waits), last)

    def reset(self) -> None:
        """Forget detected cycles (waits in progress are kept)."""
        self._cycles.clear()
        self.cycle_count = 0
        self._checks = 0

    def __repr__(self) -> str:
        return (f"<DeadlockDetector cycles={self.cycle_count} waiting={len(self._waits)} "
                f"interval={self.detection_interval}>")
