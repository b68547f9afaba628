"""Routed failures across a restore: the error a route's state reads, noted in checkpoints.

A state that ``on_error``/``on_timeout`` sent a branch to reads the failure as ``ctx.last_error``.
The scheduler keeps such a failure (``Outcomes.routed``) only while its state is in flight: it
is dropped as that execution ends, so a run that routes often holds none of them for long and a
run without routes holds nothing. While such a state is in flight, each checkpoint of its run notes the failure in
``metadata["routed"]`` (state -> the state it failed in, the error's class name, message and
plain arguments), so a run restored from that checkpoint (``restore``, ``resume_latest`` after a
kill) starts the state with the error rebuilt: a ``StateTimeoutError`` or one of Python's built-in
exception classes as it was (``ConnectionError('model overloaded')``), any other class as a
:class:`~fluffy_nb.engine._errors.RoutedError` naming it. No class is ever looked up by a name
from a checkpoint beyond the built-in exceptions, and a damaged note is a ``CheckpointError``.
Payload branches (``_map.py``) are not noted: a restored map branch's route runs without it.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

from ._errors import CheckpointError, RoutedError, StateTimeoutError

if TYPE_CHECKING:
    from ._outcomes import Outcomes
    from ._runner import Execution

_MAX_TEXT = 4000  # characters of a noted message
_MAX_ARGS = 8


def track(sched: Outcomes, target: str, error: BaseException, source: str) -> None:
    """Remember the execution of ``target`` just started for ``error`` (failed in ``source``)."""
    ex = sched.pending.get(target)
    if ex is None or ex.error is not error:
        return  # joined an execution already waiting there: it keeps its own
    routed = sched.routed
    if routed is None:
        routed = sched.routed = {}
    else:  # an entry the run dropped unstarted (a cancel, a failure) goes here: only live ones stay
        for key, (other, _, failure) in list(routed.items()):
            if not _live(sched, other, failure):
                del routed[key]
    routed[ex.id] = (ex, source, error)


def ended(sched: Outcomes, ex: Execution) -> None:
    """``ex`` ended (returned, failed or was cancelled): forget the failure routed to it, if any."""
    routed = sched.routed
    if routed:
        routed.pop(ex.id, None)


def _live(sched: Outcomes, ex: Execution, error: BaseException) -> bool:
    # still waiting or running the routed state (a chain stepping on in place clears ex.error)
    return ex.error is error and (ex.id in sched.running or sched.pending.get(ex.state) is ex)


def notes(sched: Outcomes) -> dict[str, Any]:
    """``metadata["routed"]`` of a checkpoint now: the routed executions still waiting or running
    (the ones that ended are forgotten here)."""
    routed = sched.routed
    out: dict[str, Any] = {}
    if not routed:
        return out
    for key, (ex, source, error) in list(routed.items()):
        if _live(sched, ex, error):
            out[ex.state] = _note(error, source)
        else:
            del routed[key]
    return out


def _note(error: BaseException, source: str) -> dict[str, Any]:
    note: dict[str, Any] = {"from": source, "type": type(error).__name__, "message": str(error)[:_MAX_TEXT]}
    args = error.args
    if len(args) <= _MAX_ARGS and all(a is None or type(a) in (str, int, float, bool) for a in args) \
            and sum(len(a) for a in args if isinstance(a, str)) <= _MAX_TEXT:
        note["args"] = list(args)
    return note


def rebuilt(state: str, note: Any) -> BaseException:
    """The error a restored route's ``state`` reads, from its checkpoint ``note``.

    Raises:
        CheckpointError: the note is not what :func:`notes` writes (its texts longer than the
            writer lets them be included: arguments of 4,000 characters in all).
    """
    if not (isinstance(note, dict) and all(isinstance(note.get(k), str) for k in ("from", "type", "message"))
            and len(note["type"]) <= 200 and len(note["message"]) <= _MAX_TEXT and len(note["from"]) <= 1000):
        raise CheckpointError(f"the checkpoint's note of the failure routed to state {state!r} is damaged: "
                              f"{str(note)[:200]}")
    kind, message, source = note["type"], note["message"], note["from"]
    args = note.get("args")
    if args is not None and not (isinstance(args, list) and len(args) <= _MAX_ARGS and all(
            a is None or type(a) in (str, int, float, bool) for a in args)
            and sum(len(a) for a in args if isinstance(a, str)) <= _MAX_TEXT):  # as _note bounds them
        raise CheckpointError(f"the checkpoint's note of the failure routed to state {state!r} has damaged args")
    if kind == "StateTimeoutError":
        return StateTimeoutError(message, source)
    cls = getattr(builtins, kind, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            return cls(*args) if args is not None else cls(message)
        except Exception:  # a built-in class whose constructor wants other arguments
            pass
    return RoutedError(f"{kind}: {message}", kind)
