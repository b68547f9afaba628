"""Context: the data a state reads and writes, shared by all states of a run."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import ConfigurationError, HumanInputError, TypedDataError
from ._typed import check_typed_value, replace_fields

if TYPE_CHECKING:
    from ._agent import Agent
    from ._run import Run

T = TypeVar("T")
_READ_ONLY = frozenset({"_fluffy_context", "agent", "run", "shared_state", "typed_data", "last_error", "payload",
                        "payload_index", "state_name", "attempt", "run_id"})
_MISSING: Any = object()
_new = object.__new__
# where each part of a context sits in its one slot's tuple
_SHARED, _TYPED, _RUN, _AGENT, _STATE, _ATTEMPT, _RUN_ID, _ERROR = range(8)


class Context:
    """What a state function receives: shared key/value state, typed data, and its identity.

    Plain values: ``set_state``/``get_state``/``remove_state``/``has_state``. Typed values
    (dataclasses, pydantic models): ``set_typed``/``get_typed``/``update_typed``. Attribute
    access reads and writes shared state too (``ctx.result = 1``), for code ported from
    class-based engines.

    Example:
        >>> async def step(ctx: Context):
        ...     ctx.set_state("greeting", "hi")
        ...     return "next"
    """

    # everything a context holds is one tuple in one slot, laid out as _SHARED.._ERROR above: a
    # slot of a class with its own __setattr__ is set through its descriptor (about 0.1 µs a
    # call), and the scheduler makes a context for every state it runs, so one slot, one call
    __slots__ = ("_fluffy_context",)

    def __init__(
        self,
        shared: dict[str, Any] | None = None,
        typed: dict[str, Any] | None = None,
        *,
        agent: Agent | None = None,
        state_name: str = "",
        attempt: int = 1,
        run_id: str = "",
        run: Run | None = None,
        error: BaseException | None = None,
    ) -> None:
        if run is not None:
            agent, run_id = run.agent, run.run_id
        _set_context(self, ({} if shared is None else shared, {} if typed is None else typed, run, agent, state_name,
                      attempt, run_id, error))

    @classmethod
    def of_state(cls, run: Run, state_name: str, attempt: int, error: BaseException | None) -> Context:
        """``Context(run.shared, run.typed, run=run, state_name=..., attempt=..., error=...)`` without
        the keyword handling: the scheduler makes one for every state it runs."""
        ctx = _new(cls)
        _set_context(ctx, (run.shared, run.typed, run, run.agent, state_name, attempt, run.run_id, error))
        return ctx

    @property
    def state_name(self) -> str:
        """The name of the state this context was given to ("" outside a state)."""
        return self._fluffy_context[_STATE]  # type: ignore[no-any-return]

    @property
    def attempt(self) -> int:
        """Which attempt of the state this is (1 for the first)."""
        return self._fluffy_context[_ATTEMPT]  # type: ignore[no-any-return]

    @property
    def run_id(self) -> str:
        """The id of the run this state belongs to ("" outside a run)."""
        return self._fluffy_context[_RUN_ID]  # type: ignore[no-any-return]

    # -- plain state -------------------------------------------------------------------
    def set_state(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` for this and later states."""
        self._fluffy_context[_SHARED][key] = value
        run = self._fluffy_context[_RUN]
        if run is not None and run.deps.watching:  # a state waits for a dependency condition
            run.deps.context_changed()

    def get_state(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` when there is none."""
        return self._fluffy_context[_SHARED].get(key, default)

    def remove_state(self, key: str) -> bool:
        """Remove ``key``; returns whether it was there."""
        found = self._fluffy_context[_SHARED].pop(key, _MISSING) is not _MISSING
        self._changed()
        return found

    def has_state(self, key: str) -> bool:
        """Whether ``key`` holds a value."""
        return key in self._fluffy_context[_SHARED]

    def get(self, key: str, default: Any = None) -> Any:
        """Alias of :meth:`get_state` (dict-style)."""
        return self._fluffy_context[_SHARED].get(key, default)

    def keys(self) -> list[str]:
        """The keys of plain shared state."""
        return list(self._fluffy_context[_SHARED])

    # -- typed data --------------------------------------------------------------------
    def set_typed(self, key: str, value: Any) -> None:
        """Store a dataclass instance or pydantic model under ``key``."""
        check_typed_value(key, value)
        self._fluffy_context[_TYPED][key] = value
        self._changed()

    def get_typed(self, key: str, expected_type: type[T]) -> T:
        """The typed value under ``key``, checked to be an ``expected_type``.

        Raises:
            TypedDataError: nothing is stored under ``key``, or it is of another type.
        """
        try:
            value = self._fluffy_context[_TYPED][key]
        except KeyError:
            raise TypedDataError(
                f"get_typed({key!r}): no typed value under {key!r}; store one first with "
                f"context.set_typed({key!r}, {expected_type.__name__}(...))"
            ) from None
        if not isinstance(value, expected_type):
            raise TypedDataError(
                f"get_typed({key!r}, {expected_type.__name__}): the value is a "
                f"{type(value).__name__}, not a {expected_type.__name__}"
            )
        return value

    def update_typed(self, key: str, **changes: Any) -> Any:
        """Replace fields of the typed value under ``key``; returns the new value.

        Each new value is checked against its field's type, for a dataclass as for a pydantic
        model (``"7"`` becomes ``7`` for an ``int`` field); a value that does not fit, an unknown
        field or a missing key raises :class:`TypedDataError` naming them, and nothing changes.
        """
        try:
            current = self._fluffy_context[_TYPED][key]
        except KeyError:
            raise TypedDataError(f"update_typed({key!r}): no typed value under {key!r}") from None
        updated = replace_fields(key, current, changes)
        self._fluffy_context[_TYPED][key] = updated
        self._changed()
        return updated

    def has_typed(self, key: str) -> bool:
        """Whether a typed value is stored under ``key``."""
        return key in self._fluffy_context[_TYPED]

    # -- payload fan-out (``_map.py``) -----------------------------------------------------
    def map(self, state: str, items: Iterable[Any]) -> list[Any]:
        """Run ``state`` once per item: ``return ctx.map("score", items)`` is
        ``return [Send("score", item) for item in items]``. Each branch reads its item as
        ``ctx.payload``; where the branches meet, ``ctx.results("score")`` lists their results.
        An empty ``items`` ends the branch (nothing to run, nothing to join) with a
        ``FluffyWarning`` naming this state.

        Example:
            >>> async def split(ctx):
            ...     return ctx.map("score", ["a", "bb"])
        """
        from ._map import map_items

        return map_items(self.state_name, state, items)

    @property
    def payload(self) -> Any:
        """The item this branch was sent (``Send``/``map``); None in a state not run for a payload."""
        return None

    @property
    def payload_index(self) -> int | None:
        """The position of this branch's item in its map; None in a state not run for a payload."""
        return None

    def set_result(self, value: Any) -> None:
        """Record this payload branch's result (read at the join with :meth:`results`).

        Raises:
            ConfigurationError: this state was not run for a payload.
        """
        raise ConfigurationError(
            f"state {self.state_name!r}: set_result records the result of a payload branch, and this state "
            "was not started with Send(...)/ctx.map(...); store the value with set_state instead"
        )

    def results(self, state: str) -> list[Any]:
        """The results of the latest map of ``state`` in this run, in payload order (None where a
        branch set none, or has not finished).

        Raises:
            ConfigurationError: this run has not mapped ``state``.
        """
        run = self._fluffy_context[_RUN]
        m = None if run is None else run.maps.get(state)
        if m is None:
            raise ConfigurationError(
                f"results({state!r}): this run has not sent payloads to {state!r}; fan out first with "
                f"return ctx.map({state!r}, items) or [Send({state!r}, item), ...]"
            )
        return list(m.results)

    # -- people ------------------------------------------------------------------------
    async def human_in_the_loop(
        self,
        prompt: str,
        timeout: float | None = None,
        validator: Callable[[Any], Any] | None = None,
        default: Any = None,
        choices: Sequence[str] | None = None,
        schema: type | None = None,
    ) -> Any:
        """Ask a person and wait for the answer; other states keep running meanwhile.

        Args:
            prompt: What to ask (shown as text, never as HTML).
            timeout: Seconds to wait; then ``default`` is used, or ``HumanTimeoutError``
                is raised when there is no default.
            validator: Called with the answer (the model instance with a ``schema``).
                Returning a falsy value (``False``, or ``None`` as ``re.fullmatch`` returns
                when nothing matches) rejects it with a generic message; raising an exception
                rejects it with the exception's message shown (``raise ValueError("at least 5
                characters")``). The person is then asked again. A truthy return value
                accepts (a match object, ``True``); to show a message, raise it.
            default: Answer used on timeout.
            choices: Allowed answers, shown as buttons.
            schema: A pydantic model; the answer is an instance of it.
        """
        if self.agent is None:
            raise HumanInputError(
                f"human_in_the_loop({prompt!r}) needs the context a state receives while its agent runs; "
                "this context belongs to no run (a RunResult's or one made by hand)"
            )
        run = self._fluffy_context[_RUN]
        human = self._fluffy_context[_AGENT].human if run is None else run.human  # a child run asks its root's
        return await human.ask(
            self,
            prompt,
            timeout=timeout,
            validator=validator,
            default=default,
            choices=choices,
            schema=schema,
        )

    def _changed(self) -> None:
        """A value changed: a state waiting for a dependency condition gets it re-checked."""
        run = self._fluffy_context[_RUN]
        if run is not None and run.deps.watching:
            run.deps.context_changed()

    # -- attribute-style access ----------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        shared = object.__getattribute__(self, "_fluffy_context")[_SHARED]
        try:
            return shared[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _READ_ONLY:
            raise ConfigurationError(
                f"context.{name} is the context's own (read-only) attribute; store your value under "
                f"another name, or with context.set_state({name!r}, value)"
            )
        self._fluffy_context[_SHARED][name] = value
        self._changed()

    def __delattr__(self, name: str) -> None:
        if not self.remove_state(name):
            raise AttributeError(name)

    @property
    def agent(self) -> Agent | None:
        """The agent running this state."""
        return self._fluffy_context[_AGENT]  # type: ignore[no-any-return]

    @property
    def last_error(self) -> BaseException | None:
        """The failure that sent this branch here through ``on_error``/``on_timeout`` (else None)."""
        return self._fluffy_context[_ERROR]  # type: ignore[no-any-return]

    @property
    def run(self) -> Run | None:
        """The run this state belongs to (None for a context made outside a run)."""
        return self._fluffy_context[_RUN]

    @property
    def shared_state(self) -> dict[str, Any]:
        """The shared key/value dict itself (read it; write through set_state)."""
        return self._fluffy_context[_SHARED]

    @property
    def typed_data(self) -> dict[str, Any]:
        """The typed values, by key."""
        return self._fluffy_context[_TYPED]

    def __repr__(self) -> str:
        return (
            f"Context(state={self.state_name!r}, keys={sorted(self._fluffy_context[_SHARED])!r}, "
            f"typed={sorted(self._fluffy_context[_TYPED])!r})"
        )


_set_context = Context._fluffy_context.__set__  # type: ignore[attr-defined]
#: a context's two C-level makers, for a hot loop that makes one per state without a Python call
#: (the chain loop of ``_runner``): ``fill(blank(), (shared, typed, run, agent, state, attempt,
#: run_id, error))`` is what :meth:`Context.of_state` does
blank, fill = functools.partial(_new, Context), _set_context
