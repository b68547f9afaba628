"""The state graph: layered layout, plotly figure, mermaid text, SVG snapshot, Agent display."""

from __future__ import annotations

import html
import re

import fluffy_nb.notebook  # noqa: F401 - registers the displays
from fluffy_nb import Agent
from fluffy_nb.notebook._graphview import graph_figure, graph_markdown, graph_mermaid, graph_svg, graph_text
from fluffy_nb.notebook._layout import compute_layout, plotly_text


def make_agent(name: str = "flow") -> Agent:
    agent = Agent(name)

    async def fetch(ctx):
        return ["parse", "check"]

    async def parse(ctx):
        return "report"

    async def check(ctx):
        return "report" if ctx.get_state("ok") else "fetch"

    async def report(ctx):
        return None

    for f in (fetch, parse, check, report):
        agent.add_state(f.__name__, f)
    return agent


def test_layers_follow_the_longest_path_and_cycles_become_back_edges():
    lay = compute_layout(["a", "b", "c", "d"], [("a", "b", "code"), ("b", "c", "code"), ("a", "c", "code"),
                                                ("c", "a", "runtime"), ("d", "d", "code")])
    assert [lay.nodes[n].layer for n in "abc"] == [0, 1, 2]
    back = {(s, d) for s, d, _, is_back in lay.edges if is_back}
    assert back == {("c", "a"), ("d", "d")}


def test_fan_out_inside_a_loop_keeps_siblings_in_one_column_before_the_end():
    # notebook 09's shape: plan -> writers -> assemble -> check -> (rewrite -> writers | review -> publish)
    agent = Agent("loop")
    writers = [f"write_{i}" for i in range(3)]

    async def step(ctx):
        return None

    agent.add_state("plan", step, next=writers)
    for w in writers:
        agent.add_state(w, step, next=["assemble"])
    agent.add_state("assemble", step, next=["check"])
    agent.add_state("check", step, next=["rewrite", "review"])
    agent.add_state("rewrite", step, next=writers)
    agent.add_state("review", step, next=["rewrite", "publish"])
    agent.add_state("publish", step)
    lay = compute_layout(list(agent.graph.nodes), agent.graph.edge_list())
    layer = {n: lay.nodes[n].layer for n in agent.graph.nodes}
    assert {layer[w] for w in writers} == {layer["plan"] + 1}  # siblings share the column after plan
    assert layer["assemble"] == layer["plan"] + 2
    assert layer["publish"] == max(layer.values())  # nothing is pushed past the end
    back = {(s, d) for s, d, _, is_back in lay.edges if is_back}
    assert back == {("rewrite", w) for w in writers}  # the loop's return is the back edge


def test_wide_layer_collapses_into_one_group_node():
    names = ["start"] + [f"w{i}" for i in range(500)] + ["end"]
    edges = [("start", f"w{i}", "runtime") for i in range(500)] + [(f"w{i}", "end", "code") for i in range(500)]
    lay = compute_layout(names, edges, max_per_layer=12)
    assert len(lay.nodes) == 3
    group = lay.nodes["group:1"]
    assert len(group.members) == 500
    assert group.label == "w0 … w499 (500 states)"  # its first and last state, and how many
    assert {(s, d) for s, d, _, _ in lay.edges} == {("start", "group:1"), ("group:1", "end")}


def test_plotly_figure_colours_nodes_by_status_with_a_legend():
    agent = make_agent()
    agent.state_metadata["fetch"].status = agent.state_metadata["fetch"].status.__class__("completed")
    fig = graph_figure(agent)
    legend = {t.name for t in fig.data if t.name}
    assert {"done", "pending", "edge: from code"} <= legend
    done = next(t for t in fig.data if t.name == "done")
    assert list(done.text) == ["fetch"]
    assert done.marker.color == "#27ae60"


def test_mermaid_quotes_and_escapes_labels():
    agent = Agent("odd")

    async def step(ctx):
        return None

    agent.add_state('say "hi" <now> #1', step)
    text = graph_mermaid(agent)
    assert text.startswith("flowchart LR")
    assert '["say #quot;hi#quot; #lt;now#gt; #35;1"]:::pending' in text
    assert graph_markdown(agent).startswith("```mermaid\n")


def test_mermaid_marks_edge_kinds():
    agent = make_agent()
    agent.graph.add_edge("report", "parse", "runtime")
    text = graph_mermaid(agent)
    assert "n0 --> n1" in text  # fetch -> parse, from code
    assert "==>" in text  # the runtime edge


def test_svg_snapshot_escapes_state_names_and_needs_no_script():
    agent = Agent("x")

    async def step(ctx):
        return None

    agent.add_state("<script>alert(1)</script>", step)
    svg = graph_svg(agent)
    assert svg.startswith("<svg")
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg


def test_agent_display_bundle_has_text_mermaid_svg_and_plotly():
    agent = make_agent()
    bundle = agent._repr_mimebundle_()
    assert bundle["text/plain"].startswith("<Agent 'flow'")
    assert "fetch [pending] -> parse, check" in bundle["text/plain"]
    assert "flowchart" in bundle["text/vnd.mermaid"]
    assert "<svg" in bundle["text/html"]
    assert bundle["application/vnd.plotly.v1+json"]["data"]
    only_text = agent._repr_mimebundle_(include=["text/plain"])
    assert set(only_text) == {"text/plain"}


def test_graph_text_lists_each_state_with_where_it_leads():
    text = graph_text(make_agent())
    assert "check [pending] -> fetch, report" in text


async def test_result_checkpoint_history_and_diff_displays_escape_user_text():
    from fluffy_nb import MemoryStore

    agent = Agent("<odd>", store=MemoryStore(), durable=True)

    async def step(ctx):
        ctx.set_state("<k>", "<v>")

    agent.add_state("step", step)
    result = await agent.run()
    html = result._repr_mimebundle_()["text/html"]
    assert "&lt;k&gt;" in html
    assert "<k>" not in html
    rows = agent.history_records()
    cp = agent.store.get(rows[-1].checkpoint_id)
    assert "&lt;odd&gt;" in cp._repr_mimebundle_()["text/html"]
    assert "<table" in rows._repr_mimebundle_()["text/html"]
    diff = agent.diff(rows[0], rows[-1])
    assert diff._repr_mimebundle_()["text/plain"] == repr(diff)


HOSTILE_NAMES = [
    "s %%{init: {'theme':'dark','themeCSS':'.node{display:none}'}}%%",
    "`**bold** in a markdown string`",
    "a[b](c)",
    'click n0 href "javascript:alert(1)"',
    "x --> y",
    "n1:::completed",
    "<img src=x onerror=alert(1)>",
    "semi;colon #35; &amp; |pipe| {{hex}}",
    "line\nbreak",
    "é ünïcode 名前",
]


def hostile_agent() -> Agent:
    agent = Agent("hostile")

    async def step(ctx):
        return None

    for name in HOSTILE_NAMES:
        agent.add_state(name, step)
    return agent


def _mermaid_decode(label: str) -> str:
    named = {"quot": '"', "lt": "<", "gt": ">"}
    return re.sub(r"#(\w+);", lambda m: named.get(m[1]) or chr(int(m[1])), label)


def test_mermaid_labels_of_hostile_names_carry_no_syntax_and_ids_are_generated():
    text = graph_mermaid(hostile_agent())
    assert "%%" not in text
    assert "`" not in text
    node = re.compile(r'^    (n\d+)(\[\[?)"([^"]*)"(\]\]?):::([a-z_]+)$')
    labels = {}
    for line in text.splitlines()[1:]:
        m = node.match(line)
        if m is None:
            assert re.fullmatch(r"    (n\d+ \S+ n\d+|classDef [a-z_]+ [^\s]+)", line), line
            continue
        labels[m[1]] = m[3]
    assert sorted(labels) == sorted(f"n{i}" for i in range(len(HOSTILE_NAMES)))
    for label in labels.values():
        assert not set(label) & set('[](){}"%`|:<>&'), label
    # what mermaid draws after decoding its entity codes is the name as written
    assert sorted(_mermaid_decode(label) for label in labels.values()) == sorted(
        n.replace("\n", " ") for n in HOSTILE_NAMES)


def test_plotly_graph_shows_hostile_names_as_written():
    fig = graph_figure(hostile_agent())
    texts = [t for trace in fig.data if trace.text is not None for t in trace.text]
    assert sorted(texts) == sorted(plotly_text(n) for n in HOSTILE_NAMES)
    assert not any("<" in t or ">" in t for t in texts)  # no tag survives: plotly would draw it
    assert html.unescape(plotly_text("a <b>&amp;</b> \"q\"")) == "a <b>&amp;</b> \"q\""
