"""Cost of observability on a 1,000-state chain, beside the same chain with it off and raw asyncio.

Variants, each a fresh agent per run, timed inside a running loop (no ``asyncio.run`` start-up):
  off          no subscriber: the engine's no-listener fast path
  logging      the event log attached (``enable_logging``), the logger at WARNING: records are
               built only for warnings, so this is the subscriber's own cost
  prometheus   ``fluffy_nb.prometheus.instrument`` on one ``CollectorRegistry`` kept across runs
               (as in a long-lived process: each state's label set exists after the first run)
  prom-cold    the same on a fresh registry every run: all 1,000 states' label sets are created
  otel         ``fluffy_nb.otel.instrument`` with the real SDK: ``TracerProvider`` +
               ``SimpleSpanProcessor`` + ``InMemorySpanExporter`` (1,001 spans per run)
  raw asyncio  each state awaited in place, the next looked up in a dict: the floor

Variants are interleaved run by run so background load hits them alike.
Run: ``python benchmarks/bench_observability.py [--repeat N]``. Prints medians and ratios.
Needs the ``otel`` and ``prometheus`` extras.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench_engine import chain_agent, raw_chain_await  # the same workload and plain loop
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import fluffy_nb
import fluffy_nb.otel
import fluffy_nb.prometheus
from fluffy_nb import Agent

CHAIN = 1_000


class Variant:
    """Sets observability up on a fresh agent and tears it down again."""

    def __init__(self, name: str, setup: Callable[[Agent], Any], teardown: Callable[[Agent], None]) -> None:
        self.name, self.setup, self.teardown = name, setup, teardown


def variants() -> list[Variant]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans: list[int] = []

    def otel_off(agent: Agent) -> None:
        spans.append(len(exporter.get_finished_spans()))
        exporter.clear()
        fluffy_nb.otel.uninstrument(agent)

    registry = CollectorRegistry()
    logger = logging.getLogger("fluffy_nb")
    logger.setLevel(logging.WARNING)
    return [
        Variant("off", lambda a: None, lambda a: None),
        Variant("logging", lambda a: fluffy_nb.enable_logging(a), lambda a: fluffy_nb.disable_logging(a)),
        Variant("prometheus", lambda a: fluffy_nb.prometheus.instrument(a, registry=registry),
                lambda a: fluffy_nb.prometheus.uninstrument(a)),
        Variant("prom-cold", lambda a: fluffy_nb.prometheus.instrument(a, registry=CollectorRegistry()),
                lambda a: fluffy_nb.prometheus.uninstrument(a)),
        Variant("otel", lambda a: fluffy_nb.otel.instrument(a, tracer_provider=provider), otel_off),
    ]


def run_once(variant: Variant) -> float:
    agent = chain_agent(CHAIN)
    variant.setup(agent)
    gc.collect()

    async def go() -> float:
        t0 = time.perf_counter()
        await agent.run(start="s0")
        return time.perf_counter() - t0

    try:
        return asyncio.run(go())
    finally:
        variant.teardown(agent)


def run_raw() -> float:
    gc.collect()

    async def go() -> float:
        t0 = time.perf_counter()
        await raw_chain_await(CHAIN)
        return time.perf_counter() - t0

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15, help="runs per variant (median is reported)")
    args = parser.parse_args()
    vs = variants()
    times: dict[str, list[float]] = {v.name: [] for v in vs}
    times["raw asyncio"] = []
    for v in vs:  # warm-up: imports, caches
        run_once(v)
    for _ in range(args.repeat):
        for v in vs:
            times[v.name].append(run_once(v))
        times["raw asyncio"].append(run_raw())
    med = {name: statistics.median(ts) / CHAIN * 1e6 for name, ts in times.items()}
    off, raw = med["off"], med["raw asyncio"]
    print(f"observability on a {CHAIN:,}-state chain, medians of {args.repeat} interleaved runs\n")
    header = f"{'variant':<14}{'us/transition':>15}{'vs off':>9}{'vs raw':>9}"
    print(header)
    print("-" * len(header))
    for name in ("raw asyncio", "off", "logging", "prometheus", "prom-cold", "otel"):
        print(f"{name:<14}{med[name]:>15.1f}{med[name] / off:>8.2f}x{med[name] / raw:>8.1f}x")
    print("\nraw asyncio = each state awaited in place (the floor); otel exports 1,001 spans per run "
          "to an in-memory exporter")


if __name__ == "__main__":
    main()
