"""Fuzz the checkpoint loaders with mutated real checkpoints and damaged store files (``make fuzz``).

Each input is pushed through the loaders this package owns and classified:

* checkpoint inputs: ``Checkpoint.from_json`` + ``typed_values`` (+ a round trip of what
  loaded); those that load are also restored into a fresh agent with the same graph
  (``agent.restore``, the engine's side: counted apart, it is not part of the loaders' result);
* store inputs: a real SQLite store file with damaged bytes or rows, opened, listed, asked
  for ``latest``/``runs`` and every listed checkpoint read back.

Prints counts by outcome. Clean outcomes are ``loaded`` and ``CheckpointError``; anything else
is a raw error that escaped, and also counted: inputs slower than 1 s and inputs that imported
a module. Usage::

    python benchmarks/fuzz_checkpoints.py [--inputs 100000] [--store-share 0.1] [--seed 0] [--jobs 2]
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _checkpoint_mutations as mut

from fluffy_nb.engine import Checkpoint, CheckpointError, FluffyWarning


def restore_outcome(text: str | bytes) -> str:
    """The engine side: restore what the loaders accepted into a fresh agent."""
    try:
        cp = Checkpoint.from_json(text)
    except CheckpointError:
        return "not loaded"
    agent = mut.seed_agent()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FluffyWarning)
            agent.restore(cp)
    except CheckpointError:
        return "CheckpointError"
    except Exception as exc:
        return type(exc).__name__
    return "restored"


def run_chunk(inputs: int, store_inputs: int, seed: int) -> dict[str, Any]:
    """Fuzz ``inputs`` inputs (the first ``store_inputs`` of them store files); the tallies."""
    rng = random.Random(seed)
    seeds = mut.seed_checkpoints()
    for cp in seeds:  # warm up: lazy imports of pydantic and sqlite happen here, not in an input
        mut.load_outcome(mut.dumps(cp))
        restore_outcome(mut.dumps(cp))
    tmp = Path(tempfile.mkdtemp(prefix="fluffy-fuzz-"))
    clean = tmp / "clean.db"
    mut.make_store_file(clean, seeds)
    mut.store_outcome(clean)

    counts: dict[str, collections.Counter[str]] = {
        "checkpoint": collections.Counter(), "store": collections.Counter(), "restore": collections.Counter()}
    examples: dict[str, str] = {}
    slow = imported = 0
    worst = 0.0
    slowest: list[str] = []
    started = time.perf_counter()
    for i in range(inputs):
        if i < store_inputs:
            path = tmp / "fuzzed.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            mut.damage_store_file(clean, path, seeds, rng)
            outcome, what = mut.store_outcome(path), "store"
        else:
            text = mut.mutated_checkpoint(seeds, rng)
            outcome, what = mut.load_outcome(text), "checkpoint"
            if outcome.kind == "loaded":
                counts["restore"][restore_outcome(text)] += 1
        counts[what][outcome.kind] += 1
        if outcome.kind not in ("loaded", "CheckpointError"):
            examples.setdefault(f"{what}: {outcome.kind}", outcome.detail)
        slow += outcome.seconds > 1.0
        worst = max(worst, outcome.seconds)
        if outcome.seconds > 1.0 and len(slowest) < 5:
            size = path.stat().st_size if what == "store" else len(text)
            slowest.append(f"{what} input {i} ({size:,} bytes) took {outcome.seconds:.2f} s: {outcome.kind} "
                           f"{outcome.detail[:120]}")
        imported += bool(outcome.imported)
        if (i + 1) % 5_000 == 0:
            print(f"... seed {seed}: {i + 1:,} inputs in {time.perf_counter() - started:.0f} s: "
                  f"{dict(counts['checkpoint'])} {dict(counts['store'])} slow {slow} imported {imported}",
                  file=sys.stderr, flush=True)
    return {"counts": counts, "examples": examples, "slow": slow, "worst": worst, "imported": imported,
            "slowest": slowest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--store-share", type=float, default=0.1, help="share of inputs that are store files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="processes (each fuzzes its share with its own seed)")
    args = parser.parse_args()

    jobs = max(1, args.jobs)
    shares = [args.inputs // jobs + (k < args.inputs % jobs) for k in range(jobs)]
    chunks = [(n, int(n * args.store_share), args.seed + k) for k, n in enumerate(shares)]
    started = time.perf_counter()
    if jobs == 1:
        results = [run_chunk(*chunks[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            results = pool.starmap(run_chunk, chunks)

    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    examples: dict[str, str] = {}
    for r in results:
        for what, c in r["counts"].items():
            counts[what].update(c)
        for kind, detail in r["examples"].items():
            examples.setdefault(kind, detail)
    seeds = ", ".join(str(c[2]) for c in chunks)
    print(f"fuzzed {args.inputs:,} inputs ({jobs} process(es), seeds {seeds}) in {time.perf_counter() - started:.0f} s")
    for what in ("checkpoint", "store"):
        total = sum(counts[what].values())
        shown = ", ".join(f"{kind} {n:,}" for kind, n in counts[what].most_common())
        print(f"  {what} inputs: {total:,}: {shown}")
    escaped = sum(n for what in ("checkpoint", "store") for kind, n in counts[what].items()
                  if kind not in ("loaded", "CheckpointError"))
    print(f"  raw errors escaped: {escaped:,}; slower than 1 s: {sum(r['slow'] for r in results):,} "
          f"(slowest {max(r['worst'] for r in results):.3f} s); "
          f"inputs that imported a module: {sum(r['imported'] for r in results):,}")
    shown = ", ".join(f"{kind} {n:,}" for kind, n in counts["restore"].most_common())
    print(f"  engine side, agent.restore of the checkpoints that loaded: {shown}")
    for kind, detail in examples.items():
        print(f"  first {kind}: {detail[:300]}")
    for r, (_, _, seed) in zip(results, chunks, strict=True):
        for line in r["slowest"]:
            print(f"  slow (seed {seed}): {line}")


if __name__ == "__main__":
    main()
