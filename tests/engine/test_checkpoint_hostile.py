"""Loading a hostile checkpoint never executes or imports anything, and fails only with CheckpointError.

A checkpoint file may come from anywhere (a shared drive, a bug report). It can carry a
pickle payload or a class path; loading and restoring it must treat both as inert data and
fail with a clear error where a type is not registered in this process. It can also be
malformed in any way: too deep, too large, out-of-bounds counts, wrong types; every such
input is a ``CheckpointError`` naming the source and the problem, within a second. A
Hypothesis test mutates real checkpoints (``make fuzz`` runs 100,000 of them).
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _checkpoint_mutations as mut
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluffy_nb import TypedContextData
from fluffy_nb.engine import Agent, Checkpoint, CheckpointError, SerializationError
from fluffy_nb.engine._bounds import MAX_JSON_BYTES, MAX_NAME, MAX_PAYLOADS, MAX_STATES
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


# -- bounded loading: every malformed input is a CheckpointError naming what is wrong ----------
def base_json(**kw: Any) -> str:
    return json.dumps(base(**kw))


def _deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize(("text", "problem"), [
    (base_json()[:-1] + ', "metadata": {"x": ' + _deep(100_000) + "}}", "nested more than the 64 levels"),
    (_deep(1_000_000), "nested"),
    (base_json()[:-1] + ', "steps": NaN}', "NaN"),
    (base_json()[:-1] + ', "steps": -Infinity}', "Infinity"),
    (base_json().replace('"timestamp": ', '"timestamp": 1e999, "x": '), "too large for a float"),
    (base_json()[:-1] + ', "steps": ' + "9" * 5000 + "}", "more than 1000 digits"),
    (base_json(shared_state={"s": "\\ud800"}).replace("\\\\ud800", "\\ud800"), "surrogate"),
    (b"\xff\xfe{}", "not UTF-8"),
    ("[]", "must be a JSON object"),
    ("", "not valid JSON"),
    (" " * (MAX_JSON_BYTES + 1), "more than the"),
])
def test_malformed_json_is_refused_with_a_reason_before_any_deep_work(text: str | bytes, problem: str) -> None:
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=rf"^my-file\.json: .*{problem}"):
        Checkpoint.from_json(text, source="my-file.json")
    assert time.perf_counter() - start < 5.0  # refused before deep work (what it would take: many seconds)


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("scheduler", {"joins": {"only": 10**7}}, "more than 100,000 waiting branches"),
    ("scheduler", {"joins": {"only": 10**9}}, "more than 100,000 waiting branches"),
    ("scheduler", {"joins": {"only": -1}}, "whole number"),
    ("scheduler", {"joins": {"only": "3"}}, "whole number"),
    ("scheduler", {"joins": ["only"]}, "must be an object"),
    ("scheduler", {"steps": 1.5}, "steps"),
    ("pending", [5], "pending.0"),
    ("pending", ["only"] * (MAX_STATES + 1), "pending has 100,001 entries"),
    ("completed_states", ["x" * (MAX_NAME + 1)], "completed_states.0"),
    ("completion_counts", {"only": 2**64}, "completion_counts.only"),
    ("state_attempts", {"only": -1}, "state_attempts.only"),
    ("state_status", {"only": "exploded"}, "state_status.only"),
    ("sequence", 2**53, "sequence"),
    ("timestamp", "noon", "timestamp"),
    ("format_version", 0, "format_version"),
    ("typed_data", {"p": {"type": "x"}}, "exactly the keys"),
    ("typed_data", {"p": {"type": 5, "data": {}}}, "registered type name"),
    ("typed_data", {"p": {"type": "x", "data": [1]}}, "must be an object"),
    ("human_answers", [{"state": "only"}], "human_answers.0.request_id"),
])
def test_fields_out_of_bounds_are_refused_naming_the_field(field: str, value: Any, problem: str) -> None:
    data = base()
    data[field] = value
    for load in (lambda: Checkpoint.from_dict(data, source="row 7"),
                 lambda: Checkpoint.from_json(json.dumps(data), source="row 7")):
        with pytest.raises(CheckpointError, match=rf"^row 7: .*{re.escape(problem)}") as info:
            load()
        assert len(str(info.value)) < 2000  # the input itself is never echoed


def _map_record(state: str, total: int) -> dict[str, Any]:
    return {"state": state, "source": "split", "total": total, "pending": {"0": None}}


@pytest.mark.parametrize(("maps", "problem"), [
    # a 77 KB checkpoint of such records once made a restore allocate 1.6 GB of payload slots
    ([_map_record("s", MAX_STATES)] * 1_000, "two records of 's'"),
    ([_map_record(f"s{i}", MAX_STATES) for i in range(MAX_PAYLOADS // MAX_STATES + 1)],
     f"more than {MAX_PAYLOADS:,} payloads in all"),
])
def test_map_records_whose_payload_slots_add_up_past_the_bound_are_refused(maps: list[Any], problem: str) -> None:
    data = base(maps=maps)
    for load in (lambda: Checkpoint.from_dict(data, source="row 7"),
                 lambda: Checkpoint.from_json(json.dumps(data), source="row 7")):
        with pytest.raises(CheckpointError, match=rf"^row 7: .*{re.escape(problem)}"):
            load()
    data["maps"] = maps[:1]  # one record of the same size is a map a run can hold
    assert Checkpoint.from_dict(data).maps[0].total == MAX_STATES


def test_deep_or_cyclic_python_data_in_from_dict_is_refused_without_recursion() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(50_000):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(CheckpointError, match="nested more than 64 levels"):
        Checkpoint.from_dict(base(shared_state={"deep": deep}))
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(CheckpointError, match="nested more than 64 levels"):
        Checkpoint.from_dict(base(metadata={"cycle": cycle}))
    with pytest.raises(CheckpointError, match="holds a set"):
        Checkpoint.from_dict(base(metadata={"s": {1, 2}}))


@dataclass
class Address(TypedContextData):
    city: str


@dataclass
class Profile(TypedContextData):
    name: str
    age: int = 0
    home: Address | None = None


@dataclass
class Picky(TypedContextData):
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must be >= 0")


def typed(cls: type, data: Any) -> Checkpoint:
    return Checkpoint.from_dict(base(typed_data={"p": {"type": f"{cls.__module__}.{cls.__qualname__}", "data": data}}))


def test_dataclass_field_types_are_checked_on_load_as_pydantic_does() -> None:
    with pytest.raises(CheckpointError, match=r"'p' \(.*Profile\) does not match its class: name: Input should be"):
        typed(Profile, {"name": 5}).typed_values()
    with pytest.raises(CheckpointError, match="age"):
        typed(Profile, {"name": "Ada", "age": [1]}).typed_values()
    with pytest.raises(CheckpointError, match=r"home\.city"):
        typed(Profile, {"name": "Ada", "home": {"city": None}}).typed_values()


def test_dataclass_data_with_unknown_or_missing_fields_is_refused() -> None:
    with pytest.raises(CheckpointError, match="has no field 'admin'"):
        typed(Profile, {"name": "Ada", "admin": True}).typed_values()
    with pytest.raises(CheckpointError, match="field 'name' is missing"):
        typed(Profile, {}).typed_values()


def test_dataclass_refusing_its_data_in_post_init_is_a_checkpoint_error() -> None:
    with pytest.raises(CheckpointError, match="n must be >= 0"):
        typed(Picky, {"n": -1}).typed_values()


def test_valid_dataclass_data_round_trips_with_nested_dataclasses_rebuilt() -> None:
    value = typed(Profile, {"name": "Ada", "age": 36, "home": {"city": "London"}}).typed_values()["p"]
    assert value == Profile("Ada", 36, Address("London"))
    assert isinstance(value.home, Address)


def test_typed_value_restored_with_a_wrong_field_type_leaves_the_agent_idle() -> None:
    a = agent()
    with pytest.raises(CheckpointError, match="name"):
        a.restore(typed(Profile, {"name": 5}))
    assert a.status.value == "idle"
    assert a.get_state("p") is None


# -- property-based: any mutation of a real checkpoint --------------------------------------------
_SEEDS: list[dict[str, Any]] = []


def seeds() -> list[dict[str, Any]]:
    if not _SEEDS:
        _SEEDS.extend(mut.seed_checkpoints())
        for seed in _SEEDS:  # warm up: pydantic builds its validators lazily, once
            mut.load_outcome(mut.dumps(seed))
    return _SEEDS


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.randoms(use_true_random=False))
def test_any_mutated_checkpoint_loads_cleanly_or_raises_checkpoint_error(rng: random.Random) -> None:
    text = mut.mutated_checkpoint(seeds(), rng)
    outcome = mut.load_outcome(text)
    assert outcome.kind in ("loaded", "CheckpointError"), outcome.detail
    assert outcome.seconds < 10.0  # bounded work: no input makes loading hang (speed: benchmarks/fuzz_checkpoints.py)
    assert outcome.imported == []
