"""Delta checkpoints: a durable step writes what changed; stores fold deltas back into full checkpoints."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fluffy_nb.engine import FORMAT_VERSION, Agent, Checkpoint, CheckpointError, TypedContextData, _delta
from fluffy_nb.store import MemoryStore, SQLiteStore

DATA = Path(__file__).parent / "data"
#: fields that differ between two runs doing the same work
_RUN_FIELDS = {"checkpoint_id", "parent_id", "run_id", "timestamp"}


@dataclass
class Box(TypedContextData):
    items: list[int]


def busy_agent(store: Any, name: str = "busy") -> Agent:
    """A run that does everything a delta must carry: statuses, retries, a loop, a fan-out and
    join, keys set, removed and changed in place, typed values."""
    agent = Agent(name, store=store, durable=store is not None, max_steps=500)
    tries = {"flaky": 0}

    async def start(ctx: Any) -> Any:
        ctx.set_state("log", [])
        ctx.set_state("gone", 1)
        ctx.set_typed("box", Box([]))
        return "loop"

    async def loop(ctx: Any) -> Any:
        n = ctx.get_state("n", 0) + 1
        ctx.set_state("n", n)
        ctx.get_state("log").append(n)  # changed in place, never set again
        ctx.get_typed("box", Box).items.append(n)  # a typed value changed in place
        if n == 3:
            ctx.remove_state("gone")
        return "loop" if n < 70 else ["left", "flaky"]

    async def left(ctx: Any) -> Any:
        return "join"

    async def flaky(ctx: Any) -> Any:
        tries["flaky"] += 1
        if tries["flaky"] < 3:
            raise RuntimeError("not yet")
        return "join"

    async def join(ctx: Any) -> Any:
        ctx.set_state("joined", True)

    agent.add_state("start", start)
    agent.add_state("loop", loop)
    agent.add_state("left", left)
    agent.add_state("flaky", flaky, max_retries=3)
    agent.add_state("join", join)
    return agent


class KeepingStore(MemoryStore):
    """A memory store that also keeps every checkpoint handed to it, as built, in ``made``."""

    def __init__(self, made: list[Checkpoint]) -> None:
        super().__init__()
        self.made = made

    def put(self, checkpoint: Checkpoint) -> None:
        self.made.append(checkpoint)
        super().put(checkpoint)


def comparable(cp: Checkpoint) -> dict[str, Any]:
    return {k: v for k, v in cp.to_dict().items() if k not in _RUN_FIELDS}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_every_folded_delta_holds_what_a_full_checkpoint_of_that_moment_held(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def store() -> Any:
        return MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / f"{len(list(tmp_path.iterdir()))}.db")

    deltas_store = store()
    await busy_agent(deltas_store).run(start="start")
    monkeypatch.setattr(_delta, "FULL_EVERY", 0)  # the reference: every checkpoint in full
    full_store = store()
    await busy_agent(full_store).run(start="start")

    with_deltas = [deltas_store.get(i.checkpoint_id) for i in deltas_store.list("busy")]
    full = [full_store.get(i.checkpoint_id) for i in full_store.list("busy")]
    assert len(with_deltas) == len(full) > 70
    assert [comparable(cp) for cp in with_deltas] == [comparable(cp) for cp in full]
    assert [i.completed_count for i in deltas_store.list("busy")] == [len(cp.completed_states) for cp in full]
    last = with_deltas[-1]
    assert last.shared_state["log"] == list(range(1, 71))
    assert "gone" not in last.shared_state
    assert last.typed_values()["box"].items == list(range(1, 71))


async def test_a_durable_step_writes_a_delta_and_a_full_checkpoint_every_so_often(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    await busy_agent(store).run(start="start")
    store.close()
    with sqlite3.connect(tmp_path / "runs.db") as con:
        rows = [json.loads(data) for (data,) in con.execute("SELECT data FROM checkpoints ORDER BY sequence")]
    kinds = [row["delta"] for row in rows]
    assert kinds[0] is False  # the first checkpoint of a run is full
    assert kinds[-1] is False  # and its last (completion)
    assert kinds.count(False) > 2  # full ones in between: once the deltas add up to a full one's size
    delta = rows[10]
    assert delta["delta"] is True
    assert delta["format_version"] == FORMAT_VERSION == 2
    assert set(delta["shared_state"]) == {"n", "log"}  # the key set, and the list (it may change in place)
    assert delta["completed_states"] == []  # "loop" completed before: only its count changed
    assert delta["completion_counts"] == {"loop": 10}
    assert delta["state_status"] == {"loop": "ready"}  # finished, and queued again: the one state touched
    assert len(json.dumps(delta)) < len(json.dumps(rows[-1]))


async def test_a_run_restored_from_a_delta_finishes_like_the_uninterrupted_run() -> None:
    store = MemoryStore()
    await busy_agent(store).run(start="start")
    rows = store.list("busy")
    middle = rows[30]
    agent = busy_agent(store)
    restored = agent.restore(middle.checkpoint_id)
    assert restored.completed_count == middle.completed_count
    result = await agent.run()
    assert result["log"] == list(range(1, 71))
    assert result["joined"] is True


async def test_a_version_1_checkpoint_file_still_loads_and_resumes() -> None:
    cp = Checkpoint.from_json((DATA / "checkpoint_v1.json").read_text(), source="checkpoint_v1.json")
    assert cp.format_version == 1
    assert not cp.delta
    seen: list[str] = []
    agent = Agent("v1_fixture")

    async def a(ctx: Any) -> Any:
        return "b"

    async def b(ctx: Any) -> Any:
        return "c"

    async def c(ctx: Any) -> Any:
        seen.append("c")
        ctx.set_state("seen", [*ctx.get_state("seen"), "c"])

    for name, func in (("a", a), ("b", b), ("c", c)):
        agent.add_state(name, func)
    agent.restore(cp)
    result = await agent.run()
    assert seen == ["c"]
    assert result["seen"] == ["a", "b", "c"]
    assert result["n"] == 2


def _put_raw(store: MemoryStore, data: dict[str, Any]) -> None:
    store.put(Checkpoint.from_dict(data))


def _delta_row(cid: str, parent: str | None, run: str = "r1", seq: int = 2) -> dict[str, Any]:
    return {"checkpoint_id": cid, "parent_id": parent, "agent_name": "a", "run_id": run, "timestamp": 1.0,
            "sequence": seq, "trigger": "state", "delta": True, "completed_states": ["x"]}


@pytest.mark.parametrize(("rows", "message"), [
    ([_delta_row("d1", None)], "without a parent"),
    ([_delta_row("d1", "nowhere")], "parent 'nowhere' does not load"),
    ([_delta_row("d1", "d2"), _delta_row("d2", "d1", seq=3)], "loops"),
    ([{**_delta_row("f0", None, run="other", seq=1), "delta": False}, _delta_row("d1", "f0")], "another run"),
])
async def test_a_forged_chain_of_deltas_fails_to_load_with_a_checkpoint_error(
        rows: list[dict[str, Any]], message: str) -> None:
    store = MemoryStore()
    for row in rows:
        _put_raw(store, row)
    with pytest.raises(CheckpointError, match=message):
        store.get("d1")


async def test_a_chain_of_deltas_longer_than_the_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_delta, "MAX_CHAIN", 5)
    store = MemoryStore()
    _put_raw(store, {**_delta_row("c0", None, seq=0), "delta": False})
    for i in range(1, 8):
        _put_raw(store, _delta_row(f"c{i}", f"c{i - 1}", seq=i))
    assert store.get("c5").completed_states == ["x"] * 6  # the full c0 and five deltas
    with pytest.raises(CheckpointError, match="longer than 5"):
        store.get("c7")


async def test_a_delta_passed_as_data_is_folded_from_the_agents_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    await busy_agent(store).run(start="start")
    row = store.list("busy")[20]
    with sqlite3.connect(tmp_path / "runs.db") as con:
        (data,) = con.execute("SELECT data FROM checkpoints WHERE checkpoint_id = ?", (row.checkpoint_id,)).fetchone()
    as_stored = json.loads(data)
    assert as_stored["delta"] is True
    agent = busy_agent(store)
    restored = agent.restore(as_stored)
    assert restored == store.get(row.checkpoint_id)
    assert len(restored.completed_states) == row.completed_count
    assert (await agent.run())["joined"] is True
    with pytest.raises(CheckpointError, match="no checkpoint store"):
        busy_agent(None).restore(as_stored)



async def test_a_damaged_parent_makes_its_deltas_fail_to_load_and_the_next_full_one_still_loads(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    await busy_agent(store).run(start="start")
    rows = store.list("busy")
    store.close()
    kinds = [json.loads(_data(tmp_path, r.checkpoint_id))["delta"] for r in rows]
    at = next(i for i in range(1, len(rows) - 1) if kinds[i] and kinds[i + 1])
    broken = rows[at]  # a delta, parent of the deltas after it up to the next full checkpoint
    with sqlite3.connect(tmp_path / "runs.db") as con:
        con.execute("UPDATE checkpoints SET data = '{\"not\": ' WHERE checkpoint_id = ?", (broken.checkpoint_id,))
    reopened = SQLiteStore(tmp_path / "runs.db")
    with pytest.raises(CheckpointError, match=f"parent {broken.checkpoint_id[:80]!r} does not load"):
        reopened.get(rows[at + 1].checkpoint_id)
    assert reopened.get(rows[at - 1].checkpoint_id).completed_count == rows[at - 1].completed_count
    full_after = next(r for r, delta in zip(rows[at:], kinds[at:], strict=True) if not delta)
    assert reopened.get(full_after.checkpoint_id).completed_count == full_after.completed_count
    reopened.close()


def _data(tmp_path: Path, checkpoint_id: str) -> str:
    with sqlite3.connect(tmp_path / "runs.db") as con:
        (data,) = con.execute("SELECT data FROM checkpoints WHERE checkpoint_id = ?", (checkpoint_id,)).fetchone()
    return str(data)


async def test_the_final_context_copies_deep_copies_and_pickles_like_a_dict() -> None:
    import copy
    import pickle

    agent = Agent("copied")

    async def only(ctx: Any) -> None:
        ctx.set_state("items", [1])

    agent.add_state("only", only)
    shared = (await agent.run()).shared_state
    deep = copy.deepcopy(shared)
    deep["items"].append(2)
    assert shared == {"items": [1]}
    assert deep == {"items": [1, 2]}
    assert pickle.loads(pickle.dumps(shared)) == {"items": [1]}
    assert copy.copy(shared) == shared == json.loads(json.dumps(shared))


async def test_every_checkpoint_as_built_equals_what_its_json_validates_to() -> None:
    made: list[Checkpoint] = []
    await busy_agent(KeepingStore(made)).run(start="start")
    assert sum(cp.delta for cp in made) > 40
    assert not made[-1].delta
    for cp in made:  # built without validation: every field present, in the model's order, valid
        assert list(cp.__dict__) == list(Checkpoint.model_fields)
        validated = Checkpoint.from_json(cp.model_dump_json())
        assert validated == cp
        assert validated.model_dump_json() == cp.model_dump_json()


async def test_built_checkpoints_keep_every_field_set_whatever_is_done_to_one_of_them() -> None:
    # built checkpoints share one fields-set (all fields): editing or copying one of them must not
    # change what any other reports as set, nor what exclude_unset leaves out of it
    made: list[Checkpoint] = []
    await busy_agent(KeepingStore(made)).run(start="start")
    first, second = made[0], made[1]
    first.trigger = "manual"
    copied = second.model_copy(update={"error": "x"}, deep=True)
    copied.model_fields_set.discard("error")
    every = set(Checkpoint.model_fields)
    for cp in made:
        assert cp.model_fields_set == every
        assert cp.model_dump(exclude_unset=True) == cp.model_dump()
    assert made[0].trigger == "manual"
    assert made[1].trigger != "manual"


async def test_a_checkpoint_counting_a_state_zero_times_restores_it_as_not_completed() -> None:
    """A checkpoint may count a state 0 times (its counts are whole numbers >= 0): that state has
    not completed. Restored, it is not in ``completed_set``; once it runs it is in
    ``completed_states`` like any state that completed."""
    data = json.loads((DATA / "checkpoint_v1.json").read_text())
    data.update(completed_states=["a"], completion_counts={"a": 1, "b": 0}, pending=["b"],
                state_status={"a": "completed", "b": "ready"})
    agent = Agent("v1_fixture")

    async def a(ctx: Any) -> Any:
        return "b"

    async def b(ctx: Any) -> Any:
        return None

    agent.add_state("a", a)
    agent.add_state("b", b)
    agent.restore(Checkpoint.from_dict(data))
    run = agent.prepared_run
    assert run is not None
    assert set(run.completed_set) == {"a"}
    result = await agent.run()
    assert result.completed_states == ["a", "b"]
    assert result.state_runs == {"a": 1, "b": 1}
