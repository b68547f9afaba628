"""A durable step (SQLite, commit per state) as the workflow grows, beside raw SQLite commits.

Workload: an agent of N states (10, 100, 1,000, 10,000) in a chain; each state stores its own
context key (so the context grows with the run, as real runs' do) and names the next. The
agent has ``durable=True`` and ``SQLiteStore(write_behind=False)``: every finished state makes
a checkpoint and commits it inside the state's completion.

What is timed is the last ``--steps`` states of the chain (default 200, all of them for N=10
and 100): the run is restored from a checkpoint that says the states before them completed
(their keys in the context, their statuses recorded), so each timed step checkpoints a run of
N states without running the whole chain first. Per step: wall time and this process's CPU
time (all threads), medians over ``--repeat`` runs.

Baseline, in the same process: ``raw`` inserts one small row and commits, per step, into a
SQLite file opened with the store's pragmas (WAL, ``synchronous=NORMAL`` as the store's default,
or ``--synchronous FULL`` for both: an fsync per commit): the floor a durable step cannot go
under. ``table`` inserts and commits, per step, one row of a delta checkpoint's size into the
store's own table (made by ``SQLiteStore``: its two listing indexes are two more b-trees per
commit than ``raw``'s table and key) and a larger row: what the store's SQL costs, before any
checkpoint is built. ``engine`` is the same restored chain with no store (no checkpoints).

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


def chain_agent(n: int, **kw: Any) -> Agent:
    agent = Agent("bench_durable", max_steps=n + 10, **kw)
    for i in range(n):
        nxt = f"s{i + 1}" if i + 1 < n else None

        async def step(ctx: Any, nxt: str | None = nxt, i: int = i) -> str | None:
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


async def timed_engine(n: int, steps: int, db: Path | None, sync: str = "NORMAL") -> tuple[float, float]:
    store = None if db is None else SQLiteStore(db, write_behind=False, synchronous=sync)
    agent = chain_agent(n, store=store, durable=store is not None)
    first = n - steps
    if first:
        agent.restore(done_before(n, first))
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    result = await agent.run(start=None if first else "s0")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert result[f"k{n - 1}"] == n - 1
    assert len(result.shared_state) == n
    if store is not None:
        # one checkpoint per timed state, plus the completion checkpoint
        assert len(store.list("bench_durable")) == steps + 1
        store.close()
    return wall / steps, cpu / steps


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
    with tempfile.TemporaryDirectory() as d:
        await timed_engine(10, 10, Path(d) / "warm.db")  # imports and caches
        rows = []
        for n in sizes:
            k = min(n, steps)
            dur, eng, raw, tab = [], [], [], []
            for r in range(repeat):
                dur.append(await timed_engine(n, k, Path(d) / f"d{n}_{r}.db", sync))
                eng.append(await timed_engine(n, k, None))
                raw.append(timed_raw(k, Path(d) / f"r{n}_{r}.db", sync))
                tab.append(timed_table(k, Path(d) / f"t{n}_{r}.db", sync))
            med = statistics.median
            rows.append((n, k, med(w for w, _ in dur), med(c for _, c in dur), med(w for w, _ in eng),
                         med(c for _, c in eng), med(w for w, _ in raw), med(c for _, c in raw),
                         med(c for _, c in tab)))
    print(f"durable step: SQLiteStore(write_behind=False, synchronous={sync!r}), commit per state; "
          f"medians of {repeat} runs\n")
    print(f"{'states':>7} {'timed':>6} {'wall ms':>8} {'cpu ms':>7} {'engine cpu':>11} {'ckpt cpu':>9} "
          f"{'raw wall':>9} {'raw cpu':>8} {'table cpu':>10} {'x raw wall':>11}")
    base = rows[0][2]
    for n, k, w, c, _ew, ec, rw, rc, tc in rows:
        print(f"{n:>7,} {k:>6} {w * 1e3:8.3f} {c * 1e3:7.3f} {ec * 1e3:11.3f} {(c - ec) * 1e3:9.3f} "
              f"{rw * 1e3:9.3f} {rc * 1e3:8.3f} {tc * 1e3:10.3f} {w / rw:10.1f}x")
    last, first = rows[-1], rows[0]
    print(f"\nper step at {last[0]:,} states / at {first[0]:,}: wall {last[2] / base:.2f}x, cpu "
          f"{last[3] / first[3]:.2f}x, ckpt cpu {(last[3] - last[5]) / (first[3] - first[5]):.2f}x")
    print("wall/cpu ms: per durable step (state + checkpoint + commit); engine cpu: the same steps, no store;")
    print("ckpt cpu: the difference; raw: one small row inserted and committed per step, same pragmas;")
    print("table cpu: a delta-sized row committed per step into the store's own table and indexes.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL"],
                        help="the store's and the raw baseline's PRAGMA synchronous (FULL: fsync per commit)")
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.steps, args.repeat, args.synchronous))
