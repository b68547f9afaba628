"""Control half of Agent: ending states and runs (cancel, fail, shut down), pause, resume.

Owns what happens when work stops early: a state cancelled or preempted, a run failing
(other states cancelled, waiting ones dropped), shutdown with a cleanup timeout, and the
public ``pause``/``resume``/``cancel_state``/``cancel_all``.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
from typing import TYPE_CHECKING, Any

from ._checkpoint import Checkpoint
from ._errors import AgentRunningError, StateFailedError, StateNotFoundError
from ._events import StateCancelled
from ._result import RunResult
from ._status import AgentStatus, StateStatus

if TYPE_CHECKING:
    from ._agent import Agent
    from ._runner import Execution

log = logging.getLogger("fluffy_nb")


class ControlMixin:
    """Cancellation, failure and pause/resume methods of :class:`Agent`."""

    def _cancelled(self: Agent, ex: Execution, meta: Any) -> None:
        if ex.requeue:
            ex.requeue = False
            ex.attempt = 0
            self._pending[ex.state] = ex
            meta.status = StateStatus.READY
            heapq.heappush(self.priority_queue, (-self.states[ex.state].priority, ex))
            return
        meta.status = StateStatus.CANCELLED
        self._ended.add(ex.state)
        if self.events.active:
            self.events.publish(StateCancelled(self.name, self.run_id, self.clock.monotonic(), ex.state,
                                               ex.cancel_reason or "cancelled"))
        if self._failure is None and self._run_active and ex.cancel_reason in (None, "cancel_state"):
            # only a state cancelled on its own ends its branch (joins may go on); a run that
            # is shutting down (cancel_all, run timeout, cancelled run) starts nothing more
            self._joins.ended(ex.token)
            if self._parked:
                self._recheck_parked()

    def _fail_run(self: Agent, state: str, exc: BaseException, *, attempts: int = 1, wrap: bool = True) -> None:
        if self._failure is not None:
            return
        if wrap:
            err: BaseException = StateFailedError(
                f"state {state!r} failed after {attempts} attempt(s): {type(exc).__name__}: {exc}", state
            )
            err.__cause__ = exc
        else:
            err = exc
        self._failure = err
        for other in list(self._running_states.values()):
            if other.task is not None and other.task is not asyncio.current_task():
                other.cancel_reason = f"run failed in state {state!r}"
                self._cancel_task(other)
        self._clear_waiting("run failed")
        done = self._done
        if not self._running_states and done is not None and not done.done():
            done.set_result(None)

    def _cancel_task(self: Agent, ex: Execution) -> None:
        """Cancel the task of ``ex``. A task cancelled before its first step never runs
        ``_execute``'s ``finally``, so its bookkeeping is done once the task is done."""
        task = ex.task
        if task is None:
            return
        if inspect.getcoroutinestate(task.get_coro()) == inspect.CORO_CREATED:
            task.add_done_callback(lambda _t: self._never_started(ex))
        task.cancel()

    def _never_started(self: Agent, ex: Execution) -> None:
        if self._running_states.pop(ex.id, None) is None:
            return
        if self._pending.get(ex.state) is ex:
            del self._pending[ex.state]
        self._cancelled(ex, self.state_metadata[ex.state])
        self._dispatch()
        self._check_done()

    def _clear_waiting(self: Agent, reason: str) -> None:
        bus = self.events
        for ex in [e for _, e in self.priority_queue] + self._parked:
            if ex.deadline is not None:
                ex.deadline.cancel()
            # queued and dependency-blocked states will not run: say so (status and event)
            self.state_metadata[ex.state].status = StateStatus.CANCELLED
            if bus.active:
                bus.publish(StateCancelled(self.name, self.run_id, self.clock.monotonic(), ex.state, reason))
        self.priority_queue.clear()
        self._pending.clear()
        self._parked = []
        for task in self._wakeups.values():
            task.cancel()
        self._wakeups.clear()

    async def _shutdown(self: Agent, cleanup_timeout: float | None, reason: str) -> None:
        tasks = []
        me = asyncio.current_task()
        for ex in list(self._running_states.values()):
            if ex.task is not None and not ex.task.done() and ex.task is not me:
                ex.cancel_reason = reason
                self._cancel_task(ex)
                tasks.append(ex.task)
        self._clear_waiting(reason)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=cleanup_timeout)
            if pending:
                log.warning("fluffy_nb: %d state(s) of %r did not finish cleanup within %ss: %s",
                            len(pending), self.name, cleanup_timeout, [t.get_name() for t in pending])

    def _preempt(self: Agent, owner: str) -> bool:
        for ex in self._running_states.values():
            if (ex.state == owner or f"{ex.state}#{ex.id}" == owner) and ex.task is not None:
                ex.requeue = True
                ex.cancel_reason = "preempted"
                self._cancel_task(ex)
                return True
        return False

    async def pause(self: Agent, timeout: float | None = None) -> Checkpoint:
        """Stop starting states, let running ones finish, and return a checkpoint.

        Args:
            timeout: Running states still busy after this many seconds are cancelled and
                queued to run again on :meth:`resume`.
        """
        if not self._run_active:
            raise AgentRunningError(f"pause(): agent {self.name!r} is not running")
        self._paused = True
        if self._running_states:
            self._drained = asyncio.get_running_loop().create_future()
            done, _ = await asyncio.wait({self._drained}, timeout=timeout)
            if not done:
                for ex in list(self._running_states.values()):
                    if ex.task is not None:
                        ex.requeue = True
                        ex.cancel_reason = "paused"
                        self._cancel_task(ex)
                await self._drained
        self.status = AgentStatus.PAUSED
        return self._save_checkpoint("pause")

    async def resume(self: Agent) -> RunResult | None:
        """Continue a paused run (returns at once), or run a restored checkpoint to the end."""
        if self._run_active:
            if not self._paused:
                return None
            self._paused = False
            self.status = AgentStatus.RUNNING
            self._dispatch()
            self._check_done()
            return None
        return await self.run()

    def cancel_state(self: Agent, name: str) -> bool:
        """Cancel the running, queued or waiting runs of state ``name``; returns whether any was."""
        if name not in self.states:
            raise StateNotFoundError(f"cancel_state({name!r}): agent {self.name!r} has no state {name!r}")
        found = False
        for ex in list(self._running_states.values()):
            if ex.state == name and ex.task is not None:
                ex.cancel_reason = "cancel_state"
                self._cancel_task(ex)
                found = True
        queued = [(p, ex) for p, ex in self.priority_queue if ex.state == name]
        parked = [ex for ex in self._parked if ex.state == name]
        if queued or parked:
            self.priority_queue = [(p, ex) for p, ex in self.priority_queue if ex.state != name]
            heapq.heapify(self.priority_queue)
            self._parked = [ex for ex in self._parked if ex.state != name]
            self._pending.pop(name, None)
            for ex in [e for _, e in queued] + parked:
                self._cancelled(ex, self.state_metadata[name])
            found = True
            self._check_done()
        return found

    async def cancel_all(self: Agent, cleanup_timeout: float | None = 10.0) -> None:
        """Cancel every running and waiting state; the run ends with status CANCELLED."""
        if not self._run_active:
            return
        self.status = AgentStatus.CANCELLED
        self._failure = None
        await self._shutdown(cleanup_timeout, "cancel_all")
        self._finish_run(AgentStatus.CANCELLED, None)
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)
