"""Monitoring: ``agent_monitor``, ``MetricType``, ``RealTimeMetrics``, ``MetricAggregation``, ``AgentMetrics``.

Everything here is built on the engine's events. ``@agent_monitor(...)`` marks an async function;
while it runs, every ``Agent.run()`` started inside it (directly or in tasks it creates) is observed:
``Agent.run()`` calls the observers in ``_hooks.run_observers`` and this module's observer attaches the
monitors active in the current context (a ``ContextVar``). Nothing is observed - and nothing costs -
outside a monitor.

Example (the spec's "Basic Monitoring")::

    from fluffy_nb.engine.monitoring import agent_monitor, MetricType

    async def handle_metrics(metrics: dict):
        print(metrics["throughput"]["states_per_second"]["avg"])
        print(metrics["resources"]["used_CPU"]["current"])

    @agent_monitor(metrics=MetricType.ALL, realtime=True, update_interval=1.0,
                   metrics_callback=handle_metrics)
    async def run_workflow():
        agent = Agent("monitored_workflow")
        ...
        await agent.run()

Units: times in milliseconds, rates per second, CPU in percent of one core, memory in MB
(``system_MEMORY`` in percent). The metric keys are documented in ``_metrics.py``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import _hooks
from ._clock import Clock, SystemClock
from ._errors import ConfigurationError, FluffyError
from ._metrics import AgentMetrics, MetricAggregation, MetricType
from ._sampler import SamplerStatistics, UsageSampler

__all__ = [
    "AgentMetrics",
    "MetricAggregation",
    "MetricType",
    "MonitorStatistics",
    "MonitoringError",
    "RealTimeMetrics",
    "SamplerStatistics",
    "UsageSampler",
    "agent_monitor",
    "current_monitor",
]

log = logging.getLogger("fluffy_nb")

MetricsCallback = Callable[[dict[str, Any]], Any]


class MonitoringError(FluffyError, RuntimeError):
    """A monitor was used where it cannot work (e.g. started outside a running event loop)."""


@dataclass(frozen=True)
class MonitorStatistics:
    """What a :class:`RealTimeMetrics` is doing."""

    running: bool
    watch_all: bool
    agents: tuple[str, ...]
    subscribers: int
    updates: int
    update_interval: float


_active: contextvars.ContextVar[tuple[RealTimeMetrics, ...]] = contextvars.ContextVar(
    "fluffy_nb_active_monitors", default=()
)
_watch_all: list[RealTimeMetrics] = []


def _observe_run(agent: Any) -> None:
    """Called by ``Agent.run()`` (via ``_hooks.run_observers``) before the run starts."""
    for monitor in (*_active.get(), *_watch_all):
        try:
            monitor.watch(agent, _explicit=False)
        except Exception:  # a monitor must never stop a run
            log.exception("fluffy_nb monitor %r failed to watch agent %r", monitor, getattr(agent, "name", agent))


if not any(getattr(o, "__name__", "") == "_observe_run" for o in _hooks.run_observers):
    _hooks.run_observers.append(_observe_run)


def current_monitor() -> RealTimeMetrics | None:
    """The innermost ``agent_monitor`` active in this context, if any."""
    active = _active.get()
    return active[-1] if active else None


def _check_interval(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{what}={value!r}: must be a number of seconds > 0")
    return float(value)


class RealTimeMetrics:
    """Live metrics of the agents it watches, pushed to subscribers every ``update_interval``.

    ``start()`` and ``stop()`` are plain calls usable inside a running loop (the spec's dashboard
    calls them without ``await``); awaiting what they return also works and, for ``stop()``,
    waits until async subscribers got the final update. Started without any explicitly watched
    agent, it watches every agent that runs while it is started.

    Args:
        update_interval: Seconds between updates to subscribers.
        metrics: The ``MetricType`` categories to collect.
        aggregate: One dictionary for all agents (True) or one update per agent (False).
        clock: Time source for the update ticks (tests pass a ``ManualClock``).
        sample_interval: Seconds between psutil samples while an agent runs (None: no sampling).

    Example:
        >>> rt = RealTimeMetrics(update_interval=1.0)      # doctest: +SKIP
        >>> rt.subscribe(print)                            # doctest: +SKIP
        >>> rt.watch(agent).start()                        # doctest: +SKIP
        >>> await agent.run(); await rt.stop()             # doctest: +SKIP
    """

    def __init__(self, update_interval: float = 1.0, *, metrics: MetricType = MetricType.ALL,
                 aggregate: bool = True, clock: Clock | None = None,
                 sample_interval: float | None = 0.5) -> None:
        self.update_interval = _check_interval("RealTimeMetrics(update_interval)", update_interval)
        if sample_interval is not None:
            _check_interval("sample_interval", sample_interval)
        if not isinstance(metrics, MetricType):
            raise ConfigurationError(
                f"metrics={metrics!r}: pass MetricType flags, e.g. MetricType.TIMING | MetricType.ERRORS"
            )
        self.metric_types = metrics
        self.aggregate = aggregate
        self.sample_interval = sample_interval
        self.clock: Clock = clock or SystemClock()
        self._subscribers: list[MetricsCallback] = []
        self._shared = AgentMetrics(None, metrics, sample_interval=sample_interval) if aggregate else None
        self._per_agent: dict[int, AgentMetrics] = {}
        self._explicit: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self._finals: set[asyncio.Task[Any]] = set()
        self._updates = 0
        self.last_metrics: dict[str, Any] | None = None

    # -- wiring ---------------------------------------------------------------------------------
    def subscribe(self, callback: MetricsCallback) -> Callable[[], None]:
        """Call ``callback(metrics)`` (sync or async) on every update; returns an unsubscribe function."""
        if not callable(callback):
            raise ConfigurationError(f"subscribe({callback!r}): pass a function taking the metrics dict")
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def watch(self, agent: Any, *, _explicit: bool = True) -> RealTimeMetrics:
        """Observe ``agent`` (its runs from now on; a running one from this moment). Returns self."""
        if not hasattr(agent, "events"):
            raise ConfigurationError(f"watch({agent!r}): pass an Agent (something with .events)")
        if _explicit and not any(a is agent for a in self._explicit):
            self._explicit.append(agent)
        if self._shared is not None:
            self._shared.watch(agent)
        else:
            collector = self._per_agent.get(id(agent))
            if collector is None:
                collector = self._per_agent[id(agent)] = AgentMetrics(
                    None, self.metric_types, sample_interval=self.sample_interval)
            collector.watch(agent)
        return self

    def _collectors(self) -> list[AgentMetrics]:
        return [self._shared] if self._shared is not None else list(self._per_agent.values())

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, *, watch_all: bool | None = None) -> asyncio.Future[None]:
        """Begin periodic updates (call inside a running event loop; awaiting the result is optional).

        Args:
            watch_all: Also watch every agent that runs while started. Default: True when no
                agent was watched explicitly.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise MonitoringError(
                "RealTimeMetrics.start() needs a running event loop: call it from async code "
                "(an async def, or a notebook cell)"
            ) from None
        for agent in self._explicit:
            self.watch(agent)
        if watch_all is None:
            watch_all = not self._explicit
        if watch_all and self not in _watch_all:
            _watch_all.append(self)
        self._start_ticker(loop)
        done: asyncio.Future[None] = loop.create_future()
        done.set_result(None)
        return done

    def _start_ticker(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._task is None or self._task.done():
            loop = loop or asyncio.get_running_loop()
            self._task = loop.create_task(self._ticker(), name="fluffy_nb metrics ticker")

    @property
    def running(self) -> bool:
        """Whether periodic updates are on."""
        return self._task is not None and not self._task.done()

    def stop(self) -> Awaitable[None]:
        """Stop updates and observing; deliver one final update. Await the result to wait for it."""
        if self in _watch_all:
            _watch_all.remove(self)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        for collector in self._collectors():
            if task is not None:
                collector.tick()  # close the last realtime window
            collector.close()
        pending = self._deliver_now()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            for aw in pending:  # no loop: async subscribers cannot be served
                if inspect.iscoroutine(aw):
                    aw.close()
            return _Done()
        if not pending:
            return _Done()
        final = loop.create_task(self._await_all(pending), name="fluffy_nb final metrics")
        self._finals.add(final)
        final.add_done_callback(self._finals.discard)
        return final

    async def _ticker(self) -> None:
        while True:
            await self.clock.sleep(self.update_interval)
            for collector in self._collectors():
                collector.tick()
            await self._await_all(self._deliver_now())

    def _deliver_now(self) -> list[Awaitable[Any]]:
        """Call every subscriber with the current metrics; return the awaitables async ones gave."""
        self._updates += 1
        payloads = [self.snapshot()] if self.aggregate else [c.snapshot() for c in self._per_agent.values()]
        if payloads:
            self.last_metrics = payloads[-1] if self.aggregate else self.snapshot()
        pending: list[Awaitable[Any]] = []
        for callback in list(self._subscribers):
            for payload in payloads:
                try:
                    result = callback(payload)
                except Exception:
                    log.exception("fluffy_nb metrics subscriber %r failed", callback)
                    continue
                if inspect.isawaitable(result):
                    pending.append(result)
        return pending

    @staticmethod
    async def _await_all(pending: list[Awaitable[Any]]) -> None:
        for aw in pending:
            try:
                await aw
            except Exception:
                log.exception("fluffy_nb metrics subscriber failed")

    # -- reading ----------------------------------------------------------------------------------
    def snapshot(self, agent: Any = None) -> dict[str, dict[str, dict[str, float]]]:
        """The metrics now, in the spec's shape; ``agent``: only that agent (needs aggregate=False)."""
        if agent is not None:
            collector = self._per_agent.get(id(agent))
            if collector is None:
                raise ConfigurationError(
                    f"snapshot({getattr(agent, 'name', agent)!r}): per-agent metrics need "
                    "RealTimeMetrics(aggregate=False) and an agent it watched"
                )
            return collector.snapshot()
        if self._shared is not None:
            return self._shared.snapshot()
        merged: dict[str, dict[str, MetricAggregation]] = {}
        for c in self._per_agent.values():
            c.merge_into(merged)
        return {cat: {k: a.to_dict() for k, a in leaves.items()} for cat, leaves in merged.items()}

    def per_state(self) -> list[dict[str, Any]]:
        """One record per (agent, state): counts, retries, failures, duration percentiles, usage."""
        return [row for c in self._collectors() for row in c.per_state()]

    def statistics(self) -> MonitorStatistics:
        """A frozen summary: running, watched agents, subscribers, updates delivered."""
        agents = tuple(name for c in self._collectors() for name in c.agents)
        return MonitorStatistics(self.running, self in _watch_all, agents, len(self._subscribers),
                                 self._updates, self.update_interval)

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"<RealTimeMetrics {'running' if s.running else 'stopped'} every {s.update_interval}s "
                f"agents={list(s.agents)} subscribers={s.subscribers} updates={s.updates}>")


class _Done:
    """An already-finished awaitable (what ``stop()`` returns when nothing is left to wait for)."""

    def __await__(self) -> Any:
        return iter(())


def agent_monitor(
    func: Callable[..., Awaitable[Any]] | None = None,
    *,
    metrics: MetricType = MetricType.ALL,
    realtime: bool = False,
    update_interval: float = 1.0,
    metrics_callback: MetricsCallback | None = None,
    aggregate: bool = True,
    sample_interval: float | None = 0.5,
    clock: Clock | None = None,
) -> Any:
    """Observe every agent that runs while the decorated async function runs.

    Args:
        metrics: Which categories to collect (``MetricType`` flags).
        realtime: Push metrics to ``metrics_callback`` every ``update_interval`` seconds.
        update_interval: Seconds between realtime updates.
        metrics_callback: ``callback(metrics)``, sync or async; always gets a final update
            when the function returns (or raises).
        aggregate: One dictionary for all agents (True) or one callback per agent (False).
        sample_interval: Seconds between psutil samples while an agent runs (None: off).
        clock: Time source of the realtime ticks (tests pass a ``ManualClock``).

    The wrapper keeps the last run's monitor and final metrics as ``wrapper.monitor`` and
    ``wrapper.last_metrics``; inside the function, :func:`current_monitor` returns the monitor.

    Raises:
        ConfigurationError: on a non-async function or a bad argument.
    """
    if not isinstance(metrics, MetricType):
        raise ConfigurationError(
            f"agent_monitor(metrics={metrics!r}): pass MetricType flags, e.g. MetricType.TIMING | MetricType.ERRORS"
        )
    _check_interval("agent_monitor(update_interval)", update_interval)
    if metrics_callback is not None and not callable(metrics_callback):
        raise ConfigurationError(f"agent_monitor(metrics_callback={metrics_callback!r}): must be callable")

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                f"agent_monitor decorates async functions; {getattr(fn, '__name__', fn)!r} is not one. "
                "Write it as 'async def' and await agent.run() inside"
            )

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            monitor = RealTimeMetrics(update_interval, metrics=metrics, aggregate=aggregate, clock=clock,
                                      sample_interval=sample_interval)
            if metrics_callback is not None:
                monitor.subscribe(metrics_callback)
            wrapper.monitor = monitor  # type: ignore[attr-defined]
            token = _active.set((*_active.get(), monitor))
            try:
                if realtime:
                    monitor._start_ticker()
                return await fn(*args, **kwargs)
            finally:
                _active.reset(token)
                await monitor.stop()
                wrapper.last_metrics = monitor.last_metrics  # type: ignore[attr-defined]

        wrapper.monitor = None  # type: ignore[attr-defined]
        wrapper.last_metrics = None  # type: ignore[attr-defined]
        return wrapper

    return decorate if func is None else decorate(func)
