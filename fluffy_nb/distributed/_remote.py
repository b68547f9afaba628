"""What runs on a Dask worker: one attempt of a state body against a context snapshot.

The body gets a :class:`RemoteContext` over copies of the shared and typed data. When it
returns, the worker sends back only what changed (keys set or deleted through the context,
plus values whose in-place mutation made them differ from the snapshot) and the body's
result. Everything crosses the wire as cloudpickle bytes made here, so classes and
functions defined in a notebook (``__main__``) round-trip to the very same objects in the
orchestrator.

Nothing here imports the orchestrator's agent: a worker needs only fluffy_nb installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import time
from typing import Any

import cloudpickle
from distributed.diagnostics.plugin import WorkerPlugin

from ..engine._context import Context
from ..engine._errors import FluffyError
from ._pickling import UnpicklableStateError

_MISSING: Any = object()


class RemoteHumanInputError(FluffyError, RuntimeError):
    """A state running on a Dask worker asked a person (only the orchestrator can)."""


class _TrackingDict(dict):  # type: ignore[type-arg]
    """A dict that remembers which keys were written or removed through it."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.written: set[str] = set()
        self.removed: set[str] = set()

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
            self.removed.add(key)
            self.written.discard(key)
        return super().pop(key) if default is _MISSING else super().pop(key, default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        for key in list(self):
            del self[key]

    def changes(self, pristine: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """(writes, deletes) relative to ``pristine``, the snapshot as it arrived."""
        writes = {k: dict.__getitem__(self, k) for k in self.written if k in self}
        for key, value in self.items():
            if key in writes or key not in pristine:
                continue
            try:
                changed = bool(value != pristine[key])
            except Exception:  # e.g. arrays: ambiguous truth value; count as unchanged
                changed = False
            if changed:
                writes[key] = value
        deletes = [k for k in self.removed if k not in self and k in pristine]
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


def _prepare(func_blob: bytes, data_blob: bytes, state: str, attempt: int, run_id: str) -> tuple[Any, ...]:
    func = cloudpickle.loads(func_blob)
    pristine_shared, pristine_typed = cloudpickle.loads(data_blob)
    shared, typed = (_TrackingDict(d) for d in cloudpickle.loads(data_blob))
    ctx = RemoteContext(shared, typed, state_name=state, attempt=attempt, run_id=run_id)
    return func, ctx, shared, typed, pristine_shared, pristine_typed


def _finish(state: str, result: Any, shared: _TrackingDict, typed: _TrackingDict, pristine_shared: dict[str, Any],
            pristine_typed: dict[str, Any], started: float) -> bytes:
    writes, deletes = shared.changes(pristine_shared)
    typed_writes, typed_deletes = typed.changes(pristine_typed)
    info = {"pid": os.getpid(), "started": started, "finished": time.time(), "worker": _worker_address()}
    try:
        return cloudpickle.dumps((result, writes, deletes, typed_writes, typed_deletes, info))
    except Exception as exc:
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


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # not inside a worker (tests call the runners directly)
        return None


def run_sync_body(func_blob: bytes, data_blob: bytes, state: str, attempt: int, run_id: str,
                  wrappers: tuple[Any, ...] = ()) -> bytes:
    """Run a sync body in a worker thread (an awaitable it returns is run to completion).

    ``wrappers`` are context managers entered around the body (the caller's trace context).
    """
    started = time.time()
    func, ctx, shared, typed, p_shared, p_typed = _prepare(func_blob, data_blob, state, attempt, run_id)
    with contextlib.ExitStack() as stack:
        for wrapper in wrappers:
            stack.enter_context(wrapper)
        result = func(ctx)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
    return _finish(state, result, shared, typed, p_shared, p_typed, started)


async def run_async_body(func_blob: bytes, data_blob: bytes, state: str, attempt: int, run_id: str,
                         wrappers: tuple[Any, ...] = ()) -> bytes:
    """Run an async body on the worker's event loop (inside ``wrappers``, as above)."""
    started = time.time()
    func, ctx, shared, typed, p_shared, p_typed = _prepare(func_blob, data_blob, state, attempt, run_id)
    with contextlib.ExitStack() as stack:
        for wrapper in wrappers:
            stack.enter_context(wrapper)
        result = func(ctx)
        if inspect.isawaitable(result):
            result = await result
    return _finish(state, result, shared, typed, p_shared, p_typed, started)


async def _await(awaitable: Any) -> Any:
    return await awaitable


class IgnoreSigint(WorkerPlugin):
    """Worker plugin: ignore SIGINT, so the notebook's Stop button (which signals the whole
    process group, dask/distributed#1925) interrupts the cell but leaves local workers alive.

    Args:
        client_pid: The orchestrator's process id; a worker living in that same process
            (an in-process cluster) is left alone, or the kernel itself would ignore Stop.
    """

    name = "fluffy-ignore-sigint"
    idempotent = True

    def __init__(self, client_pid: int) -> None:
        self.client_pid = client_pid

    def setup(self, worker: Any) -> None:
        """Install the SIG_IGN handler (workers run their loop in the main thread)."""
        if os.getpid() == self.client_pid:
            return
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread (in-process workers): nothing to protect
            pass

    def teardown(self, worker: Any) -> None:
        """Nothing to undo: the process ends with the worker."""
