"""SQLiteStore: the embedded default store, one SQLite file in WAL mode.

Layout: one table ``checkpoints`` (the checkpoint JSON in a TEXT column beside the fields a
listing needs), indexed on its id and on (agent, run, sequence); ``PRAGMA user_version`` is the
schema version. Schema 1 also indexed (run, sequence): every durable step paid for that b-tree
in its commit (about a fifth of the commit's CPU), so schema 2 drops it when it opens a file, and
a listing by run alone searches the (agent, run, sequence) index once per agent in the file.
Several agents, threads and processes may write one file: each writer uses short
``BEGIN IMMEDIATE`` transactions and waits for the lock (``busy_timeout``).

Durability guarantee (what "a state counted as completed in the store is really there" means):

* A checkpoint is *in the store* once its transaction committed. Every reader (this or any
  other process) sees exactly the committed checkpoints, so "completed in the store" is
  never a promise about data still on its way.
* ``synchronous=NORMAL`` in WAL mode: a commit is written to the WAL file before it returns,
  so it survives the death of the process (a killed kernel, SIGKILL, a segfault). Only an
  operating-system crash or power loss can lose the last few commits; pass
  ``synchronous="FULL"`` to fsync every commit if that matters more than speed.
* ``write_behind=True`` (default): ``put`` serializes the snapshot and queues it; a writer
  thread commits queued checkpoints in batches (group commit: one transaction for what
  arrives within ``commit_interval``, 2 ms by default), so the event loop never waits for the
  disk or for another process's lock. The loss window on a kill is what is still queued: the
  checkpoints of the last ~2 ms. Those states run again on resume; nothing committed does.
  ``flush()`` waits until everything queued is committed; reads flush first (read-your-writes),
  and the engine flushes at pause, completion, failure, cancel and fork, so a run that
  returned is entirely in the store. ``write_behind=False`` commits inside ``put``.
* A damaged file (not SQLite, truncated, failing ``quick_check``) or a newer schema raises
  ``CheckpointError`` naming the path at open, before anything is written to it.
* Damaged rows in an intact file follow the rule in ``_base``: ``list``/``runs`` leave them out
  with a ``FluffyWarning`` naming them, ``get`` raises naming the row, ``latest`` is the newest
  row that loads. Column sizes are bounded in SQL, so a hostile row is never read whole.
"""

from __future__ import annotations

import asyncio
import atexit
import builtins
import os
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine._bounds import MAX_JSON_BYTES, MAX_NAME
from ..engine._delta import fold
from ..engine._errors import CheckpointError, SerializationError
from ._base import (
    MAX_LISTED_ERROR,
    MAX_LISTED_PENDING,
    CheckpointInfo,
    RunInfo,
    check_matches_row,
    info_from_row,
    is_checkpoint,
    latest_good,
    pending_json,
    warn_bad_rows,
)
from ._memory import runs_from_infos

if TYPE_CHECKING:
    from ..engine._checkpoint import Checkpoint

SCHEMA_VERSION = 2
_HEADER = b"SQLite format 3\x00"
_QUICK_CHECK_LIMIT = 64 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    checkpoint_id   TEXT PRIMARY KEY,
    parent_id       TEXT,
    agent_name      TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    sequence        INTEGER NOT NULL,
    timestamp       REAL NOT NULL,
    trigger         TEXT NOT NULL,
    agent_status    TEXT NOT NULL,
    completed_count INTEGER NOT NULL,
    pending         TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL,
    error           TEXT,
    format_version  INTEGER NOT NULL,
    data            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_agent_run_seq ON checkpoints(agent_name, run_id, sequence);
DROP INDEX IF EXISTS checkpoints_run_seq;
"""
# the agents in the file, one index search each (a loose index scan), for a listing by run alone
_AGENTS = (
    "agents(name) AS (SELECT MIN(agent_name) FROM checkpoints UNION ALL SELECT (SELECT MIN(agent_name) "
    "FROM checkpoints WHERE agent_name > agents.name) FROM agents WHERE agents.name IS NOT NULL)"
)

_INSERT = "INSERT OR IGNORE INTO checkpoints VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
# every text column is cut in SQL, so a hostile row is never read whole; info_from_row then
# refuses what is too long or of the wrong type
_NAME_CUT = MAX_NAME + 1
_INFO_COLUMNS = (
    f"substr(c.checkpoint_id, 1, {_NAME_CUT}), substr(c.parent_id, 1, {_NAME_CUT}), "
    f"substr(c.agent_name, 1, {_NAME_CUT}), substr(c.run_id, 1, {_NAME_CUT}), c.sequence, c.timestamp, "
    "substr(c.trigger, 1, 65), substr(c.agent_status, 1, 40), c.completed_count, "
    f"CASE WHEN length(c.pending) <= {MAX_LISTED_PENDING} THEN c.pending END, c.size_bytes, "
    f"substr(c.error, 1, {MAX_LISTED_ERROR}), c.rowid"
)
_GET = (
    f"SELECT typeof(data), length(data), CASE WHEN length(data) <= {MAX_JSON_BYTES} THEN data END, "
    f"substr(agent_name, 1, {_NAME_CUT}), substr(run_id, 1, {_NAME_CUT}) FROM checkpoints WHERE checkpoint_id = ?"
)

_open_stores: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


# a damaged schema can make SQLite's own error message invalid UTF-8: Python then raises that instead
_DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)


class _NotUTF8(bytes):
    """A TEXT value whose bytes are not UTF-8: kept as bytes so only its row is refused."""


def _text(raw: bytes) -> str | bytes:
    # sqlite3's own decoding raises for the whole query; this way one damaged row is named and skipped
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _NotUTF8(raw)


_pid = os.getpid()  # this process's id, kept current by a fork hook: put() checks it per durable step


def _forked() -> None:  # pragma: no cover - runs in a forked child
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):  # no fork, no hook: the id never changes
    os.register_at_fork(after_in_child=_forked)


@atexit.register
def _close_all() -> None:  # pragma: no cover - runs at interpreter exit
    for store in list(_open_stores):
        try:
            store.close()
        except Exception:
            pass


def _row(cp: Checkpoint) -> tuple[Any, ...]:
    raw = type(cp).__pydantic_serializer__.to_json(cp)  # what model_dump_json returns, as UTF-8 bytes
    text = raw.decode()
    if len(text) > MAX_JSON_BYTES:  # characters: a quick first look, bytes are checked on load
        raise SerializationError(  # the data, not the store: a periodic checkpoint warns and the run goes on
            f"checkpoint {cp.checkpoint_id!r} of {cp.agent_name!r} is {len(text):,} characters of JSON, more "
            f"than the {MAX_JSON_BYTES:,} a store loads back; keep large data outside the context (a file, a "
            "database) and store its path"
        )
    return (
        cp.checkpoint_id, cp.parent_id, cp.agent_name, cp.run_id, cp.sequence, cp.timestamp, cp.trigger,
        cp.agent_status._value_, cp.completed_count, pending_json(cp.pending), len(raw),
        cp.error, cp.format_version, text,
    )


def _check_file(path: Path) -> None:
    """Refuse a file that is not an intact SQLite database, without opening it for writing."""
    if not path.exists():
        return
    if path.is_dir():
        raise CheckpointError(f"SQLiteStore({str(path)!r}): that is a directory; give a file path like 'runs.db'")
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(_HEADER):
        raise CheckpointError(
            f"SQLiteStore({str(path)!r}): the file is not a SQLite database (bad header); it was left "
            "untouched. Point the store at a new file, or restore the file from a backup"
        )
    if len(header) < 100:
        raise CheckpointError(
            f"SQLiteStore({str(path)!r}): the file is truncated ({size} bytes); it was left untouched"
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if page_size < 512 or size % page_size or (pages and size < pages * page_size):
        raise CheckpointError(
            f"SQLiteStore({str(path)!r}): the file is truncated or damaged ({size} bytes, page size "
            f"{page_size}, {pages} pages in the header); it was left untouched. Restore it from a backup "
            "or use a new file"
        )


def _seconds(name: str, value: Any, most: float) -> float:
    """A finite number of seconds in [0, most] for ``SQLiteStore(name=...)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= most:
        raise CheckpointError(
            f"SQLiteStore({name}={value!r}): give a number of seconds from 0 to {most:g} (a write is committed "
            "at most this long after it is made)" if name == "commit_interval" else
            f"SQLiteStore({name}={value!r}): give a number of seconds from 0 to {most:g}"
        )
    return float(value)


class SQLiteStore:
    """Checkpoints in one SQLite file (WAL mode), safe for several agents and processes.

    Args:
        path: The database file (created if missing), e.g. a file beside the notebook.
        write_behind: Commit from a writer thread (default) instead of inside ``put``.
        synchronous: SQLite ``synchronous`` level: ``"NORMAL"`` (survives process death) or
            ``"FULL"`` (also survives power loss, slower).
        busy_timeout: Seconds a writer waits for another writer's lock before failing.
        commit_interval: With write-behind, the writer gathers checkpoints for up to this many
            seconds into one transaction (group commit); a flush or read does not wait for it.

    Example:
        >>> import tempfile, os
        >>> store = SQLiteStore(os.path.join(tempfile.mkdtemp(), "runs.db"))
        >>> store.list()
        []
        >>> store.close()
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        write_behind: bool = True,
        synchronous: str = "NORMAL",
        busy_timeout: float = 30.0,
        commit_interval: float = 0.002,
    ) -> None:
        if str(synchronous).upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise CheckpointError(f"SQLiteStore(synchronous={synchronous!r}): use 'NORMAL' or 'FULL'")
        self.path = Path(path)
        self.write_behind = write_behind
        self.synchronous = str(synchronous).upper()
        self.busy_timeout = _seconds("busy_timeout", busy_timeout, 3600.0)
        self.commit_interval = _seconds("commit_interval", commit_interval, 1.0)
        existed = self.path.exists() and self.path.stat().st_size > 0
        _check_file(self.path)
        self._lock = threading.Lock()
        self._con = self._open(check=existed)
        self._cursor = self._con.cursor()  # one cursor for every put: a new one per step cost a weakref and its cleanup
        self._cond = threading.Condition()
        self._queue: deque[tuple[Any, ...]] = deque()
        self._queued = 0
        self._written = 0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._closed = False
        self._flushing = 0
        self._pid = _pid
        _open_stores.add(self)

    # -- connections -------------------------------------------------------------------
    def _fail(self, exc: BaseException, doing: str) -> CheckpointError:
        if not os.access(self.path if self.path.exists() else self.path.parent, os.W_OK) or "readonly" in str(exc):
            return CheckpointError(
                f"SQLiteStore({str(self.path)!r}): {doing} failed: the file (or its folder) is read-only; "
                "make it writable, or point the store at a file in a writable folder"
            )
        return CheckpointError(
            f"SQLiteStore({str(self.path)!r}): {doing} failed: {type(exc).__name__}: {exc}. If the file is "
            "damaged, restore it from a backup or point the store at a new file"
        )

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        con.text_factory = _text
        con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        return con

    def _open(self, check: bool) -> sqlite3.Connection:
        try:
            con = self._connect()
        except _DB_ERRORS as exc:
            raise self._fail(exc, "opening the file") from None
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CheckpointError(
                    f"SQLiteStore({str(self.path)!r}) was written by a newer fluffy_nb (store schema "
                    f"{version}, this one reads {SCHEMA_VERSION}); upgrade fluffy_nb to open it"
                )
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if version == 0 and tables - {"checkpoints"}:
                raise CheckpointError(
                    f"SQLiteStore({str(self.path)!r}): the file is a SQLite database of something else "
                    f"(tables {sorted(tables)}); it was left untouched. Use a separate file for checkpoints"
                )
            if check and self.path.stat().st_size <= _QUICK_CHECK_LIMIT:
                result = con.execute("PRAGMA quick_check").fetchone()[0]
                if result != "ok":
                    raise CheckpointError(
                        f"SQLiteStore({str(self.path)!r}): the file is damaged (quick_check: {result}); it "
                        "was left untouched. Restore it from a backup or use a new file"
                    )
            if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA synchronous={self.synchronous}")
            if version < SCHEMA_VERSION:  # a new file, or schema 1: the same script (idempotent) migrates it
                con.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;")
        except CheckpointError:
            con.close()
            raise
        except _DB_ERRORS as exc:
            con.close()
            raise self._fail(exc, "opening the store") from None
        return con

    # -- writing --------------------------------------------------------------------------
    def put(self, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint``: queued for the writer thread, or committed at once.

        Raises:
            CheckpointError: the store is closed, or an earlier write failed.
        """
        if not is_checkpoint(checkpoint):  # pydantic loads with the first checkpoint
            raise CheckpointError(f"SQLiteStore.put({checkpoint!r}): pass a Checkpoint")
        if self._closed or self._closing:
            raise CheckpointError(f"SQLiteStore({str(self.path)!r}) is closed; open a new SQLiteStore to write")
        if _pid != self._pid:
            self._check_process()
        if self._error is not None:
            self._raise_write_error()
        row = _row(checkpoint)  # serialize here: the snapshot is the caller's, and Python work needs the GIL anyway
        if not self.write_behind:
            self._commit([row], self._cursor, self._lock)
            return
        with self._cond:
            self._queue.append(row)
            self._queued += 1
            if len(self._queue) == 1:  # the writer sleeps only on an empty queue
                self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._writer, name=f"fluffy-sqlite-{self.path.name}",
                                                daemon=True)
                self._thread.start()

    def _commit(self, rows: list[tuple[Any, ...]], cur: sqlite3.Cursor, lock: threading.Lock | None) -> None:
        if lock is not None:
            lock.acquire()
        try:
            if len(rows) == 1:  # a durable step: one autocommit statement, committed when execute returns
                cur.execute(_INSERT, rows[0])
                return
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.executemany(_INSERT, rows)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        except (*_DB_ERRORS, OverflowError) as exc:  # OverflowError: an integer SQLite cannot hold
            raise self._fail(exc, f"writing {len(rows)} checkpoint(s)") from None
        finally:
            if lock is not None:
                lock.release()

    def _writer(self) -> None:
        cursor = None
        try:
            con = self._connect()
            con.execute(f"PRAGMA synchronous={self.synchronous}")
            cursor = con.cursor()
        except _DB_ERRORS as exc:
            con, self._error = None, self._fail(exc, "opening the writer connection")
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    break
                # group commit: gather what arrives within commit_interval into one transaction,
                # unless someone waits for it (flush, read, close)
                deadline = time.monotonic() + self.commit_interval
                while not self._flushing and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch = list(self._queue)
                self._queue.clear()
            try:
                if cursor is None:
                    raise self._error or CheckpointError("no writer connection")
                self._commit(batch, cursor, None)
            except BaseException as exc:
                self._error = exc
            with self._cond:
                self._written += len(batch)
                self._cond.notify_all()
        if con is not None:
            con.close()

    def _check_process(self) -> None:
        if _pid != self._pid:  # a forked child has the connection but not the writer thread
            raise CheckpointError(
                f"SQLiteStore({str(self.path)!r}) was opened in process {self._pid}; a forked process must "
                "open its own SQLiteStore(path) (several processes may share the file)"
            )

    def flush(self) -> None:
        """Wait until every checkpoint ``put`` so far is committed.

        Raises:
            CheckpointError: a queued write failed (the message says why).
        """
        if self._thread is not None:
            with self._cond:
                target = self._queued
                if self._written < target:
                    self._flushing += 1
                    self._cond.notify_all()
                    try:
                        while self._written < target:
                            self._cond.wait()
                    finally:
                        self._flushing -= 1
        self._raise_write_error()

    def _raise_write_error(self) -> None:
        err = self._error
        if err is not None:
            self._error = None
            if isinstance(err, CheckpointError):
                raise err
            raise self._fail(err, "a background write")

    # -- reading --------------------------------------------------------------------------
    def _query(self, sql: str, args: tuple[Any, ...], doing: str) -> list[tuple[Any, ...]]:
        if self._closed:
            raise CheckpointError(f"SQLiteStore({str(self.path)!r}) is closed; open a new SQLiteStore to read it")
        self._check_process()
        self.flush()
        with self._lock:
            try:
                return self._con.execute(sql, args).fetchall()
            except _DB_ERRORS as exc:
                raise self._fail(exc, doing) from None

    def get(self, checkpoint_id: str) -> Checkpoint:
        """The checkpoint with ``checkpoint_id`` (a delta folded onto its parents: always full).

        Raises:
            CheckpointError: no such checkpoint, or its row is damaged (not JSON, too large or
                deep, a field out of bounds, data that contradicts its row) or of a newer format,
                or it is a delta whose parents do not load.
        """
        cp = self._stored(checkpoint_id)
        return fold(cp, self._stored, f"checkpoint {checkpoint_id[:200]!r} in {str(self.path)!r}")

    def _stored(self, checkpoint_id: str) -> Checkpoint:
        """The checkpoint with ``checkpoint_id`` as stored (a delta stays a delta)."""
        if not isinstance(checkpoint_id, str):
            raise CheckpointError(f"SQLiteStore.get({checkpoint_id!r:.80}): a checkpoint id is a string")
        rows = self._query(_GET, (checkpoint_id,), f"reading checkpoint {checkpoint_id[:80]!r}")
        if not rows:
            raise CheckpointError(
                f"SQLiteStore({str(self.path)!r}) has no checkpoint {checkpoint_id[:200]!r}; "
                "list them with store.list()"
            )
        kind, length, data, agent, run = rows[0]
        where = f"checkpoint {checkpoint_id[:200]!r} in {str(self.path)!r}"
        if kind not in ("text", "blob"):
            raise CheckpointError(f"{where} cannot be loaded: its data is {kind}, not JSON text")
        if data is None:
            raise CheckpointError(
                f"{where} cannot be loaded: its data is {length:,} long, more than the {MAX_JSON_BYTES:,} allowed"
            )
        from ..engine._checkpoint import Checkpoint

        cp = Checkpoint.from_json(data, source=f"{where} cannot be loaded")
        return check_matches_row(cp, (checkpoint_id, agent, run), where)

    @staticmethod
    def _where(agent_name: str | None, run_id: str | None, table: str = "") -> tuple[str, tuple[Any, ...]]:
        conds, args = [], []
        if agent_name is not None:
            conds.append(f"{table}agent_name = ?")
            args.append(agent_name)
        elif run_id is not None:  # so that the (agent, run, sequence) index serves it
            conds.append(f"{table}agent_name IN agents")
        if run_id is not None:
            conds.append(f"{table}run_id = ?")
            args.append(run_id)
        return (" WHERE " + " AND ".join(conds)) if conds else "", tuple(args)

    def _ordered(self, columns: str, agent_name: str | None, run_id: str | None, tail: str) -> str:
        where, _ = self._where(agent_name, run_id)
        cwhere, _ = self._where(agent_name, run_id, "c.")
        agents = f"RECURSIVE {_AGENTS}, " if agent_name is None and run_id is not None else ""
        # CROSS JOIN: rows outside, their run's start found in ``r`` (an automatic index); the
        # other order scans every row once per run when nothing filters them
        return (
            f"WITH {agents}r AS (SELECT run_id, MIN(timestamp) AS started, MIN(rowid) AS first FROM checkpoints"
            f"{where} GROUP BY run_id) SELECT {columns} FROM checkpoints c CROSS JOIN r ON c.run_id = r.run_id"
            f"{cwhere} {tail}"
        )

    def _infos(self, sql: str, args: tuple[Any, ...], doing: str) -> builtins.list[CheckpointInfo | str]:
        """Listing rows of ``sql`` in order: a validated row, or the description of a damaged one."""
        out: builtins.list[CheckpointInfo | str] = []
        for row in self._query(sql, args, doing):
            try:
                out.append(info_from_row(row[:12]))
            except CheckpointError as exc:
                name = f"checkpoint {row[0][:80]!r}" if isinstance(row[0], str) and row[0] else f"row {row[12]}"
                out.append(f"{name}: {str(exc)[:200]}")
        return out

    def list(self, agent_name: str | None = None, run_id: str | None = None) -> builtins.list[CheckpointInfo]:
        """Checkpoints, filtered by agent and/or run, ordered by (run start, sequence).

        Rows whose listing is damaged are left out, with a ``FluffyWarning`` naming them.
        """
        _, args = self._where(agent_name, run_id)
        sql = self._ordered(_INFO_COLUMNS, agent_name, run_id, "ORDER BY r.started, r.first, c.sequence, c.rowid")
        rows = self._infos(sql, args + args, "listing checkpoints")
        warn_bad_rows(f"SQLiteStore({str(self.path)!r})", "list", [r for r in rows if isinstance(r, str)])
        return [r for r in rows if not isinstance(r, str)]

    def latest(self, agent_name: str, run_id: str | None = None) -> Checkpoint | None:
        """The last checkpoint of ``agent_name`` (of its latest run, or of ``run_id``) that loads, or None.

        Newer rows that are damaged are skipped with a ``FluffyWarning`` naming them.

        Raises:
            CheckpointError: there are checkpoints, but none of them loads.
        """
        _, args = self._where(agent_name, run_id)
        order = "ORDER BY r.started DESC, r.first DESC, c.sequence DESC, c.rowid DESC"

        def candidates() -> Iterator[CheckpointInfo | str]:  # newest first, a page at a time
            offset, page = 0, 8
            while True:
                sql = self._ordered(_INFO_COLUMNS, agent_name, run_id, f"{order} LIMIT {page} OFFSET {offset}")
                rows = self._infos(sql, args + args, "finding the latest checkpoint")
                yield from rows
                if len(rows) < page:
                    return
                offset += page
                page = min(page * 4, 4096)

        def get(row: CheckpointInfo | str) -> Checkpoint:
            if isinstance(row, str):  # a damaged listing
                raise CheckpointError(row)
            return self.get(row.checkpoint_id)

        return latest_good(f"SQLiteStore({str(self.path)!r})", candidates(), get)

    def runs(self, agent_name: str | None = None) -> builtins.list[RunInfo]:
        """The runs in this store, ordered by start (rows with a damaged listing left out, with a warning)."""
        return runs_from_infos(self.list(agent_name))

    def close(self) -> None:
        """Commit what is queued, stop the writer thread and close the file."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join()
            with self._lock:
                self._con.close()
            self._closed = True
            _open_stores.discard(self)

    # -- async twins ------------------------------------------------------------------------
    async def aput(self, checkpoint: Checkpoint) -> None:
        """Async twin of :meth:`put` (never waits for the disk with write-behind)."""
        if self.write_behind:
            self.put(checkpoint)
        else:
            await asyncio.to_thread(self.put, checkpoint)

    async def aget(self, checkpoint_id: str) -> Checkpoint:
        """Async twin of :meth:`get` (runs in a thread)."""
        return await asyncio.to_thread(self.get, checkpoint_id)

    async def alist(self, agent_name: str | None = None, run_id: str | None = None) -> builtins.list[CheckpointInfo]:
        """Async twin of :meth:`list` (runs in a thread)."""
        return await asyncio.to_thread(self.list, agent_name, run_id)

    async def alatest(self, agent_name: str, run_id: str | None = None) -> Checkpoint | None:
        """Async twin of :meth:`latest` (runs in a thread)."""
        return await asyncio.to_thread(self.latest, agent_name, run_id)

    # -- inspection ---------------------------------------------------------------------------
    def statistics(self) -> dict[str, Any]:
        """Checkpoints and runs stored, writes still queued, file size."""
        queued = self._queued - self._written
        if self._closed:
            return {"path": str(self.path), "closed": True, "queued": queued}
        rows = self._query("SELECT COUNT(*), COUNT(DISTINCT run_id) FROM checkpoints", (), "counting")
        return {"path": str(self.path), "checkpoints": rows[0][0], "runs": rows[0][1], "queued": queued,
                "bytes": self.path.stat().st_size if self.path.exists() else 0}

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("write-behind" if self.write_behind else "synchronous")
        return f"SQLiteStore({str(self.path)!r}, {state}, queued={self._queued - self._written})"
