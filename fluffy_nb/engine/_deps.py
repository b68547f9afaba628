"""Dependencies half of Agent: when a state's declared dependencies let it start.

Owns dependency-cycle detection at ``run()``, parking states whose dependencies do not
hold yet, waking them when a state completes (or an interval passes), dependency
timeouts, and PARALLEL dependencies started alongside.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING, Any

from ._errors import DependencyCycleError, DependencyTimeoutError, StateNotFoundError
from ._events import StateBlocked
from ._policies import DependencyLifecycle, DependencyType
from ._status import StateStatus

if TYPE_CHECKING:
    from ._agent import Agent
    from ._runner import Execution


class DependencyMixin:
    """Dependency methods of :class:`Agent`."""

    def _check_dependency_cycles(self: Agent) -> None:
        if not any(spec.dependencies for spec in self.states.values()):
            return  # nothing to check: skip importing networkx (~0.3 s on a first run)
        for name, spec in self.states.items():
            for dep in spec.dependencies:
                if dep not in self.states:  # a typo would leave the state waiting forever
                    known = ", ".join(sorted(self.states)[:12])
                    raise StateNotFoundError(
                        f"state {name!r} depends on {dep!r}, which is not a state of agent "
                        f"{self.name!r} (known: {known}); add it or fix the dependency name"
                    )
        import networkx as nx

        g = nx.DiGraph()
        for name, spec in self.states.items():
            for dep, cfg in spec.dependencies.items():
                if cfg.type is not DependencyType.PARALLEL:
                    g.add_edge(dep, name)
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            return
        names = [a for a, _ in cycle] + [cycle[0][0]]
        raise DependencyCycleError(
            f"agent {self.name!r}: dependencies form a cycle {' -> '.join(names)}, so none of "
            "these states could ever start; remove one of these dependencies", names[:-1]
        )

    def _active(self, state: str) -> bool:
        return state in self._pending or any(ex.state == state for ex in self._running_states.values())

    def _deps_satisfied(self: Agent, ex: Execution, spec: Any) -> bool:
        now = self.clock.monotonic()
        for dep, cfg in spec.dependencies.items():
            if cfg.condition is not None and not cfg.condition(self):
                return False
            kind = cfg.type
            if kind is DependencyType.PARALLEL:
                continue
            if kind is DependencyType.OPTIONAL:
                if self._active(dep):
                    return False
                continue
            if kind is DependencyType.SEQUENTIAL:
                if self._active(dep) or dep not in self._ended:
                    return False
                continue
            count = self.completion_counts[dep]
            if count == 0:
                return False
            if cfg.lifecycle is DependencyLifecycle.PERIODIC and count <= self._consumed[(spec.name, dep)]:
                return False
            if cfg.expiry is not None and now - self._last_completed.get(dep, now) > cfg.expiry:
                return False
            if cfg.interval is not None:
                last = self._last_started.get(spec.name)
                if last is not None and now - last < cfg.interval:
                    self._wake_after(ex, last + cfg.interval - now)
                    return False
        return True

    def _wake_after(self: Agent, ex: Execution, seconds: float) -> None:
        """Recheck ``ex`` when its interval has passed: a PERIODIC completion that came too
        soon still gets its run (the run stays alive meanwhile)."""
        if ex.id in self._wakeups:
            return

        async def wake() -> None:
            await self.clock.sleep(seconds)
            self._wakeups.pop(ex.id, None)
            if self._parked:
                self._recheck_parked()
            self._dispatch()
            self._check_done()

        self._wakeups[ex.id] = asyncio.get_running_loop().create_task(wake())

    def _park(self: Agent, ex: Execution, spec: Any) -> None:
        self._parked.append(ex)
        if self.events.active:
            waits = ", ".join(f"{d} ({c.type.value})" for d, c in spec.dependencies.items())
            self.events.publish(StateBlocked(self.name, self.run_id, self.clock.monotonic(), ex.state,
                                             f"waiting for dependencies: {waits}"))
        # the timeout guards a dependency that never completes; one that did complete
        # (waiting now for a condition, an interval, or its next PERIODIC run) is not late
        timeouts = [(c.timeout, d) for d, c in spec.dependencies.items() if c.timeout and not self.completion_counts[d]]
        if timeouts:
            seconds, dep = min(timeouts)
            loop = asyncio.get_running_loop()
            ex.deadline = loop.create_task(self._dependency_deadline(ex, dep, seconds))
        self._start_parallel_deps(ex, spec)

    def _start_parallel_deps(self: Agent, ex: Execution, spec: Any) -> None:
        """PARALLEL dependencies start together with the state (unless running or done)."""
        for dep, cfg in spec.dependencies.items():
            if cfg.type is DependencyType.PARALLEL and not self._active(dep) and dep not in self._completed_set:
                self._start(dep, self._joins.add_branch(dep), ex.state)

    def _recheck_parked(self: Agent) -> None:
        still = []
        ready = []
        for ex in self._parked:
            spec = self.states[ex.state]
            (ready if self._deps_satisfied(ex, spec) else still).append(ex)
            if ex.deadline is not None and all(
                self.completion_counts[d] for d, c in spec.dependencies.items() if c.timeout
            ):
                ex.deadline.cancel()  # every timed dependency completed: no timeout any more
                ex.deadline = None
        self._parked = still
        for ex in ready:
            if self._feeders_alive(ex.state):
                still.append(ex)  # a join too: wait for the branches still heading here
                continue
            if ex.deadline is not None:
                ex.deadline.cancel()
            self._enqueue(ex)

    def _feeders_alive(self: Agent, state: str) -> bool:
        """Whether a running or queued state may still route to ``state`` (not via dependencies).

        A state gated by dependencies that branches also name (the spec's ``merge_results``,
        which depends on ``process_chunk`` while the chunk states return it) runs once, after
        those branches, instead of once per arriving branch.
        """
        graph = self.graph
        feeders = {src for src in graph.redges.get(state, ()) if graph.edges[src][state] != "dependency"}
        if not feeders:
            return False
        for ex in itertools.chain(self._running_states.values(), (e for _, e in self.priority_queue)):
            s = ex.state
            if s != state and (s in feeders or any(graph.reaches(s, f) for f in feeders)):
                return True
        return False

    async def _dependency_deadline(self: Agent, ex: Execution, dep: str, seconds: float) -> None:
        await self.clock.sleep(seconds)  # the agent's clock: a ManualClock makes this deterministic
        self._dependency_timed_out(ex, dep, seconds)

    def _dependency_timed_out(self: Agent, ex: Execution, dep: str, seconds: float) -> None:
        if ex not in self._parked or self.completion_counts[dep]:
            return
        self._parked.remove(ex)
        self._pending.pop(ex.state, None)
        self.state_metadata[ex.state].status = StateStatus.TIMEOUT
        err = DependencyTimeoutError(
            f"state {ex.state!r} waited {seconds}s for its dependency {dep!r}, which did not "
            "complete; make sure something runs it, or raise the DependencyConfig timeout"
        )
        self._fail_run(ex.state, err)
