"""Engine overhead beside raw asyncio, measured in the same process.

Workloads (state bodies do nothing, so the figures are pure orchestration cost):
  chain      1,000 states, each naming the next          -> microseconds per transition
  fanout     1 -> 1,000 parallel states -> 1 join         -> microseconds per state
             each twice: runs of one agent after a warm-up run (what a transition costs), and
             the first run of a new agent each time (adds checking the definition, which
             later runs of it reuse)
  fanout10k  1 -> 10,000 parallel states (no join)        -> total ms and peak memory
  import     ``python -X importtime -c "import fluffy_nb.engine"`` in a fresh interpreter,
             cumulative ms, beside ``import asyncio`` (bytecode cached first, as installed)

Baselines, hand-written asyncio doing the same work, run in the same process:
  plain    each state's coroutine awaited in place, a list ``gather``ed: the limit, the
           figure to read ratios against
  task     each state as its own task (``create_task`` + await), the next looked up in a
           dict: an easier baseline, shown for comparison

Run: ``python benchmarks/bench_engine.py [--repeat N]``. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable

from fluffy_nb import Agent

CHAIN = 1_000
FAN = 1_000
FAN_BIG = 10_000


# -- fluffy_nb workloads -------------------------------------------------------------------
def chain_agent(n: int) -> Agent:
    agent = Agent("bench_chain", max_steps=n + 10)
    for i in range(n):
        nxt = f"s{i + 1}" if i + 1 < n else None

        async def step(ctx, nxt=nxt):  # type: ignore[no-untyped-def]
            return nxt

        agent.add_state(f"s{i}", step)
    return agent


def fanout_agent(n: int, join: bool) -> Agent:
    agent = Agent("bench_fanout", max_steps=n + 10)
    names = [f"w{i}" for i in range(n)]

    async def start(ctx):  # type: ignore[no-untyped-def]
        return names

    async def work_join(ctx):  # type: ignore[no-untyped-def]
        return "join"

    async def work_end(ctx):  # type: ignore[no-untyped-def]
        return None

    async def join_state(ctx):  # type: ignore[no-untyped-def]
        return None

    agent.add_state("start", start)
    for name in names:
        agent.add_state(name, work_join if join else work_end)
    if join:
        agent.add_state("join", join_state)
    return agent


async def run_agent(agent: Agent) -> None:
    await agent.run(start="start" if "start" in agent.states else "s0")


# -- raw asyncio baselines -----------------------------------------------------------------
async def raw_chain_task(n: int) -> None:
    nxt = {f"s{i}": (f"s{i + 1}" if i + 1 < n else None) for i in range(n)}

    async def step(name: str) -> str | None:
        return nxt[name]

    loop = asyncio.get_running_loop()
    cur: str | None = "s0"
    while cur is not None:
        cur = await loop.create_task(step(cur))


async def raw_chain_await(n: int) -> None:
    nxt = {f"s{i}": (f"s{i + 1}" if i + 1 < n else None) for i in range(n)}

    async def step(name: str) -> str | None:
        return nxt[name]

    cur: str | None = "s0"
    while cur is not None:
        cur = await step(cur)


async def plain_fanout(n: int, join: bool) -> None:
    async def work() -> str | None:
        return "join" if join else None

    async def join_state() -> None:
        return None

    await asyncio.gather(*[work() for _ in range(n)])
    if join:
        await join_state()


async def raw_fanout(n: int, join: bool) -> None:
    async def work() -> str | None:
        return "join" if join else None

    async def join_state() -> None:
        return None

    loop = asyncio.get_running_loop()
    await asyncio.gather(*[loop.create_task(work()) for _ in range(n)])
    if join:
        await loop.create_task(join_state())


# -- measuring -----------------------------------------------------------------------------
def measure(make: Callable[[], Awaitable[None]], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        asyncio.run(make())  # type: ignore[arg-type]
        times.append(time.perf_counter() - t0)
    return times


def measure_agent(build: Callable[[], Agent], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        agent = build()
        gc.collect()

        async def go(agent: Agent = agent) -> float:
            t0 = time.perf_counter()
            await run_agent(agent)
            return time.perf_counter() - t0

        times.append(asyncio.run(go()))
    return times


def measure_warm(agent: Agent, repeat: int) -> list[float]:
    """Like :func:`measure_agent`, for runs of one ``agent`` that has run before."""
    return measure_agent(lambda: agent, repeat)


def warmed(build: Callable[[], Agent]) -> Agent:
    """``build()``, run once: its first run checked the definition; later runs reuse that."""
    agent = build()
    asyncio.run(run_agent(agent))
    return agent


def measure_loop_only(make: Callable[[], Awaitable[None]], repeat: int) -> list[float]:
    """Time inside a running loop (excludes asyncio.run start-up, like measure_agent)."""
    times = []
    for _ in range(repeat):
        gc.collect()

        async def go() -> float:
            t0 = time.perf_counter()
            await make()
            return time.perf_counter() - t0

        times.append(asyncio.run(go()))
    return times


def peak_memory_mb(run: Callable[[], None]) -> float:
    gc.collect()
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def interleaved(repeat: int, *measures: Callable[[], list[float]]) -> tuple[float, ...]:
    """The median of each of ``measures`` (each returning one timing), run in turn ``repeat`` times."""
    times: list[list[float]] = [[] for _ in measures]
    for _ in range(repeat):
        for out, measure in zip(times, measures, strict=True):
            out.extend(measure())
    return tuple(statistics.median(t) for t in times)


def import_ms(module: str, repeat: int, cache: str, compile_first: bool = True) -> list[float]:
    """Cumulative ``-X importtime`` of ``module`` (ms) in fresh interpreters, bytecode cached in ``cache``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    cmd = [sys.executable, "-X", "importtime", "-c", f"import {module}"]
    if compile_first:
        subprocess.run(cmd, env=env, capture_output=True, check=True)  # compile once, as an install does
    out = []
    for _ in range(repeat):
        err = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stderr
        last = [line for line in err.splitlines() if line.rstrip().endswith(f"| {module}")][-1]
        out.append(int(last.split("|")[1]) / 1e3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=9, help="runs per figure (median is reported)")
    args = parser.parse_args()
    r = args.repeat

    rows: list[tuple[str, str, float, float, float, str]] = []

    # each repetition runs the engine and both baselines back to back, so a burst of load on a
    # shared machine lands on all three rather than on whichever block it happened to hit
    chain_warm = warmed(lambda: chain_agent(CHAIN))
    chain, chain_new, chain_plain, chain_task = interleaved(
        r, lambda: measure_warm(chain_warm, 1), lambda: measure_agent(lambda: chain_agent(CHAIN), 1),
        lambda: measure_loop_only(lambda: raw_chain_await(CHAIN), 1),
        lambda: measure_loop_only(lambda: raw_chain_task(CHAIN), 1))
    per = 1e6 / CHAIN
    rows.append(("chain 1,000", "us/transition", chain * per, chain_plain * per, chain_task * per, ""))
    rows.append(("  first run, new agent", "us/transition", chain_new * per, chain_plain * per, chain_task * per,
                 "+ definition check"))

    fan_warm = warmed(lambda: fanout_agent(FAN, join=True))
    fan, fan_new, fan_plain, fan_task = interleaved(
        r, lambda: measure_warm(fan_warm, 1), lambda: measure_agent(lambda: fanout_agent(FAN, join=True), 1),
        lambda: measure_loop_only(lambda: plain_fanout(FAN, join=True), 1),
        lambda: measure_loop_only(lambda: raw_fanout(FAN, join=True), 1))
    per = 1e6 / (FAN + 2)
    rows.append(("fan-out 1,000 + join", "us/state", fan * per, fan_plain * per, fan_task * per, ""))
    rows.append(("  first run, new agent", "us/state", fan_new * per, fan_plain * per, fan_task * per,
                 "+ definition check"))

    big_r = max(3, r // 3)
    big, big_plain, big_task = interleaved(
        big_r, lambda: measure_agent(lambda: fanout_agent(FAN_BIG, join=False), 1),
        lambda: measure_loop_only(lambda: plain_fanout(FAN_BIG, join=False), 1),
        lambda: measure_loop_only(lambda: raw_fanout(FAN_BIG, join=False), 1))
    big, big_plain, big_task = big * 1e3, big_plain * 1e3, big_task * 1e3
    rows.append(("fan-out 10,000", "ms total", big, big_plain, big_task, ""))

    agent = fanout_agent(FAN_BIG, join=False)
    mem = peak_memory_mb(lambda: asyncio.run(run_agent(agent)))
    mem_plain = peak_memory_mb(lambda: asyncio.run(plain_fanout(FAN_BIG, join=False)))
    mem_task = peak_memory_mb(lambda: asyncio.run(raw_fanout(FAN_BIG, join=False)))
    rows.append(("fan-out 10,000 peak mem", "MB (tracemalloc)", mem, mem_plain, mem_task, "run only"))

    with tempfile.TemporaryDirectory() as cache:
        for module in ("fluffy_nb.engine", "asyncio"):
            import_ms(module, 1, cache)  # compile once, as an install does
        imp, imp_asyncio = interleaved(r, lambda: import_ms("fluffy_nb.engine", 1, cache, compile_first=False),
                                       lambda: import_ms("asyncio", 1, cache, compile_first=False))
    rows.append(("import fluffy_nb.engine", "ms (importtime)", imp, imp_asyncio, imp_asyncio, "vs import asyncio"))

    print(f"fluffy_nb engine vs raw asyncio in this process, medians of {r} runs ({big_r} for 10k)\n")
    header = (f"{'workload':<26}{'unit':<18}{'fluffy_nb':>11}{'plain loop':>12}{'x plain':>9}"
              f"{'task/state':>12}{'x task':>8}  note")
    print(header)
    print("-" * len(header))
    for name, unit, ours, plain, task, note in rows:
        print(f"{name:<26}{unit:<18}{ours:>11.2f}{plain:>12.2f}{ours / plain:>8.1f}x{task:>12.2f}"
              f"{ours / task:>7.1f}x  {note}")
    print("\nplain loop = each state awaited in place, lists gathered (the limit); task/state = a task per state")


if __name__ == "__main__":
    main()
