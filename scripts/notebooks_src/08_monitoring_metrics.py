# %% [markdown]
# # 08 · Monitoring and metrics
#
# A workflow that works on your laptop still needs watching in production: which state is slow, how
# slow is slow (the median or the unlucky 1 in 100?), how often do retries save the day, is the
# machine saturated? Guessing is expensive; measuring is cheap.
#
# fluffy_nb measures through **events**. The engine publishes a small, frozen record for everything
# that happens (run started, state started/finished/failed/retrying/blocked, a person asked, a
# checkpoint saved, a resource sample). Live views, metrics and your own code are **subscribers**.
# With nobody subscribed, publishing costs next to nothing, so production runs do not pay for it.

# %%
import asyncio
import random

import pandas as pd
from _fakellm import FakeLLM

from fluffy_nb import Agent, AgentMetrics, Context, MetricType, RetryPolicy, StateResult, agent_monitor

%load_ext fluffy_nb

# %% [markdown]
# ## A workflow to watch
#
# An ingest pipeline: `fetch` (a slow, sometimes flaky API), three `enrich_*` states in parallel,
# and `store`. The random latencies are seeded, so the *shape* of the numbers is stable.

# %%
rng = random.Random(7)
flaky = FakeLLM(latency=0.0, flaky=1)  # the first call of each prompt fails once


def build() -> Agent:
    agent = Agent("ingest")

    async def fetch(context: Context) -> StateResult:
        await asyncio.sleep(rng.uniform(0.02, 0.06))
        await flaky.complete(f"fetch batch {context.get_state('batch')}")
        return ["enrich_geo", "enrich_lang", "enrich_tags"]

    async def enrich(context: Context) -> StateResult:
        await asyncio.sleep(rng.uniform(0.01, 0.05))
        return "store"

    async def store(context: Context) -> StateResult:
        await asyncio.sleep(0.01)
        return None

    agent.add_state("fetch", fetch, retry_policy=RetryPolicy(max_retries=2, initial_delay=0.01, jitter=False))
    for name in ("enrich_geo", "enrich_lang", "enrich_tags"):
        agent.add_state(name, enrich, next=["store"])
    agent.add_state("store", store)
    return agent

# %% [markdown]
# ## 1. Events: what happened, in order
#
# `agent.events.subscribe(callback)` calls `callback(event)` for every event. Here we just collect the
# event names of one run. Notice the `StateFailed` + `StateRetrying` pair: the first `fetch` attempt hit
# the flaky API and was retried.

# %%
# NBVAL_CHECK_OUTPUT
agent = build()
seen = []
unsubscribe = agent.events.subscribe(lambda e: seen.append((type(e).__name__, getattr(e, "state", ""))))
await agent.run(initial_context={"batch": 0})
unsubscribe()
print([f"{kind}:{state}" if state else kind for kind, state in seen if kind in
       ("RunStarted", "StateFailed", "StateRetrying", "RunFinished")])
print(sum(1 for kind, _ in seen if kind == "StateFinished"), "states finished")

# %% [markdown]
# ## 2. The spec's monitor: `@agent_monitor`
#
# Wrap the code that runs your agents in `@agent_monitor(...)`. Every agent run inside it is observed,
# and your `metrics_callback` receives a dictionary of aggregations (count, avg, min, max, p50, p95, p99)
# in the shape the spec documents. Times are in milliseconds. With `realtime=True` the callback is called
# every `update_interval` seconds while the work runs, and always once at the end.

# %%
updates = []


async def handle_metrics(metrics: dict) -> None:
    updates.append(metrics)


@agent_monitor(metrics=MetricType.ALL, realtime=True, update_interval=0.2, metrics_callback=handle_metrics)
async def run_batches(n: int) -> None:
    for batch in range(n):
        await build().run(initial_context={"batch": batch + 1})


await run_batches(10)
final = updates[-1]

# %%
# NBVAL_CHECK_OUTPUT
print("metric categories:", sorted(final))
print("updates received:", len(updates) >= 2)
print("states completed:", int(final["state"]["completed"]["sum"]))  # 10 runs x 5 states
print("errors counted:", int(final["errors"]["count"]["sum"]), "| retries:", int(final["errors"]["retries"]["sum"]))

# %%
t = final["timing"]
print(f"total execution: p50 {t['total_execution']['p50']:.1f} ms, p95 {t['total_execution']['p95']:.1f} ms")
print(f"throughput: {final['throughput']['states_per_second']['avg']:.0f} states/s")
print(f"process CPU now: {final['resources']['used_CPU']['current']:.0f}% of one core")

# %% [markdown]
# ## 3. Per-state numbers as a DataFrame
#
# The question is usually *which state*. `AgentMetrics(agent)` collects per-state statistics; one row
# per state makes a natural DataFrame: sort by p95, look at retries, plot it.

# %%
agent = build()
collector = AgentMetrics(agent)
for batch in range(20):
    await agent.run(initial_context={"batch": 100 + batch})
collector.close()
per_state = pd.DataFrame(collector.per_state()).set_index("state")
per_state

# %%
# NBVAL_CHECK_OUTPUT
print("runs per state:", per_state["runs"].to_dict())

# %%
print("slowest at p95:", per_state["p95_ms"].idxmax())  # a measured figure: it varies from run to run

# %% [markdown]
# ## 4. The live view
#
# The same events feed the live view: a timeline (Gantt chart) shows each state execution as a bar,
# so parallelism and the retry pause are visible at a glance. (A new batch number means a new prompt,
# so the flaky API fails once again and you can see the retry.)

# %%
ingest = build()
ingest_run = ingest.start(initial_context={"batch": 999})

# %%
await ingest_run
%fluffy status ingest latest

# %% [markdown]
# `%fluffy metrics NAME` is the latency view of the same run: p50/p95/p99 per state in milliseconds,
# slowest first (the live view shows the ten slowest under the timeline as well).

# %%
%fluffy metrics ingest

# %% [markdown]
# ## 5. Traces: OpenTelemetry
#
# Outside the notebook, teams watch workflows with the tools they already run. `fluffy_nb.otel`
# (`pip install "fluffy_nb[otel]"`) is one more event subscriber: one call turns every run into a
# **trace** with a span per run and a span per state *attempt* (a retry is a second span), carrying
# the agent, run id, state, attempt, status and declared resources. Waits for a person or for
# resources become span events, a failure records its exception, and a run started inside a state
# (a sub-workflow) or a body sent to Dask nests under that state's span.
#
# In production you would hand it a `TracerProvider` that exports to your collector (OTLP, Jaeger,
# Honeycomb...). Here spans go to an in-memory exporter so we can print the tree.

# %%
import fluffy_nb.otel
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))

traced = build()
fluffy_nb.otel.instrument(traced, tracer_provider=provider)  # or instrument() for every agent
await traced.run(initial_context={"batch": 2000})
fluffy_nb.otel.uninstrument(traced)


def print_tree(spans, parent=None, depth=0):
    """Spans as an indented tree, children in the order they started."""
    children = [s for s in spans if (s.parent.span_id if s.parent else None) == parent]
    for span in sorted(children, key=lambda s: s.start_time):
        a = span.attributes
        detail = f"attempt {a['fluffy.attempt']} " if "fluffy.attempt" in a else ""
        errors = [e.attributes["exception.type"] for e in span.events if e.name == "exception"]
        print("  " * depth + f"{span.name:<20} {detail}{a['fluffy.status']}" + (f"  ({errors[0]})" if errors else ""))
        print_tree(spans, span.context.span_id, depth + 1)

# %%
# NBVAL_CHECK_OUTPUT
spans = exporter.get_finished_spans()
print_tree(spans)
print(len({s.context.trace_id for s in spans}), "trace,", len(spans), "spans")

# %% [markdown]
# ## 6. Metrics for Prometheus
#
# `fluffy_nb.prometheus` (`pip install "fluffy_nb[prometheus]"`) counts and times the same events as
# Prometheus metrics labelled by agent and state: attempts, retries, failures, state duration, queue
# wait, resource wait, time waiting for a person, checkpoints. `serve(port)` exposes them at
# `/metrics`, on 127.0.0.1 unless you say otherwise. Here: a private registry, a free port, five runs,
# and one scrape, exactly what Prometheus would see.

# %%
import urllib.request

import fluffy_nb.prometheus
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

registry = CollectorRegistry()
fluffy_nb.prometheus.instrument(registry=registry)  # every agent that runs from now on
server = fluffy_nb.prometheus.serve(0, registry=registry)  # port 0: any free port
for batch in range(5):
    await build().run(initial_context={"batch": 3000 + batch})
scraped = urllib.request.urlopen(server.url).read().decode()
server.close()
fluffy_nb.prometheus.uninstrument()

# %%
# NBVAL_CHECK_OUTPUT
for family in text_string_to_metric_families(scraped):
    if family.name in ("fluffy_nb_state_attempts", "fluffy_nb_state_retries"):
        for sample in sorted(family.samples, key=lambda s: s.labels["state"]):
            if sample.name.endswith("_total"):
                print(f"{sample.name:<32} {sample.labels['state']:<12} {sample.value:.0f}")

# %% [markdown]
# ## 7. Logs
#
# The engine also logs through the standard `fluffy_nb` logger, silent until you configure logging.
# Records carry `agent`, `run`, `state` and `attempt` as extras, for JSON log formatters. At INFO you
# get runs, retries and people; DEBUG adds every state.

# %%
# NBVAL_CHECK_OUTPUT
import logging
import sys

handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("%(levelname)-7s %(message)s  | extras: state=%(state)s attempt=%(attempt)s"))
logger = logging.getLogger("fluffy_nb")
logger.addHandler(handler)
logger.setLevel(logging.INFO)  # an enabled logger is all it takes (or fluffy_nb.enable_logging())
await build().run(initial_context={"batch": 4000})
logger.removeHandler(handler)
logger.setLevel(logging.NOTSET)

# %% [markdown]
# ## Try this
#
# - Make `enrich_tags` sleep 0.2 s. Which number shows it first, p50 or p95? Why?
# - Subscribe a callback that prints only `StateRetrying` events with their `delay`.
# - Pass `metrics=MetricType.TIMING | MetricType.ERRORS` to `agent_monitor`. Which categories remain?
# - Run a second agent inside `store` (`await build().run(...)` would recurse: make a tiny one) with
#   tracing on for every agent (`fluffy_nb.otel.instrument(tracer_provider=provider)`). Where does its
#   run span hang in the tree?
# - Next: [09 · An LLM content pipeline, end to end](09_llm_content_pipeline.ipynb).
