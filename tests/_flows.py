"""Small state builders the wait tests share (engine and notebook views of the same waits)."""

from __future__ import annotations

import asyncio
from typing import Any

from fluffy_nb import Agent


def fan(agent: Agent, names: list[str]) -> None:
    """Add a ``start`` state that fans out to ``names``."""

    async def start(ctx: Any) -> list[str]:
        return list(names)

    agent.add_state("start", start, next=names)


def holding(gate: asyncio.Event, then: str | None = None) -> Any:
    """A state body that waits for ``gate``, then goes on to ``then``."""

    async def body(ctx: Any) -> str | None:
        await gate.wait()
        return then

    return body


async def noop(ctx: Any) -> None:
    """A state that does nothing and ends its branch."""
    return None
