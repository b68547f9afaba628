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
from ._primitives import Primitive, PrimitiveType
from ._rate_limit import RateLimiter, RateLimitStrategy

if TYPE_CHECKING:
    from .._agent import Agent


def _check_state_name(what: str, state: Any) -> None:
    if not isinstance(state, str) or not state:
        raise StateNotFoundError(f"{what}({state!r}): pass the state's name as a non-empty string")


def add_state_rate_limit(agent: Agent, state: str, max_rate: float,
                         strategy: RateLimitStrategy = RateLimitStrategy.TOKEN_BUCKET,
                         burst_size: float | None = None, window_size: float = 1.0) -> RateLimiter:
    """See :meth:`Agent.add_state_rate_limit`."""
    _check_state_name("add_state_rate_limit", state)
    coord = agent.coordinator
    limiter = RateLimiter(state, max_rate, strategy, burst_size, window_size, clock=coord.clock)
    gates = agent.gate_list(state)
    old = coord.rate_limiters.get(state)
    if old is not None and old in gates:
        gates[gates.index(old)] = limiter
    else:
        at = sum(1 for g in gates if isinstance(g, RateLimiter))
        gates.insert(at, limiter)
    coord.rate_limiters[state] = limiter
    return limiter


def add_state_coordination(agent: Agent, state: str, primitive_type: PrimitiveType, *, name: str | None = None,
                           **options: Any) -> Primitive:
    """See :meth:`Agent.add_state_coordination`."""
    _check_state_name("add_state_coordination", state)
    coord = agent.coordinator
    prim = coord.primitive(name or state, primitive_type, **options)
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
