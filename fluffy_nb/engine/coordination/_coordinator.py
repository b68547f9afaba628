"""The per-agent Coordinator: named primitives, rate limiters, the deadlock detector.

Also the spec's entry points ``create_coordinated_agent``/``enhance_agent`` and the in-state
``ResourceAllocation(name, amount)`` context manager.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError, CoordinationConflictError, CoordinationError
from .._events import RunStarted, StateFinished
from ._barrier import Barrier
from ._deadlock import DeadlockDetector
from ._primitives import Lease, Mutex, Primitive, PrimitiveType, Semaphore
from ._quota import Quota
from ._rate_limit import RateLimiter

if TYPE_CHECKING:
    from .._agent import Agent

# the options each kind of primitive takes (others are ignored when it is made, and when it is shared)
_OPTIONS: dict[PrimitiveType, tuple[str, ...]] = {
    PrimitiveType.MUTEX: ("ttl", "wait_timeout"),
    PrimitiveType.SEMAPHORE: ("max_count", "ttl", "wait_timeout"),
    PrimitiveType.LEASE: ("ttl", "wait_timeout"),
    PrimitiveType.BARRIER: ("max_count", "wait_timeout"),
    PrimitiveType.QUOTA: ("quota_limit", "ttl", "amount", "wait_timeout"),
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return bool(a == b)


def _fmt(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={getattr(v, 'name', None) or v!r}" for k, v in options.items())


def check_same_options(what: str, name: str, have: dict[str, Any], want: dict[str, Any], who: str | None) -> None:
    """Raise :class:`CoordinationConflictError` if ``want`` (options given now) differs from ``have``."""
    if all(_same(have.get(k), v) for k, v in want.items()):
        return
    asker = f"state {who!r}" if who else "this registration"
    raise CoordinationConflictError(
        f"{what} already exists with {_fmt(have)}; {asker} asks for {_fmt(want)}. States sharing a name share "
        "one of it and its options: pass the same options (or leave them out), or use another name",
        name, dict(have), dict(want))


# name -> primitive, newest first wins: lets ResourceAllocation("name", n) work without a context.
_by_name: weakref.WeakValueDictionary[str, Primitive] = weakref.WeakValueDictionary()


class Coordinator:
    """Everything coordination-related of one agent (``agent.coordinator``).

    Attributes:
        primitives: Primitives by name.
        rate_limiters: Rate limiters by name (the state's, or the ``name=`` states share).
        deadlock_detector: The :class:`DeadlockDetector` every Mutex/Semaphore/Lease reports to.
        cleanup_interval: Seconds between sweeps that drop holds of owners no longer running
            (a sweep happens at most this often, when status is read or a wait begins).
    """

    def __init__(self, agent: Agent) -> None:
        self._agent = weakref.ref(agent)
        self.clock = agent.clock
        self.primitives: dict[str, Primitive] = {}
        self.rate_limiters: dict[str, RateLimiter] = {}
        self.deadlock_detector = DeadlockDetector(agent.clock)
        self.cleanup_interval: float | None = 60.0
        self._last_cleanup = agent.clock.monotonic()
        self.cleaned = 0
        self._barrier_states: dict[str, list[Barrier]] = {}
        self._unsubscribe: Any = None

    # -- building ---------------------------------------------------------------------------
    def primitive(self, name: str, kind: PrimitiveType, *, ttl: float | None = None, max_count: int | None = None,
                  wait_timeout: float | None = None, quota_limit: float | None = None,
                  amount: float | None = None, who: str | None = None) -> Primitive:
        """The primitive called ``name``, made on first use; the same name shares one primitive.

        Options given again must match the existing primitive's (options left out take its
        values); otherwise :class:`CoordinationConflictError` names both option sets. ``who``
        (a state name) only improves that message.
        """
        try:
            kind = PrimitiveType(kind)
        except ValueError:
            raise ConfigurationError(f"coordination {name!r}: {kind!r} is not a PrimitiveType "
                                     f"({[k.name for k in PrimitiveType]})") from None
        existing = self.primitives.get(name)
        if existing is not None:
            if existing.kind is not kind:
                raise ConfigurationError(
                    f"coordination {name!r} is already a {existing.kind.name}; it cannot also be a {kind.name}. "
                    "Use another name (name=...) for a second primitive")
            asked = {"max_count": max_count, "ttl": ttl, "quota_limit": quota_limit, "amount": amount,
                     "wait_timeout": wait_timeout}
            options = _OPTIONS[kind]
            have = {o: getattr(existing, o, None) for o in options}
            want = {o: asked[o] for o in options if asked[o] is not None}
            check_same_options(f"coordination {name!r} ({kind.name})", name, have, want, who)
            return existing
        prim = self._build(name, kind, ttl, max_count, wait_timeout, quota_limit, amount)
        if isinstance(prim, Semaphore):
            prim.detector = _CleanupDetector(self)
        self.primitives[name] = prim
        _by_name[name] = prim
        return prim

    def _build(self, name: str, kind: PrimitiveType, ttl: float | None, max_count: int | None,
               wait_timeout: float | None, quota_limit: float | None, amount: float | None) -> Primitive:
        clock = self.clock
        if kind is PrimitiveType.MUTEX:
            return Mutex(name, ttl=ttl, wait_timeout=wait_timeout, clock=clock)
        if kind is PrimitiveType.SEMAPHORE:
            return Semaphore(name, 1 if max_count is None else max_count, ttl=ttl, wait_timeout=wait_timeout,
                             clock=clock)
        if kind is PrimitiveType.LEASE:
            return Lease(name, 60.0 if ttl is None else ttl, wait_timeout=wait_timeout, clock=clock)
        if kind is PrimitiveType.BARRIER:
            if max_count is None:
                raise ConfigurationError(f"coordination {name!r}: a BARRIER needs max_count (how many to wait for)")
            return Barrier(name, max_count, wait_timeout=wait_timeout, clock=clock)
        if quota_limit is None:
            raise ConfigurationError(f"coordination {name!r}: a QUOTA needs quota_limit (the budget per ttl)")
        return Quota(name, quota_limit, ttl=ttl, amount=1.0 if amount is None else amount,
                     wait_timeout=wait_timeout, clock=clock)

    def attach_barrier(self, state: str, barrier: Barrier) -> None:
        """Count routes into ``state`` as arrivals at ``barrier`` (see :class:`Barrier`)."""
        barriers = self._barrier_states.setdefault(state, [])
        if barrier not in barriers:
            barriers.append(barrier)
        if self._unsubscribe is None:
            agent = self._agent()
            if agent is not None:
                self._unsubscribe = agent.events.subscribe(self._on_event, types=(StateFinished, RunStarted))

    def _on_event(self, event: Any) -> None:
        if isinstance(event, StateFinished):
            for name in dict.fromkeys(event.next_states):
                for barrier in self._barrier_states.get(name, ()):
                    barrier.route(name)
        elif isinstance(event, RunStarted):
            for barriers in self._barrier_states.values():
                for barrier in barriers:
                    barrier.new_run()

    # -- maintenance -------------------------------------------------------------------------
    def cleanup(self, *, force: bool = True) -> int:
        """Drop holds whose owner is no longer running in the agent; returns how many.

        Holds taken by gates are always released by the engine; this catches holds taken
        in-state with ``acquire`` and never released. Expired TTL holds are dropped too.
        """
        now = self.clock.monotonic()
        if not force and (self.cleanup_interval is None or now - self._last_cleanup < self.cleanup_interval):
            return 0
        self._last_cleanup = now
        agent = self._agent()
        running: set[str] = set() if agent is None else agent.running_owners()
        waiting = self.deadlock_detector.waiting_owners()
        dropped = 0
        for prim in self.primitives.values():
            if isinstance(prim, Semaphore):
                prim.expire()
                for owner in list(prim.owners):
                    if owner not in running and owner not in waiting:
                        prim.release(owner)
                        dropped += 1
        self.cleaned += dropped
        return dropped

    def status(self) -> dict[str, Any]:
        """``{"primitives": {...}, "rate_limiters": {...}, "deadlock_detector": {...}}``."""
        self.cleanup(force=False)
        return {
            "primitives": {n: p.status() for n, p in self.primitives.items()},
            "rate_limiters": {n: r.status() for n, r in self.rate_limiters.items()},
            "deadlock_detector": self.deadlock_detector.status(),
            "cleanup_interval": self.cleanup_interval,
        }

    def reset(self) -> None:
        """Release every hold, fail every waiter, refill quotas, reset limiters and the detector."""
        for prim in self.primitives.values():
            prim.reset()
        for lim in self.rate_limiters.values():
            lim.reset()
        self.deadlock_detector.reset()

    def __repr__(self) -> str:
        return (f"<Coordinator primitives={sorted(self.primitives)} rate_limiters={sorted(self.rate_limiters)} "
                f"deadlocks={self.deadlock_detector.cycle_count}>")


class _CleanupDetector:
    """Forwards to the coordinator's detector (so it can be swapped) and runs due cleanups."""

    __slots__ = ("_coord",)

    def __init__(self, coord: Coordinator) -> None:
        self._coord = coord

    @property
    def detection_interval(self) -> float | None:
        return self._coord.deadlock_detector.detection_interval

    def begin_wait(self, owner: str, prim: Any) -> None:
        self._coord.deadlock_detector.begin_wait(owner, prim)

    def check(self, owner: str, prim: Any) -> None:
        if self._coord.cleanup(force=False):  # a leaked hold was dropped: the wait may be over
            return
        self._coord.deadlock_detector.check(owner, prim)

    def end_wait(self, owner: str) -> None:
        self._coord.deadlock_detector.end_wait(owner)


class ResourceAllocation:
    """Take ``amount`` of a named quota (or a hold of a mutex/semaphore/lease) inside a state.

    Example:
        >>> async def use_resource(ctx):
        ...     async with ResourceAllocation("shared_resource", 10.0, ctx):
        ...         ...  # use it
        ...     return "next_state"

    Args:
        name: The primitive's name (as given to ``add_state_coordination``).
        amount: How much of a quota to consume (ignored by mutex/semaphore/lease).
        context: The state's Context: names the owner and finds the agent. Without it the
            most recently created primitive of that name is used and the owner is ``name``.
    """

    def __init__(self, name: str, amount: float = 1.0, context: Any = None) -> None:
        self.name = name
        self.amount = amount
        self.context = context
        self.primitive: Primitive | None = None
        self.owner = ""

    def _find(self) -> Primitive:
        agent = getattr(self.context, "agent", None) if self.context is not None else None
        prim = None
        if agent is not None:
            prim = agent.coordinator.primitives.get(self.name)
        if prim is None:
            prim = _by_name.get(self.name)
        if prim is None:
            raise CoordinationError(
                f"ResourceAllocation({self.name!r}): no coordination primitive of that name; add it with "
                f"agent.add_state_coordination(state, PrimitiveType.QUOTA, quota_limit=..., name={self.name!r})")
        return prim

    async def __aenter__(self) -> ResourceAllocation:
        prim = self._find()
        self.owner = getattr(self.context, "state_name", "") or self.name
        if isinstance(prim, Quota):
            await prim.acquire(self.owner, self.amount)
        else:
            await prim.acquire(self.owner)
        self.primitive = prim
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.primitive is not None:
            self.primitive.release(self.owner)
            self.primitive = None

    def __repr__(self) -> str:
        return f"ResourceAllocation({self.name!r}, {self.amount!r}, held={self.primitive is not None})"


def enhance_agent(agent: Agent) -> Agent:
    """Enable coordination on ``agent`` (returns the same agent).

    Every :class:`Agent` already has the coordination methods; this makes sure its
    coordinator exists so ``agent.coordinator`` can be configured right away.
    """
    _ = agent.coordinator
    return agent


def create_coordinated_agent(name: str, **agent_kwargs: Any) -> Agent:
    """``Agent(name, **agent_kwargs)`` with coordination enabled."""
    from .._agent import Agent

    return enhance_agent(Agent(name, **agent_kwargs))
