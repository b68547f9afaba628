"""A Dask cluster started the way users start one: ``dask scheduler`` and ``dask worker``
processes (``python -m distributed.cli...``), on 127.0.0.1 only, killed for real in tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


async def bounded(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    """Wait for a condition the cluster reaches on its own schedule; fail (never hang) after ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - processes and files have no event to await
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"never happened within {timeout}s: {what}") from None


class CliCluster:
    """Scheduler and worker subprocesses; :meth:`close` kills whatever is left."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.address = ""

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")
        env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        proc = subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT,
                                cwd=self.workdir, env=env, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    async def start_scheduler(self) -> str:
        """Start ``dask scheduler`` on a free port; its address."""
        path = self.workdir / "scheduler.json"
        self._spawn("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(path)])
        await bounded(path.exists, "the scheduler wrote its address")
        await bounded(lambda: path.stat().st_size > 0 and "address" in path.read_text(), "a complete file")
        self.address = json.loads(path.read_text())["address"]
        return self.address

    def start_worker(self, name: str, *, resources: str | None = None, nthreads: int = 1) -> None:
        """Start ``dask worker`` (no nanny: a killed worker stays dead) named ``name``."""
        args = ["distributed.cli.dask_worker", self.address, "--name", name, "--nthreads", str(nthreads),
                "--no-nanny", "--no-dashboard", "--host", "127.0.0.1", "--memory-limit", "0"]
        if resources:
            args += ["--resources", resources]
        self._spawn(name, args)

    def kill(self, name: str) -> None:
        """SIGKILL one process (a crash: no goodbye to the scheduler)."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(10)

    def close(self) -> None:
        """Kill every process still running."""
        for name in list(self.procs):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
