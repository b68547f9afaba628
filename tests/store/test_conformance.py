"""One conformance suite, run against every checkpoint store.

Each store is built by a factory; ``corrupt(store, id, text)`` overwrites the stored JSON of
one checkpoint the way a damaged disk or a newer fluffy_nb would leave it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fluffy_nb.engine import AgentStatus, Checkpoint, CheckpointError, FluffyWarning, StateStatus
from fluffy_nb.store import CheckpointInfo, CheckpointStore, MemoryStore, RunInfo, SQLiteStore


def _corrupt_memory(store: MemoryStore, cid: str, text: str) -> None:
    entry = store._entries[cid]
    entry.json()
    entry.text = text


def _corrupt_sqlite(store: SQLiteStore, cid: str, text: str) -> None:
    store.flush()
    con = sqlite3.connect(store.path)
    with con:
        con.execute("UPDATE checkpoints SET data = ? WHERE checkpoint_id = ?", (text, cid))
    con.close()


STORES: dict[str, tuple[Callable[[Path], Any], Callable[[Any, str, str], None]]] = {
    "memory": (lambda tmp: MemoryStore(), _corrupt_memory),
    "sqlite": (lambda tmp: SQLiteStore(tmp / "cp.db"), _corrupt_sqlite),
    "sqlite-sync": (lambda tmp: SQLiteStore(tmp / "cp.db", write_behind=False), _corrupt_sqlite),
}


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    s = STORES[request.param][0](tmp_path)
    s._corrupt = STORES[request.param][1]  # test-only handle
    yield s
    s.close()


def cp(agent: str = "a", run: str = "r1", seq: int = 1, ts: float = 100.0, **kw: Any) -> Checkpoint:
    base: dict[str, Any] = {
        "agent_name": agent,
        "run_id": run,
        "sequence": seq,
        "timestamp": ts,
        "trigger": "state",
        "agent_status": AgentStatus.RUNNING,
        "completed_states": [f"s{i}" for i in range(seq)],
        "state_status": {"s0": StateStatus.COMPLETED},
        "pending": [f"s{seq}"],
        "shared_state": {"n": seq, "nested": {"list": [1, 2.5, None, "é"]}},
    }
    base.update(kw)
    return Checkpoint(**base)


def test_store_satisfies_the_protocol(store: Any) -> None:
    assert isinstance(store, CheckpointStore)


def test_get_returns_what_was_put(store: Any) -> None:
    c = cp(error="ValueError: boom", human_answers=[{"request_id": "q1", "state": "s0", "value": {"ok": True}}])
    store.put(c)
    got = store.get(c.checkpoint_id)
    assert got.to_dict() == c.to_dict()
    assert got is not c


def test_mutating_a_loaded_checkpoint_leaves_the_store_unchanged(store: Any) -> None:
    c = cp()
    store.put(c)
    got = store.get(c.checkpoint_id)
    got.shared_state["n"] = 999
    got.completed_states.append("forged")
    again = store.get(c.checkpoint_id)
    assert again.shared_state["n"] == 1
    assert "forged" not in again.completed_states


def test_unknown_id_raises_checkpoint_error_naming_the_id(store: Any) -> None:
    store.put(cp())
    with pytest.raises(CheckpointError, match="no-such-id"):
        store.get("no-such-id")


def test_list_orders_by_run_start_then_sequence(store: Any) -> None:
    # run r2 starts later but reaches the store first; sequences arrive out of order
    store.put(cp(run="r2", seq=1, ts=200.0))
    store.put(cp(run="r1", seq=2, ts=101.0))
    store.put(cp(run="r1", seq=1, ts=100.0))
    store.put(cp(run="r2", seq=2, ts=201.0))
    store.put(cp(agent="other", run="r3", seq=1, ts=50.0))
    rows = store.list(agent_name="a")
    assert [(r.run_id, r.sequence) for r in rows] == [("r1", 1), ("r1", 2), ("r2", 1), ("r2", 2)]
    assert [(r.run_id, r.sequence) for r in store.list(run_id="r2")] == [("r2", 1), ("r2", 2)]
    assert [r.run_id for r in store.list()] == ["r3", "r1", "r1", "r2", "r2"]
    assert store.list(agent_name="nobody") == []


def test_runs_that_start_at_the_same_time_keep_arrival_order(store: Any) -> None:
    for run in ("rb", "ra", "rc"):
        store.put(cp(run=run, ts=5.0))
    assert [r.run_id for r in store.list("a")] == ["rb", "ra", "rc"]


def test_list_rows_describe_the_checkpoint(store: Any) -> None:
    c = cp(seq=3, trigger="failure", agent_status=AgentStatus.FAILED, error="boom", parent_id="p0")
    store.put(c)
    (row,) = store.list()
    assert isinstance(row, CheckpointInfo)
    assert row == CheckpointInfo(
        checkpoint_id=c.checkpoint_id, parent_id="p0", agent_name="a", run_id="r1", sequence=3,
        timestamp=100.0, trigger="failure", agent_status="failed", completed_count=3, pending=("s3",),
        size_bytes=len(c.model_dump_json().encode()), error="boom",
    )


def test_putting_the_same_checkpoint_twice_stores_it_once(store: Any) -> None:
    c = cp()
    store.put(c)
    store.put(c)
    assert len(store.list()) == 1


def test_latest_is_the_last_checkpoint_of_the_latest_run(store: Any) -> None:
    assert store.latest("a") is None
    store.put(cp(run="r1", seq=1, ts=100.0))
    last_r1 = cp(run="r1", seq=9, ts=300.0)  # r1 goes on after r2 started: r2 is still the latest run
    store.put(last_r1)
    r2 = [cp(run="r2", seq=s, ts=200.0 + s) for s in (2, 1)]
    for c in r2:
        store.put(c)
    store.put(cp(agent="b", run="rb", ts=999.0))
    assert store.latest("a").checkpoint_id == r2[0].checkpoint_id
    assert store.latest("a", run_id="r1").checkpoint_id == last_r1.checkpoint_id
    assert store.latest("a", run_id="nope") is None


def test_runs_summarise_each_run(store: Any) -> None:
    store.put(cp(run="r1", seq=1, ts=100.0))
    store.put(cp(run="r1", seq=2, ts=110.0, agent_status=AgentStatus.COMPLETED, trigger="completion"))
    store.put(cp(run="r2", seq=1, ts=200.0))
    store.put(cp(agent="b", run="rb", seq=1, ts=50.0))
    assert store.runs("a") == [
        RunInfo("r1", "a", 100.0, 110.0, 2, "completed"),
        RunInfo("r2", "a", 200.0, 200.0, 1, "running"),
    ]
    assert [r.run_id for r in store.runs()] == ["rb", "r1", "r2"]


async def test_async_twins_match_the_sync_methods(store: Any) -> None:
    c1, c2 = cp(seq=1), cp(seq=2, ts=101.0)
    await store.aput(c1)
    await store.aput(c2)
    assert (await store.aget(c1.checkpoint_id)).to_dict() == c1.to_dict()
    assert await store.alist("a") == store.list("a")
    assert (await store.alatest("a")).checkpoint_id == c2.checkpoint_id
    with pytest.raises(CheckpointError, match="missing"):
        await store.aget("missing")


def test_newer_format_raises_checkpoint_error_and_other_entries_still_load(store: Any) -> None:
    old, newer = cp(seq=1), cp(seq=2)
    store.put(old)
    store.put(newer)
    data = newer.to_dict()
    data["format_version"] = 99
    store._corrupt(store, newer.checkpoint_id, json.dumps(data))
    with pytest.raises(CheckpointError, match=rf"(?s){newer.checkpoint_id}.*newer"):
        store.get(newer.checkpoint_id)
    assert store.get(old.checkpoint_id).to_dict() == old.to_dict()
    assert len(store.list()) == 2


@pytest.mark.parametrize("text", ['{"agent_name": "a", "run_id"', "not json", '{"agent_name": 5}', "[]"])
def test_damaged_entry_raises_checkpoint_error_naming_the_id(store: Any, text: str) -> None:
    c = cp()
    store.put(c)
    store._corrupt(store, c.checkpoint_id, text)
    with pytest.raises(CheckpointError, match=c.checkpoint_id):
        store.get(c.checkpoint_id)
    with pytest.raises(CheckpointError):
        store.latest("a")


def test_put_rejects_what_is_not_a_checkpoint(store: Any) -> None:
    with pytest.raises(CheckpointError, match="pass a Checkpoint"):
        store.put({"agent_name": "a"})


def _damaged(c: Checkpoint, how: str) -> str:
    """The stored JSON of ``c``, damaged the way ``how`` says."""
    data = c.to_dict()
    if how == "pending is not a list of names":
        data["pending"] = [5, {"x": 1}]
    elif how == "join count of 10**9":
        data["scheduler"] = {"joins": {"s1": 10**9}}
    elif how == "nested 100,000 deep":
        return json.dumps(data)[:-1] + ', "metadata": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    elif how == "NaN timestamp":
        return json.dumps(data).replace('"timestamp": 102.0', '"timestamp": NaN')
    elif how == "truncated":
        return json.dumps(data)[:40]
    elif how == "data of another checkpoint":
        data["checkpoint_id"] = "someone-else"
    elif how == "typed data without a type":
        data["typed_data"] = {"profile": {"data": {}}}
    return json.dumps(data)


@pytest.mark.parametrize("how", ["pending is not a list of names", "join count of 10**9", "nested 100,000 deep",
                                 "NaN timestamp", "truncated", "data of another checkpoint",
                                 "typed data without a type"])
def test_one_bad_row_leaves_the_good_rows_listed_loadable_and_latest(store: Any, how: str) -> None:
    good = [cp(seq=1, ts=100.0), cp(seq=2, ts=101.0)]
    bad = cp(seq=3, ts=102.0)
    other_run = cp(run="r0", seq=1, ts=50.0)
    for c in (other_run, *good, bad):
        store.put(c)
    store._corrupt(store, bad.checkpoint_id, _damaged(bad, how))

    # the listing of the bad row is intact, so it is listed; its data is what is damaged
    assert [r.checkpoint_id for r in store.list("a")][:3] == [other_run.checkpoint_id] + [c.checkpoint_id for c in good]
    with pytest.raises(CheckpointError, match=bad.checkpoint_id):
        store.get(bad.checkpoint_id)
    assert store.get(good[0].checkpoint_id).to_dict() == good[0].to_dict()
    with pytest.warns(FluffyWarning, match=rf"(?s)latest skipped 1 damaged.*{bad.checkpoint_id}"):
        latest = store.latest("a")
    assert latest.checkpoint_id == good[1].checkpoint_id
    assert [(r.run_id, r.checkpoints) for r in store.runs("a")] == [("r0", 1), ("r1", 3)]


async def test_async_latest_skips_a_bad_newest_row_too(store: Any) -> None:
    good, bad = cp(seq=1), cp(seq=2, ts=101.0)
    await store.aput(good)
    await store.aput(bad)
    store._corrupt(store, bad.checkpoint_id, "{")
    with pytest.warns(FluffyWarning, match=bad.checkpoint_id):
        latest = await store.alatest("a")
    assert latest.checkpoint_id == good.checkpoint_id


def test_when_no_row_loads_latest_raises_naming_them(store: Any) -> None:
    rows = [cp(seq=1), cp(seq=2, ts=101.0)]
    for c in rows:
        store.put(c)
        store._corrupt(store, c.checkpoint_id, "[]")
    with pytest.raises(CheckpointError, match=rf"(?s)no checkpoint.*loads.*{rows[1].checkpoint_id}"):
        store.latest("a")
