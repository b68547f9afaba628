"""The recovery patterns of the patterns documents, ported to ``on_error``/``on_timeout`` routes.

Sources (``/work/shared/spec``): ``patterns-sopy-advanced.md`` ("Advanced Error Recovery: 1.
Multi-Level Recovery": quick retry, then a fallback method, then an alternative approach, then
manual intervention) and ``patterns-async-workflows.md`` ("Pattern 8: Graceful Degradation"
with "Using asyncio.wait_for (Timeout)": premium analysis under a timeout, else basic, else an
error entry), "Error Handling Patterns: Pattern 2: Collect All Errors" and "Pattern 7: Circuit
Breaker". Where the source hand-codes the ladder in one handler or nested ``try`` blocks,
the port makes each rung a state and routes down the ladder once a rung has given up.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fluffy_nb import (
    Agent,
    AgentStatus,
    CircuitBreaker,
    CircuitOpenError,
    MemoryStore,
    RetryPolicy,
    ScriptedResponder,
    StateFailedError,
    StateStatus,
    StateTimeoutError,
)


def recovery_ladder(fallback_works: bool, store: MemoryStore) -> tuple[Agent, list[str]]:
    """SOPy MultiLevelRecovery: operation (quick retry x3) -> fallback -> alternative -> manual."""
    tried: list[str] = []

    async def operation(ctx: Any) -> None:
        tried.append(f"operation#{ctx.attempt}")
        raise ConnectionError("service flapping")  # retryable: the quick-retry rung

    async def fallback_method(ctx: Any) -> None:
        tried.append(f"fallback after {type(ctx.last_error).__name__}")
        if not fallback_works:
            raise LookupError("no fallback available")
        ctx.set_state("action", "fallback")

    async def alternative_approach(ctx: Any) -> None:
        tried.append(f"alternative after {type(ctx.last_error).__name__}")
        approaches = list(ctx.get_state("alternative_approaches"))
        ctx.set_state("alternative_approaches", approaches[1:])
        raise RuntimeError(f"approach {approaches[0]!r} failed too")

    async def manual_intervention(ctx: Any) -> None:
        tried.append(f"manual after {type(ctx.last_error).__name__}")
        answer = await ctx.human_in_the_loop(
            f"All recovery strategies failed ({ctx.last_error}). Manual intervention required.",
            choices=["handled", "abort"])
        ctx.set_state("action", f"manual: {answer}")

    agent = Agent("multi_level_recovery", store=store, durable=True, responder=ScriptedResponder(["handled"]))
    agent.add_state("operation", operation, on_error="fallback_method",
                    retry_policy=RetryPolicy(max_retries=3, initial_delay=0, jitter=False))
    agent.add_state("fallback_method", fallback_method, on_error="alternative_approach")
    agent.add_state("alternative_approach", alternative_approach, on_error="manual_intervention")
    agent.add_state("manual_intervention", manual_intervention)
    return agent, tried


async def test_sopy_multi_level_recovery_stops_at_the_first_rung_that_succeeds() -> None:
    agent, tried = recovery_ladder(fallback_works=True, store=MemoryStore())
    result = await agent.run(start="operation")
    assert result.status is AgentStatus.COMPLETED
    assert tried == ["operation#1", "operation#2", "operation#3", "operation#4",
                     "fallback after ConnectionError"]
    assert result.get_state("action") == "fallback"
    assert "alternative_approach" not in result.state_runs


async def test_sopy_multi_level_recovery_climbs_down_to_a_person_and_history_records_each_failed_rung() -> None:
    store = MemoryStore()
    agent, tried = recovery_ladder(fallback_works=False, store=store)
    result = await agent.run(start="operation", initial_context={"alternative_approaches": ["batch", "manual"]})
    assert result.status is AgentStatus.COMPLETED
    assert tried == ["operation#1", "operation#2", "operation#3", "operation#4",
                     "fallback after ConnectionError", "alternative after LookupError",
                     "manual after RuntimeError"]
    assert result.get_state("action") == "manual: handled"
    assert result.get_state("alternative_approaches") == ["manual"]  # the rung consumed one approach
    last = store.get(agent.history()[-1].checkpoint_id)
    assert [last.state_status[s] for s in ("operation", "fallback_method", "alternative_approach")] == \
        [StateStatus.FAILED] * 3
    assert last.state_status["manual_intervention"] is StateStatus.COMPLETED
    rungs = [(store.get(r.checkpoint_id).metadata["route"]["state"], r.error) for r in agent.history()
             if r.trigger == "route"]
    assert rungs == [("operation", "ConnectionError: service flapping"),
                     ("fallback_method", "LookupError: no fallback available"),
                     ("alternative_approach", "RuntimeError: approach 'batch' failed too")]


def degrading_workflow(basic_works: bool) -> Agent:
    """async-workflows Graceful Degradation, the premium call under ``wait_for``'s timeout."""

    async def premium_agent(ctx: Any) -> None:
        await asyncio.Event().wait()  # never answers: only the timeout ends it

    async def basic_agent(ctx: Any) -> None:
        ctx.set_state("premium_timed_out", isinstance(ctx.last_error, StateTimeoutError))
        if not basic_works:
            raise ConnectionError("basic agent down")
        ctx.set_state("results", {"basic_analysis": f"basic({ctx.get_state('text')})"})

    async def all_failed(ctx: Any) -> None:
        ctx.set_state("results", {"error": "All agents failed", "last": str(ctx.last_error)})

    agent = Agent("degrading_workflow")
    agent.add_state("premium_agent", premium_agent, timeout=0.05, on_timeout="basic_agent", on_error="all_failed")
    agent.add_state("basic_agent", basic_agent, on_error="all_failed")
    agent.add_state("all_failed", all_failed)
    return agent


async def test_async_graceful_degradation_falls_back_to_basic_when_premium_times_out() -> None:
    result = await degrading_workflow(basic_works=True).run(start="premium_agent", initial_context={"text": "hi"})
    assert result.status is AgentStatus.COMPLETED
    assert result.get_state("premium_timed_out") is True
    assert result.get_state("results") == {"basic_analysis": "basic(hi)"}
    assert "all_failed" not in result.state_runs


async def test_async_graceful_degradation_reports_all_agents_failed_as_a_partial_result() -> None:
    result = await degrading_workflow(basic_works=False).run(start="premium_agent", initial_context={"text": "hi"})
    assert result.status is AgentStatus.COMPLETED  # partial results, not a failed run
    assert result.get_state("results") == {"error": "All agents failed", "last": "basic agent down"}


async def test_async_collect_all_errors_runs_every_agent_and_reports_results_beside_errors() -> None:
    """async-workflows "Error Handling Patterns: Pattern 2: Collect All Errors": each agent's
    ``try``/``except`` that appends ``"AgentN: e"`` is its state's ``on_error`` route; both run,
    and the report gets the results of those that worked and the errors of the others."""

    async def start(ctx: Any) -> list[str]:
        ctx.set_state("results", {})
        ctx.set_state("errors", [])
        return ["agent1", "agent2"]

    async def agent1(ctx: Any) -> str:
        raise ConnectionError("agent1 unreachable")

    async def agent2(ctx: Any) -> str:
        ctx.set_state("results", {**ctx.get_state("results"), "analysis2": f"analysed {ctx.get_state('text')}"})
        return "report"

    def collect(name: str) -> Any:
        async def failed(ctx: Any) -> str:
            ctx.set_state("errors", [*ctx.get_state("errors"), f"{name}: {ctx.last_error}"])
            return "report"

        return failed

    async def report(ctx: Any) -> None:
        ctx.set_state("out", {"results": ctx.get_state("results"), "errors": ctx.get_state("errors")})

    agent = Agent("collect_errors")
    agent.add_state("start", start)
    agent.add_state("agent1", agent1, on_error="agent1_failed")
    agent.add_state("agent2", agent2, on_error="agent2_failed")
    agent.add_state("agent1_failed", collect("Agent1"))
    agent.add_state("agent2_failed", collect("Agent2"))
    agent.add_state("report", report)
    result = await agent.run(initial_context={"text": "hi"})
    assert result.status is AgentStatus.COMPLETED
    assert result.get_state("out") == {"results": {"analysis2": "analysed hi"},
                                       "errors": ["Agent1: agent1 unreachable"]}
    assert result.state_runs["report"] == 1  # the branches met there: it ran once, after both


async def test_async_circuit_breaker_routes_the_open_circuit_to_a_degraded_answer_and_fails_other_errors() -> None:
    """async-workflows "Pattern 7: Circuit Breaker": failures are recorded and re-raised (the run
    fails, as without a route), and once the breaker is open the call is refused; the port maps
    that refusal, by its exception type, to a degraded answer instead of failing."""
    breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=60)
    calls: list[int] = []

    @breaker.protect
    async def unreliable_agent(ctx: Any) -> None:
        calls.append(1)
        raise ConnectionError("upstream down")

    async def degraded(ctx: Any) -> None:
        ctx.set_state("answer", f"cached answer ({type(ctx.last_error).__name__})")

    agent = Agent("protected_workflow")
    agent.add_state("unreliable_agent", unreliable_agent, on_error={CircuitOpenError: "degraded"})
    agent.add_state("degraded", degraded)
    for _ in range(3):
        with pytest.raises(StateFailedError, match="upstream down"):
            await agent.run(start="unreliable_agent")
    result = await agent.run(start="unreliable_agent")
    assert result.status is AgentStatus.COMPLETED
    assert result.get_state("answer") == "cached answer (CircuitOpenError)"
    assert len(calls) == 3  # the fourth call never reached upstream
