"""Background runs (``Agent.start`` / ``RunHandle``) and the blocking ``run_sync``."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import textwrap

import pytest

from fluffy_nb import Agent, AgentRunningError, RunResult, StateFailedError
from fluffy_nb.engine import _hooks
from fluffy_nb.engine._handle import RunHandle


def gated_agent(gate: asyncio.Event) -> Agent:
    agent = Agent("bg")

    async def wait(ctx):
        await gate.wait()
        ctx.set_state("done", True)

    agent.add_state("wait", wait)
    return agent


def failing_agent() -> Agent:
    agent = Agent("broken")

    async def boom(ctx):
        raise ValueError("boom")

    agent.add_state("boom", boom)
    return agent


async def test_start_returns_at_once_and_await_gives_the_result():
    gate = asyncio.Event()
    agent = gated_agent(gate)
    handle = agent.start()
    assert isinstance(handle, RunHandle)
    assert agent.handle is handle
    assert not handle.done()
    await asyncio.sleep(0)
    assert handle.status == "running"
    with pytest.raises(AgentRunningError, match="still running"):
        handle.result()
    gate.set()
    result = await handle
    assert isinstance(result, RunResult)
    assert result["done"] is True
    assert handle.result() is result
    assert handle.status == "completed"
    assert "'bg'" in repr(handle)
    assert "completed" in repr(handle)


async def test_starting_a_running_agent_again_starts_a_second_run():
    gate = asyncio.Event()
    agent = gated_agent(gate)
    first = agent.start()
    second = agent.start()
    assert first.run_id != second.run_id
    assert agent.handle is second
    gate.set()
    results = [await first, await second]
    assert [r.run_id for r in results] == [first.run_id, second.run_id]


def test_start_without_a_loop_says_what_to_use_instead():
    with pytest.raises(AgentRunningError, match="run_sync"):
        Agent("noloop").start()


async def test_failing_background_run_is_reported_through_the_hook(monkeypatch):
    reported = []
    monkeypatch.setattr(_hooks, "background_error", lambda handle, exc: reported.append((handle, exc)))
    handle = failing_agent().start()
    with pytest.raises(StateFailedError):
        await handle
    assert len(reported) == 1
    assert reported[0][0] is handle
    assert isinstance(reported[0][1], StateFailedError)
    assert handle.status == "failed"
    assert "boom" in repr(handle)
    assert isinstance(handle.exception(), StateFailedError)


async def test_unawaited_failing_run_is_logged_never_left_unretrieved(monkeypatch, caplog):
    monkeypatch.setattr(_hooks, "background_error", None)
    loop = asyncio.get_running_loop()
    unretrieved = []
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    finished = asyncio.Event()
    handle = failing_agent().start()
    handle.add_done_callback(lambda h: finished.set())
    with caplog.at_level(logging.ERROR, logger="fluffy_nb"):
        await finished.wait()
    assert any("background run of agent 'broken' failed" in r.getMessage() for r in caplog.records)
    del handle
    gc.collect()
    assert unretrieved == []


async def test_done_callback_gets_the_handle():
    gate = asyncio.Event()
    gate.set()
    seen = asyncio.Future()
    handle = gated_agent(gate).start()
    handle.add_done_callback(seen.set_result)
    assert await seen is handle


async def test_cancel_stops_the_run():
    gate = asyncio.Event()
    agent = gated_agent(gate)
    handle = agent.start()
    await asyncio.sleep(0)
    assert handle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handle
    assert handle.status == "cancelled"
    assert agent.status.value == "cancelled"


def test_run_sync_without_a_loop_runs_to_the_end():
    gate_free = Agent("sync")

    async def step(ctx):
        ctx.set_state("x", 1)

    gate_free.add_state("step", step)
    assert gate_free.run_sync()["x"] == 1


def run_in_subprocess(code: str) -> str:
    """run_sync inside a running loop applies nest-asyncio, which patches asyncio for good: isolate it."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_run_sync_inside_a_running_loop_runs_a_workflow_without_people():
    out = run_in_subprocess("""
        import asyncio
        from fluffy_nb import Agent
        agent = Agent("nested")
        async def step(ctx):
            await asyncio.sleep(0)
            ctx.set_state("x", 41 + 1)
        agent.add_state("step", step)
        async def cell():
            return agent.run_sync()["x"]
        print(asyncio.run(cell()))
    """)
    assert out.strip() == "42"


def test_run_sync_inside_a_running_loop_refuses_to_wait_for_a_person():
    out = run_in_subprocess("""
        import asyncio
        from fluffy_nb import Agent, BlockingRunError
        agent = Agent("nested")
        async def ask(ctx):
            await ctx.human_in_the_loop("Approve?")
        agent.add_state("ask", ask)
        async def cell():
            try:
                agent.run_sync()
            except BlockingRunError as exc:
                print("refused:", exc)
        asyncio.run(cell())
    """)
    assert out.startswith("refused:")
    assert "Approve?" in out
    assert "agent.start()" in out
    assert "%%fluffy" in out
