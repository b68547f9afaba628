"""A durable parent -> child -> grandchild workflow for the SIGKILL test (run as a script).

Usage: python _subflow_crash_worker.py DB LOG (fresh|resume)

``plan`` -> ``research`` (child: ``fetch`` -> ``deep`` (grandchild: ``g1`` -> ``g2``) -> ``write``)
-> ``report``. Every state appends its name to LOG (O_APPEND + fsync) and prints ``ran NAME``.
In ``fresh`` mode ``g2`` then waits forever, so the test kills the process inside the grandchild.
At the end the worker prints ``result {json}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from fluffy_nb.engine import Agent
from fluffy_nb.store import SQLiteStore


def build(db: str, log_path: str, fresh: bool) -> tuple[Agent, SQLiteStore]:
    def step(name: str, nxt: str | None, key: str) -> Any:
        async def body(ctx: Any) -> str | None:
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{name}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            sys.stdout.write(f"ran {name}\n")
            sys.stdout.flush()
            if fresh and name == "g2":
                await asyncio.Event().wait()  # killed here
            ctx.set_state(key, [*ctx.get_state(key, []), name])
            return nxt

        return body

    grandchild = Agent("deep_agent")
    grandchild.add_state("g1", step("g1", "g2", "trail"))
    grandchild.add_state("g2", step("g2", None, "trail"))
    child = Agent("research_agent")
    child.add_state("fetch", step("fetch", "deep", "trail"))
    child.add_state("deep", grandchild, inputs=["trail"], outputs=["trail"], next="write")
    child.add_state("write", step("write", None, "trail"))
    store = SQLiteStore(db, write_behind=False)
    parent = Agent("crash_team", store=store, durable=True)
    parent.add_state("plan", step("plan", "research", "trail"))
    parent.add_state("research", child, inputs=["trail"], outputs=["trail"], next="report")
    parent.add_state("report", step("report", None, "trail"))
    return parent, store


async def main() -> None:
    db, log_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    agent, store = build(db, log_path, mode == "fresh")
    result = await (agent.resume_latest() if mode == "resume" else agent.run())
    store.close()
    sys.stdout.write("result " + json.dumps({"status": result.status.value, "trail": result.get_state("trail")})
                     + "\n")


if __name__ == "__main__":
    asyncio.run(main())
