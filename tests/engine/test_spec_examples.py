"""Every complete example of the two fluffy-agent-flow spec files, run as written.

Helpers the spec leaves undefined (split_data, process, process_data, release_resource...)
and states it routes to but never adds get trivial stand-ins; the example code itself is
copied from the spec. Each test asserts what the spec's text promises.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Dict, List  # noqa: UP035 - the spec's spelling

import pytest

from fluffy_nb import (
    Agent,
    AgentStatus,
    Context,
    DependencyConfig,
    DependencyLifecycle,
    DependencyType,
    ManualClock,
    Priority,
    ResourceRequirements,
    RetryPolicy,
    StateResult,
    StateStatus,
    TypedContextData,
    TypedDataError,
)
from fluffy_nb.engine._events import StateFinished, StateRetrying, StateStarted


# -- stand-ins for helpers the spec leaves undefined ---------------------------------------
def split_data(data, chunk_size):
    return [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]


async def process(chunk):
    await asyncio.sleep(0)
    return [x * 10 for x in chunk]


async def process_data(chunk=None):
    await asyncio.sleep(0)
    return [record["id"] for record in chunk or []]


def ends(name, log=None):
    """A stand-in state that records that it ran and ends its branch."""

    async def stand_in(context: Context) -> StateResult:
        if log is not None:
            log.append(name)
        return None

    stand_in.__name__ = name
    return stand_in


def goes_to(target, log=None, name="stand_in"):
    async def stand_in(context: Context) -> StateResult:
        if log is not None:
            log.append(name)
        return target

    return stand_in


# == Quick starts =============================================================================
async def test_features_quick_start_formats_processed_data():
    agent = Agent("my_workflow")

    async def process_data(context: Context) -> StateResult:
        context.set_state("data", "processed")
        return "format_data"

    async def format_data(context: Context) -> StateResult:
        data = context.get_state("data")
        context.set_state("result", data.upper())
        return None

    agent.add_state("process_data", process_data)
    agent.add_state("format_data", format_data)
    result = await agent.run()

    assert result.get_state("result") == "PROCESSED"
    assert agent.get_state("result") == "PROCESSED"
    assert agent.completed_states == ["process_data", "format_data"]
    assert agent.status is AgentStatus.COMPLETED


async def test_guide_quick_start_prints_the_greeting(capsys):
    agent = Agent("hello_workflow")

    async def process_data(context: Context) -> StateResult:
        result = "Hello, World!"
        context.set_state("greeting", result)
        return "format_output"

    async def format_output(context: Context) -> StateResult:
        greeting = context.get_state("greeting")
        print(f"Result: {greeting}")
        return None

    agent.add_state("process_data", process_data)
    agent.add_state("format_output", format_output)
    await agent.run()

    assert capsys.readouterr().out == "Result: Hello, World!\n"
    assert [agent.state_metadata[n].status for n in ("process_data", "format_output")] == [
        StateStatus.COMPLETED,
        StateStatus.COMPLETED,
    ]


# == State management =========================================================================
async def test_basic_state_operations_store_read_remove_and_check(capsys):
    seen = {}

    async def basic_state(context: Context) -> StateResult:
        context.set_state("user_name", "Alice")
        context.set_state("scores", [95, 87, 92])
        name = context.get_state("user_name")
        scores = context.get_state("scores", default=[])
        context.remove_state("user_name")
        if context.has_state("scores"):
            print("Scores exist")
        seen.update(name=name, scores=scores, missing=context.get_state("nope", default="dflt"))
        return "next_state"

    async def next_state(context: Context) -> StateResult:
        seen["has_user_name_later"] = context.has_state("user_name")
        seen["scores_later"] = context.get_state("scores")
        return None

    agent = Agent("basic")
    agent.add_state("basic_state", basic_state)
    agent.add_state("next_state", next_state)
    await agent.run()

    assert seen == {
        "name": "Alice",
        "scores": [95, 87, 92],
        "missing": "dflt",
        "has_user_name_later": False,
        "scores_later": [95, 87, 92],
    }
    assert capsys.readouterr().out == "Scores exist\n"


@dataclass
class UserProfile(TypedContextData):
    name: str
    age: int
    scores: List[float]  # noqa: UP006


async def test_typed_state_updates_a_field_and_reads_it_back_checked():
    got = {}

    async def typed_state(context: Context) -> StateResult:
        profile = UserProfile(name="Alice", age=28, scores=[95.0, 87.5])
        context.set_typed("user", profile)
        context.update_typed("user", age=29)
        user = context.get_typed("user", UserProfile)
        got["user"] = user
        return "next_state"

    async def next_state(context: Context) -> StateResult:
        got["later"] = context.get_typed("user", UserProfile)
        try:
            context.get_typed("user", dict)
        except TypedDataError as exc:
            got["mismatch"] = str(exc)
        return None

    agent = Agent("typed")
    agent.add_state("typed_state", typed_state)
    agent.add_state("next_state", next_state)
    result = await agent.run()

    assert got["user"] == UserProfile("Alice", 29, [95.0, 87.5])
    assert got["later"].age == 29
    assert "user" in got["mismatch"]
    assert "UserProfile" in got["mismatch"]
    assert "dict" in got["mismatch"]
    assert result.get_typed("user", UserProfile).age == 29


async def test_features_smart_context_untyped_and_typed_states():
    agent = Agent("smart_context")

    async def store_data(context: Context) -> StateResult:
        context.set_state("user_name", "Alice")
        context.set_state("scores", [95, 87, 92])
        return "handle_user"

    async def handle_user(context: Context) -> StateResult:
        profile = UserProfile(name="Alice", age=28, scores=[95.0, 87.5])
        context.set_typed("user", profile)
        context.update_typed("user", age=29)
        return "next_state"

    agent.add_state("store_data", store_data)
    agent.add_state("handle_user", handle_user)
    agent.add_state("next_state", ends("next_state"))
    result = await agent.run()

    assert result.get_state("scores") == [95, 87, 92]
    assert result.get_typed("user", UserProfile) == UserProfile("Alice", 29, [95.0, 87.5])
    with pytest.raises(TypedDataError, match="UserProfile"):
        result.get_typed("user", str)


# == Flow control ================================================================================
async def test_sequential_steps_run_one_after_another(record):
    async def step1(context: Context) -> StateResult:
        context.set_state("data", "processed")
        return "step2"

    async def step2(context: Context) -> StateResult:
        return "step3"

    async def step3(context: Context) -> StateResult:
        return None

    agent = Agent("seq")
    for f in (step1, step2, step3):
        agent.add_state(f.__name__, f)
    log = record(agent)
    await agent.run()

    assert [e.state for e in log.of(StateStarted)] == ["step1", "step2", "step3"]
    assert agent.get_state("data") == "processed"


@pytest.mark.parametrize(
    "branches", [["process_images", "process_text"], ["process_images", "process_text", "analyze_data"]]
)
async def test_parallel_flow_merge_waits_for_all_branches(branches):
    """'merge_results: Automatically waits for all parallel states to complete'."""
    release = asyncio.Event()
    finished: list[str] = []
    merges: list[list[str]] = []

    async def start_parallel(context: Context) -> StateResult:
        return list(branches)

    def branch(name):
        async def run(context: Context) -> StateResult:
            if name == branches[0]:
                await release.wait()  # the first branch is the slowest
            finished.append(name)
            if len(finished) == len(branches) - 1:
                release.set()
            return "merge_results"

        return run

    async def merge_results(context: Context) -> StateResult:
        merges.append(list(finished))
        return None

    agent = Agent("parallel")
    agent.add_state("start_parallel", start_parallel)
    for name in branches:
        agent.add_state(name, branch(name))
    agent.add_state("merge_results", merge_results)
    result = await agent.run()

    assert len(merges) == 1, "merge_results must run once"
    assert sorted(merges[0]) == sorted(branches), "merge_results ran before every branch finished"
    assert result.state_runs["merge_results"] == 1


async def test_two_half_second_states_in_a_list_run_concurrently():
    in_flight: list[str] = []
    peak = 0

    async def start(context: Context) -> StateResult:
        return ["a", "b"]

    async def sleeper(context: Context) -> StateResult:
        nonlocal peak
        in_flight.append(context.state_name)
        peak = max(peak, len(in_flight))
        await asyncio.sleep(0.5)
        in_flight.remove(context.state_name)
        return None

    agent = Agent("concurrency")
    agent.add_state("start", start)
    agent.add_state("a", sleeper)
    agent.add_state("b", sleeper)
    await agent.run()
    assert peak == 2, "the two 0.5 s states did not run at the same time"
    assert agent.completed_states == ["start", "a", "b"]


# == Dependencies =================================================================================
async def test_features_dependency_management_required_optional_parallel(record):
    background_may_finish = asyncio.Event()
    started_final: list[set[str]] = []

    async def prepare_data(context: Context) -> StateResult:
        await asyncio.sleep(0)
        context.set_state("prepared", True)
        return None

    async def validate_data(context: Context) -> StateResult:
        await asyncio.sleep(0)
        context.set_state("validated", True)
        return None

    async def background_task(context: Context) -> StateResult:
        await background_may_finish.wait()  # still running while final_step runs
        return None

    async def final_step(context: Context) -> StateResult:
        started_final.append(set(agent.completed_states))
        assert context.get_state("prepared")
        assert context.get_state("validated")
        background_may_finish.set()
        return None

    agent = Agent("deps")
    agent.add_state("prepare_data", prepare_data)
    agent.add_state("validate_data", validate_data)
    agent.add_state("background_task", background_task)
    agent.add_state(
        "final_step",
        final_step,
        dependencies={
            "prepare_data": DependencyType.REQUIRED,
            "validate_data": DependencyType.OPTIONAL,
            "background_task": DependencyType.PARALLEL,
        },
    )
    log = record(agent)
    await agent.run()

    assert started_final == [{"prepare_data", "validate_data"}]
    assert (
        "BLOCKED" in " ".join(type(e).__name__.upper() for e in log if getattr(e, "state", "") == "final_step")
        or log.kinds("final_step")[1] == "StateBlocked"
    )
    assert set(agent.completed_states) == {"prepare_data", "validate_data", "background_task", "final_step"}


async def test_guide_basic_dependencies_with_sequential():
    order: list[str] = []

    def step(name):
        async def run(context: Context) -> StateResult:
            order.append(name)
            return None

        return run

    agent = Agent("deps4")
    for name in ("prepare_data", "validate_data", "background_task", "previous_step"):
        agent.add_state(name, step(name))
    agent.add_state(
        "final_step",
        step("final_step"),
        dependencies={
            "prepare_data": DependencyType.REQUIRED,
            "validate_data": DependencyType.OPTIONAL,
            "background_task": DependencyType.PARALLEL,
            "previous_step": DependencyType.SEQUENTIAL,
        },
    )
    await agent.run()
    assert order[-1] == "final_step"
    assert sorted(order[:-1]) == ["background_task", "prepare_data", "previous_step", "validate_data"]


async def test_guide_advanced_dependency_config_periodic_with_condition():
    """complex_step runs once per completion of its dependency, only once ``ready`` is true."""
    clock = ManualClock()
    runs: list[int] = []

    async def dependency(context: Context) -> StateResult:
        n = context.get_state("ticks", 0) + 1
        context.set_state("ticks", n)
        if n == 2:
            context.set_state("ready", True)  # the first completion does not count: not ready
        return "wait_a_bit" if n < 3 else None

    async def wait_a_bit(context: Context) -> StateResult:
        await clock.sleep(301)  # later than interval=300, well within expiry=3600
        return "dependency"

    async def complex_step(context: Context) -> StateResult:
        runs.append(context.get_state("ticks"))
        return None

    agent = Agent("periodic", clock=clock)
    config = DependencyConfig(
        type=DependencyType.REQUIRED,
        lifecycle=DependencyLifecycle.PERIODIC,
        condition=lambda agent: agent.get_state("ready") == True,  # noqa: E712 - as in the spec
        expiry=3600,
        interval=300,
        timeout=60,
    )
    agent.add_state("dependency", dependency)
    agent.add_state("wait_a_bit", wait_a_bit)
    agent.add_state("complex_step", complex_step, dependencies={"dependency": config})
    task = asyncio.create_task(agent.run())
    for _ in range(2):
        await clock.wait_for_sleepers(1)
        await clock.advance(301)
    result = await asyncio.wait_for(task, 5)
    assert runs == [2, 3]
    assert result.state_runs["dependency"] == 3


# == Retries and errors ===========================================================================
async def test_retry_policy_retries_api_call_with_growing_delays(record):
    clock = ManualClock()
    calls: list[float] = []

    async def make_api_call(context: Context) -> StateResult:
        calls.append(clock.monotonic())
        if len(calls) < 3:
            raise ConnectionError("service unavailable")
        context.set_state("response", "ok")
        return None

    retry_policy = RetryPolicy(max_retries=3, initial_delay=1.0, max_delay=60.0, exponential_base=2.0, jitter=True)
    agent = Agent("retry", clock=clock)
    agent.add_state("api_call", make_api_call, retry_policy=retry_policy)
    log = record(agent)
    task = asyncio.create_task(agent.run())
    for step in (1, 2):  # each advance wakes exactly one retry (delays <= 1 s, then in [1, 2] s)
        await clock.wait_for_sleepers(1)
        await clock.advance(step)
    await asyncio.wait_for(task, 5)

    delays = [e.delay for e in log.of(StateRetrying)]
    assert len(delays) == 2
    assert 0.5 <= delays[0] <= 1.0
    assert 1.0 <= delays[1] <= 2.0
    assert len(calls) == 3
    assert agent.state_metadata["api_call"].attempts == 3
    assert agent.state_metadata["api_call"].status is StateStatus.COMPLETED
    assert agent.get_state("response") == "ok"


@pytest.mark.parametrize("fails", [False, True])
async def test_guide_error_states_route_to_handle_error(fails):
    order: list[str] = []

    async def critical_operation(context: Context) -> StateResult:
        try:
            if fails:
                raise RuntimeError("disk full")
            return "success_state"
        except Exception:
            return "handle_error"

    async def handle_error(context: Context) -> StateResult:
        order.append("handle_error")
        return "notification_state"

    agent = Agent("errors")
    agent.add_state("critical_operation", critical_operation)
    agent.add_state("handle_error", handle_error)
    agent.add_state("success_state", ends("success_state", order))
    agent.add_state("notification_state", ends("notification_state", order))
    await agent.run()
    assert order == (["handle_error", "notification_state"] if fails else ["success_state"])
    assert agent.status is AgentStatus.COMPLETED


async def test_features_cleanup_and_compensation_release_allocated_resources():
    released: list[str] = []

    async def release_resource(resource):
        released.append(resource)

    async def critical_operation(context: Context) -> StateResult:
        try:
            context.set_state("allocated_resources", ["gpu-0", "lock-a"])
            raise OSError("operation failed")  # the operation fails after allocating
            return "next_state"
        except Exception:
            return "cleanup_resources"

    async def cleanup_resources(context: Context) -> StateResult:
        resources = context.get_state("allocated_resources", [])
        for resource in resources:
            await release_resource(resource)
        return "handle_error"

    agent = Agent("compensation")
    agent.add_state("critical_operation", critical_operation)
    agent.add_state("cleanup_resources", cleanup_resources)
    agent.add_state("handle_error", ends("handle_error"))
    agent.add_state("next_state", ends("next_state"))
    await agent.run()
    assert released == ["gpu-0", "lock-a"]
    assert agent.completed_states == ["critical_operation", "cleanup_resources", "handle_error"]
    assert agent.state_metadata["next_state"].status is StateStatus.PENDING


# == Human in the loop ===========================================================================
@pytest.mark.parametrize(("reply", "route"), [("approve, looks great", "publish"), ("reject: too short", "revise")])
async def test_features_review_content_routes_on_the_human_answer(answer_with, reply, route):
    order: list[str] = []

    async def review_content(context: Context) -> StateResult:
        content = context.get_state("content")
        assert content == "draft"
        feedback = await context.human_in_the_loop(
            prompt="Review this content:", timeout=300, validator=lambda x: len(x) > 10
        )
        if "approve" in feedback.lower():
            return "publish"
        else:
            return "revise"

    agent = Agent("review")
    agent.set_state("content", "draft")
    agent.add_state("review_content", review_content)
    agent.add_state("publish", ends("publish", order))
    agent.add_state("revise", ends("revise", order))
    prompts = answer_with(agent, reply)
    await asyncio.wait_for(agent.run(), 5)
    assert prompts == ["Review this content:"]
    assert order == [route]


async def test_guide_validated_human_input_sets_the_score(answer_with):
    async def get_user_input(context: Context) -> StateResult:
        score = await context.human_in_the_loop(
            prompt="Enter score (0-100):",
            timeout=60,
            validator=lambda x: x.isdigit() and 0 <= int(x) <= 100,
            default="50",
        )
        context.set_state("user_score", int(score))
        return "process_score"

    agent = Agent("score")
    agent.add_state("get_user_input", get_user_input)
    agent.add_state("process_score", ends("process_score"))
    answer_with(agent, "87")
    await asyncio.wait_for(agent.run(), 5)
    assert agent.get_state("user_score") == 87
    assert agent.completed_states == ["get_user_input", "process_score"]


# == Execution control and status ================================================================
async def test_state_lifecycle_monitored_state_moves_to_error_route_on_failure(record):
    async def failing_process_data():
        raise ValueError("bad data")

    statuses = []

    async def monitored_state(context: Context) -> StateResult:
        statuses.append(agent.state_metadata["monitored_state"].status)
        try:
            await failing_process_data()
            context.set_state("success", True)
            return "next_state"
        except Exception as e:
            context.set_state("error", str(e))
            return "handle_error"

    agent = Agent("lifecycle")
    agent.add_state("monitored_state", monitored_state)
    agent.add_state("next_state", ends("next_state"))
    agent.add_state("handle_error", ends("handle_error"))
    assert agent.status is AgentStatus.IDLE
    assert agent.state_metadata["monitored_state"].status is StateStatus.PENDING
    await agent.run()
    assert statuses == [StateStatus.RUNNING]
    assert agent.get_state("error") == "bad data"
    assert agent.state_metadata["monitored_state"].status is StateStatus.COMPLETED
    assert agent.state_metadata["handle_error"].status is StateStatus.COMPLETED
    assert agent.state_metadata["next_state"].status is StateStatus.PENDING
    metrics = {
        "completed": len(agent.completed_states),
        "running": len(agent.latest_run.scheduler.running),
        "pending": len(agent.priority_queue),
    }
    assert metrics == {"completed": 2, "running": 0, "pending": 0}


# == Advanced patterns ===========================================================================
@pytest.mark.parametrize(
    ("size", "expected"),
    [(2000, {"process_chunk_1", "process_chunk_2"}), (500, {"sequential_process"}), (10, {"simple_process"})],
)
async def test_conditional_routing_by_data_size(size, expected):
    ran: list[str] = []

    async def route_processing(context: Context) -> StateResult:
        data_size = len(context.get_state("data", []))
        if data_size > 1000:
            return ["process_chunk_1", "process_chunk_2"]
        elif data_size > 100:
            return "sequential_process"
        else:
            return "simple_process"

    agent = Agent("route")
    agent.add_state("route_processing", route_processing)
    for name in ("process_chunk_1", "process_chunk_2", "sequential_process", "simple_process"):
        agent.add_state(name, ends(name, ran))
    agent.set_state("data", list(range(size)))
    await agent.run(start="route_processing")
    assert set(ran) == expected
    assert len(ran) == len(expected)


async def test_dynamic_state_generation_chunk_loop_added_before_run():
    agent = Agent("dynamic")
    large_data = list(range(25))
    data_chunks = split_data(large_data, chunk_size=10)

    for i, _chunk in enumerate(data_chunks):

        async def process_chunk(context: Context, chunk_id=i) -> StateResult:
            chunk_data = data_chunks[chunk_id]
            result = await process(chunk_data)
            context.set_state(f"result_{chunk_id}", result)
            return "merge_results"

        agent.add_state(f"process_chunk_{i}", process_chunk, resources=ResourceRequirements(cpu_units=1.0))

    merged = []

    async def merge_results(context: Context) -> StateResult:
        merged.append([x for i in range(len(data_chunks)) for x in context.get_state(f"result_{i}")])
        return None

    agent.add_state("merge_results", merge_results)
    await agent.run()
    assert merged == [[x * 10 for x in large_data]]


async def test_dynamic_state_generation_at_run_time_then_merge_once():
    """The chunk loop run inside a state: the new states run in parallel and merge joins them."""
    agent = Agent("dynamic_runtime")
    merged = []

    async def plan(context: Context) -> StateResult:
        large_data = context.get_state("large_data")
        data_chunks = split_data(large_data, chunk_size=4)
        for i, _chunk in enumerate(data_chunks):

            async def process_chunk(context: Context, chunk_id=i) -> StateResult:
                result = await process(data_chunks[chunk_id])
                context.set_state(f"result_{chunk_id}", result)
                return "merge_results"

            agent.add_state(f"process_chunk_{i}", process_chunk, resources=ResourceRequirements(cpu_units=1.0))
        context.set_state("n_chunks", len(data_chunks))
        return [f"process_chunk_{i}" for i in range(len(data_chunks))]

    async def merge_results(context: Context) -> StateResult:
        n = context.get_state("n_chunks")
        merged.append([x for i in range(n) for x in context.get_state(f"result_{i}", ["MISSING"])])
        return None

    agent.add_state("plan", plan)
    agent.add_state("merge_results", merge_results)
    agent.set_state("large_data", list(range(10)))
    result = await agent.run()
    assert merged == [[x * 10 for x in range(10)]]
    assert result.state_runs == {
        "plan": 1,
        "process_chunk_0": 1,
        "process_chunk_1": 1,
        "process_chunk_2": 1,
        "merge_results": 1,
    }


# == Complete example with all features ==========================================================
@dataclass
class ProcessingJob(TypedContextData):
    job_id: str
    data: List[dict]  # noqa: UP006
    config: Dict[str, any]  # noqa: UP006 - the spec's spelling
    timestamp: float


async def test_complete_example_with_all_features(answer_with, record):
    agent = Agent("complex_workflow", max_concurrent=5, checkpoint_interval=300)

    async def initialize_job(context: Context) -> StateResult:
        job = ProcessingJob(
            job_id="job_001",
            data=[{"id": i} for i in range(100)],
            config={"batch_size": 10},
            timestamp=time.time(),
        )
        context.set_typed("job", job)
        chunks = split_data(job.data, job.config["batch_size"])
        for i, chunk in enumerate(chunks):
            context.set_state(f"chunk_{i}", chunk)
        return ["process_chunk_0", "process_chunk_1", "process_chunk_2"]

    async def process_chunk(context: Context) -> StateResult:
        chunk_id = context.get_state("chunk_id")
        chunk = context.get_state(f"chunk_{chunk_id}")
        try:
            result = await process_data(chunk)
            context.set_state(f"result_{chunk_id}", result)
            return "merge_results"
        except Exception as e:
            context.set_state("error", str(e))
            return "handle_error"

    merged_after: list[set[str]] = []

    async def merge_results(context: Context) -> StateResult:
        merged_after.append(set(agent.completed_states))
        job = context.get_typed("job", ProcessingJob)
        assert job.job_id == "job_001"
        results = []
        for i in range(10):
            chunk_result = context.get_state(f"result_{i}")
            if chunk_result:
                results.extend(chunk_result)
        context.set_state("final_results", results)
        return "human_review"

    async def human_review(context: Context) -> StateResult:
        results = context.get_state("final_results")
        assert results
        feedback = await context.human_in_the_loop(prompt="Review results. Approve? (yes/no):", timeout=300)
        if "yes" in feedback.lower():
            return "finalize_job"
        else:
            return "handle_rejection"

    # stand-ins for the chunk states it routes to: each processes its own chunk as process_chunk does
    def chunk_worker(i):
        async def worker(context: Context) -> StateResult:
            await asyncio.sleep(0.01 * (3 - i))  # finish in reverse order
            context.set_state(f"result_{i}", await process_data(context.get_state(f"chunk_{i}")))
            return "merge_results"

        return worker

    agent.add_state(
        "initialize_job",
        initialize_job,
        resources=ResourceRequirements(cpu_units=1.0, memory_mb=512, priority=Priority.HIGH),
    )
    agent.add_state(
        "process_chunk",
        process_chunk,
        resources=ResourceRequirements(cpu_units=2.0, memory_mb=1024),
        retry_policy=RetryPolicy(max_retries=3, initial_delay=1.0),
        dependencies={"initialize_job": DependencyType.REQUIRED},
    )
    agent.add_state(
        "merge_results",
        merge_results,
        resources=ResourceRequirements(cpu_units=2.0, memory_mb=2048),
        dependencies={"process_chunk": DependencyType.REQUIRED},
    )
    agent.add_state("human_review", human_review)
    for i in range(3):
        agent.add_state(f"process_chunk_{i}", chunk_worker(i))
    finalized: list[str] = []
    agent.add_state("finalize_job", ends("finalize_job", finalized))
    agent.add_state("handle_rejection", ends("handle_rejection", finalized))
    agent.add_state("handle_error", ends("handle_error", finalized))
    prompts = answer_with(agent, "Yes, ship it")
    log = record(agent)

    await asyncio.wait_for(agent.run(timeout=3600), 10)

    assert prompts == ["Review results. Approve? (yes/no):"]
    assert finalized == ["finalize_job"]
    assert len(merged_after) == 1, "merge_results must run once, after every chunk"
    assert {"initialize_job", "process_chunk", "process_chunk_0", "process_chunk_1", "process_chunk_2"} <= merged_after[
        0
    ]
    assert agent.get_state("final_results") == list(range(30))
    assert agent.status is AgentStatus.COMPLETED
    running, peak = 0, 0
    for e in log:
        if isinstance(e, StateStarted):
            running += 1
            peak = max(peak, running)
        elif isinstance(e, StateFinished):
            running -= 1
    assert peak <= 5


# == Use cases =====================================================================================
@dataclass
class Article(TypedContextData):
    title: str
    content: str
    keywords: List[str]  # noqa: UP006


async def test_llm_content_pipeline_regenerates_short_content_then_completes_once():
    order: list[str] = []

    async def generate_content(context: Context) -> StateResult:
        article = Article(title="AI in 2024", content="Generated content...", keywords=["AI", "future"])
        context.set_typed("article", article)
        return ["check_quality", "generate_images"]

    async def check_quality(context: Context) -> StateResult:
        order.append("check_quality")
        article = context.get_typed("article", Article)
        if len(article.content) < 1000:
            return "regenerate_content"
        return "await_completion"

    async def regenerate_content(context: Context) -> StateResult:  # stand-in: a longer draft
        order.append("regenerate_content")
        context.update_typed("article", content="x" * 1200)
        return "check_quality"

    agent = Agent("content_generator")
    agent.add_state("generate_content", generate_content)
    agent.add_state("check_quality", check_quality)
    agent.add_state("regenerate_content", regenerate_content)
    agent.add_state("generate_images", goes_to("await_completion", order, "generate_images"))
    agent.add_state("await_completion", ends("await_completion", order))
    result = await agent.run()
    assert result.state_runs["check_quality"] == 2
    assert order.count("await_completion") == 1
    assert order[-1] == "await_completion"
    assert result.get_typed("article", Article).content == "x" * 1200


@dataclass
class LLMResponse(TypedContextData):
    text: str
    confidence: float
    tokens_used: int
    model: str


@pytest.mark.parametrize("confidence", [0.95, 0.5])
async def test_guide_llm_pipeline_joins_quality_check_and_entities(confidence):
    order: list[str] = []

    async def generate_text(context: Context) -> StateResult:
        n = context.get_state("generations", 0) + 1
        context.set_state("generations", n)
        response = LLMResponse(
            text="AI generated text here...", confidence=confidence if n == 1 else 0.99, tokens_used=150, model="gpt-4"
        )
        context.set_typed("llm_response", response)
        return ["check_quality", "extract_entities"]

    async def check_quality(context: Context) -> StateResult:
        response = context.get_typed("llm_response", LLMResponse)
        if response.confidence < 0.9:
            return "regenerate_text"
        return "await_processing"

    async def extract_entities(context: Context) -> StateResult:
        response = context.get_typed("llm_response", LLMResponse)
        assert response.model == "gpt-4"
        order.append("extract_entities")
        return "await_processing"

    agent = Agent("llm_processor")
    agent.add_state("generate_text", generate_text)
    agent.add_state("check_quality", check_quality)
    agent.add_state("extract_entities", extract_entities)
    agent.add_state("regenerate_text", goes_to("generate_text"))
    agent.add_state("await_processing", ends("await_processing", order))
    result = await agent.run()
    assert order[-1] == "await_processing"
    if confidence > 0.9:
        assert result.state_runs["await_processing"] == 1
        assert order == ["extract_entities", "await_processing"]
    else:
        assert result.state_runs["generate_text"] == 2
        assert result.state_runs["await_processing"] >= 1


async def test_guide_text_processing_pipeline():
    agent = Agent("text_processor")

    async def clean_text(context: Context) -> StateResult:
        text = "Hello   World!  "
        cleaned = text.strip().replace("  ", " ")
        context.set_state("cleaned_text", cleaned)
        return "analyze_text"

    async def analyze_text(context: Context) -> StateResult:
        text = context.get_state("cleaned_text")
        stats = {"length": len(text), "words": len(text.split()), "has_punctuation": "!" in text}
        context.set_state("stats", stats)
        return "format_results"

    async def format_results(context: Context) -> StateResult:
        stats = context.get_state("stats")
        text = context.get_state("cleaned_text")
        result = {"text": text, "analysis": stats, "timestamp": time.time()}
        context.set_state("final_result", result)
        return None

    agent.add_state("clean_text", clean_text)
    agent.add_state("analyze_text", analyze_text)
    agent.add_state("format_results", format_results)
    await agent.run()
    final = agent.get_state("final_result")
    assert final["text"] == "Hello  World!"
    assert final["analysis"] == {"length": 13, "words": 2, "has_punctuation": True}


@dataclass
class DataBatch(TypedContextData):
    data: List[dict]  # noqa: UP006
    batch_id: str
    timestamp: float


@pytest.mark.parametrize("valid", [True, False])
async def test_guide_data_pipeline_validates_and_transforms_in_parallel(valid):
    ran: list[str] = []

    async def load_data(context: Context) -> StateResult:
        batch = DataBatch(
            data=[{"id": 1 if valid else "1", "value": "test"}], batch_id="batch_001", timestamp=time.time()
        )
        context.set_typed("batch", batch)
        return ["validate_data", "transform_data"]

    async def validate_data(context: Context) -> StateResult:
        batch = context.get_typed("batch", DataBatch)
        valid = all(isinstance(record.get("id"), int) for record in batch.data)
        if not valid:
            return "handle_error"
        context.set_state("validation_passed", True)
        return "await_processing"

    agent = Agent("data_processor")
    agent.add_state("load_data", load_data, resources=ResourceRequirements(cpu_units=1.0, memory_mb=512))
    agent.add_state("validate_data", validate_data)
    agent.add_state("transform_data", goes_to("await_processing", ran, "transform_data"))
    agent.add_state("handle_error", ends("handle_error", ran))
    agent.add_state("await_processing", ends("await_processing", ran))
    await agent.run()
    if valid:
        assert ran == ["transform_data", "await_processing"]
        assert agent.get_state("validation_passed") is True
    else:
        assert sorted(ran) == ["await_processing", "handle_error", "transform_data"]
        assert agent.get_state("validation_passed") is None


@dataclass
class FeatureDataBatch(TypedContextData):
    records: List[dict]  # noqa: UP006
    batch_id: str


async def test_features_data_processing_pipeline_fans_out_three_chunks():
    processed: list[int] = []

    async def load(context: Context) -> StateResult:  # stand-in: supplies the typed batch
        context.set_typed("batch", FeatureDataBatch(records=[{"id": i} for i in range(9)], batch_id="b1"))
        return "process_batch"

    async def process_batch(context: Context) -> StateResult:
        batch = context.get_typed("batch", FeatureDataBatch)
        chunks = split_data(batch.records, 3)
        for i, chunk in enumerate(chunks):
            context.set_state(f"chunk_{i}", chunk)
        return [f"process_chunk_{i}" for i in range(3)]

    def chunk_state(i):
        async def process_chunk(context: Context) -> StateResult:
            data = context.get_state(f"chunk_{i}")
            processed.extend(r["id"] for r in data)
            return "merge_results"

        return process_chunk

    merges = []
    agent = Agent("batches")
    agent.add_state("load", load)
    agent.add_state("process_batch", process_batch)
    for i in range(3):
        agent.add_state(f"process_chunk_{i}", chunk_state(i), next=["merge_results"])
    agent.add_state("merge_results", goes_to(None, merges, "merge"))
    await agent.run()
    assert sorted(processed) == list(range(9))
    assert merges == ["merge"]


@dataclass
class TrainingConfig(TypedContextData):
    model_name: str
    batch_size: int
    epochs: int
    learning_rate: float


@dataclass
class TrainingMetrics(TypedContextData):
    loss: float
    accuracy: float
    epoch: int


async def test_guide_ml_training_pipeline_records_every_epoch():
    async def prepare_training(context: Context) -> StateResult:
        config = TrainingConfig(model_name="my_model", batch_size=32, epochs=10, learning_rate=0.001)
        context.set_typed("config", config)
        return "train_model"

    async def train_model(context: Context) -> StateResult:
        config = context.get_typed("config", TrainingConfig)
        for epoch in range(config.epochs):
            metrics = TrainingMetrics(loss=0.1, accuracy=0.95, epoch=epoch)
            context.set_typed(f"metrics_epoch_{epoch}", metrics)
            if metrics.accuracy > 0.98:
                return "evaluate_model"
        return "evaluate_model"

    agent = Agent("trainer")
    agent.add_state("prepare_training", prepare_training)
    agent.add_state("train_model", train_model)
    agent.add_state("evaluate_model", ends("evaluate_model"))
    result = await agent.run()
    assert [result.get_typed(f"metrics_epoch_{e}", TrainingMetrics).epoch for e in range(10)] == list(range(10))
    assert agent.completed_states == ["prepare_training", "train_model", "evaluate_model"]


async def test_features_ml_training_writes_epoch_metrics():
    @dataclass
    class FeatureTrainingConfig(TypedContextData):
        model_type: str
        batch_size: int
        epochs: int

    async def setup(context: Context) -> StateResult:
        context.set_typed("config", FeatureTrainingConfig("cnn", 16, 3))
        return "train_model"

    async def train_model(context: Context) -> StateResult:
        config = context.get_typed("config", FeatureTrainingConfig)
        for epoch in range(config.epochs):
            metrics = {"loss": 0.1, "accuracy": 0.95}
            context.set_state(f"metrics_epoch_{epoch}", metrics)
            if metrics["accuracy"] > 0.98:
                return "evaluate"
        return "evaluate"

    agent = Agent("trainer2")
    agent.add_state("setup", setup)
    agent.add_state("train_model", train_model)
    agent.add_state("evaluate", ends("evaluate"))
    await agent.run()
    assert sorted(k for k in agent.context.keys() if k.startswith("metrics_epoch_")) == [
        "metrics_epoch_0",
        "metrics_epoch_1",
        "metrics_epoch_2",
    ]


@dataclass
class ServiceTicket(TypedContextData):
    id: str
    content: str
    priority: str
    category: str


@pytest.mark.parametrize(
    ("priority", "category", "route"),
    [
        ("high", "billing", "urgent_response"),
        ("low", "technical", "technical_review"),
        ("low", "billing", "standard_response"),
    ],
)
async def test_customer_service_routes_tickets(priority, category, route):
    ran: list[str] = []

    async def intake(context: Context) -> StateResult:  # stand-in: the ticket arrives
        context.set_typed("ticket", ServiceTicket("t1", "help", priority, category))
        return "route_ticket"

    async def route_ticket(context: Context) -> StateResult:
        ticket = context.get_typed("ticket", ServiceTicket)
        if ticket.priority == "high":
            return "urgent_response"
        elif ticket.category == "technical":
            return "technical_review"
        else:
            return "standard_response"

    async def urgent_response(context: Context) -> StateResult:
        ticket = context.get_typed("ticket", ServiceTicket)
        assert ticket.id == "t1"
        ran.append("urgent_response")
        return "human_review"

    agent = Agent("service")
    agent.add_state("intake", intake)
    agent.add_state("route_ticket", route_ticket)
    agent.add_state("urgent_response", urgent_response)
    agent.add_state("technical_review", ends("technical_review", ran))
    agent.add_state("standard_response", ends("standard_response", ran))
    agent.add_state("human_review", ends("human_review", ran))
    await agent.run()
    assert ran == ([route, "human_review"] if route == "urgent_response" else [route])


async def test_content_management_four_way_fan_out_joins_at_await_completion():
    order: list[str] = []

    async def process_article(context: Context) -> StateResult:
        article = context.get_typed("article", Article)
        assert article.title == "t"
        return ["spell_check", "generate_summary", "extract_keywords", "create_images"]

    async def spell_check(context: Context) -> StateResult:
        order.append("spell_check")
        return "await_completion"

    async def generate_summary(context: Context) -> StateResult:
        await asyncio.sleep(0.01)
        order.append("generate_summary")
        return "await_completion"

    async def create_images(context: Context) -> StateResult:
        await asyncio.sleep(0.02)
        order.append("create_images")
        return "await_completion"

    async def await_completion(context: Context) -> StateResult:
        order.append("await_completion")
        return "publish"

    async def submit(context: Context) -> StateResult:
        context.set_typed("article", Article("t", "body", []))
        return "process_article"

    agent = Agent("cms")
    agent.add_state("submit", submit)
    agent.add_state("process_article", process_article)
    for f in (spell_check, generate_summary, create_images, await_completion):
        agent.add_state(f.__name__, f)
    agent.add_state("extract_keywords", goes_to("await_completion", order, "extract_keywords"))
    agent.add_state("publish", ends("publish", order))
    await agent.run()
    assert order[-2:] == ["await_completion", "publish"]
    assert sorted(order[:-2]) == ["create_images", "extract_keywords", "generate_summary", "spell_check"]


@dataclass
class TaggedTicket(TypedContextData):
    priority: str
    tags: List[str]  # noqa: UP006


@pytest.mark.parametrize(
    ("priority", "tags", "route"),
    [
        ("high", [], ["immediate_response", "human_review"]),
        ("low", ["bug"], ["technical_review"]),
        ("low", ["billing"], ["standard_response"]),
    ],
)
async def test_guide_customer_service_handle_ticket(priority, tags, route):
    ran: list[str] = []

    async def generate_priority_response():
        return "We are on it."

    async def intake(context: Context) -> StateResult:  # stand-in: the ticket arrives
        context.set_typed("ticket", TaggedTicket(priority, tags))
        return "handle_ticket"

    async def handle_ticket(context: Context) -> StateResult:
        ticket = context.get_typed("ticket", TaggedTicket)
        if ticket.priority == "high":
            return "immediate_response"
        elif "bug" in ticket.tags:
            return "technical_review"
        else:
            return "standard_response"

    async def immediate_response(context: Context) -> StateResult:
        response = await generate_priority_response()
        context.set_state("response", response)
        ran.append("immediate_response")
        return "human_review"

    agent = Agent("tickets")
    agent.add_state("intake", intake)
    agent.add_state("handle_ticket", handle_ticket)
    agent.add_state("immediate_response", immediate_response)
    for name in ("technical_review", "standard_response", "human_review"):
        agent.add_state(name, ends(name, ran))
    await agent.run()
    assert ran == route


@dataclass
class Dataset(TypedContextData):
    data: List[int]  # noqa: UP006


@pytest.mark.parametrize("size", [20_000, 50])
async def test_guide_data_analysis_pipeline_splits_large_datasets(size):
    def analyze_data(data):
        return {"n": len(data), "sum": sum(data)}

    async def load(context: Context) -> StateResult:  # stand-in: the dataset arrives
        context.set_typed("dataset", Dataset(list(range(size))))
        return "analyze_dataset"

    async def analyze_dataset(context: Context) -> StateResult:
        dataset = context.get_typed("dataset", Dataset)
        if len(dataset.data) > 10000:
            chunks = split_data(dataset.data, 5)
            for i, chunk in enumerate(chunks):
                context.set_state(f"chunk_{i}", chunk)
            return ["process_chunk_0", "process_chunk_1", "process_chunk_2"]
        else:
            return "simple_process"

    def chunk_state(chunk_id):  # process_chunk, with its chunk_id bound (the spec reads it from context)
        async def process_chunk(context: Context) -> StateResult:
            data = context.get_state(f"chunk_{chunk_id}")
            results = analyze_data(data)
            context.set_state(f"results_{chunk_id}", results)
            return "merge_results"

        return process_chunk

    merged = []

    async def merge_results(context: Context) -> StateResult:
        merged.append([context.get_state(f"results_{i}") for i in range(3)])
        return None

    agent = Agent("analysis")
    agent.add_state("load", load)
    agent.add_state("analyze_dataset", analyze_dataset)
    for i in range(3):
        agent.add_state(f"process_chunk_{i}", chunk_state(i))
    agent.add_state("merge_results", merge_results)
    agent.add_state("simple_process", ends("simple_process"))
    result = await agent.run()
    if size > 10000:
        assert merged == [[{"n": 5, "sum": 10}, {"n": 5, "sum": 35}, {"n": 5, "sum": 60}]]
        assert result.state_runs["merge_results"] == 1
    else:
        assert merged == []
        assert result.completed_states == ["load", "analyze_dataset", "simple_process"]
