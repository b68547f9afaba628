"""A person uses notebook 06 in a real JupyterLab: runs it, answers the forms, gets the result.

JupyterLab on 127.0.0.1 (token, private dirs, a copy of ``notebooks/``), headless Debian
Chromium through Playwright. ``FLUFFY_NB_AUTOANSWER`` is NOT set, so every question appears as
the real widget form and the workflow waits for this test to answer it. Every wait is on a
selector or a text; there are no fixed sleeps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from _lab import Lab, cell_errors, open_notebook, run_all, wait_all_executed

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

NOTEBOOK = "notebooks/06_human_in_the_loop.ipynb"
ANSWER = "approve, nicely concise"


def code_cell(page: Any, source_text: str) -> Any:
    """The code cell whose source contains ``source_text``."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").filter(
        has=page.locator(".jp-InputArea-editor", has_text=source_text)
    )


def test_person_answers_forms_in_jupyterlab_and_workflow_finishes_with_their_answer(
    lab: Lab, page: Any, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    open_notebook(page, lab, NOTEBOOK)
    run_all(page)

    # -- the live view renders under the cell that started the run --------------------------
    start_cell = code_cell(page, "review_run = review.start()")
    graph = start_cell.locator(".jp-RenderedPlotly").first
    graph.wait_for()
    # the graph is drawn from the code: every state of the agent is a labelled node
    for state in ("draft", "human_review", "revise", "publish"):
        graph.locator("svg text", has_text=re.compile(rf"^{state}$")).first.wait_for()

    # -- the approval form: a too-short answer is rejected with the validator's message -----
    answer_box = page.locator("input[placeholder='your answer']")
    answer_box.wait_for()
    start_cell.get_by_text("waiting for a person").first.wait_for()
    start_cell.screenshot(path=str(artifacts / "browser_06_waiting_for_person.png"))
    expect(answer_box).to_be_focused()  # a person can type at once
    answer_box.fill("no")
    page.get_by_role("button", name="Submit").click()
    start_cell.locator(".jp-OutputArea-output").get_by_text("please write at least 3 characters").wait_for()

    # the same field, still holding what was typed; the next answer travels inside the submit message
    assert answer_box.input_value() == "no"
    answer_box.fill(ANSWER)
    page.get_by_role("button", name="Submit").click()

    # -- the waiting cell finishes with exactly that answer ---------------------------------
    result_cell = code_cell(page, "result = await review_run")
    outputs = result_cell.locator(".jp-OutputArea-output")
    outputs.get_by_text(f"feedback: {ANSWER}").wait_for()
    outputs.get_by_text("path taken: draft -> human_review -> publish").wait_for()
    outputs.get_by_text("published: True").wait_for()
    # and the live view says so
    start_cell.get_by_text(re.compile(r"review: completed")).first.wait_for()
    start_cell.screenshot(path=str(artifacts / "browser_06_review_completed.png"))

    # -- choices are buttons ------------------------------------------------------------------
    page.get_by_role("button", name="billing").click()
    code_cell(page, "triaged = await triage_run").get_by_text("routed to: billing").wait_for()

    # -- a pydantic schema is a form with one field per model field -------------------------
    refund_cell = code_cell(page, "refund_run = refunds.start()")
    amount = refund_cell.locator("input[name='amount']")
    amount.wait_for()
    # each field shows its title, description, limits and whether it is required
    refund_cell.get_by_text("refund in EUR (at most 500); ≥ 0; ≤ 500; required").wait_for()
    amount.fill("19.99")
    refund_cell.locator("input[name='reason']").fill("double charge")
    schema_form = refund_cell.locator(".fluffy-form[data-status='open']")
    schema_form.screenshot(path=str(artifacts / "browser_06_schema_form.png"))
    refund_cell.get_by_role("button", name="Submit").click()
    code_cell(page, "refunded = await refund_run").get_by_text(
        "refund: {'amount': 19.99, 'reason': 'double charge'}"
    ).wait_for()

    # -- the rest of the notebook runs through, without a single error ----------------------
    wait_all_executed(page)
    code_cell(page, "unattended = Agent").get_by_text("decision after nobody answered: ship it").wait_for()
    page.screenshot(path=str(artifacts / "browser_06_end.png"))
    assert cell_errors(page) == []


def test_person_reviews_llm_pipeline_twice_and_their_feedback_shapes_the_result(lab: Lab, page: Any) -> None:
    """Notebook 09: ask for a change in the review form, then approve the revised draft."""
    open_notebook(page, lab, "notebooks/09_llm_content_pipeline.ipynb")
    run_all(page)
    run_cell = code_cell(page, "run = pipeline.start(")
    run_cell.locator(".jp-RenderedPlotly").first.wait_for()

    open_form = run_cell.locator(".fluffy-form[data-status='open']")
    # the pipeline writes, retries and checks before it asks
    open_form.get_by_role("button", name="make it friendlier", exact=True).click(timeout=90_000)
    run_cell.locator(".fluffy-form-record", has_text="make it friendlier").wait_for()  # answered, collapsed
    # the workflow rewrote the sections and asks again, in a new form
    open_form.get_by_role("button", name="approve", exact=True).click(timeout=90_000)

    outputs = code_cell(page, "result = await run").locator(".jp-OutputArea-output")
    outputs.get_by_text("feedback given: ['make it friendlier']").wait_for(timeout=90_000)
    outputs.get_by_text(re.compile(r"\(3 sections, draft \d\)")).wait_for()
    wait_all_executed(page)
    assert cell_errors(page) == []
