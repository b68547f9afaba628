"""RunControl: how work of one run stops early, and the run's pause/resume/cancel controls.

Owns what happens when a state is cancelled or preempted, when the run fails (other states
cancelled, waiting ones dropped), shutdown with a cleanup timeout, and the public
``pause``/``resume``/``cancel_state``/``cancel_all`` of a :class:`~fluffy_nb.engine.Run`.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
from typing import TYPE_CHECKING

from ._errors import AgentRunningError, StateFailedError, StateNotFoundError
from ._events import StateCancelled
from ._status import AgentStatus, StateStatus

if TYPE_CHECKING:
    from ._checkpoint import Checkpoint
    from ._run import Run
    from ._runner import Execution, Scheduler
    from ._state import StateMetadata

log = logging.getLogger("fluffy_nb")


class RunControl:
    """Cancellation, failure and pause/resume of one run.

    Args:
        run: The run it controls.
        scheduler: That run's scheduler.
    """

    def __init__(self, run: Run, scheduler: Scheduler) -> None:
        self.run = run
        self.scheduler = scheduler

    # -- ending states and the run ------------------------------------------------------------
    def cancelled(self, ex: Execution, meta: StateMetadata) -> None:
        """``ex`` was cancelled: requeue it (preempted, paused) or end its branch."""
        run, sched = self.run, self.scheduler
        if ex.requeue:
            ex.requeue = False
            ex.cancel_reason = None
            ex.attempt = 0
            sched.pending[ex.state] = ex
            meta.status = StateStatus.READY
            heapq.heappush(sched.queue, (-run.agent.states[ex.state].priority, ex))
            return
        meta.status = StateStatus.CANCELLED
        run.ended.add(ex.state)
        if run.events.active:
            run.events.publish(StateCancelled(run.name, run.run_id, run.clock.monotonic(), ex.state,
                                              ex.cancel_reason or "cancelled"))
        if run.failure is None and run.active and ex.cancel_reason in (None, "cancel_state"):
            # only a state cancelled on its own ends its branch (joins may go on); a run that
            # is shutting down (cancel_all, run timeout, cancelled run) starts nothing more
            try:
                sched.joins.ended(ex.token)
                run.deps.recheck()
            except Exception as exc:  # a dependency condition raised: fail the run, never hang
                self.fail(ex.state, exc, wrap=False)

    def fail(self, state: str, exc: BaseException, *, attempts: int = 1, wrap: bool = True,
             payload: int | None = None) -> None:
        """The run fails because of ``state`` (the branch of map payload ``payload``, when one is
        given; ``attempts=0``: it never started): cancel the others, drop what waits, wake the run."""
        run, sched = self.run, self.scheduler
        if run.failure is not None:
            return
        if wrap:
            which = "" if payload is None else f" (payload {payload})"
            what = f"failed after {attempts} attempt(s)" if attempts else "did not start"
            err: BaseException = StateFailedError(f"state {state!r}{which} {what}: {type(exc).__name__}: {exc}", state)
            err.__cause__ = exc
        else:
            err = exc
        run.failure = err
        me = asyncio.current_task()
        for other in list(sched.running.values()):
            if other.task is not None and other.task is not me:
                other.cancel_reason = f"run failed in state {state!r}"
                self._cancel_task(other)
        self.clear_waiting("run failed")
        done = sched.done
        if not sched.running and done is not None and not done.done():
            done.set_result(None)

    def _cancel_task(self, ex: Execution) -> None:
        """Cancel the task of ``ex``. A task cancelled before its first step never runs its
        ``finally``, so its bookkeeping is done once the task is done."""
        task = ex.task
        if task is None:
            return
        if inspect.getcoroutinestate(task.get_coro()) == inspect.CORO_CREATED:  # type: ignore[arg-type]
            task.add_done_callback(lambda _t: self._never_started(ex))
        task.cancel()

    def _never_started(self, ex: Execution) -> None:
        sched = self.scheduler
        if sched.running.pop(ex.id, None) is None:
            return
        if sched.pending.get(ex.state) is ex:
            del sched.pending[ex.state]
        self.cancelled(ex, self.run.meta(ex.state))
        sched.dispatch()
        sched.check_done()

    def clear_waiting(self, reason: str) -> None:
        """Drop queued and dependency-blocked executions (they will not run), saying so."""
        run, sched = self.run, self.scheduler
        bus = run.events
        for ex in [e for _, e in sched.queue] + run.deps.drop_all():
            if ex.deadline is not None:
                ex.deadline.cancel()
            run.meta(ex.state).status = StateStatus.CANCELLED
            if bus.active:
                bus.publish(StateCancelled(run.name, run.run_id, run.clock.monotonic(), ex.state, reason))
        sched.queue.clear()
        sched.pending.clear()

    async def shutdown(self, cleanup_timeout: float | None, reason: str) -> None:
        """Cancel every running state and wait up to ``cleanup_timeout`` for their cleanup."""
        tasks = []
        me = asyncio.current_task()
        for ex in list(self.scheduler.running.values()):
            if ex.task is not None and not ex.task.done() and ex.task is not me:
                ex.cancel_reason = reason
                self._cancel_task(ex)
                tasks.append(ex.task)
        self.clear_waiting(reason)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=cleanup_timeout)
            if pending:
                log.warning("fluffy_nb: %d state(s) of %r did not finish cleanup within %ss: %s",
                            len(pending), self.run.name, cleanup_timeout, [t.get_name() for t in pending])

    def preempt(self, owner: str) -> bool:
        """Cancel the execution holding ``owner``'s resources and queue it to run again."""
        for ex in self.scheduler.running.values():
            if (ex.state == owner or f"{ex.state}#{ex.id}" == owner) and ex.task is not None:
                ex.requeue = True
                ex.cancel_reason = "preempted"
                self._cancel_task(ex)
                return True
        return False

    # -- public controls ---------------------------------------------------------------------
    async def pause(self, timeout: float | None = None) -> Checkpoint | None:
        """Stop starting states, let running ones finish (cancel them after ``timeout``), checkpoint.

        A state waiting for a person is not waited for: its question stays open, an answer
        given while paused lets it finish, and the checkpoint counts it as in flight (a run
        restored from it asks again)."""
        run, sched = self.run, self.scheduler
        if not run.active:
            raise AgentRunningError(
                f"pause(): run {run.run_id[:8]} of agent {run.name!r} is not running (status "
                f"{run.status.value}); pause a run while it runs, e.g. handle = agent.start(); "
                "await agent.pause()"
            )
        sched.paused = True
        run.deps.pause()  # dependency timeouts stop counting while paused
        if run.children:  # states that are agents: their runs pause too, and count as idle once paused
            from ._subflow import pause_children

            await pause_children(run, timeout)
        if sched.running:
            sched.drained = asyncio.get_running_loop().create_future()
            sched.idle_while_paused()
            done, _ = await asyncio.wait({sched.drained}, timeout=timeout)
            if not done:
                for ex in list(sched.running.values()):
                    if ex.task is not None and not sched.idle(ex):
                        ex.requeue = True
                        ex.cancel_reason = "paused"
                        self._cancel_task(ex)
                await sched.drained
        run.status = AgentStatus.PAUSED
        return run.checkpoints.save("pause")

    def resume(self) -> bool:
        """Continue a paused run; False when it was not paused."""
        run, sched = self.run, self.scheduler
        if not (run.active and sched.paused):
            return False
        sched.paused = False
        run.status = AgentStatus.RUNNING
        run.deps.resume()  # re-arm dependency timeouts with the time they had left
        if run.children:
            from ._subflow import resume_children

            resume_children(run)
        sched.dispatch()
        sched.check_done()
        return True

    def cancel_state(self, name: str) -> bool:
        """Cancel the running, queued or waiting executions of ``name``; whether any was found."""
        run, sched = self.run, self.scheduler
        if name not in run.agent.states:
            known = ", ".join(sorted(run.agent.states)[:12])
            raise StateNotFoundError(
                f"cancel_state({name!r}): agent {run.name!r} has no state {name!r} (known: {known}); "
                "pass the name a state was added under"
            )
        found = False
        for ex in list(sched.running.values()):
            if ex.state == name and ex.task is not None:
                ex.cancel_reason = "cancel_state"
                self._cancel_task(ex)
                found = True
        queued = [ex for _, ex in sched.queue if ex.state == name]
        parked = run.deps.drop(name)
        if queued or parked:
            sched.queue = [(p, ex) for p, ex in sched.queue if ex.state != name]
            heapq.heapify(sched.queue)
            sched.pending.pop(name, None)
            for ex in queued + parked:
                self.cancelled(ex, run.meta(name))
            found = True
            sched.check_done()
        return found

    async def cancel_all(self, cleanup_timeout: float | None = 10.0) -> None:
        """Cancel every running and waiting state; the run ends CANCELLED."""
        run, sched = self.run, self.scheduler
        if not run.active:
            return
        run.status = AgentStatus.CANCELLED
        run.failure = None
        await self.shutdown(cleanup_timeout, "cancel_all")
        run.finish(AgentStatus.CANCELLED, None)
        done = sched.done
        if done is not None and not done.done():
            done.set_result(None)
