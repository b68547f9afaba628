"""Monitoring: the spec's examples run against real agents and get real, correctly shaped numbers."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import pytest

from fluffy_nb import Agent, ManualClock, ResourceRequirements, StateFailedError
from fluffy_nb.engine._errors import ConfigurationError
from fluffy_nb.engine.monitoring import (
    AgentMetrics,
    MetricAggregation,
    MetricType,
    MonitoringError,
    RealTimeMetrics,
    agent_monitor,
    current_monitor,
)

LEAF_KEYS = {"count", "sum", "avg", "min", "max", "current", "p50", "p95", "p99"}
ALL_CATEGORIES = {"timing", "resources", "state", "throughput", "dependency", "latency", "errors"}


def assert_spec_shape(metrics: dict[str, Any]) -> None:
    """Two levels of dicts, every leaf a MetricAggregation dict (the spec iterates them this way)."""
    for category, leaves in metrics.items():
        assert isinstance(leaves, dict), category
        for name, values in leaves.items():
            assert set(values) == LEAF_KEYS, (category, name)
            assert values["p50"] <= values["p95"] <= values["p99"] <= values["max"] + 1e-9, (category, name)


def flaky_agent(name: str = "monitored_workflow") -> Agent:
    """fetch -> [parse (fails once, then retried), score] -> report; real (tiny) sleeps."""
    agent = Agent(name)
    calls = {"parse": 0}

    async def fetch(ctx):
        await asyncio.sleep(0.005)
        return ["parse", "score"]

    async def parse(ctx):
        calls["parse"] += 1
        if calls["parse"] == 1:
            raise ConnectionError("flaky upstream")
        await asyncio.sleep(0.005)
        return "report"

    async def score(ctx):
        sum(i * i for i in range(20_000))  # a little real CPU
        return "report"

    async def report(ctx):
        return None

    agent.add_state("fetch", fetch)
    agent.add_state("parse", parse, max_retries=2)
    agent.add_state("score", score)
    agent.add_state("report", report)
    return agent


# -- MetricAggregation ------------------------------------------------------------------------------
def test_aggregation_reports_count_sum_avg_extremes_and_percentiles():
    m = MetricAggregation()
    for v in range(1, 101):
        m.add(v)
    d = m.to_dict()
    assert set(d) == LEAF_KEYS
    assert (d["count"], d["sum"], d["avg"], d["min"], d["max"], d["current"]) == (100, 5050.0, 50.5, 1.0, 100.0, 100.0)
    assert d["p50"] == pytest.approx(50.5)
    assert d["p95"] == pytest.approx(95.05)
    assert d["p99"] == pytest.approx(99.01)


def test_empty_aggregation_is_all_zero_so_dashboards_can_read_it():
    assert MetricAggregation().to_dict() == dict.fromkeys(LEAF_KEYS, 0.0) | {"count": 0}


def test_aggregations_merge_exactly():
    a, b = MetricAggregation(), MetricAggregation()
    for v in (1, 2, 3):
        a.add(v)
    for v in (10, 20):
        b.add(v)
    a.merge(b)
    assert (a.count, a.sum, a.min, a.max, a.current) == (5, 36.0, 1.0, 20.0, 20.0)
    assert a.p50 == 3.0


# -- the spec's examples -------------------------------------------------------------------------------
async def test_basic_monitoring_pushes_realtime_and_final_metrics_of_the_spec_shape(capsys):
    """Spec "Basic Monitoring": realtime=True, update_interval, an async metrics callback."""
    received: list[dict[str, Any]] = []
    first_update = asyncio.Event()

    async def handle_metrics(metrics: dict):
        print(f"Current throughput: {metrics['throughput']['states_per_second']['avg']}")
        print(f"Resource usage: {metrics['resources']['used_CPU']['current']}")
        received.append(metrics)
        first_update.set()

    agent = flaky_agent()

    async def wait_for_a_live_update(ctx):
        async with asyncio.timeout(5):  # the workflow is still running when the update arrives
            await first_update.wait()
        return None

    agent.add_state("wait_live", wait_for_a_live_update, dependencies=["report"])

    @agent_monitor(metrics=MetricType.ALL, realtime=True, update_interval=0.02, metrics_callback=handle_metrics)
    async def run_workflow():
        await agent.run()

    await run_workflow()
    assert len(received) >= 2  # at least one live update, plus the final one
    final = received[-1]
    assert set(final) == ALL_CATEGORIES
    assert_spec_shape(final)
    assert final["throughput"]["states_per_second"]["avg"] > 0
    assert final["state"]["completed"]["sum"] == 5
    assert final["errors"]["count"]["sum"] == 1  # parse failed once ...
    assert final["errors"]["retries"]["sum"] == 1  # ... and was retried
    assert final["errors"]["failures"]["sum"] == 0
    timing = final["timing"]
    assert timing["total_execution"]["count"] == 1
    assert timing["total_execution"]["p95"] >= timing["total_execution"]["p50"] >= 10  # ms: two 5 ms sleeps
    assert {"state_fetch", "state_parse", "state_score", "state_report"} <= set(timing)
    resources = final["resources"]
    assert resources["used_MEMORY"]["current"] > 1  # MB of this very process, measured by psutil
    assert resources["used_CPU"]["count"] >= 1
    assert 0 < resources["system_MEMORY"]["current"] <= 100
    assert run_workflow.last_metrics == final
    out = capsys.readouterr().out
    assert "Current throughput:" in out
    print(out.splitlines()[-2:])


async def test_nested_monitors_both_observe_the_inner_run():
    """Spec: ``@agent_monitor(metrics_callback=...) async def run_monitored(): await run_workflow()``."""
    inner_final: list[dict] = []
    outer_final: list[dict] = []

    @agent_monitor(metrics=MetricType.ALL, realtime=False, metrics_callback=inner_final.append)
    async def run_workflow():
        await flaky_agent().run()

    @agent_monitor(metrics_callback=outer_final.append)
    async def run_monitored():
        await run_workflow()

    await run_monitored()
    assert len(inner_final) == len(outer_final) == 1  # not realtime: just the final update
    assert outer_final[0]["state"]["completed"]["sum"] == inner_final[0]["state"]["completed"]["sum"] == 4


async def test_selective_metric_collection_returns_only_the_chosen_categories():
    @agent_monitor(metrics=MetricType.TIMING | MetricType.RESOURCES | MetricType.THROUGHPUT, aggregate=True)
    async def run_optimized():
        agent = Agent("optimized_workflow")

        async def only(ctx):
            return None

        agent.add_state("only", only)
        await agent.run()

    await run_optimized()
    metrics = run_optimized.last_metrics
    assert set(metrics) == {"timing", "resources", "throughput"}
    assert_spec_shape(metrics)
    assert metrics["timing"]["state_only"]["count"] == 1


async def test_custom_metric_aggregation_handler_from_the_spec_computes_efficiency(capsys):
    class CustomMetrics:  # verbatim from the spec
        def __init__(self):
            self.metrics = defaultdict(MetricAggregation)

        async def handle_metrics(self, data: dict):
            for category, metrics in data.items():
                for name, values in metrics.items():
                    self.metrics[f"{category}_{name}"].add(values["avg"])
            throughput = self.metrics["throughput_states_per_second"].avg
            cpu_usage = self.metrics["resources_used_CPU"].avg
            efficiency = throughput / cpu_usage if cpu_usage > 0 else 0
            print(f"Workflow efficiency: {efficiency:.2f}")

    metrics_handler = CustomMetrics()

    @agent_monitor(metrics_callback=metrics_handler.handle_metrics, realtime=True)
    async def run_with_custom_metrics():
        await flaky_agent().run()

    await run_with_custom_metrics()
    assert metrics_handler.metrics["throughput_states_per_second"].avg > 0
    assert metrics_handler.metrics["errors_count"].count >= 1
    assert "Workflow efficiency:" in capsys.readouterr().out


async def test_performance_analysis_reports_latency_in_milliseconds_and_warns(caplog):
    """Spec "Performance Analysis", on a ManualClock so the numbers are exact."""
    clock = ManualClock()
    agent = Agent("performance_workflow", clock=clock)
    durations = iter([0.1, 0.3])

    async def work(ctx):
        await clock.sleep(next(durations))
        return None

    agent.add_state("work", work)

    async def process_metrics(data: dict):
        latency = data["timing"]["total_execution"]["p95"]
        throughput = data["throughput"]["states_per_second"]["avg"]
        logging.info(f"P95 Latency: {latency}ms")
        logging.info(f"Avg Throughput: {throughput} states/sec")
        if latency > 1000:
            logging.warning("High latency detected")
        if throughput < 10:
            logging.warning("Low throughput detected")

    @agent_monitor(metrics=MetricType.TIMING | MetricType.THROUGHPUT | MetricType.LATENCY,
                   metrics_callback=process_metrics)
    async def analyze_performance():
        for _ in range(2):
            run = asyncio.create_task(agent.run())
            await clock.wait_for_sleepers(1)
            await clock.advance(1)
            await run

    with caplog.at_level(logging.INFO):
        await analyze_performance()
    data = analyze_performance.last_metrics
    assert set(data) == {"timing", "throughput", "latency"}
    total = data["timing"]["total_execution"]
    assert (total["count"], total["min"], total["max"]) == (2, pytest.approx(100.0), pytest.approx(300.0))
    assert total["p50"] == pytest.approx(200.0)
    assert total["p95"] == pytest.approx(290.0)
    assert data["timing"]["state_work"]["max"] == pytest.approx(300.0)
    assert data["throughput"]["states_per_second"]["avg"] == pytest.approx((10 + 1 / 0.3) / 2)
    assert data["latency"]["state_execution"]["count"] == 2
    assert "Low throughput detected" in caplog.text
    assert "High latency detected" not in caplog.text


async def test_metrics_dashboard_example_runs_and_shows_errors(capsys):
    """Spec "Metrics Dashboard": RealTimeMetrics started and stopped by plain calls inside async code."""

    class MetricsDashboard:  # verbatim from the spec
        def __init__(self):
            self.rt_metrics = RealTimeMetrics(update_interval=1.0)

        async def update_dashboard(self, metrics: dict):
            throughput = metrics["throughput"]["states_per_second"]["avg"]
            errors = metrics["errors"]["count"]["sum"]
            cpu_usage = metrics["resources"]["used_CPU"]["current"]
            print("\033[2J\033[H")
            print("=== Workflow Dashboard ===")
            print(f"Throughput: {throughput:.2f} states/sec")
            print(f"Errors: {errors}")
            print(f"CPU Usage: {cpu_usage:.1f}%")

        async def start(self):
            self.rt_metrics.subscribe(self.update_dashboard)
            self.rt_metrics.start()

        async def stop(self):
            self.rt_metrics.stop()

    dashboard = MetricsDashboard()

    @agent_monitor(metrics_callback=dashboard.update_dashboard, realtime=True)
    async def run_with_dashboard():
        await dashboard.start()
        try:
            await flaky_agent().run()
        finally:
            await dashboard.stop()

    await run_with_dashboard()
    rt = dashboard.rt_metrics
    assert not rt.running
    assert rt.last_metrics["errors"]["count"]["sum"] == 1  # the started RealTimeMetrics saw the run too
    assert rt.statistics().agents == ("monitored_workflow",)
    out = capsys.readouterr().out
    assert "=== Workflow Dashboard ===" in out
    assert "Errors: 1.0" in out


# -- exact behaviour on a ManualClock -----------------------------------------------------------------
async def test_realtime_window_reports_states_finished_per_second():
    clock = ManualClock()
    agent = Agent("windowed", clock=clock)
    waiting, release = asyncio.Event(), asyncio.Event()

    async def a(ctx):
        return "b"

    async def b(ctx):
        return "c"

    async def c(ctx):
        waiting.set()
        await release.wait()
        return None

    for name, fn in (("a", a), ("b", b), ("c", c)):
        agent.add_state(name, fn)
    updates: list[dict] = []

    @agent_monitor(realtime=True, update_interval=1.0, metrics_callback=updates.append, clock=clock,
                   sample_interval=None)
    async def workflow():
        await agent.run()

    task = asyncio.create_task(workflow())
    await waiting.wait()
    await clock.wait_for_sleepers(1)
    await clock.advance(1.0)
    assert len(updates) == 1
    live = updates[0]
    assert live["throughput"]["states_per_second"]["current"] == 2.0  # a and b finished in the first second
    assert live["throughput"]["concurrent_states"]["current"] == 1
    release.set()
    await task
    final = updates[-1]
    assert len(updates) == 2
    assert final["throughput"]["states_per_second"]["count"] == 2  # the window and the whole run (3 in 1 s)
    assert final["throughput"]["states_per_second"]["avg"] == pytest.approx(2.5)
    assert final["state"]["completed"]["sum"] == 3


async def test_agent_metrics_per_state_counts_runs_retries_failures_and_percentiles():
    clock = ManualClock()
    agent = Agent("per_state", clock=clock)
    tries = {"flaky": 0}

    async def loop(ctx):
        n = ctx.get_state("n", 0) + 1
        ctx.set_state("n", n)
        await clock.sleep(0.01 * n)
        return "loop" if n < 3 else "flaky"

    async def flaky(ctx):
        tries["flaky"] += 1
        if tries["flaky"] < 3:
            raise TimeoutError("try again")
        return None

    agent.add_state("loop", loop)
    agent.add_state("flaky", flaky, max_retries=3)
    metrics = AgentMetrics(agent, sample_interval=None)
    run = asyncio.create_task(agent.run())
    for n in (1, 2, 3):
        await clock.wait_for_sleepers(1)
        await clock.advance(0.01 * n)
    await run
    rows = {r["state"]: r for r in metrics.per_state()}
    assert rows["loop"]["runs"] == 3
    assert rows["loop"]["p50_ms"] == pytest.approx(20.0)
    assert rows["loop"]["max_ms"] == pytest.approx(30.0)
    assert rows["loop"]["p95_ms"] >= rows["loop"]["p50_ms"]
    assert (rows["flaky"]["attempts"], rows["flaky"]["errors"], rows["flaky"]["retries"]) == (3, 2, 2)
    assert rows["flaky"]["failures"] == 0
    snap = metrics.snapshot()
    assert snap["errors"]["count"]["sum"] == 2
    assert snap["state"]["retries"]["sum"] == 2
    assert snap["timing"]["state_loop"]["count"] == 3
    metrics.close()
    assert not agent.events.active


async def test_final_failure_is_counted_and_the_error_still_propagates():
    agent = Agent("broken")

    async def boom(ctx):
        raise ValueError("bad row 7")

    agent.add_state("boom", boom, max_retries=1)
    finals: list[dict] = []

    @agent_monitor(metrics_callback=finals.append)
    async def run():
        await agent.run()

    with pytest.raises(StateFailedError, match="bad row 7"):
        await run()
    errors = finals[-1]["errors"]
    assert (errors["count"]["sum"], errors["retries"]["sum"], errors["failures"]["sum"]) == (2, 1, 1)
    assert finals[-1]["state"]["success_rate"]["avg"] == 0.0


async def test_dependency_resolution_time_and_declared_allocation():
    clock = ManualClock()
    agent = Agent("deps", clock=clock)

    async def extract(ctx):
        await clock.sleep(0.5)
        return None

    async def load(ctx):
        return None

    agent.add_state("extract", extract, resources=ResourceRequirements(cpu_units=2, memory_mb=512))
    agent.add_state("load", load, dependencies=["extract"])
    metrics = AgentMetrics(agent, sample_interval=None)
    run = asyncio.create_task(agent.run())
    await clock.wait_for_sleepers(1)
    await clock.advance(0.5)
    await run
    snap = metrics.snapshot()
    assert snap["dependency"]["resolution_time"]["max"] == pytest.approx(500.0)
    assert snap["dependency"]["blocked_states"]["max"] == 1
    assert snap["resources"]["allocated_CPU"]["max"] == 2.0
    assert snap["resources"]["allocated_MEMORY"]["max"] == 512.0
    assert snap["resources"]["allocated_CPU"]["current"] == 0.0  # released when extract ended


# -- scope and lifecycle -----------------------------------------------------------------------------
def one_state_agent(name: str) -> Agent:
    agent = Agent(name)

    async def step(ctx):
        await asyncio.sleep(0)
        return None

    agent.add_state("step", step)
    return agent


async def test_concurrent_monitored_functions_each_see_only_their_own_agents():
    @agent_monitor(sample_interval=None)
    async def run(name: str):
        assert current_monitor() is not None
        await one_state_agent(name).run()
        return current_monitor()

    m1, m2 = await asyncio.gather(run("left"), run("right"))
    assert m1.statistics().agents == ("left",)
    assert m2.statistics().agents == ("right",)
    assert current_monitor() is None


async def test_agents_run_outside_a_monitor_are_not_observed_and_monitors_detach():
    outside = one_state_agent("outside")
    inside = one_state_agent("inside")

    @agent_monitor()
    async def run():
        await inside.run()

    await run()
    await outside.run()
    assert run.monitor.statistics().agents == ("inside",)
    assert not inside.events.active  # the monitor unsubscribed: no cost after it ends
    assert not outside.events.active


async def test_aggregate_false_calls_back_once_per_agent():
    finals: list[dict] = []

    @agent_monitor(aggregate=False, metrics_callback=finals.append, sample_interval=None)
    async def run():
        await one_state_agent("a").run()
        await one_state_agent("b").run()

    await run()
    assert len(finals) == 2
    assert all(f["timing"]["state_step"]["count"] == 1 for f in finals)
    assert run.monitor.snapshot()["timing"]["state_step"]["count"] == 2  # merged view


async def test_realtime_metrics_watching_one_agent_explicitly():
    agent = one_state_agent("watched")
    other = one_state_agent("ignored")
    seen: list[dict] = []
    rt = RealTimeMetrics(update_interval=60, sample_interval=None)
    rt.subscribe(seen.append)
    await rt.watch(agent).start()
    await agent.run()
    await other.run()
    await rt.stop()
    assert rt.statistics().agents == ("watched",)
    assert seen[-1]["state"]["completed"]["sum"] == 1
    assert "watched" in repr(rt)


def test_realtime_metrics_start_outside_a_loop_says_how_to_fix():
    with pytest.raises(MonitoringError, match="running event loop"):
        RealTimeMetrics().start()


def test_bad_arguments_raise_configuration_errors():
    with pytest.raises(ConfigurationError, match="async"):
        agent_monitor(lambda: None)
    with pytest.raises(ConfigurationError, match="MetricType"):
        agent_monitor(metrics="timing")
    with pytest.raises(ConfigurationError, match="update_interval"):
        agent_monitor(update_interval=0)
    with pytest.raises(ConfigurationError, match="update_interval"):
        RealTimeMetrics(update_interval=-1)


async def test_a_failing_callback_does_not_break_the_workflow(caplog):
    def broken(metrics):
        raise RuntimeError("dashboard down")

    @agent_monitor(metrics_callback=broken, sample_interval=None)
    async def run():
        await one_state_agent("sturdy").run()
        return "done"

    assert await run() == "done"
    assert "dashboard down" in caplog.text


def test_tally_counts_and_rates_are_exact():
    from fluffy_nb.engine._metrics import Tally

    t = Tally()
    for v in (1, 1, 0, 1):
        t.add(v)
    d = t.to_dict()
    assert (d["count"], d["sum"], d["avg"], d["min"], d["max"], d["current"]) == (4, 3.0, 0.75, 0.0, 1.0, 1.0)
    reference = MetricAggregation()
    for v in (0, 1, 1, 1):
        reference.add(v)
    assert (d["p50"], d["p95"], d["p99"]) == (reference.p50, reference.p95, reference.p99)


async def test_watching_a_run_already_under_way_still_counts_its_throughput():
    clock = ManualClock()
    agent = Agent("late", clock=clock)
    started = asyncio.Event()

    async def first(ctx):
        started.set()
        await clock.sleep(1.0)
        return "second"

    async def second(ctx):
        return None

    agent.add_state("first", first)
    agent.add_state("second", second)
    run = asyncio.create_task(agent.run())
    await started.wait()
    metrics = AgentMetrics(agent, sample_interval=None)  # attached mid-run
    await clock.wait_for_sleepers(1)
    await clock.advance(1.0)
    await run
    snap = metrics.snapshot()
    assert snap["throughput"]["states_per_second"]["current"] == pytest.approx(2.0)  # 2 states in 1 s
    assert snap["timing"]["total_execution"]["current"] == pytest.approx(1000.0)


async def test_per_state_rows_carry_measured_usage_from_resource_samples():
    from fluffy_nb.engine._events import ResourceSample

    agent = one_state_agent("usage")
    metrics = AgentMetrics(agent, sample_interval=None)
    for cpu in (40.0, 60.0):  # as a sampler would publish them while "step" runs
        agent.events.publish(ResourceSample("usage", "r1", 0.0, cpu, 250.0, 10.0, 20.0, ("step",)))
    await agent.run()
    (row,) = metrics.per_state()
    assert row["runs"] == 1
    assert row["avg_process_cpu"] == pytest.approx(50.0)
    assert row["max_process_memory_mb"] == 250.0
    assert metrics.snapshot()["resources"]["used_CPU"]["max"] == 60.0


def test_the_specs_import_spelling_gives_these_names():
    import importlib

    importlib.import_module("fluffy_nb.compat")  # opt in to the seed module names
    seed = importlib.import_module("agent_monitor")
    assert (seed.agent_monitor, seed.MetricType, seed.MetricAggregation, seed.RealTimeMetrics) == (
        agent_monitor, MetricType, MetricAggregation, RealTimeMetrics)
