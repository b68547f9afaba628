"""UsageSampler: measured process/system usage while an agent runs, as events and as records."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import psutil
import pytest

from fluffy_nb import Agent, ManualClock
from fluffy_nb.engine._errors import ConfigurationError
from fluffy_nb.engine._events import ResourceSample
from fluffy_nb.engine._sampler import UsageSampler, acquire_shared, release_shared


class FakeProcess:
    """psutil.Process stand-in: CPU percents handed out in order, a settable RSS."""

    def __init__(self, cpu: list[float], rss_mb: float = 100.0) -> None:
        self.cpu = list(cpu)
        self.calls = 0
        self.rss_mb = rss_mb

    def cpu_percent(self, interval=None):
        self.calls += 1
        return self.cpu.pop(0) if self.cpu else 0.0

    def memory_info(self):
        return SimpleNamespace(rss=int(self.rss_mb * 1024 * 1024))


class FakeSystem:
    def __init__(self, cpu: float = 50.0, mem: float = 40.0) -> None:
        self.cpu, self.mem = cpu, mem

    def cpu_percent(self, interval=None):
        return self.cpu

    def virtual_memory(self):
        return SimpleNamespace(percent=self.mem)


def gated_agent(clock: ManualClock) -> tuple[Agent, dict[str, asyncio.Event]]:
    """load (waits on a gate) -> train (waits on a gate)."""
    agent = Agent("sampled", clock=clock)
    gates = {"load": asyncio.Event(), "train": asyncio.Event()}
    started = {"load": asyncio.Event(), "train": asyncio.Event()}

    async def load(ctx):
        started["load"].set()
        await gates["load"].wait()
        return "train"

    async def train(ctx):
        started["train"].set()
        await gates["train"].wait()
        return None

    agent.add_state("load", load)
    agent.add_state("train", train)
    return agent, {**gates, "load_started": started["load"], "train_started": started["train"]}


async def test_sampler_samples_while_the_agent_runs_and_attributes_usage_to_states(record):
    clock = ManualClock()
    agent, ev = gated_agent(clock)
    events = record(agent)
    # first value primes psutil's counter at run start and is never reported
    process = FakeProcess(cpu=[0.0, 10.0, 30.0, 90.0, 50.0], rss_mb=200.0)
    sampler = UsageSampler(agent, interval=0.5, process=process, system=FakeSystem(), gpu=None)
    run = asyncio.create_task(agent.run())

    await ev["load_started"].wait()
    for _ in range(2):  # two samples while load runs
        await clock.wait_for_sleepers(1)
        await clock.advance(0.5)
    ev["load"].set()
    await ev["train_started"].wait()
    process.rss_mb = 300.0
    await clock.wait_for_sleepers(1)
    await clock.advance(0.5)  # one sample while train runs
    ev["train"].set()
    await run  # RunFinished: one final sample, then the sampler stops

    assert not sampler.running
    rows = sampler.samples()
    assert [r["process_cpu"] for r in rows] == [10.0, 30.0, 90.0, 50.0]
    assert [r["running"] for r in rows] == [("load",), ("load",), ("train",), ()]
    assert [r["time"] for r in rows] == [0.5, 1.0, 1.5, 1.5]
    assert rows[0]["process_memory_mb"] == pytest.approx(200.0)
    assert (rows[0]["system_cpu"], rows[0]["system_memory_percent"]) == (50.0, 40.0)
    assert (rows[0]["run_id"], rows[0]["agent"]) == (agent.run_id, "sampled")
    published = events.of(ResourceSample)
    assert [s.process_cpu for s in published] == [10.0, 30.0, 90.0, 50.0]
    per_state = {r["state"]: r for r in sampler.per_state()}
    assert per_state["load"]["samples"] == 2
    assert per_state["load"]["avg_process_cpu"] == pytest.approx(20.0)
    assert per_state["load"]["max_process_cpu"] == 30.0
    assert per_state["train"]["avg_process_memory_mb"] == pytest.approx(300.0)
    assert per_state["train"]["exclusive_samples"] == 1
    stats = sampler.statistics()
    assert (stats.samples, stats.buffered, stats.last_process_cpu) == (4, 4, 50.0)


async def test_sampler_restarts_for_the_next_run_and_keeps_a_bounded_ring_buffer():
    clock = ManualClock()
    agent = Agent("twice", clock=clock)

    async def quick(ctx):
        return None

    agent.add_state("quick", quick)
    sampler = UsageSampler(agent, interval=1.0, process=FakeProcess([]), system=FakeSystem(), gpu=None,
                           capacity=3)
    for _ in range(5):
        await agent.run()
    assert sampler.statistics().samples == 5  # one final sample per run
    assert len(sampler.samples()) == 3  # only the newest are kept
    assert not sampler.running


async def test_explicit_start_stop_without_an_agent():
    clock = ManualClock()
    sampler = UsageSampler(None, interval=2.0, clock=clock, process=FakeProcess([0.0, 5.0, 7.0]),
                           system=FakeSystem(), gpu=lambda: (12.0, 30.0))
    sampler.start()
    await clock.wait_for_sleepers(1)
    await clock.advance(2.0)
    final = sampler.stop()
    assert final is not None
    assert (final.process_cpu, final.gpu) == (7.0, (12.0, 30.0))
    assert [r["process_cpu"] for r in sampler.samples()] == [5.0, 7.0]
    assert sampler.stop() is None  # stopping twice is harmless
    assert "stopped" in repr(sampler)
    assert "samples=2" in repr(sampler)


async def test_real_psutil_numbers_are_sane():
    agent = Agent("real")

    async def busy(ctx):
        total = 0
        for i in range(300_000):  # ~tens of ms of real CPU on the event loop
            total += i * i
        ctx.set_state("total", total)
        return None

    agent.add_state("busy", busy)
    sampler = UsageSampler(agent, interval=0.5)
    await agent.run()
    (last,) = sampler.samples()
    ncpu = psutil.cpu_count() or 1
    assert 0.0 <= last["process_cpu"] <= 100.0 * ncpu * 1.5
    assert last["process_memory_mb"] == pytest.approx(psutil.Process().memory_info().rss / 2**20, rel=0.5)
    assert 0.0 <= last["system_cpu"] <= 100.0
    assert 0.0 < last["system_memory_percent"] <= 100.0
    print(f"measured: cpu={last['process_cpu']}% rss={last['process_memory_mb']:.1f}MB "
          f"system cpu={last['system_cpu']}% mem={last['system_memory_percent']}%")


async def test_shared_sampler_is_one_per_agent_and_closed_by_the_last_user():
    agent = Agent("shared")
    a = acquire_shared(agent)
    b = acquire_shared(agent)
    assert a is b
    release_shared(agent)
    assert agent.events.active
    release_shared(agent)
    assert not agent.events.active


def test_bad_interval_is_rejected():
    with pytest.raises(ConfigurationError, match="interval"):
        UsageSampler(None, interval=0, process=FakeProcess([]), system=FakeSystem())
