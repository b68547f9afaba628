"""THE crash test: SIGKILL a durable 200-state run at random points, resume in a new process.

``_crash_worker.py`` runs the workflow on a SQLiteStore; every state appends its name to a
side log (O_APPEND + fsync) when it runs and prints ``ran NAME``. The test reads those lines,
kills the worker with SIGKILL after a seeded random number of them (plus a random delay of
up to a few ms), reads what the store holds, then resumes with ``resume_latest`` in a new
process and checks, from the side log:

* completed-in-store => never re-run: no state the store recorded as completed before the
  crash runs again after it;
* the store never claims more than ran: everything it recorded as completed is in the log;
* every state runs, each at most once after the crash, and a state runs twice only if it ran
  before the crash without its checkpoint committed (the window);
* with ``write_behind=False`` that window is at most one state (commit happens inside the
  state's completion, nothing awaits between the side effect and the commit);
* the final result is right and the store's last checkpoint says so.
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

WORKER = Path(__file__).with_name("_crash_worker.py")
sys.path.insert(0, str(WORKER.parent))
import _crash_worker as wf  # noqa: E402

pytestmark = pytest.mark.slow
ALL = set(wf.names())
TOTAL = sum(wf.weight(n) for n in ALL)


def spawn(db: Path, log: Path, mode: str, write_behind: bool) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(db), str(log), mode, "1" if write_behind else "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def crash_and_resume(tmp: Path, rng: random.Random, write_behind: bool) -> dict[str, object]:
    db, log = tmp / "runs.db", tmp / "side.log"
    assert len(ALL) == 200
    kill_after = rng.randint(3, 195)
    proc = spawn(db, log, "fresh", write_behind)
    seen = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("ran "):
            seen += 1
            if seen == kill_after:
                break
    assert seen == kill_after, f"worker ended before {kill_after} states: {proc.stderr.read()}"
    time.sleep(rng.uniform(0, 0.004))  # land anywhere in the next state's work or commit
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    before = log.read_text().split()
    store = SQLiteStore(db)
    latest = store.latest("crashy")
    committed = set(latest.completed_states) if latest is not None else set()
    store.close()

    resumed = spawn(db, log, "resume", write_behind)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    after = log.read_text().split()[len(before):]
    result = json.loads(next(x for x in out.splitlines() if x.startswith("result "))[7:])

    runs_before, runs_after = Counter(before), Counter(after)
    assert committed <= set(before), "the store claims states that never ran"
    assert not committed & set(after), f"completed in store, yet re-run: {sorted(committed & set(after))}"
    assert set(before) | set(after) == ALL
    assert max(runs_before.values()) == 1
    assert max(runs_after.values()) == 1
    twice = {n for n in ALL if runs_before[n] + runs_after[n] == 2}
    window = set(before) - committed
    assert twice <= window
    if not write_behind:
        assert len(window) <= 1, f"synchronous commits, yet {sorted(window)} ran without a checkpoint"
    assert result == {"status": "completed", "total": TOTAL, "completed": 200}

    final = SQLiteStore(db)
    last = final.latest("crashy")
    assert last is not None
    assert last.agent_status.value == "completed"
    assert set(last.completed_states) == ALL
    assert last.shared_state["total"] == TOTAL
    assert len(final.runs("crashy")) == 1  # the resume continued the same run
    final.close()
    return {"killed_after": kill_after, "committed": len(committed), "window": len(window), "rerun": len(twice)}


@pytest.mark.parametrize(("write_behind", "trials"), [(True, 5), (False, 3)])
def test_sigkilled_durable_run_resumes_without_rerunning_committed_states(
    tmp_path: Path, write_behind: bool, trials: int
) -> None:
    rng = random.Random(20261123 + write_behind)
    report = []
    for trial in range(trials):
        tmp = tmp_path / f"trial{trial}"
        tmp.mkdir()
        report.append(crash_and_resume(tmp, rng, write_behind))
    print(f"write_behind={write_behind}: {report}")
