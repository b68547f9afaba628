"""What a ``human_in_the_loop`` call and its answers are checked against (``_hitl`` asks).

:func:`check_args` refuses a call's bad arguments with a ``ConfigurationError`` naming the state
and the argument; :func:`check_answer` checks an answer against the request's ``choices``,
pydantic ``schema`` and ``validator`` and raises :class:`Rejected` with the message the person
sees (the request stays open and is asked again).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError, FluffyError

if TYPE_CHECKING:
    from ._hitl import HumanRequest


class Rejected(Exception):
    """An answer that does not fit its request; the message says why (shown to the person)."""


def check_answer(req: HumanRequest, value: Any) -> Any:
    """``value`` as the answer to ``req`` (a dict becomes the schema's model), or :class:`Rejected`."""
    if req.choices is not None and value not in req.choices:
        raise Rejected(f"{value!r} is not one of the choices {list(req.choices)}")
    schema = req.schema
    if schema is not None and not isinstance(value, schema):
        if not isinstance(value, Mapping):
            raise Rejected(f"expected the fields of {schema.__name__}, got {type(value).__name__}")
        try:
            value = schema.model_validate(dict(value))  # type: ignore[attr-defined]
        except Exception as exc:
            raise Rejected(pydantic_message(exc)) from None
    if req.validator is not None:
        try:
            ok = req.validator(value)
        except FluffyError:
            raise
        except Exception as exc:
            raise Rejected(str(exc) or type(exc).__name__) from None
        if inspect.isawaitable(ok):  # a coroutine is truthy: it would accept every answer unchecked
            getattr(ok, "close", lambda: None)()
            raise ConfigurationError(f"state {req.state!r}: the validator of {req.prompt!r} returned an "
                                     f"awaitable; {ASYNC_VALIDATOR}")
        if not ok:  # False, None (re.fullmatch finding nothing), 0, "": all reject
            raise Rejected(f"{short_repr(value)} was rejected by the validator; please answer again")
    return value


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def pydantic_message(exc: Exception) -> str:
    """A pydantic validation error as ``field: message; ...`` (else the error's text)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for err in errors():
            loc = ".".join(str(p) for p in err.get("loc", ())) or "value"
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        if parts:
            return "; ".join(parts)
    return str(exc)


ASYNC_VALIDATOR = ("a validator must be a plain function returning True/False (an async one would accept "
                   "every answer unchecked, since a coroutine is truthy); check with a def, or await your "
                   "async check in the state after the answer and ask again")


def _is_async(func: Any) -> bool:
    call = None if inspect.isroutine(func) else inspect.getattr_static(type(func), "__call__", None)  # async __call__
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)


def check_args(state: str, prompt: Any, timeout: Any, validator: Any, choices: Any, schema: Any,
                default: Any = None) -> None:
    """Refuse bad ``human_in_the_loop`` arguments of ``state`` with a ``ConfigurationError``."""
    where = f"state {state!r}: human_in_the_loop"
    if not isinstance(prompt, str):
        raise ConfigurationError(f"{where}(prompt={prompt!r}): the prompt must be a string")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigurationError(f"{where}(timeout={timeout!r}): use a number of seconds > 0, or None to wait")
    if validator is not None and not callable(validator):
        raise ConfigurationError(f"{where}(validator={validator!r}): must be a callable taking the answer")
    if validator is not None and _is_async(validator):
        raise ConfigurationError(f"{where}(validator={validator!r}): {ASYNC_VALIDATOR}")
    if choices is not None and (isinstance(choices, str) or not isinstance(choices, Iterable) or not list(choices)):
        raise ConfigurationError(f"{where}(choices={choices!r}): pass a non-empty list such as ['yes', 'no']")
    if schema is not None and not (isinstance(schema, type) and hasattr(schema, "model_validate")):
        raise ConfigurationError(f"{where}(schema={schema!r}): pass a pydantic model class")
    if default is None:
        return
    if choices is not None and default not in list(choices):
        raise ConfigurationError(
            f"{where}(default={default!r}): the default must be one of the choices {list(choices)!r}"
        )
    if schema is not None and not isinstance(default, schema):
        try:
            schema.model_validate(default)
        except Exception as exc:
            raise ConfigurationError(
                f"{where}(default={default!r}): the default does not fit {schema.__name__}: {exc}; pass an "
                f"instance of {schema.__name__} or a dict of its fields"
            ) from None
