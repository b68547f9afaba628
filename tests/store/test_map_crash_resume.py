"""SIGKILL a durable payload fan-out mid-map, resume in a new process: finished payloads never run again.

``_map_crash_worker.py`` maps 80 payloads on a SQLiteStore with synchronous commits; every
branch appends its payload to a side log (O_APPEND + fsync) and prints ``ran N``. The test
kills the worker after a seeded random number of branches, reads which payloads the store's
latest checkpoint holds results for, resumes with ``resume_latest`` in a new process, and
checks from the side log that no committed payload ran again, every payload ran, at most one
(the branch caught between its side effect and its commit) ran twice, and the join got every
result in order.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from fluffy_nb.store import SQLiteStore

WORKER = Path(__file__).with_name("_map_crash_worker.py")
ITEMS = 80

pytestmark = pytest.mark.slow


def spawn(db: Path, log: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WORKER), str(db), str(log), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def crash_and_resume(tmp: Path, rng: random.Random) -> dict[str, int]:
    db, log = tmp / "runs.db", tmp / "side.log"
    kill_after = rng.randint(2, ITEMS - 5)
    proc = spawn(db, log, "fresh")
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        if line.startswith("ran "):
            seen += 1
            if seen == kill_after:
                break
    assert seen == kill_after, f"worker ended before {kill_after} branches: {proc.stderr.read()}"
    time.sleep(rng.uniform(0, 0.004))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    before = [int(x) for x in log.read_text().split()]
    store = SQLiteStore(db)
    latest = store.latest("crashy_map")
    store.close()
    assert latest is not None
    committed = {int(k) for r in latest.maps for k in r.results}

    resumed = spawn(db, log, "resume")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    after = [int(x) for x in log.read_text().split()][len(before):]
    result = json.loads(next(x for x in out.splitlines() if x.startswith("result "))[7:])

    assert committed <= set(before), "the store holds results of payloads that never ran"
    assert not committed & set(after), f"committed, yet run again: {sorted(committed & set(after))}"
    assert set(before) | set(after) == set(range(ITEMS))
    assert max(Counter(after).values()) == 1
    twice = set(before) & set(after)
    assert len(twice) <= 1, f"synchronous commits, yet {sorted(twice)} ran twice"
    assert result == {"status": "completed", "squares": [i * i for i in range(ITEMS)]}
    return {"killed_after": kill_after, "committed": len(committed), "rerun": len(twice)}


def test_a_sigkilled_durable_map_resumes_running_only_payloads_without_a_committed_result(tmp_path: Path) -> None:
    rng = random.Random(20261129)
    report = []
    for trial in range(3):
        tmp = tmp_path / f"trial{trial}"
        tmp.mkdir()
        report.append(crash_and_resume(tmp, rng))
    print(report)
