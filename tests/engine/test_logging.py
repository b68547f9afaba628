"""The engine's event log: silent by default, structured extras, attached only when wanted."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import fluffy_nb
from fluffy_nb import Agent, StateFailedError
from fluffy_nb.engine import _logging


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def fluffy_log() -> Iterator[_Records]:
    logger = logging.getLogger("fluffy_nb")
    handler = _Records()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate
    fluffy_nb.disable_logging()


def _agent(name: str = "logged") -> Agent:
    agent = Agent(name)
    tries = {"n": 0}

    async def first(ctx: Any) -> str:
        return "flaky"

    async def flaky(ctx: Any) -> None:
        tries["n"] += 1
        if tries["n"] == 1:
            raise ConnectionError("once")
        return None

    agent.add_state("first", first)
    agent.add_state("flaky", flaky, max_retries=1)
    return agent


def test_the_fluffy_nb_logger_has_a_null_handler() -> None:
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("fluffy_nb").handlers)


async def test_nothing_subscribes_while_the_logger_is_not_enabled_for_info(fluffy_log: _Records) -> None:
    logging.getLogger("fluffy_nb").setLevel(logging.WARNING)
    agent = _agent()
    await agent.run()
    assert fluffy_log.records == []
    assert _logging._instrumentation.subscriber(agent) is None
    assert not agent.events.active


async def test_records_carry_agent_run_state_and_attempt_extras(fluffy_log: _Records) -> None:
    logging.getLogger("fluffy_nb").setLevel(logging.DEBUG)  # enabling the logger is enough
    agent = _agent()
    await agent.run()
    by_event = [(r.event, r.state, r.attempt) for r in fluffy_log.records]  # type: ignore[attr-defined]
    assert by_event[0] == ("RunStarted", None, None)
    assert ("StateStarted", "flaky", 1) in by_event
    assert ("StateFailed", "flaky", 1) in by_event
    assert ("StateRetrying", "flaky", 2) in by_event
    assert ("StateFinished", "flaky", 2) in by_event
    assert by_event[-1] == ("RunFinished", None, None)
    assert {r.agent for r in fluffy_log.records} == {"logged"}  # type: ignore[attr-defined]
    assert {r.run for r in fluffy_log.records} == {agent.run_id}  # type: ignore[attr-defined]
    failed = next(r for r in fluffy_log.records if r.event == "StateFailed")  # type: ignore[attr-defined]
    assert failed.levelno == logging.WARNING
    assert "ConnectionError: once" in failed.getMessage()
    # switched off again: the next run detaches the automatic event log
    logging.getLogger("fluffy_nb").setLevel(logging.WARNING)
    await agent.run()
    assert not agent.events.active


async def test_enable_logging_attaches_explicitly_and_a_final_failure_logs_its_exception(
    fluffy_log: _Records,
) -> None:
    agent = Agent("broken")

    async def boom(ctx: Any) -> None:
        raise ValueError("no")

    agent.add_state("boom", boom)
    fluffy_nb.enable_logging(level=logging.ERROR)
    with pytest.raises(StateFailedError):
        await agent.run()
    levels = [(r.event, r.levelname) for r in fluffy_log.records]  # type: ignore[attr-defined]
    assert levels == [("StateFailed", "ERROR"), ("RunFinished", "ERROR")]
    failed = fluffy_log.records[0]
    assert failed.exc_info is not None
    assert failed.exc_info[0] is ValueError
    fluffy_nb.disable_logging()
    assert not agent.events.active
