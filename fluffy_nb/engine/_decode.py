"""Tagged JSON decoding: how a checkpoint's context values come back (:mod:`._codec` writes them).

Owns :func:`decode_context` and :func:`decode_value` and one decoder per tag. Decoding never
imports anything named in the data and never unpickles: an Enum comes back only if its class is
known in this process (:func:`._codec.enum_class`); numpy and pandas values only if the user has
imported numpy/pandas. A malformed or unknown tag is a :class:`CheckpointError` naming the key; the
loaded JSON is already bounded in size, depth and count (``_bounds``), and every payload here is
checked before it is rebuilt. ``datetime``, ``decimal``, ``uuid`` and ``base64`` are imported when a
tagged value needs them.
"""

from __future__ import annotations

import enum
import math
import sys
from pathlib import Path, PosixPath, PurePath, PurePosixPath, PureWindowsPath, WindowsPath
from typing import TYPE_CHECKING, Any

from ._codec import MAX_NDIM, NUMPY_KINDS, TAG, enum_class, wide_float
from ._errors import CheckpointError

if TYPE_CHECKING:
    import datetime as dt


def decode_context(shared: dict[str, Any]) -> dict[str, Any]:
    """The shared context of a checkpoint with its tagged values rebuilt.

    Raises:
        CheckpointError: a tagged value is malformed, unknown, or needs a class/library not
            known here (the message names the key).
    """
    return {k: decode_value(k, v) for k, v in shared.items()}


def decode_value(key: str, value: Any) -> Any:
    """Rebuild one value written by :func:`encode_value` (see :func:`decode_context`)."""
    kind = type(value)
    if kind is list:
        return [decode_value(key, v) for v in value]
    if kind is dict:
        if TAG in value:
            return _decode_tag(key, value)
        return {k: decode_value(key, v) for k, v in value.items()}
    return value


def _decode_tag(key: str, value: dict[str, Any]) -> Any:
    tag = value.get(TAG)
    if set(value) != {TAG, "v"} or not isinstance(tag, str):
        raise CheckpointError(f"context key {key[:200]!r}: a tagged value must be {{{TAG!r}: tag, 'v': value}}")
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise CheckpointError(f"context key {key[:200]!r}: unknown value tag {tag[:80]!r}")
    try:
        return decoder(key, value["v"])
    except CheckpointError:
        raise
    # decimal.InvalidOperation is an ArithmeticError, binascii.Error a ValueError
    except (ValueError, TypeError, ArithmeticError, KeyError, IndexError, AttributeError) as exc:
        raise CheckpointError(
            f"context key {key[:200]!r}: its {tag!r} value cannot be rebuilt: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected text, got {type(v).__name__}")
    return v


def _items(key: str, v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise TypeError(f"expected a list, got {type(v).__name__}")
    return [decode_value(key, x) for x in v]


def _timedelta(key: str, v: Any) -> dt.timedelta:
    import datetime

    if not (isinstance(v, list) and len(v) == 3 and all(type(x) is int for x in v)):
        raise TypeError("expected [days, seconds, microseconds]")
    return datetime.timedelta(days=v[0], seconds=v[1], microseconds=v[2])


def _iso(kind: str) -> Any:
    def decode(key: str, v: Any) -> Any:
        import datetime

        return getattr(datetime, kind).fromisoformat(_text(v))

    return decode


def _decimal(key: str, v: Any) -> Any:
    from decimal import Decimal

    return Decimal(_text(v))


def _uuid(key: str, v: Any) -> Any:
    from uuid import UUID

    return UUID(_text(v))


def _bytes(key: str, v: Any) -> bytes:
    import base64

    return base64.b64decode(_text(v), validate=True)


def _enum(key: str, v: Any) -> enum.Enum:
    if not isinstance(v, dict) or set(v) not in ({"type", "name"}, {"type", "value"}):
        raise TypeError("expected {'type', 'name'} or, for an enum.Flag, {'type', 'value'}")
    name = _text(v["type"])
    cls = enum_class(name)
    if cls is None:
        raise CheckpointError(
            f"context key {key[:200]!r} holds an Enum of type {name[:200]!r}, which is not known in this "
            "process; import or define it before restoring (or call fluffy_nb.register_type(ThatEnum) "
            "if it moved)"
        )
    if "value" in v:
        if not (issubclass(cls, enum.Flag) and type(v["value"]) is int):
            raise TypeError(f"{cls.__qualname__} is not an enum.Flag with an int value")
        return cls(v["value"])
    return cls[_text(v["name"])]


def _module(name: str, key: str) -> Any:
    module = sys.modules.get(name)  # never imported here: only a library the user has imported
    if module is None:
        raise CheckpointError(
            f"context key {key[:200]!r} holds a {name} value; import {name} before restoring this checkpoint"
        )
    return module


def _np_dtype(np: Any, v: dict[str, Any]) -> Any:
    dtype = np.dtype(_text(v["dtype"]))
    if dtype.kind not in NUMPY_KINDS:
        raise TypeError(f"dtype {dtype} is not one a checkpoint stores")
    return dtype


def _np_scalar(key: str, v: Any) -> Any:
    np = _module("numpy", key)
    if not isinstance(v, dict) or set(v) != {"dtype", "value"}:
        raise TypeError("expected {'dtype', 'value'}")
    value = v["value"]
    if not isinstance(value, (bool, int, float, str)):
        raise TypeError("expected a number")
    dtype = _np_dtype(np, v)
    with np.errstate(all="raise"):  # an out-of-range value is refused, not cast with a warning
        return dtype.type(_number(dtype, value))


def _np_array(key: str, v: Any) -> Any:
    np = _module("numpy", key)
    if not isinstance(v, dict) or set(v) != {"dtype", "shape", "data"}:
        raise TypeError("expected {'dtype', 'shape', 'data'}")
    shape, data = v["shape"], v["data"]
    if not (isinstance(shape, list) and len(shape) <= MAX_NDIM and all(type(n) is int and n >= 0 for n in shape)):
        raise TypeError("shape must be a list of whole numbers >= 0")
    if not isinstance(data, list) or math.prod(shape) != len(data):
        raise ValueError(f"shape {shape[:8]} does not match {len(data) if isinstance(data, list) else '?'} values")
    if not all(isinstance(x, (bool, int, float, str)) for x in data):
        raise TypeError("array values must be numbers")
    dtype = _np_dtype(np, v)
    values = [_number(dtype, x) for x in data]
    with np.errstate(all="raise"):
        return np.array(values, dtype=dtype).reshape(shape)


def _number(dtype: Any, value: Any) -> Any:
    """A stored number: text is a non-finite float, or a wide float read at its own precision."""
    if not isinstance(value, str):
        return value
    return dtype.type(value) if wide_float(dtype) else float(value)


def _path(cls: type[PurePath], pure: type[PurePath]) -> Any:
    """Decode a path of class ``cls``; on another OS a concrete path comes back as ``pure``."""
    usable = cls if cls in (PurePosixPath, PureWindowsPath) or isinstance(Path(), cls) else pure
    return lambda key, v: usable(_text(v))


def _pd_timestamp(key: str, v: Any) -> Any:
    return _module("pandas", key).Timestamp(_text(v))


def _escaped_dict(key: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise TypeError("expected an object")
    return {k: decode_value(key, x) for k, x in v.items()}


_DECODERS: dict[str, Any] = {
    "tuple": lambda key, v: tuple(_items(key, v)),
    "set": lambda key, v: set(_items(key, v)),
    "frozenset": lambda key, v: frozenset(_items(key, v)),
    "datetime": _iso("datetime"),
    "date": _iso("date"),
    "time": _iso("time"),
    "timedelta": _timedelta,
    "decimal": _decimal,
    "uuid": _uuid,
    "bytes": _bytes,
    "path": lambda key, v: Path(_text(v)),
    "path.posix": _path(PosixPath, PurePosixPath),
    "path.windows": _path(WindowsPath, PureWindowsPath),
    "path.pure_posix": _path(PurePosixPath, PurePosixPath),
    "path.pure_windows": _path(PureWindowsPath, PureWindowsPath),
    "enum": _enum,
    "np.scalar": _np_scalar,
    "np.array": _np_array,
    "pd.Timestamp": _pd_timestamp,
    "dict": _escaped_dict,
}
