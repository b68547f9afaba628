"""`make lab` starts JupyterLab: the README's first command works as root and as a normal user.

As this user, the server is started with the very command line `make lab` runs (read from
``make -s lab-command``, so the Makefile's root detection is what is tested). As a normal user (when
the tests run as root, as CI does), `make lab` itself runs in a fresh copy of the repository: it makes
the venv with the system's python3, installs, and starts the server. Either way the test adds only
what it needs (127.0.0.1, a token, no browser, a free port; `make lab LAB_ARGS=...` for the full
command), lists the notebooks through the server's REST API, and stops the server. No browser is
involved.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import psutil
import pytest
from _lab import ROOT, Lab, hand_over

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

NOBODY = 65534
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


def make_lab_command(as_user: int | None = None, cwd: Path = ROOT) -> list[str]:
    """What ``make lab`` would run (for ``as_user`` when given: make evaluates ``id -u`` as that user)."""
    cmd = ["make", "-s", "--no-print-directory", "lab-command"]
    if as_user is not None:
        cmd = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups", *cmd]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True).stdout
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


def copy_checkout(dest: Path) -> None:
    """The repository's files as a fresh clone has them (tracked and new files, no venv, no build)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.mark.skipif(os.geteuid() != 0, reason="this user is a normal user: the test above ran `make lab` as one")
@pytest.mark.timeout(1200)
def test_make_lab_sets_up_and_serves_the_notebooks_for_a_normal_user() -> None:
    """A normal user's fresh copy: `make lab` makes the venv with the system's python3, installs, serves."""
    assert shutil.which("setpriv"), "setpriv (util-linux) switches to the normal user"
    assert subprocess.run(["/usr/bin/python3", "-c", "import ensurepip, venv"]).returncode == 0, (
        "Debian's python3 with venv is the normal user's Python (root's may sit under /root): "
        "`make browser-deps` installs python3-venv")
    with tempfile.TemporaryDirectory(prefix="fluffy-make-lab-") as tmp:
        top = Path(tmp)
        top.chmod(0o755)
        clone = top / "fluffy_nb"
        copy_checkout(clone)
        hand_over(clone, NOBODY)
        assert make_lab_command(as_user=NOBODY, cwd=clone)[:2] == [".venv/bin/jupyter", "lab"]
        with Lab(top / "lab", command=["make", "--no-print-directory", "lab"], cwd=clone, options_var="LAB_ARGS",
                 user=NOBODY, startup_timeout=900) as lab:
            assert listed_notebooks(lab) == NOTEBOOKS
            server = lab.proc
            assert server is not None
            # the server runs as that user, from the venv `make lab` made in the copy
            family = psutil.Process(server.pid).children(recursive=True)
            jupyter = [p for p in family if "jupyter" in " ".join(p.cmdline())]
            assert jupyter
            assert {p.uids().real for p in jupyter} == {NOBODY}
        assert (clone / ".venv" / ".fluffy-installed").exists()
