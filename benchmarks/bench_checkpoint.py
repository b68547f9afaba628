"""What checkpointing costs per state, beside a non-durable run and raw asyncio, in one process.

Workload: a chain of N states (default 200), each adding to a shared counter and naming the
next (declared with ``next=`` so the run really is a chain). Rows:

  asyncio          hand-written: each step its own task, next looked up in a dict
  engine           Agent, no store (no checkpoints)
  interval         Agent + SQLiteStore, checkpoint_interval=5 ms (periodic only)
  durable-memory   Agent + MemoryStore, durable=True (a checkpoint after every state)
  durable-sqlite   Agent + SQLiteStore (write-behind, the default), durable=True
  durable-sync     Agent + SQLiteStore(write_behind=False): commit inside every state's completion

Every durable timing runs until ``run()`` returns, and ``run()`` flushes the store at
completion: the time includes every checkpoint being committed to the file. Each repeat
uses a fresh agent and a fresh database file in a temporary directory.

Run: ``python benchmarks/bench_checkpoint.py [--states N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fluffy_nb import Agent, MemoryStore, SQLiteStore


def chain_agent(n: int, **kw: Any) -> Agent:
    agent = Agent("bench_cp", max_steps=n + 10, **kw)
    for i in range(n):
        nxt = f"s{i + 1}" if i + 1 < n else None

        async def step(ctx: Any, nxt: str | None = nxt, i: int = i) -> str | None:
            ctx.set_state("total", ctx.get_state("total", 0) + i)
            return nxt

        agent.add_state(f"s{i}", step, next=[nxt] if nxt else None)
    return agent


async def raw_asyncio(n: int) -> tuple[float, float]:
    shared: dict[str, int] = {}

    def make(i: int) -> Callable[[dict[str, int]], Any]:
        nxt = f"s{i + 1}" if i + 1 < n else None

        async def step(ctx: dict[str, int]) -> str | None:
            ctx["total"] = ctx.get("total", 0) + i
            return nxt

        return step

    steps = {f"s{i}": make(i) for i in range(n)}
    loop = asyncio.get_running_loop()
    t0, c0 = time.perf_counter(), time.process_time()
    name: str | None = "s0"
    while name is not None:
        name = await loop.create_task(steps[name](shared))
    return time.perf_counter() - t0, time.process_time() - c0


async def engine_run(n: int, tmp: Path, kind: str) -> tuple[float, float]:
    store: Any = None
    kw: dict[str, Any] = {}
    if kind == "interval":
        store = SQLiteStore(tmp / "interval.db")
        kw = {"store": store, "checkpoint_interval": 0.005}
    elif kind == "durable-memory":
        store = MemoryStore()
        kw = {"store": store, "durable": True}
    elif kind == "durable-sqlite":
        store = SQLiteStore(tmp / "durable.db")
        kw = {"store": store, "durable": True}
    elif kind == "durable-sync":
        store = SQLiteStore(tmp / "sync.db", write_behind=False)
        kw = {"store": store, "durable": True}
    agent = chain_agent(n, **kw)
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    result = await agent.run()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert result["total"] == n * (n - 1) // 2
    if store is not None:
        expected = n + 1 if kind.startswith("durable") else None
        rows = store.list("bench_cp")
        assert expected is None or len(rows) == expected, (kind, len(rows))
        store.close()
    return elapsed, cpu


async def main(n: int, repeat: int) -> None:
    kinds = ["engine", "interval", "durable-memory", "durable-sqlite", "durable-sync"]
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in ["asyncio", *kinds]}
    await engine_run(n, Path(tempfile.mkdtemp()), "durable-sqlite")  # warm-up: imports, caches
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            times["asyncio"].append(await raw_asyncio(n))
            for kind in kinds:
                times[kind].append(await engine_run(n, Path(d), kind))
    med = {k: statistics.median(w for w, _ in v) / n * 1e6 for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) / n * 1e6 for k, v in times.items()}
    print(f"checkpoint cost: chain of {n} states, median of {repeat} runs (microseconds per state)")
    print(f"{'workload':16} {'wall us':>8} {'x asyncio':>10} {'x engine':>9} {'+checkpoint':>12} {'cpu us':>8}")
    for k, us in med.items():
        extra = f"{us - med['engine']:12.1f}" if k not in ("asyncio", "engine") else f"{'':>12}"
        print(f"{k:16} {us:8.1f} {us / med['asyncio']:10.1f} {us / med['engine']:9.2f} {extra} {cpu[k]:8.1f}")
    print("wall us: elapsed time per state until run() returned (durable rows: every checkpoint committed).")
    print("+checkpoint: wall us minus the non-durable engine's. cpu us: this process's CPU time per state,")
    print("all threads (the writer thread included); less sensitive to other processes on a busy machine.")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    asyncio.run(main(args.states, args.repeat))
