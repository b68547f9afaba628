"""Restoring and resuming untrusted checkpoints: the agent side of issue 18.

The loaders (``Checkpoint``, the stores) already refuse malformed data with ``CheckpointError``
(``test_checkpoint_hostile.py``, ``tests/store``). What reaches the agent is well-formed but may
still not fit the agent: names it does not have, counts its graph could never produce. These
tests say what restore and resume must do with such input: refuse it with ``CheckpointError``
(``_travel.check_fits``), leave the agent idle and nothing running.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _checkpoint_mutations as mut
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluffy_nb import Agent
from fluffy_nb.engine import AgentStatus, Checkpoint, CheckpointError, FluffyError, FluffyWarning, StateFailedError
from fluffy_nb.store import MemoryStore, SQLiteStore


def fan_in(name: str = "g", store: Any = None, fail: set[str] | None = None) -> Agent:
    """start -> [a, b] -> join: the smallest graph with a fan-out and a join."""
    agent = Agent(name, store=store, durable=store is not None)
    failing = fail if fail is not None else set()

    async def start(ctx: Any) -> list[str]:
        return ["a", "b"]

    async def a(ctx: Any) -> str:
        if "a" in failing:
            raise RuntimeError("a broke")
        return "join"

    async def b(ctx: Any) -> str:
        return "join"

    async def join(ctx: Any) -> None:
        ctx.set_state("joined", True)

    for fn in (start, a, b, join):
        agent.add_state(fn.__name__, fn)
    return agent


def checkpoint(**fields: Any) -> dict[str, Any]:
    """A well-formed checkpoint of ``fan_in`` in the middle of its run, with ``fields`` replaced."""
    data = fan_in().create_checkpoint().to_dict()
    data.update(run_id="r", agent_status="running", completed_states=["start"], state_status={"start": "completed"},
                pending=["a", "b"])
    data.update(fields)
    return data


def leftover_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    s = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "runs.db")
    yield s
    s.close()


def damage(store: Any, checkpoint_id: str, text: str) -> None:
    """Overwrite one stored checkpoint's JSON, as a damaged disk or an editor would."""
    if isinstance(store, MemoryStore):
        entry = store._entries[checkpoint_id]
        entry.json()
        entry.text = text
        return
    store.flush()
    con = sqlite3.connect(store.path)
    with con:
        con.execute("UPDATE checkpoints SET data = ? WHERE checkpoint_id = ?", (text, checkpoint_id))
    con.close()


# -- what already holds ------------------------------------------------------------------------
@pytest.mark.parametrize("fields", [
    {"pending": ["ghost"]},
    {"completed_states": ["ghost"]},
    {"state_status": {"ghost": "completed"}},
    {"typed_data": {"p": {"type": "not.registered.Type", "data": {}}}},
    {"scheduler": {"joins": {"join": 10**9}}},
    {"metadata": {"deep": json.loads("[" * 60 + "]" * 60)}, "shared_state": {"x": float("nan")}},
])
async def test_a_checkpoint_that_does_not_fit_is_refused_and_the_agent_stays_idle(fields: dict[str, Any]) -> None:
    agent = fan_in()
    before = leftover_tasks()
    started = time.perf_counter()
    with pytest.raises(CheckpointError):
        agent.restore(checkpoint(**fields))
    assert time.perf_counter() - started < 5.0  # refused before deep work (what it would take: many seconds)
    assert agent.status is AgentStatus.IDLE
    assert agent.get_state("joined") is None
    assert leftover_tasks() == before
    result = await agent.run()  # and it still runs normally afterwards
    assert result.status is AgentStatus.COMPLETED


async def test_resume_latest_skips_a_damaged_newest_row_and_finishes(store: Any) -> None:
    first = fan_in(store=store, fail={"a"})
    with pytest.raises(StateFailedError):
        await first.run()
    newest = store.list("g")[-1]
    damage(store, newest.checkpoint_id, '{"agent_name": "g", "pending": [5]}')
    again = fan_in()
    with pytest.warns(FluffyWarning, match=newest.checkpoint_id):
        result = await again.resume_latest(store)
    assert result.status is AgentStatus.COMPLETED
    assert result["joined"] is True
    assert leftover_tasks() == set()


async def test_resume_latest_with_every_row_damaged_raises_and_leaves_the_agent_idle(store: Any) -> None:
    first = fan_in(store=store)
    await first.run()
    for info in store.list("g"):
        damage(store, info.checkpoint_id, "[" * 100_000)
    again = fan_in()
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="no checkpoint of the run loads"):
        await again.resume_latest(store)
    assert time.perf_counter() - started < 5.0  # refused before deep work (what it would take: many seconds)
    assert again.status is AgentStatus.IDLE
    assert leftover_tasks() == set()


async def test_restoring_a_join_count_of_ten_million_is_refused_at_once(store: Any) -> None:
    good = Checkpoint.from_dict(checkpoint())
    store.put(good)
    damage(store, good.checkpoint_id, json.dumps(checkpoint(checkpoint_id=good.checkpoint_id,
                                                            scheduler={"joins": {"join": 10**7}})))
    agent = fan_in(store=store)
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="waiting branches"):
        agent.restore(good.checkpoint_id)
    assert time.perf_counter() - started < 5.0  # refused before deep work (what it would take: many seconds)
    assert agent.status is AgentStatus.IDLE


# -- what the engine-side restore still needs ----------------------------------------------------
@pytest.mark.parametrize("fields", [
    {"completion_counts": {"ghost": 3}},
    {"state_attempts": {"ghost": 1}},
    {"scheduler": {"joins": {"ghost": 1}}},
    {"human_answers": [{"request_id": "q1", "state": "ghost", "value": "yes"}]},
], ids=["completion_counts", "state_attempts", "join_target", "human_answer"])
def test_every_state_name_in_a_checkpoint_is_checked_against_the_graph(fields: dict[str, Any]) -> None:
    # today only pending, completed_states and state_status are checked; the rest are kept or dropped silently
    agent = fan_in()
    with pytest.raises(CheckpointError, match="ghost"):
        agent.restore(checkpoint(**fields))
    assert agent.status is AgentStatus.IDLE


def test_a_join_count_is_bounded_by_the_branches_the_graph_can_have() -> None:
    # 50,000 waiters pass the loader's absolute bound (100,000) but 'join' has two incoming branches;
    # today restore accepts it and the relaunch builds 50,000 tokens
    agent = fan_in()
    with pytest.raises(CheckpointError, match="join"):
        agent.restore(checkpoint(scheduler={"joins": {"join": 50_000}}, pending=["a"]))
    assert agent.status is AgentStatus.IDLE


def test_steps_beyond_max_steps_are_refused_at_restore_not_when_the_run_starts() -> None:
    # today restore accepts it and run() fails at once with MaxStepsExceededError
    agent = fan_in()
    with pytest.raises(CheckpointError, match="max_steps"):
        agent.restore(checkpoint(steps=2**52, scheduler={"joins": {}, "steps": 2**52}))
    assert agent.status is AgentStatus.IDLE


async def test_resume_latest_of_a_failed_run_walks_back_past_a_damaged_row(store: Any) -> None:
    # resume_latest walks the run's rows back (alist + aget) to the last one with states in flight;
    # today the first damaged row on that walk raises instead of being skipped like latest() skips it
    first = fan_in(store=store, fail={"a"})
    with pytest.raises(StateFailedError):
        await first.run()
    rows = store.list("g")
    assert rows[-1].trigger == "failure"
    in_flight = [r for r in rows if r.pending and r.agent_status == "running"]
    damage(store, in_flight[-1].checkpoint_id, "{")
    again = fan_in()
    with pytest.warns(FluffyWarning):
        result = await again.resume_latest(store)
    assert result.status is AgentStatus.COMPLETED


# -- property-based: restore and run whatever the loaders accept ----------------------------------
_SEEDS: list[dict[str, Any]] = []


def restorable_seeds() -> list[dict[str, Any]]:
    """Real checkpoints of the graph ``mut.seed_agent`` has (the fuzz mutators' seed run)."""
    if not _SEEDS:
        _SEEDS.extend(mut.seed_checkpoints())
    return _SEEDS


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.randoms(use_true_random=False))
def test_any_mutated_checkpoint_restores_and_runs_or_is_refused_leaving_nothing_running(rng: random.Random) -> None:
    text = mut.mutated_checkpoint(restorable_seeds(), rng)  # the seed run needs its own loop: outside ours

    async def restore_and_run() -> None:
        agent = mut.seed_agent()
        before = leftover_tasks()
        started = time.perf_counter()
        try:
            agent.restore(Checkpoint.from_json(text))
        except CheckpointError:
            assert agent.status is AgentStatus.IDLE
        else:
            try:
                await asyncio.wait_for(agent.run(), 1.0)
            except FluffyError:
                pass
        assert time.perf_counter() - started < 5.0  # refused before deep work (what it would take: many seconds)
        assert agent.status is not AgentStatus.RUNNING
        assert leftover_tasks() == before

    asyncio.run(restore_and_run())
