"""Typed context data and the registry that lets it round-trip through JSON.

A typed value is stored in checkpoints as ``{"type": <registered name>, "data": {...}}``.
Loading looks the name up in this registry only: nothing found in data is ever imported.
Subclasses of :class:`TypedContextData` register themselves; other dataclasses and pydantic
models register when first stored with ``Context.set_typed`` or with :func:`register_type`.

Loading checks the data against the class as pydantic does, for dataclasses too: field types
(``Profile(name=5)`` is refused; nested dataclasses are rebuilt), unknown and missing fields.
Every failure is a :class:`CheckpointError` naming the key and the type.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, TypeVar

from ._errors import CheckpointError, SerializationError, TypedDataError

T = TypeVar("T")

_REGISTRY: dict[str, type] = {}


def type_key(cls: type) -> str:
    """The registry name of ``cls``: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register_type(cls: type[T], name: str | None = None) -> type[T]:
    """Make a dataclass, pydantic model or Enum restorable from checkpoints.

    Usable as a decorator. ``name`` defaults to ``module.QualName``; give a stable one if the
    class may move between modules.
    """
    if isinstance(cls, type) and issubclass(cls, enum.Enum):  # a plain context value, tagged in checkpoints
        from ._codec import register_enum

        register_enum(cls, name)
        return cls
    if not (dataclasses.is_dataclass(cls) or _is_pydantic(cls) or issubclass(cls, TypedContextData)):
        raise TypedDataError(
            f"register_type({cls.__name__}): only dataclasses and pydantic models can be typed "
            "context data; decorate the class with @dataclass or subclass pydantic.BaseModel"
        )
    _REGISTRY[name or type_key(cls)] = cls
    return cls


def registered_types() -> dict[str, type]:
    """A copy of the registry (name -> class)."""
    return dict(_REGISTRY)


def _is_pydantic(obj: Any) -> bool:
    return hasattr(obj, "model_validate") and hasattr(obj, "model_dump")


class TypedContextData:
    """Base for typed context values; subclasses are registered for checkpoint round-trips.

    Use it with ``@dataclass`` (as the spec does) or together with pydantic models.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class UserProfile(TypedContextData):
        ...     name: str
        ...     age: int
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[type_key(cls)] = cls


def check_typed_value(key: str, value: Any) -> None:
    """Raise unless ``value`` is a dataclass instance or pydantic model whose fields hold
    values of their declared types (dataclass fields are checked strictly: ``"5"`` is no ``int``)."""
    if isinstance(value, type) or not (dataclasses.is_dataclass(value) or _is_pydantic(value)):
        raise TypedDataError(
            f"set_typed({key!r}, ...): {type(value).__name__} is not a dataclass instance or "
            "pydantic model; use set_state for plain values"
        )
    if not _is_pydantic(value):  # a pydantic model validated itself when it was made
        for f in dataclasses.fields(value):
            _check_field(f"set_typed({key!r}, ...)", type(value), f.name, getattr(value, f.name), strict=True)


_FIELD_ADAPTERS: dict[type, dict[str, Any]] = {}


def _field_adapter(cls: type, name: str) -> Any:
    """A pydantic ``TypeAdapter`` for field ``name`` of dataclass ``cls`` (cached), or None when
    its annotation cannot be resolved or checked (then the field is not checked)."""
    adapters = _FIELD_ADAPTERS.get(cls)
    if adapters is None:
        import typing

        from pydantic import PydanticUserError, TypeAdapter

        adapters = {}
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # an annotation naming something not importable here: check nothing
            hints = {}
        for fname, hint in hints.items():
            try:
                adapters[fname] = TypeAdapter(hint)
            except (PydanticUserError, NameError, TypeError):  # an arbitrary class pydantic cannot check
                adapters[fname] = None
        _FIELD_ADAPTERS[cls] = adapters
    return adapters.get(name)


def _check_field(where: str, cls: type, name: str, value: Any, *, strict: bool) -> Any:
    """``value`` validated for field ``name`` of dataclass ``cls`` (coerced unless ``strict``).

    Raises:
        TypedDataError: naming the field, the value and the expected type.
    """
    adapter = _field_adapter(cls, name)
    if adapter is None:
        return value
    from pydantic import ValidationError

    try:
        return adapter.validate_python(value, strict=strict)
    except ValidationError as exc:
        hint = _hint_name(cls, name)
        raise TypedDataError(
            f"{where}: field {name!r} of {cls.__name__} must be {hint}, got {_short(value)} "
            f"({type(value).__name__}): {exc.errors()[0].get('msg', 'invalid')}"
        ) from None


def _hint_name(cls: type, name: str) -> str:
    """A short readable name of the annotation of field ``name`` (``int``, ``list[str]``)."""
    import typing

    hint = typing.get_type_hints(cls).get(name, Any)
    return hint.__name__ if isinstance(hint, type) and not getattr(hint, "__args__", None) else str(hint)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def replace_fields(key: str, value: Any, changes: dict[str, Any]) -> Any:
    """Return a copy of ``value`` with ``changes`` applied, validated as pydantic validates:
    a model by ``model_validate``, a dataclass field by field (``"7"`` becomes ``7`` for an
    ``int`` field, ``"many"`` raises :class:`TypedDataError` naming field, value and type; for
    a model too, with pydantic's ``ValidationError`` as its ``__cause__``)."""
    if _is_pydantic(value):
        fields = type(value).model_fields
        unknown = [k for k in changes if k not in fields]
        if unknown:
            raise TypedDataError(f"update_typed({key!r}): {type(value).__name__} has no field {unknown[0]!r}")
        from pydantic import ValidationError

        try:
            return type(value).model_validate({**value.model_dump(), **changes})
        except ValidationError as exc:  # the same typed error as a dataclass field, naming what was wrong
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ())) or "?"
            given = changes.get(str(first.get("loc", ("",))[0]), "?")
            raise TypedDataError(
                f"update_typed({key!r}): field {field!r} of {type(value).__name__} got {_short(given)} "
                f"({type(given).__name__}): {first.get('msg', 'invalid')}"
            ) from exc
    names = {f.name for f in dataclasses.fields(value)}
    unknown = [k for k in changes if k not in names]
    if unknown:
        raise TypedDataError(
            f"update_typed({key!r}): {type(value).__name__} has no field {unknown[0]!r}; "
            f"fields are {sorted(names)}"
        )
    where = f"update_typed({key!r})"
    checked = {k: _check_field(where, type(value), k, v, strict=False) for k, v in changes.items()}
    return dataclasses.replace(value, **checked)


def encode_typed(key: str, value: Any) -> dict[str, Any]:
    """Encode a typed value as ``{"type": name, "data": {...}}`` for a checkpoint."""
    cls = type(value)
    name = next((n for n, c in _REGISTRY.items() if c is cls), None)
    if name is None:
        name = type_key(cls)
        _REGISTRY[name] = cls
    from pydantic_core import PydanticSerializationError

    try:
        if _is_pydantic(value):
            data = value.model_dump(mode="json")
        else:  # as pydantic dumps it (datetime as ISO text, set as list...): decode_typed validates it back
            adapter = _dataclass_adapter(cls)
            data = dataclasses.asdict(value) if adapter is None else adapter.dump_python(value, mode="json")
    except PydanticSerializationError as exc:  # a field of a type JSON cannot hold (an Any holding a lock...)
        raise SerializationError(
            f"typed context key {key!r} holds a {cls.__module__}.{cls.__qualname__} that a JSON checkpoint "
            f"cannot store ({exc}); keep such objects out of the typed value, or give the field a type "
            "pydantic can write as JSON"
        ) from None
    return {"type": name, "data": data}


_ADAPTERS: dict[type, Any] = {}


def _dataclass_adapter(cls: type) -> Any:
    """A pydantic ``TypeAdapter`` for the dataclass ``cls`` (cached), or None if pydantic cannot
    build one (an annotation it cannot resolve or an arbitrary class as a field type)."""
    if cls not in _ADAPTERS:
        from pydantic import PydanticUserError, TypeAdapter

        try:
            adapter: Any = TypeAdapter(cls)
            adapter.core_schema  # noqa: B018 - build now: a deferred schema fails here, not mid-load
        except (PydanticUserError, NameError, TypeError):
            adapter = None
        _ADAPTERS[cls] = adapter
    return _ADAPTERS[cls]


def _field_problem(cls: type, data: dict[str, Any]) -> str | None:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        return f"it has no field {unknown[0][:80]!r}; fields are {sorted(fields)[:20]}"
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        return f"field {missing[0]!r} is missing"
    return None


def decode_typed(key: str, payload: dict[str, Any]) -> Any:
    """Rebuild a typed value from a checkpoint, using only registered classes.

    The data is validated against the class: pydantic models by ``model_validate``, dataclasses
    through a pydantic ``TypeAdapter`` (field types checked, nested dataclasses rebuilt).

    Raises:
        SerializationError: the type name is not registered in this process.
        CheckpointError: the data does not fit the class (the message names key, type and field).
    """
    if not isinstance(payload, dict):
        raise CheckpointError(f"typed context key {key!r} holds a {type(payload).__name__}, not a typed value")
    name = payload.get("type")
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise SerializationError(
            f"typed context key {key!r} holds type {str(name)[:200]!r}, which is not registered in this "
            "process; define the class (subclass TypedContextData) or call "
            "fluffy_nb.register_type(cls) before restoring"
        )
    data = payload.get("data", {})
    where = f"typed context key {key!r} ({name})"
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: its data must be an object, not {type(data).__name__}")
    from pydantic import ValidationError

    from ._checkpoint import describe_errors

    try:
        if _is_pydantic(cls):
            return cls.model_validate(data)  # type: ignore[attr-defined]
        problem = _field_problem(cls, data)
        if problem is not None:
            raise CheckpointError(f"{where} cannot be rebuilt: {problem}")
        adapter = _dataclass_adapter(cls)
        if adapter is None:  # pydantic cannot check these field types: the class's own __init__ decides
            return cls(**data)
        return adapter.validate_python(data)
    except CheckpointError:
        raise
    except ValidationError as exc:
        raise CheckpointError(f"{where} does not match its class: {describe_errors(exc)}") from None
    except Exception as exc:  # the class's own __init__/__post_init__/validators refused the data
        raise CheckpointError(f"{where} cannot be rebuilt: {type(exc).__name__}: {str(exc)[:300]}") from exc
