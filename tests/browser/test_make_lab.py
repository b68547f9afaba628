"""`make lab` starts JupyterLab: the README's first command works as root and as a normal user.

The server is started with the very command line `make lab` runs (read from ``make -s lab-command``,
so the Makefile's root detection is what is tested), plus what a test needs: 127.0.0.1, a token, no
browser, a free port. The notebooks are listed through the server's REST API, then it is stopped.
No browser is involved, so these run wherever JupyterLab is installed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from _lab import ROOT, Lab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

NOBODY = 65534
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


def make_lab_command(as_user: int | None = None) -> list[str]:
    """What ``make lab`` would run (for ``as_user`` when given: make evaluates ``id -u`` as that user)."""
    cmd = ["make", "-s", "--no-print-directory", "lab-command"]
    if as_user is not None:
        cmd = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups", *cmd]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return shlex.split(out.strip())


def listed_notebooks(lab: Lab) -> list[str]:
    # `make lab` serves notebooks/ itself (its argument becomes the server's root directory)
    with urllib.request.urlopen(lab.url("/api/contents/"), timeout=10) as resp:
        listing = json.load(resp)
    return sorted(item["name"] for item in listing["content"] if item["type"] == "notebook")


def test_make_lab_command_allows_root_only_for_root() -> None:
    assert ("--allow-root" in make_lab_command()) == (os.geteuid() == 0)
    if os.geteuid() == 0 and shutil.which("setpriv"):
        assert "--allow-root" not in make_lab_command(as_user=NOBODY)


def test_make_lab_starts_and_serves_the_notebooks_as_this_user(tmp_path: Path) -> None:
    with Lab(tmp_path, command=make_lab_command()) as lab:
        assert listed_notebooks(lab) == NOTEBOOKS
    assert NOTEBOOKS, "the repository has teaching notebooks to serve"


SWITCH = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def _why_no_normal_user() -> str | None:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return "starting the server as a normal user needs root (to switch user) and setpriv"
    jupyter = make_lab_command(as_user=NOBODY)[:2]
    probe = subprocess.run([*SWITCH, *jupyter, "--version"], cwd=ROOT, env={**os.environ, **normal_env(Path("/tmp"))},
                           capture_output=True, text=True)
    if probe.returncode:
        return f"a normal user cannot run {' '.join(jupyter)} here: {probe.stderr.strip()[-200:]}"
    return None


def normal_env(home: Path) -> dict[str, str]:
    """A normal user's own HOME and PATH (root's PATH may name directories that user cannot read)."""
    return {"HOME": str(home), "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin"}


_NO_NORMAL_USER = _why_no_normal_user()


@pytest.mark.skipif(_NO_NORMAL_USER is not None, reason=str(_NO_NORMAL_USER))
def test_make_lab_starts_and_serves_the_notebooks_as_a_normal_user(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    command = make_lab_command(as_user=NOBODY)
    switch = SWITCH
    with Lab(tmp_path, command=[*switch, *command], env=normal_env(tmp_path)) as lab:
        assert listed_notebooks(lab) == NOTEBOOKS
