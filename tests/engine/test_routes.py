"""Routing on failure: a state that fails for good (or times out) sends its branch on instead of failing the run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fluffy_nb import (
    Agent,
    AgentStatus,
    Checkpoint,
    ConfigurationError,
    MemoryStore,
    RetryPolicy,
    StateFailedError,
    StateNotFoundError,
    StateStatus,
    StateTimeoutError,
)
from tests._wait import until


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


class QuotaExceeded(Exception):
    """A failure class of the user's own: a checkpoint never names a class to import."""


@pytest.mark.parametrize(("raised", "expected"), [
    (ConnectionError("model overloaded"), "ConnectionError('model overloaded')"),
    (KeyError("boom"), "KeyError('boom')"),
    (QuotaExceeded("over quota"), "RoutedError('QuotaExceeded: over quota')"),
])
async def test_a_run_restored_while_a_route_runs_gives_the_route_its_error_again(raised: Exception,
                                                                                  expected: str) -> None:
    seen: list[str] = []
    hold = asyncio.Event()

    def agent_for(blocking: bool) -> Agent:
        async def fan(ctx: Any) -> list[str]:
            return ["primary", "other"]

        async def primary(ctx: Any) -> None:
            raise raised

        async def fallback(ctx: Any) -> None:
            seen.append(repr(ctx.last_error))
            if blocking:
                await hold.wait()  # never set: the run is stopped here, as a kill would

        async def other(ctx: Any) -> None:
            await until(lambda: bool(seen))  # finishes after the route: a durable step's checkpoint

        agent = Agent("restored_route", store=MemoryStore(), durable=True)
        agent.add_state("fan", fan)
        agent.add_state("primary", primary, on_error="fallback")
        agent.add_state("fallback", fallback)
        agent.add_state("other", other)
        return agent

    first = agent_for(blocking=True)
    task = asyncio.create_task(first.run(start="fan"))
    await until(lambda: first.latest_run is not None and "other" in first.latest_run.completed_states,
                "other completes")
    rows = first.history()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [r.trigger for r in rows][-2:] == ["route", "state"]
    for row in rows[-2:]:  # the route's own row, and a later step's while the route still runs
        seen.clear()
        second = agent_for(blocking=False)
        second.restore(Checkpoint.from_json(first.store.get(row.checkpoint_id).to_json()))
        result = await second.run()
        assert result.status is AgentStatus.COMPLETED
        assert seen == [expected]


async def test_a_restored_timeout_route_still_reads_as_a_state_timeout() -> None:
    seen: list[Any] = []

    async def slow(ctx: Any) -> None:
        await asyncio.Event().wait()

    async def cached(ctx: Any) -> None:
        seen.append(ctx.last_error)
        if len(seen) == 1:
            await asyncio.Event().wait()  # the first run is stopped here

    store = MemoryStore()
    agent = Agent("timeouts", store=store)
    agent.add_state("slow", slow, timeout=0.01, on_timeout="cached")
    agent.add_state("cached", cached)
    task = asyncio.create_task(agent.run(start="slow"))
    await until(lambda: bool(seen), "the route runs")
    [row] = [r for r in agent.history() if r.trigger == "route"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    again = Agent("timeouts", store=store)
    again.add_state("slow", slow, timeout=0.01, on_timeout="cached")
    again.add_state("cached", cached)
    again.restore(row.checkpoint_id)
    await again.run()
    assert isinstance(seen[1], StateTimeoutError)
    assert str(seen[1]) == str(seen[0])
    assert seen[1].state == "slow"


@pytest.mark.parametrize("note", ["junk", {"from": "slow", "type": "ValueError"}, {"from": "slow", "type": "X" * 300,
                                                                                  "message": "m"}])
async def test_a_damaged_note_of_a_routed_failure_is_a_checkpoint_error(note: Any) -> None:
    from fluffy_nb import CheckpointError

    async def slow(ctx: Any) -> None:
        await asyncio.Event().wait()

    async def cached(ctx: Any) -> None:
        await asyncio.Event().wait()

    store = MemoryStore()
    agent = Agent("damaged", store=store)
    agent.add_state("slow", slow, timeout=0.01, on_timeout="cached")
    agent.add_state("cached", cached)
    task = asyncio.create_task(agent.run(start="slow"))
    await until(lambda: any(r.trigger == "route" for r in agent.history()), "the route is recorded")
    [row] = [r for r in agent.history() if r.trigger == "route"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    data = store.get(row.checkpoint_id).to_dict()
    assert data["metadata"]["routed"]["cached"]["type"] == "StateTimeoutError"
    data["metadata"]["routed"]["cached"] = note
    again = Agent("damaged")
    again.add_state("slow", slow, timeout=0.01, on_timeout="cached")
    again.add_state("cached", cached)
    again.restore(Checkpoint.from_dict(data))
    with pytest.raises(CheckpointError, match="routed to state 'cached'"):
        await again.run()


async def test_the_state_after_a_route_is_restored_without_the_routes_error() -> None:
    seen: list[str] = []

    def agent_for(store: MemoryStore) -> Agent:
        async def primary(ctx: Any) -> None:
            raise ConnectionError("down")

        async def fallback(ctx: Any) -> str:
            return "after"  # the branch steps on: only the fallback read the failure

        async def after(ctx: Any) -> None:
            seen.append(repr(ctx.last_error))
            if len(seen) == 1:
                await asyncio.Event().wait()  # the first run is stopped here

        agent = Agent("stepping_on", store=store)  # not durable: the fallback steps on to after in place
        agent.add_state("primary", primary, on_error="fallback")
        agent.add_state("fallback", fallback)
        agent.add_state("after", after)
        return agent

    store = MemoryStore()
    first = agent_for(store)
    task = asyncio.create_task(first.run(start="primary"))
    await until(lambda: bool(seen), "after runs")
    assert first.latest_run is not None
    last = first.latest_run.create_checkpoint()  # taken while after runs
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert last.pending == ["after"]
    assert "routed" not in last.metadata
    second = agent_for(MemoryStore())
    second.restore(Checkpoint.from_json(last.to_json()))
    await second.run()
    assert seen == ["None", "None"]
