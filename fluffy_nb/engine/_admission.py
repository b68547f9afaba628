"""Admission: what a state passes before its body runs, for the scheduler (``_runner``).

Budgets first (rate limits, quotas, and barriers, which hold nothing either: a state waiting for its
budget or for the others holds no CPU, lock or slot that other states could use meanwhile, or need
to arrive), then the resource pool, then the other gates (mutex, semaphore, lease), in order. Each
gate passed is noted in the execution's ``held`` list, released in reverse when the execution ends.
Executions waiting at a gate are listed for ``why`` (``_why``) with the gate, the request and since
when.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._events import StateBlocked
from ._executor import state_executor
from ._status import StateStatus

if TYPE_CHECKING:
    from ._policies import StateSpec
    from ._run import Run
    from ._runner import Execution


class _InGates:
    """Executions per state between their gates (waiting or holding): O(1) where a scan of the
    running executions made a 10,000-state fan-out at a small pool quadratic. It sits in an
    execution's ``held`` list, so ``release`` runs with the gates'."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def enter(self, state: str) -> int:
        """Count one more execution of ``state`` at its gates; return how many there are now."""
        n = self.counts.get(state, 0) + 1
        self.counts[state] = n
        return n

    def release(self, state: str) -> None:
        """The execution of ``state`` left its gates."""
        n = self.counts[state] - 1
        if n:
            self.counts[state] = n
        else:
            del self.counts[state]


class Admission:
    """The resource pool and gates of one run's states.

    Args:
        run: The run whose executions it admits.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self._waits: dict[int, tuple[Execution, Any, Any, float]] = {}  # waiting at a pool or gate
        self._in_gates = _InGates()

    def waits(self) -> list[tuple[Execution, Any, Any, float]]:
        """Executions waiting at a resource pool or gate: ``(execution, gate, request, since)``."""
        return list(self._waits.values())

    async def admit(self, ex: Execution, spec: StateSpec, gates: list[Any], held: list[tuple[Any, str]]) -> None:
        """Pass the resource pool (when ``spec`` asks for resources and runs here) and ``gates``."""
        run = self.run
        pool = run.pool_owner.resource_pool if spec.resources is not None else None
        if pool is not None and state_executor(run.agent, spec) is not None:
            pool = None  # a remote state's resources are the cluster's; its executor maps them
        if pool is not None or gates:
            await self._pass_all(ex, spec, pool, gates, held)

    async def _pass_all(self, ex: Execution, spec: StateSpec, pool: Any, gates: list[Any],
                        held: list[tuple[Any, str]]) -> None:
        # a second execution of the state (in this run or another) takes a distinct owner name
        n = self._in_gates.enter(ex.state)
        held.append((self._in_gates, ex.state))  # released with the gates, last
        run = self.run
        owner = (f"{ex.state}#{ex.id}" if n > 1 or ex.branch is not None or run.agent.live_runs_count() > 1
                 or run.parent_state is not None else ex.state)  # a child run may share its root's pool
        for gate in gates:
            if getattr(gate, "is_budget", False):
                await self._pass(ex, gate, owner, None)
                held.append((gate, owner))
        if pool is not None:
            await self._pass(ex, pool, owner, spec.resources)
            held.append((pool, owner))
        for gate in gates:
            if not getattr(gate, "is_budget", False):
                await self._pass(ex, gate, owner, None)
                held.append((gate, owner))

    async def _pass(self, ex: Execution, gate: Any, owner: str, req: Any) -> None:
        args = (owner,) if req is None else (owner, req)
        if gate.try_acquire(*args):
            return
        run = self.run
        run.meta(ex.state).status = StateStatus.BLOCKED
        now = run.clock.monotonic()
        if run.events.active:
            from ._why import explain_gate

            kind, detail, holders = explain_gate(gate, req)
            run.events.publish(StateBlocked(run.name, run.run_id, now, ex.state, detail, kind, holders))
        self._waits[ex.id] = (ex, gate, req, now)
        try:
            if req is None:
                await gate.acquire(owner)
            else:
                await gate.acquire(owner, req, run.agent.states[ex.state].priority)
        finally:
            del self._waits[ex.id]
