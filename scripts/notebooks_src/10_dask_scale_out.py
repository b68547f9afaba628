# %% [markdown]
# # 10 · Scale out on Dask
#
# Sooner or later one machine is not enough: 500 chunks of a minute of CPU each, or a state that
# needs a GPU the notebook machine lacks. You should not have to leave fluffy_nb for that, and
# fluffy_nb does not build its own cluster: the **bodies of the states you choose run on a Dask
# cluster**, while the engine stays the orchestrator. The graph, joins, retries, timeouts,
# checkpoints, human-in-the-loop and the live view work exactly as before.
#
# This notebook starts a small cluster on this machine (two worker processes, nothing leaves
# 127.0.0.1), fans CPU-bound chunks out to it, and compares with running them on the event loop.
# Everything here works the same against a real cluster: `DaskExecutor.from_address("tcp://scheduler:8786")`,
# or `DaskExecutor(client)` with a `Client` you made (synchronous or asynchronous).

# %%
import threading
import time

from fluffy_nb import Agent, Context, ResourceError, ResourceRequirements, RetryPolicy, StateResult
from fluffy_nb.distributed import DaskExecutor, UnpicklableStateError
from fluffy_nb.notebook import RunTracker

%load_ext fluffy_nb

# %% [markdown]
# ## A CPU-bound fan-out
#
# `count_primes` is plain Python: it holds the GIL the whole time, so threads would not help. On the
# event loop the chunks run one after another; on Dask each runs in a worker **process**.
#
# One function builds the workflow either way: `split` fans out to the chunks, `combine` is the join.
# With an executor, the chunks are added with `remote=True` ("run my body on the agent's executor");
# `split` and `combine` stay local, because tiny states are faster where the data already is.

# %%
CHUNKS = 8
SIZE = 25_000


def count_primes(lo: int, hi: int) -> int:
    return sum(all(n % d for d in range(2, int(n**0.5) + 1)) for n in range(max(lo, 2), hi))


def split(context: Context) -> StateResult:
    return [f"chunk_{i}" for i in range(CHUNKS)]


def count_chunk(context: Context) -> StateResult:
    i = int(context.state_name.split("_")[1])
    context.set_state(f"primes_{i}", count_primes(i * SIZE, (i + 1) * SIZE))
    return "combine"


def combine(context: Context) -> StateResult:
    context.set_state("primes", sum(context.get_state(f"primes_{i}") for i in range(CHUNKS)))
    return None


def build(executor: DaskExecutor | None = None) -> Agent:
    agent = Agent("primes", executor=executor)
    chunks = [f"chunk_{i}" for i in range(CHUNKS)]
    agent.add_state("split", split, next=chunks)
    for name in chunks:
        agent.add_state(name, count_chunk, remote=executor is not None)
    agent.add_state("combine", combine)
    return agent


# %% [markdown]
# First on the event loop, as every earlier notebook did:

# %%
# NBVAL_CHECK_OUTPUT
t0 = time.perf_counter()
local = await build().run()
local_seconds = time.perf_counter() - t0
print("primes below", CHUNKS * SIZE, "=", local.get_state("primes"))

# %% [markdown]
# ## Start a local cluster
#
# `DaskExecutor.local(n_workers=2)` starts a Dask `LocalCluster` of two worker processes on
# 127.0.0.1 (in its own thread, so the kernel stays responsive) and connects an asynchronous client.
# The workers ignore the notebook's **Stop** button (SIGINT), which would otherwise kill them. We
# also tell Dask each worker has one `GPU` slot, to show resources below.

# %%
executor = await DaskExecutor.local(n_workers=2, resources={"GPU": 1})
executor

# %% [markdown]
# ## The same fan-out on Dask, with the live view
#
# `start()` shows the live view under the cell: the chunks turn to *running* two at a time (one per
# worker process), and the timeline shows them side by side.

# %%
dask_run = build(executor).start()

# %%
# NBVAL_CHECK_OUTPUT
remote = await dask_run
print("primes below", CHUNKS * SIZE, "=", remote.get_state("primes"), "| same answer:",
      remote.get_state("primes") == local.get_state("primes"))

# %% [markdown]
# Timing a background run from a later cell would also count the time you spent reading, so time a
# second, blocking run instead. On a machine with two idle cores expect close to **2x**; each state
# also pays Dask's round trip (about 10 ms), which is why tiny states should stay local.

# %%
t0 = time.perf_counter()
await build(executor).run()
dask_seconds = time.perf_counter() - t0
print(f"event loop: {local_seconds:.2f} s | Dask, 2 workers: {dask_seconds:.2f} s | "
      f"speed-up: {local_seconds / dask_seconds:.1f}x")

# %% [markdown]
# ## Which worker ran which state
#
# Hover over a bar of the timeline, or a node of the graph, in the live view: it names the Dask
# worker that ran that attempt (and the view's header links the Dask dashboard, when the cluster has
# one). The same is available in code: a `RunTracker` collects the `StatePlaced` events the executor
# publishes as each body starts on a worker. In the Dask dashboard the tasks are named
# `fluffy-<agent>-<state>-<id>`, so they group by state.

# %%
placed = build(executor)
tracker = RunTracker(placed)
await placed.run()
workers = sorted(set(tracker.where.values()))
for state, worker in sorted(tracker.where.items()):
    print(f"{state:>8} ran on worker {workers.index(worker) + 1} ({worker})")
tracker.close()

# %%
# NBVAL_CHECK_OUTPUT
print("chunks placed:", len(tracker.where), "| on", len(workers), "workers")

# %% [markdown]
# ## What crosses the wire
#
# A remote body gets a **snapshot** of the context and sends back what it wrote (and its next state);
# the engine applies the writes to the real context, which stays in the notebook. Functions and
# classes defined in notebook cells travel by value (cloudpickle), closures included. If a body
# captures something that cannot be pickled (a lock, a database connection, an open file), the run
# fails before it starts, naming the state and the object:

# %%
# NBVAL_CHECK_OUTPUT
lock = threading.Lock()


def guarded(context: Context) -> StateResult:
    with lock:
        context.set_state("done", True)
    return None


careless = Agent("careless", executor=executor)
careless.add_state("guarded", guarded, remote=True)
try:
    await careless.run()
except UnpicklableStateError as err:
    print(err)

# Large values stay on the cluster. A context value above 1 MB (`scatter_threshold`) is sent to the
# cluster **once** and later states get a reference, so a trivial state costs about the same with a
# big array in the context as without it. A body that changes a small value in place gets that change
# carried back; changing a large shared one in place is refused (`SharedValueMutatedError`): assign a
# changed copy with `set_state` instead.

# %%
# NBVAL_CHECK_OUTPUT
import numpy as np

data = Agent("data", executor=executor)
data.add_state("split", split, next=[f"chunk_{i}" for i in range(CHUNKS)])
for i in range(CHUNKS):
    data.add_state(f"chunk_{i}", count_chunk, remote=True)
data.add_state("combine", combine)
before = executor.statistics().scattered
await data.run(initial_context={"table": np.ones(2_500_000)})  # 20 MB
print("a 20 MB value, 8 remote states, sent to the cluster", executor.statistics().scattered - before, "time(s)")

# %% [markdown]
# ## Resources: where a state may run
#
# `ResourceRequirements` map to Dask worker resources (`cpu_units` -> `CPU`, `gpu_units` -> `GPU`,
# `memory_mb` -> `MEMORY_MB`, I/O and network weights -> `IO`, `NETWORK`; the priority becomes the
# Dask priority). Only what a state declares is asked for: `gpu_units=1` asks for a GPU, not also a
# CPU. Each worker has one `GPU` slot, so four GPU states run at most two at a time, one per worker.
# A request no connected worker can satisfy fails at once (on an adaptive cluster it waits, bounded,
# for Dask to start a worker that can):

# %%
# NBVAL_CHECK_OUTPUT
def train(context: Context) -> StateResult:
    return None


greedy = Agent("greedy", executor=executor)
greedy.add_state("train", train, remote=True, resources=ResourceRequirements(gpu_units=4))
try:
    await greedy.run()
except ResourceError as err:
    print(str(err).split(" (workers:")[0])

# %% [markdown]
# ## A worker dies: the engine retries, Dask does not
#
# Retries stay the engine's. Dask is told never to re-run a task whose worker died (it would
# silently run your side effects twice); the loss surfaces as a `WorkerLostError`, and the state's
# `RetryPolicy` decides. Below, the first attempt kills its own worker process. Dask logs the lost
# worker and restarts it; the engine runs attempt 2 on a healthy worker. States only *queued* on a
# dying worker are sent elsewhere without using a retry. If the scheduler itself goes away, states
# fail with `SchedulerLostError` within seconds (`reconnect_timeout`) instead of hanging; if the only
# worker with a GPU goes away for good, a GPU state fails with `ResourceError` (`resource_timeout`).

# %%
def fragile(context: Context) -> StateResult:
    import os
    import signal

    if context.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-state
    context.set_state("finished_on_attempt", context.attempt)
    return None


crashy = Agent("crashy", executor=executor)
crashy.add_state("fragile", fragile, remote=True, retry_policy=RetryPolicy(max_retries=2, initial_delay=0))
await crashy.run()

# %%
# NBVAL_CHECK_OUTPUT
meta = crashy.state_metadata["fragile"]
print("finished on attempt", crashy.get_state("finished_on_attempt"), "| retries:", meta.retries)
print("first error:", meta.last_error.split(":")[0])

# %% [markdown]
# ## Limits shared by several notebooks
#
# An agent's own semaphores live in its kernel. When several notebooks share one cluster and one
# database, the limit must live where they all meet: the Dask scheduler. `executor.semaphore(name,
# max_leases)` is a gate backed by Dask's `Semaphore`; every client of the cluster that uses the same
# name shares its leases. Here four writers pass a one-lease semaphore, so they write one at a time:

# %%
# NBVAL_CHECK_OUTPUT
import asyncio

db = executor.semaphore("warehouse-db", max_leases=1)
writers = Agent("writers")
now = peak = 0


async def write(context: Context) -> StateResult:
    global now, peak
    now += 1
    peak = max(peak, now)
    await asyncio.sleep(0.05)
    now -= 1
    return None


names = [f"write_{i}" for i in range(4)]
for name in names:
    writers.add_state(name, write)
    writers.add_gate(name, db)
await writers.run(start=names)
await db.drain()
print("writers inside at once, at most:", peak, "|", db.statistics().acquisitions, "leases taken")

# %% [markdown]
# Timeouts work too, and count the body's run time on its worker (not time queued on the cluster);
# the Dask future is cancelled. A Python body that is already running on a worker cannot be
# interrupted, though: it runs to its end there and its result is dropped. `async def` bodies run on
# their own event loop in a worker thread, so a long one never stops the worker's heartbeats.
#
# `executor.statistics()` counts what went where; `close()` stops the cluster started by `local()`.

# %%
print(executor.statistics())
await executor.close()

# %% [markdown]
# ## Try this
#
# - Raise `CHUNKS` to 32 and start the cluster with `n_workers=4` (if you have the cores).
# - Put `@state(executor="dask")` on a function instead of `remote=True`.
# - Write a state that stores a `threading.Lock()` in the context and a remote state after it. Which
#   key does the error name?
# - Connect to a real cluster: `DaskExecutor.from_address("tcp://...:8786")`; install fluffy_nb on
#   its workers like any other dependency. Pin a state to some workers with `workers=[...]`, or pass
#   `annotations={...}` as for `dask.annotate`.
# - Start an adaptive cluster that begins empty: `DaskExecutor.local(4, adapt={"minimum": 0, "maximum": 4})`.
