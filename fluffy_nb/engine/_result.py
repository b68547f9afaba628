"""RunResult: what ``Agent.run()`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._context import Context
from ._hooks import mimebundle
from ._status import AgentStatus

T = TypeVar("T")


@dataclass
class RunResult:
    """The outcome of a run: status, final shared and typed data, completed states."""

    agent_name: str
    run_id: str
    status: AgentStatus
    shared_state: dict[str, Any]
    typed_data: dict[str, Any]
    completed_states: list[str]
    duration: float
    steps: int
    state_runs: dict[str, int] = field(default_factory=dict)

    @property
    def context(self) -> Context:
        """The final data as a :class:`Context`."""
        return Context(self.shared_state, self.typed_data, run_id=self.run_id)

    def get_state(self, key: str, default: Any = None) -> Any:
        """A final shared value."""
        return self.shared_state.get(key, default)

    def get_typed(self, key: str, expected_type: type[T]) -> T:
        """A final typed value, type-checked."""
        return self.context.get_typed(key, expected_type)

    def __getitem__(self, key: str) -> Any:
        return self.shared_state[key]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        return (
            f"<RunResult {self.agent_name!r} {self.status.value}: {len(self.completed_states)} states "
            f"completed in {self.duration:.3f}s, keys={sorted(self.shared_state)[:10]!r}>"
        )
