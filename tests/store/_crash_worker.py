"""A 200-state durable workflow for the crash test (run as a script, never imported by pytest).

Usage: python _crash_worker.py DB LOG (fresh|resume) WRITE_BEHIND(0|1)

Shape: a chain of 184 states ``s000 -> s001 -> ...``; eight chain states fan out to two
branches (``bNNNa``, ``bNNNb``) that join at the next chain state: 200 states in all. Every
state appends its name to LOG (O_APPEND + fsync) when it runs, prints ``ran NAME`` (the
test's readiness line to pick a kill point), and adds its weight to the shared ``total``.
At the end the worker prints ``result {json}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from fluffy_nb.engine import Agent
from fluffy_nb.store import SQLiteStore

CHAIN = 184
FANS = {10 + 22 * k for k in range(8)}  # 10, 32, ..., 164


def names() -> dict[str, list[str] | None]:
    """state -> what it returns."""
    out: dict[str, list[str] | None] = {}
    for i in range(CHAIN):
        nxt = f"s{i + 1:03d}" if i + 1 < CHAIN else None
        if i in FANS:
            out[f"s{i:03d}"] = [f"b{i:03d}a", f"b{i:03d}b"]
            out[f"b{i:03d}a"] = [nxt] if nxt else None
            out[f"b{i:03d}b"] = [nxt] if nxt else None
        else:
            out[f"s{i:03d}"] = [nxt] if nxt else None
    return out


def weight(name: str) -> int:
    return sum(ord(c) for c in name)


def build(db: str, log_path: str, write_behind: bool) -> tuple[Agent, SQLiteStore]:
    store = SQLiteStore(db, write_behind=write_behind)
    agent = Agent("crashy", store=store, durable=True)

    def make(name: str, nxt: list[str] | None) -> object:
        async def body(ctx: object) -> object:
            await asyncio.sleep(0)  # let fan-out branches interleave, as real states would
            # from here to the return nothing awaits: the side effect, the shared write and the
            # completion (and, with write_behind=False, its commit) happen as one step
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{name}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            ctx.set_state("total", ctx.get_state("total", 0) + weight(name))  # type: ignore[attr-defined]
            sys.stdout.write(f"ran {name}\n")
            sys.stdout.flush()
            if nxt is None:
                return None
            return nxt[0] if len(nxt) == 1 else nxt

        return body

    for name, nxt in names().items():
        agent.add_state(name, make(name, nxt), next=nxt or None)
    return agent, store


async def main() -> None:
    db, log_path, mode, wb = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    agent, store = build(db, log_path, wb)
    if mode == "resume" and store.latest("crashy") is not None:
        result = await agent.resume_latest()
    else:
        result = await agent.run()
    store.close()
    print("result " + json.dumps({"status": result.status.value, "total": result["total"],
                                  "completed": len(result.completed_states)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
