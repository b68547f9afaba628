"""The SQLite file's layout: schema, the SQL that reads and writes it, a row from a checkpoint, and
the check that refuses a file that is not an intact SQLite database before it is opened.

``SQLiteStore`` (``_sqlite``) owns connections, the writer thread and the store API; this module
owns what the file looks like, so a reader of one need not read the other.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine._bounds import MAX_JSON_BYTES, MAX_NAME
from ..engine._errors import CheckpointError, SerializationError
from ._base import MAX_LISTED_ERROR, MAX_LISTED_PENDING, pending_json

if TYPE_CHECKING:
    from ..engine._checkpoint import Checkpoint

SCHEMA_VERSION = 2
HEADER = b"SQLite format 3\x00"
QUICK_CHECK_LIMIT = 64 * 1024 * 1024

SCHEMA = """
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
AGENTS = (
    "agents(name) AS (SELECT MIN(agent_name) FROM checkpoints UNION ALL SELECT (SELECT MIN(agent_name) "
    "FROM checkpoints WHERE agent_name > agents.name) FROM agents WHERE agents.name IS NOT NULL)"
)

INSERT = "INSERT OR IGNORE INTO checkpoints VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
# every text column is cut in SQL, so a hostile row is never read whole; info_from_row then
# refuses what is too long or of the wrong type
_NAME_CUT = MAX_NAME + 1
INFO_COLUMNS = (
    f"substr(c.checkpoint_id, 1, {_NAME_CUT}), substr(c.parent_id, 1, {_NAME_CUT}), "
    f"substr(c.agent_name, 1, {_NAME_CUT}), substr(c.run_id, 1, {_NAME_CUT}), c.sequence, c.timestamp, "
    "substr(c.trigger, 1, 65), substr(c.agent_status, 1, 40), c.completed_count, "
    f"CASE WHEN length(c.pending) <= {MAX_LISTED_PENDING} THEN c.pending END, c.size_bytes, "
    f"substr(c.error, 1, {MAX_LISTED_ERROR}), c.rowid"
)
GET = (
    f"SELECT typeof(data), length(data), CASE WHEN length(data) <= {MAX_JSON_BYTES} THEN data END, "
    f"substr(agent_name, 1, {_NAME_CUT}), substr(run_id, 1, {_NAME_CUT}) FROM checkpoints WHERE checkpoint_id = ?"
)

# a damaged schema can make SQLite's own error message invalid UTF-8: Python then raises that instead
DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)


class NotUTF8(bytes):
    """A TEXT value whose bytes are not UTF-8: kept as bytes so only its row is refused."""


def text_or_bytes(raw: bytes) -> str | bytes:
    # sqlite3's own decoding raises for the whole query; this way one damaged row is named and skipped
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return NotUTF8(raw)


def checkpoint_row(cp: Checkpoint) -> tuple[Any, ...]:
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


def wal_in_use(path: Path) -> bool:
    """Whether ``path`` has a write-ahead log beside it (a connection has it open, or left it)."""
    return Path(f"{path}-wal").exists()


def check_file(path: Path) -> None:
    """Refuse a file that is not an intact SQLite database, without opening it for writing."""
    if not path.exists():
        return
    busy = wal_in_use(path)  # looked at before and after the header is read: a checkpoint may start or end between
    if path.is_dir():
        raise CheckpointError(f"SQLiteStore({str(path)!r}): that is a directory; give a file path like 'runs.db'")
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(HEADER):
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
    if header[24:28] != header[92:96] or busy or wal_in_use(path):
        # the header's page count is stale (SQLite's rule), or another connection may be copying its
        # write-ahead log into the file this instant (the file grows past its header a page at a
        # time): SQLite's own checks at open judge it then
        pages = 0
    if page_size < 512 or size % page_size or (pages and size < pages * page_size):
        raise CheckpointError(
            f"SQLiteStore({str(path)!r}): the file is truncated or damaged ({size} bytes, page size "
            f"{page_size}, {pages} pages in the header); it was left untouched. Restore it from a backup "
            "or use a new file"
        )
