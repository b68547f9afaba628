"""The spec's agent-level names that act on an agent's runs: its recent and latest run (``status``,
``get_state``, ``pause()``, ``cancel_state()``...), the people its states ask, and travel through
its checkpoints (``restore``, ``fork``, ``diff``, ``history``, ``resume_latest``).
:class:`~fluffy_nb.engine._agent.Agent` inherits these; the definition (states, options,
``run()``) is ``_agent.py``'s, and the travel itself ``_travel.py``'s."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from . import _travel
from ._context import Context
from ._errors import AgentRunningError, StateNotFoundError
from ._registration import check_store
from ._run import Run
from ._state import StateMetadata
from ._status import AgentStatus

if TYPE_CHECKING:
    from ._agent import Agent
    from ._checkpoint import Checkpoint
    from ._history import CheckpointDiff, CheckpointHistory
    from ._hitl import HumanLoop
    from ._policies import StateSpec
    from ._registry import RunRegistry
    from ._result import RunResult


class AgentRuns:
    """What an :class:`~fluffy_nb.engine._agent.Agent` says and does about its runs (the
    agent's attributes these read are declared here; the agent sets them; a method that hands
    the agent on hands :attr:`_agent`)."""

    name: str
    states: dict[str, StateSpec]
    registry: RunRegistry
    human: HumanLoop
    store: Any
    durable: bool
    _initial: dict[str, Any]  # shared values every run starts with (set_state before/between runs)
    _idle_meta: dict[str, StateMetadata]  # statuses shown before the first run

    @property
    def _agent(self) -> Agent:
        """This object, typed as the :class:`Agent` it is (this class is only ever Agent's base)."""
        return cast("Agent", self)

    async def run(self, timeout: float | None = None, cleanup_timeout: float | None = 10.0, *,
                  start: str | list[str] | None = None,
                  initial_context: dict[str, Any] | None = None) -> RunResult:
        """Execute the workflow as a new run (the agent's)."""
        raise NotImplementedError

    # -- runs ---------------------------------------------------------------------------------
    def live_runs_count(self) -> int:
        """How many runs of this agent are going on now."""
        return len(self.registry.live)

    @property
    def runs(self) -> list[Run]:
        """This agent's recent runs (live ones included), oldest first."""
        return list(self.registry.recent)

    @property
    def latest_run(self) -> Run | None:
        """The run the spec's agent-level names act on: the latest started (or restored) one."""
        return self.registry.latest

    @property
    def prepared_run(self) -> Run | None:
        """The restored or forked run the next :meth:`run` continues (None if there is none)."""
        return self.registry.prepared

    def running_state_names(self) -> set[str]:
        """States whose body is running now, in any live run of this agent."""
        return self.registry.running_state_names()

    def running_owners(self) -> set[str]:
        """Owner names of every state execution running in a live run (for coordination sweeps)."""
        return self.registry.running_owners()

    def _latest_or_raise(self, what: str) -> Run:
        run = self.registry.latest
        if run is None:
            raise AgentRunningError(
                f"{what}: agent {self.name!r} is not running (it has not run yet); start it with "
                "`handle = agent.start()` first, then call this while it runs"
            )
        return run

    # -- the latest run (the spec's agent-level names) ---------------------------------------------
    @property
    def status(self) -> AgentStatus:
        """The latest run's status (IDLE before the first run)."""
        return AgentStatus.IDLE if self.registry.latest is None else self.registry.latest.status

    @property
    def run_id(self) -> str:
        """The latest run's id ('' before the first run)."""
        return "" if self.registry.latest is None else self.registry.latest.run_id

    @property
    def state_metadata(self) -> dict[str, StateMetadata]:
        """Per-state status, attempts and timings of the latest run."""
        if self.registry.latest is None:
            for n in self.states:
                self._idle_meta.setdefault(n, StateMetadata(n))
            return self._idle_meta
        return self.registry.latest.metadata

    @property
    def completed_states(self) -> list[str]:
        """States the latest run completed, in first-completion order."""
        return [] if self.registry.latest is None else self.registry.latest.completed_states

    @property
    def completion_counts(self) -> dict[str, int]:
        """How often each state completed in the latest run."""
        return {} if self.registry.latest is None else dict(self.registry.latest.completion_counts)

    @property
    def priority_queue(self) -> list[tuple[int, Any]]:
        """The latest run's queued executions as ``(-priority, execution)`` (a heap)."""
        return [] if self.registry.latest is None else list(self.registry.latest.scheduler.queue)

    @property
    def context(self) -> Context:
        """A context over the latest run's data (the initial values before any run)."""
        if self.registry.latest is None:
            return Context(self._initial, {})
        return self.registry.latest.context

    def get_state(self, key: str, default: Any = None) -> Any:
        """Read a shared value of the latest run (or an initial value set before any run)."""
        if self.registry.latest is None:
            return self._initial.get(key, default)
        return self.registry.latest.shared.get(key, default)

    def set_state(self, key: str, value: Any) -> None:
        """Set a shared value: for every later run, and for the latest run while it is live."""
        self._initial[key] = value
        latest = self.registry.latest
        if latest is not None and (latest.active or latest is self.registry.prepared):
            latest.shared[key] = value
            if latest.deps.watching:
                latest.deps.context_changed()  # a dependency condition may hold now

    async def pause(self, timeout: float | None = None) -> Checkpoint:
        """Pause the latest run: no new states, running ones finish; returns a checkpoint."""
        return await self._latest_or_raise("pause()").pause(timeout)

    async def resume(self) -> RunResult | None:
        """Continue the paused latest run (returns at once), or run a restored checkpoint to the end."""
        latest = self.registry.latest
        if latest is not None and latest.active:
            latest.resume()
            return None
        return await self.run()

    def cancel_state(self, name: str) -> bool:
        """Cancel the running, queued or waiting executions of ``name`` in the latest run."""
        if name not in self.states:
            known = ", ".join(sorted(self.states)[:12])
            raise StateNotFoundError(
                f"cancel_state({name!r}): agent {self.name!r} has no state {name!r} (known: {known}); "
                "pass the name a state was added under"
            )
        latest = self.registry.latest
        return latest is not None and latest.cancel_state(name)

    async def cancel_all(self, cleanup_timeout: float | None = 10.0) -> None:
        """Cancel every running and waiting state of every live run of this agent."""
        for run in list(self.registry.live.values()):
            await run.cancel_all(cleanup_timeout)

    def create_checkpoint(self, trigger: str = "manual") -> Checkpoint:
        """Snapshot the latest run: statuses, completed states, frontier, data and answers."""
        latest = self.registry.latest
        if latest is None:  # before any run: the checkpoint of a run that has not started
            latest = Run(self._agent, run_id="not-started", initial=self._initial)
        return latest.create_checkpoint(trigger)

    # -- people ---------------------------------------------------------------------------------
    def pending_requests(self) -> list[Any]:
        """Open human-in-the-loop requests of every run of this agent, oldest first."""
        return self.human.pending()

    def answer(self, request_id: str, value: Any, *, source: str = "person") -> bool:
        """Answer an open human-in-the-loop request (from any thread); False if the validator rejected it."""
        return self.human.answer(request_id, value, source=source)

    # -- checkpoints ----------------------------------------------------------------------------
    async def restore_from_checkpoint(self, checkpoint: Checkpoint | dict[str, Any]) -> None:
        """Load ``checkpoint`` as the run the next ``run()`` or ``resume()`` continues.

        Into an agent with no states yet (the spec's ``Agent("restored_workflow")``) only the data
        is restored; add the states before ``run()`` (see :func:`_travel.prepare`)."""
        _travel.prepare(self._agent, checkpoint, "restore_from_checkpoint")

    def restore(self, checkpoint: Any) -> Checkpoint:
        """Load a checkpoint (object, dict, id or history row) so ``run()``/``resume()`` continue it.

        The run keeps its run id: new checkpoints extend that run's history.

        Raises:
            CheckpointError: unknown id, newer format, or states this agent does not have.
        """
        return _travel.restore(self._agent, checkpoint)

    def fork(self, checkpoint: Any) -> Run:
        """Prepare a NEW run from a checkpoint (fresh id, parent recorded); ``run()`` continues it."""
        return _travel.fork(self._agent, checkpoint)

    def diff(self, a: Any, b: Any) -> CheckpointDiff:
        """What changed from checkpoint ``a`` to ``b`` (objects, dicts, ids or history rows)."""
        return _travel.diff(self._agent, a, b)

    def history(self, run_id: str | None = None) -> CheckpointHistory:
        """Every checkpoint of this agent in its store (or of one run), oldest first.

        A :class:`CheckpointHistory`: a list of rows, ``.to_pandas()`` for a DataFrame, and a
        table when displayed in a notebook.
        """
        return _travel.history_records(self._agent, run_id)

    def history_records(self, run_id: str | None = None) -> CheckpointHistory:
        """The same as :meth:`history`."""
        return _travel.history_records(self._agent, run_id)

    async def resume_latest(self, store: Any = None, *, timeout: float | None = None) -> RunResult:
        """Continue this agent's latest run from ``store`` (default: its own) to the end.

        States the checkpoint records as completed are not run again. When the latest run
        ended in failure or cancellation, it continues from that run's last checkpoint that
        still had states in flight (so the failed state runs again).
        """
        if store is not None and self.store is None:
            self.store = check_store(store, self.durable)
        store = store if store is not None else _travel.require_store(self._agent, "resume_latest")
        cp = await _travel.latest_resumable(self._agent, store)
        run = _travel.prepare(self._agent, cp, "resume_latest")
        _travel.continue_sequence(self._agent, run)
        if not cp.pending and cp.agent_status is AgentStatus.COMPLETED:
            self.registry.prepared = None  # nothing left to run; a later run() starts afresh
            return run.result()
        return await self.run(timeout=timeout)
