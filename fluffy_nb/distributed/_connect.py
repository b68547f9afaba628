"""Getting a client and a cluster, and the scheduler settings the executor changes (and restores).

* :func:`connect` opens an asynchronous ``Client`` and closes it again if connecting fails,
  so a failed ``from_address`` leaks nothing.
* :func:`start_cluster` starts a cluster class (``LocalCluster`` by default) in a thread,
  optionally adaptive, never on the caller's event loop (one started on a notebook kernel's
  loop deadlocks later synchronous clients).
* :func:`set_allowed_failures` is sent to the scheduler with ``run_on_scheduler``; the
  executor sets ``allowed-failures`` to 0 (Dask never silently re-runs a lost attempt) and
  ``close()`` puts the old value back.
* :class:`IgnoreSigint` keeps a notebook's Stop button from killing its child workers.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from distributed import Client
from distributed.diagnostics.plugin import WorkerPlugin


async def connect(address: str, **client_kwargs: Any) -> Client:
    """An asynchronous client connected to ``address``; nothing is left open when it fails."""
    client = Client(address, asynchronous=True, **client_kwargs)
    try:
        await client
    except BaseException:
        await asyncio.shield(client.close())
        raise
    return client


def start_cluster(cluster_class: Any, n_workers: int, threads_per_worker: int, resources: dict[str, float] | None,
                  adapt: dict[str, Any] | None, kwargs: dict[str, Any]) -> Any:
    """Start ``cluster_class`` (synchronous, its own loop thread) on 127.0.0.1; adapt it if asked."""
    import dask

    kwargs = dict(kwargs)
    kwargs.setdefault("processes", True)
    if not kwargs["processes"]:
        kwargs.setdefault("protocol", "tcp://")  # in-process workers, but a client on another loop connects
    kwargs.setdefault("host", "127.0.0.1")
    kwargs.setdefault("dashboard_address", "127.0.0.1:0")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = cluster_class(n_workers=0 if adapt is not None else n_workers,
                                threads_per_worker=threads_per_worker, resources=resources, **kwargs)
    if adapt is not None:
        try:
            cluster.adapt(**adapt)
        except BaseException:
            cluster.close()
            raise
    return cluster


def set_allowed_failures(value: int) -> Any:
    """A function for ``run_on_scheduler`` that sets ``allowed_failures`` and returns the old value.

    Nested, so cloudpickle sends it by value: the scheduler needs no fluffy_nb installed.
    """

    def allowed_failures(dask_scheduler: Any = None) -> int:
        old = dask_scheduler.allowed_failures
        dask_scheduler.allowed_failures = value
        return int(old)

    return allowed_failures


class IgnoreSigint(WorkerPlugin):
    """Worker plugin: ignore SIGINT, so the notebook's Stop button (which signals the whole
    process group, dask/distributed#1925) interrupts the cell but leaves local workers alive.

    Args:
        client_pid: The orchestrator's process id; a worker living in that same process
            (an in-process cluster) is left alone, or the kernel itself would ignore Stop.
    """

    name = "fluffy-ignore-sigint"
    idempotent = True

    def __init__(self, client_pid: int) -> None:
        self.client_pid = client_pid

    def setup(self, worker: Any) -> None:
        """Install the SIG_IGN handler (workers run their loop in the main thread)."""
        if os.getpid() == self.client_pid:
            return
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread (in-process workers): nothing to protect
            pass

    def teardown(self, worker: Any) -> None:
        """Nothing to undo: the process ends with the worker."""
