"""Nested sub-workflow clusters: a nested path opens its ancestors, plotly draws nested clusters,
and the live view's toggle follows ``view.expand``."""

from __future__ import annotations

import asyncio
from typing import Any

from fluffy_nb.notebook._graphview import graph_figure, graph_mermaid
from fluffy_nb.notebook._layout import status_color
from tests.notebook.test_clusters import team


def _cluster_traces(fig: Any) -> list[str]:
    return [t.name for t in fig.data if t.name and "(agent " in t.name]


async def test_opening_a_nested_path_opens_its_ancestors_in_mermaid_and_plotly() -> None:
    gate = asyncio.Event()
    gate.set()
    parent, _child = team(gate)
    await parent.run()
    text = graph_mermaid(parent, expand=["research/verify"])
    assert "subgraph n1 " in text  # research, drawn open so verify can be
    assert "subgraph n1_2" in text
    assert _cluster_traces(graph_figure(parent, expand=["research/verify"])) == [
        "research (agent researcher)", "research/verify (agent checker)"]
    only_outer = graph_figure(parent, expand=["research"])
    assert _cluster_traces(only_outer) == ["research (agent researcher)"]  # verify stays one node
    hover = " ".join(next(t for t in only_outer.data if t.name == "research (agent researcher)").hovertext)
    assert "verify [checker: 1 done]" in hover  # a collapsed nested cluster: its label in the hover


async def test_plotly_draws_every_nested_cluster_when_all_are_open() -> None:
    gate = asyncio.Event()
    gate.set()
    parent, _child = team(gate)
    await parent.run()
    fig = graph_figure(parent, expand=True)
    assert _cluster_traces(fig) == ["research (agent researcher)", "research/verify (agent checker)"]
    inner = next(t for t in fig.data if t.name == "research/verify (agent checker)")
    assert list(inner.text) == ["check"]
    assert list(inner.marker.color) == [status_color("completed")]  # coloured by its own status
    right = max(shape.x1 for shape in fig.layout.shapes)
    assert right <= fig.layout.xaxis.range[1]  # the nested frame is inside the picture, not cut off


def test_fluffy_graph_expand_with_a_nested_path_draws_it_open() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    gate = asyncio.Event()
    gate.set()
    parent, _child = team(gate)
    shell = InteractiveShell.instance()
    assert shell.run_cell("%load_ext fluffy_nb").success
    try:
        shell.user_ns["team"] = parent
        res = shell.run_cell("%fluffy graph team --expand research/verify")
        assert res.error_in_exec is None
        bundle = res.result._repr_mimebundle_()
        assert "subgraph n1_2" in bundle["text/vnd.mermaid"]
        names = [t.get("name") for t in bundle["application/vnd.plotly.v1+json"]["data"]]
        assert "research/verify (agent checker)" in names
    finally:
        shell.user_ns.pop("team", None)
        assert shell.run_cell("%unload_ext fluffy_nb").success


async def test_the_toggle_follows_view_expand_and_reopens_the_list_it_was_given() -> None:
    from fluffy_nb.notebook import LiveView

    gate = asyncio.Event()
    gate.set()
    parent, _child = team(gate)
    await parent.run()
    view = LiveView(parent)
    try:
        toggle = view.expand_toggle
        assert toggle is not None
        assert toggle.value is False
        view.expand = ["research"]  # set after the view was built, as the README shows
        assert toggle.value is True
        toggle.value = False  # what a click does
        assert view.expand is False
        toggle.value = True
        assert view.expand == ["research"]  # the list given, not every cluster
        [bundle] = view.graph_out.outputs
        names = [t.get("name") for t in bundle["data"]["application/vnd.plotly.v1+json"]["data"]]
        assert "research (agent researcher)" in names
        assert "research/verify (agent checker)" not in names
        view.expand = False
        assert toggle.value is False
        view.expand = True
        toggle.value = False
        toggle.value = True
        assert view.expand is True
    finally:
        view.close()
