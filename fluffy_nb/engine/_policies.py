"""Per-state policies: retries and dependencies."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ._errors import ConfigurationError


def check_timeout(name: str, value: float | None) -> float | None:
    """Validate a timeout in seconds: None or a positive number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
        raise ConfigurationError(
            f"{name}={value!r}: a timeout must be a positive number of seconds (float('inf') for none) or None"
        )
    return float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how long apart, a failing state is tried again.

    The n-th retry waits ``min(max_delay, initial_delay * exponential_base ** (n - 1))``
    seconds, scaled by a random factor in [0.5, 1.0] when ``jitter`` is on.

    Example:
        >>> RetryPolicy(max_retries=3, initial_delay=1.0).delay(2, jitter=False)
        2.0
    """

    max_retries: int = 3
    initial_delay: float = 1.0
    max_delay: float = 60.0
    exponential_base: float = 2.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigurationError(
                f"RetryPolicy(max_retries={self.max_retries!r}): must be a whole number >= 0"
            )
        for name in ("initial_delay", "max_delay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
                raise ConfigurationError(f"RetryPolicy({name}={v!r}): must be a number of seconds >= 0")
        if self.max_delay < self.initial_delay:
            raise ConfigurationError(
                f"RetryPolicy(max_delay={self.max_delay!r}) is smaller than "
                f"initial_delay={self.initial_delay!r}; raise max_delay"
            )
        base = self.exponential_base
        if isinstance(base, bool) or not isinstance(base, (int, float)) or math.isnan(base) or base < 1:
            raise ConfigurationError(
                f"RetryPolicy(exponential_base={self.exponential_base!r}): must be >= 1"
            )
        retry_on = self.retry_on if isinstance(self.retry_on, tuple) else (self.retry_on,)
        bad = [r for r in retry_on if not (isinstance(r, type) and issubclass(r, BaseException))]
        if bad:
            raise ConfigurationError(
                f"RetryPolicy(retry_on={self.retry_on!r}): {bad[0]!r} is not an exception class; pass classes, "
                "e.g. retry_on=(ValueError, ConnectionError), not their names"
            )
        object.__setattr__(self, "retry_on", retry_on)

    def delay(self, retry: int, *, jitter: bool | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        base = min(self.max_delay, self.initial_delay * self.exponential_base ** max(0, retry - 1))
        if self.jitter if jitter is None else jitter:
            from random import uniform  # imported with the first jittered retry, not the engine

            base *= uniform(0.5, 1.0)
        return base

    def should_retry(self, error: BaseException, retries_done: int) -> bool:
        """Whether ``error`` after ``retries_done`` retries deserves another try."""
        return retries_done < self.max_retries and isinstance(error, self.retry_on)


class DependencyType(str, Enum):
    """How a state relates to another it depends on.

    REQUIRED: wait until the dependency completed successfully.
    OPTIONAL: wait for it only if it is scheduled or running in this run.
    PARALLEL: start it together with this state (if not running yet); do not wait.
    SEQUENTIAL: wait until it has finished, whatever the outcome, so the two never overlap.
    """

    REQUIRED = "required"
    OPTIONAL = "optional"
    PARALLEL = "parallel"
    SEQUENTIAL = "sequential"


class DependencyLifecycle(str, Enum):
    """ONCE: satisfied once, stays satisfied. PERIODIC: each completion of the dependency
    satisfies one run of the dependent state (it re-runs when the dependency runs again)."""

    ONCE = "once"
    PERIODIC = "periodic"


@dataclass(frozen=True)
class DependencyConfig:
    """A dependency with lifecycle, condition, expiry, interval and timeout.

    Args:
        type: The :class:`DependencyType`.
        lifecycle: ONCE or PERIODIC.
        condition: ``condition(agent) -> bool``; must also hold for the dependency to count.
            ``agent`` is a read-only view of the agent bound to the run being checked (a
            ``RunView``: ``get_state``, ``get_typed``, ``status``, ``completed_states``... read
            that run even when several runs of the agent are live, e.g. a child agent used by
            two parents; other attributes are the agent's).
            It is re-checked whenever the run's context changes (``set_state``,
            ``set_typed``...), when a state finishes, and every ``CONDITION_POLL`` (0.1) seconds
            for conditions that read the world outside the run.
        expiry: Seconds after which a completion no longer satisfies it.
        interval: PERIODIC only: minimum seconds between runs of the dependent state. A
            completion that arrives sooner is not dropped: the state runs once the interval
            has passed.
        timeout: Seconds to wait for the dependency to complete (at all) before failing with
            ``DependencyTimeoutError``, even when no other state keeps the run alive. Once
            it has completed, waiting for ``condition``, ``expiry`` or the next PERIODIC
            completion does not time out while other states run; when nothing else is left,
            a false ``condition`` is given ``timeout`` seconds to come true.

    A waiting state that nothing left in the run can let start (its dependency never ran
    and nothing will run it, its completion expired, its condition is false with no timeout)
    fails the run with ``DependencyNotSatisfiedError`` naming the state and the dependency,
    instead of ending "completed". A PERIODIC state that has run ends quietly.

    All times are measured on the agent's clock (``Agent(clock=ManualClock())`` in tests).
    """

    type: DependencyType = DependencyType.REQUIRED
    lifecycle: DependencyLifecycle = DependencyLifecycle.ONCE
    condition: Callable[[Any], bool] | None = None
    expiry: float | None = None
    interval: float | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.type, DependencyType):
            raise ConfigurationError(f"DependencyConfig(type={self.type!r}): use a DependencyType member")
        for name in ("expiry", "interval", "timeout"):
            check_timeout(f"DependencyConfig.{name}", getattr(self, name))


def normalize_dependencies(
    state: str, deps: dict[str, DependencyType | DependencyConfig] | list[str] | tuple[str, ...] | None
) -> dict[str, DependencyConfig]:
    """Turn the accepted spellings of ``dependencies=`` into ``{name: DependencyConfig}``."""
    if not deps:
        return {}
    if isinstance(deps, (list, tuple, set, frozenset)):
        deps = {d: DependencyType.REQUIRED for d in deps}
    if not isinstance(deps, dict):
        raise ConfigurationError(
            f"add_state({state!r}, dependencies={deps!r}): give a dict of name -> DependencyType "
            "or DependencyConfig, or a list of names"
        )
    out: dict[str, DependencyConfig] = {}
    for name, spec in deps.items():
        if isinstance(spec, DependencyConfig):
            out[name] = spec
        elif isinstance(spec, DependencyType):
            out[name] = DependencyConfig(type=spec)
        elif isinstance(spec, str) and spec.lower() in DependencyType._value2member_map_:
            out[name] = DependencyConfig(type=DependencyType(spec.lower()))
        else:
            raise ConfigurationError(
                f"add_state({state!r}): dependency {name!r} has {spec!r}; use a DependencyType "
                "(REQUIRED, OPTIONAL, PARALLEL, SEQUENTIAL) or a DependencyConfig"
            )
    return out


@dataclass
class StateSpec:
    """Everything the agent knows about a registered state.

    Read it; it cannot be changed after ``add_state`` (setting a field raises a
    ``ConfigurationError``): what a run needs from it (whether it runs inline, where failures
    route, the definition checks) is worked out when it is added, and a later change would be
    half seen. To change a state's options, ``remove_state`` it and ``add_state`` it again.
    """

    name: str
    func: Callable[..., Any]
    resources: Any = None
    dependencies: dict[str, DependencyConfig] = field(default_factory=dict)
    retry_policy: RetryPolicy | None = None
    timeout: float | None = None
    priority: int = 1
    max_retries: int | None = None
    next_hint: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    #: set by ``add_state``, read on every run: whether it runs inline (``_attempt.plain``), the
    #: states its failures route to, and whether an executor (``executor=``/``remote=``) runs it
    inline: bool = field(default=False, repr=False, compare=False)
    routes: tuple[str, ...] = field(default=(), repr=False, compare=False)
    offloaded: bool = field(default=False, repr=False, compare=False)

    def seal(self) -> None:
        """Fix every field (``add_state`` calls it once the spec is worked out): the spec becomes
        a :class:`SealedStateSpec`. (A class of its own, not a check in this class's
        ``__setattr__``: that ran for every field a new spec sets, 22% of ``add_state``.)"""
        self.__class__ = SealedStateSpec


class SealedStateSpec(StateSpec):
    """A :class:`StateSpec` once its state is added: setting a field raises ``ConfigurationError``."""

    def __setattr__(self, name: str, value: Any) -> None:
        raise ConfigurationError(
            f"StateSpec({self.name!r}).{name} = {value!r}: a state's options are fixed once it is added "
            f"(whether it runs inline, its routes and checks are worked out then); call "
            f"agent.remove_state({self.name!r}) and add_state it again with the new options")



def check_max_concurrent(value: Any) -> int | None:
    """Validate ``Agent(max_concurrent=...)``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"Agent(max_concurrent={value!r}): must be a whole number >= 1 or None")
    return value
