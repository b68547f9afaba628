"""Rich displays of engine objects (``_display``): what a RunHandle's text tells a person to type."""

from __future__ import annotations

import asyncio

import pytest
from IPython.core.interactiveshell import InteractiveShell

import fluffy_nb.notebook  # noqa: F401 - registers the displays
from fluffy_nb import Agent


@pytest.fixture
def user_ns():
    ns = InteractiveShell.instance().user_ns
    before = dict(ns)
    yield ns
    ns.clear()
    ns.update(before)


def waiting_agent(name: str, gate: asyncio.Event) -> Agent:
    agent = Agent(name)

    async def wait(ctx):
        await gate.wait()

    agent.add_state("wait", wait)
    return agent


async def run_and_read_hint(agent: Agent, gate: asyncio.Event) -> str:
    from fluffy_nb.engine._handle import RunHandle

    handle = RunHandle(agent, asyncio.get_running_loop().create_task(agent.run()))
    agent._handle = handle
    try:
        return handle._repr_mimebundle_()["text/plain"]
    finally:
        gate.set()
        await handle


async def test_handle_hint_names_the_variable_holding_the_agent_not_its_name(user_ns):
    gate = asyncio.Event()
    survivor = waiting_agent("article", gate)
    user_ns["survivor"] = survivor
    text = await run_and_read_hint(survivor, gate)
    assert "`await survivor.handle`" in text
    assert "article.handle" not in text  # no variable `article` exists


async def test_handle_hint_claims_no_variable_when_none_holds_the_agent(user_ns):
    gate = asyncio.Event()
    text = await run_and_read_hint(waiting_agent("article", gate), gate)
    assert "article.handle" not in text
    assert "`await <agent>.handle`" in text
    assert "agent 'article'" in text
