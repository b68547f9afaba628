"""Run every teaching notebook in a real JupyterLab (headless Chromium) and photograph its live views.

Writes ``artifacts/nb_<notebook>_<n>.png`` (one per cell output that holds a live view or graph)
and ``artifacts/nb_<notebook>_end.png``, and prints any cell error. Forms are answered from the
notebooks' scripts (``FLUFFY_NB_AUTOANSWER=1``); the real-form flow is ``tests/browser``.

Usage::

    python scripts/screenshot_notebooks.py          # all notebooks
    python scripts/screenshot_notebooks.py 02 07    # only these
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from _lab import Lab, cell_errors, launch_browser, open_notebook, run_all, wait_all_executed  # noqa: E402


def main(prefixes: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    out = ROOT / "artifacts"
    out.mkdir(exist_ok=True)
    notebooks = sorted(p for p in (ROOT / "notebooks").glob("[0-9]*.ipynb")
                       if not prefixes or any(p.name.startswith(x) for x in prefixes))
    failures = 0
    with tempfile.TemporaryDirectory() as tmp, Lab(Path(tmp), env={"FLUFFY_NB_AUTOANSWER": "1"}) as lab:
        with sync_playwright() as p:
            browser = launch_browser(p)
            for nb in notebooks:
                page = browser.new_page(viewport={"width": 1400, "height": 2400})
                page.set_default_timeout(90_000)
                open_notebook(page, lab, f"notebooks/{nb.name}")
                run_all(page)
                wait_all_executed(page)
                stem = nb.stem.split("_")[0]
                views = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell-outputArea").filter(
                    has=page.locator(".jp-RenderedPlotly"))
                for i in range(views.count()):
                    views.nth(i).screenshot(path=str(out / f"nb_{stem}_{i}.png"))
                page.screenshot(path=str(out / f"nb_{stem}_end.png"))
                errors = cell_errors(page)
                failures += bool(errors)
                print(f"{nb.name}: {views.count()} live view(s), {len(errors)} error(s)")
                for e in errors:
                    print("   ", e.strip().splitlines()[-1][:200])
                page.close()
            browser.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
