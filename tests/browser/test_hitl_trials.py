"""Every answer arrives, in every run mode: a person answers three forms in a real JupyterLab.

The workflow (a fan-out, a state that fails once and is retried, and a review state asking
three questions: free text with a validator that rejects the first answer, choice buttons, and
a pydantic schema form that is first sent with a value out of range) runs in four modes, each
on a fresh kernel:

* ``background``: ``%%fluffy --background``, nothing else running (the kernel is idle);
* ``awaited``: ``--background`` with a later cell doing ``await orders.handle`` (kernel busy);
* ``run``: a blocking ``%%fluffy --run`` cell;
* ``await_run``: ``result = await orders.run()`` with a later cell queued behind it.

Each trial checks that the workflow finishes with exactly what was typed, without reruns.
``FLUFFY_NB_TRIALS`` sets the trials per mode (3 in CI; ``make browser-soak`` runs 20).
Every wait is on a selector or a text; there are no fixed sleeps.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from _lab import Lab, cell_errors, open_notebook, run_all, wait_kernel_idle
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1800)]

TRIALS = int(os.environ.get("FLUFFY_NB_TRIALS", "3"))
MODES = ("background", "awaited", "run", "await_run")
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
OPEN_FORM = ".fluffy-form[data-status='open']"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"  # the page of a failed trial goes here

SETUP = '''%load_ext fluffy_nb
from pydantic import BaseModel, Field
from fluffy_nb import RetryPolicy, state

class Refund(BaseModel):
    amount: float = Field(ge=0, le=500, description="refund in EUR")
    reason: str = Field(min_length=3)

def at_least_three(text):
    if len(text.strip()) < 3:
        raise ValueError("please write at least 3 characters")
    return True

attempts = []'''

STATES = '''
async def fetch(ctx):
    return ["clean", "score"]

async def clean(ctx):
    return "review"

@state(retry_policy=RetryPolicy(max_retries=2, initial_delay=0.01, jitter=False))
async def score(ctx):
    attempts.append(1)
    if len(attempts) % 2 == 1:
        raise RuntimeError("the first try fails")
    return "review"

async def review(ctx):
    ctx.set_state("note", await ctx.human_in_the_loop("Describe the order", validator=at_least_three))
    ctx.set_state("team", await ctx.human_in_the_loop("Which team?", choices=["billing", "technical", "sales"]))
    refund = await ctx.human_in_the_loop("How much to refund?", schema=Refund)
    ctx.set_state("refund", refund.model_dump())'''

CHECK = 'print("note:", r["note"])\nprint("team:", r["team"])\nprint("refund:", r["refund"])'


def mode_cells(mode: str) -> list[str]:
    """The cells of one mode's notebook: setup, the run, and the cell that prints the result."""
    if mode == "background":
        return [SETUP, "%%fluffy orders --background" + STATES, "r = orders.handle.result()\n" + CHECK]
    if mode == "awaited":
        return [SETUP, "%%fluffy orders --background" + STATES, "r = await orders.handle\n" + CHECK]
    if mode == "run":
        return [SETUP, "%%fluffy orders --run" + STATES, "r = orders.handle.result()\n" + CHECK]
    return [SETUP, "%%fluffy orders" + STATES, "result = await orders.run()", "r = result\n" + CHECK]


def write_notebooks(root: Path) -> None:
    folder = root / "trials"
    folder.mkdir(exist_ok=True)
    for mode in MODES:
        nb = new_notebook(cells=[new_code_cell(src) for src in mode_cells(mode)])
        nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
        nbformat.write(nb, folder / f"{mode}.ipynb")


def run_menu(page: Any, label: str) -> None:
    """Run > ``label``, through the menu like a person would."""
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel",
                 has_text=re.compile(rf"^{re.escape(label)}$")).click()


def select_cell(page: Any, index: int) -> None:
    page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt").nth(index).click()


def answer_forms(page: Any, note: str, team: str, amount: str, reason: str) -> list[float]:
    """Answer the three questions like a person; returns click-to-accepted times (s)."""
    took = []

    def accepted(prompt: str, act: Any) -> None:
        t0 = time.perf_counter()
        act()
        page.locator(".fluffy-form-record.fluffy-ok", has_text=prompt).wait_for()
        took.append(time.perf_counter() - t0)

    # 1. free text: the first answer is rejected, the form says why and keeps what was typed
    form = page.locator(OPEN_FORM).filter(has_text="Describe the order")
    box = form.locator("input[name='answer']")
    box.fill("no")
    form.get_by_role("button", name="Submit").click()
    form.get_by_text("please write at least 3 characters").wait_for()
    assert box.input_value() == "no"
    box.fill(note)
    accepted("Describe the order", lambda: box.press("Enter"))  # Enter sends a one-field form
    # 2. a choice is one click
    form = page.locator(OPEN_FORM).filter(has_text="Which team?")
    accepted("Which team?", lambda: form.get_by_role("button", name=team).click())
    # 3. the schema form: an amount out of range is shown beside its field, then corrected
    form = page.locator(OPEN_FORM).filter(has_text="How much to refund?")
    form.get_by_text("refund in EUR; ≥ 0; ≤ 500; required").wait_for()
    form.locator("input[name='amount']").fill("900")
    form.locator("input[name='reason']").fill(reason)
    form.get_by_role("button", name="Submit").click()
    form.locator(".fluffy-form-error[data-field='amount']").get_by_text("less than or equal to 500").wait_for()
    form.locator("input[name='amount']").fill(amount)
    accepted("How much to refund?", lambda: form.get_by_role("button", name="Submit").click())
    return took


def trial(page: Any, lab: Lab, mode: str, n: int) -> list[float]:
    note, team = f"ship order {mode} {n}", ("billing", "technical", "sales")[n % 3]
    amount, reason = f"{10 + n}.5", f"reason {mode} {n}"
    open_notebook(page, lab, f"trials/{mode}.ipynb")
    check_index = len(mode_cells(mode)) - 1
    if mode == "background":  # nothing but the background run: the kernel is idle while forms wait
        select_cell(page, check_index)
        run_menu(page, "Run All Above Selected Cell")
    else:
        run_all(page)
    page.locator(OPEN_FORM).first.wait_for(timeout=60_000)
    took = answer_forms(page, note, team, amount, reason)
    run_cell = page.locator(f"{PANEL} .jp-CodeCell").nth(1)
    if mode != "await_run":
        run_cell.get_by_text("orders: completed").first.wait_for()
        # the last question's form was a record before the run ended (nothing lingers)
        assert run_cell.locator(OPEN_FORM).count() == 0
    if mode == "background":
        wait_kernel_idle(page)
        select_cell(page, check_index)
        run_menu(page, "Run Selected Cell")
    outputs = page.locator(f"{PANEL} .jp-CodeCell").nth(check_index).locator(".jp-OutputArea-output")
    outputs.get_by_text(f"note: {note}").wait_for()
    outputs.get_by_text(f"team: {team}").wait_for()
    outputs.get_by_text(f"refund: {{'amount': {float(amount)}, 'reason': '{reason}'}}").wait_for()
    assert page.locator(OPEN_FORM).count() == 0
    assert cell_errors(page) == []
    return took


@pytest.fixture(scope="module")
def trial_lab(lab: Lab) -> Lab:
    write_notebooks(lab.root)
    return lab


@pytest.mark.parametrize("mode", MODES)
def test_every_answer_arrives_and_the_workflow_finishes_with_the_typed_values(trial_lab, page, mode):
    times: list[float] = []
    failed: list[str] = []
    console: list[str] = []  # the page's errors and warnings: what a failed trial's browser said
    page.on("console", lambda m: m.type in ("error", "warning") and console.append(f"{m.type}: {m.text[:300]}"))
    for n in range(TRIALS):  # every trial runs, so a soak reports how many of them failed
        console.clear()
        try:
            times += trial(page, trial_lab, mode, n)
        except Exception as exc:
            said = "\n    ".join(console[-10:]) or "(nothing)"
            failed.append(f"trial {n}: {type(exc).__name__}: {str(exc)[:300]}\n  browser console:\n    {said}")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"trial_{mode}_{n}_failed.png"))
    passed = TRIALS - len(failed)
    median = f"{statistics.median(times) * 1000:.0f} ms" if times else "-"
    print(f"\n{mode}: {passed} of {TRIALS} trials passed; click to accepted median {median}")
    assert not failed, "\n".join(failed)


def test_the_same_trial_in_jupyter_notebook_7(trial_lab, page):
    """Notebook 7 (the ``notebook`` package) renders the same form through anywidget."""
    open_notebook(page, trial_lab, "trials/awaited.ipynb", app="notebooks")
    run_all(page)
    page.locator(OPEN_FORM).first.wait_for(timeout=60_000)
    answer_forms(page, "ship order nb7", "sales", "12.5", "reason nb7")
    outputs = page.locator(".jp-CodeCell").nth(2).locator(".jp-OutputArea-output")
    outputs.get_by_text("note: ship order nb7").wait_for()
    outputs.get_by_text("team: sales").wait_for()
    outputs.get_by_text("refund: {'amount': 12.5, 'reason': 'reason nb7'}").wait_for()
    assert page.locator(OPEN_FORM).count() == 0
