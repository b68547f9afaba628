"""Checkpoint history and per-state metrics as DataFrames; restore, fork and diff by row."""

from __future__ import annotations

import pandas as pd
import pytest

import fluffy_nb.notebook  # noqa: F401 - display renderers
from fluffy_nb import Agent, AgentStatus, CheckpointError, MemoryStore, StateFailedError
from fluffy_nb.notebook import diff_rows, fork_row, history_frame, restore_row, state_metrics_frame


def orders(store: MemoryStore) -> Agent:
    agent = Agent("orders", store=store, durable=True)

    async def load(ctx):
        ctx.set_state("rows", 120)
        return "validate"

    async def validate(ctx):
        if ctx.attempt < 2:
            raise ConnectionError("database busy")
        ctx.set_state("valid", 118)
        return "publish"

    async def publish(ctx):
        if not ctx.get_state("publisher_up"):
            raise RuntimeError("publisher rejected the batch")
        ctx.set_state("published", True)

    agent.add_state("load", load)
    agent.add_state("validate", validate, max_retries=2)
    agent.add_state("publish", publish)
    return agent


async def failed_run() -> tuple[Agent, MemoryStore]:
    store = MemoryStore()
    agent = orders(store)
    with pytest.raises(StateFailedError, match="publisher rejected"):
        await agent.run()
    return agent, store


async def test_history_frame_has_one_typed_row_per_checkpoint():
    agent, _ = await failed_run()
    frame = agent.history().to_pandas()  # the notebook layer builds the DataFrame
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["trigger"]) == ["state", "state", "failure"]
    assert list(frame["status"]) == ["running", "running", "failed"]
    assert list(frame["completed"]) == [1, 2, 2]
    assert list(frame["keys_changed"]) == [["rows"], ["valid"], []]
    assert str(frame["timestamp"].dtype) == "datetime64[ms, UTC]"  # readable: no nanoseconds
    assert isinstance(frame["status"].dtype, pd.CategoricalDtype)
    assert isinstance(frame["trigger"].dtype, pd.CategoricalDtype)
    assert frame["size_bytes"].dtype == "int64"
    assert (frame["size_bytes"] > 0).all()
    assert "publisher rejected the batch" in frame["error"].iloc[-1]
    assert frame["sequence"].tolist() == [1, 2, 3]


async def test_history_frame_leads_with_what_a_person_reads_and_names_the_states():
    agent, _ = await failed_run()
    frame = history_frame(agent)
    assert list(frame.columns[:6]) == ["sequence", "seconds", "timestamp", "trigger", "states", "status"]
    assert list(frame.columns[-3:]) == ["checkpoint_id", "parent_id", "run_id"]  # the long ids last
    assert list(frame["states"]) == [["load"], ["validate"], ["publish"]]  # the failure names its state
    assert frame["seconds"].iloc[0] == 0.0
    assert frame["seconds"].is_monotonic_increasing
    shown = agent.history()._repr_mimebundle_()["text/html"]  # how the history shows in a notebook
    assert shown.index("<th>sequence</th>") < shown.index("<th>states</th>") < shown.index("<th>checkpoint_id</th>")
    assert frame["checkpoint_id"].iloc[0] not in shown  # ids shortened in the display


async def test_restore_row_then_run_continues_from_that_checkpoint():
    agent, _ = await failed_run()
    frame = history_frame(agent)
    cp = restore_row(agent, frame, 1)  # after validate: rows and valid are there
    assert cp.completed_states == ["load", "validate"]
    agent.set_state("publisher_up", True)
    result = await agent.run()
    assert result.status is AgentStatus.COMPLETED
    assert result["published"] is True
    assert agent.state_metadata["load"].runs == 0  # not run again


async def test_fork_row_starts_a_new_run_and_keeps_the_old_history():
    agent, _ = await failed_run()
    frame = history_frame(agent)
    old_run = frame["run_id"].iloc[0]
    fork_row(agent, frame, 0)
    assert agent.run_id != old_run
    assert len(history_frame(agent, run_id=old_run)) == 3


async def test_diff_rows_lists_data_status_and_completion_changes():
    agent, _ = await failed_run()
    frame = history_frame(agent)
    diff = diff_rows(frame, 0, 1)
    changes = {(c, k) for c, k in zip(diff["change"], diff["key"], strict=True)}
    assert ("added", "valid") in changes
    assert ("completed", "validate") in changes
    assert diff.loc[diff["key"] == "valid", "after"].item() == 118


async def test_history_of_a_store_and_of_checkpoint_lists():
    agent, store = await failed_run()
    assert len(history_frame(store)) == 3
    cps = [store.get(cid) for cid in history_frame(store)["checkpoint_id"]]
    frame = history_frame(cps)
    assert list(frame["trigger"]) == ["state", "state", "failure"]
    with pytest.raises(CheckpointError, match="row 7"):
        restore_row(agent, frame, 7)


async def test_state_metrics_frame_counts_runs_retries_failures_and_percentiles():
    agent, _ = await failed_run()
    metrics = state_metrics_frame(agent)
    assert metrics.loc["validate", "retries"] == 1
    assert metrics.loc["validate", "attempts"] == 2
    assert metrics.loc["publish", "failures"] == 1
    assert metrics.loc["publish", "status"] == "failed"
    assert pd.isna(metrics.loc["publish", "p50"])
    assert metrics.loc["load", "p50"] <= metrics.loc["load", "p99"]
    assert metrics["runs"].dtype == "int64"
