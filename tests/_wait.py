"""Waiting in tests without sleeping: yield to the event loop until something holds, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def until(predicate: Callable[[], Any], what: str = "the condition", limit: int = 10_000) -> None:
    """Yield to the loop until ``predicate()`` holds; fail (never hang) after ``limit`` turns."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")
