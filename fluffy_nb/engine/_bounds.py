"""Limits for loaded data, and bounded JSON loading: the first line of the validation boundary.

Everything fluffy_nb loads (checkpoint JSON, a store's listing columns) is untrusted input.
Before any recursive work (``json.loads``, pydantic validation) this module bounds what the
input can make that work cost:

* size: at most :data:`MAX_JSON_BYTES` of JSON text;
* nesting: at most :data:`MAX_DEPTH` levels of ``[``/``{``, counted by a flat scan of the
  text (strings removed first) before the parser recurses, so deep nesting can never reach
  Python's recursion limit;
* values: no ``NaN``/``Infinity``, integers of at most :data:`MAX_INT_DIGITS` digits, no lone
  UTF-16 surrogates (a ``\\ud800`` escape with no low half: no store could write it back);
* counts: at most :data:`MAX_NODES` values in one document (counted before parsing too).

Every failure is a :class:`CheckpointError` whose message starts with ``where`` (the file,
row or checkpoint being loaded) and says what is wrong. The bounds are far above what a real
run writes (its nesting is a few levels plus the user's own data) and keep one load under a
fraction of a second.
"""

from __future__ import annotations

import re
from typing import Any

from ._errors import CheckpointError

#: largest checkpoint JSON accepted, in bytes (characters for ``str`` input): about 40,000 states'
#: worth, and what a busy 2-core machine checks and parses within half a second; SQLiteStore
#: refuses to write more
MAX_JSON_BYTES = 2 * 1024 * 1024
#: deepest nesting of lists/objects in one checkpoint (the model itself uses 3 levels)
MAX_DEPTH = 64
#: most values (of any kind, containers included) in one checkpoint document: counted before
#: parsing, it bounds the parser's work (a real 10,000-state checkpoint holds about 40,000)
MAX_NODES = 300_000
#: longest integer literal, in digits (Python refuses 4,300 digits itself)
MAX_INT_DIGITS = 1_000
#: most states named in one collection of a checkpoint (pending, completed, statuses, counts)
MAX_STATES = 100_000
#: most branches waiting at joins in one checkpoint, summed over targets: each is rebuilt on restore
MAX_JOIN_WAITERS = 100_000
#: most map payloads in one checkpoint, summed over its map records' totals: a restore allocates a
#: slot per payload. A real record holds a result or a pending payload per item, so a checkpoint
#: within MAX_NODES values never comes near it
MAX_PAYLOADS = MAX_NODES
#: largest count or sequence number: exact in a JSON reader that uses doubles, and far enough below
#: SQLite's 64-bit INTEGER that a restored run can go on counting
MAX_COUNT = 2**53 - 1
#: longest state name, agent name, id or other identifier
MAX_NAME = 1_024

_NOT_BRACKET_BYTES = bytes(b for b in range(256) if b not in b"[]{}")
# a \uD800-\uDFFF escape: a UTF-16 surrogate written as JSON (valid only as a high-low pair)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONG_INT = re.compile("[0-9]{" + str(MAX_INT_DIGITS + 1) + ",}")


def nesting_depth(text: str, limit: int | None = None) -> int:
    """How deep the ``[``/``{`` nesting of JSON ``text`` goes, without parsing it (strings ignored).

    Flat and in C-speed steps: string literals are removed, brackets normalised to ``[]``, then
    each pass removes every innermost ``[]`` pair, so the number of passes is the depth of the
    matched pairs; openers never closed add their count. Stops once past ``limit``.
    """
    return _depth(_outside_strings(text), limit)


def _depth(outside_strings: str, limit: int | None = None) -> int:
    # UTF-8 bytes: multi-byte sequences never hold an ASCII bracket, and bytes.translate deletes fast
    brackets = outside_strings.encode("utf-8", "surrogatepass").translate(None, _NOT_BRACKET_BYTES)
    brackets = brackets.replace(b"{", b"[").replace(b"}", b"]")
    run = b"[" * (limit + 1) if limit is not None else b""
    passes = 0
    while b"[]" in brackets:
        if limit is not None and (passes > limit or run in brackets):  # a run of openers: deep already
            return limit + 1
        passes += 1
        brackets = brackets.replace(b"[]", b"")
    return passes + brackets.count(b"[")


def _outside_strings(text: str) -> str:
    """``text`` without its string literals, tokenized as the JSON parser does, in C-speed steps.

    Escapes are removed first (``\\\\`` pairs, then ``\\"``), so every remaining quote opens or
    closes a string: the even pieces between quotes are what lies outside strings.
    """
    if '"' not in text:
        return text
    if "\\" in text:
        text = text.replace("\\\\", "").replace('\\"', "")
    return "".join(text.split('"')[0::2])


def _lone_surrogate(text: str) -> bool:
    """Whether ``text`` has a surrogate escape that is not part of a high-low pair."""
    expect_low_at = -1  # where the low half of the last high surrogate must start
    for m in _SURROGATE_ESCAPE.finditer(text):
        low = m.group()[3] in "cdefCDEF"
        if expect_low_at != -1:
            if not low or m.start() != expect_low_at:
                return True
            expect_low_at = -1
        elif low:
            return True
        else:
            expect_low_at = m.end()
    return expect_low_at != -1


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number a checkpoint can hold")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (_INF, -_INF):
        raise ValueError(f"{text[:40]} is too large for a float")
    return value


_INF = float("inf")


def load_json(text: str | bytes | bytearray, where: str) -> Any:
    """Parse untrusted JSON within the module's bounds.

    Args:
        text: The JSON text (``bytes`` must be UTF-8).
        where: What is being loaded, for the error (``"checkpoint 'abc' in 'runs.db'"``).

    Raises:
        CheckpointError: too large, too deep, not JSON, or holding a value a checkpoint cannot.
    """
    text = _as_text(text, where)
    _check_shape(text, where)
    try:
        # what json.loads returns is plain data (str keys, finite numbers) within the bounds
        # checked above, so no walk is needed after it
        from json import loads  # imported with the first checkpoint read, not the engine

        return loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise CheckpointError(f"{where}: not valid JSON: {_short(exc)}") from None


def _as_text(text: Any, where: str) -> str:
    """``text`` as a ``str`` of bounded size (bytes decoded as UTF-8)."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) > MAX_JSON_BYTES:
            raise CheckpointError(f"{where}: {len(text):,} bytes of JSON, more than the {MAX_JSON_BYTES:,} allowed")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not isinstance(text, str):
        raise CheckpointError(f"{where}: expected JSON text, got {type(text).__name__}")
    return text


def _check_shape(text: str, where: str) -> None:
    """Size, text, nesting depth, value count and number length, scanned before parsing."""
    if len(text) > MAX_JSON_BYTES:
        raise CheckpointError(f"{where}: {len(text):,} characters of JSON, more than the {MAX_JSON_BYTES:,} allowed")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CheckpointError(f"{where}: not UTF-8 text ({exc.reason} at character {exc.start})") from None
    if "\\u" in text and _lone_surrogate(text):
        raise CheckpointError(f"{where}: a string holds a lone UTF-16 surrogate escape, which is not text")
    outside_strings = _outside_strings(text)
    if _depth(outside_strings, MAX_DEPTH) > MAX_DEPTH:
        raise CheckpointError(f"{where}: JSON nested more than the {MAX_DEPTH} levels allowed")
    values = outside_strings.count(",") + outside_strings.count("[") + outside_strings.count("{")
    if values > MAX_NODES:
        raise CheckpointError(f"{where}: about {values:,} values, more than the {MAX_NODES:,} allowed")
    if _LONG_INT.search(outside_strings):
        raise CheckpointError(f"{where}: a number with more than {MAX_INT_DIGITS} digits")


def check_plain(data: Any, where: str) -> None:
    """Check that ``data`` is plain JSON data within the bounds, walking it without recursion.

    For data that did not come from :func:`load_json` (a dict handed to ``from_dict``).
    Accepts dict with ``str`` keys, list, tuple, str, int, finite float, bool and None. A
    self-referencing structure exceeds the depth bound and is refused like any too-deep one.

    Raises:
        CheckpointError: naming ``where`` and the key of the first offending value.
    """
    stack: list[tuple[Any, int, Any]] = [(data, 1, None)]
    nodes = 0
    while stack:
        value, depth, key = stack.pop()
        nodes += 1
        if _checked_scalar(value, key, where):
            continue
        at = _at(key)
        if not isinstance(value, (list, tuple, dict)):
            raise CheckpointError(f"{where}: {at} holds a {type(value).__name__}, which is not JSON data")
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{where}: data nested more than {MAX_DEPTH} levels deep (at {at})")
        if nodes + len(stack) + len(value) > MAX_NODES:
            raise CheckpointError(f"{where}: more than {MAX_NODES:,} values in one checkpoint")
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str) or not (k.isascii() or _utf8(k)):
                    raise CheckpointError(f"{where}: {at} has a key that is not text; JSON keys are strings")
                stack.append((v, depth + 1, k))
        else:
            stack.extend((v, depth + 1, i) for i, v in enumerate(value))


def _checked_scalar(value: Any, key: Any, where: str) -> bool:
    """True when ``value`` is a JSON scalar within bounds; raise for a bad one; False for containers."""
    if isinstance(value, str):
        if not value.isascii() and not _utf8(value):
            raise CheckpointError(f"{where}: a string at {_at(key)} is not valid text (a lone surrogate)")
        return True
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_DIGITS * 3:
            raise CheckpointError(f"{where}: the integer at {_at(key)} is too large")
        return True
    if isinstance(value, float):
        if value != value or value in (_INF, -_INF):
            raise CheckpointError(f"{where}: {_at(key)} holds {value!r}, which JSON cannot hold")
        return True
    return False


def _at(key: Any) -> str:
    return "the top level" if key is None else f"key {str(key)[:80]!r}"


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."
