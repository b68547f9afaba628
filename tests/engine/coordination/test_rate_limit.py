"""Rate limits admit what their strategy promises, measured on a ManualClock."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from fluffy_nb.engine import Agent, ConfigurationError, ManualClock
from fluffy_nb.engine.coordination import RateLimiter, RateLimitStrategy, create_coordinated_agent

TICK = 0.01


async def greedy_admissions(limiter: RateLimiter, clock: ManualClock, seconds: float) -> list[float]:
    """Admit as many as the limiter allows at every tick from 0 to ``seconds`` (inclusive)."""
    times: list[float] = []
    for step in range(round(seconds / TICK) + 1):
        if step:
            await clock.advance(TICK)
        while limiter.try_acquire("caller"):
            times.append(round(clock.monotonic(), 6))
    return times


async def test_token_bucket_10_per_second_admits_30_plus_the_burst_over_3_seconds_of_runs():
    clock = ManualClock()
    agent = create_coordinated_agent("api", clock=clock, max_steps=10_000)
    admitted: list[float] = []

    async def api_call(ctx):
        admitted.append(clock.monotonic())
        return "api_call"

    agent.add_state("api_call", api_call)
    agent.add_state_rate_limit("api_call", max_rate=10.0, strategy=RateLimitStrategy.TOKEN_BUCKET, burst_size=5)
    run = asyncio.create_task(agent.run())
    await clock.wait_for_sleepers(1)
    assert len(admitted) == 5  # the burst passes at once
    for _ in range(300):
        await clock.advance(TICK)
    await clock.advance(3.0 + 1e-6 - clock.monotonic())  # 300 float ticks fall just short of 3.0
    within = [t for t in admitted if t <= 3.0 + 1e-6]
    assert len(within) in (35, 36)  # 5 burst + 10/s * 3s (+1 if the t=3.0 token lands on the edge)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    stats = agent.coordinator.rate_limiters["api_call"].statistics()
    assert stats.admitted_at_once == 5
    assert stats.delayed >= 30


async def test_token_bucket_default_burst_is_one_seconds_worth():
    clock = ManualClock()
    limiter = RateLimiter("x", 10.0, clock=clock)
    times = await greedy_admissions(limiter, clock, 3.0)
    assert times.count(0.0) == 10
    assert 39 <= len(times) <= 41


async def test_sliding_window_never_admits_more_than_the_limit_in_any_window():
    clock = ManualClock()
    limiter = RateLimiter("x", 10.0, RateLimitStrategy.SLIDING_WINDOW, window_size=1.0, clock=clock)
    times = await greedy_admissions(limiter, clock, 3.0)
    for t in times:
        in_window = [u for u in times if t - 1.0 < u <= t + 1e-9]
        assert len(in_window) <= 10
    assert len(times) >= 30


async def test_sliding_window_limit_is_rate_times_window():
    clock = ManualClock()
    limiter = RateLimiter("x", 2.0, RateLimitStrategy.SLIDING_WINDOW, window_size=5.0, clock=clock)
    times = await greedy_admissions(limiter, clock, 4.9)
    assert len(times) == 10
    assert limiter.limit == 10


async def test_leaky_bucket_spaces_admissions_evenly():
    clock = ManualClock()
    limiter = RateLimiter("x", 10.0, RateLimitStrategy.LEAKY_BUCKET, clock=clock)
    times = await greedy_admissions(limiter, clock, 3.0)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.1 - 1e-6
    assert 30 <= len(times) <= 31


async def test_fixed_window_resets_its_count_at_each_window_edge():
    clock = ManualClock()
    limiter = RateLimiter("x", 10.0, RateLimitStrategy.FIXED_WINDOW, window_size=1.0, clock=clock)
    times = await greedy_admissions(limiter, clock, 2.99)
    per_window = [sum(1 for t in times if k <= t < k + 1) for k in range(3)]
    assert per_window == [10, 10, 10]
    assert all(t in (0.0, 1.0, 2.0) for t in times)


async def test_waiters_are_served_in_arrival_order_at_the_rate():
    clock = ManualClock()
    limiter = RateLimiter("x", 1.0, burst_size=1, clock=clock)
    got: list[tuple[str, float]] = []

    async def call(name: str) -> None:
        await limiter.acquire(name)
        got.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(call(n)) for n in "abcd"]
    await clock.wait_for_sleepers(1)
    for _ in range(4):
        await clock.advance(1.0)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert [n for n, _ in got] == ["a", "b", "c", "d"]
    assert [round(t) for _, t in got] == [0, 1, 2, 3]


async def test_rate_limit_waits_before_the_state_takes_its_mutex():
    agent = Agent("order")
    agent.add_state("s", lambda ctx: None)
    from fluffy_nb.engine.coordination import PrimitiveType

    mutex = agent.add_state_coordination("s", PrimitiveType.MUTEX)
    limiter = agent.add_state_rate_limit("s", 5.0)
    assert agent._gates["s"] == [limiter, mutex]
    replaced = agent.add_state_rate_limit("s", 7.0)
    assert agent._gates["s"] == [replaced, mutex]


def test_status_statistics_and_repr_of_a_limiter():
    clock = ManualClock()
    limiter = RateLimiter("api", 10.0, burst_size=5, clock=clock)
    for _ in range(3):
        assert limiter.try_acquire()
    assert repr(limiter) == "<RateLimiter 'api' TOKEN_BUCKET 10/s burst=5 admitted=3 waiting=0>"
    assert limiter.status()["available"] == 2
    assert limiter.statistics().admitted == 3
    limiter.reset()
    assert limiter.status()["available"] == 5


def test_bad_rate_limit_values_are_rejected():
    with pytest.raises(ConfigurationError, match="max_rate=0"):
        RateLimiter("x", 0)
    with pytest.raises(ConfigurationError, match="window_size"):
        RateLimiter("x", 1, RateLimitStrategy.SLIDING_WINDOW, window_size=0)
    with pytest.raises(ConfigurationError, match="strategy='bogus'"):
        RateLimiter("x", 1, "bogus")  # type: ignore[arg-type]
