"""Routing on failure: a state that fails for good (or times out) sends its branch on instead of failing the run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fluffy_nb import (
    Agent,
    AgentStatus,
    ConfigurationError,
    MemoryStore,
    RetryPolicy,
    StateFailedError,
    StateNotFoundError,
    StateStatus,
    StateTimeoutError,
)


async def test_exhausted_retries_route_to_the_fallback_with_the_error_visible() -> None:
    tries: list[int] = []

    async def primary(ctx: Any) -> str:
        tries.append(ctx.attempt)
        raise ConnectionError("model overloaded")

    async def fallback(ctx: Any) -> None:
        ctx.set_state("used", "fallback")
        ctx.set_state("why", f"{type(ctx.last_error).__name__}: {ctx.last_error}")

    store = MemoryStore()
    agent = Agent("ladder", store=store, durable=True)
    agent.add_state("primary", primary, on_error="fallback",
                    retry_policy=RetryPolicy(max_retries=2, initial_delay=0, jitter=False))
    agent.add_state("fallback", fallback)
    result = await agent.run()
    assert result.status is AgentStatus.COMPLETED
    assert tries == [1, 2, 3]
    assert (result["used"], result["why"]) == ("fallback", "ConnectionError: model overloaded")
    last = store.get(agent.history()[-1].checkpoint_id)
    assert last.state_status["primary"] is StateStatus.FAILED
    assert agent.graph.edges["primary"]["fallback"] == "error"


async def test_a_timeout_takes_on_timeout_and_errors_are_matched_by_class() -> None:
    async def slow(ctx: Any) -> None:
        await asyncio.Event().wait()

    async def picky(ctx: Any) -> None:
        raise ValueError("bad input")

    async def cached(ctx: Any) -> None:
        ctx.set_state("timed_out", isinstance(ctx.last_error, StateTimeoutError))

    async def fix_input(ctx: Any) -> None:
        ctx.set_state("fixed", str(ctx.last_error))

    async def fan(ctx: Any) -> list[str]:
        return ["slow", "picky"]

    agent = Agent("routes")
    agent.add_state("fan", fan)
    agent.add_state("slow", slow, timeout=0.05, on_timeout="cached", on_error="never")
    agent.add_state("picky", picky, on_error={(KeyError, ValueError): "fix_input", TimeoutError: "never"})
    agent.add_state("cached", cached)
    agent.add_state("fix_input", fix_input)
    agent.add_state("never", cached)
    result = await agent.run(start="fan")
    assert (result["timed_out"], result["fixed"]) == (True, "bad input")
    assert "never" not in result.state_runs


async def test_an_error_no_route_matches_still_fails_the_run() -> None:
    async def broken(ctx: Any) -> None:
        raise RuntimeError("no route for me")

    agent = Agent("unmatched")
    agent.add_state("broken", broken, on_error={ValueError: "fix"})
    agent.add_state("fix", broken)
    with pytest.raises(StateFailedError, match="no route for me"):
        await agent.run(start="broken")


def test_route_options_are_checked_when_added_and_at_run() -> None:
    agent = Agent("bad")
    with pytest.raises(ConfigurationError, match="exception classes to state names"):
        agent.add_state("a", lambda ctx: None, on_error={"ValueError": "b"})
    with pytest.raises(ConfigurationError, match="on_timeout=5"):
        agent.add_state("a", lambda ctx: None, on_timeout=5)
    agent.add_state("a", lambda ctx: None, on_error="ghost")
    with pytest.raises(StateNotFoundError, match="routes failures to 'ghost'"):
        asyncio.run(agent.run())


async def test_a_routed_failure_is_a_history_row_naming_the_error_and_where_it_went() -> None:
    async def primary(ctx: Any) -> None:
        raise ConnectionError("model overloaded")

    async def slow(ctx: Any) -> None:
        await asyncio.Event().wait()

    async def fallback(ctx: Any) -> str:
        return "slow"  # the fallback says nothing about the error: the history must

    async def cached(ctx: Any) -> None:
        return None

    store = MemoryStore()
    agent = Agent("ladder", store=store)  # not durable: the route rows are written all the same
    agent.add_state("primary", primary, on_error="fallback", max_retries=1)
    agent.add_state("fallback", fallback)
    agent.add_state("slow", slow, timeout=0.05, on_timeout="cached")
    agent.add_state("cached", cached)
    result = await agent.run(start="primary")
    assert result.status is AgentStatus.COMPLETED
    rows = agent.history()
    routed = [(r.trigger, r.error) for r in rows if r.trigger == "route"]
    assert routed == [("route", "ConnectionError: model overloaded"),
                      ("route", "StateTimeoutError: state 'slow' took longer than its timeout of 0.05s")]
    first, second = (store.get(r.checkpoint_id) for r in rows if r.trigger == "route")
    assert first.metadata["route"] == {"state": "primary", "to": "fallback", "attempts": 2, "payload": None}
    assert first.state_status["primary"] is StateStatus.FAILED
    assert first.pending == ["fallback"]  # where the run went on: a resume from this row runs the fallback
    assert second.metadata["route"]["to"] == "cached"
    assert rows[-1].trigger == "completion"
    assert rows[-1].error is None


async def test_a_routed_payload_branch_of_a_durable_run_is_a_history_row_naming_its_item() -> None:
    async def split(ctx: Any) -> Any:
        return ctx.map("score", ["a", "bad", "c"])

    async def score(ctx: Any) -> str:
        if ctx.payload == "bad":
            raise ValueError(f"cannot score {ctx.payload!r}")
        ctx.set_result(ctx.payload.upper())
        return "merge"

    async def rescue(ctx: Any) -> str:
        ctx.set_result("?")
        return "merge"

    async def merge(ctx: Any) -> None:
        ctx.set_state("out", ctx.results("score"))

    store = MemoryStore()
    agent = Agent("mapped", store=store, durable=True)
    agent.add_state("split", split)
    agent.add_state("score", score, on_error="rescue")
    agent.add_state("rescue", rescue)
    agent.add_state("merge", merge)
    result = await agent.run()
    assert result["out"] == ["A", "?", "C"]
    frame = agent.history().to_pandas()
    routed = frame[frame["trigger"] == "route"]
    assert list(routed["error"]) == ["ValueError: cannot score 'bad'"]
    cp = store.get(routed["checkpoint_id"].iloc[0])
    assert cp.metadata["route"] == {"state": "score", "to": "rescue", "attempts": 1, "payload": 1}
