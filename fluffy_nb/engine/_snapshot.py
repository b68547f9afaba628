"""RunSnapshot: the public, read-only picture of a run that views, monitors and magics read.

Everything in it is a copy (tuples, frozen records, plain dicts made for it), so a reader
can keep it without seeing later changes and cannot change the run through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._why import WaitReason, waits

if TYPE_CHECKING:
    from ._hitl import HumanRequest
    from ._map import MapCounts
    from ._run import Run


@dataclass(frozen=True)
class StateView:
    """One state in a :class:`RunSnapshot`."""

    name: str
    status: str
    attempts: int = 0
    runs: int = 0
    retries: int = 0
    failures: int = 0
    last_error: str | None = None
    last_duration: float | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True)
class RunSnapshot:
    """A run at one moment.

    ``started_at`` and ``elapsed`` are on the agent's monotonic clock; ``states`` maps every
    state to a :class:`StateView`; ``running``/``queued``/``blocked`` name states in flight
    (``blocked`` maps a state to the dependencies it waits for); ``waiting_for_human`` holds
    the open requests; ``allocations`` what the resource pool granted, by holder; ``waits`` why
    each waiting state waits (:class:`~fluffy_nb.engine._why.WaitReason`); ``maps`` how the
    branches of each payload fan-out stand, by mapped state (:class:`MapCounts`: done, running,
    failed, queued of total).
    """

    agent_name: str
    run_id: str
    status: str
    active: bool
    paused: bool
    started_at: float
    elapsed: float
    steps: int
    completed: tuple[str, ...]
    states: dict[str, StateView] = field(default_factory=dict)
    running: tuple[str, ...] = ()
    queued: tuple[str, ...] = ()
    blocked: dict[str, list[str]] = field(default_factory=dict)
    waiting_for_human: tuple[HumanRequest, ...] = ()
    allocations: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    parent_run_id: str | None = None
    waits: dict[str, WaitReason] = field(default_factory=dict)
    maps: dict[str, MapCounts] = field(default_factory=dict)

    def status_of(self, state: str) -> str:
        """The status of ``state`` (``pending`` for a state this run has not touched)."""
        view = self.states.get(state)
        return "pending" if view is None else view.status


def take_snapshot(run: Run) -> RunSnapshot:
    """Copy what a reader needs out of ``run``."""
    sched = run.scheduler
    states = {
        name: StateView(name, m.status.value, m.attempts, m.runs, m.retries, m.failures, m.last_error,
                        m.last_duration, m.started_at, m.finished_at)
        for name, m in run.metadata.items()
    }
    pool = run.agent.active_resource_pool
    allocations: dict[str, Any] = {}
    if pool is not None and sched.running:
        mine = {ex.state for ex in sched.running.values()} | {f"{e.state}#{e.id}" for e in sched.running.values()}
        allocations = {k: v for k, v in pool.get_state_allocations().items() if k in mine}
    maps = {s: m.snapshot() for s, m in run.maps.items()} if run.maps else {}
    for s, counts in maps.items():
        view = states.get(s)
        if counts.running and view is not None and view.status != "running":
            # a mapped state runs while any branch does, whatever its latest finished branch said
            states[s] = replace(view, status="running")
    end = run.finished_at if run.finished_at is not None else run.clock.monotonic()
    error = None if run.failure is None else f"{type(run.failure).__name__}: {run.failure}"
    return RunSnapshot(
        agent_name=run.name, run_id=run.run_id, status=run.status.value, active=run.active,
        paused=sched.paused, started_at=run.started_at, elapsed=max(0.0, end - run.started_at) if run.begun
        else 0.0, steps=run.steps, completed=tuple(run.completed_states), states=states,
        running=tuple(ex.state for ex in sched.running.values()),
        queued=tuple(ex.state for _, ex in sorted(sched.queue)), blocked=run.deps.statuses(),
        waiting_for_human=tuple(run.pending_requests()), allocations=allocations, error=error,
        parent_run_id=run.parent_run_id, waits=waits(run) if run.active else {},
        maps=maps,
    )
