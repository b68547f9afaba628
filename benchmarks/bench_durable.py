"""A durable step (SQLite, commit per state) as the workflow grows, beside raw SQLite commits.

Workload: an agent of N states (10, 100, 1,000, 10,000) in a chain; each state stores its own
context key (so the context grows with the run, as real runs' do) and names the next. The
agent has ``durable=True`` and ``SQLiteStore(write_behind=False)``: every finished state makes
a checkpoint and commits it inside the state's completion.

What is timed is the last ``--steps`` states of the chain (default 200, all of them for N=10
and 100): the run is restored from a checkpoint that says the states before them completed
(their keys in the context, their statuses recorded), so each timed step checkpoints a run of
N states without running the whole chain first. Each state notes this process's CPU time (all
threads) and wall time as it starts. The figure per step is the *steady* one: from the start
of the second timed state to the start of the last, so neither the full checkpoint a restored
run writes first nor the completion checkpoint (full) falls in it; both are reported beside it
(CPU beyond a steady step), with the whole run's CPU per step. Medians over ``--repeat`` runs
(times ``--steps`` // N for chains shorter than ``--steps``, so each size times about as many
steps: a 10-state chain has only 8 steady steps per run). Each run writes a new file: the
baselines' first commit creates its WAL, which weighs on their 10-state row (10 commits).

Baseline, in the same process: ``raw`` inserts one small row and commits, per step, into a
SQLite file opened with the store's pragmas (WAL, ``synchronous=NORMAL`` as the store's default,
or ``--synchronous FULL`` for both: an fsync per commit): the floor a durable step cannot go
under. ``table`` inserts and commits, per step, one row of a delta checkpoint's size into the
store's own table (made by ``SQLiteStore``: its listing index is one more b-tree per commit
than ``raw``'s table and key): what the store's SQL costs, before any checkpoint is built.
Both run their commits in a tight loop, so they are floors: between real steps (Python work
in between evicting SQLite's code and pages from the CPU caches) the same commit measured
about 1.5x its tight-loop CPU here. ``engine`` is the same restored chain with no store (no
checkpoints).

Run: ``python benchmarks/bench_durable.py [--repeat R] [--steps S] [--sizes 10,100,1000,10000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from fluffy_nb import Agent, SQLiteStore


def chain_agent(n: int, marks: list[tuple[float, float]] | None = None, **kw: Any) -> Agent:
    """A chain of ``n`` states; each appends (CPU, wall) at its start to ``marks`` if given."""
    agent = Agent("bench_durable", max_steps=n + 10, **kw)
    mark = marks.append if marks is not None else None
    cpu, wall = time.process_time, time.perf_counter
    for i in range(n):
        nxt = f"s{i + 1}" if i + 1 < n else None

        async def step(ctx: Any, nxt: str | None = nxt, i: int = i) -> str | None:
            if mark is not None:
                mark((cpu(), wall()))
            ctx.set_state(f"k{i}", i)
            return nxt

        agent.add_state(f"s{i}", step, next=[nxt] if nxt else None)
    return agent


def done_before(n: int, first: int) -> dict[str, Any]:
    """A checkpoint of the chain with ``s0 .. s{first-1}`` completed and ``s{first}`` next."""
    done = [f"s{i}" for i in range(first)]
    return {
        "agent_name": "bench_durable", "run_id": uuid.uuid4().hex, "timestamp": time.time(),
        "agent_status": "running", "state_status": dict.fromkeys(done, "completed"),
        "completed_states": done, "completion_counts": dict.fromkeys(done, 1),
        "pending": [f"s{first}"], "shared_state": {f"k{i}": i for i in range(first)}, "steps": first,
    }


class Timing:
    """One timed run of ``steps`` chain states, split where the full checkpoints fall.

    ``steady``: (wall, CPU) per step from the start of the second timed state to the start of
    the last: every step there writes a delta (or, at 10 and 100 states, the full checkpoint
    that falls due among them, as in any run of that size). ``first``: the first timed step
    beyond a steady one (with a store: the full checkpoint a restored run starts with);
    ``final``: the last step and the run's end beyond a steady step (the completion checkpoint,
    full). ``whole``: per step over the whole run, both full checkpoints included.
    """

    def __init__(self, marks: list[tuple[float, float]], end: tuple[float, float], start: tuple[float, float],
                 steps: int) -> None:
        (c1, w1), (cl, wl) = marks[1], marks[-1]
        n = len(marks) - 2
        self.steady = ((wl - w1) / n, (cl - c1) / n)
        self.first = (marks[1][1] - marks[0][1] - self.steady[0], marks[1][0] - marks[0][0] - self.steady[1])
        self.final = (end[1] - wl - self.steady[0], end[0] - cl - self.steady[1])
        self.whole = ((end[1] - start[1]) / steps, (end[0] - start[0]) / steps)


async def timed_engine(n: int, steps: int, db: Path | None, sync: str = "NORMAL") -> Timing:
    store = None if db is None else SQLiteStore(db, write_behind=False, synchronous=sync)
    marks: list[tuple[float, float]] = []
    agent = chain_agent(n, marks, store=store, durable=store is not None)
    first = n - steps
    if first:
        agent.restore(done_before(n, first))
    gc.collect()
    start = (time.process_time(), time.perf_counter())
    result = await agent.run(start=None if first else "s0")
    end = (time.process_time(), time.perf_counter())
    assert result[f"k{n - 1}"] == n - 1
    assert len(result.shared_state) == n
    assert len(marks) == steps
    if store is not None:
        # one checkpoint per timed state, plus the completion checkpoint
        assert len(store.list("bench_durable")) == steps + 1
        store.close()
    return Timing(marks, end, start, steps)


def timed_raw(steps: int, db: Path, sync: str = "NORMAL") -> tuple[float, float]:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={sync}")
    con.execute("CREATE TABLE t (id TEXT PRIMARY KEY, seq INTEGER, data TEXT)")
    payload = '{"state":"s1","status":"completed"}' * 4
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        con.execute("BEGIN")
        con.execute("INSERT INTO t VALUES (?, ?, ?)", (uuid.uuid4().hex, i, payload))
        con.execute("COMMIT")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    con.close()
    return wall / steps, cpu / steps


def timed_table(steps: int, db: Path, sync: str = "NORMAL") -> tuple[float, float]:
    """One delta-sized row per step into the store's own table, committed (autocommit, as the store does)."""
    SQLiteStore(db, write_behind=False, synchronous=sync).close()  # the store's schema
    con = sqlite3.connect(db, isolation_level=None)
    con.execute(f"PRAGMA synchronous={sync}")
    data = '{"state":"s1","status":"completed"}' * 18  # about a durable step's delta (~650 bytes)
    run_id = uuid.uuid4().hex
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        con.execute("INSERT INTO checkpoints VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (os.urandom(16).hex(), None, "bench_durable", run_id, i, time.time(), "state", "running", i,
                     '["s1"]', len(data), None, 2, data))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    con.close()
    return wall / steps, cpu / steps


async def main(sizes: list[int], steps: int, repeat: int, sync: str) -> None:
    med = statistics.median
    with tempfile.TemporaryDirectory() as d:
        await timed_engine(10, 10, Path(d) / "warm.db")  # imports and caches
        rows = []
        for n in sizes:
            k = min(n, steps)
            dur: list[Timing] = []
            eng: list[Timing] = []
            raw, tab = [], []
            for r in range(repeat * max(1, steps // k)):  # short chains: more runs, about as many steps timed
                dur.append(await timed_engine(n, k, Path(d) / f"d{n}_{r}.db", sync))
                eng.append(await timed_engine(n, k, None))
                raw.append(timed_raw(k, Path(d) / f"r{n}_{r}.db", sync))
                tab.append(timed_table(k, Path(d) / f"t{n}_{r}.db", sync))
            rows.append((n, k, med(t.steady[0] for t in dur), med(t.steady[1] for t in dur),
                         med(t.steady[1] for t in eng), med(w for w, _ in raw), med(c for _, c in raw),
                         med(c for _, c in tab), med(t.first[1] for t in dur), med(t.final[1] for t in dur),
                         med(t.whole[1] for t in dur), med(t.whole[1] for t in eng)))
    print(f"durable step: SQLiteStore(write_behind=False, synchronous={sync!r}), commit per state; "
          f"medians of {repeat} runs ({repeat} x {steps} // timed states for shorter chains)\n")
    print(f"{'states':>7} {'timed':>6} {'wall ms':>8} {'cpu ms':>7} {'engine cpu':>11} {'ckpt cpu':>9} "
          f"{'raw wall':>9} {'raw cpu':>8} {'table cpu':>10} {'x raw wall':>11} {'1st full':>9} {'final':>7} "
          f"{'whole cpu':>10} {'engine whole':>13}")
    for n, k, w, c, ec, rw, rc, tc, f1, fz, wc, ewc in rows:
        print(f"{n:>7,} {k:>6} {w * 1e3:8.3f} {c * 1e3:7.3f} {ec * 1e3:11.3f} {(c - ec) * 1e3:9.3f} "
              f"{rw * 1e3:9.3f} {rc * 1e3:8.3f} {tc * 1e3:10.3f} {w / rw:10.1f}x {f1 * 1e3:9.3f} {fz * 1e3:7.3f} "
              f"{wc * 1e3:10.3f} {ewc * 1e3:13.3f}")
    last, first = rows[-1], rows[0]
    print(f"\nsteady step at {last[0]:,} states / at {first[0]:,}: wall {last[2] / first[2]:.2f}x, cpu "
          f"{last[3] / first[3]:.2f}x, ckpt cpu {(last[3] - last[4]) / (first[3] - first[4]):.2f}x")
    print("wall/cpu ms: per steady durable step (state + checkpoint + commit), from the 2nd timed state to the")
    print("last; engine cpu: the same steps, no store; ckpt cpu: the difference; raw: one small row inserted")
    print("and committed per step, same pragmas; table cpu: a delta-sized row committed per step into the")
    print("store's own table and indexes; 1st full / final: CPU ms beyond a steady step of the first timed")
    print("step (the full checkpoint a restored run starts with) and of the last (with the completion")
    print("checkpoint, full); whole cpu: per step over the whole timed run, both included (engine: no store).")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL"],
                        help="the store's and the raw baseline's PRAGMA synchronous (FULL: fsync per commit)")
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.steps, args.repeat, args.synchronous))
