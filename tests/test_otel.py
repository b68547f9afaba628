"""fluffy_nb.otel with the real OpenTelemetry SDK: span trees, attributes, events, nesting."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import fluffy_nb.otel as fotel
from fluffy_nb import (
    Agent,
    ResourcePool,
    ResourceRequirements,
    ResourceType,
    ScriptedResponder,
    StateFailedError,
)


@pytest.fixture
def exporter() -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter, provider
    fotel.uninstrument()
    provider.shutdown()


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.name == name), key=lambda s: s.start_time or 0)


def _parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def _event_names(span: ReadableSpan) -> list[str]:
    return [e.name for e in span.events]


def _fan_out_agent() -> Agent:
    """start -> [a, b] (one CPU for both: one waits) -> merge -> boom (fails for good).

    ``a`` fails once and is retried; ``b`` asks a person (answered by a script).
    """
    agent = Agent("traced", resource_pool=ResourcePool(total_cpu=1),
                  responder=ScriptedResponder({"Ship it?": "yes"}))
    one_cpu = ResourceRequirements(cpu_units=1, resource_types=ResourceType.CPU)
    tries = {"a": 0}

    async def start(ctx: Any) -> list[str]:
        return ["a", "b"]

    async def a(ctx: Any) -> str:
        await asyncio.sleep(0)  # let b's task run: it finds the CPU taken and waits
        tries["a"] += 1
        if tries["a"] == 1:
            raise ConnectionError("flaky upstream")
        return "merge"

    async def b(ctx: Any) -> str:
        ctx.set_state("answer", await ctx.human_in_the_loop("Ship it?", choices=["yes", "no"]))
        return "merge"

    async def merge(ctx: Any) -> str:
        return "boom"

    async def boom(ctx: Any) -> None:
        raise ValueError("the last step broke")

    agent.add_state("start", start)
    agent.add_state("a", a, resources=one_cpu, max_retries=1)
    agent.add_state("b", b, resources=one_cpu)
    agent.add_state("merge", merge)
    agent.add_state("boom", boom)
    return agent


async def test_span_tree_of_a_run_with_fan_out_retry_human_wait_and_failure(exporter: Any) -> None:
    memory, provider = exporter
    agent = _fan_out_agent()
    tracer = fotel.instrument(agent, tracer_provider=provider)
    with pytest.raises(StateFailedError):
        await agent.run()
    assert tracer is not None
    assert tracer.open_spans() == 0
    spans = memory.get_finished_spans()

    [run] = _by_name(spans, "run traced")
    assert run.parent is None
    assert run.attributes["fluffy.agent"] == "traced"
    assert run.attributes["fluffy.run_id"] == agent.run_id
    assert run.attributes["fluffy.status"] == "failed"
    assert run.status.status_code is StatusCode.ERROR
    assert "StateFailedError" in (run.status.description or "")

    states = [s for s in spans if s.name.startswith("state ")]
    assert sorted(s.name for s in states) == ["state a", "state a", "state b", "state boom", "state merge",
                                              "state start"]
    for s in states:  # every attempt is a child of the run span, in its trace
        assert _parent_id(s) == run.context.span_id
        assert s.context.trace_id == run.context.trace_id
        assert s.attributes["fluffy.run_id"] == agent.run_id

    first, second = _by_name(spans, "state a")
    assert (first.attributes["fluffy.attempt"], first.attributes["fluffy.retries"]) == (1, 0)
    assert first.attributes["fluffy.status"] == "retrying"
    assert first.status.status_code is StatusCode.ERROR
    [exc] = [e for e in first.events if e.name == "exception"]
    assert exc.attributes["exception.type"] == "ConnectionError"
    assert exc.attributes["exception.message"] == "flaky upstream"
    assert "Traceback" in exc.attributes["exception.stacktrace"]
    assert (second.attributes["fluffy.attempt"], second.attributes["fluffy.retries"]) == (2, 1)
    assert second.attributes["fluffy.status"] == "completed"
    assert "fluffy.retry" in _event_names(second)
    assert first.attributes["fluffy.resources.CPU"] == 1.0

    [b] = _by_name(spans, "state b")
    assert b.attributes["fluffy.status"] == "completed"
    names = _event_names(b)
    assert names.index("fluffy.human.requested") < names.index("fluffy.human.answered")
    assert "fluffy.wait.resources" in names  # b waited for a's CPU
    answered = next(e for e in b.events if e.name == "fluffy.human.answered")
    assert answered.attributes["fluffy.source"] == "script"
    requested = next(e for e in b.events if e.name == "fluffy.human.requested")
    assert requested.attributes["fluffy.prompt"] == "Ship it?"
    assert list(requested.attributes["fluffy.choices"]) == ["yes", "no"]

    [boom] = _by_name(spans, "state boom")
    assert boom.attributes["fluffy.status"] == "failed"
    assert boom.attributes["fluffy.final"] is True
    assert boom.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" and e.attributes["exception.type"] == "ValueError" for e in boom.events)

    [start] = _by_name(spans, "state start")
    assert list(start.attributes["fluffy.next_states"]) == ["a", "b"]
    assert start.status.status_code is StatusCode.OK


async def test_a_run_started_inside_a_state_is_a_child_of_that_state(exporter: Any) -> None:
    memory, provider = exporter
    child = Agent("child")

    async def leaf(ctx: Any) -> None:
        return None

    child.add_state("leaf", leaf)
    parent = Agent("parent")

    async def outer(ctx: Any) -> None:
        await child.run()

    parent.add_state("outer", outer)
    fotel.instrument(tracer_provider=provider)  # every agent
    await parent.run()
    spans = memory.get_finished_spans()
    [outer_span] = _by_name(spans, "state outer")
    [child_run] = _by_name(spans, "run child")
    [leaf_span] = _by_name(spans, "state leaf")
    [parent_run] = _by_name(spans, "run parent")
    assert _parent_id(child_run) == outer_span.context.span_id
    assert _parent_id(leaf_span) == child_run.context.span_id
    assert {s.context.trace_id for s in spans} == {parent_run.context.trace_id}
    assert fotel.instrumented(parent)
    assert fotel.instrumented(child)


async def test_a_run_awaited_inside_a_user_span_nests_under_it_and_bodies_see_their_span(exporter: Any) -> None:
    memory, provider = exporter
    from opentelemetry import trace

    agent = Agent("inside")
    seen: dict[str, int] = {}

    async def work(ctx: Any) -> None:
        seen["span"] = trace.get_current_span().get_span_context().span_id
        with provider.get_tracer("user").start_as_current_span("user work"):
            pass

    agent.add_state("work", work)
    fotel.instrument(agent, tracer_provider=provider)
    with provider.get_tracer("user").start_as_current_span("request") as request:
        await agent.run()
    assert trace.get_current_span().get_span_context().is_valid is False  # nothing left attached
    spans = memory.get_finished_spans()
    [run] = _by_name(spans, "run inside")
    [work_span] = _by_name(spans, "state work")
    [user] = _by_name(spans, "user work")
    assert _parent_id(run) == request.get_span_context().span_id
    assert seen["span"] == work_span.context.span_id
    assert _parent_id(user) == work_span.context.span_id


async def test_uninstrument_stops_spans_and_leaves_the_bus_without_subscribers(exporter: Any) -> None:
    memory, provider = exporter
    agent = Agent("off")

    async def only(ctx: Any) -> None:
        return None

    agent.add_state("only", only)
    fotel.instrument(agent, tracer_provider=provider)
    assert agent.events.active
    fotel.uninstrument(agent)
    assert not agent.events.active
    await agent.run()
    assert memory.get_finished_spans() == ()
    assert not fotel.instrumented(agent)


async def test_an_attempt_a_pause_interrupted_ends_as_interrupted_and_the_rerun_gets_its_own_span(
    exporter: Any,
) -> None:
    from _wait import until

    memory, provider = exporter
    runs: list[int] = []

    async def busy(ctx: Any) -> None:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            await asyncio.Event().wait()  # only the pause's timeout gets it out

    agent = Agent("paused")
    agent.add_state("busy", busy)
    tracer = fotel.instrument(agent, tracer_provider=provider)
    run = asyncio.create_task(agent.run())
    await until(lambda: runs, "busy started")
    await asyncio.wait_for(agent.pause(timeout=0.02), 5)
    await agent.resume()
    await asyncio.wait_for(run, 5)
    first, second = _by_name(memory.get_finished_spans(), "state busy")
    assert first.attributes["fluffy.status"] == "interrupted"
    assert second.attributes["fluffy.status"] == "completed"
    assert tracer is not None
    assert tracer.open_spans() == 0


async def test_a_timed_out_attempt_and_the_sibling_it_cancels_have_their_own_statuses(exporter: Any) -> None:
    memory, provider = exporter
    agent = Agent("timeouts")

    async def start(ctx: Any) -> list[str]:
        return ["slow", "waiting"]

    async def slow(ctx: Any) -> None:
        await asyncio.Event().wait()  # never set: the state's timeout ends it

    async def waiting(ctx: Any) -> None:
        await asyncio.Event().wait()  # cancelled when the run fails

    agent.add_state("start", start)
    agent.add_state("slow", slow, timeout=0.01)
    agent.add_state("waiting", waiting)
    fotel.instrument(agent, tracer_provider=provider)
    with pytest.raises(StateFailedError):
        await agent.run()
    spans = memory.get_finished_spans()
    [slow_span] = _by_name(spans, "state slow")
    assert slow_span.attributes["fluffy.status"] == "timeout"
    assert slow_span.status.status_code is StatusCode.ERROR
    assert "StateTimeoutError" in (slow_span.status.description or "")
    [waiting_span] = _by_name(spans, "state waiting")
    assert waiting_span.attributes["fluffy.status"] == "cancelled"
    [cancelled] = [e for e in waiting_span.events if e.name == "fluffy.cancelled"]
    assert "slow" in cancelled.attributes["fluffy.reason"]
