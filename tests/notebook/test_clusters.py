"""Sub-workflow states in the graph views: one node by default, a cluster when expanded, live statuses."""

from __future__ import annotations

import asyncio
from typing import Any

from fluffy_nb import Agent
from fluffy_nb.notebook._graphview import _mermaid_text, graph_figure, graph_mermaid, graph_svg, graph_text
from fluffy_nb.notebook._layout import status_color
from fluffy_nb.notebook._tracker import RunTracker
from tests._wait import until


def team(gate: asyncio.Event) -> tuple[Agent, Agent]:
    inner = Agent("checker")

    async def check(ctx: Any) -> None:
        return None

    inner.add_state("check", check)
    child = Agent("researcher")

    async def search(ctx: Any) -> str:
        return "summarise"

    async def summarise(ctx: Any) -> str:
        await gate.wait()
        return "verify"

    child.add_state("search", search)
    child.add_state("summarise", summarise)
    child.add_state("verify", inner)
    parent = Agent("team")

    async def plan(ctx: Any) -> str:
        return "research"

    parent.add_state("plan", plan)
    parent.add_state("research", child)
    return parent, child


async def test_a_sub_workflow_is_one_node_by_default_and_a_subgraph_when_expanded() -> None:
    gate = asyncio.Event()
    parent, child = team(gate)
    tracker = RunTracker(parent)
    handle = parent.start()
    await until(lambda: tracker.status.get("research/summarise") == "running", "the child's state runs")

    collapsed = graph_mermaid(parent, tracker)
    assert "subgraph" not in collapsed
    assert _mermaid_text("research [researcher: 1 done, 1 running, 1 pending]") in collapsed

    opened = graph_mermaid(parent, tracker, expand=True)
    assert "subgraph n1 [\"research - agent researcher\"]" in opened
    lines = opened.splitlines()
    assert any('["search"]:::completed' in line for line in lines)
    assert any('["summarise"]:::running' in line for line in lines)
    assert any("subgraph n1_2" in line for line in lines), "the grandchild is a nested subgraph"
    assert "n0 --> n1" in opened  # the parent's edge now reaches the cluster
    only = graph_mermaid(parent, tracker, expand=["research"])
    assert "subgraph n1 " in only
    assert "subgraph n1_2" not in only  # the grandchild stays one node

    fig = graph_figure(parent, tracker, expand=True)
    inner = [t for t in fig.data if t.name == "research (agent researcher)"]
    assert len(inner) == 1
    assert list(inner[0].text) == ["search", "summarise", "verify"]
    assert len(fig.layout.shapes) == 2  # the cluster's frame, and its nested cluster's (verify)
    assert not graph_figure(parent, tracker).layout.shapes  # collapsed: no frame
    gate.set()
    await handle.task
    tracker.close()
    assert "verify" in child.latest_run.completed_states


async def test_without_a_tracker_child_statuses_come_from_the_nested_run() -> None:
    gate = asyncio.Event()
    gate.set()
    parent, _child = team(gate)
    await parent.run()
    text = graph_mermaid(parent, expand=True)
    assert '["search"]:::completed' in text
    assert '["check"]:::completed' in text


async def test_a_grandchild_question_shows_in_the_parent_live_view_and_its_form_answers_it() -> None:
    from fluffy_nb import ProgrammaticResponder
    from fluffy_nb.notebook import LiveView

    reviewer = Agent("reviewer")

    async def review(ctx: Any) -> None:
        ctx.set_state("ok", await ctx.human_in_the_loop("Ship <it>?", choices=["yes", "no"]))

    reviewer.add_state("review", review)
    editor = Agent("editor")
    editor.add_state("check", reviewer, outputs=["ok"])
    parent = Agent("publisher", responder=ProgrammaticResponder())
    parent.add_state("edit", editor, outputs=["ok"])
    view = LiveView(parent)
    handle = parent.start()
    view.attach(handle)
    await until(lambda: parent.pending_requests(), "the grandchild asks")
    assert view.tracker.status["edit/check/review"] == "waiting_for_human"
    assert len(view.forms.children) == 1  # the parent's view has a form for the grandchild's question
    view.redraw(force=True)
    assert "edit/check/review: Ship &lt;it&gt;?" in view.header.value
    [request] = parent.pending_requests()
    parent.answer(request.request_id, "yes")
    result = await handle
    assert result["ok"] == "yes"


async def test_the_history_frame_says_which_child_each_row_came_from() -> None:
    from fluffy_nb import MemoryStore

    gate = asyncio.Event()
    gate.set()
    parent, _child = team(gate)
    parent.store = MemoryStore()
    parent.durable = True
    await parent.run()
    frame = parent.history().to_pandas()
    assert set(frame["child"]) == {"", "research", "research/verify"}
    assert frame["timestamp"].is_monotonic_increasing


async def test_the_live_view_draws_a_cluster_open_when_asked() -> None:
    from fluffy_nb.notebook import LiveView

    gate = asyncio.Event()
    gate.set()
    parent, _child = team(gate)
    view = LiveView(parent)
    view.expand = ["research"]
    handle = parent.start()
    view.attach(handle)
    await handle
    view.redraw(force=True)
    [bundle] = view.graph_out.outputs
    names = [trace.get("name") for trace in bundle["data"]["application/vnd.plotly.v1+json"]["data"]]
    assert "research (agent researcher)" in names


def node_colour(fig: Any, text_prefix: str) -> str:
    """The marker colour of the one node whose label starts with ``text_prefix``."""
    found = []
    for trace in fig.data:
        if trace.mode != "markers+text" or trace.text is None:
            continue
        colours = trace.marker.color
        for i, text in enumerate(trace.text):
            if text.startswith(text_prefix):
                found.append(colours if isinstance(colours, str) else colours[i])
    assert len(found) == 1, (text_prefix, found)
    return found[0]


async def test_a_cluster_is_coloured_by_its_child_states_statuses_while_it_runs() -> None:
    gate = asyncio.Event()
    parent, _child = team(gate)
    tracker = RunTracker(parent)
    handle = parent.start()
    await until(lambda: tracker.status.get("research/summarise") == "running", "the child's state runs")
    fig = graph_figure(parent, tracker, expand=True)
    [cluster] = [t for t in fig.data if t.name == "research (agent researcher)"]
    assert list(cluster.marker.color) == [status_color("completed"), status_color("running"),
                                          status_color("pending")]
    gate.set()
    await handle.task
    fig = graph_figure(parent, tracker, expand=True)
    [cluster] = [t for t in fig.data if t.name == "research (agent researcher)"]
    assert list(cluster.marker.color) == [status_color("completed")] * 3
    tracker.close()


async def test_a_collapsed_cluster_whose_child_waits_for_a_person_is_coloured_so() -> None:
    from fluffy_nb import ProgrammaticResponder

    reviewer = Agent("reviewer")

    async def draft(ctx: Any) -> str:
        return "review"

    async def review(ctx: Any) -> None:
        ctx.set_state("ok", await ctx.human_in_the_loop("Ship it?", choices=["yes", "no"]))

    reviewer.add_state("draft", draft)
    reviewer.add_state("review", review)
    parent = Agent("publisher", responder=ProgrammaticResponder())
    parent.add_state("check", reviewer, outputs=["ok"])
    tracker = RunTracker(parent)
    handle = parent.start()
    await until(lambda: parent.pending_requests(), "the child asks")
    assert tracker.status["check"] == "running"  # the parent's state runs; its child waits for a person
    assert node_colour(graph_figure(parent, tracker), "check [reviewer") == status_color("waiting_for_human")
    assert ":::waiting_for_human" in graph_mermaid(parent, tracker)
    # the static picture (a finished cell's SVG, exported notebooks) and the text say so too
    assert "<title>check [reviewer: 1 done, 1 waiting for a person] (waiting for a person)</title>" in \
        graph_svg(parent, tracker)
    assert "  check [reviewer: 1 done, 1 waiting for a person] [waiting for a person]" in graph_text(parent, tracker)
    [request] = parent.pending_requests()
    parent.answer(request.request_id, "yes")
    await handle.task
    assert node_colour(graph_figure(parent, tracker), "check [reviewer") == status_color("completed")
    tracker.close()


def test_fluffy_graph_expand_draws_the_named_clusters_open_and_refuses_other_names() -> None:
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    gate = asyncio.Event()
    gate.set()
    parent, _child = team(gate)
    shell = InteractiveShell.instance()
    assert shell.run_cell("%load_ext fluffy_nb").success
    try:
        shell.user_ns["team"] = parent

        def line(text: str) -> Any:
            res = shell.run_cell(text)
            assert res.error_before_exec is None
            return res.result, res.error_in_exec

        closed, err = line("%fluffy graph team")
        assert err is None
        assert "subgraph" not in closed._repr_mimebundle_()["text/vnd.mermaid"]
        one, err = line("%fluffy graph team --expand research")
        assert err is None
        bundle = one._repr_mimebundle_()
        assert "subgraph n1 " in bundle["text/vnd.mermaid"]
        assert "subgraph n1_2" not in bundle["text/vnd.mermaid"]  # the grandchild stays one node
        names = [t.get("name") for t in bundle["application/vnd.plotly.v1+json"]["data"]]
        assert "research (agent researcher)" in names
        every, _ = line("%fluffy graph team --expand --mermaid")
        assert "subgraph n1_2" in every.data
        _, err = line("%fluffy graph team --expand plan")
        assert isinstance(err, UsageError)
        assert "'plan' is not a state of 'team' that is an agent" in str(err)
        assert "research, research/verify" in str(err)
    finally:
        shell.user_ns.pop("team", None)
        assert shell.run_cell("%unload_ext fluffy_nb").success


async def test_the_live_views_toggle_opens_and_closes_the_clusters_while_the_child_runs() -> None:
    from fluffy_nb.notebook import LiveView

    def trace_names(view: Any) -> list[str]:
        [bundle] = view.graph_out.outputs
        return [t.get("name") for t in bundle["data"]["application/vnd.plotly.v1+json"]["data"]]

    gate = asyncio.Event()
    parent, _child = team(gate)
    view = LiveView(parent)
    assert view.expand_toggle in view.widget.children
    handle = parent.start()
    view.attach(handle)
    await until(lambda: view.tracker.status.get("research/summarise") == "running", "the child's state runs")
    view.redraw(force=True)
    assert "research (agent researcher)" not in trace_names(view)  # collapsed by default
    view.expand_toggle.value = True  # what a click does
    assert "research (agent researcher)" in trace_names(view)  # drawn at once, not at the next tick
    view.expand_toggle.value = False
    assert "research (agent researcher)" not in trace_names(view)
    gate.set()
    await handle
    view.close()

    plain = Agent("plain")

    async def only(ctx: Any) -> None:
        return None

    plain.add_state("only", only)
    plain_view = LiveView(plain)
    assert plain_view.expand_toggle is None  # no sub-workflow: no button
    plain_view.close()


def used_twice(gate: asyncio.Event) -> tuple[Agent, Agent]:
    """``start`` -> ``use_a`` and ``use_b``: one child agent, ``worker`` (``work`` -> ``tidy``), as two
    states; ``use_a``'s child waits at ``gate``."""
    child = Agent("worker")

    async def work(ctx: Any) -> str:
        if ctx.get_state("who") == "a":
            await gate.wait()
        return "tidy"

    async def tidy(ctx: Any) -> None:
        return None

    child.add_state("work", work)
    child.add_state("tidy", tidy)
    parent = Agent("pair")

    async def start(ctx: Any) -> list[str]:
        ctx.set_state("a", "a")
        ctx.set_state("b", "b")
        return ["use_a", "use_b"]

    parent.add_state("start", start)
    parent.add_state("use_a", child, inputs={"a": "who"})
    parent.add_state("use_b", child, inputs={"b": "who"})
    return parent, child


async def test_without_a_tracker_each_use_of_a_child_shows_its_own_runs_statuses() -> None:
    gate = asyncio.Event()
    parent, child = used_twice(gate)
    handle = parent.start()

    def runs_of(state: str) -> list[Any]:
        return [r for r in child.runs if r.parent_state == state]

    await until(lambda: runs_of("use_b") and runs_of("use_b")[0].status.value == "completed"
                and runs_of("use_a"), "use_b's child completed while use_a's waits")
    text = graph_mermaid(parent, expand=True)
    a, b = text.split("subgraph")[1:3]  # use_a's cluster, then use_b's
    assert '["work"]:::running' in a
    assert '["tidy"]:::pending' in a
    assert '["work"]:::completed' in b
    assert '["tidy"]:::completed' in b
    gate.set()
    await handle


async def test_the_metrics_and_status_frames_have_a_row_per_child_state_named_by_path() -> None:
    from fluffy_nb.notebook import state_metrics_frame
    from fluffy_nb.notebook._latency import metrics_frame

    gate = asyncio.Event()
    gate.set()
    parent, _child = used_twice(gate)
    await parent.run()
    expected = {"start", "use_a", "use_b", "use_a/work", "use_a/tidy", "use_b/work", "use_b/tidy"}
    latency = metrics_frame(parent)  # %fluffy metrics
    assert set(latency.index) == expected
    assert latency.loc["use_b/tidy", "runs"] == 1
    status = state_metrics_frame(parent)  # %fluffy status NAME latest
    assert set(status.index) == expected
    assert status.loc["use_a/work", "status"] == "completed"
