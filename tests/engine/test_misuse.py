"""Every misuse gets a typed FluffyError at the call that made it, naming the culprit and the fix.

One table: each case does one wrong thing the way a user would and must raise the named
error (message included) within a second. Nothing may hang: each case runs under a timeout.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from _wait import until

from fluffy_nb import (
    Agent,
    AgentRunningError,
    CheckpointError,
    ConfigurationError,
    Context,
    DependencyConfig,
    DependencyType,
    HumanInputError,
    MemoryStore,
    ProgrammaticResponder,
    RetryPolicy,
    StateFailedError,
    StateNotFoundError,
)


async def noop(ctx: Any) -> None:
    return None


class Halt(BaseException):
    """A BaseException subclass, like KeyboardInterrupt or gevent's GreenletExit."""


async def base_exception_in_a_state() -> None:
    async def boom(ctx: Any) -> None:
        raise Halt("stop")

    agent = Agent("m")
    agent.add_state("boom", boom)
    await agent.run()


async def path_instead_of_a_store() -> None:
    Agent("m", store="runs.db", durable=True)


async def store_whose_put_raises() -> None:
    class Broken(MemoryStore):
        def put(self, checkpoint: Any) -> None:
            raise OSError("disk full")

    agent = Agent("m", store=Broken(), durable=True)
    agent.add_state("a", noop)
    await agent.run()


async def condition_that_raises_once_its_dependency_ran() -> None:
    agent = Agent("m")
    agent.add_state("first", noop)
    cfg = DependencyConfig(DependencyType.REQUIRED, condition=lambda _agent: 1 / 0)
    agent.add_state("second", noop, dependencies={"first": cfg})
    await agent.run()


async def unknown_add_state_keyword() -> None:
    Agent("m").add_state("a", noop, retries=3)


async def next_naming_no_state() -> None:
    agent = Agent("m")
    agent.add_state("a", noop, next=["ghost"])
    await agent.run()


async def durable_without_a_store() -> None:
    Agent("m", durable=True)


async def nan_state_timeout() -> None:
    Agent("m").add_state("a", noop, timeout=float("nan"))


async def nan_run_timeout() -> None:
    agent = Agent("m")
    agent.add_state("a", noop)
    await agent.run(timeout=float("nan"))


async def nan_retry_delay() -> None:
    RetryPolicy(initial_delay=float("nan"))


async def retry_on_names_not_classes() -> None:
    RetryPolicy(retry_on=("ValueError",))  # type: ignore[arg-type]


def asking(**kwargs: Any) -> Callable[[], Awaitable[None]]:
    async def case() -> None:
        async def ask(ctx: Any) -> None:
            await ctx.human_in_the_loop("ok?", **kwargs)

        agent = Agent("m", responder=ProgrammaticResponder())
        agent.add_state("ask", ask)
        await agent.run()

    return case


async def state_raising_cancelled_error_itself() -> None:
    async def quits(ctx: Any) -> None:
        raise asyncio.CancelledError

    agent = Agent("m")
    agent.add_state("quits", quits)
    await agent.run()


async def overwriting_the_contexts_own_attribute() -> None:
    async def bump(ctx: Any) -> None:
        ctx.attempt = 99

    agent = Agent("m")
    agent.add_state("bump", bump)
    await agent.run()


async def human_in_the_loop_outside_a_run() -> None:
    await Context().human_in_the_loop("anyone?")


async def start_state_that_does_not_exist() -> None:
    agent = Agent("m")
    agent.add_state("a", noop)
    await agent.run(start="nope")


async def cancel_a_state_that_does_not_exist() -> None:
    agent = Agent("m")
    agent.add_state("a", noop)
    agent.cancel_state("ghost")


async def pause_an_idle_agent() -> None:
    agent = Agent("m")
    agent.add_state("a", noop)
    await agent.pause()


async def state_function_taking_no_argument() -> None:
    async def no_context() -> None:
        return None

    Agent("m").add_state("a", no_context)


async def restore_a_foreign_checkpoint() -> None:
    other = Agent("other")
    other.add_state("x", noop)
    await other.run()
    agent = Agent("m")
    agent.add_state("a", noop)
    agent.restore(other.create_checkpoint())


async def answer_an_unknown_request() -> None:
    Agent("m").answer("nope-1", "yes")


CASES: list[tuple[str, Callable[[], Awaitable[None]], type[BaseException], str]] = [
    ("BaseException in a state", base_exception_in_a_state, StateFailedError, r"'boom'.*Halt"),
    ("path instead of a store", path_instead_of_a_store, ConfigurationError, r"SQLiteStore\('runs.db'\)"),
    ("store whose put raises", store_whose_put_raises, CheckpointError, "disk full"),
    ("raising dependency condition", condition_that_raises_once_its_dependency_ran, ConfigurationError,
     r"'second'.*'first'.*ZeroDivisionError"),
    ("unknown add_state keyword", unknown_add_state_keyword, ConfigurationError, "did you mean max_retries"),
    ("next= names no state", next_naming_no_state, StateNotFoundError, "'ghost'"),
    ("durable without a store", durable_without_a_store, ConfigurationError, "needs a store"),
    ("NaN state timeout", nan_state_timeout, ConfigurationError, r"add_state\(.a., timeout\)=nan"),
    ("NaN run timeout", nan_run_timeout, ConfigurationError, r"run\(timeout\)=nan"),
    ("NaN retry delay", nan_retry_delay, ConfigurationError, "initial_delay=nan"),
    ("retry_on as strings", retry_on_names_not_classes, ConfigurationError, "not an exception class"),
    ("HITL default not a choice", asking(choices=["yes", "no"], default="maybe"), StateFailedError,
     "must be one of the choices"),
    ("state raising CancelledError", state_raising_cancelled_error_itself, StateFailedError,
     "raised asyncio.CancelledError itself"),
    ("ctx.attempt = 99", overwriting_the_contexts_own_attribute, StateFailedError, "read-only"),
    ("HITL outside a run", human_in_the_loop_outside_a_run, HumanInputError, "belongs to no run"),
    ("run(start='nope')", start_state_that_does_not_exist, StateNotFoundError, "known: a"),
    ("cancel_state('ghost')", cancel_a_state_that_does_not_exist, StateNotFoundError, "known: a"),
    ("pause() while idle", pause_an_idle_agent, AgentRunningError, r"agent\.start\(\)"),
    ("state taking no argument", state_function_taking_no_argument, ConfigurationError, "takes no argument"),
    ("restore another agent's checkpoint", restore_a_foreign_checkpoint, CheckpointError, "add them"),
    ("answer an unknown request", answer_an_unknown_request, HumanInputError, "no open request"),
]


@pytest.mark.parametrize(("what", "case", "error", "message"), CASES, ids=[c[0] for c in CASES])
async def test_misuse_raises_a_typed_error_within_a_second(
    what: str, case: Callable[[], Awaitable[None]], error: type[BaseException], message: str
) -> None:
    with pytest.raises(error, match=message):
        async with asyncio.timeout(1):
            await case()


async def test_a_schema_default_that_does_not_fit_is_refused() -> None:
    from pydantic import BaseModel

    class Order(BaseModel):
        quantity: int

    with pytest.raises(StateFailedError) as info:
        async with asyncio.timeout(1):
            await asking(schema=Order, default={"quantity": "many"})()
    assert isinstance(info.value.__cause__, ConfigurationError)
    assert "does not fit Order" in str(info.value.__cause__)


async def test_answer_from_another_thread_reaches_the_waiting_state() -> None:
    asked = asyncio.Event()

    async def ask(ctx: Any) -> None:
        asked.set()
        ctx.set_state("answer", await ctx.human_in_the_loop("ok?"))

    agent = Agent("threads", responder=ProgrammaticResponder())
    agent.add_state("ask", ask)
    handle = agent.start()
    async with asyncio.timeout(5):
        await asked.wait()
    await until(agent.pending_requests, "the question is open")
    request = agent.pending_requests()[0]
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(agent.answer(request.request_id, "from a thread")))
    worker.start()
    async with asyncio.timeout(5):
        result = await handle
    worker.join(5)
    assert outcome == [True]
    assert result["answer"] == "from a thread"


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1, "0.1"])
def test_a_commit_interval_that_would_never_commit_is_refused(tmp_path: Any, value: Any) -> None:
    from fluffy_nb import SQLiteStore

    with pytest.raises(CheckpointError, match=r"commit_interval=.*seconds from 0 to 1"):
        SQLiteStore(tmp_path / "runs.db", commit_interval=value)


def test_a_read_only_store_file_is_called_read_only_not_damaged(tmp_path: Any) -> None:
    import os
    import subprocess

    from fluffy_nb import SQLiteStore

    path = tmp_path / "runs.db"
    SQLiteStore(path).close()
    path.chmod(0o444)
    tmp_path.chmod(0o555)
    immutable = os.geteuid() == 0  # root writes to read-only files: make them immutable instead
    if immutable and subprocess.run(["chattr", "+i", str(path), str(tmp_path)], capture_output=True).returncode:
        tmp_path.chmod(0o755)
        pytest.skip("running as root on a file system without chattr +i: nothing here is read-only for root")
    try:
        def write() -> None:
            store = SQLiteStore(path)
            store.put(Agent("m").create_checkpoint())
            store.flush()

        with pytest.raises(CheckpointError, match="read-only") as info:
            write()
        assert "damaged" not in str(info.value)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path), str(tmp_path)], check=True)
        tmp_path.chmod(0o755)
