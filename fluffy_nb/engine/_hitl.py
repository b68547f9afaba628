"""Human-in-the-loop protocol (engine side): requests, answers and responders.

Minimal core: a request is created, announced as an event, and answered through
``HumanLoop.answer``. Responders (console, scripted, widget) build on it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._errors import HumanTimeoutError
from ._events import HumanAnswered, HumanRequested

if TYPE_CHECKING:
    from ._agent import Agent
    from ._context import Context


@dataclass
class HumanRequest:
    """An open question to a person."""

    request_id: str
    state: str
    prompt: str
    timeout: float | None = None
    default: Any = None
    choices: tuple[str, ...] | None = None
    schema: type | None = None
    validator: Callable[[Any], Any] | None = None
    asked_at: float = 0.0
    future: asyncio.Future[Any] = field(default=None, repr=False)  # type: ignore[assignment]


class HumanLoop:
    """Open requests of one agent and the machinery to answer them."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._open: dict[str, HumanRequest] = {}
        self._ids = itertools.count(1)

    def pending(self) -> list[HumanRequest]:
        """Requests waiting for an answer, oldest first."""
        return list(self._open.values())

    def answer(self, request_id: str, value: Any) -> None:
        """Answer an open request."""
        req = self._open[request_id]
        if not req.future.done():
            req.future.set_result(value)

    async def ask(
        self,
        ctx: Context,
        prompt: str,
        *,
        timeout: float | None,
        validator: Callable[[Any], Any] | None,
        default: Any,
        choices: Sequence[str] | None,
        schema: type | None,
    ) -> Any:
        """Create a request and wait for its answer."""
        agent = self._agent
        rid = f"{agent.run_id[:8]}-{next(self._ids)}"
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        req = HumanRequest(
            rid, ctx.state_name, str(prompt), timeout, default,
            tuple(choices) if choices else None, schema, validator, agent.clock.time(), fut,
        )
        self._open[rid] = req
        bus = agent.events
        if bus.active:
            bus.publish(HumanRequested(agent.name, agent.run_id, agent.clock.monotonic(), ctx.state_name,
                                       rid, req.prompt, req.choices, timeout, default))
        try:
            if timeout is None:
                value = await fut
            else:
                done, _ = await asyncio.wait({fut}, timeout=timeout)
                if not done:
                    if default is None:
                        raise HumanTimeoutError(f"state {ctx.state_name!r}: nobody answered {prompt!r} within {timeout}s")
                    value = default
                else:
                    value = fut.result()
        finally:
            self._open.pop(rid, None)
        if bus.active:
            bus.publish(HumanAnswered(agent.name, agent.run_id, agent.clock.monotonic(), ctx.state_name, rid, value))
        return value
