"""A fresh virtualenv with exactly what Binder installs runs every teaching notebook.

Binder (repo2docker) does two things: ``pip install -r binder/requirements.txt``, then runs
``binder/postBuild`` from the repository root. This test does the same in a brand-new venv
(no ``--system-site-packages``: nothing leaks in from the development environment), adds only
the test runner (pytest + nbval, which Binder does not need), and runs every notebook under
nbval there. It catches a dependency the notebooks use but Binder would not install.

Needs PyPI (pip's cache makes repeat runs fast); skipped with the reason when it is unreachable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import venv
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]


def _pypi_reachable() -> bool:
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
    try:
        with urllib.request.urlopen(index.rstrip("/") + "/pip/", timeout=10):
            return True
    except Exception:
        return False


def test_fresh_venv_with_binder_requirements_runs_every_notebook(tmp_path: Path) -> None:
    if not _pypi_reachable():
        pytest.skip("PyPI is unreachable: cannot build a fresh Binder environment")
    env_dir = tmp_path / "binder-venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(env_dir)
    bindir = env_dir / "bin"
    py = str(bindir / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(env_dir)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    run(py, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt")
    run("bash", "binder/postBuild")
    # the environment really is separate from the one running this test
    where = run(py, "-c", "import fluffy_nb, ipywidgets, sys; print(sys.prefix)").stdout.strip()
    assert Path(where).resolve() == env_dir.resolve()
    assert Path(sys.prefix).resolve() != env_dir.resolve()

    run(py, "-m", "pip", "install", "-q", "pytest", "nbval")
    notebooks = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
    proc = subprocess.run(
        [py, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-c", os.devnull, "--rootdir", str(ROOT),
         "--nbval-lax", "--nbval-sanitize-with", "tests/notebooks/sanitize.cfg", *notebooks],
        cwd=ROOT, env={**env, "FLUFFY_NB_AUTOANSWER": "1"}, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
    assert "failed" not in proc.stdout
