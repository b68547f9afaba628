"""Metric records and the event-driven collector behind ``agent_monitor``.

:class:`MetricAggregation` is one series of numbers (count, sum, avg, min, max, current and
p50/p95/p99). :class:`AgentMetrics` subscribes to one or more agents' event buses and folds the
events into a two-level dictionary of aggregations, the shape the spec reads::

    metrics["throughput"]["states_per_second"]["avg"]
    metrics["timing"]["total_execution"]["p95"]          # milliseconds
    metrics["timing"]["state_fetch"]["p50"]              # milliseconds, one key per state
    metrics["resources"]["used_CPU"]["current"]          # percent of one core (measured)
    metrics["errors"]["count"]["sum"]

Every leaf is ``MetricAggregation.to_dict()``, so ``for cat, m in d.items(): for k, v in m.items():
v["avg"]`` always works. Times are milliseconds, rates per second, memory in MB.

The leaves (each a series; "per X" says what one value is):

=============  =====================================================================================
timing         ``total_execution`` (per run), ``state_<name>`` (per finished run of that state)
throughput     ``states_per_second`` (per run, and per realtime window while a run is active),
               ``queue_processing_rate`` (states taken off the ready queue - started - per second;
               per run and per realtime window), ``concurrent_states`` (executing states, at each
               state start), ``completed_states`` (per run)
latency        ``schedule_to_start`` (queue/admission wait of each start), ``state_execution`` (all states)
state          ``completed``, ``failed``, ``cancelled``, ``retries`` (counters: ``sum`` is the count),
               ``success_rate`` (1 per success, 0 per final failure: ``avg`` is the rate),
               ``transitions`` (next states named by each finished state)
dependency     ``resolution_time`` (from parked on dependencies to start), ``blocked_states`` (waiting now),
               ``chain_length`` (per run: links in the longest chain of declared ``dependencies``;
               0 when no state depends on another, 2 when C waits on B which waits on A)
resources      ``used_CPU`` / ``used_MEMORY`` (this process: % of one core / MB, measured by psutil),
               ``system_CPU`` / ``system_MEMORY`` (machine, percent), ``used_GPU`` (NVML, if any),
               ``io_operations`` / ``io_read_ops`` / ``io_write_ops`` (this process's I/O operations per
               second between two samples; psutil, where the platform reports them),
               ``allocated_<TYPE>`` (declared ``ResourceRequirements`` of the states executing)
errors         ``count`` (failed attempts, retried or not), ``retries``, ``failures`` (final), ``timeouts``
=============  =====================================================================================
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import Any

from ._aggregation import MetricAggregation, Tally
from ._errors import ConfigurationError
from ._events import (
    Event,
    ResourceSample,
    RunFinished,
    RunStarted,
    StateBlocked,
    StateCancelled,
    StateFailed,
    StateFinished,
    StateRetrying,
    StateScheduled,
    StateStarted,
)
from ._sampler import acquire_shared, attribute, release_shared


class MetricType(enum.Flag):
    """Which metric categories to collect; combine with ``|``."""

    TIMING = enum.auto()
    RESOURCES = enum.auto()
    STATE = enum.auto()
    THROUGHPUT = enum.auto()
    DEPENDENCY = enum.auto()
    LATENCY = enum.auto()
    ERRORS = enum.auto()
    ALL = TIMING | RESOURCES | STATE | THROUGHPUT | DEPENDENCY | LATENCY | ERRORS


#: the dictionary key of each category, and the leaves that are always present (zero until fed)
CATEGORIES: dict[MetricType, tuple[str, tuple[str, ...]]] = {
    MetricType.TIMING: ("timing", ("total_execution",)),
    MetricType.RESOURCES: ("resources", ("used_CPU", "used_MEMORY", "system_CPU", "system_MEMORY",
                                         "allocated_CPU", "allocated_MEMORY", "io_operations")),
    MetricType.STATE: ("state", ("transitions", "completed", "failed", "cancelled", "retries", "success_rate")),
    MetricType.THROUGHPUT: ("throughput", ("states_per_second", "queue_processing_rate", "concurrent_states",
                                           "completed_states")),
    MetricType.DEPENDENCY: ("dependency", ("resolution_time", "blocked_states", "chain_length")),
    MetricType.LATENCY: ("latency", ("schedule_to_start", "state_execution")),
    MetricType.ERRORS: ("errors", ("count", "retries", "failures", "timeouts")),
}

#: leaves that only ever receive 0/1 values
TALLIES = {
    "state": {"completed", "failed", "cancelled", "retries", "success_rate"},
    "errors": {"count", "retries", "failures", "timeouts"},
}


def dependency_chain_length(states: dict[str, Any]) -> int:
    """Links in the longest chain of declared ``dependencies`` among ``states`` (0: none).

    Iterative (a 10,000-state chain does not recurse). Dependency cycles are rejected by
    ``run()``; an edge that would close one here is ignored.
    """
    depth: dict[str, int] = {}
    for root in states:
        if root in depth:
            continue
        stack: list[tuple[str, list[str]]] = [(root, list(getattr(states.get(root), "dependencies", None) or ()))]
        on_path = {root}
        while stack:
            name, todo = stack[-1]
            while todo and (todo[-1] in depth or todo[-1] in on_path):
                todo.pop()
            if todo:
                dep = todo.pop()
                on_path.add(dep)
                stack.append((dep, list(getattr(states.get(dep), "dependencies", None) or ())))
                continue
            deps = getattr(states.get(name), "dependencies", None) or ()
            depth[name] = max((1 + depth[d] for d in deps if d in depth), default=0)
            on_path.discard(name)
            stack.pop()
    return max(depth.values(), default=0)


class _StateStats:
    __slots__ = (
        "agent",
        "attempts",
        "cancelled",
        "completed",
        "durations",
        "errors",
        "failures",
        "retries",
        "state",
    )

    def __init__(self, agent: str, state: str) -> None:
        self.agent, self.state = agent, state
        self.durations = MetricAggregation()
        self.completed = self.attempts = self.errors = self.retries = self.failures = self.cancelled = 0


class AgentMetrics:
    """Collects metrics from agents' events; :meth:`snapshot` returns the spec's dictionary.

    Args:
        agent: An agent to watch right away (more with :meth:`watch`).
        metrics: The categories to include (``MetricType`` flags).
        sample_interval: Seconds between psutil samples while a watched agent runs, when
            ``RESOURCES`` is collected (None: do not sample; ``ResourceSample`` events
            published by others are still counted).

    Example:
        >>> metrics = AgentMetrics(agent)             # doctest: +SKIP
        >>> await agent.run()                         # doctest: +SKIP
        >>> metrics.snapshot()["timing"]["total_execution"]["avg"]   # doctest: +SKIP
        12.7
        >>> metrics.per_state()                       # doctest: +SKIP
        [{'agent': 'etl', 'state': 'load', 'runs': 1, 'p95_ms': 3.1, ...}]
    """

    def __init__(self, agent: Any = None, metrics: MetricType = MetricType.ALL, *,
                 sample_interval: float | None = 0.5) -> None:
        if not isinstance(metrics, MetricType):
            raise ConfigurationError(
                f"metrics={metrics!r}: pass MetricType flags, e.g. MetricType.TIMING | MetricType.ERRORS"
            )
        self.metric_types = metrics
        self.sample_interval = sample_interval
        self.agents: dict[str, Any] = {}
        self._subscriptions: dict[int, tuple[Any, Callable[[], None], bool]] = {}  # id(agent) -> ...
        self.data: dict[str, dict[str, MetricAggregation]] = {}
        for flag, (key, leaves) in CATEGORIES.items():
            if flag in metrics:
                tallies = TALLIES.get(key, set())
                self.data[key] = {leaf: Tally() if leaf in tallies else MetricAggregation() for leaf in leaves}
        self._states: dict[tuple[str, str], _StateStats] = {}
        self._runs: dict[str, list[float]] = {}  # run_id -> [start time, states finished, states started]
        self._scheduled: dict[tuple[str, str], float] = {}
        self._blocked: dict[tuple[str, str], tuple[float, bool]] = {}
        self._executing: dict[str, set[str]] = {}
        self._samples: deque[ResourceSample] = deque(maxlen=3600)
        self._window_start: float | None = None
        self._window_finished = 0
        self._window_started = 0
        self._last_io: dict[str, tuple[float, int, int]] = {}  # agent -> (time, reads, writes)
        self._clock: Any = None
        self._declared = False  # some watched state declares ResourceRequirements
        d = self.data
        self._timing = d.get("timing")
        self._latency = d.get("latency")
        self._state = d.get("state")
        self._throughput = d.get("throughput")
        self._errors = d.get("errors")
        self._handlers: dict[type, Callable[[Any], None]] = {
            StateScheduled: self._on_scheduled, StateStarted: self._on_started,
            StateFinished: self._on_finished, StateFailed: self._on_failed, StateRetrying: self._on_retrying,
            StateBlocked: self._on_blocked, StateCancelled: self._on_cancelled, ResourceSample: self._on_sample,
            RunStarted: self._on_run_started, RunFinished: self._on_run_finished,
        }
        if agent is not None:
            self.watch(agent)

    # -- attaching -------------------------------------------------------------------------------
    def watch(self, agent: Any) -> AgentMetrics:
        """Observe ``agent``'s events from now on (idempotent). Returns self."""
        if id(agent) in self._subscriptions:
            return self
        sampled = MetricType.RESOURCES in self.metric_types and self.sample_interval is not None
        unsubscribe = agent.events.subscribe(self)
        if sampled:
            acquire_shared(agent, self.sample_interval or 0.5)
        self._subscriptions[id(agent)] = (agent, unsubscribe, sampled)
        self.agents[agent.name] = agent
        if self._clock is None:
            self._clock = agent.clock
        self._check_declared(agent)
        latest = getattr(agent, "latest_run", None)
        if latest is not None and latest.active and latest.run_id not in self._runs:
            self._runs[latest.run_id] = [latest.started_at, 0, 0]  # watching a run already under way
            if self._window_start is None:
                self._window_start = latest.started_at
        return self

    def close(self) -> None:
        """Stop observing every agent (the collected numbers stay)."""
        for agent, unsubscribe, sampled in self._subscriptions.values():
            unsubscribe()
            if sampled:
                release_shared(agent)
        self._subscriptions.clear()

    def __enter__(self) -> AgentMetrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- events ---------------------------------------------------------------------------------
    def _add(self, category: str, name: str, value: float) -> None:
        cat = self.data.get(category)
        if cat is not None:
            leaf = cat.get(name)
            if leaf is None:
                leaf = cat[name] = MetricAggregation()
            leaf.add(value)

    def _stats(self, event: Any) -> _StateStats:
        key = (event.agent, event.state)
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _StateStats(event.agent, event.state)
        return st

    def __call__(self, event: Event) -> None:
        """Fold one event into the metrics (this object is the bus subscriber)."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _on_scheduled(self, event: StateScheduled) -> None:
        self._scheduled[(event.run_id, event.state)] = event.time

    def _on_started(self, event: StateStarted) -> None:
        self._stats(event).attempts += 1
        if event.attempt == 1:  # a retry is not taken off the queue again
            run = self._runs.get(event.run_id)
            if run is not None:
                run[2] += 1
            self._window_started += 1
        key = (event.run_id, event.state)
        scheduled = self._scheduled.pop(key, None)
        if scheduled is not None and self._latency is not None:
            self._latency["schedule_to_start"].add((event.time - scheduled) * 1000)
        if self._blocked:
            blocked = self._blocked.pop(key, None)
            if blocked is not None and blocked[1]:
                self._add("dependency", "resolution_time", (event.time - blocked[0]) * 1000)
        running = self._executing.get(event.run_id)
        if running is None:
            running = self._executing[event.run_id] = set()
        running.add(event.state)
        if self._throughput is not None:
            self._throughput["concurrent_states"].add(len(running))
        self._allocation(event)

    def _on_finished(self, event: StateFinished) -> None:
        st = self._stats(event)
        st.completed += 1
        ms = event.duration * 1000
        st.durations.add(ms)
        timing = self._timing
        if timing is not None:
            name = "state_" + event.state
            leaf = timing.get(name)
            if leaf is None:
                leaf = timing[name] = MetricAggregation()
            leaf.add(ms)
        if self._latency is not None:
            self._latency["state_execution"].add(ms)
        state = self._state
        if state is not None:
            state["completed"].add(1)
            state["success_rate"].add(1)
            state["transitions"].add(len(event.next_states))
        self._ended(event)
        run = self._runs.get(event.run_id)
        if run is not None:
            run[1] += 1
        self._window_finished += 1

    def _on_failed(self, event: StateFailed) -> None:
        st = self._stats(event)
        st.errors += 1
        errors, state = self._errors, self._state
        if errors is not None:
            errors["count"].add(1)
            if event.timed_out:
                errors["timeouts"].add(1)
        if event.final:
            st.failures += 1
            if errors is not None:
                errors["failures"].add(1)
            if state is not None:
                state["failed"].add(1)
                state["success_rate"].add(0)
        self._ended(event)

    def _on_retrying(self, event: StateRetrying) -> None:
        self._stats(event).retries += 1
        if self._errors is not None:
            self._errors["retries"].add(1)
        if self._state is not None:
            self._state["retries"].add(1)

    def _on_blocked(self, event: StateBlocked) -> None:
        key = (event.run_id, event.state)
        dependency = event.reason.startswith("waiting for dependencies")
        if dependency:
            self._scheduled.pop(key, None)
        if key not in self._blocked:
            self._blocked[key] = (event.time, dependency)
        self._add("dependency", "blocked_states", len(self._blocked))

    def _on_cancelled(self, event: StateCancelled) -> None:
        self._stats(event).cancelled += 1
        if self._state is not None:
            self._state["cancelled"].add(1)
        key = (event.run_id, event.state)
        self._scheduled.pop(key, None)
        self._blocked.pop(key, None)
        self._ended(event)

    def _on_sample(self, event: ResourceSample) -> None:
        self._samples.append(event)
        self._add("resources", "used_CPU", event.process_cpu)
        self._add("resources", "used_MEMORY", event.process_memory_mb)
        self._add("resources", "system_CPU", event.system_cpu)
        self._add("resources", "system_MEMORY", event.system_memory_percent)
        if event.gpu:
            self._add("resources", "used_GPU", sum(event.gpu) / len(event.gpu))
        if event.io_read_count >= 0 and "resources" in self.data:
            last = self._last_io.get(event.agent)
            self._last_io[event.agent] = (event.time, event.io_read_count, event.io_write_count)
            if last is not None and event.time > last[0]:
                span = event.time - last[0]
                reads = max(0, event.io_read_count - last[1]) / span
                writes = max(0, event.io_write_count - last[2]) / span
                self._add("resources", "io_read_ops", reads)
                self._add("resources", "io_write_ops", writes)
                self._add("resources", "io_operations", reads + writes)

    def _on_run_started(self, event: RunStarted) -> None:
        agent = self.agents.get(event.agent)
        if agent is not None and not self._declared:
            self._check_declared(agent)
        self._runs[event.run_id] = [event.time, 0, 0]
        if self._window_start is None:
            self._window_start = event.time
        if agent is not None and "dependency" in self.data:
            self._add("dependency", "chain_length", dependency_chain_length(agent.states))

    def _on_run_finished(self, event: RunFinished) -> None:
        self._add("timing", "total_execution", event.duration * 1000)
        run = self._runs.pop(event.run_id, None)
        if run is not None:
            self._add("throughput", "completed_states", run[1])
            if event.duration > 0:
                self._add("throughput", "states_per_second", run[1] / event.duration)
                self._add("throughput", "queue_processing_rate", run[2] / event.duration)
        self._executing.pop(event.run_id, None)
        for k in [k for k in self._scheduled if k[0] == event.run_id]:
            del self._scheduled[k]
        for k in [k for k in self._blocked if k[0] == event.run_id]:
            del self._blocked[k]

    def _check_declared(self, agent: Any) -> None:
        if "resources" in self.data and any(
            getattr(spec, "resources", None) is not None for spec in agent.states.values()
        ):
            self._declared = True

    def _ended(self, event: Any) -> None:
        running = self._executing.get(event.run_id)
        if running is not None:
            running.discard(event.state)
        self._allocation(event)

    def _allocation(self, event: Any) -> None:
        """Declared resources of the states executing now (to set beside the measured ones)."""
        if not self._declared:
            return
        agent = self.agents.get(event.agent)
        if agent is None or getattr(agent.states.get(event.state), "resources", None) is None:
            return  # the allocation changes only when a state that declared resources starts or ends
        totals: dict[str, float] = {"CPU": 0.0, "MEMORY": 0.0}
        for name in self._executing.get(event.run_id, ()):
            spec = agent.states.get(name)
            req = getattr(spec, "resources", None)
            if req is not None:
                for rtype, amount in req.amounts().items():
                    totals[rtype.name] = totals.get(rtype.name, 0.0) + amount
        for rname, amount in totals.items():
            self._add("resources", f"allocated_{rname}", amount)

    # -- reading ----------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """Close a realtime window at clock time ``now`` (default: the watched agents' clock).

        Records the window's states/second when a run was active in it.
        """
        if now is None:
            if self._clock is None:
                return
            now = self._clock.monotonic()
        start = self._window_start
        if start is not None and now > start and (self._runs or self._window_finished):
            self._add("throughput", "states_per_second", self._window_finished / (now - start))
            self._add("throughput", "queue_processing_rate", self._window_started / (now - start))
        self._window_start = now if self._runs else None
        self._window_finished = 0
        self._window_started = 0

    def snapshot(self) -> dict[str, dict[str, dict[str, float]]]:
        """The metrics now: ``{category: {metric: MetricAggregation.to_dict()}}``."""
        return {cat: {name: agg.to_dict() for name, agg in leaves.items()} for cat, leaves in self.data.items()}

    def per_state(self) -> list[dict[str, Any]]:
        """One record per state: runs, attempts, errors, retries, failures, duration percentiles (ms).

        With resource samples, also the average/peak process CPU and memory while it ran.
        """
        usage = {r["state"]: r for r in attribute(self._samples)}
        rows = []
        for (agent, name), st in self._states.items():
            d = st.durations
            row: dict[str, Any] = {
                "agent": agent, "state": name, "runs": st.completed, "attempts": st.attempts,
                "errors": st.errors, "retries": st.retries, "failures": st.failures, "cancelled": st.cancelled,
                "mean_ms": d.avg, "p50_ms": d.p50, "p95_ms": d.p95, "p99_ms": d.p99, "max_ms": d.max,
            }
            u = usage.get(name)
            if u is not None:
                row.update({k: v for k, v in u.items() if k != "state"})
            rows.append(row)
        return rows

    def merge_into(self, target: dict[str, dict[str, MetricAggregation]]) -> None:
        """Fold this collector's aggregations into ``target`` (used to aggregate several agents)."""
        for cat, leaves in self.data.items():
            dest = target.setdefault(cat, {})
            for name, agg in leaves.items():
                if name not in dest:
                    dest[name] = type(agg)()
                dest[name].merge(agg)

    def __repr__(self) -> str:
        names = ", ".join(self.agents) or "none"
        done = sum(st.completed for st in self._states.values())
        errors = sum(st.errors for st in self._states.values())
        return f"<AgentMetrics agents=[{names}] states_finished={done} errors={errors}>"
