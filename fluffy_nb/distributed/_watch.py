"""ClusterWatch: what the executor knows about the cluster while states run on it.

* Workers and the resources each declares, refreshed whenever the scheduler reports a worker
  joining or leaving (its ``"all"`` event topic), so a request that no worker can meet any
  more is noticed at once, and a request an adaptive cluster is still scaling up for is
  waited for.
* Start notices: a body logs ``fluffy-started`` as it starts on a worker (``_remote``), so
  the executor knows an attempt left Dask's queue (a lost worker's queued attempts are sent
  again without a retry), on which worker it runs, and from when its timeout counts.
* The scheduler connection: a client that lost it gets ``reconnect_timeout`` seconds to get
  it back, then every attempt fails with :class:`SchedulerLostError` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from ._errors import SchedulerLostError
from ._remote import STARTED_TOPIC

log = logging.getLogger("fluffy_nb.distributed")


class ClusterWatch:
    """Workers, start notices and the connection of one asynchronous client.

    Args:
        client: The executor's asynchronous ``distributed.Client``.
        on_lost_data: Called with the keys of scattered data a departed worker took with it.
    """

    def __init__(self, client: Any, on_lost_data: Callable[[Any], None]) -> None:
        self.client = client
        self.workers: dict[str, dict[str, float]] = {}
        self.on_lost_data = on_lost_data
        self._started: dict[str, asyncio.Future[str]] = {}
        self._change: asyncio.Future[None] | None = None
        self._refreshing: asyncio.Task[Any] | None = None
        self._stale = False  # a worker event came while a refresh was already under way
        self._previous_all: Any = None
        self._lost_since: float | None = None
        self._closed = False

    async def start(self) -> None:
        """Subscribe to worker and start events, then read the current workers."""
        handlers = getattr(self.client, "_event_handlers", {})
        self._previous_all = handlers.get("all")  # keep a handler the user installed working
        self.client.subscribe_topic("all", self._on_cluster_event)
        self.client.subscribe_topic(STARTED_TOPIC, self._on_started)
        await self.refresh()

    def stop(self) -> None:
        """Stop listening (the client may be closed next)."""
        self._closed = True
        for topic in ("all", STARTED_TOPIC):
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(topic)
        if self._previous_all is not None:
            with contextlib.suppress(Exception):
                self.client.subscribe_topic("all", self._previous_all)
        if self._refreshing is not None:
            self._refreshing.cancel()
        self._wake()

    # -- workers -------------------------------------------------------------------------------
    async def refresh(self) -> dict[str, dict[str, float]]:
        """Ask the scheduler which workers exist and what resources each declares."""
        try:
            info = await self.client.scheduler.identity(n_workers=-1)
        except TypeError:  # older schedulers always send every worker
            info = await self.client.scheduler.identity()
        self.workers = {addr: dict(w.get("resources") or {}) for addr, w in info.get("workers", {}).items()}
        self._wake()
        return self.workers

    def _on_cluster_event(self, event: Any) -> None:
        if self._previous_all is not None:
            try:
                self._previous_all(event)
            except Exception:
                log.exception("fluffy_nb: the client's own 'all' event handler failed")
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else event
        action = msg.get("action") if isinstance(msg, dict) else None
        if action not in ("add-worker", "remove-worker") or self._closed:
            return
        if action == "remove-worker":
            self.workers.pop(str(msg.get("worker")), None)
            self.on_lost_data(msg.get("lost-scattered-tasks"))
            self._wake()
        self._stale = True
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_quietly())

    async def _refresh_quietly(self) -> None:
        while self._stale and not self._closed:
            self._stale = False
            try:
                await self.refresh()
            except Exception as exc:  # the scheduler may be going away; the next event refreshes again
                log.debug("fluffy_nb: refreshing workers failed: %s", exc)
                return

    def _wake(self) -> None:
        change, self._change = self._change, None
        if change is not None and not change.done():
            change.set_result(None)

    def changed(self) -> asyncio.Future[None]:
        """A future resolved at the next change of the worker set."""
        if self._change is None:
            self._change = asyncio.get_running_loop().create_future()
        return self._change

    # -- start notices ----------------------------------------------------------------------------
    def expect_start(self, key: str) -> asyncio.Future[str]:
        """A future resolved with the worker's address when task ``key`` starts its body."""
        future = self._started.get(key)
        if future is None:
            future = self._started[key] = asyncio.get_running_loop().create_future()
        return future

    def forget(self, key: str) -> None:
        """Stop waiting for ``key``'s start notice."""
        future = self._started.pop(key, None)
        if future is not None and not future.done():
            future.cancel()

    def _on_started(self, event: Any) -> None:
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else event
        if not isinstance(msg, dict):
            return
        future = self._started.get(str(msg.get("key")))
        if future is not None and not future.done():
            future.set_result(str(msg.get("worker") or "?"))

    # -- the scheduler connection -------------------------------------------------------------------
    async def ensure_connected(self, reconnect_timeout: float, state: str | None = None) -> None:
        """Return when the client is connected; wait for a reconnect at most ``reconnect_timeout`` s.

        Raises:
            SchedulerLostError: the client is closed, or stayed disconnected too long.
        """
        status = self.client.status
        if status == "running":
            self._lost_since = None
            return
        if status in ("closing", "closed") or self._closed:
            raise self.lost_error(state, f"the client is {status}")
        if self._lost_since is None:
            self._lost_since = time.monotonic()
        deadline = self._lost_since + reconnect_timeout
        while time.monotonic() < deadline and self.client.status == "connecting":  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # Dask offers no event for a reconnect
        if self.client.status == "running":
            self._lost_since = None
            return
        raise self.lost_error(state, f"no connection for {reconnect_timeout:g}s (client {self.client.status})")

    def lost_error(self, state: str | None, why: str) -> SchedulerLostError:
        """The error for a lost scheduler, naming ``state``."""
        self._lost_since = self._lost_since or time.monotonic()
        address = getattr(getattr(self.client, "scheduler", None), "address", None)
        who = f"state {state!r}: " if state else ""
        return SchedulerLostError(
            f"{who}the Dask scheduler {address or ''} is unreachable ({why}). Work on the cluster is lost; "
            "restart the scheduler and run again (resume from a checkpoint with a durable agent)", state
        )
