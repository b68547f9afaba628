"""Loading a hostile checkpoint never executes or imports anything.

A checkpoint file may come from anywhere (a shared drive, a bug report). It can carry a
pickle payload or a class path; loading and restoring it must treat both as inert data and
fail with a clear error where a type is not registered in this process.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

from fluffy_nb.engine import Agent, Checkpoint, CheckpointError, SerializationError
from fluffy_nb.store import MemoryStore, SQLiteStore


class WritesMarker:
    """Unpickling this writes a marker file: the proof that code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (Path(self.path), "pwned"))


def agent() -> Agent:
    a = Agent("victim")

    async def only(ctx: Any) -> None:
        return None

    a.add_state("only", only)
    return a


def base(**kw: Any) -> dict[str, Any]:
    data = Agent("victim").create_checkpoint().to_dict()
    data.update({"agent_name": "victim", "run_id": "r", "state_status": {}, "pending": ["only"]})
    data.update(kw)
    return data


def test_the_payload_is_live_so_the_other_tests_mean_something(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    pickle.loads(base64.b64decode(base64.b64encode(pickle.dumps(WritesMarker(str(marker))))))
    assert marker.read_text() == "pwned"


def test_pickle_payload_in_shared_state_stays_an_inert_string(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = base64.b64encode(pickle.dumps(WritesMarker(str(marker)))).decode()
    data = base(shared_state={"model": payload, "__pickle__": payload, "py/object": "os.system"})
    a = agent()
    a.restore(Checkpoint.from_json(json.dumps(data)))
    assert a.get_state("model") == payload
    assert not marker.exists()


@pytest.mark.parametrize("extra_key", ["__pickle__", "__reduce__", "py/object"])
def test_unknown_top_level_fields_are_refused(tmp_path: Path, extra_key: str) -> None:
    marker = tmp_path / "marker"
    payload = base64.b64encode(pickle.dumps(WritesMarker(str(marker)))).decode()
    with pytest.raises(CheckpointError, match=extra_key.replace("/", ".")):
        Checkpoint.from_dict(base(**{extra_key: payload}))
    assert not marker.exists()


@pytest.mark.parametrize("class_path", ["os.system", "antigravity.Fly", "this.Zen", "subprocess.Popen"])
def test_class_path_in_typed_data_is_never_imported(tmp_path: Path, class_path: str) -> None:
    module = class_path.split(".")[0]
    was_loaded = module in sys.modules
    marker = tmp_path / "marker"
    payload = base64.b64encode(pickle.dumps(WritesMarker(str(marker)))).decode()
    data = base(typed_data={"cfg": {"type": class_path, "data": {"command": f"touch {marker}", "blob": payload}}})
    a = agent()
    cp = Checkpoint.from_json(json.dumps(data))  # loading is fine: it is just data
    with pytest.raises(SerializationError, match=rf"'cfg' holds type '{class_path}'.*not registered"):
        a.restore(cp)
    with pytest.raises(SerializationError):
        cp.typed_values()
    assert (module in sys.modules) == was_loaded
    assert not marker.exists()
    assert a.get_state("cfg") is None
    assert a.status.value == "idle"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_hostile_checkpoint_in_a_store_restores_nothing(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "marker"
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "s.db")
    data = base(typed_data={"x": {"type": "antigravity.Fly", "data": {}}},
                shared_state={"p": base64.b64encode(pickle.dumps(WritesMarker(str(marker)))).decode()})
    cp = Checkpoint.from_dict(data)
    store.put(cp)
    a = agent()
    a.store = store
    was_loaded = "antigravity" in sys.modules
    with pytest.raises(SerializationError, match="not registered"):
        a.restore(cp.checkpoint_id)
    assert ("antigravity" in sys.modules) == was_loaded
    assert not marker.exists()
    assert set(os.listdir(tmp_path)) <= {"s.db", "s.db-shm", "s.db-wal"}  # nothing else was written
    store.close()
