"""RetryPolicy (delays, jitter, retry_on) and how the runner applies it, with a ManualClock."""

from __future__ import annotations

import asyncio

import pytest

from fluffy_nb import Agent, ManualClock, RetryPolicy, StateFailedError, StateStatus
from fluffy_nb.engine._events import StateFailed, StateRetrying, StateStarted


def test_delays_grow_exponentially_and_stop_at_max_delay():
    policy = RetryPolicy(max_retries=6, initial_delay=1.0, max_delay=10.0, exponential_base=2.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_scales_each_delay_into_half_to_full():
    policy = RetryPolicy(initial_delay=4.0, max_delay=60.0, exponential_base=3.0, jitter=True)
    for n in (1, 2, 3):
        full = 4.0 * 3.0 ** (n - 1)
        samples = [policy.delay(n) for _ in range(200)]
        assert all(full * 0.5 <= d <= full for d in samples)
        assert len(set(samples)) > 1


def test_should_retry_counts_retries_and_respects_retry_on():
    policy = RetryPolicy(max_retries=2, retry_on=(ConnectionError,))
    assert policy.should_retry(ConnectionError(), 0)
    assert policy.should_retry(ConnectionError(), 1)
    assert not policy.should_retry(ConnectionError(), 2)
    assert not policy.should_retry(ValueError(), 0)


async def test_backoff_waits_exactly_the_policy_delays_on_a_manual_clock(record):
    clock = ManualClock()
    started_at: list[float] = []

    async def flaky(ctx):
        started_at.append(clock.monotonic())
        if len(started_at) < 4:
            raise ConnectionError(f"attempt {len(started_at)}")
        return None

    agent = Agent("backoff", clock=clock)
    agent.add_state(
        "flaky", flaky, retry_policy=RetryPolicy(max_retries=3, initial_delay=1.0, exponential_base=2.0, jitter=False)
    )
    log = record(agent)
    run = asyncio.create_task(agent.run())
    for step in (1.0, 2.0, 4.0):
        await clock.wait_for_sleepers(1)
        assert agent.state_metadata["flaky"].status is StateStatus.RETRYING
        await clock.advance(step)
    await asyncio.wait_for(run, 5)

    assert started_at == [0.0, 1.0, 3.0, 7.0]
    assert [e.delay for e in log.of(StateRetrying)] == [1.0, 2.0, 4.0]
    assert [e.attempt for e in log.of(StateStarted)] == [1, 2, 3, 4]
    assert [e.final for e in log.of(StateFailed)] == [False, False, False]
    meta = agent.state_metadata["flaky"]
    assert (meta.attempts, meta.retries, meta.status) == (4, 3, StateStatus.COMPLETED)


async def test_no_retry_for_exceptions_outside_retry_on():
    calls = []

    async def wrong(ctx):
        calls.append(1)
        raise KeyError("not retried")

    agent = Agent("retry_on")
    agent.add_state("wrong", wrong, retry_policy=RetryPolicy(max_retries=5, initial_delay=0, retry_on=(OSError,)))
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(agent.run(), 5)
    assert calls == [1]
    assert isinstance(info.value.__cause__, KeyError)


async def test_context_attempt_counts_up_across_retries():
    seen = []

    async def s(ctx):
        seen.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError("again")
        return None

    agent = Agent("attempts")
    agent.add_state("s", s, max_retries=2)
    await agent.run()
    assert seen == [1, 2, 3]


async def test_the_last_attempts_error_is_not_chained_to_the_first():
    # the first attempt of a plain state runs inline in its branch; the retries after it must
    # not show the first failure as "during handling of the above exception" in the traceback
    async def s(ctx):
        raise RuntimeError(f"attempt {ctx.attempt}")

    agent = Agent("unchained")
    agent.add_state("s", s, retry_policy=RetryPolicy(max_retries=2, initial_delay=0))
    with pytest.raises(StateFailedError) as info:
        await asyncio.wait_for(agent.run(), 5)
    cause = info.value.__cause__
    assert str(cause) == "attempt 3"
    assert cause.__context__ is None


def test_retry_policy_is_immutable():
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_retries = 9  # type: ignore[misc]
