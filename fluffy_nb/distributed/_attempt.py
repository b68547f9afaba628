"""One attempt of a state on Dask: submit, wait for it to start, time it, apply what came back.

The steps of :meth:`DaskExecutor.run_state`, kept apart from construction:

1. Wait for the scheduler connection (bounded: ``reconnect_timeout``).
2. Split the context: large values become references to data scattered once (``_data``).
3. Submit one task (``retries=0``, key ``fluffy-<agent>-<state>-<id>``, the declared resources,
   worker restrictions and annotations of the state).
4. Until the body starts: if no connected worker can meet the request for
   ``resource_timeout`` seconds, fail with ``ResourceError`` (an adaptive cluster gets that
   long to grow). When the body starts, publish ``StatePlaced`` (its worker) to the run.
5. Wait for the result; the state's ``timeout`` counts from the start (queue time is free).
6. A worker that died before the body started only loses a queued task: submit again, no retry
   used. One that died mid-body is a :class:`WorkerLostError`; a lost scheduler a
   :class:`SchedulerLostError`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

import cloudpickle
import dask
from distributed.scheduler import KilledWorker

from ..engine import _hooks
from ..engine._errors import StateTimeoutError
from ..engine._events import StatePlaced
from ._errors import SharedValueMutatedError, WorkerLostError
from ._pickling import dumps_body, dumps_snapshot
from ._remote import run_body
from ._resources import fits, unmet

try:
    from distributed.client import FutureCancelledError
except ImportError:  # distributed < 2024.7 raised asyncio.CancelledError for cancelled futures
    class FutureCancelledError(Exception):  # type: ignore[no-redef]
        """Placeholder: never raised by older distributed versions."""

if TYPE_CHECKING:
    from ._executor import DaskExecutor

log = logging.getLogger("fluffy_nb.distributed")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class _Requeue(Exception):
    """The task never started its body (its worker died, or its input data was lost): submit again."""


def remote_wrappers() -> tuple[Any, ...]:
    """Context managers to enter around a body on the worker (``_hooks.remote_context``: tracing)."""
    wrappers = []
    for capture in _hooks.remote_context:
        try:
            wrapper = capture()
        except Exception:
            log.exception("fluffy_nb: remote context hook %r failed", capture)
            continue
        if wrapper is not None:
            wrappers.append(wrapper)
    return tuple(wrappers)


def task_key(ctx: Any, state: str) -> str:
    """``fluffy-<agent>-<state>-<id>``: Dask's dashboard groups tasks by the part before the id."""
    agent = getattr(ctx.agent, "name", None) or "agent"
    return f"fluffy-{_UNSAFE.sub('_', agent)}-{_UNSAFE.sub('_', state)}-{uuid.uuid4().hex[:16]}"


def submit_options(spec: Any, resources: dict[str, float]) -> dict[str, Any]:
    """``client.submit`` keywords from the state's declared resources and Dask options."""
    options: dict[str, Any] = {"pure": False, "retries": 0, "priority": int(spec.priority),
                               "resources": resources or None}
    workers = spec.options.get("workers")
    if workers is not None:
        options["workers"] = [workers] if isinstance(workers, str) else list(workers)
        options["allow_other_workers"] = bool(spec.options.get("allow_other_workers", False))
    return options


async def run_attempt(ex: DaskExecutor, spec: Any, ctx: Any, wrappers: tuple[Any, ...]) -> bytes:
    """Submit until the body has run once; the blob the worker sent back."""
    name = spec.name
    func_blob = dumps_body(name, spec.func)
    while True:
        await ex.watch.ensure_connected(ex.reconnect_timeout, name)
        request = ex.request_of(spec)
        small_shared, large_shared = await ex.data.references(ex.client, dict(ctx.shared_state))
        small_typed, large_typed = await ex.data.references(ex.client, dict(ctx.typed_data))
        data_blob = dumps_snapshot(name, small_shared, small_typed)
        large_keys = ({k: f.key for k, f in large_shared.items()}, {k: f.key for k, f in large_typed.items()})
        key = task_key(ctx, name)
        started = ex.watch.expect_start(key)
        with dask.annotate(**(spec.options.get("annotations") or {})):
            future = ex.client.submit(run_body, func_blob, data_blob, (large_shared, large_typed), large_keys,
                                      name, ctx.attempt, ctx.run_id, key, wrappers, key=key,
                                      **submit_options(spec, request))
        ex.count("submitted")
        ex.in_flight[key] = name
        try:
            return await _follow(ex, spec, ctx, future, started, request, {**large_keys[1], **large_keys[0]})
        except _Requeue:
            ex.count("requeued")
        finally:
            ex.in_flight.pop(key, None)
            ex.watch.forget(key)
            future.release()


async def _follow(ex: DaskExecutor, spec: Any, ctx: Any, future: Any, started: asyncio.Future[str],
                  request: dict[str, float], large_keys: dict[str, str]) -> bytes:
    name = spec.name
    result = asyncio.get_running_loop().create_task(_result(future))
    try:
        await _until_started(ex, name, result, started, request)
        if started.done() and not started.cancelled():
            _placed(ctx, name, started.result())
        return await _with_timeout(spec, result)
    except asyncio.CancelledError:
        ex.count("cancelled")
        await ex.cancel(future)
        raise
    except StateTimeoutError:
        ex.count("cancelled")
        await ex.cancel(future)
        raise
    except KilledWorker as exc:
        if not started.done():
            raise _Requeue() from exc
        ex.count("workers_lost")
        raise WorkerLostError(
            f"state {name!r} (attempt {ctx.attempt}) was lost: its Dask worker died mid-state "
            f"({exc}). Dask does not re-run it; give the state a RetryPolicy to run it again", name
        ) from exc
    except FutureCancelledError as exc:
        raise _cancelled_on_cluster(ex, name, exc, started.done()) from exc
    except SharedValueMutatedError as exc:
        ex.count("failed")
        ex.data.forget_future(large_keys.get(exc.key, ""))  # that cluster copy is changed: send it again
        raise
    except Exception:
        ex.count("failed")
        raise
    finally:
        result.cancel()


def _cancelled_on_cluster(ex: DaskExecutor, name: str, exc: Any, started: bool) -> BaseException:
    reason = str(getattr(exc, "reason", ""))
    if "scheduler" in reason or ex.client.status != "running":
        ex.count("scheduler_lost")
        return ex.watch.lost_error(name, f"the connection closed while the state ran ({reason})")
    if not started:
        return _Requeue()  # e.g. scattered input data left with a worker: send it again
    ex.count("cancelled")
    return WorkerLostError(f"state {name!r}: its Dask task was cancelled on the cluster ({exc})", name)


async def _result(future: Any) -> Any:
    return await future


async def _until_started(ex: DaskExecutor, name: str, result: asyncio.Task[Any], started: asyncio.Future[str],
                         request: dict[str, float]) -> None:
    """Wait for the start notice (or the end); fail when no worker can meet ``request`` for too long."""
    loop = asyncio.get_running_loop()
    unmet_since: float | None = None
    while not (started.done() or result.done()):
        if fits(ex.watch.workers, request):
            unmet_since = None
        elif unmet_since is None:
            unmet_since = loop.time()
        timeout = None if unmet_since is None else max(0.0, unmet_since + ex.resource_timeout - loop.time())
        await asyncio.wait({result, started, ex.watch.changed()}, timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        if (unmet_since is not None and not (started.done() or result.done())
                and loop.time() >= unmet_since + ex.resource_timeout and not fits(ex.watch.workers, request)):
            raise unmet(name, request, ex.watch.workers, ex.resource_timeout)


async def _with_timeout(spec: Any, result: asyncio.Task[Any]) -> bytes:
    if spec.timeout is None:
        return await result  # type: ignore[no-any-return]
    timer = asyncio.timeout(spec.timeout)
    try:
        async with timer:
            return await result  # type: ignore[no-any-return]
    except TimeoutError as exc:
        if not timer.expired():
            raise
        raise StateTimeoutError(
            f"state {spec.name!r} ran longer than its timeout of {spec.timeout}s on its Dask worker "
            "(time queued on the cluster does not count)", spec.name
        ) from exc


def _placed(ctx: Any, state: str, worker: str) -> None:
    run = ctx.run
    events = getattr(run, "events", None)
    if events is not None and events.active:
        events.publish(StatePlaced(run.name, run.run_id, run.clock.monotonic(), state, ctx.attempt, worker))


def apply_outcome(ex: DaskExecutor, name: str, ctx: Any, blob: bytes, wrappers: tuple[Any, ...]) -> Any:
    """Apply the writes of a finished attempt to the live context; the body's result."""
    result, writes, deletes, typed_writes, typed_deletes, info = cloudpickle.loads(blob)
    for wrapper in wrappers:
        finished = getattr(wrapper, "finished", None)
        if finished is not None:
            try:
                finished(info)
            except Exception:  # tracing must never fail a state
                log.exception("fluffy_nb: remote context %r failed after state %r", wrapper, name)
    for key in deletes:
        ctx.remove_state(key)
    for key, value in writes.items():
        ctx.set_state(key, value)
    for key in typed_deletes:
        ctx.typed_data.pop(key, None)
    for key, value in typed_writes.items():
        ctx.set_typed(key, value)
    ex.count("completed")
    return result
