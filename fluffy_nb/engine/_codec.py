"""Tagged JSON for context values: common Python values round-trip through checkpoints.

Owns how a shared context value becomes JSON in a checkpoint (:func:`encode_value`,
:func:`encode_context`; how it comes back is :mod:`._decode`), which Enum classes a checkpoint
may name (:func:`enum_class`), and what a checkpoint does with a value it cannot store
(:func:`encode_run_data`: raise naming key and type at ``create_checkpoint`` and durable steps;
leave it out with a ``FluffyWarning`` at pause, interval and end-of-run checkpoints, so those
never fail the run).
Plain JSON values (str, int, float, bool, None, list, dict with str keys) are written as they
are. Other common values are written as a tagged object ``{"$fluffy": tag, "v": payload}``:

======================  ===========================================================
tag                     value
======================  ===========================================================
``tuple``               tuple (payload: list)
``set``                 set, ``frozenset``: frozenset (payload: list)
``datetime``            datetime, date, time: ISO text
``date``, ``time``
``timedelta``           ``[days, seconds, microseconds]``
``decimal``             Decimal, as text
``uuid``                UUID, as text
``bytes``               bytes, base64
``path.posix``          ``PosixPath``, ``WindowsPath``, ``PurePosixPath``, ``PureWindowsPath``, as
``path.windows``        text, each under its own tag so it keeps its flavour (a concrete path of
``path.pure_posix``     another OS comes back as the pure path of its flavour); ``path`` (written
``path.pure_windows``   before) is restored as ``Path``; a subclass of these is refused
``enum``                ``{"type": registered name, "name": member name}``; an ``enum.Flag``
                        ``{"type", "value"}`` (a combination such as ``READ|WRITE`` has no member name)
``np.scalar``           numpy bool/int/uint/float scalar: ``{"dtype", "value"}``; a float wider than
                        64 bits (``longdouble``) as text of full precision, restored to its dtype
``np.array``            numpy bool/int/uint/float array: ``{"dtype", "shape", "data"}`` (longdouble: text)
``pd.Timestamp``        pandas Timestamp, ISO text (nanoseconds kept); ``pd.NaT`` as ``"NaT"``
``dict``                a user dict that itself has a ``"$fluffy"`` key (escaped)
======================  ===========================================================

Decoding (:mod:`._decode`) never imports anything named in the data and never unpickles: an Enum
comes back only if its class is known in this process (stored once, ``register_type(MyEnum)``, or
defined by a module already loaded, found by :func:`loaded_class` without importing or running
code); numpy and pandas values only if the user has imported numpy/pandas.

Import cost: ``datetime``, ``decimal``, ``uuid`` and ``base64`` are not imported with the engine.
Encoding looks their classes up in ``sys.modules`` (a datetime, Decimal or UUID value exists only
once its module is loaded).
"""

from __future__ import annotations

import binascii
import enum
import logging
import math
import sys
import warnings
from pathlib import PosixPath, PurePath, PurePosixPath, PureWindowsPath, WindowsPath
from typing import Any

from ._errors import FluffyWarning, SerializationError

TAG = "$fluffy"
_PLAIN = (str, int, bool, type(None))
_ENUMS: dict[str, type[enum.Enum]] = {}
NUMPY_KINDS = "biuf"  # bool, int, uint, float: exact in JSON (object/str/complex/datetime arrays are refused)
MAX_NDIM = 32  # numpy's own limit
#: JSON levels a context value may use: loading refuses documents nested deeper than
#: ``_bounds.MAX_DEPTH`` (64), and a value sits a few levels down in its checkpoint (a map payload
#: or a typed value's fields deepest); a value that would not load again is refused when written
MAX_VALUE_DEPTH = 48


def register_enum(cls: type[enum.Enum], name: str | None = None) -> None:
    """Let values of Enum ``cls`` be restored from checkpoints (under ``module.QualName``)."""
    _ENUMS[name or f"{cls.__module__}.{cls.__qualname__}"] = cls


def loaded_class(name: str) -> type | None:
    """The class named ``module.QualName`` if its module is already loaded, else None.

    Nothing is imported and no code runs: the module is looked up in ``sys.modules`` and the
    name in the ``__dict__`` of the module and of each enclosing class (a module's
    ``__getattr__`` is never called). The class must say it is that name (its own
    ``__module__`` and ``__qualname__``), so an alias cannot stand in for it. This is how a
    checkpoint restored in a new process (``resume_latest`` after a crash, a restarted kernel)
    finds an Enum the user's code defined again before restoring. (Typed values are not looked
    up this way: building a dataclass or model runs its code, so only registered classes are.)
    """
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        obj: Any = module
        for i, part in enumerate(parts[cut:]):
            if i and not isinstance(obj, type):  # below the module, only classes enclose classes
                return None
            namespace = getattr(obj, "__dict__", None)  # a module's or a class's own names
            obj = namespace.get(part) if namespace is not None else None
        if isinstance(obj, type) and f"{obj.__module__}.{obj.__qualname__}" == name:
            return obj
        return None
    return None


def enum_class(name: str) -> type[enum.Enum] | None:
    """The Enum class a checkpoint names: registered (or stored) in this process, or defined by a
    module already loaded (:func:`loaded_class`); None when neither."""
    cls = _ENUMS.get(name)
    if cls is None:
        found = loaded_class(name)
        if found is None or not issubclass(found, enum.Enum):
            return None
        cls = _ENUMS[name] = found
    return cls


def _tag(tag: str, payload: Any) -> dict[str, Any]:
    return {TAG: tag, "v": payload}


# -- encoding ----------------------------------------------------------------------------------
def encode_value(key: str, value: Any, path: str = "", depth: int = 0) -> Any:
    """``value`` as JSON data, tagged where JSON has no such type.

    ``depth`` counts the JSON levels above ``value`` inside it (callers leave it at 0).

    Raises:
        SerializationError: naming the key (and where inside it) and the type that cannot be stored,
            or a value nested deeper than :data:`MAX_VALUE_DEPTH` levels (or one that contains
            itself): a checkpoint holding it could not be loaded again.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise SerializationError(
                f"context key {key + path!r} holds {value!r}, which JSON cannot store; store None or a string instead"
            )
        return value
    if depth >= MAX_VALUE_DEPTH:
        raise SerializationError(
            f"context key {key!r} is nested more than {MAX_VALUE_DEPTH} levels deep (or contains itself): a "
            "checkpoint holding it could not be loaded again (loading refuses deeper JSON); flatten it, or "
            "store it as a JSON string"
        )
    if kind is list:  # plain items as they are: no call, no path text for them
        return [v if type(v) in _PLAIN else encode_value(key, v, f"{path}[{i}]", depth + 1)
                for i, v in enumerate(value)]
    if kind is dict:
        out = {}
        below = depth + (2 if TAG in value else 1)  # a user dict with a "$fluffy" key is wrapped in a tag
        for k, v in value.items():
            if type(k) is not str and not isinstance(k, str):
                raise SerializationError(
                    f"context key {key + path!r} has a dict key {k!r} ({type(k).__name__}); JSON object keys "
                    "must be strings"
                )
            out[k] = v if type(v) in _PLAIN else encode_value(key, v, f"{path}[{k!r}]", below)
        return _tag("dict", out) if TAG in out else out
    return _encode_other(key, value, path, depth)


def _encode_other(key: str, value: Any, path: str, depth: int) -> Any:
    if isinstance(value, enum.Enum):  # before int/str: an IntEnum is an int too
        return _encode_enum(value)
    module = type(value).__module__
    if module.startswith("pandas") and type(value).__name__ in ("Timestamp", "NaTType"):
        return _tag("pd.Timestamp", value.isoformat())  # NaT (a datetime too) is "NaT": pd.Timestamp reads it back
    if module == "numpy":
        return _encode_numpy(key, value, path)
    tagged = _encode_loaded(value)
    if tagged is not None:
        return tagged
    if isinstance(value, (set, frozenset)):
        items = [encode_value(key, v, f"{path}{{…}}", depth + 2) for v in value]
        return _tag("set" if isinstance(value, set) else "frozenset", items)
    if isinstance(value, tuple):
        return _tag("tuple", [encode_value(key, v, f"{path}[{i}]", depth + 2) for i, v in enumerate(value)])
    if isinstance(value, (bool, int, str, float, list, dict)):  # subclasses of plain types
        return encode_value(key, _plain_base(value), path, depth)
    if isinstance(value, bytes):
        return _tag("bytes", binascii.b2a_base64(value, newline=False).decode("ascii"))
    if isinstance(value, PurePath):
        return _encode_path(key, value, path)
    raise SerializationError(
        f"context key {key + path!r} holds a value of type {type(value).__module__}.{type(value).__qualname__}, "
        "which a JSON checkpoint cannot store; store plain data, a common value (datetime, set, Decimal, UUID, bytes, "
        "Path, Enum, numpy...), or a dataclass / pydantic model with context.set_typed"
    )


def _encode_loaded(value: Any) -> dict[str, Any] | None:
    """A datetime, date, time, timedelta, Decimal or UUID tagged; None for anything else.

    Their modules are looked up, not imported: without them loaded no such value exists.
    """
    dt = sys.modules.get("datetime")
    if dt is not None:
        if isinstance(value, dt.datetime):  # before date: a datetime is a date too
            return _tag("datetime", value.isoformat())
        if isinstance(value, dt.date):
            return _tag("date", value.isoformat())
        if isinstance(value, dt.time):
            return _tag("time", value.isoformat())
        if isinstance(value, dt.timedelta):
            return _tag("timedelta", [value.days, value.seconds, value.microseconds])
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(value, decimal.Decimal):
        return _tag("decimal", str(value))
    uuid = sys.modules.get("uuid")
    if uuid is not None and isinstance(value, uuid.UUID):
        return _tag("uuid", str(value))
    return None


def _plain_base(value: Any) -> Any:
    bases: tuple[Any, ...] = (bool, int, float, str, list, dict)
    for base in bases:
        if isinstance(value, base):
            return base(value)
    return value


def _encode_enum(value: enum.Enum) -> dict[str, Any]:
    cls = type(value)
    name = next((n for n, c in _ENUMS.items() if c is cls), None)
    if name is None:  # stored in this process: it can be restored here
        name = f"{cls.__module__}.{cls.__qualname__}"
        _ENUMS[name] = cls
    if isinstance(value, enum.Flag):  # a combination (READ|WRITE) is no member: store its value
        if type(value.value) is not int:
            raise SerializationError(f"enum.Flag {cls.__qualname__} has a value of type {type(value.value).__name__}, "
                                     "which a checkpoint cannot restore; give its members int values")
        return _tag("enum", {"type": name, "value": value.value})
    return _tag("enum", {"type": name, "name": value.name})


_PATHS: dict[type[PurePath], str] = {
    PosixPath: "path.posix", WindowsPath: "path.windows",
    PurePosixPath: "path.pure_posix", PureWindowsPath: "path.pure_windows",
}


def _encode_path(key: str, value: PurePath, path: str) -> dict[str, Any]:
    tag = _PATHS.get(type(value))
    if tag is None:
        raise SerializationError(
            f"context key {key + path!r} holds a {type(value).__qualname__}, a subclass of a pathlib path, which a "
            "checkpoint cannot restore as itself; store it as Path(value) or str(value)"
        )
    return _tag(tag, str(value))


def wide_float(dtype: Any) -> bool:
    """A float dtype wider than a Python float (longdouble): stored as text of full precision."""
    return bool(dtype.kind == "f" and dtype.itemsize > 8)


def _wide_text(key: str, path: str, value: Any) -> str:
    text = str(value)  # numpy prints the shortest text that reads back as this very value
    back = type(value)(text)
    if not (back == value or (math.isnan(back) and math.isnan(value))):
        raise SerializationError(
            f"context key {key + path!r} holds a numpy {type(value).__name__} {text} that does not read back "
            "exactly; convert it (.astype(float)) first"
        )
    return text


def _encode_numpy(key: str, value: Any, path: str) -> Any:
    dtype = getattr(value, "dtype", None)
    if dtype is None or dtype.kind not in NUMPY_KINDS:
        raise SerializationError(
            f"context key {key + path!r} holds a numpy {type(value).__name__} of dtype {dtype}; checkpoints store "
            "numpy bool, int, uint and float values; convert it (.tolist(), .astype(float)) first"
        )
    if wide_float(dtype):  # .item() would give a numpy value (or lose digits as a Python float)
        if type(value).__name__ != "ndarray":
            return _tag("np.scalar", {"dtype": dtype.str, "value": _wide_text(key, path, value)})
        flat = [_wide_text(key, path, x) for x in value.ravel()]
        return _tag("np.array", {"dtype": dtype.str, "shape": list(value.shape), "data": flat})
    if type(value).__name__ != "ndarray":  # a numpy scalar (np.float64, np.int32, np.bool_...)
        item = value.item()
        if isinstance(item, float) and not math.isfinite(item):
            return _tag("np.scalar", {"dtype": dtype.str, "value": repr(item)})
        return _tag("np.scalar", {"dtype": dtype.str, "value": item})
    flat = value.ravel().tolist()
    if dtype.kind == "f" and not all(math.isfinite(x) for x in flat):
        flat = [x if math.isfinite(x) else repr(x) for x in flat]
    return _tag("np.array", {"dtype": dtype.str, "shape": list(value.shape), "data": flat})


def encode_context(shared: dict[str, Any], *, lenient: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """Encode the shared context for a checkpoint: ``(encoded, unsaved)``.

    With ``lenient`` a key whose value cannot be encoded is left out and named in
    ``unsaved`` (key -> type name); without it the first such key raises.
    """
    out: dict[str, Any] = {}
    unsaved: dict[str, str] = {}
    for k, v in shared.items():
        if type(v) in _PLAIN:  # most keys: no call (a durable step encodes every changed key)
            out[k] = v
            continue
        try:
            out[k] = encode_value(k, v)
        except SerializationError:
            if not lenient:
                raise
            unsaved[k] = f"{type(v).__module__}.{type(v).__qualname__}"
    return out, unsaved


def encode_typed_context(typed: dict[str, Any], *, lenient: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """Encode the typed context values (dataclasses, pydantic models) like :func:`encode_context`."""
    if not typed:  # most runs: no import statement, no work
        return {}, {}
    from ._checkpoint import check_json_value
    from ._typed import encode_typed

    out: dict[str, Any] = {}
    unsaved: dict[str, str] = {}
    for k, v in typed.items():
        try:
            payload = encode_typed(k, v)
            payload["data"] = check_json_value(k, payload["data"])  # plain JSON: its class validates it on load
            if _nested_deeper(payload["data"], MAX_VALUE_DEPTH):
                raise SerializationError(
                    f"typed context key {k!r} is nested more than {MAX_VALUE_DEPTH} levels deep: a checkpoint "
                    "holding it could not be loaded again; flatten it"
                )
        except SerializationError:
            if not lenient:
                raise
            unsaved[k] = f"{type(v).__module__}.{type(v).__qualname__}"
            continue
        out[k] = payload
    return out, unsaved


def _nested_deeper(value: Any, limit: int) -> bool:
    """Whether JSON data ``value`` nests lists/dicts more than ``limit`` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            if level > limit:
                return True
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


#: a value JSON cannot hold raises at these triggers (``create_checkpoint``; a ``durable=True`` step
#: then fails the run); at the others (pause, interval, run end, fork) it is left out with a warning
STRICT_TRIGGERS = frozenset({"manual", "state"})


def encode_run_data(agent: str, shared: dict[str, Any], typed: dict[str, Any], trigger: str,
                    metadata: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A run's shared and typed context encoded for a ``trigger`` checkpoint, and its metadata.

    At a lenient trigger, keys that cannot be stored are left out, named in a
    :class:`FluffyWarning` and in ``metadata["unsaved_keys"]`` (key -> type).
    """
    lenient = trigger not in STRICT_TRIGGERS
    shared_out, unsaved = encode_context(shared, lenient=lenient)
    typed_out, unsaved_typed = encode_typed_context(typed, lenient=lenient)
    unsaved.update(unsaved_typed)
    meta = dict(metadata) if metadata else {}
    if unsaved:
        warn_unsaved(agent, trigger, unsaved)
        meta["unsaved_keys"] = unsaved
    return shared_out, typed_out, meta


def warn_unsaved(agent: str, trigger: str, unsaved: dict[str, str]) -> None:
    """Say which context keys a checkpoint had to leave out (the run goes on, even when
    warnings are turned into errors: then it is logged)."""
    keys = ", ".join(f"{k!r} ({t})" for k, t in list(unsaved.items())[:10])
    message = (
        f"agent {agent!r}: the {trigger} checkpoint left out context keys a JSON checkpoint cannot store: "
        f"{keys}; the run goes on, but restoring this checkpoint will not have them. Store plain data, "
        "a common value (datetime, set, Decimal, Enum, numpy...) or a dataclass with set_typed"
    )
    _warn(message)


def warn_not_saved(agent: str, trigger: str, error: Exception) -> None:
    """Say that the store refused a ``trigger`` checkpoint for its data (the run goes on)."""
    _warn(f"agent {agent!r}: the {trigger} checkpoint was not saved, the run goes on without it: {error}")


def _warn(message: str) -> None:
    try:
        warnings.warn(message, FluffyWarning, stacklevel=3)
    except Warning:  # -W error: a periodic or pause checkpoint must still not fail the run
        logging.getLogger("fluffy_nb").warning("fluffy_nb: %s", message)
