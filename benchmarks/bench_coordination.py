"""What coordination and resource admission cost per state when they never limit anything.

Workload: a chain of N states (default 500), each naming the next (declared with ``next=``).
Rows, all in one process, medians over R repeats (fresh agent per repeat):

  asyncio        hand-written: each step its own task, next looked up in a dict
  engine         Agent, no gates
  rate-limit     + a token bucket on every state that never limits (1e9/s, burst 1e9)
  semaphore      + one semaphore (max_count=1000) shared by every state
  mutex          + one mutex shared by every state (a chain never contends)
  resources      + ResourcePool admission of 1 CPU per state (pool of 1000 CPUs)
  all            rate limit + semaphore + resource admission together

Run: ``python benchmarks/bench_coordination.py [--states N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from fluffy_nb.engine import Agent, ResourcePool, ResourceRequirements, ResourceType
from fluffy_nb.engine.coordination import PrimitiveType

REQ = ResourceRequirements(cpu_units=1.0, resource_types=ResourceType.CPU)


def chain_agent(n: int, *, rate: bool = False, semaphore: bool = False, mutex: bool = False,
                resources: bool = False) -> Agent:
    pool = ResourcePool(total_cpu=1000) if resources else None
    agent = Agent("bench_coord", max_steps=n + 10, resource_pool=pool)
    for i in range(n):
        name = f"s{i}"
        nxt = f"s{i + 1}" if i + 1 < n else None

        async def step(ctx: Any, nxt: str | None = nxt) -> str | None:
            return nxt

        agent.add_state(name, step, next=[nxt] if nxt else None, resources=REQ if resources else None)
        if rate:
            agent.add_state_rate_limit(name, max_rate=1e9, burst_size=1e9)
        if semaphore:
            agent.add_state_coordination(name, PrimitiveType.SEMAPHORE, max_count=1000, name="shared")
        if mutex:
            agent.add_state_coordination(name, PrimitiveType.MUTEX, name="lock")
    return agent


async def raw_asyncio(n: int) -> float:
    def make(i: int) -> Callable[[dict[str, int]], Any]:
        nxt = f"s{i + 1}" if i + 1 < n else None

        async def step(ctx: dict[str, int]) -> str | None:
            return nxt

        return step

    steps = {f"s{i}": make(i) for i in range(n)}
    ctx: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    name: str | None = "s0"
    while name is not None:
        name = await loop.create_task(steps[name](ctx))
    return time.perf_counter() - t0


async def engine_run(n: int, **kw: bool) -> float:
    agent = chain_agent(n, **kw)
    t0 = time.perf_counter()
    await agent.run()
    elapsed = time.perf_counter() - t0
    assert agent.completion_counts[f"s{n - 1}"] == 1
    return elapsed


VARIANTS: dict[str, dict[str, bool]] = {
    "engine": {},
    "rate-limit": {"rate": True},
    "semaphore": {"semaphore": True},
    "mutex": {"mutex": True},
    "resources": {"resources": True},
    "all": {"rate": True, "semaphore": True, "resources": True},
}


async def main(n: int, repeat: int) -> None:
    times: dict[str, list[float]] = {"asyncio": [], **{k: [] for k in VARIANTS}}
    await raw_asyncio(n)  # warm up
    await engine_run(n)
    for _ in range(repeat):  # interleave variants so machine noise hits all alike
        gc.collect()
        times["asyncio"].append(await raw_asyncio(n))
        for label, kw in VARIANTS.items():
            gc.collect()
            times[label].append(await engine_run(n, **kw))
    med = {k: statistics.median(v) / n * 1e6 for k, v in times.items()}
    print(f"{n} chained states, median of {repeat} runs (microseconds per state)")
    print(f"{'variant':<12} {'us/state':>10} {'vs engine':>10} {'vs asyncio':>11} {'added us':>9}")
    for label, us in med.items():
        print(f"{label:<12} {us:>10.2f} {us / med['engine']:>9.2f}x {us / med['asyncio']:>10.2f}x "
              f"{us - med['engine']:>9.2f}")


def gate_alone(repeat: int, calls: int = 20_000) -> None:
    """The uncontended admit + release of each gate by itself, without the engine around it."""
    from fluffy_nb.engine.coordination import Mutex, RateLimiter, Semaphore

    gates: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}
    limiter = RateLimiter("r", 1e9, burst_size=1e9)
    gates["rate-limit"] = (lambda: limiter.try_acquire("s"), lambda: limiter.release("s"))
    sem = Semaphore("s", 1000)
    gates["semaphore"] = (lambda: sem.try_acquire("s"), lambda: sem.release("s"))
    mutex = Mutex("m")
    gates["mutex"] = (lambda: mutex.try_acquire("s"), lambda: mutex.release("s"))
    pool = ResourcePool(total_cpu=1000)
    gates["resources"] = (lambda: pool.try_acquire("s", REQ), lambda: pool.release("s"))
    empty = (lambda: True, lambda: None)
    gates["(two no-op calls)"] = empty
    print(f"\ngate alone: try_acquire + release, median of {repeat} x {calls} calls (ns per admission)")
    for label, (take, give) in gates.items():
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(calls):
                take()
                give()
            runs.append((time.perf_counter() - t0) / calls * 1e9)
        print(f"{label:<18} {statistics.median(runs):>8.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.states, args.repeat))
    gate_alone(args.repeat)
