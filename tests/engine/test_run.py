"""One workflow, many runs: the Agent defines, each Run executes with its own everything."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from _wait import until

from fluffy_nb import Agent, AgentStatus, ProgrammaticResponder, RetryPolicy, SQLiteStore


def order_workflow(store: Any, attempts: Counter[tuple[int, str]]) -> Agent:
    """Fan out to price and stock (price fails once per run), join at review, ask a person."""
    agent = Agent("orders", store=store, durable=True, responder=ProgrammaticResponder())

    async def receive(ctx):
        ctx.set_state("items", [ctx.get_state("order")] * 3)
        return ["price", "stock"]

    async def price(ctx):
        attempts[(ctx.get_state("order"), "price")] += 1
        if ctx.attempt == 1:
            raise ConnectionError("price service busy")
        ctx.set_state("total", sum(ctx.get_state("items")))
        return "review"

    async def stock(ctx):
        ctx.set_state("in_stock", len(ctx.get_state("items")))
        return "review"

    async def review(ctx):
        attempts[(ctx.get_state("order"), "review")] += 1
        answer = await ctx.human_in_the_loop(f"approve order {ctx.get_state('order')}?", choices=["yes", "no"])
        ctx.set_state("decision", answer)
        return None

    agent.add_state("receive", receive)
    agent.add_state("price", price, retry_policy=RetryPolicy(max_retries=2, initial_delay=0, jitter=False))
    agent.add_state("stock", stock)
    agent.add_state("review", review)
    return agent


async def answer_each_run(agent: Agent, count: int) -> dict[str, str]:
    """Answer every run's question with its own order number's parity; returns run id -> answer."""
    answered: dict[str, str] = {}
    seen: set[str] = set()
    while len(answered) < count:
        for req in agent.pending_requests():
            if req.request_id not in seen:
                seen.add(req.request_id)
                order = int(req.prompt.split()[2].rstrip("?"))
                value = "yes" if order % 2 == 0 else "no"
                agent.answer(req.request_id, value)
                answered[req.run_id] = value
        await asyncio.sleep(0)
    return answered


async def test_a_hundred_concurrent_runs_of_one_agent_stay_independent(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    attempts: Counter[tuple[int, str]] = Counter()
    agent = order_workflow(store, attempts)
    runs = [agent.run(initial_context={"order": i}) for i in range(100)]
    answering = asyncio.create_task(answer_each_run(agent, 100))
    try:
        results = await asyncio.wait_for(asyncio.gather(*runs), 60)
        answered = await asyncio.wait_for(answering, 5)
    finally:
        answering.cancel()

    assert len({r.run_id for r in results}) == 100
    for i, result in enumerate(results):
        assert result.status is AgentStatus.COMPLETED
        assert result["order"] == i
        assert result["total"] == 3 * i
        assert result["in_stock"] == 3
        assert result["decision"] == ("yes" if i % 2 == 0 else "no")
        assert answered[result.run_id] == result["decision"]
        assert result.state_runs == {"receive": 1, "price": 1, "stock": 1, "review": 1}
        assert (attempts[(i, "price")], attempts[(i, "review")]) == (2, 1)

    store.flush()
    for result in results[:: 10]:
        history = agent.history(run_id=result.run_id)
        assert {row.run_id for row in history} == {result.run_id}
        last = store.get(history[-1].checkpoint_id)
        assert last.agent_status is AgentStatus.COMPLETED
        assert last.shared_state["order"] == result["order"]
        assert [a.value for a in last.human_answers] == [result["decision"]]
        assert [row.sequence for row in history] == list(range(1, len(history) + 1))
    store.close()


async def test_two_parents_share_one_child_definition() -> None:
    child = Agent("child")

    async def double(ctx):
        await asyncio.sleep(0)
        ctx.set_state("out", ctx.get_state("x") * 2)
        return None

    child.add_state("double", double)

    def parent(name: str, x: int) -> Agent:
        agent = Agent(name)

        async def call_child(ctx):
            result = await child.run(initial_context={"x": x})
            ctx.set_state("child_run", result.run_id)
            ctx.set_state("got", result["out"])
            return None

        agent.add_state("call_child", call_child)
        return agent

    a, b = parent("a", 5), parent("b", 7)
    ra, rb = await asyncio.gather(a.run(), b.run())
    assert (ra["got"], rb["got"]) == (10, 14)
    assert ra["child_run"] != rb["child_run"]
    assert {r.run_id for r in child.runs} == {ra["child_run"], rb["child_run"]}


async def test_agent_level_names_act_on_the_latest_run() -> None:
    gate = asyncio.Event()

    async def wait(ctx):
        await gate.wait()
        ctx.set_state("done", ctx.get_state("n"))

    agent = Agent("latest")
    agent.add_state("wait", wait)
    first = agent.start(initial_context={"n": 1})
    second = agent.start(initial_context={"n": 2})
    await until(lambda: second.run.active and first.run.active)
    assert agent.latest_run is second.run
    assert agent.run_id == second.run_id
    assert agent.get_state("n") == 2
    assert agent.status is AgentStatus.RUNNING
    snap = first.run.snapshot()
    assert (snap.run_id, snap.status, snap.running) == (first.run_id, "running", ("wait",))
    gate.set()
    one, two = await first, await second
    assert (one["done"], two["done"]) == (1, 2)
    assert agent.state_metadata is second.run.metadata


async def test_a_snapshot_is_a_copy_that_later_changes_do_not_touch() -> None:
    agent = Agent("snap")
    agent.add_state("a", lambda ctx: "b")
    agent.add_state("b", lambda ctx: None)
    handle = agent.start()
    before = handle.run.snapshot()
    await handle
    after = handle.run.snapshot()
    assert before.status_of("b") == "pending"
    assert after.status_of("b") == "completed"
    assert after.completed == ("a", "b")
    with pytest.raises(AttributeError):
        after.status = "x"  # type: ignore[misc]
