"""Events the engine publishes, and the bus observers subscribe to.

Events are small frozen records. Observers (live views, metrics, monitors, tracing)
subscribe with a plain callable and receive every event, in publish order, synchronously.
Publishing with no subscriber costs one attribute check: the engine tests
``bus.active`` before it even builds an event.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("fluffy_nb")


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event: which agent, which run, when (clock time)."""

    agent: str
    run_id: str
    time: float


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    """A run began. ``states`` lists the start states."""

    states: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    """A run ended with ``status``; ``error`` is the failure's text, if any."""

    status: str = "completed"
    error: str | None = None
    duration: float = 0.0


@dataclass(frozen=True, slots=True)
class StateAdded(Event):
    """A state was registered (also at run time: dynamic states)."""

    state: str = ""


@dataclass(frozen=True, slots=True)
class StateScheduled(Event):
    """A state was queued to run; ``source`` is the state that named it (None: a start state)."""

    state: str = ""
    source: str | None = None


@dataclass(frozen=True, slots=True)
class StateBlocked(Event):
    """A state waits for something other than a free slot: ``reason`` says what, ``kind`` names
    it (resource, rate_limit, lock, barrier, quota, dependency; see ``_why.py``) and ``holders``
    the states holding what it needs."""

    state: str = ""
    reason: str = ""
    kind: str = ""
    holders: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StateStarted(Event):
    """A state's function started (attempt 1 is the first try)."""

    state: str = ""
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class StatePlaced(Event):
    """A state attempt's body started on a remote executor's worker: ``where`` names it
    (a Dask worker address). Published by the executor, after ``StateStarted``."""

    state: str = ""
    attempt: int = 1
    where: str = ""


@dataclass(frozen=True, slots=True)
class StateFinished(Event):
    """A state completed; ``next_states`` is what it returned, as a tuple."""

    state: str = ""
    attempt: int = 1
    duration: float = 0.0
    next_states: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StateFailed(Event):
    """A state attempt failed; ``final`` is False when a retry follows."""

    state: str = ""
    attempt: int = 1
    duration: float = 0.0
    error: str = ""
    error_type: str = ""
    final: bool = True
    timed_out: bool = False
    exception: BaseException | None = field(default=None, compare=False, repr=False)  # the error itself


@dataclass(frozen=True, slots=True)
class StateRetrying(Event):
    """A failed state will run again after ``delay`` seconds."""

    state: str = ""
    attempt: int = 1
    delay: float = 0.0
    error: str = ""


@dataclass(frozen=True, slots=True)
class StateCancelled(Event):
    """A state was cancelled (by ``cancel_state``, ``cancel_all``, a run timeout or preemption)."""

    state: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class HumanRequested(Event):
    """A state asks a person; the request id answers it."""

    state: str = ""
    request_id: str = ""
    prompt: str = ""
    choices: tuple[str, ...] | None = None
    timeout: float | None = None
    default: Any = None


@dataclass(frozen=True, slots=True)
class HumanAnswered(Event):
    """A person (or default, or script) answered; ``source`` says which."""

    state: str = ""
    request_id: str = ""
    value: Any = None
    source: str = "person"
    waited: float = 0.0


@dataclass(frozen=True, slots=True)
class HumanRejected(Event):
    """The validator rejected an answer; the person is asked again."""

    state: str = ""
    request_id: str = ""
    value: Any = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class HumanWithdrawn(Event):
    """An open request was withdrawn because its state or run was cancelled."""

    state: str = ""
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class CheckpointSaved(Event):
    """A checkpoint was written; ``trigger`` is manual, pause, interval, state, failure or completion.

    ``duration``: seconds spent making and storing it (0.0 when the engine did not time it).
    """

    checkpoint_id: str = ""
    trigger: str = ""
    completed: int = 0
    duration: float = 0.0


@dataclass(frozen=True, slots=True)
class ResourceSample(Event):
    """Measured usage: process and system CPU (percent) and memory (MB); GPU if present.

    ``io_read_count`` / ``io_write_count``: the process's read and write operations so far
    (psutil's cumulative counters; -1 where the platform does not report them).
    """

    process_cpu: float = 0.0
    process_memory_mb: float = 0.0
    system_cpu: float = 0.0
    system_memory_percent: float = 0.0
    running: tuple[str, ...] = ()
    gpu: tuple[float, ...] = field(default_factory=tuple)
    io_read_count: int = -1
    io_write_count: int = -1


Subscriber = Callable[[Event], Any]


class EventBus:
    """Delivers events to subscribers in order. Cheap when nobody listens.

    A subscriber that raises is logged and kept; it never breaks the run. An event
    published from inside a subscriber (it cancelled a state, say) is delivered after the
    current one has reached every subscriber, so all subscribers see one order.

    Example:
        >>> bus = EventBus()
        >>> seen = []
        >>> unsubscribe = bus.subscribe(seen.append)
        >>> bus.publish(RunStarted("a", "r1", 0.0))
        >>> len(seen)
        1
        >>> unsubscribe()
    """

    __slots__ = ("_backlog", "_delivering", "_subscribers", "active")

    def __init__(self) -> None:
        self._subscribers: tuple[Subscriber, ...] = ()
        self.active = False
        self._delivering = False
        self._backlog: deque[Event] = deque()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Add ``callback``; returns a function that removes it again."""
        self._subscribers = (*self._subscribers, callback)
        self.active = True

        def unsubscribe() -> None:
            self._subscribers = tuple(s for s in self._subscribers if s is not callback)
            self.active = bool(self._subscribers)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber, in subscription order."""
        if self._delivering:  # published by a subscriber: queue it behind the current event
            self._backlog.append(event)
            return
        self._delivering = True
        try:
            while True:
                for callback in self._subscribers:
                    try:
                        callback(event)
                    except Exception:  # a broken observer must not break the workflow
                        log.exception("fluffy_nb event subscriber %r failed on %r", callback, event)
                if not self._backlog:
                    return
                event = self._backlog.popleft()
        finally:
            self._delivering = False

    def __repr__(self) -> str:
        return f"EventBus(subscribers={len(self._subscribers)})"
