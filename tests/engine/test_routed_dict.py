"""The dicts that note which context keys a state set or removed (a run's ``TrackedDict`` for
delta checkpoints, a Dask worker's tracking dict for the changes it sends back) see every
mutator: ``setdefault``, ``update``, ``popitem`` and ``clear`` go through the same two hooks."""

from __future__ import annotations

import pytest

from fluffy_nb.distributed._remote import _TrackingDict
from fluffy_nb.engine._delta import TrackedDict


def test_a_runs_context_notes_keys_set_and_removed_by_every_mutator() -> None:
    d = TrackedDict({"a": 1, "b": [1], "c": 3})
    d.mark_written()
    d.setdefault("d", 4)
    d.setdefault("a", 99)  # present: not set
    d.update({"e": 5}, f=[6])
    assert d.popitem() == ("f", [6])
    assert d.changed == {"d", "e"}
    assert d.removed == {"f"}
    assert d.mutable == {"b"}  # the popped list is no longer written with every delta
    d.clear()
    assert d == {}
    assert d.changed == set()
    assert d.removed == {"a", "b", "c", "d", "e", "f"}
    with pytest.raises(KeyError):
        d.popitem()


def test_a_workers_context_notes_writes_and_removals_by_every_mutator() -> None:
    d = _TrackingDict({"a": 1, "b": 2}, shared={})
    d.setdefault("c", 3)
    d.update(d=4)
    assert d.popitem() == ("d", 4)
    assert d.written == {"c"}
    assert d.removed == {"d"}
    d.clear()
    assert d.removed == {"a", "b", "c", "d"}
    assert d.written == set()
