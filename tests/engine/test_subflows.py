"""Sub-workflows: an agent as a state of another, run nested in the parent's run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fluffy_nb import (
    Agent,
    AgentStatus,
    ConfigurationError,
    DependencyConfig,
    DependencyType,
    MemoryStore,
    ResourceError,
    ResourcePool,
    ResourceRequirements,
    ResourceType,
    StateFailedError,
)
from fluffy_nb.engine._events import StateFinished, StateStarted
from tests._wait import until


def researcher(log: list[str] | None = None) -> Agent:
    """A child agent: search, then summarise; reads ``topic``, writes ``notes``."""
    child = Agent("researcher")

    async def search(ctx: Any) -> str:
        if log is not None:
            log.append(f"search {ctx.get_state('topic')}")
        ctx.set_state("hits", [f"{ctx.get_state('topic')}-1", f"{ctx.get_state('topic')}-2"])
        return "summarise"

    async def summarise(ctx: Any) -> None:
        if log is not None:
            log.append(f"summarise {ctx.get_state('topic')}")
        ctx.set_state("notes", " + ".join(ctx.get_state("hits")))

    child.add_state("search", search)
    child.add_state("summarise", summarise)
    return child


async def test_keys_are_copied_in_and_out_and_the_child_context_is_its_own() -> None:
    parent = Agent("team")

    async def plan(ctx: Any) -> str:
        ctx.set_state("question", "owls")
        ctx.set_state("secret", "parent only")
        return "research"

    async def report(ctx: Any) -> None:
        ctx.set_state("report", f"report on {ctx.get_state('findings')}")

    parent.add_state("plan", plan)
    parent.add_state("research", researcher(), inputs={"question": "topic"}, outputs={"notes": "findings"},
                     next="report")
    parent.add_state("report", report)
    result = await parent.run()
    assert result.status is AgentStatus.COMPLETED
    assert result.get_state("findings") == "owls-1 + owls-2"
    assert result.get_state("report") == "report on owls-1 + owls-2"
    assert "hits" not in result.shared_state  # the child's own keys stay in the child
    child_run = parent.states["research"].func.child.latest_run
    assert child_run.parent_run_id == result.run_id
    assert child_run.get_state("secret") is None  # undeclared keys are not copied in
    assert child_run.completed_states == ["search", "summarise"]


async def test_a_missing_input_key_fails_the_state_naming_the_key() -> None:
    parent = Agent("team")
    parent.add_state("research", researcher(), inputs=["topic"])
    with pytest.raises(StateFailedError, match="'topic'"):
        await parent.run()


def test_bad_inputs_and_outputs_are_refused_at_add_state() -> None:
    parent = Agent("team")
    with pytest.raises(ConfigurationError, match="inputs"):
        parent.add_state("research", researcher(), inputs=[1])

    async def plain(ctx: Any) -> None:
        return None

    with pytest.raises(ConfigurationError, match="sub-workflow"):
        parent.add_state("plain", plain, outputs=["x"])
    with pytest.raises(ConfigurationError, match="itself"):
        parent.add_state("me", parent)


async def test_one_child_definition_in_two_parents_at_once_and_twice_in_one() -> None:
    gate = asyncio.Event()
    child = Agent("worker")
    inside: list[str] = []

    async def work(ctx: Any) -> None:
        inside.append(ctx.get_state("who"))
        await gate.wait()
        ctx.set_state("out", f"done by {ctx.get_state('who')}")

    child.add_state("work", work)

    def parent(name: str) -> Agent:
        agent = Agent(name)

        async def start(ctx: Any) -> list[str]:
            ctx.set_state("a", f"{name}-a")
            ctx.set_state("b", f"{name}-b")
            return ["first", "second"]

        agent.add_state("start", start)
        agent.add_state("first", child, inputs={"a": "who"}, outputs={"out": "first_out"})
        agent.add_state("second", child, inputs={"b": "who"}, outputs={"out": "second_out"})
        return agent

    p1, p2 = parent("p1"), parent("p2")
    t1, t2 = asyncio.ensure_future(p1.run()), asyncio.ensure_future(p2.run())
    await until(lambda: len(inside) == 4, "four child runs inside at once")
    assert child.live_runs_count() == 4
    gate.set()
    r1, r2 = await t1, await t2
    assert (r1.get_state("first_out"), r1.get_state("second_out")) == ("done by p1-a", "done by p1-b")
    assert (r2.get_state("first_out"), r2.get_state("second_out")) == ("done by p2-a", "done by p2-b")


async def test_a_grandchild_runs_nested_two_levels_deep() -> None:
    inner = Agent("inner")

    async def deep(ctx: Any) -> None:
        ctx.set_state("depth", ctx.get_state("depth", 0) + 2)

    inner.add_state("deep", deep)
    middle = Agent("middle")
    middle.add_state("go_in", inner, inputs=["depth"], outputs=["depth"])
    top = Agent("top")
    top.set_state("depth", 1)
    top.add_state("middle", middle, inputs=["depth"], outputs=["depth"])
    result = await top.run()
    assert result.get_state("depth") == 3
    assert inner.latest_run.name == "top/middle/go_in"


async def test_a_child_failure_fails_the_parent_state_and_on_error_routes_it() -> None:
    child = Agent("flaky")

    async def boom(ctx: Any) -> None:
        raise ConnectionError("search engine down")

    child.add_state("boom", boom)
    unrouted = Agent("unrouted")
    unrouted.add_state("research", child)
    with pytest.raises(StateFailedError, match="search engine down"):
        await unrouted.run()

    routed = Agent("routed")

    async def fallback(ctx: Any) -> None:
        ctx.set_state("why", str(ctx.last_error))

    routed.add_state("research", child, on_error="fallback")
    routed.add_state("fallback", fallback)
    result = await routed.run()
    assert result.status is AgentStatus.COMPLETED
    assert "search engine down" in result.get_state("why")


async def test_cancelling_the_parent_cancels_the_child_run() -> None:
    child = Agent("slow")
    entered = asyncio.Event()
    cleaned: list[str] = []

    async def wait_forever(ctx: Any) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("child cleaned up")

    child.add_state("wait_forever", wait_forever)
    parent = Agent("boss")
    parent.add_state("delegate", child)
    handle = parent.start()
    await entered.wait()
    child_run = child.latest_run
    assert child_run.active
    await parent.cancel_all()
    await asyncio.gather(handle.task, return_exceptions=True)
    assert parent.status is AgentStatus.CANCELLED
    assert child_run.status is AgentStatus.CANCELLED
    assert cleaned == ["child cleaned up"]


async def test_pausing_the_parent_pauses_the_child_and_resume_resumes_it() -> None:
    child = Agent("steps")
    step_two = asyncio.Event()
    ran: list[str] = []

    async def one(ctx: Any) -> str:
        ran.append("one")
        await step_two.wait()
        return "two"

    async def two(ctx: Any) -> None:
        ran.append("two")

    child.add_state("one", one)
    child.add_state("two", two)
    parent = Agent("boss", store=MemoryStore())
    parent.add_state("delegate", child)
    handle = parent.start()
    await until(lambda: ran == ["one"], "the child's first state runs")
    pausing = asyncio.ensure_future(parent.pause())
    await until(lambda: child.latest_run.paused, "the pause reaches the child")
    step_two.set()
    cp = await pausing
    assert cp.agent_status is AgentStatus.PAUSED
    assert child.latest_run.status is AgentStatus.PAUSED
    assert ran == ["one"]  # the child's next state did not start while paused
    await parent.resume()
    result = await handle.task
    assert result.status is AgentStatus.COMPLETED
    assert ran == ["one", "two"]


async def test_a_human_request_in_a_grandchild_is_answered_through_the_parent() -> None:
    inner = Agent("reviewer")

    async def review(ctx: Any) -> None:
        verdict = await ctx.human_in_the_loop("approve the draft?", choices=["yes", "no"])
        ctx.set_state("verdict", verdict)

    inner.add_state("review", review)
    middle = Agent("editor")
    middle.add_state("review_step", inner, outputs=["verdict"])
    top = Agent("publisher", responder=None)
    seen: list[Any] = []
    top.events.subscribe(seen.append)
    top.add_state("edit", middle, outputs=["verdict"])
    handle = top.start()
    await until(lambda: top.pending_requests(), "the grandchild's question reaches the parent")
    [req] = top.pending_requests()
    assert req.prompt == "approve the draft?"
    assert handle.run.pending_requests() == [req]  # the parent run's own listing has it too
    assert handle.run.snapshot().waiting_for_human == (req,)
    asked = [e for e in seen if type(e).__name__ == "HumanRequested"]
    assert [e.state for e in asked] == ["edit/review_step/review"]
    assert asked[0].run_id == top.run_id
    assert top.answer(req.request_id, "yes")
    result = await handle.task
    assert result.get_state("verdict") == "yes"


async def test_child_events_reach_the_parent_named_by_their_path() -> None:
    parent = Agent("team")
    parent.set_state("topic", "bats")
    parent.add_state("research", researcher(), inputs=["topic"])
    seen: list[Any] = []
    parent.events.subscribe(seen.append)
    result = await parent.run()
    started = [e.state for e in seen if isinstance(e, StateStarted)]
    assert started == ["research", "research/search", "research/summarise"]
    assert {e.run_id for e in seen if isinstance(e, StateFinished)} == {result.run_id}


async def test_child_checkpoints_go_to_the_parent_store_linked_to_the_parent_run() -> None:
    store = MemoryStore()
    parent = Agent("team", store=store, durable=True)
    parent.set_state("topic", "moths")
    parent.add_state("research", researcher(), inputs=["topic"])
    result = await parent.run()
    rows = store.list(agent_name="team/research")
    assert rows, "the child's checkpoints are in the parent's store under the path team/research"
    last = store.get(rows[-1].checkpoint_id)
    assert last.parent_run_id == result.run_id
    assert last.parent_state == "research"
    assert last.agent_status is AgentStatus.COMPLETED
    assert last.completed_states == ["search", "summarise"]


async def test_a_restored_parent_resumes_inside_the_child() -> None:
    store = MemoryStore()
    log: list[str] = []
    block = asyncio.Event()
    child = researcher(log)

    async def careful(ctx: Any) -> None:
        log.append("careful")
        await block.wait()

    child.add_state("careful", careful)
    child.remove_state("summarise")

    async def summarise(ctx: Any) -> str:
        log.append("summarise")
        return "careful"

    child.add_state("summarise", summarise)

    def parent() -> Agent:
        agent = Agent("team", store=store, durable=True)
        agent.set_state("topic", "newts")
        agent.add_state("research", child, inputs=["topic"])
        return agent

    first = parent()
    handle = first.start()
    await until(lambda: "careful" in log, "the child reaches its last state")
    await first.cancel_all()  # stands in for a crash here; the SIGKILL test does it for real
    await asyncio.gather(handle.task, return_exceptions=True)
    block.set()
    log.clear()
    second = parent()
    result = await second.resume_latest()
    assert result.status is AgentStatus.COMPLETED
    assert log == ["careful"], "completed child states ran again"


async def test_metrics_rows_say_which_child_they_came_from() -> None:
    from fluffy_nb.engine._metrics import AgentMetrics

    parent = Agent("team")
    parent.set_state("topic", "voles")
    parent.add_state("research", researcher(), inputs=["topic"])
    metrics = AgentMetrics(parent, sample_interval=None)
    await parent.run()
    rows = {(row["agent"], row["state"]): row["runs"] for row in metrics.per_state()}
    assert rows == {("team", "research"): 1, ("team", "research/search"): 1, ("team", "research/summarise"): 1}
    assert "state_research/search" in metrics.data["timing"]
    metrics.close()


async def test_history_rows_of_the_parent_include_its_children_named_by_path() -> None:
    inner = Agent("inner")

    async def deep(ctx: Any) -> None:
        return None

    inner.add_state("deep", deep)
    child = researcher()
    child.add_state("nested", inner)  # a second start state of the child: no edge leads to it
    store = MemoryStore()
    parent = Agent("team", store=store, durable=True)
    parent.set_state("topic", "larks")
    parent.add_state("research", child, inputs=["topic"])
    first = await parent.run()
    second = await parent.run()
    names = {row.agent_name for row in parent.history()}
    assert names == {"team", "team/research", "team/research/nested"}
    one = parent.history(first.run_id)
    assert {row.agent_name for row in one} == names
    own = {row.run_id for row in one if row.agent_name == "team"}
    assert own == {first.run_id}
    children = {row.run_id for row in one if row.agent_name != "team"}
    assert children.isdisjoint({row.run_id for row in parent.history(second.run_id) if row.agent_name != "team"})
    assert len(children) == 2  # the child's run and the grandchild's


async def test_a_retried_child_state_runs_a_fresh_child_run() -> None:
    child = Agent("flaky_child")
    tries: list[str] = []

    async def once_broken(ctx: Any) -> None:
        tries.append(ctx.run_id)
        if len(tries) == 1:
            raise ConnectionError("first try fails")
        ctx.set_state("out", "ok")

    child.add_state("once_broken", once_broken)
    parent = Agent("boss", store=MemoryStore(), durable=True)
    parent.add_state("delegate", child, outputs=["out"], max_retries=1)
    result = await parent.run()
    assert result.get_state("out") == "ok"
    assert len(set(tries)) == 2  # the retry is a new child run, not the failed one continued


async def test_a_monitor_of_the_parent_counts_child_states_once() -> None:
    from fluffy_nb import MetricType, agent_monitor

    parent = Agent("team")
    parent.set_state("topic", "wrens")
    parent.add_state("research", researcher(), inputs=["topic"])
    delivered: list[dict[str, Any]] = []

    @agent_monitor(metrics=MetricType.ALL, sample_interval=None, metrics_callback=delivered.append)
    async def run() -> None:
        await parent.run()

    await run()
    state = delivered[-1]["state"]
    assert state["completed"]["sum"] == 3  # research, research/search, research/summarise: not twice


async def test_a_parent_paused_inside_a_child_continues_there_in_a_new_process() -> None:
    store = MemoryStore()
    ran: list[str] = []
    gate = asyncio.Event()

    def build() -> Agent:
        child = Agent("steps")

        async def one(ctx: Any) -> str:
            ran.append("one")
            await gate.wait()
            return "two"

        async def two(ctx: Any) -> None:
            ran.append("two")

        child.add_state("one", one)
        child.add_state("two", two)
        parent = Agent("boss", store=store, durable=True)
        parent.add_state("delegate", child)
        return parent

    first = build()
    first.start()
    await until(lambda: ran == ["one"], "the child's first state runs")
    pausing = asyncio.ensure_future(first.pause())
    await until(lambda: first.latest_run.children["delegate"].paused, "the child is pausing")
    gate.set()
    await pausing
    # a new process: a fresh definition over the same store (the paused one is left behind)
    second = build()
    result = await second.resume_latest()
    assert result.status is AgentStatus.COMPLETED
    assert ran == ["one", "two"], "the child's completed state ran again"
    await first.cancel_all()


async def test_a_route_back_into_a_failed_child_state_runs_the_child_again() -> None:
    child = Agent("checker")
    runs: list[str] = []

    async def work(ctx: Any) -> None:
        runs.append(ctx.run_id)
        if ctx.get_state("x") < 0:
            raise ValueError("x must be >= 0")
        ctx.set_state("y", ctx.get_state("x") * 2)

    child.add_state("work", work)
    fixes: list[str] = []

    async def fix(ctx: Any) -> str:
        fixes.append(str(ctx.last_error))
        ctx.set_state("x", 5)
        return "sub"

    async def done(ctx: Any) -> None:
        return None

    parent = Agent("fixer", store=MemoryStore(), max_steps=20)  # a spin fails at once, never hangs
    parent.add_state("sub", child, inputs=["x"], outputs=["y"], on_error="fix", next="done")
    parent.add_state("fix", fix)
    parent.add_state("done", done)
    result = await parent.run(initial_context={"x": -1})
    assert result.status is AgentStatus.COMPLETED
    assert result.get_state("y") == 10
    assert len(fixes) == 1
    assert len(runs) == 2
    assert runs[0] != runs[1], "the route back continued the failed child run"


async def test_history_of_a_checkpoint_claiming_huge_counts_reads_only_stored_child_runs() -> None:
    from fluffy_nb.engine._checkpoint import Checkpoint

    async def noop(ctx: Any) -> None:
        return None

    child = Agent("leaf")
    child.add_state("c", noop)
    store = MemoryStore()
    parent = Agent("host", store=store)
    parent.add_state("sub", child)
    result = await parent.run()
    data = store.get(store.list(agent_name="host")[0].checkpoint_id).to_dict()
    # each a legal count; a history that loops over counts x attempts never returns
    data.update(checkpoint_id="f" * 32, sequence=99, completion_counts={"sub": 10**7}, state_attempts={"sub": 10**7})
    store.put(Checkpoint.from_dict(data))
    rows = parent.history(run_id=result.run_id)
    children = {row.run_id for row in rows if row.agent_name == "host/sub"}
    assert len(children) == 1
    assert {row.run_id for row in rows if row.agent_name == "host"} == {result.run_id}


def test_agents_nested_in_a_cycle_are_refused_naming_the_path() -> None:
    async def go(ctx: Any) -> None:
        return None

    a, b, c = Agent("A"), Agent("B"), Agent("C")
    for agent in (a, b, c):
        agent.add_state("go", go)
    a.add_state("sub", b)
    b.add_state("sub", c)
    with pytest.raises(ConfigurationError, match="C -> A -> B -> C"):
        c.add_state("sub", a)
    assert "sub" not in c.states
    with pytest.raises(ConfigurationError, match="C -> B -> C"):
        c.add_state("back", b)


async def test_history_of_agents_nested_in_a_cycle_anyway_ends() -> None:
    async def go(ctx: Any) -> None:
        return None

    store = MemoryStore()
    a, b = Agent("A", store=store), Agent("B")
    a.add_state("go", go)
    b.add_state("go", go)
    a.add_state("sub", b)
    b.states["loop"] = a.states["sub"]  # bypassing add_state's check: B's state runs B
    assert {row.agent_name for row in a.history()} == set()


async def test_a_dependency_condition_in_a_child_reads_its_own_run_while_another_parent_runs_it() -> None:
    release = {"p1": asyncio.Event(), "p2": asyncio.Event()}
    started: list[str] = []
    seen: list[tuple[str, str]] = []

    async def produce(ctx: Any) -> None:
        started.append(ctx.get_state("key"))
        await release[ctx.get_state("key")].wait()
        ctx.set_state("ready", True)

    async def gated(ctx: Any) -> None:
        ctx.set_state("done", ctx.get_state("key"))

    def ready(agent: Any) -> bool:
        seen.append((agent.run_id, agent.get_state("key")))
        return bool(agent.get_state("ready"))

    child = Agent("gatekeeper")
    child.add_state("produce", produce)
    needs = DependencyConfig(DependencyType.REQUIRED, condition=ready)
    child.add_state("gated", gated, dependencies={"produce": needs})

    def parent(name: str) -> Agent:
        agent = Agent(name)
        agent.add_state("sub", child, inputs=["key"], outputs=["done"])
        return agent

    first = parent("p1").start(initial_context={"key": "p1"})
    await until(lambda: started == ["p1"], "p1's child produces")
    second = parent("p2").start(initial_context={"key": "p2"})  # now the child agent's latest run
    await until(lambda: started == ["p1", "p2"], "p2's child produces")
    release["p1"].set()
    one = await first
    assert one.status is AgentStatus.COMPLETED
    assert one.get_state("done") == "p1"
    release["p2"].set()
    two = await second
    assert two.get_state("done") == "p2"
    assert {key for _, key in seen} == {"p1", "p2"}
    assert len({run_id for run_id, _ in seen}) == 2


def pooled_pair(child_pool: ResourcePool | None = None) -> tuple[Agent, list[str], asyncio.Event]:
    """A parent whose state and whose child's state each ask for every CPU of the parent's pool."""
    live: list[str] = []
    gate = asyncio.Event()

    async def heavy(ctx: Any) -> None:
        live.append(ctx.state_name)
        await gate.wait()
        live.remove(ctx.state_name)

    async def start(ctx: Any) -> list[str]:
        return ["p_heavy", "sub"]

    parent = Agent("machine_parent")
    cpus = parent.resource_pool.totals[ResourceType.CPU]  # type: ignore[union-attr]  # the default pool
    everything = ResourceRequirements(cpu_units=cpus, memory_mb=0)
    child = Agent("machine_child") if child_pool is None else Agent("machine_child", resource_pool=child_pool)
    child.add_state("c_heavy", heavy, resources=everything)
    parent.add_state("start", start)
    parent.add_state("p_heavy", heavy, resources=everything)
    parent.add_state("sub", child)
    return parent, live, gate


async def test_a_child_uses_its_root_runs_default_pool_one_machine_budget() -> None:
    parent, live, gate = pooled_pair()
    handle = parent.start()
    pool = parent.resource_pool
    assert pool is not None
    await until(lambda: len(live) == 1 and pool.get_waiting_states(), "one heavy state runs, the other waits")
    assert len(live) == 1, f"both states asking all CPUs run at once: {live}"
    gate.set()
    result = await handle
    assert result.status is AgentStatus.COMPLETED
    assert live == []


async def test_a_child_given_its_own_pool_is_admitted_against_it() -> None:
    parent, live, gate = pooled_pair(ResourcePool(total_cpu=64))
    handle = parent.start()
    await until(lambda: len(live) == 2, "the child's pool admits its state beside the parent's")
    gate.set()
    assert (await handle).status is AgentStatus.COMPLETED


@pytest.mark.parametrize("child_pool", ["default", "same", "own"])
async def test_a_sub_workflow_state_holding_resources_its_child_waits_on_is_refused_not_hung(child_pool: str) -> None:
    """``add_state("research", child, resources=...)`` while the child's states share the pool:
    the parent state would hold its CPUs until the child ends, and the child's state waits for
    them; the run hung forever. It fails at start naming both and the fix; a child with a pool of
    its own is admitted against that and runs."""
    shared = ResourcePool(total_cpu=2)
    parent = Agent("team", resource_pool=shared)
    child = {"default": lambda: Agent("researcher"), "same": lambda: Agent("researcher", resource_pool=shared),
             "own": lambda: Agent("researcher", resource_pool=ResourcePool(total_cpu=2))}[child_pool]()
    inner = Agent("summariser")  # a grandchild on the same pool: its state is what waits

    async def summarise(ctx: Any) -> None:
        ctx.set_state("notes", "short")

    inner.add_state("summarise", summarise, resources=ResourceRequirements(cpu_units=1, memory_mb=0))
    child.add_state("summary", inner, outputs=["notes"])
    parent.add_state("research", child, outputs=["notes"], resources=ResourceRequirements(cpu_units=2, memory_mb=0))
    if child_pool == "own":
        inner.resource_pool = child.resource_pool
        assert (await asyncio.wait_for(parent.run(), 10))["notes"] == "short"
        return
    with pytest.raises(ResourceError) as info:
        await asyncio.wait_for(parent.run(), 10)
    text = str(info.value)
    assert "state 'research' runs agent 'researcher'" in text
    assert "'research/summary/summarise' waits on too" in text
    assert "Declare resources on the child's states only" in text


async def test_a_route_back_after_a_child_timed_out_runs_a_fresh_child() -> None:
    child = Agent("sleepy")
    runs: list[str] = []
    never = asyncio.Event()

    async def one(ctx: Any) -> str:
        runs.append(ctx.run_id)
        return "two"

    async def two(ctx: Any) -> None:
        if len(runs) == 1:
            await never.wait()  # the first child hangs here until the parent's timeout cancels it

    child.add_state("one", one)
    child.add_state("two", two)

    async def again(ctx: Any) -> str:
        return "sub"

    parent = Agent("impatient", store=MemoryStore(), durable=True, max_steps=20)
    parent.add_state("sub", child, timeout=0.05, on_timeout="again")
    parent.add_state("again", again)
    result = await parent.run()
    assert result.status is AgentStatus.COMPLETED
    assert len(runs) == 2
    assert runs[0] != runs[1], "the route back continued the timed-out child"


async def test_a_parent_checkpointing_on_an_interval_checkpoints_its_child_so_a_resume_continues_inside_it() -> None:
    from fluffy_nb import ManualClock

    clock = ManualClock()
    store = MemoryStore()
    log: list[str] = []
    block = asyncio.Event()

    def build(blocking: bool) -> Agent:
        child = Agent("steps")

        async def one(ctx: Any) -> str:
            log.append("one")
            return "two"

        async def two(ctx: Any) -> str:
            log.append("two")
            return "three"

        async def three(ctx: Any) -> None:
            log.append("three")
            if blocking:
                await block.wait()  # never set: the run is stopped here, as a kill would

        for f in (one, two, three):
            child.add_state(f.__name__, f)
        parent = Agent("boss", store=store, checkpoint_interval=5.0, clock=clock)  # not durable
        parent.add_state("sub", child)
        return parent

    first = build(blocking=True)
    handle = first.start()
    await until(lambda: "three" in log, "the child reaches its last state")
    await clock.advance(5.0)  # one interval
    await until(lambda: store.list(agent_name="boss/sub"), "the child's interval checkpoint")
    handle.task.cancel()  # stands in for a kill: the run writes nothing more
    await asyncio.gather(handle.task, return_exceptions=True)
    log.clear()
    result = await build(blocking=False).resume_latest()
    assert result.status is AgentStatus.COMPLETED
    assert log == ["three"], "the child's completed states ran again"


async def test_a_child_state_a_failure_was_routed_to_resumes_inside_the_child() -> None:
    store = MemoryStore()
    log: list[str] = []
    block = asyncio.Event()
    child = Agent("backup")

    async def one(ctx: Any) -> str:
        log.append("one")
        return "two"

    async def two(ctx: Any) -> None:
        log.append("two")
        await block.wait()

    child.add_state("one", one)
    child.add_state("two", two)

    def parent() -> Agent:
        agent = Agent("team", store=store, durable=True)

        async def primary(ctx: Any) -> None:
            raise ConnectionError("primary down")

        agent.add_state("primary", primary, on_error="backup")
        agent.add_state("backup", child)
        return agent

    first = parent()
    handle = first.start(start="primary")
    await until(lambda: "two" in log, "the child reaches its last state")
    await first.cancel_all()  # stands in for a crash here
    await asyncio.gather(handle.task, return_exceptions=True)
    block.set()
    log.clear()
    result = await parent().resume_latest()
    assert result.status is AgentStatus.COMPLETED
    assert log == ["two"], "the child's completed states ran again"
