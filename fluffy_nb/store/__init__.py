"""fluffy_nb.store: checkpoint stores behind one small protocol.

``MemoryStore`` keeps checkpoints in this process; ``SQLiteStore`` (the embedded default)
keeps them in one SQLite file in WAL mode that survives a dead kernel and may be shared by
several agents and processes. Both pass the same conformance suite
(``tests/store/test_conformance.py``). History records and diffs are engine objects,
re-exported here.
"""

from ..engine._history import CheckpointDiff, CheckpointHistory, diff_checkpoints
from ._base import CheckpointInfo, CheckpointStore, RunInfo
from ._memory import MemoryStore
from ._sqlite import SQLiteStore

__all__ = [
    "CheckpointDiff",
    "CheckpointHistory",
    "CheckpointInfo",
    "CheckpointStore",
    "MemoryStore",
    "RunInfo",
    "SQLiteStore",
    "diff_checkpoints",
]
