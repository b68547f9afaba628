"""The engine's event log: runs and states logged through the ``fluffy_nb`` logger, silent by default.

The ``fluffy_nb`` logger has a ``NullHandler``, so nothing is printed unless the application
configures logging. The event log is a bus subscriber like any observer; it is attached

* automatically to each run that starts while the ``fluffy_nb`` logger is enabled for INFO
  (``logging.basicConfig(level=logging.INFO)``, or ``logging.getLogger("fluffy_nb").setLevel(...)``
  with a handler), and detached again from a run that starts when it is not;
* or explicitly with :func:`enable_logging` (all agents, or one), until :func:`disable_logging`.

When it is not attached the engine's no-subscriber fast path stays as it is: logging off costs
one ``isEnabledFor`` check per run. Every record carries structured extras ``agent``, ``run``,
``state`` (None for run-level records), ``attempt`` (None where it does not apply) and ``event``
(the event's class name), for JSON formatters and log shippers.

Levels: run started/finished INFO (failed ERROR, cancelled WARNING); a state's attempt
started/finished, scheduled, blocked and checkpoints DEBUG; a failed attempt that is retried
WARNING, a final failure ERROR (with the exception when the engine is handling it); retries,
cancellations and human-in-the-loop questions and answers INFO.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import _hooks
from ._events import (
    CheckpointSaved,
    Event,
    HumanAnswered,
    HumanRejected,
    HumanRequested,
    HumanWithdrawn,
    RunFinished,
    RunStarted,
    StateBlocked,
    StateCancelled,
    StateFailed,
    StateFinished,
    StatePlaced,
    StateRetrying,
    StateScheduled,
    StateStarted,
)
from ._instrument import Instrumentation

log = logging.getLogger("fluffy_nb")
if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
    log.addHandler(logging.NullHandler())

DEBUG, INFO, WARNING, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class EventLogger:
    """Bus subscriber writing one log record per engine event (see the module docstring)."""

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def __call__(self, event: Event) -> None:
        """Log ``event`` if the logger is enabled for its level."""
        top = _TOP_LEVEL.get(type(event))
        if top is None or not self.logger.isEnabledFor(top):
            return  # the common case with the logger at WARNING: no message is built
        entry = self._describe(event)
        if entry is None:
            return
        level, message, args = entry
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        state = getattr(event, "state", None) or None
        extra = {"agent": event.agent, "run": event.run_id, "state": state,
                 "attempt": getattr(event, "attempt", None), "event": type(event).__name__}
        exc_info = None
        if isinstance(event, StateFailed) and event.final and event.exception is not None:
            exc = event.exception
            exc_info = (type(exc), exc, exc.__traceback__)
        logger.log(level, message, *args, extra=extra, exc_info=exc_info)

    @staticmethod
    def _describe(e: Event) -> tuple[int, str, tuple[Any, ...]] | None:
        describe = _DESCRIBE.get(type(e))
        return None if describe is None else describe(e, e.run_id[:8])

    def __repr__(self) -> str:
        return f"<EventLogger logger={self.logger.name!r}>"


Line = tuple[int, str, tuple[Any, ...]]


def _state_failed(e: Any, run: str) -> Line:
    how = "timed out" if e.timed_out else "failed"
    if e.final:
        return ERROR, "%s[%s] state %r %s for good on attempt %d: %s: %s", (
            e.agent, run, e.state, how, e.attempt, e.error_type, e.error)
    return WARNING, "%s[%s] state %r attempt %d %s: %s: %s", (e.agent, run, e.state, e.attempt, how, e.error_type,
                                                              e.error)


def _run_finished(e: Any, run: str) -> Line:
    level = {"completed": INFO, "failed": ERROR}.get(e.status, WARNING)
    if e.error:
        return level, "%s[%s] run %s after %.3fs: %s", (e.agent, run, e.status, e.duration, e.error)
    return level, "%s[%s] run %s after %.3fs", (e.agent, run, e.status, e.duration)


#: event type -> (event, short run id) -> (level, message, args)
_DESCRIBE: dict[type, Callable[[Any, str], Line]] = {
    StateStarted: lambda e, run: (DEBUG, "%s[%s] state %r attempt %d started", (e.agent, run, e.state, e.attempt)),
    StateFinished: lambda e, run: (DEBUG, "%s[%s] state %r finished in %.3fs -> %s",
                                   (e.agent, run, e.state, e.duration, list(e.next_states))),
    StatePlaced: lambda e, run: (DEBUG, "%s[%s] state %r attempt %d runs on %s", (e.agent, run, e.state, e.attempt,
                                                                                e.where)),
    StateScheduled: lambda e, run: (DEBUG, "%s[%s] state %r scheduled (from %r)", (e.agent, run, e.state, e.source)),
    StateFailed: _state_failed,
    StateRetrying: lambda e, run: (INFO, "%s[%s] state %r retries (attempt %d) in %.3fs",
                                   (e.agent, run, e.state, e.attempt, e.delay)),
    StateBlocked: lambda e, run: (DEBUG, "%s[%s] state %r waits: %s", (e.agent, run, e.state, e.reason)),
    StateCancelled: lambda e, run: (INFO, "%s[%s] state %r cancelled: %s", (e.agent, run, e.state, e.reason)),
    RunStarted: lambda e, run: (INFO, "%s[%s] run started at %s", (e.agent, run, list(e.states))),
    RunFinished: _run_finished,
    HumanRequested: lambda e, run: (INFO, "%s[%s] state %r asks a person: %r (request %s)",
                                    (e.agent, run, e.state, e.prompt, e.request_id)),
    HumanAnswered: lambda e, run: (INFO, "%s[%s] state %r answered by %s after %.1fs: %s",
                                   (e.agent, run, e.state, e.source, e.waited, _short(e.value))),
    HumanRejected: lambda e, run: (INFO, "%s[%s] state %r: answer rejected: %s", (e.agent, run, e.state, e.message)),
    HumanWithdrawn: lambda e, run: (INFO, "%s[%s] state %r: question withdrawn (request %s)",
                                    (e.agent, run, e.state, e.request_id)),
    CheckpointSaved: lambda e, run: (DEBUG, "%s[%s] checkpoint %s saved (%s, %d completed)",
                                     (e.agent, run, e.checkpoint_id[:8], e.trigger, e.completed)),
}


#: the highest level each event type can be logged at: below it, no record of that type is made
_TOP_LEVEL: dict[type, int] = {
    StateStarted: DEBUG, StateFinished: DEBUG, StateScheduled: DEBUG, StateBlocked: DEBUG, CheckpointSaved: DEBUG,
    StatePlaced: DEBUG,
    StateFailed: ERROR, StateRetrying: INFO, StateCancelled: INFO, RunStarted: INFO, RunFinished: ERROR,
    HumanRequested: INFO, HumanAnswered: INFO, HumanRejected: INFO, HumanWithdrawn: INFO,
}

_instrumentation = Instrumentation(lambda agent: EventLogger(), "logging")
_automatic: set[int] = set()  # id(subscriber) of event logs attached because the logger was enabled


def enable_logging(agent: Any = None, *, level: int | None = None) -> None:
    """Log engine events through the ``fluffy_nb`` logger.

    Args:
        agent: Only this agent; None: every agent whose run starts from now on.
        level: Also set the ``fluffy_nb`` logger's level (e.g. ``logging.DEBUG`` for every state).

    Handlers stay yours to configure (``logging.basicConfig(...)``); records carry the extras
    ``agent``, ``run``, ``state``, ``attempt`` and ``event``.

    Example:
        >>> import logging, fluffy_nb
        >>> logging.basicConfig(format="%(levelname)s %(agent)s %(state)s %(message)s")  # doctest: +SKIP
        >>> fluffy_nb.enable_logging(level=logging.INFO)                                  # doctest: +SKIP
    """
    if level is not None:
        log.setLevel(level)
    if agent is None:
        _instrumentation.attach_all()
    else:
        _automatic.discard(id(_instrumentation.attach(agent)))


def disable_logging(agent: Any = None) -> None:
    """Stop logging ``agent``'s events (None: every agent's, and undo :func:`enable_logging`)."""
    _instrumentation.detach(agent)
    if agent is None:
        _automatic.clear()


def _observe_logging(agent: Any) -> None:
    """Run observer: attach the event log when the logger is enabled, detach an automatic one when not."""
    if _instrumentation.global_:
        return  # enable_logging() attaches every agent itself
    current = _instrumentation.subscriber(agent)
    if log.isEnabledFor(INFO):
        if current is None:
            _automatic.add(id(_instrumentation.attach(agent)))
    elif current is not None and id(current) in _automatic:
        _automatic.discard(id(current))
        _instrumentation.detach(agent)


if not any(getattr(o, "__name__", "") == "_observe_logging" for o in _hooks.run_observers):
    _hooks.run_observers.append(_observe_logging)
