"""OpenTelemetry traces of fluffy_nb runs: an event-bus subscriber, off until you switch it on.

``instrument(agent)`` (or ``instrument()`` for every agent that runs from now on) subscribes
to the engine's events and turns them into spans:

* one span per run, ``run <agent>``: attributes ``fluffy.agent``, ``fluffy.run_id``,
  ``fluffy.status``; its parent is the OpenTelemetry context current when the run starts, so
  a run started inside a state of another instrumented run (a sub-workflow) is that state's
  child, and a run awaited inside your own span is yours;
* one span per state attempt, ``state <name>``, child of its run span: ``fluffy.state``,
  ``fluffy.attempt``, ``fluffy.retries`` (attempts before this one), ``fluffy.status``
  (completed, failed, retrying, timeout, cancelled; interrupted: a pause with a timeout stopped
  it and it runs again), ``fluffy.resources.<TYPE>`` (declared
  ``ResourceRequirements``), ``fluffy.worker`` when the body ran on a Dask worker. While the
  attempt runs its span is the current span in the state's task, so spans you open in a
  state body, and runs it starts, nest under it; a Dask body sees it too (the trace context
  travels with the remote call);
* span events: ``fluffy.wait.resources`` / ``fluffy.wait.dependencies`` (how long the state
  waited before this attempt), ``fluffy.human.requested`` / ``answered`` / ``rejected`` /
  ``withdrawn`` (a wait for a person), ``fluffy.retry``, ``fluffy.checkpoint`` on the run;
* a failed attempt records its exception (``span.record_exception``) and sets an ERROR status.

Requires ``pip install "fluffy_nb[otel]"``. Importing ``fluffy_nb`` never imports this module.

Example:
    >>> from opentelemetry.sdk.trace import TracerProvider        # doctest: +SKIP
    >>> import fluffy_nb.otel                                      # doctest: +SKIP
    >>> fluffy_nb.otel.instrument(agent, tracer_provider=TracerProvider())   # doctest: +SKIP
    >>> await agent.run()                                          # doctest: +SKIP
    >>> fluffy_nb.otel.uninstrument(agent)                         # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, Status, StatusCode

from .engine import _hooks
from .engine._events import (
    CheckpointSaved,
    Event,
    HumanAnswered,
    HumanRejected,
    HumanRequested,
    HumanWithdrawn,
    RunFinished,
    RunStarted,
    StateBlocked,
    StateCancelled,
    StateFailed,
    StateFinished,
    StateRetrying,
    StateStarted,
)
from .engine._instrument import Instrumentation

__all__ = ["RunTracer", "instrument", "instrumented", "uninstrument"]

_SCOPE = "fluffy_nb"
_TEXT_LIMIT = 256


def _short(text: Any) -> str:
    s = str(text)
    return s if len(s) <= _TEXT_LIMIT else s[: _TEXT_LIMIT - 1] + "…"


def _current_task() -> Any:
    try:
        return asyncio.current_task()
    except RuntimeError:  # published outside a running loop
        return None


class _Attempt:
    __slots__ = ("span", "task", "token")

    def __init__(self, span: Span, token: Any, task: Any) -> None:
        self.span, self.token, self.task = span, token, task


class RunTracer:
    """The subscriber behind :func:`instrument`: folds one agent's events into spans.

    Args:
        agent: The agent whose events it receives (kept as a weak reference).
        tracer_provider: Where spans go (default: the global provider).
    """

    def __init__(self, agent: Any, tracer_provider: Any = None) -> None:
        from . import __version__

        self._agent = weakref.ref(agent)
        self.tracer_provider = tracer_provider
        self.tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        self._runs: dict[str, Span] = {}
        self._attempts: dict[tuple[str, str], list[_Attempt]] = {}
        self._waits: dict[tuple[str, str], tuple[float, str]] = {}
        self._retry: dict[tuple[str, str], StateRetrying] = {}
        self._handlers: dict[type, Any] = {
            RunStarted: self._run_started, RunFinished: self._run_finished,
            StateStarted: self._state_started, StateFinished: self._state_finished,
            StateFailed: self._state_failed, StateRetrying: self._state_retrying,
            StateCancelled: self._state_cancelled, StateBlocked: self._state_blocked,
            HumanRequested: self._human, HumanAnswered: self._human, HumanRejected: self._human,
            HumanWithdrawn: self._human, CheckpointSaved: self._checkpoint,
        }

    def __call__(self, event: Event) -> None:
        """Handle one event (this object is the bus subscriber)."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    # -- runs -------------------------------------------------------------------------------------
    def _run_started(self, event: RunStarted) -> None:
        old = self._runs.pop(event.run_id, None)
        if old is not None:  # a resumed run starts again under the same id
            old.end()
        self._runs[event.run_id] = self.tracer.start_span(
            f"run {event.agent}",
            context=otel_context.get_current(),
            attributes={"fluffy.agent": event.agent, "fluffy.run_id": event.run_id,
                        "fluffy.start_states": list(event.states)},
        )

    def _run_finished(self, event: RunFinished) -> None:
        for key in [k for k in self._attempts if k[0] == event.run_id]:
            while self._attempts.get(key):
                self._end(key, "abandoned")
        for key in [k for k in self._waits if k[0] == event.run_id]:
            del self._waits[key]
        for key in [k for k in self._retry if k[0] == event.run_id]:
            del self._retry[key]
        span = self._runs.pop(event.run_id, None)
        if span is None:
            return
        span.set_attribute("fluffy.status", event.status)
        span.set_attribute("fluffy.duration_s", event.duration)
        if event.error:
            kind, _, message = event.error.partition(": ")
            span.add_event("exception", {"exception.type": kind, "exception.message": _short(message)})
            span.set_status(Status(StatusCode.ERROR, _short(event.error)))
        elif event.status == "completed":
            span.set_status(Status(StatusCode.OK))
        span.end()

    def _checkpoint(self, event: CheckpointSaved) -> None:
        span = self._runs.get(event.run_id)
        if span is not None:
            span.add_event("fluffy.checkpoint", {"fluffy.checkpoint_id": event.checkpoint_id,
                                                 "fluffy.trigger": event.trigger, "fluffy.completed": event.completed})

    # -- state attempts ---------------------------------------------------------------------------
    def _state_started(self, event: StateStarted) -> None:
        key = (event.run_id, event.state)
        if key in self._attempts:
            self._close_interrupted(key)
        run_span = self._runs.get(event.run_id)
        parent = trace.set_span_in_context(run_span) if run_span is not None else otel_context.get_current()
        attributes: dict[str, Any] = {
            "fluffy.agent": event.agent, "fluffy.run_id": event.run_id, "fluffy.state": event.state,
            "fluffy.attempt": event.attempt, "fluffy.retries": event.attempt - 1,
        }
        agent = self._agent()
        spec = None if agent is None else agent.states.get(event.state)
        resources = getattr(spec, "resources", None)
        if resources is not None:
            for rtype, amount in resources.amounts().items():
                attributes[f"fluffy.resources.{rtype.name}"] = float(amount)
        span = self.tracer.start_span(f"state {event.state}", context=parent, attributes=attributes)
        wait = self._waits.pop(key, None)
        if wait is not None:
            since, reason = wait
            kind = "dependencies" if reason.startswith("waiting for dependencies") else "resources"
            span.add_event(f"fluffy.wait.{kind}", {"fluffy.reason": _short(reason),
                                                   "fluffy.waited_s": max(0.0, event.time - since)})
        retry = self._retry.pop(key, None)
        if retry is not None:
            span.add_event("fluffy.retry", {"fluffy.delay_s": retry.delay, "fluffy.error": _short(retry.error)})
        # make the attempt current in the state's task: its body, the runs it starts and the
        # remote calls it makes all see it (detached again when the attempt ends, same task)
        token = otel_context.attach(trace.set_span_in_context(span))
        self._attempts.setdefault(key, []).append(_Attempt(span, token, _current_task()))

    def _close_interrupted(self, key: tuple[str, str]) -> None:
        """End attempts whose task is gone without an event (a pause requeued the state)."""
        for attempt in [a for a in self._attempts[key] if a.task is not None and a.task.done()]:
            self._attempts[key].remove(attempt)
            attempt.span.set_attribute("fluffy.status", "interrupted")
            attempt.span.end()
        if not self._attempts[key]:
            del self._attempts[key]

    def _take(self, key: tuple[str, str]) -> _Attempt | None:
        open_ = self._attempts.get(key)
        if not open_:
            return None
        task = _current_task()
        index = next((i for i, a in enumerate(open_) if a.task is task), 0)
        attempt = open_.pop(index)
        if not open_:
            del self._attempts[key]
        if attempt.task is not None and attempt.task is task:
            otel_context.detach(attempt.token)
        return attempt

    def _end(self, key: tuple[str, str], status: str) -> Span | None:
        attempt = self._take(key)
        if attempt is None:
            return None
        attempt.span.set_attribute("fluffy.status", status)
        attempt.span.end()
        return attempt.span

    def _state_finished(self, event: StateFinished) -> None:
        attempt = self._take((event.run_id, event.state))
        if attempt is None:
            return
        span = attempt.span
        span.set_attributes({"fluffy.status": "completed", "fluffy.duration_s": event.duration,
                             "fluffy.next_states": list(event.next_states)})
        span.set_status(Status(StatusCode.OK))
        span.end()

    def _state_failed(self, event: StateFailed) -> None:
        attempt = self._take((event.run_id, event.state))
        if attempt is None:
            return
        span = attempt.span
        status = "timeout" if event.timed_out else "failed" if event.final else "retrying"
        span.set_attributes({"fluffy.status": status, "fluffy.duration_s": event.duration,
                             "fluffy.final": event.final})
        exc = event.exception  # the engine hands over the error itself
        if isinstance(exc, BaseException):
            span.record_exception(exc, attributes={"fluffy.error_type": event.error_type,
                                                   "fluffy.timed_out": event.timed_out})
        else:
            span.add_event("exception", {"exception.type": event.error_type,
                                         "exception.message": _short(event.error)})
        span.set_status(Status(StatusCode.ERROR, _short(f"{event.error_type}: {event.error}")))
        span.end()

    def _state_retrying(self, event: StateRetrying) -> None:
        self._retry[(event.run_id, event.state)] = event

    def _state_cancelled(self, event: StateCancelled) -> None:
        key = (event.run_id, event.state)
        self._waits.pop(key, None)
        attempt = self._take(key)
        if attempt is None:
            return  # it never started: nothing to close
        attempt.span.add_event("fluffy.cancelled", {"fluffy.reason": _short(event.reason)})
        attempt.span.set_attribute("fluffy.status", "cancelled")
        attempt.span.end()

    def _state_blocked(self, event: StateBlocked) -> None:
        key = (event.run_id, event.state)
        if key not in self._waits:
            self._waits[key] = (event.time, event.reason)
        span = self._runs.get(event.run_id)
        if span is not None:
            span.add_event("fluffy.state.blocked", {"fluffy.state": event.state, "fluffy.reason": _short(event.reason)})

    def _human(self, event: Any) -> None:
        open_ = self._attempts.get((event.run_id, event.state))
        span = open_[-1].span if open_ else self._runs.get(event.run_id)
        if span is None:
            return
        attributes: dict[str, Any] = {"fluffy.request_id": event.request_id}
        if isinstance(event, HumanRequested):
            name = "fluffy.human.requested"
            attributes["fluffy.prompt"] = _short(event.prompt)
            if event.timeout is not None:
                attributes["fluffy.timeout_s"] = event.timeout
            if event.choices:
                attributes["fluffy.choices"] = [str(c) for c in event.choices]
        elif isinstance(event, HumanAnswered):
            name = "fluffy.human.answered"
            attributes["fluffy.source"] = event.source
            attributes["fluffy.waited_s"] = event.waited
        elif isinstance(event, HumanRejected):
            name = "fluffy.human.rejected"
            attributes["fluffy.message"] = _short(event.message)
        else:
            name = "fluffy.human.withdrawn"
        span.add_event(name, attributes)

    def open_spans(self) -> int:
        """How many run and attempt spans are open now (0 once every run has finished)."""
        return len(self._runs) + sum(len(v) for v in self._attempts.values())

    def __repr__(self) -> str:
        agent = self._agent()
        return f"<RunTracer agent={getattr(agent, 'name', None)!r} open_spans={self.open_spans()}>"


# -- carrying the trace into remote state bodies (Dask) ---------------------------------------------
class RemoteTraceContext:
    """Picklable: carries the current trace context to a Dask worker and makes it current there.

    The executor asks ``_hooks.remote_context`` for these in the state's task (where the
    attempt span is current), sends them with the body, and enters them around it on the
    worker; back in the orchestrator ``finished(info)`` notes the worker on the attempt span.
    """

    def __init__(self, carrier: dict[str, str]) -> None:
        self.carrier = carrier
        self._token: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"carrier": self.carrier}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.carrier = state["carrier"]
        self._token = None

    def __enter__(self) -> RemoteTraceContext:
        self._token = otel_context.attach(propagate.extract(self.carrier))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None

    def finished(self, info: dict[str, Any]) -> None:
        """Called in the orchestrator with what the worker reported (``worker``, ``pid``)."""
        span = trace.get_current_span()
        if span.is_recording():
            if info.get("worker"):
                span.set_attribute("fluffy.worker", str(info["worker"]))
            if info.get("pid") is not None:
                span.set_attribute("fluffy.worker_pid", int(info["pid"]))


def _remote_context() -> RemoteTraceContext | None:
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return RemoteTraceContext(carrier) if carrier else None


# -- switching on and off -----------------------------------------------------------------------------
_instrumentation = Instrumentation(RunTracer, "otel")


def instrument(agent: Any = None, *, tracer_provider: Any = None) -> RunTracer | None:
    """Trace ``agent``'s runs (or, with no agent, every agent's runs from now on).

    Args:
        agent: The agent to trace; None traces every agent whose run starts afterwards.
        tracer_provider: The OpenTelemetry ``TracerProvider`` spans go to (default: global).

    Returns:
        The agent's :class:`RunTracer` (None when instrumenting all agents).
    """

    def make(a: Any) -> RunTracer:
        return RunTracer(a, tracer_provider)

    if _remote_context not in _hooks.remote_context:
        _hooks.remote_context.append(_remote_context)
    if agent is None:
        _instrumentation.attach_all(make)
        return None
    current = _instrumentation.subscriber(agent)
    if current is not None and current.tracer_provider is not tracer_provider:  # another provider now
        _instrumentation.detach(agent)
    tracer: RunTracer = _instrumentation.attach(agent, make)
    return tracer


def uninstrument(agent: Any = None) -> None:
    """Stop tracing ``agent``; with no agent, stop tracing everything (and ``instrument()``)."""
    _instrumentation.detach(agent)
    if agent is None and _remote_context in _hooks.remote_context:
        _hooks.remote_context.remove(_remote_context)


def instrumented(agent: Any) -> bool:
    """Whether ``agent`` is traced now."""
    return _instrumentation.subscriber(agent) is not None
