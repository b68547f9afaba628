"""Re-entering a sub-workflow state in a live run runs a fresh child: only a run restored from a
checkpoint continues the child it was inside (tests/engine/test_subflows.py has those)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fluffy_nb import Agent, AgentStatus, MemoryStore, StateStatus
from tests._wait import until


def _holding_child(log: list[str], reached: asyncio.Event) -> Agent:
    """c0 -> c1 -> c2 -> c3; c2 waits forever while its input ``hold`` is true."""
    kid = Agent("kidagent")
    for i in range(4):
        async def step(ctx: Any, i: int = i) -> str | None:
            log.append(f"c{i}")
            if i == 2 and ctx.get_state("hold"):
                reached.set()
                await asyncio.Event().wait()
            return f"c{i + 1}" if i < 3 else None

        kid.add_state(f"c{i}", step)
    return kid


@pytest.mark.parametrize("how", ["route", "transition"])
async def test_a_child_state_entered_again_after_cancel_state_runs_a_fresh_child(how: str) -> None:
    # a route (on_error) or a plain transition back into "kid" after cancel_state("kid") used to
    # continue the cancelled child run (same id): c0/c1 skipped, the stale hold=True kept, c2 hung
    log: list[str] = []
    reached = asyncio.Event()
    parent = Agent("par", store=MemoryStore(), durable=True)

    async def fan(ctx: Any) -> list[str]:
        ctx.set_state("hold", True)
        return ["kid", "other"]

    async def other(ctx: Any) -> str:
        await reached.wait()
        parent.cancel_state("kid")
        run = parent.latest_run
        assert run is not None
        await until(lambda: run.metadata["kid"].status is StateStatus.CANCELLED, "kid cancelled")
        ctx.set_state("hold", False)
        log.append("again")
        if how == "route":
            raise ConnectionError("down")
        return "kid"

    parent.add_state("fan", fan)
    parent.add_state("kid", _holding_child(log, reached), inputs=["hold"])
    parent.add_state("other", other, on_error="kid")
    result = await asyncio.wait_for(parent.run(start="fan"), 10)
    assert result.status is AgentStatus.COMPLETED
    assert log[log.index("again") + 1:] == ["c0", "c1", "c2", "c3"]
    kids = {r.run_id for r in parent.store.list() if r.agent_name == "par/kid"}  # type: ignore[union-attr]
    assert len(kids) == 2  # the cancelled child and a fresh one
