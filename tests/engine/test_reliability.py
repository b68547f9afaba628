"""Reliability building blocks: circuit breaker, bulkhead, saga, fallbacks - alone and inside agents."""

from __future__ import annotations

import asyncio

import pytest

from fluffy_nb import Agent, ManualClock, StateFailedError
from fluffy_nb.engine._errors import ConfigurationError, FluffyError
from fluffy_nb.engine.reliability import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    CircuitState,
    Saga,
    SagaStep,
    with_fallbacks,
)


async def settle(condition) -> None:
    """Let other tasks run until ``condition()`` holds (bounded; no wall-clock waiting)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


class Upstream:
    """A dependency that fails while ``down`` and counts how often it was really called."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    async def __call__(self, x: int = 1) -> int:
        self.calls += 1
        if self.down:
            raise ConnectionError("upstream down")
        return x * 2


# -- circuit breaker ------------------------------------------------------------------------------------
async def test_breaker_opens_after_threshold_and_fails_fast_without_calling():
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=10, clock=clock, name="api")
    upstream = Upstream()
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await breaker.call(upstream)
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError, match=r"'api'.*open after 3 consecutive") as info:
        await breaker.call(upstream)
    assert upstream.calls == 3  # refused without touching the upstream
    assert isinstance(info.value, FluffyError)
    assert info.value.retry_in == pytest.approx(10.0)
    stats = breaker.statistics()
    assert (stats.failures, stats.rejected, stats.times_opened) == (3, 1, 1)


async def test_breaker_half_opens_after_recovery_timeout_and_a_good_trial_closes_it():
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=5, clock=clock)
    upstream = Upstream()
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.call(upstream)
    await clock.advance(4.9)
    assert breaker.is_open()
    await clock.advance(0.1)
    assert breaker.state is CircuitState.HALF_OPEN
    upstream.down = False
    assert await breaker.call(upstream, 21) == 42
    assert breaker.state is CircuitState.CLOSED
    assert breaker.statistics().consecutive_failures == 0


async def test_a_failed_trial_reopens_the_circuit_for_another_full_timeout():
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=5, clock=clock)
    upstream = Upstream()
    with pytest.raises(ConnectionError):
        await breaker.call(upstream)
    await clock.advance(5)
    with pytest.raises(ConnectionError):
        await breaker.call(upstream)  # the trial
    assert breaker.state is CircuitState.OPEN
    await clock.advance(4)
    with pytest.raises(CircuitOpenError):
        await breaker.call(upstream)
    assert upstream.calls == 2
    assert breaker.statistics().times_opened == 2


async def test_half_open_admits_only_max_calls_trials_at_once():
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=1, half_open_max_calls=2, clock=clock)
    with pytest.raises(ConnectionError):
        await breaker.call(Upstream())
    await clock.advance(1)
    release = asyncio.Event()
    inside = 0

    async def slow_ok():
        nonlocal inside
        inside += 1
        await release.wait()
        return "ok"

    trials = [asyncio.create_task(breaker.call(slow_ok)) for _ in range(2)]
    await settle(lambda: inside == 2)
    with pytest.raises(CircuitOpenError, match="half open"):
        await breaker.call(slow_ok)
    assert breaker.statistics().half_open_in_flight == 2
    release.set()
    assert await asyncio.gather(*trials) == ["ok", "ok"]
    assert breaker.state is CircuitState.CLOSED


async def test_success_resets_the_failure_streak_and_unexpected_errors_do_not_count():
    breaker = CircuitBreaker(failure_threshold=2, expected_exceptions=ConnectionError)
    upstream = Upstream()
    with pytest.raises(ConnectionError):
        await breaker.call(upstream)
    upstream.down = False
    await breaker.call(upstream)
    upstream.down = True
    with pytest.raises(ConnectionError):
        await breaker.call(upstream)
    assert breaker.state is CircuitState.CLOSED  # 1 in a row, not 2

    async def bug():
        raise KeyError("a bug, not an outage")

    for _ in range(3):
        with pytest.raises(KeyError):
            await breaker.call(bug)
    assert breaker.state is CircuitState.CLOSED


async def test_async_with_and_cancellation_counts_as_neither():
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=1, clock=clock)
    async with breaker:
        pass
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError("boom")
    assert breaker.is_open()
    await clock.advance(1)
    started = asyncio.Event()

    async def hang():
        async with breaker:
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is CircuitState.HALF_OPEN  # the cancelled trial gave its slot back
    async with breaker:
        pass
    assert breaker.state is CircuitState.CLOSED


def test_manual_api_from_the_async_patterns_doc_and_config_object():
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=3, name="legacy"))
    for _ in range(3):
        assert not breaker.is_open()
        breaker.record_failure()
    assert breaker.is_open()
    assert breaker.state == "open"
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.get_failure_rate() == pytest.approx(0.75)
    assert "'legacy' closed" in repr(breaker)


async def test_protected_state_stops_calling_upstream_once_open_and_run_fails_with_the_cause():
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=60)
    upstream = Upstream()

    @breaker.protect
    async def call_api(ctx):
        ctx.set_state("reply", await upstream())
        return None

    agent = Agent("guarded")
    agent.add_state("call_api", call_api, max_retries=5)
    with pytest.raises(StateFailedError) as info:
        await agent.run()
    assert upstream.calls == 2  # attempts 3..6 were refused by the open circuit
    assert isinstance(info.value.__cause__, CircuitOpenError)
    assert agent.state_metadata["call_api"].attempts == 6


async def test_protect_with_fallback_degrades_gracefully_inside_an_agent():
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=60)
    breaker.record_failure()  # already open

    async def basic(ctx):
        ctx.set_state("analysis", "basic")
        return None

    @breaker.protect(fallback=basic)
    async def premium(ctx):
        ctx.set_state("analysis", "premium")
        return None

    agent = Agent("degrading")
    agent.add_state("premium", premium)
    result = await agent.run()
    assert agent.get_state("analysis") == "basic"
    assert result is not None


def test_breaker_rejects_bad_settings():
    with pytest.raises(ConfigurationError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ConfigurationError, match="recovery_timeout"):
        CircuitBreaker(recovery_timeout=-1)


# -- bulkhead ---------------------------------------------------------------------------------------------
async def test_bulkhead_caps_concurrency_queues_and_rejects_past_the_queue():
    bulkhead = Bulkhead(max_concurrent=2, max_queue=1, name="payments")
    release = asyncio.Event()
    inside = peak = 0

    async def work():
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await release.wait()
        inside -= 1
        return "done"

    tasks = [asyncio.create_task(bulkhead.call(work)) for _ in range(3)]
    await settle(lambda: bulkhead.waiting == 1)
    assert (bulkhead.active, bulkhead.waiting, inside) == (2, 1, 2)
    with pytest.raises(BulkheadFullError, match="'payments' is full: 2/2 running and 1/1 queued"):
        await bulkhead.call(work)
    release.set()
    assert await asyncio.gather(*tasks) == ["done"] * 3
    assert peak == 2
    stats = bulkhead.statistics()
    assert (stats.active, stats.waiting, stats.accepted, stats.rejected, stats.peak_active) == (0, 0, 3, 1, 2)


async def test_a_cancelled_waiter_frees_its_queue_place_and_never_holds_a_slot():
    bulkhead = Bulkhead(max_concurrent=1, max_queue=1)
    release = asyncio.Event()
    holder = asyncio.create_task(bulkhead.call(release.wait))
    waiter = asyncio.create_task(bulkhead.call(release.wait))
    await settle(lambda: bulkhead.waiting == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bulkhead.waiting == 0
    release.set()
    await holder
    assert bulkhead.active == 0
    async with bulkhead:
        assert bulkhead.active == 1


async def test_queue_timeout_rejects_a_call_that_waits_too_long():
    bulkhead = Bulkhead(max_concurrent=1, max_queue=5, queue_timeout=0.01)
    never = asyncio.Event()
    holder = asyncio.create_task(bulkhead.call(never.wait))
    await settle(lambda: bulkhead.active == 1)
    with pytest.raises(BulkheadFullError, match=r"waited 0\.01s"):
        await bulkhead.call(never.wait)
    assert bulkhead.waiting == 0
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    assert bulkhead.active == 0


async def test_bulkhead_protected_parallel_states_never_exceed_two_at_once():
    bulkhead = Bulkhead(max_concurrent=2, max_queue=10)
    inside = peak = 0

    @bulkhead.protect
    async def shard(ctx):
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        for _ in range(3):
            await asyncio.sleep(0)
        inside -= 1
        return None

    async def fan_out(ctx):
        return [f"shard_{i}" for i in range(6)]

    agent = Agent("sharded")
    agent.add_state("fan_out", fan_out)
    for i in range(6):
        agent.add_state(f"shard_{i}", shard)
    await agent.run()
    assert len(agent.completed_states) == 7
    assert peak == 2


# -- saga -------------------------------------------------------------------------------------------------
def booking_saga(log: list[str], fail_at: str | None = None, broken_compensation: str | None = None) -> Saga:
    def step(name: str):
        async def action(ctx):
            if name == fail_at:
                raise RuntimeError(f"{name} unavailable")
            log.append(f"do {name}")
            ctx.set_state(name, "booked")
            return f"{name}-id"

        def compensation(ctx):  # sync compensations work too
            if name == broken_compensation:
                raise OSError(f"cannot cancel {name}")
            log.append(f"undo {name}")
            ctx.set_state(name, "cancelled")

        return SagaStep(name, action, compensation)

    return Saga([step("flight"), step("hotel"), step("car")], name="trip")


async def test_saga_runs_all_steps_and_returns_their_results():
    log: list[str] = []
    agent = Agent("trip")
    saga = booking_saga(log)
    results = await saga.run(agent.context)
    assert results == {"flight": "flight-id", "hotel": "hotel-id", "car": "car-id"}
    assert log == ["do flight", "do hotel", "do car"]
    assert saga.compensated == []


async def test_saga_failure_compensates_completed_steps_in_reverse_and_reraises():
    log: list[str] = []
    agent = Agent("trip")
    saga = booking_saga(log, fail_at="car")
    with pytest.raises(RuntimeError, match="car unavailable") as info:
        await saga.run(agent.context)
    assert log == ["do flight", "do hotel", "undo hotel", "undo flight"]
    assert saga.failed_step == "car"
    assert any("compensated: hotel, flight" in note for note in info.value.__notes__)


async def test_a_failing_compensation_is_recorded_and_the_others_still_run():
    log: list[str] = []
    agent = Agent("trip")
    saga = booking_saga(log, fail_at="car", broken_compensation="hotel")
    with pytest.raises(RuntimeError, match="car unavailable"):
        await saga.run(agent.context)
    assert log == ["do flight", "do hotel", "undo flight"]
    assert list(saga.compensation_errors) == ["hotel"]
    stats = saga.statistics()
    assert stats.compensation_errors == (("hotel", "OSError: cannot cancel hotel"),)
    assert (stats.failed_step, stats.completed, stats.compensated) == ("car", ("flight", "hotel"), ("flight",))


async def test_saga_as_a_state_undoes_bookings_when_the_run_fails():
    log: list[str] = []
    saga = booking_saga(log, fail_at="car")
    agent = Agent("trip")
    agent.add_state("book", saga.as_state(next_state="confirm"))

    async def confirm(ctx):
        return None

    agent.add_state("confirm", confirm)
    with pytest.raises(StateFailedError, match="car unavailable"):
        await agent.run()
    assert agent.get_state("flight") == agent.get_state("hotel") == "cancelled"
    assert "confirm" not in agent.completed_states


def test_saga_rejects_duplicate_step_names():
    saga = Saga(name="dup").add_step("a", lambda ctx: None)
    with pytest.raises(ConfigurationError, match="already has a step 'a'"):
        saga.add_step("a", lambda ctx: None)


# -- graceful degradation ------------------------------------------------------------------------------
async def test_with_fallbacks_uses_the_first_that_works():
    async def premium(text):
        raise TimeoutError("premium slow")

    def basic(text):
        return f"basic:{text}"

    analyse = with_fallbacks(premium, basic)
    assert await analyse("hi") == "basic:hi"
    assert analyse.__name__ == "premium"


async def test_with_fallbacks_returns_default_or_raises_the_last_error_with_notes():
    async def a():
        raise ValueError("a broke")

    async def b():
        raise KeyError("b broke")

    assert await with_fallbacks(a, b, default={"error": "All agents failed"})() == {"error": "All agents failed"}
    with pytest.raises(KeyError) as info:
        await with_fallbacks(a, b)()
    assert any("a failed: ValueError: a broke" in n for n in info.value.__notes__)
