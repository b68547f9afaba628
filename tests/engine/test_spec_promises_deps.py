"""What the spec promises about dependencies and restoring checkpoints, in its own words (issue 17).

Each test starts from a spec snippet (fluffy-agent-flow-guide.md / -features.md) and checks the
behaviour a user of that snippet relies on. Time is driven by a ManualClock and events, never slept.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _wait import until

from fluffy_nb import Agent, AgentStatus, Checkpoint, CheckpointError, Context, StateResult, StateStatus


# -- "Checkpointing & Recovery": restore into a new agent --------------------------------------------
def _workflow(gate: asyncio.Event, calls: list[str]) -> Agent:
    agent = Agent("my_workflow")

    async def fetch(context: Context) -> StateResult:
        calls.append("fetch")
        context.set_state("rows", [1, 2, 3])
        return "process"

    async def process(context: Context) -> StateResult:
        calls.append("process")
        await gate.wait()
        context.set_state("total", sum(context.get_state("rows")))
        return None

    agent.add_state("fetch", fetch)
    agent.add_state("process", process)
    return agent


async def test_the_spec_restore_snippet_restores_into_an_agent_with_no_states(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    gate, calls = asyncio.Event(), []
    agent = _workflow(gate, calls)
    handle = agent.start()
    await until(lambda: calls == ["fetch", "process"], "fetch done, process running")

    # -- the spec's snippet, verbatim ---------------------------------------------------------------
    # Create checkpoint
    checkpoint = agent.create_checkpoint()

    # Save checkpoint to file
    import json
    with open("workflow_state.json", "w") as f:  # noqa: ASYNC230 - the spec's own lines
        json.dump(checkpoint.to_dict(), f)

    # Create new agent and restore
    new_agent = Agent("restored_workflow")
    await new_agent.restore_from_checkpoint(checkpoint)
    # -- end of the snippet -------------------------------------------------------------------------

    gate.set()
    await handle
    # the data is there at once; the run waits (PAUSED) for its states to continue it
    assert new_agent.get_state("rows") == [1, 2, 3]
    assert new_agent.status is AgentStatus.PAUSED
    assert new_agent.create_checkpoint().completed_states == ["fetch"]
    # states come from code, never from the checkpoint: add them, then the run goes on where it stopped
    again = _workflow(gate, calls)
    for name, spec in again.states.items():
        new_agent.add_state(name, spec.func)
    result = await new_agent.run()
    assert result["total"] == 6
    assert calls == ["fetch", "process", "process"]  # fetch is not run again
    # and the file the snippet wrote restores the same way
    saved = Checkpoint.from_dict(json.loads(Path("workflow_state.json").read_text()))  # noqa: ASYNC240
    assert saved.completed_states == ["fetch"]


async def test_running_a_stateless_restore_before_adding_its_states_names_them() -> None:
    gate, calls = asyncio.Event(), []
    agent = _workflow(gate, calls)
    gate.set()
    await agent.run()
    new_agent = Agent("restored_workflow")
    await new_agent.restore_from_checkpoint(agent.create_checkpoint().to_dict())
    assert new_agent.get_state("total") == 6
    with pytest.raises(CheckpointError, match=r"names states \['fetch', 'process'\].*add them"):
        await new_agent.run()
    assert new_agent.prepared_run is not None  # still there: add the states and run again
    assert new_agent.prepared_run.metadata["process"].status is StateStatus.COMPLETED
