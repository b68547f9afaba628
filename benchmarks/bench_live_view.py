"""How much a live view slows a 10,000-state run, beside a raw-asyncio baseline.

A fan-out: ``dispatch`` returns 10,000 state names, each state returns None at once. Runs:

* raw asyncio: 10,000 tasks created and awaited (the floor any engine stands on);
* engine: the same fan-out through ``Agent.run()``, nobody watching;
* engine + LiveView: the same with the notebook's live view attached (no frontend here: the
  widgets are built and updated, their messages go nowhere; the view counts them).

Prints medians over ``--repeat`` runs (interleaved), the ratio live/engine, and how many
redraws / widget updates the view produced. Besides wall time it reports the process's CPU time
(``time.process_time``, steadier on a shared machine): to ``await handle``, and with the view
until its final picture is drawn (the same: the end is drawn before ``await handle`` resumes).
Each run starts after a full ``gc.collect()``: otherwise the previous run's agent (and view) is
collected inside the next run's window, and each variant pays for the other's garbage. The
collections a run's own allocations trigger stay in. Speed is never asserted in tests.

Last, a chain of 5,000 states (each returns the next one's name), CPU time per state from its
start to its end (its ``RunFinished``, before the view draws its final picture: a graph of
5,000 states, a cost of its own), without and with a view. A view that reads no event per
state leaves the engine its quiet path (the chain steps in place: ``EventBus.stepwise`` stays
False), so the two should read alike but for the view's fixed cost at attach (~2 ms, small
per state at this length).

    python benchmarks/bench_live_view.py [--states 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time

from fluffy_nb import Agent
from fluffy_nb.engine._events import RunFinished
from fluffy_nb.notebook import LiveView


async def raw_asyncio(n: int) -> float:
    async def work() -> None:
        return None

    t = time.perf_counter()
    tasks = [asyncio.get_running_loop().create_task(work()) for _ in range(n)]
    await asyncio.gather(*tasks)
    return time.perf_counter() - t


def fan_out(n: int) -> Agent:
    agent = Agent("fan")
    names = [f"w{i}" for i in range(n)]

    async def dispatch(ctx):
        return names

    async def work(ctx):
        return None

    agent.add_state("dispatch", dispatch, next=names)
    for name in names:
        agent.add_state(name, work)
    return agent


async def engine(n: int, live: bool) -> tuple[float, float, float, float, dict[str, float]]:
    """(wall time to `await handle`, engine-reported duration, CPU time to `await handle`,
    CPU time until the view's final picture is drawn, view statistics)."""
    agent = fan_out(n)
    view = LiveView(agent) if live else None
    gc.collect()  # the previous run's agent and view are garbage: their collection is not this run's cost
    t, c = time.perf_counter(), time.process_time()
    handle = agent.start()
    if view is not None:
        view.attach(handle)
    result = await handle
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    stats: dict[str, float] = {}
    cpu_end = cpu
    if view is not None:
        assert view.finished  # drawn before the await resumed (a notebook saves it with the cell)
        cpu_end = time.process_time() - c
        stats = view.statistics()
        view.close()
    return wall, result.duration, cpu, cpu_end, stats


def chain(n: int) -> Agent:
    agent = Agent("chain", max_steps=n + 10)
    for i in range(n):
        nxt = f"s{i + 1}" if i + 1 < n else None

        async def step(ctx, nxt=nxt):
            return nxt

        agent.add_state(f"s{i}", step)
    return agent


async def chain_cpu(n: int, live: bool) -> float:
    """CPU seconds per state of a chain of ``n`` states, from its start to its ``RunFinished``."""
    agent = chain(n)
    view = LiveView(agent) if live else None
    ended: list[float] = []
    leave = agent.events.subscribe(lambda e: ended.append(time.process_time()), types=(RunFinished,))
    gc.collect()
    c = time.process_time()
    handle = agent.start()
    if view is not None:
        view.attach(handle)
    await handle
    leave()
    if view is not None:
        view.close()
    return (ended[0] - c) / n


async def main(n: int, repeat: int) -> None:
    await engine(200, True)  # warm up imports and plotly
    raw, plain, live, plain_d, live_d, plain_c, live_c, live_end, stats = [], [], [], [], [], [], [], [], []
    for _ in range(repeat):
        raw.append(await raw_asyncio(n))
        w, d, c, _e, _s = await engine(n, False)
        plain.append(w)
        plain_d.append(d)
        plain_c.append(c)
        w, d, c, e, s = await engine(n, True)
        live.append(w)
        live_d.append(d)
        live_c.append(c)
        live_end.append(e)
        stats.append(s)
    med = statistics.median
    base = med(raw)
    print(f"{n:,}-state fan-out, median of {repeat} runs (seconds)\n")
    print(f"{'variant':34} {'median':>8} {'x raw asyncio':>14} {'x engine':>9}")
    rows = [("raw asyncio (tasks only)", base), ("engine, no view (await handle)", med(plain)),
            ("engine + LiveView (await handle)", med(live)), ("engine, no view (run duration)", med(plain_d)),
            ("engine + LiveView (run duration)", med(live_d))]
    for label, value in rows:
        ref = med(plain) if "await" in label else med(plain_d)
        print(f"{label:34} {value:8.3f} {value / base:14.1f} {value / ref:9.2f}")
    print(f"\nlive/engine ratio (await handle): {med(live) / med(plain):.2f}  "
          f"(run duration: {med(live_d) / med(plain_d):.2f})")
    print(f"CPU seconds: engine {med(plain_c):.3f} ({min(plain_c):.3f}-{max(plain_c):.3f}), "
          f"with the view to await handle {med(live_c):.3f} ({min(live_c):.3f}-{max(live_c):.3f}) "
          f"= {med(live_c) / med(plain_c):.2f}x, to its final picture {med(live_end):.3f} "
          f"= {med(live_end) / med(plain_c):.2f}x")
    print(f"view per run: redraws {med([s['redraws'] for s in stats]):.0f}, figure redraws "
          f"{med([s['figure_redraws'] for s in stats]):.0f}, widget updates {med([s['updates'] for s in stats]):.0f}, "
          f"last figure redraw {med([s['figure_cost'] for s in stats]) * 1000:.0f} ms")
    plain_chain, live_chain = [], []
    for _ in range(repeat):
        plain_chain.append(await chain_cpu(5_000, False))
        live_chain.append(await chain_cpu(5_000, True))
    print(f"\nchain of 5,000, CPU us/state to its end: engine {med(plain_chain) * 1e6:.1f}, with the view "
          f"{med(live_chain) * 1e6:.1f} = {med(live_chain) / med(plain_chain):.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--states", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.states, args.repeat))
