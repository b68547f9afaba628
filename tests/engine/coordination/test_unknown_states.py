"""Coordination declared for a state the agent does not have is an error, not a silent no-op."""

from __future__ import annotations

from typing import Any

import pytest

from fluffy_nb import Agent, PrimitiveType, StateNotFoundError, enhance_agent


async def test_rate_limit_for_a_misspelled_state_fails_the_run_naming_it() -> None:
    agent = enhance_agent(Agent("typo"))

    async def api_call(ctx: Any) -> None:
        return None

    agent.add_state_rate_limit("api_call", max_rate=10.0)  # before add_state, as the spec does
    agent.add_state("api_call", api_call)
    agent.add_state_rate_limit("api_cal", max_rate=10.0)
    with pytest.raises(StateNotFoundError, match=r"\['api_cal'\].*api_call"):
        await agent.run()


async def test_coordination_declared_before_the_state_is_added_is_fine() -> None:
    agent = enhance_agent(Agent("order"))
    ran: list[str] = []

    async def write(ctx: Any) -> None:
        ran.append("write")

    agent.add_state_coordination("write", PrimitiveType.MUTEX)
    agent.add_state("write", write)
    await agent.run()
    assert ran == ["write"]
