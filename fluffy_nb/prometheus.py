"""Prometheus metrics of fluffy_nb runs: an event-bus subscriber, off until you switch it on.

``instrument(agent, registry=...)`` (or ``instrument()`` for every agent that runs from now on)
counts and times what the engine publishes; ``serve(port)`` exposes the registry on
``http://127.0.0.1:<port>/metrics`` for Prometheus to scrape. Metrics (labels ``agent``, and
``state`` where it applies):

=======================================  =================================================================
``fluffy_nb_runs_total``                 runs ended, label ``status`` (completed, failed, cancelled)
``fluffy_nb_run_duration_seconds``       histogram of run durations
``fluffy_nb_state_attempts_total``       state attempts started (a retry is one more attempt)
``fluffy_nb_state_retries_total``        attempts that failed and are retried
``fluffy_nb_state_errors_total``         failed attempts (retried or not)
``fluffy_nb_state_failures_total``       states that failed for good (retries exhausted)
``fluffy_nb_state_duration_seconds``     histogram of attempt durations (finished or failed)
``fluffy_nb_queue_wait_seconds``         histogram: scheduled until started (or until it waited on a gate)
``fluffy_nb_resource_wait_seconds``      histogram: waiting for resources, rate limits or coordination
``fluffy_nb_dependency_wait_seconds``    histogram: waiting for declared dependencies
``fluffy_nb_human_wait_seconds``         histogram: a human-in-the-loop question until its answer
``fluffy_nb_checkpoints_total``          checkpoints saved, label ``trigger``
``fluffy_nb_checkpoint_seconds``         histogram of checkpoint time, where the engine reports it
=======================================  =================================================================

Requires ``pip install "fluffy_nb[prometheus]"``. Importing ``fluffy_nb`` never imports this module.

Example:
    >>> from prometheus_client import CollectorRegistry        # doctest: +SKIP
    >>> import fluffy_nb.prometheus as fp                       # doctest: +SKIP
    >>> registry = CollectorRegistry()                          # doctest: +SKIP
    >>> fp.instrument(agent, registry=registry)                 # doctest: +SKIP
    >>> server = fp.serve(9464, registry=registry)              # doctest: +SKIP
    >>> await agent.run()                                       # doctest: +SKIP
    >>> server.close()                                          # doctest: +SKIP
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

from .engine._events import (
    CheckpointSaved,
    Event,
    HumanAnswered,
    RunFinished,
    StateBlocked,
    StateCancelled,
    StateFailed,
    StateFinished,
    StateRetrying,
    StateScheduled,
    StateStarted,
)
from .engine._instrument import Instrumentation

__all__ = ["MetricsServer", "PrometheusMetrics", "instrument", "serve", "uninstrument"]

#: seconds; from a sub-millisecond state to a ten-minute one
DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 300.0, 600.0)
#: people answer in seconds to hours
HUMAN_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)


class PrometheusMetrics:
    """The fluffy_nb metric families, registered once on one registry.

    Args:
        registry: The ``CollectorRegistry`` to register on (default: prometheus_client's global one).
        buckets: Histogram buckets (seconds) for durations and waits.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        self.registry = registry if registry is not None else REGISTRY
        r = self.registry
        a, s = ["agent"], ["agent", "state"]
        self.runs = Counter("fluffy_nb_runs", "Runs that ended, by status", [*a, "status"], registry=r)
        self.run_duration = Histogram("fluffy_nb_run_duration_seconds", "Run duration", a, buckets=buckets,
                                      registry=r)
        self.attempts = Counter("fluffy_nb_state_attempts", "State attempts started", s, registry=r)
        self.retries = Counter("fluffy_nb_state_retries", "Failed state attempts that are retried", s, registry=r)
        self.errors = Counter("fluffy_nb_state_errors", "Failed state attempts, retried or not", s, registry=r)
        self.failures = Counter("fluffy_nb_state_failures", "States that failed for good", s, registry=r)
        self.duration = Histogram("fluffy_nb_state_duration_seconds", "State attempt duration", s,
                                  buckets=buckets, registry=r)
        self.queue_wait = Histogram("fluffy_nb_queue_wait_seconds", "Scheduled until started", s,
                                    buckets=buckets, registry=r)
        self.resource_wait = Histogram("fluffy_nb_resource_wait_seconds",
                                       "Waiting for resources, rate limits or coordination", s,
                                       buckets=buckets, registry=r)
        self.dependency_wait = Histogram("fluffy_nb_dependency_wait_seconds", "Waiting for dependencies", s,
                                         buckets=buckets, registry=r)
        self.human_wait = Histogram("fluffy_nb_human_wait_seconds", "A question to a person until its answer",
                                    s, buckets=HUMAN_BUCKETS, registry=r)
        self.checkpoints = Counter("fluffy_nb_checkpoints", "Checkpoints saved, by trigger", [*a, "trigger"],
                                   registry=r)
        self.checkpoint_time = Histogram("fluffy_nb_checkpoint_seconds", "Time to make and store a checkpoint",
                                         a, buckets=buckets, registry=r)

    def subscriber(self, agent: Any) -> _Recorder:
        """A bus subscriber recording ``agent``'s events into these metrics."""
        return _Recorder(self)

    def __repr__(self) -> str:
        return f"<PrometheusMetrics registry={self.registry!r}>"


class _Recorder:
    """Folds one agent's events into :class:`PrometheusMetrics` (keeps only per-state timestamps)."""

    __slots__ = ("_blocked", "_children", "_handlers", "_scheduled", "m")

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self.m = metrics
        self._children: dict[tuple[str, str, str], Any] = {}  # (metric, agent, state) -> labelled child
        self._scheduled: dict[tuple[str, str], float] = {}
        self._blocked: dict[tuple[str, str], tuple[float, bool]] = {}
        self._handlers: dict[type, Any] = {
            StateScheduled: self._scheduled_, StateBlocked: self._blocked_, StateStarted: self._started,
            StateFinished: self._finished, StateFailed: self._failed, StateRetrying: self._retrying,
            StateCancelled: self._cancelled, HumanAnswered: self._answered, CheckpointSaved: self._checkpoint,
            RunFinished: self._run_finished,
        }

    def __call__(self, event: Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _child(self, metric: str, agent: str, state: str) -> Any:
        """``metrics.<metric>.labels(agent, state)``, remembered (``labels()`` costs microseconds)."""
        key = (metric, agent, state)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = getattr(self.m, metric).labels(agent, state)
        return child

    def _scheduled_(self, e: StateScheduled) -> None:
        self._scheduled[(e.run_id, e.state)] = e.time

    def _blocked_(self, e: StateBlocked) -> None:
        key = (e.run_id, e.state)
        scheduled = self._scheduled.pop(key, None)
        if scheduled is not None:
            self._child("queue_wait", e.agent, e.state).observe(max(0.0, e.time - scheduled))
        if key not in self._blocked:
            self._blocked[key] = (e.time, e.reason.startswith("waiting for dependencies"))

    def _started(self, e: StateStarted) -> None:
        key = (e.run_id, e.state)
        self._child("attempts", e.agent, e.state).inc()
        scheduled = self._scheduled.pop(key, None)
        if scheduled is not None:
            self._child("queue_wait", e.agent, e.state).observe(max(0.0, e.time - scheduled))
        if self._blocked:
            blocked = self._blocked.pop(key, None)
            if blocked is not None:
                waited = max(0.0, e.time - blocked[0])
                metric = "dependency_wait" if blocked[1] else "resource_wait"
                self._child(metric, e.agent, e.state).observe(waited)

    def _finished(self, e: StateFinished) -> None:
        self._child("duration", e.agent, e.state).observe(e.duration)

    def _failed(self, e: StateFailed) -> None:
        self._child("duration", e.agent, e.state).observe(e.duration)
        self._child("errors", e.agent, e.state).inc()
        if e.final:
            self._child("failures", e.agent, e.state).inc()

    def _retrying(self, e: StateRetrying) -> None:
        self._child("retries", e.agent, e.state).inc()

    def _cancelled(self, e: StateCancelled) -> None:
        key = (e.run_id, e.state)
        self._scheduled.pop(key, None)
        self._blocked.pop(key, None)

    def _answered(self, e: HumanAnswered) -> None:
        if e.source != "replay":  # a replayed answer (restored run) did not make anyone wait
            self._child("human_wait", e.agent, e.state).observe(max(0.0, e.waited))

    def _checkpoint(self, e: CheckpointSaved) -> None:
        self.m.checkpoints.labels(e.agent, e.trigger).inc()
        duration = getattr(e, "duration", 0.0)
        if duration > 0:
            self.m.checkpoint_time.labels(e.agent).observe(duration)

    def _run_finished(self, e: RunFinished) -> None:
        m = self.m
        m.runs.labels(e.agent, e.status).inc()
        m.run_duration.labels(e.agent).observe(e.duration)
        for table in (self._scheduled, self._blocked):
            for key in [k for k in table if k[0] == e.run_id]:
                del table[key]


# -- switching on and off -----------------------------------------------------------------------------
_families: dict[int, PrometheusMetrics] = {}
_lock = threading.Lock()
_instrumentation = Instrumentation(lambda agent: metrics_for(None).subscriber(agent), "prometheus")


def metrics_for(registry: CollectorRegistry | None = None) -> PrometheusMetrics:
    """The :class:`PrometheusMetrics` of ``registry`` (default: the global one), made on first use."""
    registry = registry if registry is not None else REGISTRY
    with _lock:
        metrics = _families.get(id(registry))
        if metrics is None or metrics.registry is not registry:
            metrics = _families[id(registry)] = PrometheusMetrics(registry)
        return metrics


def instrument(agent: Any = None, *, registry: CollectorRegistry | None = None) -> PrometheusMetrics:
    """Record ``agent``'s runs (or, with no agent, every agent's runs from now on) into ``registry``.

    Args:
        agent: The agent to measure; None measures every agent whose run starts afterwards.
        registry: Where the metrics are registered (default: prometheus_client's global registry).

    Returns:
        The :class:`PrometheusMetrics` holding the counters and histograms.
    """
    metrics = metrics_for(registry)
    if agent is None:
        _instrumentation.attach_all(metrics.subscriber)
    else:
        current = _instrumentation.subscriber(agent)
        if current is not None and current.m is not metrics:  # moving the agent to another registry
            _instrumentation.detach(agent)
        _instrumentation.attach(agent, metrics.subscriber)
    return metrics


def uninstrument(agent: Any = None) -> None:
    """Stop recording ``agent``; with no agent, stop recording everything (and ``instrument()``).

    Metrics already registered stay (Prometheus counters never go back).
    """
    _instrumentation.detach(agent)


class MetricsServer:
    """A running ``/metrics`` endpoint; :meth:`close` stops it."""

    def __init__(self, httpd: Any, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.host, self.port = httpd.server_address[:2]

    @property
    def url(self) -> str:
        """Where to scrape: ``http://HOST:PORT/metrics``."""
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MetricsServer {self.url} {'serving' if self._httpd is not None else 'closed'}>"


def serve(port: int = 9464, addr: str = "127.0.0.1", *, registry: CollectorRegistry | None = None) -> MetricsServer:
    """Serve ``registry`` on ``http://addr:port/metrics`` from a daemon thread.

    Binds 127.0.0.1 unless you pass another ``addr`` (``"0.0.0.0"`` exposes it to the network).
    ``port=0`` picks a free port (read it from ``server.port``).
    """
    httpd, thread = start_http_server(port, addr=addr, registry=registry if registry is not None else REGISTRY)
    return MetricsServer(httpd, thread)
