"""The run loop: launching states, retries, timeouts, joins, dependencies, failure.

Push model: there is no central polling loop. When a state's task ends it routes its
branch onward (``_graph.Joins``), which launches the next states directly; ``run()`` just
awaits a future that resolves when no work is left. This keeps a transition to one task
creation plus a little bookkeeping.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import logging
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from . import _hooks
from ._checkpoint import Checkpoint, HumanAnswerRecord
from ._context import Context
from ._errors import (
    AgentRunningError,
    InvalidStateResultError,
    MaxStepsExceededError,
    RunTimeoutError,
    StateNotFoundError,
    StateTimeoutError,
)
from ._events import (
    RunFinished,
    RunStarted,
    StateBlocked,
    StateCancelled,
    StateFailed,
    StateFinished,
    StateRetrying,
    StateScheduled,
    StateStarted,
)
from ._executor import check_executors, state_executor
from ._graph import Joins, Token
from ._policies import DependencyLifecycle, check_timeout
from ._result import RunResult
from ._status import AgentStatus, StateStatus

if TYPE_CHECKING:
    from ._agent import Agent

log = logging.getLogger("fluffy_nb")
_ids = itertools.count(1)


class Execution:
    """One run of one state (including its retries)."""

    __slots__ = ("id", "state", "token", "task", "attempt", "source", "cancel_reason", "requeue", "deadline")

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

    def __lt__(self, other: Execution) -> bool:
        return self.id < other.id

    def __repr__(self) -> str:
        return f"Execution({self.state!r}, id={self.id}, attempt={self.attempt})"


class RunnerMixin:
    """Scheduling half of :class:`Agent` (kept apart to keep modules small)."""

    # attributes provided by Agent
    name: str
    states: dict[str, Any]
    state_metadata: dict[str, Any]

    def _init_run_state(self: Agent) -> None:
        self.run_id = ""
        self._shared: dict[str, Any] = dict(self._initial)
        self._typed: dict[str, Any] = {}
        self.completed_states: list[str] = []
        self._completed_set: set[str] = set()
        self.completion_counts: Counter[str] = Counter()
        self._last_completed: dict[str, float] = {}
        self._ended: set[str] = set()
        self._consumed: Counter[tuple[str, str]] = Counter()
        self._last_started: dict[str, float] = {}
        self._running_states: dict[int, Execution] = {}
        self.priority_queue: list[tuple[int, Execution]] = []
        self._pending: dict[str, Execution] = {}
        self._parked: list[Execution] = []
        self._human_answers: list[HumanAnswerRecord] = []
        self._steps = 0
        self._sequence = 0
        self._failure: BaseException | None = None
        self._done: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False
        self._run_active = False
        self._restored: Checkpoint | None = None
        self._started_at = 0.0
        self._joins = Joins(self.graph, self._start, self._is_pending)
        self._last_checkpoint_id: str | None = None
        self._wakeups: dict[int, asyncio.Task[None]] = {}  # PERIODIC states waiting out an interval

    # -- run --------------------------------------------------------------------------------
    async def run(
        self: Agent,
        timeout: float | None = None,
        cleanup_timeout: float | None = 10.0,
        *,
        start: str | list[str] | None = None,
        initial_context: dict[str, Any] | None = None,
    ) -> RunResult:
        """Run the workflow until no state is left to run.

        Args:
            timeout: Fail with ``RunTimeoutError`` after this many seconds.
            cleanup_timeout: How long cancelled states get to finish their cleanup.
            start: Start state(s) instead of those found from the graph.
            initial_context: Shared values every state sees from the start.

        Returns:
            A :class:`RunResult` with the final data and status.

        Raises:
            StateFailedError: a state failed for good (the original exception is chained).
            RunTimeoutError: the run took longer than ``timeout``.
            AgentRunningError: the agent is already running.
        """
        if self._run_active:
            raise AgentRunningError(
                f"agent {self.name!r} is already running; await the running run (or its "
                "handle) instead of starting a second one"
            )
        timeout = check_timeout("run(timeout)", timeout)
        cleanup_timeout = check_timeout("run(cleanup_timeout)", cleanup_timeout)
        self._collect_class_states()
        self._check_dependency_cycles()
        self._check_gates()
        self._check_resources()
        await check_executors(self)
        restored = self._restored
        starts = self._start_states(start) if restored is None else []
        if restored is None:
            self._init_run_state()
            self._shared.update(initial_context or {})
            self.run_id = uuid.uuid4().hex
            for meta in self.state_metadata.values():
                meta.reset()
        else:
            self._restored = None
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._run_active = True
        self._paused = False
        self.status = AgentStatus.RUNNING
        self._started_at = self.clock.monotonic()
        if self.resource_pool is not None and hasattr(self.resource_pool, "bind_preemption"):
            self.resource_pool.bind_preemption(self._preempt)
        for observe in _hooks.run_observers:  # monitors subscribe before RunStarted
            observe(self)
        bus = self.events
        if bus.active:
            bus.publish(RunStarted(self.name, self.run_id, self._started_at, tuple(starts)))
        interval_task = None
        if self.checkpoint_interval:
            interval_task = loop.create_task(self._interval_checkpoints(self.checkpoint_interval))
        try:
            if restored is not None:
                self._relaunch(restored)
            else:
                self._joins.begin(starts)
                for name, spec in self.states.items():
                    if spec.dependencies and name not in starts and name not in self._pending:
                        token = self._joins.add_branch(name)
                        self._start(name, token)
            self._check_done()
            if timeout is None:
                await self._done
            else:
                done, _ = await asyncio.wait({self._done}, timeout=timeout)
                if not done:
                    in_flight = sorted(self._names_in_flight())  # before shutdown empties it
                    await self._shutdown(cleanup_timeout, "run timeout")
                    self._failure = RunTimeoutError(
                        f"agent {self.name!r} did not finish within run(timeout={timeout}); "
                        f"still running: {in_flight}. Raise the timeout or "
                        "give slow states their own timeout"
                    )
        except asyncio.CancelledError:
            await self._shutdown(cleanup_timeout, "run cancelled")
            self._finish_run(AgentStatus.CANCELLED, None)
            raise
        finally:
            if interval_task is not None:
                interval_task.cancel()
            self._run_active = False
        if self._failure is not None:
            failure = self._failure
            if self.status is not AgentStatus.CANCELLED:
                self._finish_run(AgentStatus.FAILED, failure)
                raise failure
        elif self.status is not AgentStatus.CANCELLED:
            self._finish_run(AgentStatus.COMPLETED, None)
        return RunResult.from_agent(self)

    def _finish_run(self: Agent, status: AgentStatus, error: BaseException | None) -> None:
        self.status = status
        for ex in self._parked:
            if ex.deadline is not None:
                ex.deadline.cancel()  # its dependency timeout must not fire after the run
            meta = self.state_metadata[ex.state]
            meta.status = StateStatus.CANCELLED
            if self.events.active:
                self.events.publish(StateCancelled(self.name, self.run_id, self.clock.monotonic(), ex.state,
                                                   "dependencies were never satisfied"))
        if self.store is not None or self.durable:
            trigger = {"completed": "completion", "failed": "failure", "cancelled": "cancel"}[status.value]
            self._save_checkpoint(trigger, error=error)
        if self.events.active:
            now = self.clock.monotonic()
            self.events.publish(RunFinished(self.name, self.run_id, now, status.value,
                                            None if error is None else f"{type(error).__name__}: {error}",
                                            now - self._started_at))

    def _start_states(self: Agent, start: str | list[str] | None) -> list[str]:
        if start is not None:
            names = [start] if isinstance(start, str) else list(start)
            for n in names:
                if n not in self.states:
                    raise StateNotFoundError(f"run(start={n!r}): agent {self.name!r} has no state {n!r}")
            return names
        targets = {dst for src, dst, _ in self.graph.edge_list() if src != dst}
        starts = [n for n, s in self.states.items() if not s.dependencies and n not in targets]
        if len(starts) > 1:
            # A name built at run time (return f"process_chunk_{i}") leaves its prefix
            # ("process_chunk_") in the code that builds it: such states are targets too.
            owners: dict[str, set[str]] = {}
            for other, strings in self._code_names.items():
                for s in strings:
                    if len(s) >= 3 and s not in self.states:
                        owners.setdefault(s, set()).add(other)
            starts = [n for n in starts if not any(
                owners.get(n[:k], {n}) - {n} for k in range(3, len(n))
            )] or starts
        if not starts and self.states:
            starts = [next(iter(self.states))]
        return starts

    def _check_gates(self: Agent) -> None:
        unknown = sorted(name for name, gates in self._gates.items() if gates and name not in self.states)
        if unknown:
            known = ", ".join(sorted(self.states)[:12])
            raise StateNotFoundError(
                f"agent {self.name!r} has rate limits or coordination for {unknown}, but no state of "
                f"that name (known: {known}); fix the name or add the state"
            )

    def _check_resources(self: Agent) -> None:
        pool = self.resource_pool
        if pool is None:
            return
        for name, spec in self.states.items():
            if spec.resources is not None and state_executor(self, spec) is None:
                pool.check(name, spec.resources)

    # -- scheduling -----------------------------------------------------------------------
    def _is_pending(self, state: str) -> bool:
        return state in self._pending

    def _start(self: Agent, state: str, token: Token, source: str | None = None) -> None:
        """Create a run of ``state`` for ``token`` and launch, queue or park it."""
        ex = Execution(state, token, source)
        self._pending[state] = ex
        meta = self.state_metadata[state]
        spec = self.states[state]
        if self.events.active:
            self.events.publish(StateScheduled(self.name, self.run_id, self.clock.monotonic(), state, source))
        if spec.dependencies and not self._deps_satisfied(ex, spec):
            meta.status = StateStatus.BLOCKED
            self._park(ex, spec)
            return
        self._enqueue(ex)
        if spec.dependencies:
            self._start_parallel_deps(ex, spec)  # also when nothing else made it wait

    def _enqueue(self: Agent, ex: Execution) -> None:
        meta = self.state_metadata[ex.state]
        meta.status = StateStatus.READY
        limit = self.max_concurrent
        if self._paused or (limit is not None and len(self._running_states) >= limit):
            heapq.heappush(self.priority_queue, (-self.states[ex.state].priority, ex))
        else:
            self._launch(ex)

    def _launch(self: Agent, ex: Execution) -> None:
        self._running_states[ex.id] = ex
        ex.task = asyncio.get_running_loop().create_task(self._execute(ex))

    def _dispatch(self: Agent) -> None:
        queue = self.priority_queue
        limit = self.max_concurrent
        while queue and not self._paused and (limit is None or len(self._running_states) < limit):
            _, ex = heapq.heappop(queue)
            self._launch(ex)

    def _check_done(self) -> None:
        if self._running_states:
            return
        if self._paused:
            if self._drained is not None and not self._drained.done():
                self._drained.set_result(None)
            return
        if self.priority_queue or self._wakeups:
            return
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)

    def _names_in_flight(self) -> set[str]:
        return {ex.state for ex in self._running_states.values()} | {ex.state for _, ex in self.priority_queue}

    # -- executing one state ----------------------------------------------------------------------
    async def _execute(self: Agent, ex: Execution) -> None:
        name = ex.state
        spec = self.states[name]
        meta = self.state_metadata[name]
        clock = self.clock
        bus = self.events
        gates = self._gates.get(name)
        pool = self.resource_pool if spec.resources is not None else None
        if pool is not None and state_executor(self, spec) is not None:
            pool = None  # a remote state's resources are the cluster's; its executor maps them
        owner = name
        if (pool is not None or gates) and name in self._held_owners(ex):
            owner = f"{name}#{ex.id}"
        held: list[Any] = []
        outcome: tuple[str, Any] = ("cancelled", None)
        try:
            if pool is not None:
                await self._pass_gate(ex, pool, owner, held, spec.resources)
            if gates:
                for gate in gates:
                    await self._pass_gate(ex, gate, owner, held, None)
            if self._pending.get(name) is ex:
                del self._pending[name]
            for dep, cfg in spec.dependencies.items():
                if cfg.lifecycle is DependencyLifecycle.PERIODIC:
                    self._consumed[(name, dep)] = self.completion_counts[dep]
            self._last_started[name] = clock.monotonic()
            is_async = spec.options["is_async"]
            executor = spec.options.get("executor")
            if executor is None and spec.options.get("remote"):
                executor = self.executor
            while True:
                ex.attempt += 1
                meta.attempts += 1
                meta.status = StateStatus.RUNNING
                t0 = clock.monotonic()
                meta.started_at = clock.time()
                if bus.active:
                    bus.publish(StateStarted(self.name, self.run_id, t0, name, ex.attempt))
                ctx = Context(self._shared, self._typed, agent=self, state_name=name, attempt=ex.attempt,
                              run_id=self.run_id)
                timer = None
                try:
                    if spec.timeout is not None:
                        async with asyncio.timeout(spec.timeout) as timer:
                            result = await self._call(spec, ctx, is_async, executor)
                    elif executor is None and is_async:
                        result = await spec.func(ctx)
                    else:
                        result = await self._call(spec, ctx, is_async, executor)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    duration = clock.monotonic() - t0
                    timed_out = timer is not None and timer.expired()
                    error: Exception = exc
                    if timed_out:
                        error = StateTimeoutError(
                            f"state {name!r} took longer than its timeout of {spec.timeout}s", name
                        )
                        error.__cause__ = exc
                    policy = spec.retry_policy
                    meta.last_error = f"{type(error).__name__}: {error}"
                    if policy is not None and policy.should_retry(error, ex.attempt - 1):
                        delay = policy.delay(ex.attempt)
                        meta.status = StateStatus.RETRYING
                        meta.retries += 1
                        if bus.active:
                            now = clock.monotonic()
                            bus.publish(StateFailed(self.name, self.run_id, now, name, ex.attempt, duration,
                                                    str(error), type(error).__name__, False, timed_out))
                            bus.publish(StateRetrying(self.name, self.run_id, now, name, ex.attempt + 1,
                                                      delay, str(error)))
                        if delay > 0:
                            await clock.sleep(delay)
                        continue
                    meta.status = StateStatus.TIMEOUT if timed_out else StateStatus.FAILED
                    meta.failures += 1
                    if bus.active:
                        bus.publish(StateFailed(self.name, self.run_id, clock.monotonic(), name, ex.attempt,
                                                duration, str(error), type(error).__name__, True, timed_out))
                    outcome = ("failed", error)
                    break
                duration = clock.monotonic() - t0
                outcome = ("ok", (result, duration))
                break
        except asyncio.CancelledError:
            outcome = ("cancelled", None)
        except Exception as exc:  # a gate refused (deadlock, barrier timeout, quota): fail, never hang
            meta.status = StateStatus.FAILED
            meta.last_error = f"{type(exc).__name__}: {exc}"
            outcome = ("failed", exc)
        finally:
            for gate in reversed(held):
                gate.release(owner)
            self._running_states.pop(ex.id, None)
            if self._pending.get(name) is ex:
                del self._pending[name]
        kind, value = outcome
        if kind == "ok":
            self._finish_state(ex, meta, *value)
        elif kind == "failed":
            self._ended.add(name)
            self._fail_run(name, value, attempts=ex.attempt)
        else:
            self._cancelled(ex, meta)
        self._dispatch()
        self._check_done()

    async def _call(self: Agent, spec: Any, ctx: Context, is_async: bool, executor: Any) -> Any:
        if executor is not None:
            return await self._resolve_executor(executor).run_state(spec, ctx)
        result = spec.func(ctx)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _resolve_executor(self: Agent, executor: Any) -> Any:
        if isinstance(executor, str):
            default = self.executor
            if default is not None and executor in (getattr(default, "name", None), "default"):
                return default
            raise StateNotFoundError(
                f"executor {executor!r} was asked for, but agent {self.name!r} has no executor of that "
                "name; pass Agent(..., executor=DaskExecutor(...))"
            )
        return executor

    async def _pass_gate(self: Agent, ex: Execution, gate: Any, owner: str, held: list[Any], req: Any) -> None:
        args = (owner,) if req is None else (owner, req)
        if not gate.try_acquire(*args):
            meta = self.state_metadata[ex.state]
            meta.status = StateStatus.BLOCKED
            if self.events.active:
                self.events.publish(StateBlocked(self.name, self.run_id, self.clock.monotonic(), ex.state,
                                                 f"waiting for {gate!r}"))
            if req is None:
                await gate.acquire(owner)
            else:
                await gate.acquire(owner, req, self.states[ex.state].priority)
        held.append(gate)

    def _held_owners(self, me: Execution) -> set[str]:
        return {ex.state for ex in self._running_states.values() if ex is not me}

    # -- outcomes -------------------------------------------------------------------------------
    def _normalize(self: Agent, name: str, result: Any) -> tuple[str, ...]:
        if result is None:
            return ()
        if isinstance(result, str):
            names: tuple[str, ...] = (result,)
        elif isinstance(result, (list, tuple)) and all(isinstance(r, str) for r in result):
            names = tuple(dict.fromkeys(result))
        else:
            raise InvalidStateResultError(
                f"state {name!r} returned {result!r} ({type(result).__name__}); a state must return "
                "the next state's name, a list of names to run in parallel, or None to end"
            )
        states = self.states
        for n in names:
            if n not in states:
                known = ", ".join(sorted(states)[:12])
                raise StateNotFoundError(
                    f"state {name!r} returned {n!r}, which is not a state of agent {self.name!r} "
                    f"(known: {known}); add it with agent.add_state({n!r}, func) or fix the name"
                )
        return names

    def _finish_state(self: Agent, ex: Execution, meta: Any, result: Any, duration: float) -> None:
        name = ex.state
        try:
            names = self._normalize(name, result)
        except (InvalidStateResultError, StateNotFoundError) as exc:
            meta.status = StateStatus.FAILED
            self._fail_run(name, exc, wrap=False)
            return
        meta.status = StateStatus.COMPLETED
        meta.runs += 1
        meta.last_duration = duration
        meta.finished_at = self.clock.time()
        if len(meta.durations) < 10_000:
            meta.durations.append(duration)
        if name not in self._completed_set:
            self._completed_set.add(name)
            self.completed_states.append(name)
        self.completion_counts[name] += 1
        if self._human_answers:
            self._human.state_completed(name)
        self._last_completed[name] = self.clock.monotonic()
        self._ended.add(name)
        self._steps += 1
        graph = self.graph
        for n in names:
            if n not in graph.edges.get(name, ()):
                graph.add_edge(name, n, "runtime")
        if self.events.active:
            self.events.publish(StateFinished(self.name, self.run_id, self.clock.monotonic(), name, ex.attempt,
                                              duration, names))
        if self._failure is not None:
            return
        if self._steps >= self.max_steps and names:
            self._fail_run(name, MaxStepsExceededError(
                f"agent {self.name!r} ran {self._steps} states, the max_steps limit; state {name!r} "
                f"wanted to continue to {list(names)}. If the loop is intended, raise "
                "Agent(max_steps=...); otherwise give the loop an exit condition"
            ), wrap=False)
            return
        self._joins.finished(ex.token, names)
        if self._parked:
            self._recheck_parked()
        spec = self.states[name]
        if spec.dependencies and any(
            c.lifecycle is DependencyLifecycle.PERIODIC for c in spec.dependencies.values()
        ) and name not in self._pending:
            self._start(name, self._joins.add_branch(name))
        if self.durable and self.store is not None:
            self._save_checkpoint("state")
