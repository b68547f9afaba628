"""SQLiteStore beyond the conformance suite: files that survive, damaged files and rows, shared files."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path
from typing import Any

import _checkpoint_mutations as mut
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluffy_nb.engine import Checkpoint, CheckpointError, FluffyWarning
from fluffy_nb.engine._bounds import MAX_JSON_BYTES
from fluffy_nb.store import SQLiteStore
from fluffy_nb.store._sqlfile import check_file


def cp(run: str = "r1", seq: int = 1, **kw: object) -> Checkpoint:
    return Checkpoint(agent_name="a", run_id=run, sequence=seq, timestamp=100.0 + seq,
                      shared_state={"blob": "x" * 2000, "seq": seq}, **kw)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    for i in range(1, 41):
        store.put(cp(seq=i))
    store.close()
    return path


def test_checkpoints_survive_closing_and_reopening(filled: Path) -> None:
    store = SQLiteStore(filled)
    assert [r.sequence for r in store.list("a")] == list(range(1, 41))
    assert store.latest("a").shared_state["seq"] == 40
    store.close()


def test_file_uses_wal_mode(filled: Path) -> None:
    store = SQLiteStore(filled)
    con = sqlite3.connect(filled)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    store.close()


def test_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 50)
    before = digest(path)
    with pytest.raises(CheckpointError, match=r"notes\.db.*not a SQLite database"):
        SQLiteStore(path)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_truncated_file_is_refused_and_left_untouched(filled: Path) -> None:
    data = filled.read_bytes()
    filled.write_bytes(data[: len(data) // 2 + 100])
    before = digest(filled)
    with pytest.raises(CheckpointError, match=r"runs\.db.*truncated"):
        SQLiteStore(filled)
    assert digest(filled) == before


def test_a_file_whose_log_another_connection_is_copying_in_is_not_taken_for_truncated(filled: Path) -> None:
    """While another process copies its write-ahead log into the file (a checkpoint, e.g. as its
    last connection closes), the header already counts pages the file does not have yet: opening
    the store then must not call the file truncated (it did, now and then, for a second process
    opening a shared file). With the log beside it, SQLite's own checks at open judge the file."""
    data = filled.read_bytes()
    page = int.from_bytes(data[16:18], "big")
    filled.write_bytes(data[: len(data) // page // 2 * page])  # whole pages, fewer than the header says
    with pytest.raises(CheckpointError, match=r"runs\.db.*truncated"):
        check_file(filled)
    Path(f"{filled}-wal").write_bytes(b"")  # a connection's log beside it
    check_file(filled)
    with pytest.raises(CheckpointError, match=r"runs\.db.*damaged"):
        SQLiteStore(filled)  # and this one really is short: SQLite's quick_check says so


def test_file_with_damaged_pages_is_refused_and_left_untouched(filled: Path) -> None:
    data = bytearray(filled.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for p in range(1, len(data) // page):  # keep page 1 (header, schema); scramble the others
        data[p * page: p * page + 64] = bytes(range(64))
    filled.write_bytes(bytes(data))
    before = digest(filled)
    with pytest.raises(CheckpointError, match=r"runs\.db"):
        SQLiteStore(filled).list()
    assert digest(filled) == before


def test_sqlite_file_of_another_program_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    before = digest(path)
    with pytest.raises(CheckpointError, match="something else"):
        SQLiteStore(path)
    assert digest(path) == before


def test_store_written_by_a_newer_schema_is_refused(filled: Path) -> None:
    con = sqlite3.connect(filled)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(CheckpointError, match="newer fluffy_nb"):
        SQLiteStore(filled)


def test_directory_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="directory"):
        SQLiteStore(tmp_path)


def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    store.put(cp())
    store.close()
    with pytest.raises(CheckpointError, match="closed"):
        store.put(cp(seq=2))
    assert [r.sequence for r in SQLiteStore(tmp_path / "x.db").list()] == [1]


def test_flush_commits_everything_queued_so_another_connection_sees_it(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    store = SQLiteStore(path)
    for i in range(1, 101):
        store.put(cp(seq=i))
    store.flush()
    con = sqlite3.connect(path)
    assert con.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 100
    con.close()
    assert store.statistics()["queued"] == 0
    store.close()


def test_failed_background_write_is_reported_on_the_next_call(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    store = SQLiteStore(path)
    store.put(cp())
    store.flush()
    con = sqlite3.connect(path)
    con.execute("DROP TABLE checkpoints")  # the writer's next insert must fail
    con.close()
    store.put(cp(seq=2))
    with pytest.raises(CheckpointError, match=r"x\.db.*writing 1 checkpoint"):
        store.flush()


WRITER = textwrap.dedent(
    """
    import sys
    from fluffy_nb.engine import Checkpoint
    from fluffy_nb.store import SQLiteStore
    path, run, write_behind = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    store = SQLiteStore(path, write_behind=write_behind, busy_timeout=60)
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(1, 151):
        store.put(Checkpoint(agent_name="shared", run_id=run, sequence=i, timestamp=float(i),
                             shared_state={"i": i, "pad": "p" * 500}))
    store.close()
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("write_behind", [True, False])
def test_two_processes_writing_one_file_lose_nothing(tmp_path: Path, write_behind: bool) -> None:
    path = tmp_path / "shared.db"
    SQLiteStore(path).close()  # create it; each writer opens it as an existing store
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), run, "1" if write_behind else "0"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for run in ("p1", "p2")
    ]
    for p in procs:
        line = p.stdout.readline().strip()
        assert line == "ready", p.stderr.read() if not line else line
    for p in procs:  # release both at once
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert out.strip() == "done", err
    store = SQLiteStore(path)
    for run in ("p1", "p2"):
        assert [r.sequence for r in store.list(run_id=run)] == list(range(1, 151))
        assert store.latest("shared", run_id=run).shared_state["i"] == 150
    assert len(store.runs("shared")) == 2
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_must_open_its_own_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    store.put(cp())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report what using the parent's store does, then leave at once
        try:
            store.put(cp(seq=2))
            msg = b"no error"
        except CheckpointError as exc:
            msg = str(exc).encode()
        os.write(write, msg)
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as f:
        assert b"a forked process must open its own SQLiteStore" in f.read()
    assert [r.sequence for r in store.list()] == [1]
    store.close()


def _durable_chain(path: Path, n: int) -> None:
    from fluffy_nb import Agent

    agent = Agent("forked", store=SQLiteStore(path, write_behind=False), durable=True)
    for i in range(n):
        async def step(ctx: Any, i: int = i) -> str | None:
            ctx.set_state(f"k{i}", i)
            return f"s{i + 1}" if i + 1 < n else None

        agent.add_state(f"s{i}", step)
    agent.run_sync()
    agent.store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_and_parent_durable_runs_all_land_in_one_file(tmp_path: Path) -> None:
    # checkpoint ids are drawn ahead in bulk: a child that reused its parent's next ids would have
    # its checkpoints silently ignored (same id) in the file both write
    path = tmp_path / "shared.db"
    _durable_chain(path, 3)  # the parent has drawn ids ahead
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _durable_chain(path, 20)
            code = 0
        finally:
            os._exit(code)
    _durable_chain(path, 20)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store = SQLiteStore(path)
    runs = store.runs("forked")
    assert [r.checkpoints for r in runs] == [4, 21, 21]  # a checkpoint per state, plus the completion one
    ids = [r.checkpoint_id for r in store.list("forked")]
    assert len(set(ids)) == len(ids) == 46
    store.close()


@pytest.mark.parametrize(("column", "value", "problem"), [
    ("pending", "not json", "pending"),
    ("pending", "[" * 10_000 + "]" * 10_000, "nested"),
    ("pending", '["ok", 5]', "pending"),
    ("sequence", "three", "sequence"),
    ("sequence", -1, "sequence"),
    ("timestamp", "noon", "timestamp"),
    ("agent_status", "hacked", "agent_status"),
    ("completed_count", 2.5, "completed_count"),
    ("size_bytes", None, "size_bytes"),
])
def test_row_with_a_damaged_listing_is_left_out_of_list_and_named(
    filled: Path, column: str, value: object, problem: str
) -> None:
    store = SQLiteStore(filled)
    victim = store.list("a")[19].checkpoint_id
    con = sqlite3.connect(filled)
    with con:
        # a damaged file breaks the schema's NOT NULL too: rebuild the table without it
        if value is None:
            con.executescript(
                "CREATE TABLE t AS SELECT * FROM checkpoints; DROP TABLE checkpoints; "
                "ALTER TABLE t RENAME TO checkpoints;"
            )
        con.execute(f"UPDATE checkpoints SET {column} = ? WHERE checkpoint_id = ?", (value, victim))
    con.close()
    with pytest.warns(FluffyWarning, match=rf"(?s)list skipped 1 damaged row.*{victim}.*{problem}"):
        rows = store.list("a")
    assert len(rows) == 39
    assert victim not in {r.checkpoint_id for r in rows}
    with warnings.catch_warnings():  # latest may name the row too, where SQLite sorts it first
        warnings.simplefilter("ignore", FluffyWarning)
        assert store.latest("a").shared_state["seq"] == 40
    with pytest.warns(FluffyWarning, match=victim):
        assert store.runs("a")[0].checkpoints == 39
    store.close()


def test_oversized_data_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    c = cp()
    store.put(c)
    store.flush()
    con = sqlite3.connect(store.path)
    with con:
        con.execute("UPDATE checkpoints SET data = ? || data WHERE checkpoint_id = ?",
                    (" " * (MAX_JSON_BYTES + 1), c.checkpoint_id))
    con.close()
    with pytest.raises(CheckpointError, match=rf"{c.checkpoint_id}.*more than the"):
        store.get(c.checkpoint_id)
    store.close()


def test_data_stored_as_bytes_that_are_not_text_is_refused_naming_the_row(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db", write_behind=False)
    c = cp()
    store.put(c)
    con = sqlite3.connect(store.path)
    with con:
        con.execute("UPDATE checkpoints SET data = X'7BFF' WHERE checkpoint_id = ?", (c.checkpoint_id,))
    con.close()
    with pytest.raises(CheckpointError, match=rf"{c.checkpoint_id}.*not UTF-8"):
        store.get(c.checkpoint_id)
    store.close()


# -- property-based: a real store file with damaged bytes or rows ---------------------------------
_CLEAN: list[Any] = []


def clean_store() -> tuple[Path, list[dict[str, Any]]]:
    """A real store file (made once) and the checkpoints in it."""
    if not _CLEAN:
        seeds = mut.seed_checkpoints()
        path = Path(tempfile.mkdtemp(prefix="fluffy-clean-")) / "clean.db"
        mut.make_store_file(path, seeds)
        mut.store_outcome(path)  # warm up lazy imports
        _CLEAN.extend([path, seeds])
    return _CLEAN[0], _CLEAN[1]


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_a_damaged_store_file_reads_cleanly_or_raises_checkpoint_error(rng: random.Random) -> None:
    clean, seeds = clean_store()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "damaged.db"
        mut.damage_store_file(clean, path, seeds, rng)
        outcome = mut.store_outcome(path)
    assert outcome.kind in ("loaded", "CheckpointError"), outcome.detail
    assert outcome.seconds < 10.0  # bounded work: no input makes loading hang (speed: benchmarks/fuzz_checkpoints.py)
    assert outcome.imported == []


@pytest.mark.parametrize("write_behind", [True, False])
def test_an_integer_sqlite_cannot_hold_is_a_checkpoint_error_on_write(tmp_path: Path, write_behind: bool) -> None:
    store = SQLiteStore(tmp_path / "runs.db", write_behind=write_behind)
    huge = Checkpoint.model_construct(**{**cp().__dict__, "sequence": 2**64})  # unvalidated, as the engine builds
    def write() -> None:
        store.put(huge)
        store.flush()

    with pytest.raises(CheckpointError, match="OverflowError"):
        write()
    store.close()


_SCHEMA_1_RUN_INDEX = "CREATE INDEX checkpoints_run_seq ON checkpoints(run_id, sequence)"


def _indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as con:
        return {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
                if not name.startswith("sqlite_autoindex")}


def test_a_schema_1_file_opens_migrated_with_every_checkpoint_listed_and_loading(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    for run, agent in (("r1", "a"), ("r2", "a"), ("r2", "b"), ("r3", "b")):  # r2: a run id two agents wrote
        for seq in (1, 2):
            store.put(Checkpoint(agent_name=agent, run_id=run, sequence=seq, timestamp=float(seq),
                                 shared_state={"who": f"{agent}{run}{seq}"}))
    store.close()
    with sqlite3.connect(path) as con:  # the layout fluffy_nb wrote before schema 2
        con.execute(_SCHEMA_1_RUN_INDEX)
        con.execute("PRAGMA user_version = 1")
    con.close()
    assert _indexes(path) == {"checkpoints_agent_run_seq", "checkpoints_run_seq"}

    store = SQLiteStore(path)
    assert [(r.agent_name, r.run_id, r.sequence) for r in store.list(run_id="r2")] == [
        ("a", "r2", 1), ("b", "r2", 1), ("a", "r2", 2), ("b", "r2", 2)]  # one run: by sequence
    assert [(r.run_id, r.sequence) for r in store.list("b")] == [("r2", 1), ("r2", 2), ("r3", 1), ("r3", 2)]
    assert store.latest("a").shared_state == {"who": "ar22"}
    assert len(store.list()) == 8
    store.close()
    assert _indexes(path) == {"checkpoints_agent_run_seq"}  # one b-tree less in every commit
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    con.close()


def test_listings_search_the_index_instead_of_reading_every_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    statements: list[str] = []
    connect = SQLiteStore._connect

    def traced(self: SQLiteStore) -> sqlite3.Connection:
        con = connect(self)
        con.set_trace_callback(statements.append)
        return con

    monkeypatch.setattr(SQLiteStore, "_connect", traced)
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    for i in range(30):
        store.put(Checkpoint(agent_name=f"a{i % 3}", run_id=f"r{i // 2}", sequence=i % 2, timestamp=float(i)))
    queries = {
        "agent": lambda: store.list("a1"), "run": lambda: store.list(run_id="r7"),
        "agent and run": lambda: store.list("a2", "r7"), "latest": lambda: store.latest("a1"),
        "everything": lambda: store.list(),
    }
    plans = {}
    with sqlite3.connect(path) as con:
        for what, query in queries.items():
            statements.clear()
            assert query()
            sql = next(s for s in statements if "FROM checkpoints c" in s)
            plans[what] = [row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql)]
    con.close()
    store.close()
    for what, plan in plans.items():
        scans = [step for step in plan if step.startswith(("SCAN c", "SCAN checkpoints"))]
        if what == "everything":  # each row read once, its run's start looked up (never rows x runs)
            assert any(step.startswith("SEARCH r USING AUTOMATIC") for step in plan), plan
        else:
            assert scans == [], f"{what}: {plan}"


def test_a_row_holds_the_checkpoints_json_its_byte_size_and_pending_names_as_json(tmp_path: Path) -> None:
    names = ['plain', 'quote"d', "back\\slash", "naïve ☃", "tab\there", "\u2028"]
    c = Checkpoint(agent_name="a", run_id="r1", timestamp=1.0, pending=names,
                   shared_state={"text": "héllo ☃ \U0001f600"})
    store = SQLiteStore(tmp_path / "runs.db", write_behind=False)
    store.put(c)
    (info,) = store.list()
    store.close()
    assert info.pending == tuple(names)
    with sqlite3.connect(tmp_path / "runs.db") as con:
        data, size, pending = con.execute("SELECT data, size_bytes, pending FROM checkpoints").fetchone()
    con.close()
    assert data == c.model_dump_json()
    assert size == len(data.encode()) > len(data)
    assert pending == json.dumps(names)
