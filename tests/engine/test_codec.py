"""Tagged JSON codecs: common Python values in the context round-trip through checkpoints.

The issue's promise: datetime, date, time, timedelta, set, frozenset, tuple, Decimal, UUID, bytes,
Path, Enum, numpy scalars and arrays and pandas Timestamps survive a checkpoint as tagged JSON;
nothing is unpickled or imported from the file; a value that cannot be stored is named at the
checkpoint, and pause() and periodic checkpoints warn instead of failing the run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _wait import until

from fluffy_nb import (
    Agent,
    Checkpoint,
    CheckpointError,
    FluffyWarning,
    ManualClock,
    SerializationError,
    TypedContextData,
)
from fluffy_nb.engine._codec import encode_value


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Perm(enum.Flag):
    READ = 1
    WRITE = 2


VALUES: dict[str, Any] = {
    "when": dt.datetime(2026, 11, 29, 10, 30, 5, 123456, tzinfo=dt.UTC),
    "naive": dt.datetime(2026, 1, 2, 3, 4, 5),
    "day": dt.date(2026, 11, 29),
    "at": dt.time(10, 30, 5, 7),
    "took": dt.timedelta(days=-1, seconds=5, microseconds=7),
    "tags": {"a", "b"},
    "frozen": frozenset({1, 2}),
    "pair": (1, "x", (2.5, None)),
    "price": Decimal("19.99"),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "blob": b"\x00\xffbytes",
    "where": Path("/data/in.csv"),
    "colour": Colour.BLUE,
    "level": Level.HIGH,
    "n": np.int64(7),
    "x": np.float32(0.5),
    "ok": np.bool_(True),
    "matrix": np.arange(6, dtype=np.int16).reshape(2, 3),
    "weights": np.array([0.25, float("nan")]),
    "stamp": pd.Timestamp("2026-11-29 10:30:05.123456789"),
    "nested": {"when": [dt.date(2020, 1, 1)], "$fluffy": "a user key that looks like a tag"},
}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    return type(a) is type(b) and a == b


async def restored(values: dict[str, Any]) -> Agent:
    agent = Agent("values")

    async def only(ctx: Any) -> None:
        for k, v in values.items():
            ctx.set_state(k, v)

    agent.add_state("only", only)
    await agent.run()
    text = json.dumps(agent.create_checkpoint().to_dict())  # plain JSON, as the spec saves it
    again = Agent("values")
    again.add_state("only", only)
    again.restore(Checkpoint.from_json(text))
    return again


async def test_common_python_values_round_trip_through_a_json_checkpoint() -> None:
    again = await restored(VALUES)
    for key, value in VALUES.items():
        assert same(again.get_state(key), value), key


async def test_pandas_nat_round_trips_instead_of_making_a_checkpoint_that_cannot_load() -> None:
    """NaT is a datetime too: it was written as the datetime 'NaT', which no restore could read."""
    again = await restored({"shipped": pd.NaT, "stamps": [pd.Timestamp("2026-01-01"), pd.NaT]})
    assert again.get_state("shipped") is pd.NaT
    assert again.get_state("stamps")[1] is pd.NaT


async def test_an_enum_decodes_only_when_its_class_is_known_here() -> None:
    cp = Checkpoint(agent_name="values", run_id="r", timestamp=0.0, shared_state={
        "colour": {"$fluffy": "enum", "v": {"type": "os.Sneaky", "name": "RED"}}})
    agent = Agent("values")
    with pytest.raises(CheckpointError, match=r"'colour'.*'os.Sneaky', which is not known.*register_type"):
        agent.restore(cp)


@pytest.mark.parametrize(("tagged", "problem"), [
    ({"$fluffy": "pickle", "v": "gASV"}, "unknown value tag 'pickle'"),
    ({"$fluffy": "datetime", "v": "yesterday"}, "'datetime' value cannot be rebuilt"),
    ({"$fluffy": "bytes", "v": "not base64!"}, "'bytes' value cannot be rebuilt"),
    ({"$fluffy": "set", "v": [[1], [2]]}, "'set' value cannot be rebuilt"),
    ({"$fluffy": "timedelta", "v": [1, 2]}, "'timedelta' value cannot be rebuilt"),
    ({"$fluffy": "np.array", "v": {"dtype": "O", "shape": [1], "data": [1]}}, "'np.array' value cannot"),
    ({"$fluffy": "np.array", "v": {"dtype": "<i8", "shape": [10**9], "data": [1]}}, "does not match"),
    ({"$fluffy": "np.scalar", "v": {"dtype": "|i1", "value": 10**6}}, "'np.scalar' value cannot be rebuilt"),
    ({"$fluffy": "enum", "v": {"type": "x", "name": "y", "extra": 1}}, "'enum' value cannot be rebuilt"),
    ({"$fluffy": "tuple", "v": [1], "extra": 1}, "must be"),
])
async def test_a_hostile_tag_is_a_checkpoint_error_naming_the_key(tagged: dict[str, Any], problem: str) -> None:
    text = json.dumps({"agent_name": "values", "run_id": "r", "timestamp": 0.0, "shared_state": {"k": tagged}})
    cp = Checkpoint.from_json(text)
    agent = Agent("values")
    agent.add_state("only", lambda ctx: None)
    with pytest.raises(CheckpointError, match="'k'") as info:
        agent.restore(cp)
    assert problem in str(info.value)
    assert agent.prepared_run is None


def test_numpy_and_pandas_values_need_the_library_imported_by_the_user() -> None:
    """The engine never imports numpy or pandas to decode: without them the error says so."""
    cp = {"agent_name": "v", "run_id": "r", "timestamp": 0.0, "shared_state": {
        "stamp": {"$fluffy": "pd.Timestamp", "v": "2026-01-01"}}}
    code = (
        "import json, sys; from fluffy_nb import Agent, Checkpoint, CheckpointError\n"
        f"cp = Checkpoint.from_dict(json.loads({json.dumps(json.dumps(cp))}))\n"
        "a = Agent('v'); a.add_state('s', lambda c: None)\n"
        "try:\n    a.restore(cp)\nexcept CheckpointError as e:\n    print(e)\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "import pandas before restoring" in out
    assert out.strip().endswith("False")


class Opaque:
    pass


async def test_a_value_that_cannot_be_stored_is_named_at_the_checkpoint() -> None:
    agent = Agent("opaque")

    async def only(ctx: Any) -> None:
        ctx.set_state("handle", Opaque())

    agent.add_state("only", only)
    await agent.run()
    with pytest.raises(SerializationError, match=r"context key 'handle' holds a .*Opaque"):
        agent.create_checkpoint()


async def test_pause_and_interval_checkpoints_warn_and_the_run_goes_on() -> None:
    clock, gate = ManualClock(), asyncio.Event()
    agent = Agent("lenient", checkpoint_interval=5, clock=clock)

    async def work(ctx: Any) -> None:
        ctx.set_state("when", dt.date(2026, 1, 1))
        ctx.set_state("handle", Opaque())
        await gate.wait()
        ctx.set_state("done", True)

    agent.add_state("work", work)
    handle = agent.start()
    await clock.wait_for_sleepers(1)
    with pytest.warns(FluffyWarning, match=r"interval checkpoint left out .*'handle' \(.*Opaque\)"):
        await clock.advance(5)
    [row] = agent.history()
    interval = agent.store.get(row.checkpoint_id)
    assert interval.metadata["unsaved_keys"] == {"handle": f"{__name__}.Opaque"}
    assert interval.shared_state["when"] == {"$fluffy": "date", "v": "2026-01-01"}
    with pytest.warns(FluffyWarning, match="pause checkpoint left out"):
        paused = await agent.pause(timeout=0)
    assert "handle" not in paused.shared_state
    await agent.resume()
    gate.set()
    with pytest.warns(FluffyWarning, match="completion checkpoint left out"):
        result = await handle
    assert result["done"] is True


@dataclass
class Shipment(TypedContextData):
    due: dt.datetime
    crates: set[int]
    price: Decimal


async def test_a_dataclass_typed_value_with_common_fields_round_trips() -> None:
    agent = Agent("typed_values")
    value = Shipment(dt.datetime(2026, 11, 29, 10, 0), {1, 2}, Decimal("9.50"))

    async def only(ctx: Any) -> None:
        ctx.set_typed("shipment", value)

    agent.add_state("only", only)
    await agent.run()
    cp = Checkpoint.from_json(agent.create_checkpoint().to_json())
    assert cp.typed_values()["shipment"] == value


@dataclass
class Holder(TypedContextData):
    thing: Any  # pydantic writes Any as JSON when it can: not an Opaque


async def test_a_typed_value_json_cannot_hold_is_named_and_never_fails_an_interval_or_pause_checkpoint() -> None:
    """A dataclass whose ``Any`` field holds an object: the interval checkpoint failed the run
    ("the store failed to save a checkpoint: PydanticSerializationError"); now it is left out
    with a warning like any context value, and create_checkpoint names the key."""
    clock, gate = ManualClock(), asyncio.Event()
    agent = Agent("typed_lenient", checkpoint_interval=5, clock=clock)

    async def work(ctx: Any) -> None:
        ctx.set_typed("holder", Holder(thing=Opaque()))
        ctx.set_state("kept", 1)
        await gate.wait()
        ctx.set_state("done", True)

    agent.add_state("work", work)
    handle = agent.start()
    await clock.wait_for_sleepers(1)
    with pytest.warns(FluffyWarning, match=r"interval checkpoint left out .*'holder' \(.*Holder\)"):
        await clock.advance(5)
    [row] = agent.history()
    interval = agent.store.get(row.checkpoint_id)
    assert "holder" not in interval.typed_data
    assert interval.shared_state["kept"] == 1
    with pytest.raises(SerializationError, match=r"typed context key 'holder' holds a .*Holder.*Opaque"):
        agent.create_checkpoint()
    with pytest.warns(FluffyWarning, match="pause checkpoint left out"):
        await agent.pause(timeout=0)
    await agent.resume()
    gate.set()
    with pytest.warns(FluffyWarning, match="completion checkpoint left out"):
        assert (await handle)["done"] is True


def nested(levels: int) -> list[Any]:
    """A list holding a list ... ``levels`` lists in all."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


async def test_a_value_too_deep_to_load_again_is_refused_when_written_not_when_restored() -> None:
    """A context value nested 63 levels deep made a checkpoint that loading refused (JSON deeper than
    64 levels), and one that contains itself failed the run with a RecursionError at the first
    interval checkpoint. Both are now named at the checkpoint (left out with a warning at
    interval and pause); a value at the limit is written and loads."""
    from fluffy_nb.engine._codec import MAX_VALUE_DEPTH

    again = await restored({"tree": nested(MAX_VALUE_DEPTH)})  # through JSON text and back
    assert again.get_state("tree") == nested(MAX_VALUE_DEPTH)

    loop: list[Any] = []
    loop.append(loop)
    clock, gate = ManualClock(), asyncio.Event()
    agent = Agent("deep", checkpoint_interval=5, clock=clock)

    async def work(ctx: Any) -> None:
        ctx.set_state("tree", nested(63))
        ctx.set_state("loop", loop)
        ctx.set_state("kept", [1])
        await gate.wait()

    agent.add_state("work", work)
    handle = agent.start()
    await clock.wait_for_sleepers(1)
    with pytest.warns(FluffyWarning, match=r"interval checkpoint left out .*'tree'.*'loop'"):
        await clock.advance(5)
    [row] = agent.history()
    interval = Checkpoint.from_json(agent.store.get(row.checkpoint_id).to_json())  # it loads
    assert set(interval.shared_state) == {"kept"}
    for key in ("tree", "loop"):
        with pytest.raises(SerializationError, match=rf"context key '{key}' is nested more than {MAX_VALUE_DEPTH}"):
            encode_value(key, {"tree": nested(63), "loop": loop}[key])
    with pytest.raises(SerializationError, match="'tree' is nested more than"):
        agent.create_checkpoint()
    gate.set()
    with pytest.warns(FluffyWarning, match="completion checkpoint left out"):
        await handle


async def test_a_context_too_large_for_the_store_warns_at_interval_pause_and_end_and_the_run_goes_on(
        tmp_path: Path) -> None:
    """SQLiteStore refuses a checkpoint larger than a store loads back (2 MiB of JSON): at the
    first interval checkpoint that failed the whole run ("durability was asked for"); pause()
    raised. Now those checkpoints are returned unsaved with a warning and the run completes."""
    from fluffy_nb import SQLiteStore
    from fluffy_nb.engine._bounds import MAX_JSON_BYTES

    store = SQLiteStore(tmp_path / "big.sqlite")
    clock, gate = ManualClock(), asyncio.Event()
    agent = Agent("big", store=store, checkpoint_interval=5, clock=clock)

    async def work(ctx: Any) -> None:
        ctx.set_state("blob", "x" * (MAX_JSON_BYTES + 1))
        await gate.wait()
        ctx.set_state("done", True)

    agent.add_state("work", work)
    handle = agent.start()
    await clock.wait_for_sleepers(1)
    with pytest.warns(FluffyWarning, match=r"interval checkpoint was not saved, the run goes on.*a store loads back"):
        await clock.advance(5)
    assert handle.done() is False
    with pytest.warns(FluffyWarning, match="pause checkpoint was not saved"):
        paused = await agent.pause(timeout=0)
    assert paused.shared_state["blob"] == "x" * (MAX_JSON_BYTES + 1)  # returned, only not stored
    await agent.resume()
    gate.set()
    with pytest.warns(FluffyWarning, match="completion checkpoint was not saved"):
        assert (await handle)["done"] is True
    assert store.list("big") == []


# -- review item 11: values that must come back as exactly what was stored ----------------------------
async def test_flag_combinations_longdoubles_and_path_flavours_round_trip_exactly() -> None:
    third = np.longdouble(1) / np.longdouble(3)  # more digits than a Python float holds
    values = {
        "perm": Perm.READ | Perm.WRITE,  # a combination has no member name
        "none": Perm(0),
        "read": Perm.READ,
        "third": third,
        "thirds": np.array([third, np.longdouble("nan"), -third], dtype=np.longdouble),
        "win": PureWindowsPath(r"C:\data\in.csv"),
        "posix": PurePosixPath("/data/in.csv"),
        "here": Path("/data/in.csv"),
    }
    again = await restored(values)
    for key, value in values.items():
        assert same(again.get_state(key), value), key
    assert again.get_state("third") - np.longdouble(1) / np.longdouble(3) == 0  # not rounded to a float
    assert again.get_state("win").parts == ("C:\\", "data", "in.csv")


def test_a_concrete_path_of_another_os_keeps_its_flavour() -> None:
    """A WindowsPath cannot exist on Linux (nor a PosixPath on Windows): it comes back as the pure
    path of its flavour; a ``path`` tag written before flavours were kept comes back as Path."""
    other = "path.windows" if isinstance(Path(), PurePosixPath) else "path.posix"
    cp = Checkpoint(agent_name="values", run_id="r", timestamp=0.0, shared_state={
        "other": {"$fluffy": other, "v": "a/b"}, "old": {"$fluffy": "path", "v": "a/b"}})
    agent = Agent("values")
    agent.add_state("only", lambda ctx: None)
    agent.restore(cp)
    pure = PureWindowsPath if other == "path.windows" else PurePosixPath
    assert type(agent.get_state("other")) is pure
    assert type(agent.get_state("old")) is type(Path())


async def test_a_path_subclass_is_refused_at_the_checkpoint_not_restored_as_something_else() -> None:
    class DataPath(type(Path())):  # type: ignore[misc]
        pass

    agent = Agent("subclass")

    async def only(ctx: Any) -> None:
        ctx.set_state("where", DataPath("/data"))

    agent.add_state("only", only)
    await agent.run()
    with pytest.raises(SerializationError, match=r"context key 'where' holds a .*DataPath.*Path\(value\)"):
        agent.create_checkpoint()


# -- through a real store: every listed value, in the checkpoints a run makes on its own ---------------
@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_every_common_value_round_trips_through_a_store_at_interval_pause_and_end(tmp_path: Path,
                                                                                        kind: str) -> None:
    """The issue's list, set in a state of a run with ``checkpoint_interval`` on: the interval,
    pause and end checkpoints keep every value (no warning, the run goes on) and each restores
    from the store, read back from the file by a second SQLiteStore, as what was stored."""
    from fluffy_nb import MemoryStore, SQLiteStore

    store = SQLiteStore(tmp_path / "values.sqlite") if kind == "sqlite" else MemoryStore()
    clock, gate = ManualClock(), asyncio.Event()
    agent = Agent("values_in_store", store=store, checkpoint_interval=5, clock=clock)

    async def work(ctx: Any) -> None:
        for k, v in VALUES.items():
            ctx.set_state(k, v)
        await gate.wait()

    agent.add_state("work", work)
    handle = agent.start()
    await clock.wait_for_sleepers(1)
    await clock.advance(5)  # an interval checkpoint while the values are in the context
    await until(lambda: len(store.list("values_in_store")) == 1, "the interval checkpoint is stored")
    await agent.pause(timeout=0)
    await agent.resume()
    gate.set()
    await handle
    reader = SQLiteStore(tmp_path / "values.sqlite") if kind == "sqlite" else store
    rows = reader.list("values_in_store")
    assert {row.trigger for row in rows} >= {"interval", "pause", "completion"}
    for row in rows:
        again = Agent("values_in_store")
        again.add_state("work", work)
        again.restore(reader.get(row.checkpoint_id))
        for key, value in VALUES.items():
            assert same(again.get_state(key), value), (row.trigger, key)


# -- an Enum restored where it was never stored: a new process after a crash or a kernel restart -----
MOODS = ("import enum\n\nclass Mood(enum.Enum):\n    HAPPY = 'happy'\n\n"
         "class Box:\n    class Level(enum.IntEnum):\n        ONE = 1\n")


async def test_an_enum_comes_back_in_a_new_process_once_its_code_is_loaded(tmp_path: Path, monkeypatch) -> None:
    """Stored by this process; a fresh interpreter restores it from the store as soon as it has
    imported the module defining the class (as a notebook re-runs its cells), with no
    register_type, and before that says what to import."""
    from fluffy_nb import SQLiteStore

    (tmp_path / "moods.py").write_text(MOODS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import moods

    store = SQLiteStore(tmp_path / "moods.sqlite")
    agent = Agent("moods", store=store)

    async def feel(ctx: Any) -> None:
        ctx.set_state("mood", moods.Mood.HAPPY)
        ctx.set_state("level", moods.Box.Level.ONE)

    agent.add_state("feel", feel)
    await agent.run()
    store.close()
    code = (
        "import sys; from fluffy_nb import Agent, SQLiteStore, CheckpointError\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        f"cp = SQLiteStore({str(tmp_path / 'moods.sqlite')!r}).latest('moods')\n"
        "def restore():\n"
        "    a = Agent('moods'); a.add_state('feel', lambda ctx: None); a.restore(cp); return a\n"
        "try:\n    restore()\nexcept CheckpointError as e:\n    print('before:', e)\n"
        "import moods\n"
        "a = restore()\n"
        "print('after:', a.get_state('mood') is moods.Mood.HAPPY, a.get_state('level') is moods.Box.Level.ONE)\n"
    )
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True,
                                  check=True)
    assert "before: context key 'level' holds an Enum of type 'moods.Box.Level'" in out.stdout or \
        "before: context key 'mood' holds an Enum of type 'moods.Mood'" in out.stdout
    assert "import or define it before restoring" in out.stdout
    assert out.stdout.strip().endswith("after: True True")


def test_only_a_class_already_loaded_under_its_own_name_is_found() -> None:
    """Finding a class by name imports nothing, calls no module ``__getattr__`` and takes no alias."""
    import types

    from fluffy_nb.engine._codec import loaded_class

    assert loaded_class(f"{__name__}.Colour") is Colour
    assert loaded_class("os.system") is None  # a function, not a class
    assert loaded_class("json.decoder.JSONDecodeError") is json.JSONDecodeError
    assert loaded_class("never_imported_module_xyz.Thing") is None
    assert "never_imported_module_xyz" not in sys.modules
    lazy = types.ModuleType("fluffy_lazy_mod")
    called: list[str] = []
    lazy.__getattr__ = lambda name: called.append(name)  # type: ignore[attr-defined]
    alias = types.ModuleType("fluffy_alias_mod")
    alias.Colour = Colour  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "fluffy_lazy_mod", lazy)
        mp.setitem(sys.modules, "fluffy_alias_mod", alias)
        assert loaded_class("fluffy_lazy_mod.Colour") is None
        assert loaded_class("fluffy_alias_mod.Colour") is None  # it says it is test_codec.Colour
    assert called == []
