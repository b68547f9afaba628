"""Sub-workflow overhead: what running a child agent as a state costs, per use.

Rows (median microseconds per parent run over ``--runs`` runs, ``--repeat`` times; median of the
medians). Every row does the same work: two trivial steps.
  raw asyncio                       await step1(); await step2() in one coroutine
  fluffy: two states                a parent whose two states are the steps (no child)
  fluffy: child agent               a parent whose one state is a child agent with the two states
  fluffy: child agent, durable      the same with a durable MemoryStore (child checkpoints too)

Run: ``python benchmarks/bench_subflow.py [--runs 300] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fluffy_nb import Agent, MemoryStore


async def step1(ctx: Any) -> str:
    ctx.set_state("a", 1)
    return "step2"


async def step2(ctx: Any) -> None:
    ctx.set_state("b", 2)


def two_states() -> Agent:
    agent = Agent("flat")
    agent.add_state("step1", step1)
    agent.add_state("step2", step2)
    return agent


def nested(durable: bool) -> Agent:
    child = two_states()
    parent = Agent("parent", store=MemoryStore() if durable else None, durable=durable)
    parent.add_state("child", child, outputs=["b"])
    return parent


async def raw() -> None:
    shared: dict[str, int] = {}

    class Ctx:
        def set_state(self, key: str, value: int) -> None:
            shared[key] = value

    ctx = Ctx()
    await step1(ctx)
    await step2(ctx)


async def per_run(make_run: Callable[[], Awaitable[Any]], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await make_run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


async def main(runs: int, repeat: int) -> None:
    flat, child, durable = two_states(), nested(False), nested(True)
    rows: dict[str, Callable[[], Awaitable[Any]]] = {
        "raw asyncio": raw,
        "fluffy: two states": flat.run,
        "fluffy: child agent": child.run,
        "fluffy: child agent, durable": durable.run,
    }
    results: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(repeat):
        for name, fn in rows.items():
            results[name].append(await per_run(fn, runs))
    print(f"{'row':32} {'us per run (median)':>20}")
    for name, values in results.items():
        print(f"{name:32} {statistics.median(values):>20.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.repeat))
