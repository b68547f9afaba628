"""Agent: registering states, and the public controls of a run.

The scheduling itself (launching, retries, joins, dependencies) lives in ``_runner.py``;
this module owns the user-facing surface: ``add_state``, ``run``, ``pause``/``resume``,
cancellation, status, and checkpoints.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from ._checkpoint import Checkpoint
from ._checkpointing import CheckpointMixin
from ._clock import Clock, SystemClock
from ._context import Context
from ._control import ControlMixin
from ._deps import DependencyMixin
from ._errors import (
    AgentRunningError,
    ConfigurationError,
    DuplicateStateError,
    StateNotFoundError,
)
from ._events import EventBus, StateAdded
from ._graph import StateGraph
from ._handle import BackgroundMixin
from ._hitl import HumanLoop
from ._hooks import mimebundle
from ._policies import RetryPolicy, StateSpec, check_timeout, normalize_dependencies
from ._reader import state_targets
from ._resources import ResourcePool, ResourceRequirements
from ._runner import RunnerMixin
from ._state import StateMetadata, normalize_options, state_options
from ._status import AgentStatus, Priority
from .coordination._mixin import CoordinationMixin

StateResult = str | list[str] | None
"""What a state returns: the next state's name, names to run concurrently, or None."""


class Agent(RunnerMixin, DependencyMixin, ControlMixin, CheckpointMixin, BackgroundMixin, CoordinationMixin):
    """A workflow: named async states that hand control to each other.

    Args:
        name: The agent's name (defaults to the class name for subclasses).
        max_concurrent: At most this many states run at once (None: no limit).
        checkpoint_interval: Seconds between automatic checkpoints while running.
        resource_pool: The :class:`ResourcePool` states are admitted against.
        store: A checkpoint store; with one, checkpoints are saved there.
        durable: Checkpoint to ``store`` after every state that finishes.
        max_steps: Guard against endless loops: a run may execute at most this many states.
        clock: Injectable time source (tests use ``ManualClock``).
        responder: Who answers ``human_in_the_loop`` (default: chosen for the environment).
        executor: Where state bodies run by default (None: on the event loop).

    Example:
        >>> agent = Agent("hello")
        >>> async def greet(ctx):
        ...     ctx.set_state("greeting", "hi")
        ...     return None
        >>> agent.add_state("greet", greet)
        >>> # await agent.run()
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        max_concurrent: int | None = None,
        checkpoint_interval: float | None = None,
        resource_pool: ResourcePool | None = None,
        store: Any = None,
        durable: bool = False,
        max_steps: int = 100_000,
        clock: Clock | None = None,
        responder: Any = None,
        executor: Any = None,
    ) -> None:
        if max_concurrent is not None and (
            isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1
        ):
            raise ConfigurationError(f"Agent(max_concurrent={max_concurrent!r}): must be a whole number >= 1 or None")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigurationError(f"Agent(max_steps={max_steps!r}): must be a whole number >= 1")
        self.name = name or type(self).__name__
        self.id = uuid.uuid4().hex
        self.max_concurrent = max_concurrent
        self.checkpoint_interval = check_timeout("checkpoint_interval", checkpoint_interval)
        self.resource_pool = resource_pool
        self.store = store
        self.durable = durable
        self.max_steps = max_steps
        self.clock: Clock = clock or SystemClock()
        self.responder = responder
        self.executor = executor
        self.events = EventBus()
        self.graph = StateGraph()
        self.states: dict[str, StateSpec] = {}
        self.state_metadata: dict[str, StateMetadata] = {}
        self._code_names: dict[str, set[str]] = {}
        self._mentions: dict[str, set[str]] = {}  # string constant -> states whose code has it
        self._gates: dict[str, list[Any]] = {}
        self._initial: dict[str, Any] = {}
        self._human = HumanLoop(self)
        self.status = AgentStatus.IDLE
        self._init_run_state()
        self._collect_class_states()

    # -- registration -------------------------------------------------------------------
    def add_state(
        self,
        name: str | Callable[..., Any],
        func: Callable[..., Any] | None = None,
        *,
        resources: ResourceRequirements | None = None,
        dependencies: dict[str, Any] | Sequence[str] | None = None,
        retry_policy: RetryPolicy | None = None,
        timeout: float | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        next: Sequence[str] | None = None,  # the spec's vocabulary, shadowing the builtin on purpose
        executor: Any = None,
        **options: Any,
    ) -> StateSpec:
        """Register a state.

        Args:
            name: The state's name (or the function itself, named after it).
            func: ``async def f(context) -> StateResult`` (sync functions work too).
            resources: What one run needs from the resource pool.
            dependencies: ``{name: DependencyType | DependencyConfig}`` or a list of names.
            retry_policy: How to retry when it raises.
            timeout: Seconds one attempt may take.
            priority: Scheduling priority when runs queue for a slot.
            max_retries: Shorthand for ``RetryPolicy(max_retries=n, initial_delay=0)``.
            next: States this one may lead to, beyond those named literally in its code.
            executor: Where this state's body runs (e.g. a ``DaskExecutor`` or ``"dask"``).

        Raises:
            DuplicateStateError: a state of that name exists.
        """
        if callable(name) and func is None:
            func, name = name, getattr(name, "__name__", None)
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"add_state(name={name!r}): a state needs a non-empty string name")
        if not callable(func):
            raise ConfigurationError(
                f"add_state({name!r}, {func!r}): the state function must be callable, e.g. "
                "async def step(context): return None"
            )
        if name in self.states:
            raise DuplicateStateError(
                f"agent {self.name!r} already has a state {name!r}; pick another name or build "
                "a new Agent"
            )
        marked = state_options(func) or {}
        opts = {**marked, **normalize_options(options)}
        resources = resources if resources is not None else opts.pop("resources", None)
        if dependencies is None:
            dependencies = opts.pop("dependencies", None)
        retry_policy = retry_policy or opts.pop("retry_policy", None)
        timeout = timeout if timeout is not None else opts.pop("timeout", None)
        priority = priority if priority is not None else opts.pop("priority", None)
        max_retries = max_retries if max_retries is not None else opts.pop("max_retries", None)
        next = next if next is not None else opts.pop("next", None)
        executor = executor if executor is not None else opts.pop("executor", None)
        opts.pop("name", None)
        if resources is not None and not isinstance(resources, ResourceRequirements):
            raise ConfigurationError(f"add_state({name!r}, resources={resources!r}): use ResourceRequirements(...)")
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise ConfigurationError(f"add_state({name!r}, retry_policy={retry_policy!r}): use RetryPolicy(...)")
        if max_retries is not None and retry_policy is None:
            retry_policy = RetryPolicy(max_retries=max_retries, initial_delay=0.0, max_delay=0.0, jitter=False)
        if timeout is None and resources is not None:
            timeout = resources.timeout
        timeout = check_timeout(f"add_state({name!r}, timeout)", timeout)
        if priority is None:
            priority = int(resources.priority) if resources is not None else int(Priority.NORMAL)
        if isinstance(next, str):
            next = [next]
        spec = StateSpec(
            name=name,
            func=func,
            resources=resources,
            dependencies=normalize_dependencies(name, dependencies),
            retry_policy=retry_policy,
            timeout=timeout,
            priority=int(priority),
            max_retries=max_retries,
            next_hint=tuple(next or ()),
            options=opts,
        )
        spec.options["is_async"] = inspect.iscoroutinefunction(func) or (
            not inspect.isroutine(func) and inspect.iscoroutinefunction(type(func).__call__)
        )
        if executor is not None:
            spec.options["executor"] = executor
        self.states[name] = spec
        self.state_metadata[name] = StateMetadata(name)
        self._add_to_graph(spec)
        if self.events.active:
            self.events.publish(StateAdded(self.name, self.run_id, self.clock.monotonic(), name))
        return spec

    def _add_to_graph(self, spec: StateSpec) -> None:
        graph, name = self.graph, spec.name
        graph.add_node(name)
        strings = state_targets(spec.func)
        self._code_names[name] = strings
        mentions = self._mentions
        for target in strings:
            mentions.setdefault(target, set()).add(name)
            if target in self.states:
                graph.add_edge(name, target, "code")
        for other in mentions.get(name, ()):
            if other != name:
                graph.add_edge(other, name, "code")
        for target in spec.next_hint:
            graph.add_edge(name, target, "declared")
        for dep in spec.dependencies:
            graph.add_edge(dep, name, "dependency")

    def _collect_class_states(self) -> None:
        """Register methods marked with ``@state`` on this class and on the instance."""
        seen: set[str] = set()
        for klass in type(self).__mro__:
            for attr, value in vars(klass).items():
                if attr in seen or attr.startswith("__"):
                    continue
                seen.add(attr)
                if state_options(value) is not None and attr not in self.states:
                    self.add_state(attr, getattr(self, attr))
        for attr, value in list(vars(self).items()):
            if state_options(value) is not None and attr not in self.states and callable(value):
                self.add_state(attr, value)

    def remove_state(self, name: str) -> None:
        """Unregister a state (only while idle)."""
        self._require_idle("remove_state")
        if name not in self.states:
            raise StateNotFoundError(f"agent {self.name!r} has no state {name!r}")
        del self.states[name]
        del self.state_metadata[name]
        self._code_names.pop(name, None)
        self._mentions = {}
        self.graph = StateGraph()
        for spec in self.states.values():
            self._add_to_graph(spec)

    def add_gate(self, state_name: str, gate: Any) -> None:
        """Make ``state_name`` pass ``gate`` (``try_acquire``/``acquire``/``release``) before it runs."""
        self._gates.setdefault(state_name, []).append(gate)

    # -- shared data ------------------------------------------------------------------------
    def get_state(self, key: str, default: Any = None) -> Any:
        """Read shared context data (of the current or last run)."""
        return self._shared.get(key, default)

    def set_state(self, key: str, value: Any) -> None:
        """Write shared context data; set before ``run`` it is an input of every run."""
        if self.status is not AgentStatus.RUNNING and self.status is not AgentStatus.PAUSED:
            self._initial[key] = value
        self._shared[key] = value

    @property
    def context(self) -> Context:
        """A context over the current (or last) run's data."""
        return Context(self._shared, self._typed, agent=self, run_id=self.run_id)

    # -- human in the loop ----------------------------------------------------------------
    async def _ask_human(self, ctx: Context, prompt: str, **kwargs: Any) -> Any:
        return await self._human.ask(ctx, prompt, **kwargs)

    def pending_requests(self) -> list[Any]:
        """Open human-in-the-loop requests, oldest first."""
        return self._human.pending()

    def answer(self, request_id: str, value: Any, *, source: str = "person") -> bool:
        """Answer an open human-in-the-loop request; False if the validator rejected it."""
        return self._human.answer(request_id, value, source=source)

    # -- checkpoints ------------------------------------------------------------------------
    def create_checkpoint(self, trigger: str = "manual") -> Checkpoint:
        """Snapshot the run: statuses, completed states, frontier, data and human answers."""
        return self._make_checkpoint(trigger)

    async def restore_from_checkpoint(self, checkpoint: Checkpoint | dict[str, Any]) -> None:
        """Load ``checkpoint`` into this (idle) agent; ``run()`` or ``resume()`` continues it.

        Raises:
            AgentRunningError: the agent is running.
            CheckpointError: the checkpoint names states this agent does not have.
        """
        self._restore_checked(checkpoint, "restore_from_checkpoint")

    def _require_idle(self, what: str) -> None:
        if self._run_active:
            raise AgentRunningError(
                f"{what}: agent {self.name!r} is running; wait for the run to finish or cancel it first"
            )

    # -- display --------------------------------------------------------------------------
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        return (
            f"<Agent {self.name!r} status={self.status.value} states={len(self.states)} "
            f"completed={len(self.completed_states)} running={len(self._running_states)}>"
        )
