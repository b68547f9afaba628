"""RunRegistry: which runs of one agent exist, which are live, and which one is the latest.

The agent's spec-level names (``agent.status``, ``agent.pause()``...) act on the latest run;
a restored or forked run waits here, prepared, until the next ``run()`` continues it.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from . import _hooks
from ._errors import AgentRunningError
from ._status import StateStatus

if TYPE_CHECKING:
    from ._agent import Agent
    from ._run import Run

RECENT_RUNS = 100


class RunRegistry:
    """The runs of one agent: live ones, the latest 100, the prepared one.

    Args:
        agent: The agent whose runs it keeps.
    """

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.live: dict[str, Run] = {}
        self.recent: deque[Run] = deque(maxlen=RECENT_RUNS)
        self.latest: Run | None = None
        self.prepared: Run | None = None

    def began(self, run: Run) -> None:
        """``run`` started: it is live and the latest; monitors subscribe before RunStarted."""
        self.live[run.run_id] = run
        self.latest = run
        if run not in self.recent:
            self.recent.append(run)
        pool = self.agent.active_resource_pool
        if pool is not None and hasattr(pool, "bind_preemption"):
            pool.bind_preemption(self.preempt)
        if run.parent_state is not None:
            return  # a sub-workflow's run: observers of its root run see its events already (``_subflow``)
        for observe in _hooks.run_observers:
            observe(self.agent)

    def ended(self, run: Run) -> None:
        """``run`` ended (any outcome)."""
        if self.live.get(run.run_id) is run:
            del self.live[run.run_id]

    def prepare(self, run: Run) -> None:
        """Make ``run`` (restored or forked) the one the next ``run()`` continues."""
        self.prepared = run
        self.latest = run
        self.recent.append(run)

    def take_prepared(self) -> Run | None:
        """The prepared run, now handed to ``run()`` (None if there is none)."""
        run, self.prepared = self.prepared, None
        return run

    def require_idle(self, what: str) -> None:
        """Raise AgentRunningError when a run of the agent is live."""
        if self.live:
            raise AgentRunningError(
                f"{what}: agent {self.agent.name!r} has {len(self.live)} run(s) going on; wait for them to "
                "finish or cancel them first"
            )

    def preempt(self, owner: str) -> bool:
        """The resource pool asks to preempt ``owner``: whichever live run holds it requeues it."""
        return any(run.control.preempt(owner) for run in list(self.live.values()))

    def running_owners(self) -> set[str]:
        """Owner names of every state execution running in a live run (for coordination sweeps)."""
        owners: set[str] = set()
        for run in self.live.values():
            for ex in run.scheduler.running.values():
                owners.update((ex.state, f"{ex.state}#{ex.id}"))
        return owners

    def running_state_names(self) -> set[str]:
        """States whose body is running now, in any live run."""
        return {ex.state for run in list(self.live.values()) for ex in list(run.scheduler.running.values())
                if run.meta(ex.state).status is StateStatus.RUNNING}

    def __repr__(self) -> str:
        return f"<RunRegistry {self.agent.name!r} live={len(self.live)} recent={len(self.recent)}>"
