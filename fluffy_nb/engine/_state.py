"""The ``@state`` decorator, :class:`StateBuilder`, and per-state runtime metadata."""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar

from ._requirements import ResourceRequirements
from ._status import StateStatus

F = TypeVar("F", bound=Callable[..., Any])

STATE_MARK = "_fluffy_state_options"


def state(func: F | None = None, /, **options: Any) -> Any:
    """Mark a function (or a method of an ``Agent`` subclass) as a state.

    Works bare (``@state``), with options (``@state(retry_policy=..., next=["b"])``) and in
    the call form ``state(func=wrapper, **options)``. Options are those of
    ``Agent.add_state``; also ``name=``, ``depends_on=[...]`` (REQUIRED dependencies) and
    the shorthands ``cpu=``, ``memory=``, ``gpu=`` for resources.

    Example:
        >>> class Pipeline(Agent):
        ...     @state(next=["report"])
        ...     async def load(self, ctx):
        ...         return "report"
    """
    if func is None and "func" in options:
        func = options.pop("func")
    if func is None:
        return lambda f: state(f, **options)
    setattr(func, STATE_MARK, normalize_options(options))
    return func


def normalize_options(options: dict[str, Any]) -> dict[str, Any]:
    """Fold decorator spellings into ``add_state`` keyword arguments."""
    opts = dict(options)
    depends_on = opts.pop("depends_on", None)
    if depends_on:
        deps = dict(opts.get("dependencies") or {})
        for d in depends_on:
            deps.setdefault(d, "required")
        opts["dependencies"] = deps
    shorthand = {k: opts.pop(k) for k in ("cpu", "memory", "gpu") if k in opts}
    if shorthand and "resources" not in opts:
        opts["resources"] = ResourceRequirements(
            cpu_units=shorthand.get("cpu", 1.0),
            memory_mb=shorthand.get("memory", 100.0),
            gpu_units=shorthand.get("gpu", 0.0),
        )
    return opts


def state_options(func: Any) -> dict[str, Any] | None:
    """The options ``@state`` attached to ``func`` (or its underlying function), if any."""
    target = getattr(func, "__func__", func)
    return getattr(target, STATE_MARK, None)


class StateBuilder:
    """Fluent construction of state options; subclass it for house rules.

    ``build(func)`` returns ``state(func=func, **self.kwargs)``.

    Example:
        >>> class Worker(Agent):
        ...     @StateBuilder().with_retry(max_retries=2).with_timeout(30).build
        ...     async def fetch(self, ctx):
        ...         return None
    """

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}

    def with_resources(self, resources: ResourceRequirements | None = None, **amounts: Any) -> StateBuilder:
        """Resource requirements (an object, or ``cpu_units=``, ``memory_mb=``...)."""
        self.kwargs["resources"] = resources or ResourceRequirements(**amounts)
        return self

    def with_retry(self, policy: Any = None, **kwargs: Any) -> StateBuilder:
        """A ``RetryPolicy`` (an object, or its keyword arguments)."""
        from ._policies import RetryPolicy

        self.kwargs["retry_policy"] = policy or RetryPolicy(**kwargs)
        return self

    def with_timeout(self, seconds: float) -> StateBuilder:
        """Per-state timeout in seconds."""
        self.kwargs["timeout"] = seconds
        return self

    def with_priority(self, priority: int) -> StateBuilder:
        """Scheduling priority (``Priority`` member or int)."""
        self.kwargs["priority"] = priority
        return self

    def depends_on(self, *names: str) -> StateBuilder:
        """REQUIRED dependencies on the named states."""
        self.kwargs.setdefault("depends_on", []).extend(names)
        return self

    def with_dependencies(self, dependencies: dict[str, Any]) -> StateBuilder:
        """Dependencies as accepted by ``add_state``."""
        self.kwargs["dependencies"] = dependencies
        return self

    def with_next(self, *names: str) -> StateBuilder:
        """Declare the states this one may lead to (for the graph and joins)."""
        self.kwargs["next"] = list(names)
        return self

    def build(self, func: F) -> F:
        """Mark ``func`` as a state with the collected options."""
        return state(func, **self.kwargs)  # type: ignore[no-any-return]


class _Runs(list[float]):
    """``StateMetadata.durations`` from a state's second run on, and ``finishes``: the wall time
    each of those runs ended, in the same order. Kept on the list rather than in a slot of its
    own: a slot more made every ``StateMetadata`` larger (a run makes one per state) and cost a
    chain about 0.5 % more instructions per transition, for a list most states never need."""

    __slots__ = ("finishes",)

    def __init__(self, durations: Any = ()) -> None:
        super().__init__(durations)
        self.finishes: list[float] = []


class _Status:
    """``StateMetadata.status``: the value, with the state's name noted in ``changed`` (its run's
    set of states changed since the last checkpoint) on every write, so a delta checkpoint
    reads only those instead of every state of the run."""

    __slots__ = ()

    def __get__(self, obj: Any, owner: Any = None) -> StateStatus:
        if obj is None:
            return StateStatus.PENDING  # the default
        return obj._status  # type: ignore[no-any-return]

    def __set__(self, obj: Any, value: StateStatus) -> None:
        obj._status = value
        changed = obj.changed
        if changed is not None:
            changed.add(obj.name)


_FIELDS = ("name", "status", "attempts", "runs", "retries", "failures", "last_error", "started_at",
           "finished_at", "last_duration", "durations")
_PENDING, _RUNNING, _COMPLETED = StateStatus.PENDING, StateStatus.RUNNING, StateStatus.COMPLETED
_new = object.__new__
#: ``meta.status`` read past its descriptor, in C: ``map(read_status, metas)`` reads 10,000 states
#: in about 0.2 ms (the descriptor's Python-level ``__get__`` took 10 times that); what a live view
#: compares at each redraw to find the states that changed
read_status: Callable[[Any], StateStatus] = attrgetter("_status")


class StateMetadata:
    """Runtime facts about one state: status, attempts, timing, last error.

    A slotted class with its own ``__init__`` rather than a dataclass: a run makes one for every
    state of its agent before anything runs, and the dataclass's took about 2.7 µs each here
    (1.1 µs now), a fifth of a 1,000-state chain's per-transition figure. Compared and shown
    like the dataclass was (every field but ``changed``).
    """

    # ``_durations`` is None until a state completes a second time (its one duration is then
    # ``last_duration``): a list per state, made when a run begins, cost about a tenth of a chain's
    # per-transition figure (allocation, append and the collector's work), and most states of
    # most runs complete once
    __slots__ = ("_durations", "_status", "attempts", "changed", "failures", "finished_at", "last_duration",
                 "last_error", "name", "retries", "runs", "started_at")
    status = _Status()

    def __init__(
        self, name: str, status: StateStatus = _PENDING, attempts: int = 0, runs: int = 0, retries: int = 0,
        failures: int = 0, last_error: str | None = None, started_at: float | None = None,
        finished_at: float | None = None, last_duration: float | None = None, durations: list[float] | None = None,
        changed: set[str] | None = None,
    ) -> None:
        self.name = name
        self._status = status  # not through the descriptor: a new state has not changed
        self.attempts = attempts
        self.runs = runs
        self.retries = retries
        self.failures = failures
        self.last_error = last_error
        self.started_at = started_at
        self.finished_at = finished_at
        self.last_duration = last_duration
        self._durations = _Runs(durations) if durations else None
        #: the run's set of states changed since its last checkpoint (None: not tracked)
        self.changed = changed

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in _FIELDS)
        return f"StateMetadata({inner})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass

    @classmethod
    def fresh(cls, name: str, changed: set[str] | None) -> StateMetadata:
        """A PENDING ``StateMetadata(name, changed=changed)``, made without ``__init__``'s argument
        handling (0.5 µs instead of 0.9 here): a run makes one for every state of its agent."""
        meta = _new(cls)
        meta.name = name
        meta._status = _PENDING
        meta.attempts = meta.runs = meta.retries = meta.failures = 0
        meta.last_error = meta.started_at = meta.finished_at = meta.last_duration = None
        meta._durations = None
        meta.changed = changed
        return meta

    @property
    def durations(self) -> list[float]:
        """Seconds each completed run of the state took, oldest first (the first 10,000)."""
        durations = self._durations
        if durations is not None:
            return durations
        return [self.last_duration] if self.runs and self.last_duration is not None else []

    @durations.setter
    def durations(self, value: list[float]) -> None:
        self._durations = _Runs(value) if value else None  # (when these ended is not known: finishes is empty)

    @property
    def finishes(self) -> list[float]:
        """Wall time (``clock.time()``) at which each completed run of the state ended, oldest
        first, beside :attr:`durations` (the two lists end with the same run; ``finishes`` may
        be shorter, for the runs before a restored checkpoint). A live view draws a loop's
        runs from them: ``started_at`` and ``finished_at`` are the latest run's alone."""
        durations = self._durations
        if durations is not None and durations.finishes:
            return durations.finishes
        return [self.finished_at] if self.runs and self.finished_at is not None else []

    def _add_duration(self, duration: float, now: float) -> None:
        """Note ``duration`` and end time ``now`` of the second or a later run just counted in
        ``runs``, before ``last_duration`` and ``finished_at`` are set to them (the callers ask
        ``runs > 1``: a first run's are ``last_duration`` and ``finished_at`` alone)."""
        durations = self._durations
        if durations is not None:
            if len(durations) < 10_000:
                durations.append(duration)
                durations.finishes.append(now)
        elif self.last_duration is not None:
            self._durations = durations = _Runs((self.last_duration, duration))
            durations.finishes = [self.finished_at if self.finished_at is not None else now, now]

    def begin_attempt(self, now: float) -> None:
        """An attempt starts (wall time ``now``): counted, RUNNING. One call where the scheduler
        made four writes, the status's through its descriptor, on every transition."""
        self.attempts += 1
        self._status = _RUNNING
        changed = self.changed
        if changed is not None:
            changed.add(self.name)
        self.started_at = now

    def complete(self, duration: float, now: float) -> None:
        """The state completed in ``duration`` seconds, at wall time ``now``: COMPLETED, counted, timed.
        (``now`` is read, not derived from ``started_at``: executions of one state may overlap, and
        ``started_at`` is then the latest one's.)"""
        self._status = _COMPLETED
        changed = self.changed
        if changed is not None:
            changed.add(self.name)
        self.runs = runs = self.runs + 1
        if runs > 1:
            self._add_duration(duration, now)
        self.last_duration = duration
        self.finished_at = now

    def hand_over(self, duration: float, now: float, nxt: StateMetadata) -> None:
        """This state completed in ``duration`` seconds at wall time ``now``, and its branch's next
        state ``nxt`` begins its first attempt at that moment: :meth:`complete` then
        ``nxt.``:meth:`begin_attempt`, in one call (a chain makes it on every transition)."""
        self._status = _COMPLETED
        changed = self.changed
        if changed is not None:
            changed.add(self.name)
            changed.add(nxt.name)
        self.runs = runs = self.runs + 1
        if runs > 1:
            self._add_duration(duration, now)
        self.last_duration = duration
        self.finished_at = now
        nxt.attempts += 1
        nxt._status = _RUNNING
        nxt.started_at = now

    def reset(self) -> None:
        """Back to a fresh PENDING state for a new run."""
        self.status = StateStatus.PENDING
        self.attempts = self.runs = self.retries = self.failures = 0
        self.last_error = None
        self.started_at = self.finished_at = self.last_duration = None
        self._durations = None


def started_facts(metadata: dict[str, StateMetadata]) -> tuple[dict[str, StateStatus], dict[str, int]]:
    """The statuses other than PENDING and the non-zero attempt counts in ``metadata``, by state:
    one pass that reads each status past its descriptor (a full checkpoint of 10,000 states made
    10,000 Python-level descriptor calls for them)."""
    status: dict[str, StateStatus] = {}
    attempts: dict[str, int] = {}
    for name, meta in metadata.items():
        st = meta._status
        if st is not _PENDING:
            status[name] = st
        n = meta.attempts
        if n:
            attempts[name] = n
    return status, attempts
