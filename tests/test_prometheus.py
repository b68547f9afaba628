"""fluffy_nb.prometheus: a real /metrics endpoint on 127.0.0.1, scraped over HTTP and parsed."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import fluffy_nb.prometheus as fprom
from fluffy_nb import Agent, ResourcePool, ResourceRequirements, ResourceType, ScriptedResponder, StateFailedError


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    yield CollectorRegistry()
    fprom.uninstrument()


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_scraped_counts_equal_the_runs_real_attempts_and_failures(registry: CollectorRegistry) -> None:
    agent = Agent("scraped", resource_pool=ResourcePool(total_cpu=1),
                  responder=ScriptedResponder({"Go on?": "yes"}))
    one_cpu = ResourceRequirements(cpu_units=1, resource_types=ResourceType.CPU)
    tries = {"flaky": 0}

    async def start(ctx: Any) -> list[str]:
        return ["flaky", "ask"]

    async def flaky(ctx: Any) -> str:
        await asyncio.sleep(0)  # let ask's task find the CPU taken and wait for it
        tries["flaky"] += 1
        if tries["flaky"] <= 2:
            raise ConnectionError("try again")
        return "last"

    async def ask(ctx: Any) -> str:
        await ctx.human_in_the_loop("Go on?", choices=["yes", "no"])
        return "last"

    async def last(ctx: Any) -> None:
        raise RuntimeError("broken for good")

    agent.add_state("start", start)
    agent.add_state("flaky", flaky, resources=one_cpu, max_retries=3)
    agent.add_state("ask", ask, resources=one_cpu)
    agent.add_state("last", last, max_retries=1)
    metrics = fprom.instrument(agent, registry=registry)
    assert metrics.registry is registry
    with fprom.serve(0, registry=registry) as server:
        assert server.host == "127.0.0.1"
        with pytest.raises(StateFailedError):
            await agent.run()
        samples = await asyncio.to_thread(_scrape, server.url)

    meta = agent.state_metadata
    for state in ("start", "flaky", "ask", "last"):
        assert _value(samples, "fluffy_nb_state_attempts_total", agent="scraped", state=state) == meta[state].attempts
        assert _value(samples, "fluffy_nb_state_retries_total", agent="scraped", state=state) == meta[state].retries
        assert _value(samples, "fluffy_nb_state_failures_total", agent="scraped", state=state) == meta[state].failures
    assert meta["flaky"].attempts == 3
    assert meta["last"].attempts == 2
    assert _value(samples, "fluffy_nb_state_errors_total", agent="scraped", state="flaky") == 2
    assert _value(samples, "fluffy_nb_state_errors_total", agent="scraped", state="last") == 2
    assert _value(samples, "fluffy_nb_state_failures_total", agent="scraped", state="last") == 1
    assert _value(samples, "fluffy_nb_runs_total", agent="scraped", status="failed") == 1
    # every attempt's duration is observed once; completed states' too
    assert _value(samples, "fluffy_nb_state_duration_seconds_count", agent="scraped", state="flaky") == 3
    # ask waited for flaky's CPU, and for a person once
    assert _value(samples, "fluffy_nb_resource_wait_seconds_count", agent="scraped", state="ask") == 1
    assert _value(samples, "fluffy_nb_human_wait_seconds_count", agent="scraped", state="ask") == 1
    assert _value(samples, "fluffy_nb_queue_wait_seconds_count", agent="scraped", state="start") == 1
    assert _value(samples, "fluffy_nb_run_duration_seconds_count", agent="scraped") == 1


async def test_checkpoints_are_counted_by_trigger(registry: CollectorRegistry) -> None:
    from fluffy_nb import MemoryStore

    agent = Agent("durable", store=MemoryStore(), durable=True)

    async def one(ctx: Any) -> str:
        return "two"

    async def two(ctx: Any) -> None:
        return None

    agent.add_state("one", one)
    agent.add_state("two", two)
    fprom.instrument(agent, registry=registry)
    await agent.run()
    assert registry.get_sample_value("fluffy_nb_checkpoints_total", {"agent": "durable", "trigger": "state"}) == 2
    assert registry.get_sample_value("fluffy_nb_checkpoints_total",
                                     {"agent": "durable", "trigger": "completion"}) == 1
    assert registry.get_sample_value("fluffy_nb_checkpoint_seconds_count", {"agent": "durable"}) == 3
    assert registry.get_sample_value("fluffy_nb_checkpoint_seconds_sum", {"agent": "durable"}) > 0


async def test_instrument_all_records_every_agent_that_runs_and_uninstrument_stops(registry: CollectorRegistry) -> None:
    agents = [Agent(f"any{i}") for i in range(2)]

    async def only(ctx: Any) -> None:
        return None

    for agent in agents:
        agent.add_state("only", only)
    fprom.instrument(registry=registry)
    for agent in agents:
        await agent.run()
    fprom.uninstrument()
    await agents[0].run()
    assert not agents[0].events.active
    assert registry.get_sample_value("fluffy_nb_runs_total", {"agent": "any0", "status": "completed"}) == 1
    assert registry.get_sample_value("fluffy_nb_runs_total", {"agent": "any1", "status": "completed"}) == 1


def test_serve_binds_loopback_by_default_and_frees_the_port(registry: CollectorRegistry) -> None:
    server = fprom.serve(0, registry=registry)
    try:
        assert server.host == "127.0.0.1"
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
    finally:
        server.close()
    server.close()  # idempotent
    assert "closed" in repr(server)


def test_checkpoint_time_is_observed_when_the_event_carries_it(registry: CollectorRegistry) -> None:
    from fluffy_nb.engine._events import CheckpointSaved

    agent = Agent("timed")
    fprom.instrument(agent, registry=registry)
    agent.events.publish(CheckpointSaved("timed", "r1", 0.0, "cp1", "manual", 0, duration=0.02))
    agent.events.publish(CheckpointSaved("timed", "r1", 0.0, "cp2", "manual", 0))  # untimed: counted only
    assert registry.get_sample_value("fluffy_nb_checkpoint_seconds_count", {"agent": "timed"}) == 1
    assert registry.get_sample_value("fluffy_nb_checkpoint_seconds_sum", {"agent": "timed"}) == pytest.approx(0.02)
    assert registry.get_sample_value("fluffy_nb_checkpoints_total", {"agent": "timed", "trigger": "manual"}) == 2


async def test_instrumenting_again_with_another_registry_moves_the_agent(registry: CollectorRegistry) -> None:
    agent = Agent("moved")

    async def only(ctx: Any) -> None:
        return None

    agent.add_state("only", only)
    other = CollectorRegistry()
    fprom.instrument(agent, registry=registry)
    fprom.instrument(agent, registry=other)
    await agent.run()
    labels = {"agent": "moved", "state": "only"}
    assert registry.get_sample_value("fluffy_nb_state_attempts_total", labels) is None
    assert other.get_sample_value("fluffy_nb_state_attempts_total", labels) == 1
