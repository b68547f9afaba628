"""The state graph read from code, and the join rule (fan-out / fan-in)."""

from __future__ import annotations

import asyncio

import pytest
from _wait import until

from fluffy_nb import Agent, Context, FluffyWarning, StateStatus
from fluffy_nb.engine._events import StateFinished, StateStarted
from fluffy_nb.engine._graph import StateGraph
from fluffy_nb.engine._reader import state_targets


def build(agent, **funcs):
    """Add states; targets of ``to()`` helpers are declared (closure values are invisible to the reader)."""
    for name, func in funcs.items():
        agent.add_state(name, func, next=getattr(func, "targets", None))
    return agent


def to(target, log=None, wait=None):
    async def step(ctx: Context):
        if wait is not None:
            await wait.wait()
        if log is not None:
            log.append(ctx.state_name)
        return target

    step.targets = [] if target is None else [target] if isinstance(target, str) else list(target)
    return step


# -- the graph ------------------------------------------------------------------------------
def test_state_targets_finds_names_in_returns_lists_and_returned_helpers():
    async def f(ctx):
        def inner():
            return "deep"

        if ctx:
            return ["a", "b"]
        if ctx is None:
            return inner()
        return "c"

    assert {"a", "b", "c", "deep"} <= state_targets(f)


def test_graph_reachability_follows_edges_and_cycles():
    g = StateGraph()
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", "b")
    assert g.reaches("a", "c")
    assert not g.reaches("c", "a")
    assert g.descendants("b") == {"b", "c"}
    assert g.ancestors("c") == {"a", "b", "c"}
    assert g.add_edge("a", "b") is False


def test_agent_graph_has_edges_from_code_declared_hints_and_dependencies():
    agent = Agent("g")

    async def a(ctx):
        return ["b", "c"]

    async def b(ctx):
        return None

    async def c(ctx):
        return None

    agent.add_state("b", b, next=["c"])
    agent.add_state("a", a)  # added after its targets
    agent.add_state("c", c, dependencies=["b"])
    edges = set(agent.graph.edge_list())
    assert {("a", "b", "code"), ("a", "c", "code"), ("b", "c", "declared")} <= edges
    assert agent.graph.edges["b"]["c"] in ("declared", "dependency")


# -- joins -----------------------------------------------------------------------------------
async def test_fan_in_runs_the_join_once_after_every_branch(record):
    agent = build(
        Agent("join"),
        start=to(["a", "b", "c"]),
        a=to("join"),
        b=to("join"),
        c=to("join"),
        join=to(None),
    )
    log = record(agent)
    result = await agent.run()
    assert result.state_runs["join"] == 1
    names = [(type(e).__name__, e.state) for e in log if isinstance(e, (StateStarted, StateFinished))]
    join_start = names.index(("StateStarted", "join"))
    assert {s for kind, s in names[:join_start] if kind == "StateFinished"} == {"start", "a", "b", "c"}


async def test_a_branch_that_cannot_reach_the_join_does_not_hold_it():
    gate = asyncio.Event()
    order: list[str] = []

    async def quiet(ctx):
        await gate.wait()
        order.append("quiet")
        return None

    async def loud(ctx):
        order.append("loud")
        gate.set()
        return "join"

    async def slow_to_join(ctx):
        return "join"

    agent = build(Agent("j2"), start=to(["loud", "quiet"]), loud=loud, quiet=quiet, join=to(None, order))
    await agent.run()
    # quiet can never name join, so join starts as soon as loud names it (in loud's task, in place)
    assert order == ["loud", "join", "quiet"]


async def test_join_reached_through_branches_of_different_length():
    order: list[str] = []
    agent = build(
        Agent("lengths"),
        start=to(["x1", "y"]),
        x1=to("x2", order),
        x2=to("x3", order),
        x3=to("join", order),
        y=to("join", order),
        join=to(None, order),
    )
    result = await agent.run()
    assert order[-1] == "join"
    assert result.state_runs["join"] == 1
    assert sorted(order[:-1]) == ["x1", "x2", "x3", "y"]


async def test_nested_fan_outs_join_inside_then_outside():
    order: list[str] = []
    agent = build(
        Agent("nested"),
        start=to(["left", "right"]),
        left=to(["l1", "l2"], order),
        l1=to("left_join", order),
        l2=to("left_join", order),
        left_join=to("final", order),
        right=to("final", order),
        final=to(None, order),
    )
    result = await agent.run()
    assert result.state_runs == {"start": 1, "left": 1, "l1": 1, "l2": 1, "left_join": 1, "right": 1, "final": 1}
    assert order.index("left_join") > max(order.index("l1"), order.index("l2"))
    assert order[-1] == "final"


async def test_independent_parallel_chains_are_not_serialised():
    """x1 waits for y2 (the other chain's second step): a serialising scheduler deadlocks."""
    y2_done = asyncio.Event()
    order: list[str] = []

    async def y2(ctx):
        order.append("y2")
        y2_done.set()
        return None

    agent = build(
        Agent("chains"),
        start=to(["x1", "y1"]),
        x1=to("x2", order, wait=y2_done),
        x2=to(None, order),
        y1=to("y2", order),
        y2=y2,
    )
    await asyncio.wait_for(agent.run(), 5)
    assert order == ["y1", "y2", "x1", "x2"]


async def test_two_separate_fan_outs_in_a_row_each_join_once():
    agent = build(
        Agent("twice"),
        s=to(["a", "b"]),
        a=to("m1"),
        b=to("m1"),
        m1=to(["c", "d"]),
        c=to("m2"),
        d=to("m2"),
        m2=to(None),
    )
    result = await agent.run()
    assert result.state_runs == {"s": 1, "a": 1, "b": 1, "m1": 1, "c": 1, "d": 1, "m2": 1}


async def test_join_inside_a_loop_runs_once_per_round():
    rounds = []

    async def merge(ctx):
        n = ctx.get_state("round", 0) + 1
        ctx.set_state("round", n)
        rounds.append(n)
        return "fan" if n < 3 else None

    agent = build(Agent("loop_join"), fan=to(["a", "b"]), a=to("merge"), b=to("merge"), merge=merge)
    result = await agent.run()
    assert rounds == [1, 2, 3]
    assert result.state_runs == {"fan": 3, "a": 3, "b": 3, "merge": 3}


async def test_thousand_wide_fan_out_joins_once():
    n = 1000
    agent = Agent("wide")

    async def fan(ctx):
        return [f"w{i}" for i in range(n)]

    async def worker(ctx):
        ctx.set_state(ctx.state_name, True)
        return "join"

    seen = []

    async def join(ctx):
        seen.append(sum(1 for i in range(n) if ctx.get_state(f"w{i}")))
        return None

    agent.add_state("fan", fan)
    for i in range(n):
        agent.add_state(f"w{i}", worker)
    agent.add_state("join", join)
    result = await agent.run()
    assert seen == [n]
    assert result.state_runs["join"] == 1


async def test_a_state_named_twice_in_one_list_runs_once_and_the_join_after_it_once():
    agent = build(
        Agent("twice"),
        start=to(["a", "a", "b"]),
        a=to("join"),
        b=to("join"),
        join=to(None),
    )
    result = await agent.run()
    assert result.state_runs == {"start": 1, "a": 1, "b": 1, "join": 1}


async def test_a_fan_out_returned_while_pausing_is_queued_and_runs_and_joins_on_resume(record):
    gate = asyncio.Event()
    agent = build(
        Agent("pause_fan"),
        start=to(["a", "b", "c"], wait=gate),
        a=to("join"),
        b=to("join"),
        c=to("join"),
        join=to(None),
    )
    log = record(agent)
    run = asyncio.create_task(agent.run())
    await until(lambda: log.of(StateStarted, "start"))
    pausing = asyncio.create_task(agent.pause())
    await until(lambda: agent.latest_run.scheduler.paused)
    gate.set()
    await asyncio.wait_for(pausing, 5)
    assert len(agent.priority_queue) == 3  # the three branches wait in the queue, none started
    assert {agent.state_metadata[s].status for s in "abc"} == {StateStatus.READY}
    assert not [e for e in log.of(StateStarted) if e.state != "start"]
    await agent.resume()
    result = await asyncio.wait_for(run, 5)
    assert result.state_runs == {"start": 1, "a": 1, "b": 1, "c": 1, "join": 1}


async def test_a_branch_waiting_at_a_nested_join_survives_pause_and_restore():
    """b1 already reached the join; b2 then ends without naming it: the join must still run."""
    from fluffy_nb import Checkpoint

    def build(log, b2_gate):
        async def first(ctx):
            return ["b1", "b2"]

        async def b1(ctx):
            log.append("b1")
            return "join"

        async def b2(ctx):
            log.append("b2")
            await b2_gate.wait()
            if ctx.get_state("never_true"):
                return "join"
            return None

        async def join(ctx):
            log.append("join")
            return None

        agent = Agent("nested_restore")
        for f in (first, b1, b2, join):
            agent.add_state(f.__name__, f)
        return agent

    log: list[str] = []
    agent = build(log, asyncio.Event())  # b2 never finishes in the first process
    run = asyncio.create_task(agent.run())
    for _ in range(1000):  # until both branches ran (b1 is at the join, b2 is stuck)
        if "b1" in log and "b2" in log:
            break
        await asyncio.sleep(0)
    checkpoint = await agent.pause(timeout=0.01)
    assert checkpoint.pending == ["b2"]
    await agent.cancel_all()
    await run

    gate = asyncio.Event()
    gate.set()
    log2: list[str] = []
    restored = build(log2, gate)
    await restored.restore_from_checkpoint(Checkpoint.from_dict(checkpoint.to_dict()))
    result = await asyncio.wait_for(restored.run(), 5)
    assert log2 == ["b2", "join"]
    assert result.state_runs["join"] == 1


# -- the start rule and explicit joins --------------------------------------------------------------
async def test_numbered_states_built_by_an_fstring_are_targets_not_starts():
    ran: list[str] = []

    async def split(ctx):
        ran.append("split")
        return [f"chunk_{i}" for i in range(3)]

    def chunk(name):
        async def body(ctx):
            ran.append(name)
            return None

        return body

    agent = Agent("numbered")
    agent.add_state("split", split)
    for i in range(3):
        agent.add_state(f"chunk_{i}", chunk(f"chunk_{i}"))
    result = await agent.run()
    assert ran[0] == "split"
    assert result.state_runs == {"split": 1, "chunk_0": 1, "chunk_1": 1, "chunk_2": 1}


async def test_an_independent_state_fitting_an_fstring_still_runs_and_is_named_in_a_warning():
    ran: list[str] = []

    async def split(ctx):
        return [f"chunk_{i}" for i in range(2)]

    async def noted(ctx):
        ran.append(ctx.state_name)
        return None

    agent = Agent("report")
    agent.add_state("split", split)
    agent.add_state("chunk_0", noted)
    agent.add_state("chunk_1", noted)
    agent.add_state("chunk_report", noted)
    with pytest.warns(FluffyWarning, match=r"\['chunk_report'\].*@state\(next=\[\.\.\.\]\) on 'split'"):
        result = await agent.run()
    assert result.state_runs["chunk_report"] == 1
    assert sorted(ran) == ["chunk_0", "chunk_1", "chunk_report"]


async def test_a_state_reached_only_through_an_unreadable_name_is_warned_about_not_run_twice_silently():
    class Router:
        target = "b"

    router = Router()

    async def a(ctx):
        return router.target

    agent = Agent("opaque")
    agent.add_state("a", a)
    agent.add_state("b", noop)
    with pytest.warns(FluffyWarning, match=r"\['a'\] return names that cannot be read.*run\(start=\[\.\.\.\]\)"):
        await agent.run()
    # the fix the warning names: say where it leads
    fixed = Agent("declared")
    fixed.add_state("a", a, next=["b"])
    fixed.add_state("b", noop)
    result = await fixed.run()
    assert result.state_runs == {"a": 1, "b": 1}


async def test_join_true_makes_a_state_a_join_the_graph_cannot_see():
    order: list[str] = []
    names = {"left": "merge", "right": "merge"}

    async def fan(ctx):
        return ["left", "right"]

    def branch(name, hops):
        async def body(ctx):
            for _ in range(hops):
                await asyncio.sleep(0)
            order.append(name)
            return names[name]  # read through a dict: the reader cannot see "merge"

        return body

    async def merge(ctx):
        order.append("merge")
        return None

    agent = Agent("joined")
    agent.add_state("fan", fan)
    agent.add_state("left", branch("left", 1))
    agent.add_state("right", branch("right", 5))
    agent.add_state("merge", merge, join=True)
    result = await agent.run(start="fan")
    assert result.state_runs["merge"] == 1
    assert order == ["left", "right", "merge"]


async def noop(ctx):
    return None


def test_reaching_is_the_names_plus_everything_that_reaches_one_of_them():
    g = StateGraph()
    for src, dst in [("a", "b"), ("b", "c"), ("c", "b"), ("x", "y"), ("d", "d"), ("z", "a")]:
        g.add_edge(src, dst)
    for names in (["b"], ["y", "d"], ["a", "c"], []):
        union = set(names).union(*(g.ancestors(n) for n in names))
        assert g.reaching(names) == union
    assert g.reaching(["b"]) == {"a", "b", "c", "z"}


def test_a_joins_origins_follow_edges_added_after_they_were_first_asked_for():
    g = StateGraph()
    g.add_edge("a", "join")
    g.add_edge("b", "c")
    assert g.origins("join") == {"a"}
    g.add_edge("c", "join", "runtime")  # observed while running: b's branch can reach the join now
    assert g.origins("join") == {"a", "b", "c"}
    g.add_edge("d", "join", "dependency")  # a dependency is no route
    assert g.origins("join") == {"a", "b", "c"}


async def test_a_name_returned_that_the_code_does_not_show_becomes_an_observed_edge():
    async def pick(ctx):
        return "".join(["do", "ne"])  # built at run time: invisible to the reader

    async def done(ctx):
        return None

    agent = Agent("observed")
    agent.add_state("pick", pick)
    agent.add_state("done", done)
    assert "done" not in agent.graph.edges["pick"]
    await agent.run(start="pick")
    assert agent.graph.edges["pick"]["done"] == "runtime"


async def test_a_wide_fan_out_whose_branches_finish_last_first_joins_once_after_all():
    n = 50
    turns = [asyncio.Event() for _ in range(n)]
    done: list[int] = []

    async def fan(ctx):
        turns[n - 1].set()
        return [f"w{i}" for i in range(n)]

    def worker(i):
        async def body(ctx):
            await turns[i].wait()  # w49 first, then w48, ... w0 last
            done.append(i)
            if i:
                turns[i - 1].set()
            return "join"

        return body

    seen: list[list[int]] = []

    async def join(ctx):
        seen.append(list(done))

    agent = Agent("last_first")
    agent.add_state("fan", fan)
    for i in range(n):
        agent.add_state(f"w{i}", worker(i), next=["join"])
    agent.add_state("join", join)
    result = await agent.run()
    assert seen == [list(range(n - 1, -1, -1))]
    assert result.state_runs["join"] == 1


def _arrivals(name: str, gate: asyncio.Event, **agent_kwargs) -> tuple[Agent, list[int]]:
    """fan -> w0..w11 -> join; the odd branches wait for ``gate``; the join notes how many wrote."""
    agent = Agent(name, **agent_kwargs)
    names = [f"w{i}" for i in range(12)]
    seen: list[int] = []

    async def fan(ctx):
        return names

    async def worker(ctx):
        if int(ctx.state_name[1:]) % 2:
            await gate.wait()
        ctx.set_state(ctx.state_name, True)
        return "join"

    async def join(ctx):
        seen.append(sum(1 for n in names if ctx.get_state(n)))

    agent.add_state("fan", fan)
    for n in names:
        agent.add_state(n, worker)
    agent.add_state("join", join)
    return agent, seen


@pytest.mark.parametrize("agent_kwargs", [{}, {"max_concurrent": 4}], ids=["all_at_once", "max_concurrent"])
async def test_branches_arriving_at_a_join_read_the_same_watched_or_not_and_through_a_pause(agent_kwargs):
    """Branches that wait at their join are counted in one step when nobody reads per-state
    events (``Outcomes.arrived``); a subscriber sends them the general way. Both must leave the
    same run behind, with a pause taken while half the branches are still to arrive."""
    outcomes = []
    for watched in (False, True):
        gate = asyncio.Event()
        agent, seen = _arrivals(f"arrivals_{watched}", gate, **agent_kwargs)
        unsubscribe = agent.events.subscribe(lambda e: None) if watched else None
        task = asyncio.create_task(agent.run())
        await until(lambda agent=agent: agent.latest_run is not None
                    and agent.latest_run.completion_counts.get("w0") == 1, "an even branch arrived")
        pausing = asyncio.create_task(agent.pause())
        await until(lambda agent=agent: agent.latest_run.scheduler.paused, "pausing")
        gate.set()  # the odd branches arrive while the pause drains
        await asyncio.wait_for(pausing, 5)
        assert agent.state_metadata["join"].attempts == 0  # nothing started while paused
        await agent.resume()
        result = await asyncio.wait_for(task, 5)
        if unsubscribe is not None:
            unsubscribe()
        run = agent.latest_run
        outcomes.append((result.status, sorted(result.completed_states), dict(sorted(run.completion_counts.items())),
                         run.steps, {n: (m.status, m.attempts, m.runs) for n, m in run.metadata.items()}, seen))
    quiet, watched_ = outcomes
    assert quiet == watched_
    assert quiet[5] == [12]  # the join ran once, after every branch wrote
    assert quiet[3] == 14


def _last_arrival(name: str) -> tuple[Agent, list[tuple[object, object]]]:
    """fan -> a, b, c (to the join) and x, y (never to it); c wakes x and y, then arrives last."""
    agent = Agent(name)
    go = asyncio.Event()
    seen: list[tuple[object, object]] = []

    async def fan(ctx):
        return ["a", "b", "c", "x", "y"]

    async def early(ctx):
        return "join"

    async def last(ctx):
        await asyncio.sleep(0)  # a and b are at the join first
        go.set()
        return "join"

    async def elsewhere(ctx):
        await go.wait()
        ctx.set_state(ctx.state_name, True)

    async def join(ctx):
        seen.append((ctx.get_state("x"), ctx.get_state("y")))

    agent.add_state("fan", fan)
    agent.add_state("a", early)
    agent.add_state("b", early)
    agent.add_state("c", last)
    agent.add_state("x", elsewhere)
    agent.add_state("y", elsewhere)
    agent.add_state("join", join)
    return agent, seen


async def test_the_last_arrival_starts_its_join_at_the_same_point_watched_or_not():
    """The join that the last arrival starts runs where it did before ``Outcomes.arrived`` (in the
    arriving branch's task, before the branches it woke run): the same data and completion order
    with or without a subscriber (a live view subscribes)."""
    outcomes = []
    for watched in (False, True):
        agent, seen = _last_arrival(f"last_arrival_{watched}")
        if watched:
            agent.events.subscribe(lambda e: None)
        result = await asyncio.wait_for(agent.run(), 5)
        outcomes.append((seen, result.completed_states))
    assert outcomes[0] == outcomes[1]
