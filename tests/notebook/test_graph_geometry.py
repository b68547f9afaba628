"""The SVG graph, measured: node boxes (labels inside) never overlap, no edge runs through a node
box, and back edges go around every node (as mermaid routes notebook 09's rewrite loop)."""

from __future__ import annotations

import itertools

import pytest

from fluffy_nb import Agent
from fluffy_nb.notebook import graph_svg
from fluffy_nb.notebook._graphview import svg_scene

WRITERS = [f"write_section_{i}" for i in range(3)]


def content_pipeline() -> Agent:
    """Notebook 09's graph: plan fans out to writers, a quality check and a review loop back."""
    agent = Agent("content_pipeline")

    async def intake(ctx):
        return "plan"

    async def plan(ctx):
        return WRITERS

    async def write_section(ctx):
        return "assemble"

    async def assemble(ctx):
        return "check_quality"

    async def check_quality(ctx):
        return "plan_rewrite" if ctx.get_state("poor") else "human_review"

    async def plan_rewrite(ctx):
        return WRITERS

    async def human_review(ctx):
        return "publish" if ctx.get_state("approved") else "plan_rewrite"

    async def publish(ctx):
        return None

    agent.add_state("intake", intake)
    agent.add_state("plan", plan, next=WRITERS)
    for name in WRITERS:
        agent.add_state(name, write_section, next=["assemble"])
    for name, fn in (("assemble", assemble), ("check_quality", check_quality)):
        agent.add_state(name, fn)
    agent.add_state("plan_rewrite", plan_rewrite, next=WRITERS)
    agent.add_state("human_review", human_review)
    agent.add_state("publish", publish)
    return agent


def wide_skips() -> Agent:
    """Long and short names, edges that skip layers, a self-loop and a loop back to the start."""
    agent = Agent("skips")

    async def start(ctx):
        return ["a_rather_long_state_name", "b"]

    async def a_rather_long_state_name(ctx):
        return "c"

    async def b(ctx):
        return "end" if ctx.get_state("x") else "b"

    async def c(ctx):
        return "end"

    async def end(ctx):
        return "start" if ctx.get_state("again") else None

    for name, fn in (("start", start), ("a_rather_long_state_name", a_rather_long_state_name), ("b", b),
                     ("c", c), ("end", end)):
        agent.add_state(name, fn)
    return agent


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _crosses(p, q, box, inset: float = 1.0) -> bool:
    """Whether segment p-q enters ``box`` shrunk by ``inset`` (Liang-Barsky clipping)."""
    x0, y0, x1, y1 = box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset
    dx, dy = q[0] - p[0], q[1] - p[1]
    lo, hi = 0.0, 1.0
    for d, a, b in ((dx, p[0] - x0, x1 - p[0]), (dy, p[1] - y0, y1 - p[1])):
        for num, den in ((a, -d), (b, d)):
            if den == 0:
                if num < 0:
                    return False
            else:
                t = num / den
                if den < 0:
                    lo = max(lo, t)
                else:
                    hi = min(hi, t)
    return lo < hi


@pytest.mark.parametrize("build", [content_pipeline, wide_skips])
def test_node_boxes_never_overlap_and_no_edge_runs_through_a_node(build):
    agent = build()
    scene = svg_scene(agent)
    assert set(scene.boxes) == set(agent.states)
    for (a, box_a), (b, box_b) in itertools.combinations(scene.boxes.items(), 2):
        assert not _overlap(box_a, box_b), f"{a} and {b} overlap"
    for src, dst, _kind, _back, pts in scene.edges:
        for p, q in itertools.pairwise(pts):
            for node, box in scene.boxes.items():
                assert not _crosses(p, q, box), f"edge {src} -> {dst} runs through {node}"


def test_the_rewrite_loop_goes_around_under_every_node():
    scene = svg_scene(content_pipeline())
    back = [e for e in scene.edges if e[3]]
    assert {(s, d) for s, d, *_ in back} == {("plan_rewrite", w) for w in WRITERS}
    lowest = max(box[3] for box in scene.boxes.values())
    lanes = {max(p[1] for p in e[4]) for e in back}  # (SVG y grows downwards)
    assert all(lane > lowest for lane in lanes)  # under every node
    assert len(lanes) == len(back)  # one lane each: they can be followed
    svg = graph_svg(content_pipeline())
    assert svg.count(">plan_rewrite</text>") == 1  # the label is inside its box, drawn once


@pytest.mark.parametrize("build", [content_pipeline, wide_skips])
def test_everything_is_drawn_inside_the_picture(build):
    scene = svg_scene(build())
    points = [p for e in scene.edges for p in e[4]] + [(b[0], b[1]) for b in scene.boxes.values()] + [
        (b[2], b[3]) for b in scene.boxes.values()]
    assert all(0 <= x <= scene.width and 0 <= y <= scene.height for x, y in points)


def test_the_live_figure_alternates_labels_above_and_below_so_neighbours_do_not_touch():
    from fluffy_nb.notebook import graph_figure

    fig = graph_figure(content_pipeline())
    nodes = [t for t in fig.data if t.mode == "markers+text"]
    where = {text: pos for t in nodes for text, pos in zip(t.text, t.textposition, strict=True)}
    assert where["assemble"] != where["check_quality"] != where["human_review"]  # layers 3, 4, 5
    back = [t for t in fig.data if t.mode == "lines" and t.x and None in t.x]
    lowest = min(y for t in nodes for y in t.y)
    assert min(y for t in back for y in t.y if y is not None) < lowest  # loops run under every node


def _shared(p, q, r, s, tol: float = 1.0) -> bool:
    """Whether segments p-q and r-s lie on one line for more than ``tol`` px (two edges drawn as one)."""
    for axis in (0, 1):  # both vertical (same x) or both horizontal (same y)
        other = 1 - axis
        if abs(p[axis] - q[axis]) < 1e-6 and abs(r[axis] - s[axis]) < 1e-6 and abs(p[axis] - r[axis]) < tol:
            lo = max(min(p[other], q[other]), min(r[other], s[other]))
            hi = min(max(p[other], q[other]), max(r[other], s[other]))
            if hi - lo > tol:
                return True
    return False


@pytest.mark.parametrize("build", [content_pipeline, wide_skips])
def test_no_two_edges_run_along_one_line_so_each_can_be_followed(build):
    """Edges may leave one box from one port (or reach one box at one port) and fan out from there,
    as mermaid draws them; anywhere else two edges drawn as one line could not be told apart."""
    scene = svg_scene(build())
    for (a, b, _k, _bk, pts), (c, d, _k2, _bk2, pts2) in itertools.combinations(scene.edges, 2):
        legs, legs2 = list(itertools.pairwise(pts)), list(itertools.pairwise(pts2))
        for i, (p, q) in enumerate(legs):
            for j, (r, s) in enumerate(legs2):
                port = (a == c and i == j == 0) or (b == d and i == len(legs) - 1 and j == len(legs2) - 1)
                assert port or not _shared(p, q, r, s), f"{a} -> {b} and {c} -> {d} share {p}-{q} / {r}-{s}"


def test_the_live_figures_back_edges_climb_on_lines_of_their_own():
    from fluffy_nb.notebook import graph_figure

    fig = graph_figure(content_pipeline())
    lowest = min(y for t in fig.data if t.mode == "markers+text" for y in t.y)
    polylines = []
    for trace in fig.data:
        if trace.mode == "lines" and trace.x and None in trace.x:
            line: list[tuple[float, float]] = []
            for x, y in zip(trace.x, trace.y, strict=True):
                if x is None:
                    polylines += [line] if line else []
                    line = []
                else:
                    line.append((x, y))
    back = [p for p in polylines if min(y for _, y in p) < lowest]  # the loops, run under every node
    assert len(back) == len(WRITERS)
    for a, b in itertools.combinations(back, 2):
        for i, (p, q) in enumerate(itertools.pairwise(a)):
            for j, (r, s) in enumerate(itertools.pairwise(b)):
                if i == j == 0:
                    continue  # all three leave plan_rewrite from one port
                assert not _shared(p, q, r, s, tol=1e-3), f"two rewrite edges share {p}-{q}"
