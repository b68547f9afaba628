"""Events the engine publishes, and the bus observers subscribe to.

Events are small frozen records. Observers (live views, metrics, monitors, tracing)
subscribe with a plain callable and receive every event, in publish order, synchronously;
a subscriber that names the kinds it reads (``subscribe(f, types=...)``) is called for those
only, and ``bus.wants(kind)`` says whether anyone reads a kind. Publishing with no subscriber
costs one attribute check: the engine tests ``bus.active`` before it even builds an event.

The records behave as frozen dataclasses do (fields in ``__init__`` order, equality, hash,
repr, ``dataclasses.fields``/``asdict``/``replace``, pickling, ``match`` patterns) but are
plain slotted classes: creating 18 dataclasses cost 15-30 ms of ``import fluffy_nb.engine``
(each one compiles its generated methods), these cost about one. Each class writes its
``__init__`` signature (fields, types, defaults) by hand; ``Event.__init_subclass__`` checks it
against ``__slots__`` and compiles the body, which stores each argument through its slot's own
descriptor (``_slot_writer``): a run watched by a reader of per-state events
(``EventBus.stepwise``) builds up to three per state. ``dataclasses`` itself is imported only
when one of its functions first reads an event's ``__dataclass_fields__``. A test checks both
against the field lists below.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any, ClassVar

log = logging.getLogger("fluffy_nb")

_set = object.__setattr__  # what a frozen dataclass's __init__ uses too
_TWINS: dict[type, type] = {}  # event class -> its dataclass twin


class _FromDataclassTwin:
    """``__dataclass_fields__`` / ``__dataclass_params__`` of an event class, read off a dataclass twin
    (same fields, defaults and flags) made, importing dataclasses, on first read."""

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute

    def __get__(self, obj: object, cls: type[Event]) -> Any:
        twin = _TWINS.get(cls)
        if twin is None:
            import dataclasses

            init = cls.__init__
            names, defaults = cls.__match_args__, init.__defaults__ or ()
            first_default = len(names) - len(defaults)
            spec = []
            for i, name in enumerate(names):
                shown = name not in cls._HIDDEN
                f = (dataclasses.field(default=defaults[i - first_default], compare=shown, repr=shown)
                     if i >= first_default else dataclasses.field(compare=shown, repr=shown))
                spec.append((name, init.__annotations__.get(name, "Any"), f))
            twin = _TWINS[cls] = dataclasses.make_dataclass(cls.__name__, spec, frozen=True)
        return getattr(twin, self.attribute)


def _slot_writer(cls: type[Event], init: Callable[..., None]) -> Callable[..., None]:
    """An ``__init__`` with ``init``'s parameters and defaults that writes each field through its
    slot's own descriptor, bound once here.

    ``object.__setattr__(self, name, value)`` (what a frozen dataclass's ``__init__`` calls) looks
    ``name`` up on the class at every call; the bound ``__set__`` of the slot does not, so an event
    is built in about 60 % of the time (0.5 µs instead of 0.8 µs for ``StateStarted``: three per
    state of a run someone watches). The source is made from the class's own slot names, as
    ``dataclasses`` does; nothing from outside this module reaches it.
    """
    names = cls.__match_args__
    scope: dict[str, Any] = {}
    for i, name in enumerate(names):
        owner = next(klass for klass in cls.__mro__ if name in klass.__dict__.get("__slots__", ()))
        scope[f"_w{i}"] = owner.__dict__[name].__set__
    body = "; ".join(f"_w{i}(self, {name})" for i, name in enumerate(names))
    exec(f"def __init__(self, {', '.join(names)}):\n    {body}\n", scope)
    fast = scope["__init__"]
    fast.__defaults__, fast.__kwdefaults__ = init.__defaults__, init.__kwdefaults__
    fast.__annotations__, fast.__doc__ = init.__annotations__, init.__doc__
    fast.__qualname__, fast.__module__ = init.__qualname__, init.__module__
    return fast  # type: ignore[no-any-return]


class Event:
    """Base of every event: which agent, which run, when (clock time)."""

    __slots__ = ("agent", "run_id", "time")
    __match_args__: ClassVar[tuple[str, ...]] = ("agent", "run_id", "time")
    __dataclass_fields__: ClassVar[Any] = _FromDataclassTwin("__dataclass_fields__")
    __dataclass_params__: ClassVar[Any] = _FromDataclassTwin("__dataclass_params__")  # read by a @dataclass subclass
    #: fields left out of equality, hash and repr (``dataclasses.field(compare=False, repr=False)``)
    _HIDDEN: ClassVar[tuple[str, ...]] = ()
    _key: ClassVar[attrgetter[tuple[Any, ...]]] = attrgetter("agent", "run_id", "time")

    agent: str
    run_id: str
    time: float

    def __init__(self, agent: str, run_id: str, time: float) -> None:
        _set(self, "agent", agent)
        _set(self, "run_id", run_id)
        _set(self, "time", time)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Read the fields off the subclass's own ``__init__`` and check its ``__slots__`` match them.

        A subclass without its own ``__init__`` keeps its base's fields; a ``@dataclass`` subclass
        (a user's own event) gets its methods from the decorator, which runs next.
        """
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        code = init.__code__
        names = code.co_varnames[1:code.co_argcount]
        slots = [s for klass in reversed(cls.__mro__) for s in klass.__dict__.get("__slots__", ())]
        if list(names) != slots:
            raise TypeError(f"{cls.__name__}.__init__ takes {names}, but its slots are {tuple(slots)}")
        cls.__match_args__ = names  # type: ignore[misc]  # mypy reads it as final; here is where it is set
        cls._key = attrgetter(*(n for n in names if n not in cls._HIDDEN))
        if cls.__module__ == __name__:  # a user's own __init__ may do more than store its arguments
            cls.__init__ = _slot_writer(cls, init)  # type: ignore[method-assign]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return bool(self._key(self) == self._key(other))

    def __hash__(self) -> int:
        return hash(self._key(self))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__match_args__ if n not in self._HIDDEN)
        return f"{type(self).__qualname__}({shown})"

    def __setattr__(self, name: str, value: Any) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[type[Event], tuple[Any, ...]]:
        return type(self), tuple(getattr(self, n) for n in self.__match_args__)


class RunStarted(Event):
    """A run began. ``states`` lists the start states."""

    __slots__ = ("states",)
    states: tuple[str, ...]

    def __init__(self, agent: str, run_id: str, time: float, states: tuple[str, ...] = ()) -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class RunFinished(Event):
    """A run ended with ``status``; ``error`` is the failure's text, if any."""

    __slots__ = ("status", "error", "duration")
    status: str
    error: str | None
    duration: float

    def __init__(self, agent: str, run_id: str, time: float,
                 status: str = "completed", error: str | None = None, duration: float = 0.0) -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class StateAdded(Event):
    """A state was registered (also at run time: dynamic states)."""

    __slots__ = ("state",)
    state: str

    def __init__(self, agent: str, run_id: str, time: float, state: str = "") -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class StateScheduled(Event):
    """A state was queued to run; ``source`` is the state that named it (None: a start state)."""

    __slots__ = ("state", "source")
    state: str
    source: str | None

    def __init__(self, agent: str, run_id: str, time: float, state: str = "", source: str | None = None) -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class StateBlocked(Event):
    """A state waits for something other than a free slot: ``reason`` says what, ``kind`` names
    it (resource, rate_limit, lock, barrier, quota, dependency; see ``_why.py``) and ``holders``
    the states holding what it needs."""

    __slots__ = ("state", "reason", "kind", "holders")
    state: str
    reason: str
    kind: str
    holders: tuple[str, ...]

    def __init__(self, agent: str, run_id: str, time: float,
                 state: str = "", reason: str = "", kind: str = "", holders: tuple[str, ...] = ()) -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class StateStarted(Event):
    """A state's function started (attempt 1 is the first try)."""

    __slots__ = ("state", "attempt")
    state: str
    attempt: int

    def __init__(self, agent: str, run_id: str, time: float, state: str = "", attempt: int = 1) -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class StatePlaced(Event):
    """A state attempt's body started on a remote executor's worker: ``where`` names it
    (a Dask worker address). Published by the executor, after ``StateStarted``."""

    __slots__ = ("state", "attempt", "where")
    state: str
    attempt: int
    where: str

    def __init__(self, agent: str, run_id: str, time: float,
                 state: str = "", attempt: int = 1, where: str = "") -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class StateFinished(Event):
    """A state completed; ``next_states`` is what it returned, as a tuple."""

    __slots__ = ("state", "attempt", "duration", "next_states")
    state: str
    attempt: int
    duration: float
    next_states: tuple[str, ...]

    def __init__(self, agent: str, run_id: str, time: float,
                 state: str = "", attempt: int = 1, duration: float = 0.0, next_states: tuple[str, ...] = ()) -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class StateFailed(Event):
    """A state attempt failed; ``final`` is False when a retry follows. ``exception`` is the error
    itself (left out of equality, hash and repr). ``payload`` is the payload index of the map branch
    that failed (None: not a map branch): the branches of a map share their state's name."""

    __slots__ = ("state", "attempt", "duration", "error", "error_type", "final", "timed_out", "exception",
                 "payload")
    _HIDDEN = ("exception",)
    state: str
    attempt: int
    duration: float
    error: str
    error_type: str
    final: bool
    timed_out: bool
    exception: BaseException | None
    payload: int | None

    def __init__(self, agent: str, run_id: str, time: float,
                 state: str = "", attempt: int = 1, duration: float = 0.0, error: str = "", error_type: str = "",
                 final: bool = True, timed_out: bool = False, exception: BaseException | None = None,
                 payload: int | None = None) -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class StateRetrying(Event):
    """A failed state will run again after ``delay`` seconds."""

    __slots__ = ("state", "attempt", "delay", "error")
    state: str
    attempt: int
    delay: float
    error: str

    def __init__(self, agent: str, run_id: str, time: float,
                 state: str = "", attempt: int = 1, delay: float = 0.0, error: str = "") -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class StateCancelled(Event):
    """A state was cancelled (by ``cancel_state``, ``cancel_all``, a run timeout or preemption)."""

    __slots__ = ("state", "reason")
    state: str
    reason: str

    def __init__(self, agent: str, run_id: str, time: float, state: str = "", reason: str = "") -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class HumanRequested(Event):
    """A state asks a person; the request id answers it."""

    __slots__ = ("state", "request_id", "prompt", "choices", "timeout", "default")
    state: str
    request_id: str
    prompt: str
    choices: tuple[str, ...] | None
    timeout: float | None
    default: Any

    def __init__(self, agent: str, run_id: str, time: float,
                 state: str = "", request_id: str = "", prompt: str = "", choices: tuple[str, ...] | None = None,
                 timeout: float | None = None, default: Any = None) -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class HumanAnswered(Event):
    """A person (or default, or script) answered; ``source`` says which."""

    __slots__ = ("state", "request_id", "value", "source", "waited")
    state: str
    request_id: str
    value: Any
    source: str
    waited: float

    def __init__(self, agent: str, run_id: str, time: float,
                 state: str = "", request_id: str = "", value: Any = None, source: str = "person",
                 waited: float = 0.0) -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class HumanRejected(Event):
    """The validator rejected an answer; the person is asked again."""

    __slots__ = ("state", "request_id", "value", "message")
    state: str
    request_id: str
    value: Any
    message: str

    def __init__(self, agent: str, run_id: str, time: float,
                 state: str = "", request_id: str = "", value: Any = None, message: str = "") -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class HumanWithdrawn(Event):
    """An open request was withdrawn because its state or run was cancelled."""

    __slots__ = ("state", "request_id")
    state: str
    request_id: str

    def __init__(self, agent: str, run_id: str, time: float, state: str = "", request_id: str = "") -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class CheckpointSaved(Event):
    """A checkpoint was written; ``trigger`` is manual, pause, interval, state, failure or completion.

    ``duration``: seconds spent making and storing it (0.0 when the engine did not time it).
    """

    __slots__ = ("checkpoint_id", "trigger", "completed", "duration")
    checkpoint_id: str
    trigger: str
    completed: int
    duration: float

    def __init__(self, agent: str, run_id: str, time: float,
                 checkpoint_id: str = "", trigger: str = "", completed: int = 0, duration: float = 0.0) -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


class ResourceSample(Event):
    """Measured usage: process and system CPU (percent) and memory (MB); GPU if present.

    ``io_read_count`` / ``io_write_count``: the process's read and write operations so far
    (psutil's cumulative counters; -1 where the platform does not report them).
    """

    __slots__ = ("process_cpu", "process_memory_mb", "system_cpu", "system_memory_percent", "running", "gpu",
                 "io_read_count", "io_write_count")
    process_cpu: float
    process_memory_mb: float
    system_cpu: float
    system_memory_percent: float
    running: tuple[str, ...]
    gpu: tuple[float, ...]
    io_read_count: int
    io_write_count: int

    def __init__(self, agent: str, run_id: str, time: float,
                 process_cpu: float = 0.0, process_memory_mb: float = 0.0, system_cpu: float = 0.0,
                 system_memory_percent: float = 0.0, running: tuple[str, ...] = (), gpu: tuple[float, ...] = (),
                 io_read_count: int = -1, io_write_count: int = -1) -> None:
        ...  # the fields above: Event.__init_subclass__ compiles the body


Subscriber = Callable[[Event], Any]


class EventBus:
    """Delivers events to subscribers in order. Cheap when nobody listens.

    A subscriber that raises is logged and kept; it never breaks the run. An event
    published from inside a subscriber (it cancelled a state, say) is delivered after the
    current one has reached every subscriber, so all subscribers see one order.

    A subscriber may name the kinds of event it reads (``types``): it is then not called for
    the others, and :meth:`wants` tells a publisher whether anyone reads a kind at all, so an
    event nobody reads need not be built.

    Example:
        >>> bus = EventBus()
        >>> seen = []
        >>> unsubscribe = bus.subscribe(seen.append)
        >>> bus.publish(RunStarted("a", "r1", 0.0))
        >>> len(seen)
        1
        >>> unsubscribe()
    """

    __slots__ = ("_backlog", "_delivering", "_routes", "_subscribers", "active", "stepwise")

    def __init__(self) -> None:
        self._subscribers: tuple[tuple[Subscriber, tuple[type[Event], ...] | None], ...] = ()
        self._routes: dict[type, tuple[Subscriber, ...]] = {}  # event class -> who reads it (made on first use)
        self.active = False
        #: whether a subscriber reads an event the engine makes for every state it runs
        #: (``StateScheduled``, ``StateStarted``, ``StateFinished``): the engine tests it before it
        #: builds one, and steps a quiet chain in place only without it, so an observer of the
        #: rarer events alone (failures, asks, checkpoints: a live view) leaves a run at full speed
        self.stepwise = False
        self._delivering = False
        self._backlog: deque[Event] = deque()

    def subscribe(self, callback: Subscriber, types: Iterable[type[Event]] | None = None) -> Callable[[], None]:
        """Add ``callback``; returns a function that removes it again.

        Args:
            callback: Called with each event, in publish order.
            types: Event classes ``callback`` reads (their subclasses too); None, the default: all.

        Raises:
            ConfigurationError: ``types`` holds something that is not an :class:`Event` class.
        """
        kinds = None if types is None else tuple(types)
        for kind in kinds or ():
            if not (isinstance(kind, type) and issubclass(kind, Event)):
                from ._errors import ConfigurationError

                raise ConfigurationError(f"subscribe(types=...): {kind!r} is not an event class; pass classes "
                                         f"from fluffy_nb.engine._events such as StateFinished, or leave types out")
        entry = (callback, kinds)
        self._subscribers = (*self._subscribers, entry)
        self._changed()

        def unsubscribe() -> None:
            self._subscribers = tuple(s for s in self._subscribers if s is not entry)
            self._changed()

        return unsubscribe

    def _changed(self) -> None:
        """The subscribers changed: forget the routes, and say again who listens to what."""
        self._routes = {}
        self.active = bool(self._subscribers)
        self.stepwise = any(self.wants(kind) for kind in PER_STATE)

    def _route(self, kind: type) -> tuple[Subscriber, ...]:
        route = self._routes[kind] = tuple(
            callback for callback, kinds in self._subscribers if kinds is None or issubclass(kind, kinds))
        return route

    def wants(self, kind: type[Event]) -> bool:
        """Whether a subscriber reads events of class ``kind`` (False: publishing one does nothing)."""
        route = self._routes.get(kind)
        return bool(route if route is not None else self._route(kind))

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber that reads its kind, in subscription order."""
        route = self._routes.get(event.__class__)
        if route is None:
            route = self._route(event.__class__)
        if not route:  # nobody reads this kind
            return
        if self._delivering:  # published by a subscriber: queue it behind the current event
            self._backlog.append(event)
            return
        self._delivering = True
        try:
            while True:
                for callback in route:
                    try:
                        callback(event)
                    except Exception:  # a broken observer must not break the workflow
                        log.exception("fluffy_nb event subscriber %r failed on %r", callback, event)
                if not self._backlog:
                    return
                event = self._backlog.popleft()
                # who reads it now: a subscriber may have subscribed or left meanwhile
                route = self._routes.get(event.__class__) or self._route(event.__class__)
        finally:
            self._delivering = False

    def __repr__(self) -> str:
        return f"EventBus(subscribers={len(self._subscribers)})"


#: the events the engine makes for every state it runs (``EventBus.stepwise``: whether one is read)
PER_STATE: tuple[type[Event], ...] = (StateScheduled, StateStarted, StateFinished)
