"""Fan-out with a payload: Send/ctx.map run one state once per item, each item its own execution."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from typing import Any

import pytest

from fluffy_nb import (
    Agent,
    AgentStatus,
    Checkpoint,
    CheckpointError,
    ConfigurationError,
    FluffyWarning,
    InvalidStateResultError,
    ManualClock,
    MemoryStore,
    ProgrammaticResponder,
    RetryPolicy,
    ScriptedResponder,
    Send,
    StateFailedError,
    StateNotFoundError,
    StateTimeoutError,
)
from fluffy_nb.engine.coordination import PrimitiveType, RateLimitStrategy
from tests._wait import until


def mapping_agent(name: str, items: list[Any], score: Any, **options: Any) -> Agent:
    """split -> score (once per item) -> merge, which stores ``ctx.results("score")`` as ``out``."""

    async def split(ctx: Any) -> list[Send]:
        return ctx.map("score", items)

    async def merge(ctx: Any) -> None:
        ctx.set_state("out", ctx.results("score"))
        ctx.set_state("merges", ctx.get_state("merges", 0) + 1)

    score_options = options.pop("score_options", {})
    agent = Agent(name, **options)
    agent.add_state("split", split)
    agent.add_state("score", score, **score_options)
    agent.add_state("merge", merge)
    return agent


async def checkpoint_mid_map(agent: Agent, done: Callable[[], bool], what: str) -> Checkpoint:
    """Run ``agent`` until ``done()`` and two of its ``score`` branches are blocked, checkpoint the
    run there, and stop it (as a kill would)."""
    task = asyncio.create_task(agent.run())
    await until(done, what)
    run = agent.latest_run
    assert run is not None
    await until(lambda: run.snapshot().maps["score"].running == 2, "two branches blocked")
    cp = run.create_checkpoint()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return cp


async def test_ten_thousand_payloads_run_at_most_50_at_once_and_the_join_gets_every_result_in_order() -> None:
    live = {"now": 0, "peak": 0}

    async def score(ctx: Any) -> str:
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        for _ in range(ctx.payload % 3):  # later items often finish first
            await asyncio.sleep(0)
        live["now"] -= 1
        ctx.set_result(ctx.payload * 2)
        return "merge"

    agent = mapping_agent("ten_k", list(range(10_000)), score, max_concurrent=50)
    result = await agent.run()
    assert result.status is AgentStatus.COMPLETED
    assert live["peak"] == 50  # the limit was reached, never passed
    assert result.shared_state["out"] == [i * 2 for i in range(10_000)]
    assert result.shared_state["merges"] == 1  # the join ran once, after every branch
    assert result.state_runs == {"split": 1, "score": 10_000, "merge": 1}
    counts = agent.latest_run.snapshot().maps["score"]  # type: ignore[union-attr]
    assert (counts.total, counts.done, counts.running, counts.failed, counts.queued) == (10_000, 10_000, 0, 0, 0)


async def test_a_semaphore_of_3_admits_3_branches_of_a_map_of_30_at_a_time() -> None:
    live = {"now": 0, "peak": 0}
    release = asyncio.Event()

    async def score(ctx: Any) -> str:
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        await release.wait()
        await asyncio.sleep(0)
        live["now"] -= 1
        ctx.set_result(ctx.payload)
        return "merge"

    agent = mapping_agent("sem", list(range(30)), score)
    agent.add_state_coordination("score", PrimitiveType.SEMAPHORE, max_count=3)  # "allow 3 concurrent executions"
    task = asyncio.create_task(agent.run())
    await until(lambda: live["now"] == 3, "three branches inside")
    for _ in range(20):
        await asyncio.sleep(0)
    assert live["now"] == 3  # the other 27 wait at the semaphore
    run = agent.latest_run
    assert run is not None
    counts = run.snapshot().maps["score"]
    assert (counts.total, counts.done, counts.running, counts.failed, counts.queued) == (30, 0, 3, 0, 27)
    release.set()
    result = await task
    assert live["peak"] == 3
    assert result.shared_state["out"] == list(range(30))


async def test_branches_queued_behind_a_semaphore_smaller_than_max_concurrent_are_no_deadlock() -> None:
    # A branch that finishes hands its permit to a waiter and starts the next queued branch at
    # once, before the waiter's task resumes: the new branch must not read the granted waiter as
    # still waiting (for the permit it already holds) and report a deadlock.
    live = {"now": 0, "peak": 0}

    async def score(ctx: Any) -> str:
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        for _ in range(ctx.payload % 3 + 1):
            await asyncio.sleep(0)
        live["now"] -= 1
        ctx.set_result(ctx.payload)
        return "merge"

    agent = mapping_agent("sem_queue", list(range(60)), score, max_concurrent=10)
    agent.add_state_coordination("score", PrimitiveType.SEMAPHORE, max_count=3)
    result = await agent.run()
    assert result.status is AgentStatus.COMPLETED
    assert result.shared_state["out"] == list(range(60))
    assert live["peak"] == 3
    detector = (await agent.get_coordination_status())["deadlock_detector"]
    assert detector["cycle_count"] == 0


async def test_a_rate_limit_on_the_mapped_state_paces_all_of_its_branches() -> None:
    clock = ManualClock()
    admitted: list[tuple[int, float]] = []

    async def score(ctx: Any) -> str:
        admitted.append((ctx.payload, clock.monotonic()))
        return "merge"

    agent = mapping_agent("paced", list(range(6)), score, clock=clock)
    agent.add_state_rate_limit("score", max_rate=10.0, strategy=RateLimitStrategy.TOKEN_BUCKET, burst_size=2)
    task = asyncio.create_task(agent.run())
    await clock.wait_for_sleepers(1)
    assert [p for p, _ in admitted] == [0, 1]  # the burst: two at once, whatever the number of branches
    for _ in range(4):
        await clock.advance(0.1 + 1e-9)
    result = await task
    assert [p for p, _ in admitted] == [0, 1, 2, 3, 4, 5]
    times = [t for _, t in admitted]
    assert times[:2] == [0.0, 0.0]
    assert [round(b - a, 6) for a, b in itertools.pairwise(times[1:])] == [0.1, 0.1, 0.1, 0.1]
    assert result.status is AgentStatus.COMPLETED


async def test_each_branch_retries_on_its_own() -> None:
    attempts: dict[int, list[int]] = {}

    async def score(ctx: Any) -> str:
        attempts.setdefault(ctx.payload, []).append(ctx.attempt)
        ctx.set_result(f"partial {ctx.payload}")  # dropped when the attempt fails
        if ctx.payload == 3 and ctx.attempt < 3:
            raise ConnectionError("flaky")
        ctx.set_result(ctx.payload * 10)
        return "merge"

    agent = mapping_agent("retries", list(range(5)), score,
                          score_options={"retry_policy": RetryPolicy(max_retries=2, initial_delay=0, jitter=False)})
    result = await agent.run()
    assert attempts == {0: [1], 1: [1], 2: [1], 3: [1, 2, 3], 4: [1]}
    assert result.shared_state["out"] == [0, 10, 20, 30, 40]
    assert agent.latest_run.metadata["score"].retries == 2  # type: ignore[union-attr]


async def test_a_failing_branch_without_a_route_fails_the_run_as_today() -> None:
    async def score(ctx: Any) -> str:
        if ctx.payload == 2:
            raise ValueError("bad item 2")
        return "merge"

    agent = mapping_agent("fails", list(range(5)), score)
    with pytest.raises(StateFailedError, match=r"^state 'score' \(payload 2\) failed .*bad item 2"):
        await agent.run()
    run = agent.latest_run
    assert run is not None
    assert run.status is AgentStatus.FAILED
    assert "merge" not in run.completed_states
    assert run.snapshot().maps["score"].failed == 1


async def test_a_branch_that_fails_or_times_out_takes_its_route_with_its_own_payload() -> None:
    release = asyncio.Event()

    async def score(ctx: Any) -> str:
        if ctx.payload == "boom":
            raise KeyError("boom")
        if ctx.payload == "slow":
            await release.wait()  # released never: its timeout sends it to the fallback
        ctx.set_result(ctx.payload.upper())
        return "merge"

    async def rescue(ctx: Any) -> str:
        ctx.set_result(f"{ctx.payload}: {type(ctx.last_error).__name__}")
        return "merge"

    agent = mapping_agent("routed", ["a", "boom", "slow", "b"], score,
                          score_options={"on_error": "rescue", "on_timeout": "rescue", "timeout": 0.05})
    agent.add_state("rescue", rescue)
    result = await agent.run()
    assert result.shared_state["out"] == ["A", "boom: KeyError", "slow: StateTimeoutError", "B"]
    assert result.shared_state["merges"] == 1
    assert result.state_runs["rescue"] == 2  # once per failed branch, not once per state
    counts = agent.latest_run.snapshot().maps["score"]  # type: ignore[union-attr]
    assert (counts.done, counts.failed) == (4, 0)
    assert StateTimeoutError.__name__ in result.shared_state["out"][2]


async def test_a_checkpoint_taken_mid_map_restores_and_runs_only_the_unfinished_payloads() -> None:
    ran: list[int] = []
    hold = asyncio.Event()

    def agent_for(blocking: bool) -> Agent:
        async def score(ctx: Any) -> str:
            if blocking and ctx.payload >= 4:
                await hold.wait()  # never set: the run is stopped here
            ran.append(ctx.payload)
            ctx.set_result({"item": ctx.payload, "sq": ctx.payload ** 2})
            return "merge"

        return mapping_agent("resumable", list(range(10)), score, max_concurrent=2, store=MemoryStore())

    cp = await checkpoint_mid_map(agent_for(blocking=True), lambda: len(ran) == 4, "four payloads done")
    assert cp.pending == ["score"]  # one entry for the map (the run goes on); its branches are in the record
    (record,) = cp.maps
    assert sorted(record.results, key=int) == ["0", "1", "2", "3"]
    assert sorted(record.pending, key=int) == [str(i) for i in range(4, 10)]

    ran.clear()
    second = agent_for(blocking=False)
    second.restore(Checkpoint.from_json(cp.to_json()))  # through JSON, as a store keeps it
    result = await second.run()
    assert sorted(ran) == list(range(4, 10))  # only the unfinished ones
    assert result.shared_state["out"] == [{"item": i, "sq": i * i} for i in range(10)]
    assert result.shared_state["merges"] == 1


async def test_a_list_repeating_a_plain_name_still_runs_it_once_beside_a_map() -> None:
    async def split(ctx: Any) -> list[Any]:
        return ["audit", "audit", *ctx.map("score", [1, 2, 3])]

    async def audit(ctx: Any) -> str:
        ctx.set_state("audits", ctx.get_state("audits", 0) + 1)
        return "merge"

    async def score(ctx: Any) -> str:
        ctx.set_result(ctx.payload + 1)
        return "merge"

    async def merge(ctx: Any) -> None:
        ctx.set_state("out", ctx.results("score"))

    agent = Agent("mixed")
    for f in (split, audit, score, merge):
        agent.add_state(f.__name__, f)
    result = await agent.run()
    assert result.state_runs == {"split": 1, "audit": 1, "score": 3, "merge": 1}
    assert result.shared_state == {"audits": 1, "out": [2, 3, 4]}


async def test_bad_sends_and_misuse_fail_with_errors_that_name_the_state() -> None:
    async def to_nowhere(ctx: Any) -> list[Send]:
        return [Send("nowhere", 1)]

    agent = Agent("bad_target")
    agent.add_state("to_nowhere", to_nowhere)
    with pytest.raises(StateNotFoundError, match="'to_nowhere' sent payloads to 'nowhere'"):
        await agent.run()

    async def odd(ctx: Any) -> list[Any]:
        return [Send("odd", 1), 42]

    agent = Agent("bad_entry")
    agent.add_state("odd", odd)
    with pytest.raises(InvalidStateResultError, match="42"):
        await agent.run()

    for bad in (["score"], 7, None):
        async def not_a_name(ctx: Any, bad: Any = bad) -> list[Send]:
            return [Send(bad, 1)]

        agent = Agent("bad_send_state")
        agent.add_state("not_a_name", not_a_name)
        agent.add_state("score", plain_score)
        # the run fails (wait_for is a guard, not a wait: it once hung here, its branch task dead of a TypeError)
        with pytest.raises(InvalidStateResultError, match=rf"state 'not_a_name' returned Send\({re.escape(repr(bad))}, "
                                                          rf"\.\.\.\).*not {type(bad).__name__}"):
            await asyncio.wait_for(agent.run(start="not_a_name"), 30)
        assert agent.latest_run is not None
        assert agent.latest_run.status is AgentStatus.FAILED

    async def plain(ctx: Any) -> None:
        ctx.set_result(1)

    agent = Agent("no_payload")
    agent.add_state("plain", plain)
    with pytest.raises(StateFailedError, match="set_result records the result of a payload branch"):
        await agent.run()

    async def reader(ctx: Any) -> None:
        assert ctx.payload is None
        ctx.results("score")

    agent = Agent("no_map")
    agent.add_state("reader", reader)
    with pytest.raises(StateFailedError, match="has not sent payloads to 'score'") as info:
        await agent.run()
    assert isinstance(info.value.__cause__, ConfigurationError)


async def plain_score(ctx: Any) -> None:
    pass


def test_a_damaged_map_record_is_refused_when_the_checkpoint_loads() -> None:
    good = {"agent_name": "a", "run_id": "r", "timestamp": 0.0,
            "maps": [{"state": "score", "total": 3, "results": {"0": 1}, "pending": {"1": "x", "2": "y"}}]}
    assert Checkpoint.from_dict(good).maps[0].total == 3
    for damage in ({"pending": {"7": "x"}}, {"results": {"-1": 0}}, {"waiting": {"merge": 60_000, "report": 60_000}},
                   {"results": {"0": 1, "1": 2}, "pending": {"1": "x", "2": "y"}}):
        bad = {**good, "maps": [{**good["maps"][0], **damage}]}
        with pytest.raises(CheckpointError, match="map of 'score'"):
            Checkpoint.from_dict(bad)


async def test_resume_latest_after_a_durable_run_stopped_mid_map_finishes_only_the_rest() -> None:
    store = MemoryStore()
    ran: list[int] = []
    hold = asyncio.Event()

    def agent_for(blocking: bool) -> Agent:
        async def score(ctx: Any) -> str:
            if blocking and ctx.payload >= 3:
                await hold.wait()
            ran.append(ctx.payload)
            ctx.set_result(ctx.payload)
            return "merge"

        return mapping_agent("durable_map", list(range(8)), score, max_concurrent=3, store=store, durable=True)

    first = agent_for(blocking=True)
    task = asyncio.create_task(first.run())
    await until(lambda: len(ran) == 3, "three payloads done")
    task.cancel()  # the process dies here; every finished branch was checkpointed
    await asyncio.gather(task, return_exceptions=True)
    ran.clear()
    result = await agent_for(blocking=False).resume_latest(store)
    assert sorted(ran) == list(range(3, 8))
    assert result.shared_state["out"] == list(range(8))
    assert result.status is AgentStatus.COMPLETED


async def test_pausing_mid_map_starts_no_branch_until_resume_and_the_join_still_gets_every_result() -> None:
    gate = asyncio.Event()
    started: list[int] = []

    async def score(ctx: Any) -> str:
        started.append(ctx.payload)
        if ctx.payload >= 1:
            await gate.wait()  # still running when the pause comes: pause waits for them
        ctx.set_result(-ctx.payload)
        return "merge"

    agent = mapping_agent("paused_map", list(range(6)), score, max_concurrent=2)
    task = asyncio.create_task(agent.run())
    await until(lambda: sorted(started) == [0, 1, 2], "items 1 and 2 running, 0 done")
    run = agent.latest_run
    assert run is not None
    await until(lambda: run.snapshot().maps["score"].running == 2, "two in flight")
    pausing = asyncio.create_task(run.pause())
    await until(lambda: run.paused, "paused")
    gate.set()
    cp = await pausing
    assert sorted(cp.maps[0].pending, key=int) == ["3", "4", "5"]  # the unstarted items, with their payloads
    for _ in range(20):
        await asyncio.sleep(0)
    assert sorted(started) == [0, 1, 2]  # nothing starts while paused
    assert run.resume()
    result = await task
    assert sorted(started) == list(range(6))
    assert result.shared_state["out"] == [0, -1, -2, -3, -4, -5]


async def test_cancel_state_cancels_every_branch_of_the_map() -> None:
    started = asyncio.Event()

    async def score(ctx: Any) -> str:
        started.set()
        await asyncio.Event().wait()
        return "merge"

    agent = mapping_agent("cancelled_map", list(range(20)), score, max_concurrent=5)
    task = asyncio.create_task(agent.run())
    await started.wait()
    run = agent.latest_run
    assert run is not None
    await until(lambda: run.snapshot().maps["score"].running == 5, "five in flight")
    assert run.cancel_state("score")
    result = await task
    assert result.status is AgentStatus.COMPLETED  # as cancel_state of any state: its branches end
    assert "merge" not in result.completed_states
    counts = run.snapshot().maps["score"]
    assert (counts.done, counts.running) == (0, 0)


async def test_mapping_a_state_whose_earlier_map_is_unfinished_or_that_has_dependencies_fails_loudly() -> None:
    hold = asyncio.Event()

    async def start(ctx: Any) -> list[str]:
        return ["first", "second"]

    async def first(ctx: Any) -> list[Send]:
        return ctx.map("leaf", [1])

    async def second(ctx: Any) -> list[Send]:
        await hold.wait()
        return ctx.map("leaf", [2])  # two maps of "leaf" at once: results would mix

    async def leaf(ctx: Any) -> None:
        await asyncio.Event().wait()  # the first leaf map stays in flight

    agent = Agent("two_maps_same_state")
    for f in (start, first, second, leaf):
        agent.add_state(f.__name__, f)
    task = asyncio.create_task(agent.run(start="start"))
    await until(lambda: agent.latest_run is not None and "leaf" in agent.latest_run.maps, "the first leaf map")
    hold.set()
    with pytest.raises(ConfigurationError, match="earlier map of 'leaf' in this run still has 1 branches"):
        await task

    async def split(ctx: Any) -> list[Send]:
        return [Send("gated", 1)]

    async def gated(ctx: Any) -> None:
        pass

    agent = Agent("gated_map")
    agent.add_state("split", split)
    agent.add_state("gated", gated, dependencies={"split": "required"})
    with pytest.raises(ConfigurationError, match="'gated', which waits for dependencies"):
        await agent.run(start="split")


async def test_the_mapped_state_shows_running_while_any_branch_runs_even_after_one_finished() -> None:
    release = asyncio.Event()
    finished: list[int] = []

    async def score(ctx: Any) -> str:
        if ctx.payload < 3:
            await release.wait()
        finished.append(ctx.payload)
        return "merge"

    agent = mapping_agent("status_map", list(range(4)), score)
    task = asyncio.create_task(agent.run())
    await until(lambda: finished == [3], "the last item finished first")
    run = agent.latest_run
    assert run is not None
    snap = run.snapshot()
    assert (snap.maps["score"].done, snap.maps["score"].running) == (1, 3)
    assert snap.states["score"].status == "running"
    release.set()
    await task
    assert run.snapshot().states["score"].status == "completed"


async def test_a_single_send_runs_its_state_once_with_the_payload() -> None:
    async def ask(ctx: Any) -> Send:
        return Send("answer", {"q": "six times seven"})

    async def answer(ctx: Any) -> None:
        ctx.set_result(42)
        ctx.set_state("question", ctx.payload["q"])
        ctx.set_state("index", ctx.payload_index)

    agent = Agent("single_send")
    agent.add_state("ask", ask)
    agent.add_state("answer", answer)
    result = await agent.run()
    assert result.shared_state == {"question": "six times seven", "index": 0}
    assert agent.latest_run.context.results("answer") == [42]  # type: ignore[union-attr]


async def test_two_maps_from_one_return_restore_as_one_fan_out_whose_join_waits_for_both() -> None:
    ran: list[str] = []
    hold = asyncio.Event()

    def agent_for(blocking: bool) -> Agent:
        async def split(ctx: Any) -> list[Any]:
            return [*ctx.map("left", [1, 2, 3]), *ctx.map("right", [10, 20])]

        async def left(ctx: Any) -> str:
            ran.append(f"left{ctx.payload}")
            ctx.set_result(-ctx.payload)
            return "merge"

        async def right(ctx: Any) -> str:
            if blocking and ctx.payload == 20:
                await hold.wait()
            ran.append(f"right{ctx.payload}")
            ctx.set_result(ctx.payload * 2)
            return "merge"

        async def merge(ctx: Any) -> None:
            ctx.set_state("out", [ctx.results("left"), ctx.results("right")])
            ctx.set_state("merges", ctx.get_state("merges", 0) + 1)

        agent = Agent("two_maps", store=MemoryStore())
        for f in (split, left, right, merge):
            agent.add_state(f.__name__, f)
        return agent

    first = agent_for(blocking=True)
    task = asyncio.create_task(first.run())
    await until(lambda: len(ran) == 4, "all but right20 done")
    run = first.latest_run
    assert run is not None
    cp = run.create_checkpoint()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    left_rec, right_rec = sorted(cp.maps, key=lambda r: r.state)
    assert left_rec.group == right_rec.group > 0
    assert sum(left_rec.waiting.values()) + sum(right_rec.waiting.values()) == 4  # the finished branches wait at merge

    ran.clear()
    second = agent_for(blocking=False)
    second.restore(Checkpoint.from_json(cp.to_json()))
    result = await second.run()
    assert ran == ["right20"]
    assert result.shared_state["out"] == [[-1, -2, -3], [20, 40]]
    assert result.shared_state["merges"] == 1


async def test_mapping_a_state_that_runs_on_a_remote_executor_is_refused_with_the_fix() -> None:
    class Elsewhere:
        """An executor whose bodies run in another process (their context carries no payload)."""

        name = "elsewhere"

        async def run_state(self, spec: Any, ctx: Any) -> Any:
            return await spec.func(ctx)

    async def split(ctx: Any) -> list[Send]:
        return ctx.map("far", [1, 2])

    async def far(ctx: Any) -> None:
        pass

    agent = Agent("remote_map")
    agent.add_state("split", split)
    agent.add_state("far", far, executor=Elsewhere())
    with pytest.raises(ConfigurationError, match=r"'far', which runs on executor .* Map to a local state"):
        await agent.run()


async def test_map_payloads_and_results_round_trip_as_tagged_values_like_context_values() -> None:
    """A payload or result a checkpoint keeps is encoded as context values are: a datetime or a
    Decimal comes back as itself after restore, not as a string or an error."""
    import datetime as dt
    from decimal import Decimal

    days = [dt.date(2026, 1, d) for d in range(1, 7)]
    hold = asyncio.Event()
    done: list[dt.date] = []

    def agent_for(blocking: bool) -> Agent:
        async def score(ctx: Any) -> str:
            if blocking and ctx.payload.day > 2:
                await hold.wait()  # never set: the run is stopped here
            assert isinstance(ctx.payload, dt.date)
            done.append(ctx.payload)
            ctx.set_result((ctx.payload, Decimal("1.10") * ctx.payload.day))
            return "merge"

        return mapping_agent("tagged", days, score, max_concurrent=2, store=MemoryStore())

    cp = await checkpoint_mid_map(agent_for(blocking=True), lambda: len(done) == 2, "two payloads done")

    done.clear()
    second = agent_for(blocking=False)
    second.restore(Checkpoint.from_json(cp.to_json()))
    result = await second.run()
    assert sorted(done) == days[2:]
    assert result.shared_state["out"] == [(d, Decimal("1.10") * d.day) for d in days]


async def test_mapping_into_a_sub_workflow_state_is_refused_and_the_suggested_local_state_works() -> None:
    searched: list[str] = []
    researcher = Agent("researcher")

    async def search(ctx: Any) -> None:
        searched.append(ctx.get_state("topic"))
        ctx.set_state("notes", f"notes on {ctx.get_state('topic')}")

    researcher.add_state("search", search)
    topics = ["owls", "bats", "moths"]

    async def plan(ctx: Any) -> list[Send]:
        return ctx.map("research", topics)

    team = Agent("team")
    team.add_state("plan", plan)
    team.add_state("research", researcher, inputs=["topic"], outputs=["notes"])
    with pytest.raises(ConfigurationError, match=r"'plan' sent payloads to 'research', which is an agent "
                                                 r"\(sub-workflow 'researcher'\).*Map to a local state"):
        await team.run()
    assert searched == []  # refused at the map: no child ran with a payload it could not see

    async def plan_local(ctx: Any) -> list[Send]:
        return ctx.map("research_one", topics)

    async def research_one(ctx: Any) -> str:  # what the error says to do instead
        child = await researcher.run(initial_context={"topic": ctx.payload})
        ctx.set_result(child.get_state("notes"))
        return "merge"

    async def merge(ctx: Any) -> None:
        ctx.set_state("notes", ctx.results("research_one"))

    fixed = Agent("fixed")
    for f in (plan_local, research_one, merge):
        fixed.add_state(f.__name__, f)
    result = await fixed.run()
    assert result.shared_state["notes"] == ["notes on owls", "notes on bats", "notes on moths"]
    assert sorted(searched) == sorted(topics)


async def test_a_branch_routed_on_error_into_a_sub_workflow_state_fails_naming_both_states() -> None:
    helper = Agent("helper")

    async def help_out(ctx: Any) -> None:
        ctx.set_state("helped", True)

    helper.add_state("help_out", help_out)

    async def score(ctx: Any) -> None:
        raise ValueError(f"bad item {ctx.payload}")

    agent = mapping_agent("routed_to_agent", [1, 2], score, score_options={"on_error": "rescue"})
    agent.add_state("rescue", helper)
    with pytest.raises(ConfigurationError, match=r"'score' routes failures of its payload branches to 'rescue', "
                                                 r"which is an agent \(sub-workflow 'helper'\)"):
        await agent.run(start=["split"])


@pytest.mark.parametrize("timing", ["overlapping", "staggered"])
async def test_a_map_inside_a_maps_branches_is_refused_at_the_first_one_whatever_the_timing(timing: str) -> None:
    """Outer branches each mapping ``inner``: refused at the first nested map, the same error
    whether the outer branches overlap (all map at once) or come one after another."""
    arrived: list[int] = []
    go = asyncio.Event()
    inner_ran: list[Any] = []

    async def split(ctx: Any) -> list[Send]:
        return ctx.map("outer", [0, 1, 2])

    async def outer(ctx: Any) -> list[Send]:
        arrived.append(ctx.payload)
        if timing == "overlapping":
            if len(arrived) == 3:
                go.set()
            await go.wait()  # all three map at the same moment
        elif ctx.payload > 0:
            await go.wait()  # only branch 0 maps; the others wait behind it (cancelled when the run fails)
        return ctx.map("inner", [ctx.payload * 10, ctx.payload * 10 + 1])

    async def inner(ctx: Any) -> str:
        inner_ran.append(ctx.payload)
        return "join"

    async def join(ctx: Any) -> None:
        ctx.set_state("inner", ctx.results("inner"))

    agent = Agent(f"nested_{timing}")
    for f in (split, outer, inner, join):
        agent.add_state(f.__name__, f)
    with pytest.raises(ConfigurationError, match=r"state 'outer' \(payload \d\) sent payloads to \['inner'\] inside "
                                                 r"a branch of the map of 'outer'.*Flatten it"):
        await agent.run(start="split")
    assert inner_ran == []
    assert agent.latest_run is not None
    assert agent.latest_run.status is AgentStatus.FAILED


async def test_the_state_where_a_maps_branches_meet_may_map_again_it_is_not_nested() -> None:
    async def split(ctx: Any) -> list[Send]:
        return ctx.map("outer", [0, 1])

    async def outer(ctx: Any) -> str:
        ctx.set_result(ctx.payload)
        return "post"  # the branches meet here: post runs once, outside the outer map

    async def post(ctx: Any) -> list[Send]:
        return ctx.map("inner", [10 + r for r in ctx.results("outer")])

    async def inner(ctx: Any) -> str:
        ctx.set_result(ctx.payload)
        return "join"

    async def join(ctx: Any) -> None:
        ctx.set_state("out", ctx.results("inner"))

    agent = Agent("map_after_meeting")
    for f in (split, outer, post, inner, join):
        agent.add_state(f.__name__, f)
    result = await agent.run(start="split")
    assert result.shared_state["out"] == [10, 11]
    assert result.state_runs["post"] == 1


async def test_mapping_again_after_the_earlier_map_joined_is_not_nested() -> None:
    async def split(ctx: Any) -> list[Send]:
        return ctx.map("score", [1, 2])

    async def score(ctx: Any) -> str:
        ctx.set_result(ctx.payload)
        return "merge"

    async def merge(ctx: Any) -> list[Send] | None:
        ctx.set_state("rounds", [*ctx.get_state("rounds", []), ctx.results("score")])
        return None if len(ctx.get_state("rounds")) == 2 else ctx.map("score", [3, 4])

    agent = Agent("remap_after_join")
    for f in (split, score, merge):
        agent.add_state(f.__name__, f)
    result = await agent.run(start="split")
    assert result.shared_state["rounds"] == [[1, 2], [3, 4]]


async def test_an_empty_map_warns_naming_the_state_that_mapped_nothing() -> None:
    async def split(ctx: Any) -> list[Send]:
        return ctx.map("score", [])

    async def score(ctx: Any) -> None:
        raise AssertionError("nothing to run")

    agent = Agent("empty_map")
    agent.add_state("split", split)
    agent.add_state("score", score)
    with pytest.warns(FluffyWarning, match="state 'split' mapped no items to 'score'"):
        result = await agent.run(start="split")
    assert result.status is AgentStatus.COMPLETED
    assert "score" not in result.state_runs


# -- a person asked from map branches -----------------------------------------------------------
def asking_agent(name: str, responder: Any, hold: asyncio.Event | None = None,
                 gates: dict[int, asyncio.Event] | None = None) -> Agent:
    """split -> review (once per item 0..2, each asks "ok N?") -> join; ``hold`` keeps branch 1
    running after its answer; ``gates`` orders when each branch asks."""

    async def split(ctx: Any) -> list[Send]:
        return ctx.map("review", [0, 1, 2])

    async def review(ctx: Any) -> str:
        if gates is not None:
            await gates[ctx.payload].wait()
        answer = await ctx.human_in_the_loop(f"ok {ctx.payload}?")
        if hold is not None and ctx.payload == 1:
            await hold.wait()
        ctx.set_result((ctx.payload, answer))
        return "join"

    async def join(ctx: Any) -> None:
        ctx.set_state("out", ctx.results("review"))

    agent = Agent(name, responder=responder)
    for f in (split, review, join):
        agent.add_state(f.__name__, f)
    return agent


async def test_each_map_branch_that_asks_is_asked_its_own_question_and_gets_its_own_answer() -> None:
    responder = ProgrammaticResponder()
    gates = {i: asyncio.Event() for i in range(3)}
    agent = asking_agent("branch_questions", responder, gates=gates)
    task = asyncio.create_task(agent.run(start="split"))
    prompts = []
    for i in range(3):  # each branch asks only after the one before was answered
        gates[i].set()
        request = await asyncio.wait_for(responder.next_request(), 30)  # a guard: it once was never asked
        prompts.append(request.prompt)
        request.answer(f"answer {i}")
    result = await task
    assert prompts == ["ok 0?", "ok 1?", "ok 2?"]
    assert result.shared_state["out"] == [(0, "answer 0"), (1, "answer 1"), (2, "answer 2")]


async def test_a_restore_mid_map_replays_each_recorded_answer_only_into_its_own_payloads_branch() -> None:
    responder = ProgrammaticResponder()
    gates = {i: asyncio.Event() for i in range(3)}
    hold = asyncio.Event()  # never set: branch 1 is still running after its answer
    first = asking_agent("branch_replay", responder, hold=hold, gates=gates)
    task = asyncio.create_task(first.run(start="split"))
    for i in (0, 1):
        gates[i].set()
        (await asyncio.wait_for(responder.next_request(), 30)).answer(f"answer {i}")
    run = first.latest_run
    assert run is not None
    await until(lambda: run.snapshot().maps["review"].done == 1, "branch 0 done")  # branch 1 holds, 2 waits
    cp = Checkpoint.from_json(run.create_checkpoint().to_json())
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sorted((a.payload, a.value) for a in cp.human_answers) == [(0, "answer 0"), (1, "answer 1")]

    script = ScriptedResponder({"ok 2?": "answer 2"})
    second = asking_agent("branch_replay", script)
    await second.restore_from_checkpoint(cp)
    result = await second.run()
    assert [r.prompt for r in script.asked] == ["ok 2?"]  # branch 1 replays its answer; branch 2 is asked
    assert result.shared_state["out"] == [(0, "answer 0"), (1, "answer 1"), (2, "answer 2")]


async def test_a_failed_branchs_event_names_its_payload_and_its_map_times_each_branch() -> None:
    from fluffy_nb.engine._events import StateFailed

    clock = ManualClock()
    gate = asyncio.Event()

    async def split(ctx: Any) -> Any:
        return ctx.map("score", range(3))

    async def score(ctx: Any) -> str:
        await gate.wait()
        if ctx.payload == 1:
            raise ValueError("item 1 is bad")
        return "merge"

    async def merge(ctx: Any) -> None:
        pass

    agent = Agent("mapfail", clock=clock)
    for f in (split, score, merge):
        agent.add_state(f.__name__, f)
    failures: list[StateFailed] = []
    agent.events.subscribe(lambda e: failures.append(e) if isinstance(e, StateFailed) else None)
    task = asyncio.create_task(agent.run())
    await until(lambda: agent.latest_run is not None and "score" in agent.latest_run.maps
                and agent.latest_run.maps["score"].snapshot().running == 3, "three branches in flight")
    await clock.advance(1.0)
    gate.set()
    with pytest.raises(StateFailedError, match="payload 1"):
        await task
    assert [(e.state, e.payload) for e in failures] == [("score", 1)]
    m = agent.latest_run.maps["score"]
    wall0 = clock.time() - clock.monotonic()
    assert list(m.starts) == [wall0] * 3  # each began at 0.0 and ended (failed, or cut short by it) at 1.0
    assert list(m.ends) == [wall0 + 1.0] * 3
