"""Dependencies: when a state's declared dependencies let it start.

Owns dependency-cycle detection at ``run()`` (:func:`check_dependency_cycles`) and, per run,
:class:`DependencyGates`: parking states whose dependencies do not hold yet, waking them when
a state completes, an interval passes, the context changes or (for conditions that read the
world outside the run) every :data:`CONDITION_POLL` seconds; dependency timeouts; PARALLEL
dependencies started alongside; and, when the run has nothing else left to do, deciding
whether a parked state can still start (:meth:`DependencyGates.settle`): a timeout keeps the
run alive until it fires, a state that can never start fails the run with
:class:`DependencyNotSatisfiedError`, a PERIODIC state that has run waits for no next round.
Whether a parked state must still wait for branches heading to it is the join question,
answered by ``Joins.can_still_reach``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

from ._errors import (
    ConfigurationError,
    DependencyCycleError,
    DependencyNotSatisfiedError,
    DependencyTimeoutError,
    StateNotFoundError,
)
from ._events import StateBlocked
from ._policies import DependencyLifecycle, DependencyType
from ._runview import RunView
from ._status import StateStatus

if TYPE_CHECKING:
    from ._agent import Agent
    from ._policies import DependencyConfig, StateSpec
    from ._run import Run
    from ._runner import Execution

#: seconds between re-checks of a false dependency condition while its state waits (a condition
#: may read the world outside the run; a change of the run's context re-checks at once)
CONDITION_POLL = 0.1


def check_dependency_cycles(agent: Agent) -> None:
    """Raise if a dependency names no state, or the dependencies form a cycle."""
    states = agent.states
    if not agent.has_dependents:
        return  # nothing to check: skip importing networkx (~0.3 s on a first run)
    for name, spec in states.items():
        for dep in spec.dependencies:
            if dep not in states:  # a typo would leave the state waiting forever
                known = ", ".join(sorted(states)[:12])
                raise StateNotFoundError(
                    f"state {name!r} depends on {dep!r}, which is not a state of agent "
                    f"{agent.name!r} (known: {known}); add it or fix the dependency name"
                )
    import networkx as nx

    g = nx.DiGraph()
    for name, spec in states.items():
        for dep, cfg in spec.dependencies.items():
            if cfg.type is not DependencyType.PARALLEL:
                g.add_edge(dep, name)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return
    names = [a for a, _ in cycle] + [cycle[0][0]]
    raise DependencyCycleError(
        f"agent {agent.name!r}: dependencies form a cycle {' -> '.join(names)}, so none of "
        "these states could ever start; remove one of these dependencies", names[:-1]
    )


class DependencyGates:
    """The dependency side of one run: who waits for what, and when it may go.

    Args:
        run: The run whose dependency-gated states it holds.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.parked: list[Execution] = []
        self.consumed: Counter[tuple[str, str]] = Counter()  # (state, dep) -> completions used
        self.last_started: dict[str, float] = {}
        self.last_completed: dict[str, float] = {}
        self._wakeups: dict[int, asyncio.Task[None]] = {}  # PERIODIC states waiting out an interval
        self.watching = False  # a parked state waits for a condition: context changes recheck it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poke_due = False
        self._poller: asyncio.Task[None] | None = None
        self._condition_deadlines: dict[int, asyncio.Task[None]] = {}  # idle run, condition with a timeout
        # (ex.id, is a condition's) -> (dependency, its timeout, clock time it fires): a running timeout
        self._timing: dict[tuple[int, bool], tuple[str, float, float]] = {}
        self._held: list[tuple[Execution, str, float, float, bool]] = []  # paused: timeouts with time left

    # -- the checks --------------------------------------------------------------------------
    def is_active(self, state: str) -> bool:
        """Whether ``state`` has an execution running or not yet started in this run."""
        sched = self.run.scheduler
        return state in sched.pending or any(ex.state == state for ex in sched.running.values())

    def satisfied(self, ex: Execution, spec: StateSpec) -> bool:
        """Whether every dependency of ``spec`` holds now (may schedule an interval wake-up)."""
        now = self.run.clock.monotonic()
        for dep, cfg in spec.dependencies.items():
            if cfg.condition is not None and not self._condition(spec.name, dep, cfg):
                return False
            if not self._holds(ex, spec.name, dep, cfg, now):
                return False
        return True

    def _condition(self, state: str, dep: str, cfg: DependencyConfig) -> bool:
        assert cfg.condition is not None
        try:
            return bool(cfg.condition(RunView(self.run)))  # reads THIS run, not the agent's latest
        except Exception as exc:
            raise ConfigurationError(
                f"state {state!r}: the condition of its dependency on {dep!r} raised "
                f"{type(exc).__name__}: {exc}; a DependencyConfig condition must return True or False"
            ) from exc

    def _holds(self, ex: Execution, state: str, dep: str, cfg: DependencyConfig, now: float) -> bool:
        kind = cfg.type
        if kind is DependencyType.PARALLEL:
            return True
        if kind is DependencyType.OPTIONAL:
            return not self.is_active(dep)
        if kind is DependencyType.SEQUENTIAL:
            run = self.run
            return not self.is_active(dep) and (dep in run.completed_set or dep in run.ended)
        count = self.run.completion_counts.get(dep, 0)
        if count == 0:
            return False
        if cfg.lifecycle is DependencyLifecycle.PERIODIC and count <= self.consumed[(state, dep)]:
            return False
        if cfg.expiry is not None and now - self.last_completed.get(dep, now) > cfg.expiry:
            return False
        if cfg.interval is not None:
            last = self.last_started.get(state)
            if last is not None and now - last < cfg.interval:
                self._wake_after(ex, last + cfg.interval - now)
                return False
        return True

    # -- waiting -----------------------------------------------------------------------------
    def waking(self) -> bool:
        """Whether a PERIODIC state waits out an interval (the run stays alive meanwhile)."""
        return bool(self._wakeups)

    def _wake_after(self, ex: Execution, seconds: float) -> None:
        """Recheck ``ex`` when its interval has passed: a PERIODIC completion that came too
        soon still gets its run."""
        if ex.id in self._wakeups:
            return
        run = self.run

        async def wake() -> None:
            await run.clock.sleep(seconds)
            self._wakeups.pop(ex.id, None)
            try:
                self.recheck()
            except Exception as exc:  # a dependency condition raised: fail the run, never hang
                run.control.fail(ex.state, exc, wrap=False)
            run.scheduler.dispatch()
            run.scheduler.check_done()

        self._wakeups[ex.id] = asyncio.get_running_loop().create_task(wake())

    def park(self, ex: Execution, spec: StateSpec) -> None:
        """``ex`` waits for its dependencies (with a deadline when one has a timeout)."""
        run = self.run
        self.parked.append(ex)
        if any(c.condition is not None for c in spec.dependencies.values()):
            self._watch()
        if run.events.active:
            waits = ", ".join(f"{d} ({c.type.value})" for d, c in spec.dependencies.items())
            run.events.publish(StateBlocked(run.name, run.run_id, run.clock.monotonic(), ex.state,
                                            f"waiting for dependencies: {waits}", "dependency",
                                            tuple(spec.dependencies)))
        # the timeout guards a dependency that never completes; one that did complete
        # (waiting now for a condition, an interval, or its next PERIODIC run) is not late
        counts = run.completion_counts
        timeouts = [(c.timeout, d) for d, c in spec.dependencies.items() if c.timeout and not counts.get(d, 0)]
        if timeouts:
            seconds, dep = min(timeouts)
            self._arm(ex, dep, seconds, seconds, condition=False)
        self.start_parallel(ex, spec)

    def start_parallel(self, ex: Execution, spec: StateSpec) -> None:
        """PARALLEL dependencies start together with the state (unless running or done)."""
        sched = self.run.scheduler
        for dep, cfg in spec.dependencies.items():
            if cfg.type is DependencyType.PARALLEL and not self.is_active(dep) and dep not in self.run.completed_set:
                sched.start(dep, sched.joins.add_branch(dep), ex.state)

    def recheck(self) -> None:
        """Enqueue parked states whose dependencies hold now and toward which no branch is heading."""
        if not self.parked:
            return
        run = self.run
        still: list[Execution] = []
        ready: list[Execution] = []
        for ex in self.parked:
            spec = run.agent.states[ex.state]
            (ready if self.satisfied(ex, spec) else still).append(ex)
            if ex.deadline is not None and all(run.completion_counts.get(d, 0) for d, c in spec.dependencies.items()
                                               if c.timeout):
                ex.deadline.cancel()  # every timed dependency completed: no timeout any more
                ex.deadline = None
                self._timing.pop((ex.id, False), None)
        self.parked = still
        if not ready:
            return  # no need to list the states in flight (all of them) on every completion
        sched = run.scheduler
        moving = sched.names_in_flight()
        for ex in ready:
            if sched.joins.can_still_reach(ex.state, moving - {ex.state}):
                still.append(ex)  # a join too: wait for the branches still heading here
                continue
            if ex.deadline is not None:
                ex.deadline.cancel()
                self._timing.pop((ex.id, False), None)
            self._end_condition_deadline(ex)
            sched.enqueue(ex)
        self._update_watch()

    def drop(self, state: str) -> list[Execution]:
        """Remove and return the parked executions of ``state``."""
        dropped = [ex for ex in self.parked if ex.state == state]
        if dropped:
            self.parked = [ex for ex in self.parked if ex.state != state]
            for ex in dropped:
                self._end_condition_deadline(ex)
            self._update_watch()
        return dropped

    def drop_all(self) -> list[Execution]:
        """Remove and return every parked execution; stop interval wake-ups."""
        dropped, self.parked = self.parked, []
        for task in [*self._wakeups.values(), *self._condition_deadlines.values()]:
            task.cancel()
        self._wakeups.clear()
        self._condition_deadlines.clear()
        self._timing.clear()
        self._held.clear()
        self._update_watch()
        return dropped

    # -- bookkeeping the scheduler reports -----------------------------------------------------
    def on_started(self, state: str, spec: StateSpec) -> None:
        """``state``'s body is about to run: PERIODIC completions are used up."""
        for dep, cfg in spec.dependencies.items():
            if cfg.lifecycle is DependencyLifecycle.PERIODIC:
                self.consumed[(state, dep)] = self.run.completion_counts.get(dep, 0)
        self.last_started[state] = self.run.clock.monotonic()

    def mark_completed(self, state: str) -> None:
        """``state`` just completed (its time counts for ``expiry``)."""
        self.last_completed[state] = self.run.clock.monotonic()

    def on_completed(self, state: str, spec: StateSpec) -> None:
        """After ``state``'s branch moved on: wake what waits for it; a PERIODIC state waits
        for its next round."""
        self.recheck()
        if spec.dependencies and any(
            c.lifecycle is DependencyLifecycle.PERIODIC for c in spec.dependencies.values()
        ) and state not in self.run.scheduler.pending:
            sched = self.run.scheduler
            sched.start(state, sched.joins.add_branch(state))

    # -- timeouts: they count running time only (a pause holds them) ------------------------------
    def _arm(self, ex: Execution, dep: str, seconds: float, left: float, *, condition: bool) -> None:
        """Start the timeout (``seconds`` in all, ``left`` to go) of ``ex``'s dependency on ``dep``
        (of its condition when ``condition``); while the run is paused, hold it for :meth:`resume`."""
        if self.run.scheduler.paused:
            self._held.append((ex, dep, seconds, left, condition))
            return
        due = self.run.clock.monotonic() + left  # from now, not from when the task first runs
        self._timing[(ex.id, condition)] = (dep, seconds, due)
        loop = asyncio.get_running_loop()
        if condition:
            self._condition_deadlines[ex.id] = loop.create_task(self._condition_deadline(ex, dep, seconds, due))
        else:
            ex.deadline = loop.create_task(self._deadline(ex, dep, seconds, due))

    def pause(self) -> None:
        """The run pauses: stop the clocks of its dependency timeouts, keeping the time each has left
        (time spent paused does not count against a ``DependencyConfig(timeout=...)``)."""
        now = self.run.clock.monotonic()
        for ex in self.parked:
            for condition, task in ((False, ex.deadline), (True, self._condition_deadlines.pop(ex.id, None))):
                timing = self._timing.pop((ex.id, condition), None)
                if task is None or task.done() or timing is None:
                    continue
                task.cancel()
                dep, seconds, due = timing
                self._held.append((ex, dep, seconds, max(0.0, due - now), condition))
            ex.deadline = None

    def resume(self) -> None:
        """The run resumes: re-arm the held timeouts of states still waiting, with the time they had
        left (the scheduler then rechecks the conditions, seeing what changed during the pause)."""
        held, self._held = self._held, []
        counts = self.run.completion_counts
        for ex, dep, seconds, left, condition in held:
            if ex in self.parked and (condition or not counts.get(dep, 0)):
                self._arm(ex, dep, seconds, left, condition=condition)

    async def _deadline(self, ex: Execution, dep: str, seconds: float, due: float) -> None:
        clock = self.run.clock  # the agent's clock: a ManualClock makes this deterministic
        await clock.sleep(max(0.0, due - clock.monotonic()))
        self._timing.pop((ex.id, False), None)
        if ex not in self.parked or self.run.completion_counts.get(dep, 0):
            return
        self.parked.remove(ex)
        self.run.scheduler.pending.pop(ex.state, None)
        self.run.meta(ex.state).status = StateStatus.TIMEOUT
        err = DependencyTimeoutError(
            f"state {ex.state!r} waited {seconds}s for its dependency {dep!r}, which did not "
            "complete; make sure something runs it, or raise the DependencyConfig timeout"
        )
        self.run.control.fail(ex.state, err, attempts=0)  # (it never started)

    # -- conditions: re-checked on context changes and on a timer --------------------------------
    def _watch(self) -> None:
        self.watching = True
        self._loop = asyncio.get_running_loop()
        if self._poller is None:
            self._poller = self._loop.create_task(self._poll())

    def _update_watch(self) -> None:
        states = self.run.agent.states
        self.watching = any(
            c.condition is not None for ex in self.parked for c in states[ex.state].dependencies.values()
        )
        if not self.watching and self._poller is not None:
            self._poller.cancel()
            self._poller = None

    async def _poll(self) -> None:
        """While a state waits for a condition, look again every CONDITION_POLL seconds."""
        while self.watching:
            await self.run.clock.sleep(CONDITION_POLL)
            self._wake()

    def context_changed(self) -> None:
        """The run's context changed: recheck waiting conditions soon (once for many changes).

        Safe from any thread (a state body running in a worker thread sets values too).
        """
        loop = self._loop
        if not self._poke_due and loop is not None and not loop.is_closed():
            self._poke_due = True
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        """Recheck parked states now, then let the scheduler go on (or end the run)."""
        self._poke_due = False
        run = self.run
        if not run.active or run.failure is not None or not self.parked:
            return
        try:
            self.recheck()
        except Exception as exc:  # a dependency condition raised: fail the run, never hang
            run.control.fail("dependencies", exc, wrap=False)
        run.scheduler.dispatch()
        run.scheduler.check_done()

    # -- the end of the run: can a parked state still start? ------------------------------------
    def settle(self) -> bool:
        """Called when nothing runs or is queued: whether the run must stay alive for a parked
        state (its dependency timeout, or a condition given ``timeout`` seconds to come true).
        A parked state that can never start fails the run with
        :class:`DependencyNotSatisfiedError` naming it and the dependency."""
        if not self.parked or self.run.failure is not None:
            return False
        run = self.run
        try:
            self.recheck()  # a condition may read the world outside the run
        except Exception as exc:
            run.control.fail("dependencies", exc, wrap=False)
            return False
        if run.scheduler.running or run.scheduler.queue or self._wakeups:
            return True
        alive = False
        for ex in list(self.parked):
            try:
                verdict = self._verdict(ex)
            except Exception as exc:  # a dependency condition raised: fail the run, never hang
                run.control.fail(ex.state, exc, wrap=False)
                return False
            if verdict == "wait":
                alive = True
            elif isinstance(verdict, DependencyNotSatisfiedError):
                self.parked.remove(ex)
                run.scheduler.pending.pop(ex.state, None)
                meta = run.meta(ex.state)
                meta.status = StateStatus.FAILED
                meta.last_error = f"{type(verdict).__name__}: {verdict}"
                run.control.fail(ex.state, verdict, wrap=False)
                return False
        return alive

    def _verdict(self, ex: Execution) -> str | DependencyNotSatisfiedError | None:
        """``"wait"`` (a timeout will decide), None (a PERIODIC state done with its rounds), or
        the error of a state that can never start."""
        run = self.run
        if ex.deadline is not None or ex.id in self._condition_deadlines:
            return "wait"
        deps = run.agent.states[ex.state].dependencies
        if run.completion_counts.get(ex.state, 0) and any(c.lifecycle is DependencyLifecycle.PERIODIC
                                                   for c in deps.values()):
            return None  # it ran; the next round it waits for will not come: a normal end
        now = run.clock.monotonic()
        for dep, cfg in deps.items():
            if not self._holds(ex, ex.state, dep, cfg, now):
                return "wait" if ex.id in self._wakeups else self._never(ex.state, dep, cfg)
        for dep, cfg in deps.items():
            if cfg.condition is not None and not self._condition(ex.state, dep, cfg):
                if cfg.timeout:
                    self._arm(ex, dep, cfg.timeout, cfg.timeout, condition=True)
                    return "wait"
                return DependencyNotSatisfiedError(
                    f"state {ex.state!r} can never start: the condition of its dependency on {dep!r} is "
                    "false and no state is left that could change the context. If the condition waits "
                    "for something outside the run, give it DependencyConfig(timeout=...): it is "
                    f"re-checked every {CONDITION_POLL}s until then", ex.state, dep)
        return None

    def _never(self, state: str, dep: str, cfg: DependencyConfig) -> DependencyNotSatisfiedError:
        run = self.run
        if cfg.type is DependencyType.SEQUENTIAL or not run.completion_counts.get(dep, 0):
            why = f"{dep!r} never completed and no state left will run it"
        elif cfg.expiry is not None:
            why = f"the completion of {dep!r} expired (expiry={cfg.expiry}s) and no state left will run it again"
        else:
            why = f"it waits for the next completion of {dep!r} and no state left will run it"
        return DependencyNotSatisfiedError(
            f"state {state!r} can never start: its {cfg.type.value} dependency {dep!r} does not hold: {why}. "
            f"Route a state to {dep!r} (or start it), give the dependency a timeout to wait for it, or "
            "make it OPTIONAL", state, dep)

    async def _condition_deadline(self, ex: Execution, dep: str, seconds: float, due: float) -> None:
        await self.run.clock.sleep(max(0.0, due - self.run.clock.monotonic()))
        self._condition_deadlines.pop(ex.id, None)
        self._timing.pop((ex.id, True), None)
        try:
            self.recheck()  # one last look
        except Exception as exc:
            self.run.control.fail(ex.state, exc, wrap=False)
            return
        if ex not in self.parked:
            return
        self.parked.remove(ex)
        self._update_watch()
        self.run.scheduler.pending.pop(ex.state, None)
        self.run.meta(ex.state).status = StateStatus.TIMEOUT
        self.run.control.fail(ex.state, DependencyTimeoutError(
            f"state {ex.state!r} waited {seconds}s for the condition of its dependency {dep!r} to hold, "
            "with no other state left to run; it stayed false. Raise the DependencyConfig timeout, "
            "or make sure the condition can come true"
        ), attempts=0)

    def _end_condition_deadline(self, ex: Execution) -> None:
        task = self._condition_deadlines.pop(ex.id, None)
        self._timing.pop((ex.id, True), None)
        if task is not None:
            task.cancel()

    def statuses(self) -> dict[str, Any]:
        """Parked states and what each waits for (for snapshots)."""
        return {ex.state: sorted(self.run.agent.states[ex.state].dependencies) for ex in self.parked}
