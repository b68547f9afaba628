"""What the Agent's coordination methods do (``add_state_rate_limit``, ``add_state_coordination``...).

Rate limits and primitives become *gates* of a state (``agent.add_gate``): the engine
passes them, in order, before the state runs and releases them afterwards, also on
failure or cancellation. Rate limits go first, so a state never holds a mutex while it
waits for its rate. Primitives belong to the agent, so they hold across all of its runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import StateNotFoundError
from ._barrier import Barrier
from ._coordinator import check_same_options
from ._primitives import Primitive, PrimitiveType
from ._rate_limit import RateLimiter, RateLimitStrategy

if TYPE_CHECKING:
    from .._agent import Agent


def _check_state_name(what: str, state: Any) -> None:
    if not isinstance(state, str) or not state:
        raise StateNotFoundError(f"{what}({state!r}): pass the state's name as a non-empty string")


def add_state_rate_limit(agent: Agent, state: str, max_rate: float, strategy: RateLimitStrategy | None = None,
                         burst_size: float | None = None, window_size: float | None = None,
                         name: str | None = None) -> RateLimiter:
    """See :meth:`Agent.add_state_rate_limit`."""
    _check_state_name("add_state_rate_limit", state)
    coord = agent.coordinator
    key = name or state
    existing = coord.rate_limiters.get(key)
    if existing is not None and name is not None:
        have = {"max_rate": existing.max_rate, "strategy": existing.strategy, "burst_size": existing.burst_size,
                "window_size": existing.window_size}
        want = {"max_rate": max_rate, "strategy": strategy, "burst_size": burst_size, "window_size": window_size}
        check_same_options(f"rate limit {name!r}", name, have, {k: v for k, v in want.items() if v is not None},
                           state)
        limiter = existing
    else:  # new, or a state's own limit set again: replaced
        limiter = RateLimiter(key, max_rate, strategy or RateLimitStrategy.TOKEN_BUCKET, burst_size,
                              1.0 if window_size is None else window_size, clock=coord.clock)
        coord.rate_limiters[key] = limiter
    gates = agent.gate_list(state)
    old = next((g for g in gates if isinstance(g, RateLimiter)), None)  # one rate limit per state
    if old is limiter:
        return limiter
    if old is not None:
        gates[gates.index(old)] = limiter
    else:
        gates.insert(0, limiter)
    return limiter


def add_state_coordination(agent: Agent, state: str, primitive_type: PrimitiveType, *, name: str | None = None,
                           **options: Any) -> Primitive:
    """See :meth:`Agent.add_state_coordination`."""
    _check_state_name("add_state_coordination", state)
    coord = agent.coordinator
    prim = coord.primitive(name or state, primitive_type, who=state, **options)
    gates = agent.gate_list(state)
    if prim not in gates:
        gates.append(prim)
    if isinstance(prim, Barrier):
        coord.attach_barrier(state, prim)
    return prim


def named_primitive(agent: Agent, name: str) -> Primitive:
    """See :meth:`Agent.coordination`."""
    prim = agent.coordinator.primitives.get(name)
    if prim is None:
        known = sorted(agent.coordinator.primitives)
        raise StateNotFoundError(
            f"agent has no coordination primitive {name!r} (known: {known}); add it with "
            f"agent.add_coordination({name!r}, PrimitiveType.MUTEX) or add_state_coordination")
    return prim
