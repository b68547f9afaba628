"""Drive a real JupyterLab in headless Chromium: start/stop the server, open and run a notebook.

Used by the browser tests and by ``scripts/screenshot_notebooks.py``. Everything is private to
one temporary directory (config, settings, workspaces, runtime) so a developer's own JupyterLab
setup never leaks in, and nothing is left running: :class:`Lab` is a context manager that kills
the server's whole process group (kernels included).

Chromium is Debian's ``/usr/bin/chromium`` (``apt-get install chromium``); Playwright's own
browser download is never used. Override the path with ``FLUFFY_NB_CHROMIUM``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("FLUFFY_NB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# JupyterLab user settings written into the private settings dir: no news or update pop-ups,
# no virtual scrolling (so outputs below the fold are rendered and can be screenshotted).
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # never write executed outputs back into the committed notebooks
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


def chromium_available() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found: apt-get install -y chromium (or set FLUFFY_NB_CHROMIUM)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install playwright (no browser download needed)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    """A JupyterLab server on 127.0.0.1 with a token, rooted at the repository.

    Args:
        tmp: A private directory for config, settings, workspaces and runtime files. The
            server's root is ``tmp/root`` holding a copy of ``notebooks/``, so running a notebook
            in the browser can never modify the committed files.
        env: Extra environment for the server and its kernels (e.g. ``FLUFFY_NB_AUTOANSWER``).
        startup_timeout: Seconds to wait for the server to answer ``/api/status``.
        command: Start the server with this command line instead (e.g. the one ``make lab`` runs,
            which serves ``notebooks/`` of the repository itself), run from ``cwd``; only the
            test's own options (127.0.0.1, port, token, no browser) are added to it: appended,
            or, with ``options_var``, given as that one make variable (``make lab LAB_ARGS=...``).
        cwd: Where ``command`` runs (default: the repository root).
        user: Run ``command`` as this user id (root switches to it with ``setpriv``): ``tmp`` is
            handed to that user, and the server sees only ``env`` (with HOME in ``tmp``), not
            root's environment.
    """

    def __init__(self, tmp: Path, env: dict[str, str] | None = None, startup_timeout: float = 60.0,
                 command: list[str] | None = None, cwd: Path = ROOT, options_var: str | None = None,
                 user: int | None = None) -> None:
        self.tmp = Path(tmp)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.extra_env = env or {}
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.tmp / "lab.log"
        self.command = command
        self.cwd = cwd
        self.options_var = options_var
        self.user = user

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        dirs = {name: self.tmp / name for name in ("config", "settings", "workspaces", "runtime", "root")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        shutil.copytree(ROOT / "notebooks", dirs["root"] / "notebooks", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.sqlite*", ".ipynb_checkpoints", "__pycache__"))
        self.root = dirs["root"]
        for rel, value in SETTINGS.items():
            path = dirs["settings"] / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        if self.user is None:
            env = {k: v for k, v in os.environ.items() if k != "FLUFFY_NB_AUTOANSWER"}
        else:  # a normal user's own environment, not root's
            env = {"HOME": str(self.tmp), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        env.update(
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
            JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            JUPYTER_PLATFORM_DIRS="1",
        )
        env.update(self.extra_env)
        ours = [
            "--no-browser", "--ip=127.0.0.1", f"--port={self.port}", "--port-retries=0",
            f"--IdentityProvider.token={self.token}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if self.command is not None:
            options = [f"{self.options_var}={shlex.join(ours)}"] if self.options_var else ours
            cmd, cwd = [*self.command, *options], self.cwd
            if self.user is not None:
                hand_over(self.tmp, self.user)
                cmd = ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--clear-groups", *cmd]
        else:
            cmd = [sys.executable, "-m", "jupyterlab", *ours, f"--ServerApp.root_dir={dirs['root']}"]
            cwd = dirs["root"]
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                cmd.append("--allow-root")
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.base}/api/status?token={self.token}"
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"JupyterLab did not answer within {self.startup_timeout}s:\n{self.log()}")
            time.sleep(0.2)  # polling a server that is starting up; bounded by the deadline above

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}{sep}token={self.token}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Shut down kernels and the server; kill the process group if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            req = urllib.request.Request(self.url("/api/shutdown"), method="POST")
            urllib.request.urlopen(req, timeout=5).close()
            proc.wait(timeout=10)
        except Exception:
            pass
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        else:  # server exited; make sure no kernel of its group survives
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def hand_over(tree: Path, uid: int) -> None:
    """Make ``tree`` (and everything in it) belong to ``uid``, its group the same number."""
    for path in [tree, *tree.rglob("*")]:
        os.chown(path, uid, uid, follow_symlinks=False)


def launch_browser(playwright: Any) -> Any:
    """Headless Debian Chromium through Playwright (never a downloaded browser)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def shutdown_kernels(lab: Lab) -> None:
    """Shut every kernel down through the server's REST API (a rerun must not find a busy one)."""
    with urllib.request.urlopen(lab.url("/api/kernels"), timeout=10) as resp:
        kernels = json.load(resp)
    for kernel in kernels:
        req = urllib.request.Request(lab.url(f"/api/kernels/{kernel['id']}"), method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()


def open_notebook(page: Any, lab: Lab, path: str, timeout_ms: int = 60_000, app: str = "lab") -> None:
    """Open ``path`` (relative to the repo) with a fresh workspace and a fresh, idle kernel.

    ``app="notebooks"`` opens it in Jupyter Notebook 7 instead of JupyterLab (same server).
    """
    shutdown_kernels(lab)
    where = f"/lab/tree/{path}?reset" if app == "lab" else f"/notebooks/{path}"
    page.goto(lab.url(where), wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=timeout_ms)
    wait_kernel_idle(page, timeout_ms)
    # focus the first cell, so the notebook (not the file browser) receives commands
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.click()
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell.jp-mod-active", timeout=timeout_ms)


def wait_kernel_idle(page: Any, timeout_ms: int = 60_000) -> None:
    """The notebook's kernel is connected and idle (toolbar indicator and status bar agree)."""
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=timeout_ms)
    statusbar = page.locator("#jp-main-statusbar")
    if statusbar.count():  # JupyterLab; Notebook 7 has no status bar
        statusbar.get_by_text(re.compile(r"\|\s*Idle\s*$")).wait_for(timeout=timeout_ms)


def run_all(page: Any, timeout_ms: int = 30_000) -> None:
    """Run > Run All Cells, through the menu like a person would; waits until the first cell ran."""
    first = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt").first
    for attempt in (1, 2):
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel",
                     has_text=re.compile(r"^Run All Cells$")).click()
        try:
            # the first code cell shows [*] (running) or [1] (done) once the kernel took the request
            page.wait_for_function(
                "el => /\\[(\\*|\\d+)\\]/.test(el.textContent)", arg=first.element_handle(), timeout=timeout_ms)
            return
        except Exception:
            if attempt == 2:
                raise
            # a kernel that reported idle before its session was fully wired drops the request:
            # wait for idle again and ask once more
            wait_kernel_idle(page)


def wait_all_executed(page: Any, timeout_ms: int = 90_000) -> None:
    """Every code cell has an execution count (none pending '[*]') and the kernel is idle."""
    page.wait_for_function(
        """() => {
            const sel = '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt';
            const prompts = [...document.querySelectorAll(sel)];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""",
        timeout=timeout_ms,
    )
    wait_kernel_idle(page, timeout_ms)


def cell_errors(page: Any) -> list[str]:
    """Text of every error output in the open notebook."""
    panel = ".jp-NotebookPanel:not(.lm-mod-hidden)"
    stderr = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    return page.locator(f"{panel} {stderr}").all_inner_texts()

