"""Every teaching notebook run in a real JupyterLab: the views each leaves behind, photographed.

Runs with ``FLUFFY_NB_AUTOANSWER=1`` (scripted answers, as nbval runs them) so no form waits;
``test_hitl_browser.py`` answers the forms by hand. Each finished run's picture (the static
``.fluffy-run-picture`` a live view becomes) is saved to ``artifacts/views/`` (ignored by git)
for a person to look at; notebook 06's review must read 4/4 with ``revise`` skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _lab import Lab, cell_errors, open_notebook, run_all, wait_all_executed

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def answered_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab whose kernels answer the forms from the notebooks' scripts."""
    with Lab(tmp_path_factory.mktemp("lab_auto"), env={"FLUFFY_NB_AUTOANSWER": "1"}) as server:
        yield server


@pytest.fixture
def tall_page(browser: Any) -> Iterator[Any]:
    """A 1000 px wide tab (the width where the timeline legend used to cover its title), tall
    enough that a whole run picture fits in one screenshot."""
    context = browser.new_context(viewport={"width": 1000, "height": 3000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        context.close()


def real_errors(page: Any) -> list[str]:
    """Error outputs, without distributed's log lines (notebook 10 crashes a worker on purpose)."""
    return [e for e in cell_errors(page) if " - distributed." not in e]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_notebooks_final_views_are_finished_pictures(answered_lab: Lab, tall_page: Any, artifacts: Path,
                                                          notebook: str) -> None:
    page = tall_page
    open_notebook(page, answered_lab, f"notebooks/{notebook}")
    run_all(page)
    wait_all_executed(page, timeout_ms=600_000)
    assert real_errors(page) == []
    pictures = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .fluffy-run-picture")
    shots = artifacts / "views"
    shots.mkdir(exist_ok=True)
    for old in shots.glob(f"{notebook[:2]}_*.png"):
        old.unlink()
    for i in range(pictures.count()):
        picture = pictures.nth(i)
        picture.scroll_into_view_if_needed()
        picture.screenshot(path=str(shots / f"{notebook[:2]}_{i:02d}.png"))
        text = picture.inner_text()
        assert "running" not in text.split("\n")[0]  # every picture is of a run that ended
    if notebook.startswith("06"):
        review = pictures.filter(has_text="review: completed")
        review.first.get_by_text("4/4 states").first.wait_for()
        review.first.get_by_text("1 skipped").first.wait_for()
        review.first.locator("svg title", has_text="revise (skipped)").first.wait_for(state="attached")
