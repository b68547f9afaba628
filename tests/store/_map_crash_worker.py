"""A durable payload fan-out for the map crash test (run as a script, never imported by pytest).

Usage: python _map_crash_worker.py DB LOG (fresh|resume)

``split`` maps ITEMS payloads to ``score`` (at most 4 at once); each branch appends its payload
to LOG (O_APPEND + fsync), prints ``ran N`` and records ``N * N``; ``merge`` joins them. The
store is SQLite with synchronous commits, so a branch's side effect and its checkpoint happen
in one step. At the end the worker prints ``result {json}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from fluffy_nb.engine import Agent
from fluffy_nb.store import SQLiteStore

ITEMS = 80


def build(db: str, log_path: str) -> tuple[Agent, SQLiteStore]:
    store = SQLiteStore(db, write_behind=False)
    agent = Agent("crashy_map", store=store, durable=True, max_concurrent=4)

    async def split(ctx: Any) -> Any:
        return ctx.map("score", range(ITEMS))

    async def score(ctx: Any) -> str:
        await asyncio.sleep(0)  # branches interleave, as real work would
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{ctx.payload}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        ctx.set_result(ctx.payload * ctx.payload)
        sys.stdout.write(f"ran {ctx.payload}\n")
        sys.stdout.flush()
        return "merge"

    async def merge(ctx: Any) -> None:
        ctx.set_state("squares", ctx.results("score"))

    agent.add_state("split", split)
    agent.add_state("score", score)
    agent.add_state("merge", merge)
    return agent, store


async def main() -> None:
    db, log_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    agent, store = build(db, log_path)
    if mode == "resume" and store.latest("crashy_map") is not None:
        result = await agent.resume_latest()
    else:
        result = await agent.run()
    store.close()
    print("result " + json.dumps({"status": result.status.value, "squares": result["squares"]}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
