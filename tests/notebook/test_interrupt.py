"""One readable line for an interrupted fluffy wait, through a real IPython shell."""

from __future__ import annotations

import asyncio

import pytest
from _wait import until
from IPython.core.interactiveshell import InteractiveShell

from fluffy_nb import Agent, ProgrammaticResponder
from fluffy_nb.notebook import _interrupt
from fluffy_nb.notebook._magics import BlockingRun


def asking(name: str) -> Agent:
    agent = Agent(name, responder=ProgrammaticResponder())

    async def review(ctx):
        await ctx.human_in_the_loop("Approve?")

    agent.add_state("review", review)
    return agent


async def interrupted(awaitable, agent: Agent) -> BaseException:
    """Await ``awaitable`` like a cell and cancel that cell once ``agent`` asks (as Stop does)."""
    async def cell():
        return await awaitable

    task = asyncio.ensure_future(cell())
    await until(agent.pending_requests, "the question is asked")
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as info:
        await task
    return info.value


async def test_a_cancelled_run_says_it_was_interrupted_and_whether_a_checkpoint_was_kept():
    agent = asking("orders")
    exc = await interrupted(agent.run(), agent)
    assert _interrupt.interrupt_message(exc.__traceback__) == (
        "run 'orders' interrupted; it had no checkpoint store, so a new run starts from the beginning")


async def test_stopping_the_wait_for_a_background_run_leaves_the_run_going():
    agent = asking("bg")
    handle = agent.start()
    exc = await interrupted(handle, agent)
    assert _interrupt.interrupt_message(exc.__traceback__) == (
        "stopped waiting for run 'bg'; the run goes on in the background (`bg.handle.cancel()` cancels it)")
    assert not handle.done()
    assert agent.pending_requests()
    handle.cancel()


async def test_a_blocking_run_cell_cancels_the_run():
    agent = asking("blocking")
    handle = agent.start()
    exc = await interrupted(BlockingRun(handle), agent)
    assert _interrupt.interrupt_message(exc.__traceback__).startswith("run 'blocking' interrupted")
    assert handle.done()


def test_other_interruptions_keep_ipythons_traceback():
    assert _interrupt.interrupt_message(None) is None
    shell = InteractiveShell.instance()
    _interrupt.install(shell)
    try:
        result = shell.run_cell("raise KeyboardInterrupt")
        assert isinstance(result.error_in_exec, KeyboardInterrupt)
    finally:
        _interrupt.uninstall(shell)
    assert shell.custom_exceptions == ()


def test_a_handler_someone_else_set_is_left_alone():
    shell = InteractiveShell.instance()
    mine = (ValueError,)
    shell.set_custom_exc(mine, lambda *a, **k: ["theirs"])
    try:
        _interrupt.install(shell)
        assert shell.custom_exceptions == mine
        _interrupt.uninstall(shell)
        assert shell.custom_exceptions == mine
    finally:
        shell.set_custom_exc((), None)
