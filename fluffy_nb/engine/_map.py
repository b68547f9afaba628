"""Fan-out with a payload: one state run once per item, each run its own execution.

A state returns ``[Send("score", item) for item in items]`` (or ``ctx.map("score", items)``,
the same list): every ``Send`` becomes a branch of one fan-out, running ``score`` with
``ctx.payload`` set to its item. Each branch is its own execution: its own attempts and
retries, timeout, ``on_error``/``on_timeout`` route (the route's state runs for that branch,
with the same payload), status, under ``max_concurrent`` and the state's rate limits,
semaphores and resource requests, which all count every branch. A branch records its result
with ``ctx.set_result(value)``; where the branches meet (the join rule of ``_graph.py``),
``ctx.results("score")`` gives every branch's result in payload order.
A mapped state (or a branch's route) that is an agent (a sub-workflow) is refused with a
``ConfigurationError``: a child run is per use of its state, not per payload. So is a map
started inside a live map's branches (nested): at the first one, whatever the timing.

This module owns the payload machinery: :class:`Send`, the record of one map
(:class:`PayloadMap`: payloads, results, per-item status and counts, and its checkpoint
record), the execution and context of one branch, starting and routing branches. Turning a
live run's maps into checkpoint records and back is ``_maprecords.py``. The scheduler calls in
here only when a state returned a ``Send`` (or an execution is a branch), so plain states pay
nothing.
"""

from __future__ import annotations

import math
import warnings
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _codec
from ._context import Context
from ._errors import ConfigurationError, FluffyWarning, InvalidStateResultError, StateNotFoundError
from ._events import StateScheduled
from ._executor import LocalExecutor, state_executor
from ._runner import Execution
from ._subflow import Subflow

if TYPE_CHECKING:
    from ._agent import Agent
    from ._checkpoint import MapRecord
    from ._graph import Group, Token
    from ._run import Run
    from ._runner import Scheduler

_PENDING, _RUNNING, _DONE, _FAILED = 0, 1, 2, 3
#: ``PayloadMap.starts``/``ends`` of a payload whose branch has not begun (or not ended)
NO_TIME = -math.inf


def _times(n: int, clock: Any) -> tuple[array[float], array[float]]:
    """``starts`` and ``ends`` of ``n`` payloads none of which began: empty when not timed (``clock`` None)."""
    if clock is None:
        return array("d"), array("d")
    return array("d", (NO_TIME,)) * n, array("d", (NO_TIME,)) * n


@dataclass(frozen=True, slots=True)
class Send:
    """Run ``state`` once for ``payload``: return a list of these to fan out with payloads.

    Each ``Send`` in a state's returned list becomes its own branch (plain names may stand
    beside them and run once, as always). The branch reads its item as ``ctx.payload``.

    Example:
        >>> from fluffy_nb import Agent, Send
        >>> async def split(ctx):
        ...     return [Send("square", n) for n in (1, 2, 3)]
        >>> async def square(ctx):
        ...     ctx.set_result(ctx.payload ** 2)
        ...     return "total"
        >>> async def total(ctx):
        ...     ctx.set_state("squares", ctx.results("square"))
        >>> agent = Agent("squares")
        >>> for f in (split, square, total):
        ...     _ = agent.add_state(f.__name__, f)
        >>> agent.run_sync().shared_state["squares"]
        [1, 4, 9]
    """

    state: str
    payload: Any = None


@dataclass(frozen=True, slots=True)
class MapCounts:
    """How the branches of one map stand: ``done + running + failed + queued == total``."""

    total: int
    done: int
    running: int
    failed: int

    @property
    def queued(self) -> int:
        """Branches not started yet (or to run again)."""
        return self.total - self.done - self.running - self.failed


class PayloadMap:
    """One map: the payloads sent to ``state`` by ``source``, each branch's status and result.

    Args:
        state: The state run once per payload.
        source: The state that returned the ``Send`` list.
        payloads: The items, in order.
        clock: The run's clock, to time each branch (``starts``/``ends``); None: not timed (nobody
            watches the run: a live view's tracker is an event subscriber, see ``time_branches``).
    """

    def __init__(self, state: str, source: str | None, payloads: list[Any], clock: Any = None) -> None:
        self.state = state
        self.clock = clock  # the run's while someone watches it: its branches are timed (None: not timed)
        self.source = source
        self.payloads = payloads
        self.results: list[Any] = [None] * len(payloads)
        self.status = bytearray(len(payloads))  # _PENDING/_RUNNING/_DONE/_FAILED per payload
        self.counts = [len(payloads), 0, 0, 0]  # by status
        # wall times (``clock.time()``, as ``StateMetadata``'s) of each payload's latest attempt's start
        # and of its end (completed, failed or cut short; NO_TIME while it runs): the branches share one
        # StateMetadata, so these are what tells a view when each branch ran
        # (C doubles, NO_TIME for none: no float object kept per branch; empty while not timed)
        # (allocated only once timed: an unwatched 10,000-payload map would keep 160 KB of them)
        self.starts, self.ends = _times(len(payloads), clock)
        self.group: Group | None = None  # the fan-out its branches started in
        self.tokens: set[int] = set()  # ids of its branches' tokens: a map from inside one is nested
        # checkpoint encoding, kept between checkpoints so each value is encoded once
        self._fresh: list[int] = []  # payloads done since the last record
        self._results_json: dict[str, Any] = {}
        self._pending_json: dict[str, Any] | None = None

    def mark(self, index: int, status: int) -> None:
        """Set payload ``index``'s status, keeping the counts."""
        old = self.status[index]
        if old != status:
            self.counts[old] -= 1
            self.counts[status] += 1
            self.status[index] = status
            if status == _DONE:
                self._fresh.append(index)

    def time_branches(self, clock: Any) -> None:
        """Time each branch attempt that begins or ends from now on with ``clock`` (the run's): a
        view that begins to watch a run whose map is under way calls it; None: stop timing (nobody
        watches the run any more; the times kept so far stay)."""
        self.clock = clock
        if clock is not None and len(self.starts) != len(self.payloads):
            self.starts, self.ends = _times(len(self.payloads), clock)

    def reset(self) -> None:
        """Statuses, results, counts and times for the payloads as they are now (none started)."""
        n = len(self.payloads)
        self.results = [None] * n
        self.status = bytearray(n)
        self.counts = [n, 0, 0, 0]
        self.starts, self.ends = _times(n, self.clock)

    def restore_done(self, index: int, result: Any) -> None:
        """Put back the result of payload ``index``, finished before a checkpoint (a restore)."""
        self.results[index] = result
        self.mark(index, _DONE)

    def snapshot(self) -> MapCounts:
        """The counts now."""
        c = self.counts
        return MapCounts(len(self.payloads), c[_DONE], c[_RUNNING], c[_FAILED])

    def in_flight(self) -> int:
        """Branches not finished (queued, running, or to run again)."""
        return self.counts[_PENDING] + self.counts[_RUNNING]

    def is_done(self, index: int) -> bool:
        """Whether payload ``index`` has finished with a result."""
        return 0 <= index < len(self.status) and self.status[index] == _DONE

    def unfinished(self) -> list[int]:
        """Indices of payloads without a result yet."""
        return [i for i, s in enumerate(self.status) if s != _DONE]

    def record(self, group: int, others: list[str], waiting: dict[str, int]) -> MapRecord:
        """This map as a checkpoint record (values encoded as context values are, each once)."""
        pending = self._pending_json
        if pending is None:
            pending = self._pending_json = {
                str(i): encode_value(f"{self.state}.payload[{i}]", self.payloads[i])
                for i, st in enumerate(self.status) if st != _DONE
            }
        for i in self._fresh:
            key = str(i)
            self._results_json[key] = encode_value(f"{self.state}.results[{i}]", self.results[i])
            pending.pop(key, None)
        self._fresh.clear()
        from ._checkpoint import MapRecord  # pydantic loads with the first checkpoint, not the engine

        return MapRecord.model_construct(state=self.state, source=self.source, total=len(self.payloads),
                                         results=dict(self._results_json), pending=dict(pending),
                                         waiting=waiting, others=others, group=group)

    def __repr__(self) -> str:
        c = self.snapshot()
        return f"<PayloadMap {self.state!r} {c.done}/{c.total} done, {c.running} running, {c.failed} failed>"


class PayloadExecution(Execution):
    """An execution of one branch of a map: the state, its map and the payload's index."""

    __slots__ = ("branch", "index", "value")

    def __init__(self, state: str, token: Token, source: str | None, branch: PayloadMap, index: int) -> None:
        super().__init__(state, token, source)
        self.branch: PayloadMap = branch  # type: ignore[assignment]
        self.index = index
        self.value: Any = None

    def context(self, run: Run) -> Context:
        """The context of the next attempt (its payload set; a result set by a failed attempt is dropped)."""
        self.value = None
        m, i = self.branch, self.index
        m.mark(i, _RUNNING)
        if m.clock is not None and self.state == m.state:  # (not a route's: that state's times are its own)
            m.starts[i] = m.clock.time()  # (as the scheduler's begin_attempt just did)
            m.ends[i] = NO_TIME
        ctx = BranchContext(run.shared, run.typed, run=run, state_name=self.state, attempt=self.attempt,
                            error=self.error)
        object.__setattr__(ctx, "_ex", self)
        return ctx

    def ended(self, kind: str) -> None:
        """The execution ended as ``ok``, ``failed`` or ``cancelled``."""
        m = self.branch
        if m.clock is not None and self.state == m.state:  # (not a failure's route: its times are its own)
            m.ends[self.index] = m.clock.time()
        if kind == "ok":
            m.results[self.index] = self.value
            m.mark(self.index, _DONE)
        elif kind == "failed":
            m.mark(self.index, _FAILED)
        else:
            m.mark(self.index, _PENDING)


class BranchContext(Context):
    """The context of a map branch: :attr:`payload` is its item; :meth:`set_result` its result."""

    __slots__ = ("_ex",)

    @property
    def payload(self) -> Any:
        """This branch's item (what its ``Send`` carried)."""
        ex: PayloadExecution = object.__getattribute__(self, "_ex")
        return ex.branch.payloads[ex.index]

    @property
    def payload_index(self) -> int | None:
        """This branch's position in its map."""
        ex: PayloadExecution = object.__getattribute__(self, "_ex")
        return ex.index

    def set_result(self, value: Any) -> None:
        """Record this branch's result; the join reads all of them with ``ctx.results(state)``."""
        object.__getattribute__(self, "_ex").value = value


def map_items(source: str, state: str, items: Iterable[Any]) -> list[Send]:
    """``ctx.map(state, items)`` of state ``source``: one ``Send`` per item; warns when there is none."""
    sends = [Send(state, item) for item in items]
    if not sends:
        warnings.warn(
            f"state {source!r} mapped no items to {state!r} (ctx.map({state!r}, items) with empty items): its "
            f"branch ends here, {state!r} does not run and no join waits for it; check the items, or return "
            "another state's name when there are none",
            FluffyWarning, stacklevel=3,
        )
    return sends


class Fanout(tuple):  # type: ignore[type-arg]
    """The names a ``Send`` list routes to (plain names, then mapped states), with the sends."""

    plain: tuple[str, ...]
    sends: list[Send]


def fanout_of(agent: Agent, name: str, result: Any) -> Fanout | None:
    """``result`` as a payload fan-out, or None when it holds no ``Send``.

    Raises:
        InvalidStateResultError: an entry is neither a state name nor a ``Send``, or a ``Send``'s
            state is not a string.
        StateNotFoundError: a ``Send`` names an unknown state.
        ConfigurationError: a ``Send`` names a state gated by dependencies.
    """
    if type(result) is Send:
        result = [result]  # a single Send: a map of one
    if not isinstance(result, (list, tuple)) or not any(type(r) is Send for r in result):
        return None
    plain: dict[str, None] = {}
    sends: list[Send] = []
    mapped: dict[str, None] = {}
    for r in result:
        if type(r) is Send:
            if type(r.state) is not str:
                raise InvalidStateResultError(
                    f"state {name!r} returned Send({r.state!r}, ...): the state to send a payload to must be "
                    f"a state name (str), not {type(r.state).__name__}; write Send('score', item)"
                )
            sends.append(r)
            mapped[r.state] = None
        elif isinstance(r, str):
            plain[r] = None
        else:
            raise InvalidStateResultError(
                f"state {name!r} returned a list with {r!r} ({type(r).__name__}) beside Send(...) entries; "
                "a fan-out list holds state names and Send(state, payload) only"
            )
    for target in plain:
        if target not in agent.states:
            raise StateNotFoundError(
                f"state {name!r} returned {target!r}, which is not a state of agent {agent.name!r}; "
                f"add it with agent.add_state({target!r}, func) or fix the name"
            )
    for target in mapped:
        _check_mapped(agent, name, target)
    fan = Fanout((*plain, *(m for m in mapped if m not in plain)))
    fan.plain = tuple(plain)
    fan.sends = sends
    return fan


def _check_mapped(agent: Agent, name: str, target: str) -> None:
    """Refuse a map from ``name`` into ``target`` that could not run as one branch per payload."""
    spec = agent.states.get(target)
    if spec is None:
        known = ", ".join(sorted(agent.states)[:12])
        raise StateNotFoundError(
            f"state {name!r} sent payloads to {target!r}, which is not a state of agent {agent.name!r} "
            f"(known: {known}); add it with agent.add_state({target!r}, func) or fix the name"
        )
    if spec.dependencies:
        raise ConfigurationError(
            f"state {name!r} sent payloads to {target!r}, which waits for dependencies; a state run once "
            "per payload cannot also be gated by dependencies: remove its dependencies, or send to a "
            "state without them"
        )
    if isinstance(spec.func, Subflow):
        raise ConfigurationError(_no_subflow_map(name, target, spec.func, "sent payloads to"))
    executor = state_executor(agent, spec)
    if executor is not None and not isinstance(executor, LocalExecutor):
        raise ConfigurationError(
            f"state {name!r} sent payloads to {target!r}, which runs on executor {executor!r}; its body "
            "would not see ctx.payload there (the worker's context carries none yet). Map to a local "
            "state, and let it call the remote work with the payload"
        )


def _no_subflow_map(name: str, target: str, sub: Subflow, how: str) -> str:
    """Why a payload branch cannot run a sub-workflow state, and what to do instead."""
    return (
        f"state {name!r} {how} {target!r}, which is an agent (sub-workflow {sub.child.name!r}); a sub-workflow state "
        "runs one nested child run per use, with keys copied from the parent's context, and has no run per payload "
        "(its child run id, checkpoints and outputs are the state's, not a branch's). Map to a local state that does "
        "the work for ctx.payload, e.g. `result = await child.run(initial_context={'topic': ctx.payload})` then "
        "`ctx.set_result(result.get_state('notes'))` (that run is not nested in the parent's checkpoints or live "
        f"view), or register one sub-workflow state per item (add_state('{target}_a', child, inputs=...)) and "
        "return their names"
    )


def start_map(sched: Scheduler, ex: Execution, fan: Fanout) -> None:
    """Start the branches of ``fan`` (returned by ``ex``): one execution per ``Send``."""
    run = sched.run
    _refuse_nested(sched, ex, fan)
    maps: dict[str, PayloadMap] = {}
    slots: list[tuple[PayloadMap, int]] = []
    for send in fan.sends:
        m = maps.get(send.state)
        if m is None:
            # (its branches are timed only while someone watches: it cost a 10,000-payload map 4%)
            m = maps[send.state] = PayloadMap(send.state, ex.state, [], run.clock if run.events.active else None)
        slots.append((m, len(m.payloads)))
        m.payloads.append(send.payload)
    for m in maps.values():
        before = run.maps.get(m.state)
        if before is not None and before.in_flight():
            raise ConfigurationError(
                f"state {ex.state!r} sent payloads to {m.state!r} while an earlier map of {m.state!r} in this run "
                f"still has {before.in_flight():,} branches to finish; ctx.results({m.state!r}) could not tell "
                f"the two apart: map into another state (add_state a second one with the same function)"
            )
    for m in maps.values():
        m.reset()
        run.maps[m.state] = m

    def start(token: Token, k: int) -> None:
        m, index = slots[k]
        launch(sched, token, m, index, m.state, None)

    group = sched.joins.fan_out(ex.token, fan.plain, [m.state for m, _ in slots], start)
    for m in maps.values():
        m.group = group


def _refuse_nested(sched: Scheduler, ex: Execution, fan: Fanout) -> None:
    """Refuse a map started inside a branch of a live map, whatever the timing: the first one."""
    run = sched.run
    if not run.maps:
        return
    live = sched.joins.groups
    outer = [m for m in run.maps.values() if m.group is not None and live.get(m.group.id) is m.group]
    token: Token | None = ex.token
    while token is not None and outer:
        for m in outer:
            if token.id in m.tokens:
                targets = sorted({s.state for s in fan.sends})
                which = f" (payload {ex.index})" if isinstance(ex, PayloadExecution) else ""
                raise ConfigurationError(
                    f"state {ex.state!r}{which} sent payloads to {targets!r} inside a branch of the map of "
                    f"{m.state!r}: a map inside a map's branches is not supported (ctx.results could not tell "
                    "the inner maps of different branches apart). Flatten it: map every inner item once from "
                    f"the state before, e.g. ctx.map({targets[0]!r}, [(outer, inner) for outer in ... for inner "
                    f"in ...]), or let each {m.state!r} branch do its inner items itself (asyncio.gather) and "
                    "ctx.set_result the list"
                )
        token = token.group.parent
    return


def launch(sched: Scheduler, token: Token, m: PayloadMap, index: int, state: str,
           error: BaseException | None) -> None:
    """Create the execution of branch ``index`` of map ``m`` at ``state`` and queue or launch it."""
    run = sched.run
    m.tokens.add(token.id)
    pex = PayloadExecution(state, token, m.source, m, index)
    pex.error = error
    if run.events.active and run.events.wants(StateScheduled):
        run.events.publish(StateScheduled(run.name, run.run_id, run.clock.monotonic(), state, m.source))
    sched.enqueue(pex)


def route_failure(sched: Scheduler, ex: PayloadExecution, target: str, error: BaseException) -> None:
    """A branch failed for good and its state routes failures to ``target``: run ``target`` for the
    same payload (its result fills the branch's slot), without waiting for the other branches."""
    spec = sched.agent.states.get(target)
    if spec is not None and isinstance(spec.func, Subflow):
        how = "routes failures of its payload branches to"
        raise ConfigurationError(_no_subflow_map(ex.state, target, spec.func, how))
    if spec is not None and spec.dependencies:
        raise ConfigurationError(
            f"state {ex.state!r} routes failures of its payload branches to {target!r}, which waits for "
            "dependencies; route them to a state without dependencies"
        )
    sched.joins.move(ex.token, target)
    launch(sched, ex.token, ex.branch, ex.index, target, error)


# -- checkpoints ---------------------------------------------------------------------------------
def encode_value(key: str, value: Any) -> Any:
    """A payload or result as checkpoint JSON, tagged as context values are (``_codec``)."""
    return _codec.encode_value(key, value)
