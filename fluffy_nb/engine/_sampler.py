"""Measured usage: :class:`UsageSampler` samples CPU and memory (psutil; GPUs via NVML) while an agent runs.

Declared resources (``ResourceRequirements``) say what a state *asks* for; the sampler says what the
process and the machine *actually* used. Each sample is published on the agent's event bus as a
:class:`~fluffy_nb.engine._events.ResourceSample` (with the names of the states running at that
moment) and kept in a ring buffer, so the same data is available as events (live views, monitors)
and as plain records (``samples()``, ``per_state()``; the notebook turns them into DataFrames).

Everything outside is injectable: the psutil process, the system-wide source, the GPU reader and
the clock, so tests are deterministic and never sleep.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ._clock import Clock, SystemClock
from ._errors import ConfigurationError
from ._events import Event, ResourceSample, RunFinished, RunStarted

log = logging.getLogger("fluffy_nb")

_MB = 1024 * 1024


def nvml_reader() -> Callable[[], tuple[float, ...]] | None:
    """A function returning each GPU's utilisation (percent), or None without NVML or GPUs."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # no pynvml, no driver, no device: no GPU numbers
        return None
    if not handles:
        return None

    def read() -> tuple[float, ...]:
        try:
            return tuple(float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in handles)
        except Exception:
            return ()

    return read


@dataclass(frozen=True)
class SamplerStatistics:
    """What a :class:`UsageSampler` has seen so far."""

    running: bool
    interval: float
    samples: int
    buffered: int
    capacity: int
    last_process_cpu: float | None
    last_process_memory_mb: float | None


class UsageSampler:
    """Samples process and system CPU/memory while an agent runs.

    Attached to an agent, it starts on the agent's ``RunStarted`` event and stops (after one final
    sample) on ``RunFinished``; without an agent, call :meth:`start` / :meth:`stop` yourself.
    CPU is percent of one core (psutil's convention: a process busy on two cores reads 200).

    Args:
        agent: The agent to sample for (None: sample on explicit ``start()``/``stop()`` only).
        interval: Seconds between samples.
        clock: Time source (default: the agent's clock, else the system clock).
        process: A ``psutil.Process``-like object (``cpu_percent(None)``, ``memory_info().rss``,
            optionally ``io_counters()``);
            default: this process.
        system: An object with ``cpu_percent(None)`` and ``virtual_memory().percent``; default psutil.
        gpu: A function returning per-GPU utilisation percents; default NVML when importable.
        capacity: How many samples the ring buffer keeps.

    Example:
        >>> sampler = UsageSampler(agent, interval=0.25)   # doctest: +SKIP
        >>> await agent.run()                              # doctest: +SKIP
        >>> sampler.per_state()                            # doctest: +SKIP
        [{'state': 'train', 'samples': 12, 'avg_process_cpu': 97.5, ...}]
    """

    def __init__(
        self,
        agent: Any = None,
        interval: float = 0.5,
        clock: Clock | None = None,
        process: Any = None,
        *,
        system: Any = None,
        gpu: Callable[[], tuple[float, ...]] | bool | None = True,
        capacity: int = 3600,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise ConfigurationError(f"UsageSampler(interval={interval!r}): must be a number of seconds > 0")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigurationError(f"UsageSampler(capacity={capacity!r}): must be a whole number >= 1")
        if process is None or system is None:
            import psutil

            process = process if process is not None else psutil.Process()
            system = system if system is not None else psutil
        self.agent = agent
        self.interval = float(interval)
        self.clock: Clock = clock or getattr(agent, "clock", None) or SystemClock()
        self.process = process
        self.system = system
        self._gpu = nvml_reader() if gpu is True else (gpu or None)
        self._io_ok = True
        self._buffer: deque[ResourceSample] = deque(maxlen=capacity)
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._run_id = ""
        self._unsubscribe: Callable[[], None] | None = None
        if agent is not None:
            self._unsubscribe = agent.events.subscribe(self._on_event, types=(RunStarted, RunFinished))
            latest = getattr(agent, "latest_run", None)
            if latest is not None and latest.active:
                self._run_id = latest.run_id
                self._start_in_loop()

    # -- lifecycle ---------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._run_id = event.run_id
            self._start_in_loop()
        elif isinstance(event, RunFinished) and self.running:
            self.stop()

    def _start_in_loop(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self.start()

    def start(self) -> None:
        """Prime the CPU counters and sample every ``interval`` seconds (needs a running loop)."""
        if self.running:
            return
        self._prime()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="fluffy_nb usage sampler")

    def stop(self) -> ResourceSample | None:
        """Stop sampling and take one final sample (returned). Safe to call twice."""
        task, self._task = self._task, None
        if task is None:
            return None
        task.cancel()
        return self.sample()

    def close(self) -> None:
        """Stop and detach from the agent's events."""
        self.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    @property
    def running(self) -> bool:
        """Whether the sampling task is active."""
        return self._task is not None and not self._task.done()

    async def _loop(self) -> None:
        while True:
            await self.clock.sleep(self.interval)
            try:
                self.sample()
            except Exception:  # a broken probe must never break the run
                log.exception("fluffy_nb usage sampler failed")

    def _prime(self) -> None:
        # psutil's cpu_percent(None) measures since the previous call; the first call returns 0.0
        try:
            self.process.cpu_percent(None)
            self.system.cpu_percent(None)
        except Exception:
            log.debug("fluffy_nb usage sampler: priming cpu_percent failed", exc_info=True)

    # -- sampling ----------------------------------------------------------------------------
    def _running_states(self) -> tuple[str, ...]:
        names = getattr(self.agent, "running_state_names", None)
        return tuple(sorted(names())) if names is not None else ()

    def sample(self) -> ResourceSample:
        """Take one sample now: record it, publish it on the agent's bus, and return it."""
        proc_cpu = float(self.process.cpu_percent(None))
        proc_mem = float(self.process.memory_info().rss) / _MB
        sys_cpu = float(self.system.cpu_percent(None))
        sys_mem = float(self.system.virtual_memory().percent)
        gpu = self._gpu() if self._gpu is not None else ()
        reads, writes = self._io()
        agent = self.agent
        sample = ResourceSample(
            getattr(agent, "name", ""), self._run_id or getattr(agent, "run_id", ""), self.clock.monotonic(),
            proc_cpu, proc_mem, sys_cpu, sys_mem, self._running_states(), tuple(gpu), reads, writes,
        )
        self._buffer.append(sample)
        self._count += 1
        if agent is not None and agent.events.active:
            agent.events.publish(sample)
        return sample

    def _io(self) -> tuple[int, int]:
        """The process's cumulative read and write operations; (-1, -1) where not reported."""
        if not self._io_ok:
            return -1, -1
        try:
            counters = self.process.io_counters()
            return int(counters.read_count), int(counters.write_count)
        except Exception:  # no io_counters on this platform (macOS) or process object: stop asking
            self._io_ok = False
            return -1, -1

    # -- data --------------------------------------------------------------------------------
    def samples(self) -> list[dict[str, Any]]:
        """The buffered samples, oldest first, as plain records (one dict per sample)."""
        return [asdict(s) for s in self._buffer]

    def per_state(self) -> list[dict[str, Any]]:
        """Usage attributed to each state: averages and peaks over the samples taken while it ran.

        Concurrent states share a process, so each sample counts for every state running at
        that moment; ``exclusive_samples`` says how many were taken while it ran alone.
        """
        return attribute(self._buffer)

    def statistics(self) -> SamplerStatistics:
        """A frozen summary of the sampler's state."""
        last = self._buffer[-1] if self._buffer else None
        return SamplerStatistics(
            self.running, self.interval, self._count, len(self._buffer), self._buffer.maxlen or 0,
            None if last is None else last.process_cpu, None if last is None else last.process_memory_mb,
        )

    def __repr__(self) -> str:
        last = self._buffer[-1] if self._buffer else None
        now = "" if last is None else f" cpu={last.process_cpu:.1f}% rss={last.process_memory_mb:.1f}MB"
        who = getattr(self.agent, "name", None)
        return (f"<UsageSampler agent={who!r} interval={self.interval}s "
                f"{'running' if self.running else 'stopped'} samples={self._count}{now}>")


def attribute(samples: Any) -> list[dict[str, Any]]:
    """Per-state averages/peaks of process CPU and memory over ``ResourceSample`` records."""
    acc: dict[str, list[float]] = {}
    for s in samples:
        for name in s.running:
            a = acc.setdefault(name, [0, 0, 0.0, 0.0, 0.0, 0.0])
            a[0] += 1
            a[1] += len(s.running) == 1
            a[2] += s.process_cpu
            a[3] = max(a[3], s.process_cpu)
            a[4] += s.process_memory_mb
            a[5] = max(a[5], s.process_memory_mb)
    return [
        {
            "state": name, "samples": int(n), "exclusive_samples": int(alone),
            "avg_process_cpu": cpu / n, "max_process_cpu": cpu_max,
            "avg_process_memory_mb": mem / n, "max_process_memory_mb": mem_max,
        }
        for name, (n, alone, cpu, cpu_max, mem, mem_max) in sorted(acc.items())
    ]


_shared: weakref.WeakKeyDictionary[Any, tuple[UsageSampler, int]] = weakref.WeakKeyDictionary()


def acquire_shared(agent: Any, interval: float = 0.5) -> UsageSampler:
    """The one sampler attached to ``agent`` for shared use (monitors), created on first use.

    Several monitors watching one agent share it, so each sample is published once. Give it
    back with :func:`release_shared`.
    """
    entry = _shared.get(agent)
    if entry is None:
        sampler = UsageSampler(agent, interval)
        _shared[agent] = (sampler, 1)
        return sampler
    sampler, users = entry
    _shared[agent] = (sampler, users + 1)
    return sampler


def release_shared(agent: Any) -> None:
    """Give back a sampler from :func:`acquire_shared`; the last user closes it."""
    entry = _shared.get(agent)
    if entry is None:
        return
    sampler, users = entry
    if users <= 1:
        del _shared[agent]
        sampler.close()
    else:
        _shared[agent] = (sampler, users - 1)
