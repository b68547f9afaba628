"""Run: one execution of an agent's workflow, and everything that changes while it goes.

The :class:`~fluffy_nb.engine.Agent` is the definition (states, graph, options, store, event
bus). A ``Run`` owns its context data, per-state statuses, completions, checkpoint sequence,
human answers, failure and result. Many runs of one agent may be live at once; each has its
own run id. Its work is done by collaborators made for it: a :class:`Scheduler` (launch,
queue, execute), :class:`RunControl` (pause, cancel, fail), :class:`DependencyGates` and a
:class:`Checkpointer`. Views read a run through :meth:`Run.snapshot` and the event stream.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ._checkpointing import Checkpointer
from ._context import Context
from ._control import RunControl
from ._delta import TrackedDict
from ._deps import DependencyGates
from ._errors import RunTimeoutError
from ._events import RunFinished, RunStarted, StateCancelled
from ._hooks import mimebundle
from ._result import RunResult
from ._runner import Scheduler
from ._state import StateMetadata
from ._status import AgentStatus, StateStatus

if TYPE_CHECKING:
    from collections.abc import KeysView

    from ._agent import Agent
    from ._checkpoint import Checkpoint, HumanAnswerRecord
    from ._hitl import HumanRequest
    from ._map import PayloadMap
    from ._snapshot import RunSnapshot

_TRIGGERS = {"completed": "completion", "failed": "failure", "cancelled": "cancel"}


class Run:
    """One execution of an :class:`Agent`: its data, statuses, checkpoints and result.

    Made by ``agent.run()``/``agent.start()`` (or prepared by ``restore``/``fork``); users
    mostly meet it as ``handle.run`` or ``agent.runs``. Read it with :meth:`snapshot`.

    Args:
        agent: The workflow definition it executes.
        run_id: Its id (default: a new random id).
        initial: Shared values every state sees from the start.
    """

    def __init__(self, agent: Agent, *, run_id: str | None = None, initial: dict[str, Any] | None = None) -> None:
        self.agent = agent
        self.name = agent.name
        self.clock = agent.clock
        self.events = agent.events
        if not run_id:
            from uuid import uuid4  # imported with the first run, not the engine

            run_id = uuid4().hex
        self.run_id = run_id
        self.parent_run_id: str | None = None
        self.parent_state: str | None = None  # a child run: the parent's state it runs as (``_subflow``)
        self.children: dict[str, Run] = {}  # live child runs of states that are agents, by state
        self.store = agent.store  # where its checkpoints go (a child run: its parent's store)
        self.durable = agent.durable
        self.human = agent.human  # who its states ask (a child run: its root run's agent)
        self.pool_owner = agent  # whose resource pool its states use (a child run: maybe its root's, ``_subflow``)
        self.status = AgentStatus.IDLE
        self.shared: dict[str, Any] = TrackedDict(initial or {})
        self.typed: dict[str, Any] = {}
        #: states whose status changed since the last checkpoint, once one was written (before
        #: that a checkpoint is full, and the metadata notes nothing: see :meth:`track_changes`)
        self.changed_states: set[str] = set()
        self.tracking_changes = False
        fresh = StateMetadata.fresh
        self.metadata: dict[str, StateMetadata] = {n: fresh(n, None) for n in agent.states}
        self.completed_states: list[str] = []  # in first-completion order
        #: how many times each state completed (a state that has not is not in it)
        self.completion_counts: dict[str, int] = {}
        self.ended: set[str] = set()  # states whose execution failed or was cancelled (completed: completed_set)
        self.human_answers: list[HumanAnswerRecord] = []
        self.steps = 0
        self.failure: BaseException | None = None
        self.started_at = 0.0
        self.begun = False  # execute() has started it
        self.finished_at: float | None = None
        self.active = False
        self.blocking = False  # run_sync inside a running loop: nobody can answer a person
        self.restored_from: Checkpoint | None = None
        self.maps: dict[str, PayloadMap] = {}  # payload fan-outs (``_map.py``), latest per mapped state
        self.scheduler = Scheduler(self)
        self.control = RunControl(self, self.scheduler)
        self.deps = DependencyGates(self)
        self.checkpoints = Checkpointer(self)

    @property
    def paused(self) -> bool:
        """Whether the run is paused (no new states start)."""
        return self.scheduler.paused

    @property
    def completed_set(self) -> KeysView[str]:
        """The states that completed at least once: the keys of :attr:`completion_counts` (one
        structure to keep up to date on every transition, not two)."""
        return self.completion_counts.keys()

    def meta(self, state: str) -> StateMetadata:
        """The metadata of ``state`` in this run (states added while it runs get theirs here)."""
        meta = self.metadata.get(state)
        if meta is None:
            meta = self.metadata[state] = StateMetadata.fresh(state, self.changed_states if self.tracking_changes
                                                              else None)
        return meta

    def track_changes(self) -> None:
        """From now on every state's metadata notes its changes in :attr:`changed_states` (what a
        delta checkpoint reads). Called when a full checkpoint is written: until then there is no
        checkpoint to be a delta of, and a run that never writes one notes nothing."""
        if not self.tracking_changes:
            self.tracking_changes = True
            changed = self.changed_states
            for meta in self.metadata.values():
                meta.changed = changed

    # -- executing ---------------------------------------------------------------------------
    async def execute(
        self, timeout: float | None = None, cleanup_timeout: float | None = 10.0, starts: list[str] | None = None
    ) -> RunResult:
        """Run to the end (the agent has validated its definition); see :meth:`Agent.run`."""
        agent, sched = self.agent, self.scheduler
        restored = self.restored_from
        starts = [] if restored is not None else list(starts or ())
        sched.done = asyncio.get_running_loop().create_future()
        self.active = True
        sched.paused = False
        self.status = AgentStatus.RUNNING
        self.started_at = self.clock.monotonic()
        self.begun = True
        agent.registry.began(self)
        # again after the run observers: a live view made under the cell (its widgets, its first
        # picture: 6-240 ms here) is not the run's time, and its timeline does not open on a gap
        self.started_at = self.clock.monotonic()
        if self.events.active:
            self.events.publish(RunStarted(self.name, self.run_id, self.started_at, tuple(starts)))
        ticker = None
        if agent.checkpoint_interval:
            ticker = asyncio.get_running_loop().create_task(self.checkpoints.every(agent.checkpoint_interval))
        try:
            self._launch(restored, starts)
            await self._wait(timeout, cleanup_timeout)
        except asyncio.CancelledError:
            await self.control.shutdown(cleanup_timeout, "run cancelled")
            self.finish(AgentStatus.CANCELLED, None)
            raise
        finally:
            if ticker is not None:
                ticker.cancel()
            self.active = False
            agent.registry.ended(self)
        return self._outcome()

    def _launch(self, restored: Checkpoint | None, starts: list[str]) -> None:
        try:
            if restored is not None:
                self.checkpoints.relaunch(restored)
                self.restored_from = None
            else:
                self.scheduler.begin(starts)
        except Exception as exc:  # a dependency condition raised, say: fail the run, never hang
            self.control.fail("run", exc, wrap=False)
        self.scheduler.check_done()

    async def _wait(self, timeout: float | None, cleanup_timeout: float | None) -> None:
        done = self.scheduler.done
        assert done is not None
        if timeout is None:
            await done
            return
        finished, _ = await asyncio.wait({done}, timeout=timeout)
        if finished:
            return
        in_flight = sorted(self.scheduler.names_in_flight())  # before shutdown empties it
        await self.control.shutdown(cleanup_timeout, "run timeout")
        self.failure = RunTimeoutError(
            f"agent {self.name!r} did not finish within run(timeout={timeout}); still running: "
            f"{in_flight}. Raise the timeout or give slow states their own timeout"
        )

    def _outcome(self) -> RunResult:
        failure = self.failure
        if failure is not None:
            if self.status is not AgentStatus.CANCELLED:
                self.finish(AgentStatus.FAILED, failure)
                raise failure
        elif self.status is not AgentStatus.CANCELLED:
            self.finish(AgentStatus.COMPLETED, None)
        return self.result()

    def finish(self, status: AgentStatus, error: BaseException | None) -> None:
        """End the run with ``status``: drop what still waits, checkpoint, publish RunFinished."""
        self.status = status
        now = self.clock.monotonic()
        for ex in self.deps.drop_all():
            if ex.deadline is not None:
                ex.deadline.cancel()  # its dependency timeout must not fire after the run
            self.meta(ex.state).status = StateStatus.CANCELLED
            if self.events.active:
                self.events.publish(StateCancelled(self.name, self.run_id, now, ex.state,
                                                   "dependencies were never satisfied"))
        if self.store is not None:
            self.checkpoints.save(_TRIGGERS[status.value], error=error)
        self.finished_at = self.clock.monotonic()
        if self.events.active:
            self.events.publish(RunFinished(self.name, self.run_id, self.finished_at, status.value,
                                            None if error is None else f"{type(error).__name__}: {error}",
                                            self.finished_at - self.started_at))

    def record_completion(self, name: str, meta: StateMetadata, duration: float) -> None:
        """``name`` completed in ``duration`` seconds: statuses, counts and timings. (A quiet chain's
        hop, in ``Scheduler._run_branch``, writes the same lists and counts in place.)"""
        meta.complete(duration, self.clock.time())
        counts = self.completion_counts
        n = counts.get(name)
        if n is None:
            self.completed_states.append(name)
            counts[name] = 1
        else:
            counts[name] = n + 1
        self.steps += 1
        if self.human_answers:
            self.agent.human.state_completed(self, name)
        if self.agent.has_dependents:
            self.deps.mark_completed(name)

    # -- controls ----------------------------------------------------------------------------
    async def pause(self, timeout: float | None = None) -> Checkpoint:
        """Stop starting states, let running ones finish, and return the pause checkpoint.

        Args:
            timeout: Running states still busy after this many seconds are cancelled and
                queued to run again on :meth:`resume`.

        Raises:
            AgentRunningError: the run is not running.
        """
        cp = await self.control.pause(timeout)
        assert cp is not None
        return cp

    def resume(self) -> bool:
        """Continue this paused run; False when it was not paused."""
        return self.control.resume()

    def cancel_state(self, name: str) -> bool:
        """Cancel the running, queued or waiting executions of state ``name``."""
        return self.control.cancel_state(name)

    async def cancel_all(self, cleanup_timeout: float | None = 10.0) -> None:
        """Cancel every running and waiting state; the run ends with status CANCELLED."""
        await self.control.cancel_all(cleanup_timeout)

    # -- people ------------------------------------------------------------------------------
    def pending_requests(self) -> list[HumanRequest]:
        """This run's open human-in-the-loop requests (its child runs' too), oldest first."""
        if not self.children:
            return self.human.pending(run_id=self.run_id)
        from ._subflow import children_of

        ids = {self.run_id, *(run.run_id for run in children_of(self).values())}
        return [req for req in self.human.pending() if req.run_id in ids]

    # -- data and results ----------------------------------------------------------------------
    @property
    def context(self) -> Context:
        """A context over this run's data."""
        return Context(self.shared, self.typed, run=self)

    def get_state(self, key: str, default: Any = None) -> Any:
        """A shared value of this run."""
        return self.shared.get(key, default)

    def create_checkpoint(self, trigger: str = "manual") -> Checkpoint:
        """A snapshot of this run as a :class:`Checkpoint` (not saved)."""
        return self.checkpoints.make(trigger)

    def result(self) -> RunResult:
        """What the run has produced so far (complete once it has ended)."""
        return RunResult(
            agent_name=self.name, run_id=self.run_id, status=self.status, shared_state=self.shared,
            typed_data=self.typed, completed_states=list(self.completed_states),
            duration=self._duration(), steps=self.steps,
            state_runs=dict(self.completion_counts),
        )

    def why(self, state: str | None = None) -> str:
        """Why ``state`` (or each waiting state) is not running, as text: a resource, a rate limit,
        a lock and who holds it, a dependency, a join, a person, a slot, a retry delay."""
        from ._why import why_text

        return why_text(self, state)

    def _duration(self) -> float:
        if not self.begun:
            return 0.0  # never started (a restored run that had nothing left to do)
        return (self.finished_at or self.clock.monotonic()) - self.started_at

    def snapshot(self) -> RunSnapshot:
        """A read-only picture of the run now: statuses, timings, open requests, allocations."""
        from ._snapshot import take_snapshot  # with the first view or snapshot, not the engine (~5 ms)

        return take_snapshot(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        return (f"<Run {self.name!r} {self.run_id[:8]} status={self.status.value} "
                f"completed={len(self.completed_states)} running={len(self.scheduler.running)}>")
