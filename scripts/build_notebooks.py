"""Build the teaching notebooks in ``notebooks/`` from their sources in ``scripts/notebooks_src/``.

The sources are plain Python in the "percent" format (``# %%`` starts a code cell,
``# %% [markdown]`` a Markdown cell whose lines start with ``# ``), so a review diff is
readable. ``--execute`` then runs each notebook headless (``FLUFFY_NB_AUTOANSWER=1``, the
same switch nbval uses) and keeps stored outputs ONLY for cells marked ``# NBVAL_CHECK_OUTPUT``
(text, and the static picture of a finished run): those are the outputs ``pytest --nbval-lax``
compares, and everything else stays empty so the committed notebooks are small.

Usage::

    python scripts/build_notebooks.py            # convert all
    python scripts/build_notebooks.py --execute  # convert, run, store checked outputs
    python scripts/build_notebooks.py 06 --execute   # only notebooks whose name starts with 06
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "scripts" / "notebooks_src"
OUT = ROOT / "notebooks"
CHECK = "# NBVAL_CHECK_OUTPUT"
KEEP_MIME = ("text/plain",)
#: a finished run's static picture (what a live view becomes): kept as HTML, so GitHub and nbviewer
#: show the run; nbval compares it through a sanitizer (tests/notebooks/sanitize.cfg)
RUN_PICTURE = 'class="fluffy-run-picture"'


def parse(text: str) -> list[nbformat.NotebookNode]:
    """Split a percent-format source into notebook cells."""
    cells = []
    chunks = re.split(r"^# %%(.*)$", text, flags=re.M)
    # chunks: [preamble, header1, body1, header2, body2, ...]
    for header, body in zip(chunks[1::2], chunks[2::2], strict=True):
        body = body.strip("\n")
        if "[markdown]" in header:
            lines = [re.sub(r"^# ?", "", ln) for ln in body.splitlines()]
            cells.append(new_markdown_cell("\n".join(lines).strip("\n")))
        elif body.strip():
            cells.append(new_code_cell(body))
    return cells


def build(src: Path) -> nbformat.NotebookNode:
    nb = new_notebook(cells=parse(src.read_text()))
    for i, cell in enumerate(nb.cells):  # stable ids: rebuilding an unchanged source changes nothing
        cell.id = f"{src.stem[:2]}-{i:03d}"
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path) -> None:
    """Run ``nb`` headless and keep only the checked cells' text outputs."""
    from nbclient import NotebookClient

    os.environ["FLUFFY_NB_AUTOANSWER"] = "1"
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timestamps: noise in every diff
        if cell.cell_type != "code":
            continue
        if CHECK not in cell.source:
            cell.outputs = []
            cell.execution_count = None
            continue
        kept = []
        for out in cell.outputs:
            if out.output_type == "stream":
                kept.append(out)
            elif out.output_type in ("execute_result", "display_data"):
                keep = KEEP_MIME + (("text/html",) if RUN_PICTURE in out.data.get("text/html", "") else ())
                data = {k: v for k, v in out.data.items() if k in keep}
                if data:
                    out.data = data
                    out.metadata = {}
                    kept.append(out)
        cell.outputs = kept
    nb.metadata.pop("widgets", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefix", nargs="*", help="only notebooks whose file name starts with one of these")
    parser.add_argument("--execute", action="store_true", help="run and store the checked outputs")
    args = parser.parse_args(argv)
    for src in sorted(SRC.glob("[0-9]*.py")):
        if args.prefix and not any(src.name.startswith(p) for p in args.prefix):
            continue
        nb = build(src)
        if args.execute:
            execute(nb, OUT)
        target = OUT / (src.stem + ".ipynb")
        nbformat.write(nb, target)
        print(f"wrote {target.relative_to(ROOT)} ({target.stat().st_size // 1024} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
