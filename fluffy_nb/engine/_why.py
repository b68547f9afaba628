"""Why a state is not running: the reason each waiting state of a run waits, as data and as text.

A state that has been routed to but is not running waits for one thing at a time:

* ``resource``: units the resource pool cannot grant yet (wanted vs free, and who holds them);
* ``rate_limit``: a rate limiter's next admission;
* ``lock``: a mutex, semaphore or lease held by other states; ``barrier``: arrivals still
  missing; ``quota``: a budget used up until it resets;
* ``dependency``: a declared dependency that does not hold yet (and why);
* ``join``: branches of its fan-out that can still reach it;
* ``person``: an open human-in-the-loop request;
* ``slot``: ``max_concurrent`` states already run; ``paused``: the run is paused;
* ``retry``: the delay before its next attempt.

:func:`waits` reads them off a live run (nothing is recorded while nobody asks);
``Run.why(state)`` and ``%fluffy why`` print :func:`why_text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._policies import DependencyLifecycle, DependencyType

if TYPE_CHECKING:
    from ._run import Run


@dataclass(frozen=True)
class WaitReason:
    """Why ``state`` waits: ``kind`` (see the module docstring), a sentence, and the states
    holding what it needs (``holders``), when there are any. ``since`` is the run clock's time
    the wait began (None when unknown)."""

    state: str
    kind: str
    detail: str
    holders: tuple[str, ...] = ()
    since: float | None = None


def _owner_state(owner: str) -> str:
    return owner.split("#", 1)[0]


def explain_gate(gate: Any, req: Any) -> tuple[str, str, tuple[str, ...]]:
    """``(kind, detail, holders)`` for a state waiting at ``gate`` (pool, limiter or primitive)."""
    if req is not None and hasattr(gate, "shortfall"):
        short = gate.shortfall(req)
        parts = [f"{t.name if hasattr(t, 'name') else t} {want:g} wanted, {free:g} free" for t, (want, free)
                 in short.items()]
        holders = tuple(dict.fromkeys(_owner_state(o) for o in gate.holders_of(short)))
        return "resource", "resources: " + ("; ".join(parts) or "waiting behind higher-priority requests"), holders
    if hasattr(gate, "next_admission_in"):
        return "rate_limit", (f"rate limit {gate.name!r} ({gate.max_rate:g}/s): next admission in "
                              f"{gate.next_admission_in():.2f}s"), ()
    status = gate.status() if hasattr(gate, "status") else {}
    kind = str(status.get("type", "lock"))
    owners = tuple(dict.fromkeys(_owner_state(o) for o in status.get("owners", ())))
    if kind == "barrier":
        return "barrier", (f"barrier {gate.name!r}: {status.get('wait_count', 0)} of {status.get('max_count')} "
                           "arrived"), ()
    if kind == "quota":
        resets = status.get("resets_in")
        when = "" if resets is None else f", resets in {resets:.1f}s"
        left = f"{status.get('remaining', 0):g} of {status.get('quota_limit')} left"
        return "quota", f"quota {gate.name!r}: {left}{when}", ()
    return "lock", f"{kind} {gate.name!r} held by {list(owners)}", owners


def _dependency_detail(run: Run, state: str) -> tuple[str, tuple[str, ...]]:
    spec = run.agent.states[state]
    deps = run.deps
    missing: list[str] = []
    holders: list[str] = []
    for dep, cfg in spec.dependencies.items():
        if cfg.type is DependencyType.PARALLEL:
            continue
        active = deps.is_active(dep)
        count = run.completion_counts.get(dep, 0)
        if (cfg.type is DependencyType.OPTIONAL and active) or (cfg.type is DependencyType.SEQUENTIAL and active):
            missing.append(f"{dep} ({cfg.type.value}) is still running")
            holders.append(dep)
        elif cfg.type is DependencyType.REQUIRED and count == 0:
            missing.append(f"{dep} has not completed" + (" (running)" if active else ""))
            if active:
                holders.append(dep)
        elif cfg.lifecycle is DependencyLifecycle.PERIODIC and count <= deps.consumed[(state, dep)]:
            missing.append(f"{dep}: waiting for its next completion (periodic)")
        elif cfg.condition is not None:
            missing.append(f"{dep}: its condition is not met yet")
    return ("dependencies: " + "; ".join(missing)) if missing else "dependencies: a branch can still reach it", tuple(
        holders)


def waits(run: Run) -> dict[str, WaitReason]:
    """Every waiting state of ``run`` and why it waits (see the module docstring)."""
    sched = run.scheduler
    out: dict[str, WaitReason] = {}
    for ex, gate, req, since in sched.gate_waits():
        kind, detail, holders = explain_gate(gate, req)
        out[ex.state] = WaitReason(ex.state, kind, detail, holders, since)
    for ex in run.deps.parked:
        detail, holders = _dependency_detail(run, ex.state)
        out.setdefault(ex.state, WaitReason(ex.state, "dependency", detail, holders))
    for ex, until in sched.retry_waits():
        out.setdefault(ex.state, WaitReason(ex.state, "retry", f"attempt {ex.attempt + 1} in "
                                            f"{max(0.0, until - run.clock.monotonic()):.2f}s"))
    for _, ex in sorted(sched.queue):
        kind = "paused" if sched.paused else "slot"
        detail = ("the run is paused" if sched.paused
                  else f"max_concurrent={run.agent.max_concurrent} states are running")
        out.setdefault(ex.state, WaitReason(ex.state, kind, detail, tuple(e.state for e in sched.running.values())))
    for target, at in sched.joins.waiting().items():
        out.setdefault(target, WaitReason(target, "join", f"join: waiting for the branches at {sorted(at)} that can "
                                          "still reach it", tuple(sorted(at))))
    for req in run.pending_requests():
        out.setdefault(req.state, WaitReason(req.state, "person", f"a person: {req.prompt!r} (request "
                                             f"{req.request_id})", (), None))
    return out


def why_text(run: Run, state: str | None = None) -> str:
    """The answer to "why is this (or any) state not running?" as plain text."""
    found = waits(run)
    if state is not None:
        reason = found.get(state)
        if reason is not None:
            return f"{state}: waits for {_sentence(reason)}"
        status = run.meta(state).status.value if state in run.agent.states else "unknown"
        return f"{state}: not waiting (status {status})"
    if not found:
        return f"run {run.run_id[:8]} of {run.name!r}: nothing waits (status {run.status.value})"
    lines = [f"run {run.run_id[:8]} of {run.name!r}: {len(found)} state(s) wait"]
    lines += [f"  {r.state}: {_sentence(r)}" for r in found.values()]
    return "\n".join(lines)


def _sentence(reason: WaitReason) -> str:
    held = f" (held by {', '.join(reason.holders)})" if reason.holders and reason.kind != "lock" else ""
    return f"{reason.detail}{held}"
