"""RunView: what a dependency condition receives, the agent's read API bound to ONE run.

The spec's condition takes the agent (``condition=lambda agent: agent.get_state("ready")``), but
``Agent.get_state`` and friends read the agent's *latest* run. When several runs of one agent are
live at once (a child agent used by two parents, or ``agent.start()`` twice) the latest run is
not the run whose state is waiting. :class:`RunView` answers the same reads from the run the
condition is checked for; anything else (the definition: ``states``, ``graph``, custom attributes
of an ``Agent`` subclass...) is read from the agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._agent import Agent
    from ._context import Context
    from ._run import Run
    from ._state import StateMetadata
    from ._status import AgentStatus

T = TypeVar("T")


class RunView:
    """The agent as one run of it sees it: ``get_state``, ``get_typed``, ``status``, ``run_id``,
    ``context``, ``state_metadata``, ``completed_states``, ``completion_counts`` read that run;
    other attributes are the agent's. Read-only: a condition that sets values would re-trigger
    itself (set them in a state).

    Args:
        run: The run the condition is checked for.
    """

    __slots__ = ("_run",)

    def __init__(self, run: Run) -> None:
        self._run = run

    @property
    def agent(self) -> Agent:
        """The agent (the definition) of the run."""
        return self._run.agent

    @property
    def run(self) -> Run:
        """The run this view reads."""
        return self._run

    @property
    def name(self) -> str:
        """The agent's name."""
        return self._run.agent.name

    @property
    def run_id(self) -> str:
        """This run's id."""
        return self._run.run_id

    @property
    def status(self) -> AgentStatus:
        """This run's status."""
        return self._run.status

    @property
    def context(self) -> Context:
        """A context over this run's data."""
        return self._run.context

    @property
    def state_metadata(self) -> dict[str, StateMetadata]:
        """Per-state status, attempts and timings of this run."""
        return self._run.metadata

    @property
    def completed_states(self) -> list[str]:
        """States this run completed, in first-completion order."""
        return list(self._run.completed_states)

    @property
    def completion_counts(self) -> dict[str, int]:
        """How often each state completed in this run."""
        return dict(self._run.completion_counts)

    def get_state(self, key: str, default: Any = None) -> Any:
        """A shared value of this run (``default`` if it has none)."""
        return self._run.shared.get(key, default)

    def get_typed(self, key: str, expected_type: type[T]) -> T:
        """A typed value of this run, checked against ``expected_type`` (see ``Context.get_typed``)."""
        return self._run.context.get_typed(key, expected_type)

    def set_state(self, key: str, value: Any) -> None:
        """Refused: a dependency condition only reads the run."""
        raise ConfigurationError(
            f"set_state({key!r}) in a dependency condition of agent {self.name!r}: a condition only reads the run "
            "(it is re-checked whenever the context changes); set the value in a state instead"
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run.agent, name)

    def __repr__(self) -> str:
        return f"<RunView of run {self._run.run_id[:8]} of {self._run.agent.name!r}>"
