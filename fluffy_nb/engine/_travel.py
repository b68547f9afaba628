"""Travel through an agent's checkpoints: history, restore, fork, diff, resume_latest.

Each function takes the agent (the definition) and returns or prepares a :class:`Run`: a
restored or forked run is prepared (loaded, not started) and becomes the run that the
agent's next ``run()`` continues.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from ._errors import CheckpointError, FluffyWarning
from ._maprecords import map_names
from ._status import AgentStatus

if TYPE_CHECKING:
    from ._agent import Agent
    from ._checkpoint import Checkpoint
    from ._history import CheckpointDiff, CheckpointHistory
    from ._run import Run

_ENDED = (AgentStatus.FAILED, AgentStatus.CANCELLED)


def require_store(agent: Agent, what: str) -> Any:
    """The agent's store, or a CheckpointError saying how to give it one."""
    if agent.store is None:
        raise CheckpointError(
            f"{what}: agent {agent.name!r} has no checkpoint store; create it with "
            "Agent(..., store=SQLiteStore('runs.db')) or MemoryStore()"
        )
    return agent.store


def resolve(agent: Agent, checkpoint: Any, what: str) -> Checkpoint:
    """A Checkpoint from an object, its ``to_dict()``, a checkpoint id or a history row."""
    from ._checkpoint import Checkpoint  # pydantic loads with the first checkpoint, not the engine

    if isinstance(checkpoint, (Checkpoint, dict)):
        cp = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint.from_dict(checkpoint)
        if cp.delta:  # a delta as stored: its parents are in the agent's store
            cp = require_store(agent, what).get(cp.checkpoint_id)
        return cp
    cid = getattr(checkpoint, "checkpoint_id", checkpoint)  # a history row
    if isinstance(cid, str):
        return require_store(agent, what).get(cid)  # type: ignore[no-any-return]
    raise CheckpointError(
        f"{what}({checkpoint!r}): pass a Checkpoint, its to_dict(), a checkpoint id or a history row"
    )


def prepare(agent: Agent, checkpoint: Any, what: str) -> Run:
    """Validate ``checkpoint`` against the agent and load it into a new, not started run.

    Into an agent with no states (the spec's ``new_agent = Agent("restored_workflow")``) the
    checkpoint's data is restored on its own: shared and typed values, statuses, completions
    and answers can be read at once (``new_agent.get_state(...)``, ``create_checkpoint()``).
    Its states cannot come from the checkpoint (a checkpoint never holds code): add them
    under the same names before ``run()``/``resume()`` continues it; ``run()`` checks that.
    """
    from ._run import Run

    agent.registry.require_idle(what)
    cp = resolve(agent, checkpoint, what)
    agent.collect_class_states()
    stateless = not agent.states
    if not stateless:
        check_fits(agent, cp, what)
    run = Run(agent, run_id=cp.run_id)
    run.checkpoints.load(cp)
    if stateless:  # keep the statuses of states the agent does not have yet, for when they are added
        for name, status in cp.state_status.items():
            run.meta(name).status = status
        for name, attempts in cp.state_attempts.items():
            run.meta(name).attempts = attempts
    agent.registry.prepare(run)
    return run


def check_prepared(agent: Agent, run: Run) -> None:
    """Before ``run()`` continues a restored or forked run: the agent now has every state its
    checkpoint names (a restore into a stateless agent could not check that then)."""
    cp = run.restored_from
    if cp is not None:
        check_fits(agent, cp, "run")


def check_fits(agent: Agent, cp: Checkpoint, what: str) -> None:
    """Raise CheckpointError unless ``cp`` could have been made by ``agent``: every state it names
    exists, no join holds more waiting branches than the agent has states, steps within max_steps."""
    joins = cp.scheduler.get("joins", {}) if isinstance(cp.scheduler, dict) else {}
    named = (set(cp.pending) | set(cp.completed_states) | set(cp.state_status) | set(cp.completion_counts)
             | set(cp.state_attempts) | set(joins) | {a.state for a in cp.human_answers} | map_names(cp.maps))
    missing = sorted(n for n in named if n not in agent.states)
    which = f"checkpoint {cp.checkpoint_id[:12]} of {cp.agent_name!r}"
    if missing:
        raise CheckpointError(
            f"{what}: {which} names states {missing[:12]} that agent {agent.name!r} does not have; add them "
            "(same names, same functions) first"
        )
    most = len(agent.states)
    crowded = sorted(t for t, n in joins.items() if not isinstance(n, int) or not 0 <= n <= most)
    if crowded:
        raise CheckpointError(
            f"{what}: {which} has {joins[crowded[0]]!r} branches waiting at join {crowded[0]!r}, more than "
            f"the {most} states of agent {agent.name!r} could ever send there; the checkpoint is damaged"
        )
    steps = max(cp.steps, int(cp.scheduler.get("steps", 0) or 0) if isinstance(cp.scheduler, dict) else 0)
    if steps > agent.max_steps:
        raise CheckpointError(
            f"{what}: {which} has run {steps} steps, beyond Agent(max_steps={agent.max_steps}); raise max_steps "
            "to continue it, or the checkpoint is damaged"
        )


def continue_sequence(agent: Agent, run: Run) -> None:
    """Number new checkpoints of a restored run after the run's last stored one."""
    if agent.store is not None:
        rows = agent.store.list(agent_name=run.name, run_id=run.run_id)
        if rows:
            run.checkpoints.sequence = max(run.checkpoints.sequence, max(r.sequence for r in rows))


def history_records(agent: Agent, run_id: str | None = None) -> CheckpointHistory:
    """Every checkpoint of ``agent`` in its store (or of one run), oldest first; with sub-workflows,
    their runs' checkpoints too (``agent_name`` is the path, ``team/research``)."""
    from ._history import CheckpointHistory  # history and diff need it; a run does not
    from ._subflow import with_child_rows

    store = require_store(agent, "history")
    rows = with_child_rows(agent, store, store.list(agent_name=agent.name, run_id=run_id), run_id)
    return CheckpointHistory(rows, agent_name=agent.name, run_id=run_id, store=store)


def restore(agent: Agent, checkpoint: Any) -> Checkpoint:
    """Prepare the run of ``checkpoint`` to continue (same run id, history extended)."""
    run = prepare(agent, checkpoint, "restore")
    continue_sequence(agent, run)
    assert run.restored_from is not None
    return run.restored_from


def fork(agent: Agent, checkpoint: Any) -> Run:
    """Prepare a NEW run (fresh id) from ``checkpoint``; its first checkpoint links the source."""
    run = prepare(agent, checkpoint, "fork")
    cp = run.restored_from
    assert cp is not None
    from uuid import uuid4  # loaded by the first run already; not at import

    run.run_id = uuid4().hex
    run.checkpoints.sequence = 0
    run.checkpoints.last_id = cp.checkpoint_id
    run.parent_run_id = cp.run_id
    if agent.store is not None:
        run.checkpoints.save("fork", metadata={"forked_from": cp.checkpoint_id, "forked_from_run": cp.run_id})
    return run


def diff(agent: Agent, a: Any, b: Any) -> CheckpointDiff:
    """What changed from checkpoint ``a`` to ``b``."""
    from ._history import diff_checkpoints

    return diff_checkpoints(resolve(agent, a, "diff"), resolve(agent, b, "diff"))


async def latest_resumable(agent: Agent, store: Any) -> Checkpoint:
    """The checkpoint ``resume_latest`` continues: the latest one, or for a run that ended in
    failure or cancellation, its last checkpoint that still had states in flight."""
    cp = await store.alatest(agent.name)
    if cp is None:
        raise CheckpointError(
            f"resume_latest: {store!r} holds no checkpoint of agent {agent.name!r}; run it first "
            "with Agent(..., store=store, durable=True)"
        )
    if cp.agent_status in _ENDED and not cp.pending:
        for info in reversed(await store.alist(agent.name, cp.run_id)):
            if info.pending and info.agent_status not in ("failed", "cancelled"):
                try:
                    return await store.aget(info.checkpoint_id)  # type: ignore[no-any-return]
                except CheckpointError as exc:  # a damaged row: an older one may still continue the run
                    warnings.warn(f"resume_latest: skipped checkpoint {info.checkpoint_id[:12]}: {exc}",
                                  FluffyWarning, stacklevel=3)
    return cp  # type: ignore[no-any-return]
