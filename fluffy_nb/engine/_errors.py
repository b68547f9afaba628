"""The FluffyError hierarchy: every error the engine raises on purpose.

Each error names what was wrong (the state, parameter or value) and says how to fix it.
"""

from __future__ import annotations


class FluffyError(Exception):
    """Base class of every error fluffy_nb raises on purpose."""


class ConfigurationError(FluffyError, ValueError):
    """A parameter was given a value it cannot take (negative timeout, bad retry policy...)."""


class StateNotFoundError(FluffyError, KeyError):
    """A state name was used that the agent does not have."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class DuplicateStateError(FluffyError, ValueError):
    """A state was added twice under the same name."""


class InvalidStateResultError(FluffyError, TypeError):
    """A state returned something that is not a state name, a list of names, or None."""


class DependencyCycleError(FluffyError, ValueError):
    """The declared dependencies form a cycle, so no state in it could ever start."""

    def __init__(self, message: str, cycle: list[str]) -> None:
        super().__init__(message)
        self.cycle = cycle


class DependencyTimeoutError(FluffyError, TimeoutError):
    """A state waited longer than its dependency's ``timeout`` for that dependency."""


class DependencyNotSatisfiedError(FluffyError, RuntimeError):
    """A state waits for a dependency that nothing left in the run can satisfy, so the run
    fails instead of ending "completed" with the state silently cancelled.

    Attributes:
        state: The waiting state.
        dependency: The dependency it waits for.
    """

    def __init__(self, message: str, state: str, dependency: str) -> None:
        super().__init__(message)
        self.state = state
        self.dependency = dependency


class MaxStepsExceededError(FluffyError, RuntimeError):
    """The run executed more states than ``max_steps`` allows: most likely an endless loop."""


class AgentRunningError(FluffyError, RuntimeError):
    """An operation that needs an idle agent was attempted while it runs (or the reverse)."""


class StateFailedError(FluffyError, RuntimeError):
    """A state failed for good (retries exhausted); the original exception is chained."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


class StateTimeoutError(FluffyError, TimeoutError):
    """A state ran longer than its timeout."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


class RoutedError(FluffyError, RuntimeError):
    """The failure that routed a branch (``on_error``), as a run restored from a checkpoint reads it
    in ``ctx.last_error`` when its class was not a built-in one: ``type_name`` is that class's name."""

    def __init__(self, message: str, type_name: str) -> None:
        super().__init__(message)
        self.type_name = type_name


class RunTimeoutError(FluffyError, TimeoutError):
    """The whole run exceeded ``run(timeout=...)``."""


class TypedDataError(FluffyError, TypeError):
    """Typed context data was missing or of another type than asked for."""


class CheckpointError(FluffyError, ValueError):
    """A checkpoint could not be made, read or restored."""


class SerializationError(CheckpointError, TypeError):
    """A context value cannot be stored as JSON; the message names the key."""


class ResourceError(FluffyError, ValueError):
    """A resource request can never be satisfied by the pool."""


class CoordinationError(FluffyError, RuntimeError):
    """A coordination primitive could not be acquired (timeout, deadlock, quota)."""


class CoordinationConflictError(ConfigurationError):
    """A shared rate limit or primitive was registered again with other options.

    ``existing`` and ``requested`` hold both option sets; states sharing a name share one
    limiter or primitive, so its options must agree (options left out take the existing ones).
    """

    def __init__(self, message: str, name: str, existing: dict[str, object], requested: dict[str, object]) -> None:
        super().__init__(message)
        self.name = name
        self.existing = existing
        self.requested = requested


class DeadlockError(CoordinationError):
    """States wait for each other in a cycle; ``cycle`` lists them."""

    def __init__(self, message: str, cycle: list[str]) -> None:
        super().__init__(message)
        self.cycle = cycle


class HumanInputError(FluffyError, RuntimeError):
    """A human-in-the-loop request could not be answered."""


class HumanTimeoutError(HumanInputError, TimeoutError):
    """Nobody answered a human-in-the-loop request in time and there was no default."""


class BlockingRunError(FluffyError, RuntimeError):
    """A blocking call (``run_sync``) would have to wait for a person inside a running loop."""


class FluffyWarning(UserWarning):
    """Warnings fluffy_nb issues (tests turn them into errors)."""
