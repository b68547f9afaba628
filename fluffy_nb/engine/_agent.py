"""Agent: the definition of a workflow, and the spec's controls of its latest run.

An ``Agent`` holds states, the graph, options, the store, the event bus and the human loop.
Each ``run()`` makes a :class:`~fluffy_nb.engine._run.Run` (one execution) and awaits it;
many may be live at once. The spec's run-level names (``agent.status``, ``agent.get_state``,
``agent.pause()``...) act on the agent's latest run. Registration checks live here; the
start-state rule is ``_starts.py``; travel through checkpoints ``_travel.py``; background
runs ``_handle.py``; coordination ``coordination/_api.py``; what the agent says and does about
its runs (the latest run's names, people, checkpoints) ``_agent_runs.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from . import _hooks, _travel
from ._agent_runs import AgentRuns
from ._clock import Clock, SystemClock
from ._errors import ConfigurationError, StateNotFoundError
from ._events import EventBus, StateAdded
from ._executor import check_executors
from ._graph import StateGraph
from ._handle import RunHandle, run_blocking, start_background
from ._hitl import HumanLoop
from ._hooks import mimebundle
from ._map import Send
from ._policies import check_max_concurrent, check_timeout
from ._reader import is_pattern
from ._registration import build_spec, check_definition, check_store, link_state
from ._registry import RunRegistry
from ._resources import ResourcePool
from ._run import Run
from ._starts import start_states
from ._state import StateMetadata, state_options
from ._subflow import check_no_subflow_options, make_subflow

if TYPE_CHECKING:
    from ._policies import StateSpec
    from ._result import RunResult
    from .coordination._coordinator import Coordinator
    from .coordination._primitives import Primitive, PrimitiveType
    from .coordination._rate_limit import RateLimiter, RateLimitStrategy

StateResult = str | list[str] | Send | Sequence[str | Send] | None
"""What a state returns: the next state's name, names to run concurrently, ``Send`` entries (a state
run once per payload, beside any names), or None."""


class Agent(AgentRuns):
    """A workflow: named async states that hand control to each other.

    Args:
        name: The agent's name (defaults to the class name for subclasses).
        max_concurrent: At most this many states of one run run at once (None: no limit).
        checkpoint_interval: Seconds between automatic checkpoints while running (without a
            ``store``, kept in a new ``MemoryStore`` holding the last 100 of each run:
            ``agent.history()`` lists them).
        resource_pool: The :class:`ResourcePool` states with ``resources=`` are admitted against.
            By default (``"machine"``) a pool sized from this machine (psutil: logical CPUs,
            memory; NVML GPUs), made the first time it is needed, so resource requirements are
            honoured out of the box and states without requirements never touch it. ``None``:
            no pool, requirements are not enforced. An agent used as a sub-workflow state on
            the default uses its root run's pool (one machine budget); one given a pool (or
            ``None``) explicitly uses that.
        store: A checkpoint store (``MemoryStore()``, ``SQLiteStore(path)``); checkpoints go there.
        durable: Checkpoint to ``store`` after every state that finishes (needs a store).
        max_steps: Guard against endless loops: a run may execute at most this many states.
        clock: Injectable time source (tests use ``ManualClock``).
        responder: Who answers ``human_in_the_loop`` (default: chosen for the environment).
        executor: The executor states added with ``remote=True`` (or ``executor="default"``)
            run on, e.g. a ``DaskExecutor``; other states run on the event loop.

    Example:
        >>> agent = Agent("hello")
        >>> async def greet(ctx):
        ...     ctx.set_state("greeting", "hi")
        ...     return None
        >>> _ = agent.add_state("greet", greet)
        >>> import asyncio
        >>> asyncio.run(agent.run()).get_state("greeting")
        'hi'
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        max_concurrent: int | None = None,
        checkpoint_interval: float | None = None,
        resource_pool: ResourcePool | Literal["machine"] | None = "machine",
        store: Any = None,
        durable: bool = False,
        max_steps: int = 100_000,
        clock: Clock | None = None,
        responder: Any = None,
        executor: Any = None,
    ) -> None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigurationError(f"Agent(max_steps={max_steps!r}): must be a whole number >= 1")
        self.name = name or type(self).__name__
        from uuid import uuid4  # here, not at import: uuid loads platform (~3 ms)

        self.id = uuid4().hex
        self.max_concurrent = check_max_concurrent(max_concurrent)
        self.checkpoint_interval = check_timeout("Agent(checkpoint_interval)", checkpoint_interval)
        if resource_pool is not None and resource_pool != "machine" and not isinstance(resource_pool, ResourcePool):
            raise ConfigurationError(f"Agent(resource_pool={resource_pool!r}): pass a ResourcePool, \"machine\" "
                                     "(a pool sized from this machine, the default) or None (no pool)")
        self._resource_pool: ResourcePool | str | None = resource_pool
        self._own_pool = resource_pool != "machine"  # given explicitly (a pool or None), not the default
        self.store = check_store(store, durable)
        if self.store is None and self.checkpoint_interval and _hooks.memory_store is not None:
            self.store = _hooks.memory_store()  # periodic checkpoints nobody could restore help nobody
        self.durable = durable
        self.max_steps = max_steps
        self.clock: Clock = clock or SystemClock()
        self.responder = responder
        self.executor = executor
        self.events = EventBus()
        self.graph = StateGraph()
        self.states: dict[str, StateSpec] = {}
        self.code_names: dict[str, set[str]] = {}  # state -> strings its code may return
        #: states whose code builds names at run time (patterns, or names that cannot be read):
        #: the start-state search looks at these only, not at every state's code_names
        self.pattern_owners: dict[str, None] = {}
        self._mentions: dict[str, set[str]] = {}  # string constant -> states whose code has it
        self._gates: dict[str, list[Any]] = {}
        self._initial: dict[str, Any] = {}
        self.human = HumanLoop(self)
        self.registry = RunRegistry(self)
        self.has_dependents = False  # whether any state declares dependencies (completions then get timestamps)
        #: bumped whenever states or gates change: what ``run()`` checked of the definition (and
        #: found as start states) is reused while it and the graph stay the same
        self.definition_version = 0
        #: what the last passed definition check, start states and executor scan were made for
        #: (``_registration.check_definition``, ``_starts.start_states``): key -> result
        self.definition_cache: dict[str, tuple[Any, Any]] = {}
        self._handle: RunHandle | None = None
        self._coordinator: Coordinator | None = None
        self._idle_meta: dict[str, StateMetadata] = {}  # statuses shown before the first run
        self.collect_class_states()

    @property
    def resource_pool(self) -> ResourcePool | None:
        """The pool states with ``resources=`` are admitted against (None: requirements not enforced).

        The default machine-sized pool is made here on first use (and bound for preemption).
        """
        pool = self._resource_pool
        if isinstance(pool, str):
            pool = self._resource_pool = ResourcePool.from_machine(clock=self.clock)
            pool.bind_preemption(self.registry.preempt)
        return pool

    @resource_pool.setter
    def resource_pool(self, pool: ResourcePool | None) -> None:
        self._resource_pool = pool
        self._own_pool = True

    @property
    def has_own_pool(self) -> bool:
        """Whether the agent was given its pool (a ResourcePool, or None) rather than using the default
        machine-sized one: a sub-workflow's run with no pool of its own uses its root run's."""
        return self._own_pool

    @property
    def active_resource_pool(self) -> ResourcePool | None:
        """The pool if one is in use: given, or the default one once made (never makes it)."""
        pool = self._resource_pool
        return None if isinstance(pool, str) else pool

    # -- registration -------------------------------------------------------------------
    def add_state(self, name: str | Callable[..., Any], func: Callable[..., Any] | None = None,
                  **options: Any) -> StateSpec:
        """Register a state.

        Args:
            name: The state's name (or the function itself, named after it).
            func: ``async def f(context) -> StateResult`` (sync functions work too), or another
                :class:`Agent`: a sub-workflow, run nested in this agent's run (``_subflow.py``).
            **options: ``resources`` (:class:`ResourceRequirements`), ``dependencies``
                (``{name: DependencyType | DependencyConfig}`` or a list of names),
                ``retry_policy``, ``timeout`` (seconds per attempt), ``priority``,
                ``max_retries`` (shorthand for an immediate-retry policy), ``next`` (states it
                may lead to beyond those its code names), ``join`` (True: branches naming it
                meet there and it runs once), ``executor``/``remote`` (where its body runs).
                A sub-workflow also takes ``inputs`` (parent keys copied into the child's
                context: a list, or a dict ``{parent key: child key}``) and ``outputs`` (child
                keys copied back after it completed: a list, or ``{child key: parent key}``);
                its ``next`` is where the parent goes on after it.

        Raises:
            DuplicateStateError: a state of that name exists.
            ConfigurationError: an unknown option, a bad value, or a function taking no context.
        """
        if callable(name) and func is None:
            func, name = name, getattr(name, "__name__", "")
        if isinstance(func, Agent):  # a sub-workflow: the child runs nested in this agent's run
            func = make_subflow(self, name, func, options)
        elif "inputs" in options or "outputs" in options:
            check_no_subflow_options(name, options)
        spec = build_spec(self, name, func, options)
        self.states[spec.name] = spec
        self.definition_version += 1
        self.has_dependents = self.has_dependents or bool(spec.dependencies)
        for run in self.registry.live.values():
            run.meta(spec.name)
        self._add_to_graph(spec)
        if self.events.active:
            self.events.publish(StateAdded(self.name, self.run_id, self.clock.monotonic(), spec.name))
        return spec

    def _add_to_graph(self, spec: StateSpec) -> None:
        names = self.code_names[spec.name] = link_state(self.graph, self.states, self._mentions, spec)
        if any(is_pattern(n) for n in names):
            self.pattern_owners[spec.name] = None
        else:
            self.pattern_owners.pop(spec.name, None)

    def collect_class_states(self) -> None:
        """Register methods marked with ``@state`` on this class and on the instance (run again
        by every ``run()``: a method or attribute marked since is found then). ``Agent`` and its
        own bases define none, and hold most of the names: they are not read."""
        seen: set[str] = set()
        library = Agent.__mro__
        for klass in type(self).__mro__:
            if klass in library:
                continue
            for attr, value in vars(klass).items():
                if attr in seen or attr.startswith("__"):
                    continue
                seen.add(attr)
                if state_options(value) is not None and attr not in self.states:
                    self.add_state(attr, getattr(self, attr))
        for attr, value in list(vars(self).items()):
            if callable(value) and state_options(value) is not None and attr not in self.states:
                self.add_state(attr, value)

    def remove_state(self, name: str) -> None:
        """Unregister a state (only while no run is live)."""
        self.registry.require_idle("remove_state")
        if name not in self.states:
            raise StateNotFoundError(f"remove_state({name!r}): agent {self.name!r} has no state {name!r}")
        del self.states[name]
        self.definition_version += 1
        self.has_dependents = any(spec.dependencies for spec in self.states.values())
        self.code_names.pop(name, None)
        self.pattern_owners.pop(name, None)
        self._mentions = {}
        self.graph = StateGraph()
        for spec in self.states.values():
            self._add_to_graph(spec)

    def add_gate(self, state_name: str, gate: Any) -> None:
        """Make ``state_name`` pass ``gate`` (``try_acquire``/``acquire``/``release``) before it runs."""
        self._gates.setdefault(state_name, []).append(gate)
        self.definition_version += 1

    def gates_of(self, state: str) -> list[Any]:
        """The gates ``state`` passes before it runs (rate limits first), in order."""
        return self._gates.get(state) or []

    @property
    def gate_map(self) -> dict[str, list[Any]]:
        """Every state's gates, by state (read it; add gates with :meth:`add_gate`)."""
        return self._gates

    def gate_list(self, state: str) -> list[Any]:
        """The (mutable) list of ``state``'s gates, made on first use (the caller may add to it)."""
        self.definition_version += 1
        return self._gates.setdefault(state, [])

    # -- coordination (the agent's primitives hold across all its runs) -----------------------
    @property
    def coordinator(self) -> Coordinator:
        """This agent's :class:`Coordinator`: primitives, rate limiters, deadlock detector."""
        if self._coordinator is None:
            from .coordination._coordinator import Coordinator

            self._coordinator = Coordinator(self)
        return self._coordinator

    def add_state_rate_limit(self, state: str, max_rate: float, strategy: RateLimitStrategy | None = None,
                             burst_size: float | None = None, window_size: float | None = None, *,
                             name: str | None = None) -> RateLimiter:
        """Admit at most ``max_rate`` runs per second of ``state`` (before or after ``add_state``).

        Args:
            state: The state's name.
            max_rate: Runs per second.
            strategy: TOKEN_BUCKET (default), SLIDING_WINDOW, LEAKY_BUCKET or FIXED_WINDOW.
            burst_size: Bucket capacity (token bucket default: one second's worth).
            window_size: Window seconds for the window strategies (default 1.0).
            name: Share one limit across states: every state naming it draws from the same
                budget (e.g. one API's rate). Registering a name again with other options
                raises :class:`CoordinationConflictError` naming both; the same options share.

        Returns:
            The :class:`RateLimiter` (inspect it with ``statistics()``). Calling again for a
            state's own limit (no ``name``) replaces it; a state has one rate limit.
        """
        from .coordination import _api as coordination_api  # loaded when coordination is first used

        return coordination_api.add_state_rate_limit(self, state, max_rate, strategy, burst_size, window_size,
                                                     name)

    def add_state_coordination(self, state: str, primitive_type: PrimitiveType, ttl: float | None = None,
                               max_count: int | None = None, wait_timeout: float | None = None,
                               quota_limit: float | None = None, *, name: str | None = None,
                               amount: float | None = None) -> Primitive:
        """Make ``state`` pass a coordination primitive before each run.

        Args:
            state: The state's name.
            primitive_type: MUTEX, SEMAPHORE, BARRIER, LEASE or QUOTA.
            ttl: MUTEX/SEMAPHORE: a hold expires after this long; LEASE: its length (60 s);
                QUOTA: the budget resets this often.
            max_count: SEMAPHORE: concurrent holders; BARRIER: arrivals to wait for.
            wait_timeout: Give up waiting with ``CoordinationError`` after this long.
            quota_limit: QUOTA: the budget per ``ttl``.
            name: The primitive's name (default: the state's); states naming one share it.
                Options given again must match (options left out take the existing ones), or
                :class:`CoordinationConflictError` names both option sets.
            amount: QUOTA: how much each run consumes (default 1).
        """
        from .coordination import _api as coordination_api

        return coordination_api.add_state_coordination(
            self, state, primitive_type, name=name, ttl=ttl, max_count=max_count, wait_timeout=wait_timeout,
            quota_limit=quota_limit, amount=amount)

    def coordination(self, name: str) -> Primitive:
        """The primitive called ``name``, e.g. ``async with agent.coordination("db").hold(ctx):``."""
        from .coordination import _api as coordination_api

        return coordination_api.named_primitive(self, name)

    def add_coordination(self, name: str, primitive_type: PrimitiveType, **options: Any) -> Primitive:
        """A named primitive attached to no state, for in-state use with ``hold(ctx)``."""
        return self.coordinator.primitive(name, primitive_type, **options)

    async def get_coordination_status(self) -> dict[str, Any]:
        """``{"primitives": {...}, "rate_limiters": {...}, "deadlock_detector": {...}}``."""
        return self.coordinator.status()

    async def reset_coordination(self) -> None:
        """Release every hold, fail every waiter, refill quotas, reset rate limiters and the detector."""
        self.coordinator.reset()


    def resolve_executor(self, executor: Any) -> Any:
        """The executor object for a state's ``executor=`` option (a name means the agent's)."""
        if isinstance(executor, str):
            default = self.executor
            if default is not None and executor in (getattr(default, "name", None), "default"):
                return default
            raise StateNotFoundError(
                f"executor {executor!r} was asked for, but agent {self.name!r} has no executor of that "
                "name; pass Agent(..., executor=DaskExecutor(...))"
            )
        return executor

    # -- running ----------------------------------------------------------------------------
    async def run(
        self,
        timeout: float | None = None,
        cleanup_timeout: float | None = 10.0,
        *,
        start: str | list[str] | None = None,
        initial_context: dict[str, Any] | None = None,
    ) -> RunResult:
        """Execute the workflow as a new run (or continue a restored one) until no state is left.

        Several ``run()`` calls of one agent may go on at once; each is its own run.

        Args:
            timeout: Fail with ``RunTimeoutError`` after this many seconds.
            cleanup_timeout: How long cancelled states get to finish their cleanup.
            start: Start state(s) instead of those found from the graph.
            initial_context: Shared values every state of this run sees from the start.

        Returns:
            A :class:`RunResult` with the final data and status.

        Raises:
            StateFailedError: a state failed for good (the original exception is chained).
            RunTimeoutError: the run took longer than ``timeout``.
        """
        run, starts = self.new_run(timeout, cleanup_timeout, start, initial_context)
        await check_executors(self)
        return await run.execute(check_timeout("run(timeout)", timeout),
                                 check_timeout("run(cleanup_timeout)", cleanup_timeout), starts)

    def new_run(self, timeout: Any = None, cleanup_timeout: Any = 10.0, start: Any = None,
                initial_context: dict[str, Any] | None = None) -> tuple[Run, list[str]]:
        """Check the definition and the arguments; the run to execute next and its start states."""
        check_timeout("run(timeout)", timeout)
        check_timeout("run(cleanup_timeout)", cleanup_timeout)
        if initial_context is not None and not isinstance(initial_context, dict):
            raise ConfigurationError(f"run(initial_context={initial_context!r}): pass a dict of shared values")
        self.collect_class_states()
        check_definition(self, self._gates)
        if self.registry.prepared is not None:
            _travel.check_prepared(self, self.registry.prepared)
        prepared = self.registry.take_prepared()
        if prepared is not None:
            prepared.shared.update(initial_context or {})
            return prepared, []
        return Run(self, initial={**self._initial, **(initial_context or {})}), start_states(self, start)

    def start(self, **run_kwargs: Any) -> RunHandle:
        """Run in the background on the running loop; returns a :class:`RunHandle` at once.

        Takes the same arguments as :meth:`run`. In a notebook this keeps the kernel free to
        deliver widget clicks while states wait for a person.
        """
        handle = start_background(self, run_kwargs)
        self._handle = handle
        return handle

    def run_sync(self, **run_kwargs: Any) -> RunResult:
        """Run to the end, blocking the caller (see :func:`~fluffy_nb.engine._handle.run_blocking`)."""
        return run_blocking(self, run_kwargs)

    @property
    def handle(self) -> RunHandle | None:
        """The handle of the latest background run (None if :meth:`start` was never called)."""
        return self._handle

    @handle.setter
    def handle(self, handle: RunHandle) -> None:
        self._handle = handle

    # -- display --------------------------------------------------------------------------
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        running = 0 if self.registry.latest is None else len(self.registry.latest.scheduler.running)
        return (f"<Agent {self.name!r} status={self.status.value} states={len(self.states)} "
                f"completed={len(self.completed_states)} running={running} runs_live={len(self.registry.live)}>")
