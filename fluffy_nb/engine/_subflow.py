"""Sub-workflows: an agent used as a state of another agent.

``parent.add_state("research", research_agent, inputs=["topic"], outputs={"notes": "findings"})``
registers a :class:`Subflow`: when the state runs, the child agent runs as its own
:class:`~fluffy_nb.engine.Run`, nested in the parent's run:

* its context is its own; the ``inputs`` keys are copied in before it starts and the ``outputs``
  keys copied back into the parent's context after it completed (a list copies keys under the
  same name; a dict maps ``{source key: destination key}``: ``inputs`` parent -> child,
  ``outputs`` child -> parent);
* its checkpoints go to the parent's store (linked by ``parent_run_id``/``parent_state``, named
  after the path ``parent/state``; a child of a parent without a store keeps its own); its run id
  is derived from the parent's run id, the state, how often the state completed before and how
  many attempts of the state the parent's run made (this one included), so every retry and every
  route back into the state starts a fresh child run, while a parent resumed after a crash finds
  the child it was inside (the in-flight attempt, counted in the checkpoint it resumes from) and
  resumes *inside* it (its completed states do not run again). A child that had failed is never
  continued: re-entering the state runs the child again. A durable parent checkpoints as a child
  starts, so the child is in flight in its history;
* the child's states are admitted against the root run's resource pool (one machine budget),
  unless the child agent was given its own pool (``Agent(resource_pool=ResourcePool(...))``);
  a sub-workflow state on that pool asking ``resources=`` its child's states ask too is refused
  at ``run()`` (:func:`check_pool_holders`): it would hold them while they wait;
* agents nested in a cycle (``A`` has a state that is ``B``, ``B`` one that is ``A``) are refused
  at ``add_state`` with a :class:`ConfigurationError` naming the path (``A -> B -> A``);
* the child's context starts with the ``inputs`` only (not values set on the child agent with
  ``set_state`` before: pass those as inputs);
* its human requests are asked through the root run's agent (they appear in the parent's
  ``pending_requests()``, are answered with ``parent.answer``, shown by its responder);
* its events are re-published on the parent's run with the state named by its path
  (``research/search``), so live views, metrics and monitors of the parent see them;
* cancelling the parent cancels the child (the state's task is cancelled); pausing and resuming
  the parent pauses and resumes its live children (:func:`pause_children`, :func:`resume_children`);
  the parent's ``checkpoint_interval`` checkpoints its live children too (:func:`checkpoint_children`).

A child failure fails the parent's state with the child's error, so the parent's retries and
``on_error``/``on_timeout`` routes apply (a child run cancelled on its own fails it too). Run
observers (``agent_monitor``, logging) are not called for a child run: they see its events on
the root agent already, named by path. One child definition may run in many parents at once
(each use is its own run), and a child may have children of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError, StateFailedError
from ._events import Event, RunFinished, RunStarted, StateAdded
from ._status import AgentStatus

if TYPE_CHECKING:
    from ._agent import Agent
    from ._checkpoint import Checkpoint
    from ._context import Context
    from ._events import EventBus
    from ._run import Run

_NAMESPACE = "6f1d2b7e-3c0a-4e55-9b7d-5a1f0c2e8d41"  # of the child run ids (uuid5)
_ENDED = (AgentStatus.COMPLETED, AgentStatus.FAILED, AgentStatus.CANCELLED)
#: run-level events of a child stay on the child's bus: on the parent's they would read as the parent's
_NOT_FORWARDED = (RunStarted, RunFinished, StateAdded)


def _key_map(state: str, option: str, keys: Any) -> dict[str, str]:
    """``inputs``/``outputs`` as ``{source key: destination key}``, checked."""
    if keys is None:
        return {}
    if isinstance(keys, str):
        keys = [keys]
    if isinstance(keys, Mapping):
        pairs = list(keys.items())
    elif isinstance(keys, (list, tuple, set, frozenset)):
        pairs = [(k, k) for k in keys]
    else:
        pairs = [(keys, keys)]
    if not all(isinstance(a, str) and a and isinstance(b, str) and b for a, b in pairs):
        raise ConfigurationError(
            f"add_state({state!r}, {option}={keys!r}): give context keys, as a list of names (copied under the "
            "same name) or a dict {source key: destination key}, e.g. inputs={'question': 'topic'}"
        )
    return dict(pairs)


class Subflow:
    """A child agent registered as a state of a parent (made by ``add_state(name, agent, ...)``).

    Calling it with the state's context runs the child as a nested run (see the module docstring).

    Args:
        child: The child agent (its definition; it may be used by other parents too).
        state: The parent's state name it is registered under.
        inputs: Parent keys copied into the child's context before it starts.
        outputs: Child keys copied into the parent's context after it completed.
        then: The parent state(s) to go on to after it completed (the ``next=`` option).
    """

    def __init__(self, child: Agent, state: str, inputs: dict[str, str], outputs: dict[str, str],
                 then: tuple[str, ...]) -> None:
        self.child = child
        self.state = state
        self.inputs = inputs
        self.outputs = outputs
        self.then = then
        self.__name__ = state
        self.__wrapped__ = _reads_as(then)  # what the graph's code reader reads: where it goes next

    async def __call__(self, context: Context) -> Any:
        return await run_child(self, context)

    def __repr__(self) -> str:
        return f"<Subflow {self.state!r}: agent {self.child.name!r}>"


def _reads_as(then: tuple[str, ...]) -> Any:
    """A stand-in body returning what a :class:`Subflow` returns, for the code reader (``_reader``)."""
    result = None if not then else then[0] if len(then) == 1 else list(then)

    async def subflow(context: Any) -> Any:
        return result

    return subflow


def make_subflow(parent: Agent, name: Any, child: Agent, options: dict[str, Any]) -> Subflow:
    """The :class:`Subflow` for ``parent.add_state(name, child, **options)``; takes ``inputs``
    and ``outputs`` out of ``options`` (the others are the state's options as for any state)."""
    if child is parent:
        raise ConfigurationError(
            f"add_state({name!r}, {child.name!r}): an agent cannot be a state of itself; build a separate Agent "
            "for the child workflow"
        )
    cycle = _path_to(child, parent, [child], set())
    if cycle is not None:
        path = " -> ".join(a.name for a in [parent, *cycle])
        raise ConfigurationError(
            f"add_state({name!r}, {child.name!r}): agent {parent.name!r} is nested in {child.name!r} already, so "
            f"this would nest agents in a cycle ({path}) that never ends; remove the inner state or use a "
            "separate Agent for one of them"
        )
    state = name if isinstance(name, str) else ""
    inputs = _key_map(state, "inputs", options.pop("inputs", None))
    outputs = _key_map(state, "outputs", options.pop("outputs", None))
    then = options.get("next")
    then = (then,) if isinstance(then, str) else tuple(then or ())
    return Subflow(child, state, inputs, outputs, then)


def _path_to(agent: Agent, target: Agent, path: list[Agent], seen: set[int]) -> list[Agent] | None:
    """The chain of agents from ``agent`` down to ``target`` through states that are agents, if any
    (each agent visited once: the walk is bounded by the number of agents)."""
    seen.add(id(agent))
    for spec in list(agent.states.values()):
        func = spec.func
        if not isinstance(func, Subflow):
            continue
        if func.child is target:
            return [*path, target]
        if id(func.child) not in seen:
            found = _path_to(func.child, target, [*path, func.child], seen)
            if found is not None:
                return found
    return None


def check_no_subflow_options(name: Any, options: dict[str, Any]) -> None:
    """``inputs``/``outputs`` given for a state that is no agent: say what they are for."""
    for option in ("inputs", "outputs"):
        if option in options:
            raise ConfigurationError(
                f"add_state({name!r}, {option}=...): {option}= is for a state that is an agent (a sub-workflow), "
                "e.g. add_state('research', research_agent, inputs=['topic']); a function state reads and "
                "writes the context itself"
            )


# -- running a child -------------------------------------------------------------------------------
def child_run_id(parent: Run, state: str, entry: int | None = None) -> str:
    """The run id of the child that ``state`` of ``parent`` runs now (or, with ``entry``, ran in the
    parent's ``entry``-th attempt of the state). Each completion of the state, each retry and each
    route back into it gives a new child run; a resumed parent finds the child it was inside (see
    :func:`_child_run`)."""
    n = parent.completion_counts.get(state, 0) + 1
    if entry is None:
        entry = parent.meta(state).attempts  # this attempt included: it never repeats within the run
    from uuid import UUID, uuid5  # imported with the first sub-workflow, not the engine

    return uuid5(UUID(_NAMESPACE), f"{parent.run_id}/{state}/{n}/#{entry}").hex


async def run_child(sub: Subflow, ctx: Context) -> Any:
    """Run ``sub.child`` nested in the run of ``ctx`` (the body of a :class:`Subflow` state)."""
    from ._executor import check_executors
    from ._registration import check_definition

    parent = ctx.run
    if parent is None:
        raise ConfigurationError(
            f"sub-workflow {sub.state!r} (agent {sub.child.name!r}) was called on a context of no run; it runs as "
            "a state of its parent agent"
        )
    child = sub.child
    child.collect_class_states()
    check_definition(child, {name: child.gates_of(name) for name in child.states})
    await check_executors(child)
    run = _child_run(sub, parent, ctx)
    if run.restored_from is None and run.status is AgentStatus.COMPLETED:
        return _finished(sub, parent, run)  # it completed before the crash; the parent had not recorded it
    parent.children[sub.state] = run
    if parent.durable and parent.store is not None:
        parent.checkpoints.save("state")  # the parent's record that the child is in flight: resume finds it
    try:
        await run.execute(None, 10.0, [] if run.restored_from is not None else _starts(child))
    finally:
        if parent.children.get(sub.state) is run:
            del parent.children[sub.state]
    if run.status is AgentStatus.CANCELLED:  # cancelled on its own (its run's cancel_all), not by the parent
        raise StateFailedError(f"sub-workflow {sub.state!r} (agent {child.name!r}) was cancelled", sub.state)
    return _finished(sub, parent, run)


def _starts(child: Agent) -> list[str]:
    from ._starts import start_states

    return start_states(child, None)


def _child_run(sub: Subflow, parent: Run, ctx: Context) -> Run:
    """A new child run, or the one the parent's store holds for this use (resumed inside)."""
    from ._run import Run

    run = Run(sub.child, run_id=child_run_id(parent, sub.state))
    link(run, parent, sub.state)
    cp = _stored(run)
    if cp is None and ctx.attempt == 1 and parent.checkpoints.resumes_inside(sub.state):
        cp = _interrupted(sub, parent, run)
    if cp is None:
        _copy(parent, run, sub.inputs, f"state {sub.state!r}: input")
        return run
    from ._travel import check_fits

    check_fits(sub.child, cp, f"resuming sub-workflow {sub.state!r}")
    if cp.agent_status is AgentStatus.FAILED:  # a parent restored to an earlier point: that child had failed
        raise StateFailedError(
            f"sub-workflow {sub.state!r} (agent {sub.child.name!r}) had failed: {cp.error}", sub.state)
    run.checkpoints.load(cp)
    if cp.agent_status is AgentStatus.COMPLETED and not cp.pending:
        run.restored_from = None  # it completed; the parent had not recorded it yet
    return run


def _interrupted(sub: Subflow, parent: Run, run: Run) -> Checkpoint | None:
    """A resumed parent relaunches the state it was in as a new attempt (the checkpoint it resumed
    from counted the interrupted one): the child of that attempt, if it had not failed, is the one to
    continue; ``run`` takes its id. Only that relaunch looks back (``Checkpointer.resumes_inside``:
    the first attempt of a state the restored checkpoint had in flight, a route's state included):
    in a live run the earlier attempt ended (failed, timed out, cancelled by ``cancel_state``), so
    re-entering the state (a retry, a route, a plain transition back) runs a fresh child."""
    entry = parent.meta(sub.state).attempts - 1
    if entry < 1:
        return None
    run_id = child_run_id(parent, sub.state, entry)
    store = run.store
    if store is None or not store.list(agent_name=run.name, run_id=run_id):
        return None
    before = run.run_id
    run.run_id = run_id
    cp = _stored(run)
    if cp is None or cp.agent_status is AgentStatus.FAILED:
        run.run_id = before
        return None
    return cp


def _stored(run: Run) -> Checkpoint | None:
    """The checkpoint the (linked, not started) child ``run`` continues from, if its store holds any."""
    store = run.store
    if store is None:
        return None
    rows = sorted(store.list(agent_name=run.name, run_id=run.run_id), key=lambda r: r.sequence)
    if not rows:
        return None
    if rows[-1].agent_status == "cancelled":
        for row in reversed(rows):  # continue from its last checkpoint that still had states in flight
            if row.pending and row.agent_status not in ("failed", "cancelled"):
                return store.get(row.checkpoint_id)  # type: ignore[no-any-return]
        return None
    return store.get(rows[-1].checkpoint_id)  # type: ignore[no-any-return]


def check_pool_holders(agent: Agent, names: list[str]) -> None:
    """Refuse a sub-workflow state (among ``names``, the states asking for resources) that would
    hold resources of the pool its child's states wait on: its hold lasts until the child ends,
    which it cannot while one of them waits for what the hold keeps (the run hung, silently)."""
    from ._errors import ResourceError

    for name in names:
        sub = agent.states[name].func
        if not isinstance(sub, Subflow) or not _shares_pool(agent, sub.child):
            continue
        user = _pool_user(agent, sub.child, name)
        if user is not None:
            raise ResourceError(
                f"state {name!r} runs agent {sub.child.name!r} and asks for resources of the pool its state "
                f"{user!r} waits on too: {name!r} would hold them until the child ends, so {user!r} could wait "
                f"forever. Declare resources on the child's states only, or give agent {sub.child.name!r} its "
                "own pool (Agent(..., resource_pool=ResourcePool(...)))"
            )


def _shares_pool(parent: Agent, child: Agent) -> bool:
    return not child.has_own_pool or (child.resource_pool is not None and child.resource_pool is parent.resource_pool)


def _pool_user(root: Agent, agent: Agent, path: str) -> str | None:
    """The first state (by path) of ``agent`` or its pool-sharing children that asks the pool for resources."""
    from ._executor import state_executor

    for name, spec in agent.states.items():
        if spec.resources is not None and state_executor(agent, spec) is None:
            return f"{path}/{name}"
        if isinstance(spec.func, Subflow) and _shares_pool(root, spec.func.child):
            found = _pool_user(root, spec.func.child, f"{path}/{name}")
            if found is not None:
                return found
    return None


def link(run: Run, parent: Run, state: str) -> None:
    """Make ``run`` a child of ``parent`` as its state ``state``: its name is the path, its checkpoints
    go to the parent's store, its people are asked through the root, its events reach the parent."""
    run.name = f"{parent.name}/{state}"
    run.parent_run_id = parent.run_id
    run.parent_state = state
    if parent.store is not None or run.store is None:  # the parent's store; a child's own if the parent has none
        run.store, run.durable = parent.store, parent.durable
    run.human = parent.human
    run.blocking = parent.blocking
    if not run.agent.has_own_pool:  # one machine budget: the root run's pool, unless given its own
        run.pool_owner = parent.pool_owner
    run.events = ChildBus(run.agent.events, parent, state)  # type: ignore[assignment]


def _copy(source: Run, dest: Run, keys: dict[str, str], what: str) -> None:
    for src, dst in keys.items():
        if src in source.typed:
            dest.typed[dst] = source.typed[src]
        elif src in source.shared:
            dest.shared[dst] = source.shared[src]
        else:
            raise ConfigurationError(
                f"{what} key {src!r} is not in the context of run {source.run_id[:8]} of {source.name!r} "
                f"(it has: {sorted(source.shared)[:12]}); set it before this state runs, or fix the name"
            )


def _finished(sub: Subflow, parent: Run, run: Run) -> Any:
    _copy(run, parent, sub.outputs, f"state {sub.state!r}: output")
    if not sub.then:
        return None
    return sub.then[0] if len(sub.then) == 1 else list(sub.then)


# -- events ----------------------------------------------------------------------------------------
class ChildBus:
    """The event bus of a child run: the child agent's own bus, and the parent run's bus with the
    state named by its path (``research/search``), the parent's run id and agent name."""

    __slots__ = ("_own", "_parent", "_prefix")

    def __init__(self, own: EventBus, parent: Run, state: str) -> None:
        self._own = own
        self._parent = parent
        self._prefix = state + "/"

    @property
    def active(self) -> bool:
        """Whether anyone listens (on the child agent or up the parents)."""
        return self._own.active or self._parent.events.active

    @property
    def stepwise(self) -> bool:
        """Whether anyone reads the events made for every state (``EventBus.stepwise``), here or up the parents."""
        return self._own.stepwise or self._parent.events.stepwise

    def wants(self, kind: type[Event]) -> bool:
        """Whether anyone reads events of class ``kind`` here or, renamed, up the parents."""
        return self._own.wants(kind) or (not issubclass(kind, _NOT_FORWARDED) and self._parent.events.wants(kind))

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to the child's subscribers, then (renamed) to the parent's."""
        if self._own.active:
            self._own.publish(event)
        up = self._parent.events
        if up.active and not isinstance(event, _NOT_FORWARDED):
            changes: dict[str, Any] = {"agent": self._parent.name, "run_id": self._parent.run_id}
            state = getattr(event, "state", None)
            if isinstance(state, str):
                changes["state"] = self._prefix + state
            up.publish(dataclasses.replace(event, **changes))


# -- control ---------------------------------------------------------------------------------------
async def pause_children(parent: Run, timeout: float | None) -> None:
    """Pause the live child runs of ``parent`` (and theirs), each letting its running states finish."""
    runs = [run for run in parent.children.values() if run.active and not run.paused]
    if runs:
        await asyncio.gather(*(run.pause(timeout) for run in runs))


def resume_children(parent: Run) -> None:
    """Resume the paused child runs of ``parent`` (and theirs)."""
    for run in list(parent.children.values()):
        run.resume()


def checkpoint_children(parent: Run) -> None:
    """An interval checkpoint of each live child run of ``parent`` (and theirs) whose agent has no
    ``checkpoint_interval`` of its own (that one's own ticker does it): a parent's interval covers
    its nested runs, so a parent resumed after a kill resumes inside the child from there."""
    for run in list(parent.children.values()):
        if run.agent.checkpoint_interval:
            continue
        if run.active and not run.paused and run.store is not None:
            run.checkpoints.save("interval")
        if run.children:
            checkpoint_children(run)


def children_of(run: Run) -> dict[str, Run]:
    """The live child runs of ``run`` by path (``research``, ``research/search``...), nested ones included."""
    out: dict[str, Run] = {}
    for state, child in list(run.children.items()):
        out[state] = child
        for path, grand in children_of(child).items():
            out[f"{state}/{path}"] = grand
    return out


def child_runs(run: Run) -> dict[str, Run]:
    """The child runs of ``run`` by path (``research``, ``research/search``...), live or finished,
    nested ones too: for each state that is an agent, its live child run, else the latest run of that
    child agent made by ``run`` as that state (from the child's recent runs)."""
    out: dict[str, Run] = {}
    for state, spec in list(run.agent.states.items()):
        func = spec.func
        if not isinstance(func, Subflow):
            continue
        found = run.children.get(state)
        if found is None:
            found = next((r for r in reversed(func.child.runs)
                          if r.parent_run_id == run.run_id and r.parent_state == state), None)
        if found is None:
            continue
        out[state] = found
        for path, grand in child_runs(found).items():
            out[f"{state}/{path}"] = grand
    return out


def nested_metadata(run: Run) -> dict[str, Any]:
    """``run``'s per-state metadata, then its child runs' (:func:`child_runs`) named by path
    (``research/search``): what per-state metrics tables list."""
    out: dict[str, Any] = dict(run.metadata)
    for path, child in child_runs(run).items():
        for name, meta in child.metadata.items():
            out[f"{path}/{name}"] = meta
    return out


# -- history ---------------------------------------------------------------------------------------
def with_child_rows(agent: Agent, store: Any, rows: list[Any], run_id: str | None) -> list[Any]:
    """``rows`` (the agent's own history) plus the rows of its sub-workflows' runs (named by path,
    ``team/research``; nested ones too), of run ``run_id`` only when given; oldest first."""
    if not any(isinstance(spec.func, Subflow) for spec in agent.states.values()):
        return rows
    out = list(rows)
    _add_child_rows(agent, agent.name, store, None if run_id is None else {run_id}, out)
    out.sort(key=lambda r: (r.timestamp, r.sequence))
    return out


def _add_child_rows(definition: Agent, name: str, store: Any, run_ids: set[str] | None, out: list[Any],
                    seen: frozenset[int] = frozenset()) -> None:
    seen = seen | {id(definition)}  # an agent nested in itself (refused at add_state) never recurses
    for state, spec in list(definition.states.items()):
        if not isinstance(spec.func, Subflow) or id(spec.func.child) in seen:
            continue
        path = f"{name}/{state}"
        rows = store.list(agent_name=path)
        if run_ids is not None:
            wanted = _children_of_runs(store, rows, run_ids)
            rows = [r for r in rows if r.run_id in wanted]
        out.extend(rows)
        _add_child_rows(spec.func.child, path, store, None if run_ids is None else {r.run_id for r in rows}, out,
                        seen)


def _children_of_runs(store: Any, rows: list[Any], run_ids: set[str]) -> set[str]:
    """The run ids among ``rows`` (a child path's rows) whose parent run is one of ``run_ids``: each
    child checkpoint names its parent run, so this reads one checkpoint per child run stored (never
    loops over counts a checkpoint claims)."""
    first: dict[str, Any] = {}
    for row in rows:
        if row.run_id not in first or row.sequence < first[row.run_id].sequence:
            first[row.run_id] = row
    wanted: set[str] = set()
    for run_id, row in first.items():
        cp = store.get(row.checkpoint_id)
        if cp is not None and cp.parent_run_id in run_ids:
            wanted.add(run_id)
    return wanted
