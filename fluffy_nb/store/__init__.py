"""Checkpoint stores: one small protocol, MemoryStore and SQLiteStore.

(Filled in by issue 3.)
"""

__all__: list[str] = []
