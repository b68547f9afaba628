"""A durable parent SIGKILLed inside its grandchild resumes there: no completed state runs again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fluffy_nb.store import SQLiteStore

WORKER = Path(__file__).with_name("_subflow_crash_worker.py")
pytestmark = pytest.mark.slow


def spawn(db: Path, log: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WORKER), str(db), str(log), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_inside_a_grandchild_resumes_inside_it(tmp_path: Path) -> None:
    db, log = tmp_path / "runs.db", tmp_path / "side.log"
    proc = spawn(db, log, "fresh")
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "ran g2":
            break
    else:
        pytest.fail(f"the worker never reached g2: {proc.stderr.read() if proc.stderr else ''}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert log.read_text().split() == ["plan", "fetch", "g1", "g2"]

    store = SQLiteStore(db)
    nested = {row.agent_name for row in store.list()}
    store.close()
    assert {"crash_team", "crash_team/research", "crash_team/research/deep"} <= nested

    resumed = spawn(db, log, "resume")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    after = log.read_text().split()[4:]
    assert after == ["g2", "write", "report"], "completed states of the parent, child or grandchild ran again"
    result = json.loads(next(x for x in out.splitlines() if x.startswith("result "))[7:])
    assert result == {"status": "completed", "trail": ["plan", "fetch", "g1", "g2", "write", "report"]}
