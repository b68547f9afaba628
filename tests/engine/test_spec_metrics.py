"""All 16 of the guide's "Available Metrics" arrive in ``agent_monitor``'s dict, in the spec's shape."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from fluffy_nb import Agent, ManualClock, MetricType, UsageSampler, agent_monitor
from fluffy_nb.engine._metrics import dependency_chain_length

LEAF_KEYS = {"count", "sum", "avg", "min", "max", "current", "p50", "p95", "p99"}

#: the guide's list ("Available Metrics", 5 groups) -> where agent_monitor delivers each
SPEC_METRICS = {
    "Total execution time": ("timing", "total_execution"),
    "State-level timing": ("timing", "state_extract"),
    "Dependency resolution timing": ("dependency", "resolution_time"),
    "CPU utilization": ("resources", "used_CPU"),
    "Memory consumption": ("resources", "used_MEMORY"),
    "I/O operations": ("resources", "io_operations"),
    "GPU usage (if applicable)": ("resources", "used_GPU"),
    "State transitions": ("state", "transitions"),
    "Success/failure rates": ("state", "success_rate"),
    "Retry statistics": ("state", "retries"),
    "States per second": ("throughput", "states_per_second"),
    "Queue processing rate": ("throughput", "queue_processing_rate"),
    "Concurrent operations": ("throughput", "concurrent_states"),
    "Resolution time": ("dependency", "resolution_time"),
    "Dependency chain length": ("dependency", "chain_length"),
    "Blocking dependencies": ("dependency", "blocked_states"),
}


class _Process:
    """psutil.Process stand-in whose I/O counters the test moves."""

    def __init__(self) -> None:
        self.reads, self.writes = 100, 50

    def cpu_percent(self, interval: Any = None) -> float:
        return 25.0

    def memory_info(self) -> Any:
        return SimpleNamespace(rss=64 * 1024 * 1024)

    def io_counters(self) -> Any:
        return SimpleNamespace(read_count=self.reads, write_count=self.writes)


class _System:
    def cpu_percent(self, interval: Any = None) -> float:
        return 40.0

    def virtual_memory(self) -> Any:
        return SimpleNamespace(percent=30.0)


async def test_all_sixteen_spec_metrics_are_delivered_with_the_spec_shape() -> None:
    agent = Agent("spec_metrics")
    process, clock = _Process(), ManualClock()
    sampler = UsageSampler(None, interval=1.0, clock=clock, process=process, system=_System(),
                           gpu=lambda: (50.0, 70.0))
    tries = {"extract": 0}

    async def extract(ctx: Any) -> list[str]:
        tries["extract"] += 1
        if tries["extract"] == 1:
            raise ConnectionError("retry me")
        # two samples two fake seconds apart: 30 reads and 10 writes in between
        sampler.agent = agent
        sampler.sample()
        await clock.advance(2.0)
        process.reads += 30
        process.writes += 10
        sampler.sample()
        return ["left", "right"]

    async def left(ctx: Any) -> None:
        await asyncio.sleep(0)  # right starts while left is still running

    async def right(ctx: Any) -> None:
        return None

    async def report(ctx: Any) -> None:
        return None

    agent.add_state("extract", extract, max_retries=1)
    agent.add_state("left", left)
    agent.add_state("right", right)
    agent.add_state("report", report, dependencies=["left", "right"])
    agent.add_state("publish", report, dependencies=["report"])
    delivered: list[dict[str, Any]] = []

    @agent_monitor(metrics=MetricType.ALL, sample_interval=None, metrics_callback=delivered.append)
    async def run() -> None:
        await agent.run(start="extract")

    await run()
    metrics = delivered[-1]
    missing = []
    for title, (category, leaf) in SPEC_METRICS.items():
        value = metrics.get(category, {}).get(leaf)
        if value is None or set(value) != LEAF_KEYS or value["count"] == 0:
            missing.append(f"{title}: {category}.{leaf} = {value}")
    assert missing == []
    assert len(SPEC_METRICS) == 16
    # the spec's own reads work
    assert metrics["throughput"]["states_per_second"]["avg"] > 0
    assert metrics["resources"]["used_CPU"]["current"] == 25.0
    assert metrics["errors"]["count"]["sum"] == 1
    # the three added ones carry real numbers
    assert metrics["resources"]["io_operations"]["current"] == pytest.approx(20.0)  # (30 + 10) / 2 s
    assert metrics["resources"]["io_read_ops"]["current"] == pytest.approx(15.0)
    assert metrics["resources"]["io_write_ops"]["current"] == pytest.approx(5.0)
    assert metrics["dependency"]["chain_length"]["max"] == 2  # publish <- report <- left/right
    assert metrics["throughput"]["queue_processing_rate"]["count"] == 1  # one run
    assert metrics["throughput"]["queue_processing_rate"]["avg"] > 0
    assert metrics["throughput"]["concurrent_states"]["max"] == 2  # left and right together


def test_dependency_chain_length_counts_links_of_the_longest_chain() -> None:
    def spec(*deps: str) -> Any:
        return SimpleNamespace(dependencies=dict.fromkeys(deps))

    assert dependency_chain_length({}) == 0
    assert dependency_chain_length({"a": spec()}) == 0
    assert dependency_chain_length({"a": spec(), "b": spec("a"), "c": spec("a", "b")}) == 2
    chain = {f"s{i}": spec(f"s{i - 1}") if i else spec() for i in range(5000)}
    assert dependency_chain_length(chain) == 4999  # iterative: no recursion limit


def test_the_real_sampler_reads_this_processs_io_counters() -> None:
    psutil = pytest.importorskip("psutil")
    if not hasattr(psutil.Process(), "io_counters"):
        pytest.skip("this platform does not report per-process I/O")
    sample = UsageSampler(None, gpu=None).sample()
    assert sample.io_read_count >= 0
    assert sample.io_write_count >= 0


def test_a_process_without_io_counters_reports_minus_one() -> None:
    class NoIo(_Process):
        io_counters = None

    sample = UsageSampler(None, process=NoIo(), system=_System(), gpu=None).sample()
    assert (sample.io_read_count, sample.io_write_count) == (-1, -1)
