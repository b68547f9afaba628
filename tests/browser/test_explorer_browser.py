"""A person uses the run explorer of notebook 05 in a real JupyterLab: slider, edit, fork.

JupyterLab on 127.0.0.1 (private dirs, a copy of ``notebooks/``), headless Debian Chromium
through Playwright. Every wait is on a selector or a text; there are no fixed sleeps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from _lab import Lab, cell_errors, open_notebook, run_all, wait_all_executed

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

NOTEBOOK = "notebooks/05_checkpoints_resume.ipynb"


def code_cell(page: Any, source_text: str) -> Any:
    """The code cell whose source contains ``source_text``."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").filter(
        has=page.locator(".jp-InputArea-editor", has_text=source_text)
    )


def test_person_steps_through_a_run_edits_the_bad_answer_and_forks(lab: Lab, page: Any, artifacts: Path) -> None:
    open_notebook(page, lab, NOTEBOOK)
    run_all(page)
    wait_all_executed(page)
    assert cell_errors(page) == []

    cell = code_cell(page, "ex = %fluffy explore triage")
    details = cell.locator(".fluffy-explorer-details")
    graph = cell.locator(".fluffy-explorer-graph")
    details.get_by_text("checkpoint 0", exact=True).wait_for()  # a later cell selected checkpoint 0
    cell.get_by_role("button", name="next").click()
    details.get_by_text("checkpoint 1", exact=True).wait_for()
    graph.locator("svg title", has_text="route (done)").wait_for(state="attached")
    # the slider itself, with the keyboard as a person would: one step back
    cell.locator(".noUi-handle").first.focus()
    page.keyboard.press("ArrowLeft")
    details.get_by_text("checkpoint 0", exact=True).wait_for()
    graph.locator("svg title", has_text="route (ready)").wait_for(state="attached")
    cell.screenshot(path=str(artifacts / "browser_05_explorer_checkpoint0.png"))

    cell.get_by_role("button", name="edit and fork").click()
    label = cell.locator(".widget-text", has=page.locator("label", has_text="label")).locator("input")
    label.fill("bug")
    label.press("Enter")  # continuous_update=False: the value syncs on Enter
    cell.get_by_role("button", name="fork with these values").click()
    message = cell.locator(".fluffy-explorer-message")
    message.get_by_text(re.compile(r'^completed fork .* of checkpoint 0 with label = "bug"')).wait_for()
    cell.get_by_text("triage: completed").first.wait_for()  # the fork's live view, below the explorer
    cell.screenshot(path=str(artifacts / "browser_05_explorer_forked.png"))

    # the run list of the store: a button compares the two picked runs side by side
    runs = code_cell(page, "%fluffy runs triage")
    runs.get_by_role("button", name="compare").click()
    runs.get_by_text("context").first.wait_for()
    runs.screenshot(path=str(artifacts / "browser_05_runs_compare.png"))

    # the fork's result, read in a new cell at the end of the notebook
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.press("Enter")  # edit mode; insert_text: no auto-closed brackets or quotes
    page.keyboard.insert_text('r = await ex.handles[-1]\n'
                              'print("fork says:", r.get_state("reply"), r.run_id != ex.run_id)')
    page.keyboard.press("Shift+Enter")
    page.get_by_text("fork says: Thanks! The engineering will answer you. True").wait_for()
    assert cell_errors(page) == []
