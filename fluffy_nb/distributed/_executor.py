"""``DaskExecutor``: run chosen state bodies on a Dask cluster; the engine stays the orchestrator.

One attempt of a state = one Dask task with a unique key (``pure=False``, ``retries=0``); how
an attempt is submitted, watched and applied lives in ``_attempt``, what the executor knows of
the cluster in ``_watch``, how large context values stay on the cluster in ``_data``.

Semantics the engine keeps:

* Retries. Dask is told not to retry (``retries=0``; ``allowed-failures`` 0 while the executor
  is open, restored by ``close()``). A worker that dies mid-state surfaces as
  :class:`WorkerLostError` and the state's ``RetryPolicy`` decides; attempts only queued on
  that worker are sent elsewhere without using a retry. A lost scheduler is a
  :class:`SchedulerLostError`, within ``reconnect_timeout`` seconds.
* Timeouts count the body's run time on its worker, not time queued on the cluster; they
  cancel the Dask future. A Python body already running cannot be interrupted: it runs to its
  end and its result is dropped.
* The shared context stays authoritative in the orchestrator. Writes of concurrent remote
  states are applied in the order the states finish (last writer wins per key).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from distributed import Client, LocalCluster

from ..engine._errors import ConfigurationError
from ..engine._requirements import ResourceType
from ._attempt import apply_outcome, remote_wrappers, run_attempt
from ._connect import IgnoreSigint, connect, set_allowed_failures, start_cluster
from ._coordination import ClusterSemaphore
from ._data import DEFAULT_SCATTER_THRESHOLD, ScatterCache
from ._errors import SchedulerLostError, WorkerLostError
from ._options import STATE_OPTIONS, check_options
from ._pickling import dumps_body
from ._resources import DEFAULT_RESOURCE_NAMES, fits, metered, requested, unmet
from ._watch import ClusterWatch

__all__ = ["DaskExecutor", "DaskExecutorStatistics", "SchedulerLostError", "WorkerLostError"]  # re-exported

log = logging.getLogger("fluffy_nb.distributed")
_COUNTS = ("submitted", "completed", "failed", "cancelled", "workers_lost", "requeued", "scheduler_lost")


@dataclass(frozen=True)
class DaskExecutorStatistics:
    """Counts since the executor was made; ``in_flight`` are attempts on the cluster now.

    ``requeued``: attempts sent again because their worker died before the body started (no
    retry used). ``scattered``: large context values sent to the cluster (each once);
    ``held_mb``: what of them the cluster keeps now (released when the value dies).
    """

    submitted: int
    completed: int
    failed: int
    cancelled: int
    workers_lost: int
    requeued: int
    scheduler_lost: int
    in_flight: int
    n_workers: int
    scattered: int
    held_mb: float


class DaskExecutor:
    """Run state bodies on a Dask cluster.

    Args:
        client: A ``distributed.Client``, asynchronous or not (for a synchronous one the
            executor opens its own asynchronous client to the same scheduler). Or use
            :meth:`from_address` / :meth:`local`.
        name: What ``executor="<name>"`` / ``@state(executor="<name>")`` refers to.
        resource_names: ``ResourceType -> Dask resource name`` overrides
            (default: CPU, GPU, MEMORY_MB, IO, NETWORK).
        no_silent_reruns: Set the scheduler's ``allowed-failures`` to 0 while the executor is
            open so Dask never re-runs an attempt whose worker died (the engine decides).
            Scheduler-wide: on a cluster shared with other Dask work, decide together.
        ignore_sigint: Make the workers ignore SIGINT (for workers that are child processes
            of the notebook kernel; :meth:`local` turns it on).
        scatter_threshold: Context values of at least this many bytes are scattered once and
            passed by reference (None: always send values with each task).
        resource_timeout: Seconds a state may wait for a worker able to meet its resources to
            exist (default 5, or 60 on an adaptive cluster from :meth:`local`).
        reconnect_timeout: Seconds a lost scheduler connection may take to come back before
            states fail with :class:`SchedulerLostError`.

    Per state, ``add_state`` also takes ``workers=`` (addresses or names), ``allow_other_workers=``
    and ``annotations=`` (a dict for ``dask.annotate``). A remote state's resources are the
    cluster's: they are not admitted against the agent's local ``ResourcePool``.

    Example:
        >>> executor = await DaskExecutor.local(n_workers=2)  # doctest: +SKIP
        >>> agent = Agent("fanout", executor=executor)  # doctest: +SKIP
        >>> agent.add_state("chunk", crunch, remote=True)  # or @state(executor="dask")  # doctest: +SKIP
        >>> await agent.run()  # doctest: +SKIP
        >>> await executor.close()  # doctest: +SKIP
    """

    #: add_state options this executor reads from ``spec.options``
    state_options = STATE_OPTIONS
    #: the engine leaves the state's timeout to us: it counts run time on the worker only
    times_out_itself = True

    def __init__(
        self,
        client: Client | None = None,
        *,
        name: str = "dask",
        resource_names: dict[ResourceType, str] | None = None,
        no_silent_reruns: bool = True,
        ignore_sigint: bool = False,
        scatter_threshold: int | None = DEFAULT_SCATTER_THRESHOLD,
        resource_timeout: float | None = None,
        reconnect_timeout: float = 5.0,
    ) -> None:
        if client is not None and not isinstance(client, Client):
            raise ConfigurationError(f"DaskExecutor({client!r}): pass a distributed.Client, or use "
                                     "DaskExecutor.from_address(address) / DaskExecutor.local()")
        self.name = name
        self.resource_names = {**DEFAULT_RESOURCE_NAMES, **(resource_names or {})}
        self.data = ScatterCache(scatter_threshold)
        self.reconnect_timeout = float(reconnect_timeout)
        self._resource_timeout = resource_timeout
        self._no_silent_reruns = no_silent_reruns
        self._ignore_sigint = ignore_sigint
        self._given = client
        self._client: Client | None = client if client is not None and client.asynchronous else None
        self._owns_client = False
        self._address: str | None = None
        self._client_kwargs: dict[str, Any] = {}
        self._cluster: Any = None
        self._cluster_args: tuple[Any, ...] | None = None
        self._adaptive = False
        self._restore_failures: int | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._watch: ClusterWatch | None = None
        self._closed = False
        self.in_flight: dict[str, str] = {}
        self._counts = dict.fromkeys(_COUNTS, 0)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_address(cls, address: str, *, name: str = "dask", **client_kwargs: Any) -> DaskExecutor:
        """An executor for the scheduler at ``address``; ``client_kwargs`` go to ``Client``.

        Connects on first use, or ``await`` it to connect now. A failed connection leaves no
        client behind. ``close()`` disconnects.

        Example:
            >>> ex = await DaskExecutor.from_address("tcp://127.0.0.1:8786", timeout=10)  # doctest: +SKIP
        """
        executor = cls(name=name)
        executor._address = address
        executor._client_kwargs = dict(client_kwargs)
        return executor

    @classmethod
    def local(
        cls,
        n_workers: int = 2,
        *,
        threads_per_worker: int = 1,
        resources: dict[str, float] | None = None,
        adapt: dict[str, Any] | bool | None = None,
        cluster_class: Any = LocalCluster,
        name: str = "dask",
        resource_timeout: float | None = None,
        **cluster_kwargs: Any,
    ) -> DaskExecutor:
        """A cluster of worker processes on 127.0.0.1 (started on first use, or ``await`` it).

        Args:
            n_workers: Worker processes (with ``adapt``: the default maximum).
            threads_per_worker: Threads per worker (1 suits CPU-bound Python bodies).
            resources: Resources every worker declares, e.g. ``{"GPU": 1, "CPU": 2}``.
            adapt: Start with no workers and let Dask add and remove them with the load:
                ``True`` or ``cluster.adapt`` options such as ``{"minimum": 0, "maximum": 4}``.
            cluster_class: The cluster to start (``LocalCluster`` or a compatible class).
            name: The executor's name.
            resource_timeout: As in the constructor (default 60 s when adaptive).
            **cluster_kwargs: Passed to the cluster (e.g. ``memory_limit``).

        Workers ignore SIGINT, so the notebook's Stop button does not kill them. ``close()``
        stops everything.
        """
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise ConfigurationError(f"DaskExecutor.local(n_workers={n_workers!r}): must be a whole number >= 1")
        if adapt is True:
            adapt = {"minimum": 0, "maximum": n_workers}
        elif adapt is False:
            adapt = None
        executor = cls(name=name, ignore_sigint=True, resource_timeout=resource_timeout)
        executor._adaptive = adapt is not None
        executor._cluster_args = (cluster_class, n_workers, threads_per_worker, resources, adapt,
                                  dict(cluster_kwargs))
        return executor

    def __await__(self) -> Generator[Any, None, DaskExecutor]:
        return self._connected().__await__()

    async def _connected(self) -> DaskExecutor:
        await self._ready()
        return self

    async def _ready(self) -> None:
        if self._watch is not None:
            return
        if self._closed:
            raise ConfigurationError(f"DaskExecutor {self.name!r} is closed; make a new one")
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        await asyncio.shield(self._connecting)

    async def _connect(self) -> None:
        try:
            await self._open_client()
            client = self.client
            if self._ignore_sigint:
                await client.register_plugin(IgnoreSigint(os.getpid()))
            if self._no_silent_reruns:
                try:
                    self._restore_failures = await client.run_on_scheduler(set_allowed_failures(0))
                except Exception as exc:  # a scheduler that refuses run_on_scheduler
                    log.warning("fluffy_nb: could not set the scheduler's allowed-failures to 0 (%s); Dask may "
                                "re-run a state whose worker died before the engine sees the loss", exc)
            watch = ClusterWatch(client, self.data.forget_lost)
            await watch.start()
            self._watch = watch
        except BaseException:
            await self._release()  # leave nothing open; a later use tries again
            raise

    async def _open_client(self) -> None:
        if self._cluster_args is not None:
            cluster_class, n_workers, threads, resources, adapt, kwargs = self._cluster_args
            self._cluster = await asyncio.to_thread(start_cluster, cluster_class, n_workers, threads, resources,
                                                    adapt, kwargs)
            self._client = await connect(self._cluster.scheduler_address)
            self._owns_client = True
            if adapt is None:
                await self._client.wait_for_workers(n_workers, timeout=120)  # type: ignore[func-returns-value,misc]
        elif self._address is not None:
            self._client = await connect(self._address, **self._client_kwargs)
            self._owns_client = True
        elif self._given is not None and not self._given.asynchronous:  # a sync client: talk to its scheduler
            given = self._given
            self._client = await connect(given.scheduler.address, security=given.security)
            self._owns_client = True

    @property
    def client(self) -> Client:
        """The asynchronous client the executor submits with (after it connected)."""
        if self._client is None:
            raise ConfigurationError("DaskExecutor: not connected yet; `await executor` first (or run a state)")
        return self._client

    @property
    def watch(self) -> ClusterWatch:
        """What the executor knows about the cluster (after it connected)."""
        if self._watch is None:
            raise ConfigurationError("DaskExecutor: not connected yet; `await executor` first (or run a state)")
        return self._watch

    @property
    def cluster(self) -> Any:
        """The cluster :meth:`local` started (None otherwise)."""
        return self._cluster

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's address, when there is one."""
        try:
            source = self._cluster if self._cluster is not None else self._client
            return (str(source.dashboard_link) or None) if source is not None else None
        except Exception:  # no dashboard (bokeh missing, or turned off)
            return None

    @property
    def resource_timeout(self) -> float:
        """Seconds a state waits for a worker able to meet its resources to exist."""
        if self._resource_timeout is not None:
            return float(self._resource_timeout)
        return 60.0 if self._adaptive else 5.0

    async def close(self) -> None:
        """Release scattered data, restore the scheduler setting, disconnect; stop the cluster
        :meth:`local` started. Idempotent; a closed executor cannot be used again."""
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()
        self.data.clear()
        client = self._client
        restore, self._restore_failures = self._restore_failures, None
        if restore is not None and client is not None and client.status == "running":
            try:
                await asyncio.wait_for(client.run_on_scheduler(set_allowed_failures(restore)), timeout=5)
            except Exception as exc:  # the scheduler may be gone
                log.debug("fluffy_nb: restoring allowed-failures failed: %s", exc)
        if self._owns_client and client is not None:
            self._owns_client = False
            await client.close()
        if self._cluster is not None:
            cluster, self._cluster = self._cluster, None
            await asyncio.to_thread(cluster.close)
        self._connecting = None

    async def __aenter__(self) -> DaskExecutor:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- engine interface ---------------------------------------------------------------------
    async def check_state(self, spec: Any) -> None:
        """Before a run: fail at once on bad options, a body that cannot be sent, or resources no
        connected worker has (unless the cluster is adaptive or has no worker yet: then states wait)."""
        check_options(spec)
        await self._ready()
        dumps_body(spec.name, spec.func)
        request = self.request_of(spec)
        workers = self.watch.workers
        if request and workers and not self._adaptive and not fits(workers, request):
            workers = await self.watch.refresh()
            if not fits(workers, request):
                raise unmet(spec.name, request, workers)

    async def run_state(self, spec: Any, ctx: Any) -> Any:
        """Run one attempt of ``spec`` on the cluster, apply its writes to ``ctx``, return its result.

        Raises:
            UnpicklableStateError: the body or a context value cannot be sent.
            ResourceError: no worker could meet the state's resources for ``resource_timeout``.
            WorkerLostError: the worker died mid-state (the engine may retry).
            SchedulerLostError: the scheduler is unreachable.
            SharedValueMutatedError: the body changed a large shared value in place.
            StateTimeoutError: the body ran longer than the state's timeout.
        """
        await self._ready()
        wrappers = remote_wrappers()
        blob = await run_attempt(self, spec, ctx, wrappers)
        return apply_outcome(self, spec.name, ctx, blob, wrappers)

    # -- helpers for _attempt -----------------------------------------------------------------------
    def request_of(self, spec: Any) -> dict[str, float]:
        """The Dask resources to submit ``spec`` with (declared ones the cluster meters)."""
        wanted = requested(spec.resources, self.resource_names)
        if not wanted:
            return {}
        declared = {r for res in self.watch.workers.values() for r in res}
        if self._cluster_args is not None and self._cluster_args[3]:
            declared |= set(self._cluster_args[3])  # what this executor's own workers will declare
        return metered(wanted, declared)

    def count(self, what: str) -> None:
        """Add one to a statistics counter."""
        self._counts[what] += 1

    async def cancel(self, future: Any) -> None:
        """Cancel ``future`` on the cluster (bounded: the cluster may be gone)."""
        try:
            await asyncio.wait_for(self.client.cancel([future], force=True), timeout=5)
        except Exception as exc:
            log.debug("fluffy_nb: cancelling %s failed: %s", future.key, exc)

    async def refresh_workers(self) -> dict[str, dict[str, float]]:
        """Ask the scheduler which workers exist and what resources each declares."""
        await self._ready()
        return await self.watch.refresh()

    def semaphore(self, name: str, max_leases: int = 1, *, wait_timeout: float | None = None) -> ClusterSemaphore:
        """A cluster-wide semaphore gate: ``agent.add_gate(state, executor.semaphore("db", 2))``.

        Shared by every client of this cluster that uses the same ``name``. Needs a connected
        executor (``await executor`` first).
        """
        return ClusterSemaphore(self.client, name, max_leases, wait_timeout)

    def statistics(self) -> DaskExecutorStatistics:
        """A snapshot of what this executor has done, and the workers connected now."""
        workers = self._watch.workers if self._watch is not None else {}
        return DaskExecutorStatistics(in_flight=len(self.in_flight), n_workers=len(workers),
                                      scattered=self.data.scattered, held_mb=self.data.held_bytes / 1e6,
                                      **self._counts)

    def __repr__(self) -> str:
        c = self._counts
        address = getattr(getattr(self._client, "scheduler", None), "address", None)
        return (
            f"<DaskExecutor {self.name!r} scheduler={address!r} "
            f"in_flight={len(self.in_flight)} completed={c['completed']} failed={c['failed']} "
            f"lost={c['workers_lost']} requeued={c['requeued']}>"
        )
