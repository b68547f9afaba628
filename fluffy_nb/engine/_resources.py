"""The pool that admits states against their resource requirements (``_requirements.py``).

A :class:`ResourcePool` holds finite amounts of CPU, memory, I/O, network and GPU. Before a
state with ``resources=ResourceRequirements(...)`` runs, the engine asks the pool for its
request; if it does not fit, the state is BLOCKED until it does. Waiting states are admitted
highest priority first (with aging, so a low priority is not starved forever); with
``enable_preemption`` a waiting state may cancel and requeue running states of lower priority
(every state may be preempted unless its requirements say ``preemptible=False``); with
``enable_quotas`` per-state or per-group caps apply (:meth:`set_quota`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

from ._errors import ConfigurationError, ResourceError
from ._requirements import PoolStatistics, ResourceRequirements, ResourceType, UsageStats

_TYPES = (ResourceType.CPU, ResourceType.MEMORY, ResourceType.IO, ResourceType.NETWORK, ResourceType.GPU)
_UNITS = {ResourceType.CPU: "CPU units", ResourceType.MEMORY: "MB of memory", ResourceType.IO: "I/O weight",
          ResourceType.NETWORK: "network weight", ResourceType.GPU: "GPU units"}
_IDX = {t: i for i, t in enumerate(_TYPES)}
# io_weight / network_weight are priorities in the spec ("I/O priority"), not capacities: they are
# counted in usage stats but never make a state wait; within a priority level, more weight goes first
_WEIGHTS = frozenset({_IDX[ResourceType.IO], _IDX[ResourceType.NETWORK]})
_EPS = 1e-9
Amounts = dict[int, float]  # internal: resource index (position in _TYPES) -> amount; int keys hash fast


class _Waiter:
    """A state waiting for the pool; ``rank`` orders admission (lowest first, ties by arrival)."""

    __slots__ = ("amounts", "future", "owner", "preemptible", "priority", "rank", "seq", "since", "weight")

    def __init__(self, owner: str, amounts: Amounts, priority: int, since: float, seq: int,
                 future: asyncio.Future[None], preemptible: bool) -> None:
        self.owner = owner
        self.amounts = amounts
        self.weight = sum(a for t, a in amounts.items() if t in _WEIGHTS)
        self.priority = priority
        self.since = since
        self.seq = seq
        self.future = future
        self.preemptible = preemptible
        self.rank = 0.0

    def __lt__(self, other: _Waiter) -> bool:
        return (self.rank, self.seq) < (other.rank, other.seq)


def _state_of(owner: str) -> str:
    return owner.split("#", 1)[0]


_MACHINE_HINT = (" (this is the agent's default pool, sized from this machine: give the agent your own, e.g. "
                 "Agent(resource_pool=ResourcePool(total_gpu=1)), or resource_pool=None not to enforce requirements)")


class ResourcePool:
    """Finite amounts of CPU, memory, I/O, network and GPU that states are admitted against.

    Args:
        total_cpu: CPU units (cores) in the pool.
        total_memory: Memory in MB.
        total_io: The I/O weight usage stats measure against (``utilization`` = running states'
            ``io_weight`` sum / this). Weights never make a state wait.
        total_network: The same for ``network_weight``.
        total_gpu: GPU units.
        enable_preemption: A waiting state may cancel and requeue running states of lower
            priority (unless their requirements say ``preemptible=False``); the preempted state
            runs again from its start once it is admitted again.
        enable_quotas: Apply the caps set with :meth:`set_quota`.
        aging_interval: A waiting state gains one priority level per this many seconds of
            waiting, so low priorities are not starved forever (None: no aging).
        clock: Time source for waits and aging (default: the agent's clock once bound).

    Example:
        >>> pool = ResourcePool(total_cpu=8.0, total_memory=16384, enable_preemption=True)
        >>> # agent = Agent("train", resource_pool=pool)
    """

    def __init__(
        self,
        total_cpu: float = 4.0,
        total_memory: float = 8192.0,
        total_io: float = 100.0,
        total_network: float = 100.0,
        total_gpu: float = 0.0,
        enable_preemption: bool = False,
        enable_quotas: bool = False,
        *,
        aging_interval: float | None = 10.0,
        clock: Any = None,
    ) -> None:
        totals = (total_cpu, total_memory, total_io, total_network, total_gpu)
        for label, v in zip(("total_cpu", "total_memory", "total_io", "total_network", "total_gpu"), totals,
                            strict=True):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigurationError(f"ResourcePool({label}={v!r}): must be a number >= 0")
        if aging_interval is not None and not aging_interval > 0:
            raise ConfigurationError(f"ResourcePool(aging_interval={aging_interval!r}): must be > 0 or None")
        self._total = [float(v) for v in totals]
        self._used = [0.0] * len(_TYPES)
        # what admission checks against: the totals, except weights, which never block
        self._limits = [float("inf") if i in _WEIGHTS else t + _EPS for i, t in enumerate(self._total)]
        self._peak = [0.0] * len(_TYPES)
        self.enable_preemption = enable_preemption
        self.enable_quotas = enable_quotas
        self.aging_interval = aging_interval
        self.clock = clock
        self._allocations: dict[str, Amounts] = {}
        self._holders: dict[str, tuple[int, bool]] = {}  # owner -> (priority, preemptible)
        # a heap by rank: admission needs the head only, so a release or arrival does not
        # re-sort every waiter (10,000 states waiting at a small pool took minutes)
        self._waiters: list[_Waiter] = []
        self._n_waiting = 0  # live waiters (cancelled ones stay in the heap until they surface)
        self._ranked_with: float | None = None  # the aging_interval the ranks were computed with
        self._quotas: dict[str, Amounts] = {}
        self._preempting: set[str] = set()
        self._preempt: Any = None
        self._amount_cache: dict[int, tuple[ResourceRequirements, Amounts]] = {}
        self._seq = itertools.count()
        self.reset_statistics()

    #: True for the pool an agent makes by default (``from_machine``): errors then say how to change it
    sized_from_machine = False

    @classmethod
    def from_machine(cls, **kwargs: Any) -> ResourcePool:
        """A pool sized from this machine: logical CPUs, total memory (MB), and NVML GPUs if any.

        Keyword arguments override the measured totals (e.g. ``total_io=50``) or set options.
        """
        import psutil

        sizes: dict[str, Any] = {
            "total_cpu": float(psutil.cpu_count(logical=True) or 1),
            "total_memory": psutil.virtual_memory().total / 2**20,
            "total_gpu": float(_gpu_count()),
        }
        sizes.update(kwargs)
        pool = cls(**sizes)
        pool.sized_from_machine = True
        return pool

    def reset_statistics(self) -> None:
        """Zero the counters :meth:`statistics` reports."""
        self._admitted = self._at_once = self._waited = self._preemptions = self._rejected = 0
        self._peak_waiting = 0
        self._wait_total = self._wait_max = 0.0

    # -- quotas ---------------------------------------------------------------------------------
    def set_quota(self, state_or_prefix: str, resource: ResourceType, amount: float) -> None:
        """Cap what a state, or a group of states, may hold at once (needs ``enable_quotas``).

        Args:
            state_or_prefix: A state name, or a prefix: the cap applies to the sum held by
                every state whose name starts with it (``"chunk_"`` covers ``chunk_0``...).
            resource: A single :class:`ResourceType` (e.g. ``ResourceType.GPU``).
            amount: The cap, in that resource's units.
        """
        if resource not in _TYPES:
            raise ConfigurationError(f"set_quota({state_or_prefix!r}, {resource!r}): pass one ResourceType, "
                                     "e.g. ResourceType.CPU")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
            raise ConfigurationError(f"set_quota({state_or_prefix!r}, amount={amount!r}): must be a number >= 0")
        if not self.enable_quotas:
            raise ConfigurationError(f"set_quota({state_or_prefix!r}): this pool was made without "
                                     "enable_quotas=True, so quotas would not apply")
        self._quotas.setdefault(state_or_prefix, {})[_IDX[resource]] = float(amount)

    def get_quotas(self) -> dict[str, dict[ResourceType, float]]:
        """The caps set with :meth:`set_quota`."""
        return {k: {_TYPES[i]: a for i, a in v.items()} for k, v in self._quotas.items()}

    @property
    def totals(self) -> dict[ResourceType, float]:
        """The pool's size per resource type."""
        return dict(zip(_TYPES, self._total, strict=True))

    @property
    def used(self) -> dict[ResourceType, float]:
        """What admitted states hold now, per resource type."""
        return dict(zip(_TYPES, self._used, strict=True))

    def _quota_ok(self, owner: str, amounts: Amounts) -> bool:
        state = _state_of(owner)
        for key, caps in self._quotas.items():
            if not state.startswith(key):
                continue
            for t, cap in caps.items():
                want = amounts.get(t, 0.0)
                if not want:
                    continue
                held = sum(a.get(t, 0.0) for o, a in self._allocations.items() if _state_of(o).startswith(key))
                if held + want > cap + _EPS:
                    return False
        return True

    # -- admission ------------------------------------------------------------------------------
    def _amounts(self, req: ResourceRequirements) -> Amounts:
        hit = self._amount_cache.get(id(req))
        if hit is not None and hit[0] is req:
            return hit[1]
        amounts = {_IDX[t]: a for t, a in req.amounts().items()}
        if len(self._amount_cache) > 4096:
            self._amount_cache.clear()
        self._amount_cache[id(req)] = (req, amounts)
        return amounts

    def check(self, state: str, req: ResourceRequirements) -> None:
        """Raise ``ResourceError`` if ``req`` could never fit in this pool (or in its quota)."""
        for i, amount in self._amounts(req).items():
            rtype, total = _TYPES[i], self._total[i]
            if amount > self._limits[i]:
                self._rejected += 1
                raise ResourceError(
                    f"state {state!r} asks for {amount:g} {_UNITS[rtype]} ({rtype.name}) but the pool has "
                    f"only {total:g} in total; lower the state's ResourceRequirements or enlarge the ResourcePool"
                    + (_MACHINE_HINT if self.sized_from_machine else "")
                )
            if self.enable_quotas:
                for key, caps in self._quotas.items():
                    cap = caps.get(i)
                    if cap is not None and state.startswith(key) and amount > cap + _EPS:
                        self._rejected += 1
                        raise ResourceError(
                            f"state {state!r} asks for {amount:g} {_UNITS[rtype]} ({rtype.name}) but its quota "
                            f"{key!r} allows only {cap:g}; lower the request or raise the quota"
                        )

    def _fits(self, amounts: Amounts) -> bool:
        used, limits = self._used, self._limits
        for t, a in amounts.items():
            if used[t] + a > limits[t]:
                return False
        return True

    def _take(self, owner: str, amounts: Amounts, priority: int, preemptible: bool) -> None:
        used, peak = self._used, self._peak
        for t, a in amounts.items():
            u = used[t] + a
            used[t] = u
            if u > peak[t]:
                peak[t] = u
        self._allocations[owner] = amounts
        self._holders[owner] = (priority, preemptible)
        self._admitted += 1

    def try_acquire(self, owner: str, req: ResourceRequirements) -> bool:
        """Take ``req`` for ``owner`` if it fits now and nobody waits ahead of it; never waits.

        Waiters held back only by their own quota are not ahead of anyone (see :meth:`_schedule`).
        """
        if self._waiters and not (self.enable_quotas and all(self._fits(w.amounts) for w in self._waiters)):
            return False
        amounts = self._amounts(req)
        if not self._fits(amounts) or (self._quotas and self.enable_quotas and not self._quota_ok(owner, amounts)):
            return False
        self._take(owner, amounts, req.priority, req.preemptible)
        self._at_once += 1
        return True

    async def acquire(self, owner: str, req: ResourceRequirements, priority: int | None = None) -> None:
        """Wait until ``req`` fits (and every state ahead of it was admitted), then take it.

        Args:
            owner: Who holds the allocation (the state name).
            req: What to take.
            priority: Admission priority (default: ``req.priority``); higher goes first.
        """
        if self.try_acquire(owner, req):
            return
        prio = int(req.priority if priority is None else priority)
        loop = asyncio.get_running_loop()
        w = _Waiter(owner, self._amounts(req), prio, self._now(), next(self._seq), loop.create_future(),
                    req.preemptible)
        w.rank = self._rank(w)
        heapq.heappush(self._waiters, w)
        self._n_waiting += 1
        self._peak_waiting = max(self._peak_waiting, self._n_waiting)
        self._waited += 1
        try:
            self._schedule()
            if not w.future.done():
                # aging needs no timer: ranks are recomputed from waiting times whenever
                # room appears (a release) or a state arrives, the only moments they matter
                await asyncio.shield(w.future)
        except BaseException:
            if not w.future.done():  # still waiting: leave the heap lazily, skipped when it surfaces
                w.future.cancel()
                self._n_waiting -= 1
                self._schedule()
            elif not w.future.cancelled():
                self.release(owner)  # admitted just as we were cancelled
            raise
        waited = self._now() - w.since
        self._wait_total += waited
        self._wait_max = max(self._wait_max, waited)

    def _now(self) -> float:
        if self.clock is None:
            return asyncio.get_running_loop().time()
        return self.clock.monotonic()

    def _rank(self, w: _Waiter) -> float:
        """Admission order, lowest first: (aged) priority, with I/O + network weight as a head start.

        The aged priority p + (now - since) / aging is, at every ``now``, ordered like
        p - since / aging, so a waiter's rank is fixed when it arrives and a heap keeps the order.
        The weight adds less than half a level (w / (w + 1) / 2): among states of one priority
        that arrive together the heavier goes first, and it never outranks a higher priority.
        """
        aging = self.aging_interval
        head_start = w.weight / (w.weight + 1.0) / 2 if w.weight > 0 else 0.0
        base = -float(w.priority) if aging is None else w.since / aging - w.priority
        return base - head_start

    def _schedule(self) -> None:
        """Admit waiters in :meth:`_rank` order.

        The first that does not fit the pool blocks the rest (so a big request is not starved by
        small ones); one held back only by its own quota does not: unrelated states go past it.
        """
        waiters = self._waiters
        if not waiters:
            return
        if self.aging_interval != self._ranked_with:  # set before any waiter, or changed since
            self._ranked_with = self.aging_interval
            for w in waiters:
                w.rank = self._rank(w)
            heapq.heapify(waiters)
        quotas = bool(self._quotas) and self.enable_quotas
        over_quota: list[_Waiter] = []
        while waiters:
            head = waiters[0]
            if head.future.done():
                heapq.heappop(waiters)
                continue
            if not self._fits(head.amounts):
                if self.enable_preemption:
                    self._preempt_for(head)
                break
            heapq.heappop(waiters)
            if quotas and not self._quota_ok(head.owner, head.amounts):
                over_quota.append(head)  # set aside: the states behind it may go
                continue
            self._n_waiting -= 1
            self._take(head.owner, head.amounts, head.priority, head.preemptible)
            head.future.set_result(None)
        for w in over_quota:
            heapq.heappush(waiters, w)

    def _preempt_for(self, head: _Waiter) -> None:
        """Cancel running preemptible states of lower priority if that makes ``head`` fit."""
        if self._preempt is None:
            return
        freed = [0.0] * len(_TYPES)
        for owner in self._preempting:
            for t, a in self._allocations.get(owner, {}).items():
                freed[t] += a
        if all(self._used[t] - freed[t] + a <= self._limits[t] for t, a in head.amounts.items()):
            return  # enough is already being freed
        victims = sorted(
            (o for o, (p, pre) in self._holders.items() if pre and p < head.priority and o not in self._preempting),
            key=lambda o: (self._holders[o][0], -list(self._allocations).index(o)),
        )
        chosen = []
        for owner in victims:
            if not any(self._allocations[owner].get(t, 0.0) for t in head.amounts if t not in _WEIGHTS):
                continue
            chosen.append(owner)
            for t, a in self._allocations[owner].items():
                freed[t] += a
            if all(self._used[t] - freed[t] + a <= self._limits[t] for t, a in head.amounts.items()):
                break
        else:
            return  # even preempting every candidate would not make room
        for owner in chosen:
            if self._preempt(owner):
                self._preempting.add(owner)
                self._preemptions += 1

    def release(self, owner: str) -> None:
        """Give back what ``owner`` holds and admit whoever fits now (no-op if nothing)."""
        amounts = self._allocations.pop(owner, None)
        if amounts is None:
            return
        self._holders.pop(owner, None)
        self._preempting.discard(owner)
        used = self._used
        for t, a in amounts.items():
            u = used[t] - a
            used[t] = u if u > 0.0 else 0.0
        if self._waiters:
            self._schedule()

    def bind_preemption(self, callback: Any) -> None:
        """Called by the agent: ``callback(owner) -> bool`` cancels and requeues a running state.

        The pool also adopts the agent's clock (for aging) unless it was given one.
        """
        self._preempt = callback
        if self.clock is None:
            self.clock = getattr(getattr(callback, "__self__", None), "clock", None)

    # -- inspection -----------------------------------------------------------------------------
    def get_usage_stats(self) -> dict[ResourceType, UsageStats]:
        """Usage per resource type: total, current, peak, available, utilization, waiting."""
        out = {}
        for i, t in enumerate(_TYPES):
            total, used = self._total[i], self._used[i]
            out[t] = UsageStats(
                total=total, current_usage=used, peak_usage=self._peak[i], available=max(0.0, total - used),
                utilization=(used / total) if total else 0.0,
                waiting=sum(1 for w in self._waiters if i in w.amounts and not w.future.done()),
            )
        return out

    def get_state_allocations(self) -> dict[str, dict[ResourceType, float]]:
        """What each admitted state holds right now."""
        return {k: {_TYPES[i]: a for i, a in v.items()} for k, v in self._allocations.items()}

    def shortfall(self, req: ResourceRequirements) -> dict[ResourceType, tuple[float, float]]:
        """For each resource ``req`` asks more of than is free now: ``(wanted, free)``."""
        free = {t: total - used for (t, total), used in zip(self.totals.items(), self._used, strict=True)}
        out = {}
        for t, want in req.amounts().items():
            if want and want > free.get(t, 0.0) + _EPS and _IDX[t] not in _WEIGHTS:
                out[t] = (want, max(0.0, free.get(t, 0.0)))
        return out

    def holders_of(self, types: Any) -> list[str]:
        """States holding any of the resource ``types`` now (owner names), by amount held."""
        wanted = set(types)
        held = [(sum(a for t, a in alloc.items() if t in wanted), owner)
                for owner, alloc in self.get_state_allocations().items()]
        return [owner for amount, owner in sorted(held, reverse=True) if amount > 0]

    def get_waiting_states(self) -> list[str]:
        """States waiting for the pool, in the order they would be admitted."""
        return [w.owner for w in sorted(self._waiters) if not w.future.done()]

    def statistics(self) -> PoolStatistics:
        """Counters since the pool was made: admissions, waits, preemptions, wait times."""
        return PoolStatistics(
            admitted=self._admitted, admitted_at_once=self._at_once, waited=self._waited,
            waiting=self._n_waiting, running=len(self._allocations), peak_waiting=self._peak_waiting,
            preemptions=self._preemptions, rejected=self._rejected, total_wait_time=self._wait_total,
            max_wait_time=self._wait_max,
        )

    def __repr__(self) -> str:
        parts = []
        for i, t in enumerate(_TYPES):
            if self._total[i] or self._used[i]:
                parts.append(f"{t.name}={self._used[i]:g}/{self._total[i]:g}")
        flags = "".join([" preemption" if self.enable_preemption else "", " quotas" if self.enable_quotas else ""])
        return (f"<ResourcePool {' '.join(parts)} running={len(self._allocations)} "
                f"waiting={self._n_waiting}{flags}>")


def _gpu_count() -> int:
    """GPUs NVML reports, or 0 when NVML (``pynvml``) is not installed or finds no driver."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver / no device: treat as no GPU
        return 0
