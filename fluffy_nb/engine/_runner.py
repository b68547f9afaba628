"""Scheduler: launching, queueing and executing the states of one run.

Push model: there is no central polling loop. When a state's task ends it routes its branch
onward (``_graph.Joins``), which launches the next states directly; the run just awaits a
future that resolves when no work is left. A state's execution is three steps: admission
(resource pool and gates: ``_admission``), ``_attempts`` (the body, with timeout and retries;
calling it, reading what it returned and where a failure is routed live in ``_attempt``) and
``_complete`` (route the result, or hand a failure or cancellation to ``RunControl``; in
``_outcomes``). A plain state (no pool, gates, dependencies, executor or timeout) skips the
first two: its first attempt runs inline in ``_run_branch``, whose inner loop also steps a
quiet chain in place. A list
return launches all its branches in one loop (``start_all``, called by ``Joins``), each as
its own task: every branch of a fan-out is in flight at once.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
from typing import TYPE_CHECKING, Any

from ._admission import Admission
from ._attempt import call_body, cancel_requested, self_cancelled
from ._context import Context, blank, fill
from ._errors import (
    StateFailedError,
    StateTimeoutError,
)
from ._events import StateFailed, StateRetrying, StateScheduled, StateStarted
from ._graph import Joins, Token
from ._outcomes import Outcomes
from ._status import StateStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._agent import Agent
    from ._policies import StateSpec
    from ._run import Run
    from ._state import StateMetadata

_ids = itertools.count(1)
# read once: an enum member looked up on its class is a Python-level lookup in 3.11
_READY = StateStatus.READY


class Execution:
    """One run of one state (including its retries)."""

    __slots__ = ("attempt", "cancel_reason", "deadline", "error", "id", "requeue", "source", "state", "task", "token")
    branch: Any = None  # the map of a payload branch (``_map.PayloadExecution`` sets it); None for plain states

    def __init__(self, state: str, token: Token, source: str | None) -> None:
        self.id = next(_ids)
        self.state = state
        self.token = token
        self.task: asyncio.Task[None] | None = None
        self.attempt = 0
        self.source = source
        self.cancel_reason: str | None = None
        self.requeue = False
        self.deadline: asyncio.Task[None] | None = None
        self.error: BaseException | None = None  # the failure that routed this branch here (on_error)

    def __lt__(self, other: Execution) -> bool:
        return self.id < other.id

    def __repr__(self) -> str:
        return f"Execution({self.state!r}, id={self.id}, attempt={self.attempt})"


class Scheduler(Outcomes):
    """Starts, queues (``max_concurrent``, priority) and executes the states of one run.

    Args:
        run: The run whose states it schedules.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.agent: Agent = run.agent
        self.running: dict[int, Execution] = {}
        self.queue: list[tuple[int, Execution]] = []
        self.pending: dict[str, Execution] = {}  # state -> its execution not started yet
        self.paused = False
        self._carrier: asyncio.Task[None] | None = None  # the task completing a state, while it routes
        self._next: Execution | None = None  # the execution that task runs next, in place
        self._routing_error: BaseException | None = None  # while a failure is routed by on_error
        self.done: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self._retry_waits: dict[int, tuple[Execution, float]] = {}  # waiting out a retry delay
        self._branch_locals: tuple[Any, ...] | None = None  # _read_branch_locals, once a branch runs
        self.admission = Admission(run)  # the resource pool and gates before a state runs
        self._gated = run.agent.gate_map  # state -> its gates (the agent's own dict, kept up to date)
        states = run.agent.states
        # the pending dict's own __contains__: the joins ask it on every transition
        self.joins = Joins(run.agent.graph, self.start, self.pending.__contains__,
                           lambda s: bool(states[s].options.get("join")) if s in states else False,
                           self.start_all)

    # -- starting ---------------------------------------------------------------------------
    def is_pending(self, state: str) -> bool:
        """Whether an execution of ``state`` exists that has not started its body yet."""
        return state in self.pending

    def begin(self, starts: list[str]) -> None:
        """Start ``starts``, and every dependency-gated state as a branch waiting for its dependencies."""
        self.joins.begin(starts)
        for name, spec in self.agent.states.items():
            if spec.dependencies and name not in starts and name not in self.pending:
                self.start(name, self.joins.add_branch(name))

    def start(self, state: str, token: Token, source: str | None = None) -> None:
        """Create an execution of ``state`` for branch ``token`` and launch, queue or park it."""
        run = self.run
        ex = Execution(state, token, source)
        ex.error = self._routing_error
        self.pending[state] = ex
        spec = self.agent.states[state]
        if run.events.active and run.events.wants(StateScheduled):
            run.events.publish(StateScheduled(run.name, run.run_id, run.clock.monotonic(), state, source))
        deps = run.deps
        if spec.dependencies and not deps.satisfied(ex, spec):
            run.meta(state).status = StateStatus.BLOCKED
            deps.park(ex, spec)
            return
        self.enqueue(ex)
        if spec.dependencies:
            deps.start_parallel(ex, spec)  # also when nothing else made it wait

    def start_all(self, tokens: list[Token], absorbed: Callable[[Token], None]) -> None:
        """:meth:`start` each branch of ``tokens`` (the states of one list return), in order, or
        hand it to ``absorbed`` when its state has an unstarted run already. One loop for a whole
        fan-out: what :meth:`start`, :meth:`enqueue` and :meth:`_launch` read is read once, and a
        state without dependencies is launched here; one with dependencies goes through ``start``."""
        run = self.run
        states, pending, running, metadata = self.agent.states, self.pending, self.running, run.metadata
        bus, error, limit = run.events, self._routing_error, self.agent.max_concurrent
        scheduled = bus.active and bus.wants(StateScheduled)  # (built only for a subscriber that reads them)
        loop = asyncio.get_running_loop()
        create_task, branch = loop.create_task, self._branch
        if (type(loop).create_task is asyncio.BaseEventLoop.create_task and loop.get_task_factory() is None
                and not loop.get_debug()):
            # what create_task does then, without its closed-loop and factory checks per branch
            create_task = functools.partial(asyncio.Task, loop=loop)
        for token in tokens:
            name = token.state
            if name in pending:
                absorbed(token)
                continue
            spec = states[name]
            if spec.dependencies:
                self.start(name, token)
                continue
            ex = Execution(name, token, None)
            ex.error = error
            pending[name] = ex
            if scheduled:
                bus.publish(StateScheduled(run.name, run.run_id, run.clock.monotonic(), name, None))
            (metadata.get(name) or run.meta(name)).status = _READY
            if self.paused or (limit is not None and len(running) >= limit):
                heapq.heappush(self.queue, (-spec.priority, ex))
            elif self._carrier is not None and self._next is None:
                self._launch(ex)  # the first goes on in the task that routed here
            else:
                running[ex.id] = ex
                ex.task = create_task(branch(ex))

    def enqueue(self, ex: Execution) -> None:
        """Launch ``ex`` now, or queue it (paused, or at ``max_concurrent``)."""
        run = self.run
        (run.metadata.get(ex.state) or run.meta(ex.state)).status = _READY
        limit = self.agent.max_concurrent
        if self.paused or (limit is not None and len(self.running) >= limit):
            heapq.heappush(self.queue, (-self.agent.states[ex.state].priority, ex))
        else:
            self._launch(ex)

    def _launch(self, ex: Execution) -> None:
        self.running[ex.id] = ex
        carrier = self._carrier
        if carrier is not None and self._next is None:
            # a branch going on: its next state runs in the task that just finished one
            self._next = ex
            ex.task = carrier
            return
        ex.task = asyncio.get_running_loop().create_task(self._branch(ex))

    def dispatch(self) -> None:
        """Launch queued executions while slots are free."""
        queue = self.queue
        limit = self.agent.max_concurrent
        while queue and not self.paused and (limit is None or len(self.running) < limit):
            _, ex = heapq.heappop(queue)
            self._launch(ex)

    def check_done(self) -> None:
        """Resolve the run's ``done`` future (or a pause's ``drained``) once no work is left."""
        if self.running:
            if self.paused:
                self.idle_while_paused()
            return
        if self.paused:
            if self.drained is not None and not self.drained.done():
                self.drained.set_result(None)
            return
        if self.queue or self.run.deps.waking() or self.run.deps.settle():
            return  # settle: a parked state's timeout keeps the run alive, or one that cannot start fails it
        done = self.done
        if done is not None and not done.done():
            done.set_result(None)

    def idle(self, ex: Execution) -> bool:
        """Whether the running ``ex`` is idle for a pause: it waits for a person (its form stays
        open: a pause need not wait for an answer that may never come) or hosts a paused child run."""
        run = self.run
        if run.human.asks(run.run_id, ex.state, getattr(ex, "index", None)):  # (a map branch: its own question)
            return True
        child = run.children.get(ex.state)
        return child is not None and child.paused

    def idle_while_paused(self) -> None:
        """Resolve a pause's ``drained`` once every running state is :meth:`idle`."""
        drained = self.drained
        if drained is not None and not drained.done() and all(map(self.idle, self.running.values())):
            drained.set_result(None)

    def names_in_flight(self) -> set[str]:
        """States running or queued."""
        return {ex.state for ex in self.running.values()} | {ex.state for _, ex in self.queue}

    # -- executing a branch --------------------------------------------------------------------------
    async def _branch(self, first: Execution) -> None:
        """A branch's task: :meth:`_run_branch`, whose frame (many locals, for speed) exists only
        once the task starts. A task made but not started yet holds this small frame alone: in
        a 10,000-state fan-out all of them wait at once, and the larger frame cost 1.6 MB.

        An exception out of the branch is a fault of the engine's own (a state's errors are
        caught where it runs): the run fails with it, named, rather than waiting forever for a
        branch that is gone."""
        try:
            await self._run_branch(first)
        except Exception as exc:
            self._broken(first, exc)

    def _broken(self, first: Execution, exc: Exception) -> None:
        """The branch ``first`` began raised ``exc`` outside any state: drop the executions of its
        task and fail the run, naming the state its token was at."""
        me = asyncio.current_task()
        for ex in [ex for ex in self.running.values() if ex.task is me]:
            del self.running[ex.id]
        name = first.token.state
        error = StateFailedError(
            f"fluffy_nb failed while running or routing state {name!r} ({type(exc).__name__}: {exc}); this "
            "is an error in fluffy_nb itself, not in the state: please report it with this traceback", name)
        error.__cause__ = exc
        self.run.control.fail(name, error, wrap=False)
        self.check_done()

    async def _run_branch(self, first: Execution) -> None:
        """Run ``first``, then the states its branch goes on to, one after another in this task.

        A task is made only where branches fork: when a finished state routes its branch to
        exactly one next state that may start now, that state runs here, awaited in place. A
        plain state (no pool, gates, dependencies, executor or timeout; an async body) runs its
        first attempt right here, without the coroutine layers of ``_execute``/``_attempts``:
        those are entered only for the states that need them, or once a first attempt failed.

        A quiet chain hops: when a plain state returns the name of one plain state that its
        lone branch may start now, with nothing but the chain to see it (no reader of per-state
        events: ``bus.stepwise``; no pause, queue, cancel, failure, dependency, person's answer,
        join, durable store or max_steps near), the inner loop records the completion, begins
        the next state at the same instant and goes round again: what ``_complete`` ->
        ``Joins.finished`` -> ``start`` and this loop's top would do, without their checks,
        calls and allocations. Anything else leaves for the general path (``_ended``).
        """
        ex: Execution | None = first
        task = first.task  # this task: _launch made it for ``first`` (asyncio.current_task is Python-level in 3.11)
        run, agent, run_id = self.run, self.agent, self.run.run_id
        (states, metadata, pending, running, bus, durable, edges, monotonic, wall,
         gated) = self._branch_locals or self._read_branch_locals()
        while ex is not None:
            name = ex.state
            spec = states[name]
            if not spec.inline or ex.branch is not None or gated.get(name):
                general, meta = await self._execute(ex)
                ex = self._ended(ex, task, meta, general, None, 0.0)
                continue
            if pending.get(name) is ex:
                del pending[name]
            meta = metadata.get(name) or run.meta(name)
            ex.attempt += 1
            t0 = monotonic()
            meta.begin_attempt(wall())
            token = ex.token
            group = token.group
            may_hop = group.parent is None and task is not None and not durable  # a root branch in its own task
            result: Any = None
            duration = 0.0
            # (a restore replaces these, never while the run is live)
            counts, done_order, shared, typed = run.completion_counts, run.completed_states, run.shared, run.typed
            if bus.stepwise:  # (a hop is taken only when not: the states hopped to start unseen)
                bus.publish(StateStarted(run.name, run.run_id, t0, name, ex.attempt))
            while True:  # this state, then each state a quiet chain hops to
                ctx = blank()  # Context.of_state(run, name, ex.attempt, ex.error), without its call
                fill(ctx, (shared, typed, run, agent, name, ex.attempt, run_id, ex.error))
                try:
                    result = await spec.func(ctx)
                except BaseException as exc:  # retries, a cancel, a failure: the general path, below
                    error: BaseException | None = exc
                    break
                t1 = monotonic()
                duration = t1 - t0
                error = None
                if not (may_hop and result.__class__ is str and (target := states.get(result)) is not None
                        and target.inline and not gated.get(result) and not self.paused and not self.queue
                        and ex.cancel_reason is None and run.failure is None and not bus.stepwise
                        and not run.human_answers and not agent.has_dependents and not group.joins
                        and len(group.members) == 1 and run.steps + 1 < agent.max_steps
                        and result in edges.get(name, ()) and not task.cancelling()):  # type: ignore[union-attr]
                    break
                nxt = metadata.get(result) or run.meta(result)  # (a state added before a prepared run began)
                meta.hand_over(duration, wall(), nxt)
                n = counts.get(name)  # run.record_completion's counts, in place
                if n is None:
                    done_order.append(name)
                    counts[name] = 1
                else:
                    counts[name] = n + 1
                run.steps += 1
                active = group.active  # the lone branch's group: ``name`` is its only active state
                del active[name]
                active[result] = 1
                token.state = ex.state = result
                ex.attempt = 1
                ex.error = None
                spec, meta, name, t0 = target, nxt, result, t1
            # outside the handler, so a later attempt's error is not chained to this one
            outcome = None if error is None else await self._after_first(ex, spec, meta, error, t0)
            running.pop(ex.id, None)
            ex = self._ended(ex, task, meta, outcome, result, duration)

    def _read_branch_locals(self) -> tuple[Any, ...]:
        """What every branch of this run reads before it starts (see ``_run_branch``), read once:
        a 10,000-state fan-out read it 10,000 times. All of it stays put while the run is live
        (the agent's graph and states dicts, the run's metadata, clock and bus; whether it is
        durable is settled before its first state)."""
        run, agent = self.run, self.agent
        self._branch_locals = (agent.states, run.metadata, self.pending, self.running, run.events,
                               run.durable and run.store is not None, agent.graph.edges, run.clock.monotonic,
                               run.clock.time, self._gated)
        return self._branch_locals

    def _ended(self, ex: Execution, task: asyncio.Task[None] | None, meta: StateMetadata,
               outcome: tuple[str, Any] | None, result: Any, duration: float) -> Execution | None:
        """``ex`` ended: with ``outcome``, or (None) its inline attempt returned ``result`` in
        ``duration`` seconds. Route it; return the execution this task runs next, if any."""
        if task is not None:
            while task.cancelling():  # a cancel meant for the state that just ended
                task.uncancel()
        self._carrier, self._next = task, None
        try:
            if outcome is not None:
                self._complete(ex, meta, outcome)
            elif not self.arrived(ex, meta, result, duration):  # (a fan-out's branch waiting at its join)
                self._succeeded(ex, meta, result, duration)
        finally:
            self._carrier = None
        nxt, self._next = self._next, None
        if nxt is not None and (nxt.cancel_reason is not None or self.run.failure is not None):
            self._drop_unstarted(nxt)
            return None
        return nxt

    async def _after_first(self, ex: Execution, spec: StateSpec, meta: StateMetadata, exc: BaseException,
                           t0: float) -> tuple[str, Any]:
        """The first attempt of a plain state (run inline by ``_branch``) raised ``exc``: what
        ``_attempts`` does after an attempt fails (a cancel, a retry, a failure for good)."""
        try:
            if isinstance(exc, asyncio.CancelledError):
                if cancel_requested():
                    return ("cancelled", None)
                exc = self_cancelled(ex.state)
            if not await self._retry_wait(ex, spec, meta, exc, self.run.clock.monotonic() - t0):
                return ("failed", exc)
            return await self._attempts(ex, spec, meta)
        except asyncio.CancelledError:
            return ("cancelled", None)

    def _drop_unstarted(self, ex: Execution) -> None:
        """``ex`` was routed here but its run failed or it was cancelled before it began."""
        self.running.pop(ex.id, None)
        if self.pending.get(ex.state) is ex:
            del self.pending[ex.state]
        self.run.control.cancelled(ex, self.run.meta(ex.state))
        self.dispatch()
        self.check_done()

    # -- executing one state ----------------------------------------------------------------------
    async def _execute(self, ex: Execution) -> tuple[tuple[str, Any], StateMetadata]:
        spec = self.agent.states[ex.state]
        meta = self.run.metadata.get(ex.state) or self.run.meta(ex.state)
        held: list[tuple[Any, str]] = []
        outcome: tuple[str, Any] = ("cancelled", None)
        try:
            gates = self.agent.gates_of(ex.state)
            if spec.resources is not None or spec.dependencies or gates:
                await self.admission.admit(ex, spec, gates, held)
            if self.pending.get(ex.state) is ex:
                del self.pending[ex.state]
            if spec.dependencies:
                self.run.deps.on_started(ex.state, spec)
            outcome = await self._attempts(ex, spec, meta)
        except asyncio.CancelledError:
            outcome = ("cancelled", None)
        except Exception as exc:  # a gate refused (deadlock, barrier timeout, quota): fail, never hang
            meta.status = StateStatus.FAILED
            meta.last_error = f"{type(exc).__name__}: {exc}"
            outcome = ("failed", exc)
        finally:
            for gate, owner in reversed(held):
                gate.release(owner)
            self.running.pop(ex.id, None)
            if self.pending.get(ex.state) is ex:
                del self.pending[ex.state]
        return outcome, meta

    def gate_waits(self) -> list[tuple[Execution, Any, Any, float]]:
        """Executions waiting at a resource pool or gate: ``(execution, gate, request, since)``."""
        return self.admission.waits()

    def retry_waits(self) -> list[tuple[Execution, float]]:
        """Executions waiting out a retry delay: ``(execution, clock time of the next attempt)``."""
        return list(self._retry_waits.values())

    async def _attempts(self, ex: Execution, spec: StateSpec, meta: StateMetadata) -> tuple[str, Any]:
        """Run the body until it returns, or fails for good; retries wait out their delay."""
        run = self.run
        clock, bus = run.clock, run.events
        name = ex.state
        executor = self._executor_of(spec)
        fast = executor is None and spec.timeout is None and spec.options["is_async"]
        plain = ex.branch is None
        while True:
            ex.attempt += 1
            t0 = clock.monotonic()
            meta.begin_attempt(clock.time())
            if bus.stepwise:
                bus.publish(StateStarted(run.name, run.run_id, t0, name, ex.attempt))
            if plain:
                ctx = Context.of_state(run, name, ex.attempt, ex.error)
            else:
                ctx = ex.context(run)  # type: ignore[attr-defined]  # a payload branch (_map.py)
            try:
                result = await spec.func(ctx) if fast else await call_body(spec, ctx, executor)
            except asyncio.CancelledError:
                if cancel_requested():
                    raise
                error: BaseException = self_cancelled(name)
            except BaseException as exc:
                error = exc
            else:
                return ("ok", (result, clock.monotonic() - t0))
            if not await self._retry_wait(ex, spec, meta, error, clock.monotonic() - t0):
                return ("failed", error)

    async def _retry_wait(self, ex: Execution, spec: StateSpec, meta: StateMetadata, error: BaseException,
                          duration: float) -> bool:
        """Record a failed attempt and wait out the delay before the next; False when it failed for good."""
        delay = self._retry_delay(ex, spec, meta, error, duration)
        if delay is None:
            return False
        if delay > 0:
            clock = self.run.clock
            self._retry_waits[ex.id] = (ex, clock.monotonic() + delay)
            try:
                await clock.sleep(delay)
            finally:
                del self._retry_waits[ex.id]
        return True

    def _retry_delay(
        self, ex: Execution, spec: StateSpec, meta: StateMetadata, error: BaseException, duration: float
    ) -> float | None:
        """Record a failed attempt; the delay before the next one, or None when it failed for good."""
        run = self.run
        bus = run.events
        timed_out = isinstance(error, StateTimeoutError)
        policy = spec.retry_policy
        meta.last_error = f"{type(error).__name__}: {error}"
        retry = isinstance(error, Exception) and policy is not None and policy.should_retry(error, ex.attempt - 1)
        if retry:
            meta.status = StateStatus.RETRYING
            meta.retries += 1
        else:
            meta.status = StateStatus.TIMEOUT if timed_out else StateStatus.FAILED
            meta.failures += 1
        if bus.active:
            bus.publish(StateFailed(run.name, run.run_id, run.clock.monotonic(), ex.state, ex.attempt, duration,
                                    str(error), type(error).__name__, not retry, timed_out, error,
                                    getattr(ex, "index", None)))
        if not retry:
            return None
        assert policy is not None
        delay = policy.delay(ex.attempt)
        if bus.active:
            bus.publish(StateRetrying(run.name, run.run_id, run.clock.monotonic(), ex.state, ex.attempt + 1,
                                      delay, str(error)))
        return delay

    def _executor_of(self, spec: StateSpec) -> Any:
        executor = spec.options.get("executor")
        if executor is None and spec.options.get("remote"):
            executor = self.agent.executor
        return None if executor is None else self.agent.resolve_executor(executor)
