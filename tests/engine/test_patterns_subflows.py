"""The sub-workflow patterns of the three patterns documents, ported to agents as states.

Sources (``/work/shared/spec``): ``patterns-sopy-advanced.md`` (Agent Delegation, Parallel Agent
Execution, Sub-SOP, Nested State Management), ``patterns-async-workflows.md`` (Retry with
Fallback, Pipeline with Error Handling) and ``patterns-puffinflow-advanced.rst`` (Saga with
compensation). Where the source awaits an agent inside a state, the port registers the agent as
a state, so the parent's graph, checkpoints, live view and people see the child.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fluffy_nb import Agent, AgentStatus, MemoryStore
from tests._wait import until


def specialist(name: str, verb: str, fail: bool = False) -> Agent:
    """A one-state child agent standing in for a StrandsAgent: ``data`` -> ``result``."""
    agent = Agent(name)

    async def work(ctx: Any) -> None:
        if fail:
            raise ConnectionError(f"{name} unavailable")
        ctx.set_state("result", f"{verb}({ctx.get_state('data')})")

    agent.add_state("work", work)
    return agent


async def test_sopy_agent_delegation_routes_each_task_to_its_specialist_agent() -> None:
    """SOPy "Agent Delegation Pattern": the coordinator hands a task to the specialist for its type."""

    def coordinator() -> Agent:
        agent = Agent("task_coordinator")

        async def assign(ctx: Any) -> str | None:
            kind = ctx.get_state("task_type")
            routes = {"data_processing": "data_agent", "report_generation": "report_agent",
                      "quality_review": "review_agent"}
            if kind not in routes:
                ctx.set_state("outcome", f"Unknown task type: {kind}")
                return None
            return routes[kind]

        agent.add_state("assign", assign)
        for state, child in (("data_agent", specialist("data", "processed")),
                             ("report_agent", specialist("report", "reported")),
                             ("review_agent", specialist("review", "reviewed"))):
            agent.add_state(state, child, inputs=["data"], outputs={"result": "outcome"})
        return agent

    for kind, expected in (("data_processing", "processed(rows)"), ("quality_review", "reviewed(rows)"),
                           ("poetry", "Unknown task type: poetry")):
        result = await coordinator().run(initial_context={"task_type": kind, "data": "rows"})
        assert result.get_state("outcome") == expected


async def test_sopy_parallel_agent_execution_runs_the_agents_at_once_and_gathers_every_result() -> None:
    """SOPy "Parallel Agent Execution": three agents on their tasks at once, results collected,
    errors recorded per task instead of failing the whole."""
    both_running = asyncio.Event()
    inside: set[str] = set()

    def slow(name: str) -> Agent:
        agent = Agent(name)

        async def work(ctx: Any) -> None:
            inside.add(name)
            if len(inside) == 2:
                both_running.set()
            await both_running.wait()
            ctx.set_state("result", f"{name} did {ctx.get_state('task')}")

        agent.add_state("work", work)
        return agent

    parent = Agent("parallel_coordinator")

    async def fan_out(ctx: Any) -> list[str]:
        ctx.set_state("t1", "analysis")
        ctx.set_state("t2", "charts")
        ctx.set_state("t3", "audit")
        return ["agent_1", "agent_2", "agent_3"]

    async def aggregate(ctx: Any) -> None:
        ctx.set_state("completed_tasks", {k: ctx.get_state(k) for k in ("r1", "r2", "r3")})

    parent.add_state("fan_out", fan_out)
    parent.add_state("agent_1", slow("agent_1"), inputs={"t1": "task"}, outputs={"result": "r1"}, next="aggregate")
    parent.add_state("agent_2", slow("agent_2"), inputs={"t2": "task"}, outputs={"result": "r2"}, next="aggregate")
    parent.add_state("agent_3", specialist("agent_3", "audited", fail=True), on_error="record_error")

    async def record_error(ctx: Any) -> str:
        ctx.set_state("r3", {"error": str(ctx.last_error)})
        return "aggregate"

    parent.add_state("record_error", record_error)
    parent.add_state("aggregate", aggregate, join=True)
    result = await parent.run()
    done = result.get_state("completed_tasks")
    assert done["r1"] == "agent_1 did analysis"
    assert done["r2"] == "agent_2 did charts"
    assert "agent_3 unavailable" in done["r3"]["error"]
    assert result.state_runs["aggregate"] == 1


async def test_sopy_sub_sop_runs_the_chosen_sub_workflow_and_integrates_its_result() -> None:
    """SOPy "Sub-SOP Pattern" with "Nested State Management": the master picks a sub-workflow by
    type, runs it with its own state, and stores its result under ``sub_workflow_results``; while it
    runs the master's run names the active sub-workflow."""
    release = asyncio.Event()
    data_sop = Agent("DataProcessingSOP")

    async def process(ctx: Any) -> None:
        await release.wait()
        ctx.set_state("sub_result", {"status": "completed", "data": f"clean {ctx.get_state('input_data')}"})

    data_sop.add_state("start_data_processing", process)
    report_sop = Agent("ReportGenerationSOP")

    async def report(ctx: Any) -> None:
        ctx.set_state("sub_result", {"status": "completed", "data": f"report of {ctx.get_state('input_data')}"})

    report_sop.add_state("start_report_generation", report)
    master = Agent("MasterWorkflow")

    async def sub_workflow_needed(ctx: Any) -> str:
        return ctx.get_state("workflow_type")

    async def integrate(ctx: Any) -> None:
        kind = ctx.get_state("workflow_type")
        ctx.set_state("sub_workflow_results", {kind: ctx.get_state(f"{kind}_result")})
        ctx.set_state("master_status", "continuing")

    master.add_state("sub_workflow_needed", sub_workflow_needed, next=["data_processing", "report_generation"])
    master.add_state("data_processing", data_sop, inputs={"payload": "input_data"},
                     outputs={"sub_result": "data_processing_result"}, next="integrate")
    master.add_state("report_generation", report_sop, inputs={"payload": "input_data"},
                     outputs={"sub_result": "report_generation_result"}, next="integrate")
    master.add_state("integrate", integrate)
    handle = master.start(initial_context={"workflow_type": "data_processing", "payload": "raw rows"})
    await until(lambda: master.latest_run is not None and master.latest_run.children, "the sub-SOP starts")
    assert list(master.latest_run.children) == ["data_processing"]  # get_active_sub_state
    assert master.latest_run.children["data_processing"].name == "MasterWorkflow/data_processing"
    release.set()
    result = await handle.task
    assert result.get_state("sub_workflow_results") == {
        "data_processing": {"status": "completed", "data": "clean raw rows"}}
    assert "sub_result" not in result.shared_state  # the sub-SOP's state stayed its own
    assert not master.latest_run.children


async def test_async_retry_with_fallback_agent_runs_the_reliable_agent_when_the_fast_one_fails() -> None:
    """async-workflows "Retry with Fallback": try the fast agent, on failure the reliable one."""
    workflow = Agent("resilient_workflow")
    workflow.add_state("fast_agent", specialist("fast", "quick", fail=True), inputs={"text": "data"},
                       outputs={"result": "answer"}, on_error="reliable_agent")
    workflow.add_state("reliable_agent", specialist("reliable", "careful"), inputs={"text": "data"},
                       outputs={"result": "answer"})
    result = await workflow.run(initial_context={"text": "hello"})
    assert result.get_state("answer") == "careful(hello)"
    assert result.completed_states == ["reliable_agent"]


async def test_async_pipeline_with_error_handling_exits_early_and_records_each_step() -> None:
    """async-workflows "Pipeline with Error Handling": step 2 runs on step 1's result; a failed step
    records ``Failed: ...`` and, for step 1, ends the pipeline early."""

    def pipeline(step1_fails: bool) -> Agent:
        agent = Agent("robust_pipeline", store=MemoryStore(), durable=True)
        agent.add_state("step1", specialist("step1", "one", fail=step1_fails), inputs={"text": "data"},
                        outputs={"result": "step1"}, on_error="step1_failed", next="step2")
        agent.add_state("step2", specialist("step2", "two", fail=True), inputs={"step1": "data"},
                        outputs={"result": "step2"}, on_error="step2_failed")

        async def step1_failed(ctx: Any) -> None:
            ctx.set_state("step1", f"Failed: {ctx.last_error}")

        async def step2_failed(ctx: Any) -> None:
            ctx.set_state("step2", f"Failed: {ctx.last_error}")

        agent.add_state("step1_failed", step1_failed)
        agent.add_state("step2_failed", step2_failed)
        return agent

    ok = await pipeline(False).run(initial_context={"text": "t"})
    assert ok.get_state("step1") == "one(t)"
    assert "step2 unavailable" in ok.get_state("step2")
    early = await pipeline(True).run(initial_context={"text": "t"})
    assert "step1 unavailable" in early.get_state("step1")
    assert early.get_state("step2") is None
    assert early.status is AgentStatus.COMPLETED


async def test_puffinflow_saga_compensates_the_booked_steps_in_reverse_when_one_fails() -> None:
    """puffinflow "Saga" orchestration: each booking is a child agent; when one fails, the
    compensations of the steps already done run in reverse order, and the saga is marked failed."""
    log: list[str] = []

    def booking(what: str, fail: bool = False) -> Agent:
        agent = Agent(f"book_{what}")

        async def book(ctx: Any) -> None:
            if fail:
                raise RuntimeError(f"no {what} available")
            log.append(f"book {what}")
            ctx.set_state("booking", {"id": f"{what}-1"})

        agent.add_state("book", book)
        return agent

    saga = Agent("SagaOrchestrator")
    saga.add_state("book_flight", booking("flight"), outputs={"booking": "flight_booking"}, next="book_hotel",
                   on_error="compensate")
    saga.add_state("book_hotel", booking("hotel"), outputs={"booking": "hotel_booking"}, next="book_car",
                   on_error="compensate")
    saga.add_state("book_car", booking("car", fail=True), outputs={"booking": "car_booking"},
                   on_error="compensate")

    async def compensate(ctx: Any) -> None:
        ctx.set_state("saga_failed", True)
        ctx.set_state("original_error", str(ctx.last_error))
        for key in ("car_booking", "hotel_booking", "flight_booking"):
            if ctx.get_state(key) is not None:
                log.append(f"cancel {ctx.get_state(key)['id']}")

    saga.add_state("compensate", compensate)
    result = await saga.run()
    assert log == ["book flight", "book hotel", "cancel hotel-1", "cancel flight-1"]
    assert result.get_state("saga_failed") is True
    assert "no car available" in result.get_state("original_error")
