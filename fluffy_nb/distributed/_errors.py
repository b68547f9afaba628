"""The errors a Dask-run state can fail with, beyond the body's own.

Each names the state and says what to do. They survive pickling (a worker may raise them).
"""

from __future__ import annotations

from typing import Any

from ..engine._errors import FluffyError


class WorkerLostError(FluffyError, ConnectionError):
    """The Dask worker running a state died (killed, out of memory, crashed) mid-state.

    Retried by a ``RetryPolicy`` like any exception (``retry_on=(WorkerLostError,)`` retries
    only this). Dask itself never re-runs the attempt. A state that was only *queued* on the
    worker (its body had not started) is sent to another worker without this error and
    without using a retry.
    """

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.state))


class SchedulerLostError(FluffyError, ConnectionError):
    """The connection to the Dask scheduler is gone (scheduler killed, network down).

    Not a :class:`WorkerLostError`: ``retry_on=(WorkerLostError,)`` does not retry it. An
    attempt in flight fails with it at once; a later attempt waits at most the executor's
    ``reconnect_timeout`` for the client to reconnect, then fails with it too (at once, from
    then on), so a run never hangs on a dead client.
    """

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.state))


class SharedValueMutatedError(FluffyError, RuntimeError):
    """A remote body changed, in place, a large context value that lives on the cluster.

    Large values are scattered once and shared by every state on a worker, so an in-place
    change there would leak into other states (or be lost). Assign a new value instead:
    ``ctx.set_state(key, changed_copy)``. Small values are copied per state, and their
    in-place changes are carried back.
    """

    def __init__(self, message: str, state: str, key: str) -> None:
        super().__init__(message)
        self.state = state
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.state, self.key))
