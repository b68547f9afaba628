"""The patterns of the three patterns documents that need payload fan-out, ported to Send/ctx.map.

Each test names the pattern it ports (``spec/patterns-async-workflows.md``,
``spec/patterns-sopy-advanced.md``, ``spec/fluffy-agent-flow-guide.md`` / features) and runs
it as a porting user would write it with fluffy_nb.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fluffy_nb import Agent, AgentStatus, ManualClock, Send
from fluffy_nb.engine.coordination import PrimitiveType, RateLimitStrategy
from tests._wait import until


async def test_async_workflows_batch_processing_is_a_map_with_results_in_item_order() -> None:
    """patterns-async-workflows.md "Batch Processing": ``gather(*[agent(item) for item in items])``."""

    async def agent_call(item: str) -> str:  # the document's ``agent(item)``
        await asyncio.sleep(0)
        return item[::-1]

    async def batch_process(ctx: Any) -> list[Send]:
        return ctx.map("process_item", ctx.get_state("items"))

    async def process_item(ctx: Any) -> str:
        ctx.set_result(await agent_call(ctx.payload))
        return "collect"

    async def collect(ctx: Any) -> None:
        ctx.set_state("results", ctx.results("process_item"))

    agent = Agent("batch_process")
    for f in (batch_process, process_item, collect):
        agent.add_state(f.__name__, f)
    result = await agent.run(initial_context={"items": ["abc", "de", "f", "ghij"]})
    assert result.shared_state["results"] == ["cba", "ed", "f", "jihg"]


async def test_async_workflows_multi_language_translation_fans_one_text_out_per_language() -> None:
    """patterns-async-workflows.md "Parallel Workflow": multi-language translation, languages as payloads."""
    languages = ["fr", "de", "es"]

    async def receive(ctx: Any) -> list[Send]:
        return [Send("translate", {"lang": lang, "text": ctx.get_state("text")}) for lang in languages]

    async def translate(ctx: Any) -> str:
        job = ctx.payload
        ctx.set_result({"lang": job["lang"], "text": f"[{job['lang']}] {job['text']}"})
        return "publish"

    async def publish(ctx: Any) -> None:
        ctx.set_state("translations", {r["lang"]: r["text"] for r in ctx.results("translate")})

    agent = Agent("translator")
    for f in (receive, translate, publish):
        agent.add_state(f.__name__, f)
    result = await agent.run(initial_context={"text": "hello"})
    assert result.shared_state["translations"] == {"fr": "[fr] hello", "de": "[de] hello", "es": "[es] hello"}


async def test_async_workflows_gather_with_return_exceptions_is_a_map_whose_failures_route_on() -> None:
    """patterns-async-workflows.md "Error handling in parallel" / ``gather(..., return_exceptions=True)``
    and "Graceful Degradation": a failing item does not fail the batch; its slot holds the error."""

    async def fan(ctx: Any) -> list[Send]:
        return ctx.map("analyse", ["ok", "bad", "fine"])

    async def analyse(ctx: Any) -> str:
        if ctx.payload == "bad":
            raise ValueError(f"cannot analyse {ctx.payload!r}")
        ctx.set_result({"analysis": ctx.payload.upper()})
        return "report"

    async def degrade(ctx: Any) -> str:
        ctx.set_result({"error": str(ctx.last_error)})
        return "report"

    async def report(ctx: Any) -> None:
        ctx.set_state("results", ctx.results("analyse"))

    agent = Agent("degrading")
    agent.add_state("fan", fan)
    agent.add_state("analyse", analyse, on_error="degrade")
    agent.add_state("degrade", degrade)
    agent.add_state("report", report)
    result = await agent.run()
    assert result.status is AgentStatus.COMPLETED
    assert result.shared_state["results"] == [
        {"analysis": "OK"}, {"error": "cannot analyse 'bad'"}, {"analysis": "FINE"},
    ]


async def test_sopy_parallel_agent_coordinator_dispatches_each_task_to_its_agent_and_aggregates() -> None:
    """patterns-sopy-advanced.md ``ParallelAgentCoordinator``: tasks go to an agent chosen by category,
    run in parallel (ThreadPoolExecutor(max_workers=3) there, ``max_concurrent=3`` here), and
    ``WaitForParallelCompletion`` aggregates results and errors per task once none remain."""
    agents = {"agent_1": "data", "agent_2": "analysis", "agent_3": "other"}
    live = {"now": 0, "peak": 0}

    def select_agent_for_task(task: dict[str, str]) -> str:
        if task["category"] == "data":
            return "agent_1"
        if task["category"] == "analysis":
            return "agent_2"
        return "agent_3"

    async def start(ctx: Any) -> list[Send]:
        return [Send("execute_task", {**t, "agent": select_agent_for_task(t)}) for t in ctx.get_state("tasks")]

    async def execute_task(ctx: Any) -> str:
        task = ctx.payload
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        await asyncio.sleep(0)
        live["now"] -= 1
        if task["description"] == "explode":
            raise RuntimeError("tool crashed")
        ctx.set_result({"task": task["id"], "agent": task["agent"],
                        "result": f"{agents[task['agent']]}: {task['description']}"})
        return "aggregate_results"

    async def record_error(ctx: Any) -> str:
        task = ctx.payload
        ctx.set_result({"task": task["id"], "agent": task["agent"], "error": str(ctx.last_error)})
        return "aggregate_results"

    async def aggregate_results(ctx: Any) -> None:
        ctx.set_state("completed_tasks", {r["task"]: r for r in ctx.results("execute_task")})

    tasks = [{"id": f"t{i}", "category": c, "description": d} for i, (c, d) in enumerate(
        [("data", "load"), ("analysis", "fit"), ("report", "write"), ("data", "explode"), ("analysis", "plot")])]
    agent = Agent("parallel_coordinator", max_concurrent=3)
    agent.add_state("start", start)
    agent.add_state("execute_task", execute_task, on_error="record_error")
    agent.add_state("record_error", record_error)
    agent.add_state("aggregate_results", aggregate_results)
    result = await agent.run(initial_context={"tasks": tasks})
    done = result.shared_state["completed_tasks"]
    assert list(done) == ["t0", "t1", "t2", "t3", "t4"]
    assert done["t2"] == {"task": "t2", "agent": "agent_3", "result": "other: write"}
    assert done["t3"] == {"task": "t3", "agent": "agent_1", "error": "tool crashed"}
    assert live["peak"] == 3
    assert result.state_runs["aggregate_results"] == 1


async def test_guide_chunks_processed_in_parallel_then_merge_results_runs_once_when_all_complete() -> None:
    """fluffy-agent-flow-features.md "Data Processing Pipeline": ``split_data`` into chunks, one
    ``process_chunk`` per chunk (the payload replaces the ``chunk_id`` the document leaves unset),
    ``merge_results`` "executes when all chunks complete"."""

    def split_data(records: list[int], n: int) -> list[list[int]]:
        return [records[i::n] for i in range(n)]

    async def process_batch(ctx: Any) -> list[Send]:
        return ctx.map("process_chunk", split_data(ctx.get_state("records"), 3))

    async def process_chunk(ctx: Any) -> str:
        ctx.set_result(sum(ctx.payload))
        return "merge_results"

    async def merge_results(ctx: Any) -> None:
        ctx.set_state("chunk_sums", ctx.results("process_chunk"))
        ctx.set_state("total", sum(ctx.results("process_chunk")))

    agent = Agent("pipeline", max_concurrent=5)
    for f in (process_batch, process_chunk, merge_results):
        agent.add_state(f.__name__, f)
    result = await agent.run(initial_context={"records": list(range(10))})
    assert result.shared_state["chunk_sums"] == [0 + 3 + 6 + 9, 1 + 4 + 7, 2 + 5 + 8]
    assert result.shared_state["total"] == 45
    assert result.state_runs == {"process_batch": 1, "process_chunk": 3, "merge_results": 1}


async def test_guide_distributed_processing_semaphore_and_sliding_window_apply_across_the_map() -> None:
    """fluffy-agent-flow-guide.md "Distributed Processing": ``distributed_task`` under a SEMAPHORE of
    ``max_count=10`` and a SLIDING_WINDOW rate limit, here over a map of 40 chunks (20 per second
    instead of 100 per minute, so the test needs 2 fake seconds)."""
    clock = ManualClock()
    live = {"now": 0, "peak": 0}
    admitted: list[float] = []
    release = asyncio.Event()

    async def dispatch(ctx: Any) -> list[Send]:
        return ctx.map("distributed_task", range(40))

    async def distributed_task(ctx: Any) -> str:
        admitted.append(clock.monotonic())
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        await release.wait()
        live["now"] -= 1
        ctx.set_result(ctx.payload * ctx.payload)
        return "merge_results"

    async def merge_results(ctx: Any) -> None:
        ctx.set_state("results", ctx.results("distributed_task"))

    agent = Agent("distributed", clock=clock)
    for f in (dispatch, distributed_task, merge_results):
        agent.add_state(f.__name__, f)
    agent.add_state_coordination("distributed_task", PrimitiveType.SEMAPHORE, max_count=10, ttl=3600.0)
    agent.add_state_rate_limit("distributed_task", max_rate=20.0, strategy=RateLimitStrategy.SLIDING_WINDOW,
                               window_size=1.0)
    task = asyncio.create_task(agent.run())
    await until(lambda: live["now"] == 10, "the semaphore's ten holders")
    release.set()  # from now on each branch finishes as soon as it starts
    await until(lambda: len(admitted) == 20, "the first window's twenty admissions")
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(admitted) == 20  # the window is full: nobody else starts at t=0
    await clock.advance(1.0 + 1e-6)
    await until(lambda: len(admitted) == 40, "the second window")
    result = await task
    assert live["peak"] == 10
    assert all(t == 0.0 for t in admitted[:20])
    assert all(t >= 1.0 for t in admitted[20:])
    assert result.shared_state["results"] == [i * i for i in range(40)]
