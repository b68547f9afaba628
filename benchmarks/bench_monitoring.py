"""What monitoring costs per state, beside an unmonitored run and raw asyncio, in one process.

Workload: a chain of N states (default 500), each adding to a shared counter and naming the
next. Rows:

  asyncio            hand-written: each step its own task, next looked up in a dict
  engine             Agent, nobody listening to its events
  agent-metrics      Agent + AgentMetrics (all categories, no psutil sampling)
  agent_monitor      the same run inside @agent_monitor(realtime=True, update_interval=0.05),
                     psutil sampling every 0.1 s
  sampler-only       Agent + UsageSampler(interval=0.1) (one psutil probe per tick + final)

Each repeat builds a fresh agent; the table shows the median over repeats, microseconds per
state, and the ratio to raw asyncio. Speed is reported, never asserted.

Run: ``python benchmarks/bench_monitoring.py [--states N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fluffy_nb import Agent
from fluffy_nb.engine._sampler import UsageSampler
from fluffy_nb.engine.monitoring import AgentMetrics, agent_monitor


def chain_agent(n: int) -> Agent:
    agent = Agent("bench_monitor", max_steps=n + 10)
    for i in range(n):
        nxt = f"s{i + 1}" if i + 1 < n else None

        async def step(ctx: Any, nxt: str | None = nxt, i: int = i) -> str | None:
            ctx.set_state("total", ctx.get_state("total", 0) + i)
            return nxt

        agent.add_state(f"s{i}", step, next=[nxt] if nxt else None)
    return agent


async def raw_asyncio(n: int) -> float:
    shared: dict[str, int] = {}

    def make(i: int) -> Callable[[dict[str, int]], Awaitable[str | None]]:
        nxt = f"s{i + 1}" if i + 1 < n else None

        async def step(ctx: dict[str, int]) -> str | None:
            ctx["total"] = ctx.get("total", 0) + i
            return nxt

        return step

    steps = {f"s{i}": make(i) for i in range(n)}
    t0 = time.perf_counter()
    name: str | None = "s0"
    while name is not None:
        name = await asyncio.get_running_loop().create_task(steps[name](shared))
    return time.perf_counter() - t0


async def engine(n: int) -> float:
    agent = chain_agent(n)
    t0 = time.perf_counter()
    await agent.run()
    return time.perf_counter() - t0


async def with_agent_metrics(n: int) -> float:
    agent = chain_agent(n)
    metrics = AgentMetrics(agent, sample_interval=None)
    t0 = time.perf_counter()
    await agent.run()
    elapsed = time.perf_counter() - t0
    assert metrics.snapshot()["state"]["completed"]["sum"] == n
    metrics.close()
    return elapsed


async def with_agent_monitor(n: int) -> float:
    agent = chain_agent(n)

    @agent_monitor(realtime=True, update_interval=0.05, sample_interval=0.1)
    async def run() -> None:
        await agent.run()

    t0 = time.perf_counter()
    await run()
    elapsed = time.perf_counter() - t0
    assert run.last_metrics["state"]["completed"]["sum"] == n
    return elapsed


async def with_sampler(n: int) -> float:
    agent = chain_agent(n)
    sampler = UsageSampler(agent, interval=0.1)
    t0 = time.perf_counter()
    await agent.run()
    elapsed = time.perf_counter() - t0
    sampler.close()
    return elapsed


ROWS: list[tuple[str, Callable[[int], Awaitable[float]]]] = [
    ("asyncio", raw_asyncio),
    ("engine", engine),
    ("agent-metrics", with_agent_metrics),
    ("agent_monitor", with_agent_monitor),
    ("sampler-only", with_sampler),
]


async def main(n: int, repeat: int) -> None:
    results: dict[str, list[float]] = {name: [] for name, _ in ROWS}
    for _name, fn in ROWS:  # warm-up
        await fn(min(n, 50))
    for _ in range(repeat):
        for name, fn in ROWS:  # interleaved, so drift hits every row alike
            gc.collect()
            results[name].append(await fn(n))
    base = statistics.median(results["asyncio"])
    engine_median = statistics.median(results["engine"])
    print(f"chain of {n} states, median of {repeat} runs")
    print(f"{'row':<16}{'median ms':>12}{'us/state':>12}{'x asyncio':>12}{'x engine':>12}")
    for name, _ in ROWS:
        med = statistics.median(results[name])
        print(f"{name:<16}{med * 1e3:>12.2f}{med / n * 1e6:>12.1f}{med / base:>12.2f}{med / engine_median:>12.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.states, args.repeat))
