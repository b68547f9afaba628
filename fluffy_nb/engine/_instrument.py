"""Attaching an event subscriber to chosen agents, or to every agent that runs.

The integrations that watch runs from outside (OpenTelemetry, Prometheus, the event log)
share this: ``attach(agent)`` subscribes one subscriber to that agent's bus;
``attach_all()`` adds a run observer (``_hooks.run_observers``) that subscribes every agent
just before its ``RunStarted``; ``detach()`` undoes either. Nothing is subscribed before a
call, so an agent nobody instruments keeps the bus's no-subscriber fast path.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

from . import _hooks

log = logging.getLogger("fluffy_nb")


class Instrumentation:
    """One kind of subscriber, attached per agent (idempotent) or to all agents.

    Args:
        make: ``make(agent)`` builds the subscriber for one agent. It should keep only a
            weak reference to the agent (the agent's bus keeps the subscriber alive).
        name: Shown in logs and ``repr``.
    """

    def __init__(self, make: Callable[[Any], Callable[[Any], Any]], name: str) -> None:
        self._make = make
        self.name = name
        self._attached: weakref.WeakKeyDictionary[Any, tuple[Callable[[], None], Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._observer: Callable[[Any], None] | None = None

    def attach(self, agent: Any, make: Callable[[Any], Callable[[Any], Any]] | None = None) -> Any:
        """Subscribe to ``agent`` (once); returns its subscriber. ``make`` overrides the factory."""
        entry = self._attached.get(agent)
        if entry is not None:
            return entry[1]
        subscriber = (make or self._make)(agent)
        self._attached[agent] = (agent.events.subscribe(subscriber), subscriber)
        return subscriber

    def attach_all(self, make: Callable[[Any], Callable[[Any], Any]] | None = None) -> None:
        """Also subscribe to every agent whose run starts from now on (``make``: the factory)."""
        if self._observer is not None:
            return

        def observe(agent: Any) -> None:
            try:
                self.attach(agent, make)
            except Exception:  # instrumentation must never stop a run
                log.exception("fluffy_nb %s could not attach to agent %r", self.name, getattr(agent, "name", agent))

        observe.__name__ = f"_observe_{self.name}"
        self._observer = observe
        _hooks.run_observers.append(observe)

    def detach(self, agent: Any = None) -> None:
        """Unsubscribe from ``agent``; with no agent, from all of them and stop ``attach_all``."""
        if agent is not None:
            entry = self._attached.pop(agent, None)
            if entry is not None:
                entry[0]()
            return
        if self._observer is not None:
            if self._observer in _hooks.run_observers:
                _hooks.run_observers.remove(self._observer)
            self._observer = None
        for unsubscribe, _ in list(self._attached.values()):
            unsubscribe()
        self._attached = weakref.WeakKeyDictionary()

    def subscriber(self, agent: Any) -> Any:
        """The subscriber attached to ``agent``, or None."""
        entry = self._attached.get(agent)
        return None if entry is None else entry[1]

    @property
    def global_(self) -> bool:
        """Whether every agent that runs is attached."""
        return self._observer is not None

    def __repr__(self) -> str:
        return f"<Instrumentation {self.name} agents={len(self._attached)} all={self.global_}>"
