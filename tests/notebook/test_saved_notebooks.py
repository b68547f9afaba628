"""The committed teaching notebooks carry the finished pictures of their main runs, as the text/html
(with inline SVG) that GitHub and nbviewer render without running anything.

``scripts/build_notebooks.py --execute`` stores them; each of these runs is started in one cell and
ends while a later cell awaits it, so the cell keeps the run's end only if the final picture reaches
nbclient (``notebook/_finals.py``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def picture_of(notebook: str, start: str) -> dict[str, str]:
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    [cell] = [c for c in nb.cells if c.cell_type == "code" and start in c.source]
    [output] = cell.outputs
    assert "application/vnd.jupyter.widget-view+json" not in output.data  # nothing to load from a CDN
    return output.data


@pytest.mark.parametrize(("notebook", "start", "status", "graph"), [
    ("06_human_in_the_loop.ipynb", "review_run = review.start()", "review: completed · 4/4 states",
     "revise (skipped)"),
    ("09_llm_content_pipeline.ipynb", "run = pipeline.start(", "content_pipeline: completed · 10/10 states",
     "plan_rewrite (done)"),
])
def test_a_teaching_notebook_shows_its_main_run_as_it_ended_without_running(notebook, start, status, graph):
    data = picture_of(notebook, start)
    assert data["text/plain"].startswith(status)
    page = data["text/html"]
    assert status in page
    assert "<svg" in page
    assert graph in page
