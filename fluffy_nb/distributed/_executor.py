"""``DaskExecutor``: run chosen state bodies on a Dask cluster; the engine stays the orchestrator.

One attempt of a state = one Dask task with a unique key (``pure=False``, ``retries=0``).
The body gets a snapshot of the context and returns its writes and result; the executor
applies the writes to the live context, releases the future (so a lost worker can never
recompute a finished state) and hands the result to the engine, which routes, retries,
times out, checkpoints and publishes events exactly as for a local state.

Semantics the engine keeps:

* Retries. Dask is told not to retry (``retries=0``; ``allowed-failures`` 0 on clusters
  this module starts, and on others when the scheduler lets us set it). A worker that dies
  mid-state surfaces as :class:`WorkerLostError` in the orchestrator, and the state's
  ``RetryPolicy`` decides whether it runs again.
* Timeouts and cancellation cancel the Dask future. A Python body that is already running
  on a worker cannot be interrupted: it runs to its end and its result is dropped.
* The shared context stays authoritative in the orchestrator. Writes of concurrent remote
  states are applied in the order the states finish (last writer wins per key).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

import cloudpickle
from distributed import Client, LocalCluster

try:
    from distributed.client import FutureCancelledError
except ImportError:  # distributed < 2024.7 raised asyncio.CancelledError for cancelled futures
    class FutureCancelledError(Exception):  # type: ignore[no-redef]
        """Placeholder: never raised by older distributed versions."""
from distributed.scheduler import KilledWorker

from ..engine import _hooks
from ..engine._errors import ConfigurationError, FluffyError
from ..engine._resources import ResourceType
from ._coordination import ClusterSemaphore
from ._pickling import dumps_body, dumps_snapshot
from ._remote import IgnoreSigint, run_async_body, run_sync_body
from ._resources import DEFAULT_RESOURCE_NAMES, dask_resources, requested

log = logging.getLogger("fluffy_nb.distributed")


class WorkerLostError(FluffyError, ConnectionError):
    """The Dask worker running a state died (killed, out of memory, crashed) mid-state.

    Retried by a ``RetryPolicy`` like any exception (``retry_on=(WorkerLostError,)`` retries
    only this). Dask itself never re-runs the attempt.
    """

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


@dataclass(frozen=True)
class DaskExecutorStatistics:
    """Counts since the executor was made; ``in_flight`` are attempts on the cluster now."""

    submitted: int
    completed: int
    failed: int
    cancelled: int
    workers_lost: int
    in_flight: int
    n_workers: int


def _remote_wrappers() -> tuple[Any, ...]:
    """Context managers to enter around a body on the worker (``_hooks.remote_context``: tracing)."""
    if not _hooks.remote_context:
        return ()
    wrappers = []
    for capture in _hooks.remote_context:
        try:
            wrapper = capture()
        except Exception:
            log.exception("fluffy_nb: remote context hook %r failed", capture)
            continue
        if wrapper is not None:
            wrappers.append(wrapper)
    return tuple(wrappers)


def _start_local_cluster(n_workers: int, threads_per_worker: int, resources: dict[str, float] | None,
                         kwargs: dict[str, Any]) -> LocalCluster:
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=kwargs.pop("processes", True),
            host="127.0.0.1",
            dashboard_address=kwargs.pop("dashboard_address", "127.0.0.1:0"),
            resources=resources,
            **kwargs,
        )


def _no_silent_reruns() -> Any:
    """A function for ``run_on_scheduler`` that makes a worker loss fail the task at once.

    Nested, so cloudpickle sends it by value: the scheduler needs no fluffy_nb installed.
    """

    def no_silent_reruns(dask_scheduler: Any = None) -> int:
        old = dask_scheduler.allowed_failures
        dask_scheduler.allowed_failures = 0
        return int(old)

    return no_silent_reruns


class DaskExecutor:
    """Run state bodies on a Dask cluster through an asynchronous ``distributed.Client``.

    Args:
        client: A connected ``Client(..., asynchronous=True)`` (``await Client(addr, asynchronous=True)``).
        name: What ``executor="<name>"`` / ``@state(executor="<name>")`` refers to.
        resource_names: ``ResourceType -> Dask resource name`` overrides
            (default: CPU, GPU, MEMORY_MB, IO, NETWORK).
        no_silent_reruns: Set the scheduler's ``allowed-failures`` to 0 so Dask never re-runs
            an attempt whose worker died (the engine's RetryPolicy decides instead). This is a
            scheduler-wide setting: on a cluster shared with other Dask work, decide together.
        ignore_sigint: Make the workers ignore SIGINT. Needed when the workers are child
            processes of the notebook kernel (the Stop button signals the whole process group,
            dask/distributed#1925); :meth:`local` turns it on. Leave it off for workers started
            in a terminal, or Ctrl-C would no longer stop them.

    A remote state's ``ResourceRequirements`` are the cluster's: they are not admitted
    against the agent's local ``ResourcePool``.

    Example:
        >>> executor = await DaskExecutor.local(n_workers=2)  # doctest: +SKIP
        >>> agent = Agent("fanout", executor=executor)  # doctest: +SKIP
        >>> agent.add_state("chunk", crunch, remote=True)  # or @state(executor="dask")  # doctest: +SKIP
        >>> await agent.run()  # doctest: +SKIP
        >>> await executor.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        client: Client,
        *,
        name: str = "dask",
        resource_names: dict[ResourceType, str] | None = None,
        no_silent_reruns: bool = True,
        ignore_sigint: bool = False,
    ) -> None:
        if not isinstance(client, Client):
            raise ConfigurationError(f"DaskExecutor({client!r}): pass a distributed.Client")
        if not client.asynchronous:
            raise ConfigurationError(
                "DaskExecutor(client): the client must be asynchronous; connect it with "
                "`client = await Client(address, asynchronous=True)`, or use "
                "`await DaskExecutor.from_address(address)` / `await DaskExecutor.local()`"
            )
        self.client = client
        self.name = name
        self.resource_names = {**DEFAULT_RESOURCE_NAMES, **(resource_names or {})}
        self._no_silent_reruns = no_silent_reruns
        self._ignore_sigint = ignore_sigint
        self._ready_done = False
        self._workers: dict[str, dict[str, float]] | None = None
        self._owns_client = False
        self._cluster: LocalCluster | None = None
        self._in_flight: dict[str, str] = {}
        self._counts = dict.fromkeys(("submitted", "completed", "failed", "cancelled", "workers_lost"), 0)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    async def from_address(cls, address: str, **kwargs: Any) -> DaskExecutor:
        """Connect to a running scheduler (``"tcp://host:8786"``); ``close()`` disconnects."""
        client = await Client(address, asynchronous=True)
        executor = cls(client, **kwargs)
        executor._owns_client = True
        return executor

    @classmethod
    async def local(
        cls,
        n_workers: int = 2,
        *,
        threads_per_worker: int = 1,
        resources: dict[str, float] | None = None,
        name: str = "dask",
        **cluster_kwargs: Any,
    ) -> DaskExecutor:
        """Start a ``LocalCluster`` of worker processes on 127.0.0.1 and connect to it.

        The cluster is a synchronous ``LocalCluster`` running its own event loop in its own
        thread (one started on a notebook kernel's loop deadlocks later sync clients); the
        kernel connects with an asynchronous client. Workers ignore SIGINT, so the notebook's
        Stop button does not kill them. ``close()`` stops everything.

        Args:
            n_workers: Worker processes.
            threads_per_worker: Threads per worker (1 suits CPU-bound Python bodies).
            resources: Resources every worker declares, e.g. ``{"GPU": 1, "CPU": 2}``.
            name: The executor's name.
            **cluster_kwargs: Passed to ``LocalCluster`` (e.g. ``memory_limit``).
        """
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise ConfigurationError(f"DaskExecutor.local(n_workers={n_workers!r}): must be a whole number >= 1")
        cluster = await asyncio.to_thread(_start_local_cluster, n_workers, threads_per_worker, resources,
                                          dict(cluster_kwargs))
        try:
            client = await Client(cluster.scheduler_address, asynchronous=True)
        except BaseException:
            await asyncio.to_thread(cluster.close)
            raise
        executor = cls(client, name=name, ignore_sigint=True)
        executor._owns_client = True
        executor._cluster = cluster
        try:
            await client.wait_for_workers(n_workers)
            await executor._ready()
        except BaseException:
            await executor.close()
            raise
        return executor

    @property
    def cluster(self) -> LocalCluster | None:
        """The ``LocalCluster`` started by :meth:`local` (None otherwise)."""
        return self._cluster

    async def close(self) -> None:
        """Disconnect (and stop the cluster :meth:`local` started). Idempotent."""
        if self._owns_client:
            await self.client.close()
        if self._cluster is not None:
            cluster, self._cluster = self._cluster, None
            await asyncio.to_thread(cluster.close)

    async def __aenter__(self) -> DaskExecutor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- engine interface ---------------------------------------------------------------------
    async def check_state(self, spec: Any) -> None:
        """Before a run: fail at once if the body cannot be sent or no worker fits its resources."""
        await self._ready()
        dumps_body(spec.name, spec.func)
        await self._submit_resources(spec)

    async def run_state(self, spec: Any, ctx: Any) -> Any:
        """Run one attempt of ``spec`` on the cluster, apply its writes to ``ctx``, return its result.

        Raises:
            UnpicklableStateError: the body or a context value cannot be sent.
            ResourceError: no worker could ever satisfy the state's resources.
            WorkerLostError: the worker died mid-state (the engine may retry).
        """
        name = spec.name
        await self._ready()
        resources = await self._submit_resources(spec)
        func_blob = dumps_body(name, spec.func)
        data_blob = dumps_snapshot(name, dict(ctx.shared_state), dict(ctx.typed_data))
        runner = run_async_body if spec.options.get("is_async") else run_sync_body
        key = f"fluffy-{name}-{uuid.uuid4().hex[:16]}"
        wrappers = _remote_wrappers()
        future = self.client.submit(
            runner, func_blob, data_blob, name, ctx.attempt, ctx.run_id, wrappers,
            key=key, pure=False, retries=0, resources=resources or None, priority=int(spec.priority),
        )
        self._counts["submitted"] += 1
        self._in_flight[key] = name
        try:
            blob = await future
        except asyncio.CancelledError:
            self._counts["cancelled"] += 1
            await self._cancel(future)
            raise
        except KilledWorker as exc:
            self._counts["workers_lost"] += 1
            raise WorkerLostError(
                f"state {name!r} (attempt {ctx.attempt}) was lost: its Dask worker died mid-state "
                f"({exc}). Dask does not re-run it; give the state a RetryPolicy to run it again", name
            ) from exc
        except FutureCancelledError as exc:
            self._counts["cancelled"] += 1
            raise WorkerLostError(f"state {name!r}: its Dask task was cancelled on the cluster ({exc})",
                                  name) from exc
        except Exception:
            self._counts["failed"] += 1
            raise
        finally:
            self._in_flight.pop(key, None)
            future.release()
        result, writes, deletes, typed_writes, typed_deletes, info = cloudpickle.loads(blob)
        for wrapper in wrappers:
            finished = getattr(wrapper, "finished", None)
            if finished is not None:
                try:
                    finished(info)
                except Exception:  # tracing must never fail a state
                    log.exception("fluffy_nb: remote context %r failed after state %r", wrapper, name)
        for key_ in deletes:
            ctx.remove_state(key_)
        for key_, value in writes.items():
            ctx.set_state(key_, value)
        for key_ in typed_deletes:
            ctx.typed_data.pop(key_, None)
        for key_, value in typed_writes.items():
            ctx.set_typed(key_, value)
        self._counts["completed"] += 1
        return result

    # -- helpers ------------------------------------------------------------------------------------
    async def _ready(self) -> None:
        if self._ready_done:
            return
        self._ready_done = True
        if self._ignore_sigint:
            await self.client.register_plugin(IgnoreSigint(os.getpid()))
        if self._no_silent_reruns:
            try:
                await self.client.run_on_scheduler(_no_silent_reruns())
            except Exception as exc:  # a scheduler without fluffy_nb installed, or locked down
                log.warning("fluffy_nb: could not set the scheduler's allowed-failures to 0 (%s); Dask may "
                            "re-run a state whose worker died before the engine sees the loss", exc)

    async def refresh_workers(self) -> dict[str, dict[str, float]]:
        """Ask the scheduler which workers exist and what resources each declares."""
        try:
            info = await self.client.scheduler.identity(n_workers=-1)
        except TypeError:  # older schedulers always send every worker
            info = await self.client.scheduler.identity()
        self._workers = {addr: dict(w.get("resources") or {}) for addr, w in info.get("workers", {}).items()}
        return self._workers

    async def _submit_resources(self, spec: Any) -> dict[str, float]:
        if not requested(spec.resources, self.resource_names):
            return {}
        workers = self._workers if self._workers is not None else await self.refresh_workers()
        try:
            return dask_resources(spec.name, spec.resources, workers, self.resource_names)
        except FluffyError:
            # workers may have joined since we last looked: look again before failing
            return dask_resources(spec.name, spec.resources, await self.refresh_workers(), self.resource_names)

    async def _cancel(self, future: Any) -> None:
        try:
            await asyncio.wait_for(self.client.cancel([future], force=True), timeout=5)
        except Exception as exc:  # the cluster may be gone; nothing else to release
            log.debug("fluffy_nb: cancelling %s failed: %s", future.key, exc)

    def semaphore(self, name: str, max_leases: int = 1, *, wait_timeout: float | None = None) -> ClusterSemaphore:
        """A cluster-wide semaphore gate: ``agent.add_gate(state, executor.semaphore("db", 2))``.

        Shared by every client of this cluster that uses the same ``name`` (several notebooks
        writing to one database). ``max_leases=1`` makes it a cluster-wide lock.
        """
        return ClusterSemaphore(self.client, name, max_leases, wait_timeout)

    def statistics(self) -> DaskExecutorStatistics:
        """A snapshot of what this executor has done."""
        return DaskExecutorStatistics(in_flight=len(self._in_flight), n_workers=len(self._workers or {}),
                                      **self._counts)

    def __repr__(self) -> str:
        c = self._counts
        scheduler = getattr(self.client, "scheduler", None)
        address = getattr(scheduler, "address", None)
        return (
            f"<DaskExecutor {self.name!r} scheduler={address!r} "
            f"in_flight={len(self._in_flight)} completed={c['completed']} failed={c['failed']} "
            f"lost={c['workers_lost']}>"
        )
