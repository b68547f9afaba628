"""Coordination methods of Agent (``add_state_rate_limit``, ``add_state_coordination``...).

Rate limits and primitives become *gates* of a state (``agent.add_gate``): the engine
passes them, in order, before the state runs and releases them afterwards, also on
failure or cancellation. Rate limits go first, so a state never holds a mutex while it
waits for its rate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import StateNotFoundError
from ._barrier import Barrier
from ._primitives import Primitive, PrimitiveType
from ._rate_limit import RateLimiter, RateLimitStrategy

if TYPE_CHECKING:
    from ._coordinator import Coordinator


class CoordinationMixin:
    """Coordination half of :class:`Agent`."""

    _gates: dict[str, list[Any]]

    @property
    def _coordinator(self) -> Coordinator:
        """This agent's :class:`Coordinator` (made on first use)."""
        coord = self.__dict__.get("_coordination")
        if coord is None:
            from ._coordinator import Coordinator

            coord = self.__dict__["_coordination"] = Coordinator(self)  # type: ignore[arg-type]
        return coord

    def add_state_rate_limit(
        self,
        state: str,
        max_rate: float,
        strategy: RateLimitStrategy = RateLimitStrategy.TOKEN_BUCKET,
        burst_size: float | None = None,
        window_size: float = 1.0,
    ) -> RateLimiter:
        """Admit at most ``max_rate`` runs per second of ``state``.

        May be called before or after ``add_state``. Calling it again for the same state
        replaces the earlier limit.

        Args:
            state: The state's name.
            max_rate: Runs per second.
            strategy: TOKEN_BUCKET, SLIDING_WINDOW, LEAKY_BUCKET or FIXED_WINDOW.
            burst_size: Bucket capacity (token bucket default: one second's worth).
            window_size: Window seconds for the window strategies (limit per window is
                ``max_rate * window_size``).

        Returns:
            The :class:`RateLimiter` (inspect it with ``statistics()``).
        """
        self._check_state_name("add_state_rate_limit", state)
        coord = self._coordinator
        limiter = RateLimiter(state, max_rate, strategy, burst_size, window_size, clock=coord.clock)
        gates = self._gates.setdefault(state, [])
        old = coord.rate_limiters.get(state)
        if old is not None and old in gates:
            gates[gates.index(old)] = limiter
        else:
            at = sum(1 for g in gates if isinstance(g, RateLimiter))
            gates.insert(at, limiter)
        coord.rate_limiters[state] = limiter
        return limiter

    def add_state_coordination(
        self,
        state: str,
        primitive_type: PrimitiveType,
        ttl: float | None = None,
        max_count: int | None = None,
        wait_timeout: float | None = None,
        quota_limit: float | None = None,
        *,
        name: str | None = None,
        amount: float | None = None,
    ) -> Primitive:
        """Make ``state`` pass a coordination primitive before each run.

        Args:
            state: The state's name.
            primitive_type: MUTEX, SEMAPHORE, BARRIER, LEASE or QUOTA.
            ttl: MUTEX/SEMAPHORE: a hold auto-expires after this long; LEASE: the lease
                length (default 60s); QUOTA: the budget resets this often.
            max_count: SEMAPHORE: concurrent holders; BARRIER: arrivals to wait for.
            wait_timeout: Give up waiting with ``CoordinationError`` after this long.
            quota_limit: QUOTA: the budget per ``ttl``.
            name: The primitive's name (default: the state's). States given the same name
                share one primitive, e.g. a mutex around one database.
            amount: QUOTA: how much each run consumes (default 1).

        Returns:
            The primitive (use ``statistics()``, ``status()``, or ``hold(ctx)`` in-state).
        """
        self._check_state_name("add_state_coordination", state)
        prim = self._coordinator.primitive(
            name or state, primitive_type, ttl=ttl, max_count=max_count, wait_timeout=wait_timeout,
            quota_limit=quota_limit, amount=amount,
        )
        gates = self._gates.setdefault(state, [])
        if prim not in gates:
            gates.append(prim)
        if isinstance(prim, Barrier):
            self._coordinator.attach_barrier(state, prim)
        return prim

    def coordination(self, name: str) -> Primitive:
        """The primitive called ``name``, e.g. ``async with agent.coordination("db").hold(ctx):``.

        Raises:
            StateNotFoundError: no primitive of that name (add it with add_state_coordination
                or :meth:`add_coordination`).
        """
        prim = self._coordinator.primitives.get(name)
        if prim is None:
            known = sorted(self._coordinator.primitives)
            raise StateNotFoundError(
                f"agent has no coordination primitive {name!r} (known: {known}); add it with "
                f"agent.add_coordination({name!r}, PrimitiveType.MUTEX) or add_state_coordination")
        return prim

    def add_coordination(self, name: str, primitive_type: PrimitiveType, **options: Any) -> Primitive:
        """Make a named primitive not attached to any state, for in-state use with ``hold(ctx)``.

        ``options`` are those of :meth:`add_state_coordination` (ttl, max_count, wait_timeout,
        quota_limit, amount).
        """
        return self._coordinator.primitive(name, primitive_type, **options)

    async def get_coordination_status(self) -> dict[str, Any]:
        """``{"primitives": {name: {"state", "owners", "wait_count", ...}}, "rate_limiters": {...},
        "deadlock_detector": {"cycle_count", "cycles", ...}}``."""
        return self._coordinator.status()

    async def reset_coordination(self) -> None:
        """Release every hold, fail every waiter, refill quotas, reset rate limiters and the detector."""
        self._coordinator.reset()

    def _check_state_name(self, what: str, state: Any) -> None:
        if not isinstance(state, str) or not state:
            raise StateNotFoundError(f"{what}({state!r}): pass the state's name as a non-empty string")
