"""Coordination methods of Agent (``add_state_rate_limit``, ``add_state_coordination``...)."""


class CoordinationMixin:
    """Coordination half of :class:`Agent` (filled in by issue 5)."""
