"""Agent checkpointing: durable and periodic checkpoints, history, restore, fork, diff, resume."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fluffy_nb.engine import (
    Agent,
    AgentRunningError,
    AgentStatus,
    Checkpoint,
    CheckpointError,
    ConfigurationError,
    ManualClock,
    StateFailedError,
    StateStatus,
    TypedContextData,
)
from fluffy_nb.engine._events import StateFinished
from fluffy_nb.engine._history import CheckpointHistory
from fluffy_nb.store import MemoryStore, SQLiteStore


@dataclass
class Tally(TypedContextData):
    items: list[str]
    total: int = 0


def chain(agent: Agent, n: int, calls: Counter[str], fail_at: str | None = None) -> None:
    """s0 -> s1 -> ... -> s{n-1}; each adds its index to 'total' and a typed Tally."""

    def make(i: int) -> Any:
        async def step(ctx: Any) -> Any:
            name = f"s{i}"
            calls[name] += 1
            if name == fail_at:
                raise RuntimeError(f"{name} broke")
            ctx.set_state("total", ctx.get_state("total", 0) + i)
            tally = ctx.get_typed("tally", Tally) if ctx.has_typed("tally") else Tally([])
            ctx.set_typed("tally", Tally([*tally.items, name], tally.total + i))
            return f"s{i + 1}" if i + 1 < n else None

        return step

    for i in range(n):  # next=: the names are computed, so the graph cannot read them from the code
        agent.add_state(f"s{i}", make(i), next=[f"s{i + 1}"] if i + 1 < n else None)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    s = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "runs.db")
    yield s
    s.close()


async def test_durable_run_saves_a_linked_checkpoint_after_every_state(store: Any) -> None:
    agent = Agent("c", store=store, durable=True)
    chain(agent, 5, Counter())
    await agent.run()
    rows = store.list("c")
    assert [r.trigger for r in rows] == ["state"] * 5 + ["completion"]
    assert [r.sequence for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r.completed_count for r in rows] == [1, 2, 3, 4, 5, 5]
    assert [r.parent_id for r in rows[1:]] == [r.checkpoint_id for r in rows[:-1]]
    assert rows[0].pending == ("s1",)
    assert rows[-1].agent_status == "completed"


async def test_store_without_durable_saves_only_the_final_checkpoint(store: Any) -> None:
    agent = Agent("c", store=store)
    chain(agent, 3, Counter())
    await agent.run()
    assert [r.trigger for r in store.list("c")] == ["completion"]


async def test_checkpoint_interval_checkpoints_periodically_while_running() -> None:
    clock, store, gate = ManualClock(), MemoryStore(), asyncio.Event()
    agent = Agent("tick", store=store, checkpoint_interval=5, clock=clock)

    async def wait(ctx: Any) -> None:
        ctx.set_state("phase", "waiting")
        await gate.wait()

    agent.add_state("wait", wait)
    task = asyncio.create_task(agent.run())
    await clock.wait_for_sleepers(1)
    await clock.advance(4.9)
    assert store.list("tick") == []
    await clock.advance(0.1)
    await clock.advance(5)
    rows = store.list("tick")
    assert [r.trigger for r in rows] == ["interval", "interval"]
    assert [r.timestamp - rows[0].timestamp for r in rows] == [0, 5]
    assert rows[0].pending == ("wait",)
    assert rows[0].agent_status == "running"
    await agent.pause(timeout=0)  # 'wait' is requeued; a paused run takes no interval checkpoints
    await clock.advance(20)
    assert [r.trigger for r in store.list("tick")] == ["interval", "interval", "pause"]
    await agent.resume()
    await clock.advance(5)
    assert store.list("tick")[-1].trigger == "interval"
    gate.set()
    await task
    await clock.advance(20)  # the interval task ended with the run
    assert [r.trigger for r in store.list("tick")] == ["interval", "interval", "pause", "interval", "completion"]


async def test_pause_failure_and_cancel_each_leave_a_checkpoint(store: Any) -> None:
    gate = asyncio.Event()
    agent = Agent("p", store=store)

    async def slow(ctx: Any) -> str:
        await gate.wait()
        return "boom"

    async def boom(ctx: Any) -> None:
        raise ValueError("bad input 42")

    agent.add_state("slow", slow)
    agent.add_state("boom", boom)
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(0)
    pausing = asyncio.create_task(agent.pause())
    await asyncio.sleep(0)
    gate.set()
    paused = await pausing
    assert paused.trigger == "pause"
    assert paused.pending == ["boom"]
    assert store.get(paused.checkpoint_id).to_dict() == paused.to_dict()
    await agent.resume()
    with pytest.raises(StateFailedError):
        await task
    last = store.latest("p")
    assert (last.trigger, last.agent_status) == ("failure", AgentStatus.FAILED)
    assert "bad input 42" in last.error

    gate2 = asyncio.Event()
    agent2 = Agent("q", store=store)

    async def hang(ctx: Any) -> None:
        await gate2.wait()

    agent2.add_state("hang", hang)
    task2 = asyncio.create_task(agent2.run())
    await asyncio.sleep(0)
    await agent2.cancel_all()
    await task2
    assert store.latest("q").trigger == "cancel"


async def test_restore_from_history_continues_without_rerunning_completed_states(store: Any) -> None:
    calls: Counter[str] = Counter()
    first = Agent("c", store=store, durable=True)
    chain(first, 6, calls)
    await first.run()
    third = first.history_records()[2]  # after s0, s1, s2

    calls.clear()
    again = Agent("c", store=store, durable=True)
    chain(again, 6, calls)
    loaded = again.restore(third.checkpoint_id)
    assert loaded.completed_states == ["s0", "s1", "s2"]
    assert again.status is AgentStatus.PAUSED
    result = await again.run()
    assert calls == Counter({"s3": 1, "s4": 1, "s5": 1})
    assert result["total"] == sum(range(6))
    assert result.get_typed("tally", Tally) == Tally([f"s{i}" for i in range(6)], 15)
    run_rows = store.list(run_id=first.run_id)
    assert [r.sequence for r in run_rows] == list(range(1, 12))  # restore extends the same run
    assert run_rows[7].parent_id == third.checkpoint_id


async def test_restore_into_a_running_agent_is_refused_and_store_unchanged(store: Any) -> None:
    gate = asyncio.Event()
    agent = Agent("r", store=store, durable=True)

    async def hold(ctx: Any) -> None:
        await gate.wait()

    agent.add_state("hold", hold)
    saved = agent.create_checkpoint()
    store.put(saved)
    before = store.list()
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(0)
    with pytest.raises(AgentRunningError, match=r"'r' has 1 run\(s\) going on"):
        agent.restore(saved.checkpoint_id)
    with pytest.raises(AgentRunningError):
        await agent.restore_from_checkpoint(saved)
    with pytest.raises(AgentRunningError):
        agent.fork(saved)
    assert store.list() == before
    gate.set()
    await task


async def test_checkpoint_naming_unknown_states_is_refused_and_agent_unchanged(store: Any) -> None:
    old = Agent("c", store=store, durable=True)
    chain(old, 4, Counter())
    await old.run()
    cp = old.history_records()[1]
    smaller = Agent("c", store=store)
    chain(smaller, 2, Counter())
    before = store.list()
    with pytest.raises(CheckpointError, match=r"names states \['s2'\].*does not have"):
        smaller.restore(cp)
    assert smaller.status is AgentStatus.IDLE
    assert smaller.completed_states == []
    assert store.list() == before


async def test_newer_format_and_unknown_id_raise_checkpoint_error(store: Any) -> None:
    agent = Agent("c", store=store)
    chain(agent, 2, Counter())
    data = agent.create_checkpoint().to_dict()
    data["format_version"] = 7
    with pytest.raises(CheckpointError, match="format_version 7 is newer"):
        agent.restore(data)
    with pytest.raises(CheckpointError, match="nope-id"):
        agent.restore("nope-id")
    with pytest.raises(CheckpointError, match="pass a Checkpoint"):
        agent.restore(42)


async def test_fork_starts_a_new_run_and_leaves_the_original_history_alone(store: Any) -> None:
    calls: Counter[str] = Counter()
    agent = Agent("f", store=store, durable=True)
    chain(agent, 4, calls)
    await agent.run()
    original_run = agent.run_id
    original = store.list(run_id=original_run)
    source = original[1]

    calls.clear()
    agent.fork(source)
    assert agent.run_id != original_run
    agent.set_state("note", "forked")  # a fork may diverge
    result = await agent.run()
    assert calls == Counter({"s2": 1, "s3": 1})
    assert result["total"] == 6
    assert store.list(run_id=original_run) == original
    fork_rows = store.list(run_id=agent.run_id)
    assert fork_rows[0].trigger == "fork"
    assert fork_rows[0].parent_id == source.checkpoint_id
    assert fork_rows[0].pending == ("s2",)
    assert store.get(fork_rows[0].checkpoint_id).metadata["forked_from"] == source.checkpoint_id
    assert [r.run_id for r in store.runs("f")] == [original_run, agent.run_id]


async def test_diff_names_changed_keys_statuses_and_completions(store: Any) -> None:
    agent = Agent("d", store=store, durable=True)
    chain(agent, 3, Counter())
    await agent.run()
    rows = agent.history_records()
    d = agent.diff(rows[0], rows[2])
    assert d.changed == ("total", "tally")
    assert d.added == ()
    assert d.removed == ()
    assert d.completed_added == ("s1", "s2")
    assert d.status_changes == {"s1": ("ready", "completed"), "s2": ("pending", "completed")}
    text = repr(d)
    assert "changed      total, tally" in text
    assert "s2: pending -> completed" in text
    assert agent.diff(rows[1], rows[1]).empty


async def test_history_is_one_type_everywhere_with_a_dataframe_on_request(store: Any) -> None:
    agent = Agent("h", store=store, durable=True)
    chain(agent, 2, Counter())
    await agent.run()
    hist = agent.history()
    assert isinstance(hist, CheckpointHistory)
    assert [r.trigger for r in hist] == ["state", "state", "completion"]
    assert "<CheckpointHistory 'h': 3 checkpoint(s), 1 run(s)>" in repr(hist)
    assert "completion  completed" in repr(hist)
    frame = agent.history(run_id=agent.run_id).to_pandas()
    assert list(frame["trigger"]) == ["state", "state", "completion"]
    assert frame["sequence"].dtype == "int64"
    assert isinstance(agent.history_records(), CheckpointHistory)


def test_history_without_a_store_says_how_to_add_one() -> None:
    with pytest.raises(CheckpointError, match=r"no checkpoint store.*SQLiteStore"):
        Agent("x").history()


async def test_resume_latest_after_a_failure_reruns_only_the_failed_state(store: Any) -> None:
    calls: Counter[str] = Counter()
    broken = Agent("job", store=store, durable=True)
    chain(broken, 5, calls, fail_at="s3")
    with pytest.raises(StateFailedError):
        await broken.run()
    assert store.latest("job").trigger == "failure"

    calls.clear()
    fixed = Agent("job")
    chain(fixed, 5, calls)
    result = await fixed.resume_latest(store)
    assert calls == Counter({"s3": 1, "s4": 1})
    assert result.status is AgentStatus.COMPLETED
    assert result["total"] == 10
    assert fixed.store is store
    assert fixed.run_id == broken.run_id
    assert store.latest("job").agent_status is AgentStatus.COMPLETED


async def test_resume_latest_of_a_completed_run_runs_nothing(store: Any) -> None:
    calls: Counter[str] = Counter()
    agent = Agent("done", store=store, durable=True)
    chain(agent, 3, calls)
    await agent.run()
    count = len(store.list())
    calls.clear()
    again = Agent("done", store=store)
    chain(again, 3, calls)
    result = await again.resume_latest()
    assert calls == Counter()
    assert result["total"] == 3
    assert result.status is AgentStatus.COMPLETED
    assert len(store.list()) == count


async def test_resume_latest_with_nothing_stored_is_a_clear_error(store: Any) -> None:
    agent = Agent("never", store=store)
    chain(agent, 1, Counter())
    with pytest.raises(CheckpointError, match="holds no checkpoint of agent 'never'"):
        await agent.resume_latest()
    with pytest.raises(CheckpointError, match="no checkpoint store"):
        await Agent("x").resume_latest()


async def test_restore_mid_fan_out_runs_the_join_once_after_the_missing_branch(store: Any) -> None:
    calls: Counter[str] = Counter()
    agent = Agent("fan", store=store, durable=True)

    def add(name: str, nxt: Any) -> None:
        async def f(ctx: Any) -> Any:
            calls[name] += 1
            ctx.set_state(name, True)
            return nxt

        agent.add_state(name, f)

    add("split", ["left", "right"])
    add("left", "join")
    add("right", "join")
    add("join", None)
    await agent.run()
    assert calls["join"] == 1
    rows = store.list("fan")
    mid = next(r for r in rows if r.completed_count == 2)  # split + one branch
    calls.clear()
    again = Agent("fan", store=store, durable=True)
    for name, nxt in (("split", ["left", "right"]), ("left", "join"), ("right", "join"), ("join", None)):
        async def f(ctx: Any, name: str = name, nxt: Any = nxt) -> Any:
            calls[name] += 1
            return nxt

        again.add_state(name, f)
    again.restore(mid)
    await again.run()
    done_before = set(store.get(mid.checkpoint_id).completed_states)
    assert calls["join"] == 1
    assert not (set(calls) & done_before)
    assert again.state_metadata["join"].status is StateStatus.COMPLETED


async def test_answer_recorded_before_a_crash_is_replayed_not_asked_again(
    tmp_path: Path, answer_with: Any
) -> None:
    def build(gate: asyncio.Event, answered: asyncio.Event) -> Agent:
        agent = Agent("ask", store=SQLiteStore(tmp_path / "h.db"), durable=True)

        async def split(ctx: Any) -> list[str]:
            return ["review", "other"]

        async def review(ctx: Any) -> None:
            ctx.set_state("answer", await ctx.human_in_the_loop("ship it?", choices=["yes", "no"]))
            answered.set()
            await gate.wait()

        async def other(ctx: Any) -> None:
            await answered.wait()

        agent.add_state("split", split)
        agent.add_state("review", review)
        agent.add_state("other", other)
        return agent

    first = build(asyncio.Event(), asyncio.Event())
    asked = answer_with(first, "yes")
    other_done = asyncio.Event()
    first.events.subscribe(lambda e: isinstance(e, StateFinished) and e.state == "other" and other_done.set())
    task = asyncio.create_task(first.run())
    await other_done.wait()  # its checkpoint is saved in the same step, before this task resumes
    await first.cancel_all()  # the "crash": review never finished
    await task
    assert asked == ["ship it?"]
    saved = next(r for r in first.store.list("ask") if "review" in r.pending and r.completed_count == 2)
    first.store.close()

    gate = asyncio.Event()
    gate.set()
    second = build(gate, asyncio.Event())
    asked_again = answer_with(second)  # answers nothing: a new question would hang the run
    second.restore(saved.checkpoint_id)
    result = await second.run(timeout=5)
    assert asked_again == []
    assert result["answer"] == "yes"
    second.store.close()


async def test_snapshot_equals_a_validated_checkpoint_of_the_same_data() -> None:
    agent = Agent("snap")
    chain(agent, 3, Counter())
    await agent.run()
    cp = agent.create_checkpoint()
    validated = Checkpoint.model_validate(cp.model_dump())
    assert set(cp.__dict__) == set(Checkpoint.model_fields)
    assert cp == validated
    assert cp.model_fields_set == validated.model_fields_set | cp.model_fields_set
    assert cp.model_dump_json() == validated.model_dump_json()
    assert Checkpoint.from_json(cp.to_json()) == cp
    copy = cp.model_copy(update={"trigger": "manual"})
    assert copy.trigger == "manual"


async def test_checkpoint_that_cannot_be_written_fails_the_run_instead_of_hanging(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "runs.db"
    store = SQLiteStore(path, write_behind=False)
    agent = Agent("lost", store=store, durable=True)

    async def first(ctx: Any) -> str:
        con = sqlite3.connect(path)  # the file is damaged under the running agent
        con.execute("DROP TABLE checkpoints")
        con.close()
        return "second"

    async def second(ctx: Any) -> None:
        return None

    agent.add_state("first", first, next=["second"])
    agent.add_state("second", second)
    with pytest.raises(CheckpointError, match=r"'lost': the state checkpoint could not be saved.*runs\.db"):
        await asyncio.wait_for(agent.run(), 10)
    assert agent.status is AgentStatus.FAILED


async def test_value_json_cannot_hold_fails_a_durable_run_naming_the_key() -> None:
    agent = Agent("odd", store=MemoryStore(), durable=True)

    async def keep_a_lock(ctx: Any) -> str:
        ctx.set_state("tags", {"a", "b"})  # a set is stored (tagged JSON); a lock cannot be
        ctx.set_state("lock", asyncio.Lock())
        return "after"

    async def after(ctx: Any) -> None:
        return None

    agent.add_state("keep_a_lock", keep_a_lock, next=["after"])
    agent.add_state("after", after)
    with pytest.raises(CheckpointError, match=r"'lock' holds a value of type asyncio.locks.Lock"):
        await asyncio.wait_for(agent.run(), 10)


async def test_checkpoint_interval_without_a_store_keeps_its_checkpoints_to_restore() -> None:
    """Spec: ``Agent("my_workflow", checkpoint_interval=300)`` (no store) checkpoints every 5
    minutes; those checkpoints are kept in memory, so one can be restored into a new agent."""
    clock, gate = ManualClock(), asyncio.Event()
    agent = Agent("my_workflow", checkpoint_interval=300, clock=clock)
    assert isinstance(agent.store, MemoryStore)

    async def first(ctx: Any) -> str:
        ctx.set_state("phase", "first done")
        return "second"

    async def second(ctx: Any) -> None:
        await gate.wait()
        ctx.set_state("phase", "second done")

    agent.add_state("first", first)
    agent.add_state("second", second)
    task = asyncio.create_task(agent.run())
    await clock.wait_for_sleepers(1)
    await clock.advance(300)
    [row] = agent.history()
    assert (row.trigger, row.pending) == ("interval", ("second",))
    gate.set()
    await task

    again = Agent("my_workflow")
    again.add_state("first", first)
    again.add_state("second", second)
    again.restore(agent.store.get(row.checkpoint_id))
    result = await again.run()
    assert result["phase"] == "second done"
    assert result.completed_states == ["first", "second"]


async def test_the_default_interval_store_keeps_only_the_last_checkpoints_of_a_run() -> None:
    """A long run checkpointing every interval into the store made for it must not fill memory:
    it keeps the last INTERVAL_KEEP_LAST checkpoints of the run, and the newest still restores."""
    from fluffy_nb.store._memory import INTERVAL_KEEP_LAST

    clock, gate = ManualClock(), asyncio.Event()
    agent = Agent("long", checkpoint_interval=1, clock=clock)

    async def work(ctx: Any) -> None:
        ctx.set_state("started", True)
        await gate.wait()

    agent.add_state("work", work)
    task = asyncio.create_task(agent.run())
    await clock.wait_for_sleepers(1)
    for _ in range(INTERVAL_KEEP_LAST + 20):
        await clock.advance(1)
    rows = agent.history()
    assert len(rows) == INTERVAL_KEEP_LAST
    assert {r.trigger for r in rows} == {"interval"}
    newest = agent.store.latest("long")
    assert newest is not None
    assert newest.checkpoint_id == rows[-1].checkpoint_id
    gate.set()
    await task


async def test_a_bounded_memory_store_never_drops_what_a_kept_delta_folds_onto() -> None:
    """``MemoryStore(keep_last=2)`` under a durable run (a delta checkpoint per state, folding onto
    the ones before it): mid-run, every checkpoint it still lists loads, and the newest restores
    every state completed so far."""
    store = MemoryStore(keep_last=2)
    agent = Agent("chain", store=store, durable=True)
    names = [f"s{i}" for i in range(12)]
    seen: dict[str, Any] = {}

    def step(i: int) -> Any:
        async def body(ctx: Any) -> str | None:
            if i == 9:  # the last checkpoints are deltas now: look at what the store kept
                rows = store.list(agent_name="chain")
                seen["deltas"] = sum(store.get(r.checkpoint_id).checkpoint_id == r.checkpoint_id for r in rows)
                seen["rows"] = len(rows)
                seen["latest"] = store.latest("chain")
            ctx.set_state(f"k{i}", i)
            return names[i + 1] if i + 1 < len(names) else None
        return body

    for i, name in enumerate(names):
        agent.add_state(name, step(i))
    await agent.run()
    assert 2 <= seen["rows"] < 9  # bounded, keeping the parents a kept delta needs
    assert seen["deltas"] == seen["rows"]  # each one folds: no parent was dropped
    assert seen["latest"].completed_states == names[:9]
    rows = store.list(agent_name="chain")
    assert len(rows) < len(names) + 1  # 13 written (a checkpoint per state and the completion)
    assert [store.get(r.checkpoint_id).checkpoint_id for r in rows] == [r.checkpoint_id for r in rows]
    last = store.latest("chain")
    assert last is not None
    assert last.completed_states == names


def test_memory_store_keep_last_must_be_a_whole_number() -> None:
    with pytest.raises(ConfigurationError, match=r"keep_last=0.*whole number >= 1"):
        MemoryStore(keep_last=0)


def test_checkpoint_ids_drawn_from_many_threads_at_once_never_repeat() -> None:
    # ids are drawn ahead in bulk and handed out from a shared list: runs in several threads (one
    # event loop each) must still never get the same id (a store would ignore the second checkpoint)
    import threading

    from fluffy_nb.engine._checkpointing import new_checkpoint_id

    start = threading.Barrier(8)
    drawn: list[list[str]] = [[] for _ in range(8)]

    def draw(out: list[str]) -> None:
        start.wait()
        out.extend(new_checkpoint_id() for _ in range(2_000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in drawn]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for out in drawn for i in out]
    assert len(set(ids)) == len(ids) == 16_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
