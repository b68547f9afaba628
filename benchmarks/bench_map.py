"""Payload fan-out (``ctx.map``/``Send``) per item, beside raw asyncio ``gather`` in the same process.

Workload: one state maps N items to a ``score`` state, each branch records a result, and a
``merge`` join reads them all (``ctx.results``). The same ``score`` coroutine body (one
multiplication) is what the baselines run:

  gather   ``asyncio.gather(*(score(i) for i in items))``: coroutines awaited by gather, the limit
  tasks    each item as its own task (``create_task``), then ``gather``: what "each payload its own
           execution" costs at the least in asyncio
  map      fluffy_nb: ``return ctx.map("score", items)`` with no concurrency limit
  map/50   the same with ``Agent(max_concurrent=50)`` (the queue path)

Run: ``python benchmarks/bench_map.py [--repeat N]``. Prints medians (microseconds per item)
and the ratio to ``gather``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench_engine import measure_loop_only as timed

from fluffy_nb import Agent

SIZES = (1_000, 10_000)


async def work(item: int) -> int:
    """The body every variant runs once per item."""
    return item * 2


def map_agent(n: int, max_concurrent: int | None) -> Agent:
    items = list(range(n))

    async def split(ctx: Any) -> Any:
        return ctx.map("score", items)

    async def score(ctx: Any) -> str:
        ctx.set_result(await work(ctx.payload))
        return "merge"

    async def merge(ctx: Any) -> None:
        assert len(ctx.results("score")) == n

    agent = Agent("bench_map", max_concurrent=max_concurrent, max_steps=n + 10)
    agent.add_state("split", split)
    agent.add_state("score", score)
    agent.add_state("merge", merge)
    return agent


async def raw_gather(n: int) -> None:
    results = await asyncio.gather(*(work(i) for i in range(n)))
    assert len(results) == n


async def raw_tasks(n: int) -> None:
    loop = asyncio.get_running_loop()
    results = await asyncio.gather(*[loop.create_task(work(i)) for i in range(n)])
    assert len(results) == n


def timed_agent(build: Callable[[], Agent], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        agent = build()
        gc.collect()

        async def go(agent: Agent = agent) -> float:
            t0 = time.perf_counter()
            await agent.run()
            return time.perf_counter() - t0

        times.append(asyncio.run(go()))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="runs per figure (the median is reported)")
    args = parser.parse_args()
    med = statistics.median
    print(f"{'items':>7}  {'variant':<8} {'us/item':>9} {'x gather':>9}")
    for n in SIZES:
        r = args.repeat if n <= 1_000 else max(3, args.repeat // 2)
        base = med(timed(lambda n=n: raw_gather(n), r)) / n * 1e6
        rows = [
            ("gather", base),
            ("tasks", med(timed(lambda n=n: raw_tasks(n), r)) / n * 1e6),
            ("map", med(timed_agent(lambda n=n: map_agent(n, None), r)) / n * 1e6),
            ("map/50", med(timed_agent(lambda n=n: map_agent(n, 50), r)) / n * 1e6),
        ]
        for name, us in rows:
            print(f"{n:>7,}  {name:<8} {us:>9.2f} {us / base:>9.1f}")


if __name__ == "__main__":
    main()
