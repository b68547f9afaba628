"""Trace continuity into Dask: a state body on a worker process sees its attempt's span."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import fluffy_nb.otel as fotel
from fluffy_nb import Agent
from fluffy_nb.distributed import DaskExecutor

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def executor() -> AsyncIterator[DaskExecutor]:
    ex = await DaskExecutor.local(n_workers=1, threads_per_worker=1)
    try:
        yield ex
    finally:
        await ex.close()


async def test_a_dask_state_body_runs_inside_its_attempt_span_and_the_span_names_the_worker(
    executor: DaskExecutor,
) -> None:
    async def remote_async(ctx: Any) -> str:
        from distributed import get_worker
        from opentelemetry import trace

        sc = trace.get_current_span().get_span_context()
        ctx.set_state("async", {"trace": sc.trace_id, "span": sc.span_id, "worker": get_worker().address,
                                "pid": os.getpid()})
        return "remote_sync"

    def remote_sync(ctx: Any) -> None:
        from opentelemetry import trace

        sc = trace.get_current_span().get_span_context()
        ctx.set_state("sync", {"trace": sc.trace_id, "span": sc.span_id})

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    agent = Agent("dask_traced", executor=executor)
    agent.add_state("remote_async", remote_async, remote=True)
    agent.add_state("remote_sync", remote_sync, remote=True)
    fotel.instrument(agent, tracer_provider=provider)
    try:
        await agent.run()
    finally:
        fotel.uninstrument()
        provider.shutdown()
    spans = {s.name: s for s in memory.get_finished_spans()}
    run = spans["run dask_traced"]
    seen = agent.get_state("async")
    assert seen["pid"] != os.getpid()  # really another process
    for state in ("remote_async", "remote_sync"):
        span = spans[f"state {state}"]
        on_worker = agent.get_state(state.removeprefix("remote_"))
        assert on_worker["trace"] == run.context.trace_id
        assert on_worker["span"] == span.context.span_id
        assert span.attributes["fluffy.worker"] == seen["worker"]
        assert span.attributes["fluffy.worker_pid"] == seen["pid"]


async def test_without_tracing_nothing_is_sent_along(executor: DaskExecutor) -> None:
    from fluffy_nb.distributed._attempt import remote_wrappers

    assert remote_wrappers() == ()

    def plain(ctx: Any) -> None:
        ctx.set_state("ran", True)

    agent = Agent("dask_plain", executor=executor)
    agent.add_state("plain", plain, remote=True)
    await agent.run()
    assert agent.get_state("ran") is True
