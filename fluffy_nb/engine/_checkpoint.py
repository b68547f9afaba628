"""The Checkpoint model: everything needed to resume a run, as validated JSON.

Checkpoints never hold pickles or class paths to import: plain values are JSON, typed
values are ``{"type": registered-name, "data": {...}}`` resolved through the typed registry.

This model is the validation boundary for loaded checkpoints: ``from_json``/``from_dict``
bound size, nesting and value counts first (``_bounds``), then pydantic checks every field,
including the counts a restore turns into work (names per collection, join waiters), and
every failure is a :class:`CheckpointError` naming the source and what is wrong.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from ._bounds import MAX_COUNT, MAX_JOIN_WAITERS, MAX_NAME, MAX_PAYLOADS, MAX_STATES, check_plain, load_json
from ._errors import CheckpointError, SerializationError
from ._status import AgentStatus, StateStatus
from ._typed import decode_typed, encode_typed

#: 2: delta checkpoints (``delta``, ``removed_keys``, ``completed_total``);
#: a version 1 file is a full checkpoint and loads as one
FORMAT_VERSION = 2

Trigger = Literal["manual", "pause", "interval", "state", "route", "failure", "completion", "cancel", "fork"]

#: a state name, agent name or id: a bounded string
Name = Annotated[str, Field(max_length=MAX_NAME)]
#: a count or sequence number: a whole number in 0..2**53-1 (see ``_bounds.MAX_COUNT``)
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
#: longest error text kept in a checkpoint
_MAX_ERROR = 1_000_000
#: scheduler entries a restore turns into work, one object per unit (other entries are inert data)
_SCHEDULER_WORK_KEYS = ("joins",)
_BOUNDED_COLLECTIONS = ("state_status", "completed_states", "completion_counts", "state_attempts", "pending",
                        "typed_data", "human_answers", "scheduler", "maps", "removed_keys")


class HumanAnswerRecord(BaseModel):
    """One answered human-in-the-loop request, kept so a restored run does not ask again."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    request_id: Name
    state: Name
    sequence: Count = 0
    payload: Count | None = None  # the map payload index of the branch that asked; None for a plain state
    prompt: Annotated[str, Field(max_length=_MAX_ERROR)] = ""
    value: Any = None
    source: Name = "person"
    asked_at: float = 0.0
    answered_at: float = 0.0
    replayable: bool = True


class MapRecord(BaseModel):
    """One payload fan-out (``Send``/``ctx.map``) in a checkpoint: the results of its finished
    branches and the payloads of the others, so a restore runs only the unfinished ones.

    ``results`` and ``pending`` are keyed by the payload's index (as text); ``waiting`` counts the
    branches of its fan-out already waiting at a join, ``others`` the states other branches of it
    were running.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    state: Name
    source: Name | None = None
    total: Annotated[int, Field(ge=0, le=MAX_STATES)] = 0
    results: Annotated[dict[Annotated[str, Field(max_length=16)], Any], Field(max_length=MAX_STATES)] = Field(
        default_factory=dict)
    pending: Annotated[dict[Annotated[str, Field(max_length=16)], Any], Field(max_length=MAX_STATES)] = Field(
        default_factory=dict)
    waiting: Annotated[dict[Name, Annotated[int, Field(ge=0, le=MAX_STATES)]], Field(max_length=MAX_STATES)] = Field(
        default_factory=dict)
    others: Annotated[list[Name], Field(max_length=MAX_STATES)] = Field(default_factory=list)
    group: Count = 0  # maps started by one return share a number (> 0) and are restored as one fan-out

    @model_validator(mode="after")
    def _indices_in_range(self) -> MapRecord:
        for where in (self.results, self.pending):
            for key in where:
                if not key.isdigit() or int(key) >= self.total:
                    raise ValueError(f"map of {self.state[:80]!r}: payload index {key!r} is not in 0..{self.total - 1}")
        if len(self.results) + len(self.pending) > self.total:
            raise ValueError(f"map of {self.state[:80]!r}: more results and payloads than its {self.total} items")
        if sum(self.waiting.values()) > MAX_JOIN_WAITERS:  # its fan-out's, which may hold other maps
            raise ValueError(f"map of {self.state[:80]!r}: more than {MAX_JOIN_WAITERS:,} branches waiting at joins")
        return self


class Checkpoint(BaseModel):
    """A snapshot of a run (pydantic model, JSON only).

    The spec's fields (``timestamp``, ``agent_name``, ``agent_status``, ``completed_states``,
    ``shared_state``) are here, plus what exact resumption needs: per-state status, the
    frontier (``pending``, with fan-out/join bookkeeping in ``scheduler``), typed data and
    human answers.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    format_version: Annotated[int, Field(ge=1, le=FORMAT_VERSION)] = FORMAT_VERSION
    checkpoint_id: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] = Field(
        default_factory=lambda: uuid.uuid4().hex)
    parent_id: Name | None = None
    agent_name: Name
    run_id: Name
    timestamp: float
    sequence: Count = 0
    trigger: Annotated[str, Field(max_length=64)] = "manual"
    agent_status: AgentStatus = AgentStatus.IDLE
    state_status: Annotated[dict[Name, StateStatus], Field(max_length=MAX_STATES)] = Field(default_factory=dict)
    completed_states: Annotated[list[Name], Field(max_length=MAX_STATES)] = Field(default_factory=list)
    completion_counts: Annotated[dict[Name, Count], Field(max_length=MAX_STATES)] = Field(default_factory=dict)
    state_attempts: Annotated[dict[Name, Count], Field(max_length=MAX_STATES)] = Field(default_factory=dict)
    pending: Annotated[list[Name], Field(max_length=MAX_STATES)] = Field(default_factory=list)
    scheduler: dict[Name, Any] = Field(default_factory=dict)
    shared_state: dict[str, Any] = Field(default_factory=dict)
    typed_data: Annotated[dict[Name, dict[str, Any]], Field(max_length=MAX_STATES)] = Field(default_factory=dict)
    human_answers: Annotated[list[HumanAnswerRecord], Field(max_length=MAX_STATES)] = Field(default_factory=list)
    steps: Count = 0
    error: Annotated[str, Field(max_length=_MAX_ERROR)] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: the run this one is a child of (a state that is an agent, or the source of a fork)
    parent_run_id: Name | None = None
    #: a child run: the parent's state it runs as (``_subflow``)
    parent_state: Name | None = None
    maps: Annotated[list[MapRecord], Field(max_length=MAX_STATES)] = Field(default_factory=list)
    #: True: the collections above hold only what changed since ``parent_id`` (see ``_delta``);
    #: stores fold deltas, so a checkpoint a store hands out is always full
    delta: bool = False
    removed_keys: Annotated[list[Name], Field(max_length=MAX_STATES)] = Field(default_factory=list)
    #: a delta's count of all completed states (its ``completed_states`` are the new ones)
    completed_total: Count | None = None

    @field_validator("scheduler")
    @classmethod
    def _bounded_scheduler(cls, value: dict[str, Any]) -> dict[str, Any]:
        # the join and active counts are rebuilt one object per unit on restore: bound them
        for key in _SCHEDULER_WORK_KEYS:
            counts = value.get(key)
            if counts is None:
                continue
            if not isinstance(counts, dict) or len(counts) > MAX_STATES:
                raise ValueError(f"scheduler[{key!r}] must be an object of at most {MAX_STATES:,} state counts")
            total = 0
            for name, n in counts.items():
                if len(name) > MAX_NAME:
                    raise ValueError(f"scheduler[{key!r}] names a state longer than {MAX_NAME} characters")
                if type(n) is not int or n < 0:
                    raise ValueError(f"scheduler[{key!r}][{name[:80]!r}] must be a whole number >= 0, not {n!r:.40}")
                total += n
                if total > MAX_JOIN_WAITERS:
                    raise ValueError(
                        f"scheduler[{key!r}] counts more than {MAX_JOIN_WAITERS:,} waiting branches "
                        f"(at {name[:80]!r}: {n:,}); a real run has at most one per branch"
                    )
        steps = value.get("steps")
        if steps is not None and (type(steps) is not int or not 0 <= steps <= MAX_COUNT):
            raise ValueError(f"scheduler['steps'] must be a whole number >= 0, not {steps!r:.40}")
        return value

    @field_validator("maps")
    @classmethod
    def _bounded_maps(cls, value: list[MapRecord]) -> list[MapRecord]:
        # a restore allocates every record's ``total`` slots: bound their sum; one record per mapped state
        seen: set[str] = set()
        total = 0
        for r in value:
            if r.state in seen:
                raise ValueError(f"maps holds two records of {r.state[:80]!r}; a run keeps one map per mapped state")
            seen.add(r.state)
            total += r.total
            if total > MAX_PAYLOADS:
                raise ValueError(f"maps hold more than {MAX_PAYLOADS:,} payloads in all (at {r.state[:80]!r})")
        return value

    @field_validator("typed_data")
    @classmethod
    def _typed_payloads(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for key, payload in value.items():
            if set(payload) != {"type", "data"}:
                raise ValueError(f"typed_data[{key[:80]!r}] must have exactly the keys 'type' and 'data'")
            name, data = payload["type"], payload["data"]
            if not isinstance(name, str) or len(name) > MAX_NAME:
                raise ValueError(f"typed_data[{key[:80]!r}]['type'] must be a registered type name")
            if not isinstance(data, dict):
                raise ValueError(f"typed_data[{key[:80]!r}]['data'] must be an object, not {type(data).__name__}")
        return value

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
    def from_dict(cls, data: dict[str, Any], *, source: str = "checkpoint") -> Checkpoint:
        """Validate and load a checkpoint dict (untrusted: bounded first, then validated).

        Args:
            data: The checkpoint as plain JSON data (``to_dict()`` output).
            source: What the data is, for errors (a file name, a store row).

        Raises:
            CheckpointError: the data is not a checkpoint, is of a newer format, or exceeds a
                bound (size, nesting, counts); the message starts with ``source``.
        """
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: a checkpoint must be a JSON object, got {type(data).__name__}")
        check_plain(data, source)
        return cls._validated(data, source)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "checkpoint") -> Checkpoint:
        """Load a checkpoint from JSON text (untrusted: size and nesting bounded before parsing).

        Raises:
            CheckpointError: as :meth:`from_dict`, or the text is not JSON.
        """
        data = load_json(text, source)
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: a checkpoint must be a JSON object, got {type(data).__name__}")
        return cls._validated(data, source)

    @classmethod
    def _validated(cls, data: dict[str, Any], source: str) -> Checkpoint:
        for name in _BOUNDED_COLLECTIONS:  # before pydantic, which would validate every item first
            value = data.get(name)
            if isinstance(value, (list, dict)) and len(value) > MAX_STATES:
                raise CheckpointError(
                    f"{source}: not a valid fluffy_nb checkpoint: {name} has {len(value):,} entries, more than "
                    f"the {MAX_STATES:,} allowed"
                )
        version = data.get("format_version")
        if type(version) is int and version > FORMAT_VERSION:
            raise CheckpointError(
                f"{source}: checkpoint format_version {version} is newer than this fluffy_nb reads "
                f"({FORMAT_VERSION}); upgrade fluffy_nb to load it"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise CheckpointError(f"{source}: not a valid fluffy_nb checkpoint: {describe_errors(exc)}") from None
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:  # defensive: never a raw error
            raise CheckpointError(f"{source}: not a valid fluffy_nb checkpoint: {type(exc).__name__}") from None

    def typed_values(self) -> dict[str, Any]:
        """The typed data rebuilt into objects (registered classes only)."""
        return {k: decode_typed(k, v) for k, v in self.typed_data.items()}

    @property
    def status(self) -> AgentStatus:
        """Alias of ``agent_status``."""
        return self.agent_status

    @property
    def completed_count(self) -> int:
        """How many states had completed when it was made (a delta's own list holds only the new ones)."""
        if self.delta and self.completed_total is not None:
            return self.completed_total
        return len(self.completed_states)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from ._hooks import mimebundle

        return mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        return (
            f"Checkpoint(agent={self.agent_name!r}, run={self.run_id[:8]}, seq={self.sequence}, "
            f"trigger={self.trigger!r}, status={self.agent_status.value}, "
            f"completed={len(self.completed_states)}, pending={self.pending!r})"
        )


def describe_errors(exc: ValidationError, limit: int = 3) -> str:
    """A short account of a pydantic ``ValidationError``: where and what, never the input itself."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(p)[:80] for p in err.get("loc", ())) or "top level"
        parts.append(f"{where}: {str(err.get('msg', ''))[:300]}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


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
    """Check and copy the shared state for a checkpoint (common values tagged, see ``_codec``)."""
    from ._codec import encode_context

    return encode_context(shared, lenient=False)[0]


def encode_typed_data(typed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Encode typed values for a checkpoint."""
    out = {}
    for k, v in typed.items():
        payload = encode_typed(k, v)
        payload["data"] = check_json_value(k, payload["data"])
        out[k] = payload
    return out
