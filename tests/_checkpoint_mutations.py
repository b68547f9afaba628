"""Mutations of real checkpoints and store files, shared by the Hypothesis tests and ``make fuzz``.

Each mutator takes a ``random.Random`` (Hypothesis hands one over with ``st.randoms()``, so
failures shrink and replay) and returns a damaged copy. ``load_outcome`` and ``store_outcome``
push one input through every loader and say what happened: ``"loaded"``, ``"CheckpointError"``
(clean refusals), or the name of anything else that escaped; both also report the time taken
and the modules imported meanwhile.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import random
import re
import shutil
import sqlite3
import sys
import time
import warnings
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from fluffy_nb import Agent, TypedContextData
from fluffy_nb.engine import Checkpoint, CheckpointError, FluffyWarning
from fluffy_nb.store import MemoryStore, SQLiteStore


@dataclass
class FuzzProfile(TypedContextData):
    """A registered typed value the seed checkpoints carry."""

    name: str
    age: int
    tags: list[str]


class FuzzColour(enum.Enum):
    """A known Enum the seed checkpoints carry as a tagged value."""

    RED = "red"


def seed_checkpoints() -> list[dict[str, Any]]:
    """Real checkpoints of a durable run with a fan-out, a join, typed data and a cycle count."""
    agent = Agent("fuzzed", store=MemoryStore(), durable=True)

    async def start(ctx: Any) -> Any:
        ctx.set_typed("profile", FuzzProfile("Ada", 36, ["x", "y"]))
        ctx.set_state("config", {"depth": [1, [2, [3]]], "ratio": 0.5, "name": "é<b>"})
        ctx.set_state("tagged", {"when": dt.datetime(2026, 1, 1, 12), "took": dt.timedelta(seconds=3),
                                 "tags": {"a", "b"}, "pair": (1, "x"), "price": Decimal("1.50"),
                                 "blob": b"\x00\xff", "where": Path("/tmp/x"), "colour": FuzzColour.RED})
        return ["fast", "slow"]

    async def fast(ctx: Any) -> Any:
        return "join"

    async def slow(ctx: Any) -> Any:
        await asyncio.sleep(0.02)
        return "join"

    async def join(ctx: Any) -> None:
        ctx.set_state("done", True)

    for fn in (start, fast, slow, join):
        agent.add_state(fn.__name__, fn)
    asyncio.run(agent.run())
    store = agent.store
    return [store.get(info.checkpoint_id).to_dict() for info in store.list("fuzzed")]


def seed_agent() -> Agent:
    """An agent with the seed run's states (no-op bodies): what a mutated seed is restored into."""
    agent = Agent("fuzzed")

    async def step(ctx: Any) -> None:
        return None

    for name in ("start", "fast", "slow", "join"):
        agent.add_state(name, step)
    return agent


# -- values -------------------------------------------------------------------------------------
_HUGE_INTS = [10**7, 10**9, 2**63, 2**64, -(2**63) - 1, -1, 10**400]
_STRINGS = ["", "x" * 5000, "join", "fast", "\x00", "é", "\ud800", "🦊" * 10, "os.system", "__import__",
            "%%{init}%%", "antigravity", "9" * 50, "$fluffy", "datetime", "set", "enum", "np.array", "bytes"]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value, with a bias towards edge cases."""
    kind = rng.randrange(12 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice(_HUGE_INTS) if rng.random() < 0.5 else rng.randint(-5, 5)
    if kind == 3:
        return rng.choice([0.0, -0.0, 1e308, -1e308, 5e-324, 0.5, 1e16])
    if kind in (4, 5):
        return rng.choice(_STRINGS)
    if kind in (6, 7, 8):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice([*_STRINGS[:6], "type", "data", "joins", "steps", "$fluffy", "v"]): random_value(rng, depth + 1)
            for _ in range(rng.randrange(4))}


def _containers(data: Any) -> list[Any]:
    """Every dict and list inside ``data`` (iteratively)."""
    out, stack = [], [data]
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list)):
            out.append(node)
            stack.extend(node.values() if isinstance(node, dict) else node)
    return out


_DEEP = re.compile(r'"\\u0000deep:(\d+):(\w)\\u0000"')


def _nested(rng: random.Random) -> str:
    """A marker that :func:`dumps` turns into deeply nested JSON (json.dumps would recurse on it)."""
    return f"\x00deep:{rng.choice([10, 63, 64, 65, 200, 5000, 100_000])}:{rng.choice('ld')}\x00"


def _deep_text(match: re.Match[str]) -> str:
    n = int(match[1])
    return "[" * n + "1" + "]" * n if match[2] == "l" else '{"d":' * n + "1" + "}" * n


_MANY = re.compile(r'"\\u0000many:(\d+):((?:[^"\\]|\\.)*?)\\u0000"')


def _many(value: Any, rng: random.Random) -> str:
    """A marker that :func:`dumps` turns into a long list of ``value`` (built as text: fast)."""
    n = rng.choice([2, 1000, 1000, 100_001, 250_000])
    return f"\x00many:{n}:{json.dumps(value)}\x00"


def _many_text(match: re.Match[str]) -> str:
    item = json.loads('"' + match[2] + '"')
    return "[" + ",".join([item] * int(match[1])) + "]"


def dumps(data: Any) -> str:
    """``json.dumps`` with the markers of :func:`_nested` and :func:`_many` expanded."""
    return _MANY.sub(_many_text, _DEEP.sub(_deep_text, json.dumps(data)))


def mutate_tree(data: dict[str, Any], rng: random.Random) -> Any:
    """One to three structural mutations of a checkpoint dict (a deep copy is changed)."""
    data = json.loads(json.dumps(data))
    for _ in range(rng.randint(1, 3)):
        target = rng.choice(_containers(data))
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        op = rng.randrange(9)
        if not keys or op == 0:  # add
            if isinstance(target, dict):
                target[rng.choice([*_STRINGS, "pending", "joins", "format_version"])] = random_value(rng)
            else:
                target.append(random_value(rng))
            continue
        key = rng.choice(keys)
        if op in (1, 2, 3):
            target[key] = random_value(rng)
        elif op == 4:
            del target[key]
        elif op == 5:
            target[key] = _nested(rng)
        elif op == 6:  # sizes: a long list of one value
            target[key] = _many(target[key], rng)
        elif op == 7 and isinstance(target, dict):  # rename
            target[rng.choice(_STRINGS)] = target.pop(key)
        else:  # a count that drives work, or a type swap
            target[key] = rng.choice([10**7, 10**9, "1", 1.5, [], {}])
    return data


def mutate_text(text: str, rng: random.Random) -> str | bytes:
    """A text-level mutation of checkpoint JSON: truncation, bytes, constants, depth, numbers."""
    op = rng.randrange(8)
    i = rng.randrange(len(text) + 1)
    if op == 0:
        return text[:i]
    if op == 1:
        raw = bytearray(text.encode())
        for _ in range(rng.randint(1, 8)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    if op == 2:
        return text[:i] + rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, "-0"]) + text[i:]
    if op == 3:
        n = rng.choice([100, 10_000, 200_000])
        return text[:i] + "[" * n + "]" * n + text[i:]
    if op == 4:
        return text.replace(":0,", ":" + rng.choice(["1e400", "10000000000000000000000", "-1"]) + ",", 3)
    if op == 5:
        return text[:-1] + ',"pending":["x"],"pending":[' + ",".join(['"y"'] * rng.choice([1, 200_000])) + "]}"
    if op == 6:
        return text[:i] + rng.choice(['"', "\\", "\\u", "{", "}", ",", "\x00", "\ud800"]) + text[i:]
    return text * rng.choice([2, 3])


def mutated_checkpoint(seeds: list[dict[str, Any]], rng: random.Random) -> str | bytes:
    """One damaged checkpoint (JSON text or bytes) made from a random seed."""
    seed = rng.choice(seeds)
    if rng.random() < 0.6:
        return dumps(mutate_tree(seed, rng))
    return mutate_text(json.dumps(seed), rng)


# -- outcomes -----------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one input did."""

    kind: str  # "loaded", "CheckpointError", or the name of what escaped
    seconds: float
    imported: list[str]
    detail: str = ""


def _classify(fn: Any) -> tuple[str, str]:
    try:
        fn()
    except CheckpointError as exc:
        return "CheckpointError", str(exc)[:300]
    except Exception as exc:  # the finding: anything but CheckpointError (RecursionError included)
        return type(exc).__name__, f"{type(exc).__name__}: {str(exc)[:300]}"
    return "loaded", ""


def load_outcome(text: str | bytes) -> Outcome:
    """Load ``text`` as a checkpoint and rebuild its typed values."""
    before = set(sys.modules)
    start = time.perf_counter()

    loaded: list[Checkpoint] = []

    def load() -> None:
        cp = Checkpoint.from_json(text, source="fuzzed checkpoint")
        cp.typed_values()
        loaded.append(cp)

    kind, detail = _classify(load)
    seconds = time.perf_counter() - start
    if loaded:  # what loaded once loads again from its own dict (not timed: a second load)
        again, why = _classify(lambda: Checkpoint.from_dict(loaded[0].to_dict(), source="round trip"))
        if again != "loaded":
            kind, detail = f"round trip: {again}", why
    return Outcome(kind, seconds, sorted(set(sys.modules) - before), detail)


def make_store_file(path: Path, seeds: list[dict[str, Any]]) -> None:
    """A real SQLite store file holding the seed checkpoints."""
    store = SQLiteStore(path, write_behind=False)
    for data in seeds:
        store.put(Checkpoint.from_dict(data))
    store.close()


_COLUMNS = ["checkpoint_id", "parent_id", "agent_name", "run_id", "sequence", "timestamp", "trigger",
            "agent_status", "completed_count", "pending", "size_bytes", "error", "format_version", "data"]


def damage_store_file(clean: Path, path: Path, seeds: list[dict[str, Any]], rng: random.Random) -> None:
    """Copy the clean store file to ``path`` and damage its bytes or one of its rows."""
    shutil.copyfile(clean, path)
    op = rng.randrange(4)
    if op == 0:  # bytes
        raw = bytearray(path.read_bytes())
        for _ in range(rng.randint(1, 16)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        path.write_bytes(bytes(raw))
        return
    if op == 1:  # truncation or a damaged page
        raw = path.read_bytes()
        cut = rng.randrange(len(raw))
        path.write_bytes(raw[:cut] if rng.random() < 0.5 else raw[:cut] + bytes(rng.randrange(256) for _ in range(64))
                         + raw[cut + 64:])
        return
    con = sqlite3.connect(path)
    try:
        ids = [r[0] for r in con.execute("SELECT checkpoint_id FROM checkpoints")]
        victim = rng.choice(ids)
        if op == 2:  # one column of one row
            column = rng.choice(_COLUMNS)
            value: Any = rng.choice([None, -1, 2**63 - 1, 1.5, "", "x" * 3000, b"\xff\xfe", "[", '["a", 5]',
                                     "[" * 5000 + "]" * 5000, json.dumps(random_value(rng))])
            con.execute(f"UPDATE checkpoints SET {column} = ? WHERE checkpoint_id = ?", (value, victim))
        else:  # the data of one row, mutated like a checkpoint
            text = mutated_checkpoint(seeds, rng)
            if isinstance(text, str) and not text.isascii():  # lone surrogates cannot be TEXT: store bytes
                text = text.encode("utf-8", "surrogatepass")
            con.execute("UPDATE checkpoints SET data = ? WHERE checkpoint_id = ?", (text, victim))
        con.commit()
    except sqlite3.Error:
        pass  # an IntegrityError (a NOT NULL column) leaves the file as it was
    finally:
        con.close()


def store_outcome(path: Path) -> Outcome:
    """Open the store file and call every reading method; warnings about damaged rows are fine."""
    before = set(sys.modules)
    start = time.perf_counter()
    kinds: list[tuple[str, str]] = []

    def read() -> None:
        store = SQLiteStore(path, write_behind=False)
        try:
            for call in (store.list, store.runs, lambda: store.latest("fuzzed"), lambda: store.list("fuzzed")):
                kinds.append(_classify(call))
            ids = [info.checkpoint_id for info in store.list()]
            for cid in ids:
                kinds.append(_classify(lambda cid=cid: store.get(cid)))
        finally:
            store.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FluffyWarning)
        kinds.append(_classify(read))
    seconds = time.perf_counter() - start
    escaped = [k for k in kinds if k[0] not in ("loaded", "CheckpointError")]
    if escaped:
        kind, detail = escaped[0]
    elif any(k[0] == "CheckpointError" for k in kinds):
        kind, detail = "CheckpointError", next(d for k, d in kinds if k == "CheckpointError")
    else:
        kind, detail = "loaded", ""
    return Outcome(kind, seconds, sorted(set(sys.modules) - before), detail)
