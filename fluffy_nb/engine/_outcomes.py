"""The end of a state's execution: route what it returned onward, or hand its failure or
cancellation to the run. :class:`~fluffy_nb.engine._runner.Scheduler` inherits these."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._attempt import error_route, next_states
from ._errors import ConfigurationError, InvalidStateResultError, MaxStepsExceededError, StateNotFoundError
from ._events import StateFinished
from ._routes import ended, track
from ._status import AgentStatus, StateStatus

if TYPE_CHECKING:
    from ._agent import Agent
    from ._graph import Joins, Token
    from ._run import Run
    from ._runner import Execution
    from ._state import StateMetadata


class Outcomes:
    """How an execution ends, for the :class:`~fluffy_nb.engine._runner.Scheduler` (whose
    attributes and launching methods these use)."""

    run: Run
    agent: Agent
    joins: Joins
    running: dict[int, Execution]
    queue: list[tuple[int, Execution]]
    pending: dict[str, Execution]
    paused: bool
    _routing_error: BaseException | None
    #: executions started by a routed failure, by id, with the state that failed and the failure
    #: (``_routes.track``)
    routed: dict[int, tuple[Execution, str, BaseException]] | None = None

    def start(self, state: str, token: Token, source: str | None = None) -> None:
        """Create an execution of ``state`` for branch ``token`` (the scheduler's)."""
        raise NotImplementedError

    def start_routed(self, state: str, token: Token, error: BaseException, source: str) -> None:
        """Start ``state`` for branch ``token`` as sent there by ``error``, failed in ``source``
        (a restored run's route: ``ctx.last_error`` is ``error``)."""
        self._routing_error = error
        try:
            self.start(state, token)
        finally:
            self._routing_error = None
        track(self, state, error, source)

    def dispatch(self) -> None:
        """Launch queued executions while slots are free (the scheduler's)."""
        raise NotImplementedError

    def check_done(self) -> None:
        """End the run, or a pause's drain, once no work is left (the scheduler's)."""
        raise NotImplementedError

    def idle_while_paused(self) -> None:
        """End a pause's drain once every running state is idle (the scheduler's)."""
        raise NotImplementedError

    def _complete(self, ex: Execution, meta: StateMetadata, outcome: tuple[str, Any]) -> None:
        kind, value = outcome
        control = self.run.control
        if ex.branch is not None:
            ex.ended(kind)  # type: ignore[attr-defined]  # a payload branch: its map's counts and result
        if kind == "ok":
            self._succeeded(ex, meta, *value)
            return
        if self.routed:  # a routed execution ends: its failure is not kept (_routes.py)
            ended(self, ex)
        if kind == "failed":
            self.run.ended.add(ex.state)
            if not self._route_failure(ex, value):
                control.fail(ex.state, value, attempts=ex.attempt,
                             payload=None if ex.branch is None else ex.index)  # type: ignore[attr-defined]
        else:
            control.cancelled(ex, meta)
        self._settle()

    def _succeeded(self, ex: Execution, meta: StateMetadata, result: Any, duration: float) -> None:
        """``ex`` returned ``result``: route it, then launch what the queue allows or end the run."""
        if self.routed:  # a routed execution ends: its failure is not kept (_routes.py)
            ended(self, ex)
        self._finish_state(ex, meta, result, duration)
        self._settle()

    def arrived(self, ex: Execution, meta: StateMetadata, result: Any, duration: float) -> bool:
        """A branch of a fan-out whose plain state's inline attempt returned ``result``, its
        fan-out's join, where other branches wait: it waits there too (``Joins.arrive``),
        counted and settled here, in one call for what ``_succeeded`` -> ``_finish_state`` do for
        every branch but the last of a fan-out and join. Only with nothing else to do (no reader
        of per-state events, durable run, dependency, person's answer, routed failure, failure,
        queue, or max_steps near); False, with nothing done, for anything else. Called by
        ``Scheduler._ended``, so a join this arrival starts runs next in the arriving branch's
        task, as from ``_succeeded``."""
        run, agent = self.run, self.agent
        if (result.__class__ is not str or ex.token.group.parent is None or self.routed or run.events.stepwise
                or run.failure is not None or self.queue or agent.has_dependents or run.human_answers
                or run.durable or run.steps + 1 >= agent.max_steps
                or result not in agent.graph.edges.get(ex.state, ()) or not self.joins.arrive(ex.token, result)):
            return False
        run.record_completion(ex.state, meta, duration)  # (after arrive: a join it starts has not run yet)
        self._settle()
        return True

    def _settle(self) -> None:
        """After an execution ended: launch what the queue allows, then end the run (or a pause's
        drain) when nothing runs, or let a waiting pause see whether what runs is idle."""
        if self.queue:
            self.dispatch()
        if not self.running:
            self.check_done()
        elif self.paused:  # a pause may be waiting for this one alone
            self.idle_while_paused()

    def _route_failure(self, ex: Execution, error: BaseException) -> bool:
        """Send the branch of a state that failed for good to its ``on_timeout``/``on_error`` state."""
        target = error_route(self.agent.states[ex.state], error)
        run = self.run
        if target is None or run.failure is not None or ex.cancel_reason is not None \
                or run.status is AgentStatus.CANCELLED:  # a state or run being cancelled takes no route
            return False
        run.steps += 1  # a route is a step: a state routing to itself stops at max_steps as a loop does
        if run.steps >= self.agent.max_steps:
            run.control.fail(ex.state, MaxStepsExceededError(
                f"agent {run.name!r} ran {run.steps} states, the max_steps limit; state {ex.state!r} failed "
                f"({type(error).__name__}) and its failure was to be routed to {target!r}. If the loop is "
                "intended, raise Agent(max_steps=...); otherwise give the route an exit condition"
            ), wrap=False)
            return True
        graph = self.agent.graph
        if target not in graph.edges.get(ex.state, ()):
            graph.add_edge(ex.state, target, "runtime")
        if ex.branch is not None:  # a payload branch goes on alone, with its payload
            from ._map import route_failure

            try:
                route_failure(self, ex, target, error)  # type: ignore[arg-type]
            except Exception as exc:
                self.run.control.fail(ex.state, exc, wrap=False)
                return True
            if self.run.durable:  # a map's record is in every checkpoint: one per routed branch only when durable
                self._record_route(ex, target, error)
            return True
        self._routing_error = error
        try:
            self.joins.finished(ex.token, (target,))
        except Exception as exc:  # a dependency condition raised while routing: fail the run, never hang
            self.run.control.fail(ex.state, exc, wrap=False)
            return True
        finally:
            self._routing_error = None
        track(self, target, error, ex.state)  # noted in checkpoints while it runs (_routes.py)
        self._record_route(ex, target, error)
        return True

    def _record_route(self, ex: Execution, target: str, error: BaseException) -> None:
        """Write the routed failure into the run's history: a ``"route"`` checkpoint whose ``error``
        is the failure and whose ``metadata["route"]`` says which state went where (a resume from it
        runs the route's state)."""
        run = self.run
        if run.store is None or run.failure is not None:
            return
        payload = getattr(ex, "index", None) if ex.branch is not None else None
        run.checkpoints.save("route", error, {"route": {"state": ex.state, "to": target, "attempts": ex.attempt,
                                                        "payload": payload}})

    def _finish_state(self, ex: Execution, meta: StateMetadata, result: Any, duration: float) -> None:
        run, agent = self.run, self.agent
        name = ex.state
        if result.__class__ is str and result in agent.states:
            names: tuple[str, ...] = (result,)  # the common case, without next_states' checks
        else:
            try:
                names = next_states(agent, name, result)
            except (InvalidStateResultError, StateNotFoundError, ConfigurationError) as exc:
                meta.status = StateStatus.FAILED
                run.control.fail(name, exc, wrap=False)
                return
        run.record_completion(name, meta, duration)
        known = agent.graph.edges.get(name)
        if known is None or len(names) != 1 or names[0] not in known:  # (one known edge: the usual case)
            agent.graph.observe(name, names)
        if run.events.stepwise:
            run.events.publish(StateFinished(run.name, run.run_id, run.clock.monotonic(), name, ex.attempt,
                                             duration, names))
        if run.failure is not None:
            return
        if run.steps >= agent.max_steps and names:
            run.control.fail(name, MaxStepsExceededError(
                f"agent {run.name!r} ran {run.steps} states, the max_steps limit; state {name!r} "
                f"wanted to continue to {list(names)}. If the loop is intended, raise "
                "Agent(max_steps=...); otherwise give the loop an exit condition"
            ), wrap=False)
            return
        try:
            if type(names) is tuple:
                if len(names) != 1 or not self.joins.arrive(ex.token, names[0]):  # arrive: a branch at its join
                    self.joins.finished(ex.token, names)
            else:  # a Fanout: payload branches (_map.py)
                from ._map import start_map

                start_map(self, ex, names)  # type: ignore[arg-type]
            if agent.has_dependents:
                run.deps.on_completed(name, agent.states[name])
        except Exception as exc:  # a dependency condition raised while routing: fail the run, never hang
            run.control.fail(name, exc, wrap=False)
            return
        if run.durable and run.store is not None:
            run.checkpoints.save("state")

