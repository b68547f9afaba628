"""What runs on a Dask worker: one attempt of a state body against a context snapshot.

The body gets a :class:`RemoteContext` over the shared and typed data: small values are its
own copies (unpickled from the task), large ones are the worker's cached copies of values
scattered once (see ``_data``). Every body runs in a worker thread, an ``async def`` one on
its own event loop there, so the worker's own loop (heartbeats) is never blocked.

When the body returns, only what changed travels back: keys set or deleted through the
context, and small values changed in place (their fingerprint differs from before the body).
A large shared value changed in place is refused with :class:`SharedValueMutatedError`, since
other states on the worker share that copy. As the body starts, the worker logs a
``fluffy-started`` event, so the orchestrator knows the attempt left the queue, where it runs,
and from when its timeout counts.

Nothing here imports the orchestrator's agent: a worker needs only fluffy_nb installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
import time
from collections import OrderedDict
from typing import Any

import cloudpickle

from ..engine._context import Context
from ..engine._delta import RoutedDict
from ..engine._errors import FluffyError
from ._data import digest
from ._errors import SharedValueMutatedError
from ._pickling import UnpicklableStateError

_MISSING: Any = object()
STARTED_TOPIC = "fluffy-started"
#: fingerprints of scattered values as this worker first saw them, by Dask key
_PRISTINE: OrderedDict[str, bytes] = OrderedDict()
_PRISTINE_LOCK = threading.Lock()


class RemoteHumanInputError(FluffyError, RuntimeError):
    """A state running on a Dask worker asked a person (only the orchestrator can)."""


class _TrackingDict(RoutedDict):
    """A dict that remembers keys written or removed through it, and which shared values were read."""

    def __init__(self, data: dict[str, Any], shared: dict[str, str]) -> None:
        super().__init__(data)
        self.written: set[str] = set()
        self.removed: set[str] = set()
        self.shared = shared  # key -> Dask key of large values the worker shares between states
        self.read: set[str] = set()

    def _touch(self, key: Any) -> None:
        dask_key = self.shared.get(key)
        if dask_key is None or key in self.read or not dict.__contains__(self, key):
            return
        self.read.add(key)
        with _PRISTINE_LOCK:
            known = dask_key in _PRISTINE
        if not known:
            fingerprint = digest(dict.__getitem__(self, key))
            with _PRISTINE_LOCK:
                _PRISTINE.setdefault(dask_key, fingerprint)
                while len(_PRISTINE) > 256:
                    _PRISTINE.popitem(last=False)

    def _touch_all(self) -> None:
        for key in self.shared:
            self._touch(key)

    def __getitem__(self, key: str) -> Any:
        self._touch(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._touch(key)
        return super().get(key, default)

    def values(self) -> Any:
        self._touch_all()
        return super().values()

    def items(self) -> Any:
        self._touch_all()
        return super().items()

    def copy(self) -> dict[str, Any]:
        self._touch_all()
        return dict(super().items())

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.written.add(key)
        self.removed.discard(key)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.removed.add(key)
        self.written.discard(key)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if key in self:
            self._touch(key)
            self.removed.add(key)
            self.written.discard(key)
        return super().pop(key) if default is _MISSING else super().pop(key, default)

    def changes(self, state: str, before: dict[str, bytes]) -> tuple[dict[str, Any], list[str]]:
        """(writes, deletes): explicit writes, plus small values whose fingerprint changed.

        Raises:
            SharedValueMutatedError: a large shared value the body read was changed in place.
        """
        writes = {k: dict.__getitem__(self, k) for k in self.written if k in self}
        for key, fingerprint in before.items():
            if key in writes or not dict.__contains__(self, key):
                continue
            value = dict.__getitem__(self, key)
            if digest(value) != fingerprint:  # changed in place: carry it back
                writes[key] = value
        for key in self.read:
            if key in writes or key in self.removed or not dict.__contains__(self, key):
                continue
            with _PRISTINE_LOCK:
                pristine = _PRISTINE.get(self.shared[key])
            if pristine is not None and digest(dict.__getitem__(self, key)) != pristine:
                raise SharedValueMutatedError(
                    f"state {state!r} changed context value {key!r} in place on a Dask worker. It is a large "
                    "value kept on the cluster and shared by the states on that worker, so the change cannot "
                    f"be carried back safely; assign a changed copy instead: ctx.set_state({key!r}, new_value)",
                    state, key,
                )
        deletes = [k for k in self.removed if not dict.__contains__(self, k)]
        return writes, deletes


class RemoteContext(Context):
    """The context a state body sees on a worker: a snapshot; writes are sent back."""

    __slots__ = ()

    async def human_in_the_loop(self, prompt: str, *args: Any, **kwargs: Any) -> Any:
        raise RemoteHumanInputError(
            f"state {self.state_name!r} runs on a Dask worker and asked a person ({prompt!r}); only "
            "the orchestrator can ask. Ask in a local state before or after it (drop executor=/remote=)"
        )

    def __repr__(self) -> str:
        return f"Remote{super().__repr__()}"


def _worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except Exception:  # not inside a worker (tests call the runner directly)
        return None


def _tracking(small: dict[str, Any], large: dict[str, Any], keys: dict[str, str]) -> tuple[_TrackingDict,
                                                                                           dict[str, bytes]]:
    data = _TrackingDict({**small, **large}, {k: keys[k] for k in large})
    return data, {k: digest(v) for k, v in small.items()}


def run_body(func_blob: bytes, data_blob: bytes, large: tuple[dict[str, Any], dict[str, Any]],
             large_keys: tuple[dict[str, str], dict[str, str]], state: str, attempt: int, run_id: str,
             task_key: str, wrappers: tuple[Any, ...] = ()) -> bytes:
    """Run one attempt in this worker thread; an async body (or an awaitable result) on its own loop.

    Args:
        func_blob, data_blob: The cloudpickled body and ``(small shared, small typed)`` values.
        large: ``(shared, typed)`` large values (Dask resolved their futures to this worker's copies).
        large_keys: The Dask keys of those values, same shape.
        state, attempt, run_id: Who runs.
        task_key: This task's key (named in the start notice).
        wrappers: Context managers entered around the body (the caller's trace context).
    """
    started = time.time()
    worker = _worker()
    address = None if worker is None else str(worker.address)
    if worker is not None:
        _notify_started(worker, {"key": task_key, "worker": address})
    func = cloudpickle.loads(func_blob)
    small_shared, small_typed = cloudpickle.loads(data_blob)
    shared, shared_before = _tracking(small_shared, large[0], large_keys[0])
    typed, typed_before = _tracking(small_typed, large[1], large_keys[1])
    ctx = RemoteContext(shared, typed, state_name=state, attempt=attempt, run_id=run_id)
    with contextlib.ExitStack() as stack:
        for wrapper in wrappers:
            stack.enter_context(wrapper)
        result = func(ctx)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
    writes, deletes = shared.changes(state, shared_before)
    typed_writes, typed_deletes = typed.changes(state, typed_before)
    info = {"pid": os.getpid(), "started": started, "finished": time.time(), "worker": address}
    return _dumps_outcome(state, (result, writes, deletes, typed_writes, typed_deletes, info))


def _notify_started(worker: Any, msg: dict[str, Any]) -> None:
    """Tell the scheduler (and so the orchestrator) the body starts, and wait until it knows: a body
    that kills its worker at once must still count as started, never be re-queued as not started."""
    from distributed.utils import sync

    try:
        sync(worker.loop, worker.scheduler.log_event, topic=STARTED_TOPIC, msg=msg, callback_timeout=10)
    except Exception:  # the scheduler is slow or going away: send it on the worker's stream instead
        worker.log_event(STARTED_TOPIC, msg)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _dumps_outcome(state: str, outcome: tuple[Any, ...]) -> bytes:
    try:
        return cloudpickle.dumps(outcome)
    except Exception as exc:
        result, writes, _, typed_writes = outcome[:4]
        for kind, data in (("context key", writes), ("typed key", typed_writes), ("result", {"": result})):
            for key, value in data.items():
                try:
                    cloudpickle.dumps(value)
                except Exception as error:
                    what = "its result" if kind == "result" else f"{kind} {key!r}"
                    raise UnpicklableStateError(
                        f"state {state!r} ran on Dask but cannot send back {what}: a "
                        f"{type(value).__name__}, which cannot be pickled ({type(error).__name__}: {error}). "
                        "Store plain data in the context, or keep the state local",
                        state,
                        what,
                    ) from None
        raise UnpicklableStateError(f"state {state!r}: its writes cannot be pickled ({exc})", state,
                                    "writes") from None
