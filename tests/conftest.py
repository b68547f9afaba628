"""Shared test helpers: record an agent's events, answer its human-in-the-loop requests.

Kept small on purpose; subpackages add their own fixtures in their own conftest.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from fluffy_nb.engine._events import Event, HumanRequested


class EventLog(list):  # type: ignore[type-arg]
    """Every event one agent published, in order, with small query helpers."""

    def of(self, kind: type, state: str | None = None) -> list[Any]:
        """Events of class ``kind`` (for ``state`` if given)."""
        return [e for e in self if isinstance(e, kind) and (state is None or getattr(e, "state", None) == state)]

    def kinds(self, state: str) -> list[str]:
        """Class names of the events about ``state``, in order."""
        return [type(e).__name__ for e in self if getattr(e, "state", None) == state]


@pytest.fixture
def record() -> Callable[[Any], EventLog]:
    """``log = record(agent)`` subscribes to ``agent.events`` and collects every event."""

    def attach(agent: Any) -> EventLog:
        log = EventLog()
        agent.events.subscribe(log.append)
        return log

    return attach


@pytest.fixture
def answer_with() -> Callable[..., list[str]]:
    """``prompts = answer_with(agent, "yes", ...)``: answer its human requests in turn, as a person would.

    Each answer is given from the event loop right after the request is announced (never
    inside the publishing call), through the public ``agent.answer(request_id, value)``.
    """

    def attach(agent: Any, *answers: Any) -> list[str]:
        queue = list(answers)
        prompts: list[str] = []

        def on_event(event: Event) -> None:
            if isinstance(event, HumanRequested):
                prompts.append(event.prompt)
                if queue:
                    asyncio.get_running_loop().call_soon(agent.answer, event.request_id, queue.pop(0))

        agent.events.subscribe(on_event)
        return prompts

    return attach
