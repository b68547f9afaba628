"""A notebook executed and exported the default way (``jupyter nbconvert --to html --execute``),
opened in Chromium with every network request refused: the finished run is what a reader sees.

The run is started in one cell and ends while a later cell awaits it (as notebooks 01, 06 and 09
do), the hard case for a saved notebook: its end is sent under the cell that started it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CELLS = [
    "%load_ext fluffy_nb\nimport asyncio\ngate = asyncio.Event()",
    '%%fluffy shipping --store :memory: --durable\n'
    'async def pack(ctx):\n    await gate.wait()\n    ctx.set_state("boxes", 3)\n    return "label"\n'
    'async def label(ctx):\n    return "send" if ctx.get_state("boxes") else "restock"\n'
    'async def restock(ctx):\n    return "pack"\n'
    'async def send(ctx):\n    ctx.set_state("sent", True)\n',
    "handle = shipping.start()",
    "gate.set()\nresult = await handle",
    "%fluffy history shipping",
]


def export(tmp_path: Path, *options: str) -> Path:
    """The notebook of ``CELLS``, executed and converted by nbconvert's command line."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "shipping.ipynb"
    nbformat.write(nb, source)
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--execute", *options,
                    str(source)], check=True, cwd=tmp_path, capture_output=True, timeout=240)
    return tmp_path / "shipping.html"


@pytest.mark.parametrize("options", [(), ("--ExecutePreprocessor.store_widget_state=False",)],
                         ids=["default", "no-widget-state"])
def test_exported_html_opened_offline_shows_the_finished_run_its_graph_and_history(
        browser: Any, tmp_path: Path, options: tuple[str, ...]) -> None:
    page_file = export(tmp_path, *options)
    context = browser.new_context(viewport={"width": 1000, "height": 2000})

    def offline(route: Any) -> None:  # the page's own file only: every CDN script is refused
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    try:
        page.goto(page_file.as_uri())
        picture = page.locator(".fluffy-run-picture")
        picture.first.wait_for()
        assert picture.count() == 1  # the live view became the picture: no widget left to load
        text = picture.first.inner_text()
        header = text.split("\n")[0]
        assert "shipping: completed · 4/4 states" in header
        assert header.endswith("1 skipped")
        graph = picture.first.locator("svg").first
        assert graph.is_visible()
        assert graph.bounding_box()["height"] > 50
        assert graph.locator("title", has_text="restock (skipped)").count() == 1
        defining = page.get_by_text("latest run: shipping: completed · 4/4 states")
        assert defining.first.is_visible()  # the bare %%fluffy cell's graph, redrawn as the run ended
        history = page.locator("table.dataframe").last
        assert history.is_visible()
        headers = history.locator("thead th").all_inner_texts()
        assert headers[1:5] == ["sequence", "seconds", "timestamp", "trigger"]
        assert "idle · 0/4" not in page.inner_text("body")
    finally:
        context.close()
