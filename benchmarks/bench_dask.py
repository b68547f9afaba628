"""Benchmark: state bodies on Dask vs on the event loop, beside raw asyncio and raw Dask.

Two tables of medians over repeated runs, each row with its ratio to the raw-asyncio
baseline measured in the same process:

1. Throughput of N CPU-bound states (a fan-out of pure-Python loops): raw asyncio (the
   same functions awaited in one loop), fluffy on the event loop, fluffy on Dask with 1 and
   with 2 local worker processes, and raw Dask (``client.submit`` + ``gather``, 2 workers).
2. Per-state overhead: a chain of M no-op states run one after another (latency per state),
   the same chain with an 80 MB array in the context (scattered once, then passed by
   reference), and a fan-out of M no-op states (cost per state when many are in flight),
   beside Dask's own no-op round trip (``submit`` + ``await``).

Usage::

    python benchmarks/bench_dask.py [--states 16] [--work 300000] [--chain 100] [--repeat 5]

Numbers depend on the machine (cores, load); the Dask rows need ``fluffy_nb[dask]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fluffy_nb import Agent
from fluffy_nb.distributed import DaskExecutor


def burn(n: int) -> int:
    """CPU-bound pure Python: the kind of body that needs processes, not threads."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def burn_state(ctx: Any) -> None:
    ctx.set_state(ctx.state_name, burn(ctx.get_state("work")))


def noop_state(ctx: Any) -> None:
    return None


def chain_state(ctx: Any) -> str | None:
    left = ctx.get_state("left") - 1
    ctx.set_state("left", left)
    return "step" if left > 0 else None


async def median_of(repeat: int, once: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await once()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fanout_agent(n: int, body: Callable[..., Any], executor: Any) -> tuple[Agent, list[str]]:
    agent = Agent("bench", executor=executor)
    names = [f"s{i}" for i in range(n)]
    for name in names:
        agent.add_state(name, body, remote=executor is not None)
    return agent, names


async def throughput(args: argparse.Namespace, executors: dict[str, DaskExecutor | None]) -> list[tuple[str, float]]:
    n, work = args.states, args.work

    async def raw_asyncio() -> None:
        async def one() -> int:
            return burn(work)

        await asyncio.gather(*(one() for _ in range(n)))

    rows = [("raw asyncio (same functions, one loop)", await median_of(args.repeat, raw_asyncio))]
    for label, executor in executors.items():
        agent, names = fanout_agent(n, burn_state, executor)

        async def run(agent: Agent = agent, names: list[str] = names) -> None:
            await agent.run(start=names, initial_context={"work": work})

        await run()  # warm up (imports on workers, pickling caches)
        rows.append((f"fluffy, {label}", await median_of(args.repeat, run)))
    two = executors.get("Dask 2 workers")
    if two is not None:
        client = two.client

        async def raw_dask() -> None:
            futures = [client.submit(burn, work, pure=False) for _ in range(n)]
            await client.gather(futures)

        rows.append(("raw Dask 2 workers (submit + gather)", await median_of(args.repeat, raw_dask)))
    return rows


async def overhead(args: argparse.Namespace, executors: dict[str, DaskExecutor | None]) -> list[tuple[str, float]]:
    m = args.chain

    async def raw_chain() -> None:
        async def step() -> None:
            return None

        for _ in range(m):
            await step()

    rows = [("raw asyncio: await a no-op coroutine", await median_of(args.repeat, raw_chain) / m)]
    for label, executor in executors.items():
        chain = Agent("chain", executor=executor)
        chain.add_state("step", chain_state, remote=executor is not None)

        async def run_chain(chain: Agent = chain) -> None:
            await chain.run(initial_context={"left": m})

        await run_chain()
        rows.append((f"fluffy chain, {label}", await median_of(args.repeat, run_chain) / m))
        if executor is not None:
            import numpy as np

            big = np.ones(10_000_000)  # 80 MB, the same object in every run: scattered once

            async def run_big(chain: Agent = chain, big: Any = big) -> None:
                await chain.run(initial_context={"left": m, "big": big})

            await run_big()
            rows.append((f"fluffy chain + 80 MB context, {label}", await median_of(args.repeat, run_big) / m))
        agent, names = fanout_agent(m, noop_state, executor)

        async def run_fan(agent: Agent = agent, names: list[str] = names) -> None:
            await agent.run(start=names)

        await run_fan()
        rows.append((f"fluffy fan-out, {label}", await median_of(args.repeat, run_fan) / m))
        if executor is not None:
            client = executor.client

            async def raw_dask_chain(client: Any = client) -> None:
                for _ in range(m):
                    await client.submit(noop_state, None, pure=False)

            rows.append((f"raw Dask chain (submit + await), {label.split()[-2]} worker",
                         await median_of(args.repeat, raw_dask_chain) / m))
    return rows


def table(title: str, rows: list[tuple[str, float]], unit: str, scale: float) -> None:
    base = rows[0][1]
    print(f"\n{title}")
    print(f"{'':<46}{unit:>12}{'x raw asyncio':>16}")
    for label, value in rows:
        print(f"{label:<46}{value * scale:>12.2f}{value / base:>16.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=16, help="CPU-bound states in the fan-out")
    parser.add_argument("--work", type=int, default=300_000, help="loop iterations per CPU-bound state")
    parser.add_argument("--chain", type=int, default=100, help="no-op states for the overhead rows")
    parser.add_argument("--repeat", type=int, default=5, help="runs per row (the median is shown)")
    args = parser.parse_args()

    one = await DaskExecutor.local(n_workers=1)
    try:
        rows_1 = await throughput(args, {"event loop": None, "Dask 1 worker": one})
        over_1 = await overhead(args, {"event loop": None, "Dask 1 worker": one})
    finally:
        await one.close()
    two = await DaskExecutor.local(n_workers=2)
    try:
        rows_2 = await throughput(args, {"Dask 2 workers": two})
    finally:
        await two.close()
    rows = rows_1 + rows_2[1:]
    table(f"Throughput: {args.states} CPU-bound states of {args.work:,} iterations (median of {args.repeat})",
          rows, "seconds", 1.0)
    print("  states per second: " + ", ".join(f"{args.states / t:.1f}" for _, t in rows) + " (same order)")
    table(f"Per-state overhead ({args.chain} no-op states, median of {args.repeat})", over_1, "us/state", 1e6)


if __name__ == "__main__":
    asyncio.run(main())
