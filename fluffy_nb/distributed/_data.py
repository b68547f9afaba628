"""Context values on the wire: large ones are scattered once and travel as references.

A state body on Dask needs the context. Small values are pickled into the task itself (the
body gets a private copy). A value larger than ``scatter_threshold`` bytes (by
``dask.sizeof``) is scattered to the cluster once and every later state that runs while the
same object is in the context gets a reference: Dask moves it to a worker at most once and
keeps it there, so a trivial state costs the same with an 80 MB array in the context as
without it.

A scattered value is recognised by identity: put a new object in the context (``set_state``)
and it is scattered again. The cache holds the object weakly when it can (arrays, frames),
so the cluster copy is released when the object dies; other objects are kept until
:meth:`ScatterCache.clear` (``DaskExecutor.close()``), at most ``max_entries`` of them.

:func:`digest` is how a worker tells whether a body changed a value in place.
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import cloudpickle
from dask.sizeof import sizeof

log = logging.getLogger("fluffy_nb.distributed")

#: values at least this many bytes (``dask.sizeof``) are scattered once, not sent with each task
DEFAULT_SCATTER_THRESHOLD = 1_000_000


def digest(value: Any) -> bytes:
    """A 16-byte fingerprint of ``value``'s pickled form (out-of-band buffers hashed in place)."""
    h = hashlib.blake2b(digest_size=16)
    buffers: list[Any] = []
    h.update(cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append))
    for buf in buffers:
        h.update(buf.raw())
    return h.digest()


class _Entry:
    __slots__ = ("future", "ref", "size")

    def __init__(self, ref: Callable[[], Any], future: Any, size: int) -> None:
        self.ref = ref
        self.future = future
        self.size = size


def _reference(value: Any, on_death: Callable[[], None]) -> Callable[[], Any]:
    try:
        return weakref.ref(value, lambda _: on_death())
    except TypeError:  # lists, dicts, bytes: no weak references; keep the object itself
        return lambda: value


class ScatterCache:
    """Large context values scattered on one cluster, by object identity.

    Args:
        threshold: Scatter values of at least this many bytes (``dask.sizeof``); None: never.
        max_entries: Strongly held entries kept at most (oldest released first).
    """

    def __init__(self, threshold: int | None = DEFAULT_SCATTER_THRESHOLD, max_entries: int = 64) -> None:
        self.threshold = threshold
        self.max_entries = max_entries
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self.scattered = 0
        self.scattered_bytes = 0
        self.reused = 0

    def is_large(self, value: Any) -> bool:
        """Whether ``value`` travels as a reference."""
        if self.threshold is None or isinstance(value, (int, float, bool, str, type(None))):
            return False
        try:
            return bool(sizeof(value) >= self.threshold)
        except Exception:  # sizeof of an exotic object: send it by value
            return False

    async def references(self, client: Any, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split ``data`` into (small values, ``{key: future}`` of the large ones), scattering new ones."""
        small: dict[str, Any] = {}
        refs: dict[str, Any] = {}
        for key, value in data.items():
            entry = self._entries.get(id(value))
            if entry is not None and entry.ref() is value and entry.future.status == "finished":
                self._entries.move_to_end(id(value))
                self.reused += 1
                refs[key] = entry.future
            elif self.is_large(value):
                refs[key] = await self._scatter(client, value)
            else:
                small[key] = value
        return small, refs

    async def _scatter(self, client: Any, value: Any) -> Any:
        ident = id(value)
        self._drop(ident)
        try:  # straight to a worker: through the scheduler it is ~20x slower for large values
            future = await client.scatter(value, hash=False, direct=True)
        except OSError:  # workers not reachable from here (only the scheduler is): go through it
            future = await client.scatter(value, hash=False)
        size = int(sizeof(value))
        self._entries[ident] = _Entry(_reference(value, lambda: self._drop(ident)), future, size)
        self.scattered += 1
        self.scattered_bytes += size
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            self._drop(oldest)
        return future

    def forget_future(self, future_key: str) -> None:
        """Drop the entry of a scattered future (its cluster copy was changed or lost)."""
        for ident, entry in list(self._entries.items()):
            if entry.future.key == future_key:
                self._drop(ident)

    def forget_lost(self, lost_keys: Any) -> None:
        """Drop entries whose data left the cluster with a worker (``remove-worker`` events)."""
        lost = {str(k) for k in lost_keys or ()}
        if lost:
            for key in lost:
                self.forget_future(key)

    def _drop(self, ident: int) -> None:
        entry = self._entries.pop(ident, None)
        if entry is not None:
            try:
                entry.future.release()
            except Exception as exc:  # the client may be closed already
                log.debug("fluffy_nb: releasing scattered %s failed: %s", entry.future.key, exc)

    def clear(self) -> None:
        """Release every scattered value."""
        for ident in list(self._entries):
            self._drop(ident)

    @property
    def held_bytes(self) -> int:
        """Bytes of context values currently kept on the cluster."""
        return sum(e.size for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
