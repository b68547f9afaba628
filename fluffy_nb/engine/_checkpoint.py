"""The Checkpoint model: everything needed to resume a run, as validated JSON.

Checkpoints never hold pickles or class paths to import: plain values are JSON, typed
values are ``{"type": registered-name, "data": {...}}`` resolved through the typed registry.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer

from ._errors import CheckpointError, SerializationError
from ._status import AgentStatus, StateStatus
from ._typed import decode_typed, encode_typed

FORMAT_VERSION = 1

Trigger = Literal["manual", "pause", "interval", "state", "failure", "completion", "cancel", "fork"]


class HumanAnswerRecord(BaseModel):
    """One answered human-in-the-loop request, kept so a restored run does not ask again."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    state: str
    sequence: int = 0
    prompt: str = ""
    value: Any = None
    source: str = "person"
    asked_at: float = 0.0
    answered_at: float = 0.0
    replayable: bool = True


class Checkpoint(BaseModel):
    """A snapshot of a run (pydantic model, JSON only).

    The spec's fields (``timestamp``, ``agent_name``, ``agent_status``, ``completed_states``,
    ``shared_state``) are here, plus what exact resumption needs: per-state status, the
    frontier (``pending``, with fan-out/join bookkeeping in ``scheduler``), typed data and
    human answers.
    """

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    checkpoint_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    parent_id: str | None = None
    agent_name: str
    run_id: str
    timestamp: float
    sequence: int = 0
    trigger: str = "manual"
    agent_status: AgentStatus = AgentStatus.IDLE
    state_status: dict[str, StateStatus] = Field(default_factory=dict)
    completed_states: list[str] = Field(default_factory=list)
    completion_counts: dict[str, int] = Field(default_factory=dict)
    state_attempts: dict[str, int] = Field(default_factory=dict)
    pending: list[str] = Field(default_factory=list)
    scheduler: dict[str, Any] = Field(default_factory=dict)
    shared_state: dict[str, Any] = Field(default_factory=dict)
    typed_data: dict[str, dict[str, Any]] = Field(default_factory=dict)
    human_answers: list[HumanAnswerRecord] = Field(default_factory=list)
    steps: int = 0
    error: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_serializer("state_status", when_used="json")
    def _statuses_as_text(self, value: dict[str, StateStatus]) -> dict[str, str]:
        # ``_value_`` is a plain attribute; pydantic's enum path calls the ``.value`` property
        # once per state, which made serializing a large run's checkpoint twice as slow
        return {name: status._value_ for name, status in value.items()}

    # -- conversion ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (``json.dump`` it as the spec shows)."""
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        """The checkpoint as a JSON string."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        """Validate and load a checkpoint dict.

        Raises:
            CheckpointError: the data is not a checkpoint, or is of a newer format.
        """
        if not isinstance(data, dict):
            raise CheckpointError(f"a checkpoint must be a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint format_version {version} is newer than this fluffy_nb reads "
                f"({FORMAT_VERSION}); upgrade fluffy_nb to load it"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise CheckpointError(f"not a valid fluffy_nb checkpoint: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        """Load a checkpoint from a JSON string."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def typed_values(self) -> dict[str, Any]:
        """The typed data rebuilt into objects (registered classes only)."""
        return {k: decode_typed(k, v) for k, v in self.typed_data.items()}

    @property
    def status(self) -> AgentStatus:
        """Alias of ``agent_status``."""
        return self.agent_status

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from ._hooks import mimebundle

        return mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        return (
            f"Checkpoint(agent={self.agent_name!r}, run={self.run_id[:8]}, seq={self.sequence}, "
            f"trigger={self.trigger!r}, status={self.agent_status.value}, "
            f"completed={len(self.completed_states)}, pending={self.pending!r})"
        )


def check_json_value(key: str, value: Any, path: str = "") -> Any:
    """Return ``value`` if JSON can hold it exactly; raise naming the key otherwise.

    Tuples become lists (as in JSON); dict keys must be strings.
    """
    where = f"{key}{path}"
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(
                f"context key {where!r} holds {value!r}, which JSON cannot store; "
                "store None or a string instead"
            )
        return value
    if isinstance(value, (list, tuple)):
        return [check_json_value(key, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SerializationError(
                    f"context key {where!r} has a dict key {k!r} ({type(k).__name__}); JSON "
                    "object keys must be strings"
                )
            out[k] = check_json_value(key, v, f"{path}[{k!r}]")
        return out
    raise SerializationError(
        f"context key {where!r} holds a {type(value).__name__}, which a JSON checkpoint cannot "
        "store; store plain data (str, int, float, bool, None, list, dict), or a dataclass / "
        "pydantic model with context.set_typed"
    )


def encode_shared(shared: dict[str, Any]) -> dict[str, Any]:
    """Check and copy the plain shared state for a checkpoint."""
    return {k: check_json_value(k, v) for k, v in shared.items()}


def encode_typed_data(typed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Encode typed values for a checkpoint."""
    out = {}
    for k, v in typed.items():
        payload = encode_typed(k, v)
        payload["data"] = check_json_value(k, payload["data"])
        out[k] = payload
    return out
